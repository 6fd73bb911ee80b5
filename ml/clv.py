"""Customer lifetime value: BG/NBD (and Pareto/NBD) for purchases, MBG/NBD for P(alive), Gamma-Gamma for spend.

The models are the ones of Fader, Hardie and Lee ("Counting your customers the easy way", 2005;
"RFM and CLV", 2005), fitted by maximum likelihood with `lifetimes` on a per-customer summary:

- frequency      repeat purchases: days with a revenue order, minus one (the first purchase day
                 starts the customer's clock and is not a repeat);
- recency        age of the customer at the last purchase day, in time units (weeks);
- T              age of the customer at `as_of`, in time units;
- monetary_value mean spend per repeat purchase day (the first day excluded), for Gamma-Gamma.

The summary is aggregated in SQL over revenue orders strictly before the end of `as_of`, so a
refresh of a past date sees only what was known then. The model is fitted on a seeded random
sample (at most `sample_size` customers) and scores every customer vectorised; the scores go to
`customer_lifetime_values`, which the analytics snapshot reads when the refresh next builds it.

P(alive) comes from the modified BG/NBD (Batislam, Denizel & Filiztekin 2007), fitted on the same
sample: BG/NBD lets a customer drop out only after a repeat purchase, so it calls every one-time
buyer certainly alive (on CDNOW that ranked who buys again worse than chance, AUC 0.32-0.34);
MBG/NBD lets them drop out after the first purchase too (AUC 0.68-0.74 on the same cuts).

12-month CLV sums, month by month, the expected purchases in the month times the expected spend
per purchase, discounted at the monthly equivalent of an annual rate. Historic CLV is the
revenue a customer has brought so far.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import logging
import time
import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
from lifetimes.utils import ConvergenceError
from sklearn.base import BaseEstimator
from sqlalchemy import (
    Engine,
    delete,
    func,
    literal_column,
    select,
)
from sqlalchemy.orm import aliased

from crm_core import customers, platform, segmentation
from db import bulk
from db.models import REVENUE_ORDER_STATUSES, Customer, CustomerLifetimeValue, Order

from . import registry

log = logging.getLogger(__name__)

DAYS_PER_MONTH = 365.25 / 12
SUMMARY_COLUMNS = ("frequency", "recency", "T", "monetary_value", "total_revenue")
MIN_CUSTOMERS = 30
MIN_REPEAT_CUSTOMERS = 10
PENALIZERS = (0.0, 0.001, 0.01, 0.1)
TIME_UNITS = {1: "day", 7: "week", 14: "fortnight"}
# The refresh fits on a seeded sample: at 25,000 customers the estimates' standard errors are already
# a few percent of the values, and the fit takes about a second and a half.
REFRESH_SAMPLE = 25_000
MAX_MONEY = 1e11  # Numeric(14, 2) holds up to 10^12; anything near it is a fitting artefact

Progress = Callable[[int, int, str, str], None]


class NotEnoughData(platform.DomainError):
    """Too few customers (or repeat customers) to fit the lifetime value models."""


def time_unit_name(time_unit_days: int) -> str:
    return TIME_UNITS.get(time_unit_days, f"{time_unit_days} days")


# --------------------------------------------------------------------------- summary


REVENUE = Order.status.in_(REVENUE_ORDER_STATUSES)


def _summary_query(as_of: dt.date):
    """One row per buying customer: purchase days, first and last order time, revenue, first-day revenue.

    One pass over the orders aggregates per customer; the first day's revenue is then an index
    range lookup per customer on (customer_id, ordered_at). The pass groups by `customer_id + 0`
    so SQLite does not walk the (customer_id, ordered_at) index to avoid a sort: that would fetch
    every order row at random, several times slower than reading them in time order.
    """
    customer = Order.customer_id + literal_column("0")
    orders = (
        select(
            customer.label("customer_id"),
            func.count(func.distinct(platform.calendar_day(Order.ordered_at))).label("purchase_days"),
            func.min(Order.ordered_at).label("first_at"),
            func.max(Order.ordered_at).label("last_at"),
            func.sum(Order.total).label("total_revenue"),
        )
        .where(REVENUE, Order.ordered_at < platform.end_of(as_of))
        .group_by(customer)
        .cte("per_customer")
    )
    first_day = aliased(Order, name="first_day_orders")
    first_amount = (
        select(func.sum(first_day.total))
        .where(first_day.customer_id == orders.c.customer_id, first_day.status.in_(REVENUE_ORDER_STATUSES),
               first_day.ordered_at >= platform.day_start(orders.c.first_at),
               first_day.ordered_at < platform.next_day_start(orders.c.first_at))
        .scalar_subquery()
    )
    return (
        select(orders.c.customer_id, orders.c.purchase_days, orders.c.first_at, orders.c.last_at,
               orders.c.total_revenue, first_amount.label("first_amount"))
        .join(Customer, Customer.id == orders.c.customer_id)
        .where(customers.COUNTED_CUSTOMER)
    )


def summarize(connection, as_of: dt.date, *, time_unit_days: int = 7) -> pd.DataFrame:
    """Per-customer frequency, recency, T, monetary value and total revenue as of the end of `as_of`.

    `connection` is a Connection or a Session. Only customers with a revenue order before the end
    of `as_of` appear; merged and erased customers are left out.
    """
    if not isinstance(as_of, dt.date) or isinstance(as_of, dt.datetime):
        raise platform.ValidationError(f"as_of must be a date, not {as_of!r}.")
    if isinstance(time_unit_days, bool) or not isinstance(time_unit_days, int) or time_unit_days < 1:
        raise platform.ValidationError(f"time_unit_days must be a whole number of days of at least 1, not {time_unit_days!r}.")
    rows = connection.execute(_summary_query(as_of)).all()
    columns = ["customer_id", "purchase_days", "first_at", "last_at", "total_revenue", "first_amount"]
    raw = pd.DataFrame(rows, columns=columns)
    if raw.empty:
        return pd.DataFrame(columns=list(SUMMARY_COLUMNS), index=pd.Index([], name="customer_id"), dtype=float)
    first = pd.to_datetime(raw["first_at"]).dt.normalize()
    last = pd.to_datetime(raw["last_at"]).dt.normalize()
    end = pd.Timestamp(as_of)
    frequency = raw["purchase_days"].astype(np.int64) - 1
    total = raw["total_revenue"].astype(float)
    repeat_spend = total - raw["first_amount"].astype(float)
    summary = pd.DataFrame(
        {
            "frequency": frequency.to_numpy(),
            "recency": ((last - first).dt.days / time_unit_days).to_numpy(),
            "T": ((end - first).dt.days / time_unit_days).to_numpy(),
            "monetary_value": np.where(frequency > 0, repeat_spend / frequency.where(frequency > 0, 1), 0.0),
            "total_revenue": total.to_numpy(),
        },
        index=pd.Index(raw["customer_id"].astype(np.int64), name="customer_id"),
    )
    return summary.sort_index()


def _check_summary(summary: Any) -> pd.DataFrame:
    if not isinstance(summary, pd.DataFrame):
        raise platform.ValidationError("The CLV summary must be a DataFrame (see ml.clv.summarize).")
    missing = [c for c in ("frequency", "recency", "T") if c not in summary.columns]
    if missing:
        raise platform.ValidationError(f"The CLV summary lacks the column(s) {', '.join(missing)}.")
    values = summary[["frequency", "recency", "T"]]
    if not all(pd.api.types.is_numeric_dtype(values[c]) for c in values.columns):
        raise platform.ValidationError("frequency, recency and T must be numbers.")
    if values.isna().to_numpy().any():
        raise platform.ValidationError("frequency, recency and T must not be missing.")
    if (values < 0).to_numpy().any():
        raise platform.ValidationError("frequency, recency and T must not be negative.")
    if (summary["recency"] > summary["T"] + 1e-9).any():
        raise platform.ValidationError("recency (age at the last purchase) cannot exceed T (age at the end of the period).")
    return summary


# --------------------------------------------------------------------------- model


def _fit_with_retry(make: Callable[[float], Any], fit: Callable[[Any], Any], what: str) -> tuple[Any, float]:
    """Fit; on a convergence failure retry with a growing L2 penalizer."""
    last_error: Exception | None = None
    for penalizer in PENALIZERS:
        fitter = make(penalizer)
        try:
            # lifetimes prints the optimiser's report when it fails to converge; the retry covers it.
            with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
                warnings.simplefilter("ignore", RuntimeWarning)
                fit(fitter)
        except ConvergenceError as exc:
            log.info("%s did not converge with penalizer %s; retrying", what, penalizer)
            last_error = exc
            continue
        params = fitter.params_
        if np.all(np.isfinite(params.to_numpy(dtype=float))):
            return fitter, penalizer
    raise NotEnoughData(
        f"The {what} model did not converge, even with a penalizer of {PENALIZERS[-1]}: the purchase "
        f"history is too short or too uniform to estimate it ({last_error or 'non-finite parameters'})."
    )


class LifetimeValueModel(BaseEstimator):
    """BG/NBD for expected purchases, MBG/NBD for P(alive), Gamma-Gamma for expected spend per purchase.

    Fitted parameters are kept as plain numbers (`params_`), so the model pickles into the
    registry; predictions rebuild the `lifetimes` fitters from them.
    """

    def __init__(self, time_unit_days: int = 7, sample_size: int = 100_000, random_state: int = 0,
                 fit_pareto: bool = True, pareto_sample_size: int = 3_000):
        self.time_unit_days = time_unit_days
        self.sample_size = sample_size
        self.random_state = random_state
        self.fit_pareto = fit_pareto
        self.pareto_sample_size = pareto_sample_size

    def fit(self, summary: pd.DataFrame, y=None) -> LifetimeValueModel:
        summary = _check_summary(summary)
        if "monetary_value" not in summary.columns:
            raise platform.ValidationError("The CLV summary lacks the column monetary_value (needed for Gamma-Gamma).")
        if len(summary) < MIN_CUSTOMERS:
            raise NotEnoughData(
                f"Lifetime value needs at least {MIN_CUSTOMERS} customers with a purchase; there are {len(summary)}."
            )
        rng = np.random.default_rng(self.random_state)
        if len(summary) > self.sample_size:
            sample = summary.iloc[np.sort(rng.choice(len(summary), size=self.sample_size, replace=False))]
        else:
            sample = summary
        repeat = sample[(sample["frequency"] > 0) & (sample["monetary_value"] > 0)]
        if len(repeat) < MIN_REPEAT_CUSTOMERS:
            raise NotEnoughData(
                f"Lifetime value needs at least {MIN_REPEAT_CUSTOMERS} customers with a repeat purchase to "
                f"estimate spend; the {len(sample):,} customers fitted on have {len(repeat)}."
            )
        f, r, t = (sample[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))
        bgnbd, bg_penalizer = _fit_with_retry(
            lambda p: BetaGeoFitter(penalizer_coef=p), lambda m: m.fit(f, r, t), "BG/NBD"
        )
        mbgnbd: tuple[Any, float] | None
        try:
            mbgnbd = _fit_with_retry(
                lambda p: ModifiedBetaGeoFitter(penalizer_coef=p), lambda m: m.fit(f, r, t), "MBG/NBD")
        except NotEnoughData as exc:  # P(alive) then falls back to BG/NBD's
            log.info("MBG/NBD not fitted: %s", exc)
            mbgnbd = None
        gamma, gg_penalizer = _fit_with_retry(
            lambda p: GammaGammaFitter(penalizer_coef=p),
            lambda m: m.fit(repeat["frequency"].to_numpy(dtype=float), repeat["monetary_value"].to_numpy(dtype=float)),
            "Gamma-Gamma",
        )
        self.params_: dict[str, Any] = {
            "bgnbd": {**{k: float(v) for k, v in bgnbd.params_.items()},
                      "time_unit": time_unit_name(self.time_unit_days)},
            "gamma_gamma": {k: float(v) for k, v in gamma.params_.items()},
        }
        self.penalizers_ = {"bgnbd": bg_penalizer, "gamma_gamma": gg_penalizer}
        if mbgnbd is not None:
            self.params_["mbgnbd"] = {k: float(v) for k, v in mbgnbd[0].params_.items()}
            self.penalizers_["mbgnbd"] = mbgnbd[1]
        self.n_customers_fit_ = len(sample)
        self.n_repeat_customers_fit_ = len(repeat)
        self.neg_log_likelihood_ = {
            "bgnbd": float(bgnbd._negative_log_likelihood_),
            "gamma_gamma": float(gamma._negative_log_likelihood_),
        }
        # Gamma-Gamma assumes spend per purchase is independent of purchase frequency.
        self.frequency_spend_correlation_ = float(np.corrcoef(repeat["frequency"], repeat["monetary_value"])[0, 1]) \
            if repeat["frequency"].nunique() > 1 and repeat["monetary_value"].nunique() > 1 else None
        self.pareto_params_ = None
        if self.fit_pareto:
            small = sample
            if len(sample) > self.pareto_sample_size:
                small = sample.iloc[np.sort(rng.choice(len(sample), size=self.pareto_sample_size, replace=False))]
            try:
                pareto, _ = _fit_with_retry(
                    lambda p: ParetoNBDFitter(penalizer_coef=p),
                    lambda m: m.fit(*(small[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))),
                    "Pareto/NBD",
                )
            except NotEnoughData as exc:  # a comparison only: BG/NBD remains the model used
                log.info("Pareto/NBD comparison skipped: %s", exc)
            else:
                self.pareto_params_ = {k: float(v) for k, v in pareto.params_.items()}
        return self

    # ------------------------------------------------------------------ prediction
    def _bgnbd(self) -> BetaGeoFitter:
        fitter = BetaGeoFitter()
        fitter.params_ = pd.Series({k: self.params_["bgnbd"][k] for k in ("r", "alpha", "a", "b")})
        return fitter

    def _gamma_gamma(self) -> GammaGammaFitter:
        fitter = GammaGammaFitter()
        fitter.params_ = pd.Series({k: self.params_["gamma_gamma"][k] for k in ("p", "q", "v")})
        return fitter

    @staticmethod
    def _frt(summary: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        summary = _check_summary(summary)
        return tuple(summary[c].to_numpy(dtype=float) for c in ("frequency", "recency", "T"))

    def expected_purchases(self, summary: pd.DataFrame, periods: float) -> pd.Series:
        """Expected purchases in the next `periods` time units (weeks by default), per customer."""
        if isinstance(periods, bool) or not isinstance(periods, int | float) or periods < 0:
            raise platform.ValidationError(f"periods must be a non-negative number, not {periods!r}.")
        f, r, t = self._frt(summary)
        with np.errstate(all="ignore"):
            values = self._bgnbd().conditional_expected_number_of_purchases_up_to_time(periods, f, r, t)
        return pd.Series(np.nan_to_num(np.asarray(values, dtype=float)), index=summary.index, name="expected_purchases")

    def probability_alive(self, summary: pd.DataFrame) -> pd.Series:
        """P(the customer has not yet dropped out), per customer: MBG/NBD's, so a one-time buyer long
        silent is likely gone (BG/NBD's, which is 1 for every one-time buyer, when MBG/NBD was not fitted)."""
        f, r, t = self._frt(summary)
        if "mbgnbd" in self.params_:
            fitter = ModifiedBetaGeoFitter()
            fitter.params_ = pd.Series({k: self.params_["mbgnbd"][k] for k in ("r", "alpha", "a", "b")})
        else:
            fitter = self._bgnbd()
        with np.errstate(all="ignore"):
            values = fitter.conditional_probability_alive(f, r, t)
        return pd.Series(np.clip(np.asarray(values, dtype=float), 0, 1), index=summary.index, name="prob_alive")

    def expected_spend(self, summary: pd.DataFrame) -> pd.Series:
        """Expected spend per future purchase (Gamma-Gamma; the population mean for one-off buyers)."""
        summary = _check_summary(summary)
        frequency = summary["frequency"].to_numpy(dtype=float)
        monetary = summary["monetary_value"].to_numpy(dtype=float) if "monetary_value" in summary else np.zeros(len(summary))
        monetary = np.where(frequency > 0, monetary, 0.0)
        p, q, v = (self.params_["gamma_gamma"][k] for k in ("p", "q", "v"))
        # E[spend | x, mean m] = p (v + x m) / (p x + q - 1): a weighted mean of the population mean
        # p v / (q - 1) and the customer's own mean; the same as lifetimes' conditional_expected_average_profit.
        denominator = p * frequency + q - 1
        with np.errstate(all="ignore"):
            values = np.where(denominator > 0, p * (v + frequency * monetary) / denominator, np.nan)
        return pd.Series(np.clip(np.nan_to_num(values), 0, MAX_MONEY), index=summary.index, name="expected_spend")

    def clv(self, summary: pd.DataFrame, months: int = 12, annual_discount_rate: float = 0.10) -> pd.Series:
        """Discounted expected revenue over the next `months`, month by month, per customer."""
        if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
            raise platform.ValidationError(f"months must be a whole number from 1 to 120, not {months!r}.")
        if isinstance(annual_discount_rate, bool) or not isinstance(annual_discount_rate, int | float) \
                or not 0 <= annual_discount_rate < 1:
            raise platform.ValidationError(f"The annual discount rate must be at least 0 and below 1, not {annual_discount_rate!r}.")
        monthly_rate = (1 + annual_discount_rate) ** (1 / 12) - 1
        unit = DAYS_PER_MONTH / self.time_unit_days
        spend = self.expected_spend(summary).to_numpy()
        previous = np.zeros(len(summary))
        total = np.zeros(len(summary))
        for month in range(1, months + 1):
            cumulative = self.expected_purchases(summary, month * unit).to_numpy()
            total += (cumulative - previous) * spend / (1 + monthly_rate) ** month
            previous = cumulative
        return pd.Series(np.clip(total, 0, MAX_MONEY), index=summary.index, name="clv")

    def score(self, summary: pd.DataFrame, annual_discount_rate: float = 0.10) -> pd.DataFrame:
        """Every output the snapshot stores, per customer of `summary`."""
        year = 365.25 / self.time_unit_days
        return pd.DataFrame({
            "predicted_purchases_12m": self.expected_purchases(summary, year),
            "prob_alive": self.probability_alive(summary),
            "expected_order_value": self.expected_spend(summary).round(2),
            "clv_12m": self.clv(summary, 12, annual_discount_rate).round(2),
            "historic_clv": summary["total_revenue"].astype(float).round(2) if "total_revenue" in summary
            else np.nan,
        })


# --------------------------------------------------------------------------- refresh

SCORE_COLUMNS = list(segmentation.CLV_COLUMNS)  # the lifetime-value columns the snapshot carries


def store_scores(connection, as_of: dt.date, scores: pd.DataFrame) -> int:
    """Replace the stored lifetime values with `scores` (indexed by customer_id), in bulk."""
    table = CustomerLifetimeValue.__table__
    connection.execute(delete(table))
    frame = scores.reset_index()[["customer_id", *SCORE_COLUMNS]].assign(as_of=as_of.isoformat())
    bulk.load(connection, table, frame)
    return len(frame)


SEASON_DAYS = 365
SEASON_FACTOR_LIMITS = (0.5, 2.0)


def _purchase_days_after(connection, start: dt.date, days: int, customers: pd.Index) -> float:
    """Days with a revenue order in the `days` after the end of `start`, by the given customers."""
    day = platform.calendar_day(Order.ordered_at)
    per_day = (
        select(Order.customer_id.label("customer_id"), day.label("day"))
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at >= platform.end_of(start),
               Order.ordered_at < platform.end_of(start + dt.timedelta(days=days)))
        .group_by(Order.customer_id, day)
        .subquery("days")
    )
    rows = connection.execute(select(per_day.c.customer_id, func.count()).group_by(per_day.c.customer_id)).all()
    counts = pd.Series(dict(rows), dtype=float)
    return float(counts.reindex(customers, fill_value=0.0).sum())


def seasonal_factor(connection, as_of: dt.date, horizon_days: int, *, time_unit_days: int = 7,
                    sample_size: int = REFRESH_SAMPLE) -> tuple[float, str]:
    """How far BG/NBD missed the same season a year earlier: actual / predicted purchases.

    BG/NBD assumes a steady purchase rate, so its totals miss seasons (a Christmas peak, a quiet
    summer) and trends by a similar share each year. The model is fitted as of `as_of` minus a
    year and its predicted purchases over the same `horizon_days` compared with what those
    customers then bought; the ratio (limited to 0.5-2) corrects this year's totals. Everything
    read ends by `as_of`. Returns (1.0, reason) when there is no full earlier season to learn from.
    """
    if horizon_days > SEASON_DAYS:
        return 1.0, f"no seasonal correction: the horizon is longer than a year ({horizon_days} days)"
    prior = as_of - dt.timedelta(days=SEASON_DAYS)
    summary = summarize(connection, prior, time_unit_days=time_unit_days)
    try:
        model = LifetimeValueModel(time_unit_days=time_unit_days, sample_size=sample_size,
                                   fit_pareto=False).fit(summary)
    except NotEnoughData:
        return 1.0, f"no seasonal correction: too little history before {prior.isoformat()} to learn the season"
    predicted = float(model.expected_purchases(summary, horizon_days / time_unit_days).sum())
    actual = _purchase_days_after(connection, prior, horizon_days, summary.index)
    if predicted <= 0:
        return 1.0, "no seasonal correction: nothing was predicted a year earlier"
    low, high = SEASON_FACTOR_LIMITS
    factor = float(np.clip(actual / predicted, low, high))
    return factor, (f"seasonal correction x{factor:.3f}: a year earlier BG/NBD predicted {predicted:,.0f} purchases "
                    f"in the {horizon_days} days after {prior.isoformat()} and {actual:,.0f} happened")


def _holdout_metrics(session, as_of: dt.date, holdout_days: int, model: LifetimeValueModel) -> dict[str, Any]:
    """Fit on the history up to `holdout_days` before `as_of`, compare with the repeat purchases after it."""
    calibration_end = as_of - dt.timedelta(days=holdout_days)
    calibration = summarize(session, calibration_end, time_unit_days=model.time_unit_days)
    try:
        check = LifetimeValueModel(time_unit_days=model.time_unit_days, sample_size=model.sample_size,
                                   random_state=model.random_state, fit_pareto=False).fit(calibration)
    except NotEnoughData as exc:
        return {"holdout_skipped": str(exc)}
    day = platform.calendar_day(Order.ordered_at)
    days = (
        select(Order.customer_id.label("customer_id"), day.label("day"))
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at >= platform.end_of(calibration_end),
               Order.ordered_at < platform.end_of(as_of))
        .group_by(Order.customer_id, day)
        .subquery("days")
    )
    actual_rows = session.execute(select(days.c.customer_id, func.count()).group_by(days.c.customer_id)).all()
    actual = pd.Series(dict(actual_rows), dtype=float).reindex(calibration.index, fill_value=0.0)
    predicted = check.expected_purchases(calibration, holdout_days / model.time_unit_days)
    return {
        "holdout_days": holdout_days,
        "holdout_customers": len(calibration),
        "holdout_actual_purchases": float(actual.sum()),
        "holdout_predicted_purchases": round(float(predicted.sum()), 2),
        "holdout_mae_per_customer": round(float((predicted - actual).abs().mean()), 4),
    }


def refresh_lifetime_value(engine: Engine, as_of: dt.date, *, progress: Progress | None = None,
                           holdout_days: int = 0, compare_pareto: bool = False,
                           sample_size: int = REFRESH_SAMPLE, annual_discount_rate: float = 0.10,
                           actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """Fit the CLV models as of `as_of`, store every customer's scores, register the model.

    The scores go to `customer_lifetime_values`; the analytics snapshot reads those of its date when
    it is next built (the snapshot step of the batch refresh is the only writer of
    `customer_analytics`). Returns what was done; when there is too little data the result has
    status "skipped" and a reason, and nothing changes.
    `holdout_days` > 0 also refits on the history up to that many days earlier and records how
    its predictions compare with what happened since (a second pass over the orders, so opt-in);
    `compare_pareto` records a Pareto/NBD fit next to BG/NBD. `actor` (the batch's system actor by
    default) must be allowed to run the refresh and manage models.
    """
    platform.require(actor, "refresh.run")
    platform.require(actor, "models.manage")
    started = time.perf_counter()
    steps = 4

    def report(index: int, label: str, detail: str) -> None:
        if progress:
            progress(index, steps, label, detail)

    with platform.unit_of_work(engine) as session:
        summary = summarize(session, as_of)
        report(1, "Customer purchase summary", f"{len(summary):,} customers with purchases")
        try:
            model = LifetimeValueModel(sample_size=sample_size, fit_pareto=compare_pareto).fit(summary)
        except NotEnoughData as exc:
            return {"status": "skipped", "reason": str(exc), "customers_with_purchases": len(summary),
                    "seconds": round(time.perf_counter() - started, 2)}
        report(2, "BG/NBD, MBG/NBD and Gamma-Gamma fitted", f"on {model.n_customers_fit_:,} customers")
        scores = model.score(summary, annual_discount_rate)
        scores["clv_frequency"] = summary["frequency"].astype(np.int64)
        scores["clv_recency"] = summary["recency"].round(4)
        scores["clv_age"] = summary["T"].round(4)
        scores = scores.replace([np.inf, -np.inf], np.nan)
        updated = store_scores(session.connection(), as_of, scores)
        report(3, "Scores written", f"{updated:,} customers")
        metrics: dict[str, Any] = {
            "neg_log_likelihood": model.neg_log_likelihood_,
            "customers_fit": model.n_customers_fit_,
            "repeat_customers_fit": model.n_repeat_customers_fit_,
            "customers_scored": updated,
            "frequency_spend_correlation": model.frequency_spend_correlation_,
            "pareto_nbd": model.pareto_params_,
            "expected_purchases_12m": round(float(scores["predicted_purchases_12m"].sum()), 2),
            "clv_12m_total": round(float(scores["clv_12m"].sum()), 2),
            "annual_discount_rate": annual_discount_rate,
        }
        if holdout_days:
            metrics.update(_holdout_metrics(session, as_of, holdout_days, model))
        first_day = session.scalar(
            select(func.min(Order.ordered_at)).where(Order.status.in_(REVENUE_ORDER_STATUSES),
                                                     Order.ordered_at < platform.end_of(as_of))
        )
        row = registry.register(
            session, "clv", "bgnbd+gamma_gamma", model,
            params={**model.params_, "penalizers": model.penalizers_, "sample_size": model.sample_size},
            features=["frequency", "recency", "T", "monetary_value"],
            training_start=first_day.date() if first_day else None, training_end=as_of, metrics=metrics,
            actor=actor,
        )
        report(4, "Model registered", f"clv version {row.version}")
        return {
            "status": "fitted",
            "customers_scored": updated,
            "customers_with_purchases": len(summary),
            "params": model.params_,
            "model_version": row.version,
            "metrics": metrics,
            "seconds": round(time.perf_counter() - started, 2),
        }
