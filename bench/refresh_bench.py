"""Refresh benchmark: seed N customers, then time each batch-refresh step and a segment preview.

    python bench/refresh_bench.py [--customers 100000] [--postgres URL] [--skip-sqlite]

Prints one line per step with seconds, on SQLite and (when a server is given) PostgreSQL.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import create_engine, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from crm_core import segments  # noqa: E402
from crm_core.service import SYSTEM  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import make_engine, normalize_url, session_scope  # noqa: E402
from db.simulator import seed_database  # noqa: E402
from ml.refresh import run_refresh  # noqa: E402

AS_OF = dt.date(2026, 11, 27)
RULES = {"all": [
    {"field": "country", "op": "in", "value": ["DE", "AT", "FR"]},
    {"any": [{"field": "order_count", "op": "ge", "value": 5},
             {"field": "loyalty_tier", "op": "in", "value": ["gold", "platinum", "diamond"]}]},
    {"field": "days_since_last_order", "op": "le", "value": 120},
]}


def run(url: str, customers: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    seeded = seed_database(engine, customers, seed=7, end=dt.datetime.combine(AS_OF, dt.time(18)))
    print(f"{label:<10} customers={customers:,} orders={seeded.counts['orders']:,} seed_seconds={seeded.seconds:.1f}",
          flush=True)
    report = run_refresh(engine, AS_OF)
    for step, seconds, detail in report.steps:
        print(f"{label:<10} step={step!r} seconds={seconds:.1f} ({detail})", flush=True)
    started = time.perf_counter()
    with session_scope(engine) as session:
        found = segments.preview(session, SYSTEM, RULES, AS_OF, sample=20)
    print(f"{label:<10} segment_preview matches={found['count']:,} seconds={time.perf_counter() - started:.2f}",
          flush=True)
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--postgres", default=os.environ.get("CRM_TEST_POSTGRES_URL", ""))
    parser.add_argument("--skip-sqlite", action="store_true")
    args = parser.parse_args()
    if not args.skip_sqlite:
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


if __name__ == "__main__":
    main()
