"""Executive figures against values computed by hand on a small fixture (see the comments)."""

import datetime as dt
from decimal import Decimal

import pytest

from crm_core import platform, reporting
from db.models import LoyaltyAccount, SupportTicket, SurveyResponse
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


def test_figures_match_hand_computation(session, shop):
    o = reporting.executive_overview(session, shop, dt.date(2025, 4, 1), dt.date(2026, 3, 20))
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
