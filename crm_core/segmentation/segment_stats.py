"""Segment rollups: each segment's members and their revenue, and the profiles the Segments page compares.

The batch writes them after it refreshes the memberships (`refresh_segment_rollups`): members and
revenue of every segment, and the profile (countries, loyalty tiers, lifecycle stages and averages)
of every active segment and of the whole base (segment 0), each dimension in one GROUP BY over all
segments at once. A change made by hand (members added or removed, a segment saved from the page)
refreshes that segment's counts at once (`refresh_segment_stats`); a profile older than its
segment's last change is not used (the page computes that one live).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, and_, delete, func, insert, select, true
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.rollup_state import coverage, mark_built
from crm_core.platform.sql import use_batch_memory
from crm_core.segmentation.rules import CA, _customer_from
from db.models import (
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    RollupSegmentProfile,
    RollupSegmentStats,
    utcnow,
)

ROLLUP = "segments"
BASE = 0  # the segment id the whole base's profile is stored under
NONE_VALUE = "(none)"
memberships = CustomerSegmentMembership.__table__
PROFILE_DISTRIBUTIONS = {
    "country": Customer.country_code,
    "loyalty_tier": LoyaltyAccount.tier,
    "lifecycle_stage": CustomerLifecycleStage.stage,
}
PROFILE_AVERAGES = {
    "order_count": CA.order_count,
    "total_revenue": CA.total_revenue,
    "days_since_last_order": CA.days_since_last_order,
}


def _stats_rows(session: Session, segment_ids: list[int] | None) -> list[dict[str, Any]]:
    m = memberships.c
    scope = [m.is_active == true()]
    if segment_ids is not None:
        scope.append(m.segment_id.in_(segment_ids))
    members: dict[int, Any] = dict(session.execute(select(m.segment_id, func.count()).where(*scope).group_by(m.segment_id)).all())
    revenue: dict[int, Any] = dict(session.execute(
        select(m.segment_id, func.sum(CA.total_revenue))
        .select_from(memberships.join(CustomerAnalytics.__table__, CA.customer_id == m.customer_id)
                     .join(Customer.__table__, Customer.id == m.customer_id))
        .where(*scope, COUNTED_CUSTOMER).group_by(m.segment_id)).all())
    ids = segment_ids if segment_ids is not None else list(session.scalars(select(CustomerSegment.id)))
    now = utcnow()
    return [{"segment_id": i, "members": int(members.get(i, 0)),
             "revenue": Decimal(str(revenue.get(i) or 0)).quantize(Decimal("0.01")), "updated_at": now} for i in ids]


def adjust_segment_stats(session: Session, segment_id: int, customer_ids: list[int], sign: int) -> None:
    """Customers joined (sign 1) or left (-1) a segment by hand: move its count and revenue by theirs, so
    a bulk action in chunks never recounts the whole segment. A segment never counted stays so (the
    page counts it live)."""
    stats = session.get(RollupSegmentStats, segment_id)
    if not customer_ids or stats is None:
        return
    revenue = session.scalar(
        select(func.coalesce(func.sum(CA.total_revenue), 0)).select_from(CustomerAnalytics)
        .join(Customer, Customer.id == CA.customer_id)
        .where(CA.customer_id.in_(customer_ids), COUNTED_CUSTOMER)) or 0
    stats.members = max(0, stats.members + sign * len(customer_ids))
    stats.revenue = Decimal(str(stats.revenue)) + sign * Decimal(str(revenue))
    stats.updated_at = utcnow()
    session.flush()


def refresh_segment_stats(session: Session, segment_ids: list[int]) -> None:
    """Recount the members and revenue of these segments (after a change made by hand)."""
    if not segment_ids:
        return
    session.flush()
    rows = _stats_rows(session, segment_ids)
    session.execute(delete(RollupSegmentStats).where(RollupSegmentStats.segment_id.in_(segment_ids)))
    session.execute(insert(RollupSegmentStats), rows)


def _grouped_profiles(session: Session, scope_ids: list[int]) -> list[dict[str, Any]]:
    """Profile rows of every segment in scope_ids, one GROUP BY per dimension over all of them."""
    m = memberships.c
    joined = _customer_from().join(memberships, memberships.c.customer_id == Customer.id)
    where = [COUNTED_CUSTOMER, m.is_active == true(), m.segment_id.in_(scope_ids)]
    rows: list[dict[str, Any]] = []
    averages = session.execute(
        select(m.segment_id, func.count(), *[func.avg(c) for c in PROFILE_AVERAGES.values()])
        .select_from(joined).where(*where).group_by(m.segment_id)).all()
    for segment_id, customers, *values in averages:
        rows.append({"segment_id": segment_id, "dimension": "", "value": "", "customers": int(customers),
                     "average": None})
        for name, value in zip(PROFILE_AVERAGES, values, strict=True):
            rows.append({"segment_id": segment_id, "dimension": "average", "value": name, "customers": int(customers),
                         "average": None if value is None else float(value)})
    for name, column in PROFILE_DISTRIBUTIONS.items():
        for segment_id, value, n in session.execute(
            select(m.segment_id, column, func.count()).select_from(joined).where(*where).group_by(m.segment_id, column)
        ):
            rows.append({"segment_id": segment_id, "dimension": name, "value": NONE_VALUE if value is None else value,
                         "customers": int(n), "average": None})
    return rows


def live_profile(session: Session, scope: ColumnElement[bool]) -> dict[str, Any]:
    condition = and_(COUNTED_CUSTOMER, scope)
    averages_row = session.execute(
        select(func.count(), *[func.avg(c) for c in PROFILE_AVERAGES.values()])
        .select_from(_customer_from()).where(condition)
    ).one()
    customers = averages_row[0]
    result: dict[str, Any] = {
        "customers": customers,
        "averages": {
            name: None if value is None else round(float(value), 2)
            for name, value in zip(PROFILE_AVERAGES, averages_row[1:], strict=True)
        },
    }
    for name, column in PROFILE_DISTRIBUTIONS.items():
        rows = session.execute(
            select(column, func.count().label("n")).select_from(_customer_from()).where(condition)
            .group_by(column).order_by(func.count().desc(), column)
        ).all()
        result[name] = [
            {"value": value if value is not None else "(none)", "count": n,
             "share": round(n / customers, 4) if customers else 0.0}
            for value, n in rows
        ]
    return result


def _base_profile_rows(session: Session) -> list[dict[str, Any]]:
    profile = live_profile(session, true())
    rows = [{"segment_id": BASE, "dimension": "", "value": "", "customers": profile["customers"], "average": None}]
    rows += [{"segment_id": BASE, "dimension": "average", "value": name, "customers": profile["customers"],
              "average": value} for name, value in profile["averages"].items()]
    for name in PROFILE_DISTRIBUTIONS:
        rows += [{"segment_id": BASE, "dimension": name, "value": entry["value"], "customers": entry["count"],
                  "average": None} for entry in profile[name]]
    revenue = session.scalar(select(func.sum(CA.total_revenue)).select_from(CustomerAnalytics)
                             .join(Customer, Customer.id == CA.customer_id).where(COUNTED_CUSTOMER))
    rows.append({"segment_id": BASE, "dimension": "sum", "value": "total_revenue", "customers": profile["customers"],
                 "average": None if revenue is None else float(revenue)})
    return rows


def refresh_segment_rollups(session: Session, as_of: dt.date) -> dict[str, int]:
    """Members and revenue of every segment; profiles of the base and of every active segment."""
    use_batch_memory(session.connection())
    stats = _stats_rows(session, None)
    session.execute(delete(RollupSegmentStats))
    if stats:
        session.execute(insert(RollupSegmentStats), stats)
    active = list(session.scalars(select(CustomerSegment.id).where(CustomerSegment.is_active.is_(True))))
    profiles = _base_profile_rows(session) + (_grouped_profiles(session, active) if active else [])
    session.execute(delete(RollupSegmentProfile))
    session.execute(insert(RollupSegmentProfile), profiles)
    mark_built(session, ROLLUP, as_of, as_of, True)
    return {"segments": len(stats), "profiles": len(active) + 1}


def stored_stats(session: Session) -> dict[int, tuple[int, Decimal]]:
    return {segment_id: (int(members), Decimal(str(revenue))) for segment_id, members, revenue in session.execute(
        select(RollupSegmentStats.segment_id, RollupSegmentStats.members, RollupSegmentStats.revenue))}


def stored_base_revenue(session: Session) -> Decimal | None:
    """The whole base's revenue to date as the last build summed it."""
    row = session.execute(select(RollupSegmentProfile.average).where(
        RollupSegmentProfile.segment_id == BASE, RollupSegmentProfile.dimension == "sum",
        RollupSegmentProfile.value == "total_revenue")).first()
    if row is None:
        return None
    return Decimal(str(row.average or 0))


def stored_profile(session: Session, segment_id: int) -> dict[str, Any] | None:
    """The stored profile of a segment (BASE: every counted customer), in segment_profile's shape; None
    when there is none, or the segment changed since it was built."""
    state = coverage(session, ROLLUP)
    if state is None:
        return None
    if segment_id != BASE:
        changed = session.scalar(select(RollupSegmentStats.updated_at).where(RollupSegmentStats.segment_id == segment_id))
        if changed is None or changed > state.built_at:
            return None
    rows = session.execute(
        select(RollupSegmentProfile.dimension, RollupSegmentProfile.value, RollupSegmentProfile.customers,
               RollupSegmentProfile.average).where(RollupSegmentProfile.segment_id == segment_id)).all()
    if not rows and segment_id == BASE:
        return None
    total = next((int(n) for dimension, _v, n, _a in rows if dimension == ""), 0)
    averages = {value: (None if average is None else round(float(average), 2))
                for dimension, value, _n, average in rows if dimension == "average"}
    profile: dict[str, Any] = {"customers": total,
                               "averages": {name: averages.get(name) for name in PROFILE_AVERAGES}}
    for name in PROFILE_DISTRIBUTIONS:
        entries = sorted(((value, int(n)) for dimension, value, n, _a in rows if dimension == name),
                         key=lambda entry: (-entry[1], entry[0] == NONE_VALUE, entry[0]))
        profile[name] = [{"value": value, "count": n, "share": round(n / total, 4) if total else 0.0}
                         for value, n in entries]
    return profile
