"""What the Health page reads: the latest scores by level, the biggest movers, one account's history
and advice, and the backtest of the stored levels against churn.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    case,
    func,
    select,
)
from sqlalchemy.orm import Session

from crm_core import customers, platform
from db.models import (
    HEALTH_LEVELS,
    REVENUE_ORDER_STATUSES,
    AccountHealthRun,
    AccountHealthScore,
    Customer,
    Order,
)
from ml.health.estimator import COMPONENTS
from ml.health.scoring import backtest_levels

# A move smaller than this is noise (a dormant account's recency sub-score ticks down a little each
# month): movers, and the improving / declining counts, start here.
MOVER_MIN_POINTS = 5.0

# --------------------------------------------------------------------------- reads for the Health page


def latest_as_of(session: Session) -> dt.date | None:
    return session.scalar(select(func.max(AccountHealthScore.as_of)))


def overview(session: Session, viewer: platform.Actor) -> dict[str, Any] | None:
    """The latest scoring date, customers per level (every level, in order) and averages; None if none."""
    platform.require(viewer, "health.view")
    as_of = latest_as_of(session)
    if as_of is None:
        return None
    h = AccountHealthScore
    found = {
        level: (int(n), float(avg))
        for level, n, avg in session.execute(
            select(h.level, func.count(), func.avg(h.overall)).where(h.as_of == as_of).group_by(h.level)
        ).all()
    }
    total = sum(n for n, _ in found.values())
    summary = session.execute(
        select(func.avg(h.overall), func.sum(case((h.trend >= MOVER_MIN_POINTS, 1), else_=0)),
               func.sum(case((h.trend <= -MOVER_MIN_POINTS, 1), else_=0)), func.avg(h.trend)).where(h.as_of == as_of)
    ).one()
    run = session.get(AccountHealthRun, as_of)
    with_data = session.execute(
        select(*[func.count(getattr(h, name)) for name in COMPONENTS]).where(h.as_of == as_of)
    ).one()
    return {
        "as_of": as_of,
        "customers": total,
        "churned": None if run is None else run.churned,
        "never_bought": None if run is None else run.never_bought,
        "churned_after_days": None if run is None else run.churned_after_days,
        "bands": None if run is None else dict(run.thresholds),
        "bands_source": None if run is None else run.bands_source,
        "mover_min_points": MOVER_MIN_POINTS,
        "components_with_data": dict(zip(COMPONENTS, (int(n) for n in with_data), strict=True)),
        "avg_overall": None if summary[0] is None else round(float(summary[0]), 1),
        "improving": int(summary[1] or 0),
        "declining": int(summary[2] or 0),
        "avg_trend": None if summary[3] is None else round(float(summary[3]), 1),
        "levels": [
            {"level": level, "customers": found.get(level, (0, 0.0))[0],
             "share": found.get(level, (0, 0.0))[0] / total if total else 0.0,
             "avg_overall": round(found[level][1], 1) if level in found else None}
            for level in HEALTH_LEVELS
        ],
    }


def movers(session: Session, viewer: platform.Actor, direction: str = "up", page: int = 1, page_size: int = 25) -> platform.Page:
    """Live accounts whose health moved at least MOVER_MIN_POINTS since ~30 days earlier (the biggest
    moves first), at the latest scoring date."""
    platform.require(viewer, "health.view")
    if direction not in ("up", "down"):
        raise platform.ValidationError("Movers go 'up' or 'down'.")
    if not 1 <= page_size <= 500:
        raise platform.ValidationError("Page size must be between 1 and 500.")
    page = max(1, int(page))
    as_of = latest_as_of(session)
    if as_of is None:
        return platform.Page(rows=[], total=0, page=1, page_size=page_size)
    h = AccountHealthScore
    moved = h.trend >= MOVER_MIN_POINTS if direction == "up" else h.trend <= -MOVER_MIN_POINTS
    conditions = [h.as_of == as_of, moved]
    total = session.scalar(select(func.count()).select_from(h).where(*conditions)) or 0
    order = (h.trend.desc() if direction == "up" else h.trend.asc(), h.customer_id)
    found = session.execute(
        select(h.customer_id, Customer.first_name, Customer.last_name, h.overall, h.trend, h.level,
               h.engagement, h.satisfaction, h.loyalty, h.payment, h.support)
        .join(Customer, Customer.id == h.customer_id)
        .where(*conditions).order_by(*order).limit(page_size).offset((page - 1) * page_size)
    ).all()
    rows = [
        {"customer_id": r.customer_id, "customer": customers.display_name(r.first_name, r.last_name, r.customer_id),
         "overall": r.overall, "previous": round(r.overall - r.trend, 2), "trend": r.trend, "level": r.level,
         "engagement": r.engagement, "satisfaction": r.satisfaction, "loyalty": r.loyalty,
         "payment": r.payment, "support": r.support}
        for r in found
    ]
    return platform.Page(rows=rows, total=int(total), page=page, page_size=page_size)


def _customer(session: Session, customer_id: Any) -> Customer:
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        raise platform.ValidationError(f"A customer id is a whole number, not {customer_id!r}.")
    customer = session.get(Customer, customer_id)
    if customer is None or customers.is_gone(customer.status):
        raise platform.NotFound(f"No customer with id {customer_id}.")
    return customer


def customer_history(session: Session, viewer: platform.Actor, customer_id: int, limit: int = 120) -> list[dict[str, Any]]:
    """A customer's stored scores, oldest first (the last `limit` scoring dates)."""
    platform.require(viewer, "health.view")
    _customer(session, customer_id)
    h = AccountHealthScore
    rows = session.execute(
        select(h.as_of, h.engagement, h.satisfaction, h.loyalty, h.payment, h.support, h.overall, h.level, h.trend)
        .where(h.customer_id == customer_id).order_by(h.as_of.desc()).limit(limit)
    ).all()
    return [dict(r._mapping) for r in reversed(rows)]


def customer_health(session: Session, viewer: platform.Actor, customer_id: int) -> dict[str, Any]:
    """The customer's latest score with risk indicators, recommendations and action items.

    `score` is None when the customer has not been scored yet; `relationship` says why a customer
    was not scored at the latest scoring date (churned or never bought), else None.
    """
    platform.require(viewer, "health.view")
    customer = _customer(session, customer_id)
    latest = session.scalar(
        select(AccountHealthScore).where(AccountHealthScore.customer_id == customer_id)
        .order_by(AccountHealthScore.as_of.desc()).limit(1)
    )
    result: dict[str, Any] = {"customer_id": customer.id,
                              "customer": customers.display_name(customer.first_name, customer.last_name, customer.id), "score": None}
    run = session.scalar(select(AccountHealthRun).order_by(AccountHealthRun.as_of.desc()).limit(1))
    result["relationship"] = None
    if run is not None and (latest is None or latest.as_of < run.as_of):
        # not scored at the latest date: say why (churned or never bought) rather than show an old score as current
        last_order = session.scalar(select(func.max(Order.ordered_at)).where(
            Order.customer_id == customer_id, Order.status.in_(REVENUE_ORDER_STATUSES),
            Order.ordered_at < platform.end_of(run.as_of)))
        if last_order is None:
            result["relationship"] = f"never bought (as of {run.as_of.isoformat()}): not scored as an account"
        else:
            days = (platform.end_of(run.as_of) - last_order).days
            result["relationship"] = (f"churned: last order {days} days before {run.as_of.isoformat()} (more than "
                                      f"{run.churned_after_days}); not scored as an account")
    if latest is not None:
        result["score"] = {
            "as_of": latest.as_of, "overall": latest.overall, "level": latest.level, "trend": latest.trend,
            **{name: getattr(latest, name) for name in COMPONENTS},
            "risk_indicators": list(latest.risk_indicators or []),
            "recommendations": list(latest.recommendations or []),
            "action_items": list(latest.action_items or []),
        }
    return result


def backtest(session: Session, viewer: platform.Actor, lag_days: int) -> dict[str, Any]:
    """`backtest_levels` against the latest scoring date, for the page."""
    platform.require(viewer, "health.view")
    as_of = latest_as_of(session)
    if as_of is None:
        return {"rows": [], "scored_as_of": None, "as_of": None, "auc": None, "customers": 0,
                "horizon_days": None, "churn_rate": None}
    table = backtest_levels(session.connection(), as_of, lag_days)
    return {"rows": table.to_dict("records"), "as_of": as_of, **table.attrs}
