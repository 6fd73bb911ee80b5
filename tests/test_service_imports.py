"""Helpdesk tickets and communications imports: documented columns, bad rows, idempotency, no SLA storm."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from sqlalchemy import func, select

from crm_core import imports, platform, service
from crm_core.imports import helpdesk
from db.engine import session_factory
from db.models import (
    AuditLog,
    CustomerCommunication,
    ImportRun,
    SlaBreach,
    SupportTicket,
    SupportTicketEvent,
    SupportTicketResponse,
)
from tests.factories import make_customer, make_user
from tests.service_desk_support import make_policies

NOW = dt.datetime(2025, 6, 1, 12, 0)

TICKETS = (
    "ticket_id,customer_external_id,customer_email,created_at,subject,description,status,priority,category,channel,"
    "first_responded_at,resolved_at,closed_at,csat_rating\n"
    "ZD-1,C-1,,2024-03-01 09:00:00 +0100,Where is my parcel?,It has been a week.,solved,medium,delivery,Web Form,"
    "2024-03-01 10:00:00 +0100,2024-03-02 09:00:00 +0100,,5\n"  # 2
    "ZD-2,,ANA@example.com,2024-03-02,Refund,,,high,billing,email,,,2024-03-05,\n"  # 3 closed, found by email
    "ZD-3,C-1,,2023-01-10,Still open from last year,Please call me,open,urgent,product,phone,,,,\n"  # 4 old, open
    "ZD-4,C-1,,2024-03-04,Bad priority,,open,blocker,order,email,,,,\n"  # 5
    "ZD-5,C-404,,2024-03-04,Unknown customer,,open,low,order,email,,,,\n"  # 6
    "ZD-6,C-gone,,2024-03-04,Erased customer,,open,low,order,email,,,,\n"  # 7
    "ZD-7,C-old,,2024-03-04,Merged customer,,open,low,shipping,email,,,,\n"  # 8 bad category
    "ZD-8,C-old,,2024-03-04,Merged customer,,pending,low,order,chat,,,,\n"  # 9 goes to the survivor
    "ZD-9,C-1,,2024-03-04,Time travel,,resolved,low,order,email,,2024-03-01,,\n"  # 10
    "ZD-10,C-1,,2024-03-04,Too happy,,resolved,low,order,email,,2024-03-05,,7\n"  # 11
    "ZD-1,C-1,,2024-03-04,Same id again,,open,low,order,email,,,,\n"  # 12
    ",C-1,,2024-03-04,No id,,open,low,order,email,,,,\n"  # 13
    "ZD-11,,,2024-03-04,Nobody,,open,low,order,email,,,,\n"  # 14
    "ZD-12,C-1,,2024-03-04,Nul \x00 byte,,open,low,order,email,,,,\n"  # 15
)


def people(session) -> dict:
    survivor = make_customer(session, dt.datetime(2020, 1, 1), external_id="C-new")
    return {
        "c1": make_customer(session, dt.datetime(2020, 1, 1), external_id="C-1", first_name="Zoë"),
        "ana": make_customer(session, dt.datetime(2020, 1, 1), email="ana@Example.com"),
        "gone": make_customer(session, dt.datetime(2020, 1, 1), external_id="C-gone", status="erased", email=None),
        "old": make_customer(session, dt.datetime(2020, 1, 1), external_id="C-old", status="merged",
                             merged_into_id=survivor.id),
        "survivor": survivor,
    }


def run(session, kind: str, data: str, **options):
    options.setdefault("now", NOW)
    return imports.import_service_file(session, platform.SYSTEM, kind, io.BytesIO(data.encode()),
                                               file_name=f"{kind}.csv", **options)


def test_tickets_import_with_bad_rows_twice(session, tmp_path):
    who = people(session)
    errors_file = tmp_path / "ticket-errors.csv"
    report = run(session, "tickets", TICKETS, errors_path=errors_file)
    assert dict(report.figures()) == {"rows read": 14, "tickets imported": 4, "skipped (already imported)": 0,
                                      "invalid": 10}
    with open(errors_file, encoding="utf-8", newline="") as handle:
        errors = {int(r["row"]): (r["identifier"], r["reason"]) for r in csv.DictReader(handle)}
    assert errors[5] == ("ZD-4", "priority 'blocker' is not one of low, normal, high, urgent, critical")
    assert errors[6] == ("ZD-5", "no customer with external id 'C-404' (import the customers first)")
    assert errors[7] == ("ZD-6", "customer 'C-gone' was erased")
    assert errors[8][1].startswith("category 'shipping' is not one of order, delivery")
    assert errors[10][1] == "resolved_at '2024-03-01' is before created_at '2024-03-04'"
    assert errors[11][1] == "csat_rating '7' is not a whole number from 1 to 5"
    assert errors[12] == ("ZD-1", "ticket_id 'ZD-1' appears earlier in the file (row 2)")
    assert errors[13][1] == "ticket_id is missing"
    assert errors[14][1] == "customer_external_id and customer_email are both missing"
    assert "NUL character" in errors[15][1]

    session.expire_all()
    imported = {t.external_id: t for t in session.scalars(select(SupportTicket))}
    assert set(imported) == {"ZD-1", "ZD-2", "ZD-3", "ZD-8"}
    first = imported["ZD-1"]
    assert (first.ticket_number, first.customer_id, first.status, first.priority, first.category, first.channel,
            first.csat_rating) == ("H-ZD-1", who["c1"].id, "resolved", "normal", "delivery", "web", 5)
    assert (first.created_at, first.first_responded_at, first.resolved_at) == (
        dt.datetime(2024, 3, 1, 8), dt.datetime(2024, 3, 1, 9), dt.datetime(2024, 3, 2, 8))
    assert (first.sla_id, first.first_response_due_at, first.resolution_due_at, first.sla_breached) == (
        None, None, None, False)
    assert first.updated_at == dt.datetime(2024, 3, 2, 8)
    assert (imported["ZD-2"].customer_id, imported["ZD-2"].status) == (who["ana"].id, "closed")
    assert imported["ZD-2"].subject == "Refund" and imported["ZD-2"].description == ""
    assert (imported["ZD-8"].customer_id, imported["ZD-8"].status) == (who["survivor"].id, "pending_customer")
    events = session.execute(select(SupportTicketEvent.ticket_id, SupportTicketEvent.event)).all()
    assert sorted(events) == sorted((t.id, "imported") for t in imported.values())
    messages = session.execute(select(SupportTicketResponse.ticket_id, SupportTicketResponse.author_kind,
                                      SupportTicketResponse.body)).all()
    assert sorted(messages) == sorted([(first.id, "customer", "It has been a week."),
                                       (imported["ZD-3"].id, "customer", "Please call me")])
    run_row = session.get(ImportRun, report.run_id)
    assert (run_row.entity, run_row.created, run_row.invalid) == ("tickets", 4, 10)
    assert session.scalar(select(AuditLog.action).where(AuditLog.entity_id == str(report.run_id))) == "tickets.import"

    again = run(session, "tickets", TICKETS)
    assert (again.created, again.skipped, again.invalid) == (0, 4, 10)
    assert session.scalar(select(func.count()).select_from(SupportTicket)) == 4
    assert session.scalar(select(func.count()).select_from(SupportTicketEvent)) == 4

    # No SLA storm: new policies, the SLA check and an edit leave the old open ticket without due times.
    make_policies(session)
    service.check_sla_now(session, platform.SYSTEM, NOW)
    assert session.scalar(select(func.count()).select_from(SlaBreach)) == 0
    old = imported["ZD-3"]
    session.refresh(old)
    service.update_ticket(session, platform.SYSTEM, old.id, old.version, now=NOW, priority="critical")
    service.check_sla_now(session, platform.SYSTEM, NOW)
    session.refresh(old)
    assert (old.priority, old.sla_id, old.resolution_due_at) == ("critical", None, None)
    assert session.scalar(select(func.count()).select_from(SlaBreach)) == 0


COMMUNICATIONS = (
    "message_id,customer_external_id,customer_email,channel,direction,sent_at,status,subject,campaign,body,"
    "delivered_at,opened_at,clicked_at,replied_at\n"
    "m-1,C-1,,email,outbound,2024-03-01 09:00,,Spring sale,spring24,,2024-03-01 09:01,2024-03-01 12:00,,\n"  # 2
    ",,ana@example.com,SMS,,2024-03-02,,,spring24,Code SPRING,,,,\n"  # 3 no id: a key from the row
    ",,ana@example.com,email,inbound,2024-03-03,,Complaint,,This is terrible and I am angry,,,,\n"  # 4
    ",C-1,,phone,outbound,2024-03-04,,Follow-up call,,,,,,\n"  # 5 a logged call
    "m-5,C-1,,pigeon,outbound,2024-03-04,,,,,,,,\n"  # 6 bad channel
    "m-6,C-1,,email,inbound,2024-03-04,opened,,,,,,,\n"  # 7 inbound cannot be opened
    "m-7,C-1,,email,outbound,2024-03-04,,,,,,2024-03-01,,\n"  # 8 opened before sent
    "m-8,C-1,,email,sideways,2024-03-04,,,,,,,,\n"  # 9 bad direction
    ",,ana@example.com,SMS,,2024-03-02,,,spring24,Code SPRING,,,,\n"  # 10 the same message as row 3
    "m-9,,nobody@example.com,email,,2024-03-04,,,,,,,,\n"  # 11 unknown email
    "m-10,C-1,,email,,,sent,,,,,,,\n"  # 12 no sent_at
)


def test_communications_import_with_bad_rows_twice(session):
    who = people(session)
    report = run(session, "communications", COMMUNICATIONS)
    reasons = {e.row: e.reason for e in report.errors}
    assert reasons == {
        6: "channel 'pigeon' is not one of email, sms, call, chat, push, in_app",
        7: "status 'opened' does not fit an inbound message (logged, delivered or replied)",
        8: "opened_at '2024-03-01' is before sent_at '2024-03-04'",
        9: "direction 'sideways' is not one of inbound, outbound",
        10: "the same message appears earlier in the file (row 3)",
        11: "no customer with email 'nobody@example.com' (import the customers first)",
        12: "sent_at is missing",
    }
    assert (report.created, report.invalid) == (4, 7)
    session.expire_all()
    rows = {m.sent_at.day: m for m in session.scalars(select(CustomerCommunication))}
    assert (rows[1].external_id, rows[1].status, rows[1].campaign, rows[1].customer_id) == (
        "m-1", "opened", "spring24", who["c1"].id)
    assert (rows[2].channel, rows[2].status, rows[2].customer_id) == ("sms", "sent", who["ana"].id)
    assert rows[2].external_id.startswith("sha1:")
    assert (rows[3].direction, rows[3].status) == ("inbound", "delivered") and rows[3].sentiment_score < 0
    assert (rows[4].channel, rows[4].status) == ("call", "logged")
    assert rows[1].sentiment_score is None

    again = run(session, "communications", COMMUNICATIONS)
    assert (again.created, again.skipped) == (0, 4)
    assert session.scalar(select(func.count()).select_from(CustomerCommunication)) == 4


def test_mapping_json_and_missing_columns(session):
    people(session)
    data = json.dumps([{"Nachricht": "x1", "Kunde": "C-1", "Kanal": "email", "Gesendet": "2024-03-01"}])
    mapping = {"Nachricht": "message_id", "Kunde": "customer_external_id", "Kanal": "channel", "Gesendet": "sent_at"}
    report = imports.import_service_file(session, platform.SYSTEM, "communications", io.BytesIO(data.encode()),
                                                 file_name="log.json", mapping=mapping, now=NOW)
    assert report.created == 1
    with pytest.raises(platform.ValidationError, match="needs a column for Ticket id and Created at"):
        run(session, "tickets", "id_x,customer_email\n1,a@example.com\n")
    with pytest.raises(platform.ValidationError, match="needs a column for the customer"):
        run(session, "tickets", "ticket_id,created_at\n1,2024-01-01\n")
    with pytest.raises(platform.ValidationError, match="is empty"):
        run(session, "tickets", "")
    assert imports.default_service_mapping("tickets", ["Id", "Requester email", "Created", "Via"]) == {
        "Id": "ticket_id", "Requester email": "customer_email", "Created": "created_at", "Via": "channel"}


def test_preview_and_permissions_and_rollback(engine, monkeypatch):
    factory = session_factory(engine)
    _, rows = imports.preview_service_file("tickets", io.BytesIO(TICKETS.encode()), file_name="t.csv", limit=5, now=NOW)
    assert [(r.row, r.status) for r in rows] == [(2, "ok"), (3, "ok"), (4, "ok"), (5, "invalid"), (6, "ok")]
    with platform.unit_of_work(factory) as s:
        people(s)
        agent = make_user(s, "support_agent")
        with pytest.raises(platform.PermissionDenied):
            imports.import_service_file(s, agent, "tickets", io.BytesIO(TICKETS.encode()), file_name="t.csv")

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(helpdesk, "finish_run", broken)
    with pytest.raises(RuntimeError), platform.unit_of_work(factory) as s:
        run(s, "tickets", TICKETS)
    with platform.unit_of_work(factory) as s:
        assert s.scalar(select(func.count()).select_from(SupportTicket)) == 0
        assert s.scalar(select(func.count()).select_from(SupportTicketEvent)) == 0
