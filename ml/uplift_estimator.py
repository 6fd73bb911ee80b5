"""Uplift estimators and the Qini curve (no I/O).

`TwoModelUplift` (the "T-learner") fits one classifier on treated and one on control customers;
a customer's uplift is P(convert | offer) − P(convert | no offer). `XLearnerUplift` (Künzel et al.
2019) goes one step further: it imputes each customer's individual effect with the other group's
model, regresses those effects, and blends the two effect models by the propensity (the holdout
share), which helps when one group is much smaller than the other, as a holdout is.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor


def default_classifier(random_state: int = 0) -> HistGradientBoostingClassifier:
    # Shallow, slow-learning trees with large leaves: conversion differences are small and noisy.
    return HistGradientBoostingClassifier(max_depth=3, learning_rate=0.05, max_iter=150, min_samples_leaf=40,
                                          l2_regularization=1.0, random_state=random_state)


def default_regressor(random_state: int = 0) -> HistGradientBoostingRegressor:
    return HistGradientBoostingRegressor(max_depth=3, learning_rate=0.05, max_iter=150, min_samples_leaf=40,
                                         l2_regularization=1.0, random_state=random_state)


def _check(X: Any, treatment: Any, y: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    y = np.asarray(y).astype(int)
    if len(X) != len(treatment) or len(X) != len(y):
        raise ValueError("X, treatment and y must have the same length")
    for group in (0, 1):
        if len(np.unique(y[treatment == group])) < 2:
            raise ValueError("each group needs customers who converted and customers who did not")
    return X, treatment, y


class TwoModelUplift(BaseEstimator):
    """Uplift as the difference of two conversion models, one per group."""

    def __init__(self, classifier: Any = None, random_state: int = 0):
        self.classifier = classifier
        self.random_state = random_state

    def fit(self, X: Any, treatment: Any, y: Any) -> TwoModelUplift:
        X, treatment, y = _check(X, treatment, y)
        base = self.classifier if self.classifier is not None else default_classifier(self.random_state)
        self.treated_model_ = clone(base).fit(X[treatment == 1], y[treatment == 1])
        self.control_model_ = clone(base).fit(X[treatment == 0], y[treatment == 0])
        self.n_features_in_ = X.shape[1]
        return self

    def predict_uplift(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        return self.treated_model_.predict_proba(X)[:, 1] - self.control_model_.predict_proba(X)[:, 1]


class XLearnerUplift(BaseEstimator):
    """The X-learner: outcome models per group, imputed effects, effect models blended by propensity."""

    def __init__(self, classifier: Any = None, regressor: Any = None, random_state: int = 0):
        self.classifier = classifier
        self.regressor = regressor
        self.random_state = random_state

    def fit(self, X: Any, treatment: Any, y: Any) -> XLearnerUplift:
        X, treatment, y = _check(X, treatment, y)
        classifier = self.classifier if self.classifier is not None else default_classifier(self.random_state)
        regressor = self.regressor if self.regressor is not None else default_regressor(self.random_state)
        treated, control = treatment == 1, treatment == 0
        mu1 = clone(classifier).fit(X[treated], y[treated])
        mu0 = clone(classifier).fit(X[control], y[control])
        effect_treated = y[treated] - mu0.predict_proba(X[treated])[:, 1]
        effect_control = mu1.predict_proba(X[control])[:, 1] - y[control]
        self.treated_effect_model_ = clone(regressor).fit(X[treated], effect_treated)
        self.control_effect_model_ = clone(regressor).fit(X[control], effect_control)
        self.propensity_ = float(treated.mean())
        self.n_features_in_ = X.shape[1]
        return self

    def predict_uplift(self, X: Any) -> np.ndarray:
        X = np.asarray(X, dtype=float)
        g = self.propensity_
        # Weight the effect model learned on the smaller group's imputations less: g·τ0 + (1−g)·τ1.
        return g * self.control_effect_model_.predict(X) + (1 - g) * self.treated_effect_model_.predict(X)


def qini_curve(score: Any, treatment: Any, y: Any, points: int = 50) -> dict[str, list[float]]:
    """The Qini curve: targeting the top share x by `score`, the incremental conversions
    Y_T(x) − Y_C(x)·N_T(x)/N_C(x), as a share of all treated customers; with the random line."""
    score = np.asarray(score, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    y = np.asarray(y).astype(int)
    order = np.argsort(-score, kind="stable")
    t, outcome = treatment[order], y[order]
    n = len(score)
    n_treated = max(int(t.sum()), 1)
    cum_t = np.cumsum(t)
    cum_c = np.cumsum(1 - t)
    cum_yt = np.cumsum(outcome * t)
    cum_yc = np.cumsum(outcome * (1 - t))
    shares, gains = [0.0], [0.0]
    for k in np.unique(np.linspace(1, n, min(points, n)).round().astype(int)):
        i = k - 1
        control_scaled = cum_yc[i] * cum_t[i] / cum_c[i] if cum_c[i] else 0.0
        shares.append(k / n)
        gains.append(float((cum_yt[i] - control_scaled) / n_treated))
    total = gains[-1]
    return {"share": shares, "qini": gains, "random": [s * total for s in shares]}


def qini_area(curve: dict[str, list[float]]) -> float:
    """Area between the Qini curve and the random line (trapezoids): above 0, the ranking beats chance."""
    x = np.asarray(curve["share"])
    gap = np.asarray(curve["qini"]) - np.asarray(curve["random"])
    return float(np.sum((gap[1:] + gap[:-1]) / 2 * np.diff(x)))


def observed_uplift_in_top(score: Any, treatment: Any, y: Any, share: float) -> float | None:
    """Conversion rate treated − control among the top `share` by score (None without both groups)."""
    score = np.asarray(score, dtype=float)
    treatment = np.asarray(treatment).astype(int)
    y = np.asarray(y).astype(int)
    keep = np.argsort(-score, kind="stable")[: max(1, int(round(len(score) * share)))]
    t, outcome = treatment[keep], y[keep]
    if t.sum() == 0 or (1 - t).sum() == 0:
        return None
    return float(outcome[t == 1].mean() - outcome[t == 0].mean())
