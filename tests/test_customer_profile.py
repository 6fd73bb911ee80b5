"""Customer 360: facts and scores, the timeline across sources, edits, addresses, payment methods."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import select

from crm_core import customers, platform
from crm_core.customers import profile
from db.engine import session_factory
from db.models import (
    AuditLog,
    Complaint,
    ConsentRecord,
    Customer,
    CustomerAddress,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerLifecycleHistory,
    CustomerLifecycleStage,
    CustomerMerge,
    CustomerPaymentMethod,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    LoyaltyTransaction,
    SupportTicket,
)

from .factories import make_customer, make_order, make_user

T0 = dt.datetime(2026, 3, 1, 10)


def at(days: int) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


@pytest.fixture
def staff(session):
    return {"admin": make_user(session, "admin"), "csm": make_user(session, "success_manager"),
            "analyst": make_user(session, "analyst")}


@pytest.fixture
def customer(session):
    return make_customer(session, dt.datetime(2025, 1, 1), first_name="Ada", last_name="Lovelace",
                         email="ada@mail.example", country_code="DE", city="Berlin")


@pytest.fixture
def history(session, customer):
    """One event of every kind, a day apart, oldest first."""
    other = make_customer(session, dt.datetime(2025, 2, 1), status="merged")
    make_order(session, customer, at(1), "49.90")
    session.add(CustomerCommunication(customer_id=customer.id, channel="email", direction="outbound", status="opened",
                                      campaign="Spring", subject="Spring sale", sent_at=at(2)))
    session.add(SupportTicket(ticket_number="TK-1", customer_id=customer.id, subject="Where is my parcel",
                              priority="high", created_at=at(3)))
    session.add(Complaint(customer_id=customer.id, category="delivery", description="late", severity="high",
                          created_at=at(4)))
    session.add(CustomerLifecycleHistory(customer_id=customer.id, from_stage="new_customer", to_stage="active",
                                         changed_at=at(5), reason="ordered again"))
    account = LoyaltyAccount(customer_id=customer.id, tier="silver", points_balance=120, lifetime_points=120)
    session.add(account)
    session.flush()
    session.add(LoyaltyTransaction(account_id=account.id, customer_id=customer.id, kind="earn", points=120,
                                   balance_after=120, reason="order", created_at=at(6)))
    segment = CustomerSegment(name="Spring buyers", segment_type="custom", kind="static")
    session.add(segment)
    session.flush()
    session.add(CustomerSegmentMembership(segment_id=segment.id, customer_id=customer.id, assignment="manual",
                                          entered_at=at(7), left_at=at(8), is_active=False))
    session.add(CustomerMerge(survivor_id=customer.id, merged_id=other.id, merged_at=at(9)))
    session.flush()
    return other


def test_timeline_merges_every_source_newest_first(session, staff, customer, history):
    page = customers.timeline(session, staff["csm"], customer.id, page_size=50)
    assert page.total == 9
    assert [r["kind"] for r in page.rows] == [
        "merge", "segment_leave", "segment_enter", "loyalty", "lifecycle", "complaint", "ticket", "communication",
        "order",
    ]
    times = [r["at"] for r in page.rows]
    assert times == sorted(times, reverse=True)
    events = {r["kind"]: r for r in page.rows}
    assert events["order"]["detail"] == "delivered, 49.90 EUR"
    assert events["lifecycle"]["event"] == "Stage new_customer → active"
    assert events["loyalty"]["event"] == "Loyalty earn +120 points"
    assert events["segment_leave"]["event"] == "Left segment Spring buyers"
    assert events["merge"]["event"] == f"Customer {history.id} merged into this one"
    assert events["ticket"]["event"] == "Ticket TK-1: Where is my parcel"


def test_timeline_pages_and_filters_by_kind(session, staff, customer, history):
    first = customers.timeline(session, staff["csm"], customer.id, page=1, page_size=4)
    third = customers.timeline(session, staff["csm"], customer.id, page=3, page_size=4)
    assert first.pages == 3 and [r["kind"] for r in third.rows] == ["order"]
    only = customers.timeline(session, staff["csm"], customer.id, kinds=["order", "ticket"])
    assert [r["kind"] for r in only.rows] == ["ticket", "order"] and only.total == 2
    with pytest.raises(platform.ValidationError, match="Unknown timeline kind"):
        customers.timeline(session, staff["csm"], customer.id, kinds=["gossip"])
    with pytest.raises(platform.NotFound):
        customers.timeline(session, staff["csm"], 999_999)


def test_profile_has_facts_and_latest_scores(session, staff, customer):
    # Orders and revenue are read live: four revenue orders (a cancelled one does not count), while the
    # last refresh's snapshot still says 3 orders and 300.00 (a split or a new order since then).
    for day, total in ((1, "100.00"), (8, "120.50"), (15, "100.00"), (22, "100.00")):
        make_order(session, customer, dt.datetime(2026, 5, day, 12), total)
    make_order(session, customer, dt.datetime(2026, 5, 25, 12), "999.00", status="cancelled")
    session.add(CustomerAnalytics(customer_id=customer.id, as_of=dt.date(2026, 6, 1), order_count=3,
                                  total_revenue=Decimal("300.00"), clv_12m=Decimal("300"), churn_probability=0.8,
                                  sessions_90d=3, open_tickets=1, recency_score=4, frequency_score=3,
                                  monetary_score=5))
    session.add(CustomerLifecycleStage(customer_id=customer.id, stage="at_risk", entered_at=T0, reason="quiet"))
    session.flush()
    result = customers.customer_profile(session, staff["analyst"], customer.id)
    assert result["facts"]["name"] == "Ada Lovelace"
    assert result["facts"]["orders"] == 4 and result["facts"]["revenue"] == 420.5
    assert result["facts"]["avg_order_value"] == 105.12 and result["facts"]["days_since_last_order"] == 10
    assert result["facts"]["last_order_at"] == dt.datetime(2026, 5, 22, 12)
    assert result["facts"]["stage"] == "at_risk"
    assert result["scores"]["clv_12m"] == 300.0
    assert result["scores"]["risk_level"] == "critical"
    assert result["scores"]["rfm"] == "435"


def test_update_customer_validates_normalizes_and_audits(session, staff, customer):
    updated = customers.update_customer(session, staff["csm"], customer.id, customer.version, {
        "email": "Ada.L@Example.COM", "phone": "030 1234567", "company": "  Analytical   Engines ",
        "first_name": "Ada", "date_of_birth": "1990-12-10",
    })
    assert updated.email == "Ada.L@example.com"
    assert updated.phone == "+49301234567"  # read with the customer's country (DE) as region
    assert updated.company == "Analytical Engines"
    assert updated.version == 2
    entry = session.scalars(select(AuditLog).where(AuditLog.action == "customer.update")).one()
    assert entry.before == {"email": "ada@mail.example", "phone": None, "company": None, "date_of_birth": None}
    assert entry.after["phone"] == "+49301234567" and "first_name" not in entry.after  # unchanged: not recorded


@pytest.mark.parametrize("changes, message", [
    ({"email": "not-an-email"}, "Email 'not-an-email' is not valid"),
    ({"phone": "12"}, "Phone '12' is not a valid number"),
    ({"phone": "hello"}, "is not a phone number"),
    ({"country_code": "XX"}, "not an ISO country code"),
    ({"first_name": "A" * 101}, "at most 100 characters"),
    ({"first_name": "", "last_name": ""}, "first or a last name"),
    ({"gender": "robot"}, "Gender must be one of"),
    ({"date_of_birth": "2999-01-01"}, "between 1900 and today"),
    ({"password": "x"}, "Cannot change password"),
    ({"preferred_language": "klingon"}, "language code"),
])
def test_bad_edits_are_refused_and_nothing_changes(session, staff, customer, changes, message):
    with pytest.raises(platform.ValidationError, match=message):
        customers.update_customer(session, staff["csm"], customer.id, customer.version, changes)
    session.refresh(customer)
    assert customer.version == 1 and customer.email == "ada@mail.example"


def test_several_problems_are_reported_together(session, staff, customer):
    with pytest.raises(platform.ValidationError) as caught:
        customers.update_customer(session, staff["csm"], customer.id, 1, {"email": "x@", "country_code": "ZZ"})
    assert "Email" in str(caught.value) and "ZZ" in str(caught.value)


def test_stale_version_and_concurrent_edit_give_a_conflict(engine, staff, customer, session):
    session.commit()
    with pytest.raises(platform.ConflictError, match="version 0 is now 1"):
        customers.update_customer(session, staff["csm"], customer.id, 0, {"city": "Munich"})
    factory = session_factory(engine)
    first, second = factory(), factory()
    try:
        actor_b = second.get(type(staff["csm"]), staff["csm"].id)
        second.get(Customer, customer.id)  # the second editor reads version 1 ...
        second.commit()
        with platform.unit_of_work(lambda: first) as s:  # ... the first one saves meanwhile ...
            customers.update_customer(s, s.get(type(staff["csm"]), staff["csm"].id), customer.id, 1,
                                      {"city": "Munich"})
        # ... and the second save, past the version check on its stale copy, loses the versioned UPDATE.
        with pytest.raises(platform.ConflictError, match="changed by someone else"), platform.unit_of_work(lambda: second) as s:
            customers.update_customer(s, actor_b, customer.id, 1, {"city": "Hamburg"})
    finally:
        first.close()
        second.close()
    with factory() as check:
        assert check.get(Customer, customer.id).city == "Munich"
        assert check.get(Customer, customer.id).version == 2


def test_merged_customers_and_readers_cannot_edit(session, staff, customer):
    with pytest.raises(platform.PermissionDenied):
        customers.update_customer(session, staff["analyst"], customer.id, 1, {"city": "Munich"})
    merged = make_customer(session, dt.datetime(2025, 1, 1), status="merged", merged_into_id=customer.id)
    with pytest.raises(platform.ValidationError, match=f"merged into customer {customer.id}"):
        customers.update_customer(session, staff["csm"], merged.id, 1, {"city": "Munich"})


def test_failure_after_the_write_leaves_nothing_behind(engine, staff, customer, session, monkeypatch):
    session.commit()

    def broken(*args, **kwargs):
        raise RuntimeError("audit store unavailable")

    monkeypatch.setattr(profile, "record_audit", broken)
    factory = session_factory(engine)
    with pytest.raises(RuntimeError), platform.unit_of_work(factory) as s:
        customers.update_customer(s, s.get(type(staff["csm"]), staff["csm"].id), customer.id, 1,
                                  {"city": "Munich"})
    with factory() as check:
        stored = check.get(Customer, customer.id)
        assert (stored.city, stored.version) == ("Berlin", 1)


def test_address_is_validated_and_geocoded_offline(session, staff, customer):
    address = customers.add_address(session, staff["csm"], customer.id, {
        "line1": "Unter den Linden 1", "city": "berlin", "postal_code": "10117", "country_code": "de",
        "is_default": True,
    })
    assert (address.country_code, address.validation_status) == ("DE", "valid")
    assert (address.latitude, address.longitude) == (52.52, 13.4)
    nl = customers.add_address(session, staff["csm"], customer.id, {
        "kind": "billing", "line1": "Dam 1", "city": "Amsterdam", "postal_code": "1012 jd", "country_code": "NL"})
    assert nl.postal_code == "1012 JD" and nl.latitude == pytest.approx(52.37)
    unknown = customers.add_address(session, staff["csm"], customer.id, {
        "line1": "Dorfstr. 3", "city": "Kleinkleckersdorf", "postal_code": "01234", "country_code": "DE"})
    assert unknown.latitude is None and unknown.longitude is None  # unknown city: no coordinates, no error
    assert customers.geocode("FR", "Paris") == (48.86, 2.35)
    rows = customers.addresses(session, staff["analyst"], customer.id)
    assert len(rows) == 3 and rows[0]["is_default"]


@pytest.mark.parametrize("fields, message", [
    ({"line1": "Dam 1", "city": "Amsterdam", "postal_code": "12345", "country_code": "NL"}, "format used in NL"),
    ({"line1": "1 Main St", "city": "London", "postal_code": "ABC", "country_code": "GB"}, "format used in GB"),
    ({"line1": "x", "city": "Nowhere", "postal_code": "123", "country_code": "QQ"}, "not an ISO country code"),
    ({"city": "Berlin", "postal_code": "10117", "country_code": "DE"}, "Street and number is required"),
    ({"line1": "x", "city": "Berlin", "postal_code": "10117", "country_code": "DE", "kind": "holiday"}, "kind"),
    ({"line1": "x", "city": "Berlin", "postal_code": "10117", "country_code": "DE", "floor": 3}, "Unknown address"),
])
def test_bad_addresses_are_refused(session, staff, customer, fields, message):
    with pytest.raises(platform.ValidationError, match=message):
        customers.add_address(session, staff["csm"], customer.id, fields)
    assert session.scalars(select(CustomerAddress).where(CustomerAddress.customer_id == customer.id)).all() == []


def test_new_default_address_replaces_the_old_default_and_edits_regeocode(session, staff, customer):
    first = customers.add_address(session, staff["csm"], customer.id, {
        "line1": "A 1", "city": "Berlin", "postal_code": "10117", "country_code": "DE", "is_default": True})
    second = customers.add_address(session, staff["csm"], customer.id, {
        "line1": "B 2", "city": "Munich", "postal_code": "80331", "country_code": "DE", "is_default": True})
    session.refresh(first)
    assert first.is_default is False and second.is_default is True
    customers.update_address(session, staff["csm"], first.id, {"city": "Hamburg", "postal_code": "20095"})
    assert (first.latitude, first.longitude) == (53.55, 9.99)
    actions = list(session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "customer",
                                                                AuditLog.entity_id == str(customer.id))
                                   .order_by(AuditLog.id)))
    assert actions == ["customer.address.add", "customer.address.add", "customer.address.update"]


def test_payment_methods_flag_expired_cards(session, staff, customer):
    for n, (month, year) in enumerate(((5, 2026), (6, 2026), (1, 2027))):
        session.add(CustomerPaymentMethod(customer_id=customer.id, processor="stripe", processor_token=f"pm_{n}",
                                          brand="visa", last4=f"{n:04d}", exp_month=month, exp_year=year,
                                          is_default=n == 0))
    session.flush()
    rows = customers.payment_methods(session, staff["analyst"], customer.id, today=dt.date(2026, 6, 15))
    assert [(r["expires"], r["expired"]) for r in rows] == [("05/2026", True), ("06/2026", False), ("01/2027", False)]
    assert set(rows[0]) >= {"brand", "last4", "expires"} and "processor_token" not in rows[0]


def test_preferences_show_the_latest_consent_per_purpose(session, staff, customer):
    session.add_all([
        ConsentRecord(customer_id=customer.id, purpose="marketing_email", granted=True, recorded_at=at(1)),
        ConsentRecord(customer_id=customer.id, purpose="marketing_email", granted=False, recorded_at=at(5)),
        ConsentRecord(customer_id=customer.id, purpose="analytics", granted=True, recorded_at=at(2)),
    ])
    session.flush()
    result = customers.preferences(session, staff["analyst"], customer.id)
    consents = {c["purpose"]: c["granted"] for c in result["consents"]}
    assert consents["marketing_email"] is False and consents["analytics"] is True
    assert consents["marketing_sms"] is None and result["preferences"] is None


def test_segments_and_scores_tabs(session, staff, customer, history):
    rows = customers.segments_of(session, staff["analyst"], customer.id)
    assert [(r["segment"], r["active"]) for r in rows] == [("Spring buyers", False)]
    scores = customers.score_history(session, staff["analyst"], customer.id)
    assert scores == {"churn": [], "health": []}
    orders = customers.orders(session, staff["analyst"], customer.id)
    assert orders.total == 1 and orders.rows[0]["total"] == 49.9
    make_order(session, customer, at(2), "10.00", status="cancelled")
    make_order(session, customer, at(40), "20.00")
    assert customers.monthly_orders(session, staff["analyst"], customer.id) == [
        {"month": "2026-03", "orders": 2, "revenue": 49.9}, {"month": "2026-04", "orders": 1, "revenue": 20.0}]
