"""Model registry (`ml_models`): every trained version with its metrics and artifact.

One version per model name is active; activating an earlier version is the rollback.
"""

from __future__ import annotations

import datetime as dt
import io
from typing import Any

import joblib
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from crm_core import platform
from db.models import MLModel


def register(
    session: Session,
    name: str,
    algorithm: str,
    model: Any,
    *,
    params: dict | None = None,
    features: list[str] | None = None,
    training_start: dt.date | None = None,
    training_end: dt.date | None = None,
    metrics: dict | None = None,
    activate: bool = True,
    actor: platform.Actor = platform.SYSTEM,
) -> MLModel:
    """Store a fitted model as the next version of `name` (and make it active by default); `actor`
    must be allowed to manage models."""
    platform.require(actor, "models.manage")
    version = (session.scalar(select(func.max(MLModel.version)).where(MLModel.name == name)) or 0) + 1
    buffer = io.BytesIO()
    joblib.dump(model, buffer)
    row = MLModel(
        name=name, version=version, algorithm=algorithm, params=params, features=features,
        training_start=training_start, training_end=training_end, metrics=metrics,
        artifact=buffer.getvalue(), is_active=False, created_by_id=actor.id,
    )
    session.add(row)
    session.flush()
    if activate:
        _activate(session, row)
    return row


def _activate(session: Session, row: MLModel) -> None:
    session.execute(update(MLModel).where(MLModel.name == row.name).values(is_active=False))
    session.execute(update(MLModel).where(MLModel.id == row.id).values(is_active=True))
    session.expire(row)


def activate(session: Session, actor: platform.Actor, model_id: int) -> MLModel:
    """Make one stored version the active one (rolling back is activating an earlier version)."""
    platform.require(actor, "models.manage")
    row = session.get(MLModel, model_id)
    if row is None:
        raise platform.NotFound(f"No model version with id {model_id}.")
    previous = session.scalar(select(MLModel.version).where(MLModel.name == row.name, MLModel.is_active.is_(True)))
    _activate(session, row)
    platform.record_audit(session, actor, "model.activate", "ml_model", row.id,
                 before={"name": row.name, "active_version": previous},
                 after={"name": row.name, "active_version": row.version})
    return row


def active(session: Session, name: str) -> tuple[MLModel, Any] | None:
    """The active version of `name` and its loaded model, or None when none is trained."""
    row = session.scalar(select(MLModel).where(MLModel.name == name, MLModel.is_active.is_(True)))
    if row is None or row.artifact is None:
        return None
    return row, joblib.load(io.BytesIO(row.artifact))


def versions(session: Session, name: str) -> list[dict]:
    rows = session.scalars(select(MLModel).where(MLModel.name == name).order_by(MLModel.version.desc())).all()
    return [
        {"id": r.id, "version": r.version, "algorithm": r.algorithm, "active": r.is_active,
         "metrics": r.metrics, "params": r.params, "created_at": r.created_at,
         "training_start": r.training_start, "training_end": r.training_end}
        for r in rows
    ]
