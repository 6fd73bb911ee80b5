"""The Social and Journeys pages under AppTest, as each role would use them: what they show, the
one-click ticket from a mention, linking a social account, filters, and a shop with orders only."""

from __future__ import annotations

import datetime as dt
import io
import json

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

import demo
from crm_core import journeys, platform, social
from db.models import CustomerSegment, CustomerSegmentMembership, SocialMention, SupportTicket, WebSession

from .apptest_support import APP, open_page, titles
from .factories import make_customer, make_order

USERS = {"admin1": "admin", "analyst1": "analyst", "csm1": "success_manager", "agent1": "support_agent",
         "exec1": "executive"}
TODAY = dt.date.today()


def _day(days_ago: int) -> str:
    return (dt.datetime.combine(TODAY, dt.time(10)) - dt.timedelta(days=days_ago)).isoformat(sep=" ")


def mentions_file() -> str:
    return ("mention_id,platform,author,text,posted_at\n"
            f"a1,twitter,@anna,\"Terrible service, my parcel is late and nobody answers!\",{_day(3)}\n"
            f"a2,twitter,anna,I love the new jacket. Great quality!,{_day(10)}\n"
            f"b1,instagram,stranger,Awful packaging and broken box,{_day(5)}\n"
            f"c1,facebook,carl,The delivery was fine.,{_day(20)}\n")


def users(session) -> None:
    for username, role in USERS.items():
        platform.create_user(session, platform.SYSTEM, username, role, demo.demo_password(username))


@pytest.fixture
def shop_app(engine, monkeypatch):
    """Three customers with orders, sessions and a segment; mentions from two of them and a stranger."""
    with platform.unit_of_work(engine) as s:
        users(s)
        anna = make_customer(s, dt.datetime(2026, 1, 5), first_name="Anna", last_name="Nowak")
        carl = make_customer(s, dt.datetime(2026, 2, 5), first_name="Carl", last_name="Berg")
        dora = make_customer(s, dt.datetime(2026, 2, 7), first_name="Dora", last_name="Lind")
        for customer in (anna, carl, dora):
            s.add(WebSession(customer_id=customer.id, started_at=customer.signed_up_at + dt.timedelta(days=1),
                             duration_seconds=30, page_views=3, source="social", device="mobile"))
        make_order(s, anna, dt.datetime(2026, 1, 9), 40)
        make_order(s, carl, dt.datetime(2026, 2, 10), 40)
        segment = CustomerSegment(name="Newsletter readers", segment_type="custom", kind="static")
        s.add(segment)
        s.flush()
        s.add(CustomerSegmentMembership(segment_id=segment.id, customer_id=dora.id))
        social.link_account(s, platform.SYSTEM, anna.id, "twitter", "anna")
        social.import_mentions(s, platform.SYSTEM, io.BytesIO(mentions_file().encode()), file_name="m.csv")
        journeys.refresh_journeys(s, TODAY)
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return AppTest.from_file(APP, default_timeout=60)


def metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def tab_labels(at: AppTest) -> list[str]:
    return [t.label for t in at.tabs]


@pytest.mark.parametrize("username", list(USERS))
def test_social_page_for_each_role(shop_app, username):
    at = open_page(shop_app, username, "social")
    assert not at.exception and titles(at) == ["Social"]
    assert metric(at, "Mentions") == "4"
    assert metric(at, "Negative") == "50%"
    assert metric(at, "Matched to customers") == "50%"
    tabs = tab_labels(at)
    assert tabs[:3] == ["Volume and sentiment", "Negative mentions", "Topics and products"]
    assert ("Import" in tabs) == (USERS[username] in ("admin", "analyst"))
    assert ("Accounts" in tabs) == (USERS[username] in ("admin", "success_manager", "support_agent"))
    texts = [t.value for t in at.text]
    assert "Terrible service, my parcel is late and nobody answers!" in texts  # shown as text, not markdown
    captions = " ".join(c.value for c in at.caption)
    if USERS[username] == "executive":
        assert "Anna Nowak" not in captions and "(matched)" in captions
    else:
        assert "Anna Nowak" in captions
    buttons = [b.label for b in at.button]
    assert ("Open a ticket" in buttons) == (USERS[username] in ("admin", "success_manager", "support_agent"))
    assert len(at.get("plotly_chart")) >= 3


def test_an_agent_opens_a_ticket_from_a_mention_in_one_click(shop_app, engine):
    at = open_page(shop_app, "agent1", "social")
    next(b for b in at.button if b.label == "Open a ticket").click().run()
    assert not at.exception
    assert any("opened for Anna Nowak" in s.value for s in at.success)
    with engine.connect() as connection:
        ticket = connection.execute(select(SupportTicket.channel, SupportTicket.priority)).one()
        linked = connection.scalar(select(func.count()).select_from(SocialMention).where(SocialMention.ticket_id.is_not(None)))
    assert tuple(ticket) == ("social", "high") and linked == 1
    assert "Open a ticket" not in [b.label for b in at.button]
    assert any(c.value.startswith("Ticket T-") for c in at.caption)


def test_a_success_manager_links_an_account_and_earlier_mentions_match(shop_app, engine):
    """Dora (customer 3) turns out to be the stranger who complained on Instagram."""
    at = open_page(shop_app, "csm1", "social")
    at.number_input[0].set_value(3)
    at.text_input[0].input("@Stranger")
    at.selectbox[1].set_value("instagram")
    next(b for b in at.button if b.label == "Link the account").click().run()
    assert not at.exception
    assert any("1 earlier mentions matched" in s.value for s in at.success)
    at.text_input[0].input("@Stranger")
    at.selectbox[1].set_value("instagram")
    next(b for b in at.button if b.label == "Link the account").click().run()
    assert any("already linked" in e.value for e in at.error)
    at.text_input[0].input("not a handle!")
    next(b for b in at.button if b.label == "Link the account").click().run()
    assert any("may hold only letters" in e.value for e in at.error)
    with engine.connect() as connection:
        assert connection.scalar(select(SocialMention.customer_id).where(SocialMention.author == "stranger")) == 3


def test_social_page_without_mentions(engine, monkeypatch):
    with platform.unit_of_work(engine) as s:
        users(s)
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    at = open_page(AppTest.from_file(APP, default_timeout=60), "analyst1", "social")
    assert not at.exception and metric(at, "Mentions") == "0"
    assert any("No mentions yet" in i.value for i in at.info)


@pytest.mark.parametrize("username", ["admin1", "analyst1", "csm1", "exec1"])
def test_journeys_page_for_each_role(shop_app, username):
    at = open_page(shop_app, username, "journeys")
    assert not at.exception and titles(at) == ["Journeys"]
    assert metric(at, "Customers followed") == "3"
    assert metric(at, "Bought at least once") == "67%"
    # From the first visit to the purchase (3 and 4 days), not from sign-up: the label says so.
    assert metric(at, "Median, first touch → purchase") == "3.5 days"
    assert [t.label for t in at.tabs] == ["To the first purchase", "From first purchase to churn", "First-touch channel"]
    assert any("no communications, support tickets, lifecycle stage changes" in i.value for i in at.info)
    table = at.dataframe[0].value
    assert table.iloc[0]["path"] == "Sign-up > Visit · social" and table.iloc[0]["customers"] == 3
    assert len(at.get("plotly_chart")) == 3
    # The Sankey's node labels: no light halo, over faint links, so they read in both themes.
    sankey = json.loads(at.get("plotly_chart")[0].proto.spec)["data"][0]
    assert sankey["type"] == "sankey" and sankey["textfont"]["shadow"] == "none"
    assert sankey["link"]["color"].endswith("0.25)")


def test_journeys_filters_by_segment_and_cohort(shop_app):
    at = open_page(shop_app, "analyst1", "journeys")
    at.selectbox[0].set_value("Newsletter readers").run()
    assert metric(at, "Customers followed") == "1" and metric(at, "Bought at least once") == "0%"
    at.selectbox[0].set_value("All customers").run()
    at.selectbox[1].set_value("2026-02").run()
    assert metric(at, "Customers followed") == "2"


def test_journeys_page_on_a_shop_with_orders_only(engine, monkeypatch):
    with platform.unit_of_work(engine) as s:
        users(s)
        for month in (1, 2, 3):
            customer = make_customer(s, dt.datetime(2026, month, 3), acquisition_channel="import")
            make_order(s, customer, dt.datetime(2026, month, 3), 30)
            make_order(s, customer, dt.datetime(2026, month + 2, 3), 30)
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    app = AppTest.from_file(APP, default_timeout=60)
    at = open_page(app, "exec1", "journeys")
    assert not at.exception and any("No journeys yet" in i.value for i in at.info)
    with platform.unit_of_work(engine) as s:
        journeys.refresh_journeys(s, TODAY)
    at = open_page(AppTest.from_file(APP, default_timeout=60), "exec1", "journeys")
    assert not at.exception
    assert any("no web sessions, communications, support tickets, lifecycle stage changes" in i.value for i in at.info)
    assert metric(at, "Customers followed") == "3" and metric(at, "Bought at least once") == "100%"
    paths = at.dataframe[1].value
    assert paths.iloc[0]["path"] == "First purchase > Repeat purchase"


def test_customer_360_shows_social_accounts_and_mentions(shop_app):
    at = open_page(shop_app, "agent1", "customer_360")
    at.number_input(key="c360_id").set_value(1).run()
    assert not at.exception
    assert any(c.value == "Social: twitter @anna (0 followers)" for c in at.caption)
    at.multiselect(key="c360_kinds").set_value(["mention"]).run()
    timeline = at.tabs[0].dataframe[0].value
    assert list(timeline["event"]) == ["Twitter mention (negative)", "Twitter mention (positive)"]
    assert "parcel is late" in timeline["detail"].iloc[0]


def test_social_page_defaults_to_the_latest_mention_of_an_old_import(engine, monkeypatch):
    old = ("platform,author,text,posted_at\n"
           "twitter,zed,Parcel never arrived. Awful.,2024-03-10 10:00\n"
           "twitter,zed,Refund came quickly - thanks!,2024-03-20 10:00\n")
    with platform.unit_of_work(engine) as s:
        users(s)
        social.import_mentions(s, platform.SYSTEM, io.BytesIO(old.encode()), file_name="old.csv")
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    at = open_page(AppTest.from_file(APP, default_timeout=60), "analyst1", "social")
    assert not at.exception
    assert at.date_input[0].value == (dt.date(2023, 12, 21), dt.date(2024, 3, 20))
    assert metric(at, "Mentions") == "2" and metric(at, "Matched to customers") == "0%"
