"""The rules that open calls to action (CTAs): one `TriggerRule` per trigger, each reading the tables
it needs as of a date and saying which customers it is active for.

A rule is *active* for a customer while its condition holds; it *fires* (may open a CTA) only when
the condition is fresh (`Firing.fresh`): a new detractor answer, a new SLA breach, and only for a live
account (`automation` checks that for every rule). An open CTA whose rule is no longer active closes
itself ("trigger_cleared", or "churned" when the account churned). A rule whose source the shop does not
have (no churn model run, no surveys, no helpdesk, no payment methods, no risk decisions) is
skipped with that reason. A new rule is one more `TriggerRule` in `RULES` (and a playbook default).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.dates import end_of
from crm_core.risk.scoring import active_decision_actions
from crm_core.segmentation.churn_levels import AT_RISK_LEVELS
from crm_core.service.complaints import OPEN_COMPLAINT_STATUSES
from crm_core.service.surveys import DETRACTOR_MAX
from db.models import (
    OPEN_TICKET_STATUSES,
    REVENUE_ORDER_STATUSES,
    AccountHealthScore,
    ChurnPrediction,
    Complaint,
    Customer,
    CustomerAnalytics,
    CustomerPaymentMethod,
    Order,
    RiskDecision,
    SlaBreach,
    SupportTicket,
    SurveyResponse,
)

# The thresholds of the rules: one home each.
HEALTH_DROP_POINTS = 15.0  # health fell by at least this many points against ~30 days earlier
STILL_POOR_LEVELS = ("poor", "critical")  # a health-drop CTA stays open while the account is at these levels
FRESH_DAYS = 30  # a detractor answer or an SLA breach this recent opens a CTA
HIGH_VALUE_SHARE = 0.2  # "high value": the top 20% of buyers by revenue (the analytics snapshot)
RENEWAL_MIN_ORDERS = 3  # a renewal-like buyer has at least this many orders ...
RENEWAL_MAX_GAP_DAYS = 120  # ... at most this many days apart on average ...
RENEWAL_WINDOW_DAYS = 21  # ... and the next one is expected within this many days ...
RENEWAL_OVERDUE_DAYS = 7  # ... or is overdue by at most this many


@dataclass(frozen=True)
class Firing:
    """Why a rule is active for a customer: fresh (may open a CTA), the reason, the signals behind it."""

    fresh: bool
    reason: str
    signals: dict[str, Any] = field(default_factory=dict)
    high_value: bool = False


@dataclass(frozen=True)
class TriggerRule:
    key: str
    label: str
    missing_source: Callable[[Connection, dt.date], str | None]
    active: Callable[[Connection, dt.date], dict[int, Firing]]


def _counted(customer_id) -> Any:
    return select(Customer.id).where(Customer.id == customer_id, COUNTED_CUSTOMER).exists()


def _none_before(model, column, what: str) -> Callable[[Connection, dt.date], str | None]:
    def check(connection: Connection, as_of: dt.date) -> str | None:
        found = connection.scalar(select(model.id).where(column < end_of(as_of)).limit(1))
        return None if found is not None else f"no {what}"
    return check


def high_value_floor(connection: Connection) -> float | None:
    """The revenue of the buyer at the top HIGH_VALUE_SHARE (the snapshot's total revenue); None without one."""
    a = CustomerAnalytics
    buyers = connection.scalar(select(func.count()).select_from(a).where(a.order_count > 0)) or 0
    if not buyers:
        return None
    offset = max(0, int(buyers * HIGH_VALUE_SHARE) - 1)
    value = connection.scalar(select(a.total_revenue).where(a.order_count > 0)
                              .order_by(a.total_revenue.desc()).limit(1).offset(offset))
    return None if value is None else float(value)


def _revenue(connection: Connection, ids: list[int]) -> dict[int, float]:
    a = CustomerAnalytics
    found: dict[int, float] = {}
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        found.update({cid: float(v or 0) for cid, v in connection.execute(
            select(a.customer_id, a.total_revenue).where(a.customer_id.in_(chunk))).all()})
    return found


# --------------------------------------------------------------------------- the rules


def _churn_active(connection: Connection, as_of: dt.date) -> dict[int, Firing]:
    """Active while the latest prediction is high or critical; fresh when the customer *became* at
    risk (the previous prediction was below high, or there was none for them). With no earlier
    prediction date at all (the first scoring) only high-value accounts fire."""
    p = ChurnPrediction
    latest = connection.scalar(select(func.max(p.as_of)).where(p.as_of <= as_of))
    if latest is None:
        return {}
    previous = connection.scalar(select(func.max(p.as_of)).where(p.as_of < latest))
    rows = connection.execute(
        select(p.customer_id, p.probability, p.risk_level, p.drivers, p.horizon_days)
        .where(p.as_of == latest, p.risk_level.in_(AT_RISK_LEVELS), _counted(p.customer_id))
    ).all()
    was_at_risk: set[int] = set()
    if previous is not None:
        was_at_risk = set(connection.execute(select(p.customer_id).where(
            p.as_of == previous, p.risk_level.in_(AT_RISK_LEVELS))).scalars())
    high_value: set[int] = set()
    if previous is None:
        floor = high_value_floor(connection)
        revenue = _revenue(connection, [r[0] for r in rows])
        high_value = {cid for cid, value in revenue.items() if floor is not None and value >= floor > 0}
    found = {}
    for cid, probability, level, drivers, horizon in rows:
        top = [d.get("label") or d.get("feature") for d in (drivers or [])[:3] if isinstance(d, dict)]
        became = cid not in was_at_risk if previous is not None else cid in high_value
        found[cid] = Firing(became,
                            f"Churn risk is {level} ({probability:.0%} chance of no order in the next {horizon} days)",
                            {"probability": round(float(probability), 4), "risk_level": level,
                             "scored_as_of": latest.isoformat(), "drivers": [t for t in top if t]},
                            high_value=cid in high_value)
    return found


def _churn_missing(connection: Connection, as_of: dt.date) -> str | None:
    found = connection.scalar(select(ChurnPrediction.id).where(ChurnPrediction.as_of <= as_of).limit(1))
    return None if found is not None else "no churn predictions (the churn model has not scored anyone yet)"


def _health_active(connection: Connection, as_of: dt.date) -> dict[int, Firing]:
    h = AccountHealthScore
    latest = connection.scalar(select(func.max(h.as_of)).where(h.as_of <= as_of))
    if latest is None:
        return {}
    rows = connection.execute(
        select(h.customer_id, h.overall, h.trend, h.level)
        .where(h.as_of == latest, or_(h.trend <= -HEALTH_DROP_POINTS, h.level.in_(STILL_POOR_LEVELS)),
               _counted(h.customer_id))
    ).all()
    found = {}
    for cid, overall, trend, level in rows:
        fell = trend is not None and trend <= -HEALTH_DROP_POINTS
        reason = (f"Health fell {-(trend or 0):.0f} points in about 30 days (now {overall:.0f}, {level})" if fell
                  else f"Health is still {level} ({overall:.0f})")
        found[cid] = Firing(fell, reason, {"overall": overall, "trend": trend, "level": level,
                                           "scored_as_of": latest.isoformat()})
    return found


def _health_missing(connection: Connection, as_of: dt.date) -> str | None:
    found = connection.scalar(select(AccountHealthScore.id).where(AccountHealthScore.as_of <= as_of).limit(1))
    return None if found is not None else "no health scores yet"


def _detractor_active(connection: Connection, as_of: dt.date) -> dict[int, Firing]:
    """Active while the customer's latest NPS answer is a detractor; fresh when it is under FRESH_DAYS old."""
    s = SurveyResponse
    cutoff = end_of(as_of)
    later = SurveyResponse.__table__.alias("later_nps")
    rows = connection.execute(
        select(s.customer_id, func.min(s.score), func.max(s.responded_at))
        .where(s.survey_type == "nps", s.responded_at < cutoff, s.score <= DETRACTOR_MAX, _counted(s.customer_id),
               ~select(later.c.id).where(later.c.customer_id == s.customer_id, later.c.survey_type == "nps",
                                         later.c.responded_at > s.responded_at, later.c.responded_at < cutoff).exists())
        .group_by(s.customer_id)
    ).all()
    fresh_from = cutoff - dt.timedelta(days=FRESH_DAYS)
    return {cid: Firing(answered >= fresh_from, f"Detractor NPS answer: {score} of 10 on {answered:%d %b %Y}",
                        {"nps": int(score), "answered_at": answered.isoformat(timespec="minutes")})
            for cid, score, answered in rows}


def _detractor_missing(connection: Connection, as_of: dt.date) -> str | None:
    found = connection.scalar(select(SurveyResponse.id).where(SurveyResponse.survey_type == "nps",
                                                               SurveyResponse.responded_at < end_of(as_of)).limit(1))
    return None if found is not None else "no NPS answers"


def _service_active(connection: Connection, as_of: dt.date) -> dict[int, Firing]:
    """A high-value customer with an open complaint, or an open ticket whose SLA was breached."""
    cutoff = end_of(as_of)
    floor = high_value_floor(connection)
    if floor is None:
        return {}
    c = Complaint
    complaints = dict(connection.execute(
        select(c.customer_id, func.count()).where(c.created_at < cutoff, c.status.in_(OPEN_COMPLAINT_STATUSES),
                                                  _counted(c.customer_id)).group_by(c.customer_id)).all())
    t, b = SupportTicket, SlaBreach
    breaches = {cid: (n, last) for cid, n, last in connection.execute(
        select(t.customer_id, func.count(func.distinct(t.id)), func.max(b.detected_at))
        .join(b, b.ticket_id == t.id)
        .where(t.status.in_(OPEN_TICKET_STATUSES), b.detected_at < cutoff, _counted(t.customer_id))
        .group_by(t.customer_id)).all()}
    candidates = sorted(set(complaints) | set(breaches))
    revenue = _revenue(connection, candidates)
    fresh_from = cutoff - dt.timedelta(days=FRESH_DAYS)
    found = {}
    for cid in candidates:
        value = revenue.get(cid, 0.0)
        if value < floor or value <= 0:
            continue
        parts = []
        if cid in complaints:
            parts.append(f"{complaints[cid]} open complaint(s)")
        if cid in breaches:
            parts.append(f"{breaches[cid][0]} open ticket(s) past their SLA")
        last_breach = breaches.get(cid, (0, None))[1]
        fresh = cid in complaints or (last_breach is not None and last_breach >= fresh_from)
        found[cid] = Firing(fresh, f"High-value customer (revenue {value:,.0f}) with " + " and ".join(parts),
                            {"revenue": round(value, 2), "high_value_floor": round(floor, 2),
                             "open_complaints": int(complaints.get(cid, 0)),
                             "breached_open_tickets": int(breaches.get(cid, (0, None))[0])}, high_value=True)
    return found


def _service_missing(connection: Connection, as_of: dt.date) -> str | None:
    cutoff = end_of(as_of)
    if connection.scalar(select(SupportTicket.id).where(SupportTicket.created_at < cutoff).limit(1)) is None and \
            connection.scalar(select(Complaint.id).where(Complaint.created_at < cutoff).limit(1)) is None:
        return "no tickets or complaints"
    if high_value_floor(connection) is None:
        return "no analytics snapshot to tell high-value customers (run the refresh)"
    return None


def _renewal_active(connection: Connection, as_of: dt.date) -> dict[int, Firing]:
    """A regular buyer (RENEWAL_MIN_ORDERS orders or more, every RENEWAL_MAX_GAP_DAYS or less) whose
    every payment method has expired since their last order, with the next order due within
    RENEWAL_WINDOW_DAYS (or overdue by at most RENEWAL_OVERDUE_DAYS): the repeat purchase would fail."""
    pm = CustomerPaymentMethod
    month_index = as_of.year * 12 + as_of.month
    card_month = pm.exp_year * 12 + pm.exp_month
    expired = and_(pm.exp_year.is_not(None), pm.exp_month.is_not(None), card_month < month_index)
    cutoff = end_of(as_of)
    other = CustomerPaymentMethod.__table__.alias("valid_method")
    other_month = other.c.exp_year * 12 + other.c.exp_month
    cards = dict(connection.execute(
        select(pm.customer_id, func.max(card_month))
        .where(pm.status != "removed", pm.created_at < cutoff, expired, _counted(pm.customer_id),
               ~select(other.c.id).where(other.c.customer_id == pm.customer_id, other.c.status != "removed",
                                         other.c.created_at < cutoff,
                                         or_(other.c.exp_year.is_(None), other.c.exp_month.is_(None),
                                             other_month >= month_index)).exists())
        .group_by(pm.customer_id)).all())
    if not cards:
        return {}
    o = Order
    found = {}
    ids = sorted(cards)
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        for cid, n, first, last in connection.execute(
                select(o.customer_id, func.count(), func.min(o.ordered_at), func.max(o.ordered_at))
                .where(o.status.in_(REVENUE_ORDER_STATUSES), o.ordered_at < cutoff, o.customer_id.in_(chunk))
                .group_by(o.customer_id).having(func.count() >= RENEWAL_MIN_ORDERS)).all():
            gap = (last - first) / (n - 1)
            expected = last + gap
            days_to = (expected - cutoff).total_seconds() / 86400
            expired_after_last = (cards.get(cid) or 0) >= last.year * 12 + last.month
            if gap.days <= RENEWAL_MAX_GAP_DAYS and expired_after_last \
                    and -RENEWAL_OVERDUE_DAYS <= days_to <= RENEWAL_WINDOW_DAYS:
                found[cid] = Firing(True, f"Every payment method expired since the last order, and the next repeat "
                                          f"order is due around {expected:%d %b %Y} (every {gap.days} days)",
                                    {"orders": int(n), "every_days": gap.days,
                                     "expected_on": expected.date().isoformat()})
    return found


def _renewal_missing(connection: Connection, as_of: dt.date) -> str | None:
    found = connection.scalar(select(CustomerPaymentMethod.id).where(
        CustomerPaymentMethod.created_at < end_of(as_of)).limit(1))
    return None if found is not None else "no payment methods"


def _risk_active(connection: Connection, as_of: dt.date) -> dict[int, Firing]:
    """A risk decision (restrict or block) in force at the end of the date, as the risk domain enforces it."""
    cutoff = end_of(as_of)
    with Session(bind=connection) as session:
        in_force = active_decision_actions(session, cutoff)
    found: dict[int, Firing] = {}
    ids = sorted(in_force)
    d = RiskDecision
    for start in range(0, len(ids), 1000):
        chunk = ids[start:start + 1000]
        rows = connection.execute(
            select(d.customer_id, d.action, d.reason, d.expires_at)
            .where(d.customer_id.in_(chunk), d.lifted_at.is_(None), d.created_at <= cutoff, _counted(d.customer_id))
            .order_by(d.customer_id, d.created_at)).all()
        for cid, action, reason, expires_at in rows:
            if action != in_force.get(cid):
                continue  # the strongest decision in force speaks for the customer
            found[cid] = Firing(True, f"Risk {'block' if action == 'block' else 'restriction'} in force: {reason}",
                                {"action": action, "expires_at": expires_at.isoformat(timespec="minutes")
                                 if expires_at else None})
    return found


RULES: tuple[TriggerRule, ...] = (
    TriggerRule("churn_high", "Churn risk became high", _churn_missing, _churn_active),
    TriggerRule("health_drop", f"Health fell {HEALTH_DROP_POINTS:.0f}+ points in 30 days", _health_missing,
                _health_active),
    TriggerRule("detractor_nps", "Detractor NPS answer", _detractor_missing, _detractor_active),
    TriggerRule("service_high_value", "SLA breach or open complaint, high-value customer", _service_missing,
                _service_active),
    TriggerRule("payment_renewal", "Expired payment method before a repeat purchase", _renewal_missing,
                _renewal_active),
    TriggerRule("risk_restriction", "Risk restriction", _none_before(RiskDecision, RiskDecision.created_at,
                                                                     "risk restrictions or blocks"), _risk_active),
)
MANUAL_TRIGGER = "manual"
TRIGGER_LABELS: dict[str, str] = {rule.key: rule.label for rule in RULES} | {MANUAL_TRIGGER: "Opened by hand"}
