"""Point-in-time customer features as of a date, shared by churn training, scoring and backtests.

Every source is read strictly before `end_of(as_of)` (midnight after the date), and events that
carry their own timestamps (an email opened, a ticket resolved, a loyalty entry) count only when
that timestamp is before the cut too, so a feature row for a past date is exactly what could have
been known on that date. Current-state columns (a ticket's status, an account's balance) are never
read: they would leak the present into the past.

One aggregated query per source, joined in pandas on the customer id; `sample_every=n` keeps only
customers whose id is divisible by n, so training on several historical cuts stays cheap at
millions of customers.

The population is every customer with at least one revenue order before the cut (churn is only
defined for customers who have bought).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy import Connection, and_, case, func, or_, select

from crm_core import platform
from db import bulk
from db.models import (
    REVENUE_ORDER_STATUSES,
    Complaint,
    Customer,
    CustomerCommunication,
    LoyaltyTransaction,
    Order,
    SupportTicket,
    SurveyResponse,
    WebSession,
)

from .labels import sampled

NUMERIC_FEATURES: tuple[str, ...] = (
    "order_count",
    "purchase_days",
    "total_revenue",
    "avg_order_value",
    "days_since_last_order",
    "days_since_first_order",
    "mean_days_between_orders",
    "recency_ratio",
    "orders_90d",
    "orders_prev_90d",
    "orders_365d",
    "revenue_90d",
    "order_trend",
    "returns_share",
    "days_since_signup",
    "sessions_30d",
    "sessions_90d",
    "page_views_90d",
    "days_since_last_session",
    "emails_90d",
    "email_open_rate_90d",
    "email_click_rate_90d",
    "tickets_180d",
    "open_tickets",
    "complaints_365d",
    "nps_last_365d",
    "csat_avg_365d",
    "loyalty_points",
)
CATEGORICAL_FEATURES: tuple[str, ...] = ("acquisition_channel",)
FEATURES: tuple[str, ...] = NUMERIC_FEATURES + CATEGORICAL_FEATURES

# Human-readable names for drivers and model cards.
LABELS: dict[str, str] = {
    "order_count": "orders to date",
    "purchase_days": "days with an order to date",
    "total_revenue": "revenue to date",
    "avg_order_value": "average order value",
    "days_since_last_order": "days since the last order",
    "days_since_first_order": "days since the first order",
    "mean_days_between_orders": "usual days between orders",
    "recency_ratio": "time since the last order against the usual gap",
    "orders_90d": "orders in the last 90 days",
    "orders_prev_90d": "orders 91-180 days ago",
    "orders_365d": "orders in the last year",
    "revenue_90d": "revenue in the last 90 days",
    "order_trend": "orders in the last 90 days against the 90 before",
    "returns_share": "share of orders cancelled, returned or refunded",
    "days_since_signup": "days since sign-up",
    "sessions_30d": "site visits in the last 30 days",
    "sessions_90d": "site visits in the last 90 days",
    "page_views_90d": "page views in the last 90 days",
    "days_since_last_session": "days since the last site visit",
    "emails_90d": "emails sent in the last 90 days",
    "email_open_rate_90d": "email open rate (90 days)",
    "email_click_rate_90d": "email click rate (90 days)",
    "tickets_180d": "support tickets in the last 180 days",
    "open_tickets": "open support tickets",
    "complaints_365d": "complaints in the last year",
    "nps_last_365d": "latest NPS score (last year)",
    "csat_avg_365d": "average CSAT (last year)",
    "loyalty_points": "unspent loyalty points",
    "acquisition_channel": "acquisition channel",
}

SESSION_LOOKBACK_DAYS = 180  # days_since_last_session is capped here

# Where each feature comes from, to say why a feature was left out ("no web sessions before ...").
FEATURE_SOURCES: dict[str, str] = {
    **{f: "orders" for f in (
        "order_count", "purchase_days", "total_revenue", "avg_order_value", "days_since_last_order",
        "days_since_first_order", "mean_days_between_orders", "recency_ratio", "orders_90d", "orders_prev_90d",
        "orders_365d", "revenue_90d", "order_trend", "returns_share")},
    "days_since_signup": "customer sign-up dates",
    "acquisition_channel": "acquisition channels",
    **{f: "web sessions" for f in ("sessions_30d", "sessions_90d", "page_views_90d", "days_since_last_session")},
    **{f: "e-mails sent" for f in ("emails_90d", "email_open_rate_90d", "email_click_rate_90d")},
    **{f: "support tickets" for f in ("tickets_180d", "open_tickets")},
    "complaints_365d": "complaints",
    "nps_last_365d": "NPS answers",
    "csat_avg_365d": "CSAT answers",
    "loyalty_points": "loyalty points",
}


def _days_before(cutoff: dt.datetime, moments: pd.Series) -> pd.Series:
    moments = pd.to_datetime(moments)
    return (pd.Timestamp(cutoff) - moments).dt.total_seconds() / 86_400


def _frame(connection: Connection, query) -> pd.DataFrame:
    columns, rows = bulk.fetch_raw(connection, query)
    return pd.DataFrame(rows, columns=columns).set_index("customer_id")


def _orders(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    is_revenue = Order.status.in_(REVENUE_ORDER_STATUSES)
    d90, d180, d365 = (cutoff - dt.timedelta(days=n) for n in (90, 180, 365))

    def revenue_count(condition=None):
        return func.sum(case((and_(is_revenue, condition) if condition is not None else is_revenue, 1), else_=0))

    query = (
        select(
            Order.customer_id,
            revenue_count().label("order_count"),
            func.count(func.distinct(case((is_revenue, platform.calendar_day(Order.ordered_at))))).label("purchase_days"),
            func.sum(case((is_revenue, Order.total), else_=0)).label("total_revenue"),
            func.min(case((is_revenue, Order.ordered_at))).label("first_order_at"),
            func.max(case((is_revenue, Order.ordered_at))).label("last_order_at"),
            revenue_count(Order.ordered_at >= d90).label("orders_90d"),
            revenue_count(and_(Order.ordered_at >= d180, Order.ordered_at < d90)).label("orders_prev_90d"),
            revenue_count(Order.ordered_at >= d365).label("orders_365d"),
            func.sum(case((and_(is_revenue, Order.ordered_at >= d90), Order.total), else_=0)).label("revenue_90d"),
            func.count().label("all_orders"),
        )
        .where(Order.ordered_at < cutoff, sampled(Order.customer_id, sample_every))
        .group_by(Order.customer_id)
        .having(revenue_count() > 0)
    )
    frame = _frame(connection, query)
    for column in ("total_revenue", "revenue_90d"):
        frame[column] = frame[column].astype(float)
    frame["days_since_last_order"] = _days_before(cutoff, frame.pop("last_order_at"))
    frame["days_since_first_order"] = _days_before(cutoff, frame.pop("first_order_at"))
    count = frame["order_count"].astype(float)
    frame["avg_order_value"] = frame["total_revenue"] / count
    span = frame["days_since_first_order"] - frame["days_since_last_order"]
    frame["mean_days_between_orders"] = (span / (count - 1)).where(count > 1)
    frame["recency_ratio"] = frame["days_since_last_order"] / frame["mean_days_between_orders"].clip(lower=1)
    frame["order_trend"] = frame["orders_90d"] - frame["orders_prev_90d"]
    frame["returns_share"] = 1 - count / frame.pop("all_orders")
    return frame


def _customers(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    query = select(Customer.id.label("customer_id"), Customer.signed_up_at, Customer.acquisition_channel).where(
        Customer.signed_up_at < cutoff, sampled(Customer.id, sample_every)
    )
    frame = _frame(connection, query)
    frame["days_since_signup"] = _days_before(cutoff, frame.pop("signed_up_at"))
    return frame


def _sessions(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    d30, d90 = cutoff - dt.timedelta(days=30), cutoff - dt.timedelta(days=90)
    query = (
        select(
            WebSession.customer_id,
            func.sum(case((WebSession.started_at >= d30, 1), else_=0)).label("sessions_30d"),
            func.sum(case((WebSession.started_at >= d90, 1), else_=0)).label("sessions_90d"),
            func.sum(case((WebSession.started_at >= d90, WebSession.page_views), else_=0)).label("page_views_90d"),
            func.max(WebSession.started_at).label("last_session_at"),
        )
        .where(
            WebSession.customer_id.is_not(None),
            WebSession.started_at < cutoff,
            WebSession.started_at >= cutoff - dt.timedelta(days=SESSION_LOOKBACK_DAYS),
            sampled(WebSession.customer_id, sample_every),
        )
        .group_by(WebSession.customer_id)
    )
    frame = _frame(connection, query)
    frame["days_since_last_session"] = _days_before(cutoff, frame.pop("last_session_at"))
    return frame


def _emails(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    c = CustomerCommunication
    query = (
        select(
            c.customer_id,
            func.count().label("emails_90d"),
            func.sum(case((c.opened_at < cutoff, 1), else_=0)).label("opened"),
            func.sum(case((c.clicked_at < cutoff, 1), else_=0)).label("clicked"),
        )
        .where(
            c.channel == "email", c.direction == "outbound", c.sent_at < cutoff,
            c.sent_at >= cutoff - dt.timedelta(days=90), sampled(c.customer_id, sample_every),
        )
        .group_by(c.customer_id)
    )
    frame = _frame(connection, query)
    sent = frame["emails_90d"].astype(float)
    frame["email_open_rate_90d"] = frame.pop("opened") / sent
    frame["email_click_rate_90d"] = frame.pop("clicked") / sent
    return frame


def _tickets(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    t = SupportTicket
    still_open = and_(
        or_(t.resolved_at.is_(None), t.resolved_at >= cutoff), or_(t.closed_at.is_(None), t.closed_at >= cutoff)
    )
    query = (
        select(
            t.customer_id,
            func.sum(case((t.created_at >= cutoff - dt.timedelta(days=180), 1), else_=0)).label("tickets_180d"),
            func.sum(case((still_open, 1), else_=0)).label("open_tickets"),
        )
        .where(t.created_at < cutoff, sampled(t.customer_id, sample_every))
        .group_by(t.customer_id)
    )
    return _frame(connection, query)


def _complaints(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    query = (
        select(Complaint.customer_id, func.count().label("complaints_365d"))
        .where(
            Complaint.created_at < cutoff, Complaint.created_at >= cutoff - dt.timedelta(days=365),
            sampled(Complaint.customer_id, sample_every),
        )
        .group_by(Complaint.customer_id)
    )
    return _frame(connection, query)


def _surveys(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    s = SurveyResponse
    recent = and_(s.responded_at < cutoff, s.responded_at >= cutoff - dt.timedelta(days=365))
    latest_nps = (
        select(s.customer_id, func.max(s.responded_at).label("at"))
        .where(recent, s.survey_type == "nps", sampled(s.customer_id, sample_every))
        .group_by(s.customer_id)
        .subquery()
    )
    nps = select(s.customer_id, func.max(s.score).label("nps_last_365d")).join(
        latest_nps, and_(s.customer_id == latest_nps.c.customer_id, s.responded_at == latest_nps.c.at)
    ).where(s.survey_type == "nps").group_by(s.customer_id)
    csat = (
        select(s.customer_id, func.avg(s.score).label("csat_avg_365d"))
        .where(recent, s.survey_type == "csat", sampled(s.customer_id, sample_every))
        .group_by(s.customer_id)
    )
    frame = _frame(connection, nps).join(_frame(connection, csat), how="outer")
    return frame.astype(float)


def _loyalty(connection: Connection, cutoff: dt.datetime, sample_every: int) -> pd.DataFrame:
    t = LoyaltyTransaction
    query = (
        select(t.customer_id, func.sum(t.points).label("loyalty_points"))
        .where(t.created_at < cutoff, sampled(t.customer_id, sample_every))
        .group_by(t.customer_id)
    )
    return _frame(connection, query)


def _source_exists(connection: Connection, query) -> bool:
    return connection.execute(query.limit(1)).first() is not None


def empty_sources(connection: Connection, as_of: dt.date) -> set[str]:
    """The optional sources (FEATURE_SOURCES values) with no row at all before the end of `as_of`.

    One indexed probe per source; a shop that has only customers and orders gets every optional
    source here, and the features built from them are then left out of training with this reason.
    """
    cutoff = platform.end_of(as_of)
    c, s = CustomerCommunication, SurveyResponse
    probes = {
        "web sessions": select(WebSession.id).where(WebSession.started_at < cutoff),
        "e-mails sent": select(c.id).where(c.channel == "email", c.direction == "outbound", c.sent_at < cutoff),
        "support tickets": select(SupportTicket.id).where(SupportTicket.created_at < cutoff),
        "complaints": select(Complaint.id).where(Complaint.created_at < cutoff),
        "NPS answers": select(s.id).where(s.survey_type == "nps", s.responded_at < cutoff),
        "CSAT answers": select(s.id).where(s.survey_type == "csat", s.responded_at < cutoff),
        "loyalty points": select(LoyaltyTransaction.id).where(LoyaltyTransaction.created_at < cutoff),
    }
    return {source for source, query in probes.items() if not _source_exists(connection, query)}


# Values for customers a source has nothing on: zero activity, and NaN where "none" is not zero
# (no NPS answer, no CSAT, no emails so no open rate); the model pipelines impute those.
FILL_ZERO = (
    "sessions_30d", "sessions_90d", "page_views_90d", "emails_90d", "tickets_180d", "open_tickets",
    "complaints_365d", "loyalty_points",
)


def build_features(connection: Connection, as_of: dt.date, *, sample_every: int = 1) -> pd.DataFrame:
    """One row per customer who had ordered by the end of `as_of`, indexed by customer id."""
    cutoff = platform.end_of(as_of)
    frame = _orders(connection, cutoff, sample_every)
    for source in (_customers, _sessions, _emails, _tickets, _complaints, _surveys, _loyalty):
        frame = frame.join(source(connection, cutoff, sample_every), how="left")
    for column in FILL_ZERO:
        frame[column] = frame[column].fillna(0)
    frame["days_since_last_session"] = frame["days_since_last_session"].fillna(SESSION_LOOKBACK_DAYS)
    frame["acquisition_channel"] = frame["acquisition_channel"].fillna("unknown").astype(str)
    numeric = list(NUMERIC_FEATURES)
    frame[numeric] = frame[numeric].astype(float).replace([np.inf, -np.inf], np.nan)
    frame.index = frame.index.astype("int64")
    return frame[list(FEATURES)].sort_index()
