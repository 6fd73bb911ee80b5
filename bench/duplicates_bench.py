"""Duplicate scan and merge at scale, on synthetic customers with planted duplicates.

    python bench/duplicates_bench.py [--customers 100000] [--postgres URL] [--skip-sqlite]

Loads N customers (Faker names, one address each) of whom 1% are planted duplicates of another
customer (half share an upper-cased email, half a phone number), then times a first scan, a
re-scan (updates only) and one merge plus its undo of a customer with 200 orders.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from faker import Faker  # noqa: E402

from bench.common import on_each_backend, parser  # noqa: E402
from crm_core import (
    customers,  # noqa: E402
    platform,
)
from db import bulk, migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import Customer, CustomerAddress, Order  # noqa: E402

NOW = dt.datetime(2026, 1, 1)


def synthetic(n: int, seed: int = 3) -> tuple[pd.DataFrame, pd.DataFrame, int]:
    rng = np.random.default_rng(seed)
    faker = Faker()
    Faker.seed(seed)
    firsts = np.array(sorted({faker.first_name() for _ in range(3000)}))
    lasts = np.array(sorted({faker.last_name() for _ in range(5000)}))
    ids = np.arange(1, n + 1)
    first = firsts[rng.integers(len(firsts), size=n)]
    last = lasts[rng.integers(len(lasts), size=n)]
    country = np.array(["NL", "DE", "FR", "US", "GB", "ES", "IT", "SE", "PL", "BE"])[rng.integers(10, size=n)]
    email = (pd.Series(first + "." + last).str.lower() + pd.Series(ids.astype(str)) + "@mail.example").to_numpy(object)
    phone = ("+31 " + pd.Series(rng.integers(100_000_000, 999_999_999, n).astype(str))).to_numpy(object)
    planted = rng.choice(n, n // 100, replace=False)
    sources = rng.choice(np.setdiff1d(np.arange(n), planted), len(planted), replace=False)
    for k, (copy, source) in enumerate(zip(planted, sources, strict=True)):
        first[copy], last[copy], country[copy] = first[source], last[source], country[source]
        if k % 2:
            email[copy] = email[source].upper()
        else:
            phone[copy] = phone[source]
    customers = pd.DataFrame({"id": ids, "first_name": first, "last_name": last, "email": email, "phone": phone,
                              "country_code": country, "acquisition_channel": "direct", "status": "active",
                              "signed_up_at": NOW, "created_at": NOW, "updated_at": NOW, "version": 1})
    addresses = pd.DataFrame({"id": ids, "customer_id": ids, "kind": "shipping", "line1": "Street 1", "city": "City",
                              "postal_code": rng.integers(10000, 99999, n).astype(str), "country_code": country,
                              "is_default": True, "validation_status": "unverified", "created_at": NOW})
    return customers, addresses, len(planted)


def run(url: str, n: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    people, addresses, planted = synthetic(n)
    orders = pd.DataFrame({"id": np.arange(1, 201), "order_number": [f"B-{i}" for i in range(200)], "customer_id": 2,
                           "ordered_at": NOW, "status": "delivered", "channel": "web", "currency": "EUR",
                           "subtotal": 10.0, "discount": 0.0, "shipping": 0.0, "total": 10.0, "item_count": 1})
    with engine.begin() as connection:
        for table, frame in ((Customer.__table__, people), (CustomerAddress.__table__, addresses),
                             (Order.__table__, orders)):
            bulk.load(connection, table, frame)
            bulk.reset_sequence(connection, table)
    for attempt in ("scan", "re-scan"):
        started = time.perf_counter()
        with platform.unit_of_work(engine) as session:
            result = customers.scan_duplicates(session, platform.SYSTEM)
        print(f"{label:<10} {attempt:<8} {n:>9,} customers {time.perf_counter() - started:7.1f}s  "
              f"{result['candidate_pairs']:,} candidate pairs, {result['likely_duplicates']:,} likely duplicates "
              f"({planted:,} planted), {result['new']:,} new", flush=True)
    started = time.perf_counter()
    with platform.unit_of_work(engine) as session:
        merge_id = customers.merge_customers(session, platform.SYSTEM, 1, 2)
    merged = time.perf_counter() - started
    started = time.perf_counter()
    with platform.unit_of_work(engine) as session:
        customers.undo_merge(session, platform.SYSTEM, merge_id)
    print(f"{label:<10} merge of a customer with 200 orders {merged:.2f}s, undo {time.perf_counter() - started:.2f}s")
    engine.dispose()


if __name__ == "__main__":
    on_each_backend(parser(__doc__.splitlines()[0], 100_000).parse_args(), run)
