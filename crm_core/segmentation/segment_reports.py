"""What the Segments page reads: segments with their member counts, size over time, members one page
at a time, a segment's profile and the comparison of two segments.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

from sqlalchemy import (
    and_,
    case,
    func,
    or_,
    select,
    true,
)
from sqlalchemy.orm import Session

from crm_core.customers.rules import display_name
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import data_date, midnight
from crm_core.platform.errors import ValidationError
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.segmentation.rules import CA, COUNTED_CUSTOMER, _customer_from
from crm_core.segmentation.segment_stats import (
    BASE,
    live_profile,
    stored_base_revenue,
    stored_profile,
    stored_stats,
)
from crm_core.segmentation.segments import active_member_count, get_segment, memberships
from db.models import (
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerSegment,
    LoyaltyAccount,
)


def _open_members(segment_id: int):
    return select(memberships.c.customer_id).where(
        memberships.c.segment_id == segment_id, memberships.c.is_active == true()
    )


def list_segments(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """All segments by priority with their size and share of revenue."""
    require(viewer, "segments.view")
    stored = stored_stats(session)
    total: Any = stored_base_revenue(session) if stored else None
    segment_ids = list(session.scalars(select(CustomerSegment.id)))
    missing = [i for i in segment_ids if i not in stored]
    counts: dict[int, int] = {i: members for i, (members, _revenue) in stored.items()}
    revenue: dict[int, Any] = {i: value for i, (_members, value) in stored.items()}
    if missing:  # never counted by a refresh: count those now
        m = memberships.c
        counts.update(session.execute(
            select(m.segment_id, func.count()).where(m.is_active == true(), m.segment_id.in_(missing))
            .group_by(m.segment_id)).all())
        revenue.update(session.execute(
            select(m.segment_id, func.sum(CA.total_revenue))
            .select_from(memberships.join(CustomerAnalytics.__table__, CA.customer_id == m.customer_id)
                         .join(Customer.__table__, Customer.id == m.customer_id))
            .where(m.is_active == true(), m.segment_id.in_(missing), COUNTED_CUSTOMER)
            .group_by(m.segment_id)).all())
    if total is None:
        total = session.scalar(
            select(func.sum(CA.total_revenue)).select_from(CustomerAnalytics).join(Customer, Customer.id == CA.customer_id)
            .where(COUNTED_CUSTOMER)
        ) or 0
    segments = session.scalars(select(CustomerSegment).order_by(CustomerSegment.priority, CustomerSegment.name)).all()
    return [
        {
            "id": s.id,
            "name": s.name,
            "type": s.segment_type,
            "kind": s.kind,
            "members": counts.get(s.id, 0),
            "priority": s.priority,
            "active": s.is_active,
            "is_system": s.is_system,
            "description": s.description,
            "revenue_share": round(float(revenue.get(s.id) or 0) / float(total), 4) if total else 0.0,
            "last_refreshed_at": s.last_refreshed_at,
            "rules": s.rules,
            "version": s.version,
        }
        for s in segments
    ]


def _month_starts(last: dt.date, months: int) -> list[dt.date]:
    starts = []
    year, month = last.year, last.month
    for _ in range(months):
        starts.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def segment_size_history(session: Session, viewer: Actor, segment_id: int, months: int = 12,
                 as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Members at each month end for the last `months` months up to as_of (one scan of the rows)."""
    require(viewer, "segments.view")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise ValidationError("Ask for 1 to 120 months of history.")
    segment = get_segment(session, segment_id)
    starts = _month_starts(as_of or data_date(session).day, months)
    ends = [midnight(_next_month(start)) for start in starts]
    m = memberships.c
    row = session.execute(
        select(*[
            func.coalesce(func.sum(case((and_(m.entered_at < end, or_(m.left_at.is_(None), m.left_at >= end)), 1),
                                        else_=0)), 0)
            for end in ends
        ]).where(m.segment_id == segment.id)
    ).one()
    return [{"month": start.strftime("%Y-%m"), "members": int(n)} for start, n in zip(starts, row, strict=True)]


MEMBER_SORTS: dict[str, Any] = {
    "id": Customer.id,
    "name": Customer.last_name,
    "email": Customer.email,
    "country": Customer.country_code,
    "order_count": CA.order_count,
    "total_revenue": CA.total_revenue,
    "days_since_last_order": CA.days_since_last_order,
    "churn_probability": CA.churn_probability,
    "entered_at": memberships.c.entered_at,
}


def _member_select(segment_id: int):
    return (
        select(
            Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.country_code,
            Customer.city, Customer.status, CA.order_count, CA.total_revenue, CA.days_since_last_order,
            CA.churn_probability, LoyaltyAccount.tier, CustomerLifecycleStage.stage, memberships.c.confidence,
            memberships.c.assignment, memberships.c.entered_at,
        )
        .select_from(_customer_from().join(memberships, memberships.c.customer_id == Customer.id))
        .where(memberships.c.segment_id == segment_id, memberships.c.is_active == true())
    )


def _member_row(r) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": display_name(r.first_name, r.last_name, r.id),
        "email": r.email,
        "country": r.country_code,
        "city": r.city,
        "status": r.status,
        "order_count": r.order_count,
        "total_revenue": r.total_revenue,
        "days_since_last_order": r.days_since_last_order,
        "churn_probability": r.churn_probability,
        "loyalty_tier": r.tier,
        "lifecycle_stage": r.stage,
        "confidence": r.confidence,
        "assignment": r.assignment,
        "entered_at": r.entered_at,
    }


def segment_members(session: Session, viewer: Actor, segment_id: int, page: int = 1, page_size: int = 50,
            sort_by: str = "total_revenue", descending: bool = True, after: str | None = None) -> Page:
    """One page of a segment's current members (names and e-mails: personal data, so it needs the
    customer permission too); sort_by is one of MEMBER_SORTS (nulls last). A numbered page, or with
    `after` (a cursor, FIRST for the start) the next `page_size` by keyset."""
    require(viewer, "segments.view")
    require(viewer, "customers.view")
    if sort_by not in MEMBER_SORTS:
        raise ValidationError(f"Cannot sort by {sort_by!r}; choose one of: {', '.join(MEMBER_SORTS)}.")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 1000:
        raise ValidationError("The page size must be from 1 to 1000.")
    segment = get_segment(session, segment_id)
    total = None if after is not None else active_member_count(session, segment.id)
    page = 0 if after is not None else max(1, int(page))
    column = MEMBER_SORTS[sort_by]
    m = memberships.c
    if column.table is Customer.__table__:
        ranked = (select(Customer.id).select_from(memberships.join(Customer.__table__, Customer.id == m.customer_id))
                  .where(m.segment_id == segment.id, m.is_active == true()))
    else:  # a snapshot or membership column: rank the members without reading the customers table
        ranked = (select(m.customer_id.label("id"))
                  .select_from(memberships.outerjoin(CustomerAnalytics.__table__, CA.customer_id == m.customer_id))
                  .where(m.segment_id == segment.id, m.is_active == true()))
    keys = (SortKey(column, descending=descending, nullable=True), SortKey(m.customer_id))
    found, next_after = fetch_rows(session, ranked, keys, f"segment_members:{sort_by}:{int(descending)}",
                                   page=page, page_size=page_size, after=after)
    position = {r.id: i for i, r in enumerate(found)}
    rows = sorted(session.execute(_member_select(segment.id).where(Customer.id.in_(list(position)))).all(),
                  key=lambda r: position[r.id])
    return Page([_member_row(r) for r in rows], total, page, page_size, next_after)


def iter_member_rows(session: Session, viewer: Actor, segment_id: int, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """All current members for a CSV export, streamed from a server-side cursor `batch` rows at a time.
    An export of personal data: it needs `customers.export` and writes an audit row (in the caller's
    transaction) with the segment and how many members it holds."""
    require(viewer, "segments.view")
    require(viewer, "customers.export")
    segment = get_segment(session, segment_id)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValidationError("The batch size must be a positive whole number.")
    members = session.scalar(select(func.count()).select_from(_open_members(segment.id).subquery())) or 0
    record_audit(session, viewer, "segment.export_members", "segment", segment.id,
                 after={"segment": segment.name, "members": members})

    def rows() -> Iterator[dict[str, Any]]:
        query = _member_select(segment.id).order_by(Customer.id).execution_options(yield_per=batch)
        for r in session.execute(query):
            yield _member_row(r)

    return rows()


def _segment_profile(session: Session, segment_id: int) -> dict[str, Any]:
    stored = stored_profile(session, segment_id)
    return stored if stored is not None else live_profile(session, Customer.id.in_(_open_members(segment_id)))


def segment_profile(session: Session, viewer: Actor, segment_id: int) -> dict[str, Any]:
    """Members against the whole customer base: countries, tiers, stages and averages (as of the last
    refresh, or computed now for a segment changed since)."""
    require(viewer, "segments.view")
    segment = get_segment(session, segment_id)
    base = stored_profile(session, BASE)
    return {
        "segment": {"id": segment.id, "name": segment.name},
        "members": _segment_profile(session, segment.id),
        "base": base if base is not None else live_profile(session, true()),
    }


def compare_segments(session: Session, viewer: Actor, segment_a: int, segment_b: int) -> dict[str, Any]:
    """Sizes, overlap and profiles of two segments side by side."""
    require(viewer, "segments.view")
    a, b = get_segment(session, segment_a), get_segment(session, segment_b)
    size_a, size_b = active_member_count(session, a.id), active_member_count(session, b.id)
    in_a, in_b = memberships.alias(), memberships.alias()
    overlap = session.scalar(
        select(func.count(func.distinct(in_a.c.customer_id)))
        .select_from(in_a.join(in_b, in_b.c.customer_id == in_a.c.customer_id))
        .where(in_a.c.segment_id == a.id, in_a.c.is_active == true(),
               in_b.c.segment_id == b.id, in_b.c.is_active == true())
    ) or 0
    union = size_a + size_b - overlap
    return {
        "a": {"id": a.id, "name": a.name, "members": size_a},
        "b": {"id": b.id, "name": b.name, "members": size_b},
        "overlap": overlap,
        "only_a": size_a - overlap,
        "only_b": size_b - overlap,
        "jaccard": round(overlap / union, 4) if union else 0.0,
        "profiles": {"a": _segment_profile(session, a.id), "b": _segment_profile(session, b.id)},
    }
