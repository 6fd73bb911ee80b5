"""The per-customer analytics snapshot and RFM scores, computed in the database as of a date.

`refresh_snapshot` rewrites `customer_analytics` with one INSERT ... SELECT: everything is
aggregated in SQL, nothing after the end of `as_of` is read, and no customer is looped over in
Python. Model outputs (churn probability, lifetime value, health) are written into the same rows
afterwards by the `ml` package.

RFM
---
Among customers with at least one order, recency, frequency and monetary value are each cut
into quintiles with NTILE(5) (ties broken by customer id, so scores are deterministic):

- R: 5 = most recent last order, 1 = longest ago;
- F: 5 = most orders; M: 5 = highest revenue;
- FM = (F + M + 1) // 2, the rounded mean of F and M.

The named segment is read from the grid `RFM_GRID[R][FM]` below, so every customer with orders
is in exactly one of the eleven segments; customers without orders have no RFM scores.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    DateTime,
    Integer,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
)
from sqlalchemy.orm import Session

from db.models import (
    OPEN_TICKET_STATUSES,
    REVENUE_ORDER_STATUSES,
    Customer,
    CustomerAnalytics,
    CustomerCommunication,
    Order,
    OrderItem,
    Product,
    SupportTicket,
    SurveyResponse,
    WebSession,
    utcnow,
)

from .sql import whole_days_between

RFM_SEGMENTS = (
    "Champions", "Loyal", "Potential loyalist", "New customers", "Promising", "Need attention",
    "About to sleep", "At risk", "Can't lose them", "Hibernating", "Lost",
)

# RFM_GRID[R][FM] -> segment. Rows: recency score 5 (recent) .. 1; columns: FM score 1 .. 5.
RFM_GRID: dict[int, tuple[str, str, str, str, str]] = {
    5: ("New customers", "Potential loyalist", "Potential loyalist", "Champions", "Champions"),
    4: ("Promising", "Potential loyalist", "Loyal", "Champions", "Champions"),
    3: ("About to sleep", "Need attention", "Loyal", "Loyal", "Loyal"),
    2: ("Hibernating", "About to sleep", "Need attention", "At risk", "At risk"),
    1: ("Lost", "Hibernating", "At risk", "Can't lose them", "Can't lose them"),
}

SESSION_WINDOW_DAYS = 90


def rfm_segment_name(recency: int, frequency: int, monetary: int) -> str:
    """The named segment for a customer's R, F and M scores (1-5 each)."""
    return RFM_GRID[recency][(frequency + monetary + 1) // 2 - 1]


def end_of(as_of: dt.date) -> dt.datetime:
    """The exclusive upper bound for data 'as of' a date: midnight after it."""
    return dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time())


def _snapshot_select(as_of: dt.date, refreshed_at: dt.datetime):
    cutoff = end_of(as_of)
    cutoff_param = literal(cutoff, DateTime)

    orders = (
        select(
            Order.customer_id.label("customer_id"),
            func.count().label("order_count"),
            func.sum(Order.total).label("total_revenue"),
            func.min(Order.ordered_at).label("first_order_at"),
            func.max(Order.ordered_at).label("last_order_at"),
        )
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < cutoff)
        .group_by(Order.customer_id)
        .subquery("o")
    )
    sessions = (
        select(WebSession.customer_id.label("customer_id"), func.count().label("sessions"))
        .where(
            WebSession.started_at >= cutoff - dt.timedelta(days=SESSION_WINDOW_DAYS),
            WebSession.started_at < cutoff,
        )
        .group_by(WebSession.customer_id)
        .subquery("s")
    )
    emails = (
        select(
            CustomerCommunication.customer_id.label("customer_id"),
            func.count().label("sent"),
            func.sum(case((and_(CustomerCommunication.opened_at.is_not(None),
                               CustomerCommunication.opened_at < cutoff), 1), else_=0)).label("opened"),
        )
        .where(
            CustomerCommunication.channel == "email",
            CustomerCommunication.direction == "outbound",
            CustomerCommunication.sent_at < cutoff,
        )
        .group_by(CustomerCommunication.customer_id)
        .subquery("e")
    )
    # Open as of the date: created before it and not yet resolved or closed by then.
    tickets = (
        select(SupportTicket.customer_id.label("customer_id"), func.count().label("open_tickets"))
        .where(
            SupportTicket.created_at < cutoff,
            or_(
                and_(SupportTicket.resolved_at.is_(None), SupportTicket.closed_at.is_(None),
                     SupportTicket.status.in_(OPEN_TICKET_STATUSES)),
                SupportTicket.resolved_at >= cutoff,
            ),
        )
        .group_by(SupportTicket.customer_id)
        .subquery("t")
    )
    # The latest NPS answer: the answer(s) at each customer's latest answer time (max score on a tie).
    # Joins to aggregated subqueries rather than window functions over CTEs: SQLite builds
    # automatic indexes for the former, and rescans the latter for every customer.
    latest = (
        select(SurveyResponse.customer_id.label("customer_id"), func.max(SurveyResponse.responded_at).label("at"))
        .where(SurveyResponse.survey_type == "nps", SurveyResponse.responded_at < cutoff)
        .group_by(SurveyResponse.customer_id)
        .subquery("nl")
    )
    nps = (
        select(SurveyResponse.customer_id.label("customer_id"), func.max(SurveyResponse.score).label("score"))
        .join(latest, and_(latest.c.customer_id == SurveyResponse.customer_id,
                           latest.c.at == SurveyResponse.responded_at))
        .where(SurveyResponse.survey_type == "nps")
        .group_by(SurveyResponse.customer_id)
        .subquery("n")
    )
    # The preferred category: the one with the most spend (alphabetically first on a tie).
    category_spend = (
        select(
            Order.customer_id.label("customer_id"),
            Product.category.label("category"),
            func.sum(OrderItem.line_total).label("spend"),
        )
        .join(OrderItem, OrderItem.order_id == Order.id)
        .join(Product, Product.id == OrderItem.product_id)
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < cutoff)
        .group_by(Order.customer_id, Product.category)
        .cte("category_spend")
    )
    top_spend = (
        select(category_spend.c.customer_id, func.max(category_spend.c.spend).label("top"))
        .group_by(category_spend.c.customer_id)
        .subquery("top")
    )
    category = (
        select(category_spend.c.customer_id, func.min(category_spend.c.category).label("category"))
        .join(top_spend, and_(top_spend.c.customer_id == category_spend.c.customer_id,
                              top_spend.c.top == category_spend.c.spend))
        .group_by(category_spend.c.customer_id)
        .subquery("c")
    )

    has_orders = case((orders.c.order_count > 0, 1), else_=0)

    def quintile(order_by):
        score = func.ntile(5).over(partition_by=has_orders, order_by=(order_by, Customer.id))
        return case((orders.c.order_count > 0, score), else_=None)

    base = (
        select(
            Customer.id.label("customer_id"),
            func.coalesce(orders.c.order_count, 0).label("order_count"),
            func.coalesce(orders.c.total_revenue, 0).label("total_revenue"),
            (orders.c.total_revenue / orders.c.order_count).label("avg_order_value"),
            orders.c.first_order_at,
            orders.c.last_order_at,
            whole_days_between(orders.c.last_order_at, cutoff_param).label("days_since_last_order"),
            quintile(orders.c.last_order_at.asc()).label("recency_score"),
            quintile(orders.c.order_count.asc()).label("frequency_score"),
            quintile(orders.c.total_revenue.asc()).label("monetary_score"),
            func.coalesce(sessions.c.sessions, 0).label("sessions_90d"),
            case((emails.c.sent > 0, cast(emails.c.opened, Integer) * 1.0 / emails.c.sent), else_=None).label(
                "email_open_rate"
            ),
            func.coalesce(tickets.c.open_tickets, 0).label("open_tickets"),
            nps.c.score.label("last_nps"),
            category.c.category.label("preferred_category"),
        )
        .select_from(Customer)
        .outerjoin(orders, orders.c.customer_id == Customer.id)
        .outerjoin(sessions, sessions.c.customer_id == Customer.id)
        .outerjoin(emails, emails.c.customer_id == Customer.id)
        .outerjoin(tickets, tickets.c.customer_id == Customer.id)
        .outerjoin(nps, nps.c.customer_id == Customer.id)
        .outerjoin(category, category.c.customer_id == Customer.id)
        .where(Customer.status.not_in(("merged", "erased")), Customer.signed_up_at < cutoff)
        .subquery("base")
    )
    fm = (cast(base.c.frequency_score, Integer) + cast(base.c.monetary_score, Integer) + 1) // 2
    segment = case(
        *[
            (and_(base.c.recency_score == r, fm == column + 1), name)
            for r, row in RFM_GRID.items()
            for column, name in enumerate(row)
        ],
        else_=None,
    )
    columns = [
        "customer_id", "order_count", "total_revenue", "avg_order_value", "first_order_at", "last_order_at",
        "days_since_last_order", "recency_score", "frequency_score", "monetary_score", "sessions_90d",
        "email_open_rate", "open_tickets", "last_nps", "preferred_category",
    ]
    query = select(
        *[base.c[name] for name in columns],
        segment.label("rfm_segment"),
        literal(as_of).label("as_of"),
        literal(refreshed_at, DateTime).label("refreshed_at"),
    )
    return query, [*columns, "rfm_segment", "as_of", "refreshed_at"]


def refresh_snapshot(session: Session, as_of: dt.date, refreshed_at: dt.datetime | None = None) -> int:
    """Rewrite `customer_analytics` as of the end of `as_of`; returns the number of rows."""
    query, columns = _snapshot_select(as_of, refreshed_at or utcnow())
    session.execute(delete(CustomerAnalytics))
    session.execute(insert(CustomerAnalytics).from_select(columns, query))
    return session.scalar(select(func.count()).select_from(CustomerAnalytics)) or 0


def snapshot_is_empty(session: Session) -> bool:
    return session.scalar(select(CustomerAnalytics.customer_id).limit(1)) is None
