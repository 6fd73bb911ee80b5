"""Campaign measurement against the simulated truth, uplift targeting against churn-risk targeting,
and the refresh step that enrols newly qualifying customers (issue 17)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

import demo
from batch import refresh
from crm_core import campaigns, platform
from db.engine import session_factory
from db.models import CampaignUpliftModel, CustomerCommunication, WinbackCampaign, WinbackTarget
from ml import uplift

END = dt.datetime(2026, 6, 30, 18, 0)


@pytest.fixture
def shop(engine):
    result = demo.seed_database(engine, 6000, seed=7, end=END)
    return engine, result.campaign_truth


def test_measured_effects_cover_the_simulated_truth_and_uplift_beats_churn_targeting(shop):
    engine, truth = shop
    session = session_factory(engine)()
    completed = {name: t for name, t in truth.items()
                 if session.get(WinbackCampaign, t["campaign_id"]).status == "completed"}
    assert len(completed) == 3
    for name, t in completed.items():
        result = campaigns.campaign_results(session, platform.SYSTEM, t["campaign_id"], at=END)
        assert result["windows_open_until"] is None, name
        conversion, revenue, cuped = result["conversion"], result["revenue"], result["cuped"]
        assert conversion["low"] <= t["conversion_lift"] <= conversion["high"], (name, conversion, t)
        assert revenue["low"] <= t["revenue_lift"] <= revenue["high"], (name, revenue, t)
        assert cuped["low"] <= t["revenue_lift"] <= cuped["high"], (name, cuped, t)
        assert conversion["significant"]
        # ROI at the true lift lies within the ROI interval (the costs are what the campaign paid).
        roi = result["roi"]
        treated = next(g["customers"] for g in result["groups"] if g["group"] == "treatment")
        true_roi = (t["revenue_lift"] * treated * 0.4 - roi["cost"]) / roi["cost"]
        assert roi["roi_low"] <= true_roi <= roi["roi_high"], (name, roi, true_roi)

    model = uplift.train_uplift(session, platform.SYSTEM, at=END, algorithm="two_model")
    metrics = model.metrics
    assert model.campaign_ids == sorted(t["campaign_id"] for t in completed.values())
    assert metrics["qini_area"] > 0
    assert metrics["qini_area"] > metrics["qini_area_churn"] + 0.02
    assert metrics["uplift_top_model"] > metrics["uplift_top_churn"] + 0.1
    assert session.scalar(select(func.count()).where(CampaignUpliftModel.is_active.is_(True))) == 1

    # A new campaign targeting the top 30% by uplift contacts only them, all scored.
    analyst = platform.SYSTEM
    draft = campaigns.create_campaign(session, analyst, name="Targeted", trigger={"kind": "no_order", "days": 60},
                                      channel="email", offer_type="percent_discount", offer_value=15,
                                      uplift_share=0.3, control_share=0.2, at=END)
    everyone = len(list(session.scalars(campaigns.reachable(draft.trigger, "email", END, None, draft.id))))
    counts = campaigns.launch_campaign(session, analyst, draft.id, at=END, scorer=uplift.active_scorer(session))
    assert counts["enrolled"] == -(-everyone * 3 // 10)
    scores = session.scalars(select(WinbackTarget.uplift_score).where(WinbackTarget.campaign_id == draft.id)).all()
    assert all(s is not None for s in scores)
    assert session.get(WinbackCampaign, draft.id).uplift_model_id == model.id
    session.commit()
    # Newcomers in the next refresh are ranked by the model the campaign was launched with.
    later = END + dt.timedelta(days=3)
    refresh._in_session(refresh._campaigns)(engine, later.date(), later)
    newcomers = session.execute(select(WinbackTarget.uplift_score).where(
        WinbackTarget.campaign_id == draft.id, WinbackTarget.assigned_at == later)).scalars().all()
    assert newcomers and all(score is not None for score in newcomers)
    session.close()


def test_the_refresh_enrols_newly_qualifying_customers_once(shop):
    engine, _ = shop
    step = refresh._in_session(refresh._campaigns)
    later = END + dt.timedelta(hours=1)
    outcome = step(engine, later.date(), later)
    assert outcome.status == "ok" and "1 running campaigns" in outcome.detail
    with engine.connect() as connection:
        running = connection.scalar(select(WinbackCampaign.id).where(WinbackCampaign.status == "running"))
        per_customer = connection.execute(select(WinbackTarget.customer_id, func.count())
                                          .where(WinbackTarget.campaign_id == running)
                                          .group_by(WinbackTarget.customer_id).having(func.count() > 1)).all()
        assert per_customer == []
        new = connection.scalar(select(func.count()).where(WinbackTarget.campaign_id == running,
                                                           WinbackTarget.assigned_at == later))
        sent = connection.scalar(select(func.count()).where(CustomerCommunication.campaign_id == running,
                                                            CustomerCommunication.sent_at == later))
        treated = connection.scalar(select(func.count()).where(WinbackTarget.campaign_id == running,
                                                               WinbackTarget.assigned_at == later,
                                                               WinbackTarget.target_group == "treatment"))
    assert new == outcome.rows and sent == treated
    again = step(engine, later.date(), later)
    assert again.rows == 0
    assert ("Win-back campaigns: enrol newly qualifying customers", refresh._campaigns) not in refresh.STEPS
    assert "campaigns" in [refresh.step_key(s) for _, s in refresh.STEPS]
