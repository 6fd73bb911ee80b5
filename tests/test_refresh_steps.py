"""How the batch refresh orders, overlaps and reports its steps (with stand-in steps)."""

from __future__ import annotations

import datetime as dt
import threading
import time

import batch
from batch import refresh


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
    report = batch.run_refresh(_Engine(), dt.date(2026, 1, 31), progress=lambda *a: progress.append(a))
    assert [s.label for s in report.steps] == ["SLA", "Churn", "CLV", "Health", "Snapshot"]
    assert [s.detail for s in report.steps] == ["_sla done", "_churn done", "_lifetime_value done", "_health done",
                                                "_snapshot done"]
    assert {s.status for s in report.steps} == {"ok"} and report.status == "ok"
    # the three model steps ran at the same time, in worker threads; the snapshot staged alongside
    # them and wrote only after all of them had finished
    threads = {entry[2] for entry in log if entry[0] == "start" and entry[1] != "_sla"}
    assert len(threads) == 4 and all(name.startswith("refresh") for name in threads)
    assert report.seconds < sum(s.seconds for s in report.steps)
    assert log.index(("staged", "_snapshot")) < log.index(("end", "_churn")) < log.index(("writes", "_snapshot"))
    assert log.index(("end", "_health")) < log.index(("writes", "_snapshot"))
    # progress counts up in finishing order: the shortest model step first
    assert [(p[0], p[2]) for p in progress] == [(1, "SLA"), (2, "CLV"), (3, "Health"), (4, "Churn"), (5, "Snapshot")]


def test_a_failing_model_step_never_blocks_the_others(monkeypatch):
    """The snapshot still writes (the failed model's columns stay empty) and later steps still run."""
    log: list = []
    monkeypatch.setattr(refresh, "STEPS", (
        ("Churn", _step("_churn", log, 0.05, fail=True)),
        ("CLV", _step("_lifetime_value", log, 0.2)),
        ("Health", _step("_health", log, 0.1)),
        ("Snapshot", _step("_snapshot", log)),
        ("Lifecycle", _step("_lifecycle", log)),
    ))
    report = batch.run_refresh(_Engine(), dt.date(2026, 1, 31))
    assert ("end", "_lifetime_value") in log and ("end", "_health") in log
    assert ("writes", "_snapshot") in log and ("end", "_lifecycle") in log
    statuses = {s.label: (s.status, s.detail) for s in report.steps}
    assert statuses["Churn"] == ("failed", "failed: RuntimeError: _churn failed")
    assert statuses["Snapshot"][0] == statuses["Lifecycle"][0] == "ok"
    assert report.status == "partial" and [s.label for s in report.failed] == ["Churn"]


def test_steps_that_read_a_failed_step_are_skipped_with_that_reason(monkeypatch):
    log: list = []
    monkeypatch.setattr(refresh, "STEPS", (
        ("Snapshot", _step("_snapshot", log, fail=True)),
        ("Segments", _step("_segments", log)),
        ("Lifecycle", _step("_lifecycle", log)),
    ))
    report = batch.run_refresh(_Engine(), dt.date(2026, 1, 31))
    assert [(s.status, s.detail) for s in report.steps[1:]] == [
        ("skipped", "skipped: the snapshot step failed")] * 2
    assert ("start", "_segments") not in log


def test_a_step_that_says_skipped_is_recorded_as_skipped(monkeypatch):
    def nothing(engine, as_of, now):
        return refresh.skipped("no orders yet")

    nothing.__name__ = "_clusters"
    monkeypatch.setattr(refresh, "STEPS", (("Clusters", nothing),))
    report = batch.run_refresh(_Engine(), dt.date(2026, 1, 31))
    assert report.steps[0].status == "skipped" and report.status == "ok"


def test_sqlite_runs_the_model_steps_one_after_another(monkeypatch):
    log: list = []
    monkeypatch.setattr(refresh, "STEPS", (("Churn", _step("_churn", log, 0.02)), ("CLV", _step("_lifetime_value", log))))

    class _SQLite:
        class dialect:  # noqa: N801
            name = "sqlite"

    batch.run_refresh(_SQLite(), dt.date(2026, 1, 31))
    assert [entry[:2] for entry in log] == [("start", "_churn"), ("end", "_churn"), ("start", "_lifetime_value"),
                                            ("end", "_lifetime_value")]


def test_sqlite_prepares_the_ahead_steps_while_earlier_steps_run_and_writes_them_in_turn(monkeypatch):
    log: list = []
    first_running = threading.Event()

    def first(engine, as_of, now):
        first_running.set()
        log.append(("start", "_churn", threading.current_thread().name))
        time.sleep(0.2)  # the forecasts are read and fitted meanwhile
        log.append(("end", "_churn"))
        return "churn done"

    first.__name__ = "_churn"

    def prepare_forecasts(engine, as_of, now):
        assert first_running.wait(2)
        log.append(("prepare", "_forecasts", threading.current_thread().name))

        def write():
            log.append(("write", "_forecasts", threading.current_thread().name))
            return "forecasts stored"

        return write

    def prepare_risk(engine, as_of, now):
        raise RuntimeError("signals could not be read")

    monkeypatch.setattr(refresh, "STEPS", (
        ("Churn", first), ("Forecasts", _step("_forecasts", log)), ("Risk", _step("_risk", log)),
        ("Snapshot", _step("_snapshot", log)),
    ))
    monkeypatch.setattr(refresh, "AHEAD", {"_forecasts": prepare_forecasts, "_risk": prepare_risk})

    class _SQLite:
        class dialect:  # noqa: N801
            name = "sqlite"

    report = batch.run_refresh(_SQLite(), dt.date(2026, 1, 31))
    main = threading.current_thread().name
    prepared = next(entry for entry in log if entry[0] == "prepare")
    assert prepared[2].startswith("refresh-ahead") and log.index(prepared) < log.index(("end", "_churn"))
    assert ("write", "_forecasts", main) in log and log.index(("write", "_forecasts", main)) > log.index(("end", "_churn"))
    assert ("start", "_forecasts", main) not in log  # the step is its preparation and its write
    steps = {s.label: (s.status, s.detail) for s in report.steps}
    assert steps["Forecasts"] == ("ok", "forecasts stored")
    assert steps["Risk"] == ("failed", "failed: RuntimeError: signals could not be read")
    assert steps["Snapshot"][0] == "ok" and report.status == "partial"


def test_the_journeys_step_runs_after_lifecycle_and_says_which_sources_are_missing(engine):
    from crm_core import platform
    from tests.test_journeys import AS_OF, seed_shop

    names = [step.__name__ for _, step in refresh.STEPS]
    assert names.index("_journeys") > names.index("_lifecycle") and "_journeys" in refresh.PRESENT_ONLY
    with platform.unit_of_work(engine) as session:
        seed_shop(session)
    step = dict((s.__name__, s) for _, s in refresh.STEPS)["_journeys"]
    outcome = step(engine, AS_OF, dt.datetime(2026, 6, 30, 23))
    assert outcome.status == "ok" and outcome.rows
    assert outcome.detail.startswith("5 customers, 4 buyers, 1 churned") and "no lifecycle stage changes" in outcome.detail


def test_a_step_that_finds_sqlite_busy_runs_again(monkeypatch, tmp_path):
    """The first refresh beside the app: a step reads, someone signs in (the app commits a write), the
    step then writes and SQLite refuses at once (a read snapshot cannot be moved forward). The step runs
    again and lands; a step that stays busy fails after BUSY_ATTEMPTS with the busy message."""
    from sqlalchemy import func, insert, select, update

    from crm_core import platform
    from db import migrate
    from db.engine import make_engine
    from db.models import AppSetting, User

    url = f"sqlite:///{tmp_path / 'busy.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as c:
        c.execute(insert(User).values(username="someone", full_name="Some One", role="analyst",
                                      password_hash="x", is_active=True))
    monkeypatch.setattr(refresh.time, "sleep", lambda seconds: None)
    calls: list[int] = []

    def _journeys(engine_, as_of, now, conflicts: int = 1):
        calls.append(1)
        with platform.unit_of_work(engine_) as session:
            session.execute(select(func.count()).select_from(User)).scalar_one()  # the step reads ...
            if len(calls) <= conflicts:
                with engine_.begin() as app:  # ... the app commits meanwhile ...
                    app.execute(update(User).values(full_name=f"Signed in {time.perf_counter_ns()}"))
            session.add(AppSetting(key=f"{conflicts}-{len(calls)}", value={"ok": True}))  # ... the step writes
        return "written"

    monkeypatch.setattr(refresh, "STEPS", (("Journeys", _journeys),))
    report = batch.run_refresh(engine, dt.date(2026, 1, 31))
    assert [(s.status, s.detail) for s in report.steps] == [("ok", "written")] and len(calls) == 2
    with engine.connect() as c:
        assert c.scalar(select(AppSetting.value).where(AppSetting.key == "1-2")) == {"ok": True}
        assert c.scalar(select(func.count()).select_from(AppSetting).where(AppSetting.key == "1-1")) == 0

    calls.clear()

    def _lifecycle(engine_, as_of, now):
        return _journeys(engine_, as_of, now, conflicts=99)

    monkeypatch.setattr(refresh, "STEPS", (("Lifecycle", _lifecycle),))
    report = batch.run_refresh(engine, dt.date(2026, 1, 31))
    assert report.steps[0].status == "failed" and "busy" in report.steps[0].detail
    assert len(calls) == refresh.BUSY_ATTEMPTS
    engine.dispose()
