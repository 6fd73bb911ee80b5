"""Where each rollup stands: the refresh that built it, the last complete day it covers, and when.

A rollup covers the days up to `covered_through`; readers add the days after it live from the
source tables (a day or two, over indexed ranges), so a figure is exact whether or not the refresh
has run today. A refresh that runs during its as-of day covers the day before it: the as-of day is
not over yet.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.platform.dates import end_of
from db.models import CustomerMerge, ImportRun, RollupState, utcnow


@dataclass(frozen=True)
class Coverage:
    name: str
    as_of: dt.date
    covered_through: dt.date
    built_at: dt.datetime


def coverage(session: Session, name: str) -> Coverage | None:
    row = session.get(RollupState, name)
    if row is None:
        return None
    return Coverage(row.name, row.as_of, row.covered_through, row.built_at)


def complete_through(as_of: dt.date, now: dt.datetime) -> dt.date:
    """The last day whose data is complete at `now`, at most as_of."""
    return as_of if now >= end_of(as_of) else as_of - dt.timedelta(days=1)


def history_rewritten_since(session: Session, since: dt.datetime) -> bool:
    """Whether an import or a merge since `since` may have changed past days (orders imported with old
    dates, a merged customer's orders moved to the survivor): then a rollup is rebuilt in full."""
    imported = session.scalar(select(func.max(ImportRun.started_at)).where(ImportRun.entity.in_(("orders", "customers"))))
    merged = session.scalar(select(func.max(CustomerMerge.merged_at)))
    undone = session.scalar(select(func.max(CustomerMerge.undone_at)))
    return any(moment is not None and moment >= since for moment in (imported, merged, undone))


def mark_built(session: Session, name: str, as_of: dt.date, covered_through: dt.date, full_rebuild: bool,
               built_at: dt.datetime | None = None) -> None:
    row = session.get(RollupState, name)
    if row is None:
        row = RollupState(name=name)
        session.add(row)
    row.as_of = as_of
    row.covered_through = covered_through
    row.built_at = built_at or utcnow()
    row.full_rebuild = full_rebuild
    session.flush()
