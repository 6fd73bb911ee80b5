"""Customer imports: validated, deduplicated and written a chunk at a time.

Duplicates are looked for in this order: the same external id, the same email (trimmed, case
ignored), the same phone number (normalized to E.164), and finally a similar name in the same
block (same country, same city, same first letter of the last name) scored with rapidfuzz
`token_sort_ratio` at or above the threshold; a name match is not taken when both records carry
different emails. Each chunk is written before the next is read, so later rows of the file meet
earlier ones in the database: one lookup finds duplicates within the file and against existing
customers alike.

Import functions write into the caller's session and never commit: the caller's unit of work makes
an import all or nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rapidfuzz import fuzz, process
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, func, literal, select, tuple_, update
from sqlalchemy.orm import Session

from crm_core.customers.rules import GONE_STATUSES, TEXT_LIMITS
from crm_core.imports.fields import COLUMN_ALIASES, CUSTOMER_FIELDS, normalized_column
from crm_core.imports.files import Progress, Source, TableReader
from crm_core.imports.runs import (
    LOOKUP_BATCH,
    MAX_KEPT_DUPLICATES,
    DuplicateMatch,
    ErrorSink,
    ImportReport,
    PreviewRow,
    batches,
    finish_run,
    mapped_values,
    start_run,
)
from crm_core.imports.values import (
    block_key,
    email_key,
    name_key,
    normalize_country,
    normalize_email,
    normalize_phone,
    parse_datetime,
    phone_variants,
)
from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from db import bulk
from db.models import Customer, utcnow

DUPLICATE_POLICIES = ("skip", "update", "create")
DEFAULT_FUZZY_THRESHOLD = 90
CUSTOMER_CHUNK = 5_000
GENDER_VALUES = {
    "f": "female", "female": "female", "w": "female", "woman": "female",
    "m": "male", "male": "male", "man": "male",
    "x": "non_binary", "d": "non_binary", "diverse": "non_binary", "non_binary": "non_binary",
    "non-binary": "non_binary", "nonbinary": "non_binary",
    "u": "unknown", "unknown": "unknown",
}


def default_customer_mapping(columns: Iterable[str], fields: Iterable[str] = tuple(CUSTOMER_FIELDS)) -> dict[str, str]:
    """File column -> field for the columns whose names already say the field."""
    wanted = set(fields)
    mapping: dict[str, str] = {}
    for column in columns:
        name = normalized_column(column)
        target = name if name in wanted else COLUMN_ALIASES.get(name)
        if target in wanted and target not in mapping.values():
            mapping[column] = target
    return mapping


def check_customer_mapping(mapping: dict[str, str], columns: list[str]) -> dict[str, str]:
    """A clean customer mapping, or a ValidationError naming what is wrong."""
    if not isinstance(mapping, dict):
        raise ValidationError("A column mapping is a list of file column -> field pairs.")
    clean: dict[str, str] = {}
    for column, target in mapping.items():
        if target in (None, "", "(ignore)"):
            continue
        if target not in CUSTOMER_FIELDS:
            raise ValidationError(f"{target!r} is not a customer field; use one of {', '.join(CUSTOMER_FIELDS)}.")
        if column not in columns:
            raise ValidationError(f"The file has no column {column!r} (its columns: {', '.join(columns)}).")
        if target in clean.values():
            raise ValidationError(f"Two columns are mapped to {CUSTOMER_FIELDS[target]}; map each field once.")
        clean[column] = target
    targets = set(clean.values())
    missing = [CUSTOMER_FIELDS[f] for f in ("first_name", "last_name") if f not in targets]
    if missing:
        raise ValidationError(f"Map a column to {' and '.join(missing)}: every customer needs a name.")
    if not targets & {"email", "phone"}:
        raise ValidationError("Map a column to Email or Phone: a customer needs a way to be reached.")
    return clean


def validate_customer(values: dict[str, str], now: dt.datetime, default_country: str | None = None
                      ) -> tuple[dict[str, Any] | None, list[str]]:
    """A clean customer record from one row's field -> text, or the reasons it cannot be one."""
    reasons: list[str] = []
    record: dict[str, Any] = {}
    text = {f: (values.get(f) or "").strip() for f in CUSTOMER_FIELDS}
    for name, limit in ((n, limit) for n, limit in TEXT_LIMITS.items() if n in CUSTOMER_FIELDS):
        if len(text[name]) > limit:
            reasons.append(f"{CUSTOMER_FIELDS[name].lower()} is longer than {limit} characters")
    for name in ("first_name", "last_name"):
        if not text[name]:
            reasons.append(f"{CUSTOMER_FIELDS[name].lower()} is missing")
    record.update(external_id=text["external_id"] or None, first_name=text["first_name"],
                  last_name=text["last_name"], company=text["company"] or None, city=text["city"] or None)
    record["country_code"] = None
    if text["country"]:
        try:
            record["country_code"] = normalize_country(text["country"])
        except ValidationError as exc:
            reasons.append(str(exc))
    elif default_country:
        record["country_code"] = default_country
    record["email"] = None
    if text["email"]:
        try:
            record["email"] = normalize_email(text["email"])
        except ValidationError as exc:
            reasons.append(str(exc))
    record["phone"] = None
    if text["phone"]:
        try:
            record["phone"] = normalize_phone(text["phone"], record["country_code"])
        except ValidationError as exc:
            reasons.append(str(exc))
    if not text["email"] and not text["phone"]:
        reasons.append("email and phone are both missing")
    record["signed_up_at"] = None
    if text["signup_date"]:
        try:
            signed_up = parse_datetime(text["signup_date"])
            if signed_up > now + dt.timedelta(days=1):
                reasons.append(f"signup date {text['signup_date']!r} is in the future")
            elif signed_up.year < 1900:
                reasons.append(f"signup date {text['signup_date']!r} is before 1900")
            else:
                record["signed_up_at"] = signed_up
        except ValidationError as exc:
            reasons.append(f"signup date: {exc}")
    record["date_of_birth"] = None
    if text["date_of_birth"]:
        try:
            born = parse_datetime(text["date_of_birth"]).date()
            if born > now.date() or born.year < now.year - 150:
                reasons.append(f"date of birth {text['date_of_birth']!r} is not a plausible birth date")
            else:
                record["date_of_birth"] = born
        except ValidationError as exc:
            reasons.append(f"date of birth: {exc}")
    record["gender"] = None
    if text["gender"]:
        gender = GENDER_VALUES.get(text["gender"].lower())
        if gender is None:
            reasons.append(f"gender {text['gender']!r} is not one of female, male, non_binary, unknown")
        record["gender"] = gender
    return (None if reasons else record), reasons


def row_identifier(values: dict[str, str], number: int) -> str:
    """What a person can find the row by: its external id, email or name."""
    for name in ("external_id", "email"):
        if (values.get(name) or "").strip():
            return values[name].strip()
    full = f"{(values.get('first_name') or '').strip()} {(values.get('last_name') or '').strip()}".strip()
    return full or f"row {number}"


@dataclass
class _Candidate:
    """A customer a row may duplicate: an existing one, or one this chunk is about to create."""

    id: int | None
    row: int | None
    external_id: str | None
    email: str | None
    block: tuple[str, str, str, str]
    name: str
    pending: dict[str, Any] | None = None  # values to write (a new customer, or an existing one's update)
    status: str = "active"

    def label(self) -> str:
        return f"customer {self.id}" if self.id is not None else f"row {self.row} of this file"


class _ChunkIndex:
    """Exact and fuzzy lookups over the candidates of one chunk."""

    def __init__(self) -> None:
        self.by_external: dict[str, _Candidate] = {}
        self.by_email: dict[str, _Candidate] = {}
        self.by_phone: dict[str, _Candidate] = {}
        self.by_block: dict[tuple[str, str, str, str], list[_Candidate]] = {}

    def add(self, candidate: _Candidate, phones: Iterable[str]) -> None:
        if candidate.external_id:
            self.by_external.setdefault(candidate.external_id, candidate)
        key = email_key(candidate.email)
        if key:
            self.by_email.setdefault(key, candidate)
        for phone in phones:
            if phone:
                self.by_phone.setdefault(phone, candidate)
        self.by_block.setdefault(candidate.block, []).append(candidate)

    def find(self, record: dict[str, Any], threshold: float | None) -> tuple[_Candidate, str] | None:
        if record["external_id"] and record["external_id"] in self.by_external:
            return self.by_external[record["external_id"]], "external_id"
        key = email_key(record["email"])
        if key and key in self.by_email:
            return self.by_email[key], "email"
        if record["phone"] and record["phone"] in self.by_phone:
            return self.by_phone[record["phone"]], "phone"
        if threshold:
            pool = [c for c in self.by_block.get(record["_block"], ())
                    if not (key and c.email and email_key(c.email) != key)]
            if pool:
                best = process.extractOne(record["_name"], [c.name for c in pool], scorer=fuzz.token_sort_ratio,
                                          score_cutoff=threshold)
                if best is not None:
                    return pool[best[2]], f"name ({best[1]:.0f}%)"
        return None


def _lower_variants(text: str) -> set[str]:
    ascii_only = "".join(ch.lower() if ch.isascii() else ch for ch in text)
    return {text.lower(), ascii_only}


def _existing_candidates(session: Session, records: list[dict[str, Any]], threshold: float | None) -> _ChunkIndex:
    """Existing customers that share an exact key or a fuzzy block with a record of the chunk."""
    c = Customer.__table__.c
    columns = (c.id, c.external_id, c.email, c.phone, c.first_name, c.last_name, c.city, c.country_code)
    live = c.status.not_in(GONE_STATUSES)
    found: dict[int, Any] = {}

    def collect(condition, only_live: bool = True) -> None:
        query = select(*columns, c.status).where(condition)
        for row in session.execute(query.where(live) if only_live else query):
            found[row.id] = row

    # Each lookup only for the records the previous ones did not match.
    external_ids = sorted({r["external_id"] for r in records if r["external_id"]})
    for batch in batches(external_ids):
        collect(c.external_id.in_(batch), only_live=False)  # a merged record's id is still taken
    known = {row.external_id for row in found.values()}
    rest = [r for r in records if r["external_id"] not in known]
    emails = sorted({key for r in rest if (key := email_key(r["email"]))})
    for batch in batches(emails):
        collect(func.lower(c.email).in_(batch))
    known_emails = {email_key(row.email) for row in found.values() if row.email}
    rest = [r for r in rest if email_key(r["email"]) not in known_emails]
    phones = sorted({v for r in rest if r["phone"] for v in phone_variants(r["phone"])})
    for batch in batches(phones):
        collect(c.phone.in_(batch))
    known_phones = {row.phone for row in found.values() if row.phone}
    rest = [r for r in rest if not (r["phone"] and set(phone_variants(r["phone"])) & known_phones)]
    if threshold and rest:
        # Rows of the chunk's blocks, fetched by the database's own lower(): spelled both as Python
        # folds case and as an ASCII-only lower() does, so SQLite and PostgreSQL find the same rows.
        sql_key = tuple_(func.coalesce(c.country_code, ""), func.coalesce(func.lower(c.city), ""),
                         func.lower(func.substr(c.last_name, 1, 2)))
        keys = sorted({(r["country_code"] or "", city, last)
                       for r in rest
                       for city in _lower_variants(r["city"] or "")
                       for last in _lower_variants(r["last_name"][:2])})
        for batch in batches(keys, LOOKUP_BATCH // 3):
            collect(sql_key.in_(batch))
    index = _ChunkIndex()
    for row in sorted(found.values(), key=lambda r: r.id):
        if row.status in GONE_STATUSES:
            index.by_external.setdefault(row.external_id, _Candidate(
                id=row.id, row=None, external_id=row.external_id, email=None, block=("", "", "", ""), name="",
                status=row.status))
            continue
        phones_of = [row.phone] if row.phone else []
        if row.phone:
            with contextlib.suppress(ValidationError):
                phones_of.append(normalize_phone(row.phone, row.country_code))
        index.add(_Candidate(id=row.id, row=None, external_id=row.external_id, email=row.email, status=row.status,
                             block=block_key(row.country_code, row.city, row.first_name, row.last_name),
                             name=name_key(row.first_name, row.last_name, row.city)), phones_of)
    return index


_UPDATABLE = ("first_name", "last_name", "email", "phone", "company", "country_code", "city", "signed_up_at",
              "date_of_birth", "gender")


def _merge(target: dict[str, Any], record: dict[str, Any]) -> None:
    """The row's non-empty values over the target's (an update never blanks a field)."""
    for name in (*_UPDATABLE, "external_id"):
        value = record.get(name)
        if value is None:
            continue
        if name == "external_id" and target.get("external_id"):
            continue
        target[name] = value


def _write_customers(session: Session, creates: list[dict[str, Any]], updates: dict[int, dict[str, Any]],
                     now: dt.datetime) -> None:
    """Bulk insert the new customers and apply the updates, in the session's transaction."""
    connection = session.connection()
    if creates:
        frame = pd.DataFrame({
            "external_id": [r.get("external_id") for r in creates],
            "first_name": [r["first_name"] for r in creates],
            "last_name": [r["last_name"] for r in creates],
            "email": [r.get("email") for r in creates],
            "phone": [r.get("phone") for r in creates],
            "company": [r.get("company") for r in creates],
            "country_code": [r.get("country_code") for r in creates],
            "city": [r.get("city") for r in creates],
            "date_of_birth": pd.Series([r.get("date_of_birth") for r in creates], dtype=object),
            "gender": [r.get("gender") for r in creates],
            "acquisition_channel": "import",
            "status": "active",
            "signed_up_at": pd.to_datetime([r.get("signed_up_at") or now for r in creates]),
            "created_at": pd.to_datetime([now] * len(creates)),
            "updated_at": pd.to_datetime([now] * len(creates)),
            "version": 1,
        })
        bulk.load(connection, Customer.__table__, frame)
    if updates:
        # The changes go to a temporary table in bulk (COPY on PostgreSQL), then one UPDATE ... FROM.
        c = Customer.__table__.c
        changed = ("external_id", *_UPDATABLE)
        staging = Table("import_customer_updates", MetaData(), Column("id", Integer),
                        *[Column(name, c[name].type) for name in changed], prefixes=["TEMPORARY"])
        staging.create(connection)
        ids = list(updates)
        frame = pd.DataFrame({"id": ids, **{name: [updates[i].get(name) for i in ids] for name in changed}})
        frame["signed_up_at"] = pd.to_datetime(frame["signed_up_at"])
        bulk.load(connection, staging, frame)
        u = staging.c
        values = {name: func.coalesce(u[name], c[name]) for name in _UPDATABLE}
        values["external_id"] = func.coalesce(c.external_id, u.external_id)
        connection.execute(update(Customer.__table__).where(c.id == u.id).values(
            **values, version=c.version + 1, updated_at=literal(now, DateTime)))
        staging.drop(connection)


def _apply_customer_chunk(session: Session, chunk: list[tuple[int, str, dict[str, Any]]], policy: str,
                          threshold: float | None, report: ImportReport, errors: ErrorSink, now: dt.datetime) -> None:
    records = [record for _, _, record in chunk]
    existing = _existing_candidates(session, records, threshold)
    in_chunk = _ChunkIndex()
    creates: list[dict[str, Any]] = []
    updates: dict[int, dict[str, Any]] = {}
    for number, identifier, record in chunk:
        match = in_chunk.find(record, threshold) or existing.find(record, threshold)
        if match is not None and match[0].status in GONE_STATUSES:
            errors.add(number, identifier, f"external id {record['external_id']!r} belongs to {match[0].label()}, "
                                           f"which is {match[0].status}")
            report.invalid += 1
            continue
        if match is not None and not (policy == "create" and match[1] != "external_id"):
            candidate, how = match
            if policy == "create":
                errors.add(number, identifier, f"external id {record['external_id']!r} already belongs to "
                                               f"{candidate.label()}; 'create' cannot add a second customer with it")
                report.invalid += 1
                continue
            if policy == "skip":
                report.skipped += 1
                action = "skipped"
            else:
                if candidate.pending is None:  # an existing customer's first update (new ones carry their values)
                    if candidate.id is None:
                        raise ValueError("a candidate without pending values is an existing customer")
                    candidate.pending = updates.setdefault(candidate.id, {})
                _merge(candidate.pending, record)
                report.updated += 1
                action = "updated"
                in_chunk.add(candidate, [record["phone"]])
            if len(report.duplicates) < MAX_KEPT_DUPLICATES:
                report.duplicates.append(DuplicateMatch(number, identifier, candidate.label(), how, action))
            continue
        pending = {k: v for k, v in record.items() if not k.startswith("_")}
        creates.append(pending)
        report.created += 1
        in_chunk.add(_Candidate(id=None, row=number, external_id=record["external_id"], email=record["email"],
                                block=record["_block"], name=record["_name"], pending=pending), [record["phone"]])
    _write_customers(session, creates, updates, now)


def import_customers(
    session: Session, actor: Actor, source: Source, *, fmt: str = "auto", file_name: str | None = None,
    mapping: dict[str, str] | None = None, on_duplicate: str = "skip",
    fuzzy_threshold: float | None = DEFAULT_FUZZY_THRESHOLD, default_country: str | None = None,
    errors_path: str | os.PathLike | None = None, chunk_size: int = CUSTOMER_CHUNK,
    progress: Progress | None = None, now: dt.datetime | None = None,
) -> ImportReport:
    """Import customers from a file; invalid rows are reported, duplicates handled by `on_duplicate`.

    `mapping` is file column -> field; unset, columns named like the fields (external_id, first_name,
    last_name, email, phone, country, city, signup_date, company, ...) are used. `fuzzy_threshold`
    0 or None turns name matching off. `progress(fraction or None, rows read)` is called per chunk.
    """
    require(actor, "customers.import")
    if on_duplicate not in DUPLICATE_POLICIES:
        raise ValidationError(f"On duplicate must be one of {', '.join(DUPLICATE_POLICIES)}, not {on_duplicate!r}.")
    if fuzzy_threshold is not None and (isinstance(fuzzy_threshold, bool)
                                        or not isinstance(fuzzy_threshold, int | float)
                                        or not 0 <= fuzzy_threshold <= 100):
        raise ValidationError("The fuzzy threshold is a number from 0 (off) to 100.")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    region = normalize_country(default_country) if default_country else None
    now = now or utcnow()
    started = time.perf_counter()
    with TableReader(source, fmt, file_name) as reader:
        columns_map = check_customer_mapping(mapping if mapping is not None else default_customer_mapping(reader.columns),
                                    reader.columns)
        report = ImportReport("customers", Path(reader.name or "upload").name, reader.format, on_duplicate)
        run = start_run(session, actor, "customers", reader, on_duplicate)
        sink = ErrorSink(errors_path)
        try:
            chunk: list[tuple[int, str, dict[str, Any]]] = []
            for raw in reader.rows():
                report.rows_read += 1
                values = mapped_values(raw, columns_map)
                identifier = row_identifier(values, raw.number)
                record, reasons = validate_customer(values, now, region)
                if raw.problem:
                    reasons.insert(0, f"the row {raw.problem}")
                    record = None
                if record is None:
                    sink.add(raw.number, identifier, "; ".join(reasons))
                    report.invalid += 1
                    continue
                record["_block"] = block_key(record["country_code"], record["city"], record["first_name"], record["last_name"])
                record["_name"] = name_key(record["first_name"], record["last_name"], record["city"])
                chunk.append((raw.number, identifier, record))
                if len(chunk) >= chunk_size:
                    _apply_customer_chunk(session, chunk, on_duplicate, fuzzy_threshold or None, report, sink, now)
                    chunk = []
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            if chunk:
                _apply_customer_chunk(session, chunk, on_duplicate, fuzzy_threshold or None, report, sink, now)
        finally:
            sink.close()
        report.errors = sink.kept
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report


def preview_customers(source: Source, *, fmt: str = "auto", file_name: str | None = None,
            mapping: dict[str, str] | None = None, limit: int = 20, default_country: str | None = None
            ) -> tuple[list[str], list[PreviewRow]]:
    """The file's columns and its first `limit` rows with each row's validation status (no database)."""
    now = utcnow()
    region = normalize_country(default_country) if default_country else None
    with TableReader(source, fmt, file_name) as reader:
        columns = reader.columns
        chosen = mapping if mapping is not None else default_customer_mapping(columns)
        rows: list[PreviewRow] = []
        for raw in reader.rows():
            values = mapped_values(raw, {c: t for c, t in chosen.items() if t in CUSTOMER_FIELDS and c in columns})
            _, reasons = validate_customer(values, now, region)
            if raw.problem:
                reasons.insert(0, f"the row {raw.problem}")
            rows.append(PreviewRow(raw.number, raw.values, "invalid" if reasons else "ok", "; ".join(reasons)))
            if len(rows) >= limit:
                break
    return columns, rows
