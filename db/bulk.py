"""Bulk loading of DataFrames: executemany on SQLite, COPY on PostgreSQL.

Used by the demo-data simulator and by imports; never a row-at-a-time ORM loop.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import orjson
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
from sqlalchemy import Column, Connection, MetaData, Table, text


def _sqlite_column(series: pd.Series) -> list:
    if pd.api.types.is_datetime64_any_dtype(series):
        # SQLAlchemy's SQLite DateTime storage format, so ORM reads and comparisons agree.
        values = series.dt.strftime("%Y-%m-%d %H:%M:%S.%f").astype(object)
    elif pd.api.types.is_bool_dtype(series):
        values = series.astype(np.int64).astype(object)
    elif _is_json_column(series):
        values = series.map(_json_text).astype(object)
    else:
        values = series.astype(object)
    mask = series.isna().to_numpy()
    if mask.any():
        values = values.where(~mask, None)
    return values.tolist()


def _json_text(value) -> str | None:
    """JSON text of a list or dict (orjson: a tenth of json.dumps' time on millions of values; NaN -> null)."""
    if value is None:
        return None
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY).decode()


def _is_json_column(series: pd.Series) -> bool:
    if series.dtype != object:
        return False
    first = series.first_valid_index()
    return first is not None and isinstance(series[first], dict | list)


def _copy_csv(df: pd.DataFrame) -> io.BytesIO:
    """CSV for COPY, written by Arrow (several times faster than DataFrame.to_csv).

    Every valid value is quoted, so an empty string stays a string and an unquoted empty field
    is NULL, which is what PostgreSQL's CSV format expects.
    """
    out = df.copy(deep=False)
    for name in out.columns:
        if _is_json_column(out[name]):
            out[name] = out[name].map(_json_text)
    table = pa.Table.from_pandas(out, preserve_index=False)
    buffer = io.BytesIO()
    pacsv.write_csv(table, buffer, pacsv.WriteOptions(include_header=False, quoting_style="all_valid"))
    buffer.seek(0)
    return buffer


def load(connection: Connection, table: Table, df: pd.DataFrame) -> int:
    """Insert every row of `df` (columns named as the table's) into `table` in bulk."""
    if df.empty:
        return 0
    columns = list(df.columns)
    unknown = set(columns) - set(table.c.keys())
    if unknown:
        raise ValueError(f"{table.name} has no column(s) {sorted(unknown)}")
    dialect = connection.dialect.name
    if dialect == "postgresql":
        raw = connection.connection.driver_connection
        with raw.cursor() as cursor:
            cursor.copy_expert(
                f"COPY {table.name} ({', '.join(columns)}) FROM STDIN WITH (FORMAT csv)",
                _copy_csv(df[columns]),
            )
    else:
        rows = list(zip(*(_sqlite_column(df[c]) for c in columns), strict=True))
        placeholders = ", ".join("?" for _ in columns)
        raw = connection.connection.driver_connection
        raw.executemany(
            f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({placeholders})", rows
        )
    return len(df)


def reset_sequence(connection: Connection, table: Table) -> None:
    """After loading explicit ids on PostgreSQL, move the id sequence past them."""
    if connection.dialect.name != "postgresql" or "id" not in table.c:
        return
    connection.execute(
        text(
            f"SELECT setval(pg_get_serial_sequence('{table.name}', 'id'), "
            f"COALESCE((SELECT MAX(id) FROM {table.name}), 0) + 1, false)"
        )
    )


def next_id(connection: Connection, table: Table) -> int:
    return int(connection.execute(text(f"SELECT COALESCE(MAX(id), 0) + 1 FROM {table.name}")).scalar_one())


@contextmanager
def staged(connection: Connection, name: str, columns: list[Column], df: pd.DataFrame) -> Iterator[Table]:
    """A temporary table `name` holding `df` (loaded in bulk, analysed), dropped on the way out.

    For set-based writes from computed values: load once, then one UPDATE ... FROM or
    INSERT ... SELECT against it instead of a statement per row.
    """
    table = Table(name, MetaData(), *columns, prefixes=["TEMPORARY"])
    schema = "pg_temp" if connection.dialect.name == "postgresql" else "temp"  # never a permanent table
    connection.execute(text(f"DROP TABLE IF EXISTS {schema}.{name}"))
    table.create(connection)
    try:
        load(connection, table, df)
        if connection.dialect.name == "postgresql":
            connection.execute(text(f"ANALYZE {name}"))  # temporary tables get no statistics otherwise
        yield table
    finally:
        table.drop(connection)


def fetch_raw(connection: Connection, query) -> tuple[list[str], list[tuple]]:
    """Run `query` and fetch its rows straight from the driver's cursor, as plain tuples.

    For batch reads of millions of rows into numpy or pandas: SQLAlchemy's per-row Row objects and
    result processors cost seconds per million rows. Values are the driver's own (on SQLite,
    timestamps stay ISO text; pandas parses them), so use it only where the caller converts.
    """
    result = connection.execute(query)
    columns = list(result.keys())
    rows = result.cursor.fetchall() if result.cursor is not None else []
    result.close()
    return columns, rows
