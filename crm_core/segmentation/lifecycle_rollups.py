"""Lifecycle rollups: stage counts and time in stage, stage changes per day, and cohort retention.

The batch builds them after it evaluates the stages (`lifecycle.refresh_lifecycle_rollups`). The
readers in `lifecycle.py` take them when they answer the question asked (the same as-of date, cohorts within
COHORT_ROLLUP_MONTHS) and add what happened since they were built: a stage change made by hand
after the build moves one customer from one count to another, and is one more change on its day.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.rollup_state import coverage
from crm_core.platform.sql import calendar_day
from db.models import (
    LIFECYCLE_STAGES,
    Customer,
    CustomerLifecycleHistory,
    RollupCohort,
    RollupLifecycleFlow,
    RollupLifecycleStage,
)

ROLLUP = "lifecycle"
# Cohorts the batch keeps per as-of date: the page shows up to 24 signup months.
COHORT_ROLLUP_MONTHS = 24
NEW_STAGE = ""  # from_stage of a customer's first stage in the flows rollup


def as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


def built_at(session: Session) -> dt.datetime | None:
    state = coverage(session, ROLLUP)
    return None if state is None else state.built_at


def changes_since(session: Session, since: dt.datetime) -> list[tuple[str | None, str, dt.date, int]]:
    """Stage changes of counted customers after the rollup was built: (from, to, day, count).

    The changes are found by time first (an index range, usually empty) and only then checked against
    the customers, so the database never walks the customers to find none."""
    h = CustomerLifecycleHistory
    recent = session.execute(
        select(h.customer_id, h.from_stage, h.to_stage, calendar_day(h.changed_at)).where(h.changed_at >= since)).all()
    if not recent:
        return []
    ids = list({row[0] for row in recent})
    counted: set[int] = set()
    for chunk in range(0, len(ids), 5000):  # a refresh writing its changes right now can add many
        counted.update(session.scalars(select(Customer.id).where(
            Customer.id.in_(ids[chunk:chunk + 5000]), COUNTED_CUSTOMER)))
    found: dict[tuple[str | None, str, dt.date], int] = {}
    for customer_id, from_stage, to_stage, day in recent:
        if customer_id in counted:
            key = (from_stage, to_stage, as_date(day))
            found[key] = found.get(key, 0) + 1
    return [(f, t, d, n) for (f, t, d), n in found.items()]


def stored_stage_counts(session: Session) -> tuple[dict[str, int], dt.date] | None:
    """Customers per stage now: the latest build's counts moved by the changes made since (None: no build)."""
    state = coverage(session, ROLLUP)
    if state is None:
        return None
    counts = {stage: int(n) for stage, n in session.execute(
        select(RollupLifecycleStage.stage, RollupLifecycleStage.customers)
        .where(RollupLifecycleStage.as_of == state.as_of))}
    if not counts:
        return None
    for from_stage, to_stage, _day, n in changes_since(session, state.built_at):
        if from_stage is not None:
            counts[from_stage] = counts.get(from_stage, 0) - n
        counts[to_stage] = counts.get(to_stage, 0) + n
    return {stage: counts.get(stage, 0) for stage in LIFECYCLE_STAGES}, state.as_of


def stored_time_in_stage(session: Session, as_of: dt.date) -> list[dict[str, Any]] | None:
    """Time in stage as the build of as_of measured it, when nothing changed stage since."""
    state = coverage(session, ROLLUP)
    if state is None or changes_since(session, state.built_at):
        return None
    rows = session.execute(
        select(RollupLifecycleStage.stage, RollupLifecycleStage.median_days, RollupLifecycleStage.avg_days,
               RollupLifecycleStage.timed_customers)
        .where(RollupLifecycleStage.as_of == as_of)).all()
    if not rows:
        return None
    found = {stage: (median, mean, n) for stage, median, mean, n in rows}
    return [{"stage": stage, "median_days": found[stage][0], "avg_days": found[stage][1],
             "customers": int(found[stage][2])}
            for stage in LIFECYCLE_STAGES if stage in found and found[stage][0] is not None]


def stored_flows(session: Session, start: dt.date, end: dt.date) -> dict[tuple[str | None, str], int] | None:
    """Stage changes per (from, to) in [start, end]: the rollup's days and the changes since its build."""
    state = coverage(session, ROLLUP)
    if state is None:
        return None
    f = RollupLifecycleFlow
    moves: dict[tuple[str | None, str], int] = {}
    for stored_from, stored_to, n in session.execute(
        select(f.from_stage, f.to_stage, func.sum(f.changes))
        .where(f.day >= start, f.day <= end).group_by(f.from_stage, f.to_stage)
    ):
        key = (stored_from or None, stored_to)
        moves[key] = moves.get(key, 0) + int(n)
    for from_stage, to_stage, day, count in changes_since(session, state.built_at):
        if start <= day <= end:
            moves[(from_stage, to_stage)] = moves.get((from_stage, to_stage), 0) + count
    return moves


def stored_change_count(session: Session, stage: str | None) -> int | None:
    """Every recorded stage change (into `stage`) of counted customers, from the rollup and since."""
    state = coverage(session, ROLLUP)
    if state is None:
        return None
    f = RollupLifecycleFlow
    query = select(func.coalesce(func.sum(f.changes), 0))
    if stage is not None:
        query = query.where(f.to_stage == stage)
    total = int(session.scalar(query) or 0)
    total += sum(n for _f, to_stage, _d, n in changes_since(session, state.built_at) if stage in (None, to_stage))
    return total


def stored_cohorts(session: Session, as_of: dt.date, months: int) -> list[dict[str, Any]] | None:
    """The cohorts of the last `months` signup months as the build of as_of counted them."""
    if months > COHORT_ROLLUP_MONTHS:
        return None
    state = coverage(session, ROLLUP)
    if state is None or state.as_of != as_of:
        return None
    last_index = as_of.year * 12 + as_of.month - 1
    first_index = last_index - (months - 1)
    first_cohort = f"{first_index // 12:04d}-{first_index % 12 + 1:02d}"
    c = RollupCohort
    rows = session.execute(
        select(c.cohort, c.month_offset, c.customers, c.active_customers)
        .where(c.as_of == as_of, c.cohort >= first_cohort).order_by(c.cohort, c.month_offset)).all()
    return [{"cohort": cohort, "month_offset": int(offset), "customers": int(n), "active_customers": int(active),
             "active_share": int(active) / int(n)} for cohort, offset, n, active in rows]
