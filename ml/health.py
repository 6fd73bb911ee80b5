"""Account health: five component scores, an overall score with fitted weights, levels and advice.

Everything is computed as of the end of a date (`as_of`): no row dated after it is read. The
inputs come from one aggregated SQL query (`_inputs_query`: one row per counted customer who
signed up by then) and are turned into scores with vectorised numpy; nothing loops over customers.
"Last N days" means the N days up to the end of `as_of`.

Components (each 0-100)
-----------------------
A component is the weighted mean of the sub-scores that have inputs, minus penalties, clipped to
0-100. A component with no input for a customer is "no data" (NULL), never a neutral score that
looks real; a source the shop does not have at all (no web sessions, no helpdesk, no surveys, no
loyalty programme) gives no input to anyone (`available_sources`). The overall score is the
weighted mean of the components that have data, and a customer with none is not scored.

engagement   sessions: 100 x min(web sessions in the last 90 days, 12) / 12 (weight 0.4; when the
             shop records web sessions, no session counts as 0);
             email: 100 x min(1, open rate + 0.5 x click rate) over outbound emails sent in the
             last 180 days, opens and clicks counted when they happened by the cutoff (weight 0.3;
             only with at least one email);
             recency: 100 x max(0, 1 - days since the last revenue order / 365) (weight 0.3;
             buyers only).
satisfaction NPS: 10 x the latest NPS answer in the last 365 days (weight 0.6);
             CSAT: 25 x (mean CSAT - 1) over CSAT survey answers in the last 365 days and the
             ratings of tickets resolved in the last 365 days (weight 0.4);
             no NPS and no CSAT: 50 when there are complaints to penalise, else no data.
             Penalties: 15 per complaint filed in the last 365 days (25 for high or critical
             severity), at most 60 in all, and 15 more while a complaint is open at the cutoff
             (filed before it, not resolved by it).
loyalty      frequency: 100 x min(revenue orders in the last 365 days, 6) / 6 (weight 0.4, buyers);
             tenure: 100 x min(days since the first revenue order, 730) / 730 (weight 0.2, buyers);
             tier: bronze 20, silver 40, gold 60, platinum 80, diamond 100, the tier after the
             latest tier change before the cutoff (bronze when none), for members enrolled by then
             (weight 0.2);
             points: 100 x min(points earned in the last 365 days, 2000) / 2000, plus 25 when
             points were redeemed in that year, capped at 100 (weight 0.2, members).
payment      100 for anyone with a payment method (not removed), an order or a risk assessment by
             the cutoff, else no data; minus 40 when every payment method has expired (expiry month
             before as_of's month) or 15 when some have; minus 60 x the share of the last 365
             days' orders that are cancelled, returned or refunded; minus 10 / 30 / 50 for the
             highest medium / high / critical risk assessment made before the cutoff and not
             cleared by then.
support      100 minus 15 per ticket open at the cutoff (at most 3 counted), 10 more when one of
             them is urgent or critical, 5 per ticket opened in the last 90 days (at most 6), and
             10 per SLA breach in the last 365 days (at most 3): a first-response or resolution
             due time before the cutoff that was missed. When the shop records tickets, no ticket
             is no friction: 100; without a helpdesk at all, no data.

Order statuses, payment-method removal and risk review status are their current values (the
schema keeps no history of them); every other input is filtered on its own timestamp.

Overall, levels, trend
----------------------
overall = sum of weight x component over the components with data, divided by their weights'
sum, with the weights in the app setting "health_weights" (they sum to 1). The default weights are fitted by `fit_weights`: each component's strength is
its AUC for churn (lower component = more churn, ml.labels.churn_labels, over the customers it
has data for) minus 0.5, clipped at 0 (0 for a component without data),
and the weights are the strengths normalised to sum 1; with fewer than `MIN_LABELLED` labelled
customers, fewer than `MIN_PER_CLASS` in either class, or no component better than chance, the
weights are equal and the reason is stored. `score_health` refits first when the weights were never
fitted or the last fit is 30 days or more older than the date it scores. An admin may set the
weights by hand (`save_weights`); fitting then keeps the admin's weights in force until
`reset_weights`.

Levels: excellent >= 80, good >= 65, fair >= 50, poor >= 35, else critical.
trend = overall - the overall stored for the same customer at the stored as_of date nearest to
as_of - 30 days (within 15 days either side, before as_of); null when there is none.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Float,
    and_,
    case,
    cast,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from crm_core import platform
from db import bulk
from db.models import (
    HEALTH_LEVELS,
    LOYALTY_TIERS,
    OPEN_TICKET_STATUSES,
    REVENUE_ORDER_STATUSES,
    RISK_LEVELS,
    AccountHealthScore,
    AppSetting,
    AuditLog,
    Complaint,
    Customer,
    CustomerCommunication,
    CustomerPaymentMethod,
    LoyaltyAccount,
    LoyaltyTierChange,
    LoyaltyTransaction,
    MLModel,
    Order,
    RiskAssessment,
    SupportTicket,
    SurveyResponse,
    WebSession,
    utcnow,
)

from . import registry
from .features import empty_sources
from .labels import DEFAULT_HORIZON_DAYS, churn_labels, sampled

COMPONENTS = ("engagement", "satisfaction", "loyalty", "payment", "support")
NEUTRAL = 50.0
LEVEL_THRESHOLDS = (("excellent", 80.0), ("good", 65.0), ("fair", 50.0), ("poor", 35.0))
TREND_DAYS = 30
TREND_TOLERANCE_DAYS = 15
WEIGHTS_KEY = "health_weights"
MIN_LABELLED = 100
MIN_PER_CLASS = 20
LOGIT_SAMPLE = 200_000
WEAK_COMPONENT = 50.0
COUNTED_CUSTOMER = Customer.status.not_in(("merged", "erased"))
PROBLEM_ORDER_STATUSES = ("cancelled", "returned", "refunded")
OPEN_COMPLAINT_STATUSES = ("open", "investigating", "escalated")
REFIT_AFTER_DAYS = 30

Progress = Callable[[int, int, str, str], None]


FIT_SAMPLE = 100_000  # customers the weight fit reads at most (about)


def equal_weights() -> dict[str, float]:
    return {name: round(1 / len(COMPONENTS), 6) for name in COMPONENTS}


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
            func.sum(case((and_(Order.status.in_(PROBLEM_ORDER_STATUSES), Order.ordered_at >= year), 1),
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
            func.sum(case((and_(c.created_at >= year, c.severity.in_(("high", "critical"))), 1), else_=0))
            .label("severe_complaints_365d"),
            func.sum(case((or_(c.resolved_at >= cutoff,
                               and_(c.resolved_at.is_(None), c.status.in_(OPEN_COMPLAINT_STATUSES))), 1),
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
        .where(COUNTED_CUSTOMER, Customer.signed_up_at < cutoff, keep(Customer.id))
        .order_by(Customer.id)
    )


def health_inputs(connection: Connection, as_of: dt.date, sample_every: int = 1) -> pd.DataFrame:
    """The aggregated inputs per customer (index customer_id), floats with NaN where there is none."""
    columns, rows = bulk.fetch_raw(connection, _inputs_query(as_of, sample_every))
    values = np.array(rows, dtype="float64").reshape(-1, len(columns))  # None -> NaN
    frame = pd.DataFrame(values[:, 1:], columns=columns[1:], index=pd.Index(values[:, 0].astype("int64"),
                                                                            name="customer_id"))
    return frame


def _weighted(parts: list[tuple[np.ndarray, float]], size: int) -> np.ndarray:
    """Weighted mean of the sub-scores that are present (not NaN); NaN ("no data") where none is."""
    total = np.zeros(size)
    weight = np.zeros(size)
    for values, w in parts:
        present = ~np.isnan(values)
        total += np.where(present, values * w, 0.0)
        weight += np.where(present, w, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)


def available_sources(connection: Connection, as_of: dt.date) -> frozenset[str]:
    """The optional sources whose absence turns "none" into "no data" for everyone: web sessions
    (no session counts as 0 only when the shop records them) and support tickets (no ticket is no
    friction only when the shop has a helpdesk)."""
    empty = empty_sources(connection, as_of)
    return frozenset(source for source in ("web sessions", "support tickets") if source not in empty)


def _scores_from_inputs(f: pd.DataFrame, sources: frozenset[str] = frozenset({"web sessions", "support tickets"})
                        ) -> pd.DataFrame:
    """The five components (0-100, NaN for no data) from `health_inputs`, vectorised; see the module
    docstring. `sources` are the optional sources the shop has (see `available_sources`)."""
    n = len(f)
    buyer = f["orders"].to_numpy() > 0

    def col(name: str) -> np.ndarray:
        return f[name].to_numpy(dtype="float64")

    def ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)

    sessions = (100.0 * np.minimum(col("sessions_90d"), 12) / 12 if "web sessions" in sources
                else np.full(n, np.nan))
    email = 100.0 * np.minimum(1.0, ratio(col("emails_opened"), col("emails_sent"))
                               + 0.5 * ratio(col("emails_clicked"), col("emails_sent")))
    recency = np.where(buyer, 100.0 * np.clip(1 - col("days_since_last_order") / 365, 0, 1), np.nan)
    engagement = _weighted([(sessions, 0.4), (email, 0.3), (recency, 0.3)], n)

    nps = 10.0 * col("nps")
    csat_mean = ratio(col("csat_sum") + col("ticket_csat_sum"), col("csat_count") + col("ticket_csat_count"))
    csat = 25.0 * (csat_mean - 1)
    complaint_penalty = np.minimum(
        60.0, 15.0 * (col("complaints_365d") - col("severe_complaints_365d")) + 25.0 * col("severe_complaints_365d")
    )
    complained = (col("complaints_365d") > 0) | (col("open_complaints") > 0)
    answers = _weighted([(nps, 0.6), (csat, 0.4)], n)
    satisfaction = (np.where(np.isnan(answers) & complained, NEUTRAL, answers) - complaint_penalty
                    - np.where(col("open_complaints") > 0, 15.0, 0.0))

    member = ~np.isnan(col("tier_rank"))
    frequency = np.where(buyer, 100.0 * np.minimum(col("orders_365d"), 6) / 6, np.nan)
    tenure = np.where(buyer, 100.0 * np.minimum(col("days_since_first_order"), 730) / 730, np.nan)
    tier = np.where(member, 20.0 * col("tier_rank"), np.nan)
    points = np.where(member, np.minimum(100.0, 100.0 * np.minimum(col("points_earned_365d"), 2000) / 2000
                                         + np.where(col("redemptions_365d") > 0, 25.0, 0.0)), np.nan)
    loyalty = _weighted([(frequency, 0.4), (tenure, 0.2), (tier, 0.2), (points, 0.2)], n)

    methods, expired = col("payment_methods"), col("expired_methods")
    risk_rank = np.nan_to_num(col("risk_rank"), nan=0.0)
    has_payment_data = (methods > 0) | (col("orders") > 0) | (col("all_orders_365d") > 0) | (risk_rank > 0)
    expiry_penalty = np.where((methods > 0) & (expired >= methods), 40.0, np.where(expired > 0, 15.0, 0.0))
    problem_share = np.nan_to_num(ratio(col("problem_orders_365d"), col("all_orders_365d")), nan=0.0)
    risk_penalty = np.select([risk_rank >= 4, risk_rank >= 3, risk_rank >= 2], [50.0, 30.0, 10.0], 0.0)
    payment = np.where(has_payment_data, 100.0, np.nan) - expiry_penalty - 60.0 * problem_share - risk_penalty

    support = (100.0 - 15.0 * np.minimum(col("open_tickets"), 3)
               - np.where(col("open_urgent_tickets") > 0, 10.0, 0.0)
               - 5.0 * np.minimum(col("tickets_90d"), 6)
               - 10.0 * np.minimum(col("sla_breaches_365d"), 3))
    if "support tickets" not in sources:
        support = np.full(n, np.nan)

    scores = pd.DataFrame(
        {"engagement": engagement, "satisfaction": satisfaction, "loyalty": loyalty, "payment": payment,
         "support": support},
        index=f.index,
    )
    return scores.clip(0.0, 100.0).round(2)


def component_scores(connection: Connection, as_of: dt.date, sample_every: int = 1) -> pd.DataFrame:
    """engagement, satisfaction, loyalty, payment and support (0-100, NaN for no data) per customer id."""
    return _scores_from_inputs(health_inputs(connection, as_of, sample_every), available_sources(connection, as_of))


# --------------------------------------------------------------------------- weights


class HealthWeightFitter:
    """Weights proportional to how well each component ranks churners (AUC - 0.5, clipped at 0).

    `fit(X, y)` takes the components (columns COMPONENTS) and churn labels (1 = churned). Learned:
    `weights_`, `auc_` per component, `strength_`, `logit_coef_` (standardised logistic-regression
    coefficients of the components on "not churned", for reference), `overall_auc_` of the
    weighted score, `n_samples_`, `churn_rate_` and `fallback_reason_` (None when fitted).
    """

    def __init__(self, min_labelled: int = MIN_LABELLED, min_per_class: int = MIN_PER_CLASS, random_state: int = 0):
        self.min_labelled = min_labelled
        self.min_per_class = min_per_class
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: pd.Series) -> HealthWeightFitter:
        X = X[list(COMPONENTS)].astype(float)
        y = np.asarray(y, dtype=int)
        self.n_samples_ = len(y)
        self.churn_rate_ = float(y.mean()) if len(y) else None
        self.auc_, self.strength_, self.logit_coef_, self.overall_auc_ = {}, {}, {}, None
        churned = int(y.sum())
        if len(y) < self.min_labelled or min(churned, len(y) - churned) < self.min_per_class:
            self.fallback_reason_ = (
                f"too little data to fit: {len(y)} labelled customers, {churned} churned "
                f"(need {self.min_labelled} labelled and {self.min_per_class} in each class); equal weights"
            )
            self.weights_ = equal_weights()
            return self
        for name in COMPONENTS:
            present = X[name].notna().to_numpy()
            labels = y[present]
            if present.sum() < self.min_labelled or len(np.unique(labels)) < 2:
                self.auc_[name] = None  # no data (or too little) to judge it by: no weight
                self.strength_[name] = 0.0
                continue
            auc = float(roc_auc_score(labels, -X[name].to_numpy()[present]))
            self.auc_[name] = round(auc, 4)
            self.strength_[name] = round(max(auc - 0.5, 0.0), 4)
        total = sum(self.strength_.values())
        if total <= 1e-6:
            self.fallback_reason_ = "no component ranks churners better than chance; equal weights"
            self.weights_ = equal_weights()
        else:
            self.fallback_reason_ = None
            self.weights_ = {name: round(self.strength_[name] / total, 6) for name in COMPONENTS}
        rng = np.random.default_rng(self.random_state)
        sample = rng.choice(len(y), size=min(LOGIT_SAMPLE, len(y)), replace=False)
        filled = X.fillna(X.median()).fillna(NEUTRAL)  # reference only: a component without data weighs 0
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=500))
        model.fit(filled.iloc[sample], 1 - y[sample])
        self.logit_coef_ = {name: round(float(v), 4) for name, v in zip(COMPONENTS, model[-1].coef_[0], strict=True)}
        overall = overall_score(X, self.weights_)
        scored = ~np.isnan(overall)
        self.overall_auc_ = (round(float(roc_auc_score(y[scored], -overall[scored])), 4)
                             if len(np.unique(y[scored])) == 2 else None)
        return self

    def metrics(self) -> dict[str, Any]:
        return {
            "n_labelled": self.n_samples_, "churn_rate": self.churn_rate_, "component_auc": self.auc_,
            "strength": self.strength_, "logit_coef": self.logit_coef_, "overall_auc": self.overall_auc_,
            "fallback_reason": self.fallback_reason_,
        }


@dataclass
class HealthScorer:
    """The registered 'health' model: weights and level thresholds applied to component scores."""

    weights: dict[str, float]
    thresholds: tuple[tuple[str, float], ...] = LEVEL_THRESHOLDS
    metrics: dict[str, Any] = field(default_factory=dict)

    def predict(self, components: pd.DataFrame) -> np.ndarray:
        return overall_score(components, self.weights)

    def levels(self, overall: np.ndarray) -> np.ndarray:
        return health_levels(overall, self.thresholds)


def overall_score(components: pd.DataFrame, weights: dict[str, float]) -> np.ndarray:
    """The weighted mean of the components with data (NaN when none has data or their weights are 0)."""
    total = np.zeros(len(components))
    weight = np.zeros(len(components))
    for name in COMPONENTS:
        values = components[name].to_numpy(dtype=float)
        present = ~np.isnan(values)
        total += np.where(present, values * weights[name], 0.0)
        weight += np.where(present, weights[name], 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = np.where(weight > 0, total / np.where(weight > 0, weight, 1.0), np.nan)
    return np.clip(np.round(values, 2), 0.0, 100.0)


def health_levels(overall: np.ndarray, thresholds=LEVEL_THRESHOLDS) -> np.ndarray:
    return np.select([overall >= limit for _, limit in thresholds], [name for name, _ in thresholds],
                     "critical").astype(object)


def _read_setting(connection: Connection) -> tuple[dict[str, Any] | None, int]:
    row = connection.execute(
        select(AppSetting.value, AppSetting.version).where(AppSetting.key == WEIGHTS_KEY)
    ).first()
    return (None, 0) if row is None else (dict(row.value or {}), row.version)


def current_weights(connection: Connection) -> tuple[dict[str, float], dict[str, Any], int]:
    """The weights in force, the whole setting (source, last fit) and its version (0 = never saved)."""
    value, version = _read_setting(connection)
    if value is None or not value.get("weights"):
        return equal_weights(), {"source": "default", "fit": None}, version
    return dict(value["weights"]), value, version


def last_fit_as_of(connection: Connection) -> dt.date | None:
    """The as_of of the last `fit_weights` (None when never fitted), to decide when to refit."""
    value, _ = _read_setting(connection)
    fit = (value or {}).get("fit")
    return dt.date.fromisoformat(fit["as_of"]) if fit else None


def _write_setting(connection: Connection, value: dict[str, Any], read_version: int, actor_id: int | None) -> int:
    """Store the setting with a version check; the new version."""
    table = AppSetting.__table__
    now = utcnow()
    if read_version == 0:
        exists = connection.execute(select(table.c.key).where(table.c.key == WEIGHTS_KEY)).first()
        if exists is not None:
            raise platform.ConflictError("The health weights were saved by someone else meanwhile. Reload and try again.")
        connection.execute(insert(table).values(key=WEIGHTS_KEY, value=value, updated_at=now,
                                                updated_by_id=actor_id, version=1))
        return 1
    updated = connection.execute(
        update(table).where(table.c.key == WEIGHTS_KEY, table.c.version == read_version)
        .values(value=value, updated_at=now, updated_by_id=actor_id, version=read_version + 1)
    ).rowcount
    if updated != 1:
        raise platform.ConflictError("The health weights were saved by someone else meanwhile. Reload and try again.")
    return read_version + 1


def _audit(connection: Connection, actor, action: str, before: dict | None, after: dict | None,
           entity_type: str = "app_setting", entity_id: str = WEIGHTS_KEY) -> None:
    """An audit row on the same connection (and so in the same transaction) as the change."""
    connection.execute(insert(AuditLog.__table__).values(
        occurred_at=utcnow(), actor_id=getattr(actor, "id", None),
        actor_username=getattr(actor, "username", "system"), action=action, entity_type=entity_type,
        entity_id=entity_id, before=before, after=after,
    ))


def fit_weights(connection: Connection, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS) -> dict:
    """Fit the default weights: components at as_of - horizon against churn over the next horizon.

    Stores the fit in the "health_weights" setting (with an audit row) and makes its weights the
    ones in force unless an admin has set them by hand. Returns the fit: weights, metrics,
    `fallback_reason` (None when fitted), `applied` (whether the weights are now in force).
    """
    if horizon_days < 1:
        raise platform.ValidationError("The churn horizon must be at least one day.")
    feature_date = as_of - dt.timedelta(days=horizon_days)
    # Five weights need a sample, not millions of customers: every n-th id, about FIT_SAMPLE of them.
    customers = connection.scalar(select(func.count()).select_from(Customer)) or 0
    sample_every = max(1, customers // FIT_SAMPLE)
    labels = churn_labels(connection, feature_date, horizon_days, sample_every=sample_every)
    components = component_scores(connection, feature_date, sample_every)
    joined = components.join(labels, how="inner")
    fitter = HealthWeightFitter().fit(joined[list(COMPONENTS)], joined["churned"])
    fit = {
        "weights": fitter.weights_, "metrics": fitter.metrics(), "fallback_reason": fitter.fallback_reason_,
        "as_of": as_of.isoformat(), "feature_date": feature_date.isoformat(), "horizon_days": horizon_days,
        "fitted_at": utcnow().isoformat(timespec="seconds"),
    }
    value, version = _read_setting(connection)
    applied = value is None or value.get("source") != "admin"
    new_value = {
        "weights": fitter.weights_ if applied else value["weights"],
        "source": ("fitted" if fitter.fallback_reason_ is None else "equal") if applied else "admin",
        "fit": fit,
    }
    _write_setting(connection, new_value, version, None)
    _audit(connection, None, "health.weights.fit", None if value is None else {"weights": value.get("weights")},
           {"weights": new_value["weights"], "source": new_value["source"],
            "fallback_reason": fitter.fallback_reason_})
    return {**fit, "applied": applied}


def validate_weights(weights: Any) -> dict[str, float]:
    """Five non-negative numbers, one per component, summing to more than 0; normalised to sum 1."""
    if not isinstance(weights, dict):
        raise platform.ValidationError("Weights must be a mapping of component name to number.")
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise platform.ValidationError(f"Unknown component(s): {', '.join(map(str, unknown))}; "
                              f"the components are {', '.join(COMPONENTS)}.")
    missing = [name for name in COMPONENTS if name not in weights]
    if missing:
        raise platform.ValidationError(f"Give a weight for every component; missing: {', '.join(missing)}.")
    for name in COMPONENTS:
        value = weights[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise platform.ValidationError(f"The weight of {name} must be a number, not {value!r}.")
        if value < 0:
            raise platform.ValidationError(f"The weight of {name} must not be negative (got {value:g}).")
    total = float(sum(weights[name] for name in COMPONENTS))
    if total <= 0:
        raise platform.ValidationError("At least one weight must be above 0.")
    return {name: round(float(weights[name]) / total, 6) for name in COMPONENTS}


def get_weights(session: Session, viewer) -> dict[str, Any]:
    """For the page: weights in force, where they come from, the last fit and the setting version."""
    platform.require(viewer, "health.view")
    weights, value, version = current_weights(session.connection())
    return {"weights": weights, "source": value.get("source", "default"), "fit": value.get("fit"),
            "version": version}


def save_weights(session: Session, actor, weights: Any, expected_version: int | None) -> tuple[dict[str, float], int]:
    """An admin sets the weights by hand (normalised to sum 1); refitting then keeps them."""
    platform.require(actor, "models.manage")
    normalised = validate_weights(weights)
    connection = session.connection()
    value, version = _read_setting(connection)
    _check_version(expected_version, version)
    new_value = {"weights": normalised, "source": "admin", "fit": None if value is None else value.get("fit")}
    new_version = _write_setting(connection, new_value, version, getattr(actor, "id", None))
    _audit(connection, actor, "health.weights.save",
           None if value is None else {"weights": value.get("weights"), "source": value.get("source")},
           {"weights": normalised, "source": "admin"})
    return normalised, new_version


def reset_weights(session: Session, actor, expected_version: int | None) -> tuple[dict[str, float], int]:
    """Go back to the fitted weights (equal weights when nothing was fitted yet)."""
    platform.require(actor, "models.manage")
    connection = session.connection()
    value, version = _read_setting(connection)
    _check_version(expected_version, version)
    fit = None if value is None else value.get("fit")
    weights = fit["weights"] if fit else equal_weights()
    source = "fitted" if fit and fit.get("fallback_reason") is None else "equal"
    new_version = _write_setting(connection, {"weights": weights, "source": source, "fit": fit}, version,
                                 getattr(actor, "id", None))
    _audit(connection, actor, "health.weights.reset",
           None if value is None else {"weights": value.get("weights"), "source": value.get("source")},
           {"weights": weights, "source": source})
    return weights, new_version


def _check_version(expected: int | None, current: int) -> None:
    if expected is not None and expected != current:
        raise platform.ConflictError(
            "The health weights were changed by someone else while you were editing "
            f"(version {expected} is now {current}). Reload and apply your change again."
        )


# --------------------------------------------------------------------------- indicators and advice


@dataclass(frozen=True)
class Indicator:
    label: str
    action: str
    owner: str
    priority: str


INDICATORS: dict[str, Indicator] = {
    "no_recent_order": Indicator("No order in 90 days", "Add to the win-back campaign with a tailored offer",
                                 "Marketing", "medium"),
    "open_complaint": Indicator("Open complaint", "Resolve the open complaint and follow up personally",
                                "Customer success", "high"),
    "expired_payment": Indicator("Expired payment method", "Ask the customer to update their payment method",
                                 "Billing", "medium"),
    "detractor_nps": Indicator("Detractor NPS", "Call the customer about their low NPS answer",
                               "Customer success", "high"),
    "open_tickets": Indicator("Open support tickets", "Chase the open support tickets to resolution",
                              "Support", "medium"),
    "sla_breach": Indicator("SLA breach in the last year", "Apologise for the slow service and check SLA follow-up",
                            "Support", "medium"),
    "risk_flag": Indicator("High risk assessment", "Review the open risk assessment before offering incentives",
                           "Risk", "high"),
    "returns": Indicator("Frequent cancellations or returns", "Check product fit and quality behind the returns",
                         "Customer success", "low"),
    "declining": Indicator("Health fell 10+ points in 30 days", "Review the account: its health is falling fast",
                           "Customer success", "medium"),
}

RECOMMENDATIONS = {
    "engagement": "Re-engage with personalised content and offers: recent visits, email interest and orders are low.",
    "satisfaction": "Find out what went wrong: review survey answers and complaints and reach out.",
    "loyalty": "Build repeat purchasing: points bonus, tier progress or a subscription offer.",
    "payment": "Fix payment friction: update expired cards and look into cancellations, returns and risk flags.",
    "support": "Clear the support backlog: resolve open tickets and prevent further SLA breaches.",
}
HEALTHY_RECOMMENDATION = "Keep the relationship warm: thank-you note, early access or a referral invitation."
CRITICAL_ACTION = {"action": "Schedule a check-in call with the account this week", "owner": "Customer success",
                   "priority": "high"}


def _indicator_flags(inputs: pd.DataFrame, trend: np.ndarray) -> dict[str, np.ndarray]:
    def col(name: str) -> np.ndarray:
        return inputs[name].to_numpy(dtype="float64")

    with np.errstate(invalid="ignore"):
        return {
            "no_recent_order": (col("orders") > 0) & (col("days_since_last_order") > 90),
            "open_complaint": col("open_complaints") > 0,
            "expired_payment": col("expired_methods") > 0,
            "detractor_nps": col("nps") <= 6,
            "open_tickets": col("open_tickets") > 0,
            "sla_breach": col("sla_breaches_365d") > 0,
            "risk_flag": np.nan_to_num(col("risk_rank")) >= 3,
            "returns": (col("problem_orders_365d") >= 2)
            & (col("problem_orders_365d") >= 0.3 * col("all_orders_365d")),
            "declining": trend <= -10,
        }


def _advice_columns(components: pd.DataFrame, levels: np.ndarray, flags: dict[str, np.ndarray]) -> pd.DataFrame:
    """risk_indicators, recommendations and action_items as JSON text, one per distinct situation.

    A situation is the set of indicators, the two weakest components below WEAK_COMPONENT and
    whether the level is critical; the texts are built once per situation, not once per customer.
    """
    names = list(INDICATORS)
    key = np.zeros(len(components), dtype=np.int64)
    for bit, name in enumerate(names):
        key |= flags[name].astype(np.int64) << bit
    values = components[list(COMPONENTS)].to_numpy(dtype=float)
    order = np.argsort(values, axis=1, kind="stable")
    for slot in range(2):
        column = order[:, slot]
        weak = values[np.arange(len(values)), column] < WEAK_COMPONENT
        key = key * 8 + np.where(weak, column + 1, 0)
    key = key * 2 + (levels == "critical")
    unique, inverse = np.unique(key, return_inverse=True)
    texts = [_advice_for(int(k), names) for k in unique]
    return pd.DataFrame({
        column: np.array([t[i] for t in texts], dtype=object)[inverse]
        for i, column in enumerate(("risk_indicators", "recommendations", "action_items"))
    }, index=components.index)


def _advice_for(key: int, names: list[str]) -> tuple[str, str, str]:
    critical = bool(key & 1)
    key >>= 1
    weak_codes = [(key >> 3) & 7, key & 7]
    key >>= 6
    present = [name for bit, name in enumerate(names) if key >> bit & 1]
    weak = [COMPONENTS[code - 1] for code in weak_codes if code]
    indicators = [INDICATORS[name].label for name in present]
    recommendations = [RECOMMENDATIONS[name] for name in weak] or [HEALTHY_RECOMMENDATION]
    rank = {"high": 0, "medium": 1, "low": 2}
    actions = sorted(
        ({"action": INDICATORS[n].action, "owner": INDICATORS[n].owner, "priority": INDICATORS[n].priority}
         for n in present),
        key=lambda a: rank[a["priority"]],
    )
    if critical:
        actions.insert(0, dict(CRITICAL_ACTION))
    return json.dumps(indicators), json.dumps(recommendations), json.dumps(actions)


# --------------------------------------------------------------------------- scoring


def _trend_date(connection: Connection, as_of: dt.date) -> dt.date | None:
    """The stored as_of nearest to as_of - 30 days, within 15 days, before as_of."""
    target = as_of - dt.timedelta(days=TREND_DAYS)
    h = AccountHealthScore
    dates = connection.execute(
        select(h.as_of).where(h.as_of >= target - dt.timedelta(days=TREND_TOLERANCE_DAYS),
                              h.as_of <= target + dt.timedelta(days=TREND_TOLERANCE_DAYS),
                              h.as_of < as_of).distinct()
    ).scalars().all()
    if not dates:
        return None
    return min(dates, key=lambda d: (abs((d - target).days), d))


def _previous_overall(connection: Connection, as_of: dt.date) -> tuple[pd.Series, dt.date | None]:
    earlier = _trend_date(connection, as_of)
    if earlier is None:
        return pd.Series(dtype="float64"), None
    rows = connection.execute(
        select(AccountHealthScore.customer_id, AccountHealthScore.overall).where(AccountHealthScore.as_of == earlier)
    ).all()
    return pd.Series({r.customer_id: r.overall for r in rows}, dtype="float64"), earlier


def _register_if_changed(session: Session, as_of: dt.date, weights: dict, info: dict) -> int:
    """A new 'health' registry version when the weights differ from the active one; the active version."""
    active = session.scalar(select(MLModel).where(MLModel.name == "health", MLModel.is_active.is_(True)))
    params = {"weights": weights, "thresholds": dict(LEVEL_THRESHOLDS), "source": info.get("source", "default")}
    if active is not None and active.params == params:
        return active.version
    fit = info.get("fit") or {}
    metrics = dict(fit.get("metrics") or {})
    scorer = HealthScorer(weights=weights, metrics=metrics)
    row = registry.register(
        session, "health", "weighted_components", scorer, params=params, features=list(COMPONENTS),
        training_end=dt.date.fromisoformat(fit["as_of"]) if fit.get("as_of") else as_of, metrics=metrics,
    )
    return row.version


def score_health(engine: Engine, as_of: dt.date, *, progress: Progress | None = None,
                 refit_after_days: int | None = REFIT_AFTER_DAYS, actor=platform.SYSTEM) -> dict:
    """Score every counted customer as of a date, in one transaction.

    Replaces the stored scores for that as_of (bulk insert) and registers a 'health' model version
    when the weights changed; the analytics snapshot reads the scores of its date when it is next
    built (the snapshot step of the batch refresh is the only writer of `customer_analytics`). First refits the weights (`fit_weights`) when they were never
    fitted or the last fit is at least `refit_after_days` before as_of (None: never refit here).
    Returns customers scored, counts per level, the weights and their source, whether it refitted,
    the trend date and the model version. `actor` needs "refresh.run" (the batch refresh runs as SYSTEM).
    """
    platform.require(actor, "refresh.run")
    steps = 4

    def report(step: int, label: str, detail: str) -> None:
        if progress:
            progress(step, steps, label, detail)

    with platform.unit_of_work(engine) as session:
        connection = session.connection()
        last_fit = last_fit_as_of(connection)
        refit = refit_after_days is not None and (last_fit is None or (as_of - last_fit).days >= refit_after_days)
        if refit:
            fit_weights(connection, as_of)
        weights, info, _ = current_weights(connection)
        inputs = health_inputs(connection, as_of)
        components = _scores_from_inputs(inputs, available_sources(connection, as_of))
        without_data = [name for name in COMPONENTS if not components[name].notna().any()]
        overall = overall_score(components, weights)
        scored = ~np.isnan(overall)  # a customer without data for any weighted component is not scored
        inputs, components, overall = inputs[scored], components[scored], overall[scored]
        report(1, "Health components", f"{len(components):,} customers"
               + (f"; no data for {', '.join(without_data)}" if without_data else ""))

        levels = health_levels(overall)
        previous, trend_date = _previous_overall(connection, as_of)
        trend = np.round(overall - previous.reindex(components.index).to_numpy(dtype="float64"), 2)
        advice = _advice_columns(components, levels, _indicator_flags(inputs, trend))
        report(2, "Health levels and advice", f"trend against {trend_date or 'no earlier score'}")

        rows = components.assign(overall=overall, level=levels, trend=trend).join(advice)
        rows = rows.reset_index().assign(as_of=as_of.isoformat())  # ISO text: a DATE on both backends
        connection.execute(delete(AccountHealthScore).where(AccountHealthScore.as_of == as_of))
        bulk.load(connection, AccountHealthScore.__table__, rows)
        report(3, "Health scores written", f"{len(rows):,} rows")

        version = _register_if_changed(session, as_of, weights, info)
        report(4, "Health model registered", f"version {version}")
        counts = pd.Series(levels).value_counts()
        per_level = {level: int(counts.get(level, 0)) for level in HEALTH_LEVELS}
        _audit(connection, actor, "health.score", None, {"customers": len(rows), **per_level, "model_version": version},
               entity_type="health", entity_id=as_of.isoformat())
        return {
            "as_of": as_of, "customers": len(rows), "levels": per_level,
            "weights": weights, "weights_source": info.get("source", "default"),
            "refitted": refit, "trend_against": trend_date, "model_version": version,
            "components_without_data": without_data,
        }


# --------------------------------------------------------------------------- backtest


def backtest_levels(connection: Connection, as_of: dt.date, lag_days: int) -> pd.DataFrame:
    """How well the levels stored lag_days before as_of predicted churn up to as_of.

    Uses the latest stored as_of on or before as_of - lag_days. One row per level (customers with
    a stored score who had ordered by then, churned = no revenue order from then to as_of) with
    the churn rate; `attrs` holds scored_as_of, horizon_days, customers, churn_rate and the AUC of
    (100 - overall) for churn (None when one class is missing). Empty when no score is old enough.
    """
    if isinstance(lag_days, bool) or not isinstance(lag_days, int) or lag_days < 1:
        raise platform.ValidationError("The backtest lag must be a whole number of days, at least 1.")
    columns = ["level", "customers", "churned", "churn_rate", "avg_overall"]
    h = AccountHealthScore
    scored_as_of = connection.scalar(select(func.max(h.as_of)).where(h.as_of <= as_of - dt.timedelta(days=lag_days)))
    empty = pd.DataFrame(columns=columns)
    if scored_as_of is None:
        empty.attrs.update(scored_as_of=None, horizon_days=None, customers=0, churn_rate=None, auc=None)
        return empty
    horizon = (as_of - scored_as_of).days
    labels = churn_labels(connection, scored_as_of, horizon)
    rows = connection.execute(select(h.customer_id, h.overall, h.level).where(h.as_of == scored_as_of)).all()
    scores = pd.DataFrame(rows, columns=["customer_id", "overall", "level"]).set_index("customer_id")
    joined = scores.join(labels, how="inner")
    grouped = joined.groupby("level")
    table = pd.DataFrame({
        "customers": grouped.size(), "churned": grouped["churned"].sum(), "avg_overall": grouped["overall"].mean(),
    }).reindex(list(HEALTH_LEVELS)).fillna({"customers": 0, "churned": 0})
    table["customers"] = table["customers"].astype(int)
    table["churned"] = table["churned"].astype(int)
    table["churn_rate"] = np.where(table["customers"] > 0, table["churned"] / table["customers"].clip(lower=1), np.nan)
    table["avg_overall"] = table["avg_overall"].round(2)
    table = table.rename_axis("level").reset_index()[columns]
    y = joined["churned"].to_numpy()
    auc = float(roc_auc_score(y, 100 - joined["overall"].to_numpy())) if 0 < y.sum() < len(y) else None
    table.attrs.update(scored_as_of=scored_as_of, horizon_days=horizon, customers=len(joined),
                       churn_rate=float(y.mean()) if len(y) else None,
                       auc=None if auc is None else round(auc, 4))
    return table


# --------------------------------------------------------------------------- reads for the Health page


def latest_as_of(session: Session) -> dt.date | None:
    return session.scalar(select(func.max(AccountHealthScore.as_of)))


def overview(session: Session, viewer) -> dict[str, Any] | None:
    """The latest scoring date, customers per level (every level, in order) and averages; None if none."""
    platform.require(viewer, "health.view")
    as_of = latest_as_of(session)
    if as_of is None:
        return None
    h = AccountHealthScore
    found = {
        level: (int(n), float(avg))
        for level, n, avg in session.execute(
            select(h.level, func.count(), func.avg(h.overall)).where(h.as_of == as_of).group_by(h.level)
        ).all()
    }
    total = sum(n for n, _ in found.values())
    summary = session.execute(
        select(func.avg(h.overall), func.sum(case((h.trend > 0, 1), else_=0)),
               func.sum(case((h.trend < 0, 1), else_=0)), func.avg(h.trend)).where(h.as_of == as_of)
    ).one()
    with_data = session.execute(
        select(*[func.count(getattr(h, name)) for name in COMPONENTS]).where(h.as_of == as_of)
    ).one()
    return {
        "as_of": as_of,
        "customers": total,
        "components_with_data": dict(zip(COMPONENTS, (int(n) for n in with_data), strict=True)),
        "avg_overall": None if summary[0] is None else round(float(summary[0]), 1),
        "improving": int(summary[1] or 0),
        "declining": int(summary[2] or 0),
        "avg_trend": None if summary[3] is None else round(float(summary[3]), 1),
        "levels": [
            {"level": level, "customers": found.get(level, (0, 0.0))[0],
             "share": found.get(level, (0, 0.0))[0] / total if total else 0.0,
             "avg_overall": round(found[level][1], 1) if level in found else None}
            for level in HEALTH_LEVELS
        ],
    }


def movers(session: Session, viewer, direction: str = "up", page: int = 1, page_size: int = 25) -> platform.Page:
    """Customers whose health moved most since ~30 days earlier, at the latest scoring date."""
    platform.require(viewer, "health.view")
    if direction not in ("up", "down"):
        raise platform.ValidationError("Movers go 'up' or 'down'.")
    if not 1 <= page_size <= 500:
        raise platform.ValidationError("Page size must be between 1 and 500.")
    page = max(1, int(page))
    as_of = latest_as_of(session)
    if as_of is None:
        return platform.Page(rows=[], total=0, page=1, page_size=page_size)
    h = AccountHealthScore
    moved = h.trend > 0 if direction == "up" else h.trend < 0
    conditions = [h.as_of == as_of, moved]
    total = session.scalar(select(func.count()).select_from(h).where(*conditions)) or 0
    order = (h.trend.desc() if direction == "up" else h.trend.asc(), h.customer_id)
    found = session.execute(
        select(h.customer_id, Customer.first_name, Customer.last_name, h.overall, h.trend, h.level,
               h.engagement, h.satisfaction, h.loyalty, h.payment, h.support)
        .join(Customer, Customer.id == h.customer_id)
        .where(*conditions).order_by(*order).limit(page_size).offset((page - 1) * page_size)
    ).all()
    rows = [
        {"customer_id": r.customer_id, "customer": f"{r.first_name} {r.last_name}".strip(),
         "overall": r.overall, "previous": round(r.overall - r.trend, 2), "trend": r.trend, "level": r.level,
         "engagement": r.engagement, "satisfaction": r.satisfaction, "loyalty": r.loyalty,
         "payment": r.payment, "support": r.support}
        for r in found
    ]
    return platform.Page(rows=rows, total=int(total), page=page, page_size=page_size)


def _customer(session: Session, customer_id: Any) -> Customer:
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        raise platform.ValidationError(f"A customer id is a whole number, not {customer_id!r}.")
    customer = session.get(Customer, customer_id)
    if customer is None or customer.status in ("merged", "erased"):
        raise platform.NotFound(f"No customer with id {customer_id}.")
    return customer


def customer_history(session: Session, viewer, customer_id: int, limit: int = 120) -> list[dict[str, Any]]:
    """A customer's stored scores, oldest first (the last `limit` scoring dates)."""
    platform.require(viewer, "health.view")
    _customer(session, customer_id)
    h = AccountHealthScore
    rows = session.execute(
        select(h.as_of, h.engagement, h.satisfaction, h.loyalty, h.payment, h.support, h.overall, h.level, h.trend)
        .where(h.customer_id == customer_id).order_by(h.as_of.desc()).limit(limit)
    ).all()
    return [dict(r._mapping) for r in reversed(rows)]


def customer_health(session: Session, viewer, customer_id: int) -> dict[str, Any]:
    """The customer's latest score with risk indicators, recommendations and action items.

    `score` is None when the customer has not been scored yet.
    """
    platform.require(viewer, "health.view")
    customer = _customer(session, customer_id)
    latest = session.scalar(
        select(AccountHealthScore).where(AccountHealthScore.customer_id == customer_id)
        .order_by(AccountHealthScore.as_of.desc()).limit(1)
    )
    result: dict[str, Any] = {"customer_id": customer.id,
                              "customer": f"{customer.first_name} {customer.last_name}".strip(), "score": None}
    if latest is not None:
        result["score"] = {
            "as_of": latest.as_of, "overall": latest.overall, "level": latest.level, "trend": latest.trend,
            **{name: getattr(latest, name) for name in COMPONENTS},
            "risk_indicators": list(latest.risk_indicators or []),
            "recommendations": list(latest.recommendations or []),
            "action_items": list(latest.action_items or []),
        }
    return result


def backtest(session: Session, viewer, lag_days: int) -> dict[str, Any]:
    """`backtest_levels` against the latest scoring date, for the page."""
    platform.require(viewer, "health.view")
    as_of = latest_as_of(session)
    if as_of is None:
        return {"rows": [], "scored_as_of": None, "as_of": None, "auc": None, "customers": 0,
                "horizon_days": None, "churn_rate": None}
    table = backtest_levels(session.connection(), as_of, lag_days)
    return {"rows": table.to_dict("records"), "as_of": as_of, **table.attrs}
