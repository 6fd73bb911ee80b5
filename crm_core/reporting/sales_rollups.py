"""Daily sales rollups: revenue orders, first and second buyers, buyer gaps and sign-ups per day.

The batch refresh keeps them (`refresh_sales_rollups`), recomputing the days that can have changed:
the last LOOKBACK_DAYS before what was covered, or everything after an import or a merge rewrote
history. Readers take the days up to the rollup's `covered_through` from the tables and the days
after it live, over the same definition (`daily_sales`), so the executive figures read a few
thousand rows instead of every order, and are exact whatever day the refresh ran.

The buyer gaps make "customers active in the N days up to a day" a sum: a customer ordering on a
day is counted with the days since their previous order day (ACTIVE_GAP_CAP for a first order or
a gap that long), and the customers active in [start, end] are those of each day d in it whose
gap is more than d - start.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import and_, case, delete, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.dates import end_of, midnight
from crm_core.platform.rollup_state import coverage, history_rewritten_since, mark_built
from crm_core.platform.sql import calendar_day, day_start, use_batch_memory, whole_days_between
from db.models import (
    REVENUE_ORDER_STATUSES,
    Customer,
    Order,
    RollupDailyBuyerGap,
    RollupDailyOrders,
    RollupDailySignups,
)

ROLLUP = "sales"
# Days before the covered day that every refresh recomputes: order statuses still move (payment,
# cancellation) in the first weeks after an order.
LOOKBACK_DAYS = 35
# Active customers ordered in the ACTIVE_DAYS days up to a date (the executive overview's figure).
ACTIVE_DAYS = 90
# The longest "active in the last N days" window the gaps answer exactly.
ACTIVE_GAP_CAP = ACTIVE_DAYS


@dataclass
class DailySales:
    """Per-day figures: day -> (orders, revenue, first buyers, second buyers); gaps: (day, gap) -> customers;
    signups: day -> counted customers who signed up. Figures of the same day from two time spans add up."""

    orders: dict[dt.date, tuple[int, Decimal, int, int]] = field(default_factory=dict)
    gaps: dict[tuple[dt.date, int], int] = field(default_factory=dict)
    signups: dict[dt.date, int] = field(default_factory=dict)

    def add(self, other: DailySales) -> DailySales:
        orders = dict(self.orders)
        for day, values in other.orders.items():
            mine = orders.get(day, (0, Decimal("0.00"), 0, 0))
            orders[day] = (mine[0] + values[0], mine[1] + values[1], mine[2] + values[2], mine[3] + values[3])
        gaps = dict(self.gaps)
        for key, n in other.gaps.items():
            gaps[key] = gaps.get(key, 0) + n
        signups = dict(self.signups)
        for day, n in other.signups.items():
            signups[day] = signups.get(day, 0) + n
        return DailySales(orders, gaps, signups)


def _as_date(value) -> dt.date:
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


# Up to this long a span is read order by order (each looks up the customer's earlier orders in the
# index); longer spans number every order of their customers in one pass.
FEW_DAYS = dt.timedelta(days=7)


def daily_sales(session: Session, start: dt.datetime | None, stop: dt.datetime) -> DailySales:
    """The per-day figures of the orders and sign-ups in [start, stop) (start None: from the first order),
    from the source tables. A customer's orders before `start` count for their gaps and their order
    number, so the figures of two adjacent spans add up to those of both together."""
    if start is not None and stop - start <= FEW_DAYS:
        return _order_by_order(session, start, stop)
    revenue_order = Order.status.in_(REVENUE_ORDER_STATUSES)
    conditions = [revenue_order, Order.ordered_at < stop]
    if start is not None:
        ordering_in_range = select(Order.customer_id).where(
            revenue_order, Order.ordered_at >= start, Order.ordered_at < stop)
        conditions.append(Order.customer_id.in_(ordering_in_range))
    order_by = (Order.ordered_at, Order.id)
    ranked = select(
        Order.ordered_at, Order.total,
        func.row_number().over(partition_by=Order.customer_id, order_by=order_by).label("position"),
        func.lag(Order.ordered_at).over(partition_by=Order.customer_id, order_by=order_by).label("previous_at"),
    ).where(*conditions).subquery("ranked")
    r = ranked.c
    gap = whole_days_between(day_start(r.previous_at), day_start(r.ordered_at))
    first_of_day = case(
        (r.previous_at.is_(None), ACTIVE_GAP_CAP),
        (day_start(r.previous_at) < day_start(r.ordered_at),
         case((gap >= ACTIVE_GAP_CAP, ACTIVE_GAP_CAP), else_=gap)),
        else_=None,
    ).label("gap")
    day = calendar_day(r.ordered_at).label("day")
    query = select(
        day, first_of_day, func.count(), func.sum(r.total),
        func.sum(case((r.position == 1, 1), else_=0)), func.sum(case((r.position == 2, 1), else_=0)),
    ).group_by(day, first_of_day)
    if start is not None:
        query = query.where(r.ordered_at >= start)
    result = DailySales()
    totals: dict[dt.date, list] = defaultdict(lambda: [0, Decimal("0"), 0, 0])
    for row_day, row_gap, orders, revenue, firsts, seconds in session.execute(query):
        day_value = _as_date(row_day)
        entry = totals[day_value]
        entry[0] += int(orders)
        entry[1] += Decimal(str(revenue or 0))
        entry[2] += int(firsts or 0)
        entry[3] += int(seconds or 0)
        if row_gap is not None:  # the first order of a customer's day: one per customer and day
            result.gaps[(day_value, int(row_gap))] = int(orders)
    result.orders = {d: (e[0], e[1].quantize(Decimal("0.01")), e[2], e[3]) for d, e in totals.items()}
    result.signups = daily_signups(session, start, stop)
    return result


def _order_by_order(session: Session, start: dt.datetime, stop: dt.datetime) -> DailySales:
    """daily_sales for a short span (the orders since the last refresh): each order with its customer's
    previous revenue order and its number among them, looked up in the (customer, time) index."""
    revenue_order = Order.status.in_(REVENUE_ORDER_STATUSES)
    earlier = aliased(Order)
    before = and_(earlier.customer_id == Order.customer_id, earlier.status.in_(REVENUE_ORDER_STATUSES),
                  earlier.ordered_at <= Order.ordered_at,
                  or_(earlier.ordered_at < Order.ordered_at, earlier.id < Order.id))
    previous_at = select(func.max(earlier.ordered_at)).where(before).scalar_subquery()
    earlier_orders = select(func.count()).where(before).scalar_subquery()
    rows = session.execute(
        select(Order.ordered_at, Order.total, previous_at, earlier_orders)
        .where(revenue_order, Order.ordered_at >= start, Order.ordered_at < stop)
    ).all()
    totals: dict[dt.date, list] = defaultdict(lambda: [0, Decimal("0"), 0, 0])
    result = DailySales()
    for ordered_at, total, previous, count_before in rows:
        day = ordered_at.date()
        entry = totals[day]
        entry[0] += 1
        entry[1] += Decimal(str(total))
        entry[2] += int(count_before == 0)
        entry[3] += int(count_before == 1)
        if previous is None or previous.date() < day:
            gap = ACTIVE_GAP_CAP if previous is None else min((day - previous.date()).days, ACTIVE_GAP_CAP)
            result.gaps[(day, gap)] = result.gaps.get((day, gap), 0) + 1
    result.orders = {d: (e[0], e[1].quantize(Decimal("0.01")), e[2], e[3]) for d, e in totals.items()}
    result.signups = daily_signups(session, start, stop)
    return result


def daily_signups(session: Session, start: dt.datetime | None, stop: dt.datetime) -> dict[dt.date, int]:
    day = calendar_day(Customer.signed_up_at).label("day")
    conditions = [COUNTED_CUSTOMER, Customer.signed_up_at < stop]
    if start is not None:
        conditions.append(Customer.signed_up_at >= start)
    return {_as_date(d): int(n) for d, n in session.execute(select(day, func.count()).where(*conditions).group_by(day))}


def refresh_sales_rollups(session: Session, as_of: dt.date, now: dt.datetime) -> dict[str, int | str]:
    """Recompute the days that can have changed up to as_of, and every day's sign-ups, counting what was
    placed before a cutoff (the end of as_of, or `now` when the day is not over): readers add what came
    after it. Record the cutoff."""
    use_batch_memory(session.connection())
    state = coverage(session, ROLLUP)
    full = state is None or history_rewritten_since(session, state.built_at)
    stop = min(end_of(as_of), now)
    start: dt.datetime | None = None
    cutoff = stop
    if not full and state is not None:
        previous = state.cutoff or end_of(state.covered_through)
        start = midnight(min(previous.date(), as_of) - dt.timedelta(days=LOOKBACK_DAYS))
        cutoff = max(stop, previous)  # a run as of an earlier date keeps the later days it does not redo
    sales = daily_sales(session, start, stop)
    # Sign-ups of every day: a merge or an erasure since the last refresh takes a customer out of past days.
    sales.signups = daily_signups(session, None, cutoff)
    last_day = (stop - dt.timedelta(microseconds=1)).date()
    if start is None:
        session.execute(delete(RollupDailyOrders))
        session.execute(delete(RollupDailyBuyerGap))
    else:
        session.execute(delete(RollupDailyOrders).where(RollupDailyOrders.day >= start.date(),
                                                        RollupDailyOrders.day <= last_day))
        session.execute(delete(RollupDailyBuyerGap).where(RollupDailyBuyerGap.day >= start.date(),
                                                          RollupDailyBuyerGap.day <= last_day))
    session.execute(delete(RollupDailySignups))
    if sales.orders:
        session.execute(insert(RollupDailyOrders), [
            {"day": d, "orders": o, "revenue": r, "first_buyers": f, "second_buyers": s}
            for d, (o, r, f, s) in sales.orders.items()])
    if sales.gaps:
        session.execute(insert(RollupDailyBuyerGap), [
            {"day": d, "gap_days": g, "customers": n} for (d, g), n in sales.gaps.items()])
    if sales.signups:
        session.execute(insert(RollupDailySignups), [{"day": d, "customers": n} for d, n in sales.signups.items()])
    mark_built(session, ROLLUP, as_of, (cutoff - dt.timedelta(microseconds=1)).date(), full, cutoff=cutoff)
    return {"days": len(sales.orders), "from": "the first order" if start is None else start.date().isoformat(),
            "cutoff": cutoff.isoformat(sep=" ", timespec="minutes")}


def stored_sales(session: Session, last: dt.date, gaps_from: dt.date) -> tuple[DailySales, dt.datetime] | None:
    """The rollup's days up to `last` (gaps only from `gaps_from`) with what was placed after its cutoff up
    to the end of `last`, read live; and the cutoff. None when no refresh has built the rollup yet."""
    state = coverage(session, ROLLUP)
    if state is None:
        return None
    cutoff = state.cutoff or end_of(state.covered_through)
    stored = DailySales()
    stored.orders = {
        _as_date(d): (int(o), Decimal(str(r)).quantize(Decimal("0.01")), int(f), int(s))
        for d, o, r, f, s in session.execute(
            select(RollupDailyOrders.day, RollupDailyOrders.orders, RollupDailyOrders.revenue,
                   RollupDailyOrders.first_buyers, RollupDailyOrders.second_buyers)
            .where(RollupDailyOrders.day <= last))
    }
    stored.gaps = {
        (_as_date(d), int(g)): int(n) for d, g, n in session.execute(
            select(RollupDailyBuyerGap.day, RollupDailyBuyerGap.gap_days, RollupDailyBuyerGap.customers)
            .where(RollupDailyBuyerGap.day >= gaps_from, RollupDailyBuyerGap.day <= last))
    }
    stored.signups = {_as_date(d): int(n) for d, n in session.execute(
        select(RollupDailySignups.day, RollupDailySignups.customers).where(RollupDailySignups.day <= last))}
    if end_of(last) > cutoff:
        stored = stored.add(daily_sales(session, cutoff, end_of(last)))
    return stored, cutoff


def counted_customers(session: Session, before: dt.datetime | None = None) -> int | None:
    """Every counted customer (the default customer list's total), or those who signed up before `before`,
    without counting a million rows: the sign-ups the rollup counted and those after its cutoff, live.
    None when no refresh built the rollup, an import, merge or erasure since may have changed who counts,
    or `before` falls inside a day the rollup holds (then count the customers)."""
    state = coverage(session, ROLLUP)
    if state is None or history_rewritten_since(session, state.built_at):
        return None
    cutoff = state.cutoff or end_of(state.covered_through)
    if before is not None and before < cutoff:
        if before != midnight(before.date()):
            return None
        return int(session.scalar(select(func.coalesce(func.sum(RollupDailySignups.customers), 0))
                                  .where(RollupDailySignups.day < before.date())) or 0)
    stored = session.scalar(select(func.coalesce(func.sum(RollupDailySignups.customers), 0))) or 0
    conditions = [COUNTED_CUSTOMER, Customer.signed_up_at >= cutoff]
    if before is not None:
        conditions.append(Customer.signed_up_at < before)
    later = session.scalar(select(func.count()).select_from(Customer).where(*conditions)) or 0
    return int(stored) + int(later)
