"""Communications log: validation, sentiment, the funnel by channel and campaign, a customer's log."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from sqlalchemy import func, select

from crm_core import platform, service
from db.bulk import load
from db.models import AuditLog, CustomerCommunication

from .factories import make_customer, make_user

NOW = dt.datetime(2026, 11, 1, 9, 0)


def test_log_validates_and_saves_with_sentiment(session):
    agent = make_user(session, "support_agent")
    ann = make_customer(session, NOW)
    good = dict(customer_id=ann.id, channel="call", direction="inbound", subject="Called about refund",
                body="I am very angry, the parcel never arrived and nobody helps!")
    cases = [
        (dict(channel="fax"), platform.ValidationError, "Channel must be one of"),
        (dict(direction="sideways"), platform.ValidationError, "inbound or outbound"),
        (dict(status="opened"), platform.ValidationError, "cannot be opened"),
        (dict(status="teleported"), platform.ValidationError, "Status must be one of"),
        (dict(subject=""), platform.ValidationError, "subject is required"),
        (dict(subject="x" * 300), platform.ValidationError, "too long"),
        (dict(body=42), platform.ValidationError, "must be text"),
        (dict(customer_id="7"), platform.ValidationError, "positive whole number"),
        (dict(customer_id=999_999), platform.NotFound, "no customer"),
        (dict(occurred_at=dt.datetime.now() + dt.timedelta(days=2)), platform.ValidationError, "future"),
    ]
    for override, error, message in cases:
        with pytest.raises(error, match=message):
            service.log_communication(session, agent, **{**good, **override})
    with pytest.raises(platform.PermissionDenied):
        service.log_communication(session, make_user(session, "analyst"), **good)
    assert session.scalar(select(func.count()).select_from(CustomerCommunication)) == 0

    entry = service.log_communication(session, agent, **good)
    assert (entry.status, entry.logged_by_id) == ("logged", agent.id)
    assert entry.sentiment_score < -0.2
    happy = service.log_communication(session, agent, ann.id, "chat", "inbound", "Thanks", "Great service, thank you so much!")
    assert happy.sentiment_score > 0.5
    note = service.log_communication(session, agent, ann.id, "email", "outbound", "Follow-up note")
    assert note.sentiment_score is None
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "communication.log")) == 3
    page = service.customer_communications(session, agent, ann.id, page=1, page_size=2)
    assert (page.total, page.pages, len(page.rows)) == (3, 2, 2)


def _message(customer_id, channel, status, campaign, when, **stamps):
    row = {"customer_id": customer_id, "channel": channel, "direction": "outbound", "status": status,
           "campaign": campaign, "template": campaign.split()[0].lower(), "subject": campaign, "sent_at": when}
    for stage in ("delivered_at", "opened_at", "clicked_at", "replied_at"):
        row[stage] = stamps.get(stage)
    return row


def test_funnel_by_channel_and_campaign(session):
    viewer = make_user(session, "analyst")
    ann = make_customer(session, NOW)
    t = NOW - dt.timedelta(days=3)
    rows = [
        _message(ann.id, "email", "replied", "Sale 2026-10", t, delivered_at=t, opened_at=t, clicked_at=t, replied_at=t),
        _message(ann.id, "email", "clicked", "Sale 2026-10", t, delivered_at=t, opened_at=t, clicked_at=t),
        _message(ann.id, "email", "opened", "Sale 2026-10", t, delivered_at=t, opened_at=t),
        _message(ann.id, "email", "delivered", "News 2026-10", t, delivered_at=t),
        _message(ann.id, "email", "bounced", "News 2026-10", t),
        _message(ann.id, "sms", "failed", "News 2026-10", t),
        _message(ann.id, "sms", "delivered", "News 2026-10", t),  # status only, no timestamp
        _message(ann.id, "email", "delivered", "Old 2025-01", dt.datetime(2025, 1, 5), delivered_at=dt.datetime(2025, 1, 5)),
    ]
    session.flush()
    load(session.connection(), CustomerCommunication.__table__, pd.DataFrame(rows))
    service.log_communication(session, make_user(session, "support_agent"), ann.id, "call", "outbound", "Courtesy call")

    window = service.CommFilter(date_from=dt.date(2026, 10, 1), date_to=dt.date(2026, 11, 1))
    funnel = {r["channel"]: r for r in service.funnel_by_channel(session, viewer, window)}
    email = funnel["email"]
    assert [email[s] for s in ("sent", "delivered", "opened", "clicked", "replied", "bounced", "failed")] == [5, 4, 3, 2, 1, 1, 0]
    assert email["open_rate"] == 0.75 and email["bounce_rate"] == 0.2
    assert [funnel["sms"][s] for s in ("sent", "delivered", "failed")] == [2, 1, 1]
    assert "call" not in funnel  # logged calls are not part of the funnel

    campaigns = service.campaign_performance(session, viewer, window)
    assert campaigns.total == 2
    assert [(r["campaign"], r["sent"], r["delivered"]) for r in campaigns.rows] == [("News 2026-10", 4, 2), ("Sale 2026-10", 3, 3)]
    only_sale = service.funnel_by_channel(session, viewer, service.CommFilter(campaign="Sale 2026-10"))
    assert [(r["channel"], r["replied"]) for r in only_sale] == [("email", 1)]
    options = service.communication_filter_options(session, viewer)
    assert set(options["campaign"]) == {"Sale 2026-10", "News 2026-10", "Old 2025-01"}
    with pytest.raises(platform.ValidationError):
        service.funnel_by_channel(session, viewer, service.CommFilter(channel="pigeon"))
    with pytest.raises(platform.PermissionDenied):
        service.funnel_by_channel(session, make_user(session, "executive"))


def _figures(session, viewer, window):
    funnel = service.funnel_by_channel(session, viewer, window)
    campaigns = service.campaign_performance(session, viewer, window, page_size=100)
    only = service.funnel_by_channel(session, viewer, service.CommFilter(campaign="Sale 2026-10", channel="email"))
    return funnel, [{k: v for k, v in r.items()} for r in campaigns.rows], campaigns.total, only, \
        service.communication_filter_options(session, viewer)


def test_the_rollup_gives_the_same_figures_as_the_messages(session):
    """The funnel, the campaign table and the pickers read the rollup up to its cutoff and the messages
    after it live: the same figures as counting every message, before and after a refresh, with messages
    sent after the cutoff, a stage reached later, and messages imported with past dates."""
    from crm_core.service import communication_rollups
    from db.models import IMPORT_RUN_STATUSES, ImportRun, RollupDailyCommunications

    viewer = make_user(session, "analyst")
    ann = make_customer(session, NOW)
    t = NOW - dt.timedelta(days=3)
    rows = [
        _message(ann.id, "email", "clicked", "Sale 2026-10", t, delivered_at=t, opened_at=t, clicked_at=t),
        _message(ann.id, "email", "opened", "Sale 2026-10", t - dt.timedelta(days=40), delivered_at=t, opened_at=t),
        _message(ann.id, "email", "delivered", "News 2026-10", t, delivered_at=t),
        _message(ann.id, "sms", "failed", "News 2026-10", t),
        _message(ann.id, "email", "bounced", "News 2026-10", NOW - dt.timedelta(hours=2)),  # after the cutoff
        _message(ann.id, "push", "sent", "Old 2025-01", dt.datetime(2025, 1, 5, 23, 59)),
    ]
    session.flush()
    load(session.connection(), CustomerCommunication.__table__, pd.DataFrame(rows))
    service.log_communication(session, make_user(session, "support_agent"), ann.id, "call", "outbound", "Courtesy call")
    window = service.CommFilter(date_from=dt.date(2025, 1, 1), date_to=NOW.date())
    everything = service.CommFilter()
    live = (_figures(session, viewer, window), _figures(session, viewer, everything))
    assert communication_rollups.usable_coverage(session) is None

    cutoff = NOW - dt.timedelta(hours=5)  # the refresh ran while 1 November was not over
    done = service.refresh_communication_rollup(session, NOW.date(), now=cutoff)
    assert done["messages"] == 5 and done["from"] == "the first message"
    assert session.scalar(select(func.count()).select_from(RollupDailyCommunications)) == 5
    assert communication_rollups.usable_coverage(session) == cutoff
    assert (_figures(session, viewer, window), _figures(session, viewer, everything)) == live
    funnel = {r["channel"]: r for r in live[1][0]}
    assert funnel["email"]["sent"] == 4 and funnel["email"]["bounced"] == 1  # the message after the cutoff counts

    # A message sent later, and one that reaches a later stage: counted live, then by the next refresh.
    session.execute(CustomerCommunication.__table__.update()
                    .where(CustomerCommunication.status == "delivered").values(status="opened", opened_at=NOW))
    load(session.connection(), CustomerCommunication.__table__, pd.DataFrame([
        _message(ann.id, "sms", "delivered", "Sale 2026-10", NOW - dt.timedelta(hours=1), delivered_at=NOW)]))
    later = _figures(session, viewer, everything)
    assert {r["channel"]: r["sent"] for r in later[0]} == {"email": 4, "sms": 2, "push": 1}
    opened_before = {r["channel"]: r["opened"] for r in later[0]}["email"]
    assert opened_before == 2  # the rollup still holds the message as delivered until the next refresh
    incremental = service.refresh_communication_rollup(session, NOW.date(), now=NOW + dt.timedelta(hours=1))
    assert incremental["from"] == (cutoff.date() - dt.timedelta(days=communication_rollups.LOOKBACK_DAYS)).isoformat()
    refreshed = _figures(session, viewer, everything)
    assert {r["channel"]: r["opened"] for r in refreshed[0]}["email"] == 3
    assert {r["channel"]: r["sent"] for r in refreshed[0]} == {"email": 4, "sms": 2, "push": 1}

    # Messages imported with a past date: readers count the messages until the refresh rebuilds it all.
    load(session.connection(), CustomerCommunication.__table__, pd.DataFrame([
        _message(ann.id, "push", "sent", "Old 2025-01", dt.datetime(2025, 1, 6, 8))]))
    session.add(ImportRun(entity="communications", file_name="old.csv", file_format="csv", status=IMPORT_RUN_STATUSES[-1],
                          actor_username="analyst", started_at=dt.datetime.now() + dt.timedelta(days=400)))
    session.flush()
    assert communication_rollups.usable_coverage(session) is None
    assert {r["channel"]: r["sent"] for r in service.funnel_by_channel(session, viewer, everything)}["push"] == 2
