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
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sqlalchemy import Connection, Engine, and_, delete, exists, func, select, update
from threadpoolctl import threadpool_limits

from crm_core.analytics import end_of
from db import bulk
from db.engine import session_scope
from db.models import REVENUE_ORDER_STATUSES, ChurnPrediction, Customer, CustomerAnalytics, MLModel, Order

from . import registry
from .features import CATEGORICAL_FEATURES, FEATURES, LABELS, NUMERIC_FEATURES, build_features
from .labels import DEFAULT_HORIZON_DAYS, churn_labels

Progress = Callable[[str], None]

RISK_THRESHOLDS = (("critical", 0.75), ("high", 0.5), ("medium", 0.25), ("low", 0.0))
EXPLAIN_FROM = dict(RISK_THRESHOLDS)["medium"]  # drivers are computed from medium risk up
TRAINING_CUTS = 3
CUT_SPACING_DAYS = 30
MAX_ROWS_PER_CUT = 20_000
SMALL_DATA_ROWS = 50_000
MAX_DRIVER_FEATURES = 12  # occlusion runs over the most important features only
MIN_ROWS_TO_TRAIN = 200
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


def _preprocessor(scaled: bool) -> ColumnTransformer:
    numeric = list(NUMERIC_FEATURES)
    categorical = list(CATEGORICAL_FEATURES)
    if scaled:
        num = Pipeline([("impute", SimpleImputer(strategy="median", add_indicator=True)), ("scale", StandardScaler())])
        cat = OneHotEncoder(handle_unknown="ignore")
    else:
        num = "passthrough"  # gradient boosting handles missing values itself
        cat = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1, encoded_missing_value=-1)
    return ColumnTransformer([("num", num, numeric), ("cat", cat, categorical)])


def candidate_pipelines(random_state: int = 0) -> dict[str, Pipeline]:
    """The algorithms compared on every training run."""
    return {
        "logistic_regression": Pipeline([
            ("prep", _preprocessor(scaled=True)),
            ("model", LogisticRegression(max_iter=2000, C=0.5)),
        ]),
        "gradient_boosting": Pipeline([
            ("prep", _preprocessor(scaled=False)),
            ("model", HistGradientBoostingClassifier(
                max_iter=100, learning_rate=0.1, max_leaf_nodes=31, min_samples_leaf=40, l2_regularization=1.0,
                categorical_features=[len(NUMERIC_FEATURES)], early_stopping=False, random_state=random_state,
            )),
        ]),
    }


@dataclass
class ChurnModel:
    """A calibrated pipeline plus what scoring needs: the reference values for drivers."""

    algorithm: str
    calibrated_: CalibratedClassifierCV
    reference_: dict[str, Any]
    horizon_days: int
    driver_features_: tuple[str, ...] = FEATURES

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        return self.calibrated_.predict_proba(X[list(FEATURES)])[:, 1]

    def _log_odds(self, X: pd.DataFrame) -> np.ndarray:
        base = self.calibrated_.calibrated_classifiers_[0].estimator
        p = np.clip(base.predict_proba(X)[:, 1], 1e-6, 1 - 1e-6)
        return np.log(p / (1 - p))

    def contributions(self, X: pd.DataFrame) -> pd.DataFrame:
        """Per-customer, per-feature effect on the log-odds (occlusion against the training median)."""
        X = X[list(FEATURES)]
        full = self._log_odds(X)
        effects = {feature: np.zeros(len(X)) for feature in FEATURES}
        for feature in self.driver_features_:
            occluded = X.copy()
            occluded[feature] = self.reference_[feature]
            effects[feature] = full - self._log_odds(occluded)
        return pd.DataFrame(effects, index=X.index)


def _threads(rows: int):
    """One OpenMP thread on small data: gradient boosting's thread team spins for nothing there,
    and on a busy machine the spinning costs minutes."""
    return threadpool_limits(limits=1, user_api="openmp") if rows < SMALL_DATA_ROWS else nullcontext()


def fit_calibrated(pipeline: Pipeline, X: pd.DataFrame, y: pd.Series) -> CalibratedClassifierCV:
    method = "isotonic" if len(y) >= 5_000 else "sigmoid"
    folds = max(2, min(3, int(y.sum()), int((1 - y).sum())))
    model = CalibratedClassifierCV(pipeline, method=method, cv=folds, ensemble=False)
    with _threads(len(y)):
        return model.fit(X[list(FEATURES)], y)


def reference_values(X: pd.DataFrame) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for feature in NUMERIC_FEATURES:
        median = X[feature].median()
        values[feature] = None if pd.isna(median) else float(median)
    for feature in CATEGORICAL_FEATURES:
        values[feature] = str(X[feature].mode().iloc[0]) if len(X) else "unknown"
    return values


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


def training_cuts(as_of: dt.date, horizon_days: int, n_cuts: int = TRAINING_CUTS,
                  spacing_days: int = CUT_SPACING_DAYS) -> tuple[list[dt.date], dt.date]:
    """(training cuts oldest first, validation cut): no training label window reaches the validation cut."""
    validation = as_of - dt.timedelta(days=horizon_days)
    first = validation - dt.timedelta(days=horizon_days)
    cuts = [first - dt.timedelta(days=spacing_days * k) for k in range(n_cuts)]
    return sorted(cuts), validation


def labelled_cut(connection: Connection, cut: dt.date, horizon_days: int, max_rows: int = MAX_ROWS_PER_CUT) -> pd.DataFrame:
    """Features as of `cut` with the churn label of the following horizon (sampled to ~max_rows)."""
    # Customers signed up by the cut bound the buyers among them, and counting them needs no pass
    # over the orders: the sample holds at most about max_rows buyers.
    signed_up = connection.scalar(
        select(func.count()).select_from(Customer).where(Customer.signed_up_at < end_of(cut))) or 0
    sample_every = max(1, math.ceil(signed_up / max_rows))
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
    """Raised when there are too few labelled customers to train on."""


def train(connection: Connection, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
          random_state: int = 0, progress: Progress | None = None) -> tuple[ChurnModel, dict[str, Any], list[dt.date]]:
    """Fit and compare the candidates on time-based cuts; return the production model and metrics."""
    cuts, validation_cut = training_cuts(as_of, horizon_days)
    say = progress or (lambda _message: None)
    train_frames = []
    for cut in cuts:
        frame = labelled_cut(connection, cut, horizon_days)
        say(f"cut {cut.isoformat()}: {len(frame):,} customers")
        if len(frame):
            train_frames.append(frame)
    valid = labelled_cut(connection, validation_cut, horizon_days)
    training = pd.concat(train_frames) if train_frames else valid.iloc[:0]
    if len(training) < MIN_ROWS_TO_TRAIN or len(valid) < MIN_ROWS_TO_TRAIN // 2:
        raise NotEnoughHistory(
            f"Churn needs at least {MIN_ROWS_TO_TRAIN} labelled customers before {cuts[-1].isoformat()} and "
            f"{MIN_ROWS_TO_TRAIN // 2} at {validation_cut.isoformat()}; found {len(training)} and {len(valid)}. "
            f"More order history (at least {2 * horizon_days} days) is needed."
        )
    if training["churned"].nunique() < 2 or valid["churned"].nunique() < 2:
        raise NotEnoughHistory("Churn needs both churned and retained customers in the training and validation cuts.")

    y_valid = valid["churned"].to_numpy()
    candidates: dict[str, dict[str, Any]] = {}
    fitted: dict[str, CalibratedClassifierCV] = {}
    for name, pipeline in candidate_pipelines(random_state).items():
        started = time.perf_counter()
        fitted[name] = fit_calibrated(pipeline, training, training["churned"])
        p = fitted[name].predict_proba(valid[list(FEATURES)])[:, 1]
        candidates[name] = evaluate(y_valid, p) | {"fit_seconds": round(time.perf_counter() - started, 2)}
        say(f"{name}: validation ROC AUC {candidates[name]['roc_auc']:.3f}")
    best = max(candidates, key=lambda n: (candidates[n]["roc_auc"] or 0, candidates[n]["pr_auc"] or 0))

    sample = valid.sample(n=min(len(valid), 2_000), random_state=random_state)
    with _threads(len(sample)):
        importance = permutation_importance(
            fitted[best], sample[list(FEATURES)], sample["churned"], scoring="roc_auc", n_repeats=2,
            random_state=random_state,
        )
    ranked = sorted(zip(FEATURES, importance.importances_mean, strict=True), key=lambda kv: -kv[1])
    metrics = {
        **{k: v for k, v in candidates[best].items() if k != "fit_seconds"},
        "horizon_days": horizon_days,
        "selected": best,
        "candidates": {n: {k: v for k, v in m.items() if k != "calibration"} for n, m in candidates.items()},
        "baseline_recency_auc": auc_or_none(y_valid, valid["days_since_last_order"].to_numpy()),
        "validation_cut": validation_cut.isoformat(),
        "training_cuts": [c.isoformat() for c in cuts],
        "training_rows": int(len(training)),
        "feature_importance": {f: round(float(v), 5) for f, v in ranked},
    }
    # The model that goes into production is the one the validation metrics describe.
    production = ChurnModel(
        algorithm=best,
        calibrated_=fitted[best],
        reference_=reference_values(training),
        horizon_days=horizon_days,
        driver_features_=tuple(f for f, v in ranked[:MAX_DRIVER_FEATURES] if v > 0) or FEATURES,
    )
    return production, metrics, cuts + [validation_cut]


def train_and_register(engine: Engine, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
                       actor=None, progress: Progress | None = None) -> TrainingResult:
    started = time.perf_counter()
    with engine.connect() as connection:
        model, metrics, cuts = train(connection, as_of, horizon_days, progress=progress)
    with session_scope(engine) as session:
        row = registry.register(
            session, "churn", model.algorithm, model,
            params={"horizon_days": horizon_days, "calibration": model.calibrated_.method,
                    **{k: v for k, v in model.calibrated_.estimator.named_steps["model"].get_params().items()
                       if isinstance(v, int | float | str | bool) or v is None}},
            features=list(FEATURES), training_start=cuts[0], training_end=cuts[-1], metrics=metrics, actor=actor,
        )
        model_id, version = row.id, row.version
    return TrainingResult(model, model_id, version, metrics, time.perf_counter() - started)


# --------------------------------------------------------------------------- scoring


def risk_level(p: np.ndarray) -> np.ndarray:
    levels = np.full(len(p), "low", dtype=object)
    for name, threshold in reversed(RISK_THRESHOLDS):
        levels[p >= threshold] = name
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
    call = high_value & np.isin(levels, ("high", "critical"))
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
    with session_scope(engine) as session:
        found = registry.active(session, "churn")
        if found is None:
            return None
        row, model = found
        session.expunge(row)
        return row, model


def needs_training(row: MLModel | None, as_of: dt.date, horizon_days: int) -> bool:
    """Retrain when there is no model, when it saw data after this cut, or when it is a month stale."""
    if row is None or row.training_end is None or (row.params or {}).get("horizon_days") != horizon_days:
        return True
    latest_usable = as_of - dt.timedelta(days=horizon_days)
    return row.training_end > latest_usable or (latest_usable - row.training_end).days >= RETRAIN_AFTER_DAYS


def score(engine: Engine, as_of: dt.date, model: ChurnModel, model_id: int | None, *,
          update_snapshot: bool = True) -> dict[str, Any]:
    """Score every customer who has ordered and store the predictions.

    With `update_snapshot` (the default, for a run on its own) the probabilities are also copied
    into the `customer_analytics` rows; the batch refresh passes False and builds the snapshot
    afterwards, reading the predictions of the same date.
    """
    with engine.connect() as connection:
        X = build_features(connection, as_of)
    if X.empty:
        return {"scored": 0}
    revenue = X["total_revenue"].fillna(0).to_numpy(dtype=float)
    high_value = revenue >= np.quantile(revenue, 0.9)
    frames = []
    for start in range(0, len(X), SCORE_CHUNK):
        chunk = X.iloc[start:start + SCORE_CHUNK]
        with _threads(len(chunk)):
            p = model.predict_proba(chunk)
            # Drivers explain a risk worth acting on: low-risk customers get none (and no actions).
            effects = pd.DataFrame(0.0, index=chunk.index, columns=list(FEATURES))
            explain = p >= EXPLAIN_FROM
            if explain.any():
                effects.loc[explain] = model.contributions(chunk[explain]).to_numpy()
        levels = risk_level(p)
        drivers, interventions = drivers_and_interventions(
            chunk, effects, high_value[start:start + SCORE_CHUNK], levels)
        frames.append(pd.DataFrame({
            "customer_id": chunk.index.to_numpy(), "model_id": model_id, "as_of": as_of,
            "horizon_days": model.horizon_days, "probability": np.round(p, 5), "risk_level": levels,
            "confidence": np.round(np.abs(2 * p - 1), 4), "drivers": drivers, "interventions": interventions,
        }))
    predictions = pd.concat(frames, ignore_index=True)
    with session_scope(engine) as session:
        connection = session.connection()
        connection.execute(delete(ChurnPrediction).where(ChurnPrediction.as_of == as_of))
        bulk.load(connection, ChurnPrediction.__table__, predictions)
        if update_snapshot:
            _store_probabilities(connection, as_of)
    counts = predictions["risk_level"].value_counts().to_dict()
    return {"scored": len(predictions), "levels": counts}


def _store_probabilities(connection: Connection, as_of: dt.date) -> None:
    """Copy today's probabilities into the analytics rows: one UPDATE ... FROM (a hash join on fresh
    statistics), then clear the probability of anyone this run did not score."""
    p, a = ChurnPrediction, CustomerAnalytics
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {p.__tablename__}")
    connection.execute(update(a).where(a.customer_id == p.customer_id, p.as_of == as_of)
                       .values(churn_probability=p.probability))
    scored = exists().where(p.customer_id == a.customer_id, p.as_of == as_of)
    connection.execute(update(a).where(a.churn_probability.is_not(None), ~scored).values(churn_probability=None))


def evaluate_past_predictions(engine: Engine, as_of: dt.date) -> int:
    """Fill `actual_churned` for predictions whose horizon has passed by the end of `as_of`."""
    updated = 0
    with session_scope(engine) as session:
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
                Order.ordered_at >= end_of(made_on), Order.ordered_at < end_of(made_on + dt.timedelta(days=horizon)),
            )
            result = session.execute(
                update(ChurnPrediction)
                .where(and_(ChurnPrediction.as_of == made_on, ChurnPrediction.horizon_days == horizon,
                            ChurnPrediction.actual_churned.is_(None)))
                .values(actual_churned=~ordered, evaluated_at=end_of(as_of))
            )
            updated += result.rowcount or 0
    return updated


def refresh_churn(engine: Engine, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS,
                  progress: Progress | None = None, update_snapshot: bool = True) -> str:
    """The batch step: (re)train when due, score everyone, and check old predictions against outcomes."""
    evaluated = evaluate_past_predictions(engine, as_of)
    current = _active(engine)
    trained = ""
    if needs_training(current[0] if current else None, as_of, horizon_days):
        try:
            result = train_and_register(engine, as_of, horizon_days, progress=progress)
        except NotEnoughHistory as exc:
            if current is None:
                return f"skipped: {exc}"
            trained = f"kept v{current[0].version} ({exc}); "
        else:
            current = (_active(engine)[0], result.model)
            trained = (f"trained v{result.version} {result.model.algorithm} "
                       f"(validation AUC {result.metrics['roc_auc']:.3f}); ")
    row, model = current
    scored = score(engine, as_of, model, row.id, update_snapshot=update_snapshot)
    levels = ", ".join(f"{k} {v:,}" for k, v in sorted(scored.get("levels", {}).items()))
    return f"{trained}scored {scored['scored']:,} customers ({levels}); {evaluated:,} past predictions checked"
