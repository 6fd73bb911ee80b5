"""Customer exports to CSV, Excel (.xlsx) and JSON: chosen columns, streamed, safe in a spreadsheet.

The scope is every customer (merged and erased records left out), a list of customer ids (a search
result) or the current members of a segment. Rows are read from the database `batch` at a time
(a server-side cursor on PostgreSQL) and written as they come; every text cell goes through
`export.neutralize`, so a value such as `=HYPERLINK(...)` is shown, never run. The default columns
are the ones `crm import customers` reads without a mapping, so an export can be imported again.
"""

from __future__ import annotations

import datetime as dt
import io
import json
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import IO, Any

from openpyxl import Workbook
from openpyxl.cell.cell import ILLEGAL_CHARACTERS_RE
from sqlalchemy import FromClause, func, select, true
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.spreadsheet import csv_chunks, neutralize
from crm_core.reporting.sales_rollups import counted_customers
from db.models import Customer, CustomerAnalytics, CustomerLifecycleStage, CustomerSegment, CustomerSegmentMembership

EXPORT_FORMATS = ("csv", "xlsx", "json")
EXPORT_MIME_TYPES = {
    "csv": "text/csv",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "json": "application/json",
}
CA = CustomerAnalytics
EXPORT_COLUMNS: dict[str, Any] = {
    "id": Customer.id,
    "external_id": Customer.external_id,
    "first_name": Customer.first_name,
    "last_name": Customer.last_name,
    "email": Customer.email,
    "phone": Customer.phone,
    "country": Customer.country_code,
    "city": Customer.city,
    "signup_date": Customer.signed_up_at,
    "company": Customer.company,
    "date_of_birth": Customer.date_of_birth,
    "gender": Customer.gender,
    "preferred_language": Customer.preferred_language,
    "acquisition_channel": Customer.acquisition_channel,
    "status": Customer.status,
    "order_count": CA.order_count,
    "total_revenue": CA.total_revenue,
    "rfm_segment": CA.rfm_segment,
    "lifecycle_stage": CustomerLifecycleStage.stage,
}
ANALYTICS_COLUMNS = {"order_count", "total_revenue", "rfm_segment"}
DEFAULT_EXPORT_COLUMNS = [
    "external_id", "first_name", "last_name", "email", "phone", "country", "city", "signup_date", "company",
]


def check_export_columns(columns: Iterable[str] | None) -> list[str]:
    chosen = list(DEFAULT_EXPORT_COLUMNS if columns is None else columns)
    if not chosen:
        raise ValidationError("Choose at least one column to export.")
    unknown = [c for c in chosen if c not in EXPORT_COLUMNS]
    if unknown:
        raise ValidationError(f"Unknown column(s) {', '.join(map(str, unknown))}; choose from {', '.join(EXPORT_COLUMNS)}.")
    if len(set(chosen)) != len(chosen):
        raise ValidationError("A column is chosen twice; choose each column once.")
    return chosen


def segment_by_name(session: Session, name: str) -> CustomerSegment:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("Name the segment to export.")
    segment = session.scalar(select(CustomerSegment).where(CustomerSegment.name == name.strip()))
    if segment is None:
        segment = session.scalar(
            select(CustomerSegment).where(func.lower(CustomerSegment.name) == name.strip().lower())
        )
    if segment is None:
        raise NotFound(f"No segment named {name.strip()!r}; `crm segments list` shows the names.")
    return segment


def _ids(customer_ids: Iterable[int | list[int]], size: int) -> Iterator[list[int]]:
    """Ids in batches; chunks of ids (as `search.search_ids` yields them) are taken as they come."""
    batch: list[int] = []
    for item in customer_ids:
        for value in item if isinstance(item, list | tuple) else (item,):
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValidationError(f"Customer ids are whole numbers; {value!r} is not.")
            batch.append(value)
            if len(batch) >= size:
                yield batch
                batch = []
    if batch:
        yield batch


def iter_customers(session: Session, viewer: Actor, columns: Iterable[str] | None = None, *, segment: str | None = None,
                   customer_ids: Iterable[int] | None = None, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """Rows (column -> value) of the customers in scope, in id order, read `batch` at a time."""
    require(viewer, "customers.export")
    chosen = check_export_columns(columns)
    if segment is not None and customer_ids is not None:
        raise ValidationError("Export a segment or a list of customers, not both.")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValidationError("The batch size must be a positive whole number.")
    source: FromClause = Customer.__table__
    if ANALYTICS_COLUMNS & set(chosen):
        source = source.outerjoin(CA.__table__, CA.customer_id == Customer.id)
    if "lifecycle_stage" in chosen:
        source = source.outerjoin(CustomerLifecycleStage.__table__, CustomerLifecycleStage.customer_id == Customer.id)
    query = (select(*[EXPORT_COLUMNS[c].label(c) for c in chosen]).select_from(source).where(COUNTED_CUSTOMER)
             .order_by(Customer.id))
    if segment is not None:
        query = query.where(Customer.id.in_(_members(segment_by_name(session, segment).id)))

    def rows() -> Iterator[dict[str, Any]]:
        if customer_ids is None:
            for row in session.execute(query.execution_options(yield_per=batch)):
                yield dict(row._mapping)
            return
        for ids in _ids(customer_ids, min(batch, 1000)):
            for row in session.execute(query.where(Customer.id.in_(ids))):
                yield dict(row._mapping)

    return rows()


def count_exported(session: Session, viewer: Actor, *, segment: str | None = None) -> int:
    """How many customers an export of all customers, or of a segment, would write."""
    require(viewer, "customers.export")
    if segment is None:
        stored = counted_customers(session)
        if stored is not None:
            return stored
    query = select(func.count()).select_from(Customer).where(COUNTED_CUSTOMER)
    if segment is not None:
        found = segment_by_name(session, segment)
        query = query.where(Customer.id.in_(_members(found.id)))
    return int(session.scalar(query) or 0)


def _members(segment_id: int):
    return select(CustomerSegmentMembership.customer_id).where(
        CustomerSegmentMembership.segment_id == segment_id, CustomerSegmentMembership.is_active == true()
    )


def _text(value: Any) -> Any:
    """A value for CSV and JSON: dates in ISO form, money as a plain number, text neutralized."""
    if isinstance(value, dt.datetime):
        return value.date().isoformat() if value.time() == dt.time() else value.isoformat(sep=" ")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return neutralize(value)


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return ILLEGAL_CHARACTERS_RE.sub("", neutralize(value))
    return value


def write_csv(rows: Iterable[dict[str, Any]], columns: list[str], out: IO[bytes]) -> int:
    """UTF-8 with a byte-order mark, so spreadsheets read accents and scripts alike."""
    count = 0

    def counted() -> Iterator[dict[str, Any]]:
        nonlocal count
        for row in rows:
            count += 1
            yield {c: _text(row[c]) for c in columns}

    out.write("\ufeff".encode())
    for chunk in csv_chunks(counted(), columns):
        out.write(chunk.encode("utf-8"))
    return count


def write_xlsx(rows: Iterable[dict[str, Any]], columns: list[str], out: IO[bytes]) -> int:
    """A write-only workbook: rows go to disk as they come, not into memory."""
    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet("Customers")
    sheet.append(columns)
    count = 0
    for row in rows:
        sheet.append([_cell(row[c]) for c in columns])
        count += 1
    workbook.save(out)
    return count


def write_json(rows: Iterable[dict[str, Any]], columns: list[str], out: IO[bytes]) -> int:
    """A JSON array written object by object."""
    out.write(b"[")
    count = 0
    for row in rows:
        out.write(b"\n" if count == 0 else b",\n")
        out.write(json.dumps({c: _text(row[c]) for c in columns}, ensure_ascii=False).encode("utf-8"))
        count += 1
    out.write(b"\n]\n" if count else b"]\n")
    return count


WRITERS = {"csv": write_csv, "xlsx": write_xlsx, "json": write_json}


def export_customers(session: Session, actor: Actor, out: IO[bytes], fmt: str, columns: Iterable[str] | None = None, *,
                     segment: str | None = None, customer_ids: Iterable[int] | None = None) -> int:
    """Write the customers in scope to `out` in `fmt`; returns the number of customers written.

    An export of personal data is recorded in the audit log (format, columns, scope and count).
    """
    if fmt not in EXPORT_FORMATS:
        raise ValidationError(f"Export format must be one of {', '.join(EXPORT_FORMATS)}, not {fmt!r}.")
    chosen = check_export_columns(columns)
    rows = iter_customers(session, actor, chosen, segment=segment, customer_ids=customer_ids)
    count = WRITERS[fmt](rows, chosen, out)
    scope = f"segment {segment}" if segment is not None else "selected customers" if customer_ids is not None else "all"
    record_audit(session, actor, "customers.export", "customer", None,
                 after={"format": fmt, "columns": chosen, "scope": scope, "rows": count})
    return count


def export_bytes(session: Session, actor: Actor, fmt: str, columns: Iterable[str] | None = None, *,
                 segment: str | None = None, customer_ids: Iterable[int] | None = None) -> tuple[bytes, int]:
    """The export as bytes, for a download button."""
    buffer = io.BytesIO()
    count = export_customers(session, actor, buffer, fmt, columns, segment=segment, customer_ids=customer_ids)
    return buffer.getvalue(), count


STREAM_FORMATS = ("csv", "jsonl")


def start_csv_stream(session: Session, actor: Actor, columns: Iterable[str] | None = None, *,
                     segment: str | None = None, fmt: str = "csv") -> tuple[list[str], int]:
    """Check and audit a streamed export (CSV, or JSON Lines with `fmt="jsonl"`) before its first byte
    is sent (a stream cannot be recalled, so it is recorded when it starts, with the rows it will hold);
    returns the columns and the row count for `csv_stream` or `jsonl_stream`."""
    if fmt not in STREAM_FORMATS:
        raise ValidationError(f"A streamed export is one of {', '.join(STREAM_FORMATS)}, not {fmt!r}.")
    chosen = check_export_columns(columns)
    count = count_exported(session, actor, segment=segment)
    record_audit(session, actor, "customers.export", "customer", None,
                 after={"format": fmt, "columns": chosen, "scope": f"segment {segment}" if segment else "all",
                        "rows": count, "streamed": True})
    return chosen, count


def csv_stream(session: Session, viewer: Actor, columns: list[str], *, segment: str | None = None,
               batch: int = 5000) -> Iterator[bytes]:
    """The export as UTF-8 CSV chunks (with a byte-order mark), read `batch` rows at a time, so memory
    stays flat however many customers there are."""
    rows = iter_customers(session, viewer, columns, segment=segment, batch=batch)
    yield "\ufeff".encode()
    for chunk in csv_chunks(rows, columns, cell=_text):  # _text neutralizes text itself
        yield chunk.encode("utf-8")


def _json_value(value: Any) -> Any:
    """A value for JSON Lines: dates and times in ISO form, money as exact decimal text; text as it is
    (JSON is read by programs, not run by a spreadsheet)."""
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def jsonl_stream(session: Session, viewer: Actor, columns: list[str], *, segment: str | None = None,
                 batch: int = 5000, chunk_rows: int = 1000) -> Iterator[bytes]:
    """The export as JSON Lines (one object per customer, in id order), read `batch` rows at a time from a
    server-side cursor and sent `chunk_rows` lines at a time, so memory stays flat."""
    lines: list[str] = []
    for row in iter_customers(session, viewer, columns, segment=segment, batch=batch):
        lines.append(json.dumps({c: _json_value(row[c]) for c in columns}, ensure_ascii=False,
                                separators=(",", ":")))
        if len(lines) >= chunk_rows:
            yield ("\n".join(lines) + "\n").encode("utf-8")
            lines = []
    if lines:
        yield ("\n".join(lines) + "\n").encode("utf-8")
