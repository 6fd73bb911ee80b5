"""Order intake: a new order is validated, checked against the risk decisions in force before
anything is written, may redeem a voucher and carry a referral code on a first order (issue 16)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import orders, platform, referrals, risk
from db.models import AuditLog, Order, OrderItem, Product, Referral
from tests.factories import make_customer, make_order, make_user

START = dt.datetime(2025, 1, 1)


@pytest.fixture
def shop(session):
    book = Product(sku="BOOK-1", name="Book", category="Books", brand="X", unit_price=Decimal("20.00"))
    lamp = Product(sku="LAMP-1", name="Lamp", category="Home", brand="Y", unit_price=Decimal("45.50"))
    old = Product(sku="OLD-1", name="Old", category="Home", brand="Y", unit_price=Decimal("5"), is_active=False)
    session.add_all([book, lamp, old])
    session.flush()
    return {"agent": make_user(session, "support_agent"), "book": book, "lamp": lamp, "old": old,
            "customer": make_customer(session, START)}


def _orders(session, customer) -> int:
    return session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == customer.id))


def test_an_order_with_items_is_recorded_with_its_lines_and_audited(session, shop):
    agent, customer = shop["agent"], shop["customer"]
    made = orders.record_order(session, agent, customer.id, {
        "items": [{"product_id": shop["book"].id, "quantity": 2},
                  {"product_id": shop["lamp"].id, "quantity": 1, "unit_price": "40.00"}],
        "shipping": "4.90", "channel": "phone"})
    assert made["subtotal"] == Decimal("80.00") and made["shipping"] == Decimal("4.90")
    assert made["total"] == Decimal("84.90") and made["item_count"] == 3 and made["status"] == "paid"
    assert made["currency"] == platform.SHOP_CURRENCY and made["order_number"].startswith("CRM-")
    assert [(i["sku"], i["quantity"], i["line_total"]) for i in made["items"]] == [
        ("BOOK-1", 2, Decimal("40.00")), ("LAMP-1", 1, Decimal("40.00"))]
    assert session.scalar(select(func.count()).select_from(OrderItem).where(OrderItem.order_id == made["id"])) == 2
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "order.create")).one()
    assert audit.entity_id == str(made["id"]) and audit.actor_username == agent.username
    assert audit.after["total"] == "84.90"
    # A total without items, and the shop's own order number, which is recorded once only.
    second = orders.record_order(session, agent, customer.id, {"total": 12.5, "order_number": "SHOP-77"})
    assert second["order_number"] == "SHOP-77" and second["total"] == Decimal("12.50")
    with pytest.raises(platform.ValidationError, match="Order SHOP-77 is already recorded"):
        orders.record_order(session, agent, customer.id, {"total": 5, "order_number": "SHOP-77"})


@pytest.mark.parametrize(("order", "message"), [
    ({}, "items .* or its total, not both"),
    ({"total": 10, "items": [{"product_id": 1}]}, "not both"),
    ({"total": "ten"}, "is not an amount"),
    ({"total": 0}, "must be above 0"),
    ({"total": -3}, "must be above 0"),
    ({"total": "1.999"}, "more than two decimals"),
    ({"total": 2_000_000}, "up to 1,000,000"),
    ({"total": 10, "shipping": -1}, "shipping must be from 0"),
    ({"total": 10, "channel": "fax"}, "channel must be one of web, mobile"),
    ({"total": 10, "status": "delivered"}, "status of a new order must be one of placed, paid"),
    ({"total": 10, "currency": "euro"}, "not a three-letter ISO 4217 code"),
    ({"total": 10, "colour": "red"}, "Unknown order field"),
    ({"items": []}, "at least one item"),
    ({"items": [{"product_id": 999_999}]}, "Item 1: there is no product 999999"),
    ({"items": [{"product_id": "{book}", "quantity": 0}]}, "Item 1: the quantity must be a whole number"),
    ({"items": [{"product_id": "{book}", "quantity": 1.5}]}, "quantity must be a whole number"),
    ({"items": [{"product_id": "{book}"}, {"product_id": "{old}"}]}, "Item 2: product OLD-1 is no longer sold"),
    ({"items": [{"product_id": "{book}", "unit_price": "free"}]}, "Item 1: the unit price 'free' is not an amount"),
    ({"items": [{"product_id": "{book}", "size": "L"}]}, "Item 1 has unknown field"),
    ({"total": 10, "referral_code": "NOPE"}, "No referral code 'NOPE'"),
])
def test_bad_input_is_refused_with_a_clear_message_and_nothing_is_written(session, shop, order, message):
    for item in order.get("items") or []:
        if isinstance(item.get("product_id"), str):
            item["product_id"] = shop[item["product_id"].strip("{}")].id
    with pytest.raises(platform.ValidationError, match=message):
        orders.record_order(session, shop["agent"], shop["customer"].id, order)
    assert _orders(session, shop["customer"]) == 0


def test_who_may_record_an_order_and_for_whom(session, shop):
    customer = shop["customer"]
    with pytest.raises(platform.PermissionDenied):
        orders.record_order(session, make_user(session, "analyst"), customer.id, {"total": 10})
    with pytest.raises(platform.NotFound, match="Customer 999999 does not exist"):
        orders.record_order(session, shop["agent"], 999_999, {"total": 10})
    closed = make_customer(session, START, status="closed")
    with pytest.raises(platform.ValidationError, match="is closed; only an active customer can order"):
        orders.record_order(session, shop["agent"], closed.id, {"total": 10})


def test_a_block_refuses_every_order_with_its_reason_before_anything_is_written(session, shop):
    customer = shop["customer"]
    risk.restrict_customer(session, make_user(session, "risk_analyst"), customer.id, "block", "Confirmed fraud ring")
    before = session.scalar(select(func.count()).select_from(AuditLog))
    with pytest.raises(risk.RiskRestricted, match=r"is blocked until \d{4}-\d\d-\d\d \(Confirmed fraud ring\)"):
        orders.record_order(session, shop["agent"], customer.id, {"total": "1.00"})
    assert _orders(session, customer) == 0
    assert session.scalar(select(func.count()).select_from(AuditLog)) == before


def test_a_restriction_refuses_orders_over_its_limit_and_accepts_those_under_it(session, shop):
    customer = shop["customer"]
    risk.restrict_customer(session, make_user(session, "risk_analyst"), customer.id, "restrict", "Card testing",
                           days=10, order_limit="100")
    with pytest.raises(risk.RiskRestricted, match=r"restricted until .* \(Card testing\): orders over 100.00"):
        orders.record_order(session, shop["agent"], customer.id, {"items": [
            {"product_id": shop["lamp"].id, "quantity": 2}], "shipping": "10"})  # 91.00 + 10.00 shipping
    assert _orders(session, customer) == 0
    made = orders.record_order(session, shop["agent"], customer.id, {"total": "100.00"})
    assert made["total"] == Decimal("100.00") and _orders(session, customer) == 1


def test_a_referral_code_is_attributed_on_a_first_order_only(session, shop):
    referrer, friend = make_customer(session, START), make_customer(session, START)
    code = referrals.referral_code(session, platform.SYSTEM, referrer.id)["code"]
    made = orders.record_order(session, shop["agent"], friend.id, {"total": 30, "referral_code": code.lower()})
    referral = session.scalars(select(Referral).where(Referral.referred_id == friend.id)).one()
    assert referral.referrer_id == referrer.id and referral.status == "signed_up"
    assert abs(referral.created_at - made["ordered_at"]) < dt.timedelta(seconds=1)
    audit = session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "referral")).all()
    assert audit == ["referrals.attribute"]
    # The referral programme's own rules: a customer who already ordered cannot bring a code.
    regular = make_customer(session, START)
    make_order(session, regular, START + dt.timedelta(days=3), 20)
    with pytest.raises(platform.ValidationError, match="had already ordered .* only a sign-up or a first order"):
        orders.record_order(session, shop["agent"], regular.id, {"total": 30, "referral_code": code})
    assert _orders(session, regular) == 1
    with pytest.raises(platform.ValidationError, match="cannot refer themselves"):
        orders.record_order(session, shop["agent"], referrer.id, {"total": 30, "referral_code": code})


def test_historical_imports_are_not_refused_by_todays_decisions(session, shop):
    """`crm import orders` records the past: a blocked customer's old orders still come in."""
    import io

    from crm_core import imports

    customer = make_customer(session, START, external_id="C-9")
    risk.restrict_customer(session, make_user(session, "risk_analyst"), customer.id, "block", "Fraud")
    report = imports.import_orders(session, platform.SYSTEM, io.BytesIO(b"customer,date,amount\nC-9,2025-02-03,900\n"),
                                   fmt="csv", file_name="old.csv", customer_col="customer", date_col="date",
                                   amount_col="amount")
    assert report.counts()["invalid"] == 0 and _orders(session, customer) == 1
