"""The Shopify orders export: multi-line orders, refunds, cancellations, guests, currencies, bad rows."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, select

from crm_core import imports, platform, segmentation
from crm_core.imports import shopify
from db.engine import session_factory
from db.models import (
    REVENUE_ORDER_STATUSES,
    AuditLog,
    Customer,
    CustomerAddress,
    CustomerAnalytics,
    ImportRun,
    Order,
    OrderItem,
    Product,
)
from tests.factories import make_customer, make_user

EXPORT = Path(__file__).parent / "data" / "shopify_orders_export.csv"
NOW = dt.datetime(2024, 4, 1, 12, 0)


def run(session, source=EXPORT, **options):
    options.setdefault("now", NOW)
    return imports.import_shopify_orders(session, platform.SYSTEM, source, **options)


def table_counts(session) -> dict[str, int]:
    return {model.__name__: session.scalar(select(func.count()).select_from(model))
            for model in (Customer, Order, OrderItem, Product, CustomerAddress)}


def test_the_hand_written_export_imported_twice(session, tmp_path):
    ines = make_customer(session, dt.datetime(2023, 5, 1), email="INES@example.com", first_name="Inès",
                         last_name="Dubois")
    errors_file = tmp_path / "errors.csv"
    report = run(session, errors_path=errors_file)
    figures = dict(report.figures())
    assert figures == {
        "rows read": 14, "orders in the file": 10, "orders imported": 9, "line items": 13, "customers created": 5,
        "products created": 5, "refunded or cancelled": 2, "partially refunded": 1,
        "skipped (already imported)": 0, "in another currency": 1, "orders with invalid rows": 0, "invalid": 1,
    }
    # The second currency: the shop's books are in EUR (most orders in the file), #1008 is in USD.
    assert (report.currency, report.other_currency) == ("EUR", {"USD": 1})
    with open(errors_file, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[1][:2] == ["4", "#1008"] and "in USD, not in the shop currency EUR" in rows[1][2]

    session.expire_all()
    orders = {o.order_number: o for o in session.scalars(select(Order))}
    assert set(orders) == {f"#{n}" for n in range(1001, 1011)} - {"#1008"}
    status = {number: o.status for number, o in orders.items()}
    assert status == {"#1001": "paid", "#1002": "paid", "#1003": "paid", "#1004": "placed", "#1005": "placed",
                      "#1006": "refunded", "#1007": "paid", "#1009": "cancelled", "#1010": "paid"}
    # A partial refund stays a purchase worth what the shop kept; the export's other amounts stay.
    partial = orders["#1007"]
    assert (partial.subtotal, partial.total, partial.item_count) == (Decimal("80.00"), Decimal("55.00"), 2)
    multi = orders["#1003"]
    assert (multi.subtotal, multi.discount, multi.shipping, multi.total, multi.item_count) == (
        Decimal("100.50"), Decimal("10.00"), Decimal("4.90"), Decimal("95.40"), 4)
    assert multi.ordered_at == dt.datetime(2024, 3, 5, 13, 22, 10)  # 14:22:10 +0100, as naive UTC
    assert orders["#1005"].ordered_at == dt.datetime(2024, 3, 8, 0, 0)  # 08:00 +0800
    assert {o.currency for o in orders.values()} == {"EUR"}

    lines = session.execute(
        select(Product.sku, Product.name, OrderItem.quantity, OrderItem.unit_price, OrderItem.line_total)
        .join(OrderItem, OrderItem.product_id == Product.id).where(OrderItem.order_id == multi.id)
        .order_by(OrderItem.id)).all()
    gift_sku = lines[2][0]
    assert lines == [("SHIRT-L", "Linen shirt", 1, Decimal("55.00"), Decimal("55.00")),
                     ("MUG-BL", "Mug – Blue", 2, Decimal("21.00"), Decimal("42.00")),
                     (gift_sku, "Gift wrapping 🎁", 1, Decimal("3.50"), Decimal("3.50"))]
    assert gift_sku.startswith("shopify:")  # a custom line without a SKU
    assert session.scalar(select(Product.brand).where(Product.sku == "SHIRT-L")) == "Linho"

    people = {c.id: c for c in session.scalars(select(Customer))}
    by_order = {number: people[o.customer_id] for number, o in orders.items()}
    # One customer per email, case ignored; the existing one is reused, not duplicated.
    assert by_order["#1001"] is by_order["#1003"] is by_order["#1006"]
    assert by_order["#1009"].id == ines.id
    assert by_order["#1004"] is by_order["#1007"]
    zoe = by_order["#1001"]
    assert (zoe.first_name, zoe.last_name, zoe.country_code, zoe.city, zoe.phone) == (
        "Zoë", "Müller", "DE", "Berlin", "+4930901820")
    assert zoe.signed_up_at == dt.datetime(2024, 3, 1, 8, 0) and zoe.acquisition_channel == "import"
    assert (by_order["#1005"].first_name, by_order["#1005"].city) == ("李雷", "北京")
    # Guests without an email: one customer per order name, named from the order.
    guest = by_order["#1002"]
    assert (guest.external_id, guest.email, guest.first_name, guest.last_name) == (
        "shopify-guest:#1002", None, "Ñandú", "Pérez")
    assert (by_order["#1010"].first_name, by_order["#1010"].country_code) == ("Søren", "DK")
    address = session.scalar(select(CustomerAddress).where(CustomerAddress.customer_id == zoe.id))
    assert (address.kind, address.line1, address.postal_code, address.country_code) == (
        "billing", "Torstraße 12", "10115", "DE")
    assert session.scalar(select(func.count()).select_from(CustomerAddress)
                          .where(CustomerAddress.customer_id == ines.id)) == 0  # existing customers are left alone

    # Refunds and cancellations count neither as revenue nor as purchases.
    revenue = session.scalar(select(func.sum(Order.total)).where(Order.status.in_(REVENUE_ORDER_STATUSES)))
    assert revenue == Decimal("306.10")
    segmentation.refresh_snapshot(session, dt.date(2024, 3, 31))
    snapshot = {row.customer_id: row for row in session.scalars(select(CustomerAnalytics))}
    assert (snapshot[zoe.id].order_count, snapshot[zoe.id].total_revenue) == (2, Decimal("165.30"))
    assert (snapshot[by_order["#1007"].id].order_count, snapshot[by_order["#1007"].id].total_revenue) == (
        2, Decimal("70.00"))
    assert snapshot[ines.id].order_count == 0

    run_row = session.scalar(select(ImportRun).where(ImportRun.id == report.run_id))
    assert (run_row.entity, run_row.created, run_row.invalid) == ("orders", 9, 1)
    assert run_row.message.startswith("Shopify orders export. Shop currency EUR")
    assert session.scalar(select(AuditLog.action).where(AuditLog.entity_id == str(report.run_id))) == "orders.import"

    before = table_counts(session)
    again = run(session)
    assert (again.created, again.skipped, again.customers_created, again.products_created, again.invalid) == (
        0, 9, 0, 0, 1)
    assert again.currency_source == "the orders already in the database"
    assert table_counts(session) == before


def export_text(*orders: str) -> bytes:
    header = ("Name,Email,Financial Status,Paid at,Currency,Subtotal,Shipping,Total,Discount Amount,Created at,"
              "Lineitem quantity,Lineitem name,Lineitem price,Lineitem sku,Billing Name,Billing Country,"
              "Cancelled at,Refunded Amount,Vendor,Source")
    return (header + "\n" + "".join(orders)).encode()


def test_bad_rows_leave_their_order_out_and_are_listed(session):
    data = export_text(
        "#1,a@example.com,paid,,EUR,10.00,0,10.00,0,2024-01-01 10:00:00 +0100,1,Cup,10.00,CUP,Ann Lee,US,,0,,pos\n",
        "#2,b@example.com,paid,,EUR,20.00,0,20.00,0,2024-01-02 10:00:00 +0100,x,Cup,10.00,CUP,Bo,DE,,0,,web\n",
        "#2,,,,,,,,,,1,Plate,10.00,PLATE,,,,,,\n",  # a fine row of the bad order #2
        "#3,c@example.com,paid,,EUR,5.00,0,5.00,0,2024-01-03,1,Cup,5.00,CUP,Cy,DE,,9.00,,web\n",  # refund > total
        "#4,d@example.com,bogus,,EUR,5.00,0,5.00,0,2024-02-30,1,Cup,5.00,CUP,Di,DE,,0,,web\n",
        ",e@example.com,paid,,EUR,5.00,0,5.00,0,2024-01-05,1,Cup,5.00,CUP,Ed,DE,,0,,web\n",  # no Name
        "#5,not-an-email,paid,,EUR,5.00,0,5.00,0,2024-01-05,1,Cup,5.00,CUP,Fe,DE,,0,,web\n",
        "#6,f@example.com,paid,,EUR,5.00,0,5.00,0,2099-01-05,1,Cup,5.00,CUP,Fe,DE,,0,,web\n",
        "#1,a@example.com,paid,,EUR,10.00,0,10.00,0,2024-01-01,1,Cup,10.00,CUP,Ann,US,,0,,web\n",  # #1 again
        "#7,g@example.com,paid,,EUR,5.00,0,5.00,0,2024-01-07,1,Cu\x00p,5.00,CUP,Gi,DE,,0,,web\n",  # a NUL byte
        "#8,h@example.com,paid,,EUR,5.00,0,,0,2024-01-08,1,Cup,5.00,CUP,Ha,DE,,0,,web\n",  # no Total
    )
    report = run(session, io.BytesIO(data), file_name="orders_export.csv")
    reasons = {(e.row, e.identifier): e.reason for e in report.errors}
    assert "Lineitem quantity 'x' is not a whole number" in reasons[(3, "#2")]
    assert "Refunded Amount 9.00 is more than the Total 5.00" in reasons[(5, "#3")]
    assert reasons[(6, "#4")].startswith("Created at: '2024-02-30' is not a real date; Financial Status 'bogus' "
                                         "is not one of paid, partially_refunded, refunded")
    assert reasons[(7, "row 7")] == "Name (the order number) is missing"
    assert "email 'not-an-email' is not valid" in reasons[(8, "#5")]
    assert "is in the future" in reasons[(9, "#6")]
    assert "order #1 already appeared at row 2" in reasons[(10, "#1")]
    assert "NUL character" in reasons[(11, "#7")]
    assert reasons[(12, "#8")] == "Total is missing"
    assert (report.created, report.orders_in_file, report.invalid_orders, report.invalid) == (1, 8, 7, 9)
    session.expire_all()
    only = session.scalar(select(Order))
    assert (only.order_number, only.channel, only.item_count) == ("#1", "store", 1)
    assert session.scalar(select(func.count()).select_from(Customer)) == 1  # nobody for the orders left out


@pytest.mark.parametrize(("data", "name", "message"), [
    (b"external_id,first_name,last_name,email\n1,A,B,a@b.co\n", "customers.csv",
     "not a Shopify orders export: it has no Name, Financial Status, Created at, Total"),
    (b"", "orders_export.csv", "is empty"),
    (b"\xff\xfe\x00bad bytes\n", "orders_export.csv", "not UTF-8"),
    (b"PK\x03\x04 not a workbook", "orders_export.xlsx", "not a valid Excel"),
])
def test_a_file_that_is_not_an_export_is_refused_with_one_clear_message(session, data, name, message):
    with pytest.raises(platform.ValidationError, match=message):
        run(session, io.BytesIO(data), file_name=name)
    assert session.scalar(select(func.count()).select_from(Order)) == 0


def test_only_import_roles_may_import_and_a_failure_leaves_nothing(engine, monkeypatch):
    factory = session_factory(engine)
    with platform.unit_of_work(factory) as s:
        analyst = make_user(s, "analyst")
        with pytest.raises(platform.PermissionDenied):
            imports.import_shopify_orders(s, analyst, EXPORT)

    def broken(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(shopify.order_staging, "_create_addresses", broken)
    with pytest.raises(RuntimeError), platform.unit_of_work(factory) as s:
        run(s)
    with platform.unit_of_work(factory) as s:
        assert table_counts(s) == {"Customer": 0, "Order": 0, "OrderItem": 0, "Product": 0, "CustomerAddress": 0}
        assert s.scalar(select(func.count()).select_from(ImportRun)) == 0


def test_preview_marks_each_row_with_its_order_status():
    data = export_text(
        "#1,a@example.com,paid,,EUR,10.00,0,10.00,0,2024-01-01,1,Cup,10.00,CUP,Ann,US,,0,,web\n",
        "#2,b@example.com,paid,,EUR,20.00,0,20.00,0,2024-01-02,x,Cup,10.00,CUP,Bo,DE,,0,,web\n",
        "#2,,,,,,,,,,1,Plate,10.00,PLATE,,,,,,\n",
    )
    columns, rows = imports.preview_shopify(io.BytesIO(data), file_name="orders_export.csv")
    assert columns[0] == "Name"
    assert [(r.row, r.status) for r in rows] == [(2, "ok"), (3, "invalid"), (4, "invalid")]
    assert rows[2].reason == "left out with order #2 (row 3)"


def test_preview_with_the_database_flags_imported_orders_and_other_currencies(session):
    """Against the database the preview says what the import will do: skip #1, refuse #3's currency."""
    first = export_text("#1,a@example.com,paid,,EUR,10.00,0,10.00,0,2024-01-01,1,Cup,10.00,CUP,Ann,US,,0,,web\n")
    run(session, io.BytesIO(first), file_name="orders_export.csv")
    data = export_text(
        "#1,a@example.com,paid,,EUR,10.00,0,10.00,0,2024-01-01,1,Cup,10.00,CUP,Ann,US,,0,,web\n",
        "#2,b@example.com,paid,,EUR,20.00,0,20.00,0,2024-01-02,2,Cup,10.00,CUP,Bo,DE,,0,,web\n",
        "#3,c@example.com,paid,,USD,30.00,0,30.00,0,2024-01-03,3,Cup,10.00,CUP,Cy,US,,0,,web\n",
    )
    _, rows = imports.preview_shopify(io.BytesIO(data), file_name="orders_export.csv", session=session)
    assert [(r.row, r.status) for r in rows] == [(2, "skipped"), (3, "ok"), (4, "invalid")]
    assert "already in the database" in rows[0].reason
    assert "in USD, not the shop's EUR" in rows[2].reason
    # Without the database, the file alone is checked: all three look valid.
    _, rows = imports.preview_shopify(io.BytesIO(data), file_name="orders_export.csv")
    assert [r.status for r in rows] == ["ok", "ok", "ok"]


def test_many_orders_across_chunks(session):
    lines = [f"#{n},c{n % 50}@example.com,paid,,EUR,10.00,0,10.00,0,2024-01-{1 + n % 28:02d},1,Cup,10.00,"
             f"CUP-{n % 7},N{n},DE,,0,,web\n" for n in range(300)]
    report = run(session, io.BytesIO(export_text(*lines)), file_name="orders_export.csv", chunk_size=32)
    assert (report.created, report.customers_created, report.products_created, report.items_created) == (
        300, 50, 7, 300)
