"""The server's own time for each script run, for benchmarks: with CRM_RUN_TIMES set to a file path,
every completed run of a page appends one line
"<unix time>\t<seconds>\t<CPU seconds>\t<SQL seconds>\t<SQL statements>\t<computing seconds>\t<queued seconds>\t<page title>"
(CPU: the script thread's own; SQL: the wall time of the statements the run sent until they
returned their cursor; computing: the time spent computing cached figures that were not in the
cache (`ui.context.cached`), SQL included; queued: the time the thread was ready to run but waited
for a core, from Linux's scheduler statistics; what is left of the seconds is time spent waiting
for the interpreter lock, a lock such as another session computing the same cached figures, or the
database server).

bench/concurrency_bench.py reads it to tell the server's share of an interaction from the browser's
(both run on the same cores there), and a slow run's cause from its neighbours'. Without the
variable nothing is written and no SQL is timed.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import event
from sqlalchemy.engine import Engine

ENV = "CRM_RUN_TIMES"
_lock = threading.Lock()
_run = threading.local()  # the SQL seconds and statements of the run on this script thread
_timing_sql = False


def _before(conn, cursor, statement, parameters, context, executemany) -> None:
    context._crm_started = time.perf_counter()


def _after(conn, cursor, statement, parameters, context, executemany) -> None:
    started = getattr(context, "_crm_started", None)
    if started is not None and hasattr(_run, "sql"):
        _run.sql += time.perf_counter() - started
        _run.statements += 1


_gc_started = 0.0


def _time_gc(phase: str, info: dict) -> None:
    """Each garbage collection of the oldest generation, which stops every thread while it scans the
    whole heap, as a line "gc\t<unix time>\t<seconds>\t<objects collected>" beside the runs."""
    global _gc_started
    if info.get("generation") != 2:
        return
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    path = os.environ.get(ENV)
    if path and _gc_started:
        with open(path, "a", encoding="utf-8") as log:
            log.write(f"gc\t{time.time():.3f}\t{time.perf_counter() - _gc_started:.4f}\t{info.get('collected', 0)}\n")


def _time_sql() -> None:
    global _timing_sql
    with _lock:
        if not _timing_sql:
            event.listen(Engine, "before_cursor_execute", _before)
            event.listen(Engine, "after_cursor_execute", _after)
            gc.callbacks.append(_time_gc)
            _timing_sql = True


def _queued() -> float:
    """Seconds this thread has spent ready to run, waiting for a core (Linux; 0 elsewhere)."""
    try:
        with open(f"/proc/self/task/{threading.get_native_id()}/schedstat", encoding="ascii") as stat:
            return int(stat.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


@contextmanager
def computing() -> Iterator[None]:
    """Around the computation of figures that were not cached: counted in the run's computing seconds."""
    started = time.perf_counter()
    try:
        yield
    finally:
        if hasattr(_run, "computing"):
            _run.computing += time.perf_counter() - started


@contextmanager
def timed_run(title: str, started: float) -> Iterator[None]:
    """Record the run that began at `started` (time.perf_counter()) once it completes."""
    path = os.environ.get(ENV)
    if path:
        _time_sql()
    cpu_started, queued_before = time.thread_time(), _queued()
    _run.sql, _run.statements, _run.computing = 0.0, 0, 0.0
    try:
        yield
    finally:
        sql, statements, computed = _run.sql, _run.statements, _run.computing
        del _run.sql, _run.statements, _run.computing
    if not path:
        return
    seconds = time.perf_counter() - started
    with _lock, open(path, "a", encoding="utf-8") as log:
        log.write(f"{time.time():.3f}\t{seconds:.4f}\t{time.thread_time() - cpu_started:.4f}\t{sql:.4f}\t"
                  f"{statements}\t{computed:.4f}\t{_queued() - queued_before:.4f}\t{title}\n")
