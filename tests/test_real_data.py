"""A real shop's data: orders and customers only, often under a year, other sources missing.

The whole refresh, every model, the backtest and the model pages on such data; each optional
source missing from a complete world; and the churn model against BG/NBD on the public CDNOW log.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil

import numpy as np
import pytest
from sqlalchemy import delete, func, select

import batch
import demo
from batch import refresh
from crm_core import platform
from db import migrate
from db.engine import make_engine
from db.models import (
    AccountHealthScore,
    ChurnPrediction,
    Complaint,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerLifecycleStage,
    LoyaltyAccount,
    LoyaltyTransaction,
    MLModel,
    RefreshRun,
    RefreshRunStep,
    SupportTicket,
    SurveyResponse,
    WebSession,
)
from ml import churn, health, registry
from ml.backtest import run_backtest
from tests.apptest_support import APP, page_path, sign_in
from tests.factories import make_user
from tests.shop_data import import_log, order_log

START = dt.date(2024, 1, 1)
LAST_DAY = START + dt.timedelta(days=299)
BACKTEST_KEYS = {"as_of", "horizon_days", "customers", "churn", "baseline_bgnbd", "purchases", "revenue",
                 "lifetime_value_model", "deciles", "validation"}


def _last_order_day(engine) -> dt.date:
    from db.models import Order

    with engine.connect() as connection:
        return connection.scalar(select(func.max(Order.ordered_at))).date()


def test_the_whole_refresh_completes_on_imported_orders_alone(engine):
    report = import_log(engine, order_log(customers=500, start=START, days=300))
    assert report.invalid == 0
    as_of = _last_order_day(engine)
    result = batch.run_refresh(engine, as_of)
    statuses = {step.label: (step.status, step.detail) for step in result.steps}
    assert result.failed == [], statuses
    assert result.status == "ok"
    with platform.unit_of_work(engine) as session:
        run = session.get(RefreshRun, result.run_id)
        assert run.status == "ok" and run.finished_at is not None and run.as_of == as_of
        steps = session.scalars(select(RefreshRunStep).where(RefreshRunStep.run_id == run.id)
                                .order_by(RefreshRunStep.position)).all()
        assert [s.step for s in steps] == [refresh.step_key(step) for _, step in refresh.STEPS]
        assert all(s.status in ("ok", "skipped") and s.seconds is not None for s in steps)
        written = {s.step: s.rows_written for s in steps}
        customers = session.scalar(select(func.count()).select_from(CustomerAnalytics)
                                   .where(CustomerAnalytics.as_of == as_of))
        assert customers == 500 and written["snapshot"] == 500
        assert written["churn"] == session.scalar(select(func.count()).select_from(ChurnPrediction)) > 0
        assert session.scalar(select(func.count()).select_from(CustomerLifecycleStage)) == 500

        card = session.scalar(select(MLModel.metrics).where(MLModel.name == "churn", MLModel.is_active.is_(True)))
        not_used = card["features_not_used"]
        assert not_used["sessions_30d"].startswith("no web sessions before")
        assert not_used["nps_last_365d"].startswith("no NPS answers before")
        assert not_used["loyalty_points"].startswith("no loyalty points before")
        assert "days_since_last_order" in card["features_used"] and "sessions_30d" not in card["features_used"]
        # an imported customer signed up with their first order: one feature, not two drivers
        assert not_used["days_since_signup"].startswith("the same as days since the first order")

        scores = session.execute(select(func.count(AccountHealthScore.engagement),
                                        func.count(AccountHealthScore.support),
                                        func.count(AccountHealthScore.satisfaction),
                                        func.count()).where(AccountHealthScore.as_of == as_of)).one()
        # orders give engagement (recency); no helpdesk and no surveys: "no data", not a neutral 50 or 100
        assert scores[0] == scores[3] > 0 and scores[1] == 0 and scores[2] == 0
    assert "no data for satisfaction, support" in statuses["Account health scores"][1]
    # CTA rules on orders alone: the churn rule runs, the rules without a source say why they were skipped
    ctas = statuses["Calls to action: rules open, hold out and close CTAs"]
    assert ctas[0] == "ok" and "Churn risk became high" in ctas[1]
    assert "Detractor NPS answer (no NPS answers)" in ctas[1] and "Risk restriction (no risk restrictions or blocks)" in ctas[1]


def _engine_for(url: str):
    migrate.upgrade(url)
    return make_engine(url)


@pytest.fixture(scope="module")
def simulated_file(tmp_path_factory):
    """A complete simulated world (every source), copied for each test that removes one."""
    path = tmp_path_factory.mktemp("world") / "world.sqlite"
    engine = _engine_for(f"sqlite:///{path}")
    demo.seed_database(engine, 900, seed=5, end=dt.datetime(2026, 6, 30, 18))
    engine.dispose()
    return path


SOURCES = {
    "web sessions": (WebSession,),
    "e-mails sent": (CustomerCommunication,),
    "support tickets": (SupportTicket,),
    "complaints": (Complaint,),
    "NPS answers": (SurveyResponse,),
    "loyalty points": (LoyaltyTransaction, LoyaltyAccount),
}


@pytest.mark.parametrize("source", list(SOURCES))
def test_each_model_runs_with_an_optional_source_missing(simulated_file, tmp_path, source):
    path = tmp_path / "copy.sqlite"
    shutil.copy(simulated_file, path)
    engine = _engine_for(f"sqlite:///{path}")
    with platform.unit_of_work(engine) as session:
        for model in SOURCES[source]:
            session.execute(delete(model))
    as_of = dt.date(2026, 6, 30)
    result = batch.run_refresh(engine, as_of, include_clusters=True)  # trains the churn model it lacks
    assert result.failed == [], [(s.label, s.detail) for s in result.failed]
    with platform.unit_of_work(engine) as session:
        row, model = registry.active(session, "churn")
        metrics = row.metrics
    dropped = {f for f, reason in metrics["features_not_used"].items() if reason.startswith(f"no {source} before")}
    from ml.features import FEATURE_SOURCES

    assert dropped == {f for f, s in FEATURE_SOURCES.items() if s == source}
    assert not dropped & set(model.features_)
    assert metrics["validated"] and metrics["roc_auc"] > 0.7
    with engine.connect() as connection:
        components = health.component_scores(connection, as_of)
    if source == "web sessions":
        assert components["engagement"].notna().any()  # e-mails and orders still tell
    if source == "support tickets":
        assert components["support"].isna().all()
    engine.dispose()


def test_a_failing_model_leaves_the_rest_of_the_refresh_standing(engine, monkeypatch):
    import_log(engine, order_log(customers=300, start=START, days=300))
    as_of = _last_order_day(engine)

    def broken(*args, **kwargs):
        raise RuntimeError("the model exploded")

    monkeypatch.setattr(churn, "refresh_churn", broken)
    result = batch.run_refresh(engine, as_of, triggered_by="tester")
    assert [s.label for s in result.failed] == ["Churn model: train when due, score everyone"]
    assert result.status == "partial"
    with platform.unit_of_work(engine) as session:
        run = session.get(RefreshRun, result.run_id)
        assert (run.status, run.triggered_by) == ("partial", "tester")
        rows = session.execute(select(func.count(), func.count(CustomerAnalytics.churn_probability),
                                      func.count(CustomerAnalytics.clv_12m))
                               .where(CustomerAnalytics.as_of == as_of)).one()
        assert rows == (300, 0, 300)  # the snapshot landed; only the failed model's column is empty
        assert session.scalar(select(func.count()).select_from(CustomerLifecycleStage)) == 300
        status = batch.last_step_status(session, None, "churn")
        assert (status.status, status.detail) == ("failed", "failed: RuntimeError: the model exploded")
        assert batch.last_step_status(session, None, "snapshot").status == "ok"


def test_an_eight_week_history_backtests_and_a_shorter_one_is_refused(engine):
    import_log(engine, order_log(customers=600, start=START, days=56 + 90, arrival_days=30))
    as_of = START + dt.timedelta(days=56)
    result = run_backtest(engine, as_of, 60)
    assert set(result) >= BACKTEST_KEYS
    assert set(result["churn"]) == {"model", "auc", "pr_auc", "brier", "base_rate"}
    assert result["churn"]["auc"] is not None and result["customers"] > 0
    assert result["training"]["label_days"] == 14 or result["churn"]["model"] == "bgnbd"
    assert sum(row["customers"] for row in result["calibration"]) == result["customers"]
    json.dumps(result)  # the whole result is JSON
    with pytest.raises(platform.ValidationError, match="at least 8 weeks of orders"):
        run_backtest(engine, START + dt.timedelta(days=40), 60)


def test_the_plan_follows_the_history():
    first = dt.date(2025, 1, 1)
    full = churn.plan_training(first, first + dt.timedelta(days=400), 90)
    assert full.label_days == 90 and len(full.training_cuts) == churn.TRAINING_CUTS and not full.reason
    assert all(cut + dt.timedelta(days=90) <= full.validation_cut for cut in full.training_cuts)
    short = churn.plan_training(first, first + dt.timedelta(days=150), 90)
    assert short.label_days == 61 and short.validation_cut == first + dt.timedelta(days=89)
    assert all(cut >= first + dt.timedelta(days=churn.MIN_FEATURE_DAYS) for cut in short.training_cuts)
    assert "scaled to 90 days" in short.reason
    none = churn.plan_training(first, first + dt.timedelta(days=50), 90)
    assert none.label_days is None and "needs no labels" in none.reason


def test_scaling_a_short_window_to_the_horizon_multiplies_by_bgnbds_conditional_chance():
    from ml import bgnbd

    params = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}
    import pandas as pd

    X = pd.DataFrame({"purchase_days": [1, 3, 6], "days_since_first_order": [100, 200, 300],
                      "days_since_last_order": [100, 30, 150]})
    short = bgnbd.predict(params, X, 30)["bg_p_no_purchase"].to_numpy()
    long = bgnbd.predict(params, X, 90)["bg_p_no_purchase"].to_numpy()
    assert np.all(long <= short + 1e-12)  # no purchase in 90 days is no likelier than in 30
    model = churn.ChurnModel(algorithm="logistic_regression", calibrated_=None, reference_={}, horizon_days=90,
                             label_days=30)
    p_window = np.array([0.5, 0.6, 0.7])
    assert model._to_horizon(X, p_window, params) == pytest.approx(p_window * long / short)
    # the label-free probability ranks exactly as expected purchases do
    expected = bgnbd.predict(params, X, 90)["bg_expected_purchases"].to_numpy()
    p = bgnbd.churn_probability(params, X, 90)
    assert list(np.argsort(p)) == list(np.argsort(-expected))


@pytest.fixture(scope="module")
def cdnow(tmp_path_factory):
    engine = _engine_for(f"sqlite:///{tmp_path_factory.mktemp('cdnow') / 'cdnow.sqlite'}")
    report = demo.load_cdnow(engine)
    assert (report.created, report.invalid) == (23_570, 0) or report.invalid == 0
    yield engine
    engine.dispose()


@pytest.mark.parametrize("as_of, horizon", [("1997-12-31", 90), ("1998-03-31", 91), ("1997-09-30", 182)])
def test_on_cdnow_the_churn_model_never_ranks_worse_than_bgnbd(cdnow, as_of, horizon):
    result = run_backtest(cdnow, dt.date.fromisoformat(as_of), horizon)
    assert result["customers"] == 23_570
    assert result["churn"]["auc"] >= result["baseline_bgnbd"]["auc"] - 1e-9
    assert result["churn"]["brier"] < 0.2
    if as_of != "1997-09-30":  # a year of history or the season behind it: totals within 10%
        purchases = result["purchases"]
        assert abs(purchases["predicted_total"] / purchases["actual_total"] - 1) <= 0.10


def test_pages_say_why_a_model_is_missing(engine, monkeypatch, tmp_path):
    """On a shop without enough orders for any model, the Churn and Refresh runs pages say why."""
    if engine.dialect.name != "sqlite":
        pytest.skip("one backend is enough for the page")
    from streamlit.testing.v1 import AppTest

    import_log(engine, order_log(customers=20, start=START, days=40))
    with platform.unit_of_work(engine) as session:
        make_user(session, "admin", "ada", password="a-long-password")
    batch.run_refresh(engine, _last_order_day(engine))
    url = engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    at = AppTest.from_file(APP, default_timeout=60)
    sign_in(at, "ada", "a-long-password")
    at.switch_page(page_path("churn")).run()
    assert not at.exception
    assert any("The churn model was skipped in the last refresh" in w.value for w in at.warning)
    at.switch_page(page_path("refresh_runs")).run()
    assert not at.exception
    shown = " ".join(str(df.value.to_dict()) for df in at.dataframe)
    assert "skipped" in shown and "Lifetime value" in shown
    # A shop that imported only orders has no tickets: the Ticket page says so instead of failing.
    at.switch_page(page_path("ticket")).run()
    assert not at.exception and not at.error
    assert any("No tickets yet" in i.value for i in at.info)


def test_customers_imported_without_a_name_are_named_by_their_ids():
    from crm_core import customers

    assert customers.display_name("Zoë", "Müller", 7, "C1") == "Zoë Müller"
    assert customers.display_name(None, "", 7, "00042") == "Customer 00042"
    assert customers.display_name("", None, 7) == "Customer #7"
