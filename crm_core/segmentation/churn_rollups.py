"""Churn rollups: the latest predictions summed by risk level, account owner and segment, and ranked.

The batch writes them once the snapshot carries the lifetime values the risks are weighed by
(`refresh_churn_rollups`): each scored customer's value (12-month CLV, else revenue to date) and
expected loss (probability x value), numbered by expected loss (ties by customer id), and the
customers, probability, value and loss per (level, owner) and per (segment, level). The at-risk list
then reads one page of positions, and its counts are sums over a few hundred rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, and_, cast, delete, func, insert, literal, select, true
from sqlalchemy.orm import Session

from crm_core.platform.rollup_state import coverage, mark_built
from crm_core.platform.sql import use_batch_memory
from db.models import (
    ChurnPrediction,
    Customer,
    CustomerAnalytics,
    CustomerSegmentMembership,
    RollupChurnRanking,
    RollupChurnSummary,
)

ROLLUP = "churn"


def churn_value():
    """The value a risk is weighed by: 12-month CLV where the model has it, else revenue to date."""
    return func.coalesce(CustomerAnalytics.clv_12m, CustomerAnalytics.total_revenue, 0)


def refresh_churn_rollups(session: Session) -> dict[str, Any]:
    """Rank and sum the predictions of the latest prediction date (older dates' rows are dropped)."""
    as_of = session.scalar(select(func.max(ChurnPrediction.as_of)))
    session.execute(delete(RollupChurnRanking))
    session.execute(delete(RollupChurnSummary))
    if as_of is None:
        return {"as_of": None, "ranked": 0}
    use_batch_memory(session.connection())
    p = ChurnPrediction
    value = cast(churn_value(), Float)
    loss = p.probability * value
    position = func.row_number().over(order_by=(loss.desc(), p.customer_id))
    ranked = (
        select(literal(as_of).label("as_of"), position.label("position"), p.customer_id, p.risk_level,
               Customer.account_manager_id.label("owner_id"), value.label("value"), loss.label("expected_loss"))
        .join(Customer, Customer.id == p.customer_id)
        .outerjoin(CustomerAnalytics, CustomerAnalytics.customer_id == p.customer_id)
        .where(p.as_of == as_of)
    )
    columns = ["as_of", "position", "customer_id", "risk_level", "owner_id", "value", "expected_loss"]
    session.execute(insert(RollupChurnRanking).from_select(columns, ranked))
    r = RollupChurnRanking
    summary_columns = ["as_of", "risk_level", "owner_id", "segment_id", "customers", "probability_sum", "value",
                       "expected_loss"]
    probability = func.sum(p.probability)
    by_owner = (
        select(r.as_of, r.risk_level, r.owner_id, literal(0), func.count(), probability, func.sum(r.value),
               func.sum(r.expected_loss))
        .join(p, and_(p.as_of == r.as_of, p.customer_id == r.customer_id))
        .where(r.as_of == as_of).group_by(r.as_of, r.risk_level, r.owner_id)
    )
    session.execute(insert(RollupChurnSummary).from_select(summary_columns, by_owner))
    m = CustomerSegmentMembership
    by_segment = (
        select(r.as_of, r.risk_level, literal(None), m.segment_id, func.count(), probability, func.sum(r.value),
               func.sum(r.expected_loss))
        .join(p, and_(p.as_of == r.as_of, p.customer_id == r.customer_id))
        .join(m, and_(m.customer_id == r.customer_id, m.is_active.is_(True)))
        .where(r.as_of == as_of).group_by(r.as_of, r.risk_level, m.segment_id)
    )
    session.execute(insert(RollupChurnSummary).from_select(summary_columns, by_segment))
    mark_built(session, ROLLUP, as_of, as_of, True)
    ranked_rows = session.scalar(select(func.count()).select_from(r)) or 0
    return {"as_of": as_of, "ranked": int(ranked_rows)}


def _current(session: Session, as_of: dt.date | None) -> dt.date | None:
    """The ranking's date, when it is of the latest predictions (and of as_of, when one is asked for)."""
    state = coverage(session, ROLLUP)
    if state is None:
        return None
    latest = session.scalar(select(func.max(ChurnPrediction.as_of)))
    if latest != state.as_of or (as_of is not None and as_of != state.as_of):
        return None
    return state.as_of


def stored_risk_summary(session: Session, as_of: dt.date | None) -> list[tuple[str, int, float, float, float]] | None:
    """(level, customers, mean probability, value, expected loss) per level, or None without a current rollup."""
    ranked_as_of = _current(session, as_of)
    if ranked_as_of is None:
        return None
    s = RollupChurnSummary
    return [(level, int(n), float(probability or 0) / int(n) if n else 0.0, float(value or 0), float(loss or 0))
            for level, n, probability, value, loss in session.execute(
                select(s.risk_level, func.sum(s.customers), func.sum(s.probability_sum), func.sum(s.value),
                       func.sum(s.expected_loss))
                .where(s.as_of == ranked_as_of, s.segment_id == 0).group_by(s.risk_level))]


def stored_at_risk_page(session: Session, as_of: dt.date | None, risk_levels: list[str] | None,
                        segment_id: int | None, owner_id: int | None, limit: int, offset: int,
                        after_position: int | None = None, count: bool = True,
                        ) -> tuple[dt.date, int | None, list[tuple[int, float, float, int]]] | None:
    """(date, total or None when the rollups cannot tell or `count` is off, [(customer, value, expected
    loss, position)] of one page) in rank order, from `offset` or after the rank `after_position`; None
    without a current rollup."""
    ranked_as_of = _current(session, as_of)
    if ranked_as_of is None:
        return None
    r = RollupChurnRanking

    def ranked(level_condition: Any, take: int, skip: int) -> list[tuple[int, float, float, int]]:
        conditions: list[Any] = [r.as_of == ranked_as_of, level_condition]
        if owner_id is not None:
            conditions.append(r.owner_id == owner_id)
        query = select(r.customer_id, r.value, r.expected_loss, r.position).where(*conditions)
        if segment_id is not None:
            m = CustomerSegmentMembership
            query = query.where(select(m.id).where(m.segment_id == segment_id, m.is_active == true(),
                                                   m.customer_id == r.customer_id).exists())
        query = query.order_by(r.position).limit(take)
        query = query.offset(skip) if after_position is None else query.where(r.position > after_position)
        return [(int(c), float(v), float(loss), int(at)) for c, v, loss, at in session.execute(query)]

    if risk_levels and len(risk_levels) > 1:
        # One walk down the (date, level, position) index per level, merged by position: an IN list
        # over the index would read every customer of those levels and sort them.
        merged = sorted((row for level in risk_levels for row in ranked(r.risk_level == level, offset + limit, 0)
                         if after_position is None or row[3] > after_position), key=lambda row: row[3])
        rows = merged[offset:offset + limit] if after_position is None else merged[:limit]
    else:
        rows = ranked(r.risk_level == risk_levels[0] if risk_levels else true(), limit, offset)
    s = RollupChurnSummary
    total: int | None = None
    if count and (segment_id is None or owner_id is None):
        where: list[Any] = [s.as_of == ranked_as_of, s.segment_id == (segment_id or 0)]
        if risk_levels:
            where.append(s.risk_level.in_(risk_levels))
        if owner_id is not None:
            where.append(s.owner_id == owner_id)
        total = int(session.scalar(select(func.coalesce(func.sum(s.customers), 0)).where(*where)) or 0)
    return ranked_as_of, total, rows
