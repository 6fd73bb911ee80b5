"""Daily forecasts of revenue, orders and new customers with Prophet, fitted in the batch refresh.

Series are aggregated in SQL per calendar day of the stored order time (the shop's local time) up
to the end of `as_of`, with days without orders as zeros:

- revenue        sum of revenue-order totals;
- orders         number of revenue orders;
- new_customers  customers whose first revenue order fell on the day (first purchases, not
                 sign-ups: a sign-up without a purchase is not yet a customer in value terms).

The models learn from at most the last three years, and only from after the last run of 60 or more
days without an order (`trading_history`): a decades-old imported history or the months before the
shop opened would otherwise set the trend. Each metric gets a Prophet model with weekly and yearly seasonality (yearly once there is a year
of history to estimate it from), the public holidays of the shop's country (the `shop_country` setting) and 80% intervals. A rolling-origin backtest (three
folds of 30 days: fit on everything before the fold, forecast the fold) gives the MAPE shown
beside the chart; days with an actual value of zero are left out of the MAPE, where the
percentage error is undefined. Runs and their points are stored in `forecast_runs` and
`forecast_points` (only the latest run of a metric keeps its points); the page only reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, func, literal_column, select
from sqlalchemy.orm import Session

from crm_core import customers, platform
from db import bulk
from db.models import FORECAST_METRICS, REVENUE_ORDER_STATUSES, Customer, ForecastPoint, ForecastRun, Order
from ml import registry

MIN_HISTORY_DAYS = 60
MIN_YEARLY_DAYS = 730  # Prophet: yearly seasonality on less than two years is under-identified
MAX_HISTORY_DAYS = 3 * 365 + 1  # enough for the yearly season; older years describe another business
GAP_DAYS = 60  # this many days in a row without an order: the shop was not trading (or an old import ends)
BACKTEST_FOLDS = 3
BACKTEST_DAYS = 30
INTERVAL_WIDTH = 0.8
UNCERTAINTY_SAMPLES = 400  # simulated paths behind the intervals (Prophet's default 1,000 doubles predict time)
METRIC_LABELS = {"revenue": "Revenue (€)", "orders": "Orders", "new_customers": "New customers (first orders)"}

Progress = Callable[[int, int, str, str], None]


def _quiet() -> None:
    """Silence the INFO lines cmdstanpy and Prophet print for every fit."""
    from cmdstanpy.utils import get_logger

    get_logger().setLevel(logging.WARNING)  # configures cmdstanpy's logger on first use, so call it first
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.WARNING)


# --------------------------------------------------------------------------- series and error


def trading_history(series: pd.DataFrame) -> pd.DataFrame:
    """The part of the daily series the forecasts learn from: at most the last `MAX_HISTORY_DAYS`,
    and only after the last run of `GAP_DAYS` or more days without an order (a history imported from
    an old shop, or the months before this one opened, is not this business's trend)."""
    series = series.iloc[-MAX_HISTORY_DAYS:]
    if series.empty or "orders" not in series:
        return series
    quiet = (series["orders"].to_numpy() == 0).astype(np.int64)
    runs = np.diff(np.concatenate(([0], quiet, [0])))
    starts, ends = np.flatnonzero(runs == 1), np.flatnonzero(runs == -1)  # [start, end) of each quiet run
    gaps = [(start, end) for start, end in zip(starts, ends, strict=True)
            if end - start >= GAP_DAYS and end < len(series)]
    return series.iloc[gaps[-1][1]:] if gaps else series


def daily_series(session: Session, as_of: dt.date) -> pd.DataFrame:
    """Revenue, orders and new customers per day, from the first order day to `as_of` (zeros filled)."""
    cutoff = platform.end_of(as_of)
    day = platform.calendar_day(Order.ordered_at)
    revenue_orders = (Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < cutoff)
    orders = session.execute(
        select(day, func.sum(Order.total), func.count()).where(*revenue_orders).group_by(day)
    ).all()
    # Aggregate first, then leave out merged and erased customers: joining customers to every order
    # is several times slower. `customer_id + 0` keeps SQLite reading the orders in time order
    # rather than fetching them at random through the (customer_id, ordered_at) index.
    customer = Order.customer_id + literal_column("0")
    firsts = (
        select(customer.label("customer_id"), func.min(Order.ordered_at).label("first_at"))
        .where(*revenue_orders)
        .group_by(customer)
        .subquery("firsts")
    )
    first_day = platform.calendar_day(firsts.c.first_at)
    new = session.execute(
        select(first_day, func.count())
        .join(Customer, Customer.id == firsts.c.customer_id)
        .where(customers.COUNTED_CUSTOMER)
        .group_by(first_day)
    ).all()
    if not orders:
        return pd.DataFrame(columns=list(FORECAST_METRICS), index=pd.DatetimeIndex([], name="day"), dtype=float)
    frame = pd.DataFrame(orders, columns=["day", "revenue", "orders"])
    frame["day"] = pd.to_datetime(frame["day"])
    frame = frame.set_index("day").astype(float)
    new_frame = pd.DataFrame(new, columns=["day", "new_customers"])
    new_frame["day"] = pd.to_datetime(new_frame["day"])
    days = pd.date_range(frame.index.min(), pd.Timestamp(as_of), freq="D", name="day")
    frame = frame.reindex(days, fill_value=0.0)
    frame["new_customers"] = new_frame.set_index("day")["new_customers"].astype(float).reindex(days, fill_value=0.0)
    return frame[list(FORECAST_METRICS)]


def mape(actual, predicted) -> float | None:
    """Mean absolute percentage error over the days with a non-zero actual value; None if there are none."""
    actual = np.asarray(actual, dtype=float)
    predicted = np.asarray(predicted, dtype=float)
    if actual.shape != predicted.shape:
        raise platform.ValidationError("Actual and predicted values must have the same length.")
    keep = np.isfinite(actual) & np.isfinite(predicted) & (actual != 0)
    if not keep.any():
        return None
    return float(np.mean(np.abs(actual[keep] - predicted[keep]) / np.abs(actual[keep])))


def _model(country: str | None, days: int):
    from prophet import Prophet

    _quiet()
    # Yearly seasonality needs a year of history to be estimated at all; on less it only adds noise.
    model = Prophet(interval_width=INTERVAL_WIDTH, yearly_seasonality=days >= MIN_YEARLY_DAYS,
                    weekly_seasonality=True, daily_seasonality=False, uncertainty_samples=UNCERTAINTY_SAMPLES)
    if country:
        model.add_country_holidays(country_name=country)
    return model


def fit_forecast(history: pd.Series, horizon_days: int, country: str | None) -> tuple[Any, pd.DataFrame]:
    """Fit Prophet on a daily series; the fitted model and one row per history and future day.

    Columns: day, actual (NaN for future days), predicted, lower, upper (clipped at zero: none of
    the metrics can be negative), is_forecast.
    """
    frame = pd.DataFrame({"ds": history.index, "y": history.to_numpy(dtype=float)})
    model = _model(country, len(frame)).fit(frame)
    future = model.make_future_dataframe(periods=horizon_days, freq="D", include_history=True)
    predicted = model.predict(future)
    out = pd.DataFrame({
        "day": predicted["ds"].dt.date,
        "predicted": predicted["yhat"].clip(lower=0).to_numpy(),
        "lower": predicted["yhat_lower"].clip(lower=0).to_numpy(),
        "upper": predicted["yhat_upper"].clip(lower=0).to_numpy(),
    })
    out["actual"] = history.reindex(pd.DatetimeIndex(predicted["ds"])).to_numpy()
    out["is_forecast"] = (predicted["ds"] > history.index.max()).to_numpy()
    return model, out


def backtest(history: pd.Series, country: str | None, folds: int = BACKTEST_FOLDS,
              fold_days: int = BACKTEST_DAYS) -> list[dict[str, Any]]:
    """Rolling-origin backtest: for each fold, fit on the days before it and forecast its `fold_days`."""
    results = []
    end = len(history)
    for fold in range(folds, 0, -1):
        start = end - fold * fold_days
        if start < MIN_HISTORY_DAYS:
            continue
        train, test = history.iloc[:start], history.iloc[start:start + fold_days]
        _, predicted = fit_forecast(train, len(test), country)
        forecast = predicted[predicted["is_forecast"]]["predicted"].to_numpy()[: len(test)]
        inside = (test.to_numpy() >= predicted[predicted["is_forecast"]]["lower"].to_numpy()[: len(test)]) & (
            test.to_numpy() <= predicted[predicted["is_forecast"]]["upper"].to_numpy()[: len(test)])
        results.append({
            "origin": test.index[0].date().isoformat(),
            "days": len(test),
            "mape": mape(test.to_numpy(), forecast),
            "interval_coverage": float(inside.mean()),
        })
    return results


# --------------------------------------------------------------------------- refresh


FLAT_RECENT_DAYS = 90
METRIC_LABELS = {"revenue": "Revenue", "orders": "Orders", "new_customers": "New customers"}


def _nothing_to_forecast(metric: str, history: pd.Series, as_of: dt.date) -> str | None:
    """Why a metric is not forecast: too little history, or the same value every recent day (a shop
    that imported one cohort of customers has no new customers to forecast)."""
    if len(history) < MIN_HISTORY_DAYS:
        return (f"Only {len(history)} day(s) of order history up to {as_of.isoformat()}; forecasts need "
                f"at least {MIN_HISTORY_DAYS} days.")
    recent = history.iloc[-FLAT_RECENT_DAYS:]
    if recent.nunique() <= 1:
        return (f"{METRIC_LABELS.get(metric, metric)} was {recent.iloc[-1]:,.0f} on every one of the last "
                f"{len(recent)} days up to {as_of.isoformat()}: there is no pattern to forecast.")
    return None


def _store_run(session: Session, run: ForecastRun, points: pd.DataFrame | None) -> None:
    session.add(run)
    session.flush()
    older = select(ForecastRun.id).where(ForecastRun.metric == run.metric, ForecastRun.id != run.id)
    session.execute(delete(ForecastPoint).where(ForecastPoint.run_id.in_(older)))
    if points is not None and not points.empty:
        frame = points.assign(
            run_id=run.id,
            day=points["day"].map(lambda d: d.isoformat()).astype(object),
            actual=points["actual"].astype(object).where(points["actual"].notna(), None),
        )[["run_id", "day", "actual", "predicted", "lower", "upper", "is_forecast"]]
        bulk.load(session.connection(), ForecastPoint.__table__, frame)


@dataclass
class FittedForecasts:
    """What `fit_forecasts` read and fitted, not yet stored: the metrics it skipped (with the reason)
    and, per fitted metric, the model, its points, backtest folds and mean error."""

    as_of: dt.date
    horizon_days: int
    country: str
    series: pd.DataFrame
    skipped: dict[str, str] = field(default_factory=dict)
    fitted: dict[str, tuple[Any, pd.DataFrame, list[dict[str, Any]], float | None]] = field(default_factory=dict)
    started: float = field(default_factory=time.perf_counter)


def fit_forecasts(engine: Engine, as_of: dt.date, *, horizon_days: int = 90,
                  progress: Progress | None = None) -> FittedForecasts:
    """Read the daily series and fit every metric's forecast and backtest as of `as_of`; writes nothing
    (the batch runs this ahead of its turn on SQLite, while another step writes)."""
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or not 1 <= horizon_days <= 365:
        raise platform.ValidationError(f"The forecast horizon must be a whole number of days from 1 to 365, not {horizon_days!r}.")
    started = time.perf_counter()
    with platform.unit_of_work(engine) as session:
        country, _ = platform.get_shop_country(session)
        series = trading_history(daily_series(session, as_of))
    result = FittedForecasts(as_of, horizon_days, country, series, started=started)
    for index, metric in enumerate(FORECAST_METRICS, start=1):
        history = series[metric] if metric in series else pd.Series(dtype=float)
        reason = _nothing_to_forecast(metric, history, as_of)
        if reason:
            result.skipped[metric] = reason
            if progress:
                progress(index, len(FORECAST_METRICS) + 1, f"Forecast of {metric}", f"skipped: {reason}")
            continue
        model, points = fit_forecast(history, horizon_days, country)
        folds = backtest(history, country)
        errors = [f["mape"] for f in folds if f["mape"] is not None]
        result.fitted[metric] = (model, points, folds, float(np.mean(errors)) if errors else None)
        if progress:
            error = result.fitted[metric][3]
            progress(index, len(FORECAST_METRICS) + 1, f"Forecast of {metric}",
                     f"MAPE {error:.1%}" if error is not None else "no backtest error")
    return result


def store_forecasts(engine: Engine, fitted_forecasts: FittedForecasts, progress: Progress | None = None,
                    actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """Store what `fit_forecasts` fitted (and the metrics it skipped); register the models as "forecast".
    `actor` (the batch's system actor by default) must be allowed to run the refresh and manage models."""
    platform.require(actor, "refresh.run")
    platform.require(actor, "models.manage")
    as_of, horizon_days, country = fitted_forecasts.as_of, fitted_forecasts.horizon_days, fitted_forecasts.country
    series, fitted = fitted_forecasts.series, fitted_forecasts.fitted
    result: dict[str, Any] = {"metrics": {}}
    with platform.unit_of_work(engine, write=True) as session:
        for metric in FORECAST_METRICS:
            if metric not in fitted_forecasts.skipped:
                continue
            reason = fitted_forecasts.skipped[metric]
            history = series[metric] if metric in series else pd.Series(dtype=float)
            _store_run(session, ForecastRun(metric=metric, as_of=as_of, status="skipped", reason=reason,
                                            horizon_days=horizon_days, history_days=len(history),
                                            history_start=history.index.min().date() if len(history) else None,
                                            country=country), None)
            result["metrics"][metric] = {"status": "skipped", "reason": reason}
        model_row = None
        if fitted:
            from prophet.serialize import model_to_json

            model_row = registry.register(
                session, "forecast", "prophet",
                {metric: model_to_json(model) for metric, (model, *_rest) in fitted.items()},
                params={"interval_width": INTERVAL_WIDTH, "weekly_seasonality": True,
                        "yearly_seasonality": f"with at least {MIN_YEARLY_DAYS} days of history",
                        "history": f"at most the last {MAX_HISTORY_DAYS} days, after the last run of "
                                   f"{GAP_DAYS}+ days without an order",
                        "country_holidays": country, "horizon_days": horizon_days,
                        "backtest": {"folds": BACKTEST_FOLDS, "days": BACKTEST_DAYS}},
                features=list(fitted),
                training_start=series.index.min().date(), training_end=as_of,
                metrics={f"mape_{metric}": error for metric, (*_rest, error) in fitted.items()},
                actor=actor,
            )
        for metric, (_, points, folds, error) in fitted.items():
            history = series[metric]
            _store_run(session, ForecastRun(metric=metric, as_of=as_of, status="fitted",
                                            model_id=model_row.id if model_row else None,
                                            horizon_days=horizon_days, history_start=history.index.min().date(),
                                            history_days=len(history), country=country, mape=error,
                                            backtest=folds), points)
            result["metrics"][metric] = {"status": "fitted", "mape": error, "backtest": folds,
                                         "forecast_total": float(points[points["is_forecast"]]["predicted"].sum())}
        if progress:
            progress(len(FORECAST_METRICS) + 1, len(FORECAST_METRICS) + 1, "Forecasts stored",
                     f"{len(fitted)} of {len(FORECAST_METRICS)} metrics fitted")
    result.update(country=country, horizon_days=horizon_days, model_version=model_row.version if model_row else None,
                  rows=sum(len(points) for _, points, _, _ in fitted.values()),
                  seconds=round(time.perf_counter() - fitted_forecasts.started, 2))
    return result


def refresh_forecasts(engine: Engine, as_of: dt.date, *, horizon_days: int = 90,
                      progress: Progress | None = None, actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """Fit and store the forecasts of every metric as of `as_of`; register them as model "forecast".

    A metric with fewer than `MIN_HISTORY_DAYS` days of history is stored as skipped, with the reason.
    `actor` (the batch's system actor by default) must be allowed to run the refresh and manage models.
    """
    platform.require(actor, "refresh.run")
    platform.require(actor, "models.manage")
    return store_forecasts(engine, fit_forecasts(engine, as_of, horizon_days=horizon_days, progress=progress),
                           progress, actor)
