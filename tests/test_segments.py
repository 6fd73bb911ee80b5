"""Segment engine: rule compilation, validation, evaluation, CRUD, refresh and the read functions."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import platform, segmentation
from crm_core.segmentation import segments
from db.models import (
    AuditLog,
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerPreferenceCenter,
    CustomerSegmentMembership,
    LoyaltyAccount,
)
from tests.factories import make_customer, make_user

AS_OF = dt.date(2026, 3, 1)
T0 = dt.datetime(2026, 3, 1, 6, 0)


def _analytics(session, customer, **values):
    session.add(CustomerAnalytics(customer_id=customer.id, as_of=AS_OF, **values))


@pytest.fixture
def people(session) -> dict[str, int]:
    """Five countable customers (and one merged) with varied snapshots; name -> id."""
    anna = make_customer(session, dt.datetime(2026, 2, 20, 10, 30), first_name="Anna", country_code="DE",
                         city="Berlin", date_of_birth=dt.date(1990, 3, 1), gender="female")
    anna.acquisition_channel = "email"
    ben = make_customer(session, dt.datetime(2025, 6, 15, 8, 0), first_name="Ben", country_code="FR",
                        city="Paris", date_of_birth=dt.date(1990, 3, 2), gender="male")
    cleo = make_customer(session, dt.datetime(2024, 1, 10, 12, 0), first_name="Cleo", city="München")
    dan = make_customer(session, dt.datetime(2026, 3, 1, 9, 0), first_name="Dan", country_code="US",
                        city="New York", date_of_birth=dt.date(2008, 3, 1), gender="non_binary")
    fay = make_customer(session, dt.datetime(2025, 12, 31, 23, 59), status="suspended", first_name="Fay",
                        country_code="GB", city="West Berlin", date_of_birth=dt.date(2008, 3, 2), gender="unknown")
    gone = make_customer(session, dt.datetime(2025, 1, 1), status="merged", first_name="Gone", country_code="DE",
                         city="Berlin", date_of_birth=dt.date(1980, 1, 1), gender="female")
    _analytics(session, anna, order_count=10, total_revenue=Decimal("1000.00"), avg_order_value=Decimal("100.00"),
               last_order_at=dt.datetime(2026, 2, 24, 12, 0), days_since_last_order=5, rfm_segment="Champions",
               churn_probability=0.1, health_level="excellent", last_nps=10, email_open_rate=0.5,
               preferred_category="Shoes", sessions_90d=20)
    _analytics(session, ben, order_count=2, total_revenue=Decimal("150.50"), avg_order_value=Decimal("75.25"),
               last_order_at=dt.datetime(2025, 8, 10, 12, 0), days_since_last_order=200, rfm_segment="At Risk",
               churn_probability=0.8, health_level="poor", last_nps=3, preferred_category="100%_Sale")
    _analytics(session, dan, order_count=0, total_revenue=Decimal("0"))
    _analytics(session, fay, order_count=5, total_revenue=Decimal("500.00"),
               last_order_at=dt.datetime(2026, 1, 30, 12, 0), days_since_last_order=30, rfm_segment="Loyal",
               churn_probability=0.3, health_level="good", last_nps=8, preferred_category="100xxSale")
    _analytics(session, gone, order_count=50, total_revenue=Decimal("9999.00"), days_since_last_order=1)
    for customer, tier, points in ((anna, "gold", 500), (ben, "bronze", 10), (dan, "silver", 0), (gone, "gold", 1)):
        session.add(LoyaltyAccount(customer_id=customer.id, tier=tier, points_balance=points, lifetime_points=points))
    for customer, stage in ((anna, "champion"), (ben, "at_risk"), (dan, "new_customer"), (gone, "champion")):
        session.add(CustomerLifecycleStage(customer_id=customer.id, stage=stage, entered_at=T0))
    session.add(CustomerPreferenceCenter(customer_id=anna.id, email_opt_in=True))
    session.add(CustomerPreferenceCenter(customer_id=ben.id, sms_opt_in=True))
    session.add(CustomerPreferenceCenter(customer_id=dan.id, push_opt_in=True))
    session.flush()
    return {c.first_name: c.id for c in (anna, ben, cleo, dan, fay, gone)}


def matching(session, people, rules, as_of=AS_OF) -> set[str]:
    names = {v: k for k, v in people.items()}
    return {names[i] for i in session.scalars(segmentation.matching_ids_query(rules, as_of))}


def cond(field, op, value=None):
    c = {"field": field, "op": op}
    if value is not None:
        c["value"] = value
    return {"all": [c]}


EVERYONE = {"Anna", "Ben", "Cleo", "Dan", "Fay"}

OPERATOR_CASES = [
    # string
    ("country", "eq", "DE", {"Anna"}),
    ("country", "ne", "DE", {"Ben", "Cleo", "Dan", "Fay"}),
    ("country", "in", ["DE", "FR"], {"Anna", "Ben"}),
    ("country", "not_in", ["DE", "FR"], {"Cleo", "Dan", "Fay"}),
    ("country", "is_empty", None, {"Cleo"}),
    ("country", "is_not_empty", None, {"Anna", "Ben", "Dan", "Fay"}),
    ("city", "contains", "BERLIN", {"Anna", "Fay"}),
    ("city", "contains", "ünch", {"Cleo"}),
    ("preferred_category", "contains", "0%_S", {"Ben"}),
    ("preferred_category", "contains", "%", {"Ben"}),
    ("rfm_segment", "eq", "Champions", {"Anna"}),
    # enum
    ("gender", "eq", "female", {"Anna"}),
    ("gender", "ne", "female", {"Ben", "Cleo", "Dan", "Fay"}),
    ("gender", "in", ["male", "non_binary"], {"Ben", "Dan"}),
    ("gender", "not_in", ["male"], {"Anna", "Cleo", "Dan", "Fay"}),
    ("gender", "is_empty", None, {"Cleo"}),
    ("gender", "is_not_empty", None, {"Anna", "Ben", "Dan", "Fay"}),
    ("status", "eq", "suspended", {"Fay"}),
    ("status", "eq", "merged", set()),
    ("acquisition_channel", "eq", "email", {"Anna"}),
    ("loyalty_tier", "eq", "gold", {"Anna"}),
    ("loyalty_tier", "is_empty", None, {"Cleo", "Fay"}),
    ("lifecycle_stage", "in", ["champion", "at_risk"], {"Anna", "Ben"}),
    ("health_level", "eq", "poor", {"Ben"}),
    # number
    ("order_count", "eq", 2, {"Ben"}),
    ("order_count", "ne", 2, {"Anna", "Cleo", "Dan", "Fay"}),
    ("order_count", "lt", 2, {"Dan"}),
    ("order_count", "le", 2, {"Ben", "Dan"}),
    ("order_count", "gt", 5, {"Anna"}),
    ("order_count", "ge", 5, {"Anna", "Fay"}),
    ("order_count", "between", [2, 5], {"Ben", "Fay"}),
    ("order_count", "in", [0, 10], {"Anna", "Dan"}),
    ("order_count", "not_in", [0, 10], {"Ben", "Cleo", "Fay"}),
    ("order_count", "is_empty", None, {"Cleo"}),
    ("order_count", "is_not_empty", None, {"Anna", "Ben", "Dan", "Fay"}),
    ("total_revenue", "gt", 150.5, {"Anna", "Fay"}),
    ("total_revenue", "ge", 150.5, {"Anna", "Ben", "Fay"}),
    ("total_revenue", "between", [100, 600], {"Ben", "Fay"}),
    ("avg_order_value", "lt", 80, {"Ben"}),
    ("churn_probability", "ge", 0.3, {"Ben", "Fay"}),
    ("loyalty_points", "gt", 0, {"Anna", "Ben"}),
    ("days_since_last_order", "le", 30, {"Anna", "Fay"}),
    ("last_nps", "le", 6, {"Ben"}),
    ("email_open_rate", "is_not_empty", None, {"Anna"}),
    ("sessions_90d", "ge", 10, {"Anna"}),
    # date
    ("signup_date", "eq", "2025-06-15", {"Ben"}),
    ("signup_date", "ne", "2025-06-15", {"Anna", "Cleo", "Dan", "Fay"}),
    ("signup_date", "lt", "2025-06-15", {"Cleo"}),
    ("signup_date", "le", "2025-06-15", {"Ben", "Cleo"}),
    ("signup_date", "gt", "2025-06-15", {"Anna", "Dan", "Fay"}),
    ("signup_date", "ge", "2025-06-15", {"Anna", "Ben", "Dan", "Fay"}),
    ("signup_date", "between", ["2025-06-15", "2025-12-31"], {"Ben", "Fay"}),
    ("signup_date", "within_last_days", 10, {"Anna", "Dan"}),
    ("signup_date", "within_last_days", 0, {"Dan"}),
    ("last_order_date", "is_empty", None, {"Cleo", "Dan"}),
    ("last_order_date", "within_last_days", 30, {"Anna", "Fay"}),
    # age on 2026-03-01: Anna 36 today, Ben 35 (36 tomorrow), Dan 18 today, Fay 17, Cleo unknown
    ("age", "ge", 36, {"Anna"}),
    ("age", "gt", 35, {"Anna"}),
    ("age", "lt", 36, {"Ben", "Dan", "Fay"}),
    ("age", "le", 35, {"Ben", "Dan", "Fay"}),
    ("age", "eq", 35, {"Ben"}),
    ("age", "ne", 35, {"Anna", "Cleo", "Dan", "Fay"}),
    ("age", "between", [18, 35], {"Ben", "Dan"}),
    ("age", "ge", 18, {"Anna", "Ben", "Dan"}),
    ("age", "is_empty", None, {"Cleo"}),
    # boolean (no preference row means not opted in)
    ("email_opt_in", "eq", True, {"Anna"}),
    ("email_opt_in", "eq", False, {"Ben", "Cleo", "Dan", "Fay"}),
    ("email_opt_in", "ne", True, {"Ben", "Cleo", "Dan", "Fay"}),
    ("sms_opt_in", "eq", True, {"Ben"}),
    ("push_opt_in", "eq", True, {"Dan"}),
]


@pytest.mark.parametrize(("field", "op", "value", "expected"), OPERATOR_CASES,
                         ids=[f"{f}-{o}-{v}" for f, o, v, _ in OPERATOR_CASES])
def test_operator_selects_exactly_the_right_customers(session, people, field, op, value, expected):
    assert matching(session, people, cond(field, op, value)) == expected


def test_every_field_operator_pair_compiles():
    samples = {"string": "x", "enum": None, "number": 1, "date": "2026-01-01", "boolean": True}
    for name, spec in segmentation.RULE_FIELDS.items():
        for op in spec.operators:
            value = spec.choices[0] if spec.type == "enum" else samples[spec.type]
            if op in segmentation.NO_VALUE_OPERATORS:
                value = None
            elif op == "within_last_days":
                value = 7
            elif op == "between":
                value = [value, value]
            elif op in segmentation.LIST_OPERATORS:
                value = [value]
            segmentation.compile_rules(cond(name, op, value), AS_OF)


def test_age_is_relative_to_as_of(session, people):
    assert matching(session, people, cond("age", "ge", 36), as_of=AS_OF) == {"Anna"}
    assert matching(session, people, cond("age", "ge", 36), as_of=AS_OF + dt.timedelta(days=1)) == {"Anna", "Ben"}
    assert matching(session, people, cond("age", "ge", 18), as_of=AS_OF + dt.timedelta(days=1)) == {
        "Anna", "Ben", "Dan", "Fay"}
    assert matching(session, people, cond("age", "lt", 18), as_of=dt.date(2026, 2, 28)) == {"Dan", "Fay"}


def test_within_last_days_is_relative_to_as_of(session, people):
    assert matching(session, people, cond("signup_date", "within_last_days", 10), as_of=dt.date(2026, 2, 25)) == {
        "Anna"}
    assert matching(session, people, cond("signup_date", "within_last_days", 365)) == {"Anna", "Ben", "Dan", "Fay"}


def test_nested_all_and_any(session, people):
    rules = {"all": [
        {"field": "country", "op": "in", "value": ["DE", "FR", "US"]},
        {"any": [
            {"field": "order_count", "op": "ge", "value": 10},
            {"all": [
                {"field": "age", "op": "lt", "value": 20},
                {"field": "push_opt_in", "op": "eq", "value": True},
            ]},
        ]},
    ]}
    assert matching(session, people, rules) == {"Anna", "Dan"}
    assert matching(session, people, json.dumps(rules)) == {"Anna", "Dan"}
    either = {"any": [cond("country", "eq", "GB"), cond("health_level", "eq", "poor")]}
    assert matching(session, people, either) == {"Ben", "Fay"}
    # a single condition at the top is accepted as well
    assert matching(session, people, {"field": "country", "op": "eq", "value": "FR"}) == {"Ben"}


def _deep(levels: int) -> dict:
    node: dict = {"field": "country", "op": "eq", "value": "DE"}
    for _ in range(levels):
        node = {"all": [node]}
    return node


INVALID_CASES = [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (cond("nope", "eq", 1), "unknown field 'nope'; known fields: country"),
    (cond("age", "contains", "3"), "operator 'contains' is not allowed for this number field; allowed operators: eq"),
    ({"all": [{"field": "country"}]}, "no operator is not allowed"),
    (cond("order_count", "gt", "5"), "expected a number, got the text '5'"),
    (cond("order_count", "gt", True), "expected a number, got the boolean true"),
    (cond("age", "ge", 30.5), "whole number of years"),
    (cond("country", "eq", 5), "expected text"),
    (cond("country", "in", "DE"), "expected a non-empty list"),
    (cond("country", "in", []), "expected a non-empty list"),
    (cond("country", "eq", ["DE"]), "expected a single value"),
    (cond("signup_date", "eq", "2026-13-01"), "expected a date written YYYY-MM-DD"),
    (cond("order_count", "between", [1]), "expected a list of two values"),
    (cond("order_count", "between", 3), "expected a list of two values"),
    (cond("order_count", "between", [5, 1]), "low value 5 is greater than the high value 1"),
    (cond("gender", "eq", "robot"), "unknown value 'robot'; allowed values: female, male, non_binary, unknown"),
    (cond("loyalty_tier", "in", ["gold", "tin"]), "unknown value 'tin'"),
    ({"all": []}, "the 'all' group is empty"),
    ({"any": "x"}, "'any' must be a list"),
    ({"all": [{"field": "age", "op": "eq", "value": 3, "extra": 1}]}, "unknown key(s) 'extra'"),
    ({"all": [cond("age", "eq", 3)], "any": [cond("age", "eq", 3)]}, "exactly one key"),
    ({"all": [cond("age", "eq", 3)], "sort": 1}, "remove 'sort'"),
    (_deep(6), "nested too deeply"),
    (cond("country", "is_empty", "DE"), "takes no value"),
    (cond("country", "eq"), "a value is required"),
    (cond("email_opt_in", "eq", "yes"), "expected true or false"),
    (cond("signup_date", "within_last_days", -1), "whole number of days"),
    (cond("city", "contains", ""), "text to look for is empty"),
    ({"all": ["country = 'DE'"]}, "expected a group"),
    (None, "No rules given"),
]


@pytest.mark.parametrize(("rules", "message"), INVALID_CASES, ids=[m for _, m in INVALID_CASES])
def test_invalid_rules_are_refused_with_a_useful_message(rules, message):
    with pytest.raises(platform.ValidationError) as excinfo:
        segmentation.parse_rules(rules)
    assert message in str(excinfo.value)
    with pytest.raises(platform.ValidationError):
        segmentation.compile_rules(rules, AS_OF)


def test_error_message_names_the_path_of_the_condition():
    rules = {"all": [cond("country", "eq", "DE"), {"any": [cond("age", "ge", 3), {"field": "city", "op": "gt",
                                                                                   "value": "A"}]}]}
    with pytest.raises(platform.ValidationError, match=r"rules\.all\[1\]\.any\[1\] \(field 'city'\)"):
        segmentation.parse_rules(rules)


def test_five_levels_are_allowed():
    segmentation.parse_rules(_deep(5))


INJECTIONS = ["x' OR '1'='1", "1; DROP TABLE customers", "'; DROP TABLE customers; --", "DE' --"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_in_a_value_is_just_a_value(session, people, value):
    for rules in (cond("city", "eq", value), cond("country", "in", [value]), cond("city", "contains", value),
                  cond("preferred_category", "ne", value)):
        found = matching(session, people, rules)
        assert found == (EVERYONE if rules["all"][0]["op"] == "ne" else set())
    assert session.scalar(select(func.count()).select_from(Customer)) == 6


@pytest.mark.parametrize("field", ["country; DROP TABLE customers", "country' OR '1'='1", "customers.id"])
def test_injection_as_a_field_name_is_refused(session, people, field):
    with pytest.raises(platform.ValidationError, match="unknown field"):
        segmentation.matching_ids_query(cond(field, "eq", "DE"), AS_OF)
    assert session.scalar(select(func.count()).select_from(Customer)) == 6


def test_preview_counts_and_samples(session, people):
    analyst = make_user(session, "analyst")
    result = segmentation.preview_rules(session, analyst, cond("order_count", "ge", 2), AS_OF)
    assert result["count"] == 3
    assert [r["name"].split()[0] for r in result["sample"]] == ["Anna", "Ben", "Fay"]
    first = result["sample"][0]
    assert set(first) == {"id", "name", "email", "country", "order_count", "total_revenue"}
    assert (first["country"], first["order_count"], first["total_revenue"]) == ("DE", 10, Decimal("1000.00"))
    limited = segmentation.preview_rules(session, analyst, cond("order_count", "ge", 2), AS_OF, sample=1)
    assert limited["count"] == 3 and len(limited["sample"]) == 1
    with pytest.raises(platform.PermissionDenied):
        segmentation.preview_rules(session, make_user(session, "support_agent"), cond("order_count", "ge", 2), AS_OF)


# --------------------------------------------------------------------------- CRUD


def test_create_segment_validates_and_audits(session):
    analyst = make_user(session, "analyst")
    seg = segmentation.create_segment(session, analyst, "  Big   spenders ", "value_based", "dynamic",
                                  rules=json.dumps(cond("total_revenue", "ge", 500)), priority=10)
    assert seg.name == "Big spenders" and seg.rules == cond("total_revenue", "ge", 500) and seg.version == 1
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "segment.create"))
    assert entry.entity_id == str(seg.id) and entry.actor_username == analyst.username
    assert entry.after["name"] == "Big spenders"

    with pytest.raises(platform.ValidationError, match="already a segment named"):
        segmentation.create_segment(session, analyst, "big spenders", "custom", "static")
    with pytest.raises(platform.ValidationError, match="dynamic segment needs rules"):
        segmentation.create_segment(session, analyst, "No rules", "custom", "dynamic")
    with pytest.raises(platform.ValidationError, match="static segment has no rules"):
        segmentation.create_segment(session, analyst, "Static", "custom", "static", rules=cond("age", "ge", 1))
    with pytest.raises(platform.ValidationError, match="unknown field"):
        segmentation.create_segment(session, analyst, "Bad", "custom", "dynamic", rules=cond("nope", "eq", 1))
    with pytest.raises(platform.ValidationError, match="Unknown segment type"):
        segmentation.create_segment(session, analyst, "Bad", "weird", "static")
    with pytest.raises(platform.ValidationError, match="Unknown segment kind"):
        segmentation.create_segment(session, analyst, "Bad", "custom", "sometimes")
    with pytest.raises(platform.ValidationError, match="priority"):
        segmentation.create_segment(session, analyst, "Bad", "custom", "static", priority="high")
    with pytest.raises(platform.ValidationError, match="needs a name"):
        segmentation.create_segment(session, analyst, "  ", "custom", "static")
    # model segments (RFM, clusters) are dynamic without rules
    assert segmentation.create_segment(session, analyst, "Champions", "rfm", "dynamic").rules is None


@pytest.mark.parametrize("role", ["support_agent", "executive", "success_manager"])
def test_roles_without_segments_manage_cannot_change_segments(session, role):
    analyst = make_user(session, "analyst")
    seg = segmentation.create_segment(session, analyst, "Mine", "custom", "static")
    other = make_user(session, role)
    with pytest.raises(platform.PermissionDenied):
        segmentation.create_segment(session, other, "Theirs", "custom", "static")
    with pytest.raises(platform.PermissionDenied):
        segmentation.update_segment(session, other, seg.id, seg.version, priority=1)
    with pytest.raises(platform.PermissionDenied):
        segmentation.set_segment_active(session, other, seg.id, False)
    with pytest.raises(platform.PermissionDenied):
        segmentation.add_members(session, other, seg.id, [])


def test_update_segment_with_optimistic_locking(session):
    admin = make_user(session, "admin")
    seg = segmentation.create_segment(session, admin, "Germans", "geographic", "dynamic", rules=cond("country", "eq", "DE"))
    segmentation.update_segment(session, admin, seg.id, 1, rules=cond("country", "in", ["DE", "AT"]), priority=5)
    assert seg.version == 2 and seg.priority == 5 and seg.rules == cond("country", "in", ["DE", "AT"])
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "segment.update"))
    assert entry.before == {"rules": cond("country", "eq", "DE"), "priority": 100}
    assert entry.after["priority"] == 5
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        segmentation.update_segment(session, admin, seg.id, 1, priority=7)
    with pytest.raises(platform.ValidationError, match="Cannot change kind"):
        segmentation.update_segment(session, admin, seg.id, 2, kind="static")
    with pytest.raises(platform.ValidationError, match="not allowed for this enum field"):
        segmentation.update_segment(session, admin, seg.id, 2, rules=cond("gender", "gt", "male"))
    with pytest.raises(platform.ConflictError):
        segmentation.set_segment_active(session, admin, seg.id, False, expected_version=1)
    segmentation.set_segment_active(session, admin, seg.id, False, expected_version=2)
    assert seg.is_active is False
    assert session.scalar(select(AuditLog.action).where(AuditLog.action == "segment.deactivate"))


# --------------------------------------------------------------------------- memberships


def _rows(session, segment_id, customer_id):
    return session.execute(
        select(CustomerSegmentMembership.is_active, CustomerSegmentMembership.entered_at,
               CustomerSegmentMembership.left_at, CustomerSegmentMembership.assignment)
        .where(CustomerSegmentMembership.segment_id == segment_id,
               CustomerSegmentMembership.customer_id == customer_id)
        .order_by(CustomerSegmentMembership.id)
    ).all()


def test_refresh_enters_leaves_and_reenters(session, people):
    admin = make_user(session, "admin")
    seg = segmentation.create_segment(session, admin, "Germans", "geographic", "dynamic", rules=cond("country", "eq", "DE"))
    paused = segmentation.create_segment(session, admin, "Paused", "custom", "dynamic", rules=cond("age", "ge", 0))
    segmentation.set_segment_active(session, admin, paused.id, False)
    anna = session.get(Customer, people["Anna"])
    t1, t2, t3 = T0, T0 + dt.timedelta(days=1), T0 + dt.timedelta(days=2)

    assert segmentation.refresh_memberships(session, AS_OF, now=t1) == {"Germans": {"entered": 1, "left": 0, "members": 1}}
    assert _rows(session, seg.id, anna.id) == [(True, t1, None, "auto")]

    anna.country_code = "FR"
    ben = session.get(Customer, people["Ben"])
    ben.country_code = "DE"
    assert segmentation.refresh_memberships(session, AS_OF, now=t2)["Germans"] == {"entered": 1, "left": 1, "members": 1}
    assert _rows(session, seg.id, anna.id) == [(False, t1, t2, "auto")]

    anna.country_code = "DE"
    assert segmentation.refresh_memberships(session, AS_OF, now=t3)["Germans"] == {"entered": 1, "left": 0, "members": 2}
    assert _rows(session, seg.id, anna.id) == [(False, t1, t2, "auto"), (True, t3, None, "auto")]
    # nothing changed: nothing moves
    assert segmentation.refresh_memberships(session, AS_OF, now=t3)["Germans"] == {"entered": 0, "left": 0, "members": 2}
    # merged customers leave
    ben.status = "merged"
    assert segmentation.refresh_memberships(session, AS_OF, now=t3, segment_ids=[seg.id]) == {
        "Germans": {"entered": 0, "left": 1, "members": 1}}

    session.refresh(seg)
    assert seg.last_refreshed_at == t3 and seg.version == 1  # a refresh does not bump the edit version
    assert session.scalar(select(func.count()).select_from(CustomerSegmentMembership)
                          .where(CustomerSegmentMembership.segment_id == paused.id)) == 0


def test_static_add_and_remove_keep_history(session, people):
    analyst = make_user(session, "analyst")
    seg = segmentation.create_segment(session, analyst, "VIP list", "custom", "static")
    t1, t2, t3 = T0, T0 + dt.timedelta(hours=1), T0 + dt.timedelta(hours=2)
    assert segmentation.add_members(session, analyst, seg.id, [people["Anna"], people["Ben"], people["Anna"]], now=t1) == 2
    assert segmentation.add_members(session, analyst, seg.id, [people["Anna"]], now=t1) == 0
    assert segmentation.remove_members(session, analyst, seg.id, [people["Anna"]], now=t2) == 1
    assert segmentation.remove_members(session, analyst, seg.id, [people["Anna"]], now=t2) == 0
    assert _rows(session, seg.id, people["Anna"]) == [(False, t1, t2, "manual")]
    assert segmentation.add_members(session, analyst, seg.id, [people["Anna"]], now=t3) == 1
    assert _rows(session, seg.id, people["Anna"]) == [(False, t1, t2, "manual"), (True, t3, None, "manual")]
    actions = session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "segment")
                              .order_by(AuditLog.id)).all()
    assert actions.count("segment.add_members") == 3 and actions.count("segment.remove_members") == 2

    with pytest.raises(platform.ValidationError, match="id 999999"):
        segmentation.add_members(session, analyst, seg.id, [people["Cleo"], 999999])
    with pytest.raises(platform.ValidationError, match="merged or erased"):
        segmentation.add_members(session, analyst, seg.id, [people["Gone"]])
    with pytest.raises(platform.ValidationError, match="list of customer ids"):
        segmentation.add_members(session, analyst, seg.id, "12")
    dynamic = segmentation.create_segment(session, analyst, "Dyn", "custom", "dynamic", rules=cond("age", "ge", 1))
    with pytest.raises(platform.ValidationError, match="is dynamic"):
        segmentation.add_members(session, analyst, dynamic.id, [people["Anna"]])
    # a static segment is never touched by the refresh
    assert "VIP list" not in segmentation.refresh_memberships(session, AS_OF, now=t3)


def test_replace_model_memberships(session, people):
    admin = make_user(session, "admin")
    seg = segmentation.create_segment(session, admin, "Champions", "rfm", "dynamic")
    t1, t2 = T0, T0 + dt.timedelta(days=1)
    assert segmentation.replace_model_memberships(session, seg.id, [(people["Anna"], 0.9), (people["Ben"], 0.5)], t1) == {
        "entered": 2, "left": 0, "members": 2}
    assert segmentation.replace_model_memberships(session, seg.id, [(people["Ben"], 0.7), (people["Dan"], 1.0)], t2) == {
        "entered": 1, "left": 1, "members": 2}
    confidences = dict(session.execute(
        select(CustomerSegmentMembership.customer_id, CustomerSegmentMembership.confidence)
        .where(CustomerSegmentMembership.segment_id == seg.id, CustomerSegmentMembership.is_active.is_(True))
    ).all())
    assert confidences == {people["Ben"]: 0.7, people["Dan"]: 1.0}
    assert _rows(session, seg.id, people["Anna"]) == [(False, t1, t2, "auto")]
    assert "Champions" not in segmentation.refresh_memberships(session, AS_OF, now=t2)
    with pytest.raises(platform.ValidationError, match="between 0 and 1"):
        segmentation.replace_model_memberships(session, seg.id, [(people["Ben"], 1.5)], t2)


@pytest.mark.parametrize("staged_over", [0, 10_000], ids=["staged", "per-row"])
def test_replace_model_memberships_large_changes_go_through_a_staged_table(session, people, monkeypatch, staged_over):
    """Model refreshes move most confidences: above the threshold the updates are one UPDATE ... FROM."""
    monkeypatch.setattr(segments, "STAGE_UPDATES_OVER", staged_over)
    admin = make_user(session, "admin")
    seg = segmentation.create_segment(session, admin, "Cluster 1", "cluster", "static")
    t1, t2 = T0, T0 + dt.timedelta(days=1)
    segmentation.replace_model_memberships(session, seg.id, [(people[n], 0.5) for n in ("Anna", "Ben", "Cleo")], t1)
    result = segmentation.replace_model_memberships(session, seg.id, [(people["Ben"], 0.8), (people["Cleo"], 0.5),
                                                                  (people["Dan"], 0.25)], t2)
    assert result == {"entered": 1, "left": 1, "members": 3}
    active = dict(session.execute(
        select(CustomerSegmentMembership.customer_id, CustomerSegmentMembership.confidence)
        .where(CustomerSegmentMembership.segment_id == seg.id, CustomerSegmentMembership.is_active.is_(True))
    ).all())
    assert active == {people["Ben"]: 0.8, people["Cleo"]: 0.5, people["Dan"]: 0.25}
    assert _rows(session, seg.id, people["Anna"]) == [(False, t1, t2, "auto")]


# --------------------------------------------------------------------------- reads


@pytest.fixture
def two_segments(session, people):
    analyst = make_user(session, "analyst")
    a = segmentation.create_segment(session, analyst, "A", "custom", "static", priority=1)
    b = segmentation.create_segment(session, analyst, "B", "custom", "static", priority=2)
    segmentation.add_members(session, analyst, a.id, [people[n] for n in ("Anna", "Ben", "Dan", "Fay")], now=T0)
    segmentation.add_members(session, analyst, b.id, [people[n] for n in ("Ben", "Dan", "Cleo")], now=T0)
    return analyst, a, b


def test_list_segments(session, people, two_segments):
    _, a, b = two_segments
    executive = make_user(session, "executive")
    listed = segmentation.list_segments(session, executive)
    assert [s["name"] for s in listed] == ["A", "B"]
    assert {"name", "type", "kind", "members", "priority"} <= set(listed[0])
    assert {k: listed[0][k] for k in ("name", "type", "kind", "members", "priority")} == {
        "name": "A", "type": "custom", "kind": "static", "members": 4, "priority": 1}
    total = 1000 + 150.5 + 0 + 500  # the merged customer's revenue does not count
    assert listed[0]["revenue_share"] == round(1650.5 / total, 4) == 1.0
    assert listed[1]["revenue_share"] == round(150.5 / total, 4)
    assert listed[1]["members"] == 3 and listed[1]["active"] is True
    json.dumps([{k: s[k] for k in ("name", "type", "kind", "members", "priority")} for s in listed])
    with pytest.raises(platform.PermissionDenied):
        segmentation.list_segments(session, make_user(session, "support_agent"))


def test_size_history(session, people):
    analyst = make_user(session, "analyst")
    seg = segmentation.create_segment(session, analyst, "History", "custom", "static")
    segmentation.add_members(session, analyst, seg.id, [people["Anna"]], now=dt.datetime(2025, 11, 15))
    segmentation.add_members(session, analyst, seg.id, [people["Ben"]], now=dt.datetime(2025, 12, 10))
    segmentation.remove_members(session, analyst, seg.id, [people["Anna"]], now=dt.datetime(2026, 1, 20))
    segmentation.add_members(session, analyst, seg.id, [people["Dan"]], now=dt.datetime(2026, 1, 31, 23, 59))
    history = segmentation.segment_size_history(session, analyst, seg.id, months=5, as_of=dt.date(2026, 2, 15))
    assert history == [
        {"month": "2025-10", "members": 0},
        {"month": "2025-11", "members": 1},
        {"month": "2025-12", "members": 2},
        {"month": "2026-01", "members": 2},
        {"month": "2026-02", "members": 2},
    ]
    assert len(segmentation.segment_size_history(session, analyst, seg.id)) == 12
    with pytest.raises(platform.ValidationError):
        segmentation.segment_size_history(session, analyst, seg.id, months=0)


def test_members_pagination_sort_and_export(session, people, two_segments):
    analyst, a, _ = two_segments
    first = segmentation.segment_members(session, analyst, a.id, page=1, page_size=3, sort_by="total_revenue", descending=True)
    second = segmentation.segment_members(session, analyst, a.id, page=2, page_size=3, sort_by="total_revenue", descending=True)
    assert first.total == 4 and first.pages == 2
    assert [r["name"].split()[0] for r in first.rows + second.rows] == ["Anna", "Fay", "Ben", "Dan"]
    by_recency = segmentation.segment_members(session, analyst, a.id, page_size=10, sort_by="days_since_last_order",
                                  descending=False)
    assert [r["name"].split()[0] for r in by_recency.rows] == ["Anna", "Fay", "Ben", "Dan"]  # no value last
    latest_first = segmentation.segment_members(session, analyst, a.id, page_size=10, sort_by="days_since_last_order")
    assert [r["name"].split()[0] for r in latest_first.rows] == ["Ben", "Fay", "Anna", "Dan"]
    assert first.rows[0]["loyalty_tier"] == "gold" and first.rows[0]["lifecycle_stage"] == "champion"
    with pytest.raises(platform.ValidationError, match="Cannot sort by 'password'"):
        segmentation.segment_members(session, analyst, a.id, sort_by="password")

    exported = list(segmentation.iter_member_rows(session, analyst, a.id, batch=2))
    assert [r["id"] for r in exported] == sorted(people[n] for n in ("Anna", "Ben", "Dan", "Fay"))
    with pytest.raises(platform.PermissionDenied):
        segmentation.iter_member_rows(session, make_user(session, "support_agent"), a.id)
    exports = session.scalars(select(AuditLog).where(AuditLog.action == "segment.export_members")).all()
    assert [(e.entity_id, e.after["members"], e.actor_id) for e in exports] == [(str(a.id), 4, analyst.id)]


def test_members_are_personal_data_behind_the_customer_permissions(session, two_segments):
    """An executive sees segments (counts, profiles) but not who is in them, and cannot export them."""
    _, a, _ = two_segments
    executive = make_user(session, "executive")
    assert segmentation.segment_profile(session, executive, a.id)["members"]["customers"] == 4
    with pytest.raises(platform.PermissionDenied):
        segmentation.segment_members(session, executive, a.id)
    with pytest.raises(platform.PermissionDenied):
        segmentation.iter_member_rows(session, executive, a.id)
    assert not session.scalars(select(AuditLog).where(AuditLog.action == "segment.export_members")).all()


def test_profile_and_compare(session, people, two_segments):
    analyst, a, b = two_segments
    prof = segmentation.segment_profile(session, analyst, b.id)
    assert prof["members"]["customers"] == 3 and prof["base"]["customers"] == 5
    assert {d["value"]: d["count"] for d in prof["members"]["country"]} == {"FR": 1, "US": 1, "(none)": 1}
    assert {d["value"]: d["count"] for d in prof["base"]["loyalty_tier"]} == {
        "gold": 1, "bronze": 1, "silver": 1, "(none)": 2}
    assert prof["members"]["averages"]["order_count"] == 1.0  # Ben 2, Dan 0, Cleo has no snapshot
    assert prof["base"]["averages"]["total_revenue"] == round(1650.5 / 4, 2)
    assert prof["base"]["lifecycle_stage"][0]["share"] == 0.4  # "(none)": Cleo and Fay

    result = segmentation.compare_segments(session, analyst, a.id, b.id)
    assert (result["a"]["members"], result["b"]["members"], result["overlap"]) == (4, 3, 2)
    assert (result["only_a"], result["only_b"], result["jaccard"]) == (2, 1, 0.4)
    assert result["profiles"]["a"]["customers"] == 4
    assert result["profiles"]["b"]["country"] == prof["members"]["country"]


def test_unknown_segment_is_not_found(session):
    from crm_core import platform

    analyst = make_user(session, "analyst")
    with pytest.raises(platform.NotFound):
        segmentation.segment_members(session, analyst, 12345)
    with pytest.raises(platform.NotFound):
        segmentation.update_segment(session, analyst, 12345, 1, priority=1)


def test_field_catalogue_lists_operators_and_choices():
    catalogue = {f["name"]: f for f in segmentation.field_catalogue()}
    assert catalogue["loyalty_tier"]["choices"] == ["bronze", "silver", "gold", "platinum", "diamond"]
    assert [o["op"] for o in catalogue["email_opt_in"]["operators"]] == ["eq", "ne"]
    assert "within_last_days" in [o["op"] for o in catalogue["signup_date"]["operators"]]
    assert "contains" not in [o["op"] for o in catalogue["order_count"]["operators"]]
