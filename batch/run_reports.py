"""What the pages read of the refresh runs: the latest runs, the steps of one, and how a step ended
last (so a model's page can say why its figures are missing or old).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core import platform
from db.models import RefreshRun, RefreshRunStep, utcnow

# A run still "running" this long after it started was interrupted (the process died).
INTERRUPTED_AFTER = dt.timedelta(hours=6)


def _status(run: RefreshRun, now: dt.datetime) -> str:
    if run.status == "running" and now - run.started_at > INTERRUPTED_AFTER:
        return "interrupted"
    return run.status


def recent_runs(session: Session, viewer: platform.Actor, limit: int = 20) -> list[dict[str, Any]]:
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


def run_steps(session: Session, viewer: platform.Actor, run_id: int) -> list[dict[str, Any]]:
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


def last_step_status(session: Session, viewer: platform.Actor, step: str) -> StepStatus | None:
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


@dataclass(frozen=True)
class DataVersion:
    """What pages key their caches by: it changes whenever a refresh step lands its output."""

    run_id: int | None
    step_finished_at: dt.datetime | None
    as_of: dt.date | None
    finished_at: dt.datetime | None

    @property
    def key(self) -> str:
        return f"{self.run_id}:{self.step_finished_at.isoformat() if self.step_finished_at else '-'}"


def data_version(session: Session) -> DataVersion:
    """The latest refresh run that landed a step, and when its latest step finished.

    Reveals no personal data (dates and an id), so it takes no viewer: pages read it on every run to
    key their cached figures, which a refresh therefore invalidates as each of its steps commits.
    """
    row = session.execute(
        select(RefreshRunStep.run_id, RefreshRunStep.finished_at)
        .where(RefreshRunStep.finished_at.is_not(None))
        .order_by(RefreshRunStep.finished_at.desc(), RefreshRunStep.run_id.desc()).limit(1)
    ).first()
    if row is None:
        return DataVersion(None, None, None, None)
    run = session.execute(select(RefreshRun.as_of, RefreshRun.finished_at).where(RefreshRun.id == row.run_id)).one()
    return DataVersion(row.run_id, row.finished_at, run.as_of, run.finished_at)
