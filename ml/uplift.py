"""Uplift targeting: learn from finished campaigns who is worth contacting, and score new audiences.

Training data are the targets of completed campaigns whose attribution windows have all closed:
treatment or control (randomised), converted in the window or not, and the point-in-time churn
features (`ml.features`) as of the day before their send. A random 30% of them is held out: the
Qini curve and area on those customers say how much better than chance the model ranks who the
offer moves, next to ranking by churn risk (what a campaign without uplift would target).
"""

from __future__ import annotations

import datetime as dt
import io
from dataclasses import dataclass
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from crm_core import campaigns, platform
from db.models import CampaignUpliftModel, ChurnPrediction, utcnow
from ml import features
from ml.uplift_estimator import TwoModelUplift, XLearnerUplift, observed_uplift_in_top, qini_area, qini_curve

ALGORITHMS = {"x_learner": "X-learner (gradient boosting)", "two_model": "Two-model (gradient boosting)"}
DEFAULT_ALGORITHM = "x_learner"
HOLDOUT_SHARE = 0.3
MIN_CUSTOMERS = 200
MIN_CONVERSIONS_PER_GROUP = 10
MAX_FEATURE_DATES = 24
TOP_SHARE = 0.3


def _feature_day(assigned: dt.datetime, weekly: bool) -> dt.date:
    day = assigned.date() - dt.timedelta(days=1)  # strictly before the send: the message itself is no feature
    return day - dt.timedelta(days=day.weekday()) if weekly else day


def training_frame(session: Session, at: dt.datetime) -> tuple[pd.DataFrame, list[int]]:
    """Targets of measured campaigns with their outcome and features as of the day before their send."""
    ids = campaigns.measured_campaigns(session, at)
    rows = [row for cid in ids for row in campaigns.target_outcomes(session, cid, at)]
    if not rows:
        return pd.DataFrame(), ids
    frame = pd.DataFrame(rows)
    weekly = frame["assigned_at"].dt.date.nunique() > MAX_FEATURE_DATES
    frame["feature_day"] = [_feature_day(a, weekly) for a in frame["assigned_at"]]
    parts = []
    for day, group in frame.groupby("feature_day"):
        found = features.build_features(session.connection(), day)[list(features.NUMERIC_FEATURES)]
        parts.append(group.join(found, on="customer_id"))
    return pd.concat(parts).sort_values(["campaign_id", "customer_id"]).reset_index(drop=True), ids


def _churn_scores(session: Session, frame: pd.DataFrame) -> tuple[np.ndarray, str]:
    """Churn risk at each customer's send (the stored prediction of the latest date before it); where
    too few were stored, days since the last order, the churn model's strongest driver."""
    scores = pd.Series(np.nan, index=frame.index)
    for day, group in frame.groupby("feature_day"):
        latest = session.scalar(select(func.max(ChurnPrediction.as_of)).where(ChurnPrediction.as_of <= day))
        if latest is None:
            continue
        stored = dict(session.execute(select(ChurnPrediction.customer_id, ChurnPrediction.probability).where(
            ChurnPrediction.as_of == latest, ChurnPrediction.customer_id.in_(group["customer_id"].tolist()))).all())
        scores.loc[group.index] = group["customer_id"].map(stored).to_numpy()
    if scores.notna().mean() >= 0.5:
        return scores.fillna(scores.median()).to_numpy(), "churn probability stored before the send"
    recency = frame["days_since_last_order"].to_numpy(dtype=float)
    return np.nan_to_num(recency, nan=np.nanmax(recency) if np.isfinite(recency).any() else 0.0), \
        "days since the last order (no churn scores were stored before these sends)"


def train_uplift(session: Session, actor: platform.Actor, at: dt.datetime | None = None,
                 algorithm: str = DEFAULT_ALGORITHM, random_state: int = 0) -> CampaignUpliftModel:
    """Train, measure on held-out customers, store and activate an uplift model."""
    platform.require(actor, "campaigns.models")
    if algorithm not in ALGORITHMS:
        raise platform.ValidationError(f"The algorithm must be one of {', '.join(ALGORITHMS)}.")
    at = at or utcnow()
    frame, ids = training_frame(session, at)
    if frame.empty:
        raise platform.ValidationError(
            "No finished campaign to learn from: an uplift model needs completed campaigns whose attribution "
            "windows have closed, with their treatment and control customers.")
    usable = [f for f in features.NUMERIC_FEATURES
              if frame[f].notna().any() and frame[f].nunique(dropna=True) > 1]
    if not usable:
        raise platform.ValidationError("The campaigns' customers have no features that vary; nothing to learn from.")
    rng = np.random.default_rng(random_state)
    test = rng.random(len(frame)) < HOLDOUT_SHARE
    train = frame[~test]
    conversions = train.groupby("treated")["converted"].agg(["sum", "count"])
    if len(train) < MIN_CUSTOMERS or len(conversions) < 2 or (conversions["sum"] < MIN_CONVERSIONS_PER_GROUP).any():
        raise platform.ValidationError(
            f"Too little to learn from: {len(train):,} training customers in {len(ids)} finished campaigns, "
            f"needs {MIN_CUSTOMERS} with at least {MIN_CONVERSIONS_PER_GROUP} conversions in each group.")
    model = (XLearnerUplift if algorithm == "x_learner" else TwoModelUplift)(random_state=random_state)
    held = frame[test].reset_index(drop=True)
    # One thread: campaign audiences are small, and OpenMP threads on a busy machine cost far more than they give.
    with threadpool_limits(1):
        model.fit(train[usable].to_numpy(float), train["treated"], train["converted"])
        uplift = model.predict_uplift(held[usable].to_numpy(float))
    churn, churn_basis = _churn_scores(session, held)
    curve = qini_curve(uplift, held["treated"], held["converted"])
    churn_curve = qini_curve(churn, held["treated"], held["converted"])
    metrics = {
        "qini_area": qini_area(curve), "qini_area_churn": qini_area(churn_curve), "churn_basis": churn_basis,
        "qini_curve": curve, "qini_curve_churn": churn_curve,
        "top_share": TOP_SHARE,
        "uplift_top_model": observed_uplift_in_top(uplift, held["treated"], held["converted"], TOP_SHARE),
        "uplift_top_churn": observed_uplift_in_top(churn, held["treated"], held["converted"], TOP_SHARE),
        "uplift_all": observed_uplift_in_top(uplift, held["treated"], held["converted"], 1.0),
        "treated_share": float(frame["treated"].mean()), "conversion_rate": float(frame["converted"].mean()),
        "unused_features": sorted(set(features.NUMERIC_FEATURES) - set(usable)),
    }
    buffer = io.BytesIO()
    joblib.dump({"model": model, "features": usable}, buffer)
    session.execute(update(CampaignUpliftModel).values(is_active=False))
    row = CampaignUpliftModel(as_of=at.date(), algorithm=algorithm, campaign_ids=ids, features=usable,
                              train_customers=len(train), test_customers=len(held), qini_area=metrics["qini_area"],
                              metrics=metrics, artifact=buffer.getvalue(), is_active=True, created_by_id=actor.id)
    session.add(row)
    session.flush()
    platform.record_audit(session, actor, "uplift.train", "campaign_uplift_model", row.id, None,
                          {"algorithm": algorithm, "campaigns": ids, "train_customers": len(train),
                           "qini_area": metrics["qini_area"]})
    return row


@dataclass
class UpliftScorer:
    """Scores customers with a stored uplift model (meets crm_core.campaigns.UpliftScorer)."""

    model_id: int
    model: Any
    features: list[str]

    def __call__(self, session: Session, customer_ids: list[int], at: dt.datetime) -> dict[int, float]:
        if not customer_ids:
            return {}
        found = features.build_features(session.connection(), _feature_day(at, weekly=False))
        X = found.reindex(customer_ids)[self.features].to_numpy(float)
        with threadpool_limits(1):
            scores = self.model.predict_uplift(X)
        return dict(zip(customer_ids, map(float, scores), strict=True))


def _scorer(row: CampaignUpliftModel | None) -> UpliftScorer | None:
    if row is None or row.artifact is None:
        return None
    stored = joblib.load(io.BytesIO(row.artifact))
    return UpliftScorer(row.id, stored["model"], list(stored["features"]))


def active_scorer(session: Session) -> UpliftScorer | None:
    """The active uplift model as a scorer, or None when none is trained."""
    return _scorer(session.scalar(select(CampaignUpliftModel).where(CampaignUpliftModel.is_active.is_(True))))


def scorer_for_model(session: Session, model_id: int | None) -> UpliftScorer | None:
    """The scorer of one stored model (the one a campaign was launched with), else the active one:
    a running campaign keeps targeting as it began when a newer model is trained."""
    row = session.get(CampaignUpliftModel, model_id) if model_id is not None else None
    return _scorer(row) if row is not None else active_scorer(session)
