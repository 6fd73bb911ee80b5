"""Privacy: erasure leaves no trace of the person in any text column, export, consent, DSR deadlines."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
from sqlalchemy import JSON, String, Text, func, select
from sqlalchemy.orm import Session

from crm_core import customers, platform
from crm_core.customers import privacy
from db.engine import session_factory
from db.models import (
    AuditLog,
    Base,
    ConsentRecord,
    Customer,
    CustomerAddress,
    CustomerPaymentMethod,
    DataSubjectRequest,
    Order,
    SocialAccount,
    SupportTicket,
    SupportTicketResponse,
    SurveyResponse,
)

from .every_table import fill_every_table
from .factories import make_customer, make_order, make_user

T0 = dt.datetime(2025, 2, 1)
SECRETS = ("Zelda Quixote", "zelda.q@example.com", "+31 6 1234 5678", "Keizersgracht 123", "zeldaq_ams",
           "pm_zelda_secret_token", "Quixote")


def _zelda(session: Session) -> tuple[Customer, Customer]:
    zelda = make_customer(session, T0, first_name="Zelda", last_name="Quixote", email="zelda.q@example.com",
                          phone="+31 6 1234 5678", city="Amsterdam", notes="Prefers calls; Zelda Quixote")
    bystander = make_customer(session, T0, first_name="Bob", last_name="Other", email="bob@example.com")
    fill_every_table(session, zelda.id, bystander.id)
    session.add_all([
        CustomerAddress(customer_id=zelda.id, line1="Keizersgracht 123", city="Amsterdam", postal_code="1015 CJ",
                        country_code="NL", latitude=52.37, longitude=4.88),
        SocialAccount(customer_id=zelda.id, platform="instagram", handle="zeldaq_ams",
                      profile_url="https://instagram.example/zeldaq_ams"),
        CustomerPaymentMethod(customer_id=zelda.id, processor="stripe", processor_token="pm_zelda_secret_token",
                              brand="visa", last4="4242"),
        SurveyResponse(customer_id=zelda.id, survey_type="nps", score=9, responded_at=T0,
                       comment="Zelda Quixote says: great service, write to zelda.q@example.com"),
    ])
    ticket = SupportTicket(ticket_number="TK-Z", customer_id=zelda.id, subject="Call +31 6 1234 5678",
                           description="Customer Zelda Quixote cannot log in")
    session.add(ticket)
    session.flush()
    session.add(SupportTicketResponse(ticket_id=ticket.id, author_kind="customer", body="Thanks - Zelda Quixote"))
    make_order(session, zelda, T0, "99.90")
    make_order(session, bystander, T0, "10.00")
    # A duplicate record merged into Zelda is the same person: it is erased too.
    dup = make_customer(session, T0, first_name="Zelda", last_name="Quixote", email="zq@example.com")
    make_order(session, dup, T0, "5.10")
    customers.merge_customers(session, platform.SYSTEM, zelda.id, dup.id, field_choices={"email": "other"})
    zelda.email = "zelda.q@example.com"
    platform.record_audit(session, platform.SYSTEM, "customer.update", "customer", zelda.id, before={"email": "zq@example.com"},
                 after={"email": "zelda.q@example.com", "note": "Zelda Quixote asked"})
    session.flush()
    return zelda, dup


def _text_hits(session: Session, secrets: tuple[str, ...]) -> list[str]:
    hits = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
        if not columns:
            continue
        for row in session.execute(select(*columns)).all():
            for column, value in zip(columns, row, strict=True):
                text = (json.dumps(value) if isinstance(value, dict | list) else str(value or "")).lower()
                hits += [f"{table.name}.{column.name}: {s}" for s in secrets if s.lower() in text]
    return hits


def test_erasure_leaves_no_personal_value_in_any_text_column(session):
    zelda, dup = _zelda(session)
    secrets = (*SECRETS, "zq@example.com")
    assert len(_text_hits(session, secrets)) > 10  # the scan does see them before
    revenue = session.scalar(select(func.sum(Order.total)))
    orders = session.scalar(select(func.count()).select_from(Order).where(Order.customer_id.in_([zelda.id, dup.id])))
    request = customers.create_privacy_request(session, platform.SYSTEM, zelda.id, "erasure", notes="Email from Zelda Quixote")
    result = customers.erase_customer(session, platform.SYSTEM, zelda.id, request.id)
    session.commit()

    assert _text_hits(session, secrets) == []
    assert session.scalar(select(func.sum(Order.total))) == revenue       # aggregates still add up
    assert session.scalar(select(func.count()).select_from(Order)
                          .where(Order.customer_id.in_([zelda.id, dup.id]))) == orders
    for customer in (session.get(Customer, zelda.id), session.get(Customer, dup.id)):
        assert customer.status == "erased" and customer.erased_at is not None and customer.email is None
    token = session.scalar(select(CustomerPaymentMethod).where(CustomerPaymentMethod.customer_id == zelda.id,
                                                               CustomerPaymentMethod.processor == "stripe"))
    assert token.status == "removed" and token.processor_token.startswith("erased:") and token.last4 is None
    address = session.scalar(select(CustomerAddress).where(CustomerAddress.postal_code.is_(None),
                                                           CustomerAddress.customer_id == zelda.id).limit(1))
    assert address is not None and address.latitude is None and address.country_code
    done = session.get(DataSubjectRequest, request.id)
    assert done.status == "completed" and "Retention exception" in done.notes
    assert result["retention_exceptions"][0]["table"] == "orders"
    person = {zelda.id, *session.scalars(select(Customer.id).where(Customer.merged_into_id == zelda.id))}
    assert set(result["erased_customers"]) == person and dup.id in person
    with pytest.raises(platform.ValidationError, match="already"):
        customers.erase_customer(session, platform.SYSTEM, zelda.id, customers.create_privacy_request(session, platform.SYSTEM, dup.id, "access").id)


def test_erasure_is_all_or_nothing(engine, monkeypatch):
    factory = session_factory(engine)
    with factory() as s:
        zelda, _ = _zelda(s)
        request = customers.create_privacy_request(s, platform.SYSTEM, zelda.id, "erasure")
        s.commit()
        ids = zelda.id, request.id

    def boom(*args, **kwargs):
        raise RuntimeError("connection lost")

    monkeypatch.setattr(privacy, "record_audit", boom)
    with pytest.raises(RuntimeError), platform.unit_of_work(factory) as s:
        customers.erase_customer(s, platform.SYSTEM, *ids)
    with factory() as s:
        assert s.get(Customer, ids[0]).email == "zelda.q@example.com"
        assert s.get(DataSubjectRequest, ids[1]).status == "received"
        assert len(_text_hits(s, SECRETS)) > 10


def test_erasure_guards(session):
    zelda = make_customer(session, T0)
    other = make_customer(session, T0)
    access = customers.create_privacy_request(session, platform.SYSTEM, zelda.id, "access")
    with pytest.raises(platform.ValidationError, match="not an erasure request"):
        customers.erase_customer(session, platform.SYSTEM, zelda.id, access.id)
    erasure = customers.create_privacy_request(session, platform.SYSTEM, other.id, "erasure")
    with pytest.raises(platform.ValidationError, match="is for customer"):
        customers.erase_customer(session, platform.SYSTEM, zelda.id, erasure.id)
    with pytest.raises(platform.PermissionDenied):
        customers.erase_customer(session, make_user(session, "success_manager"), other.id, erasure.id)


def test_export_zip_has_json_and_a_csv_per_table_with_only_the_persons_rows(session):
    zelda, _ = _zelda(session)
    request = customers.create_privacy_request(session, platform.SYSTEM, zelda.id, "access")
    payload = customers.process_access_request(session, platform.SYSTEM, request.id)
    archive = zipfile.ZipFile(io.BytesIO(payload))
    names = set(archive.namelist())
    assert {"subject.json", "customers.csv", "orders.csv", "customer_addresses.csv",
            "customer_support_ticket_responses.csv", "customer_gdpr_compliance.csv"} <= names
    data = json.loads(archive.read("subject.json"))["tables"]
    assert {f"{t}.csv" for t in data} | {"subject.json"} == names
    person = [zelda.id, *session.scalars(select(Customer.id).where(Customer.merged_into_id == zelda.id))]
    expected = set(session.scalars(select(Order.id).where(Order.customer_id.in_(person))))
    assert {row["id"] for row in data["orders"]} == expected and len(expected) >= 3
    bystander_orders = set(session.scalars(select(Order.id).where(Order.customer_id.not_in(person))))
    assert bystander_orders and not bystander_orders & {row["id"] for row in data["orders"]}
    assert "Keizersgracht 123" in archive.read("customer_addresses.csv").decode()
    assert "bob@example.com" not in archive.read("customers.csv").decode()
    done = session.get(DataSubjectRequest, request.id)
    assert done.status == "completed" and done.result["exported_tables"]["orders"] == len(expected)
    with pytest.raises(platform.ValidationError, match="already completed"):
        customers.process_access_request(session, platform.SYSTEM, request.id)


def test_consent_ledger_latest_wins(session):
    customer = make_customer(session, T0)
    at = dt.datetime(2026, 1, 1, 9)
    customers.record_consent(session, platform.SYSTEM, customer.id, "marketing_email", True, "consent", "web_form", "v1",
                           recorded_at=at)
    customers.record_consent(session, platform.SYSTEM, customer.id, "marketing_email", False, "consent", "email_link", "v2",
                           recorded_at=at + dt.timedelta(days=3))
    customers.record_consent(session, platform.SYSTEM, customer.id, "analytics", False, "legitimate_interests", "staff", "v1",
                           recorded_at=at)
    customers.record_consent(session, platform.SYSTEM, customer.id, "analytics", True, "consent", "staff", "v2",
                           recorded_at=at)  # same time: the later entry wins
    current = customers.current_consents(session, platform.SYSTEM, customer.id)
    assert current["marketing_email"]["granted"] is False and current["marketing_email"]["policy_version"] == "v2"
    assert current["analytics"]["granted"] is True
    assert customers.consent_ledger(session, platform.SYSTEM, customer.id).total == 4
    summary = {(r["purpose"], r["state"]): r["customers"] for r in customers.consent_summary(session, platform.SYSTEM)}
    assert summary == {("marketing_email", "withdrawn"): 1, ("analytics", "granted"): 1}


@pytest.mark.parametrize("args, message", [
    (("selling", True, "consent", "staff", "v1"), "Purpose"),
    (("profiling", "yes", "consent", "staff", "v1"), "granted"),
    (("profiling", True, "because", "staff", "v1"), "Lawful basis"),
    (("profiling", True, "consent", "pigeon", "v1"), "Source"),
    (("profiling", True, "consent", "staff", " "), "Policy version is required"),
])
def test_consent_validation(session, args, message):
    customer = make_customer(session, T0)
    with pytest.raises(platform.ValidationError, match=message):
        customers.record_consent(session, platform.SYSTEM, customer.id, *args)
    assert session.scalar(select(func.count()).select_from(ConsentRecord)) == 0


def test_preference_center_saves_with_version_check_and_ledger(session):
    customer = make_customer(session, T0)
    prefs = {"channels": ["email", "sms"], "frequency": "monthly", "preferred_channel": "email", "language": "pt-BR",
             "categories": ["Shoes", "Books", "Shoes"], "data_sharing": False, "analytics": True,
             "personalization": True}
    saved = customers.save_preferences(session, platform.SYSTEM, customer.id, prefs, expected_version=0)
    assert saved["channels"] == ["email", "sms"] and saved["categories"] == ["Books", "Shoes"]
    assert saved["analytics"] and saved["personalization"] and not saved["data_sharing"] and saved["version"] == 1
    purposes = set(session.scalars(select(ConsentRecord.purpose).where(ConsentRecord.source == "preference_center")))
    assert purposes == {"analytics", "profiling"}
    with pytest.raises(platform.ConflictError):
        customers.save_preferences(session, platform.SYSTEM, customer.id, {**prefs, "frequency": "weekly"}, expected_version=0)
    again = customers.save_preferences(session, platform.SYSTEM, customer.id, {**prefs, "analytics": False}, expected_version=1)
    assert again["analytics"] is False and again["version"] == 2


@pytest.mark.parametrize("change, message", [
    ({"channels": ["fax"]}, "Channels"),
    ({"frequency": "hourly"}, "Frequency"),
    ({"channels": [], "preferred_channel": None}, "at least one channel"),
    ({"preferred_channel": "push"}, "preferred channel"),
    ({"language": "english"}, "language code"),
    ({"analytics": "yes"}, "Analytics"),
])
def test_preference_center_validation(session, change, message):
    customer = make_customer(session, T0)
    prefs = {"channels": ["email"], "frequency": "weekly", "preferred_channel": "email", "language": "en",
             "categories": [], "data_sharing": False, "analytics": False, "personalization": False, **change}
    with pytest.raises(platform.ValidationError, match=message):
        customers.save_preferences(session, platform.SYSTEM, customer.id, prefs, expected_version=0)


def test_requests_are_due_in_30_days_and_flagged_overdue(session):
    customer = make_customer(session, T0)
    received = dt.datetime(2026, 1, 1, 10)
    late = customers.create_privacy_request(session, platform.SYSTEM, customer.id, "access", received_at=received)
    fresh = customers.create_privacy_request(session, platform.SYSTEM, customer.id, "rectification")
    assert late.due_at == dt.datetime(2026, 1, 31, 10)
    now = dt.datetime(2026, 2, 5)
    page = customers.list_privacy_requests(session, platform.SYSTEM, now=now)
    rows = {r["request_id"]: r for r in page.rows}
    assert rows[late.id]["overdue"] and rows[late.id]["days_left"] < 0
    assert customers.list_privacy_requests(session, platform.SYSTEM, overdue_only=True, now=now).total == 1
    assert customers.list_privacy_requests(session, platform.SYSTEM, request_type="rectification").rows[0]["request_id"] == fresh.id
    counts = customers.privacy_request_counts(session, platform.SYSTEM, now=now)
    assert counts["open"] == 2 and counts["overdue"] == 1
    customers.set_privacy_request_status(session, platform.SYSTEM, late.id, "rejected", "Identity could not be verified")
    assert customers.list_privacy_requests(session, platform.SYSTEM, status="rejected").total == 1
    with pytest.raises(platform.ValidationError, match="reason"):
        customers.set_privacy_request_status(session, platform.SYSTEM, fresh.id, "rejected", "")
    with pytest.raises(platform.ValidationError, match="Request type"):
        customers.create_privacy_request(session, platform.SYSTEM, customer.id, "deletion")
    with pytest.raises(platform.ValidationError, match="future"):
        customers.create_privacy_request(session, platform.SYSTEM, customer.id, "access", received_at=dt.datetime(2099, 1, 1))


def test_the_access_export_neutralises_formulas_and_is_audited(session):
    zelda, _ = _zelda(session)
    zelda.company = "=HYPERLINK(\"http://evil.example\",\"x\")"
    zelda.first_name = "Zel;=1+1"
    session.flush()
    with pytest.raises(platform.PermissionDenied):
        customers.export_subject_data(session, make_user(session, "success_manager"), zelda.id)
    admin = make_user(session, "admin")
    archive = zipfile.ZipFile(io.BytesIO(customers.export_subject_data(session, admin, zelda.id)))
    text = archive.read("customers.csv").decode()
    assert "'=HYPERLINK" in text and "Zel;'=1+1" in text
    assert ",=" not in text and ";=" not in text
    audited = session.scalars(select(AuditLog).where(AuditLog.action == "customer.export_subject")).all()
    assert [(a.entity_id, a.actor_id) for a in audited] == [(str(zelda.id), admin.id)]


def test_neutralize_catches_a_formula_after_a_separator():
    assert platform.neutralize("x;=1+1") == "x;'=1+1"
    assert platform.neutralize("a, @SUM(A1)") == "a, '@SUM(A1)"
    assert platform.neutralize("=1;=2") == "'=1;'=2"
    assert platform.neutralize("Smith; Jones") == "Smith; Jones"
