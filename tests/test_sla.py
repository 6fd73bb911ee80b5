"""SLA policies, due times with pauses, breaches, escalation and the share of targets met.

Due times are hand-computed on the shop calendar (Europe/Berlin, Mon-Fri 08:00-12:30 and
13:00-18:00, CET = UTC+1 in November/December 2026); datetimes are naive UTC.
"""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crm_core import platform, service
from crm_core.service import sla
from db.models import (
    AuditLog,
    LoyaltyAccount,
    SlaBreach,
    StaffNotification,
    SupportTicket,
    SupportTicketEvent,
)

from .factories import make_customer
from .service_desk_support import FRIDAY_5PM, desk

U = dt.datetime


@pytest.fixture
def d(session):
    return desk(session)


def _ticket(session, d, priority="normal", category="delivery", now=FRIDAY_5PM, **kw):
    return service.create_ticket(session, d["agent"], d["customer"].id, "Parcel missing", "Where is my parcel?",
                                 category=category, priority=priority, now=now, **kw)


def test_due_times_on_creation_friday_evening(session, d):
    ticket = _ticket(session, d)
    assert ticket.sla_id == d["policies"]["normal"].id
    # First response 60: Fri 17:00-18:00 CET -> due Fri 18:00 CET = 17:00 UTC.
    assert ticket.first_response_due_at == U(2026, 11, 27, 17, 0)
    # Resolution 600: 60 on Friday, Monday 270 (08:00-12:30) + 270 from 13:00 -> Mon 17:30 CET = 16:30 UTC.
    assert ticket.resolution_due_at == U(2026, 11, 30, 16, 30)
    assert ticket.next_response_due_at is None


def test_pending_customer_pauses_every_clock(session, d):
    ticket = _ticket(session, d)
    # Agent replies Mon 30 Nov 09:00 CET (08:00 UTC) and waits for the customer from 10:00 CET.
    service.add_response(session, d["agent"], ticket.id, "Could you send the tracking number?", now=U(2026, 11, 30, 8))
    service.change_ticket_status(session, d["agent"], ticket.id, "pending_customer", ticket.version, now=U(2026, 11, 30, 9))
    assert ticket.sla_paused_since == U(2026, 11, 30, 9)
    # Breach detection ignores paused tickets even when "due" passes.
    assert sla.detect_breaches(session, U(2026, 11, 30, 20))["tickets"] == []
    # Resumed Tue 1 Dec 10:00 CET (09:00 UTC): 420 business minutes were left (Mon 10:00-17:30 CET),
    # so due Tue 10:00 + 150 (to 12:30) + 270 from 13:00 -> 17:30 CET = 16:30 UTC.
    service.change_ticket_status(session, d["agent"], ticket.id, "open", ticket.version, now=U(2026, 12, 1, 9))
    assert ticket.sla_paused_since is None
    assert ticket.resolution_due_at == U(2026, 12, 1, 16, 30)
    assert ticket.first_responded_at == U(2026, 11, 30, 8)


def test_on_hold_over_a_weekend_and_holiday_costs_no_business_time(session, d):
    # Created Wed 23 Dec 2026 09:00 CET (08:00 UTC), normal: resolution 600 -> Wed 510 (09:00-12:30, 13:00-18:00)
    # + Thu 90 -> Thu 24 Dec 09:30 CET = 08:30 UTC.
    ticket = _ticket(session, d, now=U(2026, 12, 23, 8))
    assert ticket.resolution_due_at == U(2026, 12, 24, 8, 30)
    # On hold Wed 17:00 CET (16:00 UTC) to Mon 28 Dec 09:00 CET (08:00 UTC): 150 minutes were left (Wed 17-18,
    # Thu 08:00-09:30); Thu 24 Dec counts as paused, 25/26 Dec are holidays, 27 a Sunday.
    # Resume Mon 09:00 CET + 150 -> 11:30 CET = 10:30 UTC.
    service.change_ticket_status(session, d["agent"], ticket.id, "on_hold", ticket.version, now=U(2026, 12, 23, 16))
    service.change_ticket_status(session, d["agent"], ticket.id, "open", ticket.version, now=U(2026, 12, 28, 8))
    assert ticket.resolution_due_at == U(2026, 12, 28, 10, 30)


def test_customer_message_starts_the_next_response_clock(session, d):
    ticket = _ticket(session, d)
    service.add_response(session, d["agent"], ticket.id, "On it.", now=U(2026, 11, 30, 8))
    assert ticket.next_response_due_at is None
    # Customer writes Tue 1 Dec 11:00 CET (10:00 UTC): 120 -> 12:30 (90) + 30 from 13:00 -> 13:30 CET = 12:30 UTC.
    service.add_response(session, d["agent"], ticket.id, "Still nothing!", from_customer=True, now=U(2026, 12, 1, 10))
    assert ticket.next_response_due_at == U(2026, 12, 1, 12, 30)
    service.add_response(session, d["agent"], ticket.id, "Sent a replacement.", now=U(2026, 12, 1, 11))
    assert ticket.next_response_due_at is None


def test_priority_change_recomputes_against_the_new_policy(session, d):
    ticket = _ticket(session, d, now=U(2026, 11, 24, 8))  # Tue 09:00 CET
    service.update_ticket(session, d["agent"], ticket.id, ticket.version, priority="urgent", now=U(2026, 11, 24, 8, 10))
    assert ticket.sla_id == d["policies"]["urgent"].id
    # Urgent: first response 30 from creation -> 09:30 CET; resolution 240 -> 13:00 CET + ... 09:00+210 = 12:30,
    # then 30 from 13:00 -> 13:30 CET = 12:30 UTC.
    assert ticket.first_response_due_at == U(2026, 11, 24, 8, 30)
    assert ticket.resolution_due_at == U(2026, 11, 24, 12, 30)
    events = session.scalars(select(SupportTicketEvent.event).where(SupportTicketEvent.ticket_id == ticket.id)).all()
    assert "priority_changed" in events


def test_reopen_restarts_resolution_from_the_reopening(session, d):
    ticket = _ticket(session, d, now=U(2026, 11, 24, 8))
    service.add_response(session, d["agent"], ticket.id, "Done.", now=U(2026, 11, 24, 9))
    service.change_ticket_status(session, d["agent"], ticket.id, "resolved", ticket.version, now=U(2026, 11, 24, 10))
    service.change_ticket_status(session, d["agent"], ticket.id, "reopened", ticket.version, now=U(2026, 11, 25, 8))
    # Reopened Wed 09:00 CET: resolution 600 -> Wed 570 (to 18:00 minus 60 before 09:00 = 510) + Thu 90 ->
    # Thu 09:30 CET = 08:30 UTC; next response 120 from the reopening -> Wed 11:00 CET = 10:00 UTC.
    assert ticket.resolution_due_at == U(2026, 11, 26, 8, 30)
    assert ticket.next_response_due_at == U(2026, 11, 25, 10, 0)
    assert ticket.resolved_at is None


def test_most_specific_policy_wins(session, d):
    customer = d["customer"]
    session.add(LoyaltyAccount(customer_id=customer.id, tier="gold"))
    session.flush()
    billing = service.create_sla_policy(session, platform.SYSTEM, name="Billing normal", priority="normal", category="billing",
                                first_response_minutes=20, resolution_minutes=300)
    gold = service.create_sla_policy(session, platform.SYSTEM, name="Gold normal", priority="normal", loyalty_tier="gold",
                             first_response_minutes=25, resolution_minutes=300)
    both = service.create_sla_policy(session, platform.SYSTEM, name="Gold billing", priority="normal", category="billing",
                             loyalty_tier="gold", first_response_minutes=10, resolution_minutes=100)
    assert sla.match_policy(session, "normal", "billing", customer.id).id == both.id
    assert sla.match_policy(session, "normal", "delivery", customer.id).id == gold.id
    other = make_customer(session, U(2025, 1, 1))
    assert sla.match_policy(session, "normal", "billing", other.id).id == billing.id
    assert sla.match_policy(session, "normal", "delivery", other.id).id == d["policies"]["normal"].id


def test_policy_validation_and_permissions(session, d):
    base = {"name": "X", "priority": "high", "first_response_minutes": 30, "resolution_minutes": 60}
    with pytest.raises(platform.PermissionDenied):
        service.create_sla_policy(session, d["agent"], **base)
    for bad, message in [
        ({"name": " "}, "needs a name"),
        ({"priority": "asap"}, "Priority must be one of"),
        ({"category": "weather"}, "Category must be one of"),
        ({"loyalty_tier": "tin"}, "Loyalty tier"),
        ({"first_response_minutes": 0}, "between 1 and"),
        ({"first_response_minutes": "soon"}, "whole number"),
        ({"first_response_minutes": 1.5}, "whole number"),
        ({"resolution_minutes": 10}, "cannot be shorter"),
        ({"name": "standard normal"}, "already exists"),
        ({"name": "Another high"}, "already covers"),
    ]:
        with pytest.raises(platform.ValidationError, match=message):
            service.create_sla_policy(session, d["admin"], **{**base, **bad})


def test_policy_update_recomputes_open_tickets_and_detects_conflicts(session, d):
    ticket = _ticket(session, d, now=U(2026, 11, 24, 8))
    policy = d["policies"]["normal"]
    version = policy.version
    service.update_sla_policy(session, d["admin"], policy.id, version, first_response_minutes=120,
                      now=U(2026, 11, 24, 8, 5))
    assert ticket.first_response_due_at == U(2026, 11, 24, 10, 0)  # 09:00 CET + 120 = 11:00 CET
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        service.update_sla_policy(session, d["admin"], policy.id, version, first_response_minutes=90)
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "sla.policy.update")) == 1


def test_calendar_setting_validation_and_sync_to_policies(session, d):
    with pytest.raises(platform.ValidationError, match="Unknown time zone"):
        service.save_business_calendar(session, d["admin"], {"timezone": "Nowhere/City", "working_periods": {}}, 0)
    with pytest.raises(platform.PermissionDenied):
        service.save_business_calendar(session, d["agent"], service.DEFAULT_CALENDAR, 0)
    new = {**service.DEFAULT_CALENDAR, "holidays": ["2026-12-31"]}
    calendar, version = service.save_business_calendar(session, d["admin"], new, 0)
    assert version == 1
    session.refresh(d["policies"]["low"])
    assert d["policies"]["low"].calendar["holidays"] == ["2026-12-31"]
    with pytest.raises(platform.ConflictError):
        service.save_business_calendar(session, d["admin"], new, 0)
    assert service.get_business_calendar(session)[0] == calendar


def test_breaches_are_recorded_once_and_escalate_once(session, d):
    ticket = _ticket(session, d, now=U(2026, 11, 24, 8))  # first response due 09:00 UTC, resolution Wed 08:30 UTC
    ticket.assignee_id = d["agent"].id
    session.flush()
    found = sla.detect_breaches(session, U(2026, 11, 24, 9, 1))
    assert found["first_response"] == 1 and found["resolution"] == 0 and found["tickets"] == [ticket.id]
    assert sla.escalate(session, found["tickets"], U(2026, 11, 24, 9, 1)) == 1
    session.expire_all()
    ticket = session.get(SupportTicket, ticket.id)
    assert ticket.sla_breached is True and ticket.priority == "high"
    note = session.scalars(select(StaffNotification)).one()
    assert note.user_id == d["agent"].id and ticket.ticket_number in note.message and "high" in note.message
    # The same breach is not recorded again; escalation happens once per ticket.
    again = sla.detect_breaches(session, U(2026, 11, 24, 10))
    assert again["tickets"] == []
    later = sla.detect_breaches(session, U(2026, 11, 26, 9))
    assert later["resolution"] == 1
    assert sla.escalate(session, later["tickets"], U(2026, 11, 26, 9)) == 0
    events = session.scalars(select(SupportTicketEvent.event).where(SupportTicketEvent.ticket_id == ticket.id)
                             .order_by(SupportTicketEvent.id)).all()
    assert events.count("sla_breached") == 2 and events.count("escalated") == 1
    breaches = session.execute(select(SlaBreach.target, SlaBreach.priority, SlaBreach.assignee_id)
                               .order_by(SlaBreach.id)).all()
    assert [tuple(b) for b in breaches] == [("first_response", "normal", d["agent"].id),
                                            ("resolution", "high", d["agent"].id)]
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "ticket.escalate")) == 1


def test_run_sla_checks_commits_breaches(engine):
    from crm_core import platform

    with platform.unit_of_work(engine) as s:
        d = desk(s)
        ticket = _ticket(s, d, priority="critical", now=U(2026, 11, 24, 8))
        ticket_id = ticket.id
    result = service.run_sla_checks(engine, U(2026, 11, 30, 8))
    assert result == {"first_response": 1, "next_response": 0, "resolution": 1, "tickets_breached": 1,
                      "escalated": 1}
    assert service.run_sla_checks(engine, U(2026, 11, 30, 9))["tickets_breached"] == 0
    with platform.unit_of_work(engine) as s:
        assert s.get(SupportTicket, ticket_id).priority == "critical"  # already the top priority


def test_breaching_soon_lists_tickets_due_within_the_window(session, d):
    a = _ticket(session, d, priority="critical", now=U(2026, 11, 24, 8))   # first response due 08:15 UTC
    _ticket(session, d, priority="low", now=U(2026, 11, 24, 8))            # due the next day
    soon = service.breaching_soon(session, d["agent"], U(2026, 11, 24, 8, 5), within_minutes=30)
    assert soon.total == 1 and soon.rows[0]["id"] == a.id and soon.rows[0]["minutes_left"] == 10
    with pytest.raises(platform.ValidationError):
        service.breaching_soon(session, d["agent"], U(2026, 11, 24, 8, 5), within_minutes=0)


def test_targets_met_by_group_and_week(session, d):
    now = U(2026, 11, 27, 12)
    met = _ticket(session, d, now=U(2026, 11, 24, 8))  # first due 09:00, resolution Wed 08:30 UTC
    service.add_response(session, d["agent"], met.id, "Hi", now=U(2026, 11, 24, 8, 30))
    service.change_ticket_status(session, d["agent"], met.id, "resolved", met.version, now=U(2026, 11, 24, 12))
    late = _ticket(session, d, priority="high", category="billing", now=U(2026, 11, 24, 8))
    service.add_response(session, d["agent"], late.id, "Sorry for the wait", now=U(2026, 11, 25, 8))
    sla.detect_breaches(session, now)
    overall = service.sla_targets_met(session, d["admin"], now)[0]
    # met: 2 of 2; late: first response missed, resolution (due Tue) passed unresolved -> 0 of 2.
    assert (overall["targets"], overall["met"], overall["pct_met"]) == (4, 2, 50.0)
    by_priority = {r["key"]: r["pct_met"] for r in service.sla_targets_met(session, d["admin"], now, by="priority")}
    assert by_priority == {"high": 0.0, "normal": 100.0}
    by_category = {r["category"]: (r["tickets"], r["breached"]) for r in service.sla_breaches_by(session, d["admin"], "category")}
    assert by_category == {"billing": (1, 1), "delivery": (1, 0)}
    trend = service.sla_weekly_trend(session, d["admin"], now, weeks=4)
    assert trend == [{"week": "2026-11-23", "targets": 4, "met": 2, "pct_met": 50.0, "first_response_pct": 50.0,
                      "resolution_pct": 50.0, "tickets": 2, "breached": 1}]
    with pytest.raises(platform.ValidationError):
        service.sla_targets_met(session, d["admin"], now, by="weather")
    with pytest.raises(platform.PermissionDenied):
        service.sla_targets_met(session, d["analyst"], now)


def test_time_left_bands():
    now = U(2026, 11, 24, 8)
    assert service.time_left_band(None, now) == "none"
    assert service.time_left_band(now - dt.timedelta(minutes=1), now) == "overdue"
    assert service.time_left_band(now + dt.timedelta(minutes=59), now) == "under 1h"
    assert service.time_left_band(now + dt.timedelta(minutes=200), now) == "under 4h"
    assert service.time_left_band(now + dt.timedelta(hours=5), now) == "on track"
    assert service.time_left_band(now - dt.timedelta(hours=5), now, paused=True) == "paused"


def test_owner_sees_and_clears_escalation_notifications(session, d):
    ticket = _ticket(session, d, now=U(2026, 11, 24, 8))
    service.assign_ticket(session, d["agent"], ticket.id, d["agent"].id, ticket.version, now=U(2026, 11, 24, 8))
    unassigned = _ticket(session, d, now=U(2026, 11, 24, 8))
    found = sla.detect_breaches(session, U(2026, 11, 24, 10))
    assert sla.escalate(session, found["tickets"], U(2026, 11, 24, 10)) == 2
    mine = service.notifications_for(session, d["agent"])
    assert {n["ticket_id"] for n in mine} == {ticket.id, unassigned.id}  # own + team-wide
    assert {n["ticket_id"] for n in service.notifications_for(session, d["agent2"])} == {unassigned.id}
    assert service.mark_notifications_read(session, d["agent"]) == 1
    assert [n["ticket_id"] for n in service.notifications_for(session, d["agent"])] == [unassigned.id]
    with pytest.raises(platform.PermissionDenied):
        service.notifications_for(session, d["analyst"])


def test_cli_sla_check(engine, monkeypatch, capsys):
    from crm_cli.main import main
    from crm_core import platform

    with platform.unit_of_work(engine) as s:
        _ticket(s, desk(s), now=U(2026, 11, 24, 8))
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    assert main(["sla", "check"]) == 0
    assert "1 newly breached tickets (first response 1, next response 0, resolution 1); 1 escalated." in \
        capsys.readouterr().out
