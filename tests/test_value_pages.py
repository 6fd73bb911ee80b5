"""The "Customer value" and "Forecast" pages under AppTest, on the shared demo database."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import demo
from crm_core import platform, segmentation
from db import migrate
from db.engine import make_engine
from db.models import AppSetting, AuditLog, CustomerAnalytics, ForecastRun
from ml import forecast_reports
from ml.clv import refresh_lifetime_value
from ml.forecast import refresh_forecasts
from ui.format import compact_euros

from .apptest_support import APP, open_page, open_tab, titles


@pytest.fixture(scope="session")
def valued_db(app_db) -> str:
    """The demo database with lifetime values and forecasts: fitted here unless the shared refresh did."""
    engine = make_engine(app_db)
    with engine.connect() as connection:
        as_of = connection.scalar(select(func.max(CustomerAnalytics.as_of))) or dt.date.today()
        scored = connection.scalar(select(func.count()).where(CustomerAnalytics.clv_12m.is_not(None)))
        fitted = connection.scalar(select(func.count()).select_from(ForecastRun).where(ForecastRun.status == "fitted"))
    if not scored:
        clv = refresh_lifetime_value(engine, as_of)
        assert clv["status"] == "fitted", clv
        with platform.unit_of_work(engine) as session:  # as the next refresh does: the snapshot picks them up
            segmentation.refresh_snapshot(session, as_of)
    if not fitted:
        forecasts = refresh_forecasts(engine, as_of, horizon_days=30)
        assert {r["status"] for r in forecasts["metrics"].values()} == {"fitted"}, forecasts
    engine.dispose()
    return app_db


@pytest.fixture
def valued_app(valued_db, app):
    return app


def _metrics(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_customer_value_page_shows_the_scored_snapshot(valued_app, valued_db):
    at = open_page(valued_app, "analyst1", "customer_value")
    assert not at.exception
    assert titles(at) == ["Customer value"]
    with make_engine(valued_db).connect() as connection:
        scored, clv_total, top = connection.execute(
            select(func.count(), func.sum(CustomerAnalytics.clv_12m), func.max(CustomerAnalytics.clv_12m))
            .where(CustomerAnalytics.clv_12m.is_not(None))
        ).one()
    metrics = _metrics(at)
    assert metrics["Customers scored"] == f"{scored:,}"
    assert metrics["12-month CLV"] == compact_euros(float(clv_total))
    # Five metrics share a row: each label fits its box at 1440 px ("Purchases, next 12 months" was cut
    # off), the horizon is in the help.
    assert all(len(label) <= 20 for label in metrics)
    expected = next(m for m in at.metric if m.label == "Expected purchases")
    assert "next 12 months" in expected.help
    assert scored > 100
    assert len(at.get("plotly_chart")) == 1  # the distribution: other tabs are built when opened
    charts = [open_tab(at, "value_tab", tab).get("plotly_chart") for tab in ("Probability alive", "By segment")]
    assert [len(c) for c in charts] == [1, 1]  # P(alive) heatmap, CLV by segment
    open_tab(at, "value_tab", "Top customers")
    top_table = next(d.value for d in at.dataframe if "clv_12m" in d.value.columns)
    assert len(top_table) == min(50, scored)
    assert top_table["clv_12m"].iloc[0] == pytest.approx(float(top))
    assert list(top_table["clv_12m"]) == sorted(top_table["clv_12m"], reverse=True)
    assert any(f"{scored:,} customers by 12-month CLV" in c.value for c in at.caption)


def test_success_manager_sees_customer_value_and_the_model_tab(valued_app):
    at = open_page(valued_app, "csm1", "customer_value")
    assert not at.exception
    assert titles(at) == ["Customer value"]
    open_tab(at, "value_tab", "Model")
    assert any("Version" in c.value and "bgnbd+gamma_gamma" in c.value for c in at.caption)


def test_forecast_page_shows_each_metric_with_its_backtest_error(valued_app, valued_db):
    at = open_page(valued_app, "exec1", "forecast")
    assert not at.exception
    assert titles(at) == ["Forecast"]
    with platform.unit_of_work(make_engine(valued_db)) as s:
        runs = forecast_reports.latest_runs(s, platform.SYSTEM)
    shown = [m.value for m in at.metric if m.label == "Backtest MAPE"]
    assert shown == [f"{r['mape']:.1%}" for r in runs]
    assert len(at.get("plotly_chart")) == 3
    assert [m.label for m in at.metric if m.label.startswith("Next")] == [
        f"Next {min(30, r['horizon_days'])} days (forecast)" for r in runs]
    assert not [e for e in at.expander if "Holiday calendar" in e.label]  # executives do not edit settings
    # The backtest table sits in a narrow column: three short columns fit it (the folds' days are a caption).
    assert [list(d.value.columns) for d in at.dataframe] == [["origin", "mape", "interval_coverage"]] * 3


def test_admin_changes_the_shop_country_through_the_form(valued_app, valued_db):
    engine = make_engine(valued_db)
    at = open_page(valued_app, "admin1", "forecast")
    assert not at.exception
    box = next(s for s in at.selectbox if s.label.startswith("Shop country"))
    assert box.value == platform.get_shop_country(platform.unit_of_work(engine).__enter__())[0]
    box.select("AT")
    next(b for b in at.button if b.label == "Save country").click().run()
    assert not at.exception
    assert any("Shop country set to Austria" in s.value for s in at.success)
    with engine.connect() as connection:
        assert connection.scalar(select(AppSetting.value).where(AppSetting.key == "shop_country")) == {"country": "AT"}
        assert connection.scalar(select(func.count()).select_from(AuditLog)
                                 .where(AuditLog.action == "forecast.country.save")) >= 1
    with platform.unit_of_work(engine) as s:
        platform.save_shop_country(s, platform.SYSTEM, "DE", expected_version=None)


def test_a_country_changed_meanwhile_is_a_conflict_not_a_lost_update(valued_app, valued_db):
    engine = make_engine(valued_db)
    at = open_page(valued_app, "admin2", "forecast")
    with platform.unit_of_work(engine) as s:
        platform.save_shop_country(s, platform.SYSTEM, "FR", expected_version=None)  # someone else, meanwhile
    next(s for s in at.selectbox if s.label.startswith("Shop country")).select("NL")
    next(b for b in at.button if b.label == "Save country").click().run()
    assert not at.exception
    assert any("changed by someone else" in e.value for e in at.error)
    with platform.unit_of_work(engine) as s:
        assert platform.get_shop_country(s)[0] == "FR"
        platform.save_shop_country(s, platform.SYSTEM, "DE", expected_version=None)


@pytest.fixture(scope="module")
def unrefreshed_db(tmp_path_factory) -> str:
    url = f"sqlite:///{tmp_path_factory.mktemp('empty') / 'empty.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    demo.seed_database(engine, 20, seed=3, demo_users=True)
    engine.dispose()
    return url


@pytest.mark.parametrize("page, message", [
    ("customer_value", "No lifetime values yet: run the batch refresh"),
    ("forecast", "No forecasts yet: run the batch refresh"),
])
def test_pages_before_the_refresh_say_what_to_do(unrefreshed_db, monkeypatch, page, message):
    monkeypatch.setenv("CRM_DATABASE_URL", unrefreshed_db)
    at = AppTest.from_file(APP, default_timeout=60)
    at = open_page(at, "admin1", page)
    assert not at.exception
    assert any(message in i.value for i in at.info)
    assert not at.get("plotly_chart")


def test_skipped_forecasts_show_the_reason(unrefreshed_db, monkeypatch):
    engine = make_engine(unrefreshed_db)
    with platform.unit_of_work(engine) as s:
        s.add(ForecastRun(metric="revenue", as_of=dt.date.today(), status="skipped", horizon_days=90,
                          history_days=12, reason="Only 12 day(s) of order history; forecasts need at least 60 days."))
    monkeypatch.setenv("CRM_DATABASE_URL", unrefreshed_db)
    at = open_page(AppTest.from_file(APP, default_timeout=60), "analyst1", "forecast")
    assert not at.exception
    assert any("Only 12 day(s) of order history" in w.value for w in at.warning)
