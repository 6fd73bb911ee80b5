"""What the Referrals page reads: the programme's figures (conversion, K-factor, time to first order,
rewards), referrals over time by status, referred against other customers' retention and value, and
the referrals one page at a time."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.actors import Actor
from crm_core.platform.dates import end_of, midnight
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import history_rewritten_since, replace_summary
from crm_core.platform.sql import days_between, year_month
from crm_core.reporting.sales_rollups import counted_customers
from db.models import (
    REVENUE_ORDER_STATUSES,
    Customer,
    CustomerLifetimeValue,
    Order,
    Referral,
    ReferralCheck,
    ReferralReward,
    RollupSummary,
)

RETENTION_DAYS = 90
REFERRAL_SUMMARY = "referral_analytics"
STATUS_LABEL = case((ReferralCheck.verdict == "rejected", "rejected"), (ReferralCheck.verdict == "review", "in review"),
                    else_=Referral.status)


def referral_kpis(session: Session, viewer: Actor, as_of: dt.date) -> dict[str, Any]:
    """Referrals, friends converted (a first paid order), conversion, invites per customer, K-factor
    (invites per customer × invite conversion), days from sign-up to first order, reward points and
    voucher rewards' amounts per status."""
    require(viewer, "referrals.view")
    end = end_of(as_of)
    row = session.execute(select(
        func.count(), func.count(func.distinct(Referral.referrer_id)),
        func.sum(case((Referral.converted_at.is_not(None), 1), else_=0)),
    ).where(Referral.created_at < end)).one()
    referrals, referrers, converted = int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)
    customers = counted_customers(session, before=end)
    if customers is None:  # no rollup to read yet (or history rewritten since): count them
        customers = session.scalar(select(func.count()).select_from(Customer).where(
            COUNTED_CUSTOMER, Customer.signed_up_at < end)) or 0
    stored = _stored_summary(session, as_of)
    days = stored["days_to_first_order"] if stored is not None else _days_to_first_order(session, end)
    rewards = dict(session.execute(select(ReferralReward.status, func.sum(ReferralReward.points))
                                   .group_by(ReferralReward.status)).all())
    vouchers = dict(session.execute(select(ReferralReward.status, func.sum(ReferralReward.amount))
                                    .where(ReferralReward.kind == "voucher").group_by(ReferralReward.status)).all())
    invites_per_customer = referrals / customers if customers else 0.0
    conversion = converted / referrals if referrals else None
    return {"referrals": referrals, "referrers": referrers, "converted": converted, "customers": int(customers),
            "conversion": conversion, "invites_per_customer": invites_per_customer,
            "k_factor": invites_per_customer * conversion if conversion is not None else None,
            "days_to_first_order": days,
            "points": {status: int(points or 0) for status, points in rewards.items()},
            "vouchers": {status: float(amount or 0) for status, amount in vouchers.items()}}


def referrals_by_month(session: Session, viewer: Actor, as_of: dt.date, months: int = 12) -> list[dict[str, Any]]:
    """Referrals per month of the referral and status (rejected and in review from the checks)."""
    require(viewer, "referrals.view")
    end = end_of(as_of)
    start = (as_of.replace(day=1) - dt.timedelta(days=31 * (months - 1))).replace(day=1)
    month = year_month(Referral.created_at)
    rows = session.execute(select(month, STATUS_LABEL, func.count()).outerjoin(
        ReferralCheck, ReferralCheck.referral_id == Referral.id).where(
        Referral.created_at >= midnight(start), Referral.created_at < end)
        .group_by(month, STATUS_LABEL).order_by(month)).all()
    return [{"month": m, "status": s, "referrals": int(n)} for m, s, n in rows]


def _days_to_first_order(session: Session, end: dt.datetime) -> float | None:
    days = session.scalar(select(func.avg(days_between(Referral.converted_at, Customer.signed_up_at))).join(
        Customer, Customer.id == Referral.referred_id).where(Referral.converted_at.is_not(None),
                                                              Referral.created_at < end))
    return None if days is None else float(days)


def refresh_referral_summary(session: Session, as_of: dt.date) -> dict[str, Any]:
    """The batch's part (after the referral checks): referred against other customers, which reads every
    customer's orders, and the days to a first order, stored for the Referrals page as of the date."""
    end = end_of(as_of)
    payload = {"groups": _referred_vs_others(session, end), "days_to_first_order": _days_to_first_order(session, end)}
    replace_summary(session, REFERRAL_SUMMARY, as_of, payload)
    return payload


def _stored_summary(session: Session, as_of: dt.date) -> dict[str, Any] | None:
    """What the refresh stored as of this date, unless an import, a merge or an erasure changed history since."""
    stored = session.get(RollupSummary, (REFERRAL_SUMMARY, as_of))
    if stored is None or history_rewritten_since(session, stored.built_at):
        return None
    return stored.payload


def referred_vs_others(session: Session, viewer: Actor, as_of: dt.date) -> list[dict[str, Any]]:
    """Customers, revenue per customer, 90-day retention (an order in the last 90 days among those
    whose first order is older) and 12-month CLV, for referred customers and everyone else: as the
    refresh stored them for the date, or counted now."""
    require(viewer, "referrals.view")
    stored = _stored_summary(session, as_of)
    if stored is not None:
        return stored["groups"]
    return _referred_vs_others(session, end_of(as_of))


def _referred_vs_others(session: Session, end: dt.datetime) -> list[dict[str, Any]]:
    cutoff = end - dt.timedelta(days=RETENTION_DAYS)
    referred = select(Referral.referred_id).where(Referral.referred_id.is_not(None), Referral.created_at < end)
    per = select(Order.customer_id.label("customer_id"), func.sum(Order.total).label("revenue"),
                 func.min(Order.ordered_at).label("first"), func.max(Order.ordered_at).label("last")).where(
        Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < end).group_by(Order.customer_id).subquery()
    group = case((Customer.id.in_(referred), "referred"), else_="other")
    rows = session.execute(select(
        group, func.count(), func.coalesce(func.sum(per.c.revenue), 0),
        func.sum(case((per.c.first < cutoff, 1), else_=0)),
        func.sum(case((and_(per.c.first < cutoff, per.c.last >= cutoff), 1), else_=0)),
        func.avg(CustomerLifetimeValue.clv_12m),
    ).select_from(Customer).outerjoin(per, per.c.customer_id == Customer.id).outerjoin(
        CustomerLifetimeValue, CustomerLifetimeValue.customer_id == Customer.id).where(
        COUNTED_CUSTOMER, Customer.signed_up_at < end).group_by(group)).all()
    out = []
    for name, customers, revenue, older, kept, clv in rows:
        out.append({"group": name, "customers": int(customers),
                    "revenue_per_customer": float(revenue) / customers if customers else 0.0,
                    "retention_90d": int(kept or 0) / int(older) if older else None,
                    "clv_12m": None if clv is None else float(clv)})
    return sorted(out, key=lambda r: r["group"] != "referred")


def referral_list(session: Session, viewer: Actor, status: str | None = None, page: int = 1,
                  page_size: int = 25) -> Page:
    require(viewer, "referrals.view")
    query = select(Referral.id, Referral.referrer_id, Referral.referred_id, Referral.created_at,
                   Referral.converted_at, STATUS_LABEL.label("status"), ReferralCheck.reasons).outerjoin(
        ReferralCheck, ReferralCheck.referral_id == Referral.id)
    if status:
        query = query.where(STATUS_LABEL == status)  # noqa: SIM300 - a SQL expression, not a constant
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.execute(query.order_by(Referral.created_at.desc(), Referral.id.desc()).limit(page_size)
                           .offset((max(page, 1) - 1) * page_size)).all()
    return Page([{"referral": r.id, "referrer": r.referrer_id, "friend": r.referred_id, "referred_at": r.created_at,
                  "first_order_at": r.converted_at, "status": r.status,
                  "reasons": "; ".join(r.reasons or [])} for r in rows], total, page, page_size)
