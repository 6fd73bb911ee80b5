"""Scoring health as of a date (weights refitted when due, levels, trend and advice, stored per
date) and the backtest of stored levels against churn.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score
from sqlalchemy import (
    Connection,
    Engine,
    delete,
    func,
    select,
)
from sqlalchemy.orm import Session

from crm_core import platform, segmentation
from db import bulk
from db.models import (
    HEALTH_LEVELS,
    AccountHealthRun,
    AccountHealthScore,
    MLModel,
    RollupSummary,
)
from ml import registry
from ml.health.bands import levels_for, rates_rise
from ml.health.estimator import (
    COMPONENTS,
    HealthScorer,
    advice_columns,
    components_from_inputs,
    indicator_flags,
    overall_score,
    relationships,
)
from ml.health.inputs import available_sources, health_inputs
from ml.health.level_bands import calibrate_bands, current_bands, last_calibration_as_of
from ml.health.weights import current_weights, fit_weights, last_fit_as_of
from ml.labels import churn_labels

OVERVIEW_SUMMARY = "health_overview"  # the Health page's stored overview of a date (ml/health_reports.py)
TREND_DAYS = 30
TREND_TOLERANCE_DAYS = 15
REFIT_AFTER_DAYS = 30

Progress = Callable[[int, int, str, str], None]


# --------------------------------------------------------------------------- scoring


def _trend_date(connection: Connection, as_of: dt.date) -> dt.date | None:
    """The stored as_of nearest to as_of - 30 days, within 15 days, before as_of."""
    target = as_of - dt.timedelta(days=TREND_DAYS)
    h = AccountHealthScore
    dates = connection.execute(
        select(h.as_of).where(h.as_of >= target - dt.timedelta(days=TREND_TOLERANCE_DAYS),
                              h.as_of <= target + dt.timedelta(days=TREND_TOLERANCE_DAYS),
                              h.as_of < as_of).distinct()
    ).scalars().all()
    if not dates:
        return None
    return min(dates, key=lambda d: (abs((d - target).days), d))


def _previous_overall(connection: Connection, as_of: dt.date) -> tuple[pd.Series, dt.date | None]:
    earlier = _trend_date(connection, as_of)
    if earlier is None:
        return pd.Series(dtype="float64"), None
    rows = connection.execute(
        select(AccountHealthScore.customer_id, AccountHealthScore.overall).where(AccountHealthScore.as_of == earlier)
    ).all()
    return pd.Series({r.customer_id: r.overall for r in rows}, dtype="float64"), earlier


def _register_if_changed(session: Session, as_of: dt.date, weights: dict, info: dict, bands: dict) -> int:
    """A new 'health' registry version when the weights or bands differ from the active one; the active version."""
    active = session.scalar(select(MLModel).where(MLModel.name == "health", MLModel.is_active.is_(True)))
    params = {"weights": weights, "thresholds": bands, "source": info.get("source", "default")}
    if active is not None and active.params == params:
        return active.version
    fit = info.get("fit") or {}
    metrics = dict(fit.get("metrics") or {})
    scorer = HealthScorer(weights=weights, thresholds=tuple(bands.items()), metrics=metrics)
    row = registry.register(
        session, "health", "weighted_components", scorer, params=params, features=list(COMPONENTS),
        training_end=dt.date.fromisoformat(fit["as_of"]) if fit.get("as_of") else as_of, metrics=metrics,
    )
    return row.version


def score_health(engine: Engine, as_of: dt.date, *, progress: Progress | None = None,
                 refit_after_days: int | None = REFIT_AFTER_DAYS, actor: platform.Actor = platform.SYSTEM) -> dict:
    """Score every live account as of a date, in one transaction.

    Live accounts have bought and ordered within the lifecycle rule's `churned_days`; churned and
    never-bought customers are counted apart (`account_health_runs`), not scored. Levels follow the
    bands in force (`level_bands`), calibrated again whenever the weights are refitted.
    Replaces the stored scores for that as_of (bulk insert) and registers a 'health' model version
    when the weights changed; the analytics snapshot reads the scores of its date when it is next
    built (the snapshot step of the batch refresh is the only writer of `customer_analytics`).
    First refits the weights (`fit_weights`) when they were never fitted or the last fit is at
    least `refit_after_days` before as_of (None: never refit here).
    Returns customers scored, counts per level, the weights and their source, whether it refitted,
    the trend date and the model version. `actor` needs "refresh.run" (the batch refresh runs as SYSTEM).
    """
    platform.require(actor, "refresh.run")
    steps = 4

    def report(step: int, label: str, detail: str) -> None:
        if progress:
            progress(step, steps, label, detail)

    with platform.unit_of_work(engine) as session:
        connection = session.connection()
        last_fit = last_fit_as_of(session)
        refit = refit_after_days is not None and (last_fit is None or (as_of - last_fit).days >= refit_after_days)
        if refit:
            fit_weights(session, as_of)
        if refit or (refit_after_days is not None and last_calibration_as_of(session) is None):
            calibrate_bands(session, as_of)
        weights, info, _ = current_weights(session)
        bands, band_info, _ = current_bands(session)
        churned_days = segmentation.churned_after_days(session)
        inputs = health_inputs(connection, as_of)
        relationship = relationships(inputs, churned_days)
        components = components_from_inputs(inputs, available_sources(connection, as_of))
        overall = overall_score(components, weights)
        live = relationship == "live"
        scored = live & ~np.isnan(overall)  # a live account without data for any weighted component is not scored
        inputs, components, overall = inputs[scored], components[scored], overall[scored]
        without_data = [name for name in COMPONENTS if not components[name].notna().any()]
        apart = {"churned": int((relationship == "churned").sum()),
                 "never_bought": int((relationship == "never_bought").sum())}
        report(1, "Health components", f"{len(components):,} live accounts; {apart['churned']:,} churned and "
               f"{apart['never_bought']:,} never bought shown apart"
               + (f"; no data for {', '.join(without_data)}" if without_data else ""))

        levels = levels_for(overall, bands)
        previous, trend_date = _previous_overall(connection, as_of)
        trend = np.round(overall - previous.reindex(components.index).to_numpy(dtype="float64"), 2)
        advice = advice_columns(components, levels, indicator_flags(inputs, trend))
        report(2, "Health levels and advice", f"trend against {trend_date or 'no earlier score'}")

        rows = components.assign(overall=overall, level=levels, trend=trend).join(advice)
        rows = rows.reset_index().assign(as_of=as_of.isoformat())  # ISO text: a DATE on both backends
        connection.execute(delete(AccountHealthScore).where(AccountHealthScore.as_of == as_of))
        # The Health page's stored overview of this date no longer holds (the batch stores the new one).
        connection.execute(delete(RollupSummary).where(RollupSummary.as_of == as_of,
                                                       RollupSummary.name == OVERVIEW_SUMMARY))
        bulk.load(connection, AccountHealthScore.__table__, rows)
        connection.execute(delete(AccountHealthRun).where(AccountHealthRun.as_of == as_of))
        session.add(AccountHealthRun(as_of=as_of, scored=len(rows), churned=apart["churned"],
                                     never_bought=apart["never_bought"], churned_after_days=churned_days,
                                     thresholds=bands, bands_source=band_info.get("source", "default")))
        report(3, "Health scores written", f"{len(rows):,} rows")

        version = _register_if_changed(session, as_of, weights, info, bands)
        report(4, "Health model registered", f"version {version}")
        counts = pd.Series(levels).value_counts()
        per_level = {level: int(counts.get(level, 0)) for level in HEALTH_LEVELS}
        platform.record_audit(session, actor, "health.score", "health", as_of.isoformat(),
                              after={"customers": len(rows), **per_level, **apart, "model_version": version})
        return {
            "as_of": as_of, "customers": len(rows), "levels": per_level, **apart, "bands": bands,
            "bands_source": band_info.get("source", "default"),
            "weights": weights, "weights_source": info.get("source", "default"),
            "refitted": refit, "trend_against": trend_date, "model_version": version,
            "components_without_data": without_data,
        }


# --------------------------------------------------------------------------- backtest


def backtest_levels(connection: Connection, as_of: dt.date, lag_days: int) -> pd.DataFrame:
    """How well the levels stored lag_days before as_of predicted churn up to as_of.

    Uses the latest stored as_of on or before as_of - lag_days. One row per level (customers with
    a stored score who had ordered by then, churned = no revenue order from then to as_of) with
    the churn rate; `attrs` holds scored_as_of, horizon_days, customers, churn_rate, the AUC of
    (100 - overall) for churn (None when one class is missing), `rates_rise` (whether the churn
    rate rises strictly from excellent to critical over the levels with accounts) and the bands
    applied then. Empty when no score is old enough.
    """
    if isinstance(lag_days, bool) or not isinstance(lag_days, int) or lag_days < 1:
        raise platform.ValidationError("The backtest lag must be a whole number of days, at least 1.")
    columns = ["level", "customers", "churned", "churn_rate", "avg_overall"]
    h = AccountHealthScore
    scored_as_of = connection.scalar(select(func.max(h.as_of)).where(h.as_of <= as_of - dt.timedelta(days=lag_days)))
    empty = pd.DataFrame(columns=columns)
    if scored_as_of is None:
        empty.attrs.update(scored_as_of=None, horizon_days=None, customers=0, churn_rate=None, auc=None,
                           rates_rise=None, bands=None, bands_source=None)
        return empty
    horizon = (as_of - scored_as_of).days
    labels = churn_labels(connection, scored_as_of, horizon)
    rows = connection.execute(select(h.customer_id, h.overall, h.level).where(h.as_of == scored_as_of)).all()
    scores = pd.DataFrame(rows, columns=["customer_id", "overall", "level"]).set_index("customer_id")
    joined = scores.join(labels, how="inner")
    grouped = joined.groupby("level")
    table = pd.DataFrame({
        "customers": grouped.size(), "churned": grouped["churned"].sum(), "avg_overall": grouped["overall"].mean(),
    }).reindex(list(HEALTH_LEVELS)).fillna({"customers": 0, "churned": 0})
    table["customers"] = table["customers"].astype(int)
    table["churned"] = table["churned"].astype(int)
    table["churn_rate"] = np.where(table["customers"] > 0, table["churned"] / table["customers"].clip(lower=1), np.nan)
    table["avg_overall"] = table["avg_overall"].round(2)
    table = table.rename_axis("level").reset_index()[columns]
    y = joined["churned"].to_numpy()
    auc = float(roc_auc_score(y, 100 - joined["overall"].to_numpy())) if 0 < y.sum() < len(y) else None
    run = connection.execute(select(AccountHealthRun.thresholds, AccountHealthRun.bands_source)
                             .where(AccountHealthRun.as_of == scored_as_of)).first()
    rates = [{"accounts": int(n), "churn_rate": None if n == 0 else float(rate)}
             for n, rate in zip(table["customers"], table["churn_rate"], strict=True) if n > 0]
    table.attrs.update(scored_as_of=scored_as_of, horizon_days=horizon, customers=len(joined),
                       churn_rate=float(y.mean()) if len(y) else None,
                       auc=None if auc is None else round(auc, 4),
                       rates_rise=rates_rise(rates),
                       bands=None if run is None else dict(run.thresholds),
                       bands_source=None if run is None else run.bands_source)
    return table
