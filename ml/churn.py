"""Churn: who will place no order in the next H days, why, and what to do about it.

Label (ml.labels): a customer who has ordered by a cut date "churns" when they place no revenue
order in the following `horizon_days` (default 90).

Training is time-based, never a random split. With H the horizon and `as_of` the refresh date,
the validation cut is `as_of - H` (its labels are complete on `as_of`), and the training cuts end
their label windows before it: `as_of - 2H`, `as_of - 2H - 30`, … Features come from ml.features
(the same code scores today's customers). A logistic regression and a gradient-boosting pipeline
are both fitted on the training cuts, with isotonic (or, on little data, sigmoid) calibration; the
one with the better ROC AUC on the validation cut is kept as it is, so the model that scores is the
model the metrics describe. Its validation metrics — ROC AUC, PR AUC, Brier score, lift in the top
decile, the calibration curve, and the AUC of the naive "days since the last order" baseline —
are stored with the version in the model registry.

Drivers: for each customer at medium risk or above, each feature's contribution is how much the
model's log-odds drop when that feature alone is set to its training median (occlusion). The
three largest positive contributions are the customer's drivers, and each maps to a recommended
intervention. Low-risk customers get no drivers and no actions: there is nothing to explain or do.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sqlalchemy import Connection, Engine, and_, delete, exists, func, select, update
from threadpoolctl import threadpool_limits

from crm_core import platform, segmentation
from db import bulk
from db.models import REVENUE_ORDER_STATUSES, ChurnPrediction, Customer, MLModel, Order

from . import bgnbd, registry
from .features import (
    CATEGORICAL_FEATURES,
    FEATURE_SOURCES,
    FEATURES,
    LABELS,
    NUMERIC_FEATURES,
    build_features,
    empty_sources,
)
from .labels import DEFAULT_HORIZON_DAYS, churn_labels

Progress = Callable[[str], None]

EXPLAIN_FROM = segmentation.RISK_FLOORS["medium"]  # drivers are computed from medium risk up
TRAINING_CUTS = 3
CUT_SPACING_DAYS = 30
MAX_ROWS_PER_CUT = 20_000
SMALL_DATA_ROWS = 50_000
MAX_DRIVER_FEATURES = 12  # occlusion runs over the most important features only
MIN_ROWS_TO_TRAIN = 200
MIN_FEATURE_DAYS = 28  # a cut needs this much order history before it to describe customers
MIN_LABEL_DAYS = 14  # the shortest label window worth training on
BGNBD_SAMPLE = 25_000  # customers BG/NBD is fitted on at each date (as the lifetime value model)
RETRAIN_AFTER_DAYS = 30
SCORE_CHUNK = 200_000

INTERVENTIONS: dict[str, str] = {
    "days_since_last_order": "Send a personalised win-back offer",
    "recency_ratio": "Send a reorder reminder before their usual buying gap slips further",
    "mean_days_between_orders": "Send a reorder reminder timed to their buying rhythm",
    "orders_90d": "Re-engage with recommendations based on their past purchases",
    "orders_prev_90d": "Re-engage with recommendations based on their past purchases",
    "orders_365d": "Re-engage with recommendations based on their past purchases",
    "order_trend": "Re-engage with recommendations based on their past purchases",
    "order_count": "Offer a second-purchase incentive",
    "sessions_30d": "Invite them back with new arrivals in their favourite category",
    "sessions_90d": "Invite them back with new arrivals in their favourite category",
    "page_views_90d": "Invite them back with new arrivals in their favourite category",
    "days_since_last_session": "Invite them back with new arrivals in their favourite category",
    "emails_90d": "Reach them on another channel (SMS or push) instead of email",
    "email_open_rate_90d": "Reach them on another channel (SMS or push) instead of email",
    "email_click_rate_90d": "Reach them on another channel (SMS or push) instead of email",
    "open_tickets": "Resolve their open support tickets and follow up personally",
    "tickets_180d": "Review their recent support experience and follow up personally",
    "complaints_365d": "Have a success manager call to close the loop on their complaint",
    "nps_last_365d": "Follow up on their survey feedback",
    "csat_avg_365d": "Follow up on their survey feedback",
    "returns_share": "Check for product-fit or quality problems behind their returns",
    "loyalty_points": "Remind them of their unspent loyalty points",
    "avg_order_value": "Offer a bundle or a free-shipping threshold that fits their basket",
    "total_revenue": "Offer a bundle or a free-shipping threshold that fits their basket",
    "revenue_90d": "Offer a bundle or a free-shipping threshold that fits their basket",
}
DEFAULT_INTERVENTION = "Include them in the next retention campaign"
PERSONAL_CALL = "Assign a success manager for a personal call (high value at high risk)"


# --------------------------------------------------------------------------- the model


def _signed_log(values):
    """log1p of the magnitude, keeping the sign: counts, amounts and day spans are heavy-tailed."""
    values = np.asarray(values, dtype=float)
    return np.sign(values) * np.log1p(np.abs(values))


def _bg_scale(values):
    """BG/NBD outputs on a linear-model scale: log1p of expected purchases, logits of the probabilities."""
    values = np.asarray(values, dtype=float)
    expected = np.log1p(np.clip(values[:, :1], 0, None))
    probabilities = np.clip(values[:, 1:], 1e-4, 1 - 1e-4)
    return np.hstack([expected, np.log(probabilities / (1 - probabilities))])


def _preprocessor(numeric: list[str], categorical: list[str], scaled: bool, with_bg: bool) -> ColumnTransformer:
    transformers: list[tuple[str, Any, list[str]]] = []
    if scaled:
        transformers.append(("num", Pipeline([
            ("impute", SimpleImputer(strategy="median", add_indicator=True)),
            ("log", FunctionTransformer(_signed_log, feature_names_out="one-to-one")),
            ("scale", StandardScaler()),
        ]), numeric))
        if with_bg:
            transformers.append(("bg", Pipeline([
                ("scale_bg", FunctionTransformer(_bg_scale, feature_names_out="one-to-one")),
                ("scale", StandardScaler()),
            ]), list(bgnbd.OUTPUTS)))
        if categorical:
            transformers.append(("cat", OneHotEncoder(handle_unknown="ignore"), categorical))
    else:  # gradient boosting handles missing values and scale itself
        transformers.append(("num", "passthrough", numeric + (list(bgnbd.OUTPUTS) if with_bg else [])))
        if categorical:
            transformers.append(("cat", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1,
                                                       encoded_missing_value=-1), categorical))
    return ColumnTransformer(transformers)


def candidate_pipelines(features: tuple[str, ...] = FEATURES, *, with_bg: bool = True,
                        random_state: int = 0) -> dict[str, Pipeline]:
    """The supervised algorithms compared on every training run, over the usable `features`.

    With `with_bg` the rows also carry BG/NBD's expected purchases, P(alive) and P(no purchase)
    over the label window (ml.bgnbd.OUTPUTS, from a fit on each cut's own customers).
    """
    numeric = [f for f in NUMERIC_FEATURES if f in features]
    categorical = [f for f in CATEGORICAL_FEATURES if f in features]
    categorical_index = len(numeric) + (len(bgnbd.OUTPUTS) if with_bg else 0)
    return {
        "logistic_regression": Pipeline([
            ("prep", _preprocessor(numeric, categorical, scaled=True, with_bg=with_bg)),
            ("model", LogisticRegression(max_iter=2000, C=0.5)),
        ]),
        "gradient_boosting": Pipeline([
            ("prep", _preprocessor(numeric, categorical, scaled=False, with_bg=with_bg)),
            ("model", HistGradientBoostingClassifier(
                max_iter=100, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0,
                categorical_features=[categorical_index] if categorical else None, early_stopping=False,
                random_state=random_state,
            )),
        ]),
    }


@dataclass
class ChurnModel:
    """A fitted churn model plus what scoring needs: its inputs, the horizon scaling and the driver references.

    `algorithm` is "logistic_regression" or "gradient_boosting" (a calibrated pipeline in
    `calibrated_`) or "bgnbd" (BG/NBD's P(no purchase within the horizon), which needs no labels).
    BG/NBD is fitted on the customers being scored (`bgnbd_params`): its outputs are features of
    the supervised models (`uses_bgnbd_`), and a supervised model trained on label windows shorter
    than the horizon (`label_days` < `horizon_days`, when the history is short) gives P(no order
    within label_days), which scoring multiplies by BG/NBD's chance of no purchase in the rest of
    the horizon given none in the window.
    """

    algorithm: str
    calibrated_: Any
    reference_: dict[str, Any]
    horizon_days: int
    driver_features_: tuple[str, ...] = FEATURES
    features_: tuple[str, ...] = FEATURES
    label_days: int | None = None
    uses_bgnbd_: bool = False

    @property
    def window_(self) -> int:
        return getattr(self, "label_days", None) or self.horizon_days

    @property
    def needs_bgnbd(self) -> bool:
        return self.algorithm == "bgnbd" or getattr(self, "uses_bgnbd_", False) or self.window_ < self.horizon_days

    @property
    def inputs_(self) -> list[str]:
        """The feature columns the model reads (and what BG/NBD needs, when it uses BG/NBD)."""
        features = list(getattr(self, "features_", FEATURES))
        return list(dict.fromkeys([*features, *bgnbd.NEEDED])) if self.needs_bgnbd else features

    def bgnbd_params(self, X: pd.DataFrame, random_state: int = 0) -> dict[str, float] | None:
        """BG/NBD fitted on the customers of X (None when the model does not use it); raises
        bgnbd.BGNBDNotFitted when it cannot be fitted."""
        return bgnbd.fit_params(X, BGNBD_SAMPLE, random_state) if self.needs_bgnbd else None

    def _window_proba(self, X: pd.DataFrame, params, calibrated: bool = True) -> np.ndarray:
        if self.algorithm == "bgnbd":
            return bgnbd.churn_probability(params, X, self.horizon_days)
        Z = X[self.inputs_]
        if getattr(self, "uses_bgnbd_", False):
            Z = bgnbd.with_outputs(Z, params, self.window_)
        estimator = self.calibrated_ if calibrated else self.calibrated_.calibrated_classifiers_[0].estimator
        return estimator.predict_proba(Z)[:, 1]

    def _to_horizon(self, X: pd.DataFrame, p: np.ndarray, params) -> np.ndarray:
        if self.algorithm == "bgnbd" or self.window_ >= self.horizon_days:
            return p
        full = bgnbd.predict(params, X, self.horizon_days)["bg_p_no_purchase"].to_numpy()
        part = bgnbd.predict(params, X, self.window_)["bg_p_no_purchase"].to_numpy()
        rest = np.clip(np.where(part > 0, full / np.where(part > 0, part, 1.0), 1.0), 0.0, 1.0)
        return p * rest

    def predict_proba(self, X: pd.DataFrame, bg_params: dict[str, float] | None = None) -> np.ndarray:
        """P(no revenue order within the horizon), per row; BG/NBD is fitted on X unless `bg_params` is given."""
        params = bg_params if bg_params is not None else self.bgnbd_params(X)
        return self._to_horizon(X, self._window_proba(X, params), params)

    def _log_odds(self, X: pd.DataFrame, params) -> np.ndarray:
        # The uncalibrated model: isotonic calibration is a step function, flat under small changes.
        p = np.clip(self._to_horizon(X, self._window_proba(X, params, calibrated=False), params), 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def contributions(self, X: pd.DataFrame, bg_params: dict[str, float] | None = None) -> pd.DataFrame:
        """Per-customer, per-feature effect on the log-odds (occlusion against the training median).

        The BG/NBD outputs are recomputed for each occluded row with the same parameters, so a
        driver such as the days since the last order carries its effect through BG/NBD too.
        """
        params = bg_params if bg_params is not None else self.bgnbd_params(X)
        X = X[list(FEATURES)]
        full = self._log_odds(X, params)
        effects = {feature: np.zeros(len(X)) for feature in FEATURES}
        for feature in self.driver_features_:
            occluded = X.copy()
            occluded[feature] = self.reference_[feature]
            effects[feature] = full - self._log_odds(occluded, params)
        return pd.DataFrame(effects, index=X.index)


def _threads(rows: int):
    """One OpenMP thread on small data: gradient boosting's thread team spins for nothing there,
    and on a busy machine the spinning costs minutes."""
    return threadpool_limits(limits=1, user_api="openmp") if rows < SMALL_DATA_ROWS else nullcontext()


def fit_calibrated(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series,
                   inputs: list[str] | None = None) -> CalibratedClassifierCV:
    # Sigmoid (Platt) calibration keeps the model's ranking; isotonic calibration is a step function
    # whose ties cost ROC AUC, and with few of one class (a short label window) it collapses.
    method = "sigmoid"
    folds = max(2, min(3, int(y.sum()), int((1 - y).sum())))
    model = CalibratedClassifierCV(pipeline, method=method, cv=folds, ensemble=False)
    with _threads(len(y)):
        return model.fit(X[inputs or list(FEATURES)], y)


def reference_values(X: pd.DataFrame) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for feature in NUMERIC_FEATURES:
        median = X[feature].median()
        values[feature] = None if pd.isna(median) else float(median)
    for feature in CATEGORICAL_FEATURES:
        values[feature] = str(X[feature].mode().iloc[0]) if len(X) else "unknown"
    return values


def unusable_features(X: pd.DataFrame, empty: set[str], cut: dt.date) -> dict[str, str]:
    """Features left out of a training run, with the reason: their source has nothing before the
    cut, they are missing or the same for every customer at the training cuts, or they repeat an
    earlier feature exactly (an imported customer's sign-up is their first order)."""
    reasons: dict[str, str] = {}
    kept: list[str] = []
    for feature in FEATURES:
        source = FEATURE_SOURCES.get(feature, "")
        values = X[feature]
        if source in empty:
            reasons[feature] = f"no {source} before {cut.isoformat()}"
        elif values.isna().all():
            reasons[feature] = "missing for every customer at the training cuts"
        elif values.nunique(dropna=True) <= 1:
            reasons[feature] = f"the same value ({values.dropna().iloc[0]}) for every customer at the training cuts"
        else:
            twin = next((other for other in kept if feature in NUMERIC_FEATURES and other in NUMERIC_FEATURES
                         and values.equals(X[other])), None)
            if twin is not None:
                reasons[feature] = f"the same as {LABELS[twin]} for every customer at the training cuts"
            else:
                kept.append(feature)
    return reasons


# --------------------------------------------------------------------------- metrics


def lift_top_decile(y: np.ndarray, p: np.ndarray) -> float:
    y = np.asarray(y, dtype=float)
    if y.mean() == 0:
        return float("nan")
    top = np.argsort(-np.asarray(p), kind="stable")[: max(1, math.ceil(len(p) / 10))]
    return float(y[top].mean() / y.mean())


def evaluate(y: np.ndarray, p: np.ndarray) -> dict[str, Any]:
    y = np.asarray(y, dtype=int)
    p = np.asarray(p, dtype=float)
    two_classes = len(np.unique(y)) == 2
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10, strategy="quantile") if two_classes else ([], [])
    return {
        "roc_auc": float(roc_auc_score(y, p)) if two_classes else None,
        "pr_auc": float(average_precision_score(y, p)) if two_classes else None,
        "brier": float(brier_score_loss(y, p)),
        "lift_top_decile": lift_top_decile(y, p),
        "base_rate": float(y.mean()),
        "rows": int(len(y)),
        "calibration": {"predicted": [float(v) for v in prob_pred], "observed": [float(v) for v in prob_true]},
    }


def auc_or_none(y, score) -> float | None:
    y = np.asarray(y, dtype=int)
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else None


# --------------------------------------------------------------------------- training


@dataclass(frozen=True)
class TrainingPlan:
    """Which cuts and label window the history allows for a horizon.

    `label_days` is the label window of the supervised training: the horizon when the history
    holds two of them plus `MIN_FEATURE_DAYS`, a shorter window (at least `MIN_LABEL_DAYS`) when
    it does not, None when even that does not fit (then only the label-free BG/NBD model can run).
    """

    horizon_days: int
    label_days: int | None
    training_cuts: tuple[dt.date, ...]
    validation_cut: dt.date | None
    history_days: int
    reason: str = ""

    @property
    def labelled_validation_cut(self) -> dt.date:
        """The validation cut of a plan with labels (`label_days` set)."""
        if self.validation_cut is None:
            raise NotEnoughHistory(self.reason or "too little history for labelled training")
        return self.validation_cut


def plan_training(first_order: dt.date, as_of: dt.date, horizon_days: int, n_cuts: int = TRAINING_CUTS,
                  spacing_days: int = CUT_SPACING_DAYS) -> TrainingPlan:
    """Training cuts oldest first and the validation cut: no training label window reaches the
    validation cut, the validation window ends at `as_of`, and every cut has `MIN_FEATURE_DAYS`
    of orders before it."""
    history = (as_of - first_order).days
    window = min(horizon_days, (history - MIN_FEATURE_DAYS) // 2)
    if window < MIN_LABEL_DAYS:
        return TrainingPlan(horizon_days, None, (), None, history, (
            f"only {history} days of orders before {as_of.isoformat()}: too short for labelled training "
            f"(which needs {MIN_FEATURE_DAYS + 2 * MIN_LABEL_DAYS}), so the probability of no purchase within "
            f"{horizon_days} days comes from BG/NBD, which needs no labels"))
    validation = as_of - dt.timedelta(days=window)
    earliest = first_order + dt.timedelta(days=MIN_FEATURE_DAYS)
    last = validation - dt.timedelta(days=window)
    cuts = tuple(sorted(c for c in (last - dt.timedelta(days=spacing_days * k) for k in range(n_cuts))
                        if c >= earliest))
    reason = "" if window == horizon_days else (
        f"only {history} days of orders before {as_of.isoformat()}: labels over {window}-day windows "
        f"(two {horizon_days}-day windows do not fit), scaled to {horizon_days} days with BG/NBD's chance of no "
        "purchase in the rest of the horizon")
    return TrainingPlan(horizon_days, window, cuts, validation, history, reason)


def training_cuts(as_of: dt.date, horizon_days: int, n_cuts: int = TRAINING_CUTS,
                  spacing_days: int = CUT_SPACING_DAYS) -> tuple[list[dt.date], dt.date]:
    """(training cuts oldest first, validation cut) when the history is long enough for the horizon."""
    plan = plan_training(dt.date(1900, 1, 1), as_of, horizon_days, n_cuts, spacing_days)
    return list(plan.training_cuts), plan.labelled_validation_cut


def first_order_date(connection: Connection, as_of: dt.date) -> dt.date | None:
    first = connection.scalar(select(func.min(Order.ordered_at)).where(
        Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < platform.end_of(as_of)))
    return first.date() if first is not None else None


def _sample_every(connection: Connection, cut: dt.date, max_rows: int) -> int:
    # Customers signed up by the cut bound the buyers among them, and counting them needs no pass
    # over the orders: the sample holds at most about max_rows buyers.
    signed_up = connection.scalar(
        select(func.count()).select_from(Customer).where(Customer.signed_up_at < platform.end_of(cut))) or 0
    return max(1, math.ceil(signed_up / max_rows))


def labelled_cut(connection: Connection, cut: dt.date, horizon_days: int, max_rows: int = MAX_ROWS_PER_CUT) -> pd.DataFrame:
    """Features as of `cut` with the churn label of the following `horizon_days` (sampled to ~max_rows)."""
    sample_every = _sample_every(connection, cut, max_rows)
    X = build_features(connection, cut, sample_every=sample_every)
    labels = churn_labels(connection, cut, horizon_days, sample_every=sample_every)
    frame = X.join(labels, how="inner")
    frame["cut"] = cut
    return frame


@dataclass
class TrainingResult:
    model: ChurnModel
    model_id: int
    version: int
    metrics: dict[str, Any]
    seconds: float
    notes: list[str] = field(default_factory=list)


class NotEnoughHistory(ValueError):
    """Raised when there is too little history to produce any churn probability."""


def _label_free(connection: Connection, as_of: dt.date, plan: TrainingPlan, notes: list[str],
                random_state: int) -> tuple[ChurnModel, dict[str, Any]]:
    """BG/NBD's P(no purchase within the horizon), fitted on the customers as of `as_of` (no labels)."""
    X = build_features(connection, as_of, sample_every=_sample_every(connection, as_of, BGNBD_SAMPLE))
    try:
        params = bgnbd.fit_params(X, BGNBD_SAMPLE, random_state)
    except bgnbd.BGNBDNotFitted as exc:
        raise NotEnoughHistory(f"Churn cannot be estimated as of {as_of.isoformat()}: {'; '.join(notes)}; and {exc}") \
            from None
    used = tuple(f for f in FEATURES if f in bgnbd.NEEDED)
    production = ChurnModel(algorithm="bgnbd", calibrated_=None, reference_=reference_values(X),
                            horizon_days=plan.horizon_days, driver_features_=used, features_=used)
    metrics: dict[str, Any] = {
        "roc_auc": None, "pr_auc": None, "brier": None, "lift_top_decile": None, "base_rate": None,
        "rows": int(len(X)), "calibration": {"predicted": [], "observed": []},
        "horizon_days": plan.horizon_days, "label_days": None, "selected": "bgnbd", "validated": False,
        "candidates": {}, "baseline_recency_auc": None, "validation_cut": None, "training_cuts": [],
        "training_rows": int(len(X)), "feature_importance": {}, "history_days": plan.history_days,
        "bgnbd_params": params, "notes": notes,
        "features_used": list(used),
        "features_not_used": {f: "the label-free BG/NBD model reads only purchase days and their timing"
                              for f in FEATURES if f not in used},
    }
    return production, metrics


@dataclass
class Candidates:
    """Every candidate fitted on one training plan, with its metrics on the validation cut."""

    plan: TrainingPlan
    models: dict[str, ChurnModel]
    validation: dict[str, dict[str, Any]]
    valid: pd.DataFrame
    training_rows: int
    used: tuple[str, ...]
    unusable: dict[str, str]
    uses_bgnbd: bool
    notes: list[str]
    training: pd.DataFrame  # the training cuts' rows: the chosen algorithm is fitted again on them and `valid`


def _with_bgnbd(frame: pd.DataFrame, window: int, random_state: int) -> pd.DataFrame:
    """The cut's rows with BG/NBD outputs over the label window, from a fit on this cut's customers."""
    return bgnbd.with_outputs(frame, bgnbd.fit_params(frame, BGNBD_SAMPLE, random_state), window)


def fit_candidates(connection: Connection, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
                   random_state: int = 0, progress: Progress | None = None) -> Candidates | tuple[ChurnModel, dict]:
    """Fit every candidate the history allows and measure each on the validation cut.

    Returns the label-free BG/NBD model and its card metrics instead when the history is too short
    for labelled training (or the labelled cuts hold too few customers or only one class).
    """
    say = progress or (lambda _message: None)
    first = first_order_date(connection, as_of)
    if first is None:
        raise NotEnoughHistory(f"There are no orders before {as_of.isoformat()}, so there is nobody to score for churn.")
    plan = plan_training(first, as_of, horizon_days)
    notes = [plan.reason] if plan.reason else []
    if plan.label_days is None:
        return _label_free(connection, as_of, plan, notes, random_state)
    window = plan.label_days
    frames = []
    for cut in plan.training_cuts:
        frame = labelled_cut(connection, cut, window)
        say(f"cut {cut.isoformat()}: {len(frame):,} customers")
        if len(frame):
            frames.append(frame)
    valid = labelled_cut(connection, plan.labelled_validation_cut, window)
    rows = sum(len(f) for f in frames)
    problem = None
    if rows < MIN_ROWS_TO_TRAIN or len(valid) < MIN_ROWS_TO_TRAIN // 2:
        problem = (f"labelled training needs {MIN_ROWS_TO_TRAIN} customers before "
                   f"{plan.training_cuts[-1].isoformat() if plan.training_cuts else '?'} and "
                   f"{MIN_ROWS_TO_TRAIN // 2} at {plan.labelled_validation_cut.isoformat()}; found {rows} and {len(valid)}")
    elif pd.concat(frames)["churned"].nunique() < 2 or valid["churned"].nunique() < 2:
        problem = "labelled training needs both churned and retained customers in the training and validation cuts"
    if problem:
        return _label_free(connection, as_of, plan, [*notes, problem], random_state)

    training = pd.concat(frames)
    unusable = unusable_features(training, empty_sources(connection, plan.training_cuts[-1]), plan.training_cuts[-1])
    used = tuple(f for f in FEATURES if f not in unusable)
    if not used:
        raise NotEnoughHistory("No churn feature varies between customers at the training cuts.")
    try:
        training = pd.concat([_with_bgnbd(frame, window, random_state) for frame in frames])
        valid = _with_bgnbd(valid, window, random_state)
        uses_bgnbd = True
    except bgnbd.BGNBDNotFitted as exc:
        if window < horizon_days:
            raise NotEnoughHistory(f"{plan.reason}; but {exc}") from None
        uses_bgnbd = False
        notes.append(f"BG/NBD outputs not used as features: {exc}")
    inputs = list(dict.fromkeys([*used, *bgnbd.NEEDED])) if uses_bgnbd or window < horizon_days else list(used)
    columns = inputs + (list(bgnbd.OUTPUTS) if uses_bgnbd else [])
    reference = reference_values(training)

    y_valid = valid["churned"].to_numpy()
    models: dict[str, ChurnModel] = {}
    validation: dict[str, dict[str, Any]] = {}
    for name, pipeline in candidate_pipelines(used, with_bg=uses_bgnbd, random_state=random_state).items():
        started = time.perf_counter()
        fitted = fit_calibrated(pipeline, training, training["churned"], columns)
        p = fitted.predict_proba(valid[columns])[:, 1]
        validation[name] = evaluate(y_valid, p) | {"fit_seconds": round(time.perf_counter() - started, 2)}
        models[name] = ChurnModel(algorithm=name, calibrated_=fitted, reference_=reference, horizon_days=horizon_days,
                                  driver_features_=used, features_=used, label_days=window, uses_bgnbd_=uses_bgnbd)
        say(f"{name}: validation ROC AUC {validation[name]['roc_auc']:.3f}")
    if uses_bgnbd:
        p = bgnbd.churn_probability(bgnbd.fit_params(valid, BGNBD_SAMPLE, random_state), valid, window)
        validation["bgnbd"] = evaluate(y_valid, p) | {"fit_seconds": 0.0}
        needed = tuple(f for f in used if f in bgnbd.NEEDED)
        models["bgnbd"] = ChurnModel(algorithm="bgnbd", calibrated_=None, reference_=reference,
                                     horizon_days=horizon_days, driver_features_=needed, features_=needed)
        say(f"bgnbd: validation ROC AUC {validation['bgnbd']['roc_auc']:.3f}")
    return Candidates(plan, models, validation, valid, int(len(training)), used, unusable, uses_bgnbd, notes,
                      training)


def select_best(validation: dict[str, dict[str, Any]]) -> str:
    """The candidate with the best validation ROC AUC (then the lower Brier score)."""
    return max(validation, key=lambda n: (validation[n]["roc_auc"] or 0, -(validation[n]["brier"] or 1)))


def train(connection: Connection, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
          random_state: int = 0, progress: Progress | None = None) -> tuple[ChurnModel, dict[str, Any], list[dt.date]]:
    """Fit and compare the candidates on time-based cuts; return the production model, its model card
    metrics and the cuts used.

    The history decides the plan (see `plan_training`). Features whose source is empty, or that are
    missing or constant at the training cuts, are left out and listed with the reason. Candidates:
    logistic regression and gradient boosting (with BG/NBD outputs as features when BG/NBD fits),
    and BG/NBD's own P(no purchase). The best on the validation cut (`select_best`) is kept as fitted.
    With too little history for labels, BG/NBD alone gives the probability (`validated` False).
    """
    found = fit_candidates(connection, as_of, horizon_days, random_state, progress)
    if isinstance(found, tuple):
        model, metrics = found
        return model, metrics, []
    best = select_best(found.validation)
    production = found.models[best]
    valid = found.valid
    refit_rows = None
    if best == "bgnbd":
        ranked = [(f, 0.0) for f in production.driver_features_]
    else:
        columns = production.inputs_ + (list(bgnbd.OUTPUTS) if found.uses_bgnbd else [])
        sample = valid.sample(n=min(len(valid), 2_000), random_state=random_state)
        with _threads(len(sample)):
            importance = permutation_importance(
                production.calibrated_, sample[columns], sample["churned"], scoring="roc_auc", n_repeats=2,
                random_state=random_state,
            )
        ranked = sorted(((f, v) for f, v in zip(columns, importance.importances_mean, strict=True)
                         if f in found.used), key=lambda kv: -kv[1])
        production.driver_features_ = tuple(f for f, v in ranked[:MAX_DRIVER_FEATURES] if v > 0) or found.used
        # Importance above is measured on the held-out validation cut; then the chosen algorithm learns
        # from that cut too, since its labels are the most recent behaviour there is.
        refit = pd.concat([found.training, valid])
        pipeline = candidate_pipelines(found.used, with_bg=found.uses_bgnbd, random_state=random_state)[best]
        production.calibrated_ = fit_calibrated(pipeline, refit, refit["churned"], columns)
        refit_rows = int(len(refit))
    plan = found.plan
    metrics = {
        **{k: v for k, v in found.validation[best].items() if k != "fit_seconds"},
        "horizon_days": horizon_days,
        "label_days": plan.label_days,
        "history_days": plan.history_days,
        "selected": best,
        "validated": True,
        "candidates": {n: {k: v for k, v in m.items() if k != "calibration"} for n, m in found.validation.items()},
        "baseline_recency_auc": auc_or_none(valid["churned"].to_numpy(), valid["days_since_last_order"].to_numpy()),
        "validation_cut": plan.labelled_validation_cut.isoformat(),
        "training_cuts": [c.isoformat() for c in plan.training_cuts],
        "training_rows": found.training_rows,
        "refit_rows": refit_rows,
        "feature_importance": {f: round(float(v), 5) for f, v in ranked},
        "features_used": list(production.features_),
        "features_not_used": found.unusable,
        "bgnbd_features": found.uses_bgnbd,
        "notes": found.notes,
    }
    return production, metrics, [*plan.training_cuts, plan.labelled_validation_cut]


def train_and_register(engine: Engine, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
                       actor: platform.Actor = platform.SYSTEM, progress: Progress | None = None) -> TrainingResult:
    platform.require(actor, "models.manage")  # before the training, not only at registration
    started = time.perf_counter()
    with engine.connect() as connection:
        model, metrics, cuts = train(connection, as_of, horizon_days, progress=progress)
    params: dict[str, Any] = {"horizon_days": horizon_days, "label_days": metrics.get("label_days")}
    if model.algorithm != "bgnbd":
        params["calibration"] = model.calibrated_.method
        params.update({k: v for k, v in model.calibrated_.estimator.named_steps["model"].get_params().items()
                       if isinstance(v, int | float | str | bool) or v is None})
    with platform.unit_of_work(engine) as session:
        row = registry.register(
            session, "churn", model.algorithm, model, params=params, features=list(model.features_),
            training_start=cuts[0] if cuts else None, training_end=cuts[-1] if cuts else as_of, metrics=metrics,
            actor=actor,
        )
        model_id, version = row.id, row.version
    return TrainingResult(model, model_id, version, metrics, time.perf_counter() - started, metrics.get("notes", []))


# --------------------------------------------------------------------------- scoring


def risk_level(p: np.ndarray) -> np.ndarray:
    """The risk level of each probability (crm_core.segmentation's churn risk bands), vectorised."""
    levels = np.full(len(p), "low", dtype=object)
    for name, floor in segmentation.RISK_FLOORS.items():
        levels[p >= floor] = name
    return levels


DRIVERS_SHOWN = 3
DRIVER_MIN_EFFECT = 0.01  # log-odds; smaller contributions are not worth naming


def _json_numbers(values: np.ndarray) -> np.ndarray:
    """JSON text of each float rounded to 3 decimals (null for NaN), as an object array."""
    rounded = pd.Series(np.round(values.astype("float64"), 3))
    return np.where(rounded.isna().to_numpy(), "null", rounded.astype(str).to_numpy(dtype=object)).astype(object)


def drivers_and_interventions(X: pd.DataFrame, effects: pd.DataFrame, high_value: np.ndarray,
                              levels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each customer's drivers and interventions as JSON text, built column-wise (no per-customer loop).

    Drivers: the (up to) three features with the largest positive effects above DRIVER_MIN_EFFECT,
    largest first, each {"feature", "label", "value", "effect"}. Interventions: a personal call for
    high-value customers at high or critical risk, then each driver's action once, in driver order;
    the default retention action when that leaves none and the risk is not low.
    """
    n = len(X)
    values = effects[list(FEATURES)].to_numpy(dtype="float64")
    order = np.argsort(-values, axis=1)[:, :DRIVERS_SHOWN]
    rows = np.arange(n)
    top_effects = values[rows[:, None], order]
    shown = top_effects > DRIVER_MIN_EFFECT  # sorted descending, so the shown drivers are a prefix

    numeric = X[list(NUMERIC_FEATURES)].to_numpy(dtype="float64")
    categorical = X[CATEGORICAL_FEATURES[0]].astype(str).to_numpy(dtype=object)
    quoted = {value: json.dumps(value) for value in pd.unique(categorical)}
    categorical_json = np.array([quoted[v] for v in categorical], dtype=object) if n else categorical
    prefix = np.array([f'{{"feature": {json.dumps(f)}, "label": {json.dumps(LABELS[f])}, "value": '
                       for f in FEATURES], dtype=object)

    drivers = np.full(n, "[", dtype=object)
    for k in range(order.shape[1]):
        j = order[:, k]
        is_numeric = j < len(NUMERIC_FEATURES)
        value = np.where(is_numeric, _json_numbers(numeric[rows, np.minimum(j, len(NUMERIC_FEATURES) - 1)]),
                         categorical_json)
        text = prefix[j] + value + ', "effect": ' + _json_numbers(top_effects[:, k]) + "}"
        separator = "" if k == 0 else ", "
        drivers = np.where(shown[:, k], drivers + separator + text, drivers)
    drivers = drivers + "]"

    # Interventions depend only on (call?, shown driver features, low risk?): one JSON text per distinct key.
    call = high_value & np.isin(levels, segmentation.AT_RISK_LEVELS)
    low = levels == "low"
    features = np.where(shown, order, -1)
    keys = np.column_stack([call, low, features]).astype(np.int64) if n else np.zeros((0, 2 + order.shape[1]))
    distinct, inverse = np.unique(keys, axis=0, return_inverse=True)
    texts = []
    for key in distinct:
        actions: list[str] = [PERSONAL_CALL] if key[0] else []
        for j in key[2:]:
            if j >= 0:
                action = INTERVENTIONS.get(FEATURES[j], DEFAULT_INTERVENTION)
                if action not in actions:
                    actions.append(action)
        if not actions and not key[1]:
            actions.append(DEFAULT_INTERVENTION)
        texts.append(json.dumps(actions))
    interventions = np.array(texts, dtype=object)[inverse.reshape(-1)] if n else np.array([], dtype=object)
    return drivers, interventions


def _active(engine: Engine) -> tuple[MLModel, ChurnModel] | None:
    with platform.unit_of_work(engine) as session:
        found = registry.active(session, "churn")
        if found is None:
            return None
        row, model = found
        session.expunge(row)
        return row, model


def needs_training(row: MLModel | None, as_of: dt.date, horizon_days: int) -> bool:
    """Retrain when there is no model, when it saw data after this cut, or when it is a month stale.

    A model fitted on a short history (label-free, or on windows shorter than the horizon) is
    refitted at every refresh: each day of history makes a better one possible.
    """
    params = (row.params or {}) if row is not None else {}
    if row is None or row.training_end is None or params.get("horizon_days") != horizon_days:
        return True
    if params.get("label_days") != horizon_days:
        return True
    latest_usable = as_of - dt.timedelta(days=horizon_days)
    return row.training_end > latest_usable or (latest_usable - row.training_end).days >= RETRAIN_AFTER_DAYS


def score(engine: Engine, as_of: dt.date, model: ChurnModel, model_id: int | None) -> dict[str, Any]:
    """Score every customer who has ordered and store the predictions in `customer_churn_predictions`.

    The analytics snapshot reads the predictions of its date when it is next built (the snapshot
    step of the batch refresh is the only writer of `customer_analytics`).
    """
    with engine.connect() as connection:
        X = build_features(connection, as_of)
    if X.empty:
        return {"scored": 0}
    try:
        params = model.bgnbd_params(X)  # once, on every customer scored (a sample of them)
    except bgnbd.BGNBDNotFitted as exc:
        raise NotEnoughHistory(f"The {model.algorithm.replace('_', ' ')} churn model uses BG/NBD, which cannot be "
                               f"fitted as of {as_of.isoformat()}: {exc}") from None
    revenue = X["total_revenue"].fillna(0).to_numpy(dtype=float)
    high_value = revenue >= np.quantile(revenue, 0.9)
    frames = []
    for start in range(0, len(X), SCORE_CHUNK):
        chunk = X.iloc[start:start + SCORE_CHUNK]
        with _threads(len(chunk)):
            # Rounded as stored, so the level and every filter on the stored probability agree (a
            # 0.499996 stored as 0.5 was 'medium' here but 'high' to a 'probability >= 0.5' audience).
            p = np.round(model.predict_proba(chunk, params), 5)
            # Drivers explain a risk worth acting on: low-risk customers get none (and no actions).
            effects = pd.DataFrame(0.0, index=chunk.index, columns=list(FEATURES))
            explain = p >= EXPLAIN_FROM
            if explain.any():
                effects.loc[explain] = model.contributions(chunk[explain], params).to_numpy()
        levels = risk_level(p)
        drivers, interventions = drivers_and_interventions(
            chunk, effects, high_value[start:start + SCORE_CHUNK], levels)
        frames.append(pd.DataFrame({
            "customer_id": chunk.index.to_numpy(), "model_id": model_id, "as_of": as_of,
            "horizon_days": model.horizon_days, "probability": p, "risk_level": levels,
            "confidence": np.round(np.abs(2 * p - 1), 4), "drivers": drivers, "interventions": interventions,
        }))
    predictions = pd.concat(frames, ignore_index=True)
    with platform.unit_of_work(engine) as session:
        connection = session.connection()
        connection.execute(delete(ChurnPrediction).where(ChurnPrediction.as_of == as_of))
        bulk.load(connection, ChurnPrediction.__table__, predictions)
    counts = predictions["risk_level"].value_counts().to_dict()
    return {"scored": len(predictions), "levels": counts}


def evaluate_past_predictions(engine: Engine, as_of: dt.date) -> int:
    """Fill `actual_churned` for predictions whose horizon has passed by the end of `as_of`."""
    updated = 0
    with platform.unit_of_work(engine) as session:
        pending = session.execute(
            select(ChurnPrediction.as_of, ChurnPrediction.horizon_days)
            .where(ChurnPrediction.actual_churned.is_(None))
            .group_by(ChurnPrediction.as_of, ChurnPrediction.horizon_days)
        ).all()
        for made_on, horizon in pending:
            if made_on + dt.timedelta(days=horizon) > as_of:
                continue
            ordered = exists().where(
                Order.customer_id == ChurnPrediction.customer_id, Order.status.in_(REVENUE_ORDER_STATUSES),
                Order.ordered_at >= platform.end_of(made_on), Order.ordered_at < platform.end_of(made_on + dt.timedelta(days=horizon)),
            )
            result = session.execute(
                update(ChurnPrediction)
                .where(and_(ChurnPrediction.as_of == made_on, ChurnPrediction.horizon_days == horizon,
                            ChurnPrediction.actual_churned.is_(None)))
                .values(actual_churned=~ordered, evaluated_at=platform.end_of(as_of))
            )
            updated += platform.rows_affected(result) or 0
    return updated


def refresh_churn(engine: Engine, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
                  progress: Progress | None = None, *, actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """The batch step: (re)train when due, score everyone, and check old predictions against outcomes.

    Returns {"status": "scored", "scored", "levels", "detail"} or {"status": "skipped", "reason"}.
    `actor` (the batch's system actor by default) must be allowed to run the refresh and manage models.
    """
    platform.require(actor, "refresh.run")
    platform.require(actor, "models.manage")
    evaluated = evaluate_past_predictions(engine, as_of)
    current = _active(engine)
    trained = ""
    if needs_training(current[0] if current else None, as_of, horizon_days):
        try:
            result = train_and_register(engine, as_of, horizon_days, actor=actor, progress=progress)
        except NotEnoughHistory as exc:
            if current is None:
                return {"status": "skipped", "reason": str(exc)}
            trained = f"kept v{current[0].version} ({exc}); "
        else:
            active = _active(engine)
            current = (active[0], result.model) if active else None
            auc = result.metrics.get("roc_auc")
            validation = f"validation AUC {auc:.3f}" if auc is not None else "not validated: too little history"
            trained = f"trained v{result.version} {result.model.algorithm} ({validation}); "
    if current is None:  # trained just now, so there is an active model
        return {"status": "skipped", "reason": "no active churn model"}
    row, model = current
    try:
        scored = score(engine, as_of, model, row.id)
    except NotEnoughHistory as exc:
        return {"status": "skipped", "reason": str(exc)}
    levels = ", ".join(f"{k} {v:,}" for k, v in sorted(scored.get("levels", {}).items()))
    return {"status": "scored", "scored": scored["scored"], "levels": scored.get("levels", {}),
            "detail": f"{trained}scored {scored['scored']:,} customers ({levels}); "
                      f"{evaluated:,} past predictions checked"}
