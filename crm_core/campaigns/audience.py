"""Who qualifies for a campaign (its trigger, kept as data, compiled to SQL), who of them may be
contacted on its channel (consent, preference centre, frequency cap), and the preview shown before
launch: audience size, the reasons others are left out, the value at stake and the holdout plan."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import Select, and_, case, exists, false, func, literal, or_, select
from sqlalchemy.orm import Session, aliased
from sqlalchemy.sql.elements import ColumnElement

from crm_core.campaigns.rules import (
    ABANDONED_AFTER_HOURS,
    ABANDONED_LOOKBACK_DAYS,
    CHANNELS,
    DEFAULT_ATTRIBUTION_DAYS,
    DEFAULT_BASELINE_RATE,
    DEFAULT_EXPECTED_LIFT,
    DEFAULT_NO_ORDER_DAYS,
    FREQUENCY_CAP_DAYS,
    LOW_ENGAGEMENT_OPEN_RATE,
    MARKETING_CHANNELS,
    MAX_ATTRIBUTION_DAYS,
    MAX_CONTROL_SHARE,
    MAX_NO_ORDER_DAYS,
    MIN_CONTROL_SHARE,
    TRIGGER_KINDS,
)
from crm_core.campaigns.stats import check_holdout, plan_holdout
from crm_core.platform.actors import Actor
from crm_core.platform.dates import check_as_of
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.sql import without_jit
from crm_core.segmentation.churn_levels import RISK_FLOORS
from db.models import (
    HEALTH_LEVELS,
    REVENUE_ORDER_STATUSES,
    Cart,
    ConsentRecord,
    Customer,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerPreferenceCenter,
    CustomerSegment,
    CustomerSegmentMembership,
    Order,
    WebSession,
    WinbackTarget,
)

# Why a qualifying customer is not contacted, in the order the checks apply.
EXCLUSION_REASONS: dict[str, str] = {
    "inactive": "customer not active (suspended, closed, merged or erased)",
    "no_contact": "no contact detail for the channel",
    "no_opt_in": "no opt-in for the channel in the preference centre",
    "never": "prefers no marketing",
    "withdrawn": "consent for the channel withdrawn",
    "capped": "contacted within their frequency cap",
    "enrolled": "already in this campaign",
}
# A back-cast of the baseline needs at least this many customers; fewer and the default is used.
MIN_BASELINE_CUSTOMERS = 30
LAPSED_DAYS_FOR_BASELINE = 60
BASELINE_SAMPLE = 20_000


def _int(value: Any, label: str, low: int, high: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise ValidationError(f"{label} must be a whole number.") from None
    if isinstance(value, float) and not value.is_integer():
        raise ValidationError(f"{label} must be a whole number.")
    if not low <= number <= high:
        raise ValidationError(f"{label} must be between {low:,} and {high:,}.")
    return number


def normalize_trigger(trigger: Any) -> dict[str, Any]:
    """A trigger as data, checked: {"kind": ..., and its parameter}."""
    if not isinstance(trigger, dict) or trigger.get("kind") not in TRIGGER_KINDS:
        raise ValidationError(f"Choose a trigger: one of {', '.join(TRIGGER_KINDS)}.")
    kind = trigger["kind"]
    if kind == "churn_risk":
        level = trigger.get("level", "high")
        if level not in RISK_FLOORS:
            raise ValidationError(f"Churn risk level must be one of {', '.join(RISK_FLOORS)}.")
        return {"kind": kind, "level": level}
    if kind == "no_order":
        days = _int(trigger.get("days", DEFAULT_NO_ORDER_DAYS), "Days without an order", 1, MAX_NO_ORDER_DAYS)
        return {"kind": kind, "days": days}
    if kind == "health_level":
        level = trigger.get("level", "poor")
        if level not in HEALTH_LEVELS:
            raise ValidationError(f"Health level must be one of {', '.join(HEALTH_LEVELS)}.")
        return {"kind": kind, "level": level}
    return {"kind": kind}


def describe_trigger(trigger: dict[str, Any]) -> str:
    kind = trigger.get("kind")
    if kind == "churn_risk":
        return f"churn risk {trigger['level']} or higher"
    if kind == "no_order":
        return f"no order for {trigger['days']} days"
    if kind == "health_level":
        return f"account health {trigger['level']} or lower"
    if kind == "abandoned_cart":
        return f"a cart left for over {ABANDONED_AFTER_HOURS} h in the last {ABANDONED_LOOKBACK_DAYS} days"
    if kind == "low_engagement":
        return f"no web session in 90 days and e-mail opens under {LOW_ENGAGEMENT_OPEN_RATE:.0%}"
    return str(kind)


def _revenue_order_between(customer_id: Any, after: Any, until: dt.datetime | None = None) -> ColumnElement[bool]:
    conditions = [Order.customer_id == customer_id, Order.status.in_(REVENUE_ORDER_STATUSES),
                  Order.ordered_at >= after]
    if until is not None:
        conditions.append(Order.ordered_at < until)
    return exists().where(*conditions)


def trigger_condition(trigger: dict[str, Any], at: dt.datetime) -> ColumnElement[bool]:
    """A condition on Customer (and CustomerAnalytics, outer-joined) that is true for qualifying customers."""
    kind = trigger["kind"]
    ca = CustomerAnalytics
    if kind == "churn_risk":
        return ca.churn_probability >= RISK_FLOORS[trigger["level"]]
    if kind == "health_level":
        at_or_below = HEALTH_LEVELS[HEALTH_LEVELS.index(trigger["level"]):]
        return ca.health_level.in_(at_or_below)
    if kind == "low_engagement":
        return and_(ca.order_count > 0, ca.sessions_90d == 0,
                    or_(ca.email_open_rate.is_(None), ca.email_open_rate < LOW_ENGAGEMENT_OPEN_RATE))
    if kind == "no_order":
        cutoff = at - dt.timedelta(days=trigger["days"])
        bought_before = exists().where(Order.customer_id == Customer.id, Order.status.in_(REVENUE_ORDER_STATUSES),
                                       Order.ordered_at < cutoff)
        return and_(bought_before, ~_revenue_order_between(Customer.id, cutoff, at))
    if kind == "abandoned_cart":
        return exists().where(
            Cart.customer_id == Customer.id, Cart.status == "open",
            Cart.updated_at >= at - dt.timedelta(days=ABANDONED_LOOKBACK_DAYS),
            Cart.updated_at < at - dt.timedelta(hours=ABANDONED_AFTER_HOURS),
            ~_revenue_order_between(Cart.customer_id, Cart.updated_at, at))
    raise ValidationError(f"Unknown trigger {kind!r}.")


def qualifying(trigger: dict[str, Any], at: dt.datetime, segment_id: int | None = None) -> Select:
    """SELECT of the qualifying customers' id (and their snapshot row, outer-joined)."""
    query = (select(Customer.id.label("customer_id"))
             .outerjoin(CustomerAnalytics, CustomerAnalytics.customer_id == Customer.id)
             .where(trigger_condition(trigger, at)))
    if segment_id is not None:
        query = query.where(exists().where(
            CustomerSegmentMembership.customer_id == Customer.id,
            CustomerSegmentMembership.segment_id == segment_id, CustomerSegmentMembership.is_active.is_(True)))
    return query


def _consent_withdrawn(purpose: str) -> ColumnElement[bool]:
    """The latest consent entry for `purpose` is a withdrawal (latest wins; ties by entry order)."""
    later = aliased(ConsentRecord)
    return exists().where(
        ConsentRecord.customer_id == Customer.id, ConsentRecord.purpose == purpose, ConsentRecord.granted.is_(False),
        ~exists().where(later.customer_id == ConsentRecord.customer_id, later.purpose == purpose,
                        or_(later.recorded_at > ConsentRecord.recorded_at,
                            and_(later.recorded_at == ConsentRecord.recorded_at, later.id > ConsentRecord.id))))


def _capped(at: dt.datetime) -> ColumnElement[bool]:
    """A marketing message went out within the customer's frequency cap before `at`."""
    pref = CustomerPreferenceCenter
    comm = CustomerCommunication
    windows = [and_(pref.contact_frequency == frequency, comm.sent_at > at - dt.timedelta(days=days))
               for frequency, days in FREQUENCY_CAP_DAYS.items()]
    # One index range (the longest cap), then the customer's own cap as a filter.
    longest = at - dt.timedelta(days=max(FREQUENCY_CAP_DAYS.values()))
    return exists().where(comm.customer_id == Customer.id, comm.sent_at > longest, comm.sent_at <= at,
                          comm.direction == "outbound", comm.channel.in_(MARKETING_CHANNELS),
                          comm.campaign.is_not(None), or_(*windows))


def exclusion_reason(channel: str, at: dt.datetime, campaign_id: int | None = None) -> ColumnElement[Any]:
    """The first reason a customer may not be contacted on `channel` at `at`, or NULL when they may.
    Needs Customer and CustomerPreferenceCenter (outer-joined) in the query."""
    needs = CHANNELS[channel]
    pref = CustomerPreferenceCenter
    contact = needs["contact"]
    has_contact = getattr(Customer, contact).is_not(None) if contact else literal(True)
    opted_in = getattr(pref, str(needs["opt_in"])).is_(True)
    enrolled = (exists().where(WinbackTarget.campaign_id == campaign_id, WinbackTarget.customer_id == Customer.id)
                if campaign_id is not None else false())
    return case(
        (Customer.status != "active", "inactive"),
        (~has_contact, "no_contact"),
        (or_(pref.customer_id.is_(None), ~opted_in), "no_opt_in"),
        (pref.contact_frequency == "never", "never"),
        (_consent_withdrawn(str(needs["consent"])), "withdrawn"),
        (_capped(at), "capped"),
        (enrolled, "enrolled"),
        else_=None,
    )


def _qualifying_with_reason(trigger: dict[str, Any], channel: str, at: dt.datetime, segment_id: int | None,
                            campaign_id: int | None) -> tuple[Select, ColumnElement[Any]]:
    """The qualifying customers first (materialised, so the contact checks run only for them),
    joined to what the contact checks read; and the exclusion reason."""
    found = qualifying(trigger, at, segment_id).cte("qualifying").prefix_with("MATERIALIZED", dialect="postgresql")
    base = (select(found.c.customer_id).select_from(found)
            .join(Customer, Customer.id == found.c.customer_id)
            .outerjoin(CustomerPreferenceCenter, CustomerPreferenceCenter.customer_id == found.c.customer_id))
    return base, exclusion_reason(channel, at, campaign_id)


def reachable(trigger: dict[str, Any], channel: str, at: dt.datetime, segment_id: int | None = None,
              campaign_id: int | None = None) -> Select:
    """SELECT customer_id of qualifying customers who may be contacted now."""
    base, reason = _qualifying_with_reason(trigger, channel, at, segment_id, campaign_id)
    return base.where(reason.is_(None))


def check_channel(channel: Any) -> str:
    if channel not in CHANNELS:
        raise ValidationError(f"Channel must be one of {', '.join(CHANNELS)}.")
    return str(channel)


def check_segment(session: Session, segment_id: Any) -> int | None:
    if segment_id in (None, ""):
        return None
    try:
        segment_id = int(segment_id)
    except (TypeError, ValueError):
        raise ValidationError("The segment must be chosen from the list.") from None
    if session.get(CustomerSegment, segment_id) is None:
        raise ValidationError(f"There is no segment {segment_id}.")
    return segment_id


def _data_notes(session: Session, trigger: dict[str, Any]) -> list[str]:
    """Say when a trigger cannot find anyone because its source is missing, rather than show 0."""
    kind = trigger["kind"]
    notes = []
    snapshot = session.scalar(select(func.count()).select_from(CustomerAnalytics))
    if kind in ("churn_risk", "health_level", "low_engagement") and not snapshot:
        notes.append("No analytics snapshot yet: run the batch refresh so churn risk, health and engagement are known.")
    if kind == "churn_risk" and snapshot and session.scalar(
            select(func.count()).where(CustomerAnalytics.churn_probability.is_not(None))) == 0:
        notes.append("No churn probabilities yet: the churn model has not scored anyone (see the Churn page).")
    if kind == "health_level" and snapshot and session.scalar(
            select(func.count()).where(CustomerAnalytics.health_level.is_not(None))) == 0:
        notes.append("No health scores yet: the health step of the refresh has not scored anyone.")
    if kind == "low_engagement":
        has_sessions = session.scalar(select(exists().where(WebSession.id.is_not(None))))
        has_messages = session.scalar(select(exists().where(CustomerCommunication.opened_at.is_not(None))))
        if not has_sessions and not has_messages:
            notes.append("No web sessions or opened messages are recorded, so engagement cannot be measured: "
                         "this trigger would pick every buyer.")
    if kind == "abandoned_cart" and not session.scalar(select(exists().where(Cart.id.is_not(None)))):
        notes.append("No carts are recorded, so no one has abandoned one.")
    return notes


def baseline_rate(session: Session, trigger: dict[str, Any], at: dt.datetime, attribution_days: int) -> tuple[float, str]:
    """The conversion rate to expect without a campaign, back-cast from history: of the customers who
    qualified `attribution_days` before `at` (lapsed customers for the model-based triggers), the
    share who ordered within the next `attribution_days`."""
    start = at - dt.timedelta(days=attribution_days)
    if trigger["kind"] == "abandoned_cart":
        population = (select(Cart.customer_id.label("customer_id")).where(
            Cart.status == "open", Cart.updated_at >= start - dt.timedelta(days=ABANDONED_LOOKBACK_DAYS),
            Cart.updated_at < start - dt.timedelta(hours=ABANDONED_AFTER_HOURS),
            ~_revenue_order_between(Cart.customer_id, Cart.updated_at, start)).distinct().subquery())
        basis = "customers with an abandoned cart"
    else:
        days = trigger["days"] if trigger["kind"] == "no_order" else LAPSED_DAYS_FOR_BASELINE
        lapsed_from = start - dt.timedelta(days=days)
        # A sample of at most BASELINE_SAMPLE customers (every k-th id) is plenty for a rate, and keeps
        # the preview quick at millions of customers: two index probes per sampled customer.
        every = max(1, -(-int(session.scalar(select(func.count()).select_from(Customer)) or 0) // BASELINE_SAMPLE))
        bought_before = exists().where(Order.customer_id == Customer.id, Order.status.in_(REVENUE_ORDER_STATUSES),
                                       Order.ordered_at < lapsed_from)
        population = (select(Customer.id.label("customer_id"))
                      .where(Customer.id % every == 0, bought_before,
                             ~_revenue_order_between(Customer.id, lapsed_from, start)).subquery())
        basis = f"customers without an order for {days} days" + (f" (a 1-in-{every} sample)" if every > 1 else "")
    converted = _revenue_order_between(population.c.customer_id, start, at)
    total, bought = session.execute(
        select(func.count(), func.coalesce(func.sum(case((converted, 1), else_=0)), 0)).select_from(population)).one()
    if total < MIN_BASELINE_CUSTOMERS:
        return DEFAULT_BASELINE_RATE, (f"only {total} {basis} {attribution_days} days ago: "
                                       f"the default {DEFAULT_BASELINE_RATE:.0%} is assumed")
    rate = bought / total
    return rate, (f"{bought:,} of {total:,} {basis} on {start:%d %b %Y} ordered within "
                  f"{attribution_days} days ({rate:.1%})")


def preview_audience(session: Session, viewer: Actor, trigger: Any, channel: Any, at: dt.datetime,
                     segment_id: Any = None, expected_lift: Any = None,
                     attribution_days: Any = DEFAULT_ATTRIBUTION_DAYS, campaign_id: int | None = None,
                     control_share: Any = None) -> dict[str, Any]:
    """Before launch: how many qualify, how many may be contacted and why the others may not, the
    value at stake (churn probability × 12-month CLV of those reachable), the baseline conversion
    rate and the holdout that detects the expected lift, or, with `control_share` (set by hand),
    that holdout's power (`control_share_by_hand` says which)."""
    require(viewer, "campaigns.view")
    check_moment(at)
    trigger = normalize_trigger(trigger)
    channel = check_channel(channel)
    segment_id = check_segment(session, segment_id)
    days = _int(attribution_days, "The attribution window", 1, MAX_ATTRIBUTION_DAYS)
    lift = check_lift(expected_lift)
    by_hand = control_share not in (None, "")
    if by_hand:
        control_share = check_share(control_share, "control share", MIN_CONTROL_SHARE, MAX_CONTROL_SHARE)
    without_jit(session.connection())
    ca = CustomerAnalytics
    found, reason = _qualifying_with_reason(trigger, channel, at, segment_id, campaign_id)
    base = (found.outerjoin(ca, ca.customer_id == Customer.id)
            .add_columns(reason.label("reason"),
                         (ca.churn_probability * ca.clv_12m).label("at_stake"), ca.clv_12m.label("clv"))
            .subquery())
    rows = session.execute(
        select(base.c.reason, func.count(), func.sum(base.c.at_stake), func.sum(base.c.clv),
               func.count(base.c.at_stake)).group_by(base.c.reason)).all()
    exclusions = {key: 0 for key in EXCLUSION_REASONS}
    qualifying_count = reachable_count = valued = 0
    at_stake = clv = 0.0
    for row_reason, count, stake, value, n_valued in rows:
        qualifying_count += count
        if row_reason is None:
            reachable_count = count
            at_stake = float(stake or 0)
            clv = float(value or 0)
            valued = n_valued
        else:
            exclusions[row_reason] = count
    rate, basis = baseline_rate(session, trigger, at, days)
    plan = check_holdout(reachable_count, control_share, rate, lift) if by_hand else plan_holdout(reachable_count, rate, lift)
    return {
        "trigger": trigger, "description": describe_trigger(trigger), "channel": channel,
        "qualifying": qualifying_count, "reachable": reachable_count,
        "exclusions": {EXCLUSION_REASONS[k]: v for k, v in exclusions.items() if v},
        "value_at_stake": round(at_stake, 2), "clv_12m": round(clv, 2), "customers_valued": valued,
        "baseline_rate": rate, "baseline_basis": basis, "expected_lift": lift, "attribution_days": days,
        "control_share": plan.control_share, "control_share_by_hand": by_hand, "power": plan.power,
        "minimum_detectable_lift": plan.minimum_detectable_lift, "powered": plan.enough,
        "plan": plan.message, "notes": _data_notes(session, trigger),
    }


def check_share(value: Any, label: str, low: float, high: float) -> float:
    """A share (0-1) within its bounds, or a clear error naming it."""
    try:
        share = float(value)
    except (TypeError, ValueError):
        raise ValidationError(f"The {label} must be a number.") from None
    if not math.isfinite(share) or not low <= share <= high:
        raise ValidationError(f"The {label} must be between {low:.0%} and {high:.0%}.")
    return share


def check_moment(at: Any) -> dt.datetime:
    """The moment a campaign is previewed, launched, enrolled or measured at: a date-time within the
    bounds every date keeps (crm_core/platform/dates.py)."""
    if not isinstance(at, dt.datetime):
        raise ValidationError("The campaign moment must be a date and time.")
    check_as_of(at.date(), "The campaign moment")
    return at


def check_lift(value: Any) -> float:
    if value in (None, ""):
        return DEFAULT_EXPECTED_LIFT
    try:
        lift = float(value)
    except (TypeError, ValueError):
        raise ValidationError("The expected lift must be a number of percentage points.") from None
    if not 0.001 <= lift <= 0.5:
        raise ValidationError("The expected lift must be between 0.1 and 50 percentage points.")
    return lift
