"""Where each rollup stands: the refresh that built it, the last complete day it covers, and when.

A rollup covers the days up to `covered_through`, or (the daily sales) what was placed before its
`cutoff`; readers add what came after it live from the source tables (the hours since the refresh,
over indexed ranges), so a figure is exact whether or not the refresh has run today.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import CustomerMerge, DataSubjectRequest, ImportRun, RollupState, RollupSummary, utcnow


@dataclass(frozen=True)
class Coverage:
    name: str
    as_of: dt.date
    covered_through: dt.date
    built_at: dt.datetime
    cutoff: dt.datetime | None


def coverage(session: Session, name: str) -> Coverage | None:
    row = session.get(RollupState, name)
    if row is None:
        return None
    return Coverage(row.name, row.as_of, row.covered_through, row.built_at, row.cutoff)


def history_rewritten_since(session: Session, since: dt.datetime) -> bool:
    """Whether an import, a merge (or its undoing) or an erasure since `since` may have changed past days
    (orders imported with old dates, a merged customer's orders moved to the survivor, a customer no
    longer counted): then a rollup is rebuilt in full, and readers do not add to it."""
    imported = session.scalar(select(func.max(ImportRun.started_at)).where(ImportRun.entity.in_(("orders", "customers"))))
    merged = session.scalar(select(func.max(CustomerMerge.merged_at)))
    undone = session.scalar(select(func.max(CustomerMerge.undone_at)))
    erased = session.scalar(select(func.max(DataSubjectRequest.completed_at))
                            .where(DataSubjectRequest.request_type == "erasure"))
    return any(moment is not None and moment >= since for moment in (imported, merged, undone, erased))


def mark_built(session: Session, name: str, as_of: dt.date, covered_through: dt.date, full_rebuild: bool,
               built_at: dt.datetime | None = None, cutoff: dt.datetime | None = None) -> None:
    row = session.get(RollupState, name)
    if row is None:
        row = RollupState(name=name)
        session.add(row)
    row.as_of = as_of
    row.covered_through = covered_through
    row.built_at = built_at or utcnow()
    row.full_rebuild = full_rebuild
    row.cutoff = cutoff
    session.flush()


def replace_summary(session: Session, name: str, as_of: dt.date, payload: dict) -> None:
    """Store the one summary called `name` (a figure a batch step computes whole, as JSON), replacing
    the previous one whatever its date."""
    session.execute(delete(RollupSummary).where(RollupSummary.name == name))
    session.add(RollupSummary(name=name, as_of=as_of, built_at=utcnow(), payload=payload))
    session.flush()
