"""Lifetime value: reference estimates, the SQL summary, scoring into the snapshot, read functions."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select, update

from crm_core import platform, segmentation
from db.models import CustomerAnalytics, CustomerLifetimeValue, MLModel
from ml import clv, clv_reports, registry
from ml.clv import LifetimeValueModel, NotEnoughData, refresh_lifetime_value, summarize

from .factories import make_customer, make_order

DATA = Path(__file__).parent / "data"
AS_OF = dt.date(2025, 6, 30)
ANALYST = platform.SignedInUser(1, "analyst1", "Analyst", "analyst")
AGENT = platform.SignedInUser(2, "agent1", "Agent", "support_agent")


def cdnow() -> pd.DataFrame:
    """The CDNOW calibration summary (weeks), in our summary's column names."""
    raw = pd.read_csv(DATA / "cdnow_customers_summary_with_transactions.csv")
    return pd.DataFrame({
        "frequency": raw["x"], "recency": raw["t_x"], "T": raw["T"], "monetary_value": raw["zbar"],
        "total_revenue": raw["zbar"] * (raw["x"] + 1), "customer_id": raw["ID"],
    }).set_index("customer_id")


@pytest.fixture(scope="module")
def cdnow_model() -> LifetimeValueModel:
    return LifetimeValueModel(pareto_sample_size=10_000).fit(cdnow())


# --------------------------------------------------------------------------- published estimates


def test_bgnbd_reproduces_fader_hardie_lee_2005(cdnow_model):
    # "Counting Your Customers the Easy Way" (2005): r = 0.243, alpha = 4.414, a = 0.793, b = 2.426.
    params = cdnow_model.params_["bgnbd"]
    assert params["time_unit"] == "week"
    for name, published in {"r": 0.243, "alpha": 4.414, "a": 0.793, "b": 2.426}.items():
        assert params[name] == pytest.approx(published, rel=0.005), name


def test_bgnbd_from_the_plain_summary_file_matches_too():
    summary = pd.read_csv(DATA / "cdnow_customers_summary.csv")
    frame = pd.DataFrame({"frequency": summary["frequency"], "recency": summary["recency"], "T": summary["T"],
                          "monetary_value": cdnow()["monetary_value"].to_numpy()})
    params = LifetimeValueModel(fit_pareto=False).fit(frame).params_["bgnbd"]
    assert (round(params["r"], 3), round(params["alpha"], 2), round(params["a"], 3), round(params["b"], 2)) == (
        0.243, 4.41, 0.793, 2.43)


def test_published_conditional_expectation_for_one_customer(cdnow_model):
    # The paper's worked example: x = 2, t_x = 30.43, T = 38.86 -> 1.226 purchases in the next 39 weeks.
    one = pd.DataFrame({"frequency": [2], "recency": [30.43], "T": [38.86], "monetary_value": [20.0]})
    assert cdnow_model.expected_purchases(one, 39).iloc[0] == pytest.approx(1.226, abs=0.001)


def test_pareto_nbd_reproduces_the_published_estimates(cdnow_model):
    # Fader, Hardie and Lee, Pareto/NBD on CDNOW: r = 0.55, alpha = 10.58, s = 0.61, beta = 11.67.
    params = cdnow_model.pareto_params_
    for name, published in {"r": 0.55, "alpha": 10.58, "s": 0.61, "beta": 11.67}.items():
        assert params[name] == pytest.approx(published, rel=0.02), name


def test_gamma_gamma_reproduces_the_published_estimates(cdnow_model):
    # "RFM and CLV: Using Iso-Value Curves" / Fader-Hardie note: p = 6.25, q = 3.74, v = 15.44.
    params = cdnow_model.params_["gamma_gamma"]
    for name, published in {"p": 6.25, "q": 3.74, "v": 15.44}.items():
        assert params[name] == pytest.approx(published, rel=0.005), name
    assert cdnow_model.n_repeat_customers_fit_ == int((cdnow()["frequency"] > 0).sum()) == 946


def test_expected_spend_matches_the_gamma_gamma_formula(cdnow_model):
    p, q, v = (cdnow_model.params_["gamma_gamma"][k] for k in ("p", "q", "v"))
    frame = pd.DataFrame({"frequency": [0, 4], "recency": [0.0, 20.0], "T": [30.0, 30.0],
                          "monetary_value": [0.0, 50.0]})
    spend = cdnow_model.expected_spend(frame)
    assert spend.iloc[0] == pytest.approx(p * v / (q - 1))  # one-off buyer: the population mean
    assert spend.iloc[1] == pytest.approx(p * (v + 4 * 50.0) / (p * 4 + q - 1))


# --------------------------------------------------------------------------- sensible predictions


def test_more_purchases_mean_more_expected_purchases_and_value(cdnow_model):
    frame = pd.DataFrame({"frequency": [0, 1, 3, 8], "recency": [0.0, 30.0, 30.0, 30.0], "T": [32.0] * 4,
                          "monetary_value": [0.0, 30.0, 30.0, 30.0], "total_revenue": [30.0, 60.0, 120.0, 270.0]})
    purchases = cdnow_model.expected_purchases(frame, 52).to_numpy()
    assert np.all(np.diff(purchases) > 0)
    assert np.all(np.diff(cdnow_model.clv(frame).to_numpy()[1:]) > 0)


def test_long_silence_lowers_the_probability_alive(cdnow_model):
    frame = pd.DataFrame({"frequency": [5, 5, 5], "recency": [38.0, 20.0, 5.0], "T": [39.0] * 3,
                          "monetary_value": [20.0] * 3})
    alive = cdnow_model.probability_alive(frame).to_numpy()
    assert alive[0] > alive[1] > alive[2]
    assert np.all((alive >= 0) & (alive <= 1))
    # A one-off buyer may have dropped out too (MBG/NBD), and is less likely alive than a repeat buyer.
    assert cdnow_model.probability_alive(frame.assign(frequency=0, recency=0.0)).iloc[0] < alive[0]


def test_clv_discounting_and_horizon(cdnow_model):
    frame = cdnow().iloc[:50]
    undiscounted = cdnow_model.clv(frame, months=12, annual_discount_rate=0.0)
    discounted = cdnow_model.clv(frame, months=12, annual_discount_rate=0.10)
    assert (discounted <= undiscounted + 1e-9).all() and (discounted < undiscounted).any()
    # Undiscounted CLV is expected purchases in the year times expected spend.
    year = cdnow_model.expected_purchases(frame, 12 * clv.DAYS_PER_MONTH / 7) * cdnow_model.expected_spend(frame)
    np.testing.assert_allclose(undiscounted.to_numpy(), year.to_numpy(), rtol=1e-9)
    assert (cdnow_model.clv(frame, months=24, annual_discount_rate=0.1) >= discounted).all()


@pytest.mark.parametrize("bad, message", [
    ({"months": 0}, "months"), ({"months": 2.5}, "months"), ({"annual_discount_rate": -0.1}, "discount"),
    ({"annual_discount_rate": "10%"}, "discount"),
])
def test_clv_rejects_bad_arguments(cdnow_model, bad, message):
    with pytest.raises(platform.ValidationError, match=message):
        cdnow_model.clv(cdnow().iloc[:5], **bad)


@pytest.mark.parametrize("frame, message", [
    (pd.DataFrame({"frequency": [1], "recency": [2.0]}), "lacks the column"),
    (pd.DataFrame({"frequency": [1], "recency": [-2.0], "T": [3.0]}), "negative"),
    (pd.DataFrame({"frequency": [1], "recency": [5.0], "T": [3.0]}), "cannot exceed"),
    (pd.DataFrame({"frequency": ["a"], "recency": [1.0], "T": [3.0]}), "numbers"),
    (pd.DataFrame({"frequency": [np.nan], "recency": [1.0], "T": [3.0]}), "missing"),
    ([1, 2, 3], "DataFrame"),
])
def test_bad_summaries_are_refused(cdnow_model, frame, message):
    with pytest.raises(platform.ValidationError, match=message):
        cdnow_model.probability_alive(frame)


def test_too_few_repeat_customers_is_explained():
    frame = cdnow()
    one_off = frame.assign(frequency=0, recency=0.0, monetary_value=0.0)
    with pytest.raises(NotEnoughData, match="repeat purchase"):
        LifetimeValueModel().fit(one_off)
    with pytest.raises(NotEnoughData, match="at least 30 customers"):
        LifetimeValueModel().fit(frame.iloc[:10])


def test_fit_uses_a_seeded_sample_of_at_most_sample_size():
    frame = cdnow()
    a = LifetimeValueModel(sample_size=1000, random_state=3, fit_pareto=False).fit(frame)
    b = LifetimeValueModel(sample_size=1000, random_state=3, fit_pareto=False).fit(frame)
    assert a.n_customers_fit_ == 1000
    assert a.params_ == b.params_


def test_convergence_failure_is_retried_with_a_penalizer(monkeypatch):
    from lifetimes import BetaGeoFitter
    from lifetimes.utils import ConvergenceError

    class Flaky(BetaGeoFitter):
        def fit(self, *args, **kwargs):
            if self.penalizer_coef == 0:
                raise ConvergenceError("did not converge")
            return super().fit(*args, **kwargs)

    monkeypatch.setattr(clv, "BetaGeoFitter", Flaky)
    model = LifetimeValueModel(fit_pareto=False).fit(cdnow())
    assert model.penalizers_["bgnbd"] == 0.001
    assert model.params_["bgnbd"]["r"] == pytest.approx(0.243, rel=0.05)


# --------------------------------------------------------------------------- summary in SQL


def _at(days: float) -> dt.datetime:
    return dt.datetime(2025, 1, 1, 10, 0) + dt.timedelta(days=days)


def test_summary_matches_a_hand_computed_example(session):
    a = make_customer(session, _at(-10))
    make_order(session, a, _at(0), "10.00")
    make_order(session, a, _at(0) + dt.timedelta(hours=3), "20.00")  # same day: one purchase of 30
    make_order(session, a, _at(14), "30.00")
    make_order(session, a, _at(28), "100.00", status="cancelled")  # not revenue
    make_order(session, a, _at(42), "40.00")
    b = make_customer(session, _at(-1))
    make_order(session, b, _at(35), "50.00")
    make_customer(session, _at(-1))  # a prospect: no orders, not in the summary
    merged = make_customer(session, _at(-1), status="merged")
    make_order(session, merged, _at(3), "70.00")
    session.flush()

    as_of = _at(49).date()
    summary = summarize(session, as_of)
    assert list(summary.index) == [a.id, b.id]
    row = summary.loc[a.id]
    assert row["frequency"] == 2  # purchase days 0, 14, 42 -> two repeats
    assert row["recency"] == pytest.approx(6.0)  # 42 days
    assert row["T"] == pytest.approx(7.0)  # 49 days
    assert row["monetary_value"] == pytest.approx(35.0)  # (30 + 40) / 2, the first day excluded
    assert row["total_revenue"] == pytest.approx(100.0)
    assert summary.loc[b.id].to_dict() == pytest.approx(
        {"frequency": 0, "recency": 0.0, "T": 2.0, "monetary_value": 0.0, "total_revenue": 50.0})

    in_days = summarize(session, as_of, time_unit_days=1)
    assert in_days.loc[a.id, "recency"] == 42 and in_days.loc[a.id, "T"] == 49


def test_summary_reads_nothing_after_as_of(session):
    a = make_customer(session, _at(-10))
    make_order(session, a, _at(0), "10.00")
    make_order(session, a, _at(10), "25.00")
    session.flush()
    as_of = _at(20).date()
    before = summarize(session, as_of)

    make_order(session, a, dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()), "500.00")  # midnight after
    make_order(session, a, _at(40), "70.00")
    late = make_customer(session, _at(-10))
    make_order(session, late, _at(30), "90.00")
    session.flush()
    pd.testing.assert_frame_equal(summarize(session, as_of), before)

    make_order(session, a, dt.datetime.combine(as_of, dt.time(23, 59)), "5.00")  # the last minute counts
    session.flush()
    assert summarize(session, as_of).loc[a.id, "frequency"] == 2


@pytest.mark.parametrize("as_of, unit", [("2025-01-01", 7), (dt.date(2025, 1, 1), 0), (dt.date(2025, 1, 1), 1.5)])
def test_summary_rejects_bad_arguments(session, as_of, unit):
    with pytest.raises(platform.ValidationError):
        summarize(session, as_of, time_unit_days=unit)


# --------------------------------------------------------------------------- refresh into the snapshot


def _population(session, customers: int = 60, seed: int = 1) -> dict[int, float]:
    """Customers with Poisson-ish purchase histories before AS_OF; returns revenue by customer id."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2023, 7, 1, 9, 0)
    revenue: dict[int, float] = {}
    for _ in range(customers):
        customer = make_customer(session, start)
        first = rng.uniform(0, 500)
        days = [first]
        rate = rng.uniform(0.005, 0.08)
        alive_until = first + rng.exponential(400)
        t = first
        while True:
            t += rng.exponential(1 / rate)
            if t > min(alive_until, 729):
                break
            days.append(t)
        total = 0.0
        for day in days:
            amount = round(float(rng.gamma(4, 12)), 2)
            make_order(session, customer, start + dt.timedelta(days=float(day)), amount)
            total += amount
        revenue[customer.id] = total
    make_customer(session, start)  # a prospect without orders
    return revenue


def _scores(engine) -> pd.DataFrame:
    with engine.connect() as connection:
        rows = connection.execute(select(
            CustomerAnalytics.customer_id, CustomerAnalytics.predicted_purchases_12m, CustomerAnalytics.prob_alive,
            CustomerAnalytics.clv_12m, CustomerAnalytics.historic_clv, CustomerAnalytics.clv_frequency,
            CustomerAnalytics.clv_recency, CustomerAnalytics.clv_age, CustomerAnalytics.expected_order_value,
        )).all()
    return pd.DataFrame(rows, columns=["customer_id", "purchases", "alive", "clv", "historic", "frequency", "recency",
                                       "age", "order_value"]).set_index("customer_id").sort_index()


def _prepared(engine, session, customers: int = 60) -> dict[int, float]:
    revenue = _population(session, customers)
    segmentation.refresh_snapshot(session, AS_OF)
    session.commit()
    return revenue


def _valued(engine, **options) -> dict:
    """A lifetime-value run, then the snapshot as the next batch refresh builds it (which picks the values up)."""
    result = refresh_lifetime_value(engine, AS_OF, **options)
    with platform.unit_of_work(engine) as s:
        segmentation.refresh_snapshot(s, AS_OF)
    return result


def test_refresh_scores_every_customer_and_registers_the_model(engine, session):
    revenue = _prepared(engine, session)
    steps = []
    result = _valued(engine, progress=lambda *a: steps.append(a), holdout_days=60)
    assert result["status"] == "fitted"
    assert result["customers_scored"] == len(revenue) == result["customers_with_purchases"]
    assert [s[0] for s in steps] == [1, 2, 3, 4]

    scores = _scores(engine)
    scored = scores[scores["clv"].notna()]
    assert set(scored.index) == set(revenue)
    prospect = scores[scores["clv"].isna()]
    assert len(prospect) == 1 and prospect["historic"].iloc[0] == 0 and prospect["alive"].isna().all()
    assert ((scored["alive"] >= 0) & (scored["alive"] <= 1)).all()
    assert (scored["clv"] >= 0).all() and (scored["purchases"] >= 0).all()
    for cid, total in revenue.items():
        assert float(scored.loc[cid, "historic"]) == pytest.approx(total, abs=0.01)
    assert (scored["recency"] <= scored["age"]).all()
    # Among customers who bought lately, those who bought at a higher rate are expected to buy more.
    recent = scored[scored["age"] - scored["recency"] < 8]
    assert len(recent) >= 10
    rate = recent["frequency"].astype(float) / recent["age"]
    assert recent["purchases"].corr(rate, method="spearman") > 0.6  # the gap since the last purchase matters too

    with engine.connect() as connection:
        model_row = connection.execute(select(MLModel).where(MLModel.name == "clv")).one()
    assert model_row.is_active and model_row.algorithm == "bgnbd+gamma_gamma"
    assert set(model_row.params["bgnbd"]) >= {"r", "alpha", "a", "b", "time_unit"}
    assert model_row.params["bgnbd"] == result["params"]["bgnbd"]
    assert model_row.metrics["customers_scored"] == len(revenue)
    assert "holdout_actual_purchases" in model_row.metrics or "holdout_skipped" in model_row.metrics
    assert model_row.training_end == AS_OF


def test_stored_model_loads_and_reproduces_the_scores(engine, session):
    _prepared(engine, session)
    _valued(engine, holdout_days=0)
    with engine.connect() as connection:
        summary = summarize(connection, AS_OF)
    from crm_core import platform

    with platform.unit_of_work(engine) as s:
        _row, model = registry.active(s, "clv")
    stored = _scores(engine).loc[summary.index]
    np.testing.assert_allclose(model.probability_alive(summary).to_numpy(), stored["alive"].to_numpy(), rtol=1e-9)
    np.testing.assert_allclose(model.clv(summary).round(2).to_numpy(), stored["clv"].astype(float).to_numpy(),
                               atol=0.01)


def test_refresh_twice_replaces_the_values_and_versions_the_model(engine, session):
    _prepared(engine, session)
    _valued(engine, holdout_days=0)
    first = _scores(engine)
    _valued(engine, holdout_days=0)
    pd.testing.assert_frame_equal(_scores(engine), first)
    with engine.connect() as connection:
        versions = connection.execute(select(MLModel.version, MLModel.is_active).where(MLModel.name == "clv")
                                      .order_by(MLModel.version)).all()
    assert [tuple(v) for v in versions] == [(1, False), (2, True)]


def test_refresh_with_too_little_data_skips_with_a_reason(engine, session):
    _prepared(engine, session, customers=8)
    result = refresh_lifetime_value(engine, AS_OF)
    assert result["status"] == "skipped"
    assert "at least 30 customers" in result["reason"]
    assert _scores(engine)["clv"].isna().all()
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(MLModel)) == 0


def test_a_run_on_its_own_writes_only_its_table_and_the_next_snapshot_picks_it_up(engine, session):
    revenue = _prepared(engine, session)
    result = refresh_lifetime_value(engine, AS_OF, holdout_days=0)
    assert result["status"] == "fitted" and result["customers_scored"] == len(revenue)
    assert _scores(engine)["clv"].isna().all()  # the snapshot step is the only writer of customer_analytics
    with engine.connect() as connection:
        stored = connection.scalar(select(func.count()).select_from(CustomerLifetimeValue)
                                   .where(CustomerLifetimeValue.as_of == AS_OF))
    assert stored == len(revenue)
    with platform.unit_of_work(engine) as s:
        segmentation.refresh_snapshot(s, AS_OF)
    assert set(_scores(engine)["clv"].dropna().index) == set(revenue)
    # no snapshot of the date is needed either: the values wait in their own table
    assert refresh_lifetime_value(engine, AS_OF + dt.timedelta(days=1))["status"] == "fitted"


def test_a_failure_after_scoring_leaves_nothing_half_written(engine, session, monkeypatch):
    _prepared(engine, session)

    def broken(*args, **kwargs):
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(clv.registry, "register", broken)
    with pytest.raises(RuntimeError):
        refresh_lifetime_value(engine, AS_OF, holdout_days=0)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(CustomerLifetimeValue)) == 0
        assert connection.scalar(select(func.count()).select_from(MLModel)) == 0


# --------------------------------------------------------------------------- read side


def test_read_functions_aggregate_the_scored_snapshot(engine, session):
    revenue = _prepared(engine, session)
    _valued(engine, holdout_days=0)
    scores = _scores(engine)
    scored = scores[scores["clv"].notna()]
    s = session
    s.expire_all()

    summary = clv_reports.overview(s, ANALYST)
    assert summary["customers_scored"] == len(revenue)
    assert summary["clv_12m_total"] == pytest.approx(float(scored["clv"].astype(float).sum()), abs=0.05)
    assert summary["historic_clv_total"] == pytest.approx(sum(revenue.values()), abs=0.05)
    assert summary["likely_alive"] == int((scored["alive"] >= 0.5).sum())
    assert summary["model"]["version"] == 1 and summary["model"]["active"]

    bins = clv_reports.clv_histogram(s, ANALYST, bins=10)
    assert sum(b["customers"] for b in bins) == len(scored)
    assert [b["bin"] for b in bins] == sorted(b["bin"] for b in bins)
    assert bins[-1]["upper"] is None and bins[-1]["label"].endswith("+")
    assert sum(b["clv_total"] for b in bins) == pytest.approx(float(scored["clv"].astype(float).sum()), abs=0.05)

    heatmap = clv_reports.alive_heatmap(s, ANALYST)
    assert sum(c["customers"] for c in heatmap["cells"]) == len(scored)
    one_offs = [c for c in heatmap["cells"] if c["frequency"] == "0"]
    assert one_offs and all(0 < c["mean_prob_alive"] < 1 for c in one_offs)

    top = clv_reports.top_customers(s, ANALYST, page=1, page_size=10)
    assert top.total == len(scored) and len(top.rows) == 10
    assert [r["clv_12m"] for r in top.rows] == sorted((r["clv_12m"] for r in top.rows), reverse=True)
    assert top.rows[0]["clv_12m"] == pytest.approx(float(scored["clv"].astype(float).max()))
    last_page = clv_reports.top_customers(s, ANALYST, page=top.pages, page_size=10)
    assert len(last_page.rows) == len(scored) - 10 * (top.pages - 1)
    assert Decimal(str(top.rows[0]["historic_clv"])) >= 0

    segments = clv_reports.by_segment(s, ANALYST)
    assert sum(r["customers"] for r in segments) == len(scored)

    # The batch stores the same aggregates after the snapshot; the page reads them while they match.
    live = clv_reports.aggregates(s, ANALYST)
    assert live["summary"]["customers_scored"] == len(scored) and live["histogram"] == clv_reports.clv_histogram(s, ANALYST)
    stored = clv_reports.refresh_value_summary(s, dt.date(2026, 11, 30))
    assert stored["customers_scored"] == len(scored) and "model" not in stored
    s.execute(update(CustomerAnalytics).values(clv_12m=None))  # the stored figures are what the page reads now
    read = clv_reports.aggregates(s, ANALYST)
    assert read["summary"]["customers_scored"] == len(scored)
    assert read["summary"]["as_of"] == live["summary"]["as_of"] and read["summary"]["model"]["active"]
    assert (read["histogram"], read["heatmap"], read["segments"]) == (live["histogram"], live["heatmap"], live["segments"])
    s.execute(update(MLModel).values(is_active=False))  # another model: the stored summary is not its own
    assert clv_reports.aggregates(s, ANALYST)["summary"] is None


def test_read_functions_before_scoring_and_for_other_roles(session):
    assert clv_reports.overview(session, ANALYST) is None
    assert clv_reports.clv_histogram(session, ANALYST) == []
    assert clv_reports.alive_heatmap(session, ANALYST)["cells"] == []
    assert clv_reports.top_customers(session, ANALYST).total == 0
    with pytest.raises(platform.PermissionDenied):
        clv_reports.overview(session, AGENT)
    with pytest.raises(platform.PermissionDenied):
        clv_reports.top_customers(session, AGENT)
    with pytest.raises(platform.ValidationError):
        clv_reports.top_customers(session, ANALYST, page_size=5000)
    with pytest.raises(platform.ValidationError):
        clv_reports.clv_histogram(session, ANALYST, bins=1)


# --------------------------------------------------------------------------- command line


def test_crm_clv_command_scores_and_reports(engine, session, monkeypatch, capsys):
    from crm_cli.main import main

    _prepared(engine, session)
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    assert main(["clv", "--as-of", AS_OF.isoformat()]) == 0
    out = capsys.readouterr().out
    assert "[4/4] Model registered: clv version 1" in out
    assert "Scored 60 customers" in out and "per week" in out
    assert "the analytics snapshot picks them up at the next `crm refresh`" in out
    assert _scores(engine)["clv"].isna().all()
    assert main(["clv", "--as-of", "2020-01-01"]) == 2  # before the first order: one line, like every command
    err = capsys.readouterr().err
    assert err.startswith("error: lifetime value not fitted") and err.count("\n") == 1


def test_mbgnbd_reproduces_btydplus_and_a_silent_one_time_buyer_is_likely_gone(cdnow_model):
    # BTYDplus (R) on the same CDNOW summary: r = 0.525, alpha = 6.183, a = 0.891, b = 1.614.
    params = cdnow_model.params_["mbgnbd"]
    for name, published in {"r": 0.525, "alpha": 6.183, "a": 0.891, "b": 1.614}.items():
        assert params[name] == pytest.approx(published, rel=0.005), name
    one_time = pd.DataFrame({"frequency": [0, 0, 0], "recency": [0.0, 0.0, 0.0], "T": [2.0, 20.0, 38.0]})
    alive = cdnow_model.probability_alive(one_time).to_numpy()
    assert 1 > alive[0] > alive[1] > alive[2]  # BG/NBD would say 1.0 for each
    assert alive[2] < 0.5


def test_p_alive_ranks_who_buys_again_on_the_cdnow_log():
    """On the whole CDNOW log cut at 1997-09-30: P(alive) ranks the customers who order again within 26
    weeks well (BG/NBD's, 1 for every one-time buyer, ranked them worse than chance)."""
    from sklearn.metrics import roc_auc_score

    import demo.datasets

    log = pd.read_csv(io.StringIO(demo.datasets.cdnow_csv()), parse_dates=["date"])
    cut = pd.Timestamp("1997-09-30")
    before = log[log["date"] < cut].groupby("customer_id")["date"].agg(first="min", last="max", days="nunique")
    summary = pd.DataFrame({"frequency": before["days"] - 1, "recency": (before["last"] - before["first"]).dt.days / 7,
                            "T": (cut - before["first"]).dt.days / 7})
    summary["monetary_value"] = np.where(summary["frequency"] > 0, 20.0, 0.0)
    later = set(log.loc[(log["date"] >= cut) & (log["date"] < cut + pd.Timedelta(weeks=26)), "customer_id"])
    bought_again = summary.index.isin(later)
    model = LifetimeValueModel(fit_pareto=False).fit(summary)
    alive = model.probability_alive(summary)
    assert roc_auc_score(bought_again, alive) > 0.65
    assert (alive >= 0.5).mean() < 2 * bought_again.mean()  # 'likely active' is near who did buy, not 80%+
