"""The health level bands in force: the "health_level_bands" app setting, calibrated from data by
`calibrate_bands` or set by an admin, saved with a version check and an audit row.

Calibration scores the live accounts of a sample twice, with the weights in force: at
as_of - 2 x horizon (the fit period: the bands are cut there) and at as_of - horizon (the check
period: a later period the bands did not see), each against churn over the next horizon. The check
says whether the churn rates still rise level by level. With too little history for two periods
the bands are cut on the later one and the check is left out, with that said.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import numpy as np
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core import platform, segmentation
from db.models import Customer, utcnow
from ml.health.bands import DEFAULT_BANDS, LEVELS, LevelBandCalibrator, band_table, rates_rise
from ml.health.estimator import components_from_inputs, overall_score, relationships
from ml.health.inputs import available_sources, health_inputs
from ml.health.weights import FIT_SAMPLE, current_weights
from ml.labels import DEFAULT_HORIZON_DAYS, churn_labels

BANDS_KEY = "health_level_bands"


def current_bands(session: Session) -> tuple[dict[str, float], dict[str, Any], int]:
    """The bands in force, the whole setting (source, last calibration) and its version (0 = never saved)."""
    value, version = platform.stored_setting(session, BANDS_KEY)
    if value is None or not value.get("bands"):
        return dict(DEFAULT_BANDS), {"source": "default", "calibration": None}, version
    return {level: float(v) for level, v in value["bands"].items()}, value, version


def last_calibration_as_of(session: Session) -> dt.date | None:
    value, _ = platform.stored_setting(session, BANDS_KEY)
    calibration = (value or {}).get("calibration")
    return dt.date.fromisoformat(calibration["as_of"]) if calibration else None


def _live_scores(session: Session, feature_date: dt.date, horizon_days: int, weights: dict[str, float],
                 churned_days: int, sample_every: int) -> tuple[np.ndarray, np.ndarray]:
    """Overall scores of the live accounts at `feature_date` and whether each churned over the horizon."""
    connection = session.connection()
    inputs = health_inputs(connection, feature_date, sample_every)
    live = relationships(inputs, churned_days) == "live"
    components = components_from_inputs(inputs[live], available_sources(connection, feature_date))
    overall = overall_score(components, weights)
    labels = churn_labels(connection, feature_date, horizon_days, sample_every=sample_every)
    churned = labels.reindex(components.index)
    scored = ~np.isnan(overall) & churned.notna().to_numpy()
    return overall[scored], churned.to_numpy()[scored].astype(int)


def calibrate_bands(session: Session, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS) -> dict[str, Any]:
    """Cut the level bands from data (see the module docstring) and store the calibration.

    The calibrated bands come into force unless an admin has set bands by hand. Returns the
    calibration: bands, per-level tables of the fit and check periods, `holds`, `fallback_reason`
    and `applied`.
    """
    if horizon_days < 1:
        raise platform.ValidationError("The churn horizon must be at least one day.")
    weights, _, _ = current_weights(session)
    churned_days = segmentation.churned_after_days(session)
    customers = session.scalar(select(func.count()).select_from(Customer)) or 0
    sample_every = max(1, customers // FIT_SAMPLE)
    fit_date = as_of - dt.timedelta(days=2 * horizon_days)
    check_date = as_of - dt.timedelta(days=horizon_days)
    fit_overall, fit_churned = _live_scores(session, fit_date, horizon_days, weights, churned_days, sample_every)
    check_overall, check_churned = _live_scores(session, check_date, horizon_days, weights, churned_days, sample_every)
    calibrator = LevelBandCalibrator().fit(fit_overall, fit_churned)
    check: dict[str, Any] | None = {"feature_date": check_date.isoformat()}
    if calibrator.fallback_reason_ is not None and calibrator.fallback_reason_.startswith("too little data"):
        # Not enough history for two periods: cut on the later one and say there is no check.
        later = LevelBandCalibrator().fit(check_overall, check_churned)
        if later.fallback_reason_ is None or not later.fallback_reason_.startswith("too little data"):
            calibrator, fit_date, check = later, check_date, None
    if check is not None:
        table = band_table(check_overall, check_churned, calibrator.bands_)
        check.update(accounts=len(check_overall), table=table, holds=rates_rise(table))
    calibration = {
        "as_of": as_of.isoformat(), "horizon_days": horizon_days, "churned_after_days": churned_days,
        "bands": calibrator.bands_, "fallback_reason": calibrator.fallback_reason_,
        "schedule": list(calibrator.schedule_) if calibrator.schedule_ else None,
        "fit": {"feature_date": fit_date.isoformat(), "accounts": calibrator.n_samples_,
                "churn_rate": calibrator.churn_rate_, "table": calibrator.table_},
        "check": check, "fitted_at": utcnow().isoformat(timespec="seconds"),
    }
    value, version = platform.stored_setting(session, BANDS_KEY)
    applied = value is None or value.get("source") != "admin"
    new_value = {
        "bands": calibrator.bands_ if applied else (value or {})["bands"],
        "source": ("calibrated" if calibrator.fallback_reason_ is None else "default") if applied else "admin",
        "calibration": calibration,
    }
    platform.save_setting(session, platform.SYSTEM, BANDS_KEY, new_value, version, what="The health level bands",
                          action="health.bands.calibrate")
    return {**calibration, "applied": applied}


def validate_bands(bands: Any) -> dict[str, float]:
    """Four cut points (the lowest score of excellent, good, fair and poor) above 0, at most 100, falling."""
    if not isinstance(bands, dict):
        raise platform.ValidationError("Level bands must be a mapping of level to its lowest score.")
    unknown = sorted(set(map(str, bands)) - set(LEVELS[:-1]))
    if unknown:
        raise platform.ValidationError(f"Unknown level(s): {', '.join(unknown)}; give the lowest score of excellent, "
                                       "good, fair and poor (critical is everything below poor).")
    cleaned: dict[str, float] = {}
    for level in LEVELS[:-1]:
        value = bands.get(level)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise platform.ValidationError(f"The lowest score of {level} must be a number, not {value!r}.")
        if not 0 < value <= 100:
            raise platform.ValidationError(f"The lowest score of {level} must be above 0 and at most 100 (got {value:g}).")
        cleaned[level] = round(float(value), 2)
    for higher, lower in zip(LEVELS[:-2], LEVELS[1:-1], strict=True):
        if cleaned[lower] >= cleaned[higher]:
            raise platform.ValidationError(f"The lowest score of {lower} ({cleaned[lower]:g}) must be below that of "
                                           f"{higher} ({cleaned[higher]:g}).")
    return cleaned


def save_bands(session: Session, actor: platform.Actor, bands: Any, expected_version: int | None) -> dict[str, float]:
    """An admin sets the bands by hand (validated, versioned, audited); calibration then leaves them alone."""
    platform.require(actor, "models.manage")
    cleaned = validate_bands(bands)
    value, _ = platform.stored_setting(session, BANDS_KEY)
    new_value = {"bands": cleaned, "source": "admin", "calibration": (value or {}).get("calibration")}
    platform.save_setting(session, actor, BANDS_KEY, new_value, expected_version, what="The health level bands",
                          action="health.bands.save")
    return cleaned


def reset_bands(session: Session, actor: platform.Actor, expected_version: int | None) -> dict[str, float]:
    """Back to the calibrated bands (the default bands when calibration fell back or never ran)."""
    platform.require(actor, "models.manage")
    value, _ = platform.stored_setting(session, BANDS_KEY)
    calibration = (value or {}).get("calibration")
    calibrated = calibration is not None and calibration.get("fallback_reason") is None
    bands = dict(calibration["bands"]) if calibrated and calibration else dict(DEFAULT_BANDS)
    new_value = {"bands": bands, "source": "calibrated" if calibrated else "default", "calibration": calibration}
    platform.save_setting(session, actor, BANDS_KEY, new_value, expected_version, what="The health level bands",
                          action="health.bands.reset")
    return bands


def calibration_describes(calibration: dict[str, Any] | None, bands: dict[str, float] | None) -> bool:
    """Whether a calibration's churn rates per level are those of levels cut with `bands`: true only
    when they are the bands it found (an admin's bands cut other levels, whose rates it never measured)."""
    if not calibration or not bands or not calibration.get("bands"):
        return False
    return all(math.isclose(float(calibration["bands"][level]), float(bands[level])) for level in LEVELS[:-1])


def get_bands(session: Session, viewer: platform.Actor) -> dict[str, Any]:
    """For the page: the bands in force, where they come from, the last calibration and the version."""
    platform.require(viewer, "health.view")
    bands, value, version = current_bands(session)
    return {"bands": bands, "source": value.get("source", "default"), "calibration": value.get("calibration"),
            "version": version}
