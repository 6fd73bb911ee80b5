"""What the Forecast page reads: the latest run of each metric, its history and forecast points, and
the outlook of the next days against the last ones.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core import platform
from db.models import FORECAST_METRICS, ForecastPoint, ForecastRun
from ml.forecast import METRIC_LABELS


def _check_metric(metric: Any) -> str:
    if metric not in FORECAST_METRICS:
        raise platform.ValidationError(f"Unknown metric {metric!r}; choose one of: {', '.join(FORECAST_METRICS)}.")
    return metric


def partial_day(run: ForecastRun) -> dt.date | None:
    """The run's `as_of` when the run was made before that day ended (its orders so far, not a whole day's):
    the history drawn leaves that day out, as a day in progress beside whole days reads as a drop."""
    return run.as_of if run.created_at < platform.end_of(run.as_of) else None


def latest_runs(session: Session, viewer: platform.Actor) -> list[dict[str, Any]]:
    """The latest run of each metric (fitted or skipped), with its backtest error; [] before the first."""
    platform.require(viewer, "forecast.view")
    latest = select(ForecastRun.metric, func.max(ForecastRun.id).label("id")).group_by(ForecastRun.metric).subquery()
    runs = session.scalars(select(ForecastRun).join(latest, latest.c.id == ForecastRun.id)).all()
    order = {m: i for i, m in enumerate(FORECAST_METRICS)}
    return [
        {"metric": r.metric, "label": METRIC_LABELS[r.metric], "as_of": r.as_of, "status": r.status,
         "reason": r.reason, "mape": r.mape, "backtest": r.backtest or [], "country": r.country,
         "horizon_days": r.horizon_days, "history_days": r.history_days, "created_at": r.created_at,
         "partial_day": partial_day(r)}
        for r in sorted(runs, key=lambda r: order[r.metric])
    ]


def series(session: Session, viewer: platform.Actor, metric: str, history_days: int = 365) -> list[dict[str, Any]]:
    """History (the last `history_days` days) and forecast points of the latest fitted run of `metric`; a
    `partial_day` (the run's date when it was made before the day ended) has no actual."""
    platform.require(viewer, "forecast.view")
    _check_metric(metric)
    if isinstance(history_days, bool) or not isinstance(history_days, int) or not 7 <= history_days <= 3660:
        raise platform.ValidationError("Show between 7 and 3,660 days of history.")
    run = session.scalar(
        select(ForecastRun).where(ForecastRun.metric == metric, ForecastRun.status == "fitted")
        .order_by(ForecastRun.id.desc()).limit(1)
    )
    if run is None:
        return []
    since = run.as_of - dt.timedelta(days=history_days - 1)
    rows = session.execute(
        select(ForecastPoint.day, ForecastPoint.actual, ForecastPoint.predicted, ForecastPoint.lower,
               ForecastPoint.upper, ForecastPoint.is_forecast)
        .where(ForecastPoint.run_id == run.id, ForecastPoint.day >= since)
        .order_by(ForecastPoint.day)
    ).all()
    partial = partial_day(run)  # its actual is the day so far: not drawn as history
    return [{"day": d, "actual": None if d == partial else a, "predicted": p, "lower": lo, "upper": hi,
             "is_forecast": bool(f)}
            for d, a, p, lo, hi, f in rows]


def outlook(session: Session, viewer: platform.Actor, metric: str, days: int = 30) -> dict[str, Any] | None:
    """The forecast total of the next `days` days against the actual total of the last `days` days."""
    platform.require(viewer, "forecast.view")
    _check_metric(metric)
    run = session.scalar(
        select(ForecastRun).where(ForecastRun.metric == metric, ForecastRun.status == "fitted")
        .order_by(ForecastRun.id.desc()).limit(1)
    )
    if run is None:
        return None
    days = min(days, run.horizon_days)
    start = run.as_of - dt.timedelta(days=days - 1)
    stop = run.as_of + dt.timedelta(days=days)
    day = ForecastPoint.day
    last, ahead = session.execute(
        select(
            func.sum(ForecastPoint.actual).filter(day >= start, day <= run.as_of),
            func.sum(ForecastPoint.predicted).filter(ForecastPoint.is_forecast.is_(True), day <= stop),
        ).where(ForecastPoint.run_id == run.id)
    ).one()
    return {"days": days, "last_actual": float(last or 0), "next_forecast": float(ahead or 0), "as_of": run.as_of}
