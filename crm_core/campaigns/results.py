"""A campaign's results: treatment against the randomised holdout.

A conversion is a revenue order strictly after the customer's send (the control group's would-be
send: their assignment, the same moment) and within the attribution window. Everything is summed
per group in the database; the statistics work on those sums.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import Float, and_, case, cast, delete, func, select
from sqlalchemy.orm import Session

from crm_core.campaigns.audience import check_moment
from crm_core.campaigns.rules import POINT_VALUE, SEND_COST
from crm_core.campaigns.service import VOUCHER_OFFERS, campaign_row, describe_offer
from crm_core.campaigns.stats import (
    Difference,
    GroupSums,
    cuped_difference,
    mean_difference,
    rate_difference,
)
from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import jsonable
from crm_core.platform.permissions import require
from crm_core.platform.sql import days_between, midnight_after, whole_days_between, without_jit
from db.models import (
    REVENUE_ORDER_STATUSES,
    CustomerCommunication,
    LoyaltyTransaction,
    Order,
    RollupSummary,
    Voucher,
    WinbackCampaign,
    WinbackTarget,
    utcnow,
)


def _per_target(campaign_id: int, window_days: int, at: dt.datetime):
    """One row per target: group, pre-period spend x, revenue y in the window, orders, first order time."""
    t = WinbackTarget
    sent = func.coalesce(t.contacted_at, t.assigned_at)
    in_window = and_(Order.customer_id == t.customer_id, Order.status.in_(REVENUE_ORDER_STATUSES),
                     Order.ordered_at > sent, Order.ordered_at <= at,
                     Order.ordered_at < midnight_after(sent, window_days),  # the index's range; exact below
                     days_between(Order.ordered_at, sent) <= window_days)
    return (select(t.id.label("target_id"), t.target_group.label("grp"), t.assigned_at.label("assigned_at"),
                   cast(t.pre_period_spend, Float).label("x"),
                   cast(func.coalesce(func.sum(Order.total), 0), Float).label("y"),
                   func.count(Order.id).label("orders"), func.min(Order.ordered_at).label("first_order_at"),
                   sent.label("sent_at"))
            .select_from(t).outerjoin(Order, in_window)
            .where(t.campaign_id == campaign_id)
            .group_by(t.id, t.target_group, t.assigned_at, t.pre_period_spend, sent)
            .subquery())


def _difference(d: Difference) -> dict[str, float | bool]:
    return {"estimate": d.estimate, "low": d.low, "high": d.high, "standard_error": d.standard_error,
            "significant": d.significant}


def campaign_results(session: Session, viewer: Actor, campaign_id: Any, at: dt.datetime | None = None) -> dict[str, Any]:
    """Conversion rate and revenue per customer per group; their differences with 95% intervals
    (revenue also CUPED-adjusted with pre-period spend); incremental ROI =
    (incremental gross margin − incentive cost − send cost) / (incentive cost + send cost)."""
    require(viewer, "campaigns.view")
    campaign = campaign_row(session, campaign_id)
    at = check_moment(at or utcnow())
    window = campaign.attribution_days
    without_jit(session.connection())
    per = _per_target(campaign.id, window, at)
    converted = case((per.c.orders > 0, 1), else_=0)
    average_order = case((per.c.orders > 0, per.c.y / per.c.orders), else_=0.0)
    rows = session.execute(
        select(per.c.grp, func.count(), func.sum(converted), func.sum(per.c.y), func.sum(per.c.y * per.c.y),
               func.sum(per.c.x), func.sum(per.c.x * per.c.x), func.sum(per.c.x * per.c.y),
               func.sum(average_order), func.max(per.c.assigned_at))
        .group_by(per.c.grp)).all()
    groups: dict[str, GroupSums] = {}
    average_orders: dict[str, float] = {}
    last_assigned: dt.datetime | None = None
    for grp, n, conv, sy, sy2, sx, sx2, sxy, avg_orders, latest in rows:
        groups[grp] = GroupSums(int(n), int(conv or 0), float(sy or 0), float(sy2 or 0), float(sx or 0),
                                float(sx2 or 0), float(sxy or 0))
        average_orders[grp] = float(avg_orders or 0)
        if latest is not None and (last_assigned is None or latest > last_assigned):
            last_assigned = latest
    empty = GroupSums(0, 0, 0, 0, 0, 0, 0)
    treatment, control = groups.get("treatment", empty), groups.get("control", empty)
    sends = session.scalar(select(func.count()).select_from(CustomerCommunication)
                           .where(CustomerCommunication.campaign_id == campaign.id)) or 0
    result: dict[str, Any] = {
        "campaign": {"id": campaign.id, "name": campaign.name, "status": campaign.status,
                     "offer": describe_offer(campaign.offer_type, campaign.offer_value),
                     "channel": campaign.channel, "attribution_days": window,
                     "control_share": campaign.control_fraction, "gross_margin": campaign.gross_margin},
        "groups": [
            {"group": name, "customers": g.n, "conversions": g.conversions, "conversion_rate": g.rate,
             "revenue": g.sum_y, "revenue_per_customer": g.mean_y, "pre_period_spend_per_customer": g.mean_x}
            for name, g in (("treatment", treatment), ("control", control))],
        "sends": sends,
        "windows_open_until": (last_assigned + dt.timedelta(days=window)) if last_assigned
        and last_assigned + dt.timedelta(days=window) > at else None,
        "notes": [],
    }
    if not treatment.n or not control.n:
        result["notes"].append("Results need customers in both groups: nobody has been enrolled yet"
                               if not (treatment.n or control.n) else
                               "Results need customers in both the treatment and the control group.")
        result.update(conversion=None, revenue=None, cuped=None, roi=None)
        return result
    conversion = rate_difference(treatment, control)
    revenue = mean_difference(treatment, control)
    cuped, reduction = cuped_difference(treatment, control)
    result["conversion"] = _difference(conversion)
    result["revenue"] = _difference(revenue)
    result["cuped"] = {**_difference(cuped), "variance_reduction": reduction}
    result["roi"] = _roi(campaign.offer_type, campaign.offer_value, campaign.channel, campaign.gross_margin,
                         treatment, sends, average_orders.get("treatment", 0.0), cuped,
                         _incentive_given(session, campaign, at))
    if result["windows_open_until"] is not None:
        result["notes"].append(f"Attribution windows are still open until {result['windows_open_until']:%d %b %Y}: "
                               "the figures may still change.")
    return result


def _incentive_given(session: Session, campaign: WinbackCampaign, at: dt.datetime) -> float | None:
    """What the incentive actually cost by `at`, when the campaign gave it: the discounts of the
    orders that redeemed its vouchers, or the points it posted at their value. None for a campaign
    that issued nothing (launched before vouchers existed): its cost is estimated."""
    source_id = str(campaign.id)
    if campaign.offer_type in VOUCHER_OFFERS:
        mine = and_(Voucher.source == "campaign", Voucher.source_id == source_id)
        if not session.scalar(select(func.count()).select_from(Voucher).where(mine)):
            return None
        redeemed = session.scalar(select(func.coalesce(func.sum(Order.discount), 0))
                                  .join(Voucher, Voucher.redeemed_order_id == Order.id)
                                  .where(mine, Voucher.redeemed_at <= at))
        return float(redeemed or 0)
    posted = session.scalar(select(func.sum(LoyaltyTransaction.points)).where(
        LoyaltyTransaction.source_type == "campaign", LoyaltyTransaction.source_id == source_id,
        LoyaltyTransaction.kind == "earn"))
    return None if posted is None else float(posted) * float(POINT_VALUE)


def _roi(offer_type: str, offer_value: Decimal, channel: str, gross_margin: float, treatment: GroupSums,
         sends: int, treated_average_orders: float, lift: Difference,
         given: float | None = None) -> dict[str, float | str | None]:
    """Incentive cost is what the campaign gave: the discounts its vouchers took off redeeming
    orders, or the points it posted to every treated customer at their value (`given`). A campaign
    that issued nothing is estimated: each treated converter redeems the offer once, a discount on
    an order of their average size. Send cost is every message sent."""
    value = float(offer_value)
    if given is not None:
        incentive, basis = given, "posted" if offer_type == "loyalty_points" else "redeemed"
    elif offer_type == "percent_discount":
        incentive, basis = value / 100 * treated_average_orders, "estimated"
    elif offer_type == "voucher":
        incentive, basis = value * treatment.conversions, "estimated"
    else:
        incentive, basis = value * float(POINT_VALUE) * treatment.conversions, "estimated"
    send_cost = sends * float(SEND_COST.get(channel, Decimal(0)))
    cost = incentive + send_cost

    def roi(per_customer_lift: float) -> float | None:
        margin = per_customer_lift * treatment.n * gross_margin
        return (margin - cost) / cost if cost > 0 else None

    incremental_revenue = lift.estimate * treatment.n
    return {"incremental_revenue": incremental_revenue,
            "incremental_revenue_low": lift.low * treatment.n, "incremental_revenue_high": lift.high * treatment.n,
            "incremental_gross_margin": incremental_revenue * gross_margin,
            "incentive_cost": incentive, "incentive_basis": basis, "send_cost": send_cost, "cost": cost,
            "roi": roi(lift.estimate), "roi_low": roi(lift.low), "roi_high": roi(lift.high)}


def conversion_curve(session: Session, viewer: Actor, campaign_id: Any, at: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Share of each group converted by each day after the send: a few dozen points for a chart."""
    require(viewer, "campaigns.view")
    campaign = campaign_row(session, campaign_id)
    at = at or utcnow()
    per = _per_target(campaign.id, campaign.attribution_days, at)
    day = whole_days_between(per.c.sent_at, per.c.first_order_at)
    sizes: dict[str, int] = dict(session.execute(select(per.c.grp, func.count()).group_by(per.c.grp)).all())
    counts = session.execute(select(per.c.grp, day, func.count()).where(per.c.orders > 0)
                             .group_by(per.c.grp, day)).all()
    by_group: dict[str, dict[int, int]] = {}
    for grp, d, n in counts:
        by_group.setdefault(grp, {})[int(d)] = int(n)
    rows = []
    for grp, size in sizes.items():
        total = 0
        for d in range(campaign.attribution_days + 1):
            total += by_group.get(grp, {}).get(d, 0)
            rows.append({"group": grp, "day": d, "converted_share": total / size if size else 0.0})
    return rows


def measured_campaigns(session: Session, at: dt.datetime) -> list[int]:
    """Completed campaigns whose every attribution window has closed by `at`: their outcomes are final."""
    t = WinbackTarget
    last = (select(t.campaign_id, func.max(t.assigned_at).label("last_assigned")).group_by(t.campaign_id).subquery())
    rows = session.execute(
        select(WinbackCampaign.id, WinbackCampaign.attribution_days, last.c.last_assigned)
        .join(last, last.c.campaign_id == WinbackCampaign.id)
        .where(WinbackCampaign.status == "completed").order_by(WinbackCampaign.id)).all()
    return [cid for cid, days, latest in rows if latest + dt.timedelta(days=days) <= at]


def target_outcomes(session: Session, campaign_id: int, at: dt.datetime) -> list[dict[str, Any]]:
    """Each target of a campaign with its group, assignment time and outcome in the window (for
    training uplift models): converted (0/1) and revenue."""
    campaign = campaign_row(session, campaign_id)
    per = _per_target(campaign.id, campaign.attribution_days, at)
    rows = session.execute(
        select(WinbackTarget.customer_id, per.c.grp, per.c.assigned_at, per.c.orders, per.c.y)
        .join(per, per.c.target_id == WinbackTarget.id).order_by(WinbackTarget.customer_id)).all()
    return [{"campaign_id": campaign.id, "customer_id": customer_id, "treated": int(grp == "treatment"),
             "assigned_at": assigned_at, "converted": int(orders > 0), "revenue": float(revenue)}
            for customer_id, grp, assigned_at, orders, revenue in rows]


# What the Campaigns page shows of each launched campaign is computed by the refresh (every target's
# orders in its window: seconds for a campaign of 200,000 customers) and read from here; the page can
# still recompute one campaign on demand.
STORED_PREFIX = "campaign_results:"


def store_results(session: Session, at: dt.datetime, actor: Actor = SYSTEM) -> int:
    """Compute and store the results and conversion curve of every launched campaign as of `at`
    (a batch step: `actor` must be allowed to run the refresh)."""
    require(actor, "refresh.run")
    session.execute(delete(RollupSummary).where(RollupSummary.name.like(f"{STORED_PREFIX}%")))
    launched = session.scalars(select(WinbackCampaign.id).where(WinbackCampaign.status != "draft",
                                                                 select(WinbackTarget.id).where(
                                                                     WinbackTarget.campaign_id == WinbackCampaign.id)
                                                                 .exists())).all()
    for campaign_id in launched:
        payload = {"at": at, "results": campaign_results(session, SYSTEM, campaign_id, at=at),
                   "curve": conversion_curve(session, SYSTEM, campaign_id, at=at)}
        session.add(RollupSummary(name=f"{STORED_PREFIX}{campaign_id}", as_of=at.date(), built_at=utcnow(),
                                  payload=jsonable(payload, float)))
    session.flush()
    return len(launched)


def stored_results(session: Session, viewer: Actor, campaign_id: Any) -> tuple[dict[str, Any], list[dict[str, Any]],
                                                                              dt.datetime] | None:
    """(results, conversion curve, as of when) as the last refresh computed them, or None."""
    require(viewer, "campaigns.view")
    campaign = campaign_row(session, campaign_id)
    stored = session.scalar(select(RollupSummary).where(RollupSummary.name == f"{STORED_PREFIX}{campaign.id}"))
    if stored is None:
        return None
    results = dict(stored.payload["results"])
    if results.get("windows_open_until"):
        results["windows_open_until"] = dt.datetime.fromisoformat(results["windows_open_until"])
    return results, list(stored.payload["curve"]), dt.datetime.fromisoformat(stored.payload["at"])
