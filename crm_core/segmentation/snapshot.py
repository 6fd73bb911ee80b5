"""The per-customer analytics snapshot and RFM scores, computed in the database as of a date.

`refresh_snapshot` rewrites `customer_analytics` from a few staged temporary tables and one
INSERT ... SELECT: everything is aggregated in SQL, nothing after the end of `as_of` is read, and
no customer is looped over in Python. Model outputs of the same date (lifetime value, churn
probability, health) are read from their own tables as the rows are written: the batch refresh
runs the models first, so each row is written once.

RFM
---
Among customers with at least one order, recency, frequency and monetary value are each cut
into quintiles with NTILE(5) (ties broken by customer id, so scores are deterministic):

- R: 5 = most recent last order, 1 = longest ago, among the buyers who ordered within the lifecycle
  rule `churned_days` (365 by default); a buyer silent for longer scores 1. Quintiles over every
  buyer ever would rank by who lapsed last: with years of history imported, customers gone for
  years filled R 4 and became Champions;
- F: 5 = most orders; M: 5 = highest revenue;
- FM = (F + M + 1) // 2, the rounded mean of F and M.

The named segment is read from the grid `RFM_GRID[R][FM]` below, so every customer with orders
is in exactly one of the eleven segments; customers without orders have no RFM scores.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator

import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    MetaData,
    Table,
    and_,
    case,
    cast,
    column,
    delete,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    table,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import TableClause

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.dates import end_of, midnight
from crm_core.platform.rollup_state import coverage, mark_built
from crm_core.platform.sql import (
    day_start,
    drop_temporary_table,
    temporary_table_as,
    use_batch_memory,
    whole_days_between,
)
from crm_core.segmentation import lifecycle
from db import bulk
from db.models import (
    OPEN_TICKET_STATUSES,
    REVENUE_ORDER_STATUSES,
    AccountHealthScore,
    ChurnPrediction,
    Customer,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerLifetimeValue,
    Order,
    OrderItem,
    Product,
    SupportTicket,
    SurveyResponse,
    WebSession,
    utcnow,
)

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
SNAPSHOT_STATE = "snapshot"  # its row in rollup_state: the date the snapshot is of and when it was written


def rfm_segment_name(recency: int, frequency: int, monetary: int) -> str:
    """The named segment for a customer's R, F and M scores (1-5 each)."""
    return RFM_GRID[recency][(frequency + monetary + 1) // 2 - 1]


def _counted_customers(cutoff: dt.datetime):
    return and_(COUNTED_CUSTOMER, Customer.signed_up_at < cutoff)


def _order_totals(cutoff: dt.datetime):
    return (
        select(
            Order.customer_id.label("customer_id"),
            func.count().label("order_count"),
            func.sum(Order.total).label("total_revenue"),
            func.min(Order.ordered_at).label("first_order_at"),
            func.max(Order.ordered_at).label("last_order_at"),
        )
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < cutoff)
        .group_by(Order.customer_id)
    )


def _rfm_scores(orders, cutoff: dt.datetime, churned_days: int):
    """R, F and M quintiles (ties broken by customer id) and the named segment, per counted buyer;
    R among the buyers who ordered within `churned_days`, 1 for the others."""

    def quintile(order_by, **over):
        return func.ntile(5).over(order_by=(order_by, Customer.id), **over)

    lapsed = orders.c.last_order_at < cutoff - dt.timedelta(days=churned_days)
    scored = (
        select(
            Customer.id.label("customer_id"),
            case((lapsed, 1), else_=quintile(orders.c.last_order_at.asc(), partition_by=lapsed)).label("recency_score"),
            quintile(orders.c.order_count.asc()).label("frequency_score"),
            quintile(orders.c.total_revenue.asc()).label("monetary_score"),
        )
        .join(orders, orders.c.customer_id == Customer.id)
        .where(_counted_customers(cutoff), orders.c.order_count > 0)
        .subquery("scored")
    )
    fm = (cast(scored.c.frequency_score, Integer) + cast(scored.c.monetary_score, Integer) + 1) // 2
    segment = case(
        *[
            (and_(scored.c.recency_score == r, fm == column + 1), name)
            for r, row in RFM_GRID.items()
            for column, name in enumerate(row)
        ],
        else_=None,
    )
    return select(scored, segment.label("rfm_segment"))


def _category_spend(cutoff: dt.datetime):
    return (
        select(
            Order.customer_id.label("customer_id"),
            Product.category.label("category"),
            func.sum(OrderItem.line_total).label("spend"),
        )
        .join(OrderItem, OrderItem.order_id == Order.id)
        .join(Product, Product.id == OrderItem.product_id)
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < cutoff)
        .group_by(Order.customer_id, Product.category)
    )


def _preferred_category(spend):
    """The category with the most spend (alphabetically first on a tie)."""
    ranked = select(
        spend.c.customer_id, spend.c.category,
        func.row_number().over(partition_by=spend.c.customer_id,
                               order_by=(spend.c.spend.desc(), spend.c.category)).label("rank"),
    ).subquery("ranked")
    return select(ranked.c.customer_id, ranked.c.category).where(ranked.c.rank == 1)


LINE_CHUNK = 500_000


def _line_chunks(connection: Connection, lines) -> Iterator[pd.DataFrame]:
    """The order lines (customer_id, category, spend) as frames of at most LINE_CHUNK rows."""
    result = connection.execute(lines)
    try:
        while rows := result.cursor.fetchmany(LINE_CHUNK) if result.cursor is not None else []:
            yield pd.DataFrame.from_records(rows, columns=["customer_id", "category", "spend"])
    finally:
        result.close()


def _stage_preferred_category(connection: Connection, cutoff: dt.datetime) -> TableClause:
    """Stage each buyer's preferred category as the temporary table tmp_snapshot_category.

    PostgreSQL groups spend per customer and category with a parallel hash aggregate. SQLite would
    sort every (customer, category) group through a temporary B-tree (6 s over 1.4M order lines at
    100,000 customers); reading the lines and summing them in pandas takes a third of that. Both
    pick the category with the most spend, alphabetically first on a tie.
    """
    if connection.dialect.name != "sqlite":
        spend = temporary_table_as(connection, "tmp_category_spend", _category_spend(cutoff))
        return temporary_table_as(connection, "tmp_snapshot_category", _preferred_category(spend))
    lines = (
        select(Order.customer_id, Product.category, OrderItem.line_total)
        .join(OrderItem, OrderItem.order_id == Order.id)
        .join(Product, Product.id == OrderItem.product_id)
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < cutoff)
    )
    # Summed a chunk of lines at a time, so memory follows the (customer, category) pairs, not the lines.
    partial = [chunk.groupby(["customer_id", "category"], sort=False)["spend"].sum()
               for chunk in _line_chunks(connection, lines)]
    if not partial:
        partial = [pd.Series(dtype=float, index=pd.MultiIndex.from_arrays([[], []], names=["customer_id", "category"]))]
    spend = pd.concat(partial).groupby(level=[0, 1], sort=False).sum().round(2).rename("spend").reset_index()
    best = (spend.sort_values(["customer_id", "spend", "category"], ascending=[True, False, True])
            .drop_duplicates("customer_id")[["customer_id", "category"]])
    staged = Table("tmp_snapshot_category", MetaData(), Column("customer_id", Integer, primary_key=True),
                   Column("category", Product.__table__.c.category.type), prefixes=["TEMPORARY"])
    drop_temporary_table(connection, staged.name)
    staged.create(connection)
    bulk.load(connection, staged, best)
    return table(staged.name, column("customer_id", Integer), column("category", staged.c.category.type))


def _activity(cutoff: dt.datetime) -> dict:
    """Sessions, email opens, open tickets and the latest NPS answer: one query each, keyed by customer."""
    sessions = (
        select(WebSession.customer_id.label("customer_id"), func.count().label("sessions"))
        .where(
            WebSession.started_at >= cutoff - dt.timedelta(days=SESSION_WINDOW_DAYS),
            WebSession.started_at < cutoff,
        )
        .group_by(WebSession.customer_id)
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
    )
    # The latest NPS answer: the answer(s) at each customer's latest answer time (max score on a tie).
    # Joins to aggregated subqueries rather than window functions: SQLite builds automatic indexes
    # for the former, and rescans the latter for every customer.
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
    )
    return {"tmp_snapshot_sessions": sessions, "tmp_snapshot_emails": emails,
            "tmp_snapshot_tickets": tickets, "tmp_snapshot_nps": nps}


CLV_COLUMNS = (
    "predicted_purchases_12m", "prob_alive", "clv_12m", "historic_clv", "expected_order_value",
    "clv_frequency", "clv_recency", "clv_age",
)


def _snapshot_rows(orders, rfm, category, sessions, emails, tickets, nps, as_of: dt.date,
                   refreshed_at: dt.datetime):
    """Every counted customer's row: the staged aggregates plus the model outputs of the same date
    (lifetime value, churn probability, health), so each row is written once."""
    cutoff = end_of(as_of)
    clv = CustomerLifetimeValue.__table__
    churn = ChurnPrediction.__table__
    health = AccountHealthScore.__table__
    clv_scored = exists().where(clv.c.as_of == as_of)
    query = (
        select(
            Customer.id.label("customer_id"),
            func.coalesce(orders.c.order_count, 0).label("order_count"),
            func.coalesce(orders.c.total_revenue, 0).label("total_revenue"),
            (orders.c.total_revenue / orders.c.order_count).label("avg_order_value"),
            orders.c.first_order_at,
            orders.c.last_order_at,
            # Calendar days, so an order on the as-of date is 0 days old whether it carries a time or not.
            whole_days_between(day_start(orders.c.last_order_at), literal(midnight(as_of), DateTime))
            .label("days_since_last_order"),
            rfm.c.recency_score,
            rfm.c.frequency_score,
            rfm.c.monetary_score,
            func.coalesce(sessions.c.sessions, 0).label("sessions_90d"),
            case((emails.c.sent > 0, cast(emails.c.opened, Integer) * 1.0 / emails.c.sent), else_=None).label(
                "email_open_rate"
            ),
            func.coalesce(tickets.c.open_tickets, 0).label("open_tickets"),
            nps.c.score.label("last_nps"),
            category.c.category.label("preferred_category"),
            rfm.c.rfm_segment,
            *[clv.c[name] for name in CLV_COLUMNS if name != "historic_clv"],
            # Customers without purchases have a historic value of 0 once lifetime values exist.
            func.coalesce(clv.c.historic_clv, case((clv_scored, 0), else_=None)).label("historic_clv"),
            churn.c.probability.label("churn_probability"),
            health.c.overall.label("health_score"),
            health.c.level.label("health_level"),
            literal(as_of).label("as_of"),
            literal(refreshed_at, DateTime).label("refreshed_at"),
        )
        .select_from(Customer)
        .outerjoin(orders, orders.c.customer_id == Customer.id)
        .outerjoin(rfm, rfm.c.customer_id == Customer.id)
        .outerjoin(sessions, sessions.c.customer_id == Customer.id)
        .outerjoin(emails, emails.c.customer_id == Customer.id)
        .outerjoin(tickets, tickets.c.customer_id == Customer.id)
        .outerjoin(nps, nps.c.customer_id == Customer.id)
        .outerjoin(category, category.c.customer_id == Customer.id)
        .outerjoin(clv, and_(clv.c.customer_id == Customer.id, clv.c.as_of == as_of))
        .outerjoin(churn, and_(churn.c.customer_id == Customer.id, churn.c.as_of == as_of))
        .outerjoin(health, and_(health.c.customer_id == Customer.id, health.c.as_of == as_of))
        .where(_counted_customers(cutoff))
    )
    return query, [c.name for c in query.selected_columns]


STAGED_TABLES = (
    "tmp_snapshot_orders", "tmp_snapshot_rfm", "tmp_category_spend", "tmp_snapshot_category",
    "tmp_snapshot_sessions", "tmp_snapshot_emails", "tmp_snapshot_tickets", "tmp_snapshot_nps",
)


def refresh_snapshot(session: Session, as_of: dt.date, refreshed_at: dt.datetime | None = None,
                     timings: dict[str, float] | None = None,
                     before_write: Callable[[], None] | None = None) -> int:
    """Rewrite `customer_analytics` as of the end of `as_of`; returns the number of rows.

    Staged through temporary tables, each built by one CREATE TABLE AS (parallel on PostgreSQL):
    order totals, then RFM scores from them, spend per category and the preferred category, and
    per-customer sessions, email opens, open tickets and NPS; one INSERT ... SELECT joins them
    with the model outputs of the same date. `before_write`, when given, is called between the
    staging and the write (the batch refresh waits there for the models; raising aborts the
    rewrite). `timings`, when given, receives the seconds of each stage.
    """
    cutoff = end_of(as_of)
    connection = session.connection()
    use_batch_memory(connection)
    clock = _Stopwatch(timings)
    orders = temporary_table_as(connection, "tmp_snapshot_orders", _order_totals(cutoff))
    clock.lap("order totals")
    rfm = temporary_table_as(connection, "tmp_snapshot_rfm",
                             _rfm_scores(orders, cutoff, lifecycle.churned_after_days(session)))
    clock.lap("RFM scores")
    category = _stage_preferred_category(connection, cutoff)
    clock.lap("preferred category")
    sessions, emails, tickets, nps = (temporary_table_as(connection, name, query)
                                      for name, query in _activity(cutoff).items())
    clock.lap("sessions, emails, tickets, NPS")
    if before_write is not None:
        before_write()
        clock.lap("waiting for the models")
    refreshed_at = refreshed_at or utcnow()
    query, columns = _snapshot_rows(orders, rfm, category, sessions, emails, tickets, nps, as_of, refreshed_at)
    session.execute(delete(CustomerAnalytics))
    session.execute(insert(CustomerAnalytics).from_select(columns, query))
    # Readers ask the state, not a MAX over a million rows, which date the snapshot is of.
    mark_built(session, SNAPSHOT_STATE, as_of, as_of, True)
    clock.lap("write snapshot")
    # On failure the rollback takes the temporary tables with it (and the next run replaces leftovers).
    for name in STAGED_TABLES:
        drop_temporary_table(connection, name)
    return session.scalar(select(func.count()).select_from(CustomerAnalytics)) or 0


def tidy_after_rewrite(engine: Engine) -> None:
    """On PostgreSQL, VACUUM and ANALYZE the snapshot after it was rewritten (outside a transaction).

    The rewrite leaves the previous rows dead: vacuumed now, the next rewrite reuses their space
    instead of growing the table and its indexes, and the steps that read the snapshot next
    (clusters, segments, lifecycle) plan with fresh statistics.
    """
    if engine.dialect.name != "postgresql":
        return
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql(f"VACUUM (ANALYZE) {CustomerAnalytics.__tablename__}")


class _Stopwatch:
    def __init__(self, timings: dict[str, float] | None) -> None:
        self.timings = timings
        self.started = time.perf_counter()

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        if self.timings is not None:
            self.timings[name] = round(now - self.started, 2)
        self.started = now


def snapshot_as_of(session: Session) -> tuple[dt.date, dt.datetime] | None:
    """The date the snapshot is of and when it was written (None before the first one)."""
    state = coverage(session, SNAPSHOT_STATE)
    return None if state is None else (state.as_of, state.built_at)


def snapshot_is_empty(session: Session) -> bool:
    return session.scalar(select(CustomerAnalytics.customer_id).limit(1)) is None
