"""Set-based writing of imported orders: customers, products, orders, items and addresses.

Order importers (the generic transaction log in `orders`, the Shopify export in `shopify`)
validate their rows, copy them in bulk into three temporary staging tables (one row per order,
one per order line, one per address) and call `load_staged`, which writes everything with a
handful of INSERT ... SELECT statements, whatever the size of the file:

1. The shop currency is decided (`shop_currency`); orders in another currency are rejected, row
   by row, because revenue figures add order totals without converting currencies.
2. Orders whose number is already in the database are skipped (already imported), so importing the
   same file twice adds nothing.
3. Customers are found by external id, else by email (trimmed, case ignored; merged and erased
   customers are never matched by email); the others are created, one per external id, else one
   per email, with the name, email, phone, country and city of their latest order in the file.
4. Products are found by SKU, the others created from their first line.
5. Orders, their items and, for the customers this import created, the billing and shipping
   address of their latest order are inserted.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import (
    Boolean,
    Column,
    Connection,
    DateTime,
    Index,
    Integer,
    MetaData,
    Numeric,
    String,
    Table,
    delete,
    exists,
    func,
    insert,
    literal,
    select,
    update,
)

from crm_core.customers.rules import GONE_STATUSES
from crm_core.platform.shop import SHOP_CURRENCY
from db.models import REVENUE_ORDER_STATUSES, Customer, CustomerAddress, Order, OrderItem, Product

DEFAULT_CURRENCY = SHOP_CURRENCY  # for a first import without any currency
CURRENCY_SAMPLE = 1_000  # the latest orders that say which currency the shop keeps its books in
IMPORTED_CATEGORY = "Uncategorised"  # order exports name products, not their categories

Reject = Callable[[int, str, str], None]  # (row, identifier, reason)


@dataclass
class Staging:
    orders: Table
    lines: Table
    addresses: Table


def create_staging(connection: Connection) -> Staging:
    """The three temporary staging tables (dropped with `drop_staging`)."""
    money = Numeric(14, 2)
    metadata = MetaData()
    staging = Staging(
        orders=Table(
            "import_orders_staging", metadata,
            Column("row_number", Integer), Column("order_number", String(64)),
            Column("external_id", String(100)), Column("email", String(254)), Column("email_key", String(254)),
            Column("first_name", String(100)), Column("last_name", String(100)), Column("phone", String(32)),
            Column("country_code", String(2)), Column("city", String(100)),
            Column("ordered_at", DateTime), Column("status", String(16)), Column("channel", String(16)),
            Column("currency", String(3)), Column("subtotal", money), Column("discount", money),
            Column("shipping", money), Column("total", money), Column("item_count", Integer),
            Column("refunded", money),  # a partial refund already taken off the total (Shopify)
            Column("customer_id", Integer), Column("new_customer", Boolean),
            prefixes=["TEMPORARY"],
        ),
        lines=Table(
            "import_lines_staging", metadata,
            Column("row_number", Integer), Column("order_number", String(64)), Column("sku", String(64)),
            Column("product_name", String(200)), Column("brand", String(64)), Column("quantity", Integer),
            Column("unit_price", money), Column("line_total", money),
            prefixes=["TEMPORARY"],
        ),
        addresses=Table(
            "import_addresses_staging", metadata,
            Column("order_number", String(64)), Column("kind", String(16)), Column("line1", String(200)),
            Column("line2", String(200)), Column("city", String(100)), Column("region", String(100)),
            Column("postal_code", String(20)), Column("country_code", String(2)),
            prefixes=["TEMPORARY"],
        ),
    )
    for table in (staging.orders, staging.lines, staging.addresses):
        table.create(connection)
    return staging


def drop_staging(connection: Connection, staging: Staging) -> None:
    for table in (staging.orders, staging.lines, staging.addresses):
        table.drop(connection)


@dataclass
class LoadResult:
    currency: str = DEFAULT_CURRENCY
    currency_source: str = "the default"
    other_currency: dict[str, int] | None = None  # currency -> orders rejected
    skipped: int = 0  # orders already in the database
    orders: int = 0
    items: int = 0
    customers_created: int = 0
    products_created: int = 0
    addresses_created: int = 0
    statuses: dict[str, int] | None = None  # orders written, by status
    partially_refunded: int = 0  # orders written that count as revenue with a refund taken off


def stored_currency(connection: Connection) -> str | None:
    """The most common currency among the latest orders already stored, or None for an empty shop."""
    orders = Order.__table__
    latest = select(orders.c.currency).order_by(orders.c.id.desc()).limit(CURRENCY_SAMPLE).subquery()
    return connection.execute(
        select(latest.c.currency).group_by(latest.c.currency).order_by(func.count().desc(), latest.c.currency).limit(1)
    ).scalar()


def existing_order_numbers(connection: Connection, numbers: list[str]) -> set[str]:
    """Which of these order numbers are already in the database (an import skips them)."""
    orders = Order.__table__
    found: set[str] = set()
    for start in range(0, len(numbers), 500):
        chunk = numbers[start:start + 500]
        found.update(connection.execute(select(orders.c.order_number).where(orders.c.order_number.in_(chunk))).scalars())
    return found


def shop_currency(connection: Connection, staging: Staging) -> tuple[str, str]:
    """The shop's currency and where it was read: the latest orders in the database, else the file.

    Revenue adds `orders.total` without conversion, so there is one currency per shop: the most
    common among the latest orders already stored; for a first import, the most common in the file
    (the first seen on a tie); with neither, EUR.
    """
    stored = stored_currency(connection)
    if stored:
        return stored, "the orders already in the database"
    o = staging.orders
    in_file = connection.execute(
        select(o.c.currency).where(o.c.currency.is_not(None)).group_by(o.c.currency)
        .order_by(func.count().desc(), func.min(o.c.row_number)).limit(1)
    ).scalar()
    if in_file:
        return in_file, "the most common currency in the file"
    return DEFAULT_CURRENCY, "the default (no currency in the file or the database)"


def _drop_orphans(connection: Connection, staging: Staging) -> None:
    o = staging.orders
    for table in (staging.lines, staging.addresses):
        connection.execute(delete(table).where(~exists().where(o.c.order_number == table.c.order_number)))


def _resolve_customers(connection: Connection, o: Table, mark_new: bool = False, by: tuple[str, ...] = ("external_id",
                       "email")) -> None:
    """Fill in the customer of staged orders without one: by external id, then by email."""
    c = Customer.__table__.c
    extra = {"new_customer": True} if mark_new else {}
    if "external_id" in by:
        connection.execute(
            update(o).where(o.c.customer_id.is_(None), o.c.external_id.is_not(None))
            .values(customer_id=select(c.id).where(c.external_id == o.c.external_id).scalar_subquery(), **extra)
        )
    if "email" not in by:
        return
    connection.execute(
        update(o).where(o.c.customer_id.is_(None), o.c.email_key.is_not(None))
        # lower() on both sides: SQLite uses the index on lower(email) only against an expression
        # without a column affinity (the key is lower case already, so nothing changes).
        .values(customer_id=select(func.min(c.id)).where(func.lower(c.email) == func.lower(o.c.email_key),
                                                         c.status.not_in(GONE_STATUSES)).scalar_subquery(), **extra)
    )


def _create_customers(connection: Connection, o: Table, now: dt.datetime) -> int:
    """One customer per unresolved external id, then per unresolved email, with the values of its latest
    order in the file and signed up at its first."""
    customers = Customer.__table__
    created = 0
    unresolved = o.c.customer_id.is_(None)
    for name, key, condition in (("external_id", o.c.external_id, o.c.external_id.is_not(None)),
                                 ("email", o.c.email_key, o.c.external_id.is_(None) & o.c.email_key.is_not(None))):
        ranked = (select(o.c.row_number,
                         func.row_number().over(partition_by=key, order_by=(o.c.ordered_at.desc(), o.c.row_number))
                         .label("rank"),
                         func.min(o.c.ordered_at).over(partition_by=key).label("since"))
                  .where(unresolved, condition).subquery())
        rows = (
            select(o.c.external_id, func.coalesce(o.c.first_name, ""), func.coalesce(o.c.last_name, ""), o.c.email,
                   o.c.phone, o.c.country_code, o.c.city, literal("import"), literal("active"), ranked.c.since,
                   literal(now, DateTime), literal(now, DateTime), literal(1))
            .select_from(ranked.join(o, o.c.row_number == ranked.c.row_number)).where(ranked.c.rank == 1)
        )
        created += connection.execute(insert(customers).from_select(
            ["external_id", "first_name", "last_name", "email", "phone", "country_code", "city",
             "acquisition_channel", "status", "signed_up_at", "created_at", "updated_at", "version"], rows)).rowcount or 0
        by: tuple[str, ...] = (name,)
        if name == "external_id" and connection.execute(select(exists().where(
                o.c.external_id.is_not(None), o.c.email_key.is_not(None)))).scalar():
            by = ("external_id", "email")  # rows with only an email find the customers just created with it
        _resolve_customers(connection, o, mark_new=True, by=by)
    return created


def _create_products(connection: Connection, lines: Table, now: dt.datetime) -> int:
    products = Product.__table__
    first = (select(lines.c.sku, func.min(lines.c.row_number).label("first_row"))
             .where(~exists().where(products.c.sku == lines.c.sku)).group_by(lines.c.sku).subquery())
    rows = (
        select(lines.c.sku, lines.c.product_name, literal(IMPORTED_CATEGORY), func.coalesce(lines.c.brand, ""),
               lines.c.unit_price, literal(True), literal(now, DateTime))
        .select_from(first.join(lines, lines.c.row_number == first.c.first_row))
    )
    return connection.execute(insert(products).from_select(
        ["sku", "name", "category", "brand", "unit_price", "is_active", "created_at"], rows)).rowcount or 0


def _create_addresses(connection: Connection, staging: Staging, now: dt.datetime) -> int:
    """The billing and shipping address of each new customer's latest order."""
    o, a = staging.orders, staging.addresses
    ranked = (
        select(o.c.customer_id, a.c.kind, a.c.line1, a.c.line2, a.c.city, a.c.region, a.c.postal_code,
               a.c.country_code,
               func.row_number().over(partition_by=(o.c.customer_id, a.c.kind),
                                      order_by=(o.c.ordered_at.desc(), o.c.row_number)).label("rank"))
        .select_from(a.join(o, o.c.order_number == a.c.order_number))
        .where(o.c.new_customer.is_(True))
        .subquery()
    )
    rows = select(ranked.c.customer_id, ranked.c.kind, ranked.c.line1, ranked.c.line2, ranked.c.city,
                  ranked.c.region, ranked.c.postal_code, ranked.c.country_code, literal(True),
                  literal("unverified"), literal(now, DateTime)).where(ranked.c.rank == 1)
    return connection.execute(insert(CustomerAddress.__table__).from_select(
        ["customer_id", "kind", "line1", "line2", "city", "region", "postal_code", "country_code", "is_default",
         "validation_status", "created_at"], rows)).rowcount or 0


def load_staged(connection: Connection, staging: Staging, now: dt.datetime, reject: Reject) -> LoadResult:
    """Write the staged orders (see the module docstring); rejected orders are reported through `reject`."""
    o, lines = staging.orders, staging.lines
    Index("ix_import_orders_staging_row", o.c.row_number).create(connection)
    Index("ix_import_lines_staging_row", lines.c.row_number).create(connection)
    Index("ix_import_orders_staging_number", o.c.order_number).create(connection)
    Index("ix_import_orders_staging_external", o.c.external_id).create(connection)
    Index("ix_import_orders_staging_email", o.c.email_key).create(connection)
    Index("ix_import_lines_staging_number", lines.c.order_number).create(connection)
    Index("ix_import_addresses_staging_number", staging.addresses.c.order_number).create(connection)
    if connection.dialect.name == "postgresql":  # temporary tables have no statistics otherwise
        for table in (o, lines, staging.addresses):
            connection.exec_driver_sql(f"ANALYZE {table.name}")
    result = LoadResult()
    result.currency, result.currency_source = shop_currency(connection, staging)
    connection.execute(update(o).where(o.c.currency.is_(None)).values(currency=result.currency))
    foreign = connection.execute(select(o.c.row_number, o.c.order_number, o.c.currency)
                                 .where(o.c.currency != result.currency).order_by(o.c.row_number)).all()
    result.other_currency = {}
    for row in foreign:
        result.other_currency[row.currency] = result.other_currency.get(row.currency, 0) + 1
        reject(row.row_number, row.order_number,
               f"the order is in {row.currency}, not in the shop currency {result.currency} "
               f"({result.currency_source}): revenue adds order totals without converting currencies, "
               "so it is not imported")
    if foreign:
        connection.execute(delete(o).where(o.c.currency != result.currency))
    orders = Order.__table__
    result.skipped = connection.execute(
        delete(o).where(exists().where(orders.c.order_number == o.c.order_number))).rowcount or 0
    if foreign or result.skipped:
        _drop_orphans(connection, staging)

    _resolve_customers(connection, o)
    result.customers_created = _create_customers(connection, o, now)
    result.products_created = _create_products(connection, lines, now)
    result.orders = connection.execute(insert(orders).from_select(
        ["order_number", "customer_id", "ordered_at", "status", "channel", "currency", "subtotal", "discount",
         "shipping", "total", "item_count"],
        select(o.c.order_number, o.c.customer_id, o.c.ordered_at, o.c.status, o.c.channel, o.c.currency,
               o.c.subtotal, o.c.discount, o.c.shipping, o.c.total, o.c.item_count).order_by(o.c.row_number),
    )).rowcount or 0
    products = Product.__table__
    result.items = connection.execute(insert(OrderItem.__table__).from_select(
        ["order_id", "product_id", "quantity", "unit_price", "line_total"],
        select(orders.c.id, products.c.id, lines.c.quantity, lines.c.unit_price, lines.c.line_total)
        .select_from(lines.join(orders, orders.c.order_number == lines.c.order_number)
                     .join(products, products.c.sku == lines.c.sku))
        .order_by(lines.c.row_number),  # items in the file's order
    )).rowcount or 0
    result.addresses_created = _create_addresses(connection, staging, now)
    result.statuses = dict(connection.execute(select(o.c.status, func.count()).group_by(o.c.status)).all())
    result.partially_refunded = connection.execute(
        select(func.count()).where(o.c.refunded > 0, o.c.status.in_(REVENUE_ORDER_STATUSES))).scalar() or 0
    return result
