"""Churn: point-in-time features, labels, time-based training, scoring, registry and accuracy."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

import demo
from crm_core import platform, segmentation
from db import migrate
from db.engine import make_engine
from db.models import (
    AuditLog,
    ChurnPrediction,
    Complaint,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    LoyaltyTransaction,
    MLModel,
    SupportTicket,
    SurveyResponse,
    WebSession,
)
from ml import churn, churn_reports, registry
from ml.features import FEATURES, build_features
from ml.labels import churn_labels

from .factories import make_customer, make_order, make_user

AS_OF = dt.date(2026, 6, 30)


def at(day: dt.date, hour: int = 12) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour))


def days_before(n: int, hour: int = 12) -> dt.datetime:
    return at(AS_OF - dt.timedelta(days=n), hour)


@pytest.fixture
def shopper(session):
    """A customer with history in every source the features read."""
    customer = make_customer(session, days_before(400), acquisition_channel="social")
    for n, total in ((300, 50), (120, 70), (40, 90), (10, 110)):
        make_order(session, customer, days_before(n), total)
    make_order(session, customer, days_before(60), 30, status="returned")
    session.add_all([
        WebSession(customer_id=customer.id, started_at=days_before(5), duration_seconds=60, page_views=4,
                   source="direct", device="mobile"),
        WebSession(customer_id=customer.id, started_at=days_before(50), duration_seconds=60, page_views=6,
                   source="email", device="desktop"),
        CustomerCommunication(customer_id=customer.id, channel="email", direction="outbound", status="opened",
                              sent_at=days_before(20), opened_at=days_before(19)),
        CustomerCommunication(customer_id=customer.id, channel="email", direction="outbound", status="delivered",
                              sent_at=days_before(30)),
        SupportTicket(ticket_number="T-1", customer_id=customer.id, subject="Where is my parcel",
                      created_at=days_before(15), status="open"),
        Complaint(customer_id=customer.id, category="delivery", description="Late", created_at=days_before(100)),
        SurveyResponse(customer_id=customer.id, survey_type="nps", score=4, responded_at=days_before(200)),
        SurveyResponse(customer_id=customer.id, survey_type="nps", score=9, responded_at=days_before(25)),
    ])
    account = LoyaltyAccount(customer_id=customer.id, points_balance=120, lifetime_points=150)
    session.add(account)
    session.flush()
    session.add_all([
        LoyaltyTransaction(account_id=account.id, customer_id=customer.id, kind="earn", points=150,
                           balance_after=150, created_at=days_before(40)),
        LoyaltyTransaction(account_id=account.id, customer_id=customer.id, kind="redeem", points=-30,
                           balance_after=120, created_at=days_before(8)),
    ])
    session.commit()
    return customer


def test_features_of_a_hand_made_customer(session, shopper):
    row = build_features(session.connection(), AS_OF).loc[shopper.id]
    assert row["order_count"] == 4
    assert row["total_revenue"] == pytest.approx(320)
    assert row["avg_order_value"] == pytest.approx(80)
    assert row["days_since_last_order"] == pytest.approx(10.5)  # noon 10 days before AS_OF, to the end of AS_OF
    assert row["mean_days_between_orders"] == pytest.approx(290 / 3)
    assert (row["orders_90d"], row["orders_prev_90d"], row["orders_365d"]) == (2, 1, 4)
    assert row["returns_share"] == pytest.approx(1 / 5)
    assert (row["sessions_30d"], row["sessions_90d"], row["page_views_90d"]) == (1, 2, 10)
    assert row["emails_90d"] == 2 and row["email_open_rate_90d"] == pytest.approx(0.5)
    assert (row["tickets_180d"], row["open_tickets"], row["complaints_365d"]) == (1, 1, 1)
    assert row["nps_last_365d"] == 9
    assert row["loyalty_points"] == 120
    assert row["acquisition_channel"] == "social"
    assert list(build_features(session.connection(), AS_OF).columns) == list(FEATURES)


def test_nothing_after_as_of_moves_the_features(session, shopper):
    before = build_features(session.connection(), AS_OF)
    after_cut = at(AS_OF + dt.timedelta(days=1), 9)
    make_order(session, shopper, after_cut, 500)
    ticket = session.scalar(select(SupportTicket).where(SupportTicket.customer_id == shopper.id))
    ticket.resolved_at = after_cut  # resolved later: it was still open on AS_OF
    email = session.scalar(select(CustomerCommunication).where(CustomerCommunication.opened_at.is_(None)))
    email.opened_at = after_cut  # opened later: not opened as of AS_OF
    account = session.scalar(select(LoyaltyAccount).where(LoyaltyAccount.customer_id == shopper.id))
    session.add_all([
        WebSession(customer_id=shopper.id, started_at=after_cut, duration_seconds=5, page_views=1,
                   source="direct", device="mobile"),
        SurveyResponse(customer_id=shopper.id, survey_type="nps", score=0, responded_at=after_cut),
        Complaint(customer_id=shopper.id, category="product", description="Broken", created_at=after_cut),
        LoyaltyTransaction(account_id=account.id, customer_id=shopper.id, kind="earn", points=500,
                           balance_after=620, created_at=after_cut),
    ])
    later = make_customer(session, after_cut)
    make_order(session, later, after_cut, 20)
    session.commit()
    pd.testing.assert_frame_equal(build_features(session.connection(), AS_OF), before)


def test_churn_label_looks_only_at_the_horizon(session):
    stays = make_customer(session, days_before(300))
    leaves = make_customer(session, days_before(300))
    late = make_customer(session, days_before(300))
    never = make_customer(session, days_before(300))
    for customer in (stays, leaves, late):
        make_order(session, customer, days_before(100), 40)
    make_order(session, stays, at(AS_OF + dt.timedelta(days=30)), 40)
    make_order(session, late, at(AS_OF + dt.timedelta(days=95)), 40)  # after a 90-day horizon
    make_order(session, leaves, at(AS_OF + dt.timedelta(days=10)), 40, status="cancelled")
    make_order(session, never, at(AS_OF + dt.timedelta(days=10)), 40)  # first order after the cut
    session.commit()
    labels = churn_labels(session.connection(), AS_OF, 90)
    assert labels.to_dict() == {stays.id: 0, leaves.id: 1, late.id: 1}
    with pytest.raises(ValueError):
        churn_labels(session.connection(), AS_OF, 0)


def test_training_cuts_never_overlap_the_validation_window():
    cuts, validation = churn.training_cuts(AS_OF, 90)
    assert validation == AS_OF - dt.timedelta(days=90)
    assert all(cut + dt.timedelta(days=90) <= validation for cut in cuts)
    assert cuts == sorted(cuts) and len(cuts) == churn.TRAINING_CUTS


def test_metrics_on_a_hand_example():
    y = np.array([1, 1, 0, 0, 0, 0, 0, 0, 0, 0])
    p = np.array([0.9, 0.2, 0.8, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    metrics = churn.evaluate(y, p)
    assert metrics["base_rate"] == pytest.approx(0.2)
    assert metrics["lift_top_decile"] == pytest.approx(5.0)  # the top 1 of 10 churned: 1.0 / 0.2
    assert metrics["brier"] == pytest.approx(np.mean((p - y) ** 2))
    assert 0 < metrics["roc_auc"] < 1
    assert churn.risk_level(np.array([0.1, 0.3, 0.6, 0.8])).tolist() == ["low", "medium", "high", "critical"]


def test_retraining_is_due_when_the_model_is_stale_or_saw_the_future():
    row = MLModel(training_end=AS_OF - dt.timedelta(days=95), params={"horizon_days": 90, "label_days": 90})
    assert not churn.needs_training(row, AS_OF, 90)
    assert churn.needs_training(None, AS_OF, 90)
    assert churn.needs_training(row, AS_OF - dt.timedelta(days=30), 90)  # trained on data after that cut
    assert churn.needs_training(row, AS_OF + dt.timedelta(days=40), 90)  # a month stale
    assert churn.needs_training(row, AS_OF, 60)  # another horizon
    # a model from a short history (or from before label windows were recorded) is refitted every time
    short = MLModel(training_end=AS_OF - dt.timedelta(days=95), params={"horizon_days": 90, "label_days": 30})
    assert churn.needs_training(short, AS_OF, 90)
    assert churn.needs_training(MLModel(training_end=row.training_end, params={"horizon_days": 90}), AS_OF, 90)


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    """A simulated business of 4,000 customers with a trained, scored churn model."""
    url = f"sqlite:///{tmp_path_factory.mktemp('churn') / 'churn.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    end = dt.datetime(2026, 6, 30, 23)
    demo.seed_database(engine, 4_000, seed=11, end=end)
    with platform.unit_of_work(engine) as session:
        segmentation.refresh_snapshot(session, end.date())
    result = churn.refresh_churn(engine, end.date())
    with platform.unit_of_work(engine) as session:  # the snapshot picks the predictions up when next built
        segmentation.refresh_snapshot(session, end.date())
    yield engine, end.date(), result["detail"]
    engine.dispose()


@pytest.fixture(scope="module")
def simulated_url(simulated):
    return simulated[0].url.render_as_string(hide_password=False)


def test_the_model_beats_the_naive_recency_baseline(simulated):
    engine, _as_of, detail = simulated
    assert detail.startswith("trained v1")
    with platform.unit_of_work(engine) as session:
        metrics = session.scalar(select(MLModel.metrics).where(MLModel.name == "churn", MLModel.is_active))
    assert set(metrics["candidates"]) == {"logistic_regression", "gradient_boosting", "bgnbd"}
    assert metrics["validated"] and metrics["label_days"] == 90
    # the simulated shop has every source: nothing is left out for lack of data
    assert not any(reason.startswith("no ") for reason in metrics["features_not_used"].values())
    assert metrics["selected"] in metrics["candidates"]
    assert metrics["roc_auc"] > metrics["baseline_recency_auc"]
    assert metrics["lift_top_decile"] > 1.2
    assert len(metrics["calibration"]["predicted"]) >= 5


def test_the_chosen_algorithm_is_fitted_again_with_the_validation_cut(simulated, monkeypatch):
    """Selection uses the validation cut; the production model then learns from it too (the latest labels)."""
    engine, as_of, _detail = simulated
    fitted_rows = []
    fit = churn.fit_calibrated

    def counting(pipeline, X, y, inputs=None):
        fitted_rows.append(len(X))
        return fit(pipeline, X, y, inputs)

    monkeypatch.setattr(churn, "fit_calibrated", counting)
    with engine.connect() as connection:
        model, metrics, cuts = churn.train(connection, as_of)
    assert metrics["selected"] != "bgnbd" and model.algorithm == metrics["selected"]
    assert metrics["refit_rows"] == metrics["training_rows"] + metrics["rows"]
    assert fitted_rows[-1] == metrics["refit_rows"] and fitted_rows[0] == metrics["training_rows"]
    assert cuts[-1].isoformat() == metrics["validation_cut"]


def test_scores_land_in_predictions_and_the_snapshot(simulated):
    engine, as_of, _detail = simulated
    with platform.unit_of_work(engine) as session:
        predictions = session.scalar(select(func.count()).select_from(ChurnPrediction)
                                     .where(ChurnPrediction.as_of == as_of))
        buyers = session.scalar(select(func.count()).select_from(CustomerAnalytics)
                                .where(CustomerAnalytics.order_count > 0))
        unscored = session.scalar(select(func.count()).select_from(CustomerAnalytics).where(
            CustomerAnalytics.order_count > 0, CustomerAnalytics.churn_probability.is_(None)))
        risky = session.scalars(select(ChurnPrediction).where(ChurnPrediction.risk_level == "critical").limit(20)).all()
        stored = session.execute(select(ChurnPrediction.probability, ChurnPrediction.risk_level)
                                 .where(ChurnPrediction.as_of == as_of)).all()
    assert predictions == buyers and unscored == 0
    # Each stored level is the level of the stored (rounded) probability, which audiences filter on.
    assert all(level == segmentation.risk_level(probability) for probability, level in stored)
    for prediction in risky:
        assert prediction.probability >= 0.75
        assert 1 <= len(prediction.drivers) <= 3
        assert all(d["effect"] > 0 and d["label"] for d in prediction.drivers)
        assert prediction.interventions


def test_calibrated_probabilities_track_observed_rates(simulated):
    engine, _as_of, _detail = simulated
    with platform.unit_of_work(engine) as session:
        calibration = session.scalar(select(MLModel.metrics).where(MLModel.name == "churn"))["calibration"]
    gaps = np.abs(np.array(calibration["predicted"]) - np.array(calibration["observed"]))
    assert gaps.mean() < 0.1


def test_past_predictions_are_checked_against_what_happened(session):
    customer_a = make_customer(session, days_before(400))
    customer_b = make_customer(session, days_before(400))
    for customer in (customer_a, customer_b):
        make_order(session, customer, days_before(200), 40)
    make_order(session, customer_a, days_before(100), 40)  # ordered within the horizon of the old prediction
    made_on = AS_OF - dt.timedelta(days=120)
    session.add_all([
        ChurnPrediction(customer_id=customer_a.id, as_of=made_on, horizon_days=90, probability=0.8,
                        risk_level="critical"),
        ChurnPrediction(customer_id=customer_b.id, as_of=made_on, horizon_days=90, probability=0.6,
                        risk_level="high"),
        ChurnPrediction(customer_id=customer_b.id, as_of=AS_OF - dt.timedelta(days=10), horizon_days=90,
                        probability=0.6, risk_level="high"),
    ])
    session.commit()
    assert churn.evaluate_past_predictions(session.get_bind(), AS_OF) == 2
    session.expire_all()
    outcome = dict(session.execute(select(ChurnPrediction.customer_id, ChurnPrediction.actual_churned)
                                   .where(ChurnPrediction.as_of == made_on)).all())
    assert outcome == {customer_a.id: False, customer_b.id: True}
    viewer = make_user(session, "analyst")
    accuracy = {row["risk_level"]: row for row in churn_reports.realized_accuracy(session, viewer)}
    assert accuracy["critical"]["precision"] == 0 and accuracy["high"]["precision"] == 1
    assert accuracy["high"]["recall_at_or_above"] == 1


@pytest.mark.parametrize("rollups", [False, True], ids=["live", "rollups"])
def test_at_risk_list_ranks_by_risk_times_value_and_filters(session, rollups):
    viewer = make_user(session, "success_manager")
    owner = make_user(session, "success_manager")
    rows = []
    for probability, revenue, level in ((0.9, 100, "critical"), (0.6, 1000, "high"), (0.2, 5000, "low")):
        customer = make_customer(session, days_before(300), account_manager_id=owner.id if revenue == 100 else None)
        session.add(CustomerAnalytics(customer_id=customer.id, as_of=AS_OF, order_count=1, total_revenue=revenue))
        session.add(ChurnPrediction(customer_id=customer.id, as_of=AS_OF, horizon_days=90, probability=probability,
                                    risk_level=level, drivers=[{"label": "days since the last order", "value": 99}],
                                    interventions=["Send a personalised win-back offer"]))
        rows.append(customer.id)
    segment = CustomerSegment(name="Two of them", segment_type="custom", kind="static")
    session.add(segment)
    session.flush()
    session.add_all([CustomerSegmentMembership(segment_id=segment.id, customer_id=i, assignment="manual")
                     for i in (rows[0], rows[2])])
    session.commit()
    if rollups:
        assert segmentation.refresh_churn_rollups(session)["ranked"] == 3
    in_segment = churn_reports.at_risk(session, viewer, segment_id=segment.id)
    assert [r["customer_id"] for r in in_segment.rows] == [rows[2], rows[0]] and in_segment.total == 2
    both = churn_reports.at_risk(session, viewer, segment_id=segment.id, owner_id=owner.id, risk_levels=["critical"])
    assert [r["customer_id"] for r in both.rows] == [rows[0]] and both.total == 1
    second_page = churn_reports.at_risk(session, viewer, page=2, page_size=10)
    assert second_page.rows == [] and second_page.total == 3
    page = churn_reports.at_risk(session, viewer)
    assert [r["customer_id"] for r in page.rows] == [rows[2], rows[1], rows[0]]  # 1000, 600, 90
    assert page.rows[0]["expected_loss"] == pytest.approx(1000)
    urgent = churn_reports.at_risk(session, viewer, risk_levels=["high", "critical"])
    assert [r["customer_id"] for r in urgent.rows] == [rows[1], rows[0]] and urgent.total == 2
    owned = churn_reports.at_risk(session, viewer, owner_id=owner.id)
    assert [r["customer_id"] for r in owned.rows] == [rows[0]] and owned.rows[0]["owner"] == owner.full_name
    assert "days since the last order (99)" in owned.rows[0]["drivers"]
    summary = {r["risk_level"]: r["customers"] for r in churn_reports.risk_summary(session, viewer)}
    assert summary == {"low": 1, "high": 1, "critical": 1}
    with pytest.raises(platform.PermissionDenied):
        churn_reports.at_risk(session, make_user(session, "support_agent"))


def test_registry_activates_and_rolls_back_with_an_audit_row(session):
    admin = make_user(session, "admin")
    first = registry.register(session, "churn", "logistic_regression", {"weights": 1}, training_end=AS_OF)
    second = registry.register(session, "churn", "gradient_boosting", {"weights": 2}, training_end=AS_OF)
    session.commit()
    assert registry.active(session, "churn")[0].version == second.version
    registry.activate(session, admin, first.id)
    session.commit()
    row, model = registry.active(session, "churn")
    assert (row.version, model) == (first.version, {"weights": 1})
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "model.activate"))
    assert entry.before["active_version"] == second.version and entry.after["active_version"] == first.version
    with pytest.raises(platform.PermissionDenied):
        registry.activate(session, make_user(session, "analyst"), second.id)


BACKTEST_KEYS = {"as_of", "horizon_days", "customers", "churn", "baseline_bgnbd", "purchases", "revenue",
                 "lifetime_value_model", "deciles"}


def test_backtest_cli_writes_the_json_contract(simulated, simulated_url, tmp_path, monkeypatch, capsys):
    import json

    from crm_cli.main import main

    engine, _as_of, _detail = simulated
    monkeypatch.setenv("CRM_DATABASE_URL", simulated_url)
    out = tmp_path / "backtest.json"
    assert main(["backtest", "--as-of", "2026-03-31", "--horizon-days", "60", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "Backtest as of 2026-03-31, horizon 60 days" in printed and "decile" in printed
    result = json.loads(out.read_text())
    assert set(result) >= BACKTEST_KEYS
    assert (result["as_of"], result["horizon_days"]) == ("2026-03-31", 60)
    assert set(result["churn"]) == {"model", "auc", "pr_auc", "brier", "base_rate"}
    assert set(result["baseline_bgnbd"]) == {"auc"}
    assert set(result["lifetime_value_model"]["bgnbd"]) == {"r", "alpha", "a", "b", "time_unit"}
    assert set(result["lifetime_value_model"]["gamma_gamma"]) == {"p", "q", "v"}

    cut, stop = dt.datetime(2026, 4, 1), dt.datetime(2026, 5, 31)
    from db.models import REVENUE_ORDER_STATUSES, Order

    revenue_order = Order.status.in_(REVENUE_ORDER_STATUSES)
    with engine.connect() as connection:
        customers = connection.scalar(select(func.count(func.distinct(Order.customer_id)))
                                      .where(revenue_order, Order.ordered_at < cut))
        buyers_before = select(Order.customer_id).where(revenue_order, Order.ordered_at < cut)
        in_window = (revenue_order, Order.ordered_at >= cut, Order.ordered_at < stop,
                     Order.customer_id.in_(buyers_before))
        revenue = connection.scalar(select(func.sum(Order.total)).where(*in_window))
        returning = connection.scalar(select(func.count(func.distinct(Order.customer_id))).where(*in_window))
    assert result["customers"] == customers
    assert result["revenue"]["actual_total"] == pytest.approx(float(revenue), abs=0.01)
    assert result["churn"]["base_rate"] == pytest.approx(1 - returning / customers)
    assert sum(d["customers"] for d in result["deciles"]) == customers
    assert [d["decile"] for d in result["deciles"]] == list(range(1, 11))
    churn_rates = [d["churn_rate"] for d in result["deciles"]]
    assert churn_rates[0] > churn_rates[-1]  # the riskiest tenth churns more than the safest
    assert result["churn"]["auc"] > 0.7 and result["baseline_bgnbd"]["auc"] > 0.6
    assert result["purchases"]["predicted_total"] > 0


def test_backtest_refuses_a_horizon_past_the_data(simulated_url, monkeypatch, capsys):
    from crm_cli.main import main

    monkeypatch.setenv("CRM_DATABASE_URL", simulated_url)
    assert main(["backtest", "--as-of", "2026-06-01", "--horizon-days", "90"]) == 2
    assert "after the latest order" in capsys.readouterr().err


def _reference_drivers(X, effects, high_value, levels):
    """The plain per-customer loop the column-wise builder must agree with."""
    import math

    from ml.features import LABELS
    values = effects[list(FEATURES)].to_numpy()
    order = np.argsort(-values, axis=1)[:, :3]
    raw = X[list(FEATURES)].to_numpy(dtype=object)
    drivers, interventions = [], []
    for i in range(len(X)):
        top = [j for j in order[i] if values[i, j] > 0.01]
        actions = [churn.PERSONAL_CALL] if high_value[i] and levels[i] in ("high", "critical") else []
        row = []
        for j in top:
            value = raw[i, j]
            row.append({"feature": FEATURES[j], "label": LABELS[FEATURES[j]],
                        "value": None if value is None or (isinstance(value, float) and math.isnan(value))
                        else (value if isinstance(value, str) else round(float(value), 3)),
                        "effect": round(float(values[i, j]), 3)})
            action = churn.INTERVENTIONS.get(FEATURES[j], churn.DEFAULT_INTERVENTION)
            if action not in actions:
                actions.append(action)
        if not actions and levels[i] != "low":
            actions.append(churn.DEFAULT_INTERVENTION)
        drivers.append(row)
        interventions.append(actions)
    return drivers, interventions


def test_drivers_and_interventions_built_column_wise_match_the_per_customer_rules():
    import json

    rng = np.random.default_rng(3)
    n = 400
    X = pd.DataFrame({f: rng.normal(10, 5, n) for f in FEATURES if f != "acquisition_channel"})
    X.iloc[::7, 3] = np.nan  # missing values are null
    X["acquisition_channel"] = rng.choice(["organic", "paid_search", 'quote"d'], n)
    effects = pd.DataFrame(rng.normal(0, 0.3, (n, len(FEATURES))), columns=list(FEATURES))
    effects.iloc[::5] = -1.0  # nothing raises their risk: no drivers
    effects.loc[effects.index[1::9], "acquisition_channel"] = 5.0  # the categorical feature leads
    high_value = rng.random(n) < 0.2
    levels = churn.risk_level(rng.random(n))
    drivers, interventions = churn.drivers_and_interventions(X[list(FEATURES)], effects, high_value, levels)
    expected_drivers, expected_interventions = _reference_drivers(X[list(FEATURES)], effects, high_value, levels)
    assert [json.loads(t) for t in interventions] == expected_interventions
    got = [json.loads(t) for t in drivers]
    assert [[d["feature"] for d in row] for row in got] == [[d["feature"] for d in row] for row in expected_drivers]
    for row, expected in zip(got, expected_drivers, strict=True):
        for d, e in zip(row, expected, strict=True):
            assert d["label"] == e["label"] and d["effect"] == pytest.approx(e["effect"], abs=1e-3)
            assert d["value"] == e["value"] if e["value"] is None or isinstance(e["value"], str) \
                else d["value"] == pytest.approx(e["value"], abs=1e-3)
    assert any(row == [] for row in got) and any(row and row[0]["feature"] == "acquisition_channel" for row in got)
    assert any(d["value"] is None for row in got for d in row)
    empty = churn.drivers_and_interventions(X.iloc[:0][list(FEATURES)], effects.iloc[:0], high_value[:0], levels[:0])
    assert [len(a) for a in empty] == [0, 0]
