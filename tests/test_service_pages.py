"""Support queue, Ticket and SLA pages under AppTest on the demo database: forms save and refuse."""

from __future__ import annotations

import datetime as dt
import json
import re

from sqlalchemy import func, select

from crm_core import platform, service
from db.engine import make_engine
from db.models import (
    TICKET_PRIORITIES,
    Customer,
    ServiceLevelAgreement,
    SupportTicket,
    SupportTicketResponse,
    SurveyResponse,
    User,
)

from .apptest_support import open_page, titles


def _one(widgets, label):
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r}: {[w.label for w in widgets]}"
    return found[0]


def _click(at, label):
    return _one(at.button, label).click().run()


def _errors(at):
    return [e.value for e in at.error]


def test_support_queue_lists_tickets_and_creates_one(app, app_db):
    engine = make_engine(app_db)
    _a_ticket(engine, "Tracking link broken")  # at least one open ticket, whatever the simulation produced
    with platform.unit_of_work(engine) as s:
        customer = s.scalars(select(Customer).where(Customer.email.is_not(None)).order_by(Customer.id)).first()
        email, name = customer.email, f"{customer.first_name} {customer.last_name}"
        open_team = s.scalar(select(func.count()).select_from(SupportTicket)
                             .where(SupportTicket.status.in_(("new", "open", "pending_customer", "on_hold", "reopened"))))
    at = open_page(app, "agent1", "support_queue")
    assert not at.exception
    assert titles(at) == ["Support queue"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open tickets (team)"] == f"{open_team:,}"
    assert any(f"{open_team:,} tickets" in c.value for c in at.caption)
    # Statuses in words ("On hold", not on_hold), and a paused ticket's next due time blank, not "None".
    queue = at.dataframe[0]
    assert set(queue.value["status"]) <= {"New", "Open", "Pending customer", "On hold", "Reopened"}
    assert queue.proto.HasField("placeholder") and queue.proto.placeholder == ""

    # Without a customer the form refuses with a message; with one, bad input is refused too.
    _one(at.text_input, "Subject").input("Wrong size delivered")
    at = _click(at, "Create ticket")
    assert "Choose the customer first" in " ".join(_errors(at))
    at.text_input(key="new_ticket_customer_query").input(email).run()
    assert name in at.selectbox(key="new_ticket_customer").value
    _one(at.text_input, "Subject").input("Wrong size delivered")
    _one(at.text_area, "Description").input("")
    at = _click(at, "Create ticket")
    assert "Description is required." in _errors(at)
    _one(at.text_area, "Description").input("Ordered M, got XL.")
    at.selectbox(key="new_ticket_priority").set_value("high")
    at.selectbox(key="new_ticket_category").set_value("returns")
    at = _click(at, "Create ticket")
    assert not at.exception and not _errors(at)
    assert any("created for" in s.value for s in at.success)
    with platform.unit_of_work(engine) as s:
        saved = s.scalars(select(SupportTicket).where(SupportTicket.subject == "Wrong size delivered")).one()
        assert (saved.customer_id, saved.priority, saved.category, saved.status) == (customer.id, "high", "returns", "new")
        assert saved.sla_id is not None and saved.first_response_due_at is not None
    engine.dispose()


def _a_ticket(engine, subject):
    with platform.unit_of_work(engine) as s:
        customer_id = s.scalar(select(Customer.id).order_by(Customer.id))
        ticket = service.create_ticket(s, platform.SYSTEM, customer_id, subject, "Please help.", category="billing")
        return ticket.id


def test_ticket_page_reply_note_and_status_conflict(app, app_db):
    engine = make_engine(app_db)
    ticket_id = _a_ticket(engine, "Charged twice for order")
    at = open_page(app, "agent1", "ticket")
    at.number_input(key="ticket_picker").set_value(ticket_id).run()
    assert not at.exception and titles(at) == ["Ticket"]
    assert any("Charged twice for order" in h.value for h in at.subheader)
    assert {m.label: m.value for m in at.metric}["Status"] == "New"
    # The SLA clocks: a running clock's done time is blank, not "None".
    clocks = next(d for d in at.dataframe if "Clock" in d.proto.columns)
    assert clocks.proto.HasField("placeholder") and clocks.proto.placeholder == ""

    at = _click(at, "Send")
    assert "The message is required." in _errors(at)
    _one(at.text_area, "Message").input("We are refunding the second charge.")
    at = _click(at, "Send")
    assert not _errors(at) and any("Message added" in s.value for s in at.success)
    _one(at.radio, "Add").set_value("Internal note")
    _one(at.text_area, "Message").input("Refund ticket #4411 raised with finance.")
    at = _click(at, "Send")
    with platform.unit_of_work(engine) as s:
        rows = s.execute(select(SupportTicketResponse.author_kind, SupportTicketResponse.is_internal)
                         .where(SupportTicketResponse.ticket_id == ticket_id).order_by(SupportTicketResponse.id)).all()
        assert [tuple(r) for r in rows] == [("customer", False), ("agent", False), ("agent", True)]
        version = s.get(SupportTicket, ticket_id).version
    assert {m.label: m.value for m in at.metric}["Status"] == "Open"

    # Someone else changes the ticket after this page was rendered: the save is refused, nothing lost.
    with platform.unit_of_work(engine) as s:
        service.update_ticket(s, platform.SYSTEM, ticket_id, version, priority="urgent")
    _one(at.selectbox, "Status").set_value("pending_customer")
    _one(at.selectbox, "Priority").set_value("low")
    at = _click(at, "Save changes")
    assert any("changed by someone else" in e for e in _errors(at))
    with platform.unit_of_work(engine) as s:
        ticket = s.get(SupportTicket, ticket_id)
        assert (ticket.priority, ticket.status) == ("urgent", "open")
    # After the reload the same change goes through.
    _one(at.selectbox, "Status").set_value("resolved")
    _one(at.selectbox, "Priority").set_value("urgent")
    at = _click(at, "Save changes")
    assert not _errors(at), _errors(at)
    with platform.unit_of_work(engine) as s:
        assert s.get(SupportTicket, ticket_id).status == "resolved"
    # Resolved: the CSAT form appears and saves.
    _one(at.select_slider, "Rating").set_value(4)
    at = _click(at, "Save CSAT")
    assert not _errors(at)
    with platform.unit_of_work(engine) as s:
        assert s.get(SupportTicket, ticket_id).csat_rating == 4
        assert s.scalar(select(SurveyResponse.score).where(SurveyResponse.ticket_id == ticket_id)) == 4
    engine.dispose()


def test_sla_page_shows_figures_and_saves_policy_calendar_and_survey(app, app_db):
    engine = make_engine(app_db)
    at = open_page(app, "admin1", "sla")
    assert not at.exception and titles(at) == ["SLA"]
    # The page's figures are as of the minute its caption names: a target falling due in the seconds
    # since then counts in a figure computed at a later `now`, so compute the expected one at that minute.
    shown = next(m for c in at.caption if (m := re.search(r"Figures as of (\d{4}-\d\d-\d\d \d\d:\d\d) UTC", c.value)))
    now = dt.datetime.strptime(shown.group(1), "%Y-%m-%d %H:%M")
    with platform.unit_of_work(engine) as s:
        admin = s.scalar(select(User).where(User.username == "admin1"))
        expected = service.sla_targets_met(s, admin, now, start=now - dt.timedelta(weeks=12))[0]["pct_met"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Targets met"] == f"{expected:.1f}%"
    assert len(at.get("plotly_chart")) >= 3
    # Short labels that fit their boxes; the NPS and CSAT say which period they cover (the Period control).
    assert {"Open in breach", "NPS, 12 wk", "CSAT, 12 wk"} <= set(metrics)
    nps_help = next(m for m in at.metric if m.label == "NPS, 12 wk").help
    assert f"last 12 weeks, since {now - dt.timedelta(weeks=12):%Y-%m-%d}" in nps_help
    charts = {figure["layout"]["title"]["text"]: figure for figure in
              (json.loads(c.proto.spec) for c in at.get("plotly_chart"))}
    trend = charts["Targets met by week of ticket creation (%)"]
    assert [t["name"] for t in trend["data"]] == ["All targets", "First response", "Resolution"]
    # Priorities read from the least to the most severe, not alphabetically.
    by_priority = list(charts["Targets met by priority (%)"]["data"][0]["x"])
    assert by_priority == [p for p in TICKET_PRIORITIES if p in by_priority]

    # Policy editor: bad input is refused, good input saved.
    _one(at.text_input, "Name").input("Gold delivery urgent")
    _one(at.selectbox, "Priority").set_value("urgent")
    _one(at.number_input, "First response (business minutes)").set_value(120)
    _one(at.number_input, "Resolution (business minutes)").set_value(60)
    at = _click(at, "Save policy")
    assert any("cannot be shorter" in e for e in _errors(at))
    _one(at.selectbox, "Category").set_value("delivery")
    _one(at.selectbox, "Loyalty tier").set_value("gold")
    _one(at.number_input, "Resolution (business minutes)").set_value(480)
    at = _click(at, "Save policy")
    assert not _errors(at), _errors(at)
    with platform.unit_of_work(engine) as s:
        policy = s.scalars(select(ServiceLevelAgreement).where(ServiceLevelAgreement.name == "Gold delivery urgent")).one()
        assert (policy.category, policy.loyalty_tier, policy.resolution_minutes) == ("delivery", "gold", 480)

    # Calendar editor.
    _one(at.text_input, "Time zone (IANA)").input("Europe/Atlantis")
    at = _click(at, "Save calendar")
    assert any("Unknown time zone" in e for e in _errors(at))
    _one(at.text_input, "Time zone (IANA)").input("Europe/Berlin")
    _one(at.text_input, "Saturday").input("09:00-13:00")
    at = _click(at, "Save calendar")
    assert not _errors(at), _errors(at)
    with platform.unit_of_work(engine) as s:
        policy = s.scalars(select(ServiceLevelAgreement).where(ServiceLevelAgreement.name == "Gold delivery urgent")).one()
        assert policy.calendar["working_periods"]["5"] == [["09:00", "13:00"]]

    # A detractor answer opens a follow-up ticket.
    with platform.unit_of_work(engine) as s:
        customer_id = s.scalar(select(Customer.id).order_by(Customer.id.desc()))
    _one(at.number_input, "Customer id").set_value(customer_id)
    _one(at.number_input, "Score (NPS 0-10, CSAT 1-5)").set_value(2)
    at = _click(at, "Save answer")
    assert not _errors(at), _errors(at)
    with platform.unit_of_work(engine) as s:
        answer = s.scalars(select(SurveyResponse).where(SurveyResponse.customer_id == customer_id)
                           .order_by(SurveyResponse.id.desc())).first()
        assert answer.score == 2 and answer.follow_up_ticket_id is not None
    # CSAT score out of range is refused.
    _one(at.selectbox, "Survey").set_value("csat")
    _one(at.number_input, "Score (NPS 0-10, CSAT 1-5)").set_value(9)
    at = _click(at, "Save answer")
    assert any("from 1 to 5" in e for e in _errors(at))
    engine.dispose()


def test_executive_sees_sla_figures_without_editors(app):
    at = open_page(app, "exec1", "sla")
    assert not at.exception and titles(at) == ["SLA"]
    assert "Targets met" in {m.label for m in at.metric}
    assert not [b for b in at.button if b.label in ("Save policy", "Save calendar", "Save answer")]


def test_sla_trend_leaves_out_the_week_in_progress(app, app_db):
    """A ticket opened today: its week is still running, so the weekly trend stops at the last full week
    and says why (the running week counts only targets already due, which reads high)."""
    import json

    engine = make_engine(app_db)
    _a_ticket(engine, "Parcel stuck in transit")
    engine.dispose()
    at = open_page(app, "admin1", "sla")
    assert not at.exception
    trend = json.loads(at.get("plotly_chart")[0].proto.spec)
    weeks = [dt.datetime.fromisoformat(x) for x in trend["data"][0]["x"]]
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert weeks and max(weeks) + dt.timedelta(days=7) <= now
    assert any("is in progress and left out" in c.value for c in at.caption)
