"""The API's other resources behave as their pages do: jobs with per-record results, a streamed
export that is audited, loyalty adjustments with the approval rule, tickets with ETags, segments,
and webhooks delivered signed to a local HTTP server, retried with backoff."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlalchemy import select

from crm_core import loyalty, platform, webhooks
from db.models import AuditLog, WebhookDelivery, utcnow

from .api_support import assert_error, make_api
from .factories import make_customer


@pytest.fixture
def api(engine):
    return make_api(engine)


def _customers(engine, n: int) -> list[int]:
    with platform.unit_of_work(engine) as session:
        return [make_customer(session, dt.datetime(2026, 2, 1) + dt.timedelta(days=i), first_name=f"N{i}").id
                for i in range(n)]


def test_an_import_job_reports_per_record_results(api):
    text = "first_name,last_name,email\nAna,Lima,ana@example.com\nBo,,not-an-email\nAna,Lima,ana@example.com\n"
    started = api.post("admin", "/jobs/imports/customers", json={"csv": text})
    assert started.status_code == 202
    job = api.get("admin", started.json()["url"]).json()
    assert job["status"] == "succeeded" and job["summary"]["created"] == 1 and job["summary"]["invalid"] == 1
    results = api.get("admin", f"{started.json()['url']}/results").json()
    assert {r["result"] for r in results["data"]} >= {"invalid"} and results["total"] >= 1
    assert_error(api.get("analyst", started.json()["url"]), 404)  # someone else's job is not shown
    assert_error(api.post("analyst", "/jobs/imports/customers", json={"csv": text}), 403)


def test_an_orders_import_job_creates_customers_and_orders(api):
    text = "customer,date,amount\nC1,2026-01-02,10.50\nC1,2026-02-03,20\nC2,not a date,5\n"
    started = api.post("admin", "/jobs/imports/orders", json={"csv": text, "customer_col": "customer",
                                                              "date_col": "date", "amount_col": "amount"})
    job = api.get("admin", started.json()["url"]).json()
    assert job["status"] == "succeeded", job
    assert (job["summary"]["created"], job["summary"]["customers_created"], job["summary"]["invalid"]) == (2, 1, 1)
    missing = api.post("admin", "/jobs/imports/orders", json={"csv": text, "customer_col": "customer",
                                                              "date_col": "when", "amount_col": "amount"})
    failed = api.get("admin", missing.json()["url"]).json()
    assert failed["status"] == "failed" and "when" in failed["error"]


def test_a_bulk_job_over_ids_and_its_refusals(api, engine):
    ids = _customers(engine, 3)
    started = api.post("success_manager", "/jobs/bulk-actions", json={
        "action": "change_status", "customer_ids": ids + [999999], "params": {"status": "suspended", "reason": "fraud check"}})
    job = api.get("success_manager", started.json()["url"]).json()
    assert job["status"] == "succeeded", job
    assert job["summary"]["ok"] == 3 and job["summary"]["total"] == 4
    rows = api.get("success_manager", f"{started.json()['url']}/results").json()["data"]
    assert sorted(r["customer_id"] for r in rows if r["result"] == "ok") == ids
    both = api.post("success_manager", "/jobs/bulk-actions", json={"action": "change_status", "customer_ids": ids,
                                                                   "search": {}, "params": {}})
    assert_error(both, 400)
    failed = api.post("success_manager", "/jobs/bulk-actions", json={
        "action": "change_status", "customer_ids": ids, "params": {"colour": "red"}})
    assert api.get("success_manager", failed.json()["url"]).json()["status"] == "failed"


def test_the_export_streams_every_customer_and_is_audited(api, engine):
    ids = _customers(engine, 7)
    response = api.get("analyst", "/exports/customers.csv", params={"columns": ["id", "first_name"]})
    assert response.status_code == 200 and response.headers["X-Total-Count"] == "7"
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8-sig"))))
    assert [int(r["id"]) for r in rows] == ids
    with platform.unit_of_work(engine) as session:
        entry = session.scalar(select(AuditLog).where(AuditLog.action == "customers.export"))
        assert entry.actor_username == "api-analyst" and entry.after["rows"] == 7 and entry.after["streamed"]
    assert_error(api.get("analyst", "/exports/customers.csv", params={"columns": ["password"]}), 400)
    assert_error(api.get("support_agent", "/exports/customers.csv"), 403)


def test_loyalty_adjustments_follow_the_limits_and_nobody_approves_their_own(api, engine):
    customer_id = _customers(engine, 1)[0]
    with platform.unit_of_work(engine) as session:
        loyalty.enroll(session, platform.SYSTEM, customer_id)
    small = api.post("support_agent", f"/customers/{customer_id}/loyalty/adjustments",
                     json={"points": 10, "reason": "goodwill"})
    assert small.status_code == 201 and small.json()["status"] == "posted" and small.json()["balance_after"] == 10
    with platform.unit_of_work(engine) as session:
        settings, _ = loyalty.get_settings(session)
    limit, approval = settings["adjust_limits"]["success_manager"], settings["approval_limit"]
    assert_error(api.post("success_manager", f"/customers/{customer_id}/loyalty/adjustments",
                          json={"points": limit + 1, "reason": "too much"}), 403)
    big = api.post("success_manager", f"/customers/{customer_id}/loyalty/adjustments",
                   json={"points": approval + 1, "reason": "migration"})
    assert big.status_code == 201 and big.json()["status"] == "pending", big.text
    request_id = big.json()["request_id"]
    own = api.post("success_manager", f"/loyalty/adjustments/{request_id}/decision", json={"approve": True})
    assert own.status_code in (400, 403) and "own" in own.json()["error"]["message"]
    assert_error(api.post("support_agent", f"/loyalty/adjustments/{request_id}/decision", json={"approve": True}), 403)
    decided = api.post("admin", f"/loyalty/adjustments/{request_id}/decision",
                       json={"approve": False, "note": "no migration pending"})
    assert decided.status_code == 200 and decided.json()["status"] == "rejected", decided.text
    ledger = api.get("executive", f"/customers/{customer_id}/loyalty/ledger").json()
    assert ledger["total"] == 1 and ledger["data"][0]["points"] == 10


def test_tickets_carry_an_etag_and_a_stale_edit_is_412(api, engine):
    customer_id = _customers(engine, 1)[0]
    made = api.post("support_agent", "/tickets", json={"customer_id": customer_id, "subject": "Broken lid",
                                                       "description": "It arrived broken."})
    assert made.status_code == 201, made.text
    ticket_id, tag = made.json()["id"], made.headers["ETag"]
    assert api.patch("support_agent", f"/tickets/{ticket_id}", json={"priority": "high"},
                     headers={"If-Match": tag}).status_code == 200
    assert_error(api.patch("support_agent", f"/tickets/{ticket_id}", json={"priority": "low"},
                           headers={"If-Match": tag}), 412)
    reply = api.post("support_agent", f"/tickets/{ticket_id}/responses", json={"body": "Sorry! A new one is on its way."})
    assert reply.status_code == 201
    ticket = api.get("success_manager", f"/tickets/{ticket_id}").json()
    assert ticket["priority"] == "high" and len(ticket["conversation"]) >= 1


def test_segments_create_preview_and_edit_with_if_match(api, engine):
    _customers(engine, 2)
    rules = {"all": [{"field": "first_name_is_not_a_field", "op": "eq", "value": 1}]}
    assert "unknown field" in assert_error(api.post("analyst", "/segments/preview", json={"rules": rules}), 400)[
        "message"]
    rules = {"all": [{"field": "status", "op": "eq", "value": "active"}]}
    assert api.post("analyst", "/segments/preview", json={"rules": rules}).json()["count"] == 2
    made = api.post("analyst", "/segments", json={"name": "Everyone active", "rules": rules})
    assert made.status_code == 201
    segment_id, tag = made.json()["id"], made.headers["ETag"]
    edited = api.patch("analyst", f"/segments/{segment_id}", json={"description": "all of them"},
                       headers={"If-Match": tag})
    assert edited.status_code == 200 and edited.json()["description"] == "all of them"
    assert_error(api.patch("analyst", f"/segments/{segment_id}", json={"priority": 5}, headers={"If-Match": tag}), 412)
    assert_error(api.post("executive", "/segments", json={"name": "x", "rules": rules}), 403)
    gone = api.delete("analyst", f"/segments/{segment_id}")
    assert gone.status_code == 200 and gone.json()["active"] is False


class _Receiver(BaseHTTPRequestHandler):
    received: list = []
    answers: list = []

    def do_POST(self):  # noqa: N802 - the http.server API
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.headers, body))  # header names are case-insensitive
        status = type(self).answers.pop(0) if type(self).answers else 200
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    _Receiver.received, _Receiver.answers = [], []
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hooks", _Receiver
    server.shutdown()


def test_webhooks_are_signed_retried_with_backoff_and_logged(api, engine, receiver):
    url, handler = receiver
    made = api.post("admin", "/webhooks", json={"url": url, "events": ["customer.created", "customer.updated"]})
    assert made.status_code == 201
    secret, subscription_id = made.json()["secret"], made.json()["id"]
    assert secret.startswith("whsec_")
    assert_error(api.post("admin", "/webhooks", json={"url": "ftp://x", "events": ["customer.created"]}), 400)
    assert_error(api.post("admin", "/webhooks", json={"url": url, "events": ["customer.exploded"]}), 400)
    assert_error(api.get("analyst", "/webhooks"), 403)

    created = api.post("support_agent", "/customers", json={"first_name": "Hook"}).json()
    handler.answers = [500]  # the first attempt fails
    now = utcnow()
    with platform.unit_of_work(engine) as session:
        assert webhooks.collect_events(session, platform.SYSTEM, now=now) == 1
        assert webhooks.collect_events(session, platform.SYSTEM, now=now) == 0  # collected once
    with platform.unit_of_work(engine) as session:
        assert webhooks.deliver_due(session, platform.SYSTEM, now=now) == {"delivered": 0, "retrying": 1, "failed": 0}
    with platform.unit_of_work(engine) as session:
        assert webhooks.deliver_due(session, platform.SYSTEM, now=now) == {"delivered": 0, "retrying": 0, "failed": 0}
        later = now + webhooks.backoff(1)
        assert webhooks.deliver_due(session, platform.SYSTEM, now=later) == {"delivered": 1, "retrying": 0, "failed": 0}
    assert len(handler.received) == 2
    headers, body = handler.received[-1]
    payload = json.loads(body)
    assert payload["type"] == "customer.created" and payload["data"]["entity_id"] == str(created["id"])
    assert payload["data"]["actor"] == "api-support-agent"
    assert webhooks.verify_signature(secret, headers[webhooks.SIGNATURE_HEADER], body)
    assert not webhooks.verify_signature("whsec_wrong", headers[webhooks.SIGNATURE_HEADER], body)
    assert not webhooks.verify_signature(secret, headers[webhooks.SIGNATURE_HEADER], body + b" ")
    log = api.get("admin", f"/webhooks/{subscription_id}/deliveries").json()["data"]
    assert [(d["status"], d["attempts"], d["last_status_code"]) for d in log] == [("delivered", 2, 200)]


def test_a_delivery_is_given_up_after_the_last_attempt(api, engine):
    with platform.unit_of_work(engine) as session:
        webhooks.create_subscription(session, platform.SYSTEM, "http://127.0.0.1:9/closed", ["customer.created"])
    api.post("admin", "/customers", json={"first_name": "Nobody listens"})
    now = utcnow()
    calls = []

    def refuse(url, body, headers):
        calls.append(url)
        return None, "connection refused"

    with platform.unit_of_work(engine) as session:
        webhooks.collect_events(session, platform.SYSTEM, now=now)
        for attempt in range(webhooks.MAX_ATTEMPTS):
            webhooks.deliver_due(session, platform.SYSTEM, send=refuse, now=now)
            now += webhooks.backoff(attempt + 1)
        delivery = session.scalar(select(WebhookDelivery))
        assert (delivery.status, delivery.attempts, delivery.last_error) == (
            "failed", webhooks.MAX_ATTEMPTS, "connection refused")
    assert len(calls) == webhooks.MAX_ATTEMPTS
    assert [webhooks.backoff(n).total_seconds() for n in (1, 2, 3)] == [60, 120, 240]


def test_events_come_from_memberships_stage_changes_and_churn_predictions(engine):
    from db.models import ChurnPrediction, CustomerLifecycleHistory, CustomerSegment, CustomerSegmentMembership

    with platform.unit_of_work(engine) as session:
        a, b, c = (make_customer(session, dt.datetime(2026, 1, 1)) for _ in range(3))
        session.add(ChurnPrediction(customer_id=a.id, as_of=dt.date(2026, 5, 1), probability=0.2, risk_level="low"))
        session.add(ChurnPrediction(customer_id=b.id, as_of=dt.date(2026, 5, 1), probability=0.8, risk_level="critical"))
        segment = CustomerSegment(name="Big spenders", segment_type="custom", kind="static", rules=None,
                                  priority=1, description="", is_system=False, is_active=True)
        session.add(segment)
        session.flush()
        webhooks.create_subscription(session, platform.SYSTEM, "http://127.0.0.1:9/x", list(webhooks.WEBHOOK_EVENTS))
    departed = dt.datetime(2026, 6, 1, 3, 0)
    with platform.unit_of_work(engine) as session:
        # a at risk now (was low): an event; b still at risk: none; c at risk without an earlier prediction: one
        for customer, level in ((a, "high"), (b, "critical"), (c, "high")):
            session.add(ChurnPrediction(customer_id=customer.id, as_of=dt.date(2026, 6, 1), probability=0.7,
                                        risk_level=level))
        for customer in (a, b, c):
            session.add(CustomerSegmentMembership(segment_id=segment.id, customer_id=customer.id, is_active=False,
                                                  entered_at=dt.datetime(2026, 5, 1), left_at=departed))
        session.add(CustomerLifecycleHistory(customer_id=a.id, from_stage="active", to_stage="at_risk",
                                             changed_at=departed, reason="churn risk"))
    with platform.unit_of_work(engine) as session:
        webhooks.collect_events(session, platform.SYSTEM)
        events = sorted((d.event, d.payload["data"].get("customer_id")) for d in session.scalars(select(WebhookDelivery)))
    assert [e for e in events if e[0] == "churn.risk_high"] == sorted([("churn.risk_high", a.id),
                                                                        ("churn.risk_high", c.id)])
    assert sorted(e for e in events if e[0].startswith("segment.")) == sorted(
        [("segment.entered", x.id) for x in (a, b, c)] + [("segment.left", x.id) for x in (a, b, c)])
    assert ("lifecycle.stage_changed", a.id) in events
    with platform.unit_of_work(engine) as session:
        assert webhooks.collect_events(session, platform.SYSTEM) == 0, "each event is queued once"


def test_ticket_created_and_breached_events(api, engine):
    from db.models import SlaBreach

    with platform.unit_of_work(engine) as session:
        webhooks.create_subscription(session, platform.SYSTEM, "http://127.0.0.1:9/t", ["ticket.created",
                                                                                        "ticket.breached"])
    customer_id = _customers(engine, 1)[0]
    made = api.post("support_agent", "/tickets", json={"customer_id": customer_id, "subject": "Refund?",
                                                       "description": "Where is my refund?"}).json()
    with platform.unit_of_work(engine) as session:
        session.add(SlaBreach(ticket_id=made["id"], target="first_response", due_at=utcnow(), detected_at=utcnow(),
                              priority="normal", category="other"))
    with platform.unit_of_work(engine) as session:
        webhooks.collect_events(session, platform.SYSTEM)
        events = {d.event: d.payload["data"] for d in session.scalars(select(WebhookDelivery))}
    assert events["ticket.created"]["entity_id"] == str(made["id"])
    assert events["ticket.created"]["actor"] == "api-support-agent"
    assert events["ticket.breached"]["ticket_id"] == made["id"]


def test_the_jsonl_export_streams_the_same_customers_as_the_csv_and_is_audited(api, engine):
    ids = _customers(engine, 7)
    params = {"columns": ["id", "first_name", "signup_date"]}
    response = api.get("analyst", "/exports/customers.jsonl", params=params)
    assert response.status_code == 200 and response.headers["X-Total-Count"] == "7"
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [row["id"] for row in lines] == ids and set(lines[0]) == {"id", "first_name", "signup_date"}
    assert lines[0]["signup_date"] == "2026-02-01T00:00:00" and lines[0]["first_name"] == "N0"
    as_csv = list(csv.DictReader(io.StringIO(api.get("analyst", "/exports/customers.csv", params=params)
                                             .content.decode("utf-8-sig"))))
    assert [r["first_name"] for r in as_csv] == [row["first_name"] for row in lines]
    with platform.unit_of_work(engine) as session:
        formats = [e.after["format"] for e in session.scalars(
            select(AuditLog).where(AuditLog.action == "customers.export").order_by(AuditLog.id))]
        assert formats == ["jsonl", "csv"]
    assert_error(api.get("analyst", "/exports/customers.jsonl", params={"columns": ["password"]}), 400)
    assert_error(api.get("support_agent", "/exports/customers.jsonl"), 403)  # no personal data without export
    assert_error(api.get("executive", "/exports/customers.jsonl"), 403)


def test_the_jsonl_export_is_sent_in_chunks_read_from_a_server_side_cursor(engine):
    from crm_core import customers

    _customers(engine, 25)
    with platform.unit_of_work(engine) as session:
        chunks = list(customers.jsonl_stream(session, platform.SYSTEM, ["id"], batch=4, chunk_rows=10))
    assert [chunk.count(b"\n") for chunk in chunks] == [10, 10, 5]  # sent as read, not gathered first
