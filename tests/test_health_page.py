"""The Health page under AppTest: distribution, movers, drill-down, backtest, the admin weights form."""

from __future__ import annotations

import datetime as dt
import sqlite3

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import demo
from db import migrate
from db.engine import make_engine, session_factory
from db.models import HEALTH_LEVELS, AccountHealthScore, AppSetting, AuditLog, Customer, User
from ml import health
from ui.format import plain

from .apptest_support import APP, open_page, open_tab, titles

TODAY = dt.date.today()
SCORED = (TODAY - dt.timedelta(days=60), TODAY - dt.timedelta(days=30), TODAY)


@pytest.fixture(scope="module")
def scored_db(app_db):
    """The shared demo database with health scored 60 and 30 days ago and today."""
    engine = make_engine(app_db)
    for as_of in SCORED:
        health.score_health(engine, as_of)
    yield app_db
    engine.dispose()


@pytest.fixture
def page_app(scored_db, monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", scored_db)
    return AppTest.from_file(APP, default_timeout=60)


def level_counts(url: str) -> dict[str, int]:
    engine = make_engine(url)
    with engine.connect() as connection:
        rows = connection.execute(
            select(AccountHealthScore.level, func.count()).where(AccountHealthScore.as_of == TODAY)
            .group_by(AccountHealthScore.level)
        ).all()
    engine.dispose()
    return dict(rows)


def metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def test_page_shows_the_distribution_and_movers(page_app, scored_db):
    at = open_page(page_app, "analyst1", "health")
    assert not at.exception
    assert titles(at) == ["Health"]
    counts = level_counts(scored_db)
    assert metric(at, "Live accounts") == f"{sum(counts.values()):,}"
    levels = at.dataframe[0].value
    assert list(levels["Level"]) == list(HEALTH_LEVELS)
    assert dict(zip(levels["Level"], levels["Customers"], strict=True)) == {
        level: counts.get(level, 0) for level in HEALTH_LEVELS}
    # Headers in words, not the read model's names (avg_overall was shown as it is stored).
    assert "Average score" in levels.columns
    assert not [c for c in levels.columns if "_" in c]
    assert len(at.get("plotly_chart")) == 1  # the level distribution: other tabs are built when opened
    open_tab(at, "health_tab", "Movers")
    assert [s.value for s in at.subheader][:2] == ["Biggest gains", "Biggest drops"]
    assert any(c.value.endswith("accounts") for c in at.caption)
    assert not at.get("stException")
    # No refresh controls and no weights form for an analyst.
    assert not any(b.label in ("Score health", "Save weights") for b in at.button)


def test_drill_down_shows_history_and_advice(page_app, scored_db):
    at = open_page(page_app, "csm1", "health")
    engine = make_engine(scored_db)
    with session_factory(engine)() as s:
        row = s.scalars(select(AccountHealthScore).where(AccountHealthScore.as_of == TODAY)
                        .order_by(AccountHealthScore.overall).limit(1)).one()
        name = s.get(Customer, row.customer_id).first_name
    engine.dispose()
    open_tab(at, "health_tab", "Account drill-down")
    at.number_input(key="health_customer").set_value(row.customer_id).run()
    assert not at.exception
    # Names are shown Markdown-escaped ("Mary\\-Jane"), so compare with what the page writes.
    assert any(plain(name) in m.value and "scored as of" in m.value for m in at.markdown)
    assert metric(at, "Overall") == f"{row.overall:.0f}"
    assert any(m.value == f"Level: **{row.level}**" for m in at.markdown)
    assert any(rec in m.value for m in at.markdown for rec in row.recommendations)
    at.number_input(key="health_customer").set_value(999_999).run()
    assert any("No customer with id 999999" in e.value for e in at.error)


def test_backtest_panel(page_app):
    at = open_page(page_app, "exec1", "health")
    open_tab(at, "health_tab", "Backtest")
    at.number_input(key="health_lag").set_value(30).run()
    assert not at.exception
    assert metric(at, "Scored as of") == SCORED[1].isoformat()
    auc = metric(at, "AUC (overall vs churn)")
    assert auc == "n/a" or 0.0 <= float(auc) <= 1.0
    at.number_input(key="health_lag").set_value(400).run()
    assert any("No scores stored 400 or more days" in i.value for i in at.info)


def test_admin_weights_form_saves_and_rejects_bad_input(page_app, scored_db):
    at = open_page(page_app, "admin1", "health")
    open_tab(at, "health_tab", "Weights")

    def weight_input(name: str):
        return next(n for n in at.number_input if n.label == name.capitalize())

    def submit(label: str) -> None:
        next(b for b in at.button if b.label == label).click().run()

    for name in health.COMPONENTS:
        weight_input(name).set_value(0.0)
    submit("Save weights")
    assert not at.exception
    assert any("At least one weight must be above 0" in e.value for e in at.error)

    for name, value in zip(health.COMPONENTS, (2.0, 1.0, 1.0, 1.0, 1.0), strict=True):
        weight_input(name).set_value(value)
    submit("Save weights")
    assert not at.exception
    assert any("Weights saved" in s.value for s in at.success)
    assert "set by an admin" in " ".join(m.value for m in at.markdown)
    engine = make_engine(scored_db)
    with session_factory(engine)() as s:
        setting = s.get(AppSetting, health.WEIGHTS_KEY)
        assert setting.value["source"] == "admin"
        assert setting.value["weights"]["engagement"] == pytest.approx(2 / 6, abs=1e-6)
        assert setting.value["weights"]["support"] == pytest.approx(1 / 6, abs=1e-6)
        assert s.scalar(select(AuditLog).where(AuditLog.action == "health.weights.save")
                        .order_by(AuditLog.id.desc())).actor_username == "admin1"

    submit("Use the fitted weights")
    assert not at.exception
    assert any("Fitted weights restored" in s.value for s in at.success)
    with session_factory(engine)() as s:
        assert s.get(AppSetting, health.WEIGHTS_KEY).value["source"] in ("fitted", "equal")
    engine.dispose()


def test_empty_state_and_scoring_from_the_page(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'fresh.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    demo.seed_database(engine, 40, seed=5, end=dt.datetime.now().replace(microsecond=0), demo_users=True)
    engine.dispose()
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    at = open_page(AppTest.from_file(APP, default_timeout=60), "admin1", "health")
    assert not at.exception
    assert any("No health scores yet" in i.value for i in at.info)
    assert not at.metric

    next(b for b in at.button if b.label == "Score health").click().run()
    assert not at.exception
    assert any(s.value.startswith("Scored ") and TODAY.isoformat() in s.value for s in at.success)
    engine = make_engine(url)
    with engine.connect() as connection:
        scored = connection.scalar(select(func.count()).select_from(AccountHealthScore))
    engine.dispose()
    assert scored > 0
    assert metric(at, "Live accounts") == f"{scored:,}"


def test_level_bands_tab_shows_calibration_and_admin_sets_bands(page_app, scored_db):
    at = open_page(page_app, "admin1", "health")
    assert not at.exception
    open_tab(at, "health_tab", "Level bands")
    assert any(m.value.startswith("Bands in force:") for m in at.markdown)
    assert metric(at, "Churned") != "n/a" and metric(at, "Never bought") != "n/a"

    def band(level: str):
        return at.number_input(key=f"health_band_{level}")

    def submit(label: str) -> None:
        next(b for b in at.button if b.label == label).click().run()

    band("good").set_value(95.0)  # above excellent
    submit("Save bands")
    assert not at.exception
    assert any("must be below that of excellent" in e.value for e in at.error)
    for level, value in (("excellent", 85.0), ("good", 70.0), ("fair", 45.0), ("poor", 25.0)):
        band(level).set_value(value)
    submit("Save bands")
    assert not at.exception
    assert any("Bands saved" in s.value for s in at.success)
    engine = make_engine(scored_db)
    with session_factory(engine)() as s:
        assert s.get(AppSetting, health.BANDS_KEY).value["bands"] == {"excellent": 85.0, "good": 70.0, "fair": 45.0,
                                                                       "poor": 25.0}
        assert s.scalar(select(AuditLog).where(AuditLog.action == "health.bands.save")) is not None
    engine.dispose()
    submit("Use the calibrated bands")
    assert not at.exception
    assert any("Calibrated bands restored" in s.value for s in at.success)


def test_admin_bands_do_not_borrow_the_calibrations_churn_rates(scored_db, tmp_path, monkeypatch):
    """Levels cut with an admin's bands are not shown with the churn rates the calibrated bands had."""
    url = f"sqlite:///{tmp_path / 'admin-bands.sqlite'}"
    with sqlite3.connect(scored_db.removeprefix("sqlite:///")) as source, \
            sqlite3.connect(url.removeprefix("sqlite:///")) as copy:
        source.backup(copy)
    engine = make_engine(url)
    with session_factory(engine)() as s:
        calibration = health.get_bands(s, s.scalar(select(User).where(User.username == "admin1")))["calibration"]
        version = health.current_bands(s)[2]
        admin = s.scalar(select(User).where(User.username == "admin1"))
        health.save_bands(s, admin, {"excellent": 85.0, "good": 70.0, "fair": 45.0, "poor": 25.0}, version)
        s.commit()
    health.score_health(engine, TODAY)
    engine.dispose()
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    at = open_page(AppTest.from_file(APP, default_timeout=60), "analyst1", "health")
    assert not at.exception
    levels = at.dataframe[0].value
    assert levels["Churn rate (calibration) %"].isna().all() and levels["Churn rate (later check) %"].isna().all()
    assert any("calibration's churn rates per level do not describe them" in c.value for c in at.caption)
    assert calibration and calibration["fit"]["table"]  # there were rates to borrow
