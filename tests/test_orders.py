"""Order intake: a new order is validated, checked against the risk decisions in force before
anything is written, may redeem a voucher and carry a referral code on a first order (issue 16)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import orders, platform, referrals, risk, vouchers
from db.models import AuditLog, Customer, Order, OrderItem, Product, Referral, User, Voucher
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


# --------------------------------------------------------------------------- vouchers at intake


def _voucher(session, customer, kind="amount", value="10", days=30, min_order=0, source_id=None):
    code = vouchers.issue_vouchers(session, platform.SYSTEM, [customer.id], kind, Decimal(value), source="manual",
                                   source_id=source_id, expires_at=dt.datetime.now() + dt.timedelta(days=days),
                                   authorised_by="vouchers.manage", min_order=min_order)[customer.id]
    return session.scalars(select(Voucher).where(Voucher.code == code)).one()


def test_a_voucher_is_redeemed_once_by_its_owner_and_taken_off_the_goods(session, shop):
    agent, customer = shop["agent"], shop["customer"]
    amount = _voucher(session, customer, "amount", "15")
    made = orders.record_order(session, agent, customer.id, {
        "items": [{"product_id": shop["book"].id, "quantity": 2}], "shipping": "5.00",
        "voucher_code": "-".join([amount.code[:4], amount.code[4:8], amount.code[8:]]).lower()})
    assert made["subtotal"] == Decimal("40.00") and made["discount"] == Decimal("15.00")
    assert made["total"] == Decimal("30.00") and made["voucher"].endswith(amount.code[-4:])
    session.refresh(amount)
    assert amount.status == "redeemed" and amount.redeemed_order_id == made["id"] and amount.version == 2
    listed = {row["code"]: row for row in vouchers.customer_vouchers(session, agent, customer.id).rows}
    assert listed[amount.code]["redeemed_order_number"] == made["order_number"]  # as the orders show it, not its id
    with pytest.raises(platform.ValidationError, match=r"Voucher …\w{4} was already used on .*; a voucher is used once"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": amount.code})
    percent = _voucher(session, customer, "percent", "12.5", min_order=30)
    with pytest.raises(platform.ValidationError, match=r"needs an order of at least 30.00 \(this order's goods come "
                                                        r"to 20.00\)"):
        orders.record_order(session, agent, customer.id, {"total": 20, "shipping": 15, "voucher_code": percent.code})
    made = orders.record_order(session, agent, customer.id, {"total": "45.50", "voucher_code": percent.code})
    assert made["discount"] == Decimal("5.69") and made["total"] == Decimal("39.81")  # 12.5% of 45.50, rounded
    actions = session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "voucher")).all()
    assert actions.count("voucher.redeem") == 2


def test_a_voucher_that_cannot_be_used_refuses_the_order_with_the_reason(session, shop):
    agent, customer = shop["agent"], shop["customer"]
    other = make_customer(session, START)
    theirs = _voucher(session, other)
    with pytest.raises(platform.ValidationError, match="was issued to another customer"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": theirs.code})
    expired = _voucher(session, customer, days=-1)
    with pytest.raises(platform.ValidationError, match=r"Voucher …\w{4} expired on \d{4}-"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": expired.code})
    void = _voucher(session, customer)
    assert vouchers.void_voucher(session, agent, void.id, "Issued by mistake") == "void"
    with pytest.raises(platform.ValidationError, match=r"was voided \(Issued by mistake\)"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": void.code})
    with pytest.raises(platform.ValidationError, match="There is no voucher 'ABCDEFGHJKLM'"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": "abcd efgh jklm"})
    with pytest.raises(platform.ValidationError, match="is not a voucher code"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": "DROP TABLE;"})
    mine = _voucher(session, customer)
    with pytest.raises(platform.ValidationError, match="cannot be used on an order in USD"):
        orders.record_order(session, agent, customer.id, {"total": 50, "currency": "usd", "voucher_code": mine.code})
    risk.restrict_customer(session, make_user(session, "risk_analyst"), customer.id, "restrict", "Promo abuse")
    with pytest.raises(risk.RiskRestricted, match=r"restricted until .* \(Promo abuse\) and cannot redeem a voucher"):
        orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": mine.code})
    assert _orders(session, customer) == 0
    session.refresh(mine)
    assert mine.status == "issued"


def test_a_code_redeemed_by_a_stale_reader_is_refused_by_the_conditional_update(engine):
    """Two orders read the same unused voucher; the first redeems it and commits; the second, still
    holding what it read (SQLite lets one writer at a time, so it writes after the first), is refused
    by the conditional UPDATE and writes nothing."""
    with platform.unit_of_work(engine) as session:
        agent = make_user(session, "support_agent")
        customer = make_customer(session, START)
        voucher = _voucher(session, customer)
        ids = (agent.id, customer.id, voucher.id)
    with pytest.raises(platform.ConflictError, match="used by another order at the same moment"), \
            platform.unit_of_work(engine) as second:
        stale = second.get(Voucher, ids[2])
        assert stale.status == "issued"
        second.expunge(stale)  # keep what was read, end the read transaction, write in a new one
        second.rollback()
        second.add(stale)
        with platform.unit_of_work(engine) as first:
            vouchers.redeem_voucher(first, first.get(User, ids[0]), first.get(Voucher, ids[2]),
                                    make_order(first, first.get(Customer, ids[1]), START, 20).id, START)
        assert stale.status == "issued"
        vouchers.redeem_voucher(second, second.get(User, ids[0]), stale,
                                make_order(second, second.get(Customer, ids[1]), START, 30).id, START)
    with platform.unit_of_work(engine) as session:
        assert session.get(Voucher, ids[2]).status == "redeemed"
        assert session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == ids[1])) == 1


def test_two_orders_racing_for_one_code_on_postgresql_only_one_wins(engine, backend):
    """Two sessions place an order with the same code at the same moment: the second waits on the
    first's row lock, re-checks the condition after its commit and is refused."""
    if backend != "postgresql":
        pytest.skip("row locks and concurrent transactions: PostgreSQL")
    import threading

    with platform.unit_of_work(engine) as session:
        agent = make_user(session, "support_agent")
        customer = make_customer(session, START)
        code = _voucher(session, customer).code
        ids = (agent.id, customer.id)
    results: dict[str, object] = {}
    both_checked = threading.Barrier(2)

    def place(name: str) -> None:
        try:
            with platform.unit_of_work(engine) as session:
                actor = session.get(User, ids[0])
                # both read the voucher as unused before either writes
                vouchers.check_voucher(session, code, ids[1], Decimal(50), "EUR", dt.datetime.now())
                both_checked.wait(timeout=10)
                results[name] = orders.record_order(session, actor, ids[1], {"total": 50, "voucher_code": code})
        except platform.DomainError as exc:
            results[name] = exc

    threads = [threading.Thread(target=place, args=(name,)) for name in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    refused = [r for r in results.values() if isinstance(r, platform.DomainError)]
    placed = [r for r in results.values() if isinstance(r, dict)]
    assert len(placed) == 1 and len(refused) == 1, results
    assert "used by another order at the same moment" in str(refused[0]) or "already used" in str(refused[0])
    with platform.unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == ids[1])) == 1
        assert session.scalars(select(Voucher).where(Voucher.code == code)).one().redeemed_order_id == placed[0]["id"]


def test_a_voucher_issued_by_hand_needs_the_permission_a_reason_and_sane_values(session, shop):
    agent, customer = shop["agent"], shop["customer"]
    with pytest.raises(platform.PermissionDenied):
        vouchers.issue_voucher(session, make_user(session, "analyst"), customer.id, "amount", 5, reason="Goodwill")
    for kind, value, days, reason, message in (
            ("cash", 5, None, "Goodwill", "A voucher is one of percent, amount"),
            ("percent", 95, None, "Goodwill", "at most 90% off"),
            ("amount", 0, None, "Goodwill", "above 0"),
            ("amount", "lots", None, "Goodwill", "is not a number"),
            ("amount", 5, 0, "Goodwill", "valid for 1 to 730 days"),
            ("amount", 5, None, "  ", "Give a reason")):
        with pytest.raises(platform.ValidationError, match=message):
            vouchers.issue_voucher(session, agent, customer.id, kind, value, days=days, reason=reason)
    made = vouchers.issue_voucher(session, agent, customer.id, "amount", "7.5", days=14, min_order=20,
                                  reason="Parcel arrived late")
    assert (made.kind, made.value, made.min_order, made.source, made.status) == (
        "amount", Decimal("7.50"), Decimal("20.00"), "manual", "issued")
    assert len(made.code) == 12 and set(made.code) <= set(platform.CODE_ALPHABET)
    audit = session.scalars(select(AuditLog).where(AuditLog.action == "voucher.issue")).one()
    assert audit.after["reason"] == "Parcel arrived late" and audit.actor_username == agent.username
    shown = vouchers.customer_vouchers(session, make_user(session, "risk_analyst"), customer.id).rows
    assert shown[0]["code"] == "•" * 8 + made.code[-4:] and shown[0]["status"] == "issued"
    assert vouchers.customer_vouchers(session, agent, customer.id).rows[0]["code"] == made.code
    # The refresh marks vouchers past their expiry; a later void still records the reason.
    assert vouchers.expire_vouchers(session, platform.SYSTEM, dt.datetime.now() + dt.timedelta(days=15)) == 1
    session.refresh(made)
    assert made.status == "expired"
    assert vouchers.void_voucher(session, agent, made.id, "Customer closed the complaint") == "void"
    with pytest.raises(platform.ValidationError, match="already void"):
        vouchers.void_voucher(session, agent, made.id, "again")


def test_a_void_against_the_version_seen_is_refused_once_the_voucher_changed(session, shop):
    """A person voids what they saw: a voucher used (or voided) since is refused, not clawed back unseen."""
    agent, customer = shop["agent"], shop["customer"]
    used, kept = _voucher(session, customer), _voucher(session, customer)
    seen = {row["id"]: row["version"] for row in vouchers.customer_vouchers(session, agent, customer.id).rows}
    assert seen == {used.id: 1, kept.id: 1}
    orders.record_order(session, agent, customer.id, {"total": 50, "voucher_code": used.code})
    with pytest.raises(platform.ConflictError, match=rf"Voucher {used.id} \(…\w{{4}}\) was changed by someone else "
                                                     r"while you were editing \(version 1 is now 2\)"):
        vouchers.void_voucher(session, agent, used.id, "Goodwill withdrawn", expected_version=seen[used.id])
    session.refresh(used)
    assert (used.status, used.clawed_back_at, used.version) == ("redeemed", None, 2)
    assert vouchers.void_voucher(session, agent, kept.id, "Issued twice", expected_version=seen[kept.id]) == "void"
    with pytest.raises(platform.ConflictError, match="version 1 is now 2"):
        vouchers.void_voucher(session, agent, kept.id, "Again", expected_version=seen[kept.id])
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "voucher.void")) == 1
