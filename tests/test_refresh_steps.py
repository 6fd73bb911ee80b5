"""How the batch refresh orders, overlaps and reports its steps (with stand-in steps)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest

from ml import refresh


def _step(name: str, log: list, seconds: float = 0.0, fail: bool = False):
    def run(engine, as_of, now, before_write=None):
        log.append(("start", name, threading.current_thread().name))
        time.sleep(seconds)
        if fail:
            raise RuntimeError(f"{name} failed")
        if before_write is not None:  # the snapshot: staged, now waits for the models, then writes
            log.append(("staged", name))
            before_write()
            log.append(("writes", name))
        log.append(("end", name))
        return f"{name} done"

    run.__name__ = name
    return run


class _Engine:
    class dialect:  # noqa: N801 - mimics Engine.dialect.name
        name = "postgresql"


def test_consecutive_model_steps_form_one_batch_only_when_concurrent():
    steps = [(n, _step(n, [])) for n in ("_sla", "_churn", "_lifetime_value", "_health", "_snapshot")]
    assert [[label for label, _ in b] for b in refresh._batches(steps, True)] == [
        ["_sla"], ["_churn", "_lifetime_value", "_health", "_snapshot"]]
    # the snapshot joins only right after the models
    alone = [(n, _step(n, [])) for n in ("_snapshot", "_churn", "_clusters", "_snapshot")]
    assert [len(b) for b in refresh._batches(alone, True)] == [1, 1, 1, 1]
    assert [len(b) for b in refresh._batches(steps, False)] == [1, 1, 1, 1, 1]


def test_model_steps_overlap_and_the_report_keeps_step_order(monkeypatch):
    log: list = []
    monkeypatch.setattr(refresh, "STEPS", (
        ("SLA", _step("_sla", log)),
        ("Churn", _step("_churn", log, 0.3)),
        ("CLV", _step("_lifetime_value", log, 0.05)),
        ("Health", _step("_health", log, 0.15)),
        ("Snapshot", _step("_snapshot", log)),
    ))
    progress: list = []
    report = refresh.run_refresh(_Engine(), dt.date(2026, 1, 31), progress=lambda *a: progress.append(a))
    assert [s[0] for s in report.steps] == ["SLA", "Churn", "CLV", "Health", "Snapshot"]
    assert [s[2] for s in report.steps] == ["_sla done", "_churn done", "_lifetime_value done", "_health done",
                                            "_snapshot done"]
    # the three model steps ran at the same time, in worker threads; the snapshot staged alongside
    # them and wrote only after all of them had finished
    threads = {entry[2] for entry in log if entry[0] == "start" and entry[1] != "_sla"}
    assert len(threads) == 4 and all(name.startswith("refresh") for name in threads)
    assert report.seconds < sum(s[1] for s in report.steps)
    assert log.index(("staged", "_snapshot")) < log.index(("end", "_churn")) < log.index(("writes", "_snapshot"))
    assert log.index(("end", "_health")) < log.index(("writes", "_snapshot"))
    # progress counts up in finishing order: the shortest model step first
    assert [(p[0], p[2]) for p in progress] == [(1, "SLA"), (2, "CLV"), (3, "Health"), (4, "Churn"), (5, "Snapshot")]


def test_a_failing_model_step_lets_the_others_finish_then_stops_the_refresh(monkeypatch):
    log: list = []
    monkeypatch.setattr(refresh, "STEPS", (
        ("Churn", _step("_churn", log, 0.05, fail=True)),
        ("CLV", _step("_lifetime_value", log, 0.2)),
        ("Health", _step("_health", log, 0.1)),
        ("Snapshot", _step("_snapshot", log)),
    ))
    with pytest.raises(RuntimeError, match="_churn failed"):
        refresh.run_refresh(_Engine(), dt.date(2026, 1, 31))
    assert ("end", "_lifetime_value") in log and ("end", "_health") in log
    # the snapshot staged, then refused to write
    assert ("staged", "_snapshot") in log and ("writes", "_snapshot") not in log


def test_sqlite_runs_the_model_steps_one_after_another(monkeypatch):
    log: list = []
    monkeypatch.setattr(refresh, "STEPS", (("Churn", _step("_churn", log, 0.02)), ("CLV", _step("_lifetime_value", log))))

    class _SQLite:
        class dialect:  # noqa: N801
            name = "sqlite"

    refresh.run_refresh(_SQLite(), dt.date(2026, 1, 31))
    assert [entry[:2] for entry in log] == [("start", "_churn"), ("end", "_churn"), ("start", "_lifetime_value"),
                                            ("end", "_lifetime_value")]
