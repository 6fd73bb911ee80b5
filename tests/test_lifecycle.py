"""Lifecycle engine: rules, set-based evaluation, manual changes and the page's read functions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import platform, segmentation
from crm_core.segmentation import lifecycle
from db.models import (
    REVENUE_ORDER_STATUSES,
    AuditLog,
    CustomerAnalytics,
    CustomerLifecycleHistory,
    CustomerLifecycleStage,
    utcnow,
)
from tests.factories import make_customer, make_order, make_user

AS_OF = dt.date(2024, 6, 30)
NOW = dt.datetime(2024, 6, 30, 23, 0)
D = dt.datetime


def snapshot(session, customer, as_of=AS_OF, churn=None, sessions=0, open_rate=None):
    """The customer_analytics row the batch refresh would write, from the customer's orders."""
    from db.models import Order

    orders = session.execute(
        select(Order.ordered_at, Order.total).where(
            Order.customer_id == customer.id, Order.status.in_(REVENUE_ORDER_STATUSES),
            Order.ordered_at < dt.datetime.combine(as_of + dt.timedelta(days=1), dt.time()),
        )
    ).all()
    row = session.get(CustomerAnalytics, customer.id) or CustomerAnalytics(customer_id=customer.id)
    row.as_of = as_of
    row.order_count = len(orders)
    row.total_revenue = sum((t for _, t in orders), Decimal(0))
    row.first_order_at = min((w for w, _ in orders), default=None)
    row.last_order_at = max((w for w, _ in orders), default=None)
    row.days_since_last_order = None if not orders else (as_of - row.last_order_at.date()).days
    row.churn_probability = churn
    row.sessions_90d = sessions
    row.email_open_rate = open_rate
    session.add(row)
    session.flush()
    return row


def buyer(session, orders, churn=None, signed_up=D(2023, 1, 1), status="active", **scores):
    customer = make_customer(session, signed_up, status=status)
    for when, total in orders:
        make_order(session, customer, when, total)
    snapshot(session, customer, churn=churn, **scores)
    return customer


def stage_of(session, customer):
    session.expire_all()
    return session.get(CustomerLifecycleStage, customer.id)


def history_of(session, customer):
    return session.execute(
        select(CustomerLifecycleHistory.from_stage, CustomerLifecycleHistory.to_stage)
        .where(CustomerLifecycleHistory.customer_id == customer.id)
        .order_by(CustomerLifecycleHistory.id)
    ).all()


def history_count(session):
    return session.scalar(select(func.count()).select_from(CustomerLifecycleHistory))


@pytest.fixture
def population(session):
    """One customer per stage on AS_OF under the default rules, plus filler buyers."""
    c = {}
    c["prospect"] = buyer(session, [])
    c["no_snapshot"] = make_customer(session, D(2024, 6, 1))
    c["new_customer"] = buyer(session, [(D(2024, 6, 20), 40)])
    c["active"] = buyer(session, [(D(2024, 1, 10), 30), (D(2024, 6, 1), 30)])
    c["at_risk_days"] = buyer(session, [(D(2024, 3, 1), 50)])
    c["at_risk_probability"] = buyer(session, [(D(2024, 1, 1), 20), (D(2024, 6, 1), 20)], churn=0.55)  # "high" risk
    c["inactive"] = buyer(session, [(D(2023, 10, 1), 60)])
    c["churned"] = buyer(session, [(D(2023, 1, 1), 70)])
    c["loyal"] = buyer(session, [(D(2023, 6, 1) + dt.timedelta(days=60 * i), 20) for i in range(5)]
                       + [(D(2024, 6, 15), 20)])
    c["champion"] = buyer(session, [(D(2024, 2, 1), 5000), (D(2024, 6, 10), 1000)])
    c["filler1"] = buyer(session, [(D(2024, 5, 1), 10)])
    c["filler2"] = buyer(session, [(D(2024, 5, 2), 11)])
    # Ten buyers within the churned_days, the champion's peers: the top 10% of them is one customer.
    c["filler3"] = buyer(session, [(D(2024, 5, 3), 12)])
    c["merged"] = buyer(session, [(D(2024, 6, 1), 10)], status="merged")
    return c


def test_every_stage_reachable_under_default_rules(session, population):
    result = segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    expected = {
        "prospect": "prospect", "no_snapshot": "prospect", "new_customer": "new_customer",
        "active": "active", "at_risk_days": "at_risk", "at_risk_probability": "at_risk",
        "inactive": "inactive", "churned": "churned", "loyal": "loyal", "champion": "champion",
        "filler1": "active", "filler2": "active", "filler3": "active",
    }
    got = {name: stage_of(session, population[name]).stage for name in expected}
    assert got == expected
    assert stage_of(session, population["merged"]) is None
    assert result == {
        "prospect": 2, "new_customer": 1, "active": 4, "at_risk": 2, "inactive": 1, "churned": 1,
        "win_back": 0, "loyal": 1, "champion": 1, "changed": 13,
    }
    # First assignment: one history row each, from nothing.
    assert history_count(session) == 13
    row = session.scalar(select(CustomerLifecycleHistory).where(
        CustomerLifecycleHistory.customer_id == population["at_risk_probability"].id))
    assert (row.from_stage, row.to_stage, row.actor_kind, row.actor_id) == (None, "at_risk", "system", None)
    assert "churn probability at least 0.5" in row.reason
    assert "more than 90 days" in stage_of(session, population["at_risk_days"]).reason
    assert stage_of(session, population["champion"]).reason.startswith("champion: top 10%")
    assert stage_of(session, population["churned"]).entered_at == NOW
    assert session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.action == "lifecycle.evaluate")) == 1


def test_scores(session):
    engaged = buyer(session, [(D(2024, 5, 1), 10), (D(2024, 6, 1), 30)], sessions=6, open_rate=0.4)
    top = buyer(session, [(D(2024, 6, 1), 100)], sessions=40, open_rate=1.0, churn=0.25)
    lapsed = buyer(session, [(D(2024, 3, 1), 20)])
    never = buyer(session, [])
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    e, t, lp, n = (stage_of(session, c) for c in (engaged, top, lapsed, never))
    assert e.engagement_score == pytest.approx(45.0)
    assert t.engagement_score == pytest.approx(100.0)
    # loyalty: 50 x orders / 5 + 50 x percent rank of revenue among the three buyers (20, 40, 100).
    assert e.loyalty_score == pytest.approx(50 * 2 / 5 + 50 * 0.5)
    assert t.loyalty_score == pytest.approx(50 * 1 / 5 + 50 * 1.0)
    assert lp.loyalty_score == pytest.approx(50 * 1 / 5)
    assert n.loyalty_score == 0
    assert t.churn_score == pytest.approx(25.0)

    # No stored probability: days since the last order (121) as a share of churned_days (365).
    assert lp.churn_score == pytest.approx(100 * 121 / 365)
    assert n.churn_score is None

def test_engagement_is_no_data_where_the_shop_has_no_visits_or_emails(session):
    """An imported order history: no web sessions, no e-mails. Engagement is unknown, not zero."""
    mailed = buyer(session, [(D(2024, 6, 1), 10)], open_rate=0.5)
    plain = buyer(session, [(D(2024, 6, 1), 10)])
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    assert stage_of(session, plain).engagement_score is None
    assert stage_of(session, mailed).engagement_score == pytest.approx(50.0)


def test_nothing_changes_no_history(session, population):
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    before = history_count(session)
    entered = stage_of(session, population["loyal"]).entered_at
    result = segmentation.evaluate_lifecycle(session, AS_OF, now=NOW + dt.timedelta(hours=5))
    assert result["changed"] == 0
    assert history_count(session) == before
    assert stage_of(session, population["loyal"]).entered_at == entered
    assert stage_of(session, population["loyal"]).updated_at == NOW
    # A day later only the recency-based churn score moves, and updated_at with it.
    segmentation.evaluate_lifecycle(session, AS_OF + dt.timedelta(days=1), now=NOW + dt.timedelta(days=1))
    assert stage_of(session, population["loyal"]).updated_at == NOW + dt.timedelta(days=1)
    assert stage_of(session, population["at_risk_probability"]).updated_at == NOW


def test_later_as_of_moves_customers_along(session):
    customer = buyer(session, [(D(2024, 1, 10), 30), (D(2024, 6, 1), 30)])
    stages = []
    for day in (AS_OF, dt.date(2024, 10, 1), dt.date(2024, 10, 2), dt.date(2025, 1, 1), dt.date(2025, 7, 1)):
        changed = segmentation.evaluate_lifecycle(session, day, now=dt.datetime.combine(day, dt.time(23)))["changed"]
        stages.append((stage_of(session, customer).stage, changed))
    assert stages == [("active", 1), ("at_risk", 1), ("at_risk", 0), ("inactive", 1), ("churned", 1)]
    assert history_of(session, customer) == [
        (None, "active"), ("active", "at_risk"), ("at_risk", "inactive"), ("inactive", "churned"),
    ]
    assert stage_of(session, customer).entered_at == D(2025, 7, 1, 23)


def test_win_back_after_churn_then_active(session):
    customer = buyer(session, [(D(2023, 1, 1), 70)])
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    assert stage_of(session, customer).stage == "churned"
    make_order(session, customer, D(2024, 7, 10), 25)
    snapshot(session, customer, as_of=dt.date(2024, 7, 15))
    segmentation.evaluate_lifecycle(session, dt.date(2024, 7, 15), now=D(2024, 7, 15, 23))
    current = stage_of(session, customer)
    assert current.stage == "win_back" and current.reason.startswith("win_back: ordered again")
    # Still win_back 30 days later, active once win_back_days (60) have passed since entering it.
    segmentation.evaluate_lifecycle(session, dt.date(2024, 8, 14), now=D(2024, 8, 14, 23))
    assert stage_of(session, customer).stage == "win_back"
    make_order(session, customer, D(2024, 9, 10), 25)
    snapshot(session, customer, as_of=dt.date(2024, 9, 20))
    segmentation.evaluate_lifecycle(session, dt.date(2024, 9, 20), now=D(2024, 9, 20, 23))
    assert stage_of(session, customer).stage == "active"
    assert history_of(session, customer) == [(None, "churned"), ("churned", "win_back"), ("win_back", "active")]


def test_edited_rules_change_the_outcome(session, population):
    admin = make_user(session, "admin")
    rules, version = segmentation.get_lifecycle_rules(session)
    assert (rules, version) == (segmentation.DEFAULT_LIFECYCLE_RULES, 0)
    segmentation.save_lifecycle_rules(session, admin, {**rules, "at_risk_probability": 0.8, "loyal_min_orders": 2},
                         expected_version=0)
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    assert stage_of(session, population["at_risk_probability"]).stage == "loyal"
    assert stage_of(session, population["active"]).stage == "loyal"
    assert stage_of(session, population["filler1"]).stage == "active"
    assert "at least 2 orders" in stage_of(session, population["active"]).reason


def test_save_rules_versions_conflicts_and_audit(session):
    admin = make_user(session, "admin")
    rules, version = segmentation.save_lifecycle_rules(session, admin, {"churned_days": 400}, expected_version=0)
    assert rules["churned_days"] == 400 and rules["active_days"] == 90
    assert segmentation.get_lifecycle_rules(session) == (rules, version)
    assert version == 1
    _, version2 = segmentation.save_lifecycle_rules(session, admin, {**rules, "win_back_days": 30}, expected_version=1)
    assert version2 == 2
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        segmentation.save_lifecycle_rules(session, admin, {**rules, "win_back_days": 45}, expected_version=1)
    with pytest.raises(platform.ConflictError):
        segmentation.save_lifecycle_rules(session, admin, rules, expected_version=0)
    assert segmentation.get_lifecycle_rules(session)[0]["win_back_days"] == 30
    entries = session.scalars(select(AuditLog).where(AuditLog.action == "lifecycle.rules.save")
                              .order_by(AuditLog.id)).all()
    assert len(entries) == 2
    assert entries[0].before is None and entries[0].after["churned_days"] == 400
    assert entries[1].before["win_back_days"] == 60 and entries[1].after["win_back_days"] == 30
    assert entries[1].actor_username == admin.username


@pytest.mark.parametrize("change,message", [
    ({"active_days": 200}, "active_days must be at most at_risk_days"),
    ({"active_days": 180, "at_risk_days": 180}, "at_risk_days must be less than inactive_days"),
    ({"inactive_days": 400}, "inactive_days must be less than churned_days"),
    ({"new_customer_days": 100}, "new_customer_days must be at most active_days"),
    ({"active_days": "90"}, "active_days must be a whole number"),
    ({"loyal_min_orders": True}, "loyal_min_orders must be a whole number"),
    ({"churned_days": 0}, "between 1 and 3650"),
    ({"at_risk_probability": 1.5}, "at_risk_probability must be above 0 and at most 1"),
    ({"champion_value_percentile": 0}, "champion_value_percentile must be above 0"),
    ({"champion_value_percentile": "top"}, "champion_value_percentile must be a number"),
    ({"vip_days": 3}, "Unknown lifecycle rule"),
])
def test_save_rules_validation(session, change, message):
    admin = make_user(session, "admin")
    with pytest.raises(platform.ValidationError, match=message):
        segmentation.save_lifecycle_rules(session, admin, change, expected_version=0)
    assert segmentation.get_lifecycle_rules(session)[1] == 0


@pytest.mark.parametrize("role", ["analyst", "success_manager", "support_agent", "executive"])
def test_only_admins_edit_rules(session, role):
    user = make_user(session, role)
    with pytest.raises(platform.PermissionDenied):
        segmentation.save_lifecycle_rules(session, user, {}, expected_version=0)


def test_evaluate_needs_refresh_permission(session):
    with pytest.raises(platform.PermissionDenied):
        segmentation.evaluate_lifecycle(session, AS_OF, actor=make_user(session, "analyst"))


def test_change_stage_by_hand(session, population):
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    manager = make_user(session, "success_manager")
    customer = population["at_risk_days"]
    with pytest.raises(platform.ValidationError, match="reason"):
        segmentation.change_stage(session, manager, customer.id, "active", "   ")
    with pytest.raises(platform.ValidationError, match="Unknown stage"):
        segmentation.change_stage(session, manager, customer.id, "vip", "called them")
    with pytest.raises(platform.ValidationError, match="already in the stage"):
        segmentation.change_stage(session, manager, customer.id, "at_risk", "called them")
    with pytest.raises(platform.PermissionDenied):
        segmentation.change_stage(session, make_user(session, "analyst"), customer.id, "active", "x")
    segmentation.change_stage(session, manager, customer.id, "active", " Renewed contract by phone ",
                           now=D(2024, 7, 1, 9))
    current = stage_of(session, customer)
    assert (current.stage, current.reason, current.entered_at) == ("active", "Renewed contract by phone",
                                                                   D(2024, 7, 1, 9))
    row = session.scalars(select(CustomerLifecycleHistory).where(
        CustomerLifecycleHistory.customer_id == customer.id).order_by(CustomerLifecycleHistory.id.desc())).first()
    assert (row.from_stage, row.to_stage, row.actor_kind, row.actor_id) == ("at_risk", "active", "user", manager.id)
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "lifecycle.change_stage"))
    assert entry.actor_id == manager.id and entry.entity_id == str(customer.id)
    assert entry.before == {"stage": "at_risk"} and entry.after["stage"] == "active"
    page = segmentation.recent_stage_changes(session, manager, 1, 1)
    assert page.rows[0]["actor"] == manager.username and page.rows[0]["from_stage"] == "at_risk"


@pytest.mark.parametrize("rollups", [False, True], ids=["live", "rollups"])
def test_distribution_and_customers_in(session, population, rollups):
    analyst = make_user(session, "analyst")
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    if rollups:
        segmentation.refresh_lifecycle_rollups(session, AS_OF, NOW)
    dist = segmentation.stage_distribution(session, analyst)
    assert [row["stage"] for row in dist] == list(lifecycle.LIFECYCLE_STAGES)
    assert {row["stage"]: row["customers"] for row in dist}["active"] == 4
    page = segmentation.customers_in_stage(session, analyst, stage="active", page=2, page_size=3)
    assert page.total == 4 and page.pages == 2
    assert [row["customer_id"] for row in page.rows] == [population["filler3"].id]
    cohort = segmentation.customers_in_stage(session, analyst, cohort="2024-06")
    assert [(row["customer_id"], row["stage"]) for row in cohort.rows] == [(population["no_snapshot"].id, "prospect")]
    with pytest.raises(platform.ValidationError, match="YYYY-MM"):
        segmentation.customers_in_stage(session, analyst, cohort="2024-13")
    with pytest.raises(platform.PermissionDenied):
        segmentation.stage_distribution(session, make_user(session, "support_agent"))
    # A change by hand after the refresh moves one customer from one count to the other at once.
    segmentation.change_stage(session, make_user(session, "admin"), population["filler2"].id, "loyal", "VIP")
    counts = {row["stage"]: row["customers"] for row in segmentation.stage_distribution(session, analyst)}
    assert counts["active"] == 3 and counts["loyal"] == {r["stage"]: r["customers"] for r in dist}["loyal"] + 1
    assert segmentation.customers_in_stage(session, analyst, stage="active").total == 3


def _history(session, customer, from_stage, to_stage, when, actor=None):
    session.add(CustomerLifecycleHistory(
        customer_id=customer.id, from_stage=from_stage, to_stage=to_stage, changed_at=when,
        reason=f"{from_stage}->{to_stage}", actor_kind="user" if actor else "system",
        actor_id=actor.id if actor else None,
    ))
    session.flush()


@pytest.mark.parametrize("rollups", [False, True], ids=["live", "rollups"])
def test_flows_and_recent_changes(session, rollups):
    viewer = make_user(session, "executive")
    a, b, c = (make_customer(session, D(2024, 1, 1)) for _ in range(3))
    _history(session, a, None, "new_customer", D(2024, 1, 31, 23))       # before the period
    _history(session, a, "new_customer", "active", D(2024, 2, 1))
    _history(session, b, None, "active", D(2024, 2, 10))
    _history(session, c, None, "active", D(2024, 2, 29, 23, 59))
    _history(session, c, "active", "at_risk", D(2024, 3, 1))             # after the period
    if rollups:
        segmentation.refresh_lifecycle_rollups(session, dt.date(2024, 3, 1), D(2024, 3, 1, 23))
    assert segmentation.stage_flows(session, viewer, dt.date(2024, 2, 1), dt.date(2024, 2, 29)) == [
        {"from_stage": "(new)", "to_stage": "active", "customers": 2},
        {"from_stage": "new_customer", "to_stage": "active", "customers": 1},
    ]
    with pytest.raises(platform.ValidationError):
        segmentation.stage_flows(session, viewer, dt.date(2024, 3, 1), dt.date(2024, 2, 1))

    first = segmentation.recent_stage_changes(session, viewer, page=1, page_size=2)
    assert first.total == 5 and first.pages == 3
    assert [(r["customer_id"], r["to_stage"]) for r in first.rows] == [(c.id, "at_risk"), (c.id, "active")]
    # An executive reads customers by number (names are personal data).
    assert first.rows[0]["customer"] == f"Customer #{c.id}" and first.rows[0]["actor"] == "system"
    last = segmentation.recent_stage_changes(session, viewer, page=3, page_size=2)
    assert [(r["customer_id"], r["from_stage"], r["to_stage"]) for r in last.rows] == [(a.id, None, "new_customer")]
    into_active = segmentation.recent_stage_changes(session, viewer, page=1, page_size=10, stage="active")
    assert into_active.total == 3
    # A change recorded after the rollups were built is counted too.
    today = utcnow()
    _history(session, b, "active", "loyal", today)
    assert segmentation.recent_stage_changes(session, viewer, page=1, page_size=2).total == 6
    assert segmentation.stage_flows(session, viewer, today.date(), today.date()) == [
        {"from_stage": "active", "to_stage": "loyal", "customers": 1}]


@pytest.mark.parametrize("rollups", [False, True], ids=["live", "rollups"])
def test_time_in_stage(session, rollups):
    viewer = make_user(session, "analyst")
    entered = {"active": [D(2024, 6, 20), D(2024, 6, 10), D(2024, 5, 1)], "loyal": [D(2024, 6, 26), D(2024, 6, 16)]}
    for stage, times in entered.items():
        for when in times:
            customer = make_customer(session, D(2024, 1, 1))
            session.add(CustomerLifecycleStage(customer_id=customer.id, stage=stage, entered_at=when, reason=""))
    later = make_customer(session, D(2024, 1, 1))
    session.add(CustomerLifecycleStage(customer_id=later.id, stage="loyal", entered_at=D(2024, 7, 2), reason=""))
    session.flush()
    if rollups:
        segmentation.refresh_lifecycle_rollups(session, AS_OF, NOW)
    # Days up to the end of 2024-06-30: active 11, 21, 61; loyal 5, 15 (the July entry is excluded).
    assert segmentation.time_in_stage(session, viewer, AS_OF) == [
        {"stage": "active", "median_days": 21.0, "avg_days": 31.0, "customers": 3},
        {"stage": "loyal", "median_days": 10.0, "avg_days": 10.0, "customers": 2},
    ]


@pytest.mark.parametrize("rollups", [False, True], ids=["live", "rollups"])
def test_cohort_retention(session, rollups):
    viewer = make_user(session, "analyst")
    a = make_customer(session, D(2024, 1, 5))
    make_order(session, a, D(2024, 1, 10), 10)
    make_order(session, a, D(2024, 3, 1), 10)
    b = make_customer(session, D(2024, 1, 20))
    make_order(session, b, D(2024, 1, 21), 10)
    make_order(session, b, D(2024, 2, 5), 10)
    make_order(session, b, D(2024, 3, 20), 10)            # after as_of
    c = make_customer(session, D(2024, 1, 25))
    make_order(session, c, D(2024, 2, 10), 10, status="cancelled")
    d = make_customer(session, D(2024, 2, 1))
    make_order(session, d, D(2024, 2, 2), 10)
    make_order(session, d, D(2024, 2, 15), 10)
    make_customer(session, D(2024, 3, 10))
    f = make_customer(session, D(2023, 12, 30))            # cohort before the window
    make_order(session, f, D(2024, 1, 5), 10)
    g = make_customer(session, D(2024, 1, 2), status="merged")
    make_order(session, g, D(2024, 1, 3), 10)
    if rollups:
        segmentation.refresh_lifecycle_rollups(session, dt.date(2024, 3, 15), D(2024, 3, 15, 23))
    rows = segmentation.cohort_retention(session, viewer, dt.date(2024, 3, 15), months=3)
    got = [(r["cohort"], r["month_offset"], r["customers"], r["active_customers"]) for r in rows]
    assert got == [
        ("2024-01", 0, 3, 2), ("2024-01", 1, 3, 1), ("2024-01", 2, 3, 1),
        ("2024-02", 0, 1, 1), ("2024-02", 1, 1, 0),
        ("2024-03", 0, 1, 0),
    ]
    assert rows[0]["active_share"] == pytest.approx(2 / 3)
    assert rows[3]["active_share"] == 1.0


def test_system_actor_evaluates_by_default(session, population):
    assert segmentation.evaluate_lifecycle(session, AS_OF, platform.SYSTEM, now=NOW)["changed"] == 13


def test_long_gone_buyers_do_not_make_champions_of_average_ones(session, population):
    """An imported history of twenty buyers gone for years leaves the champions as they were: the top
    10% is taken among buyers within churned_days, not everyone who ever bought."""
    for k in range(20):
        buyer(session, [(D(2019, 1, 1) + dt.timedelta(days=k), 1)], signed_up=D(2018, 1, 1))
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    assert stage_of(session, population["champion"]).stage == "champion"
    assert stage_of(session, population["loyal"]).stage == "loyal"
    assert stage_of(session, population["active"]).stage == "active"
