"""What the Risk reviews page reads: the queue, one case with its signals and recent activity, the
score distribution, each rule's and the model's precision against reviewed outcomes, precision and
recall against the simulator's planted truth, and the replay of a draft rule over past days."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
from sqlalchemy import case, func, or_, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.actors import Actor
from crm_core.platform.dates import check_as_of, end_of
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import replace_summary
from crm_core.risk.decisions import decisions_in_force
from crm_core.risk.identity import identity_status
from crm_core.risk.rules import condition_signals, describe, evaluate, parse_condition
from crm_core.risk.scoring import ANOMALY_FROM, LEVEL_FLOORS, REVIEW_THRESHOLD
from crm_core.risk.signals import SIGNALS_BY_NAME, compute_signals
from db.models import (
    RISK_ACTIONS,
    RISK_SCORE_TYPES,
    Chargeback,
    Customer,
    Order,
    PlantedRisk,
    RiskReview,
    RiskRule,
    RiskScore,
    RollupSummary,
    SignInEvent,
    utcnow,
)

CONFIRMED = ("restricted", "blocked")  # a reviewed outcome that confirms the risk
MAX_REPLAY_DAYS = 365
UNDONE = ("returned", "refunded")


def _name(first: str | None, last: str | None, customer_id: int) -> str:
    return f"{first or ''} {last or ''}".strip() or f"Customer #{customer_id}"


def latest_score_date(session: Session) -> dt.date | None:
    return session.scalar(select(func.max(RiskScore.as_of)))


def review_queue(session: Session, viewer: Actor, *, status: str = "open", risk_type: str | None = None,
                 overdue_only: bool = False, page: int = 1, page_size: int = 25,
                 now: dt.datetime | None = None) -> Page:
    """Reviews by score (highest first), then age (oldest first), one page at a time."""
    require(viewer, "risk.view")
    now = now or utcnow()
    query = select(RiskReview, Customer.first_name, Customer.last_name).join(
        Customer, Customer.id == RiskReview.customer_id).where(RiskReview.status == status)
    if risk_type:
        query = query.where(RiskReview.risk_type == risk_type)
    if overdue_only:
        query = query.where(RiskReview.due_at < now)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(RiskReview.score.desc(), RiskReview.opened_at, RiskReview.id)
                           .limit(page_size).offset((max(page, 1) - 1) * page_size)).all()
    out = []
    for review, first, last in rows:
        out.append({
            "review": review.id, "customer_id": review.customer_id, "customer": _name(first, last, review.customer_id),
            "risk_type": review.risk_type, "score": review.score, "source": review.source,
            "signals": ", ".join(f["name"] for f in (review.fired or [])) or "score only",
            "age_hours": round((now - review.opened_at).total_seconds() / 3600, 1),
            "due_at": review.due_at, "overdue": review.status == "open" and review.due_at < now,
            "status": review.status, "reason": review.reason, "version": review.version,
        })
    return Page(out, total, page, page_size)


def queue_summary(session: Session, viewer: Actor, now: dt.datetime | None = None) -> dict[str, Any]:
    require(viewer, "risk.view")
    now = now or utcnow()
    row = session.execute(select(
        func.sum(case((RiskReview.status == "open", 1), else_=0)),
        func.sum(case(((RiskReview.status == "open") & (RiskReview.due_at < now), 1), else_=0)),
        func.sum(case((RiskReview.status.in_(CONFIRMED), 1), else_=0)),
        func.sum(case((RiskReview.status == "approved", 1), else_=0)),
    )).one()
    return {"open": int(row[0] or 0), "overdue": int(row[1] or 0), "confirmed": int(row[2] or 0),
            "approved": int(row[3] or 0)}


def review_detail(session: Session, viewer: Actor, review_id: int) -> dict[str, Any]:
    """One case: the rules that fired with their conditions, the customer's signals now, recent
    orders, sign-ins and chargebacks, identity status and decisions in force."""
    require(viewer, "risk.view")
    review = session.get(RiskReview, review_id)
    if review is None:
        raise NotFound(f"Review {review_id} does not exist.")
    customer = session.get(Customer, review.customer_id)
    if customer is None:
        raise NotFound(f"Customer {review.customer_id} does not exist.")
    rule_ids = [f["id"] for f in (review.fired or [])]
    rules = {r.id: r for r in session.scalars(select(RiskRule).where(RiskRule.id.in_(rule_ids)))} if rule_ids else {}
    fired = [{"rule": f["name"], "type": rules[f["id"]].risk_type if f["id"] in rules else "",
              "weight": rules[f["id"]].weight if f["id"] in rules else None,
              "condition": describe(rules[f["id"]].condition) if f["id"] in rules else "(rule deleted)"}
             for f in (review.fired or [])]
    as_of = review.opened_at.date()
    signals = compute_signals(session, as_of, [customer.id])
    values = signals.frame.iloc[0].to_dict() if len(signals.frame) else {}
    signal_rows = [{"signal": SIGNALS_BY_NAME[name].label, "value": None if value != value else round(float(value), 3)}
                   for name, value in values.items()]
    orders = session.execute(select(Order.order_number, Order.ordered_at, Order.status, Order.total).where(
        Order.customer_id == customer.id).order_by(Order.ordered_at.desc()).limit(10)).all()
    sign_ins = session.execute(select(SignInEvent.signed_in_at, SignInEvent.device_id, SignInEvent.ip_address,
                                      SignInEvent.city, SignInEvent.country_code).where(
        SignInEvent.customer_id == customer.id).order_by(SignInEvent.signed_in_at.desc()).limit(10)).all()
    chargebacks = session.execute(select(Chargeback.opened_at, Chargeback.amount, Chargeback.reason,
                                         Chargeback.status).where(Chargeback.customer_id == customer.id)
                                  .order_by(Chargeback.opened_at.desc()).limit(10)).all()
    return {
        "review": {"id": review.id, "status": review.status, "risk_type": review.risk_type, "score": review.score,
                   "anomaly": review.anomaly, "opened_at": review.opened_at, "due_at": review.due_at,
                   "reason": review.reason, "version": review.version, "source": review.source},
        "customer": {"id": customer.id, "name": _name(customer.first_name, customer.last_name, customer.id),
                     "email": customer.email, "country": customer.country_code, "status": customer.status,
                     "signed_up_at": customer.signed_up_at},
        "fired": fired, "signals": signal_rows, "left_out": signals.left_out,
        "orders": [dict(r._mapping) for r in orders], "sign_ins": [dict(r._mapping) for r in sign_ins],
        "chargebacks": [dict(r._mapping) for r in chargebacks],
        "identity": identity_status(session, customer.id),
        "decisions": [{"id": d.id, "action": d.action, "reason": d.reason, "expires_at": d.expires_at,
                       "order_limit": d.order_limit} for d in decisions_in_force(session, customer.id)],
    }


DISTRIBUTION_SUMMARY = "risk_distribution"
TRUTH_SUMMARY = "risk_truth_quality"


def store_score_distribution(session: Session, as_of: dt.date) -> None:
    """The risk step's last act: the date's distribution, stored so the page need not read every score."""
    found = _score_distribution(session, as_of)
    replace_summary(session, DISTRIBUTION_SUMMARY, as_of, {k: v for k, v in found.items() if k != "as_of"})
    replace_summary(session, TRUTH_SUMMARY, as_of, {"rows": _truth_quality(session, as_of, REVIEW_THRESHOLD)})


def score_distribution(session: Session, viewer: Actor, as_of: dt.date | None = None) -> dict[str, Any]:
    """Customers per level for each risk type and overall, per action, and at or above the review
    threshold, as of the latest scored date (as the risk step stored it, or counted)."""
    require(viewer, "risk.view")
    as_of = as_of or latest_score_date(session)
    if as_of is None:
        return {"as_of": None, "levels": [], "actions": {}, "to_review": 0}
    stored = session.get(RollupSummary, (DISTRIBUTION_SUMMARY, as_of))
    if stored is not None:
        return {"as_of": as_of, **stored.payload}
    return _score_distribution(session, as_of)


def _score_distribution(session: Session, as_of: dt.date) -> dict[str, Any]:
    # One pass over the date's rows: a count per type and level, per action, and at the threshold.
    floors = list(LEVEL_FLOORS.items())
    cells: list[tuple[str, str, Any]] = []
    for column in (*RISK_SCORE_TYPES, "overall"):
        score = getattr(RiskScore, column)
        for index, (level, floor) in enumerate(floors):
            upper = floors[index + 1][1] if index + 1 < len(floors) else None
            inside = score >= floor if upper is None else (score >= floor) & (score < upper)
            cells.append((column, level, func.sum(case((inside, 1), else_=0))))
    actions_seen = RISK_ACTIONS
    action_cells = [func.sum(case((RiskScore.action == action, 1), else_=0)) for action in actions_seen]
    review_cell = func.sum(case((RiskScore.overall >= REVIEW_THRESHOLD, 1), else_=0))
    row = session.execute(select(*[c for _, _, c in cells], *action_cells, review_cell)
                          .where(RiskScore.as_of == as_of)).one()
    values = [int(v or 0) for v in row]
    levels = [{"type": column, "level": level, "customers": n}
              for (column, level, _), n in zip(cells, values, strict=False) if n]
    actions = {a: n for a, n in zip(actions_seen, values[len(cells):], strict=False) if n}
    to_review = values[-1]
    return {"as_of": as_of, "levels": levels, "actions": actions, "to_review": to_review}


def rule_precision(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Per rule, and for the anomaly model: decided reviews it was part of, how many confirmed the
    risk (restricted or blocked), and the precision."""
    require(viewer, "risk.view")
    decided = session.execute(select(RiskReview.fired, RiskReview.status, RiskReview.anomaly).where(
        RiskReview.status != "open", RiskReview.source != "referral")).all()
    names = dict(session.execute(select(RiskRule.id, RiskRule.name)).all())
    tally: dict[str, list[int]] = {}
    for fired, status, anomaly in decided:
        confirmed = int(status in CONFIRMED)
        for item in fired or []:
            counts = tally.setdefault(names.get(item["id"], item["name"]), [0, 0])
            counts[0] += 1
            counts[1] += confirmed
        if anomaly is not None and anomaly >= ANOMALY_FROM:
            counts = tally.setdefault("Anomaly model (top 10% unusual)", [0, 0])
            counts[0] += 1
            counts[1] += confirmed
    return sorted(({"rule": name, "reviewed": n, "confirmed": c, "precision": c / n if n else None}
                   for name, (n, c) in tally.items()), key=lambda r: (-r["reviewed"], r["rule"]))


def truth_quality(session: Session, viewer: Actor, as_of: dt.date | None = None,
                  threshold: float = REVIEW_THRESHOLD) -> list[dict[str, Any]]:
    """Precision and recall per risk type at the review threshold against the simulator's planted
    truth (empty for a real shop, which has none)."""
    require(viewer, "risk.view")
    as_of = as_of or latest_score_date(session)
    if as_of is None:
        return []
    if threshold == REVIEW_THRESHOLD:  # what the risk step stored for the date
        stored = session.get(RollupSummary, (TRUTH_SUMMARY, as_of))
        if stored is not None:
            return list(stored.payload["rows"])
    return _truth_quality(session, as_of, threshold)


def _truth_quality(session: Session, as_of: dt.date, threshold: float) -> list[dict[str, Any]]:
    if not session.scalar(select(func.count()).select_from(PlantedRisk)):
        return []
    truth = session.execute(select(PlantedRisk.customer_id, PlantedRisk.risk_type)).all()
    out = []
    for kind in (*RISK_SCORE_TYPES, "overall"):
        column = getattr(RiskScore, kind)
        flagged = set(session.scalars(select(RiskScore.customer_id).where(RiskScore.as_of == as_of,
                                                                          column >= threshold)))
        actual = {cid for cid, t in truth if kind == "overall" or t == kind}
        hits = len(flagged & actual)
        out.append({"type": kind, "flagged": len(flagged), "planted": len(actual), "found": hits,
                    "precision": hits / len(flagged) if flagged else None,
                    "recall": hits / len(actual) if actual else None})
    return out


def replay_rule(session: Session, viewer: Actor, condition: Any, days: int, as_of: dt.date) -> dict[str, Any]:
    """What a draft rule would have done: its condition over the signals as of `days` before `as_of`,
    the customers and the orders it would have flagged since, and how many of those customers then
    had a chargeback, a refund or return, or a confirmed review."""
    require(viewer, "risk.view")
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_REPLAY_DAYS:
        raise ValidationError(f"Replay over 1 to {MAX_REPLAY_DAYS} days.")
    check_as_of(as_of, "The replay date")
    parsed = parse_condition(condition)
    start = as_of - dt.timedelta(days=days)
    signals = compute_signals(session, start)
    mask = evaluate(parsed, signals.frame) if len(signals.frame) else np.zeros(0, dtype=bool)
    flagged = [int(i) for i in signals.frame.index.to_numpy()[mask]]
    window = (end_of(start), end_of(as_of))
    customers = len(signals.frame)
    result: dict[str, Any] = {
        "from": start, "to": as_of, "customers_scored": customers, "customers_flagged": len(flagged),
        "share_flagged": len(flagged) / customers if customers else 0.0, "orders_flagged": 0,
        "later_chargeback": 0, "later_refund": 0, "later_confirmed": 0, "later_any": 0,
        "base_rate_any": None, "left_out": {s: why for s, why in signals.left_out.items()
                                            if s in condition_signals(parsed)},
        "description": describe(parsed),
    }
    bad = _later_bad(session, window)
    everyone_bad = set().union(*bad.values())
    counted = set(session.scalars(select(Customer.id).where(COUNTED_CUSTOMER, Customer.signed_up_at < window[0])))
    result["base_rate_any"] = len(everyone_bad & counted) / len(counted) if counted else None
    if flagged:
        chosen = set(flagged)
        result["orders_flagged"] = int(sum(
            session.scalar(select(func.count()).select_from(Order).where(
                Order.customer_id.in_(chunk), Order.ordered_at >= window[0], Order.ordered_at < window[1])) or 0
            for chunk in _chunks(flagged)))
        result["later_chargeback"] = len(bad["chargeback"] & chosen)
        result["later_refund"] = len(bad["refund"] & chosen)
        result["later_confirmed"] = len(bad["confirmed"] & chosen)
        result["later_any"] = len(everyone_bad & chosen)
    return result


def _chunks(ids: list[int], size: int = 5000) -> list[list[int]]:
    return [ids[i:i + size] for i in range(0, len(ids), size)]


def _later_bad(session: Session, window: tuple[dt.datetime, dt.datetime]) -> dict[str, set[int]]:
    start, end = window
    charged = set(session.scalars(select(Chargeback.customer_id).where(
        Chargeback.opened_at >= start, Chargeback.opened_at < end).distinct()))
    refunded = set(session.scalars(select(Order.customer_id).where(
        Order.status.in_(UNDONE), Order.ordered_at >= start, Order.ordered_at < end).distinct()))
    confirmed = set(session.scalars(select(RiskReview.customer_id).where(
        RiskReview.status.in_(CONFIRMED), or_(RiskReview.decided_at.is_(None), RiskReview.decided_at >= start))
        .distinct()))
    return {"chargeback": charged, "refund": refunded, "confirmed": confirmed}
