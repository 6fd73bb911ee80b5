"""Customer journeys: paths on crafted customers (order of steps, median days, conversion, churn),
the batch computation with segment and cohort rollups, an orders-only shop, and the page reads."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from crm_core import journeys, platform
from crm_core.journeys import steps as s
from db.models import (
    CustomerCommunication,
    CustomerSegment,
    CustomerSegmentMembership,
    SupportTicket,
    WebSession,
)
from tests.factories import make_customer, make_order, make_user

AS_OF = dt.date(2026, 6, 30)
END = pd.Timestamp("2026-06-30 23:59:59.999999")
RULES = journeys.ChurnRules(churned_days=365, inactive_days=180, at_risk_days=90)
D = pd.Timestamp


def frames(people, events):
    people = pd.DataFrame(people, columns=["customer_id", "signed_up_at", "acquisition_channel"])
    people["signed_up_at"] = pd.to_datetime(people["signed_up_at"])
    events = pd.DataFrame(events, columns=["customer_id", "at", "code"])
    events["at"] = pd.to_datetime(events["at"])
    return people, events


def crafted():
    visit, email, ticket = s.VISITS["organic"], s.MESSAGES["email"], s.TICKET
    return frames(
        [(1, "2026-01-01", "social"), (2, "2026-01-01", "direct"), (3, "2026-01-01", "paid_search"),
         (4, "2026-02-01", "import"), (5, "2024-01-01", "email"), (6, "2026-07-05", "direct")],
        [(1, "2026-01-02", visit), (1, "2026-01-04", email), (1, "2026-01-05", email), (1, "2026-01-11", s.ORDER),
         (2, "2026-01-03", visit), (2, "2026-01-05", email), (2, "2026-01-08", s.ORDER),
         (3, "2026-01-02", visit),
         (4, "2026-02-01", s.ORDER),
         (5, "2024-01-10", s.ORDER), (5, "2024-02-10", s.ORDER), (5, "2024-03-01", ticket),
         (6, "2026-07-06", s.ORDER)])  # after the as-of date: not seen


def test_paths_to_first_purchase():
    to_purchase, _ = journeys.customer_journeys(*crafted(), END, RULES)
    rows = to_purchase.set_index("customer_id")
    assert 6 not in rows.index  # signed up after the date
    labels = {cid: " > ".join(journeys.path_labels(int(code))) for cid, code in rows["path"].items()}
    assert labels[1] == labels[2] == "Sign-up > Visit · organic search > Email"  # emails in a row count once
    assert labels[3] == "Sign-up > Visit · organic search"
    assert labels[4] == ""  # an orders-only customer: the sign-up is the purchase itself
    assert list(rows["reached"]) == [True, True, False, True, True]
    assert (rows.loc[1, "gap_1"], rows.loc[1, "gap_2"], rows.loc[1, "gap_end"], rows.loc[1, "total"]) == (1, 2, 7, 10)
    assert (rows.loc[2, "gap_1"], rows.loc[2, "gap_2"], rows.loc[2, "gap_end"], rows.loc[2, "total"]) == (2, 2, 3, 7)
    assert pd.isna(rows.loc[3, "gap_end"])
    assert rows.loc[1, "first_touch"] == "Organic search" and rows.loc[1, "first_touch_days"] == 9
    assert rows.loc[4, "first_touch"] == "Unknown (imported)" and pd.isna(rows.loc[4, "first_touch_days"])


def test_paths_from_first_purchase_to_churn():
    _, to_churn = journeys.customer_journeys(*crafted(), END, RULES)
    rows = to_churn.set_index("customer_id")
    assert sorted(rows.index) == [1, 2, 4, 5]
    assert " > ".join(journeys.path_labels(int(rows.loc[5, "path"]))) == "First purchase > Repeat purchase > Support ticket"
    assert rows.loc[5, "outcome"] == "Churned" and bool(rows.loc[5, "reached"])
    # 31 days to the repeat purchase, 20 to the ticket, then churn 365 days after that purchase.
    assert (rows.loc[5, "gap_1"], rows.loc[5, "gap_2"], rows.loc[5, "gap_end"], rows.loc[5, "total"]) == (31, 20, 345, 396)
    assert rows.loc[1, "outcome"] == "At risk"  # 170 days without an order
    assert rows.loc[4, "outcome"] == "At risk" and not rows.loc[4, "reached"]


def test_long_paths_keep_the_first_step_and_the_last_three():
    codes = [s.VISITS["organic"], s.MESSAGES["sms"], s.VISITS["email"], s.MESSAGES["push"], s.VISITS["direct"]]
    people, events = frames([(1, "2026-01-01", "direct")],
                            [(1, f"2026-01-0{2 + i}", code) for i, code in enumerate(codes)] + [(1, "2026-01-20", s.ORDER)])
    to_purchase, _ = journeys.customer_journeys(people, events, END, RULES)
    assert journeys.path_labels(int(to_purchase.loc[0, "path"])) == [
        "Sign-up", "Visit · email", "Push", "Visit · direct"]


def seed_shop(session):
    """The crafted customers in the database, with a segment holding two of them."""
    c1 = make_customer(session, dt.datetime(2026, 1, 1), acquisition_channel="social")
    c2 = make_customer(session, dt.datetime(2026, 1, 1))
    c3 = make_customer(session, dt.datetime(2026, 1, 1), acquisition_channel="paid_search")
    c4 = make_customer(session, dt.datetime(2026, 2, 1), acquisition_channel="import")
    c5 = make_customer(session, dt.datetime(2024, 1, 1), acquisition_channel="email")
    for customer, day in ((c1, "2026-01-02"), (c2, "2026-01-03"), (c3, "2026-01-02")):
        session.add(WebSession(customer_id=customer.id, started_at=D(day).to_pydatetime(), duration_seconds=60,
                               page_views=2, source="organic", device="mobile"))
    for customer, day in ((c1, "2026-01-04"), (c1, "2026-01-05"), (c2, "2026-01-05")):
        session.add(CustomerCommunication(customer_id=customer.id, channel="email", direction="outbound",
                                          status="delivered", sent_at=D(day).to_pydatetime()))
    make_order(session, c1, dt.datetime(2026, 1, 11), 10)
    make_order(session, c2, dt.datetime(2026, 1, 8), 10)
    make_order(session, c4, dt.datetime(2026, 2, 1), 10)
    make_order(session, c5, dt.datetime(2024, 1, 10), 10)
    make_order(session, c5, dt.datetime(2024, 2, 10), 10)
    make_order(session, c3, dt.datetime(2026, 1, 9), 10, status="cancelled")  # not a purchase
    session.add(SupportTicket(ticket_number="T-1", customer_id=c5.id, subject="s", description="d", category="other",
                              priority="normal", status="closed", channel="email", sla_breached=False,
                              created_at=dt.datetime(2024, 3, 1), updated_at=dt.datetime(2024, 3, 1)))
    segment = CustomerSegment(name="VIP", segment_type="custom", kind="static")
    session.add(segment)
    session.flush()
    for customer in (c1, c3):
        session.add(CustomerSegmentMembership(segment_id=segment.id, customer_id=customer.id))
    session.flush()
    return segment


def test_the_batch_computation_and_what_the_page_reads(session):
    segment = seed_shop(session)
    result = journeys.refresh_journeys(session, AS_OF)
    assert (result["customers"], result["buyers"], result["churned"]) == (5, 4, 1)
    assert result["sources"]["web_sessions"] == 3 and result["sources"]["lifecycle_changes"] == 0
    run = journeys.latest_run(session, platform.SYSTEM)
    assert run["missing"] == ["lifecycle stage changes"]

    paths = journeys.top_paths(session, platform.SYSTEM, "to_purchase")
    top = paths[0]
    assert top["path"] == "Sign-up > Visit · organic search > Email"
    assert (top["customers"], top["reached"], top["rate"]) == (2, 2, 1.0)
    assert top["median_days"] == [1.5, 2.0, 5.0] and top["median_days_total"] == 8.5
    assert "Email → First purchase: 5.0 d" in top["between"]
    by_path = {p["path"]: p for p in paths}
    assert by_path["Sign-up > Visit · organic search"]["rate"] == 0.0
    assert by_path["Sign-up > Visit · organic search"]["outcomes"] == {"No purchase yet": 1}
    assert by_path[journeys.NO_TOUCHPOINT]["reached"] == 1

    churn = {p["path"]: p for p in journeys.top_paths(session, platform.SYSTEM, "to_churn")}
    ticket_path = churn["First purchase > Repeat purchase > Support ticket"]
    assert (ticket_path["reached"], ticket_path["median_days_total"]) == (1, 396.0)
    assert churn["First purchase"]["outcomes"] == {"At risk": 3}

    totals = journeys.journey_totals(session, platform.SYSTEM)
    assert (totals["to_purchase"]["customers"], totals["to_purchase"]["reached"]) == (5, 4)
    assert totals["to_purchase"]["median_days"] == 7.0  # first visit or message to purchase: 9 and 5 days
    assert totals["to_churn"]["outcomes"] == {"Churned": 1, "At risk": 3}
    assert totals["to_churn"]["median_days"] == 396.0
    assert journeys.journey_totals(session, platform.SYSTEM, segment.id)["to_purchase"]["customers"] == 2

    channels = {r["channel"]: r for r in journeys.first_touch_conversion(session, platform.SYSTEM)}
    assert channels["Organic search"]["customers"] == 3 and channels["Organic search"]["buyers"] == 2
    assert channels["Organic search"]["median_days_to_purchase"] == 7.0  # 9 and 5 days
    assert channels["Email"]["median_days_to_purchase"] is None  # no touch date, only the acquisition channel
    assert channels["Email"]["buyers"] == 1  # acquisition channel when nothing was recorded

    vip = journeys.top_paths(session, platform.SYSTEM, "to_purchase", segment_id=segment.id)
    assert sum(p["customers"] for p in vip) == 2
    cohort = journeys.top_paths(session, platform.SYSTEM, "to_purchase", cohort="2026-02")
    assert [p["path"] for p in cohort] == [journeys.NO_TOUCHPOINT]
    both = journeys.top_paths(session, platform.SYSTEM, "to_purchase", segment_id=segment.id, cohort="2026-01")
    assert sum(p["customers"] for p in both) == 2
    options = journeys.filter_options(session, platform.SYSTEM)
    assert options["segments"] == [{"id": segment.id, "name": "VIP"}]
    assert options["cohorts"] == ["2026-02", "2026-01", "2024-01"]

    chart = journeys.sankey(session, platform.SYSTEM, "to_purchase")
    assert "1. Sign-up" in chart["nodes"] and "First purchase" in chart["nodes"]
    link = dict(zip(zip(chart["source"], chart["target"], strict=True), chart["value"], strict=True))
    assert link[(chart["nodes"].index("3. Email"), chart["nodes"].index("First purchase"))] == 2

    with pytest.raises(platform.ValidationError, match="YYYY-MM"):
        journeys.top_paths(session, platform.SYSTEM, "to_purchase", cohort="January")
    with pytest.raises(platform.PermissionDenied):
        journeys.top_paths(session, make_user(session, "support_agent"), "to_purchase")

    journeys.refresh_journeys(session, AS_OF)  # a second run replaces the first one's rollups
    assert journeys.latest_run(session, platform.SYSTEM)["run_id"] == run["run_id"] + 1
    assert sum(p["customers"] for p in journeys.top_paths(session, platform.SYSTEM, "to_purchase")) == 5


def test_an_orders_only_shop(session):
    customer = make_customer(session, dt.datetime(2026, 3, 1, 10), acquisition_channel="import")
    make_order(session, customer, dt.datetime(2026, 3, 1, 10), 20)
    make_order(session, customer, dt.datetime(2026, 4, 1), 20)
    result = journeys.refresh_journeys(session, AS_OF)
    assert result["buyers"] == 1
    run = journeys.latest_run(session, platform.SYSTEM)
    assert run["missing"] == ["web sessions", "communications", "support tickets", "lifecycle stage changes"]
    assert journeys.top_paths(session, platform.SYSTEM, "to_purchase")[0]["path"] == journeys.NO_TOUCHPOINT
    churn = journeys.top_paths(session, platform.SYSTEM, "to_churn")[0]
    assert churn["path"] == "First purchase > Repeat purchase" and churn["median_days"][0] == pytest.approx(30.58, abs=0.01)


def test_no_run_yet(session):
    assert journeys.latest_run(session, platform.SYSTEM) is None
    assert journeys.top_paths(session, platform.SYSTEM) == []
    assert journeys.sankey(session, platform.SYSTEM)["nodes"] == []
