"""Complaints: validation, workflow, role limits on compensation, SLA, optimistic locking, dashboard."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import loyalty, platform, service
from db.engine import session_factory
from db.models import AuditLog, Complaint, LoyaltyTransaction, SupportTicket

from .factories import make_customer, make_order, make_user

NOW = dt.datetime(2026, 11, 1, 9, 0)


@pytest.fixture
def people(session):
    return {
        "agent": make_user(session, "support_agent"),
        "csm": make_user(session, "success_manager"),
        "admin": make_user(session, "admin"),
        "analyst": make_user(session, "analyst"),
    }


def _ticket(session, customer):
    ticket = SupportTicket(ticket_number=f"TK-{customer.id}", customer_id=customer.id, subject="Late parcel",
                           description="", category="delivery", priority="normal", status="open", channel="email")
    session.add(ticket)
    session.flush()
    return ticket


def test_create_validates_input_and_links(session, people):
    agent = people["agent"]
    ann = make_customer(session, NOW - dt.timedelta(days=400))
    bob = make_customer(session, NOW - dt.timedelta(days=400))
    order = make_order(session, ann, NOW - dt.timedelta(days=3), "80")
    bobs_order = make_order(session, bob, NOW - dt.timedelta(days=3), "80")
    ticket = _ticket(session, ann)
    cases = [
        (dict(category="weather"), platform.ValidationError, "Category must be one of"),
        (dict(severity="apocalyptic"), platform.ValidationError, "Severity must be one of"),
        (dict(description="   "), platform.ValidationError, "description is required"),
        (dict(description=123), platform.ValidationError, "description is required"),
        (dict(order_id=bobs_order.id), platform.ValidationError, "belongs to another customer"),
        (dict(order_id="abc"), platform.ValidationError, "whole number"),
        (dict(ticket_id=999_999), platform.NotFound, "no ticket"),
        (dict(customer_id=999_999), platform.NotFound, "no customer"),
    ]
    good = dict(customer_id=ann.id, category="delivery", severity="high", description="Parcel arrived crushed")
    for override, error, message in cases:
        with pytest.raises(error, match=message):
            service.create_complaint(session, agent, **{**good, **override})
    with pytest.raises(platform.PermissionDenied):
        service.create_complaint(session, people["analyst"], **good)
    assert session.scalar(select(func.count()).select_from(Complaint)) == 0

    created = service.create_complaint(session, agent, **good, order_id=order.id, ticket_id=ticket.id, now=NOW)
    assert (created.status, created.escalation_level, created.order_id, created.ticket_id) == ("open", 0, order.id, ticket.id)
    assert created.resolution_due_at == NOW + dt.timedelta(hours=24)  # high: 24 hours by default
    assert session.scalar(select(AuditLog.action).where(AuditLog.entity_type == "complaint", AuditLog.entity_id == str(created.id))) == "complaint.create"


def test_workflow_escalation_and_optimistic_locking(session, people):
    agent = people["agent"]
    ann = make_customer(session, NOW)
    c = service.create_complaint(session, agent, ann.id, "product", "medium", "Broken zip")
    service.change_complaint_status(session, agent, c.id, "investigating", expected_version=1)
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        service.change_complaint_status(session, agent, c.id, "escalated", expected_version=1)
    service.escalate_complaint(session, agent, c.id, expected_version=2)
    service.escalate_complaint(session, agent, c.id)
    assert (c.status, c.escalation_level) == ("escalated", 2)
    with pytest.raises(platform.ValidationError, match="resolve form"):
        service.change_complaint_status(session, agent, c.id, "resolved")
    with pytest.raises(platform.ValidationError, match="can move to"):
        service.change_complaint_status(session, agent, c.id, "open")
    service.resolve_complaint(session, agent, c.id, "Replaced the item")
    service.change_complaint_status(session, agent, c.id, "closed")
    with pytest.raises(platform.ValidationError, match="it is final"):
        service.change_complaint_status(session, agent, c.id, "investigating")


def test_compensation_within_role_limits(session, people):
    ann = make_customer(session, NOW)
    first = service.create_complaint(session, people["agent"], ann.id, "delivery", "low", "Late")
    with pytest.raises(platform.PermissionDenied, match=r"up to €50.00; €120.00 needs a higher limit: ask admin or success_manager"):
        service.resolve_complaint(session, people["agent"], first.id, "Refunded shipping", "refund", "120")
    for kind, amount, message in [("refund", "-1", "0 or more"), ("refund", "abc", "must be a number"),
                                  ("none", "10", "kind of compensation"), ("voucher", "0", "Give the amount"),
                                  ("cash", "5", "Compensation kind")]:
        with pytest.raises(platform.ValidationError, match=message):
            service.resolve_complaint(session, people["csm"], first.id, "x", kind, amount)
    with pytest.raises(platform.ValidationError, match="resolution is required"):
        service.resolve_complaint(session, people["csm"], first.id, " ", "refund", "10")
    assert first.status == "open"
    service.resolve_complaint(session, people["csm"], first.id, "Refunded shipping", "refund", "120", now=NOW)
    assert (first.status, first.compensation_amount, first.approved_by_id) == ("resolved", Decimal("120.00"), people["csm"].id)
    with pytest.raises(platform.ValidationError, match="1 to 5"):
        service.record_complaint_satisfaction(session, people["agent"], first.id, 6)
    service.record_complaint_satisfaction(session, people["agent"], first.id, 4)
    assert first.satisfaction == 4


def test_points_compensation_posts_to_the_loyalty_ledger(session, people):
    ann = make_customer(session, NOW)
    loyalty.enroll(session, platform.SYSTEM, ann.id)
    c = service.create_complaint(session, people["agent"], ann.id, "delivery", "low", "Late")
    service.resolve_complaint(session, people["agent"], c.id, "Points as apology", "points", "5")  # 5.00 at 0.01 a point
    entry = session.scalars(select(LoyaltyTransaction)).one()
    assert (entry.kind, entry.points, entry.idempotency_key) == ("adjust", 500, f"complaint:{c.id}")

    bob = make_customer(session, NOW)  # not a member: nothing may be half-written
    other = service.create_complaint(session, people["agent"], bob.id, "delivery", "low", "Late")
    with pytest.raises(platform.NotFound, match="not a loyalty member"):
        service.resolve_complaint(session, people["agent"], other.id, "Points as apology", "points", "5")


def test_failed_resolution_rolls_back(engine):
    with platform.unit_of_work(session_factory(engine)) as s:
        agent = make_user(s, "support_agent")
        ann = make_customer(s, NOW)
        complaint_id = service.create_complaint(s, agent, ann.id, "delivery", "low", "Late").id
        agent_id = agent.id
    with pytest.raises(platform.NotFound), platform.unit_of_work(session_factory(engine)) as s:
        from db.models import User

        service.resolve_complaint(s, s.get(User, agent_id), complaint_id, "Points as apology", "points", "5")
    with session_factory(engine)() as s:
        assert s.get(Complaint, complaint_id).status == "open"


def test_dashboard_queries(session, people):
    agent = people["agent"]
    ann = make_customer(session, NOW)
    day = dt.timedelta(days=1)
    late = service.create_complaint(session, agent, ann.id, "delivery", "critical", "Lost", now=NOW - 2 * day)
    service.create_complaint(session, agent, ann.id, "billing", "low", "Double charge", now=NOW)
    for hours, amount in ((10, "30"), (30, "0"), (80, "10")):  # medium: due in 72 hours
        c = service.create_complaint(session, agent, ann.id, "product", "medium", "Broken", now=NOW - 5 * day)
        service.resolve_complaint(session, agent, c.id, "Done", "refund" if amount != "0" else "none", amount,
                           now=NOW - 5 * day + dt.timedelta(hours=hours))
    by_severity = {r["severity"]: (r["open"], r["overdue"]) for r in service.open_complaints_by_severity(session, agent, now=NOW)}
    assert by_severity == {"low": (1, 0), "medium": (0, 0), "high": (0, 0), "critical": (1, 1)}
    assert late.id in [r["id"] for r in service.search_complaints(session, agent, service.ComplaintFilter(overdue_only=True), now=NOW).rows]
    ttr = service.complaint_time_to_resolve(session, agent)
    assert len(ttr) == 1 and ttr[0]["median_hours"] == pytest.approx(30, abs=0.1)
    assert ttr[0]["avg_hours"] == pytest.approx(40, abs=0.1) and ttr[0]["on_time_share"] == pytest.approx(2 / 3, abs=0.001)
    money = service.compensation_by_month(session, agent, months=3, as_of=NOW.date())
    assert money == [{"month": "2026-10", "kind": "refund", "complaints": 2, "amount": 40.0}]
    page = service.search_complaints(session, agent, service.ComplaintFilter(status="any open"), page=1, page_size=1)
    assert (page.total, page.pages) == (2, 2)
    assert service.complaint_kpis(session, agent, now=NOW)["overdue"] == 1


def test_settings_change_the_sla(session, people):
    admin = people["admin"]
    with pytest.raises(platform.ValidationError, match="each severity"):
        service.save_complaint_settings(session, admin, {"resolution_hours": {"low": 5}}, expected_version=0)
    with pytest.raises(platform.PermissionDenied):
        service.save_complaint_settings(session, people["csm"], {}, expected_version=0)
    hours = {"low": 100, "medium": 50, "high": 10, "critical": 2}
    service.save_complaint_settings(session, admin, {"resolution_hours": hours}, expected_version=0)
    c = service.create_complaint(session, admin, make_customer(session, NOW).id, "other", "critical", "x", now=NOW)
    assert c.resolution_due_at == NOW + dt.timedelta(hours=2)
    with pytest.raises(platform.ConflictError):
        service.save_complaint_settings(session, admin, {"resolution_hours": hours}, expected_version=0)


def test_concurrent_edits_give_a_conflict_not_a_lost_update(engine):
    """Two people open the same complaint (version 1); the second save is refused, not lost."""
    from db.models import User

    factory = session_factory(engine)
    with platform.unit_of_work(factory) as s:
        agent = make_user(s, "support_agent")
        complaint_id = service.create_complaint(s, agent, make_customer(s, NOW).id, "product", "low", "Scratched").id
        agent_id = agent.id
    with factory() as s:
        seen = service.complaint_detail(s, s.get(User, agent_id), complaint_id)["version"]
    with platform.unit_of_work(factory) as s:
        service.change_complaint_status(s, s.get(User, agent_id), complaint_id, "investigating", expected_version=seen)
    with pytest.raises(platform.ConflictError, match="changed by someone else"), platform.unit_of_work(factory) as s:
        service.escalate_complaint(s, s.get(User, agent_id), complaint_id, expected_version=seen)
    with factory() as s:
        saved = s.get(Complaint, complaint_id)
        assert (saved.status, saved.escalation_level, saved.version) == ("investigating", 0, 2)


def test_the_complaint_list_names_customers_only_for_roles_that_see_people(session, people):
    """An executive reads the complaint list (complaints.view) but not who complained (no customers.view)."""
    ann = make_customer(session, NOW, first_name="Zoë", last_name="Þórsdóttir")
    service.create_complaint(session, people["agent"], ann.id, "delivery", "high", "Lost parcel", now=NOW)
    executive = make_user(session, "executive")
    seen = {who: service.search_complaints(session, viewer, now=NOW).rows[0]["customer"]
            for who, viewer in (("agent", people["agent"]), ("executive", executive))}
    assert seen == {"agent": "Zoë Þórsdóttir", "executive": f"Customer #{ann.id}"}
    assert not any(k in service.search_complaints(session, executive, now=NOW).rows[0] for k in ("first_name", "last_name"))
