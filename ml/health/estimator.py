"""The health estimators and advice, without I/O: component scores from the aggregated inputs, the
weight fitter, the registered scorer, levels, risk indicators, recommendations and action items
(the formulas are in the package docstring, ml.health).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from crm_core import segmentation

COMPONENTS = ("engagement", "satisfaction", "loyalty", "payment", "support")
NEUTRAL = 50.0
LEVEL_THRESHOLDS = (("excellent", 80.0), ("good", 65.0), ("fair", 50.0), ("poor", 35.0))
MIN_LABELLED = 100
MIN_PER_CLASS = 20
LOGIT_SAMPLE = 200_000
WEAK_COMPONENT = 50.0


def equal_weights() -> dict[str, float]:
    return {name: round(1 / len(COMPONENTS), 6) for name in COMPONENTS}


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


def components_from_inputs(f: pd.DataFrame, sources: frozenset[str] = frozenset({"web sessions", "support tickets"})
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
        self.auc_: dict[str, float | None] = {}
        self.strength_: dict[str, float] = {}
        self.logit_coef_: dict[str, float] = {}
        self.overall_auc_: float | None = None
        self.fallback_reason_: str | None
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


def indicator_flags(inputs: pd.DataFrame, trend: np.ndarray) -> dict[str, np.ndarray]:
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


def advice_columns(components: pd.DataFrame, levels: np.ndarray, flags: dict[str, np.ndarray]) -> pd.DataFrame:
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


# --------------------------------------------------------------------------- relationship

RELATIONSHIPS = segmentation.ACCOUNT_RELATIONSHIPS


def relationships(inputs: pd.DataFrame, churned_after_days: int) -> np.ndarray:
    """'live' for a customer who has bought and ordered within `churned_after_days` of the cutoff,
    'churned' for one whose last order is older, 'never_bought' for one without a revenue order:
    `segmentation.account_relationships` (what the CTA rules use) over the health inputs.

    Only live accounts are scored: a customer long gone or never won is not an account in poor
    health, and counting them as "critical" buries the accounts a success manager can still save.
    """
    orders = inputs["orders"].to_numpy(dtype="float64")
    days = inputs["days_since_last_order"].to_numpy(dtype="float64")
    with np.errstate(invalid="ignore"):
        # `days` run from the end of the as-of day: an order on the day `churned_after_days` before it
        # is up to that many days plus one old and still live, as the lifecycle rule's calendar days say
        churned = (orders > 0) & (days > churned_after_days + 1)
    return np.select([orders <= 0, churned], ["never_bought", "churned"], "live").astype(object)
