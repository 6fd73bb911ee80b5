"""The Referrals page under AppTest on the demo database: the figures, codes and attribution, settings,
and bad input refused with a message."""

from __future__ import annotations

import json

from sqlalchemy import delete, select

from crm_core import platform, referrals
from db.engine import make_engine
from db.models import AppSetting, Customer, Referral

from .apptest_support import open_page, titles


def _one(widgets, label):
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r}: {[w.label for w in widgets]}"
    return found[0]


def _errors(at):
    return [e.value for e in at.error]


def test_an_executive_reads_the_programme(app, app_db):
    engine = make_engine(app_db)
    with platform.unit_of_work(engine) as s:
        kpis = referrals.referral_kpis(s, platform.SYSTEM, platform.data_date(s).day)
    at = open_page(app, "exec1", "referrals")
    assert not at.exception and titles(at) == ["Referrals"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Referrals"] == f"{kpis['referrals']:,}"
    assert metrics["K-factor"] == ("–" if kpis["k_factor"] is None else f"{kpis['k_factor']:.3f}")
    assert any("managed by administrators and success managers" in i.value for i in at.info)
    # Retention as a percentage and money in €, in the groups table and the charts.
    groups = next((d for d in at.dataframe if '"90-day retention"' in d.proto.columns), None)
    if kpis["referrals"]:  # the demo data has referrals; a programme without any shows no table
        formats = {name: column.get("type_config", {}).get("format") for name, column in json.loads(groups.proto.columns).items()}
        assert (formats["retention_90d"], formats["revenue_per_customer"], formats["clv_12m"]) == ("percent", "€%.2f", "€%.2f")
        charts = {f["layout"]["title"]["text"]: f for f in (json.loads(c.proto.spec) for c in at.get("plotly_chart"))}
        assert charts["Ordered in the last 90 days"]["layout"]["yaxis"]["tickformat"] == ".0%"
        assert charts["Revenue per customer"]["layout"]["yaxis"]["tickprefix"] == "€"
    engine.dispose()


def test_a_success_manager_creates_a_code_and_attributes_a_friend(app, app_db):
    engine = make_engine(app_db)
    with platform.unit_of_work(engine) as s:
        referrer, friend = s.execute(select(Customer.id, Customer.signed_up_at).order_by(
            Customer.signed_up_at.desc()).limit(2)).all()[::-1]
        already = s.scalar(select(Referral.id).where(Referral.referred_id == friend[0]))
    at = open_page(app, "csm1", "referrals")
    assert not at.exception
    at.number_input(key="referral_code_customer").set_value(referrer[0])
    at = _one(at.button, "Show or create the code").click().run()
    shown = [t.value for t in at.text if t.value.startswith("Code ")]
    assert shown, _errors(at)
    code = shown[0].split()[1]
    _one(at.number_input, "Friend's customer id").set_value(friend[0])
    _one(at.text_input, "Referral code").input("WRONGCODE1")
    at = _one(at.button, "Attribute").click().run()
    assert "No referral code 'WRONGCODE1'." in _errors(at)
    _one(at.text_input, "Referral code").input(code)
    _one(at.date_input, "Link used on").set_value(friend[1].date().replace(year=friend[1].year - 1))
    at = _one(at.button, "Attribute").click().run()
    assert any("outside the 30-day attribution window" in e for e in _errors(at))
    _one(at.date_input, "Link used on").set_value(friend[1].date())
    _one(at.time_input, "at").set_value(friend[1].time().replace(second=0, microsecond=0))
    at = _one(at.button, "Attribute").click().run()
    assert not _errors(at), _errors(at)
    with platform.unit_of_work(engine) as s:
        referral = s.scalar(select(Referral).where(Referral.referred_id == friend[0]))
        assert referral is not None
        if already is None:
            assert referral.referrer_id == referrer[0]
    engine.dispose()


def test_an_admin_saves_settings_and_bad_ones_are_refused(app, app_db):
    at = open_page(app, "admin1", "referrals")
    assert not at.exception
    _one(at.text_input, "Link base").input("shop.example/r/")
    at = _one(at.button, "Save settings").click().run()
    assert "The link base is a web address starting with https://." in _errors(at)
    _one(at.text_input, "Link base").input("https://shop.example/invite/")
    _one(at.number_input, "Return window before payout (days)").set_value(14)
    at = _one(at.button, "Save settings").click().run()
    assert not _errors(at) and any("Referral settings saved" in s.value for s in at.success)
    engine = make_engine(app_db)
    with platform.unit_of_work(engine) as s:
        settings, _ = referrals.get_referral_settings(s)
        assert settings["return_window_days"] == 14 and settings["link_base"] == "https://shop.example/invite/"
        s.execute(delete(AppSetting).where(AppSetting.key == "referral_settings"))  # the shared database as it was
    engine.dispose()
