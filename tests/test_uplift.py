"""Uplift estimators and the Qini curve on synthetic data with a known effect (issue 17)."""

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from ml.uplift_estimator import TwoModelUplift, XLearnerUplift, observed_uplift_in_top, qini_area, qini_curve


def synthetic(n=6000, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 4))
    treated = rng.random(n) < 0.7  # a 30% holdout, as campaigns use
    tau = np.where(X[:, 0] > 0.5, 0.3, 0.0)  # only one kind of customer is moved by the offer
    base = 1 / (1 + np.exp(-(-2.0 + 0.8 * X[:, 1])))  # who buys anyway depends on something else
    y = (rng.random(n) < np.clip(base + treated * tau, 0, 1)).astype(int)
    return X, treated.astype(int), y, tau


@pytest.mark.parametrize("learner", [TwoModelUplift, XLearnerUplift])
def test_learners_find_who_the_offer_moves(learner):
    X, t, y, tau = synthetic()
    with threadpool_limits(1):  # as ml.uplift fits them: OpenMP threads on a busy machine cost more than they give
        model = learner(random_state=0)
        assert model.fit(X[:4000], t[:4000], y[:4000]) is model  # fit returns self
        predicted = model.predict_uplift(X[4000:])
    assert np.corrcoef(predicted, tau[4000:])[0, 1] > 0.6
    curve = qini_curve(predicted, t[4000:], y[4000:])
    # About 31% are moved by 0.3: the perfect ranking's area is about 0.031.
    assert qini_area(curve) > 0.02
    # Ranking by the outcome's own driver (who buys anyway) is far from it.
    assert qini_area(qini_curve(X[4000:, 1], t[4000:], y[4000:])) < qini_area(curve) / 2
    top = observed_uplift_in_top(predicted, t[4000:], y[4000:], 0.3)
    assert top is not None and top > 0.2


def test_qini_curve_shape_and_perfect_and_reversed_rankings():
    X, t, y, tau = synthetic(seed=1)
    curve = qini_curve(tau, t, y, points=20)
    assert curve["share"][0] == 0 and curve["share"][-1] == 1
    assert curve["qini"][-1] == pytest.approx(curve["random"][-1])
    overall = y[t == 1].sum() / t.sum() - y[t == 0].sum() / (1 - t).sum()
    assert curve["qini"][-1] == pytest.approx(overall, abs=1e-9)  # everyone targeted: the average effect
    assert qini_area(curve) > 0
    assert qini_area(qini_curve(-tau, t, y)) < 0


def test_learners_refuse_a_group_without_conversions():
    X, t, _, _ = synthetic(n=300)
    with pytest.raises(ValueError, match="each group needs"):
        TwoModelUplift().fit(X, t, np.zeros(300, dtype=int))
