"""Imports of a shop's own files at scale: a Shopify orders export, a helpdesk export, an email log.

    python bench/shop_import_bench.py [--customers 100000] [--postgres URL] [--skip-sqlite]

`--customers` is the number of rows of each file: the Shopify export has about 1.6 line items
per order and a customer per 4 orders (a tenth of the orders are guest checkouts, a twentieth
refunded, a twentieth partially refunded, a fortieth cancelled); the tickets and communications
files then have that many rows for those customers, matched by email (about 3% name a customer
who only ever checked out as a guest, so they are invalid rows with a reason, as in real files).
Each file is imported twice; the second import must add nothing.
"""

from __future__ import annotations

import csv
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import func, select  # noqa: E402

from bench.common import on_each_backend, parser  # noqa: E402
from crm_core import (
    imports,  # noqa: E402
    platform,
)
from db import migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import Order, OrderItem  # noqa: E402

SHOPIFY_HEADER = ["Name", "Email", "Financial Status", "Paid at", "Currency", "Subtotal", "Shipping", "Total",
                  "Discount Amount", "Created at", "Lineitem quantity", "Lineitem name", "Lineitem price",
                  "Lineitem sku", "Billing Name", "Billing Address1", "Billing City", "Billing Zip",
                  "Billing Country", "Cancelled at", "Refunded Amount", "Vendor", "Source"]
FIRST = ["Zoë", "Ana", "Li", "Søren", "Ñandú", "Mark", "Inès", "Jürgen", "Olga", "Yuki"]
LAST = ["Müller", "Silva", "Wei", "Kierkegård", "Pérez", "Twain", "Dubois", "Groß", "Ivanova", "Sato"]
COUNTRIES = ["DE", "FR", "ES", "PT", "DK", "IT", "NL", "AT"]


def shopify_customers(rows: int) -> int:
    return max(1, rows // 6)


def write_shopify(path: Path, rows: int) -> int:
    """A Shopify export of about `rows` rows; returns the number of orders."""
    rng = random.Random(11)
    customers = shopify_customers(rows)
    written, number = 0, 1000
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(SHOPIFY_HEADER)
        while written < rows:
            number += 1
            person = rng.randrange(customers)
            guest = rng.random() < 0.1
            lines = [(rng.randint(1, 3), rng.randrange(400), rng.randrange(500, 9000) / 100)
                     for _ in range(1 if rng.random() < 0.6 else rng.randint(2, 3))]
            subtotal = sum(q * p for q, _, p in lines)
            total = subtotal + 4.90
            draw = rng.random()
            financial, refunded, cancelled = "paid", 0.0, ""
            if draw < 0.05:
                financial, refunded = "refunded", total
            elif draw < 0.10:
                financial, refunded = "partially_refunded", round(lines[0][2], 2)
            elif draw < 0.125:
                financial, cancelled = "voided", "2024-06-02 10:00:00 +0200"
            when = f"2024-{1 + number % 12:02d}-{1 + number % 28:02d} {number % 24:02d}:{number % 60:02d}:00 +0200"
            for i, (quantity, product, price) in enumerate(lines):
                order_level = [financial, when, "EUR", f"{subtotal:.2f}", "4.90", f"{total:.2f}", "0.00"] if i == 0 \
                    else [""] * 7
                billing = [f"{FIRST[person % 10]} {LAST[person // 10 % 10]}", f"Street {person}", "City",
                           f"'{person % 99999:05d}", COUNTRIES[person % 8]] if i == 0 else [""] * 5
                writer.writerow([
                    f"#{number}", "" if guest else f"customer{person}@shop.example", *order_level[:1],
                    order_level[1] if i == 0 else "", *order_level[2:6], order_level[6], when,
                    quantity, f"Product {product}", f"{price:.2f}", f"SKU-{product:04d}", *billing,
                    cancelled if i == 0 else "", f"{refunded:.2f}" if i == 0 else "", "Bench Co",
                    "web" if i == 0 else "",
                ])
                written += 1
    return number - 1000


def write_tickets(path: Path, rows: int, customers: int) -> None:
    rng = random.Random(12)
    statuses = ["solved", "closed", "open", "pending", "hold"]
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ticket_id", "customer_email", "created_at", "subject", "description", "status", "priority",
                         "category", "channel", "first_responded_at", "resolved_at", "csat_rating"])
        for i in range(rows):
            status = rng.choice(statuses)
            day = 1 + i % 28
            done = status in ("solved", "closed")
            writer.writerow([f"HD-{i}", f"customer{rng.randrange(customers)}@shop.example",
                             f"2024-{1 + i % 12:02d}-{day:02d} 09:00:00 +0100", f"Question {i}", "Where is my order?",
                             status, rng.choice(["low", "medium", "high", "urgent"]),
                             rng.choice(["order", "delivery", "returns", "billing"]), rng.choice(["email", "chat"]),
                             f"2024-{1 + i % 12:02d}-{day:02d} 11:00:00 +0100",
                             f"2024-{1 + i % 12:02d}-{day:02d} 15:00:00 +0100" if done else "",
                             rng.randint(1, 5) if done else ""])


def write_communications(path: Path, rows: int, customers: int) -> None:
    rng = random.Random(13)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer_email", "channel", "direction", "sent_at", "subject", "campaign", "delivered_at",
                         "opened_at", "clicked_at"])
        for i in range(rows):
            when = f"2024-{1 + i % 12:02d}-{1 + i % 28:02d} {i % 24:02d}:{i % 60:02d}:00"
            opened = rng.random() < 0.3
            writer.writerow([f"customer{rng.randrange(customers)}@shop.example", rng.choice(["email", "sms"]),
                             "outbound", when, f"Newsletter {i % 52}", f"weekly-{i % 52}", when,
                             when if opened else "", when if opened and rng.random() < 0.2 else ""])


def timed(engine, label: str, what: str, rows: int, run) -> object:
    started = time.perf_counter()
    with platform.unit_of_work(engine) as s:
        report = run(s)
    seconds = time.perf_counter() - started
    print(f"{label:<11} {what:<22} {rows:>10,} rows  {seconds:7.1f}s  {rows / seconds:>10,.0f} rows/s  "
          f"(created {report.created:,}, skipped {report.skipped:,}, invalid {report.invalid:,})", flush=True)
    return report


def run(url: str, n: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as tmp:
        shopify = Path(tmp) / "orders_export.csv"
        write_shopify(shopify, n)
        for attempt in ("", " again"):
            timed(engine, label, "shopify export" + attempt, n,
                  lambda s: imports.import_shopify_orders(s, platform.SYSTEM, shopify))
        with engine.connect() as connection:
            orders = connection.scalar(select(func.count()).select_from(Order))
            items = connection.scalar(select(func.count()).select_from(OrderItem))
        print(f"{label:<11} stored {orders:,} orders and {items:,} items")
        for kind, write in (("tickets", write_tickets), ("communications", write_communications)):
            path = Path(tmp) / f"{kind}.csv"
            write(path, n, shopify_customers(n))
            for attempt in ("", " again"):
                timed(engine, label, kind + attempt, n,
                      lambda s, kind=kind, path=path: imports.import_service_file(s, platform.SYSTEM, kind, path))
    engine.dispose()


if __name__ == "__main__":
    on_each_backend(parser(__doc__.splitlines()[0], 100_000).parse_args(), run)
