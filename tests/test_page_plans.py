"""Every page's queries, as PostgreSQL would run them: no sequential scan of orders, order items or customers.

The statements are the ones the pages really issue: every page is rendered under AppTest as an
admin (who sees them all) on a refreshed demo shop on PostgreSQL, and each SELECT it sent is
recorded with its parameters and run again under EXPLAIN. A sequential scan of `orders`,
`order_items` or `customers` at page time is what makes a page take seconds at a million customers,
so the test fails on any, naming the page and the statement.

The planner has to see a shop whose big tables are big next to the rest, as in production: the
demo shop here has SCALE customers (about nine orders each), freshly ANALYZEd, and the session uses
the cost settings of a server on SSD storage (random_page_cost 1.1, the usual production setting,
not the spinning-disk default 4.0). Sequential scans stay allowed: a query that has to read every
row of a table still gets a Seq Scan and fails here.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator

import pytest
from sqlalchemy import event, text
from sqlalchemy.engine import Engine

from db import migrate
from db.engine import make_engine

BIG_TABLES = {"orders", "order_items", "customers"}
SCALE = 12_000
PLANNER = {"random_page_cost": "1.1", "effective_cache_size": "'4GB'"}


@pytest.fixture(scope="module")
def shop_url(postgres_server) -> Iterator[str]:
    import batch
    import demo

    url = postgres_server.create("crm_plans")
    migrate.upgrade(url)
    engine = make_engine(url)
    demo.seed_database(engine, SCALE, seed=3, end=dt.datetime.now().replace(microsecond=0), demo_users=True)
    report = batch.run_refresh(engine, dt.date.today())
    assert report.failed == [], [(step.label, step.detail) for step in report.failed]  # the rollups landed too
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        connection.exec_driver_sql("ANALYZE")
    engine.dispose()
    yield url
    postgres_server.drop(url)


class Recorder:
    """The SELECT statements (with their parameters) every engine of the process sends."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.statements: list[tuple[str, object]] = []
        event.listen(Engine, "before_cursor_execute", self._record)

    def _record(self, conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(("SELECT", "WITH")) and not executemany:
            with self.lock:
                self.statements.append((statement, parameters))

    def take(self) -> list[tuple[str, object]]:
        with self.lock:
            taken, self.statements = self.statements, []
        return taken

    def close(self) -> None:
        event.remove(Engine, "before_cursor_execute", self._record)


def _sequential_scans(plan: dict) -> list[str]:
    found = []
    if plan.get("Node Type") == "Seq Scan" and plan.get("Relation Name") in BIG_TABLES:
        found.append(plan["Relation Name"])
    for child in plan.get("Plans", []):
        found.extend(_sequential_scans(child))
    return found


def test_no_page_scans_orders_order_items_or_customers(shop_url, monkeypatch):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    import demo
    from tests.apptest_support import APP, ROOT, sign_in
    from ui.navigation import pages_for

    monkeypatch.setenv("CRM_DATABASE_URL", shop_url)
    recorder = Recorder()
    per_page: dict[str, list[tuple[str, object]]] = {}
    try:
        at = AppTest.from_file(APP, default_timeout=120)
        sign_in(at, "admin1", demo.demo_password("admin1"))
        for page in pages_for("admin"):
            st.cache_data.clear()
            recorder.take()
            at.switch_page(str(ROOT / page.path)).run()
            assert not at.exception, f"{page.title}: {at.exception[0].value}"
            per_page[page.title] = recorder.take()
    finally:
        recorder.close()

    engine = make_engine(shop_url)
    problems = []
    explained = 0
    with engine.connect() as connection:
        for name, value in PLANNER.items():
            connection.exec_driver_sql(f"SET {name} = {value}")
        cursor = connection.connection.dbapi_connection.cursor()
        for title, statements in per_page.items():
            for statement, parameters in statements:
                cursor.execute("EXPLAIN (FORMAT JSON) " + statement, parameters)
                plan = cursor.fetchone()[0]
                plan = plan if isinstance(plan, list) else json.loads(plan)
                explained += 1
                for table in _sequential_scans(plan[0]["Plan"]):
                    problems.append(f"{title}: Seq Scan on {table} in {' '.join(statement.split())[:300]}")
    engine.dispose()
    assert explained > 100, f"only {explained} statements were recorded: is the recorder listening?"
    assert len(per_page) == len(pages_for("admin"))
    assert not problems, "\n".join(sorted(set(problems)))


def test_the_check_finds_a_sequential_scan(shop_url):
    """The plan walk is not vacuous: counting every order has to read the whole table."""
    engine = make_engine(shop_url)
    with engine.connect() as connection:
        plan = connection.execute(text("EXPLAIN (FORMAT JSON) SELECT count(*) FROM orders WHERE total > 0")).scalar()
    engine.dispose()
    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert _sequential_scans(plan[0]["Plan"]) == ["orders"]

