"""A factory that gives a customer one row in EVERY table that references customers.

It walks the reflected foreign keys (`merge.customer_references`), so a table added to the schema
later gets a row here, and so is covered by the merge, undo, export and erasure tests, without
anyone touching the tests.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Table,
    Text,
    insert,
    select,
)
from sqlalchemy.orm import Session

from crm_core import customers

_counter = itertools.count(1)


def _enum_value(table: Table, name: str) -> str | None:
    pattern = re.compile(rf"(?<![\w]){re.escape(name)} = '([^']+)'")
    for constraint in table.constraints:
        found = pattern.search(str(getattr(constraint, "sqltext", "")))
        if found:
            return found.group(1)
    return None


def _value(table: Table, column, n: int) -> Any:
    enum = _enum_value(table, column.name)
    if enum is not None:
        return enum
    kind = column.type
    if isinstance(kind, Boolean):
        return False
    if isinstance(kind, DateTime):
        return dt.datetime(2026, 1, 1, 12, 0) + dt.timedelta(minutes=n)
    if isinstance(kind, Date):
        return dt.date(2026, 1, 1) + dt.timedelta(days=n % 300)
    if isinstance(kind, Numeric) and not isinstance(kind, Float):
        return Decimal("10.00")
    if isinstance(kind, Float):
        return 0.5
    if isinstance(kind, Integer | BigInteger):
        return 1
    if isinstance(kind, JSON):
        return {"note": f"json {n}"}
    if isinstance(kind, LargeBinary):
        return b"x"
    if isinstance(kind, String | Text):
        length = getattr(kind, "length", None) or 40
        text = f"v{n}"
        return (text * 4)[:length] if length < 8 else f"{table.name[:8]}-{column.name[:8]}-{n}"[:length]
    raise TypeError(f"no factory value for {table.name}.{column.name} ({kind!r})")


class RowFactory:
    """Builds rows generically; parent rows (FKs to other tables) are created or reused."""

    def __init__(self, session: Session, shared: dict[str, Any] | None = None):
        self.session = session
        self.shared = shared if shared is not None else {}  # parents without a customer column

    def row(self, table: Table, fixed: dict[str, Any], owner: int, own_parents: dict[str, Any]) -> Any:
        n = next(_counter)
        values: dict[str, Any] = {}
        customers = table.metadata.tables["customers"]
        for column in table.columns:
            if column.name in fixed:
                values[column.name] = fixed[column.name]
                continue
            if column.primary_key and column.autoincrement in (True, "auto") and isinstance(column.type, Integer | BigInteger) \
                    and not column.foreign_keys:
                continue
            fks = list(column.foreign_keys)
            if fks:
                parent = fks[0].column.table
                if parent is customers:
                    values[column.name] = owner if not column.nullable or column.primary_key else None
                    if column.nullable and not column.primary_key:
                        values[column.name] = None
                    continue
                if column.nullable and parent.name in ("users", "ml_models"):
                    values[column.name] = None
                    continue
                values[column.name] = self.parent(parent, owner, own_parents)
                continue
            if column.nullable and column.default is None and column.server_default is None and not isinstance(
                    column.type, String | Text | JSON):
                values[column.name] = None
                continue
            values[column.name] = _value(table, column, n)
        result = self.session.execute(insert(table).values(values).returning(*table.primary_key.columns))
        return result.one()[0]

    def parent(self, table: Table, owner: int, own_parents: dict[str, Any]) -> Any:
        refers_to_customer = any(fk.column.table.name == "customers" for fk in table.foreign_keys)
        cache = own_parents if refers_to_customer else self.shared
        if table.name not in cache:
            cache[table.name] = self.row(table, {}, owner, own_parents)
        return cache[table.name]


def fill_every_table(session: Session, customer_id: int, bystander_id: int,
                     shared: dict[str, Any] | None = None) -> dict[str, int]:
    """One row per (table, customer column) pointing at `customer_id`; returns rows per reference.

    Other customer columns on the same row point at `bystander_id` (or stay empty).
    """
    factory = RowFactory(session, shared)
    own_parents: dict[str, Any] = {}
    made: dict[str, int] = {}
    for reference in customers.customer_references():
        table, column = reference.table, reference.column
        if table.name == "customers":
            fixed = {"merged_into_id": customer_id, "status": "merged", "email": None}
            factory.row(table, fixed, bystander_id, own_parents)
            made[reference.name] = 1
            continue
        if table.name in own_parents and len(list(table.primary_key.columns)) == 1 and any(
                c is column for c in table.primary_key.columns) is False:
            # Already created as a parent of another table (e.g. the loyalty account): that row counts.
            pk = list(table.primary_key.columns)[0]
            if session.scalar(select(column).where(pk == own_parents[table.name])) == customer_id:
                made[reference.name] = 1
                continue
        fixed = {column.name: customer_id}
        for fk in table.foreign_keys:
            other = fk.parent
            if other is not column and fk.column.table.name == "customers":
                fixed[other.name] = bystander_id if not other.nullable else None
        key = factory.row(table, fixed, customer_id, own_parents)
        if len(list(table.primary_key.columns)) == 1:
            own_parents.setdefault(table.name, key)
        made[reference.name] = 1
    session.flush()
    return made
