"""Behavioural clusters: k-means over scaled per-customer features, k chosen by silhouette.

Features come from the `customer_analytics` snapshot (so they are as of the refresh date). Each
cluster is described by its profile against the whole base and given a plain generated name,
such as "High-value active frequent buyers".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClusterMixin
from sklearn.cluster import KMeans
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.metrics import silhouette_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler

FEATURES = (
    "order_count", "total_revenue", "avg_order_value", "days_since_last_order", "sessions_90d",
    "email_open_rate",
)
SKEWED = ("order_count", "total_revenue", "avg_order_value", "days_since_last_order", "sessions_90d")


def preprocessing(features: tuple[str, ...] = FEATURES) -> ColumnTransformer:
    """log1p for the heavy-tailed counts and amounts, median imputation, then standard scaling."""
    skewed = make_pipeline(SimpleImputer(strategy="median"), FunctionTransformer(np.log1p), StandardScaler())
    plain = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    return ColumnTransformer([("skewed", skewed, [f for f in features if f in SKEWED]),
                              ("plain", plain, [f for f in features if f not in SKEWED])])


def unusable_features(X: pd.DataFrame, features) -> dict[str, str]:
    """Features that cannot tell customers apart here, with the reason: missing for everyone, or
    the same value for everyone (a source the shop does not have, such as web sessions)."""
    reasons: dict[str, str] = {}
    for feature in features:
        values = X[feature]
        if values.isna().all():
            reasons[feature] = "missing for every customer"
        elif values.nunique(dropna=True) <= 1:
            reasons[feature] = f"the same value ({values.dropna().iloc[0]:g}) for every customer"
    return reasons


class BehaviourClusterer(ClusterMixin, BaseEstimator):
    """k-means with k picked from `k_range` by the silhouette score on a sample."""

    def __init__(self, k_range: tuple[int, int] = (3, 7), sample_size: int = 4000, random_state: int = 0):
        self.k_range = k_range
        self.sample_size = sample_size
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y=None) -> BehaviourClusterer:
        self.features_not_used_ = unusable_features(X, FEATURES)
        self.features_ = tuple(f for f in FEATURES if f not in self.features_not_used_)
        if not self.features_:
            raise ValueError("No feature varies between customers, so there is nothing to cluster on.")
        self.preprocess_ = preprocessing(self.features_).fit(X)
        Z = self.preprocess_.transform(X)
        rng = np.random.default_rng(self.random_state)
        sample = Z[rng.choice(len(Z), size=min(self.sample_size, len(Z)), replace=False)]
        self.silhouettes_: dict[int, float] = {}
        best = None
        low, high = self.k_range
        for k in range(low, min(high, len(sample) - 1) + 1):
            model = KMeans(n_clusters=k, n_init=4, random_state=self.random_state).fit(sample)
            score = float(silhouette_score(sample, model.labels_))
            self.silhouettes_[k] = score
            if best is None or score > self.silhouettes_[best[0]]:
                best = (k, model)
        if best is None:
            raise ValueError("Too few customers with orders to cluster.")
        self.n_clusters_ = best[0]
        self.kmeans_ = KMeans(n_clusters=self.n_clusters_, n_init=4, random_state=self.random_state).fit(Z)
        self.labels_ = self.kmeans_.labels_
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return self.kmeans_.predict(self.preprocess_.transform(X))

    def predict_confidence(self, X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Cluster labels and a confidence in [0.5, 1]: how much nearer the own centre is than the next."""
        distances = self.kmeans_.transform(self.preprocess_.transform(X))
        order = np.sort(distances, axis=1)
        nearest, second = order[:, 0], order[:, 1]
        confidence = np.where(nearest + second > 0, second / (nearest + second), 1.0)
        return distances.argmin(axis=1), confidence


@dataclass(frozen=True)
class ClusterProfile:
    label: int
    name: str
    size: int
    means: dict[str, float]


def describe(X: pd.DataFrame, labels: np.ndarray) -> list[ClusterProfile]:
    """Profiles with plain names from how each cluster compares with the whole base."""
    frame = X.assign(_label=labels)
    overall = X[list(FEATURES)].median(numeric_only=True)
    means = frame.groupby("_label")[list(FEATURES)].median()
    value_rank = means["total_revenue"].rank(pct=True)
    profiles, used = [], set()
    for label, row in means.iterrows():
        value = "High-value" if value_rank[label] > 0.66 else "Mid-value" if value_rank[label] > 0.33 else "Low-value"
        days = row["days_since_last_order"]
        recency = "active" if days <= 60 else "lapsing" if days <= 180 else "lapsed"
        frequency = "frequent" if row["order_count"] >= max(overall["order_count"], 1) * 1.5 else "occasional"
        name = f"{value} {recency} {frequency} buyers"
        if name in used:
            name = f"{name} ({int(label) + 1})"
        used.add(name)
        profiles.append(ClusterProfile(int(label), name, int((labels == label).sum()),
                                       {k: float(v) for k, v in row.items()}))
    return profiles

