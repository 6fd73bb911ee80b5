"""What the Loyalty page reads: a member's summary and ledger, the programme's tiers, liability, expiry
outlook and monthly activity; the last two as the refresh computed them (`refresh_*`) where it did."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import shown_name
from crm_core.loyalty.ledger import expiring_by_account
from crm_core.loyalty.rules import get_settings
from crm_core.platform.actors import Actor
from crm_core.platform.dates import data_date, midnight
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import replace_summary
from crm_core.platform.sql import year_month
from db.models import (
    LOYALTY_TIERS,
    Customer,
    LoyaltyAccount,
    LoyaltyAdjustmentRequest,
    LoyaltyTierChange,
    LoyaltyTransaction,
    RollupSummary,
    User,
)


def account_summary(session: Session, viewer: Actor, customer_id: int, as_of: dt.date | None = None) -> dict[str, Any]:
    """A member's balance, tier, progress to the next tier, points expiring soon and tier history."""
    require(viewer, "loyalty.view")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"There is no customer {customer_id}.")
    account = session.scalars(select(LoyaltyAccount).where(LoyaltyAccount.customer_id == customer_id)).one_or_none()
    base = {"customer_id": customer_id, "name": shown_name(viewer, customer.first_name, customer.last_name, customer_id),
            "member": account is not None}
    if account is None:
        return base
    settings, _ = get_settings(session)
    thresholds = settings["tier_thresholds"]
    position = LOYALTY_TIERS.index(account.tier)
    next_tier = LOYALTY_TIERS[position + 1] if position + 1 < len(LOYALTY_TIERS) else None
    as_of = as_of or data_date(session).day
    overdue, outlook = _outlook(session, as_of, 3, settings, customer_id=customer_id)
    history = session.execute(
        select(LoyaltyTierChange.from_tier, LoyaltyTierChange.to_tier, LoyaltyTierChange.changed_at)
        .where(LoyaltyTierChange.account_id == account.id).order_by(LoyaltyTierChange.changed_at, LoyaltyTierChange.id)
    ).all()
    pending = session.scalar(select(func.count()).select_from(LoyaltyAdjustmentRequest).where(
        LoyaltyAdjustmentRequest.account_id == account.id, LoyaltyAdjustmentRequest.status == "pending")) or 0
    return {
        **base, "account_id": account.id, "program": account.program, "tier": account.tier,
        "status": account.status, "balance": account.points_balance, "lifetime_points": account.lifetime_points,
        "enrolled_at": account.enrolled_at, "tier_updated_at": account.tier_updated_at,
        "next_tier": next_tier,
        "points_to_next_tier": None if next_tier is None else max(0, thresholds[next_tier] - account.lifetime_points),
        "balance_value": round(account.points_balance * settings["point_value"], 2),
        "expiring_next_3_months": overdue + sum(row["points"] for row in outlook),
        "pending_adjustments": pending, "version": account.version,
        "tier_history": [{"from": f, "to": to, "changed_at": when} for f, to, when in history],
    }


def first_member(session: Session, viewer: Actor) -> int | None:
    """The lowest customer id with an active account: a sensible default for the lookup."""
    require(viewer, "loyalty.view")
    return session.scalar(select(func.min(LoyaltyAccount.customer_id)).where(LoyaltyAccount.status == "active"))


def ledger_page(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 25,
                after: str | None = None) -> Page:
    """A member's ledger, newest first; a numbered page, or with `after` (a cursor, FIRST for the start)
    the next `page_size` by keyset."""
    require(viewer, "loyalty.view")
    t = LoyaltyTransaction
    condition = t.customer_id == customer_id
    total = None if after is not None else session.scalar(select(func.count()).select_from(t).where(condition)) or 0
    page = 0 if after is not None else max(1, page)
    rows, next_after = fetch_rows(
        session,
        select(t.id, t.created_at, t.kind, t.points, t.balance_after, t.reason, t.source_type, t.source_id,
               User.username)
        .outerjoin(User, User.id == t.created_by_id).where(condition),
        (SortKey(t.created_at, descending=True), SortKey(t.id, descending=True)), "loyalty_ledger",
        page=page, page_size=page_size, after=after)
    return Page(rows=[{"entry": i, "time": at, "kind": k, "points": p, "balance_after": b, "reason": why,
                       "source": f"{st} {sid}" if st and sid else (st or ""), "by": who or "system"}
                      for i, at, k, p, b, why, st, sid, who, *_key in rows],
                total=total, page=page, page_size=page_size, next_after=next_after)


def tier_distribution(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Members and outstanding points per tier, in tier order (tiers without members show 0)."""
    require(viewer, "loyalty.view")
    a = LoyaltyAccount
    rows = session.execute(select(a.tier, func.count(), func.coalesce(func.sum(a.points_balance), 0))
                           .where(a.status == "active").group_by(a.tier)).all()
    found = {tier: (n, pts) for tier, n, pts in rows}
    return [{"tier": t, "members": int(found.get(t, (0, 0))[0]), "points": int(found.get(t, (0, 0))[1])}
            for t in LOYALTY_TIERS]


def points_liability(session: Session, viewer: Actor) -> dict[str, Any]:
    """Outstanding points of active accounts times the value of a point."""
    require(viewer, "loyalty.view")
    settings, _ = get_settings(session)
    a = LoyaltyAccount
    members, points = session.execute(select(func.count(), func.coalesce(func.sum(a.points_balance), 0))
                                      .where(a.status == "active")).one()
    return {"members": int(members), "outstanding_points": int(points), "point_value": settings["point_value"],
            "liability": round(int(points) * settings["point_value"], 2)}


def _month_starts(as_of: dt.date, months: int) -> list[dt.date]:
    starts, year, month = [], as_of.year, as_of.month
    for _ in range(months + 1):
        month += 1
        if month > 12:
            year, month = year + 1, 1
        starts.append(dt.date(year, month, 1))
    return starts


def _outlook(session: Session, as_of: dt.date, months: int, settings: dict[str, Any],
             customer_id: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Points past the age at `as_of` (what `expire_points(as_of)` would post) and, per month,
    the points that reach the age in that month if nothing is redeemed."""
    age = dt.timedelta(days=settings["expiry_days"])
    ends = [as_of] + _month_starts(as_of, months)[:months]
    cutoffs = [midnight(end - age) for end in ends]
    due = expiring_by_account(cutoffs)
    if customer_id is not None:
        due = due.where(LoyaltyTransaction.customer_id == customer_id)
    due = due.subquery()
    totals = session.execute(select(*[func.coalesce(func.sum(due.c[f"due_{i}"]), 0) for i in range(len(cutoffs))])).one()
    sums = [int(v) for v in totals]
    rows = []
    for i in range(1, len(cutoffs)):
        points = max(0, sums[i] - sums[i - 1])
        rows.append({"month": ends[i - 1].strftime("%Y-%m"), "points": points,
                     "value": round(points * settings["point_value"], 2)})
    return sums[0], rows


OUTLOOK_SUMMARY = "loyalty_expiry_outlook"  # its row in rollup_summaries
OUTLOOK_MONTHS = 12  # what the batch computes (the Loyalty page's outlook)


def refresh_expiry_outlook(session: Session, as_of: dt.date) -> int:
    """Compute the expiry outlook of as_of once (the batch, after earning and expiry), for the Loyalty page.
    Returns the points it sees expiring in the next OUTLOOK_MONTHS months."""
    settings, version = get_settings(session)
    overdue, rows = _outlook(session, as_of, OUTLOOK_MONTHS, settings)
    replace_summary(session, OUTLOOK_SUMMARY, as_of, {
        "overdue": overdue, "months": rows, "expiry_days": settings["expiry_days"], "settings_version": version})
    return sum(row["points"] for row in rows)


def expiry_outlook(session: Session, viewer: Actor, as_of: dt.date, months: int = 12) -> dict[str, Any]:
    """Points that will expire in each of the next months if nothing is redeemed (FIFO).

    "overdue" are points already past the age on `as_of`: the next `expire_points` run posts them.
    As the refresh of as_of computed it (`as_of_refresh` says when) while the settings are unchanged:
    redemptions since move it by a little and are counted at the next refresh; otherwise computed now."""
    require(viewer, "loyalty.view")
    if not 1 <= months <= 36:
        raise ValidationError("The outlook covers 1 to 36 months.")
    settings, version = get_settings(session)
    stored = session.get(RollupSummary, (OUTLOOK_SUMMARY, as_of))
    if stored is not None and months <= OUTLOOK_MONTHS and stored.payload["settings_version"] == version:
        return {"overdue": stored.payload["overdue"], "months": stored.payload["months"][:months],
                "expiry_days": stored.payload["expiry_days"], "as_of_refresh": stored.built_at}
    overdue, rows = _outlook(session, as_of, months, settings)
    return {"overdue": overdue, "months": rows, "expiry_days": settings["expiry_days"], "as_of_refresh": None}


ACTIVITY_SUMMARY = "loyalty_monthly_activity"  # its row in rollup_summaries


def _activity_rows(session: Session, start: dt.datetime, stop: dt.datetime | None = None) -> list[dict[str, Any]]:
    t = LoyaltyTransaction
    month = year_month(t.created_at)
    conditions = [t.created_at >= start] + ([t.created_at < stop] if stop is not None else [])
    return [{"month": m, "kind": k, "points": int(p)} for m, k, p in session.execute(
        select(month, t.kind, func.sum(t.points)).where(*conditions).group_by(month, t.kind).order_by(month))]


def _activity_start(as_of: dt.date, months: int) -> dt.datetime:
    start = midnight(dt.date(as_of.year, as_of.month, 1))
    for _ in range(months - 1):
        start = midnight((start.date() - dt.timedelta(days=1)).replace(day=1))
    return start


def refresh_monthly_activity(session: Session, as_of: dt.date) -> int:
    """The ledger's points per kind in each finished month of the OUTLOOK_MONTHS before as_of's month, once
    (the batch); the page adds the month of as_of live. Returns the rows stored."""
    rows = _activity_rows(session, _activity_start(as_of, OUTLOOK_MONTHS), midnight(as_of.replace(day=1)))
    replace_summary(session, ACTIVITY_SUMMARY, as_of, {"rows": rows})
    return len(rows)


def monthly_activity(session: Session, viewer: Actor, months: int = 12, as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Points earned, redeemed, expired and adjusted per month (for the programme chart): the finished
    months as the refresh of as_of summed them, the month of as_of read now."""
    require(viewer, "loyalty.view")
    as_of = as_of or data_date(session).day
    start = _activity_start(as_of, months)
    stored = session.get(RollupSummary, (ACTIVITY_SUMMARY, as_of))
    if stored is not None and months <= OUTLOOK_MONTHS:
        first = start.strftime("%Y-%m")
        return ([row for row in stored.payload["rows"] if row["month"] >= first]
                + _activity_rows(session, midnight(as_of.replace(day=1))))
    return _activity_rows(session, start)
