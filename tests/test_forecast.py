"""Forecasts: Prophet on a known weekly pattern, MAPE, the SQL series, storage and read-back, settings."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import func, select

from crm_core import platform
from db.models import AppSetting, AuditLog, ForecastPoint, ForecastRun, MLModel
from ml import forecast, forecast_reports
from ml.forecast import backtest, daily_series, fit_forecast, mape, refresh_forecasts

from .factories import make_customer, make_order, make_user

EXEC = platform.SignedInUser(1, "exec1", "Exec", "executive")
CSM = platform.SignedInUser(2, "csm1", "CSM", "success_manager")


def weekly_series(days: int = 730, seed: int = 0) -> pd.Series:
    """100 a day, 40 more on Saturdays and Sundays, Gaussian noise with sd 5."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2023-01-02", periods=days, freq="D")
    values = 100 + 40 * (index.day_of_week >= 5) + rng.normal(0, 5, days)
    return pd.Series(values, index=index)


# --------------------------------------------------------------------------- model and error


def test_mape_on_a_hand_example():
    # |100-110|/100 = 0.10 and |50-40|/50 = 0.20; the zero day is left out.
    assert mape([100, 0, 50], [110, 5, 40]) == pytest.approx(0.15)
    assert mape([0, 0], [1, 2]) is None
    assert mape([200], [100]) == pytest.approx(0.5)
    with pytest.raises(platform.ValidationError, match="same length"):
        mape([1, 2], [1])


def test_prophet_learns_a_weekly_pattern_and_its_intervals_cover_the_actuals():
    history = weekly_series()
    _, points = fit_forecast(history, 28, "DE")
    past = points[~points["is_forecast"]]
    future = points[points["is_forecast"]]
    assert len(past) == len(history) and len(future) == 28
    inside = (past["actual"] >= past["lower"]) & (past["actual"] <= past["upper"])
    assert 0.7 <= inside.mean() <= 0.95  # nominal 80%
    days = pd.to_datetime(future["day"])
    weekend = future[days.dt.day_of_week.to_numpy() >= 5]["predicted"].mean()
    weekday = future[days.dt.day_of_week.to_numpy() < 5]["predicted"].mean()
    assert weekend - weekday == pytest.approx(40, abs=6)
    assert (future["lower"] <= future["predicted"]).all() and (future["predicted"] <= future["upper"]).all()


def test_backtest_folds_and_error_on_a_known_pattern():
    folds = backtest(weekly_series(400), "DE", folds=3, fold_days=30)
    assert [f["days"] for f in folds] == [30, 30, 30]
    assert [f["origin"] for f in folds] == ["2023-11-08", "2023-12-08", "2024-01-07"]
    assert all(f["mape"] < 0.08 for f in folds)  # noise sd 5 on ~110: about 4%
    assert all(0.5 <= f["interval_coverage"] <= 1 for f in folds)


# --------------------------------------------------------------------------- the series in SQL


def _shop(session, days: int, end: dt.date, newcomer_every: int | None = None) -> dict[str, dict[dt.date, float]]:
    """Customers ordering over `days` days up to `end` (a new one every `newcomer_every` days, who buys
    that day); returns the expected daily figures."""
    rng = np.random.default_rng(5)
    expected: dict[str, dict[dt.date, float]] = {"revenue": {}, "orders": {}, "new_customers": {}}
    start = end - dt.timedelta(days=days - 1)
    customers = [make_customer(session, dt.datetime.combine(start, dt.time())) for _ in range(12)]
    first_seen: dict[int, dt.date] = {}
    for offset in range(days):
        day = start + dt.timedelta(days=offset)
        if newcomer_every and offset and offset % newcomer_every == 0:
            newcomer = make_customer(session, dt.datetime.combine(day, dt.time()))
            customers.append(newcomer)
            amount = 25.0
            make_order(session, newcomer, dt.datetime.combine(day, dt.time(8)), amount)
            expected["revenue"][day] = expected["revenue"].get(day, 0.0) + amount
            expected["orders"][day] = expected["orders"].get(day, 0) + 1
            first_seen[newcomer.id] = day
        count = 1 + (day.weekday() >= 5) + int(rng.integers(0, 2))
        for k in range(count):
            customer = customers[int(rng.integers(0, len(customers)))]
            amount = round(float(rng.uniform(20, 80)), 2)
            make_order(session, customer, dt.datetime.combine(day, dt.time(9 + k)), amount)
            expected["revenue"][day] = expected["revenue"].get(day, 0.0) + amount
            expected["orders"][day] = expected["orders"].get(day, 0) + 1
            first_seen.setdefault(customer.id, day)
    for day in first_seen.values():
        expected["new_customers"][day] = expected["new_customers"].get(day, 0) + 1
    # Not counted: a cancelled order, and anything after `end`.
    make_order(session, customers[0], dt.datetime.combine(end, dt.time(20)), "999.00", status="cancelled")
    make_order(session, customers[0], dt.datetime.combine(end + dt.timedelta(days=1), dt.time()), "999.00")
    session.commit()
    return expected


def test_daily_series_matches_the_orders(session):
    end = dt.date(2025, 3, 31)
    expected = _shop(session, 30, end)
    frame = daily_series(session, end)
    assert len(frame) == 30 and frame.index[-1] == pd.Timestamp(end)
    for metric in ("revenue", "orders", "new_customers"):
        actual = {d.date(): v for d, v in frame[metric].items() if v}
        assert actual == pytest.approx(expected[metric]), metric
    assert frame["new_customers"].sum() == 12


def test_daily_series_fills_days_without_orders_and_stops_at_as_of(session):
    customer = make_customer(session, dt.datetime(2025, 1, 1))
    make_order(session, customer, dt.datetime(2025, 1, 1, 12), "10.00")
    make_order(session, customer, dt.datetime(2025, 1, 4, 12), "30.00")
    make_order(session, customer, dt.datetime(2025, 1, 9, 12), "50.00")
    session.flush()
    frame = daily_series(session, dt.date(2025, 1, 6))
    assert list(frame["revenue"]) == [10, 0, 0, 30, 0, 0]
    assert list(frame["orders"]) == [1, 0, 0, 1, 0, 0]
    assert list(frame["new_customers"]) == [1, 0, 0, 0, 0, 0]
    assert daily_series(session, dt.date(2024, 12, 31)).empty


# --------------------------------------------------------------------------- refresh, storage, read-back


def test_refresh_stores_history_forecast_and_backtest(engine, session):
    end = dt.date(2025, 3, 31)
    expected = _shop(session, 120, end, newcomer_every=7)
    steps = []
    result = refresh_forecasts(engine, end, horizon_days=14, progress=lambda *a: steps.append(a))
    assert [s[0] for s in steps] == [1, 2, 3, 4]
    assert result["country"] == "DE" and result["model_version"] == 1
    assert {m: r["status"] for m, r in result["metrics"].items()} == dict.fromkeys(
        ("revenue", "orders", "new_customers"), "fitted")

    session.expire_all()
    runs = forecast_reports.latest_runs(session, EXEC)
    assert [r["metric"] for r in runs] == ["revenue", "orders", "new_customers"]
    revenue_run = runs[0]
    assert revenue_run["history_days"] == 120 and revenue_run["horizon_days"] == 14
    assert len(revenue_run["backtest"]) == 2  # the third fold would leave under 60 days to fit on
    assert revenue_run["mape"] == pytest.approx(np.mean([f["mape"] for f in revenue_run["backtest"]]))
    assert result["metrics"]["revenue"]["mape"] == pytest.approx(revenue_run["mape"])

    points = forecast_reports.series(session, EXEC, "revenue", history_days=365)
    assert len(points) == 120 + 14
    assert sum(p["is_forecast"] for p in points) == 14
    assert points[-1]["day"] == end + dt.timedelta(days=14) and points[-1]["actual"] is None
    by_day = {p["day"]: p for p in points}
    for day, amount in list(expected["revenue"].items())[:10]:
        assert by_day[day]["actual"] == pytest.approx(amount)
    assert all(p["lower"] <= p["predicted"] <= p["upper"] and p["lower"] >= 0 for p in points)
    assert len(forecast_reports.series(session, EXEC, "orders", history_days=30)) == 30 + 14

    ahead = forecast_reports.outlook(session, EXEC, "orders", days=7)
    assert ahead["last_actual"] == sum(v for d, v in expected["orders"].items() if d > end - dt.timedelta(days=7))
    assert ahead["next_forecast"] == pytest.approx(
        sum(p["predicted"] for p in forecast_reports.series(session, EXEC, "orders", history_days=7) if p["is_forecast"]
            and p["day"] <= end + dt.timedelta(days=7)))

    model = session.scalar(select(MLModel).where(MLModel.name == "forecast"))
    assert model.is_active and model.algorithm == "prophet"
    assert model.params["country_holidays"] == "DE" and model.params["interval_width"] == 0.8
    assert set(model.metrics) == {"mape_revenue", "mape_orders", "mape_new_customers"}


@pytest.mark.parametrize(("made_at", "partial"), [(dt.datetime(2025, 3, 31, 9, 30), True),
                                                    (dt.datetime(2025, 4, 1, 0, 5), False)])
def test_a_run_made_before_its_day_ended_draws_no_history_for_that_day(session, made_at, partial):
    end = dt.date(2025, 3, 31)
    run = ForecastRun(metric="orders", as_of=end, status="fitted", horizon_days=2, history_days=3, created_at=made_at)
    session.add(run)
    session.flush()
    for offset in range(-2, 3):  # three days of history to `end`, two forecast days after it
        session.add(ForecastPoint(run_id=run.id, day=end + dt.timedelta(days=offset),
                                  actual=None if offset > 0 else 10.0 + offset, predicted=10.0, lower=8.0, upper=12.0,
                                  is_forecast=offset > 0))
    session.flush()
    assert forecast_reports.latest_runs(session, EXEC)[0]["partial_day"] == (end if partial else None)
    actual = {p["day"]: p["actual"] for p in forecast_reports.series(session, EXEC, "orders", history_days=7)}
    # The morning's orders of the run's day read as a drop beside whole days: that day is not drawn.
    assert actual[end] == (None if partial else 10.0)
    assert actual[end - dt.timedelta(days=1)] == 9.0 and actual[end + dt.timedelta(days=1)] is None


def test_a_second_refresh_keeps_only_the_latest_points(engine, session):
    end = dt.date(2025, 3, 31)
    _shop(session, 90, end)
    refresh_forecasts(engine, end, horizon_days=7)
    refresh_forecasts(engine, end, horizon_days=7)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ForecastRun)) == 6
        assert connection.scalar(select(func.count()).select_from(ForecastPoint)) == 3 * (90 + 7)
        assert connection.scalar(select(func.count()).select_from(MLModel).where(MLModel.is_active)) == 1


def test_short_history_is_skipped_with_a_reason(engine, session):
    end = dt.date(2025, 3, 31)
    _shop(session, 20, end)
    result = refresh_forecasts(engine, end)
    assert all(r["status"] == "skipped" for r in result["metrics"].values())
    assert result["model_version"] is None
    session.expire_all()
    runs = forecast_reports.latest_runs(session, EXEC)
    assert len(runs) == 3
    assert runs[0]["reason"] == "Only 20 day(s) of order history up to 2025-03-31; forecasts need at least 60 days."
    assert forecast_reports.series(session, EXEC, "revenue") == []
    assert forecast_reports.outlook(session, EXEC, "revenue") is None
    assert session.scalar(select(func.count()).select_from(MLModel)) == 0


def test_a_metric_without_any_recent_change_is_skipped_with_a_reason(engine, session):
    """One cohort, all arrived long ago (an imported history): there are no new customers to forecast."""
    end = dt.date(2025, 3, 31)
    _shop(session, 200, end)  # twelve customers, all first seen in the first days
    result = refresh_forecasts(engine, end, horizon_days=7)
    assert result["metrics"]["new_customers"] == {"status": "skipped", "reason": (
        "New customers was 0 on every one of the last 90 days up to 2025-03-31: there is no pattern to forecast.")}
    assert result["metrics"]["orders"]["status"] == "fitted"


def test_no_orders_at_all_is_skipped_too(engine):
    result = refresh_forecasts(engine, dt.date(2025, 3, 31))
    assert result["metrics"]["orders"] == {
        "status": "skipped", "reason": "Only 0 day(s) of order history up to 2025-03-31; forecasts need at least 60 days."}


@pytest.mark.parametrize("horizon", [0, 400, 1.5, "90", True])
def test_bad_horizon_is_refused(engine, horizon):
    with pytest.raises(platform.ValidationError, match="horizon"):
        refresh_forecasts(engine, dt.date(2025, 3, 31), horizon_days=horizon)


def test_a_failure_while_storing_leaves_nothing_half_written(engine, session, monkeypatch):
    end = dt.date(2025, 3, 31)
    _shop(session, 90, end)
    calls = {"n": 0}
    original = forecast._store_run

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("disk full")
        return original(*args, **kwargs)

    monkeypatch.setattr(forecast, "_store_run", failing)
    with pytest.raises(RuntimeError):
        refresh_forecasts(engine, end, horizon_days=7)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(ForecastRun)) == 0
        assert connection.scalar(select(func.count()).select_from(MLModel)) == 0


def test_read_side_checks_permission_and_input(session):
    with pytest.raises(platform.PermissionDenied):
        forecast_reports.latest_runs(session, CSM)
    with pytest.raises(platform.ValidationError, match="Unknown metric"):
        forecast_reports.series(session, EXEC, "profit")
    with pytest.raises(platform.ValidationError):
        forecast_reports.series(session, EXEC, "revenue", history_days=1)
    assert forecast_reports.latest_runs(session, EXEC) == []


# --------------------------------------------------------------------------- the shop country setting


def test_shop_country_defaults_saves_audits_and_detects_conflicts(session):
    admin = make_user(session, "admin")
    assert platform.get_shop_country(session) == ("DE", 0)
    code, version = platform.save_shop_country(session, admin, " fr ", expected_version=0)
    assert (code, version) == ("FR", 1)
    assert platform.get_shop_country(session) == ("FR", 1)
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "forecast.country.save"))
    assert entry.before is None and entry.after == {"country": "FR"} and entry.actor_id == admin.id

    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        platform.save_shop_country(session, admin, "AT", expected_version=0)
    assert platform.save_shop_country(session, admin, "AT", expected_version=1) == ("AT", 2)
    assert session.get(AppSetting, "shop_country").value == {"country": "AT"}


@pytest.mark.parametrize("country", ["", "XX", "Germany", None, 49])
def test_unknown_countries_are_refused(session, country):
    admin = make_user(session, "admin")
    with pytest.raises(platform.ValidationError):
        platform.save_shop_country(session, admin, country, expected_version=0)
    assert session.get(AppSetting, "shop_country") is None


def test_only_admins_set_the_country(session):
    analyst = make_user(session, "analyst")
    with pytest.raises(platform.PermissionDenied):
        platform.save_shop_country(session, analyst, "FR", expected_version=0)


def test_refresh_uses_the_saved_country(engine, session):
    admin = make_user(session, "admin")
    platform.save_shop_country(session, admin, "FR", expected_version=0)
    end = dt.date(2025, 3, 31)
    _shop(session, 70, end)
    result = refresh_forecasts(engine, end, horizon_days=7)
    assert result["country"] == "FR"
    session.expire_all()
    assert {r["country"] for r in forecast_reports.latest_runs(session, EXEC)} == {"FR"}


def test_crm_forecast_command_reports_each_metric(engine, session, monkeypatch, capsys):
    from crm_cli.main import main

    _shop(session, 20, dt.date(2025, 3, 31))
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    assert main(["forecast", "--as-of", "2025-03-31", "--horizon-days", "14"]) == 2  # none fitted: one line
    err = capsys.readouterr().err
    assert err.startswith("error: no forecast fitted") and err.count("\n") == 1
    assert "revenue: Only 20 day(s) of order history" in err
    assert main(["forecast", "--as-of", "2025-03-31", "--horizon-days", "0"]) == 2
    assert "horizon" in capsys.readouterr().err


def test_forecasts_learn_from_the_last_three_years_after_the_last_long_quiet_spell():
    """A 1997-98 log imported into a shop trading since 2024: the forecasts learn from 2024 on, not
    from a trend across 26 empty years; a shop with six years learns from the last three."""
    from ml.forecast import GAP_DAYS, MAX_HISTORY_DAYS, trading_history

    old = pd.date_range("1997-01-01", "1998-06-30", freq="D")
    new = pd.date_range("2024-03-01", "2026-11-30", freq="D")
    days = pd.date_range(old[0], new[-1], freq="D")
    orders = pd.Series(0.0, index=days)
    orders[old] = 40.0
    orders[new] = 25.0
    orders[pd.date_range("2025-02-01", periods=GAP_DAYS - 1, freq="D")] = 0.0  # a quiet spell, but shorter
    frame = pd.DataFrame({"revenue": orders * 30, "orders": orders, "new_customers": orders / 5})
    kept = trading_history(frame)
    assert kept.index[0] == pd.Timestamp("2024-03-01") and kept.index[-1] == new[-1]

    six_years = pd.date_range("2020-12-01", "2026-11-30", freq="D")
    busy = pd.DataFrame({"revenue": 100.0, "orders": 3.0, "new_customers": 1.0}, index=six_years)
    assert len(trading_history(busy)) == MAX_HISTORY_DAYS and trading_history(busy).index[-1] == six_years[-1]
    # A shop quiet for the last 70 days keeps its history: the quiet spell has not ended.
    closing = busy.copy()
    closing.iloc[-70:] = 0.0
    assert len(trading_history(closing)) == MAX_HISTORY_DAYS
