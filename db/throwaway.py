"""Throwaway PostgreSQL databases for tests and benchmarks, created and dropped on one server."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from .engine import normalize_url


class PostgresServer:
    """A server reached through any database URL on it (e.g. .../test), as a superuser."""

    def __init__(self, url: str):
        self.url = make_url(normalize_url(url))
        self.admin = create_engine(self.url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)

    def ping(self) -> None:
        with self.admin.connect() as connection:
            connection.execute(text("SELECT 1"))

    def create(self, prefix: str = "crm_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        return self.url.set(database=name).render_as_string(hide_password=False)

    def drop(self, url: str) -> None:
        name = make_url(url).database
        with self.admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    @contextmanager
    def database(self, prefix: str = "crm_tmp") -> Iterator[str]:
        url = self.create(prefix)
        try:
            yield url
        finally:
            self.drop(url)

    def dispose(self) -> None:
        self.admin.dispose()
