"""ui/run_times.py: one line per script run for the concurrency benchmark, nothing without the variable."""

from __future__ import annotations

import time

from sqlalchemy import create_engine, text

from ui import run_times


def test_a_run_is_logged_with_its_cpu_sql_and_computing_time(tmp_path, monkeypatch):
    log = tmp_path / "runs.tsv"
    monkeypatch.setenv(run_times.ENV, str(log))
    engine = create_engine("sqlite://")
    with run_times.timed_run("Segments", time.perf_counter()), run_times.computing(), engine.connect() as connection:
        connection.execute(text("SELECT 1")).all()
        connection.execute(text("SELECT 2")).all()
        time.sleep(0.05)
    at, seconds, cpu, sql, statements, computed, queued, title = log.read_text().strip().split("\t")
    assert title == "Segments" and int(statements) == 2
    assert float(seconds) >= float(computed) >= 0.05 > float(sql) >= 0 and float(cpu) >= 0 and float(seconds) >= float(queued) >= 0
    assert abs(float(at) - time.time()) < 60


def test_nothing_is_written_without_the_variable(tmp_path, monkeypatch):
    monkeypatch.delenv(run_times.ENV, raising=False)
    with run_times.timed_run("Segments", time.perf_counter()), run_times.computing():
        pass
    assert list(tmp_path.iterdir()) == []
