"""The inputs of account health: one aggregated SQL query, one row per counted customer signed up by
the end of `as_of`, nothing dated after it; and the optional sources the shop has at all.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
from sqlalchemy import (
    Connection,
    DateTime,
    Float,
    and_,
    case,
    cast,
    func,
    literal,
    or_,
    select,
)

from crm_core import customers, platform, service
from db import bulk
from db.models import (
    LOYALTY_TIERS,
    OPEN_TICKET_STATUSES,
    REVENUE_ORDER_STATUSES,
    RISK_LEVELS,
    UNDONE_ORDER_STATUSES,
    Complaint,
    Customer,
    CustomerCommunication,
    CustomerPaymentMethod,
    LoyaltyAccount,
    LoyaltyTierChange,
    LoyaltyTransaction,
    Order,
    RiskAssessment,
    SupportTicket,
    SurveyResponse,
    WebSession,
)
from ml.features import empty_sources
from ml.health.estimator import components_from_inputs
from ml.labels import sampled

# --------------------------------------------------------------------------- inputs and components


def _inputs_query(as_of: dt.date, sample_every: int = 1):
    """One row per counted customer signed up by the cutoff, with every aggregated input (only ids
    divisible by `sample_every`: weight fitting needs a sample, not every customer)."""
    cutoff = platform.end_of(as_of)

    def keep(column):
        return sampled(column, sample_every)

    cutoff_param = literal(cutoff, DateTime)

    def since(days: int) -> dt.datetime:
        return cutoff - dt.timedelta(days=days)

    year = since(365)
    revenue = Order.status.in_(REVENUE_ORDER_STATUSES)
    orders = (
        select(
            Order.customer_id.label("customer_id"),
            func.sum(case((revenue, 1), else_=0)).label("orders"),
            func.min(case((revenue, Order.ordered_at))).label("first_order_at"),
            func.max(case((revenue, Order.ordered_at))).label("last_order_at"),
            func.sum(case((and_(revenue, Order.ordered_at >= year), 1), else_=0)).label("orders_365d"),
            func.sum(case((Order.ordered_at >= year, 1), else_=0)).label("all_orders_365d"),
            func.sum(case((and_(Order.status.in_(UNDONE_ORDER_STATUSES), Order.ordered_at >= year), 1),
                          else_=0)).label("problem_orders_365d"),
        )
        .where(Order.ordered_at < cutoff)
        .where(keep(Order.customer_id))
        .group_by(Order.customer_id)
        .subquery("o")
    )
    sessions = (
        select(WebSession.customer_id.label("customer_id"), func.count().label("sessions_90d"))
        .where(WebSession.started_at >= since(90), WebSession.started_at < cutoff)
        .where(keep(WebSession.customer_id))
        .group_by(WebSession.customer_id)
        .subquery("s")
    )
    comm = CustomerCommunication
    emails = (
        select(
            comm.customer_id.label("customer_id"),
            func.count().label("emails_sent"),
            func.sum(case((comm.opened_at < cutoff, 1), else_=0)).label("emails_opened"),
            func.sum(case((comm.clicked_at < cutoff, 1), else_=0)).label("emails_clicked"),
        )
        .where(comm.channel == "email", comm.direction == "outbound", comm.sent_at >= since(180),
               comm.sent_at < cutoff)
        .where(keep(comm.customer_id))
        .group_by(comm.customer_id)
        .subquery("e")
    )
    # The latest NPS answer in the year (max score on a tie): an anti-join on later answers, which
    # both planners estimate well (a join on MAX(responded_at) is estimated at one row by PostgreSQL).
    later = SurveyResponse.__table__.alias("later_nps")
    in_year = and_(SurveyResponse.survey_type == "nps", SurveyResponse.responded_at >= year,
                   SurveyResponse.responded_at < cutoff)
    nps = (
        select(SurveyResponse.customer_id.label("customer_id"), func.max(SurveyResponse.score).label("nps"))
        .where(in_year, ~select(later.c.id).where(
            later.c.customer_id == SurveyResponse.customer_id, later.c.survey_type == "nps",
            later.c.responded_at > SurveyResponse.responded_at, later.c.responded_at < cutoff,
        ).exists())
        .where(keep(SurveyResponse.customer_id))
        .group_by(SurveyResponse.customer_id)
        .subquery("n")
    )
    csat = (
        select(
            SurveyResponse.customer_id.label("customer_id"),
            func.sum(SurveyResponse.score).label("csat_sum"),
            func.count().label("csat_count"),
        )
        .where(SurveyResponse.survey_type == "csat", SurveyResponse.responded_at >= year,
               SurveyResponse.responded_at < cutoff)
        .where(keep(SurveyResponse.customer_id))
        .group_by(SurveyResponse.customer_id)
        .subquery("cs")
    )
    t = SupportTicket
    ticket_open = and_(
        t.created_at < cutoff,
        or_(and_(t.resolved_at.is_(None), t.closed_at.is_(None), t.status.in_(OPEN_TICKET_STATUSES)),
            t.resolved_at >= cutoff),
    )
    breached = or_(
        and_(t.first_response_due_at < cutoff,
             or_(t.first_responded_at.is_(None), t.first_responded_at > t.first_response_due_at)),
        and_(t.resolution_due_at < cutoff, or_(t.resolved_at.is_(None), t.resolved_at > t.resolution_due_at)),
    )
    rated = and_(t.csat_rating.is_not(None), t.resolved_at >= year, t.resolved_at < cutoff)
    tickets = (
        select(
            t.customer_id.label("customer_id"),
            func.sum(case((ticket_open, 1), else_=0)).label("open_tickets"),
            func.sum(case((and_(ticket_open, t.priority.in_(("urgent", "critical"))), 1), else_=0))
            .label("open_urgent_tickets"),
            func.sum(case((t.created_at >= since(90), 1), else_=0)).label("tickets_90d"),
            func.sum(case((and_(t.created_at >= year, breached), 1), else_=0)).label("sla_breaches_365d"),
            func.sum(case((rated, t.csat_rating), else_=0)).label("ticket_csat_sum"),
            func.sum(case((rated, 1), else_=0)).label("ticket_csat_count"),
        )
        .where(t.created_at < cutoff)
        .where(keep(t.customer_id))
        .group_by(t.customer_id)
        .subquery("t")
    )
    c = Complaint
    complaints = (
        select(
            c.customer_id.label("customer_id"),
            func.sum(case((c.created_at >= year, 1), else_=0)).label("complaints_365d"),
            func.sum(case((and_(c.created_at >= year, c.severity.in_(service.SEVERE_COMPLAINT_SEVERITIES)), 1), else_=0))
            .label("severe_complaints_365d"),
            func.sum(case((or_(c.resolved_at >= cutoff,
                               and_(c.resolved_at.is_(None), c.status.in_(service.OPEN_COMPLAINT_STATUSES))), 1),
                          else_=0)).label("open_complaints"),
        )
        .where(c.created_at < cutoff)
        .where(keep(c.customer_id))
        .group_by(c.customer_id)
        .subquery("c")
    )
    tier_rank = case(*[(LoyaltyTierChange.to_tier == tier, i + 1) for i, tier in enumerate(LOYALTY_TIERS)],
                     else_=1)
    changes = LoyaltyTierChange
    later_change = LoyaltyTierChange.__table__.alias("later_change")
    tiers = (
        select(changes.account_id.label("account_id"), func.max(tier_rank).label("tier_rank"))
        .where(changes.changed_at < cutoff, ~select(later_change.c.id).where(
            later_change.c.account_id == changes.account_id, later_change.c.changed_at > changes.changed_at,
            later_change.c.changed_at < cutoff,
        ).exists())
        .group_by(changes.account_id)
        .subquery("tr")
    )
    members = (
        select(
            LoyaltyAccount.customer_id.label("customer_id"),
            func.coalesce(tiers.c.tier_rank, 1).label("tier_rank"),
        )
        .outerjoin(tiers, tiers.c.account_id == LoyaltyAccount.id)
        .where(LoyaltyAccount.enrolled_at < cutoff, keep(LoyaltyAccount.customer_id))
        .subquery("m")
    )
    lt = LoyaltyTransaction
    points = (
        select(
            lt.customer_id.label("customer_id"),
            func.sum(case((lt.kind == "earn", lt.points), else_=0)).label("points_earned_365d"),
            func.sum(case((lt.kind == "redeem", 1), else_=0)).label("redemptions_365d"),
        )
        .where(lt.created_at >= year, lt.created_at < cutoff)
        .where(keep(lt.customer_id))
        .group_by(lt.customer_id)
        .subquery("p")
    )
    pm = CustomerPaymentMethod
    month_index = as_of.year * 12 + as_of.month
    expired = and_(pm.exp_year.is_not(None), pm.exp_month.is_not(None), pm.exp_year * 12 + pm.exp_month < month_index)
    payments = (
        select(
            pm.customer_id.label("customer_id"),
            func.count().label("payment_methods"),
            func.sum(case((expired, 1), else_=0)).label("expired_methods"),
        )
        .where(pm.created_at < cutoff, pm.status != "removed")
        .where(keep(pm.customer_id))
        .group_by(pm.customer_id)
        .subquery("pm")
    )
    r = RiskAssessment
    risk_rank = case(*[(r.level == level, i + 1) for i, level in enumerate(RISK_LEVELS)], else_=1)
    cleared = and_(r.status == "cleared", or_(r.reviewed_at.is_(None), r.reviewed_at < cutoff))
    risks = (
        select(r.customer_id.label("customer_id"), func.max(risk_rank).label("risk_rank"))
        .where(r.assessed_at < cutoff, ~cleared)
        .where(keep(r.customer_id))
        .group_by(r.customer_id)
        .subquery("r")
    )

    # Every input as a float: PostgreSQL would return SUM and EXTRACT as numeric (slow Decimals).
    def count(column):
        return cast(func.coalesce(column, 0), Float).label(column.key)

    def value(column, name: str | None = None):
        return cast(column, Float).label(name or column.key)

    return (
        select(
            Customer.id.label("customer_id"),
            count(orders.c.orders),
            value(platform.days_between(cutoff_param, orders.c.first_order_at), "days_since_first_order"),
            value(platform.days_between(cutoff_param, orders.c.last_order_at), "days_since_last_order"),
            count(orders.c.orders_365d),
            count(orders.c.all_orders_365d),
            count(orders.c.problem_orders_365d),
            count(sessions.c.sessions_90d),
            count(emails.c.emails_sent),
            count(emails.c.emails_opened),
            count(emails.c.emails_clicked),
            value(nps.c.nps),
            count(csat.c.csat_sum),
            count(csat.c.csat_count),
            count(tickets.c.open_tickets),
            count(tickets.c.open_urgent_tickets),
            count(tickets.c.tickets_90d),
            count(tickets.c.sla_breaches_365d),
            count(tickets.c.ticket_csat_sum),
            count(tickets.c.ticket_csat_count),
            count(complaints.c.complaints_365d),
            count(complaints.c.severe_complaints_365d),
            count(complaints.c.open_complaints),
            value(members.c.tier_rank),
            count(points.c.points_earned_365d),
            count(points.c.redemptions_365d),
            count(payments.c.payment_methods),
            count(payments.c.expired_methods),
            value(risks.c.risk_rank),
        )
        .select_from(Customer)
        .outerjoin(orders, orders.c.customer_id == Customer.id)
        .outerjoin(sessions, sessions.c.customer_id == Customer.id)
        .outerjoin(emails, emails.c.customer_id == Customer.id)
        .outerjoin(nps, nps.c.customer_id == Customer.id)
        .outerjoin(csat, csat.c.customer_id == Customer.id)
        .outerjoin(tickets, tickets.c.customer_id == Customer.id)
        .outerjoin(complaints, complaints.c.customer_id == Customer.id)
        .outerjoin(members, members.c.customer_id == Customer.id)
        .outerjoin(points, points.c.customer_id == Customer.id)
        .outerjoin(payments, payments.c.customer_id == Customer.id)
        .outerjoin(risks, risks.c.customer_id == Customer.id)
        .where(customers.COUNTED_CUSTOMER, Customer.signed_up_at < cutoff, keep(Customer.id))
        .order_by(Customer.id)
    )


def health_inputs(connection: Connection, as_of: dt.date, sample_every: int = 1) -> pd.DataFrame:
    """The aggregated inputs per customer (index customer_id), floats with NaN where there is none."""
    columns, rows = bulk.fetch_raw(connection, _inputs_query(as_of, sample_every))
    values = np.array(rows, dtype="float64").reshape(-1, len(columns))  # None -> NaN
    frame = pd.DataFrame(values[:, 1:], columns=columns[1:], index=pd.Index(values[:, 0].astype("int64"),
                                                                            name="customer_id"))
    return frame


def available_sources(connection: Connection, as_of: dt.date) -> frozenset[str]:
    """The optional sources whose absence turns "none" into "no data" for everyone: web sessions
    (no session counts as 0 only when the shop records them) and support tickets (no ticket is no
    friction only when the shop has a helpdesk)."""
    empty = empty_sources(connection, as_of)
    return frozenset(source for source in ("web sessions", "support tickets") if source not in empty)


def component_scores(connection: Connection, as_of: dt.date, sample_every: int = 1) -> pd.DataFrame:
    """engagement, satisfaction, loyalty, payment and support (0-100, NaN for no data) per customer id."""
    return components_from_inputs(health_inputs(connection, as_of, sample_every), available_sources(connection, as_of))


