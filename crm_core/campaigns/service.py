"""Campaigns as a service: create a draft, launch it (enrol, hold out, send), enrol newly qualifying
customers in each refresh, finish or cancel it, and list them.

Enrolment draws each customer's group from a hash of the campaign and customer ids, so the
assignment is random with respect to everything about the customer, stable on every re-run, and
independent of the order customers arrive in. Only reachable customers are enrolled, before the
draw, so the control group holds exactly the customers who would have been sent the message.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import Any, Protocol

from sqlalchemy import case, func, insert, select
from sqlalchemy.orm import Session

from crm_core.campaigns.audience import (
    _int,
    check_channel,
    check_lift,
    check_moment,
    check_segment,
    check_share,
    describe_trigger,
    normalize_trigger,
    preview_audience,
    reachable,
)
from crm_core.campaigns.rules import (
    CAMPAIGN_STATUSES_EDITABLE,
    DEFAULT_ATTRIBUTION_DAYS,
    DEFAULT_GROSS_MARGIN,
    MAX_ATTRIBUTION_DAYS,
    MAX_CONTROL_SHARE,
    MAX_PERCENT_DISCOUNT,
    MAX_POINTS,
    MAX_VOUCHER,
    MIN_CONTROL_SHARE,
    OFFER_TYPES,
    PRE_PERIOD_DAYS,
)
from crm_core.loyalty.accounts import credit_reward
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.sql import without_jit
from crm_core.vouchers.service import issue_vouchers
from db.models import (
    REVENUE_ORDER_STATUSES,
    CustomerCommunication,
    Order,
    WinbackCampaign,
    WinbackTarget,
    utcnow,
)

CHUNK = 1000
# The campaign offers a voucher carries, and the kind of voucher each becomes.
VOUCHER_OFFERS = {"percent_discount": "percent", "voucher": "amount"}


class UpliftScorer(Protocol):
    """Scores customers by expected uplift (ml.uplift provides one; crm_core never imports ml)."""

    model_id: int

    def __call__(self, session: Session, customer_ids: list[int], at: dt.datetime) -> dict[int, float]: ...


def assignment_draw(campaign_id: int, customer_id: int) -> float:
    """A uniform number in [0, 1) fixed by the campaign and the customer."""
    digest = hashlib.sha256(f"winback:{campaign_id}:{customer_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def assigned_group(campaign_id: int, customer_id: int, control_share: float) -> str:
    return "control" if assignment_draw(campaign_id, customer_id) < control_share else "treatment"


def _text(value: Any, label: str, max_length: int, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"The {label} is required.")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"The {label} must be text.")
    text = " ".join(value.split()) if max_length <= 255 else value.strip()
    if len(text) > max_length:
        raise ValidationError(f"The {label} has at most {max_length} characters.")
    return text


def check_offer(offer_type: Any, offer_value: Any) -> tuple[str, Decimal]:
    if offer_type not in OFFER_TYPES:
        raise ValidationError(f"The offer must be one of {', '.join(OFFER_TYPES)}.")
    try:
        value = Decimal(str(offer_value))
    except (InvalidOperation, ValueError):
        raise ValidationError("The offer value must be a number.") from None
    if not value.is_finite() or value <= 0:
        raise ValidationError("The offer value must be above zero.")
    limits = {"percent_discount": (MAX_PERCENT_DISCOUNT, "a discount of at most 90%"),
              "voucher": (MAX_VOUCHER, "a voucher of at most 10,000"),
              "loyalty_points": (Decimal(MAX_POINTS), "at most 1,000,000 points")}
    limit, words = limits[str(offer_type)]
    if value > limit:
        raise ValidationError(f"The offer must be {words}.")
    if offer_type == "loyalty_points" and value != value.to_integral_value():
        raise ValidationError("Loyalty points are a whole number.")
    return str(offer_type), value.quantize(Decimal("0.01"))


def describe_offer(offer_type: str, offer_value: Decimal) -> str:
    if offer_type == "percent_discount":
        return f"{offer_value.normalize():f}% off the next order"
    if offer_type == "voucher":
        return f"a voucher of {offer_value:,.2f}"
    return f"{int(offer_value):,} loyalty points"


def campaign_row(session: Session, campaign_id: Any, lock: bool = False) -> WinbackCampaign:
    try:
        key = int(campaign_id)
    except (TypeError, ValueError):
        raise NotFound(f"There is no campaign {campaign_id!r}.") from None
    campaign = session.get(WinbackCampaign, key, with_for_update=lock)
    if campaign is None:
        raise NotFound(f"There is no campaign {campaign_id}.")
    return campaign


def _snapshot(campaign: WinbackCampaign) -> dict[str, Any]:
    return {"name": campaign.name, "status": campaign.status, "trigger": campaign.trigger,
            "channel": campaign.channel, "offer_type": campaign.offer_type, "offer_value": campaign.offer_value,
            "control_fraction": campaign.control_fraction, "attribution_days": campaign.attribution_days,
            "uplift_share": campaign.uplift_share, "segment_id": campaign.segment_id}


def create_campaign(session: Session, actor: Actor, *, name: Any, trigger: Any, channel: Any, offer_type: Any,
                    offer_value: Any, subject: Any = None, description: Any = "", segment_id: Any = None,
                    expected_lift: Any = None, control_share: Any = None,
                    attribution_days: Any = DEFAULT_ATTRIBUTION_DAYS, gross_margin: Any = DEFAULT_GROSS_MARGIN,
                    uplift_share: Any = None, at: dt.datetime | None = None) -> WinbackCampaign:
    """A draft campaign. Without a control share, the holdout is the one the power calculation
    gives for the expected lift over the back-cast baseline (shown in the preview)."""
    require(actor, "campaigns.manage")
    at = at or utcnow()
    name = _text(name, "campaign name", 120)
    if session.scalar(select(WinbackCampaign.id).where(WinbackCampaign.name == name)) is not None:
        raise ValidationError(f"A campaign named {name!r} exists already; choose another name.")
    trigger = normalize_trigger(trigger)
    channel = check_channel(channel)
    offer_type, value = check_offer(offer_type, offer_value)
    days = _int(attribution_days, "The attribution window", 1, MAX_ATTRIBUTION_DAYS)
    margin = check_share(gross_margin, "gross margin", 0.0, 1.0)
    lift = check_lift(expected_lift)
    segment = check_segment(session, segment_id)
    share = None if uplift_share in (None, "") else check_share(uplift_share, "uplift share", 0.01, 1.0)
    preview = preview_audience(session, actor, trigger, channel, at, segment, lift, days)
    control = preview["control_share"] if control_share in (None, "") else check_share(
        control_share, "control share", MIN_CONTROL_SHARE, MAX_CONTROL_SHARE)
    campaign = WinbackCampaign(
        name=name, description=_text(description, "description", 2000, required=False) or "",
        status="draft", segment_id=segment, channel=channel, offer_type=offer_type, offer_value=value,
        control_fraction=control, trigger=trigger,
        subject=_text(subject, "message subject", 255, required=False) or f"We miss you: {describe_offer(offer_type, value)}",
        expected_lift=lift, baseline_rate=preview["baseline_rate"], attribution_days=days, gross_margin=margin,
        uplift_share=share, created_by_id=actor.id,
    )
    session.add(campaign)
    session.flush()
    record_audit(session, actor, "campaign.create", "winback_campaign", campaign.id, None, _snapshot(campaign))
    return campaign


def launch_campaign(session: Session, actor: Actor, campaign_id: Any, at: dt.datetime | None = None,
                    scorer: UpliftScorer | None = None, version: int | None = None) -> dict[str, Any]:
    """Start a draft: enrol everyone who qualifies and may be contacted now, hold out the control
    group and send the treatment group their message. Later refreshes enrol newcomers."""
    require(actor, "campaigns.manage")
    campaign = campaign_row(session, campaign_id, lock=True)
    if version is not None and campaign.version != version:
        raise ValidationError("Someone changed this campaign since you opened it; reload and try again.")
    if campaign.status not in CAMPAIGN_STATUSES_EDITABLE:
        raise ValidationError(f"Only a draft can be launched; this campaign is {campaign.status}.")
    if campaign.uplift_share is not None and scorer is None:
        raise ValidationError("This campaign targets by uplift, and no uplift model is trained yet: "
                              "train one on the Campaigns page from finished campaigns, or target everyone.")
    at = check_moment(at or utcnow())
    before = _snapshot(campaign)
    campaign.status = "running"
    campaign.launched_at = at
    campaign.starts_at = at
    if scorer is not None and campaign.uplift_share is not None:
        campaign.uplift_model_id = scorer.model_id
    counts = _enrol(session, actor, campaign, at, scorer)
    record_audit(session, actor, "campaign.launch", "winback_campaign", campaign.id, before,
                 {**_snapshot(campaign), **counts})
    return counts


def _enrol(session: Session, actor: Actor, campaign: WinbackCampaign, at: dt.datetime,
           scorer: UpliftScorer | None) -> dict[str, Any]:
    trigger = normalize_trigger(campaign.trigger)
    without_jit(session.connection())
    eligible = sorted(session.scalars(reachable(trigger, campaign.channel, at, campaign.segment_id, campaign.id)))
    scores: dict[int, float] = {}
    if campaign.uplift_share is not None and eligible:
        if scorer is None:
            return {"enrolled": 0, "treatment": 0, "control": 0, "sent": 0,
                    "skipped": "no uplift model to target with"}
        scores = scorer(session, eligible, at)
        keep = max(1, math.ceil(len(eligible) * campaign.uplift_share))
        eligible = sorted(sorted(eligible, key=lambda c: (-scores.get(c, float("-inf")), c))[:keep])
    if not eligible:
        return {"enrolled": 0, "treatment": 0, "control": 0, "sent": 0}
    spend = _pre_period_spend(session, eligible, at)
    rows = []
    for customer_id in eligible:
        group = assigned_group(campaign.id, customer_id, campaign.control_fraction)
        rows.append({"campaign_id": campaign.id, "customer_id": customer_id, "target_group": group,
                     "assigned_at": at, "contacted_at": at if group == "treatment" else None,
                     "converted_at": None, "revenue_after": Decimal(0),
                     "pre_period_spend": spend.get(customer_id, Decimal(0)), "uplift_score": scores.get(customer_id)})
    session.execute(insert(WinbackTarget), rows)
    treated = [r["customer_id"] for r in rows if r["target_group"] == "treatment"]
    incentives, refused = _give_incentives(session, actor, campaign, treated, at)
    body = f"{campaign.subject or ''} — {describe_offer(campaign.offer_type, campaign.offer_value)}"
    messages = [{"customer_id": c, "channel": campaign.channel, "direction": "outbound", "status": "sent",
                 "campaign": campaign.name[:100], "campaign_id": campaign.id, "template": campaign.offer_type,
                 "subject": campaign.subject, "body": f"{body} {incentives[c]}" if c in incentives else body,
                 "sent_at": at, "logged_by_id": actor.id}
                for c in treated]
    for start in range(0, len(messages), CHUNK):
        session.execute(insert(CustomerCommunication), messages[start:start + CHUNK])
    counts: dict[str, Any] = {"enrolled": len(rows), "treatment": len(treated), "control": len(rows) - len(treated),
              "sent": len(treated), "incentives": len(incentives)}
    if refused:
        counts["incentives_refused"] = refused
    return counts


def _give_incentives(session: Session, actor: Actor, campaign: WinbackCampaign, treated: list[int],
                     at: dt.datetime) -> tuple[dict[int, str], dict[str, int]]:
    """Give each newly treated customer the offer (holdout customers get nothing): a voucher for a
    discount or an amount, valid until the attribution window closes, or the points through the
    loyalty ledger. Once per customer and campaign (enrolment is once; the voucher's source and the
    ledger's key make sure). Returns customer id -> the text the message carries, and the reasons
    some customers' points could not be posted, counted."""
    if not treated:
        return {}, {}
    if campaign.offer_type in VOUCHER_OFFERS:
        codes = issue_vouchers(session, actor, treated, VOUCHER_OFFERS[campaign.offer_type], campaign.offer_value,
                               source="campaign", source_id=str(campaign.id),
                               expires_at=at + dt.timedelta(days=campaign.attribution_days),
                               authorised_by="campaigns.manage", now=at)
        until = at + dt.timedelta(days=campaign.attribution_days)
        return {c: f"Your code: {code} (valid until {until:%d %b %Y})." for c, code in codes.items()}, {}
    given: dict[int, str] = {}
    refused: dict[str, int] = {}
    points = int(campaign.offer_value)
    for customer_id in treated:
        try:
            with session.begin_nested():  # a member whose account cannot take points keeps the rest going
                credit_reward(session, actor, customer_id, points, f"Campaign {campaign.name}: win-back offer",
                              source_type="campaign", source_id=str(campaign.id),
                              idempotency_key=f"campaign:{campaign.id}:points:{customer_id}",
                              authorised_by="campaigns.manage")
            given[customer_id] = f"{points:,} points have been added to your account."
        except ValidationError as exc:
            refused[str(exc)] = refused.get(str(exc), 0) + 1
    return given, refused


def _pre_period_spend(session: Session, customer_ids: list[int], at: dt.datetime) -> dict[int, Decimal]:
    """Revenue of each customer in the PRE_PERIOD_DAYS before `at`: the CUPED covariate."""
    spend: dict[int, Decimal] = {}
    since = at - dt.timedelta(days=PRE_PERIOD_DAYS)
    for start in range(0, len(customer_ids), CHUNK):
        chunk = customer_ids[start:start + CHUNK]
        spend.update(session.execute(
            select(Order.customer_id, func.sum(Order.total))
            .where(Order.customer_id.in_(chunk), Order.status.in_(REVENUE_ORDER_STATUSES),
                   Order.ordered_at >= since, Order.ordered_at < at)
            .group_by(Order.customer_id)).all())
    return spend


def enrol_running_campaigns(session: Session, actor: Actor, at: dt.datetime,
                            scorer_for: Callable[[WinbackCampaign], UpliftScorer | None] | None = None,
                            ) -> dict[str, Any]:
    """The refresh step: each running campaign enrols the customers who qualify now and were never
    enrolled in it (each customer at most once per campaign); campaigns past their end date finish."""
    require(actor, "campaigns.manage")
    check_moment(at)
    totals = {"campaigns": 0, "enrolled": 0, "sent": 0, "finished": 0}
    campaigns = session.scalars(select(WinbackCampaign).where(WinbackCampaign.status == "running")
                                .order_by(WinbackCampaign.id)).all()
    for campaign in campaigns:
        if campaign.launched_at is not None and campaign.launched_at > at:
            continue  # a refresh as of a date before the launch enrols no one in it
        if campaign.ends_at is not None and campaign.ends_at <= at:
            campaign.status = "completed"
            campaign.finished_at = campaign.ends_at
            totals["finished"] += 1
            record_audit(session, actor, "campaign.finish", "winback_campaign", campaign.id, None,
                         {"reason": "end date reached"})
            continue
        scorer = scorer_for(campaign) if scorer_for is not None else None
        counts = _enrol(session, actor, campaign, at, scorer)
        totals["campaigns"] += 1
        totals["enrolled"] += counts["enrolled"]
        totals["sent"] += counts["sent"]
        if counts["enrolled"]:
            record_audit(session, actor, "campaign.enrol", "winback_campaign", campaign.id, None, counts)
    return totals


def finish_campaign(session: Session, actor: Actor, campaign_id: Any, at: dt.datetime | None = None) -> WinbackCampaign:
    """Stop enrolling; results keep counting conversions until each target's window closes."""
    require(actor, "campaigns.manage")
    campaign = campaign_row(session, campaign_id, lock=True)
    if campaign.status != "running":
        raise ValidationError(f"Only a running campaign can be finished; this one is {campaign.status}.")
    before = _snapshot(campaign)
    campaign.status = "completed"
    campaign.finished_at = at or utcnow()
    record_audit(session, actor, "campaign.finish", "winback_campaign", campaign.id, before, _snapshot(campaign))
    return campaign


def cancel_campaign(session: Session, actor: Actor, campaign_id: Any) -> WinbackCampaign:
    """Cancel a draft (nothing was sent) or a running campaign (no one else is enrolled)."""
    require(actor, "campaigns.manage")
    campaign = campaign_row(session, campaign_id, lock=True)
    if campaign.status not in ("draft", "running"):
        raise ValidationError(f"A {campaign.status} campaign cannot be cancelled.")
    before = _snapshot(campaign)
    campaign.status = "cancelled"
    campaign.finished_at = utcnow()
    record_audit(session, actor, "campaign.cancel", "winback_campaign", campaign.id, before, _snapshot(campaign))
    return campaign


def list_campaigns(session: Session, viewer: Actor, status: str | None = None) -> list[dict[str, Any]]:
    """Every campaign with its audience so far (targets per group and messages sent)."""
    require(viewer, "campaigns.view")
    t = WinbackTarget
    counts = (select(t.campaign_id, func.count().label("targets"),
                     func.sum(case((t.target_group == "control", 1), else_=0)).label("control"))
              .group_by(t.campaign_id).subquery())
    query = (select(WinbackCampaign, counts.c.targets, counts.c.control)
             .outerjoin(counts, counts.c.campaign_id == WinbackCampaign.id)
             .order_by(WinbackCampaign.created_at.desc(), WinbackCampaign.id.desc()))
    if status:
        query = query.where(WinbackCampaign.status == status)
    rows = []
    for campaign, targets, control in session.execute(query).all():
        rows.append({
            "id": campaign.id, "name": campaign.name, "status": campaign.status,
            "trigger": describe_trigger(campaign.trigger) if campaign.trigger else "(not set)",
            "channel": campaign.channel,
            "offer": describe_offer(campaign.offer_type, campaign.offer_value)
            if campaign.offer_type in OFFER_TYPES else campaign.offer_type,
            "control_share": campaign.control_fraction, "targets": int(targets or 0),
            "control": int(control or 0), "treatment": int(targets or 0) - int(control or 0),
            "launched_at": campaign.launched_at, "attribution_days": campaign.attribution_days,
            "uplift_share": campaign.uplift_share,
        })
    return rows


def get_campaign(session: Session, viewer: Actor, campaign_id: Any) -> dict[str, Any]:
    require(viewer, "campaigns.view")
    campaign = campaign_row(session, campaign_id)
    return {
        "id": campaign.id, "name": campaign.name, "description": campaign.description, "status": campaign.status,
        "trigger": campaign.trigger, "trigger_text": describe_trigger(campaign.trigger) if campaign.trigger else "",
        "segment_id": campaign.segment_id, "channel": campaign.channel, "offer_type": campaign.offer_type,
        "offer_value": campaign.offer_value, "offer_text": describe_offer(campaign.offer_type, campaign.offer_value)
        if campaign.offer_type in OFFER_TYPES else campaign.offer_type,
        "subject": campaign.subject, "control_share": campaign.control_fraction,
        "expected_lift": campaign.expected_lift, "baseline_rate": campaign.baseline_rate,
        "attribution_days": campaign.attribution_days, "gross_margin": campaign.gross_margin,
        "uplift_share": campaign.uplift_share, "uplift_model_id": campaign.uplift_model_id,
        "launched_at": campaign.launched_at, "finished_at": campaign.finished_at, "version": campaign.version,
    }
