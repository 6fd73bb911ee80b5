"""The health weights in force: the "health_weights" app setting, fitted by `fit_weights` or set by
an admin, saved with a version check and an audit row like every admin setting (crm_core.platform).
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from sqlalchemy import (
    func,
    select,
)
from sqlalchemy.orm import Session

from crm_core import platform, segmentation
from db.models import (
    Customer,
    utcnow,
)
from ml.health.estimator import COMPONENTS, HealthWeightFitter, components_from_inputs, equal_weights, relationships
from ml.health.inputs import available_sources, health_inputs
from ml.labels import DEFAULT_HORIZON_DAYS, churn_labels

WEIGHTS_KEY = "health_weights"


FIT_SAMPLE = 100_000  # customers the weight fit reads at most (about)


def _stored(session: Session) -> tuple[dict[str, Any] | None, int]:
    return platform.stored_setting(session, WEIGHTS_KEY)


def _save(session: Session, actor: platform.Actor, value: dict[str, Any], expected_version: int | None, action: str) -> int:
    return platform.save_setting(session, actor, WEIGHTS_KEY, value, expected_version, what="The health weights",
                                 action=action)


def current_weights(session: Session) -> tuple[dict[str, float], dict[str, Any], int]:
    """The weights in force, the whole setting (source, last fit) and its version (0 = never saved)."""
    value, version = _stored(session)
    if value is None or not value.get("weights"):
        return equal_weights(), {"source": "default", "fit": None}, version
    return dict(value["weights"]), value, version


def last_fit_as_of(session: Session) -> dt.date | None:
    """The as_of of the last `fit_weights` (None when never fitted), to decide when to refit."""
    value, _ = _stored(session)
    fit = (value or {}).get("fit")
    return dt.date.fromisoformat(fit["as_of"]) if fit else None


def fit_weights(session: Session, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS) -> dict:
    """Fit the default weights: components at as_of - horizon against churn over the next horizon.

    Stores the fit in the "health_weights" setting (with an audit row) and makes its weights the
    ones in force unless an admin has set them by hand. Returns the fit: weights, metrics,
    `fallback_reason` (None when fitted), `applied` (whether the weights are now in force).
    """
    if horizon_days < 1:
        raise platform.ValidationError("The churn horizon must be at least one day.")
    feature_date = as_of - dt.timedelta(days=horizon_days)
    connection = session.connection()
    # Five weights need a sample, not millions of customers: every n-th id, about FIT_SAMPLE of them.
    customers = connection.scalar(select(func.count()).select_from(Customer)) or 0
    sample_every = max(1, customers // FIT_SAMPLE)
    labels = churn_labels(connection, feature_date, horizon_days, sample_every=sample_every)
    inputs = health_inputs(connection, feature_date, sample_every)
    live = relationships(inputs, segmentation.churned_after_days(session)) == "live"  # weights for accounts, not for the gone
    components = components_from_inputs(inputs[live], available_sources(connection, feature_date))
    joined = components.join(labels, how="inner")
    fitter = HealthWeightFitter().fit(joined[list(COMPONENTS)], joined["churned"])
    fit = {
        "weights": fitter.weights_, "metrics": fitter.metrics(), "fallback_reason": fitter.fallback_reason_,
        "as_of": as_of.isoformat(), "feature_date": feature_date.isoformat(), "horizon_days": horizon_days,
        "fitted_at": utcnow().isoformat(timespec="seconds"),
    }
    value, version = _stored(session)
    applied = value is None or value.get("source") != "admin"
    new_value = {
        "weights": value["weights"] if value is not None and not applied else fitter.weights_,
        "source": ("fitted" if fitter.fallback_reason_ is None else "equal") if applied else "admin",
        "fit": fit,
    }
    _save(session, platform.SYSTEM, new_value, version, "health.weights.fit")
    return {**fit, "applied": applied}


def validate_weights(weights: Any) -> dict[str, float]:
    """Five non-negative numbers, one per component, summing to more than 0; normalised to sum 1."""
    if not isinstance(weights, dict):
        raise platform.ValidationError("Weights must be a mapping of component name to number.")
    unknown = sorted(set(weights) - set(COMPONENTS))
    if unknown:
        raise platform.ValidationError(f"Unknown component(s): {', '.join(map(str, unknown))}; "
                              f"the components are {', '.join(COMPONENTS)}.")
    missing = [name for name in COMPONENTS if name not in weights]
    if missing:
        raise platform.ValidationError(f"Give a weight for every component; missing: {', '.join(missing)}.")
    for name in COMPONENTS:
        value = weights[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise platform.ValidationError(f"The weight of {name} must be a number, not {value!r}.")
        if value < 0:
            raise platform.ValidationError(f"The weight of {name} must not be negative (got {value:g}).")
    total = float(sum(weights[name] for name in COMPONENTS))
    if total <= 0:
        raise platform.ValidationError("At least one weight must be above 0.")
    return {name: round(float(weights[name]) / total, 6) for name in COMPONENTS}


def get_weights(session: Session, viewer: platform.Actor) -> dict[str, Any]:
    """For the page: weights in force, where they come from, the last fit and the setting version."""
    platform.require(viewer, "health.view")
    weights, value, version = current_weights(session)
    return {"weights": weights, "source": value.get("source", "default"), "fit": value.get("fit"),
            "version": version}


def save_weights(session: Session, actor: platform.Actor, weights: Any, expected_version: int | None) -> tuple[dict[str, float], int]:
    """An admin sets the weights by hand (normalised to sum 1); refitting then keeps them."""
    platform.require(actor, "models.manage")
    normalised = validate_weights(weights)
    value, _ = _stored(session)
    new_value = {"weights": normalised, "source": "admin", "fit": None if value is None else value.get("fit")}
    return normalised, _save(session, actor, new_value, expected_version, "health.weights.save")


def reset_weights(session: Session, actor: platform.Actor, expected_version: int | None) -> tuple[dict[str, float], int]:
    """Go back to the fitted weights (equal weights when nothing was fitted yet)."""
    platform.require(actor, "models.manage")
    value, _ = _stored(session)
    fit = None if value is None else value.get("fit")
    weights = fit["weights"] if fit else equal_weights()
    source = "fitted" if fit and fit.get("fallback_reason") is None else "equal"
    return weights, _save(session, actor, {"weights": weights, "source": source, "fit": fit}, expected_version,
                          "health.weights.reset")
