"""One page of a longer result: numbered pages for the app's tables, keyset cursors for the API.

A keyset cursor (`after`) is the sort key of the last row of the previous page, so the next page is
read from an index position rather than by skipping rows (no OFFSET), costs the same on the last
page as on the first, and neither repeats nor skips a row when rows are inserted meanwhile. It is
opaque to clients: URL-safe base64 of the list's name and the key values.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Float, and_, cast, false, or_
from sqlalchemy.orm import Session

from crm_core.platform.errors import ValidationError

# The `after` of a list's first page in keyset mode (an empty cursor: nothing before it).
FIRST = ""
MAX_CURSOR_LENGTH = 400


@dataclass(frozen=True)
class Page:
    """Rows of one page. Numbered pages (`page` from 1) carry the `total`; keyset pages (`page` 0,
    asked for with `after`) do not count the rows. `next_after` continues after the last row; None on
    the last page."""

    rows: list[dict[str, Any]]
    total: int | None
    page: int
    page_size: int
    next_after: str | None = None

    @property
    def pages(self) -> int:
        return max(1, -(-(self.total or 0) // self.page_size))


class InvalidCursor(ValidationError):
    """An `after` that is not a cursor this list gave out."""

    param = "after"


@dataclass(frozen=True)
class SortKey:
    """One column of a list's order. The last key of every order is unique (an id), so the order is total.
    `nullable` keys sort their NULLs after every value, in either direction."""

    expression: Any  # a column or SQL expression
    descending: bool = False
    nullable: bool = False

    def clauses(self) -> list[Any]:
        ordered = self.expression.desc() if self.descending else self.expression.asc()
        return [ordered.nulls_last()] if self.nullable else [ordered]

    def python_type(self) -> type:
        try:
            return self.expression.type.python_type
        except NotImplementedError:
            return object

    def beyond(self, value: Any) -> ColumnElement[bool]:
        """Rows after `value` in this key's direction."""
        if value is None:
            return false()  # NULLs come last: nothing follows them in this key
        expression = self.expression
        if isinstance(value, bool):  # false before true (SQL refuses < and > with a boolean literal)
            if value is self.descending:
                return expression.is_(not value) if not self.nullable else or_(expression.is_(not value),
                                                                               expression.is_(None))
            return expression.is_(None) if self.nullable else false()
        after = expression < value if self.descending else expression > value
        return or_(after, expression.is_(None)) if self.nullable else after

    def same(self, value: Any) -> ColumnElement[bool]:
        return self.expression.is_(value) if value is None or isinstance(value, bool) else self.expression == value


def order_clauses(keys: Sequence[SortKey]) -> list[Any]:
    return [clause for key in keys for clause in key.clauses()]


def after_condition(keys: Sequence[SortKey], values: Sequence[Any]) -> ColumnElement[bool]:
    """Rows after `values` in the keys' lexicographic order, with the leading key's bound spelled out
    so that an index on it is read from that position."""
    branches = [and_(*[k.same(v) for k, v in zip(keys[:i], values[:i], strict=True)], keys[i].beyond(values[i]))
                for i in range(len(keys))]
    condition = or_(*branches)
    lead, first = keys[0], values[0]
    if first is not None and not lead.nullable and not isinstance(first, bool):
        bound = lead.expression <= first if lead.descending else lead.expression >= first
        condition = and_(bound, condition)
    return condition


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def encode_cursor(list_name: str, values: Sequence[Any]) -> str:
    text = json.dumps([list_name, *(_plain(v) for v in values)], separators=(",", ":"))
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _typed(value: Any, kind: type, nullable: bool) -> Any:
    if value is None:
        if nullable:
            return None
        raise ValueError("null")
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif kind is Decimal:
        if isinstance(value, str | int | float) and not isinstance(value, bool):
            return Decimal(str(value))
    elif kind is dt.datetime:
        if isinstance(value, str):
            return dt.datetime.fromisoformat(value)
    elif kind is dt.date:
        if isinstance(value, str):
            return dt.date.fromisoformat(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    elif isinstance(value, str | int | float | bool):
        return value
    raise ValueError(f"not a {kind.__name__}")


def decode_cursor(after: str, list_name: str, kinds: Sequence[tuple[type, bool]]) -> list[Any] | None:
    """The key values an `after` cursor holds (None for the first page); InvalidCursor when it is not
    one this list gave out. `kinds` are (python type, nullable) per key."""
    if after == FIRST:
        return None
    problem = InvalidCursor("after must be the next_after of a previous page of this list, passed back unchanged.")
    if len(after) > MAX_CURSOR_LENGTH:
        raise problem
    try:
        decoded = json.loads(base64.urlsafe_b64decode(after + "=" * (-len(after) % 4)).decode())
        if not isinstance(decoded, list) or len(decoded) != len(kinds) + 1 or decoded[0] != list_name:
            raise problem
        return [_typed(v, kind, nullable) for v, (kind, nullable) in zip(decoded[1:], kinds, strict=True)]
    except (ValueError, TypeError, UnicodeDecodeError, binascii.Error, InvalidOperation) as exc:
        raise problem from exc


def check_limit(limit: Any, most: int, name: str = "page size") -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= most:
        raise ValidationError(f"The {name} must be a whole number from 1 to {most}.")
    return limit


def fetch_rows(session: Session, query: Any, keys: Sequence[SortKey], list_name: str, *,
               page: int = 1, page_size: int, after: str | None = None) -> tuple[list[Any], str | None]:
    """Rows of `query` in the keys' order: the numbered `page`, or with `after` (FIRST for the start) the
    rows after that cursor; and the cursor after the last row when more rows follow.

    The sort keys are added as the query's last columns (one per key)."""
    # SQLite keeps money as REAL and rounds it to the column's scale when read: the cursor keeps the
    # stored number itself, or the row at the boundary would compare as after itself.
    inexact = session.get_bind().dialect.name == "sqlite"
    kinds = [(float if inexact and key.python_type() is Decimal else key.python_type(), key.nullable) for key in keys]
    sort_columns = [(cast(key.expression, Float) if kind is float and key.python_type() is Decimal else key.expression)
                    .label(f"sort_key_{i}") for i, (key, (kind, _n)) in enumerate(zip(keys, kinds, strict=True))]
    query = query.add_columns(*sort_columns).order_by(*order_clauses(keys)).limit(page_size + 1)
    if after is None:
        query = query.offset((max(1, page) - 1) * page_size)
    else:
        values = decode_cursor(after, list_name, kinds)
        if values is not None:
            query = query.where(after_condition(keys, values))
    rows: list[Any] = list(session.execute(query).all())
    more = len(rows) > page_size
    rows = rows[:page_size]
    if not (more and rows):
        return rows, None
    last = rows[-1]._mapping
    return rows, encode_cursor(list_name, [last[f"sort_key_{i}"] for i in range(len(keys))])


def position_cursor(list_name: str, position: int) -> str:
    """A cursor into a list held in order in one place (a job's results): the next position."""
    return encode_cursor(list_name, [position])


def decode_position(after: str, list_name: str) -> int:
    values = decode_cursor(after, list_name, [(int, False)])
    if values is None:
        return 0
    if values[0] < 0:
        raise InvalidCursor("after must be the next_after of a previous page of this list, passed back unchanged.")
    return int(values[0])
