"""Portable SQL building blocks compiled per dialect (SQLite and PostgreSQL)."""

from __future__ import annotations

import os
import re
from typing import Any

from sqlalchemy import Connection, CursorResult, Date, DateTime, Float, Integer, Result, String, column, table
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.base import Executable
from sqlalchemy.sql.elements import ClauseElement
from sqlalchemy.sql.expression import TableClause
from sqlalchemy.sql.functions import FunctionElement


class year_month(FunctionElement):
    """'YYYY-MM' of a timestamp, for monthly GROUP BY."""

    type = String()
    inherit_cache = True
    name = "year_month"


@compiles(year_month, "sqlite")
def _year_month_sqlite(element, compiler, **kw):
    return f"strftime('%Y-%m', {compiler.process(element.clauses, **kw)})"  # qmark paramstyle: no escaping


@compiles(year_month, "postgresql")
def _year_month_postgresql(element, compiler, **kw):
    return f"to_char({compiler.process(element.clauses, **kw)}, 'YYYY-MM')"


class whole_days_between(FunctionElement):
    """Whole days from the first timestamp to the second (floor), NULL if either is NULL."""

    type = Integer()
    inherit_cache = True
    name = "whole_days_between"


@compiles(whole_days_between, "sqlite")
def _days_sqlite(element, compiler, **kw):
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(julianday({end}) - julianday({start}) AS INTEGER)"


@compiles(whole_days_between, "postgresql")
def _days_postgresql(element, compiler, **kw):
    start, end = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM ({end} - {start})) / 86400) AS INTEGER)"


class days_between(FunctionElement):
    """Fractional days from the second timestamp to the first."""

    type = Float()
    inherit_cache = True
    name = "days_between"


@compiles(days_between, "sqlite")
def _days_between_sqlite(element, compiler, **kw):
    later, earlier = list(element.clauses)
    return f"(julianday({compiler.process(later, **kw)}) - julianday({compiler.process(earlier, **kw)}))"


@compiles(days_between, "postgresql")
def _days_between_postgresql(element, compiler, **kw):
    later, earlier = list(element.clauses)
    return (
        f"(EXTRACT(EPOCH FROM ({compiler.process(later, **kw)} - {compiler.process(earlier, **kw)}))"
        " / 86400.0)"
    )


class calendar_day(FunctionElement):
    """The calendar date of a timestamp, for daily GROUP BY on SQLite and PostgreSQL."""

    type = Date()
    inherit_cache = True
    name = "calendar_day"


@compiles(calendar_day, "sqlite")
def _calendar_day_sqlite(element, compiler, **kw):
    # SQLAlchemy stores SQLite timestamps as ISO text ("YYYY-MM-DD HH:MM:SS.ffffff"): the date is the
    # first ten characters, several times cheaper than date() over millions of rows.
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(calendar_day, "postgresql")
def _calendar_day_postgresql(element, compiler, **kw):
    return f"CAST({compiler.process(element.clauses, **kw)} AS DATE)"


class day_start(FunctionElement):
    """Midnight at the start of a timestamp's day, comparable with stored timestamps (index-friendly)."""

    type = DateTime()
    inherit_cache = True
    name = "day_start"


@compiles(day_start, "sqlite")
def _day_start_sqlite(element, compiler, **kw):
    return f"substr({compiler.process(element.clauses, **kw)}, 1, 10)"


@compiles(day_start, "postgresql")
def _day_start_postgresql(element, compiler, **kw):
    return f"date_trunc('day', {compiler.process(element.clauses, **kw)})"


class next_day_start(FunctionElement):
    """Midnight at the end of a timestamp's day."""

    type = DateTime()
    inherit_cache = True
    name = "next_day_start"


@compiles(next_day_start, "sqlite")
def _next_day_start_sqlite(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)}, '+1 day')"


@compiles(next_day_start, "postgresql")
def _next_day_start_postgresql(element, compiler, **kw):
    return f"(date_trunc('day', {compiler.process(element.clauses, **kw)}) + INTERVAL '1 day')"


class midnight_after(FunctionElement):
    """Midnight at the start of the day `days` + 1 days after a timestamp's day: a bound `column <
    midnight_after(moment, n)` keeps every row within n days after the moment (and some of the day
    after), so an index on `column` can serve a window whose exact end is checked separately."""

    type = DateTime()
    inherit_cache = False
    name = "midnight_after"

    def __init__(self, moment, days: int) -> None:
        if isinstance(days, bool) or not isinstance(days, int) or days < 0:
            raise ValueError("midnight_after needs a whole number of days of at least 0")
        self.days = days
        super().__init__(moment)


@compiles(midnight_after, "sqlite")
def _midnight_after_sqlite(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)}, '+{element.days + 1} days')"


@compiles(midnight_after, "postgresql")
def _midnight_after_postgresql(element, compiler, **kw):
    return f"(date_trunc('day', {compiler.process(element.clauses, **kw)}) + INTERVAL '{element.days + 1} days')"


class least(FunctionElement):
    type = DateTime()
    inherit_cache = True
    name = "least"


@compiles(least, "sqlite")
def _least_sqlite(element, compiler, **kw):
    return f"min({compiler.process(element.clauses, **kw)})"


@compiles(least, "postgresql")
def _least_postgresql(element, compiler, **kw):
    return f"LEAST({compiler.process(element.clauses, **kw)})"


class week_start(FunctionElement):
    """'YYYY-MM-DD' of the Monday starting a timestamp's ISO week."""

    type = String()
    inherit_cache = True
    name = "week_start"


@compiles(week_start, "sqlite")
def _week_sqlite(element, compiler, **kw):
    return f"date({compiler.process(element.clauses, **kw)}, '-6 days', 'weekday 1')"


@compiles(week_start, "postgresql")
def _week_postgresql(element, compiler, **kw):
    return f"to_char(date_trunc('week', {compiler.process(element.clauses, **kw)}), 'YYYY-MM-DD')"


# --------------------------------------------------------------------------- staged batch work


class CreateTemporaryTableAs(Executable, ClauseElement):
    """CREATE TEMPORARY TABLE name AS <select>, with the select's bound parameters kept.

    On PostgreSQL the select part of a CREATE TABLE AS may run as a parallel plan, which an
    INSERT ... SELECT never does.
    """

    inherit_cache = False

    def __init__(self, name: str, query) -> None:
        self.name = name
        self.query = query


@compiles(CreateTemporaryTableAs)
def _create_temporary_table_as(element, compiler, **kw):
    return f"CREATE TEMPORARY TABLE {element.name} AS {compiler.process(element.query, **kw)}"


def temporary_table_as(connection: Connection, name: str, query) -> TableClause:
    """Materialise `query` as the temporary table `name` (replacing one left over) and return it for joins.

    PostgreSQL gets fresh statistics for it (autovacuum never analyses temporary tables).
    """
    drop_temporary_table(connection, name)
    connection.execute(CreateTemporaryTableAs(name, query))
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql(f"ANALYZE {name}")
    return table(name, *[column(c.name, c.type) for c in query.selected_columns])


def rows_affected(result: Result[Any]) -> int:
    """The rows an INSERT, UPDATE or DELETE wrote (Session.execute types its result as a plain Result)."""
    return (result.rowcount or 0) if isinstance(result, CursorResult) else 0


def drop_temporary_table(connection: Connection, name: str) -> None:
    schema = "pg_temp" if connection.dialect.name == "postgresql" else "temp"  # never a permanent table
    connection.exec_driver_sql(f"DROP TABLE IF EXISTS {schema}.{name}")


BATCH_WORK_MEM_ENV = "CRM_BATCH_WORK_MEM"
DEFAULT_BATCH_WORK_MEM = "256MB"


def use_batch_memory(connection: Connection) -> None:
    """On PostgreSQL, give this transaction's sorts and hashes more memory (CRM_BATCH_WORK_MEM, default
    256MB) so a batch aggregation over millions of rows stays in memory instead of spilling to disk."""
    if connection.dialect.name != "postgresql":
        return
    value = os.environ.get(BATCH_WORK_MEM_ENV, DEFAULT_BATCH_WORK_MEM).strip()
    if not re.fullmatch(r"\d+\s*(kB|MB|GB)", value):
        raise ValueError(f"{BATCH_WORK_MEM_ENV} must be a size such as 256MB or 1GB, not {value!r}.")
    connection.exec_driver_sql(f"SET LOCAL work_mem = '{value}'")


def without_jit(connection: Connection) -> None:
    """On PostgreSQL, no JIT compilation for the rest of this transaction: an interactive query over a
    few hundred thousand rows is costed high enough to trigger it, and compiling then takes seconds
    longer than running the query."""
    if connection.dialect.name == "postgresql":
        connection.exec_driver_sql("SET LOCAL jit = off")
