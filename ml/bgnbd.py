"""BG/NBD as a churn model and as features for one: estimators with no I/O.

The churn feature frame (ml.features) carries what BG/NBD needs: purchase days (frequency is
purchase days minus one), days since the first and the last order. From them, in weeks:
recency = age at the last purchase, T = age now.

For a customer with history (x, t_x, T) the chance of no purchase in the next t is

    P(none in t) = (1 - P(alive)) + P(alive) * ((alpha + T) / (alpha + T + t)) ** (r + x)

since a customer alive at T buys at a rate whose posterior is Gamma(r + x, alpha + T), and in
BG/NBD a customer can drop out only right after a purchase: with no purchase they stay alive.
This needs no labels, so it gives a churn probability on any history length; the supervised
models use it, the expected purchases and P(alive) as features.

BG/NBD needs no labels, so it is fitted afresh on the customers of each date it describes: each
training cut's population for that cut's features, today's customers for today's scores. A fit
reads only the history before its date, and it is the current parameters that describe today.
"""

from __future__ import annotations

import contextlib
import io
import warnings

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter
from lifetimes.utils import ConvergenceError

DAYS_PER_WEEK = 7.0
PENALIZERS = (0.0, 0.001, 0.01, 0.1)
MIN_CUSTOMERS = 30
MIN_REPEAT_CUSTOMERS = 10
OUTPUTS = ("bg_expected_purchases", "bg_p_alive", "bg_p_no_purchase")
NEEDED = ("purchase_days", "days_since_first_order", "days_since_last_order")


class BGNBDNotFitted(ValueError):
    """Too few customers or repeat buyers for BG/NBD, or the fit did not converge."""


def frt(X: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """frequency, recency and T (weeks) from the churn feature frame, in whole calendar days as the
    lifetime value summary (ml.clv.summarize) counts them: the features measure time to the end of
    the as-of day, so an order on day d is ceil(days) - 1 calendar days before it."""
    days = X["purchase_days"].to_numpy(dtype=float)
    first = np.ceil(np.nan_to_num(X["days_since_first_order"].to_numpy(dtype=float), nan=1.0)) - 1
    last = np.ceil(np.nan_to_num(X["days_since_last_order"].to_numpy(dtype=float), nan=1.0)) - 1
    frequency = np.clip(np.nan_to_num(days, nan=1.0) - 1, 0, None)
    T = np.clip(first, 0, None) / DAYS_PER_WEEK
    recency = np.clip(first - last, 0, None) / DAYS_PER_WEEK
    return frequency, np.minimum(recency, T), T


def fit_params(X: pd.DataFrame, sample_size: int, random_state: int) -> dict[str, float]:
    """Maximum-likelihood r, alpha, a, b on (a sample of) the customers of X; BGNBDNotFitted when it cannot."""
    if len(X) < MIN_CUSTOMERS:
        raise BGNBDNotFitted(f"BG/NBD needs at least {MIN_CUSTOMERS} customers with a purchase; there are {len(X)}.")
    if len(X) > sample_size:
        rng = np.random.default_rng(random_state)
        X = X.iloc[np.sort(rng.choice(len(X), size=sample_size, replace=False))]
    f, r, t = frt(X)
    if int((f > 0).sum()) < MIN_REPEAT_CUSTOMERS:
        raise BGNBDNotFitted(f"BG/NBD needs at least {MIN_REPEAT_CUSTOMERS} customers with a repeat purchase; "
                             f"there are {int((f > 0).sum())}.")
    for penalizer in PENALIZERS:
        fitter = BetaGeoFitter(penalizer_coef=penalizer)
        try:
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore", RuntimeWarning)
                fitter.fit(f, r, t)
        except ConvergenceError:
            continue
        params = {k: float(v) for k, v in fitter.params_.items()}
        if all(np.isfinite(v) for v in params.values()):
            return params
    raise BGNBDNotFitted("BG/NBD did not converge: the purchase history is too short or too uniform.")


def _fitter(params: dict[str, float]) -> BetaGeoFitter:
    fitter = BetaGeoFitter()
    fitter.params_ = pd.Series({k: params[k] for k in ("r", "alpha", "a", "b")})
    return fitter


def predict(params: dict[str, float], X: pd.DataFrame, horizon_days: float) -> pd.DataFrame:
    """Expected purchases, P(alive) and P(no purchase) over the next `horizon_days`, per row of X."""
    f, r, t = frt(X)
    weeks = horizon_days / DAYS_PER_WEEK
    fitter = _fitter(params)
    with np.errstate(all="ignore"):
        expected = np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(weeks, f, r, t), dtype=float)
        alive = np.clip(np.asarray(fitter.conditional_probability_alive(f, r, t), dtype=float), 0.0, 1.0)
        stay = ((params["alpha"] + t) / (params["alpha"] + t + weeks)) ** (params["r"] + f)
    p_none = np.clip((1 - alive) + alive * stay, 0.0, 1.0)
    return pd.DataFrame({
        "bg_expected_purchases": np.nan_to_num(expected, nan=0.0, posinf=0.0),
        "bg_p_alive": np.nan_to_num(alive, nan=0.0),
        "bg_p_no_purchase": np.nan_to_num(p_none, nan=1.0),
    }, index=X.index)


def churn_probability(params: dict[str, float], X: pd.DataFrame, horizon_days: float) -> np.ndarray:
    """P(no purchase within `horizon_days`) that ranks customers exactly as expected purchases do.

    BG/NBD's own P(no purchase) ranks a little worse than its expected purchases (it counts every
    one-off buyer as surely alive), while expected purchases are no probability. So the logit of
    P(no purchase) is regressed on the log of expected purchases over these customers (label-free,
    decreasing), and that line gives each customer's probability: the ranking of expected
    purchases with the level of P(no purchase).
    """
    outputs = predict(params, X, horizon_days)
    z = np.log(outputs["bg_expected_purchases"].to_numpy() + 1e-3)
    p = np.clip(outputs["bg_p_no_purchase"].to_numpy(), 1e-4, 1 - 1e-4)
    target = np.log(p / (1 - p))
    if len(z) < 2 or np.ptp(z) == 0:
        return p
    slope, intercept = np.polyfit(z, target, 1)
    if slope >= 0:  # never expected: more expected purchases always means less chance of none
        return p
    return 1 / (1 + np.exp(-(intercept + slope * z)))


def with_outputs(X: pd.DataFrame, params: dict[str, float] | None, horizon_days: float) -> pd.DataFrame:
    """X with the three BG/NBD outputs over `horizon_days` appended (NaN when there are no params)."""
    if params is None:
        return X.assign(**{name: np.nan for name in OUTPUTS})
    return pd.concat([X.drop(columns=[c for c in OUTPUTS if c in X.columns]), predict(params, X, horizon_days)],
                     axis=1)
