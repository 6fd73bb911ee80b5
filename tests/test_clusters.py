"""Behavioural clusters: k chosen by silhouette, confidences, plain names."""

import numpy as np
import pandas as pd

from ml.clusters import FEATURES, BehaviourClusterer, describe


def three_groups(n_per_group: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    groups = [  # order_count, total_revenue, aov, days_since_last_order, sessions_90d, open rate
        (20, 4000, 200, 10, 15, 0.6),
        (2, 60, 30, 400, 0, 0.05),
        (6, 500, 80, 90, 4, 0.3),
    ]
    frames = []
    for centre in groups:
        values = {f: np.abs(rng.normal(c, c * 0.1 + 0.01, n_per_group)) for f, c in zip(FEATURES, centre, strict=True)}
        frames.append(pd.DataFrame(values))
    return pd.concat(frames, ignore_index=True)


def test_finds_the_three_groups_and_names_them():
    X = three_groups()
    model = BehaviourClusterer(k_range=(2, 6), random_state=1).fit(X)
    assert model.n_clusters_ == 3
    assert max(model.silhouettes_, key=model.silhouettes_.get) == 3
    labels, confidence = model.predict_confidence(X)
    assert ((confidence >= 0.5) & (confidence <= 1)).all()
    # Each true group lands in one cluster.
    for start in (0, 300, 600):
        assert len(set(labels[start:start + 300])) == 1
    profiles = describe(X, labels)
    names = {p.name for p in profiles}
    assert len(names) == 3
    assert any(n.startswith("High-value active frequent") for n in names)
    assert any("lapsed" in n for n in names)
    assert sum(p.size for p in profiles) == len(X)


def test_missing_values_are_imputed():
    X = three_groups(50)
    X.loc[::7, "email_open_rate"] = np.nan
    model = BehaviourClusterer(k_range=(2, 4)).fit(X)
    assert len(model.predict(X)) == len(X)
