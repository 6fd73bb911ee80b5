"""The Shopify admin orders export (Orders > Export > CSV), imported as Shopify documents it.

The file has one row per line item. Order-level fields (Name, Email, Financial Status, Paid at,
Created at, Cancelled at, Currency, Subtotal, Shipping, Discount Amount, Total, Refunded Amount,
Billing/Shipping name, address, country and phone, Source) are filled on an order's first row
only; Lineitem quantity, name, price and sku are on every row. The rows of an order follow each
other; an order is named by its Name (#1001), which becomes the order number here, so importing
the same export twice adds nothing ("skipped (already imported)").

What each order becomes:

- Customer: found by email (trimmed, case ignored; an existing customer is reused, never
  duplicated), else created with the billing name (else the shipping name), country, city and
  phone, and the billing and shipping address of their latest order. A guest checkout without an
  email gets one customer per order, with the external id `shopify-guest:<Name>`.
- Status (`ORDER_STATUS`): paid and partially_refunded are paid; refunded is refunded; voided
  and expired are cancelled, and so is every order with a Cancelled at date; pending, authorized
  and partially_paid are placed (ordered, not yet paid). Refunded and cancelled orders count
  neither as revenue nor as purchases (they are not in REVENUE_ORDER_STATUSES).
- Partial refunds: an order that kept part of its money stays a purchase, and its total is the
  Total less the Refunded Amount, so revenue counts what the shop kept; subtotal, discount and
  shipping stay as exported. A Refunded Amount equal to the Total makes the order refunded.
- Items and products: one item per row (quantity, Lineitem price, line total = quantity x price
  less the Lineitem discount); products are found by Lineitem sku, or, for a line without a SKU
  (a custom item), by a SKU derived from its name (`shopify:<hash>`), and created when unknown
  with the Vendor as brand.
- Currency: an order keeps its Currency. Revenue adds order totals without converting, so an
  order in another currency than the shop's is not imported and is listed with the reason
  (see `order_staging.shop_currency` for how the shop currency is decided).
- Channel: Source pos is the store, iphone and android are mobile, everything else the web.

Times such as `2024-03-05 14:22:10 +0100` are stored as naive UTC. A problem on any row of an
order leaves the whole order out; each bad row is listed with its row number and the reason.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy.orm import Session

from crm_core.imports import order_staging
from crm_core.imports.files import Progress, RawRow, Source, TableReader, detect_format
from crm_core.imports.runs import ErrorSink, ImportReport, PreviewRow, finish_run, start_run
from crm_core.imports.values import (
    cached_email,
    email_key,
    normalize_country,
    normalize_phone,
    parse_amount,
    parse_datetime,
    parse_quantity,
)
from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from db import bulk
from db.models import REVENUE_ORDER_STATUSES, utcnow

REQUIRED_COLUMNS = ("Name", "Email", "Financial Status", "Created at", "Total", "Lineitem quantity",
                    "Lineitem name", "Lineitem price")
OPTIONAL_COLUMNS = (
    "Paid at", "Cancelled at", "Currency", "Subtotal", "Shipping", "Discount Amount", "Refunded Amount",
    "Lineitem sku", "Lineitem discount", "Vendor", "Source", "Phone",
    *(f"{kind} {part}" for kind in ("Billing", "Shipping")
      for part in ("Name", "Address1", "Address2", "City", "Zip", "Province", "Country", "Phone")),
)
ORDER_LEVEL = tuple(c for c in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
                    if not c.startswith("Lineitem ") and c not in ("Name", "Vendor"))
FINANCIAL_STATUS = {
    "paid": "paid", "partially_refunded": "paid", "refunded": "refunded", "voided": "cancelled",
    "expired": "cancelled", "pending": "placed", "authorized": "placed", "partially_paid": "placed",
}
CHANNELS = {"pos": "store", "iphone": "mobile", "android": "mobile"}
GUEST_PREFIX = "shopify-guest:"
ORDER_CHUNK = 5_000  # orders validated in Python, then copied to staging in one bulk load
ZERO = Decimal("0.00")


def _key(column: str) -> str:
    return re.sub(r"\s+", " ", column.strip()).casefold()


def shopify_columns(columns: list[str]) -> dict[str, str]:
    """Shopify column name -> the file's column, or a ValidationError when the file is not an export."""
    present = {_key(c): c for c in columns}
    found = {name: present[_key(name)] for name in (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS) if _key(name) in present}
    missing = [name for name in REQUIRED_COLUMNS if name not in found]
    if missing:
        raise ValidationError(
            f"This is not a Shopify orders export: it has no {', '.join(missing)} column"
            f"{'s' if len(missing) > 1 else ''} (an export from Shopify admin > Orders > Export has "
            f"{', '.join(REQUIRED_COLUMNS)}, ...)."
        )
    return found


def _reader(source: Source, file_name: str | None) -> TableReader:
    name = file_name or (str(source) if isinstance(source, str | os.PathLike) else getattr(source, "name", None))
    try:
        fmt = detect_format(name)
    except ValidationError:
        fmt = "csv"  # Shopify sends CSV; a name without a known extension is read as CSV
    return TableReader(source, fmt, name)


@dataclass
class ShopifyOrder:
    """One valid order: staging rows for orders, lines and addresses."""

    order: dict[str, Any]
    lines: list[dict[str, Any]]
    addresses: list[dict[str, Any]]


def _text(value: str | None, limit: int) -> str | None:
    value = (value or "").strip()
    return value[:limit] or None


def _split_name(full: str | None) -> tuple[str, str]:
    parts = (full or "").split(maxsplit=1)
    return (parts[0][:100] if parts else ""), (parts[1][:100] if len(parts) > 1 else "")


def _product_sku(sku: str, name: str) -> str:
    if sku:
        return sku
    return "shopify:" + hashlib.sha1(name.casefold().encode()).hexdigest()[:16]


def validate_order(name: str, rows: list[RawRow], columns: dict[str, str], now: dt.datetime
                   ) -> tuple[ShopifyOrder | None, list[tuple[int, str]]]:
    """One order from its rows, or the (row, reason) problems that leave it out."""
    problems: list[tuple[int, str]] = []
    first_row = rows[0].number

    def value(row: RawRow, column: str) -> str:
        actual = columns.get(column)
        return (row.values.get(actual) or "").strip() if actual else ""

    # The first non-empty value of each order-level column, and its row.
    level: dict[str, tuple[str, int]] = {}
    present = [(column, columns[column]) for column in ORDER_LEVEL if column in columns]
    for row in rows:
        for column, actual in present:
            if column not in level and (text := (row.values.get(actual) or "").strip()):
                level[column] = (text, row.number)

    def order_value(column: str) -> tuple[str, int]:
        return level.get(column, ("", first_row))

    for row in rows:
        if row.problem:
            problems.append((row.number, f"the row {row.problem}"))
    if len(name) > 64:
        problems.append((first_row, "Name (the order number) is longer than 64 characters"))

    created_text, created_row = order_value("Created at")
    ordered_at = None
    if not created_text:
        problems.append((first_row, "Created at is missing"))
    else:
        try:
            ordered_at = parse_datetime(created_text)
            if ordered_at > now + dt.timedelta(days=1):
                problems.append((created_row, f"Created at {created_text!r} is in the future"))
            elif ordered_at.year < 1900:
                problems.append((created_row, f"Created at {created_text!r} is before 1900"))
        except ValidationError as exc:
            problems.append((created_row, f"Created at: {exc}"))

    financial, financial_row = order_value("Financial Status")
    status = FINANCIAL_STATUS.get(re.sub(r"[\s-]+", "_", financial.lower()))
    if not financial:
        problems.append((first_row, "Financial Status is missing"))
    elif status is None:
        problems.append((financial_row, f"Financial Status {financial!r} is not one of {', '.join(FINANCIAL_STATUS)}"))

    amounts: dict[str, Decimal] = {}
    for column in ("Total", "Subtotal", "Shipping", "Discount Amount", "Refunded Amount"):
        text, where = order_value(column)
        if not text:
            if column == "Total":
                problems.append((first_row, "Total is missing"))
            amounts[column] = ZERO
            continue
        try:
            amounts[column] = parse_amount(text)
        except ValidationError as exc:
            problems.append((where, f"{column}: {exc}"))
            amounts[column] = ZERO
    total, refunded = amounts["Total"], amounts["Refunded Amount"]
    if refunded > total:
        problems.append((first_row, f"Refunded Amount {refunded} is more than the Total {total}"))

    currency_text, currency_row = order_value("Currency")
    currency = currency_text.upper() or None
    if currency and not re.fullmatch(r"[A-Z]{3}", currency):
        problems.append((currency_row, f"Currency {currency!r} is not a three-letter ISO 4217 code such as EUR"))

    email_text, email_row = order_value("Email")
    email = None
    if email_text:
        try:
            email = cached_email(email_text)
        except ValidationError as exc:
            problems.append((email_row, str(exc)))

    lines: list[dict[str, Any]] = []
    item_count = 0
    for row in rows:
        quantity_text, price_text = value(row, "Lineitem quantity"), value(row, "Lineitem price")
        product = value(row, "Lineitem name")
        sku = value(row, "Lineitem sku")
        reasons = []
        quantity = 0
        price = ZERO
        if not quantity_text:
            reasons.append("Lineitem quantity is missing")
        else:
            try:
                quantity = parse_quantity(quantity_text)
            except ValidationError as exc:
                reasons.append(f"Lineitem {exc}")
        if not price_text:
            reasons.append("Lineitem price is missing")
        else:
            try:
                price = parse_amount(price_text)
            except ValidationError as exc:
                reasons.append(f"Lineitem price: {exc}")
        if not product and not sku:
            reasons.append("Lineitem name and sku are both missing")
        if len(sku) > 64:
            reasons.append("Lineitem sku is longer than 64 characters")
        discount = ZERO
        if value(row, "Lineitem discount"):
            try:
                discount = parse_amount(value(row, "Lineitem discount"))
            except ValidationError as exc:
                reasons.append(f"Lineitem discount: {exc}")
        if reasons:
            problems.extend((row.number, reason) for reason in reasons)
            continue
        item_count += quantity
        lines.append({
            "row_number": row.number, "order_number": name, "sku": _product_sku(sku, product),
            "product_name": (product or sku)[:200], "brand": (value(row, "Vendor") or "")[:64],
            "quantity": quantity, "unit_price": price, "line_total": max(ZERO, price * quantity - discount),
        })
    if problems:
        return None, problems

    if order_value("Cancelled at")[0]:
        status = "cancelled"
    kept = total
    if status in REVENUE_ORDER_STATUSES and refunded > 0:
        if refunded == total:
            status = "refunded"
        else:
            kept = total - refunded  # a partial refund: revenue counts what the shop kept

    country = None
    for column in ("Billing Country", "Shipping Country"):
        text = order_value(column)[0]
        if text:
            try:
                country = normalize_country(text)
                break
            except ValidationError:
                continue  # an unreadable country leaves the customer's country empty, not the order out
    full_name = order_value("Billing Name")[0] or order_value("Shipping Name")[0]
    first, last = _split_name(full_name)
    if not email and not full_name:
        first, last = "Guest", name[:100]
    phone = None
    for column in ("Billing Phone", "Phone", "Shipping Phone"):
        text = order_value(column)[0].lstrip("'")
        if text:
            try:
                phone = normalize_phone(text, country)
                break
            except ValidationError:
                continue
    addresses = []
    for kind in ("billing", "shipping"):
        prefix = kind.title()
        line1, city = order_value(f"{prefix} Address1")[0], order_value(f"{prefix} City")[0]
        country_text = order_value(f"{prefix} Country")[0]
        try:
            address_country = normalize_country(country_text) if country_text else None
        except ValidationError:
            address_country = None
        if line1 and city and address_country:
            addresses.append({
                "order_number": name, "kind": kind, "line1": line1[:200],
                "line2": _text(order_value(f"{prefix} Address2")[0], 200), "city": city[:100],
                "region": _text(order_value(f"{prefix} Province")[0], 100),
                "postal_code": _text(order_value(f"{prefix} Zip")[0].lstrip("'"), 20), "country_code": address_country,
            })
    order = {
        "row_number": first_row, "order_number": name,
        "external_id": None if email else f"{GUEST_PREFIX}{name}", "email": email, "email_key": email_key(email),
        "first_name": first, "last_name": last, "phone": phone, "country_code": country,
        "city": _text(order_value("Billing City")[0] or order_value("Shipping City")[0], 100),
        "ordered_at": ordered_at, "status": status,
        "channel": CHANNELS.get(order_value("Source")[0].lower(), "web"), "currency": currency,
        "subtotal": amounts["Subtotal"], "discount": amounts["Discount Amount"], "shipping": amounts["Shipping"],
        "total": kept, "refunded": refunded, "item_count": item_count,
    }
    return ShopifyOrder(order, lines, addresses), []


def grouped_orders(rows: Iterator[RawRow], columns: dict[str, str]
                   ) -> Iterator[tuple[str, list[RawRow], list[tuple[int, str]]]]:
    """(Name, rows, problems) per order, in file order; rows without a Name or of an order seen
    earlier in the file come as problems of their own (with an empty or repeated Name)."""
    name_column = columns["Name"]
    seen: dict[str, int] = {}
    current: str | None = None
    block: list[RawRow] = []
    for row in rows:
        name = (row.values.get(name_column) or "").strip()
        if name == current:
            block.append(row)
            continue
        if block and current is not None:
            yield current, block, []
        current, block = None, []
        if not name:
            yield "", [row], [(row.number, "Name (the order number) is missing")]
            continue
        if name in seen:
            yield name, [row], [(row.number, f"order {name} already appeared at row {seen[name]}; the rows of one "
                                             "order must follow each other (is the export in the file twice?)")]
            continue
        seen[name] = row.number
        current, block = name, [row]
    if block and current is not None:
        yield current, block, []


@dataclass
class ShopifyReport(ImportReport):
    orders_in_file: int = 0
    invalid_orders: int = 0
    statuses: dict[str, int] = field(default_factory=dict)  # imported orders by status
    partially_refunded: int = 0

    def apply(self, loaded: order_staging.LoadResult) -> None:
        super().apply(loaded)
        self.statuses = dict(loaded.statuses or {})
        self.partially_refunded = loaded.partially_refunded

    def figures(self) -> list[tuple[str, int]]:
        not_revenue = sum(n for status, n in self.statuses.items() if status not in REVENUE_ORDER_STATUSES)
        return [("rows read", self.rows_read), ("orders in the file", self.orders_in_file),
                ("orders imported", self.created), ("line items", self.items_created),
                ("customers created", self.customers_created), ("products created", self.products_created),
                ("refunded or cancelled", not_revenue), ("partially refunded", self.partially_refunded),
                ("skipped (already imported)", self.skipped),
                ("in another currency", sum(self.other_currency.values())),
                ("orders with invalid rows", self.invalid_orders), ("invalid", self.invalid)]

    def notes(self) -> list[str]:
        notes = ["Shopify orders export.", *super().notes()]
        not_revenue = sum(n for status, n in self.statuses.items() if status not in REVENUE_ORDER_STATUSES)
        if not_revenue:
            notes.append(f"{_orders(not_revenue)} refunded or cancelled, imported with that status: neither revenue "
                         "nor a purchase.")
        if self.partially_refunded:
            notes.append(f"{_orders(self.partially_refunded)} partially refunded: revenue counts the Total less the "
                         "Refunded Amount.")
        placed = self.statuses.get("placed", 0)
        if placed:
            notes.append(f"{_orders(placed)} with a pending, authorized or partially paid payment, imported as placed.")
        return notes


def _orders(count: int) -> str:
    return f"{count:,} order{'' if count == 1 else 's'}"


def _frame(records: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame.from_records(records, columns=columns)
    for name in ("subtotal", "discount", "shipping", "total", "refunded", "unit_price", "line_total"):
        if name in frame:
            frame[name] = frame[name].map(str)
    if "ordered_at" in frame:
        frame["ordered_at"] = pd.to_datetime(frame["ordered_at"])
    return frame


ORDER_COLUMNS = ["row_number", "order_number", "external_id", "email", "email_key", "first_name", "last_name",
                 "phone", "country_code", "city", "ordered_at", "status", "channel", "currency", "subtotal",
                 "discount", "shipping", "total", "item_count"]
LINE_COLUMNS = ["row_number", "order_number", "sku", "product_name", "brand", "quantity", "unit_price", "line_total"]
ADDRESS_COLUMNS = ["order_number", "kind", "line1", "line2", "city", "region", "postal_code", "country_code"]


def import_shopify_orders(
    session: Session, actor: Actor, source: Source, *, file_name: str | None = None,
    errors_path: str | os.PathLike | None = None, chunk_size: int = ORDER_CHUNK, progress: Progress | None = None,
    now: dt.datetime | None = None,
) -> ShopifyReport:
    """Import a Shopify orders export (see the module docstring); writes into the caller's session."""
    require(actor, "customers.import")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    now = now or utcnow()
    started = time.perf_counter()
    with _reader(source, file_name) as reader:
        columns = shopify_columns(reader.columns)
        report = ShopifyReport("orders", Path(reader.name or "upload").name, reader.format)
        run = start_run(session, actor, "orders", reader, None)
        sink = ErrorSink(errors_path)
        connection = session.connection()
        staging = order_staging.create_staging(connection)
        try:
            pending: list[ShopifyOrder] = []

            def flush() -> None:
                if not pending:
                    return
                bulk.load(connection, staging.orders,
                          _frame([o.order for o in pending], [*ORDER_COLUMNS, "refunded"]))
                bulk.load(connection, staging.lines, _frame([line for o in pending for line in o.lines], LINE_COLUMNS))
                bulk.load(connection, staging.addresses,
                          _frame([a for o in pending for a in o.addresses], ADDRESS_COLUMNS))
                pending.clear()

            def counted(rows: Iterator[RawRow]) -> Iterator[RawRow]:
                for row in rows:
                    report.rows_read += 1
                    yield row

            for name, rows, problems in grouped_orders(counted(reader.rows()), columns):
                if not problems:
                    report.orders_in_file += 1
                    order, problems = validate_order(name, rows, columns, now)
                    report.invalid_orders += bool(problems)
                if problems:
                    by_row: dict[int, list[str]] = {}
                    for row_number, reason in problems:
                        by_row.setdefault(row_number, []).append(reason)
                    for row_number, reasons in sorted(by_row.items()):
                        sink.add(row_number, name or f"row {row_number}", "; ".join(reasons))
                    report.invalid += len(by_row)
                    continue
                if order is not None:
                    pending.append(order)
                if len(pending) >= chunk_size:
                    flush()
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            flush()

            def reject(row: int, identifier: str, reason: str) -> None:
                sink.add(row, identifier, reason)
                report.invalid += 1

            report.apply(order_staging.load_staged(connection, staging, now, reject))
        finally:
            sink.close()
        order_staging.drop_staging(connection, staging)
        report.errors = sink.kept
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report


def preview_shopify(source: Source, *, file_name: str | None = None, limit: int = 20,
                    session: Session | None = None) -> tuple[list[str], list[PreviewRow]]:
    """The file's columns and its first `limit` rows, each with the status of its order.

    Without a session the file alone is checked. With one, the preview also says what the import
    would do against the database: orders already imported are "skipped", and orders in another
    currency than the shop's (see `order_staging.shop_currency`) are "invalid" with that reason.
    """
    now = utcnow()
    orders: list[tuple[str, list[RawRow], list[tuple[int, str]], str | None]] = []
    shown = 0
    with _reader(source, file_name) as reader:
        columns = reader.columns
        found = shopify_columns(columns)
        for name, block, problems in grouped_orders(reader.rows(), found):
            currency = None
            if name and not problems:
                order, problems = validate_order(name, block, found, now)
                currency = order.order["currency"] if order is not None else None
            orders.append((name, block, problems, currency))
            shown += len(block)
            if shown >= limit:
                break
    existing: set[str] = set()
    shop = None
    shop_source = ""
    if session is not None:
        connection = session.connection()
        valid = [(name, currency) for name, _, problems, currency in orders if name and not problems]
        existing = order_staging.existing_order_numbers(connection, [name for name, _ in valid])
        shop = order_staging.stored_currency(connection)
        shop_source = "the currency of the orders already in the database"
        if shop is None:
            counts: dict[str, int] = {}
            for _, currency in valid:
                if currency:
                    counts[currency] = counts.get(currency, 0) + 1
            shop = max(counts, key=lambda c: counts[c]) if counts else None  # first seen wins a tie
            shop_source = "the most common currency in the file"
    rows: list[PreviewRow] = []
    for name, block, problems, currency in orders:
        reasons: dict[int, list[str]] = {}
        for row_number, reason in problems:
            reasons.setdefault(row_number, []).append(reason)
        for row in block:
            own = reasons.get(row.number)
            if own:
                rows.append(PreviewRow(row.number, row.values, "invalid", "; ".join(own)))
            elif problems:
                rows.append(PreviewRow(row.number, row.values, "invalid",
                                       f"left out with order {name} (row {problems[0][0]})"))
            elif name in existing:
                rows.append(PreviewRow(row.number, row.values, "skipped",
                                       f"order {name} is already in the database: importing adds nothing"))
            elif shop and currency and currency != shop:
                rows.append(PreviewRow(row.number, row.values, "invalid",
                                       f"order {name} is in {currency}, not the shop's {shop} ({shop_source}): "
                                       "it will not be imported"))
            else:
                rows.append(PreviewRow(row.number, row.values, "ok", ""))
    return columns, rows[:limit]
