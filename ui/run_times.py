"""The server's own time for each script run, for benchmarks: with CRM_RUN_TIMES set to a file path,
every completed run of a page appends one line "<unix time>\t<seconds>\t<CPU seconds>\t<page title>"
(CPU: the script thread's own, so the difference is time spent waiting for the CPU, the GIL or a lock).

bench/concurrency_bench.py reads it to tell the server's share of an interaction from the browser's
(both run on the same cores there). Without the variable nothing is written.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

ENV = "CRM_RUN_TIMES"
_lock = threading.Lock()


@contextmanager
def timed_run(title: str, started: float) -> Iterator[None]:
    """Record the run that began at `started` (time.perf_counter()) once it completes."""
    cpu_started = time.thread_time()
    yield
    path = os.environ.get(ENV)
    if not path:
        return
    seconds = time.perf_counter() - started
    with _lock, open(path, "a", encoding="utf-8") as log:
        log.write(f"{time.time():.3f}\t{seconds:.4f}\t{time.thread_time() - cpu_started:.4f}\t{title}\n")
