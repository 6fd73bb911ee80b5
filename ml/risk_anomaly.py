"""The anomaly model of the risk scores: an IsolationForest over the customers' risk signals.

An estimator without I/O (scikit-learn conventions: `fit` returns self, learned attributes end in
`_`). Unsupervised: it needs no labels, so it works on a shop that has never reviewed a case.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer

MIN_CUSTOMERS = 50


def _signed_log(values: np.ndarray) -> np.ndarray:
    return np.sign(values) * np.log1p(np.abs(values))


class RiskAnomalyModel:
    """Fit on a frame of signals (one column each); `rank` says how unusual each row is, 0 to 1."""

    def __init__(self, n_estimators: int = 100, max_samples: int = 256, random_state: int = 0):
        self.n_estimators = n_estimators
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, signals: pd.DataFrame) -> RiskAnomalyModel:
        usable = [c for c in signals.columns if signals[c].notna().any() and signals[c].nunique(dropna=True) > 1]
        if len(usable) < 2 or len(signals) < MIN_CUSTOMERS:
            raise ValueError(f"the anomaly model needs two varying signals and {MIN_CUSTOMERS} customers; "
                             f"this shop has {len(usable)} and {len(signals)}")
        self.features_ = usable
        self.pipeline_: Pipeline = make_pipeline(
            SimpleImputer(strategy="median"), FunctionTransformer(_signed_log),
            IsolationForest(n_estimators=self.n_estimators, max_samples=min(self.max_samples, len(signals)),
                            random_state=self.random_state))
        self.pipeline_.fit(signals[usable].to_numpy(dtype=float))
        return self

    def score_samples(self, signals: pd.DataFrame) -> np.ndarray:
        """Higher is more unusual (the negated IsolationForest score)."""
        return -self.pipeline_.score_samples(signals[self.features_].to_numpy(dtype=float))

    def rank(self, signals: pd.DataFrame) -> pd.Series:
        """Each row's share of rows less unusual than it (0 = most ordinary, 1 = most unusual)."""
        scores = self.score_samples(signals)
        order = pd.Series(scores, index=signals.index).rank(method="average", pct=True)
        return order.astype(float)
