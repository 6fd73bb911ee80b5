"""Tickets: validation, assignment, status rules, conversation, attachments, conflicts, surveys."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crm_core import platform, service
from crm_core.service import tickets
from db.engine import session_factory
from db.models import (
    AuditLog,
    SupportTicket,
    SupportTicketEvent,
    SupportTicketResponse,
    SurveyResponse,
)

from .factories import make_customer, make_order, make_user
from .service_desk_support import FRIDAY_5PM, desk

U = dt.datetime


@pytest.fixture
def d(session):
    return desk(session)


@pytest.fixture(autouse=True)
def attachment_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_ATTACHMENTS_DIR", str(tmp_path / "attachments"))
    return tmp_path / "attachments"


def _create(session, d, **kw):
    fields = {"customer_id": d["customer"].id, "subject": "Parcel missing", "description": "Where is it?",
              "category": "delivery", "priority": "normal", "now": FRIDAY_5PM, **kw}
    return service.create_ticket(session, d["agent"], **fields)


def _count(session, model, *where):
    return session.scalar(select(func.count()).select_from(model).where(*where))


def test_create_saves_ticket_first_message_event_and_audit(session, d):
    order = make_order(session, d["customer"], U(2026, 11, 20), 42)
    ticket = _create(session, d, order_id=order.id, department="Logistics")
    assert ticket.status == "new" and ticket.order_id == order.id and ticket.department == "Logistics"
    assert ticket.ticket_number.startswith("T-261127-")
    assert service.ticket_conversation(session, d["agent"], ticket.id)[0]["body"] == "Where is it?"
    assert _count(session, SupportTicketEvent, SupportTicketEvent.event == "created") == 1
    assert _count(session, AuditLog, AuditLog.action == "ticket.create") == 1


@pytest.mark.parametrize(("fields", "message"), [
    ({"subject": "  "}, "Subject is required"),
    ({"subject": None}, "Subject is required"),
    ({"subject": "x" * 256}, "at most 255"),
    ({"subject": 42}, "must be text"),
    ({"description": ""}, "Description is required"),
    ({"category": "weather"}, "Category must be one of"),
    ({"priority": "asap"}, "Priority must be one of"),
    ({"channel": "pigeon"}, "Channel must be one of"),
    ({"customer_id": 999_999}, "does not exist"),
    ({"customer_id": "12"}, "positive whole number"),
    ({"order_id": 999_999}, "Order 999999 does not exist"),
])
def test_create_refuses_bad_input(session, d, fields, message):
    with pytest.raises(platform.ValidationError, match=message):
        _create(session, d, **fields)
    assert _count(session, SupportTicket) == 0


def test_related_order_must_belong_to_the_customer(session, d):
    stranger = make_customer(session, U(2025, 1, 1))
    order = make_order(session, stranger, U(2026, 11, 20), 10)
    with pytest.raises(platform.ValidationError, match="belongs to another customer"):
        _create(session, d, order_id=order.id)


def test_only_support_roles_may_create_and_change(session, d):
    with pytest.raises(platform.PermissionDenied):
        service.create_ticket(session, d["analyst"], d["customer"].id, "S", "D")
    ticket = _create(session, d)
    with pytest.raises(platform.PermissionDenied):
        service.update_ticket(session, d["analyst"], ticket.id, ticket.version, status="open")


def test_assignment_rules(session, d):
    ticket = _create(session, d)
    with pytest.raises(platform.ValidationError, match="cannot take tickets"):
        service.assign_ticket(session, d["agent"], ticket.id, d["analyst"].id, ticket.version)
    inactive = make_user(session, "support_agent")
    inactive.is_active = False
    session.flush()
    with pytest.raises(platform.ValidationError, match="cannot take tickets"):
        service.assign_ticket(session, d["agent"], ticket.id, inactive.id, ticket.version)
    service.assign_ticket(session, d["agent"], ticket.id, d["agent2"].id, ticket.version, department="Billing")
    assert (ticket.assignee_id, ticket.department, ticket.status) == (d["agent2"].id, "Billing", "open")
    events = session.scalars(select(SupportTicketEvent.event).where(SupportTicketEvent.ticket_id == ticket.id)).all()
    assert {"assigned", "department_changed", "status_changed"} <= set(events)


def test_status_transitions_follow_the_table(session, d):
    ticket = _create(session, d)
    with pytest.raises(platform.ValidationError, match="cannot become reopened"):
        service.change_ticket_status(session, d["agent"], ticket.id, "reopened", ticket.version)
    with pytest.raises(platform.ValidationError, match="Status must be one of"):
        service.change_ticket_status(session, d["agent"], ticket.id, "done", ticket.version)
    service.change_ticket_status(session, d["agent"], ticket.id, "resolved", ticket.version, now=U(2026, 11, 30, 9))
    assert ticket.resolved_at == U(2026, 11, 30, 9)
    with pytest.raises(platform.ValidationError, match="cannot become open"):
        service.change_ticket_status(session, d["agent"], ticket.id, "open", ticket.version)
    service.change_ticket_status(session, d["agent"], ticket.id, "closed", ticket.version, now=U(2026, 12, 1, 9))
    assert ticket.closed_at == U(2026, 12, 1, 9)
    with pytest.raises(platform.ValidationError, match="closed; reopen it"):
        service.add_response(session, d["agent"], ticket.id, "Hello?")
    service.change_ticket_status(session, d["agent"], ticket.id, "reopened", ticket.version)
    assert ticket.closed_at is None and ticket.resolved_at is None


def test_conversation_in_order_with_notes_and_read_status(session, d):
    ticket = _create(session, d)
    service.add_response(session, d["agent"], ticket.id, "Checking with the carrier.", now=U(2026, 11, 30, 8))
    service.add_response(session, d["agent"], ticket.id, "Carrier says lost.", internal=True, now=U(2026, 11, 30, 9))
    service.add_response(session, d["agent"], ticket.id, "Any news?", from_customer=True, now=U(2026, 11, 30, 10))
    messages = service.ticket_conversation(session, d["agent"], ticket.id)
    assert [(m["author_kind"], m["is_internal"]) for m in messages] == [
        ("customer", False), ("agent", False), ("agent", True), ("customer", False)]
    assert [m["body"] for m in service.ticket_conversation(session, d["agent"], ticket.id, include_internal=False)] == [
        "Where is it?", "Checking with the carrier.", "Any news?"]
    assert ticket.status == "open" and ticket.first_responded_at == U(2026, 11, 30, 8)
    assert service.get_ticket(session, d["agent"], ticket.id)["unread"] == 1
    assert service.mark_ticket_read(session, d["agent"], ticket.id) == 1
    assert service.get_ticket(session, d["agent"], ticket.id)["unread"] == 0
    with pytest.raises(platform.ValidationError, match="message is required"):
        service.add_response(session, d["agent"], ticket.id, "   ")


def test_attachments_are_stored_checked_and_sanitized(session, d, attachment_store):
    ticket = _create(session, d)
    response = service.add_response(session, d["agent"], ticket.id, "Label attached",
                                    attachment=("../../etc/Rück sendung<1>.pdf", b"%PDF-1.4 demo", "application/pdf"))
    assert response.attachment_name == "Ruck_sendung_1_.pdf"
    assert response.attachment_size == 13 and response.attachment_type == "application/pdf"
    stored = attachment_store / response.attachment_path
    assert stored.read_bytes() == b"%PDF-1.4 demo" and attachment_store in stored.resolve().parents
    assert service.read_attachment(session, d["agent"], response.id) == (
        "Ruck_sendung_1_.pdf", "application/pdf", b"%PDF-1.4 demo")
    with pytest.raises(platform.ValidationError, match="limit is 5 MB"):
        service.add_response(session, d["agent"], ticket.id, "big", attachment=("big.pdf", b"x" * (5 * 1024 * 1024 + 1),
                                                                                "application/pdf"))
    with pytest.raises(platform.ValidationError, match="cannot be attached"):
        service.add_response(session, d["agent"], ticket.id, "exe", attachment=("setup.exe", b"MZ", None))
    with pytest.raises(platform.ValidationError, match="does not match"):
        service.add_response(session, d["agent"], ticket.id, "fake", attachment=("photo.png", b"x", "application/pdf"))
    with pytest.raises(platform.ValidationError, match="is empty"):
        service.add_response(session, d["agent"], ticket.id, "empty", attachment=("a.txt", b"", "text/plain"))
    assert len(list(attachment_store.rglob("*.*"))) == 1
    with pytest.raises(platform.NotFound):
        service.read_attachment(session, d["agent"], 999_999)


def test_concurrent_edits_give_a_conflict_not_a_lost_update(engine):
    factory = session_factory(engine)
    with platform.unit_of_work(engine) as s:
        d = desk(s)
        ticket = _create(s, d)
        ids = {"ticket": ticket.id, "agent": d["agent"].id, "agent2": d["agent2"].id}
        read_version = ticket.version
    # Two agents opened the ticket at the same version; the first saves, the second is refused.
    with platform.unit_of_work(factory) as s:
        service.update_ticket(s, s.get(type(d["agent"]), ids["agent"]), ids["ticket"], read_version,
                              priority="high")
    with pytest.raises(platform.ConflictError, match="changed by someone else"), platform.unit_of_work(factory) as s:
        service.update_ticket(s, s.get(type(d["agent"]), ids["agent2"]), ids["ticket"], read_version,
                              priority="low", status="on_hold")
    with platform.unit_of_work(engine) as s:
        saved = s.get(SupportTicket, ids["ticket"])
        assert (saved.priority, saved.status, saved.version) == ("high", "new", read_version + 1)


def test_interleaved_flush_is_translated_to_a_conflict(engine):
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite serialises writers; the interleaving is only possible on PostgreSQL")
    factory = session_factory(engine)
    with platform.unit_of_work(engine) as s:
        d = desk(s)
        ticket_id, agent_id = _create(s, d).id, d["agent"].id
    first, second = factory(), factory()
    try:
        agent_a, agent_b = first.get(type(d["agent"]), agent_id), second.get(type(d["agent"]), agent_id)
        version = first.get(SupportTicket, ticket_id).version
        stale = second.get(SupportTicket, ticket_id)  # held: the identity map keeps only referenced objects
        service.update_ticket(first, agent_a, ticket_id, version, priority="high")
        first.commit()
        assert stale.version == version  # the second agent still holds the older read
        with pytest.raises(platform.ConflictError, match="at the same time"):
            service.update_ticket(second, agent_b, ticket_id, version, priority="low")
    finally:
        first.close()
        second.rollback()
        second.close()


def test_failure_mid_operation_leaves_nothing_written(engine, monkeypatch, attachment_store):
    factory = session_factory(engine)
    with platform.unit_of_work(engine) as s:
        d = desk(s)
        ticket_id, agent_id = _create(s, d).id, d["agent"].id

    def broken(*args, **kwargs):
        raise platform.DomainError("audit store unavailable")

    monkeypatch.setattr(tickets, "record_audit", broken)
    with pytest.raises(platform.DomainError, match="audit store"), platform.unit_of_work(factory) as s:
        service.add_response(s, s.get(type(d["agent"]), agent_id), ticket_id, "Label",
                             attachment=("label.pdf", b"%PDF", "application/pdf"))
    with platform.unit_of_work(engine) as s:
        assert _count(s, SupportTicketResponse, SupportTicketResponse.ticket_id == ticket_id) == 1
        assert s.get(SupportTicket, ticket_id).first_responded_at is None
    assert list(attachment_store.rglob("*.pdf")) == []


def test_queue_filters_search_sorting_and_paging(session, d):
    a = _create(session, d, subject="Refund please", priority="critical", category="billing")
    b = _create(session, d, subject="Broken lamp", priority="low", category="product")
    c = _create(session, d, subject="Refund again", priority="normal", category="billing")
    service.assign_ticket(session, d["agent"], b.id, d["agent"].id, b.version)
    service.change_ticket_status(session, d["agent"], c.id, "resolved", c.version)
    now = FRIDAY_5PM + dt.timedelta(minutes=1)
    team = service.ticket_queue(session, d["agent"], "team", now=now)
    assert [r["id"] for r in team.rows] == [a.id, b.id]  # critical due first; resolved c not open
    assert team.rows[0]["sla"] == "under 1h" and team.rows[0]["customer"] == "Greta Lindqvist"
    mine = service.ticket_queue(session, d["agent"], "mine", now=now)
    assert [r["id"] for r in mine.rows] == [b.id]
    assert service.ticket_queue(session, d["agent"], text="refund", open_only=False, now=now).total == 2
    assert [r["id"] for r in service.ticket_queue(session, d["agent"], category="billing", status="resolved").rows] == [c.id]
    paged = service.ticket_queue(session, d["agent"], page=2, page_size=1, now=now)
    assert paged.total == 2 and paged.pages == 2 and [r["id"] for r in paged.rows] == [b.id]
    with pytest.raises(platform.ValidationError):
        service.ticket_queue(session, d["agent"], "everyone")


def test_customer_lookup_by_id_email_and_name(session, d):
    make_customer(session, U(2025, 1, 1), first_name="Gregor", last_name="Samsa", email="gregor@example.com")
    cid = d["customer"].id
    assert [c["id"] for c in service.lookup_customers(session, d["agent"], str(cid))] == [cid]
    assert [c["id"] for c in service.lookup_customers(session, d["agent"], "GRETA@example.com")] == [cid]
    assert {c["name"] for c in service.lookup_customers(session, d["agent"], "gre")} == {"Greta Lindqvist",
                                                                                          "Gregor Samsa"}
    assert [c["name"] for c in service.lookup_customers(session, d["agent"], "ta lind")] == ["Greta Lindqvist"]
    assert service.lookup_customers(session, d["agent"], "q") == []


def test_csat_on_resolution(session, d):
    ticket = _create(session, d)
    with pytest.raises(platform.ValidationError, match="CSAT is asked once it is resolved"):
        service.record_csat(session, d["agent"], ticket.id, 5)
    service.change_ticket_status(session, d["agent"], ticket.id, "resolved", ticket.version)
    for bad in (0, 6, "5", True):
        with pytest.raises(platform.ValidationError):
            service.record_csat(session, d["agent"], ticket.id, bad)
    service.record_csat(session, d["agent"], ticket.id, 2)
    service.record_csat(session, d["agent"], ticket.id, 4, "Quick in the end")
    assert ticket.csat_rating == 4
    answers = session.scalars(select(SurveyResponse).where(SurveyResponse.ticket_id == ticket.id)).all()
    assert [(a.survey_type, a.score, a.comment) for a in answers] == [("csat", 4, "Quick in the end")]


def test_nps_detractor_opens_one_follow_up_ticket(session, d):
    answer = service.record_survey_answer(session, d["agent"], d["customer"].id, "nps", 3, "Slow delivery")
    follow_up = session.get(SupportTicket, answer.follow_up_ticket_id)
    assert follow_up.customer_id == d["customer"].id and follow_up.priority == "high"
    assert "3/10" in follow_up.subject and "Slow delivery" in follow_up.description
    assert service.open_follow_up(session, d["agent"], answer.id).id == follow_up.id
    assert _count(session, SupportTicket) == 1
    passive = service.record_survey_answer(session, d["agent"], d["customer"].id, "nps", 7)
    assert passive.follow_up_ticket_id is None
    with pytest.raises(platform.ValidationError, match="Only NPS detractor"):
        service.open_follow_up(session, d["agent"], passive.id)


@pytest.mark.parametrize(("survey_type", "score", "message"), [
    ("nps", 11, "from 0 to 10"), ("nps", -1, "from 0 to 10"), ("csat", 0, "from 1 to 5"),
    ("nps", 7.5, "whole number"), ("nps", "9", "whole number"), ("ces", 3, "Survey type"),
])
def test_survey_answers_are_validated(session, d, survey_type, score, message):
    with pytest.raises(platform.ValidationError, match=message):
        service.record_survey_answer(session, d["agent"], d["customer"].id, survey_type, score)


def test_nps_overall_and_by_month(session, d):
    c = d["customer"]
    for score, when in [(10, U(2026, 10, 5)), (9, U(2026, 10, 6)), (5, U(2026, 10, 7)), (8, U(2026, 10, 8)),
                        (2, U(2026, 11, 3)), (10, U(2026, 11, 4))]:
        service.record_survey_answer(session, d["agent"], c.id, "nps", score, responded_at=when)
    overall = service.nps_summary(session, d["admin"])
    # 3 promoters, 1 passive, 2 detractors of 6: 50% - 33.3% = 16.7
    assert overall == {"responses": 6, "promoters": 3, "passives": 1, "detractors": 2, "nps": 16.7}
    trend = service.nps_trend(session, d["admin"], U(2026, 11, 27), months=3)
    assert [(r["month"], r["nps"]) for r in trend] == [("2026-10", 25.0), ("2026-11", 0.0)]
    assert _count(session, SupportTicket) == 2  # one follow-up per detractor
