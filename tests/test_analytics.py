"""The analytics snapshot and RFM scores against hand-computed values, on both backends."""

import datetime as dt
from decimal import Decimal

import pytest

from crm_core import segmentation
from crm_core.segmentation import snapshot
from db.models import (
    AccountHealthScore,
    ChurnPrediction,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerLifetimeValue,
    OrderItem,
    Product,
    SupportTicket,
    SurveyResponse,
    WebSession,
)
from tests.factories import make_customer, make_order

D = dt.datetime
AS_OF = dt.date(2026, 3, 20)


def test_rfm_grid_names_every_cell_with_the_eleven_segments():
    names = {name for row in segmentation.RFM_GRID.values() for name in row}
    assert names == set(segmentation.RFM_SEGMENTS)
    assert segmentation.rfm_segment_name(5, 5, 5) == "Champions"
    assert segmentation.rfm_segment_name(1, 5, 4) == "Can't lose them"  # FM = (5 + 4 + 1) // 2 = 5
    assert segmentation.rfm_segment_name(5, 1, 1) == "New customers"
    assert segmentation.rfm_segment_name(1, 1, 1) == "Lost"


@pytest.fixture
def history(session):
    books = Product(sku="B1", name="Book", category="Books", brand="X", unit_price=Decimal("100"))
    gadgets = Product(sku="E1", name="Gadget", category="Electronics", brand="Y", unit_price=Decimal("50"))
    session.add_all([books, gadgets])
    a = make_customer(session, D(2025, 12, 1))
    b = make_customer(session, D(2026, 1, 1))
    make_customer(session, D(2026, 3, 21))  # signs up after the date: not in the snapshot
    o1 = make_order(session, a, D(2026, 1, 10, 9), "100.00")
    o2 = make_order(session, a, D(2026, 2, 1, 10), "50.00")
    make_order(session, a, D(2026, 3, 5, 10), "30.00", status="cancelled")
    make_order(session, a, D(2026, 3, 25, 10), "500.00")  # the future must not leak in
    session.flush()
    session.add_all([
        OrderItem(order_id=o1.id, product_id=books.id, quantity=1, unit_price=100, line_total=100),
        OrderItem(order_id=o2.id, product_id=gadgets.id, quantity=1, unit_price=50, line_total=50),
        *[WebSession(customer_id=a.id, started_at=when, duration_seconds=60, page_views=3, source="direct",
                     device="desktop") for when in (D(2026, 3, 1), D(2025, 10, 1), D(2026, 3, 25))],
        CustomerCommunication(customer_id=a.id, channel="email", status="opened", sent_at=D(2026, 3, 1),
                              opened_at=D(2026, 3, 2)),
        CustomerCommunication(customer_id=a.id, channel="email", status="opened", sent_at=D(2026, 3, 19),
                              opened_at=D(2026, 3, 22)),  # opened after the date: not yet opened then
        CustomerCommunication(customer_id=a.id, channel="email", status="delivered", sent_at=D(2026, 2, 1)),
        CustomerCommunication(customer_id=a.id, channel="email", status="opened", sent_at=D(2026, 3, 24),
                              opened_at=D(2026, 3, 24)),
        SupportTicket(ticket_number="A1", customer_id=a.id, subject="s", status="closed", created_at=D(2026, 3, 1),
                      resolved_at=D(2026, 3, 10)),
        SupportTicket(ticket_number="A2", customer_id=a.id, subject="s", status="resolved", created_at=D(2026, 3, 15),
                      resolved_at=D(2026, 3, 22)),
        SupportTicket(ticket_number="A3", customer_id=a.id, subject="s", status="open", created_at=D(2026, 3, 25)),
        SurveyResponse(customer_id=a.id, survey_type="nps", score=9, responded_at=D(2026, 1, 1)),
        SurveyResponse(customer_id=a.id, survey_type="nps", score=4, responded_at=D(2026, 3, 1)),
        SurveyResponse(customer_id=a.id, survey_type="nps", score=10, responded_at=D(2026, 3, 25)),
    ])
    session.flush()
    return a, b


def test_snapshot_matches_hand_computation(session, history):
    a, b = history
    assert segmentation.refresh_snapshot(session, AS_OF) == 2
    row = session.get(CustomerAnalytics, a.id)
    assert row.as_of == AS_OF
    assert (row.order_count, row.total_revenue, row.avg_order_value) == (2, Decimal("150.00"), Decimal("75.00"))
    assert (row.first_order_at, row.last_order_at) == (D(2026, 1, 10, 9), D(2026, 2, 1, 10))
    assert row.days_since_last_order == 47  # calendar days from 2026-02-01 to 2026-03-20
    assert row.sessions_90d == 1
    assert row.email_open_rate == pytest.approx(1 / 3)
    assert row.open_tickets == 1  # A2 was still open at the end of the date
    assert row.last_nps == 4
    assert row.preferred_category == "Books"
    empty = session.get(CustomerAnalytics, b.id)
    assert (empty.order_count, empty.total_revenue, empty.last_order_at) == (0, Decimal("0.00"), None)
    assert empty.recency_score is None and empty.rfm_segment is None and empty.email_open_rate is None


def test_days_since_the_last_order_are_calendar_days_with_or_without_a_time(session):
    dated = make_customer(session, D(2025, 1, 1))
    timed = make_customer(session, D(2025, 1, 1))
    make_order(session, dated, D(2026, 3, 20), "10.00")  # a date-only import: midnight of the as-of date
    make_order(session, timed, D(2026, 3, 19, 23, 30), "10.00")
    session.flush()
    segmentation.refresh_snapshot(session, AS_OF)
    assert session.get(CustomerAnalytics, dated.id).days_since_last_order == 0
    assert session.get(CustomerAnalytics, timed.id).days_since_last_order == 1


def test_data_after_the_date_does_not_move_the_snapshot(session, history):
    a, _ = history
    segmentation.refresh_snapshot(session, AS_OF)
    before = {c: getattr(session.get(CustomerAnalytics, a.id), c) for c in ("order_count", "total_revenue",
                                                                          "sessions_90d", "last_nps", "open_tickets")}
    make_order(session, a, D(2026, 4, 2), "999.00")
    session.add(SurveyResponse(customer_id=a.id, survey_type="nps", score=0, responded_at=D(2026, 4, 3)))
    session.flush()
    segmentation.refresh_snapshot(session, AS_OF)
    session.expire_all()
    after = {c: getattr(session.get(CustomerAnalytics, a.id), c) for c in before}
    assert after == before


def test_rfm_quintiles_and_segments(session):
    # Buyer i (1..5) has i orders of 10*i each, the last on 1 March + i days.
    buyers = []
    for i in range(1, 6):
        customer = make_customer(session, D(2025, 1, 1))
        for k in range(i):
            make_order(session, customer, D(2026, 3, i) - dt.timedelta(days=30 * k), f"{10 * i}.00")
        buyers.append(customer)
    segmentation.refresh_snapshot(session, AS_OF)
    rows = [session.get(CustomerAnalytics, c.id) for c in buyers]
    assert [(r.recency_score, r.frequency_score, r.monetary_score) for r in rows] == [(i, i, i) for i in range(1, 6)]
    assert [r.rfm_segment for r in rows] == ["Lost", "About to sleep", "Loyal", "Champions", "Champions"]


def test_every_buyer_is_in_exactly_one_rfm_segment(engine):
    import demo

    demo.seed_database(engine, 400, seed=5, end=D(2026, 3, 20, 18))
    from crm_core import platform

    with platform.unit_of_work(engine) as s:
        segmentation.refresh_snapshot(s, AS_OF)
        rows = s.query(CustomerAnalytics).all()
        buyers = [r for r in rows if r.order_count > 0]
        assert buyers and all(r.rfm_segment in segmentation.RFM_SEGMENTS for r in buyers)
        assert all(r.rfm_segment is None for r in rows if r.order_count == 0)
        for r in buyers:
            assert r.rfm_segment == segmentation.rfm_segment_name(r.recency_score, r.frequency_score, r.monetary_score)
        # Quintiles among the buyers within a year (the lifecycle's churned_days); the others score R = 1.
        live = [r for r in buyers if (AS_OF - r.last_order_at.date()).days <= 365]
        assert all(r.recency_score == 1 for r in buyers if r not in live)
        counts = [sum(1 for r in live if r.recency_score == q) for q in range(1, 6)]
        assert max(counts) - min(counts) <= 1


def test_snapshot_carries_the_model_outputs_of_its_own_date(session, history):
    """The batch refresh runs the models first; the snapshot reads their outputs as it writes each row."""
    a, b = history
    other_day = AS_OF - dt.timedelta(days=1)
    session.add_all([
        ChurnPrediction(customer_id=a.id, as_of=AS_OF, horizon_days=90, probability=0.8, risk_level="critical",
                        confidence=0.6),
        ChurnPrediction(customer_id=b.id, as_of=other_day, horizon_days=90, probability=0.3, risk_level="medium",
                        confidence=0.4),
        AccountHealthScore(customer_id=a.id, as_of=AS_OF, engagement=50, satisfaction=60, loyalty=70, payment=80,
                           support=90, overall=64.5, level="good"),
        AccountHealthScore(customer_id=b.id, as_of=other_day, engagement=10, satisfaction=10, loyalty=10,
                           payment=10, support=10, overall=10, level="critical"),
        CustomerLifetimeValue(customer_id=a.id, as_of=AS_OF, predicted_purchases_12m=1.5, prob_alive=0.7,
                              clv_12m=Decimal("120.50"), historic_clv=Decimal("150.00"),
                              expected_order_value=Decimal("75.00"), clv_frequency=1, clv_recency=3.1, clv_age=15.6),
    ])
    session.flush()
    segmentation.refresh_snapshot(session, AS_OF)
    rows = {r.customer_id: r for r in session.query(CustomerAnalytics)}
    assert (rows[a.id].churn_probability, rows[a.id].health_score, rows[a.id].health_level) == (0.8, 64.5, "good")
    assert (rows[a.id].clv_12m, rows[a.id].historic_clv, rows[a.id].prob_alive) == (
        Decimal("120.50"), Decimal("150.00"), 0.7)
    assert (rows[a.id].clv_frequency, rows[a.id].clv_recency, rows[a.id].clv_age) == (1, 3.1, 15.6)
    # b's scores are of another day; b has no lifetime value, so its historic value is 0 (values exist today)
    assert (rows[b.id].churn_probability, rows[b.id].health_score, rows[b.id].health_level) == (None, None, None)
    assert (rows[b.id].clv_12m, rows[b.id].historic_clv) == (None, 0)


def test_snapshot_without_any_lifetime_values_leaves_them_empty(session, history):
    a, b = history
    segmentation.refresh_snapshot(session, AS_OF)
    assert {r.historic_clv for r in session.query(CustomerAnalytics)} == {None}


@pytest.mark.parametrize("chunk", [500_000, 1], ids=["one chunk", "a line per chunk"])
def test_preferred_category_is_the_most_spend_alphabetically_first_on_a_tie(session, monkeypatch, chunk):
    """Summed over the revenue orders before the date; cancelled and later orders do not count (on
    SQLite the lines are summed a chunk at a time: sums across chunks add up the same)."""
    monkeypatch.setattr(snapshot, "LINE_CHUNK", chunk)
    products = {name: Product(sku=name[:3], name=name, category=name, brand="X", unit_price=Decimal("10"))
                for name in ("Toys", "Garden", "Books")}
    session.add_all(products.values())
    tie = make_customer(session, D(2026, 1, 1))
    summed = make_customer(session, D(2026, 1, 1))
    session.flush()

    def line(order, name, amount):
        session.add(OrderItem(order_id=order.id, product_id=products[name].id, quantity=1, unit_price=amount,
                              line_total=amount))

    first = make_order(session, tie, D(2026, 2, 1), "60.10")
    session.flush()
    line(first, "Toys", Decimal("30.05"))
    line(first, "Garden", Decimal("30.05"))  # a tie at 30.05: Garden comes first
    cancelled = make_order(session, tie, D(2026, 2, 2), "99.00", status="cancelled")
    later = make_order(session, tie, D(2026, 3, 25), "99.00")
    two = make_order(session, summed, D(2026, 2, 1), "0.30")
    three = make_order(session, summed, D(2026, 2, 3), "0.30")
    session.flush()
    line(cancelled, "Toys", Decimal("99"))
    line(later, "Toys", Decimal("99"))
    line(two, "Toys", Decimal("0.10"))
    line(two, "Toys", Decimal("0.20"))
    line(three, "Books", Decimal("0.30"))  # 0.1 + 0.2 is 0.30 too, not a cent more: Books wins the tie
    session.flush()
    segmentation.refresh_snapshot(session, AS_OF)
    assert session.get(CustomerAnalytics, tie.id).preferred_category == "Garden"
    assert session.get(CustomerAnalytics, summed.id).preferred_category == "Books"


def test_buyers_gone_over_a_year_score_recency_1_and_leave_the_quintiles_to_the_rest(session):
    """Five buyers of this year and ten imported from years ago: the old ones are R = 1 (never
    Champions), the five recent ones spread over R 1-5 among themselves."""
    recent = []
    for i in range(1, 6):
        customer = make_customer(session, D(2025, 1, 1))
        make_order(session, customer, D(2026, 3, i), "500.00")
        recent.append(customer)
    gone = []
    for i in range(10):
        customer = make_customer(session, D(2018, 1, 1))
        for k in range(6):
            make_order(session, customer, D(2019, 1, 1 + i) + dt.timedelta(days=30 * k), "900.00")
        gone.append(customer)
    segmentation.refresh_snapshot(session, AS_OF)
    scores = {c.id: session.get(CustomerAnalytics, c.id) for c in recent + gone}
    assert [scores[c.id].recency_score for c in recent] == [1, 2, 3, 4, 5]
    assert {scores[c.id].recency_score for c in gone} == {1}
    assert {scores[c.id].rfm_segment for c in gone} <= set(segmentation.snapshot.RFM_GRID[1])  # never Champions
    assert "Can't lose them" in {scores[c.id].rfm_segment for c in gone}  # the big spenders who left
