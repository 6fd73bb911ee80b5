"""Executive overview: KPIs and chart series, aggregated in the database.

Definitions (also shown in the page's help text):
- revenue counts orders whose status is placed, paid, shipped or delivered (not cancelled,
  returned or refunded); periods are half-open, [start, end + 1 day);
- "this month" is month-to-date as of the range's end date, compared with the same number of
  days at the start of the previous month; "trailing 12 months" is the 365 days up to the end
  date against the 365 days before;
- active customers ordered in the 90 days up to the end date;
- repeat-purchase rate is the share of customers with an order by the end date who have two or more;
- NPS = % promoters (9-10) - % detractors (0-6) among answers in the range.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER, GONE_STATUSES, display_name
from crm_core.platform.actors import Actor
from crm_core.platform.dates import end_of, midnight
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import history_rewritten_since
from crm_core.platform.sql import year_month
from crm_core.reporting.sales_rollups import ACTIVE_DAYS, DailySales, stored_sales
from crm_core.segmentation.snapshot import snapshot_as_of
from db.models import (
    LOYALTY_TIERS,
    OPEN_TICKET_STATUSES,
    REVENUE_ORDER_STATUSES,
    Customer,
    CustomerAnalytics,
    LoyaltyAccount,
    Order,
    SupportTicket,
    SurveyResponse,
)

REVENUE_ORDER = Order.status.in_(REVENUE_ORDER_STATUSES)


def _change(current: Decimal | float, previous: Decimal | float) -> float | None:
    """Relative change in percent; None when there is nothing to compare against."""
    if not previous:
        return None
    return round((float(current) - float(previous)) / float(previous) * 100, 1)


@dataclass(frozen=True)
class Overview:
    start: dt.date
    end: dt.date
    customers_total: int
    customers_new_this_month: int
    customers_active_90d: int
    revenue_this_month: Decimal
    revenue_this_month_change: float | None
    revenue_12m: Decimal
    revenue_12m_change: float | None
    orders_in_range: int
    revenue_in_range: Decimal
    average_order_value: Decimal | None
    repeat_purchase_rate: float | None
    open_tickets: int
    sla_breaches: int
    nps: float | None
    nps_responses: int
    monthly: list[dict] = field(default_factory=list)
    tiers: list[dict] = field(default_factory=list)
    top_customers: list[dict] = field(default_factory=list)
    # The last day the batch's daily rollups cover (later days are read live); None when read live throughout.
    rollup_through: dt.date | None = None


def _revenue(session: Session, start: dt.datetime, end: dt.datetime) -> Decimal:
    value = session.scalar(
        select(func.coalesce(func.sum(Order.total), 0)).where(
            REVENUE_ORDER, Order.ordered_at >= start, Order.ordered_at < end
        )
    )
    return Decimal(str(value)).quantize(Decimal("0.01"))


def executive_overview(session: Session, viewer: Actor, start: dt.date, end: dt.date) -> Overview:
    require(viewer, "overview.view")
    if start > end:
        raise ValidationError("The start date must be on or before the end date.")
    range_start, range_end = midnight(start), midnight(end + dt.timedelta(days=1))
    stored = stored_sales(session, end, gaps_from=end - dt.timedelta(days=ACTIVE_DAYS - 1))
    if stored is not None:
        return _from_rollups(session, start, end, *stored)

    month_start = midnight(end.replace(day=1))
    previous_month_start = midnight((end.replace(day=1) - dt.timedelta(days=1)).replace(day=1))
    previous_month_end = min(previous_month_start + (range_end - month_start), month_start)
    year = dt.timedelta(days=365)

    customers_total, customers_new = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((Customer.signed_up_at >= month_start, 1), else_=0)), 0),
        ).where(COUNTED_CUSTOMER, Customer.signed_up_at < range_end)
    ).one()
    active_90d = session.scalar(
        select(func.count(func.distinct(Order.customer_id))).where(
            REVENUE_ORDER, Order.ordered_at >= range_end - dt.timedelta(days=ACTIVE_DAYS), Order.ordered_at < range_end
        )
    )
    revenue_month = _revenue(session, month_start, range_end)
    revenue_prev_month = _revenue(session, previous_month_start, previous_month_end)
    revenue_12m = _revenue(session, range_end - year, range_end)
    revenue_prev_12m = _revenue(session, range_end - 2 * year, range_end - year)

    orders_in_range, revenue_in_range = session.execute(
        select(func.count(), func.coalesce(func.sum(Order.total), 0)).where(
            REVENUE_ORDER, Order.ordered_at >= range_start, Order.ordered_at < range_end
        )
    ).one()
    revenue_in_range = Decimal(str(revenue_in_range)).quantize(Decimal("0.01"))
    aov = (revenue_in_range / orders_in_range).quantize(Decimal("0.01")) if orders_in_range else None

    per_customer = (
        select(Order.customer_id, func.count().label("n"))
        .where(REVENUE_ORDER, Order.ordered_at < range_end)
        .group_by(Order.customer_id)
        .subquery()
    )
    buyers, repeaters = session.execute(
        select(func.count(), func.coalesce(func.sum(case((per_customer.c.n >= 2, 1), else_=0)), 0))
    ).one()
    repeat_rate = round(repeaters / buyers * 100, 1) if buyers else None

    open_tickets, sla_breaches, nps, responses = _service_figures(session, range_start, range_end)
    return Overview(
        start=start, end=end,
        customers_total=customers_total, customers_new_this_month=int(customers_new),
        customers_active_90d=active_90d or 0,
        revenue_this_month=revenue_month,
        revenue_this_month_change=_change(revenue_month, revenue_prev_month),
        revenue_12m=revenue_12m, revenue_12m_change=_change(revenue_12m, revenue_prev_12m),
        orders_in_range=orders_in_range, revenue_in_range=revenue_in_range,
        average_order_value=aov, repeat_purchase_rate=repeat_rate,
        open_tickets=open_tickets, sla_breaches=sla_breaches,
        nps=nps, nps_responses=responses,
        monthly=monthly_series(session, range_start, range_end),
        tiers=tier_distribution(session),
        top_customers=top_customers(session, range_start, range_end),
    )


def _service_figures(session: Session, range_start: dt.datetime, range_end: dt.datetime):
    """Open tickets, SLA breaches of tickets opened in the range, NPS and its answers in the range."""
    open_tickets = session.scalar(
        select(func.count()).select_from(SupportTicket).where(SupportTicket.status.in_(OPEN_TICKET_STATUSES))
    )
    sla_breaches = session.scalar(
        select(func.count()).select_from(SupportTicket).where(
            SupportTicket.sla_breached.is_(True),
            SupportTicket.created_at >= range_start,
            SupportTicket.created_at < range_end,
        )
    )
    responses, promoters, detractors = session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(case((SurveyResponse.score >= 9, 1), else_=0)), 0),
            func.coalesce(func.sum(case((SurveyResponse.score <= 6, 1), else_=0)), 0),
        ).where(
            SurveyResponse.survey_type == "nps",
            SurveyResponse.responded_at >= range_start,
            SurveyResponse.responded_at < range_end,
        )
    ).one()
    nps = round((promoters - detractors) / responses * 100, 1) if responses else None
    return open_tickets or 0, sla_breaches or 0, nps, responses


def _from_rollups(session: Session, start: dt.date, end: dt.date, sales: DailySales, through: dt.date) -> Overview:
    """The same figures as the live path, summed over the batch's daily rollups (and the live days after them)."""
    range_start, range_end = midnight(start), midnight(end + dt.timedelta(days=1))
    month_start = end.replace(day=1)
    previous_month_start = (month_start - dt.timedelta(days=1)).replace(day=1)
    previous_month_end = min(previous_month_start + (end + dt.timedelta(days=1) - month_start), month_start)
    year = dt.timedelta(days=365)
    day_after = end + dt.timedelta(days=1)

    def revenue(first: dt.date, stop: dt.date) -> Decimal:
        total = sum((r for d, (_, r, _, _) in sales.orders.items() if first <= d < stop), Decimal("0"))
        return Decimal(total).quantize(Decimal("0.01"))

    in_range = [(o, r) for d, (o, r, _, _) in sales.orders.items() if start <= d <= end]
    orders_in_range = sum(o for o, _ in in_range)
    revenue_in_range = Decimal(sum((r for _, r in in_range), Decimal("0"))).quantize(Decimal("0.01"))
    buyers = sum(f for d, (_, _, f, _) in sales.orders.items() if d <= end)
    repeaters = sum(s for d, (_, _, _, s) in sales.orders.items() if d <= end)
    window_start = end - dt.timedelta(days=ACTIVE_DAYS - 1)
    active = sum(n for (d, gap), n in sales.gaps.items() if window_start <= d <= end and gap > (d - window_start).days)
    revenue_month, revenue_prev_month = revenue(month_start, day_after), revenue(previous_month_start, previous_month_end)
    revenue_12m = revenue(day_after - year, day_after)
    revenue_prev_12m = revenue(day_after - 2 * year, day_after - year)
    open_tickets, sla_breaches, nps, responses = _service_figures(session, range_start, range_end)

    months: dict[str, list] = {}
    for d, (o, r, _, _) in sales.orders.items():
        if start <= d <= end:
            entry = months.setdefault(f"{d:%Y-%m}", [Decimal("0"), 0, 0])
            entry[0] += r
            entry[1] += o
    for d, n in sales.signups.items():
        if start <= d <= end:
            months.setdefault(f"{d:%Y-%m}", [Decimal("0"), 0, 0])[2] += n
    monthly = [{"month": m, "revenue": Decimal(months[m][0]).quantize(Decimal("0.01")), "orders": months[m][1],
                "new_customers": months[m][2]} for m in sorted(months)]
    return Overview(
        start=start, end=end,
        customers_total=sum(n for d, n in sales.signups.items() if d <= end),
        customers_new_this_month=sum(n for d, n in sales.signups.items() if month_start <= d <= end),
        customers_active_90d=active,
        revenue_this_month=revenue_month,
        revenue_this_month_change=_change(revenue_month, revenue_prev_month),
        revenue_12m=revenue_12m, revenue_12m_change=_change(revenue_12m, revenue_prev_12m),
        orders_in_range=orders_in_range, revenue_in_range=revenue_in_range,
        average_order_value=(revenue_in_range / orders_in_range).quantize(Decimal("0.01")) if orders_in_range else None,
        repeat_purchase_rate=round(repeaters / buyers * 100, 1) if buyers else None,
        open_tickets=open_tickets, sla_breaches=sla_breaches, nps=nps, nps_responses=responses,
        monthly=monthly,
        tiers=tier_distribution(session),
        top_customers=top_customers(session, range_start, range_end),
        rollup_through=through,
    )


def monthly_series(session: Session, start: dt.datetime, end: dt.datetime) -> list[dict]:
    """Revenue, orders and new customers per calendar month in [start, end)."""
    month = year_month(Order.ordered_at)
    revenue = {
        row.month: (Decimal(str(row.revenue)).quantize(Decimal("0.01")), row.orders)
        for row in session.execute(
            select(month.label("month"), func.sum(Order.total).label("revenue"), func.count().label("orders"))
            .where(REVENUE_ORDER, Order.ordered_at >= start, Order.ordered_at < end)
            .group_by(month)
        )
    }
    signup_month = year_month(Customer.signed_up_at)
    new_customers: dict[str, int] = dict(
        session.execute(
            select(signup_month, func.count())
            .where(COUNTED_CUSTOMER, Customer.signed_up_at >= start, Customer.signed_up_at < end)
            .group_by(signup_month)
        ).all()
    )
    months = sorted(set(revenue) | set(new_customers))
    return [
        {
            "month": m,
            "revenue": revenue.get(m, (Decimal("0.00"), 0))[0],
            "orders": revenue.get(m, (Decimal("0.00"), 0))[1],
            "new_customers": new_customers.get(m, 0),
        }
        for m in months
    ]


def tier_distribution(session: Session) -> list[dict]:
    counts = dict(
        session.execute(
            select(LoyaltyAccount.tier, func.count())
            .where(LoyaltyAccount.status == "active")
            .group_by(LoyaltyAccount.tier)
        ).all()
    )
    return [{"tier": tier, "members": counts.get(tier, 0)} for tier in LOYALTY_TIERS]


def top_customers(session: Session, start: dt.datetime, end: dt.datetime, limit: int = 10) -> list[dict]:
    """The customers with the most revenue in [start, end), most first (ties by id)."""
    ranked = _top_from_snapshot(session, start, end, limit)
    if ranked is None:
        revenue = func.sum(Order.total).label("revenue")
        ranked = [(r.customer_id, Decimal(str(r.revenue)), int(r.orders)) for r in session.execute(
            select(Order.customer_id, revenue, func.count().label("orders"))
            .where(REVENUE_ORDER, Order.ordered_at >= start, Order.ordered_at < end)
            .group_by(Order.customer_id)
            .order_by(revenue.desc(), Order.customer_id)
            .limit(limit)
        )]
    people = {r.id: r for r in session.execute(
        select(Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.country_code)
        .where(Customer.id.in_([customer_id for customer_id, _, _ in ranked])))}
    return [
        {
            "customer_id": customer_id,
            "name": display_name(people[customer_id].first_name, people[customer_id].last_name, customer_id),
            "email": people[customer_id].email,
            "country": people[customer_id].country_code,
            "orders": orders,
            "revenue": revenue.quantize(Decimal("0.01")),
        }
        for customer_id, revenue, orders in ranked
    ]


TOP_CANDIDATES_BATCH = 500


def _range_revenue(session: Session, start: dt.datetime, end: dt.datetime, *conditions) -> dict[int, tuple[Decimal, int]]:
    return {customer_id: (Decimal(str(revenue)), int(orders)) for customer_id, revenue, orders in session.execute(
        select(Order.customer_id, func.sum(Order.total), func.count())
        .where(REVENUE_ORDER, Order.ordered_at >= start, Order.ordered_at < end, *conditions)
        .group_by(Order.customer_id))}


def _top_from_snapshot(session: Session, start: dt.datetime, end: dt.datetime,
                       limit: int) -> list[tuple[int, Decimal, int]] | None:
    """The top customers without grouping every order of the range: no customer's revenue in a range can
    exceed their revenue to date in the analytics snapshot plus what they ordered after it. Customers are
    taken in the order of that bound (an index), their revenue in the range summed exactly, until the
    limit-th best beats the bound of everyone not yet taken. None (read live) without a snapshot, or when
    an import or merge since it may have moved orders between customers."""
    snapshot = snapshot_as_of(session)
    if snapshot is None or history_rewritten_since(session, snapshot[1]):
        return None
    cutoff = end_of(snapshot[0])
    found: dict[int, tuple[Decimal, int]] = {}
    # Exact from the start: anyone who ordered after the snapshot, and customers it leaves out (merged, erased).
    if end > cutoff:
        tail = select(Order.customer_id).where(REVENUE_ORDER, Order.ordered_at >= max(start, cutoff), Order.ordered_at < end)
        found.update(_range_revenue(session, start, end, Order.customer_id.in_(tail)))
    gone = select(Customer.id).where(Customer.status.in_(GONE_STATUSES))
    found.update(_range_revenue(session, start, end, Order.customer_id.in_(gone)))
    offset = 0
    while True:
        batch = session.execute(
            select(CustomerAnalytics.customer_id, CustomerAnalytics.total_revenue)
            .where(CustomerAnalytics.total_revenue > 0)
            .order_by(CustomerAnalytics.total_revenue.desc(), CustomerAnalytics.customer_id)
            .limit(TOP_CANDIDATES_BATCH).offset(offset)).all()
        ranked = sorted(((cid, revenue, orders) for cid, (revenue, orders) in found.items() if revenue > 0),
                        key=lambda row: (-row[1], row[0]))
        if len(ranked) >= limit and (not batch or ranked[limit - 1][1] > Decimal(str(batch[0][1]))):
            return ranked[:limit]
        if not batch:
            return ranked[:limit]
        ids = [cid for cid, _ in batch if cid not in found]
        found.update({cid: (Decimal("0"), 0) for cid in ids})
        found.update(_range_revenue(session, start, end, Order.customer_id.in_(ids)))
        offset += TOP_CANDIDATES_BATCH
