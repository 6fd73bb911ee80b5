"""Streaming CSV export, safe to open in a spreadsheet."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator

FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")
# A spreadsheet in a locale whose list separator is ';' (or one told to split on ',') splits a cell
# such as `x;=1+1` into two, the second a formula: a formula after a separator is neutralised too.
_FORMULA_AFTER_SEPARATOR = re.compile(r"([;,|])(\s*)(?=[=+\-@])")


def neutralize(value):
    """Prefix text that a spreadsheet would run as a formula with an apostrophe, at its start and
    after any list separator within it."""
    if not isinstance(value, str):
        return value
    if ";" in value or "," in value or "|" in value:  # most cells have no separator: skip the expression
        value = _FORMULA_AFTER_SEPARATOR.sub(r"\1\2'", value)
    if value.startswith(FORMULA_PREFIXES):
        return "'" + value
    return value


def csv_chunks(rows: Iterable[dict], columns: list[str], cell=neutralize) -> Iterator[str]:
    """CSV text in chunks, header first, without holding every row in memory; `cell` makes each value
    safe (by default: neutralize)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    for count, row in enumerate(rows, start=1):
        writer.writerow([cell(row.get(c)) for c in columns])
        if count % 5000 == 0:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
