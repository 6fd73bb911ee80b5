"""Seed benchmark: simulate and bulk-load N customers on SQLite and (if configured) PostgreSQL.

    python bench/seed_bench.py [--customers 100000] [--postgres URL]

Prints one line per backend with rows loaded, seconds and rows per second. PostgreSQL uses a
throwaway database on the server named by --postgres or CRM_TEST_POSTGRES_URL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db import migrate  # noqa: E402
from db.engine import make_engine, normalize_url  # noqa: E402
from db.simulator import seed_database  # noqa: E402

END = dt.datetime(2026, 11, 27, 12, 0)


def run(url: str, customers: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    result = seed_database(engine, customers, seed=7, end=END)
    engine.dispose()
    rows = sum(result.counts.values())
    print(
        f"{label:<10} customers={customers:,} orders={result.counts['orders']:,} "
        f"order_items={result.counts['order_items']:,} rows={rows:,} "
        f"seconds={result.seconds:.1f} rows_per_second={rows / result.seconds:,.0f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("CRM_TEST_POSTGRES_URL", ""))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        run(f"sqlite:///{tmp}/bench.sqlite", args.customers, "sqlite")

    if args.postgres:
        server = make_url(normalize_url(args.postgres))
        admin = create_engine(server, isolation_level="AUTOCOMMIT")
        name = f"crm_bench_{uuid.uuid4().hex[:8]}"
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        try:
            run(server.set(database=name).render_as_string(hide_password=False), args.customers, "postgresql")
        finally:
            with admin.connect() as connection:
                connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            admin.dispose()
    else:
        print("postgresql skipped: pass --postgres URL or set CRM_TEST_POSTGRES_URL")


if __name__ == "__main__":
    main()
