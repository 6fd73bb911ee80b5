"""Engines and sessions for the one configured database.

`CRM_DATABASE_URL` names the database; unset, it is the SQLite file `data/crm.sqlite` under the
project root, opened in WAL mode with foreign keys enforced.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from db.private_files import private_file

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SQLITE_PATH = PROJECT_ROOT / "data" / "crm.sqlite"


def database_url() -> str:
    """The configured database URL (`CRM_DATABASE_URL`, else the embedded SQLite file)."""
    url = os.environ.get("CRM_DATABASE_URL", "").strip()
    return url or f"sqlite:///{DEFAULT_SQLITE_PATH}"


def normalize_url(url: str) -> str:
    """Plain `postgresql://` URLs use psycopg2, the driver this project installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


# How long a SQLite writer waits for another writer's lock before giving up with "busy".
SQLITE_BUSY_TIMEOUT_MS = 30_000
# The execution option that makes a SQLite transaction take the write lock when it begins
# (BEGIN IMMEDIATE): a transaction that reads and then writes could otherwise find, at its first
# write, that another writer committed since its read, and SQLite fails that at once, without
# waiting. A writer that begins immediately waits its turn instead (see `writer_session`).
SQLITE_IMMEDIATE = "crm_sqlite_immediate"


def _set_sqlite_pragmas(dbapi_connection, _record) -> None:
    # Let SQLAlchemy, not the sqlite3 module, open transactions (see _begin_sqlite), so DDL is
    # transactional too: the module's own handling leaves DDL outside the transaction.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(SQLITE_BUSY_TIMEOUT_MS)}")
    cursor.close()


def _begin_sqlite(connection) -> None:
    immediate = connection.get_execution_options().get(SQLITE_IMMEDIATE)
    connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def make_engine(url: str | None = None, **kwargs) -> Engine:
    """Create an engine; SQLite files get their folder, WAL and foreign keys."""
    url = normalize_url(url or database_url())
    if url.startswith("sqlite"):
        path = url.split("///", 1)[-1].split("?", 1)[0]
        if path and path != ":memory:" and not path.startswith("file:"):
            # Private from the start: SQLite gives its -wal and -shm files the database file's mode.
            private_file(path)
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)
        event.listen(engine, "connect", _set_sqlite_pragmas)
        event.listen(engine, "begin", _begin_sqlite)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(url, **kwargs)


@lru_cache(maxsize=8)
def get_engine(url: str | None = None) -> Engine:
    """One shared engine per URL for command-line and library use."""
    return make_engine(url or database_url())


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


def is_postgres(engine_or_session) -> bool:
    bind = getattr(engine_or_session, "bind", None) or engine_or_session
    return bind.dialect.name == "postgresql"
