"""Order imports from a plain transaction log: one order (or, with a product column, one order line)
per row, validated a chunk at a time and staged in bulk, then loaded set-based by `order_staging`.

Import functions write into the caller's session and never commit: the caller's unit of work makes
an import all or nothing.
"""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Iterable
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import (
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    cast,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.orm import Session

from crm_core.imports import order_staging
from crm_core.imports.fields import ORDER_FIELDS, normalized_column
from crm_core.imports.files import Progress, Source, TableReader
from crm_core.imports.runs import ErrorSink, ImportReport, PreviewRow, batches, finish_run, start_run
from crm_core.imports.values import (
    CURRENCY_CODE,
    ISO_DATE,
    PLAIN_AMOUNT,
    PLAIN_QUANTITY,
    cached_email,
    email_key,
    parse_amount,
    parse_datetime,
    parse_quantity,
)
from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from db import bulk
from db.models import ORDER_STATUSES, utcnow

ORDER_CHUNK = 50_000
# An order's status as written in a log -> ORDER_STATUSES. Shopify's financial statuses are accepted
# too, with the meaning `shopify` gives them (a pending or authorized payment is a placed order).
ORDER_STATUS_VALUES = {
    **{status: status for status in ORDER_STATUSES},
    "canceled": "cancelled", "voided": "cancelled", "void": "cancelled", "expired": "cancelled",
    "pending": "placed", "authorized": "placed", "partially_paid": "placed", "partially_refunded": "paid",
    "refund": "refunded", "return": "returned", "completed": "delivered", "complete": "delivered",
}


def _row_staging_table() -> Table:
    return Table(
        "import_order_rows", MetaData(),
        Column("row_number", Integer), Column("order_number", String(64)), Column("external_id", String(100)),
        Column("email", String(254)), Column("email_key", String(254)), Column("ordered_at", DateTime),
        Column("status", String(16)), Column("currency", String(3)), Column("total", Numeric(14, 2)),
        Column("quantity", Integer), Column("sku", String(64)), Column("unit_price", Numeric(14, 2)),
        prefixes=["TEMPORARY"],
    )


LOG_ORDER_PREFIX = "L-"


def _number_repeats(connection, rows: Table) -> None:
    """Content-derived order numbers get the row's occurrence among identical rows: `L-<hash>-1`, `-2`, ..."""
    ranked = select(rows.c.row_number.label("row_number"), func.row_number().over(
        partition_by=rows.c.order_number, order_by=rows.c.row_number).label("occurrence")).subquery("ranked")
    connection.execute(
        update(rows).where(rows.c.row_number == ranked.c.row_number)
        .values(order_number=rows.c.order_number + "-" + cast(ranked.c.occurrence, String))
    )


def _positions(mask: np.ndarray) -> list[int]:
    """The row positions where `mask` holds, as plain ints."""
    return [int(i) for i in np.flatnonzero(mask)]


def _validated_orders(frame: pd.DataFrame, now: dt.datetime, report: ImportReport,
                      sink: ErrorSink) -> pd.DataFrame:
    """The staging rows of a chunk; invalid rows go to the error sink.

    Vectorized for the common spellings (ISO dates, plain amounts and quantities); anything else
    goes through the same parsers as one row at a time, for the exact message. Optional columns
    (email, status, currency, product) are None in `frame` when the import has no such column.
    """
    size = len(frame)
    problems: dict[int, list[str]] = {}

    def add(i: int, reason: str) -> None:
        problems.setdefault(i, []).append(reason)

    def given(name: str) -> bool:
        return bool(frame[name].notna().any())

    for i in _positions(frame["problem"].notna().to_numpy()):
        add(i, f"the row {frame['problem'].iat[i]}")
    customer = frame["customer"].fillna("").str.strip()
    lengths = customer.str.len().to_numpy()
    for i in _positions(lengths > 100):
        add(i, "customer id is longer than 100 characters")
    emails = pd.Series([None] * size, index=frame.index, dtype=object)
    if given("email"):
        email_text = frame["email"].fillna("").str.strip()
        for i in _positions(email_text.str.len().to_numpy() > 0):
            try:
                emails.iat[i] = cached_email(email_text.iat[i])
            except ValidationError as exc:
                add(i, str(exc))
        missing = (lengths == 0) & (email_text.str.len().to_numpy() == 0)
        with_ids = frame["customer"].notna().any()
        for i in _positions(missing):
            add(i, "customer id and email are both missing" if with_ids else "email is missing")
    else:
        for i in _positions(lengths == 0):
            add(i, "customer id is missing")

    when_text = frame["when"].str.strip()
    fast = when_text.str.fullmatch(ISO_DATE).to_numpy(dtype=bool)
    ordered = pd.Series(pd.NaT, index=frame.index, dtype="datetime64[us]")
    if fast.any():
        ordered[fast] = pd.to_datetime(when_text[fast], format="ISO8601", errors="coerce").astype("datetime64[us]")
    for i in _positions(ordered.isna().to_numpy()):
        text = when_text.iat[i]
        if not text:
            add(i, "order date is missing")
            continue
        try:
            ordered.iat[i] = parse_datetime(text)
        except ValidationError as exc:
            add(i, f"order date: {exc}")
    for i in _positions((ordered > pd.Timestamp(now + dt.timedelta(days=1))).to_numpy()):
        add(i, f"order date {when_text.iat[i]!r} is in the future")
    for i in _positions((ordered < pd.Timestamp(1900, 1, 1)).to_numpy()):
        add(i, f"order date {when_text.iat[i]!r} is before 1900")

    amount_text = frame["amount"].str.strip()
    fast = amount_text.str.fullmatch(PLAIN_AMOUNT).to_numpy(dtype=bool)
    totals = amount_text.where(fast)
    for i in _positions(~fast):
        text = amount_text.iat[i]
        if not text:
            add(i, "amount is missing")
            continue
        try:
            totals.iat[i] = str(parse_amount(text))
        except ValidationError as exc:
            add(i, str(exc))

    quantity_text = frame["quantity"].str.strip()
    fast = quantity_text.str.fullmatch(PLAIN_QUANTITY).to_numpy(dtype=bool)
    quantities = pd.to_numeric(quantity_text.where(fast), errors="coerce").fillna(0).astype("int64").to_numpy(copy=True)
    for i in _positions(~fast | (quantities < 1) | (quantities > 1_000_000)):
        try:
            quantities[i] = parse_quantity(quantity_text.iat[i])
        except ValidationError as exc:
            add(i, str(exc))

    statuses = pd.Series("paid", index=frame.index, dtype=object)
    if given("status"):
        status_text = frame["status"].fillna("").str.strip()
        mapped = status_text.str.lower().str.replace(r"[\s-]+", "_", regex=True).map(ORDER_STATUS_VALUES)
        blank = (status_text == "").to_numpy()
        statuses = mapped.where(~blank, "paid")
        for i in _positions(statuses.isna().to_numpy()):
            add(i, f"status {status_text.iat[i]!r} is not one of {', '.join(ORDER_STATUSES)}")

    currencies = pd.Series([None] * size, index=frame.index, dtype=object)
    if given("currency"):
        currency_text = frame["currency"].fillna("").str.strip().str.upper()
        valid_code = currency_text.str.fullmatch(CURRENCY_CODE.pattern).to_numpy(dtype=bool)
        currencies = currency_text.where(valid_code, None)
        for i in _positions(~valid_code & (currency_text != "").to_numpy()):
            add(i, f"currency {frame['currency'].iat[i].strip()!r} is not a three-letter ISO 4217 code such as EUR")

    skus = pd.Series([None] * size, index=frame.index, dtype=object)
    unit_prices = pd.Series([None] * size, index=frame.index, dtype=object)
    if given("product"):
        skus = frame["product"].fillna("").str.strip()
        sku_lengths = skus.str.len().to_numpy()
        for i in _positions(sku_lengths == 0):
            add(i, "product is missing")
        for i in _positions(sku_lengths > 64):
            add(i, "product SKU is longer than 64 characters")

    if frame["order"].notna().any():
        numbers = frame["order"].fillna("").str.strip()
        lengths = numbers.str.len().to_numpy()
        for i in _positions(lengths == 0):
            add(i, "order number is missing")
        for i in _positions(lengths > 64):
            add(i, "order number is longer than 64 characters")
    else:
        # From the row's content alone, so the same transactions imported again add nothing, whatever
        # the file is called or where the rows stand in it; `_number_repeats` then tells identical rows
        # (two equal purchases on one day) apart by their order of appearance.
        content = customer + "|" + when_text + "|" + totals.fillna("") + "|" + pd.Series(quantities, index=frame.index).astype(str)
        if given("email"):
            content = content + "|" + emails.fillna("")
        digest = pd.util.hash_pandas_object(content, index=False).to_numpy()
        numbers = pd.Series([f"{LOG_ORDER_PREFIX}{d:016x}" for d in digest], index=frame.index)

    valid = np.ones(size, dtype=bool)
    numbered = frame["order"].notna().to_numpy()
    email_text = frame["email"].fillna("").str.strip()
    for i, reasons in sorted(problems.items()):
        valid[i] = False
        ident = (numbers.iat[i] if numbered[i] else "") or customer.iat[i] or email_text.iat[i]
        sink.add(int(frame["number"].iat[i]), ident or f"row {frame['number'].iat[i]}", "; ".join(reasons))
    report.invalid += int((~valid).sum())
    if given("product"):
        unit_prices = pd.Series(
            [str((Decimal(t) / q).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)) if ok else None
             for t, q, ok in zip(totals.fillna("0"), quantities, valid, strict=True)], index=frame.index, dtype=object)
    return pd.DataFrame({
        "row_number": frame["number"][valid].to_numpy(), "order_number": numbers[valid].to_numpy(),
        "external_id": customer.where(customer != "", None)[valid].to_numpy(),
        "email": emails[valid].to_numpy(), "email_key": emails.map(email_key)[valid].to_numpy(),
        "ordered_at": ordered[valid].to_numpy(), "status": statuses[valid].to_numpy(),
        "currency": currencies[valid].to_numpy(), "total": totals[valid].to_numpy(), "quantity": quantities[valid],
        "sku": skus[valid].to_numpy(), "unit_price": unit_prices[valid].to_numpy(),
    })


def import_orders(
    session: Session, actor: Actor, source: Source, customer_col: str | None, date_col: str, amount_col: str,
    quantity_col: str | None = None, *, order_col: str | None = None, email_col: str | None = None,
    status_col: str | None = None, product_col: str | None = None, currency_col: str | None = None,
    fmt: str = "auto", file_name: str | None = None, errors_path: str | os.PathLike | None = None,
    chunk_size: int = ORDER_CHUNK, progress: Progress | None = None, now: dt.datetime | None = None,
) -> ImportReport:
    """Load a plain transaction log: one order per row (or, with `product_col`, one order line per row).

    The customer is the `customer_col` id (a customer that does not exist is created with it as its
    external id) or, with `email_col`, found by email and else created with it. `status_col` holds
    an order status (default paid), `currency_col` a currency code (default the shop currency:
    orders in another one are refused, see `order_staging`). With `product_col`, each row is a line
    of the order `order_col` names, of the product with that SKU (created when unknown), its amount
    the line total; customer, date, status and currency come from the order's first row.

    Rows are validated a chunk at a time and copied in bulk (COPY on PostgreSQL) into a temporary
    staging table; customers, products, orders and items are then inserted set-based. Without
    `order_col`, order numbers are derived from the file name, row and content, so importing the
    same file twice adds nothing.
    """
    require(actor, "customers.import")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    if not customer_col and not email_col:
        raise ValidationError("Name the customer id column or the customer email column (one is required).")
    if product_col and not order_col:
        raise ValidationError("Rows of products are lines of an order: name the order number column too.")
    now = now or utcnow()
    started = time.perf_counter()
    with TableReader(source, fmt, file_name) as reader:
        named = {"customer": customer_col, "date": date_col, "amount": amount_col, "quantity": quantity_col,
                 "order number": order_col, "email": email_col, "status": status_col, "product": product_col,
                 "currency": currency_col}
        for label, column in named.items():
            if column is not None and column not in reader.columns:
                raise ValidationError(f"The file has no {label} column {column!r} "
                                      f"(its columns: {', '.join(reader.columns)}).")
        report = ImportReport("orders", Path(reader.name or "upload").name, reader.format)
        run = start_run(session, actor, "orders", reader, None)
        sink = ErrorSink(errors_path)
        connection = session.connection()
        rows_table = _row_staging_table()
        rows_table.create(connection)
        staging = order_staging.create_staging(connection)
        try:
            sources = {"customer": customer_col, "when": date_col, "amount": amount_col, "quantity": quantity_col,
                       "order": order_col, "email": email_col, "status": status_col, "product": product_col,
                       "currency": currency_col}
            chunk: dict[str, list] = {k: [] for k in ("number", "problem", *sources)}

            def flush() -> None:
                if chunk["number"]:
                    frame = _validated_orders(pd.DataFrame(chunk), now, report, sink)
                    bulk.load(connection, rows_table, frame)
                    for values in chunk.values():
                        values.clear()

            for raw in reader.rows():
                report.rows_read += 1
                values = raw.values
                chunk["number"].append(raw.number)
                chunk["problem"].append(raw.problem)
                for key, column in sources.items():
                    if column:
                        chunk[key].append(values.get(column, ""))
                    else:
                        chunk[key].append("" if key in ("when", "amount", "quantity") else None)
                if len(chunk["number"]) >= chunk_size:
                    flush()
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            flush()
            if not order_col:
                _number_repeats(connection, rows_table)
            _stage_order_rows(connection, rows_table, staging, bool(product_col), report, sink)

            def reject(row: int, identifier: str, reason: str) -> None:
                sink.add(row, identifier, reason)
                report.invalid += 1

            loaded = order_staging.load_staged(connection, staging, now, reject)
            report.apply(loaded)
        finally:
            sink.close()
        rows_table.drop(connection)
        order_staging.drop_staging(connection, staging)
        report.errors = sink.kept
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report


ORDER_ARGUMENTS = {"customer": "customer_col", "date": "date_col", "amount": "amount_col", "quantity": "quantity_col",
                   "order_number": "order_col", "email": "email_col", "status": "status_col", "product": "product_col",
                   "currency": "currency_col"}
ORDER_ALIASES = {"customer_id": "customer", "external_id": "customer", "order_date": "date", "ordered_at": "date",
                 "created_at": "date", "total": "amount", "qty": "quantity", "order": "order_number",
                 "order_id": "order_number", "invoice": "order_number", "e_mail": "email", "sku": "product",
                 "product_sku": "product"}


def default_order_mapping(columns: Iterable[str]) -> dict[str, str]:
    """File column -> order field for the columns named like a field (customer, date, amount, ...)."""
    mapping: dict[str, str] = {}
    for column in columns:
        name = normalized_column(column)
        target = name if name in ORDER_FIELDS else ORDER_ALIASES.get(name)
        if target and target not in mapping.values():
            mapping[column] = target
    return mapping


def check_order_mapping(mapping: dict[str, str], columns: list[str]) -> dict[str, str | None]:
    """The `import_orders` column arguments of a file column -> field mapping, or what is missing."""
    chosen: dict[str, str] = {}
    for column, target in mapping.items():
        if target in (None, "", "(ignore)"):
            continue
        if target not in ORDER_FIELDS:
            raise ValidationError(f"{target!r} is not an order field; use one of {', '.join(ORDER_FIELDS)}.")
        if column not in columns:
            raise ValidationError(f"The file has no column {column!r} (its columns: {', '.join(columns)}).")
        if target in chosen:
            raise ValidationError(f"Two columns are mapped to {ORDER_FIELDS[target]}; map each field once.")
        chosen[target] = column
    missing = [ORDER_FIELDS[f] for f in ("date", "amount") if f not in chosen]
    if "customer" not in chosen and "email" not in chosen:
        missing.insert(0, f"{ORDER_FIELDS['customer']} or {ORDER_FIELDS['email']}")
    if missing:
        raise ValidationError(f"Map a column to {' and '.join(missing)}.")
    if "product" in chosen and "order_number" not in chosen:
        raise ValidationError("Rows of products are lines of an order: map a column to Order number too.")
    return {"customer_col": None, **{ORDER_ARGUMENTS[field]: column for field, column in chosen.items()}}


def preview_orders(source: Source, columns_map: dict[str, str], *, fmt: str = "auto", file_name: str | None = None,
                   limit: int = 20, now: dt.datetime | None = None) -> list[PreviewRow]:
    """The first `limit` rows of a transaction log with their status, checked as `import_orders` checks them.

    `columns_map` holds `import_orders`' column arguments (see `check_order_mapping`); no database is
    read, so the shop currency and orders imported before are only checked on import.
    """
    now = now or utcnow()
    with TableReader(source, fmt, file_name) as reader:
        raws = []
        for raw in reader.rows():
            raws.append(raw)
            if len(raws) >= limit:
                break
    sources = {"customer": "customer_col", "when": "date_col", "amount": "amount_col", "quantity": "quantity_col",
               "order": "order_col", "email": "email_col", "status": "status_col", "product": "product_col",
               "currency": "currency_col"}
    chunk: dict[str, list] = {"number": [r.number for r in raws], "problem": [r.problem for r in raws]}
    for key, argument in sources.items():
        column = columns_map.get(argument)
        blank = "" if key in ("when", "amount", "quantity") else None
        chunk[key] = [r.values.get(column, "") if column else blank for r in raws]
    report = ImportReport("orders", file_name or "upload", "csv")
    sink = ErrorSink(None)
    if raws:
        _validated_orders(pd.DataFrame(chunk), now, report, sink)
    reasons = {error.row: error.reason for error in sink.kept}
    return [PreviewRow(r.number, r.values, "invalid" if r.number in reasons else "ok", reasons.get(r.number, ""))
            for r in raws]


def _stage_order_rows(connection, rows: Table, staging: order_staging.Staging, lines: bool, report: ImportReport,
                      sink: ErrorSink) -> None:
    """From validated rows to staged orders (and lines): repeated order numbers are errors, or lines."""
    Index("ix_import_order_rows_number", rows.c.order_number, rows.c.row_number).create(connection)
    Index("ix_import_order_rows_row", rows.c.row_number).create(connection)
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {rows.name}")  # temporary tables have no statistics otherwise
    first = (select(rows.c.order_number, func.min(rows.c.row_number).label("first_row"))
             .group_by(rows.c.order_number).subquery())
    head = rows.alias("head")
    joined = (rows.join(first, first.c.order_number == rows.c.order_number)
              .join(head, head.c.row_number == first.c.first_row))
    later = rows.c.row_number != first.c.first_row
    if lines:
        other = ((func.coalesce(rows.c.external_id, "") != func.coalesce(head.c.external_id, ""))
                 | (func.coalesce(rows.c.email_key, "") != func.coalesce(head.c.email_key, "")))
        conflicts = connection.execute(select(rows.c.row_number, rows.c.order_number, head.c.row_number)
                                       .select_from(joined).where(later, other).order_by(rows.c.row_number)).all()
        for row_number, number, first_row in conflicts:
            sink.add(row_number, number, f"order {number!r} belongs to another customer on row {first_row}")
    else:
        conflicts = connection.execute(select(rows.c.row_number, rows.c.order_number, head.c.row_number)
                                       .select_from(joined).where(later).order_by(rows.c.row_number)).all()
        for row_number, number, _ in conflicts:
            sink.add(row_number, number, f"order number {number!r} appears earlier in the file")
    report.invalid += len(conflicts)
    for batch in batches([row_number for row_number, _, _ in conflicts]):
        connection.execute(rows.delete().where(rows.c.row_number.in_(batch)))
    totals = (select(rows.c.order_number, func.min(rows.c.row_number).label("first_row"),
                     func.sum(rows.c.total).label("total"), func.sum(rows.c.quantity).label("item_count"))
              .group_by(rows.c.order_number).subquery())
    connection.execute(insert(staging.orders).from_select(
        ["row_number", "order_number", "external_id", "email", "email_key", "ordered_at", "status", "channel",
         "currency", "subtotal", "discount", "shipping", "total", "item_count"],
        select(totals.c.first_row, totals.c.order_number, rows.c.external_id, rows.c.email, rows.c.email_key,
               rows.c.ordered_at, rows.c.status, literal("web"), rows.c.currency, totals.c.total, literal(0),
               literal(0), totals.c.total, totals.c.item_count)
        .select_from(totals.join(rows, rows.c.row_number == totals.c.first_row)),
    ))
    if lines:
        connection.execute(insert(staging.lines).from_select(
            ["row_number", "order_number", "sku", "product_name", "brand", "quantity", "unit_price", "line_total"],
            select(rows.c.row_number, rows.c.order_number, rows.c.sku, rows.c.sku, literal(""), rows.c.quantity,
                   rows.c.unit_price, rows.c.total),
        ))
