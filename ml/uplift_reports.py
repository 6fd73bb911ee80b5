"""What the Campaigns page reads of the uplift models: the active model's card and the versions."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core import platform
from db.models import CampaignUpliftModel
from ml.uplift import ALGORITHMS


def _card(row: CampaignUpliftModel) -> dict[str, Any]:
    metrics = row.metrics or {}
    return {
        "id": row.id, "as_of": row.as_of, "algorithm": ALGORITHMS.get(row.algorithm, row.algorithm),
        "campaign_ids": list(row.campaign_ids or []), "features": list(row.features or []),
        "train_customers": row.train_customers, "test_customers": row.test_customers,
        "qini_area": row.qini_area, "qini_area_churn": metrics.get("qini_area_churn"),
        "churn_basis": metrics.get("churn_basis"), "qini_curve": metrics.get("qini_curve"),
        "qini_curve_churn": metrics.get("qini_curve_churn"), "top_share": metrics.get("top_share"),
        "uplift_top_model": metrics.get("uplift_top_model"), "uplift_top_churn": metrics.get("uplift_top_churn"),
        "uplift_all": metrics.get("uplift_all"), "unused_features": metrics.get("unused_features", []),
        "is_active": row.is_active, "created_at": row.created_at,
    }


def active_model(session: Session, viewer: platform.Actor) -> dict[str, Any] | None:
    """The active uplift model's card (Qini curves included), or None when none is trained."""
    platform.require(viewer, "campaigns.view")
    row = session.scalar(select(CampaignUpliftModel).where(CampaignUpliftModel.is_active.is_(True)))
    return None if row is None else _card(row)


def model_versions(session: Session, viewer: platform.Actor, limit: int = 20) -> list[dict[str, Any]]:
    platform.require(viewer, "campaigns.view")
    rows = session.scalars(select(CampaignUpliftModel).order_by(CampaignUpliftModel.id.desc()).limit(limit)).all()
    return [{k: v for k, v in _card(r).items() if not k.startswith("qini_curve")} for r in rows]
