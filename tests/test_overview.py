"""Executive figures against values computed by hand on a small fixture (see the comments)."""

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import update

from crm_core import platform, reporting, segmentation
from db.models import LoyaltyAccount, Order, SupportTicket, SurveyResponse
from tests.factories import make_customer, make_order, make_user

D = dt.datetime


@pytest.fixture
def shop(session):
    a = make_customer(session, D(2024, 1, 10), first_name="Ada", last_name="A")
    b = make_customer(session, D(2026, 3, 2), first_name="Bob", last_name="B")
    c = make_customer(session, D(2026, 2, 1), first_name="Cy", last_name="C")
    d = make_customer(session, D(2025, 12, 1), status="merged", first_name="Di", last_name="D")
    make_customer(session, D(2026, 3, 21), first_name="Eve", last_name="E")  # after the end date
    make_order(session, a, D(2025, 3, 25, 10), "100.00")
    make_order(session, a, D(2026, 3, 5, 10), "50.00")
    make_order(session, a, D(2026, 3, 19, 10), "30.00", status="cancelled")
    make_order(session, b, D(2026, 3, 10, 10), "200.00", status="paid")
    make_order(session, c, D(2026, 2, 3, 10), "80.00")
    make_order(session, c, D(2026, 2, 25, 10), "20.00", status="refunded")
    make_order(session, d, D(2025, 12, 5, 10), "40.00")
    session.add_all([
        SupportTicket(ticket_number="T-1", customer_id=a.id, subject="late", status="open", sla_breached=True,
                      created_at=D(2026, 3, 15)),
        SupportTicket(ticket_number="T-2", customer_id=b.id, subject="ok", status="resolved", created_at=D(2026, 3, 16)),
        SupportTicket(ticket_number="T-3", customer_id=c.id, subject="old", status="closed", sla_breached=True,
                      created_at=D(2025, 1, 1)),
        *[SurveyResponse(customer_id=a.id, survey_type="nps", score=s, responded_at=D(2026, 1, i + 1))
          for i, s in enumerate([10, 9, 7, 3])],
        SurveyResponse(customer_id=a.id, survey_type="nps", score=0, responded_at=D(2025, 1, 1)),
        LoyaltyAccount(customer_id=a.id, tier="gold", points_balance=10, lifetime_points=6000, enrolled_at=D(2024, 2, 1)),
        LoyaltyAccount(customer_id=b.id, tier="silver", points_balance=0, lifetime_points=1200, enrolled_at=D(2026, 3, 2)),
    ])
    session.flush()
    return make_user(session, "executive")


# None: read live; a date: the batch built the daily rollups as of it (the later days are read live).
ROLLUP_DATES = [None, dt.date(2026, 3, 20), dt.date(2026, 3, 5), dt.date(2026, 2, 10), dt.date(2025, 1, 1)]


@pytest.mark.parametrize("rollup_as_of", ROLLUP_DATES)
def test_figures_match_hand_computation(session, shop, rollup_as_of):
    if rollup_as_of is not None:
        reporting.refresh_sales_rollups(session, rollup_as_of, now=D(2026, 3, 21, 9))
        # the top customers walk the snapshot's revenue to date (and read the orders after it live)
        segmentation.refresh_snapshot(session, rollup_as_of)
    o = reporting.executive_overview(session, shop, dt.date(2025, 4, 1), dt.date(2026, 3, 20))
    assert o.rollup_through == (None if rollup_as_of is None else platform.end_of(rollup_as_of))
    assert o.customers_total == 3  # A, B, C: D is merged, E signed up after the end date
    assert o.customers_new_this_month == 1  # B
    assert o.customers_active_90d == 3  # A, B, C ordered since 2025-12-21
    assert o.revenue_this_month == Decimal("250.00")  # 50 + 200; the cancelled 30 does not count
    assert o.revenue_this_month_change == 212.5  # vs 1-20 Feb: 80 (the refunded 20 does not count)
    assert o.revenue_12m == Decimal("470.00")  # 100 + 50 + 200 + 80 + 40
    assert o.revenue_12m_change is None  # nothing in the year before
    assert (o.orders_in_range, o.revenue_in_range) == (4, Decimal("370.00"))
    assert o.average_order_value == Decimal("92.50")
    assert o.repeat_purchase_rate == 25.0  # 1 of 4 buyers (A) ordered twice
    assert o.open_tickets == 1
    assert o.sla_breaches == 1  # T-3 breached before the range
    assert (o.nps, o.nps_responses) == (25.0, 4)  # 2 promoters - 1 detractor of 4
    assert [(m["month"], m["revenue"], m["orders"], m["new_customers"]) for m in o.monthly] == [
        ("2025-12", Decimal("40.00"), 1, 0),
        ("2026-02", Decimal("80.00"), 1, 1),
        ("2026-03", Decimal("250.00"), 2, 1),
    ]
    assert {t["tier"]: t["members"] for t in o.tiers} == {
        "bronze": 0, "silver": 1, "gold": 1, "platinum": 0, "diamond": 0,
    }
    # An executive reads the top customers by number: names are personal data (customers.view).
    assert [t["revenue"] for t in o.top_customers] == [Decimal("200.00"), Decimal("80.00"), Decimal("50.00"),
                                                       Decimal("40.00")]
    assert all(t["name"].startswith("Customer #") and t["email"] is None for t in o.top_customers)
    named = reporting.executive_overview(session, make_user(session, "success_manager"), dt.date(2025, 4, 1),
                                         dt.date(2026, 3, 20))
    assert [(t["name"], t["revenue"]) for t in named.top_customers] == [
        ("Bob B", Decimal("200.00")), ("Cy C", Decimal("80.00")), ("Ada A", Decimal("50.00")), ("Di D", Decimal("40.00")),
    ]


def test_rollups_are_refreshed_for_the_days_that_changed(session, shop):
    """A second refresh recomputes the recent days (a late order, a cancellation) and keeps the older ones."""
    reporting.refresh_sales_rollups(session, dt.date(2026, 3, 10), now=D(2026, 3, 10, 9))  # B orders at 10:00
    first = reporting.executive_overview(session, shop, dt.date(2025, 4, 1), dt.date(2026, 3, 20))
    assert first.rollup_through == D(2026, 3, 10, 9)
    assert first.revenue_this_month == Decimal("250.00")  # B's 200 at 10:00, after the cutoff, read live
    late = make_customer(session, D(2026, 3, 11), first_name="Fay", last_name="F")
    make_order(session, late, D(2026, 3, 12, 9), "60.00")
    session.execute(update(Order).where(Order.total == Decimal("200.00")).values(status="cancelled"))
    reporting.refresh_sales_rollups(session, dt.date(2026, 3, 20), now=D(2026, 3, 21, 1))
    o = reporting.executive_overview(session, shop, dt.date(2025, 4, 1), dt.date(2026, 3, 20))
    assert o.rollup_through == D(2026, 3, 21)
    assert o.customers_total == 4 and o.customers_active_90d == 3  # B's only order is cancelled; F ordered
    assert o.revenue_this_month == Decimal("110.00")  # 50 + 60
    assert o.repeat_purchase_rate == 25.0  # A of A, C, D, F


def test_empty_database_gives_empty_figures(session):
    viewer = make_user(session, "analyst")
    o = reporting.executive_overview(session, viewer, dt.date(2026, 1, 1), dt.date(2026, 1, 31))
    assert o.customers_total == 0 and o.revenue_12m == Decimal("0.00")
    assert o.average_order_value is None and o.nps is None and o.repeat_purchase_rate is None
    assert o.monthly == [] and o.top_customers == []


def test_reversed_range_is_refused(session):
    viewer = make_user(session, "analyst")
    with pytest.raises(platform.ValidationError, match="start date"):
        reporting.executive_overview(session, viewer, dt.date(2026, 2, 1), dt.date(2026, 1, 1))


def test_top_customers_from_the_snapshot_match_grouping_every_order(session, monkeypatch):
    """Walking the snapshot's revenue to date in small batches finds the same top customers as a
    GROUP BY over every order of the range, also for orders placed after the snapshot."""
    import random

    from crm_core.reporting import overview

    rng = random.Random(5)
    people = [make_customer(session, D(2024, 1, 1), first_name=f"P{i}", last_name="X") for i in range(40)]
    for person in people:
        for _ in range(rng.randint(0, 6)):
            when = D(2024, 1, 2) + dt.timedelta(days=rng.randint(0, 800), hours=rng.randint(0, 23))
            make_order(session, person, when, f"{rng.randint(5, 400)}.00",
                       status=rng.choice(["paid", "paid", "delivered", "cancelled"]))
    segmentation.refresh_snapshot(session, dt.date(2025, 9, 30))
    monkeypatch.setattr(overview, "TOP_CANDIDATES_BATCH", 3)
    for start, end in ((D(2025, 1, 1), D(2025, 10, 1)), (D(2025, 6, 1), D(2026, 3, 1)), (D(2024, 1, 1), D(2026, 6, 1))):
        assert overview._top_from_snapshot(session, start, end, 5) is not None
        walked = overview.top_customers(session, start, end, limit=5)
        monkeypatch.setattr(overview, "_top_from_snapshot", lambda *args: None)
        grouped = overview.top_customers(session, start, end, limit=5)
        monkeypatch.undo()
        monkeypatch.setattr(overview, "TOP_CANDIDATES_BATCH", 3)
        assert walked == grouped and len(walked) == 5


def test_a_few_days_read_order_by_order_match_the_one_pass_numbering(session, monkeypatch):
    """The live days after a rollup are read order by order; longer ranges in one pass: same figures."""
    import random

    from crm_core.reporting import sales_rollups

    rng = random.Random(11)
    people = [make_customer(session, D(2025, 1, 1)) for _ in range(25)]
    for person in people:
        for _ in range(rng.randint(0, 8)):
            when = D(2025, 6, 1) + dt.timedelta(days=rng.randint(0, 60), hours=rng.choice([0, 9, 9, 23]))
            make_order(session, person, when, f"{rng.randint(5, 90)}.00", status=rng.choice(["paid", "cancelled"]))
    for start in (D(2025, 6, 20), D(2025, 7, 1, 9, 30), D(2025, 7, 15, 23)):
        stop = start + dt.timedelta(days=3, hours=5)
        few = sales_rollups.daily_sales(session, start, stop)
        monkeypatch.setattr(sales_rollups, "FEW_DAYS", dt.timedelta(0))
        one_pass = sales_rollups.daily_sales(session, start, stop)
        monkeypatch.undo()
        assert few.orders == one_pass.orders and few.gaps == one_pass.gaps and few.orders
        # two adjacent spans add up to both together, however the boundary cuts a customer's day
        middle = start + dt.timedelta(days=1, hours=7)
        parts = sales_rollups.daily_sales(session, start, middle).add(sales_rollups.daily_sales(session, middle, stop))
        assert parts.orders == one_pass.orders and parts.gaps == one_pass.gaps


def test_counted_customers_from_the_rollup_and_the_days_after_it(session, shop):
    from crm_core.reporting import sales_rollups

    assert sales_rollups.counted_customers(session) is None  # no refresh yet: the caller counts
    reporting.refresh_sales_rollups(session, dt.date(2026, 3, 20), now=D(2026, 3, 21, 9))
    assert sales_rollups.counted_customers(session) == 4  # A, B, C and E (after the covered days); not D
    make_customer(session, D(2026, 3, 25), first_name="Gus", last_name="G")
    assert sales_rollups.counted_customers(session) == 5
    # Those who signed up before a moment: whole days from the rollup, the rest live.
    assert sales_rollups.counted_customers(session, before=D(2026, 3, 1)) == 2  # A and C
    assert sales_rollups.counted_customers(session, before=D(2026, 3, 21)) == 3  # and B
    assert sales_rollups.counted_customers(session, before=D(2026, 3, 26)) == 5  # E and Gus, live
    assert sales_rollups.counted_customers(session, before=D(2026, 3, 10, 12)) is None  # inside a stored day
