"""Database fixtures: every database test runs on SQLite and, when configured, on PostgreSQL.

`CRM_TEST_POSTGRES_URL` names a PostgreSQL server database we may connect to; each test session
(each xdist worker) creates its own throwaway database there and drops it at the end.
`CRM_REQUIRE_POSTGRES=1` (set by CI) turns a missing or unreachable server into a failure.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text
from sqlalchemy.orm import Session

from db import migrate
from db.engine import make_engine, session_factory
from db.models import Base
from db.throwaway import PostgresServer

PG_URL = os.environ.get("CRM_TEST_POSTGRES_URL", "").strip()
REQUIRE_PG = os.environ.get("CRM_REQUIRE_POSTGRES", "") == "1"
BACKENDS = ["sqlite", "postgresql"]


def pytest_configure(config):
    if REQUIRE_PG and not PG_URL:
        raise pytest.UsageError("CRM_REQUIRE_POSTGRES=1 but CRM_TEST_POSTGRES_URL is not set")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    if not PG_URL:
        pytest.skip("PostgreSQL tests need CRM_TEST_POSTGRES_URL")
    server = PostgresServer(PG_URL)
    try:
        server.ping()
    except Exception as exc:  # noqa: BLE001 - any connection failure means no server
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required but unreachable at {PG_URL}: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    yield server
    server.dispose()


@pytest.fixture
def fresh_database_url(request, backend, tmp_path) -> Iterator[str]:
    """An empty, unmigrated database on each backend."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'fresh.sqlite'}"
        return
    server = request.getfixturevalue("postgres_server")
    url = server.create("crm_fresh")
    try:
        yield url
    finally:
        server.drop(url)


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    if request.param == "postgresql":
        request.getfixturevalue("postgres_server")
    return request.param


@pytest.fixture(scope="session")
def sqlite_engine(tmp_path_factory) -> Iterator[Engine]:
    url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'test.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="session")
def postgresql_engine(postgres_server) -> Iterator[Engine]:
    url = postgres_server.create()
    migrate.upgrade(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()
    postgres_server.drop(url)


def clear(engine: Engine) -> None:
    tables = list(reversed(Base.metadata.sorted_tables))
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            names = ", ".join(t.name for t in tables)
            connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                connection.execute(table.delete())


@pytest.fixture
def engine(request, backend) -> Engine:
    """A migrated, empty database on each backend."""
    eng = request.getfixturevalue(f"{backend}_engine")
    clear(eng)
    return eng


@pytest.fixture
def session(engine) -> Iterator[Session]:
    s = session_factory(engine)()
    try:
        yield s
    finally:
        s.rollback()
        s.close()


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch):
    """Real argon2, with cheap parameters: tests hash many passwords."""
    from argon2 import PasswordHasher

    from crm_core.platform import users

    monkeypatch.setattr(users, "_hasher", PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1))


@pytest.fixture(autouse=True)
def fresh_streamlit_cache():
    """Page tests of one worker share a process, and many use the same database URL: a result
    cached by st.cache_data in one test (the data date, a dashboard) must not show in the next."""
    if "streamlit" in sys.modules:
        import streamlit as st

        st.cache_data.clear()


@pytest.fixture(scope="session")
def app_db(tmp_path_factory) -> Iterator[str]:
    """A SQLite demo database (500 simulated customers, refreshed) shared by AppTest page tests."""
    import datetime as dt

    import batch
    import demo

    url = f"sqlite:///{tmp_path_factory.mktemp('app') / 'app.sqlite'}"
    migrate.upgrade(url)
    eng = make_engine(url)
    demo.seed_database(eng, 500, seed=2, end=dt.datetime.now().replace(microsecond=0), demo_users=True)
    batch.run_refresh(eng, dt.date.today())
    yield url
    eng.dispose()


@pytest.fixture
def app(app_db, monkeypatch):
    """The whole app under AppTest, on the shared demo database."""
    from streamlit.testing.v1 import AppTest

    from tests.apptest_support import APP

    monkeypatch.setenv("CRM_DATABASE_URL", app_db)
    return AppTest.from_file(APP, default_timeout=60)
