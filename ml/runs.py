"""Refresh runs and steps as recorded in the database: written by the batch, read by the pages.

Each run and each of its steps is committed as it starts and ends, in its own short transaction,
so a step that fails (or a process that dies) leaves the record of what happened: start, end,
status (ok / skipped / failed), the reason, and the rows the step wrote.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import Engine, func, insert, select, update
from sqlalchemy.orm import Session

from crm_core import platform
from db.models import RefreshRun, RefreshRunStep, utcnow

DETAIL_LIMIT = 2_000
# A run still "running" this long after it started was interrupted (the process died).
INTERRUPTED_AFTER = dt.timedelta(hours=6)


class RunLog(Protocol):
    """Where the refresh records its run and steps."""

    def start(self, as_of: dt.date, steps: list[tuple[str, str]]) -> int | None: ...

    def step_started(self, step: str) -> None: ...

    def step_finished(self, step: str, status: str, seconds: float, detail: str, rows: int | None) -> None: ...

    def finish(self, status: str, seconds: float) -> None: ...


class NoRunLog:
    """Records nothing (for stand-in steps in tests)."""

    def start(self, as_of, steps):
        return None

    def step_started(self, step):
        pass

    def step_finished(self, step, status, seconds, detail, rows):
        pass

    def finish(self, status, seconds):
        pass


class DatabaseRunLog:
    """Records the run in `refresh_runs` and `refresh_run_steps`, one short transaction per event."""

    def __init__(self, engine: Engine, triggered_by: str = "system"):
        self.engine = engine
        self.triggered_by = triggered_by[:64]
        self.run_id: int | None = None

    def start(self, as_of: dt.date, steps: list[tuple[str, str]]) -> int:
        with platform.unit_of_work(self.engine) as session:
            connection = session.connection()
            self.run_id = connection.execute(
                insert(RefreshRun).values(as_of=as_of, status="running", triggered_by=self.triggered_by,
                                          started_at=utcnow()).returning(RefreshRun.id)
            ).scalar_one()
            connection.execute(insert(RefreshRunStep), [
                {"run_id": self.run_id, "position": position, "step": step, "label": label[:120], "status": "running"}
                for position, (step, label) in enumerate(steps, start=1)
            ])
        return self.run_id

    def _update_step(self, step: str, **values: Any) -> None:
        with platform.unit_of_work(self.engine) as session:
            session.execute(update(RefreshRunStep)
                            .where(RefreshRunStep.run_id == self.run_id, RefreshRunStep.step == step).values(**values))

    def step_started(self, step: str) -> None:
        self._update_step(step, started_at=utcnow())

    def step_finished(self, step: str, status: str, seconds: float, detail: str, rows: int | None) -> None:
        self._update_step(step, status=status, finished_at=utcnow(), seconds=round(seconds, 3),
                          detail=detail[:DETAIL_LIMIT], rows_written=rows)

    def finish(self, status: str, seconds: float) -> None:
        with platform.unit_of_work(self.engine) as session:
            session.execute(update(RefreshRun).where(RefreshRun.id == self.run_id)
                            .values(status=status, finished_at=utcnow(), seconds=round(seconds, 3)))


# --------------------------------------------------------------------------- reads for the pages


def _status(run: RefreshRun, now: dt.datetime) -> str:
    if run.status == "running" and now - run.started_at > INTERRUPTED_AFTER:
        return "interrupted"
    return run.status


def recent_runs(session: Session, viewer, limit: int = 20) -> list[dict[str, Any]]:
    """The latest runs, newest first, with the count of steps per status."""
    platform.require(viewer, "refresh.run")
    runs = session.scalars(select(RefreshRun).order_by(RefreshRun.started_at.desc(), RefreshRun.id.desc())
                           .limit(limit)).all()
    if not runs:
        return []
    counts: dict[int, dict[str, int]] = {}
    for run_id, status, n in session.execute(
        select(RefreshRunStep.run_id, RefreshRunStep.status, func.count())
        .where(RefreshRunStep.run_id.in_([r.id for r in runs]))
        .group_by(RefreshRunStep.run_id, RefreshRunStep.status)
    ):
        counts.setdefault(run_id, {})[status] = n
    now = utcnow()
    return [
        {"id": r.id, "as_of": r.as_of, "status": _status(r, now), "triggered_by": r.triggered_by,
         "started_at": r.started_at, "finished_at": r.finished_at, "seconds": r.seconds,
         "ok": counts.get(r.id, {}).get("ok", 0), "skipped": counts.get(r.id, {}).get("skipped", 0),
         "failed": counts.get(r.id, {}).get("failed", 0)}
        for r in runs
    ]


def run_steps(session: Session, viewer, run_id: int) -> list[dict[str, Any]]:
    """The steps of one run, in order."""
    platform.require(viewer, "refresh.run")
    rows = session.scalars(select(RefreshRunStep).where(RefreshRunStep.run_id == run_id)
                           .order_by(RefreshRunStep.position)).all()
    return [
        {"position": s.position, "step": s.step, "label": s.label, "status": s.status, "started_at": s.started_at,
         "finished_at": s.finished_at, "seconds": s.seconds, "rows_written": s.rows_written, "detail": s.detail}
        for s in rows
    ]


@dataclass(frozen=True)
class StepStatus:
    """How a step ended in the latest run that got to it."""

    step: str
    status: str
    detail: str | None
    as_of: dt.date
    finished_at: dt.datetime | None


def last_step_status(session: Session, viewer, step: str) -> StepStatus | None:
    """The step's outcome in the most recent run that finished it (None when it never ran).

    Pages of a model call this to say why the model's figures are missing or old; it reveals no
    personal data, so any signed-in viewer of such a page may see it.
    """
    row = session.execute(
        select(RefreshRunStep.status, RefreshRunStep.detail, RefreshRun.as_of, RefreshRunStep.finished_at)
        .join(RefreshRun, RefreshRun.id == RefreshRunStep.run_id)
        .where(RefreshRunStep.step == step, RefreshRunStep.status.in_(("ok", "skipped", "failed")))
        .order_by(RefreshRunStep.run_id.desc()).limit(1)
    ).first()
    return None if row is None else StepStatus(step, row.status, row.detail, row.as_of, row.finished_at)
