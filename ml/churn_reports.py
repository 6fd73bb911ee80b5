"""What the Churn page reads: the ranked at-risk list, risk mix, model card and realized accuracy.

Every function takes the session and the viewing user and checks `churn.view`; lists are ranked
and paginated in the database.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, and_, case, cast, func, select
from sqlalchemy.orm import Session

from crm_core import customers, platform, segmentation
from db.models import (
    RISK_LEVELS,
    ChurnPrediction,
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerSegmentMembership,
    MLModel,
    User,
)

from . import registry

PAGE_SIZES = (10, 25, 50, 100)


def latest_as_of(session: Session, viewer: platform.Actor) -> dt.date | None:
    platform.require(viewer, "churn.view")
    return session.scalar(select(func.max(ChurnPrediction.as_of)))


def _value():
    return segmentation.churn_value()


def at_risk(
    session: Session, viewer: platform.Actor, *, as_of: dt.date | None = None, risk_levels: list[str] | None = None,
    segment_id: int | None = None, owner_id: int | None = None, page: int = 1, page_size: int = 25,
    after: str | None = None,
) -> platform.Page:
    """Customers ranked by churn probability x value, with their drivers and interventions: a numbered
    page, or with `after` (a cursor, FIRST for the start) the next `page_size` (up to 100) by keyset: by
    rank in the stored ranking, else by (expected loss, customer id)."""
    platform.require(viewer, "churn.view")
    keyset = after is not None
    if keyset:
        page = 0
        platform.check_limit(page_size, max(PAGE_SIZES))
    elif page < 1 or page_size not in PAGE_SIZES:
        raise platform.ValidationError(f"Page must be 1 or more and the page size one of {PAGE_SIZES}.")
    unknown = set(risk_levels or []) - set(RISK_LEVELS)
    if unknown:
        raise platform.ValidationError(f"Unknown risk level(s): {', '.join(sorted(unknown))}.")
    after_position = platform.decode_position(after, RANKED_LIST) if after and _ranked(after) else None
    stored = segmentation.stored_at_risk_page(session, as_of, risk_levels, segment_id, owner_id, page_size + 1,
                                              max(0, page - 1) * page_size,
                                              after_position=after_position if keyset else None, count=not keyset)
    as_of = as_of or session.scalar(select(func.max(ChurnPrediction.as_of)))
    if as_of is None:
        return platform.Page([], None if keyset else 0, page, page_size)
    p = ChurnPrediction
    value = _value()
    conditions = [p.as_of == as_of]
    if risk_levels and stored is None:  # the stored ranking has chosen the levels already: filtering them
        conditions.append(p.risk_level.in_(risk_levels))  # again would steer the planner off the customer index
    query = (
        select(
            p.customer_id, Customer.first_name, Customer.last_name, Customer.email,
            p.probability, p.risk_level, p.confidence, p.drivers, p.interventions,
            cast(value, Float).label("value"), (p.probability * value).label("expected_loss"),
            CustomerLifecycleStage.stage, User.full_name.label("owner"),
        )
        .join(Customer, Customer.id == p.customer_id)
        .outerjoin(CustomerAnalytics, CustomerAnalytics.customer_id == p.customer_id)
        .outerjoin(CustomerLifecycleStage, CustomerLifecycleStage.customer_id == p.customer_id)
        .outerjoin(User, User.id == Customer.account_manager_id)
        .where(*conditions)
    )
    if segment_id is not None:
        query = query.join(CustomerSegmentMembership, and_(
            CustomerSegmentMembership.customer_id == p.customer_id,
            CustomerSegmentMembership.segment_id == segment_id,
            CustomerSegmentMembership.is_active.is_(True),
        ))
    if owner_id is not None:
        query = query.where(Customer.account_manager_id == owner_id)
    next_after: str | None
    if stored is not None:  # one page of positions from the ranking; details for those customers only
        _date, total, ranked = stored
        if after and after_position is None:
            raise platform.InvalidCursor("The churn ranking changed since that page was read: start again "
                                         "without after.")
        if total is None and not keyset:
            counted = query.where(p.risk_level.in_(risk_levels)) if risk_levels else query
            total = session.scalar(select(func.count()).select_from(counted.subquery()))
        next_after = platform.position_cursor(RANKED_LIST, ranked[page_size - 1][3]) if len(ranked) > page_size else None
        position = {customer_id: i for i, (customer_id, _v, _l, _at) in enumerate(ranked[:page_size])}
        rows = sorted(session.execute(query.where(p.customer_id.in_(list(position)))).all(),
                      key=lambda row: position[row.customer_id])
    else:
        if after and _ranked(after):
            raise platform.InvalidCursor("The churn ranking changed since that page was read: start again "
                                         "without after.")
        total = None if keyset else session.scalar(select(func.count()).select_from(query.subquery()))
        rows, next_after = platform.fetch_rows(
            session, query, (platform.SortKey(p.probability * value, descending=True, nullable=True), platform.SortKey(p.customer_id)),
            LIVE_LIST, page=page, page_size=page_size, after=after)
    return platform.Page([
        {
            "customer_id": r.customer_id,
            "name": customers.shown_name(viewer, r.first_name, r.last_name, r.customer_id),
            "email": customers.shown_email(viewer, r.email),
            "probability": r.probability,
            "risk_level": r.risk_level,
            "confidence": r.confidence,
            "value": round(float(r.value or 0), 2),
            "expected_loss": round(float(r.expected_loss or 0), 2),
            "stage": r.stage,
            "owner": r.owner,
            "drivers": "; ".join(f"{d['label']} ({d['value']})" for d in (r.drivers or [])),
            "interventions": "; ".join(r.interventions or []),
        }
        for r in rows
    ], None if keyset else total or 0, page, page_size, next_after)


RANKED_LIST, LIVE_LIST = "churn_ranked", "churn"


def _ranked(after: str) -> bool:
    """Whether a cursor is a position in the stored ranking (rather than a key of the live order)."""
    try:
        return platform.decode_position(after, RANKED_LIST) >= 0
    except platform.InvalidCursor:
        return False


def risk_summary(session: Session, viewer: platform.Actor, as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Customers and value at stake per risk level."""
    platform.require(viewer, "churn.view")
    stored = segmentation.stored_risk_summary(session, as_of)
    if stored is not None:
        levels = {row[0]: row for row in stored}
        return [
            {"risk_level": level, "customers": levels[level][1], "mean_probability": levels[level][2],
             "value": levels[level][3], "expected_loss": levels[level][4]}
            for level in RISK_LEVELS if level in levels
        ]
    as_of = as_of or session.scalar(select(func.max(ChurnPrediction.as_of)))
    if as_of is None:
        return []
    p = ChurnPrediction
    value = _value()
    rows = session.execute(
        select(p.risk_level, func.count(), func.avg(p.probability), func.sum(value), func.sum(p.probability * value))
        .outerjoin(CustomerAnalytics, CustomerAnalytics.customer_id == p.customer_id)
        .where(p.as_of == as_of)
        .group_by(p.risk_level)
    ).all()
    by_level = {r[0]: r for r in rows}
    return [
        {"risk_level": level, "customers": int(by_level[level][1]),
         "mean_probability": float(by_level[level][2] or 0), "value": float(by_level[level][3] or 0),
         "expected_loss": float(by_level[level][4] or 0)}
        for level in RISK_LEVELS if level in by_level
    ]


def customer_prediction(session: Session, viewer: platform.Actor, customer_id: int) -> dict[str, Any]:
    """A customer's latest prediction with drivers, and their probability over time."""
    platform.require(viewer, "churn.view")
    history = session.execute(
        select(ChurnPrediction.as_of, ChurnPrediction.probability, ChurnPrediction.risk_level)
        .where(ChurnPrediction.customer_id == customer_id)
        .order_by(ChurnPrediction.as_of)
    ).all()
    if not history:
        raise platform.NotFound(f"No churn prediction for customer {customer_id}.")
    latest = session.scalar(
        select(ChurnPrediction).where(ChurnPrediction.customer_id == customer_id)
        .order_by(ChurnPrediction.as_of.desc()).limit(1)
    )
    if latest is None:
        raise platform.NotFound(f"No churn prediction for customer {customer_id}.")
    return {
        "customer_id": customer_id, "as_of": latest.as_of, "probability": latest.probability,
        "risk_level": latest.risk_level, "confidence": latest.confidence,
        "drivers": latest.drivers or [], "interventions": latest.interventions or [],
        "history": [{"as_of": h.as_of, "probability": h.probability, "risk_level": h.risk_level} for h in history],
    }


def model_card(session: Session, viewer: platform.Actor) -> dict[str, Any] | None:
    """The active churn model's metrics, calibration, importance, and every version."""
    platform.require(viewer, "churn.view")
    row = session.scalar(select(MLModel).where(MLModel.name == "churn", MLModel.is_active.is_(True)))
    if row is None:
        return None
    return {
        "id": row.id, "version": row.version, "algorithm": row.algorithm, "params": row.params,
        "features": row.features, "training_start": row.training_start, "training_end": row.training_end,
        "metrics": row.metrics or {}, "created_at": row.created_at,
        "versions": registry.versions(session, "churn"),
    }


def realized_accuracy(session: Session, viewer: platform.Actor) -> list[dict[str, Any]]:
    """For predictions whose horizon has passed: per date and risk level, how many churned.

    Precision of a level is the share of its customers who did churn; recall is the share of all
    churners of that date who were in the level or above.
    """
    platform.require(viewer, "churn.view")
    p = ChurnPrediction
    rows = session.execute(
        select(p.as_of, p.risk_level, func.count(), func.sum(case((p.actual_churned.is_(True), 1), else_=0)))
        .where(p.actual_churned.is_not(None))
        .group_by(p.as_of, p.risk_level)
    ).all()
    per_date: dict[dt.date, dict[str, tuple[int, int]]] = {}
    for as_of, level, count, churned in rows:
        per_date.setdefault(as_of, {})[level] = (int(count), int(churned or 0))
    ordered = list(reversed(RISK_LEVELS))  # critical first
    result = []
    for as_of in sorted(per_date):
        levels = per_date[as_of]
        churners = sum(c for _, c in levels.values())
        at_or_above = 0
        for level in ordered:
            count, churned = levels.get(level, (0, 0))
            at_or_above += churned
            if not count:
                continue
            result.append({
                "as_of": as_of, "risk_level": level, "customers": count, "churned": churned,
                "precision": churned / count, "recall_at_or_above": at_or_above / churners if churners else None,
            })
    return result


def owners(session: Session, viewer: platform.Actor) -> list[dict[str, Any]]:
    """Users who own at least one customer, for the owner filter."""
    platform.require(viewer, "churn.view")
    rows = session.execute(
        select(User.id, User.full_name, func.count(Customer.id))
        .join(Customer, Customer.account_manager_id == User.id)
        .group_by(User.id, User.full_name)
        .order_by(User.full_name)
    ).all()
    return [{"id": r[0], "name": r[1], "customers": int(r[2])} for r in rows]
