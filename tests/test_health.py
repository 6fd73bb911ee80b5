"""Account health: components from their inputs, levels, trend, advice, fitted weights, backtest."""

from __future__ import annotations

import datetime as dt
import math

import numpy as np
import pytest
from sqlalchemy import func, select

from crm_core import platform, segmentation
from db.engine import session_factory
from db.models import (
    HEALTH_LEVELS,
    AccountHealthScore,
    AppSetting,
    AuditLog,
    Complaint,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerPaymentMethod,
    LoyaltyAccount,
    LoyaltyTierChange,
    LoyaltyTransaction,
    MLModel,
    RiskAssessment,
    SupportTicket,
    SurveyResponse,
    WebSession,
)
from ml import health, health_reports
from ml.health import scoring as health_scoring

from .factories import make_customer, make_order, make_user

AS_OF = dt.date(2025, 6, 30)
CUTOFF = dt.datetime(2025, 7, 1)  # the end of AS_OF
_tokens = iter(range(1, 10**9))


def at(days_before: float) -> dt.datetime:
    """A time `days_before` days before the end of AS_OF."""
    return CUTOFF - dt.timedelta(days=days_before)


def customer(session, **fields):
    return make_customer(session, at(800), **fields)


def sessions(session, c, count: int, days_before: float = 10):
    session.add_all([WebSession(customer_id=c.id, started_at=at(days_before) + dt.timedelta(minutes=i),
                                duration_seconds=60, page_views=3, source="direct", device="desktop")
                     for i in range(count)])


def email(session, c, days_before: float, opened: bool = False, clicked: bool = False):
    sent = at(days_before)
    session.add(CustomerCommunication(
        customer_id=c.id, channel="email", direction="outbound", status="clicked" if clicked else "sent",
        sent_at=sent, opened_at=sent + dt.timedelta(hours=1) if opened else None,
        clicked_at=sent + dt.timedelta(hours=2) if clicked else None,
    ))


def survey(session, c, kind: str, score: int, days_before: float):
    session.add(SurveyResponse(customer_id=c.id, survey_type=kind, score=score, responded_at=at(days_before)))


def complaint(session, c, days_before: float, severity: str = "medium", resolved_days_before: float | None = None):
    session.add(Complaint(
        customer_id=c.id, category="delivery", severity=severity, description="Late parcel",
        status="resolved" if resolved_days_before is not None else "open", created_at=at(days_before),
        resolved_at=None if resolved_days_before is None else at(resolved_days_before),
    ))


def ticket(session, c, days_before: float, priority: str = "normal", breached: bool = False,
           resolved_days_before: float | None = None):
    created = at(days_before)
    due = created + dt.timedelta(hours=4) if breached else created + dt.timedelta(days=365)
    n = next(_tokens)
    session.add(SupportTicket(
        ticket_number=f"HT-{n}", customer_id=c.id, subject="Help", priority=priority,
        status="resolved" if resolved_days_before is not None else "open", created_at=created,
        first_response_due_at=due, resolution_due_at=due + dt.timedelta(days=1),
        resolved_at=None if resolved_days_before is None else at(resolved_days_before),
    ))


def card(session, c, exp_year: int, exp_month: int = 12, days_before: float = 300):
    n = next(_tokens)
    session.add(CustomerPaymentMethod(customer_id=c.id, processor="stripe", processor_token=f"pm_h{n}",
                                      brand="visa", last4="4242", exp_month=exp_month, exp_year=exp_year,
                                      created_at=at(days_before)))


def member(session, c, tier: str, earned: int = 0, redeemed: bool = False, days_before: float = 100):
    account = LoyaltyAccount(customer_id=c.id, tier=tier, points_balance=earned, lifetime_points=earned,
                             enrolled_at=at(500))
    session.add(account)
    session.flush()
    session.add(LoyaltyTierChange(account_id=account.id, from_tier=None, to_tier="bronze", changed_at=at(500)))
    if tier != "bronze":
        session.add(LoyaltyTierChange(account_id=account.id, from_tier="bronze", to_tier=tier,
                                      changed_at=at(days_before)))
    if earned:
        session.add(LoyaltyTransaction(account_id=account.id, customer_id=c.id, kind="earn", points=earned,
                                       balance_after=earned, created_at=at(days_before)))
    if redeemed:
        session.add(LoyaltyTransaction(account_id=account.id, customer_id=c.id, kind="redeem", points=-100,
                                       balance_after=earned - 100, created_at=at(days_before - 1)))
    return account


def happy_customer(session):
    c = customer(session, first_name="Happy")
    for month in range(12):
        make_order(session, c, at(5 + 30 * month), 80)
    sessions(session, c, 14)
    for d in (20, 40, 60, 80):
        email(session, c, d, opened=True, clicked=d < 50)
    survey(session, c, "nps", 10, 15)
    survey(session, c, "csat", 5, 40)
    member(session, c, "gold", earned=2500, redeemed=True)
    card(session, c, AS_OF.year + 2)
    return c


def unhappy_customer(session):
    c = customer(session, first_name="Unhappy")
    make_order(session, c, at(300), 120)
    make_order(session, c, at(200), 60)
    for d in (20, 40, 60, 80):
        email(session, c, d)
    survey(session, c, "nps", 2, 30)
    complaint(session, c, 25, severity="high")
    card(session, c, AS_OF.year - 1)
    ticket(session, c, 20, priority="urgent", breached=True)
    return c


def scores_of(session, as_of=AS_OF) -> dict[int, AccountHealthScore]:
    session.expire_all()
    return {s.customer_id: s for s in session.scalars(select(AccountHealthScore).where(AccountHealthScore.as_of == as_of))}


# --------------------------------------------------------------------------- levels and advice


def test_healthy_and_unhealthy_accounts(session):
    happy, unhappy = happy_customer(session), unhappy_customer(session)
    segmentation.refresh_snapshot(session, AS_OF)
    session.commit()

    result = health.score_health(session.get_bind(), AS_OF)
    assert result["customers"] == 2
    assert result["weights"] == health.equal_weights()  # two customers: too little data to fit
    assert result["weights_source"] == "equal"
    scores = scores_of(session)
    good, bad = scores[happy.id], scores[unhappy.id]

    assert good.level == "excellent" and good.overall >= 90
    assert good.engagement == pytest.approx(0.4 * 100 + 0.3 * 100 + 0.3 * 100 * (1 - 5 / 365), abs=0.01)
    assert good.satisfaction == 100.0
    assert good.loyalty == pytest.approx(0.4 * 100 + 0.2 * 100 * 335 / 730 + 0.2 * 60 + 0.2 * 100, abs=0.01)
    assert (good.payment, good.support) == (100.0, 100.0)
    assert good.risk_indicators == []
    assert good.recommendations == [health.HEALTHY_RECOMMENDATION]
    assert good.action_items == []
    assert good.trend is None

    assert bad.level in ("poor", "critical") and bad.overall < 35
    assert bad.engagement == pytest.approx(0.3 * 100 * (1 - 200 / 365), abs=0.01)  # no visit, no email opened
    assert bad.satisfaction == 0.0  # NPS 2 -> 20, minus 25 (high complaint) and 15 (still open)
    assert bad.payment == 60.0  # the only card expired
    assert bad.support == pytest.approx(100 - 15 - 10 - 5 - 10)  # open, urgent, opened in 90 days, SLA breach
    assert set(bad.risk_indicators) == {
        "No order in 90 days", "Open complaint", "Expired payment method", "Detractor NPS",
        "Open support tickets", "SLA breach in the last year",
    }
    assert bad.recommendations == [health.RECOMMENDATIONS["satisfaction"], health.RECOMMENDATIONS["engagement"]]
    assert bad.action_items[0] == health.CRITICAL_ACTION
    assert [a["priority"] for a in bad.action_items[1:]] == sorted(
        (a["priority"] for a in bad.action_items[1:]), key=["high", "medium", "low"].index)
    assert {"action": "Ask the customer to update their payment method", "owner": "Billing",
            "priority": "medium"} in bad.action_items

    session.expire_all()
    assert {a.health_score for a in session.scalars(select(CustomerAnalytics))} == {None}  # written by the snapshot only
    segmentation.refresh_snapshot(session, AS_OF)  # as the next batch refresh does: it picks the scores up
    snapshot = {a.customer_id: a for a in session.scalars(select(CustomerAnalytics))}
    assert snapshot[happy.id].health_score == good.overall and snapshot[happy.id].health_level == "excellent"
    assert snapshot[unhappy.id].health_level == bad.level
    model = session.scalar(select(MLModel).where(MLModel.name == "health"))
    assert model.is_active and model.params["weights"] == health.equal_weights()
    assert session.scalar(select(AuditLog).where(AuditLog.action == "health.score")).after["customers"] == 2


def test_scoring_again_replaces_the_rows_and_registers_only_changed_weights(session):
    happy_customer(session)
    unhappy_customer(session)
    session.commit()
    engine = session.get_bind()
    first = health.score_health(engine, AS_OF)
    second = health.score_health(engine, AS_OF)
    assert first["model_version"] == second["model_version"] == 1
    count = session.scalar(select(func.count()).select_from(AccountHealthScore))
    assert count == 2
    admin = make_user(session, "admin")
    health.save_weights(session, admin, {"engagement": 1, "satisfaction": 0, "loyalty": 0, "payment": 0,
                                         "support": 0}, expected_version=None)
    session.commit()
    third = health.score_health(engine, AS_OF)
    assert third["model_version"] == 2
    assert {s.overall for s in scores_of(session).values()} == {s.engagement for s in scores_of(session).values()}


def test_scoring_refits_the_weights_when_the_last_fit_is_a_month_old(session):
    happy_customer(session)
    session.commit()
    engine = session.get_bind()
    assert health.score_health(engine, AS_OF, refit_after_days=None)["weights_source"] == "default"
    assert health.last_fit_as_of(session) is None
    session.commit()
    assert health.score_health(engine, AS_OF - dt.timedelta(days=40))["refitted"]
    assert not health.score_health(engine, AS_OF - dt.timedelta(days=20))["refitted"]
    assert health.score_health(engine, AS_OF)["refitted"]
    assert health.last_fit_as_of(session) == AS_OF
    fits = session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "health.weights.fit"))
    assert fits == 2


def test_scoring_needs_the_refresh_permission(session):
    analyst = make_user(session, "analyst")
    with pytest.raises(platform.PermissionDenied):
        health.score_health(session.get_bind(), AS_OF, actor=analyst)


# --------------------------------------------------------------------------- components


def components(session, c) -> dict[str, float]:
    session.flush()
    return health.component_scores(session.connection(), AS_OF).loc[c.id].to_dict()


def test_each_component_responds_to_its_inputs(session):
    c = customer(session)
    make_order(session, c, at(10.5), 50)
    recency = 100 * (1 - 10.5 / 365)
    start = components(session, c)
    # The shop records no web sessions and has no helpdesk yet: those inputs are "no data", not 0 or 100.
    assert start["engagement"] == pytest.approx(recency, abs=0.01)
    assert math.isnan(start["satisfaction"])  # no survey, no complaint: no data, not a neutral 50
    assert start["loyalty"] == pytest.approx((0.4 * 100 / 6 + 0.2 * 100 * 10.5 / 730) / 0.6, abs=0.01)
    assert start["payment"] == 100.0 and math.isnan(start["support"])
    other = customer(session)
    sessions(session, other, 1)  # now the shop records sessions: none counts as 0 for everyone
    assert components(session, c)["engagement"] == pytest.approx(0.3 * recency / 0.7, abs=0.01)

    sessions(session, c, 6)
    sessions(session, c, 5, days_before=95)  # outside the 90-day window
    assert components(session, c)["engagement"] == pytest.approx((0.4 * 50 + 0.3 * recency) / 0.7, abs=0.01)
    email(session, c, 30, opened=True)
    email(session, c, 40)
    email(session, c, 200, opened=True)  # outside the 180-day window
    assert components(session, c)["engagement"] == pytest.approx(0.4 * 50 + 0.3 * 50 + 0.3 * recency, abs=0.01)

    survey(session, c, "nps", 3, 20)
    survey(session, c, "nps", 9, 400)  # older than a year
    assert components(session, c)["satisfaction"] == pytest.approx(30.0)
    survey(session, c, "csat", 5, 20)
    assert components(session, c)["satisfaction"] == pytest.approx(0.6 * 30 + 0.4 * 100)
    complaint(session, c, 10)
    assert components(session, c)["satisfaction"] == pytest.approx(58 - 15 - 15)  # filed, and still open
    complaint(session, c, 100, resolved_days_before=90)
    assert components(session, c)["satisfaction"] == pytest.approx(58 - 30 - 15)

    member(session, c, "gold")
    loyalty = components(session, c)["loyalty"]
    assert loyalty == pytest.approx(0.4 * 100 / 6 + 0.2 * 100 * 10.5 / 730 + 0.2 * 60 + 0.2 * 0, abs=0.01)

    card(session, c, AS_OF.year - 1)
    assert components(session, c)["payment"] == 60.0
    card(session, c, AS_OF.year, exp_month=AS_OF.month)  # expires at the end of this month: still valid
    assert components(session, c)["payment"] == 85.0
    session.add(RiskAssessment(customer_id=c.id, risk_type="fraud", score=70, level="high", status="open",
                               assessed_at=at(30)))
    assert components(session, c)["payment"] == 55.0
    make_order(session, c, at(5), 20, status="cancelled")
    assert components(session, c)["payment"] == pytest.approx(55 - 60 * 0.5)

    ticket(session, other, 5)  # the shop has a helpdesk: no ticket is no friction
    assert components(session, c)["support"] == 100.0
    ticket(session, c, 5)
    assert components(session, c)["support"] == 80.0  # open (-15) and opened in the last 90 days (-5)
    ticket(session, c, 200, breached=True, resolved_days_before=150)
    assert components(session, c)["support"] == 70.0  # an SLA breach in the last year


def test_data_after_as_of_does_not_move_the_scores(session):
    happy, unhappy = happy_customer(session), unhappy_customer(session)
    session.flush()
    before = health.component_scores(session.connection(), AS_OF)
    for c in (happy, unhappy):
        make_order(session, c, at(-1), 500)
        make_order(session, c, at(-2), 50, status="refunded")
        sessions(session, c, 20, days_before=-3)
        email(session, c, -1, opened=True, clicked=True)
        survey(session, c, "nps", 0, -1)
        survey(session, c, "csat", 1, -1)
        complaint(session, c, -1, severity="critical")
        ticket(session, c, -1, priority="critical", breached=True)
        card(session, c, AS_OF.year - 3, days_before=-1)
        session.add(RiskAssessment(customer_id=c.id, risk_type="fraud", score=99, level="critical",
                                   status="open", assessed_at=at(-1)))
    make_customer(session, at(-1))  # signed up later: not scored
    session.flush()
    after = health.component_scores(session.connection(), AS_OF)
    assert after.equals(before)
    assert len(after) == 2


# --------------------------------------------------------------------------- trend


def test_trend_against_the_score_stored_about_30_days_earlier(session):
    c = unhappy_customer(session)
    session.commit()
    engine = session.get_bind()
    health.score_health(engine, AS_OF - dt.timedelta(days=45))
    health.score_health(engine, AS_OF - dt.timedelta(days=28))
    nearest = scores_of(session, AS_OF - dt.timedelta(days=28))[c.id]
    sessions(session, c, 12)
    session.commit()
    result = health.score_health(engine, AS_OF)
    assert result["trend_against"] == AS_OF - dt.timedelta(days=28)
    now = scores_of(session)[c.id]
    assert now.trend == pytest.approx(now.overall - nearest.overall, abs=0.01)
    assert now.trend != pytest.approx(now.overall - scores_of(session, AS_OF - dt.timedelta(days=45))[c.id].overall)


def test_trend_is_null_without_a_score_near_30_days_earlier(session):
    c = unhappy_customer(session)
    session.commit()
    engine = session.get_bind()
    health.score_health(engine, AS_OF - dt.timedelta(days=60))
    result = health.score_health(engine, AS_OF)
    assert result["trend_against"] is None
    assert scores_of(session)[c.id].trend is None


def test_a_fall_of_ten_points_is_flagged(session):
    c = happy_customer(session)
    session.commit()
    engine = session.get_bind()
    health.score_health(engine, AS_OF - dt.timedelta(days=30))
    complaint(session, c, 3, severity="critical")
    ticket(session, c, 3, priority="critical", breached=False)
    survey(session, c, "nps", 0, 2)
    session.commit()
    health.score_health(engine, AS_OF)
    now = scores_of(session)[c.id]
    assert now.trend <= -10
    assert "Health fell 10+ points in 30 days" in now.risk_indicators


# --------------------------------------------------------------------------- fitted weights


def churn_population(session, n: int = 200):
    """Half engaged (sessions before the feature date, 70% order again), half not (70% churn).

    Every customer last ordered at the same time, so only engagement separates them.
    """
    feature_date = AS_OF - dt.timedelta(days=90)
    feature_end = dt.datetime.combine(feature_date + dt.timedelta(days=1), dt.time())
    for i in range(n):
        c = make_customer(session, feature_end - dt.timedelta(days=400))
        make_order(session, c, feature_end - dt.timedelta(days=100), 40)
        engaged = i % 2 == 0
        if engaged:
            sessions_before = [WebSession(customer_id=c.id, started_at=feature_end - dt.timedelta(days=5, minutes=k),
                                          duration_seconds=60, page_views=2, source="direct", device="mobile")
                               for k in range(8)]
            session.add_all(sessions_before)
        # 70% of engaged customers order again in the horizon, 30% of the others.
        if (engaged and i % 20 not in (0, 2, 4)) or (not engaged and i % 20 in (1, 3, 5)):
            make_order(session, c, feature_end + dt.timedelta(days=30), 40)
    session.flush()


def test_fitted_weights_favour_the_component_that_predicts_churn(session):
    churn_population(session)
    result = health.fit_weights(session, AS_OF)
    assert result["fallback_reason"] is None and result["applied"]
    assert result["metrics"]["n_labelled"] == 200
    assert result["metrics"]["churn_rate"] == pytest.approx(0.5)
    assert result["metrics"]["component_auc"]["engagement"] == pytest.approx(0.70, abs=0.001)
    assert result["weights"]["engagement"] == pytest.approx(1.0)
    assert sum(result["weights"].values()) == pytest.approx(1.0)
    assert result["metrics"]["logit_coef"]["engagement"] > 0
    setting = session.get(AppSetting, health.WEIGHTS_KEY)
    assert setting.value["source"] == "fitted" and setting.value["weights"] == result["weights"]
    assert health.last_fit_as_of(session) == AS_OF
    assert session.scalar(select(AuditLog).where(AuditLog.action == "health.weights.fit")) is not None


def test_too_little_data_falls_back_to_equal_weights(session):
    happy_customer(session)
    unhappy_customer(session)
    session.flush()
    result = health.fit_weights(session, AS_OF)
    assert result["weights"] == health.equal_weights()
    assert "too little data" in result["fallback_reason"]
    assert session.get(AppSetting, health.WEIGHTS_KEY).value["source"] == "equal"


def test_refitting_keeps_weights_an_admin_set(session):
    churn_population(session, 120)
    admin = make_user(session, "admin")
    manual = {"engagement": 0, "satisfaction": 1, "loyalty": 1, "payment": 1, "support": 1}
    health.save_weights(session, admin, manual, expected_version=0)
    result = health.fit_weights(session, AS_OF)
    assert not result["applied"]
    info = health.get_weights(session, admin)
    assert info["source"] == "admin" and info["weights"]["engagement"] == 0
    assert info["fit"]["weights"]["engagement"] == pytest.approx(1.0)
    weights, _ = health.reset_weights(session, admin, expected_version=info["version"])
    assert weights["engagement"] == pytest.approx(1.0)
    assert health.get_weights(session, admin)["source"] == "fitted"


# --------------------------------------------------------------------------- weights edits


def test_save_weights_normalises_versions_and_audits(session):
    admin = make_user(session, "admin")
    weights, version = health.save_weights(
        session, admin, {"engagement": 2, "satisfaction": 1, "loyalty": 1, "payment": 0, "support": 0.0},
        expected_version=0,
    )
    assert weights == {"engagement": 0.5, "satisfaction": 0.25, "loyalty": 0.25, "payment": 0.0, "support": 0.0}
    assert version == 1
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "health.weights.save"))
    assert entry.actor_username == admin.username and entry.before is None
    assert entry.after == {"weights": weights, "source": "admin", "fit": None}  # the whole setting, as every setting

    with pytest.raises(platform.ConflictError, match="version 0 is now 1"):
        health.save_weights(session, admin, health.equal_weights(), expected_version=0)
    _, version = health.save_weights(session, admin, health.equal_weights(), expected_version=1)
    assert version == 2
    assert session.scalar(select(func.count()).select_from(AuditLog)
                          .where(AuditLog.action == "health.weights.save")) == 2


def test_concurrent_weight_edits_conflict(engine):
    """Two admins read version 0; the second to save is refused and the first edit stands."""
    factory = session_factory(engine)
    with factory() as setup:
        admin = make_user(setup, "admin")
        setup.commit()
    with factory() as first_read:
        version = health.get_weights(first_read, admin)["version"]
    with factory() as second:
        health.save_weights(second, admin, {**health.equal_weights(), "support": 0}, expected_version=version)
        second.commit()
    with factory() as first, pytest.raises(platform.ConflictError, match="changed by someone else"):
        health.save_weights(first, admin, {**health.equal_weights(), "payment": 0}, expected_version=version)
    with factory() as check:
        info = health.get_weights(check, admin)
        assert info["weights"]["support"] == 0 and info["weights"]["payment"] > 0 and info["version"] == 1
        assert check.scalar(select(func.count()).select_from(AuditLog)
                            .where(AuditLog.action == "health.weights.save")) == 1


@pytest.mark.parametrize(
    ("weights", "message"),
    [
        ([1, 1, 1, 1, 1], "mapping"),
        ({"engagement": 1, "satisfaction": 1, "loyalty": 1, "payment": 1}, "missing: support"),
        ({**health.equal_weights(), "sentiment": 1}, "Unknown component"),
        ({**health.equal_weights(), "payment": "high"}, "payment must be a number"),
        ({**health.equal_weights(), "payment": True}, "payment must be a number"),
        ({**health.equal_weights(), "payment": float("nan")}, "payment must be a number"),
        ({**health.equal_weights(), "payment": -0.1}, "must not be negative"),
        (dict.fromkeys(health.COMPONENTS, 0), "At least one weight"),
    ],
)
def test_save_weights_validation(session, weights, message):
    admin = make_user(session, "admin")
    with pytest.raises(platform.ValidationError, match=message):
        health.save_weights(session, admin, weights, expected_version=None)
    assert session.get(AppSetting, health.WEIGHTS_KEY) is None


@pytest.mark.parametrize("role", ["analyst", "success_manager", "executive", "support_agent"])
def test_only_admins_edit_weights(session, role):
    user = make_user(session, role)
    with pytest.raises(platform.PermissionDenied):
        health.save_weights(session, user, health.equal_weights(), expected_version=None)
    with pytest.raises(platform.PermissionDenied):
        health.reset_weights(session, user, expected_version=None)


# --------------------------------------------------------------------------- failure, backtest, reads


def test_a_failure_mid_scoring_leaves_nothing_half_written(session, monkeypatch):
    happy_customer(session)
    unhappy_customer(session)
    segmentation.refresh_snapshot(session, AS_OF)
    session.commit()

    def broken(*args, **kwargs):
        raise RuntimeError("registry unavailable")

    monkeypatch.setattr(health_scoring, "_register_if_changed", broken)
    with pytest.raises(RuntimeError):
        health.score_health(session.get_bind(), AS_OF)
    session.expire_all()
    assert session.scalar(select(func.count()).select_from(AccountHealthScore)) == 0
    assert session.scalar(select(func.count()).where(CustomerAnalytics.health_score.is_not(None))) == 0
    assert session.get(AppSetting, health.WEIGHTS_KEY) is None  # the first fit rolled back too
    assert session.scalar(select(func.count()).select_from(AuditLog)) == 0


def backtest_fixture(session):
    scored = AS_OF - dt.timedelta(days=90)
    scored_end = dt.datetime.combine(scored + dt.timedelta(days=1), dt.time())
    rows = [("excellent", 85, False), ("good", 70, False), ("poor", 40, True), ("critical", 20, True),
            ("critical", 10, False)]
    ids = []
    for level, overall, churned in rows:
        c = make_customer(session, scored_end - dt.timedelta(days=300))
        make_order(session, c, scored_end - dt.timedelta(days=50), 30)
        if not churned:
            make_order(session, c, scored_end + dt.timedelta(days=20), 30)
        ids.append(c.id)
        session.add(AccountHealthScore(customer_id=c.id, as_of=scored, engagement=overall, satisfaction=overall,
                                       loyalty=overall, payment=overall, support=overall, overall=overall,
                                       level=level))
    prospect = make_customer(session, scored_end - dt.timedelta(days=300))  # never ordered: no label
    session.add(AccountHealthScore(customer_id=prospect.id, as_of=scored, engagement=50, satisfaction=50,
                                   loyalty=50, payment=50, support=50, overall=50, level="fair"))
    session.flush()
    return scored


def test_backtest_churn_rate_per_level_and_auc(session):
    scored = backtest_fixture(session)
    table = health.backtest_levels(session.connection(), AS_OF, 90)
    assert table.attrs["scored_as_of"] == scored and table.attrs["horizon_days"] == 90
    assert table.attrs["customers"] == 5
    assert table.attrs["churn_rate"] == pytest.approx(0.4)
    assert table.attrs["auc"] == pytest.approx(4 / 6, abs=1e-4)
    by_level = table.set_index("level")
    assert list(by_level.index) == list(HEALTH_LEVELS)
    assert by_level["customers"].tolist() == [1, 1, 0, 1, 2]
    assert by_level["churned"].tolist() == [0, 0, 0, 1, 1]
    assert by_level.loc["critical", "churn_rate"] == 0.5
    assert by_level.loc["poor", "churn_rate"] == 1.0
    assert by_level.loc["fair", "churn_rate"] != by_level.loc["fair", "churn_rate"]  # NaN: nobody
    # A shorter lag uses the same (latest old enough) scores; a longer one finds none.
    assert health.backtest_levels(session.connection(), AS_OF, 60).attrs["scored_as_of"] == scored
    empty = health.backtest_levels(session.connection(), AS_OF, 120)
    assert empty.empty and empty.attrs["scored_as_of"] is None
    with pytest.raises(platform.ValidationError):
        health.backtest_levels(session.connection(), AS_OF, 0)


def stored(session, c, as_of, overall, trend=None, **fields):
    row = AccountHealthScore(customer_id=c.id, as_of=as_of, engagement=overall, satisfaction=overall,
                             loyalty=overall, payment=overall, support=overall, overall=overall,
                             level=health.health_levels(np.array([float(overall)]))[0],
                             trend=trend, **fields)
    session.add(row)
    return row


def test_page_reads(session):
    earlier = AS_OF - dt.timedelta(days=30)
    riser, faller, steady, faller2 = (customer(session) for _ in range(4))
    for c, before, now in ((riser, 40, 70), (faller, 90, 30), (steady, 60, 60), (faller2, 70, 60)):
        stored(session, c, earlier, before)
        stored(session, c, AS_OF, now, trend=now - before,
               risk_indicators=["Open complaint"] if c is faller else [],
               recommendations=[health.RECOMMENDATIONS["satisfaction"]] if c is faller else [],
               action_items=[health.CRITICAL_ACTION] if c is faller else [])
    session.flush()
    analyst = make_user(session, "analyst")

    summary = health_reports.overview(session, analyst)
    assert summary["as_of"] == AS_OF and summary["customers"] == 4
    assert [(r["level"], r["customers"]) for r in summary["levels"]] == [
        ("excellent", 0), ("good", 1), ("fair", 2), ("poor", 0), ("critical", 1)]
    assert summary["avg_overall"] == 55.0 and summary["avg_trend"] == pytest.approx((30 - 60 + 0 - 10) / 4)
    assert (summary["improving"], summary["declining"]) == (1, 2)

    up = health_reports.movers(session, analyst, "up")
    assert [r["customer_id"] for r in up.rows] == [riser.id] and up.rows[0]["previous"] == 40
    down = health_reports.movers(session, analyst, "down", page_size=1)
    assert down.total == 2 and down.pages == 2 and [r["customer_id"] for r in down.rows] == [faller.id]
    second_page = health_reports.movers(session, analyst, "down", page=2, page_size=1)
    assert [r["customer_id"] for r in second_page.rows] == [faller2.id]
    with pytest.raises(platform.ValidationError):
        health_reports.movers(session, analyst, "sideways")
    with pytest.raises(platform.ValidationError):
        health_reports.movers(session, analyst, "up", page_size=0)

    history = health_reports.customer_history(session, analyst, faller.id)
    assert [(h["as_of"], h["overall"]) for h in history] == [(earlier, 90), (AS_OF, 30)]
    detail = health_reports.customer_health(session, analyst, faller.id)
    assert detail["score"]["as_of"] == AS_OF and detail["score"]["level"] == "critical"
    assert detail["score"]["risk_indicators"] == ["Open complaint"]
    assert detail["score"]["action_items"] == [health.CRITICAL_ACTION]
    with pytest.raises(platform.NotFound):
        health_reports.customer_health(session, analyst, 999_999)
    with pytest.raises(platform.ValidationError):
        health_reports.customer_history(session, analyst, "12")
    agent = make_user(session, "support_agent")
    with pytest.raises(platform.PermissionDenied):
        health_reports.overview(session, agent)


def test_reads_before_any_scoring(session):
    analyst = make_user(session, "analyst")
    assert health_reports.overview(session, analyst) is None
    assert health.last_fit_as_of(session) is None
    assert health_reports.movers(session, analyst, "down").total == 0
    assert health_reports.backtest(session, analyst, 90)["scored_as_of"] is None
    c = customer(session)
    assert health_reports.customer_health(session, analyst, c.id)["score"] is None
    assert health.get_weights(session, analyst) == {"weights": health.equal_weights(), "source": "default",
                                                    "fit": None, "version": 0}
