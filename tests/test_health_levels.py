"""Health levels a person can act on: live accounts only, bands calibrated from churn, admin bands, movers."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest
from sqlalchemy import select

from crm_core import platform, segmentation
from db.models import AccountHealthRun, AccountHealthScore, AppSetting, AuditLog
from ml import health, health_reports

from .factories import make_customer, make_order, make_user

AS_OF = dt.date(2025, 6, 30)
CUTOFF = dt.datetime(2025, 7, 1)

# The known fixture: 1,000 scores 0.0 ... 99.9 in five blocks (lowest first) with these churn rates.
BLOCKS = ((50, 0.80), (150, 0.50), (250, 0.30), (300, 0.15), (250, 0.04))


def known_fixture() -> tuple[np.ndarray, np.ndarray]:
    """Scores in order; in each block exactly round(size x rate) churned, spread by a permutation."""
    scores = np.arange(sum(size for size, _ in BLOCKS)) / 10
    churned = []
    for size, rate in BLOCKS:
        lost = round(size * rate)
        churned.extend(1 if (i * 7919) % size < lost else 0 for i in range(size))
    return scores, np.array(churned)


def test_calibration_recovers_known_churn_rates():
    scores, churned = known_fixture()
    fitted = health.LevelBandCalibrator().fit(scores, churned)
    assert fitted.fallback_reason_ is None
    assert fitted.schedule_ == health.BAND_SCHEDULES[0]
    # The first schedule's cuts fall on the block edges: 5%, 20%, 45%, 75% of the scores.
    assert fitted.bands_ == {"excellent": 75.0, "good": 45.0, "fair": 20.0, "poor": 5.0}
    rates = {row["level"]: row["churn_rate"] for row in fitted.table_}
    assert rates == {"excellent": 0.04, "good": 0.15, "fair": 0.3, "poor": 0.5, "critical": 0.8}
    shares = {row["level"]: row["share"] for row in fitted.table_}
    assert shares["critical"] == 0.05  # a short list
    assert health.rates_rise(fitted.table_)


def test_calibration_falls_back_when_rates_do_not_rise_or_data_is_thin():
    scores, churned = known_fixture()
    backwards = health.LevelBandCalibrator().fit(scores, churned[::-1])  # churn rises with the score
    assert backwards.fallback_reason_.startswith("no band schedule gave churn rates rising")
    assert backwards.bands_ == health.DEFAULT_BANDS
    thin = health.LevelBandCalibrator().fit(scores[:150], churned[:150])
    assert thin.fallback_reason_.startswith("too little data to calibrate: 150 live accounts")
    assert thin.bands_ == health.DEFAULT_BANDS


def test_a_calibrations_rates_describe_only_the_levels_its_own_bands_cut():
    scores, churned = known_fixture()
    fitted = health.LevelBandCalibrator().fit(scores, churned)
    calibration = {"bands": fitted.bands_, "fit": {"table": fitted.table_}}
    assert health.calibration_describes(calibration, dict(fitted.bands_))
    assert not health.calibration_describes(calibration, {**fitted.bands_, "poor": 10.0})  # an admin's bands
    assert not health.calibration_describes(None, fitted.bands_)
    assert not health.calibration_describes(calibration, None)


def at(days_before: float) -> dt.datetime:
    return CUTOFF - dt.timedelta(days=days_before)


def test_only_live_accounts_are_scored_churned_and_never_bought_counted_apart(session):
    live = make_customer(session, at(800))
    for d in (10, 40, 200):
        make_order(session, live, at(d), 50)
    gone = make_customer(session, at(900))
    make_order(session, gone, at(500), 50)  # last order more than 365 days ago: churned
    prospect = make_customer(session, at(100))  # never bought
    segmentation.refresh_snapshot(session, AS_OF)
    session.commit()

    result = health.score_health(session.get_bind(), AS_OF)
    assert result["customers"] == 1 and result["churned"] == 1 and result["never_bought"] == 1
    session.expire_all()
    scored = set(session.scalars(select(AccountHealthScore.customer_id)))
    assert scored == {live.id} and gone.id not in scored and prospect.id not in scored
    run = session.get(AccountHealthRun, AS_OF)
    assert (run.scored, run.churned, run.never_bought, run.churned_after_days) == (1, 1, 1, 365)
    assert run.thresholds == health.DEFAULT_BANDS and run.bands_source == "default"
    analyst = make_user(session, "analyst")
    summary = health_reports.overview(session, analyst)
    assert (summary["churned"], summary["never_bought"]) == (1, 1)
    assert health_reports.customer_health(session, analyst, gone.id)["relationship"] == (
        "churned: last order 500 days before 2025-06-30 (more than 365); not scored as an account")
    assert health_reports.customer_health(session, analyst, prospect.id)["relationship"].startswith("never bought")
    assert health_reports.customer_health(session, analyst, live.id)["relationship"] is None
    # The lifecycle rule is the one definition of "churned": a longer one makes the gone customer live.
    segmentation.save_lifecycle_rules(session, platform.SYSTEM, {"churned_days": 600}, None)
    session.commit()
    assert health.score_health(session.get_bind(), AS_OF)["customers"] == 2


def test_a_thin_shop_keeps_the_default_bands_with_the_reason(session):
    c = make_customer(session, at(400))
    make_order(session, c, at(30), 20)
    session.commit()
    calibration = health.calibrate_bands(session, AS_OF)
    assert calibration["applied"] and calibration["bands"] == health.DEFAULT_BANDS
    assert calibration["fallback_reason"].startswith("too little data")
    info = health.get_bands(session, make_user(session, "executive"))
    assert info["source"] == "default" and info["calibration"]["fit"]["accounts"] <= 1


def test_admin_bands_apply_validate_conflict_and_survive_calibration(session):
    admin, analyst = make_user(session, "admin"), make_user(session, "analyst")
    for bad, message in (
        ({"excellent": 80, "good": 90, "fair": 50, "poor": 35}, "must be below that of excellent"),
        ({"excellent": 80, "good": 65, "fair": 50}, "must be a number"),
        ({"excellent": 80, "good": 65, "fair": 50, "poor": 0}, "above 0"),
        ({"excellent": "x", "good": 65, "fair": 50, "poor": 35}, "must be a number"),
        ({"excellent": 80, "good": 65, "fair": 50, "poor": 35, "great": 99}, "Unknown level"),
    ):
        with pytest.raises(platform.ValidationError, match=message):
            health.save_bands(session, admin, bad, expected_version=0)
    with pytest.raises(platform.PermissionDenied):
        health.save_bands(session, analyst, {"excellent": 90, "good": 70, "fair": 40, "poor": 20}, 0)
    health.save_bands(session, admin, {"excellent": 90, "good": 70, "fair": 40, "poor": 20}, expected_version=0)
    with pytest.raises(platform.ConflictError):
        health.save_bands(session, admin, {"excellent": 91, "good": 70, "fair": 40, "poor": 20}, expected_version=0)
    health.calibrate_bands(session, AS_OF)  # keeps the admin's bands in force
    bands, info, version = health.current_bands(session)
    assert bands == {"excellent": 90.0, "good": 70.0, "fair": 40.0, "poor": 20.0} and info["source"] == "admin"
    assert info["calibration"] is not None
    c = make_customer(session, at(400))
    make_order(session, c, at(30), 20)
    session.commit()
    health.score_health(session.get_bind(), AS_OF)
    session.expire_all()
    run = session.get(AccountHealthRun, AS_OF)
    assert run.bands_source == "admin" and run.thresholds["excellent"] == 90.0
    score = session.scalar(select(AccountHealthScore))
    assert score.level == health.levels_for(np.array([score.overall]), bands)[0]
    version = health.current_bands(session)[2]  # scoring fitted the weights and calibrated again
    health.reset_bands(session, admin, expected_version=version)
    assert health.current_bands(session)[1]["source"] == "default"  # the calibration fell back: default bands
    actions = [a.action for a in session.scalars(select(AuditLog).order_by(AuditLog.id))]
    assert "health.bands.save" in actions and "health.bands.reset" in actions
    assert session.get(AppSetting, health.BANDS_KEY) is not None


def test_small_moves_are_not_movers(session):
    earlier = AS_OF - dt.timedelta(days=30)
    rows = {}
    for name, before, now in (("drifter", 50, 47), ("faller", 80, 60), ("riser", 40, 46)):
        c = make_customer(session, at(800), first_name=name)
        rows[name] = c
        for as_of, overall, trend in ((earlier, before, None), (AS_OF, now, now - before)):
            session.add(AccountHealthScore(customer_id=c.id, as_of=as_of, engagement=overall, satisfaction=overall,
                                           loyalty=overall, payment=overall, support=overall, overall=overall,
                                           level="fair", trend=trend))
    session.flush()
    viewer = make_user(session, "success_manager")
    down = health_reports.movers(session, viewer, "down")
    assert [r["customer_id"] for r in down.rows] == [rows["faller"].id]  # the 3-point drift is left out
    up = health_reports.movers(session, viewer, "up")
    assert [r["customer_id"] for r in up.rows] == [rows["riser"].id]
    summary = health_reports.overview(session, viewer)
    assert (summary["improving"], summary["declining"]) == (1, 1)
    assert summary["mover_min_points"] == health_reports.MOVER_MIN_POINTS


def test_backtest_says_whether_rates_rise(session):
    scored = AS_OF - dt.timedelta(days=90)
    scored_end = dt.datetime.combine(scored + dt.timedelta(days=1), dt.time())
    for level, overall, churned in (("excellent", 85, False), ("good", 70, False), ("good", 68, True),
                                    ("fair", 55, True), ("fair", 52, True), ("fair", 51, False),
                                    ("critical", 20, True)):
        c = make_customer(session, scored_end - dt.timedelta(days=300))
        make_order(session, c, scored_end - dt.timedelta(days=50), 30)
        if not churned:
            make_order(session, c, scored_end + dt.timedelta(days=20), 30)
        session.add(AccountHealthScore(customer_id=c.id, as_of=scored, engagement=overall, satisfaction=overall,
                                       loyalty=overall, payment=overall, support=overall, overall=overall,
                                       level=level))
    session.add(AccountHealthRun(as_of=scored, scored=7, churned=0, never_bought=0, churned_after_days=365,
                                 thresholds=health.DEFAULT_BANDS, bands_source="calibrated"))
    session.flush()
    table = health.backtest_levels(session.connection(), AS_OF, 90)
    assert table.attrs["rates_rise"] is True  # 0, 0.5, 0.67, (no poor), 1.0
    assert table.attrs["bands"] == health.DEFAULT_BANDS and table.attrs["bands_source"] == "calibrated"
