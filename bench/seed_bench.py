"""Seed benchmark: simulate and bulk-load N customers on SQLite and (if configured) PostgreSQL.

    python bench/seed_bench.py [--customers 100000] [--postgres URL]

Prints one line per backend with rows loaded, seconds and rows per second. PostgreSQL uses a
throwaway database on the server named by --postgres or CRM_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import demo  # noqa: E402
from bench.common import on_each_backend, parser  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402

END = dt.datetime(2026, 11, 27, 12, 0)


def run(url: str, customers: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    result = demo.seed_database(engine, customers, seed=7, end=END)
    engine.dispose()
    rows = sum(result.counts.values())
    print(
        f"{label:<10} customers={customers:,} orders={result.counts['orders']:,} "
        f"order_items={result.counts['order_items']:,} rows={rows:,} "
        f"seconds={result.seconds:.1f} rows_per_second={rows / result.seconds:,.0f}",
        flush=True,
    )


def main() -> None:
    on_each_backend(parser(__doc__.splitlines()[0], 100_000).parse_args(), run)

if __name__ == "__main__":
    main()
