"""Page benchmark: server-side time of every page, cold and warm, with its slowest query.

    python bench/page_bench.py --url URL [--pages overview,churn] [--repeat 3]
    python bench/page_bench.py --seed 100000 [--postgres URL] [--skip-sqlite]   # seed, refresh, then measure

Each page runs under Streamlit's AppTest as a signed-in admin (a user `bench_admin` is created when
missing). Cold: every st.cache_data and shared chart cleared first, so the page computes everything it reads, as
after a refresh. Warm: the same page run again, which is what each widget interaction costs (a
rerun of the script with the caches filled). The slowest SQL statement of the cold run is timed
with SQLAlchemy's cursor events and printed with its first characters.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sqlalchemy import event, select  # noqa: E402
from sqlalchemy.engine import Engine  # noqa: E402

from crm_core import platform  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import make_engine, session_factory  # noqa: E402
from db.models import User  # noqa: E402
from ui import charts  # noqa: E402

BENCH_USER = "bench_admin"
BENCH_PASSWORD = "bench-admin-password-1"


class QueryClock:
    """The slowest statement seen since the last reset, across every engine of the process."""

    def __init__(self) -> None:
        self.local = threading.local()
        self.reset()
        event.listen(Engine, "before_cursor_execute", self._before)
        event.listen(Engine, "after_cursor_execute", self._after)

    def reset(self) -> None:
        self.slowest = (0.0, "")
        self.count = 0
        self.statements: list[tuple[float, str]] = []

    def _before(self, conn, cursor, statement, parameters, context, executemany):
        self.local.started = time.perf_counter()

    def _after(self, conn, cursor, statement, parameters, context, executemany):
        seconds = time.perf_counter() - getattr(self.local, "started", time.perf_counter())
        if statement.lstrip().upper().startswith(("BEGIN", "COMMIT", "ROLLBACK", "SET ", "PRAGMA")):
            return
        self.count += 1
        self.statements.append((seconds, statement))
        if seconds > self.slowest[0]:
            self.slowest = (seconds, " ".join(statement.split()))


def ensure_admin(url: str) -> None:
    engine = make_engine(url)
    with platform.unit_of_work(session_factory(engine)) as session:
        if session.scalar(select(User.id).where(User.username == BENCH_USER)) is None:
            platform.create_user(session, platform.SYSTEM, BENCH_USER, "admin", BENCH_PASSWORD,
                                 full_name="Bench admin")
    engine.dispose()


def measure(url: str, only: set[str] | None, repeat: int, top: int = 0) -> list[dict]:
    import logging

    import streamlit as st
    from streamlit.testing.v1 import AppTest

    from ui.navigation import pages_for

    os.environ["CRM_DATABASE_URL"] = url
    logging.getLogger("streamlit").setLevel(logging.ERROR)  # "No runtime found" on every cache outside a server
    ensure_admin(url)
    clock = QueryClock()
    app = AppTest.from_file(str(ROOT / "streamlit_app.py"), default_timeout=600)
    app.run()
    app.text_input[0].input(BENCH_USER)
    app.text_input[1].input(BENCH_PASSWORD)
    app.button[0].click().run()
    results = []
    for page in pages_for("admin"):
        name = Path(page.path).stem
        if only and name not in only and page.url_path not in only:
            continue
        colds, warms, warm_cpus = [], [], []
        slowest = (0.0, "")
        queries = 0
        for _ in range(repeat):
            st.cache_data.clear()
            charts.forget()
            clock.reset()
            started = time.perf_counter()
            app.switch_page(str(ROOT / page.path)).run()
            colds.append(time.perf_counter() - started)
            if clock.slowest[0] > slowest[0]:
                slowest = clock.slowest
            queries = clock.count
            started, cpu = time.perf_counter(), time.process_time()
            app.run()
            warms.append(time.perf_counter() - started)
            warm_cpus.append(time.process_time() - cpu)
        slow_statements = sorted(clock.statements, reverse=True)[:top] if top else []
        failed = [str(e.value)[:80] for e in app.exception]
        results.append({"page": page.title, "cold": statistics.median(colds), "warm": statistics.median(warms),
                        "warm_cpu": statistics.median(warm_cpus),
                        "queries": queries, "slowest": slowest[0], "statement": slowest[1][:90],
                        "error": "; ".join(failed)})
        row = results[-1]
        print(f"{row['page']:<22} {row['cold']:>7.2f} {row['warm']:>7.2f} {row['warm_cpu']:>8.2f} {row['queries']:>5} "
              f"{row['slowest']:>7.3f}  {row['statement']}{'  ERROR: ' + row['error'] if row['error'] else ''}",
              flush=True)
        for seconds, statement in slow_statements:
            print(f"{'':<22} {seconds:>7.3f}  {' '.join(statement.split())[:400]}", flush=True)
    return results


def seed(url: str, customers: int) -> None:
    import batch
    from demo import seed_database

    migrate.upgrade(url)
    engine = make_engine(url)
    end = dt.datetime.now().replace(microsecond=0)
    print(f"Seeding {customers:,} customers...", flush=True)
    seed_database(engine, customers, seed=7, end=end, demo_users=True)
    print("Refreshing...", flush=True)
    batch.run_refresh(engine, end.date())
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="an existing, refreshed database to measure")
    parser.add_argument("--seed", type=int, help="seed this many customers into a temporary database first")
    parser.add_argument("--postgres", default=os.environ.get("CRM_TEST_POSTGRES_URL", ""),
                        help="with --seed: a database URL on a PostgreSQL server to create the database on")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--pages", help="comma-separated page files or URL paths (default: every page)")
    parser.add_argument("--repeat", type=int, default=1, help="runs per page; the median is printed")
    parser.add_argument("--top", type=int, default=0, help="also print the N slowest statements of each page's cold run")
    args = parser.parse_args()
    only = set(args.pages.split(",")) if args.pages else None
    header = f"{'page':<22} {'cold s':>7} {'warm s':>7} {'warm CPU':>8} {'SQL':>5} {'slowest':>7}  slowest statement"
    if args.url:
        print(header)
        measure(args.url, only, args.repeat, args.top)
        return
    if not args.seed:
        parser.error("give --url of a refreshed database, or --seed N")
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            url = f"sqlite:///{tmp}/pages.sqlite"
            seed(url, args.seed)
            print(f"SQLite, {args.seed:,} customers\n{header}")
            measure(url, only, args.repeat)
    if args.postgres:
        from db.throwaway import PostgresServer

        server = PostgresServer(args.postgres)
        with server.database("crm_pages") as url:
            seed(url, args.seed)
            print(f"PostgreSQL, {args.seed:,} customers\n{header}")
            measure(url, only, args.repeat)
        server.dispose()


if __name__ == "__main__":
    main()
