"""A helpdesk's tickets and an email/SMS history, imported from CSV, Excel (.xlsx) or JSON.

Both attach to existing customers, found by `customer_external_id` (a merged customer's rows go to
the customer it was merged into) or else by `customer_email` (trimmed, case ignored); a row whose
customer is not found, or was erased, is invalid. Neither import creates customers: import them
first (`crm import customers`, or a Shopify export).

Tickets (columns, or fields on the page; * required):

    ticket_id*            the helpdesk's ticket id; a ticket imported before is skipped
    customer_external_id  | customer_email   (one of them*)
    created_at*           when the ticket was opened
    subject, description
    status                new, open, pending_customer (pending), on_hold (hold), resolved (solved),
                          closed, reopened; unset: closed with closed_at, resolved with resolved_at,
                          else open
    priority              low, normal (medium), high, urgent, critical; unset: normal
    category              order, delivery, returns, billing, product, account, technical, other
    channel               email, chat, phone, web, social; unset: email
    first_responded_at, resolved_at, closed_at   not before created_at
    csat_rating           1 to 5

An imported ticket keeps its helpdesk id as `external_id` and gets the number `H-<ticket id>`, an
"imported" history event, its description as the customer's first message, no assignee and no
SLA policy: its history happened under the
helpdesk's rules, so no due times are computed for it, the SLA checks never record breaches for
it (no storm of breaches and escalations for last year's tickets), SLA reports leave it out, and
an SLA policy change or a later edit does not give it one either.

Communications:

    message_id            the sender's message id; without one, a key made of the customer and
                          every value of the row, so a message imported before is skipped
    customer_external_id  | customer_email   (one of them*)
    channel*              email, sms, call, chat, push, in_app
    direction             outbound (default) or inbound
    sent_at*              when it was sent (or received)
    status                sent, delivered, opened, clicked, replied, bounced, failed, logged;
                          unset: the furthest stage its timestamps show (replied_at, clicked_at,
                          opened_at, delivered_at, else sent), logged for calls, delivered for
                          inbound messages; inbound messages are logged, delivered or replied
    subject, campaign, template, body
    delivered_at, opened_at, clicked_at, replied_at   not before sent_at

Inbound text gets the same VADER sentiment score as a message logged on the page. Values outside
these lists are invalid rows with the list in the reason, never a crash. Each import is one
transaction with one import run and one audit row; rows are checked in chunks and written in bulk
(COPY on PostgreSQL).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import JSON, DateTime, Integer, func, insert, literal, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import GONE_STATUSES
from crm_core.imports.fields import COMMUNICATION_FIELDS, TICKET_FIELDS
from crm_core.imports.files import Progress, RawRow, Source, TableReader
from crm_core.imports.runs import ErrorSink, ImportReport, PreviewRow, batches, finish_run, start_run
from crm_core.imports.values import cached_email, email_key, parse_datetime
from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.service.communications import MAX_BODY, MAX_LABEL, MAX_MESSAGE_SUBJECT, sentiment
from db import bulk
from db.models import (
    COMM_CHANNELS,
    COMM_STATUSES,
    DIRECTIONS,
    TICKET_CATEGORIES,
    TICKET_CHANNELS,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    Customer,
    CustomerCommunication,
    SupportTicket,
    SupportTicketEvent,
    SupportTicketResponse,
    utcnow,
)

KINDS = ("tickets", "communications")
CHUNK = 5_000
FIELDS = {"tickets": TICKET_FIELDS, "communications": COMMUNICATION_FIELDS}
IGNORED = (None, "", "(ignore)")
REQUIRED = {"tickets": ("ticket_id", "created_at"), "communications": ("channel", "sent_at")}
CUSTOMER_KEYS = ("customer_external_id", "customer_email")
ALIASES = {
    "tickets": {
        "id": "ticket_id", "ticket": "ticket_id", "ticket_number": "ticket_id", "ticket_no": "ticket_id",
        "external_id": "customer_external_id", "customer_id": "customer_external_id", "email": "customer_email",
        "requester_email": "customer_email", "created": "created_at", "opened_at": "created_at",
        "solved_at": "resolved_at", "csat": "csat_rating", "satisfaction": "csat_rating", "via": "channel",
    },
    "communications": {
        "id": "message_id", "external_id": "customer_external_id", "customer_id": "customer_external_id",
        "email": "customer_email", "recipient": "customer_email", "sent": "sent_at", "date": "sent_at",
        "timestamp": "sent_at", "delivered": "delivered_at", "opened": "opened_at", "clicked": "clicked_at",
        "replied": "replied_at", "campaign_name": "campaign",
    },
}
# Spellings other systems use -> our values (after lower case, spaces and hyphens to underscores).
TICKET_STATUS_VALUES = {**{s: s for s in TICKET_STATUSES}, "pending": "pending_customer", "hold": "on_hold",
                        "solved": "resolved", "waiting_on_customer": "pending_customer", "active": "open"}
PRIORITY_VALUES = {**{p: p for p in TICKET_PRIORITIES}, "medium": "normal"}
CATEGORY_VALUES = {c: c for c in TICKET_CATEGORIES}
TICKET_CHANNEL_VALUES = {**{c: c for c in TICKET_CHANNELS}, "e_mail": "email", "mail": "email", "web_form": "web",
                         "webform": "web", "form": "web", "web_widget": "web", "voice": "phone", "call": "phone",
                         "twitter": "social", "facebook": "social", "instagram": "social"}
COMM_CHANNEL_VALUES = {**{c: c for c in COMM_CHANNELS}, "e_mail": "email", "mail": "email", "text": "sms",
                       "phone": "call", "voice": "call", "in_app_message": "in_app", "push_notification": "push"}
DIRECTION_VALUES = {**{d: d for d in DIRECTIONS}, "in": "inbound", "incoming": "inbound", "received": "inbound",
                    "out": "outbound", "outgoing": "outbound"}
COMM_STATUS_VALUES = {**{s: s for s in COMM_STATUSES}, "open": "opened", "click": "clicked", "bounce": "bounced",
                      "soft_bounce": "bounced", "hard_bounce": "bounced", "error": "failed", "reply": "replied"}
INBOUND_STATUSES = ("logged", "delivered", "replied")
STAGES = (("replied_at", "replied"), ("clicked_at", "clicked"), ("opened_at", "opened"),
          ("delivered_at", "delivered"))
TICKET_NUMBER = re.compile(r"[A-Za-z0-9._-]{1,30}")


def _normalized(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def documented_columns(kind: str) -> str:
    """The documented columns of a tickets or communications file (this module's docstring), for --help."""
    _check_kind(kind)
    doc = __doc__ or ""
    start = doc.index("Tickets (columns" if kind == "tickets" else "Communications:")
    return "columns (* required):\n" + doc[start:].split("\n\n")[1]


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValidationError(f"Unknown import kind {kind!r}; use one of {', '.join(KINDS)}.")


def default_service_mapping(kind: str, columns: list[str]) -> dict[str, str]:
    """File column -> field for the columns named like a field (or a common alias of one)."""
    _check_kind(kind)
    mapping: dict[str, str] = {}
    for column in columns:
        name = _normalized(column)
        target = name if name in FIELDS[kind] else ALIASES[kind].get(name)
        if target and target not in mapping.values():
            mapping[column] = target
    return mapping


def check_service_mapping(kind: str, mapping: dict[str, str], columns: list[str]) -> dict[str, str]:
    """A clean mapping, or a ValidationError naming what is missing or wrong."""
    _check_kind(kind)
    if not isinstance(mapping, dict):
        raise ValidationError("A column mapping is a list of file column -> field pairs.")
    fields = FIELDS[kind]
    clean: dict[str, str] = {}
    for column, target in mapping.items():
        if target in IGNORED:
            continue
        if target not in fields:
            raise ValidationError(f"{target!r} is not a field of {kind}; use one of {', '.join(fields)}.")
        if column not in columns:
            raise ValidationError(f"The file has no column {column!r} (its columns: {', '.join(columns)}).")
        if target in clean.values():
            raise ValidationError(f"Two columns are mapped to {fields[target]}; map each field once.")
        clean[column] = target
    targets = set(clean.values())
    missing = [fields[f] for f in REQUIRED[kind] if f not in targets]
    if missing:
        raise ValidationError(f"The {kind} file needs a column for {' and '.join(missing)} "
                              f"(its columns: {', '.join(columns)}).")
    if not targets & set(CUSTOMER_KEYS):
        raise ValidationError(f"The {kind} file needs a column for the customer: customer_external_id or "
                              f"customer_email (its columns: {', '.join(columns)}).")
    return clean


# --------------------------------------------------------------------------- checking rows


class _Row:
    """One row's values by field, and the reasons it is invalid."""

    def __init__(self, raw: RawRow, mapping: dict[str, str], now: dt.datetime) -> None:
        self.number = raw.number
        self.now = now
        self.values = {field: (raw.values.get(column) or "").strip() for column, field in mapping.items()}
        self.reasons: list[str] = [f"the row {raw.problem}"] if raw.problem else []

    def text(self, field: str, limit: int | None = None, label: str | None = None) -> str | None:
        value = self.values.get(field, "")
        if limit is not None and len(value) > limit:
            self.reasons.append(f"{label or field} is longer than {limit:,} characters")
            return None
        return value or None

    def choice(self, field: str, values: dict[str, str], allowed: tuple[str, ...], default: str | None) -> str | None:
        value = self.values.get(field, "")
        if not value:
            return default
        found = values.get(_normalized(value))
        if found is None:
            self.reasons.append(f"{field} {value!r} is not one of {', '.join(allowed)}")
        return found

    def when(self, field: str, required: bool = False, not_before: dt.datetime | None = None,
             after_label: str = "") -> dt.datetime | None:
        value = self.values.get(field, "")
        if not value:
            if required:
                self.reasons.append(f"{field} is missing")
            return None
        try:
            moment = parse_datetime(value)
        except ValidationError as exc:
            self.reasons.append(f"{field}: {exc}")
            return None
        if moment > self.now + dt.timedelta(days=1):
            self.reasons.append(f"{field} {value!r} is in the future")
        elif moment.year < 1900:
            self.reasons.append(f"{field} {value!r} is before 1900")
        elif not_before is not None and moment < not_before:
            self.reasons.append(f"{field} {value!r} is before {after_label}")
        else:
            return moment
        return None

    def customer(self) -> tuple[str | None, str | None]:
        external = self.text("customer_external_id", 100, "customer_external_id")
        email = None
        if self.values.get("customer_email"):
            try:
                email = email_key(cached_email(self.values["customer_email"]))
            except ValidationError as exc:
                self.reasons.append(str(exc))
        elif not external:
            self.reasons.append("customer_external_id and customer_email are both missing")
        return external, email


def _ticket_record(row: _Row) -> dict[str, Any]:
    if not row.values.get("ticket_id"):
        row.reasons.append("ticket_id is missing")
    ticket_id = row.text("ticket_id", 100)
    created = row.when("created_at", required=True)
    after = f"created_at {row.values.get('created_at')!r}"
    first_response = row.when("first_responded_at", not_before=created, after_label=after)
    resolved = row.when("resolved_at", not_before=created, after_label=after)
    closed = row.when("closed_at", not_before=created, after_label=after)
    default_status = "closed" if closed else "resolved" if resolved else "open"
    csat = None
    if row.values.get("csat_rating"):
        text = row.values["csat_rating"]
        csat = int(text) if re.fullmatch(r"[1-5](?:\.0+)?", text) else None
        if csat is None:
            row.reasons.append(f"csat_rating {text!r} is not a whole number from 1 to 5")
    return {
        "external_id": ticket_id, "created_at": created, "first_responded_at": first_response,
        "resolved_at": resolved, "closed_at": closed, "csat_rating": csat,
        "subject": row.text("subject", MAX_MESSAGE_SUBJECT) or "(no subject)", "description": row.text("description") or "",
        "status": row.choice("status", TICKET_STATUS_VALUES, TICKET_STATUSES, default_status),
        "priority": row.choice("priority", PRIORITY_VALUES, TICKET_PRIORITIES, "normal"),
        "category": row.choice("category", CATEGORY_VALUES, TICKET_CATEGORIES, "other"),
        "channel": row.choice("channel", TICKET_CHANNEL_VALUES, TICKET_CHANNELS, "email"),
    }


def _message_record(row: _Row) -> dict[str, Any]:
    sent = row.when("sent_at", required=True)
    after = f"sent_at {row.values.get('sent_at')!r}"
    record: dict[str, Any] = {
        "external_id": row.text("message_id", 100), "sent_at": sent,
        "channel": row.choice("channel", COMM_CHANNEL_VALUES, COMM_CHANNELS, None),
        "direction": row.choice("direction", DIRECTION_VALUES, DIRECTIONS, "outbound"),
        "subject": row.text("subject", MAX_MESSAGE_SUBJECT), "campaign": row.text("campaign", MAX_LABEL),
        "template": row.text("template", MAX_LABEL), "body": row.text("body", MAX_BODY),
        **{field: row.when(field, not_before=sent, after_label=after) for field, _ in STAGES},
    }
    if record["channel"] is None and not row.values.get("channel"):
        row.reasons.append("channel is missing")
    status = row.choice("status", COMM_STATUS_VALUES, COMM_STATUSES, None)
    if status is None and not row.values.get("status"):
        if record["direction"] == "inbound":
            status = "delivered"
        elif record["channel"] == "call":
            status = "logged"
        else:
            status = next((stage for field, stage in STAGES if record[field]), "sent")
    if record["direction"] == "inbound" and status and status not in INBOUND_STATUSES:
        row.reasons.append(f"status {status!r} does not fit an inbound message (logged, delivered or replied)")
    record["status"] = status
    return record


RECORDS: dict[str, Callable[[_Row], dict[str, Any]]] = {"tickets": _ticket_record, "communications": _message_record}


def preview_service_file(kind: str, source: Source, *, file_name: str | None = None, mapping: dict[str, str] | None = None,
            limit: int = 20, now: dt.datetime | None = None) -> tuple[list[str], list[PreviewRow]]:
    """The file's columns and its first `limit` rows with their status (customers are matched on import)."""
    _check_kind(kind)
    now = now or utcnow()
    with TableReader(source, "auto", file_name) as reader:
        columns = reader.columns
        chosen = mapping if mapping is not None else default_service_mapping(kind, columns)
        chosen = {c: f for c, f in chosen.items() if f in FIELDS[kind] and c in columns}
        rows: list[PreviewRow] = []
        for raw in reader.rows():
            row = _Row(raw, chosen, now)
            RECORDS[kind](row)
            row.customer()
            rows.append(PreviewRow(raw.number, raw.values, "invalid" if row.reasons else "ok", "; ".join(row.reasons)))
            if len(rows) >= limit:
                break
    return columns, rows


# --------------------------------------------------------------------------- customers and writing


def _customers(session: Session, externals: set[str], emails: set[str]) -> tuple[dict[str, Any], dict[str, int]]:
    """Customers by external id (id, status, survivor) and live customers by email key (lowest id)."""
    c = Customer.__table__.c
    by_external: dict[str, Any] = {}
    for batch in batches(sorted(externals)):
        for row in session.execute(select(c.external_id, c.id, c.status, c.merged_into_id)
                                   .where(c.external_id.in_(batch))):
            by_external[row.external_id] = row
    # A merged customer's rows go to the survivor (following a chain of merges).
    survivors: dict[int, Any] = {}
    pending = {row.merged_into_id for row in by_external.values() if row.status == "merged" and row.merged_into_id}
    for _ in range(10):
        if not pending:
            break
        found = session.execute(select(c.id, c.status, c.merged_into_id).where(c.id.in_(sorted(pending)))).all()
        survivors.update({row.id: row for row in found})
        pending = {row.merged_into_id for row in found if row.status == "merged" and row.merged_into_id} - set(survivors)
    resolved: dict[str, Any] = {}
    for key, row in by_external.items():
        seen = 0
        while row.status == "merged" and row.merged_into_id in survivors and seen < 10:
            row, seen = survivors[row.merged_into_id], seen + 1
        resolved[key] = row
    by_email: dict[str, int] = {}
    for batch in batches(sorted(emails)):
        query = (select(func.lower(c.email), func.min(c.id)).where(func.lower(c.email).in_(batch),
                                                                   c.status.not_in(GONE_STATUSES))
                 .group_by(func.lower(c.email)))
        by_email.update(dict(session.execute(query).all()))
    return resolved, by_email


def _customer_id(row: _Row, external: str | None, email: str | None, by_external: dict[str, Any],
                 by_email: dict[str, int]) -> int | None:
    found = by_external.get(external) if external else None
    if found is not None:
        if found.status in GONE_STATUSES:
            row.reasons.append(f"customer {external!r} was {found.status}")
            return None
        return found.id
    if email and email in by_email:
        return by_email[email]
    wanted = " or ".join(filter(None, [f"external id {external!r}" if external else None,
                                       f"email {row.values.get('customer_email')!r}" if email else None]))
    row.reasons.append(f"no customer with {wanted} (import the customers first)")
    return None


def _ticket_number(external_id: str) -> str:
    if TICKET_NUMBER.fullmatch(external_id):
        return f"H-{external_id}"
    return "H-" + hashlib.sha1(external_id.encode()).hexdigest()[:16]


def _message_key(record: dict[str, Any]) -> str:
    """A stable key of a message without an id: its customer and every value of the row."""
    parts = [str(record["customer_id"]), *(str(record.get(name) or "") for name in (
        "channel", "direction", "sent_at", "subject", "campaign", "template", "body", "status",
        *(field for field, _ in STAGES)))]
    return "sha1:" + hashlib.sha1("\x1f".join(parts).encode()).hexdigest()


@dataclass
class ServiceReport(ImportReport):
    def figures(self) -> list[tuple[str, int]]:
        noun = "tickets" if self.entity == "tickets" else "messages"
        return [("rows read", self.rows_read), (f"{noun} imported", self.created),
                ("skipped (already imported)", self.skipped), ("invalid", self.invalid)]


def _write(session: Session, kind: str, records: list[dict[str, Any]], now: dt.datetime) -> None:
    if not records:
        return
    connection = session.connection()
    frame = pd.DataFrame.from_records(records)
    for name in frame.columns:
        if name.endswith("_at"):
            frame[name] = pd.to_datetime(frame[name])
    if kind == "tickets":
        frame["ticket_number"] = frame["external_id"].map(_ticket_number)
        frame["updated_at"] = frame[["created_at", "first_responded_at", "resolved_at", "closed_at"]].max(axis=1)
        frame = frame.assign(sla_breached=False, version=1)
        frame["csat_rating"] = frame["csat_rating"].astype("Int64")
        columns = ["ticket_number", "external_id", "customer_id", "subject", "description", "category", "priority",
                   "status", "channel", "first_responded_at", "resolved_at", "closed_at", "sla_breached",
                   "csat_rating", "created_at", "updated_at", "version"]
        table = SupportTicket.__table__
    else:
        frame["sentiment_score"] = [
            sentiment(f"{r['subject'] or ''}. {r['body'] or ''}") if r["direction"] == "inbound"
            and (r["subject"] or r["body"]) else None for r in records]
        columns = ["external_id", "customer_id", "channel", "direction", "status", "campaign", "template", "subject",
                   "body", "sent_at", "delivered_at", "opened_at", "clicked_at", "replied_at", "sentiment_score"]
        table = CustomerCommunication.__table__
    bulk.load(connection, table, frame[columns])


def import_service_file(
    session: Session, actor: Actor, kind: str, source: Source, *, mapping: dict[str, str] | None = None,
    fmt: str = "auto", file_name: str | None = None, errors_path: str | os.PathLike | None = None,
    chunk_size: int = CHUNK, progress: Progress | None = None, now: dt.datetime | None = None,
) -> ServiceReport:
    """Import tickets or communications (see the module docstring) into the caller's session.

    `mapping` is file column -> field; unset, columns named like the fields are used.
    """
    require(actor, "customers.import")
    _check_kind(kind)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValidationError("The chunk size must be a positive whole number.")
    now = now or utcnow()
    started = time.perf_counter()
    build = RECORDS[kind]
    key_field = "ticket_id" if kind == "tickets" else "message_id"
    table = SupportTicket if kind == "tickets" else CustomerCommunication
    with TableReader(source, fmt, file_name) as reader:
        chosen = check_service_mapping(kind, mapping if mapping is not None else default_service_mapping(kind, reader.columns),
                               reader.columns)
        report = ServiceReport(kind, Path(reader.name or "upload").name, reader.format)
        run = start_run(session, actor, kind, reader, None)
        sink = ErrorSink(errors_path)
        first_rows: dict[str, int] = {}  # key -> the row that had it first, for duplicates in the file
        before = session.scalar(select(func.coalesce(func.max(table.id), 0))) or 0
        try:
            chunk: list[tuple[_Row, dict[str, Any], str | None, str | None]] = []

            def flush() -> None:
                externals = {external for _, _, external, _ in chunk if external}
                emails = {email for _, _, _, email in chunk if email}
                by_external, by_email = _customers(session, externals, emails)
                ready: list[tuple[_Row, dict[str, Any]]] = []
                for row, record, external, email in chunk:
                    if not row.reasons:
                        record["customer_id"] = _customer_id(row, external, email, by_external, by_email)
                    if row.reasons:
                        sink.add(row.number, row.values.get(key_field) or external or email or f"row {row.number}",
                                 "; ".join(row.reasons))
                        report.invalid += 1
                        continue
                    if not record["external_id"]:
                        record["external_id"] = _message_key(record)
                    first = first_rows.setdefault(record["external_id"], row.number)
                    if first != row.number:
                        what = f"ticket_id {record['external_id']!r}" if kind == "tickets" else (
                            f"message_id {record['external_id']!r}" if row.values.get("message_id")
                            else "the same message")
                        sink.add(row.number, row.values.get(key_field) or f"row {row.number}",
                                 f"{what} appears earlier in the file (row {first})")
                        report.invalid += 1
                        continue
                    ready.append((row, record))
                existing: set[str] = set()
                for batch in batches(sorted(record["external_id"] for _, record in ready)):
                    existing |= set(session.scalars(select(table.external_id).where(table.external_id.in_(batch))))
                fresh = [record for _, record in ready if record["external_id"] not in existing]
                report.skipped += len(ready) - len(fresh)
                _write(session, kind, fresh, now)
                report.created += len(fresh)
                chunk.clear()

            for raw in reader.rows():
                report.rows_read += 1
                row = _Row(raw, chosen, now)
                record = build(row)
                external, email = row.customer()
                chunk.append((row, record, external, email))
                if len(chunk) >= chunk_size:
                    flush()
                    if progress:
                        progress(reader.fraction(), report.rows_read)
            if chunk:
                flush()
            if kind == "tickets" and report.created:
                # Like a ticket opened here: the description is the customer's first message, and the
                # history says where the ticket came from.
                t = SupportTicket.__table__
                imported = (t.c.id > before) & t.c.external_id.is_not(None)
                session.execute(insert(SupportTicketEvent.__table__).from_select(
                    ["ticket_id", "event", "detail", "actor_id", "occurred_at"],
                    select(t.c.id, literal("imported"), literal({"file": report.file_name, "import_run": run.id}, JSON),
                           literal(actor.id, Integer), literal(now, DateTime)).where(imported)))
                session.execute(insert(SupportTicketResponse.__table__).from_select(
                    ["ticket_id", "author_kind", "body", "is_internal", "is_read", "created_at"],
                    select(t.c.id, literal("customer"), t.c.description, literal(False), literal(True), t.c.created_at)
                    .where(imported, t.c.description != "")))
        finally:
            sink.close()
        report.errors = sink.kept
        finish_run(session, actor, run, report, started)
        if progress:
            progress(1.0, report.rows_read)
    return report
