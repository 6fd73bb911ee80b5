"""Imports at scale: a transaction log of N orders, then N/10 customers with duplicates.

    python bench/import_bench.py [--customers 1000000] [--postgres URL] [--skip-sqlite]

`--customers` is the number of order rows (one customer per 8 orders, ids with leading zeros);
a customer file of a tenth of that size follows, half of whose rows repeat an imported customer
(same external id), so dedupe against the database is part of the figure.
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
from db.models import Order  # noqa: E402


def write_orders(path: Path, n: int) -> None:
    rng = random.Random(1)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["customer", "date", "amount", "qty"])
        for i in range(n):
            writer.writerow([f"{rng.randrange(max(1, n // 8)):08d}", f"2024-{1 + i % 12:02d}-{1 + i % 28:02d}",
                             f"{rng.randrange(100, 50000) / 100:.2f}", 1 + i % 3])


SYLLABLES = ["ka", "mi", "lo", "ber", "son", "ta", "ri", "ne", "gor", "vek", "lu", "sch", "an", "dre", "wu"]
CITIES = ["Berlin", "Paris", "London", "Madrid", "Rome", "Vienna", "Lyon", "Hamburg", "Leeds", "Porto"]


def write_customers(path: Path, n: int, existing: int) -> None:
    rng = random.Random(2)

    def name() -> str:
        return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4))).title()

    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(imports.STANDARD_COLUMNS)
        for i in range(n):
            known = i % 2 == 0 and existing
            ident = f"{rng.randrange(existing):08d}" if known else f"N{i:09d}"
            writer.writerow([ident, name(), name(), f"person{i}@bench.example", "",
                             rng.choice(["DE", "FR", "GB", "NL"]), rng.choice(CITIES), "2024-03-01", ""])


def run(url: str, n: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    with tempfile.TemporaryDirectory() as tmp:
        orders_file, customers_file = Path(tmp) / "orders.csv", Path(tmp) / "customers.csv"
        write_orders(orders_file, n)
        started = time.perf_counter()
        with platform.unit_of_work(engine) as s:
            report = imports.import_orders(s, platform.SYSTEM, orders_file, "customer", "date", "amount", "qty")
        seconds = time.perf_counter() - started
        with engine.connect() as connection:
            stored = connection.scalar(select(func.count()).select_from(Order))
        print(f"{label:<11} orders     {n:>10,} rows  {seconds:7.1f}s  {n / seconds:>10,.0f} rows/s  "
              f"({report.customers_created:,} customers created, {stored:,} orders stored)")
        m = max(1, n // 10)
        write_customers(customers_file, m, report.customers_created)
        started = time.perf_counter()
        with platform.unit_of_work(engine) as s:
            report = imports.import_customers(s, platform.SYSTEM, customers_file, on_duplicate="update")
        seconds = time.perf_counter() - started
        print(f"{label:<11} customers  {m:>10,} rows  {seconds:7.1f}s  {m / seconds:>10,.0f} rows/s  "
              f"(created {report.created:,}, updated {report.updated:,}, skipped {report.skipped:,})")
    engine.dispose()


if __name__ == "__main__":
    on_each_backend(parser(__doc__.splitlines()[0], 1_000_000).parse_args(), run)
