"""AppTest of the Campaigns page as each role uses it: the list and results of the simulated
campaigns, the builder's preview and power calculation, launching, bad input, uplift training."""

from __future__ import annotations

from sqlalchemy import func, select

from db.engine import make_engine
from db.models import CustomerCommunication, WinbackCampaign, WinbackTarget
from ui.format import plain

from .apptest_support import open_page, titles


def _scalar(app_db, statement):
    engine = make_engine(app_db)
    try:
        with engine.connect() as connection:
            return connection.execute(statement).scalar()
    finally:
        engine.dispose()


def _text(at, kind: str) -> str:
    return " ".join(str(e.value) for e in getattr(at, kind))


def test_executive_reads_campaigns_and_results_but_cannot_build(app, app_db):
    at = open_page(app, "exec1", "campaigns")
    assert not at.exception
    assert titles(at) == ["Campaigns"]
    metrics = {m.label: m.value for m in at.metric}
    campaigns = _scalar(app_db, select(func.count()).select_from(WinbackCampaign))
    enrolled = _scalar(app_db, select(func.count()).select_from(WinbackTarget))
    assert campaigns >= 4
    assert metrics["Campaigns"] == f"{campaigns:,}" and metrics["Customers enrolled"] == f"{enrolled:,}"
    assert [t.label for t in at.tabs] == ["Campaigns", "Results", "Uplift model"]
    listed = at.dataframe[0].value
    assert listed["Campaign"].str.startswith("Win-back").sum() >= 4
    # The launch shows as a day, so the column fits; a draft's launch is blank, not "None".
    assert '"YYYY-MM-DD"' in at.dataframe[0].proto.columns and at.dataframe[0].proto.placeholder == ""
    # Results of the first campaign in the list: both groups and the differences with intervals.
    assert "Conversion, treatment" in metrics and "Conversion, control" in metrics
    assert "Incremental ROI" in metrics
    # The refresh stored them; recomputing on demand gives the same figures as of now.
    assert "Results as the refresh computed them" in _text(at, "caption")
    recompute = [b for b in at.button if b.key and b.key.startswith("recompute_")]
    assert len(recompute) == 1
    at = recompute[0].click().run()
    assert not at.exception and "Results as the refresh computed them" not in _text(at, "caption")
    live = {m.label: m.value for m in at.metric}
    assert live["Conversion, treatment"] == metrics["Conversion, treatment"]
    assert not [b for b in at.button if b.key in ("launch_campaign", "finish_campaign")]
    assert "No uplift model yet." in _text(at, "info")


def test_analyst_previews_saves_and_launches_a_campaign(app, app_db):
    at = open_page(app, "analyst1", "campaigns")
    assert "New campaign" in [t.label for t in at.tabs]
    at.selectbox(key="builder_trigger").set_value("no_order")
    at.run()
    at.number_input(key="builder_days").set_value(45)
    at.button(key="builder_preview").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert "Qualifying" in metrics and "Reachable" in metrics and "Holdout (power calculation)" in metrics
    reachable = int(metrics["Reachable"].replace(",", ""))
    assert int(metrics["Qualifying"].replace(",", "")) >= reachable > 0
    assert "Baseline conversion without a campaign" in _text(at, "caption")
    # A holdout set by hand is what the preview shows, with that holdout's power.
    at.radio(key="builder_holdout").set_value("Set by hand")
    at.slider(key="builder_share").set_value(12)
    at.button(key="builder_preview").click().run()
    by_hand = {m.label: m.value for m in at.metric}
    assert by_hand.get("Holdout (set by hand)") == "12%" and "Holdout (power calculation)" not in by_hand
    assert "The 12% holdout set by hand" in _text(at, "success") + _text(at, "warning")
    at.radio(key="builder_holdout").set_value("Sized by the power calculation")

    # Saving without a name is refused with a message, and nothing is saved.
    before = _scalar(app_db, select(func.count()).select_from(WinbackCampaign))
    at.button(key="builder_save").click().run()
    assert "The campaign name is required." in _text(at, "error")
    assert _scalar(app_db, select(func.count()).select_from(WinbackCampaign)) == before

    at.text_input(key="builder_name").input("Apptest win-back")
    at.selectbox(key="builder_offer_type").set_value("voucher")
    at.number_input(key="builder_offer_value").set_value(10.0)
    at.button(key="builder_save").click().run()
    assert not at.exception
    assert f"Saved the draft {plain('Apptest win-back')}" in _text(at, "success")
    campaign_id = _scalar(app_db, select(WinbackCampaign.id).where(WinbackCampaign.name == "Apptest win-back"))

    drafts = at.selectbox(key="campaign_action_choice")
    drafts.select_index(next(i for i, label in enumerate(drafts.options) if label.startswith("Apptest win-back")))
    at.run()
    at.button(key="launch_campaign").click().run()
    assert not at.exception
    assert f"Launched {plain('Apptest win-back')}" in _text(at, "success")
    enrolled = _scalar(app_db, select(func.count()).where(WinbackTarget.campaign_id == campaign_id))
    sent = _scalar(app_db, select(func.count()).where(CustomerCommunication.campaign_id == campaign_id))
    treated = _scalar(app_db, select(func.count()).where(WinbackTarget.campaign_id == campaign_id,
                                                         WinbackTarget.target_group == "treatment"))
    assert enrolled == reachable and sent == treated > 0


def test_bad_offer_is_refused_with_a_message(app):
    at = open_page(app, "csm1", "campaigns")
    at.text_input(key="builder_name").input("Too generous")
    at.selectbox(key="builder_offer_type").set_value("percent_discount")
    at.number_input(key="builder_offer_value").set_value(95.0)
    at.button(key="builder_save").click().run()
    assert not at.exception
    assert "The offer must be a discount of at most 90%." in _text(at, "error")


def test_training_the_uplift_model_says_why_it_cannot_learn_on_a_small_shop(app):
    at = open_page(app, "analyst1", "campaigns")
    at.button(key="uplift_train").click().run()
    assert not at.exception
    errors = _text(at, "error") + _text(at, "success")
    assert "Too little to learn from" in errors or "Trained an uplift model" in errors
