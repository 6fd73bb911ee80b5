"""Privacy (GDPR): consent ledger, preference center, data-subject requests, export and erasure.

Export and erasure find the person's data the same way merges do, by reflecting every foreign
key to customers.id (`merge.customer_references`) plus the tables hanging off those rows (order
lines, ticket replies, ...), so a table added later is exported and erased without a change here.

Erasure anonymises rather than deletes: every free-text, JSON and identifier column of the
person's rows is cleared (names, emails, phones, addresses, social handles, payment tokens,
ticket and message texts, notes, survey comments), while categorical and numeric columns stay.
Orders, their lines and totals are kept under a legal-retention exception, linked to the
anonymised customer, so revenue figures still add up. Audit entries and the merge log that quote
the person's values are rewritten too, as is any other text or JSON value anywhere that quotes one
of their current or past values (saved searches, import runs, other people's notes), and their
tickets' attachment files are deleted from the attachment store.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import re
import unicodedata
import zipfile
from typing import Any

from sqlalchemy import (
    JSON,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    cast,
    func,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from crm_core.customers.merge import customer_references
from crm_core.customers.rules import is_gone
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import history_rewritten_since, replace_summary
from crm_core.platform.spreadsheet import neutralize
from crm_core.platform.sql import rows_affected
from crm_core.platform.transactions import check_version
from crm_core.service.tickets import MAX_ATTACHMENT_BYTES, attachments_dir
from db.models import (
    COMM_CHANNELS,
    CONSENT_PURPOSES,
    CONTACT_FREQUENCIES,
    DSR_STATUSES,
    DSR_TYPES,
    AuditLog,
    Base,
    ConsentRecord,
    Customer,
    CustomerAddress,
    CustomerMerge,
    CustomerMergeRow,
    CustomerPaymentMethod,
    CustomerPreferenceCenter,
    DataSubjectRequest,
    RollupSummary,
    SocialAccount,
    SupportTicket,
    SupportTicketResponse,
    utcnow,
)

RESPONSE_DAYS = 30
LAWFUL_BASES = ("consent", "contract", "legal_obligation", "vital_interests", "public_task", "legitimate_interests")
CONSENT_SOURCES = ("web_form", "preference_center", "staff", "import", "email_link", "phone", "checkout")
PREFERENCE_CHANNELS = ("email", "sms", "push", "phone")
# Preference-center switches that are consents in law: each change is written to the ledger.
PREFERENCE_CONSENTS = {"data_sharing": "third_party_sharing", "analytics": "analytics", "personalization": "profiling"}
LANGUAGE = re.compile(r"^[a-z]{2,3}(-[A-Z]{2})?$")
ERASED = "[erased]"
# Columns that describe, count or classify rather than identify: kept by erasure.
KEPT_COLUMNS = frozenset({
    "currency", "order_number", "ticket_number", "category", "department", "processor", "brand", "program",
    "campaign", "template", "source_type", "source_id", "referral_code", "country_code", "rfm_segment",
    "preferred_category", "event", "purpose", "source", "legal_basis", "policy_version", "result", "offer_type",
    "trigger",  # a CTA's or holdout's rule (issue 18): one open per customer and trigger, so never blanked
})
PERSONAL_NUMBERS = frozenset({"latitude", "longitude", "exp_month", "exp_year"})
RETAINED_TABLES = {"orders": "orders and order lines are kept for tax and accounting retention, de-identified"}
EXPORT_ROW_LIMIT = 100_000


def _customer(session: Session, customer_id: Any) -> Customer:
    try:
        customer_id = int(customer_id)
    except (TypeError, ValueError):
        raise ValidationError(f"A customer id is a whole number, not {customer_id!r}.") from None
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"There is no customer {customer_id}.")
    return customer


def _text(value: Any, label: str, max_length: int, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ValidationError(f"{label} is required.")
        return None
    if not isinstance(value, str):
        raise ValidationError(f"{label} must be text.")
    value = value.strip()
    if len(value) > max_length:
        raise ValidationError(f"{label} is at most {max_length} characters ({len(value)} given).")
    return value


# --------------------------------------------------------------------------- consent ledger


def record_consent(session: Session, actor: Actor, customer_id: Any, purpose: str, granted: Any,
                   legal_basis: str = "consent", source: str = "staff", policy_version: str | None = None,
                   notes: str | None = None, recorded_at: dt.datetime | None = None) -> ConsentRecord:
    """Append a grant or withdrawal; the newest entry per purpose is the customer's current choice."""
    require(actor, "privacy.manage")
    customer = _customer(session, customer_id)
    if customer.status == "erased":
        raise ValidationError(f"Customer {customer.id} was erased; no consent can be recorded.")
    if purpose not in CONSENT_PURPOSES:
        raise ValidationError(f"Purpose must be one of {', '.join(CONSENT_PURPOSES)}.")
    if not isinstance(granted, bool):
        raise ValidationError("Say whether consent was granted (yes) or withdrawn (no).")
    if legal_basis not in LAWFUL_BASES:
        raise ValidationError(f"Lawful basis must be one of {', '.join(LAWFUL_BASES)}.")
    if source not in CONSENT_SOURCES:
        raise ValidationError(f"Source must be one of {', '.join(CONSENT_SOURCES)}.")
    version = _text(policy_version, "Policy version", 32)
    entry = ConsentRecord(customer_id=customer.id, purpose=purpose, granted=granted, source=source,
                          legal_basis=legal_basis, policy_version=version, notes=_text(notes, "Notes", 2000, False),
                          recorded_at=recorded_at or utcnow(), recorded_by_id=actor.id)
    session.add(entry)
    session.flush()
    record_audit(session, actor, "consent.grant" if granted else "consent.withdraw", "customer", customer.id,
                 after={"purpose": purpose, "legal_basis": legal_basis, "source": source, "policy_version": version})
    return entry


def current_consents(session: Session, viewer: Actor, customer_id: Any) -> dict[str, dict[str, Any]]:
    """The latest entry per purpose (latest wins; ties broken by entry order)."""
    require(viewer, "privacy.manage")
    customer = _customer(session, customer_id)
    ranked = select(
        ConsentRecord,
        func.row_number().over(partition_by=ConsentRecord.purpose,
                               order_by=(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())).label("rank"),
    ).where(ConsentRecord.customer_id == customer.id).subquery()
    rows = session.execute(select(ranked).where(ranked.c.rank == 1)).mappings().all()
    return {r["purpose"]: {"granted": bool(r["granted"]), "recorded_at": r["recorded_at"],
                           "legal_basis": r["legal_basis"], "source": r["source"],
                           "policy_version": r["policy_version"]} for r in rows}


def consent_ledger(session: Session, viewer: Actor, customer_id: Any, page: int = 1, page_size: int = 50) -> Page:
    require(viewer, "privacy.manage")
    customer = _customer(session, customer_id)
    page = max(1, int(page))
    where = ConsentRecord.customer_id == customer.id
    total = session.scalar(select(func.count()).select_from(ConsentRecord).where(where)) or 0
    entries = session.scalars(select(ConsentRecord).where(where)
                              .order_by(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
                              .limit(page_size).offset((page - 1) * page_size)).all()
    rows = [{"time": e.recorded_at, "purpose": e.purpose, "granted": e.granted, "lawful_basis": e.legal_basis,
             "source": e.source, "policy_version": e.policy_version, "actor_id": e.recorded_by_id, "notes": e.notes}
            for e in entries]
    return Page(rows=rows, total=total, page=page, page_size=page_size)


CONSENT_SUMMARY = "consent_summary"  # its row in rollup_summaries


def _latest_per_customer_and_purpose(*conditions):
    return select(
        ConsentRecord.customer_id, ConsentRecord.purpose, ConsentRecord.granted,
        func.row_number().over(partition_by=(ConsentRecord.customer_id, ConsentRecord.purpose),
                               order_by=(ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())).label("rank"),
    ).where(*conditions).subquery()


def _live_consent_counts(session: Session) -> dict[tuple[str, bool], int]:
    ranked = _latest_per_customer_and_purpose()
    return {(p, bool(g)): int(n) for p, g, n in session.execute(
        select(ranked.c.purpose, ranked.c.granted, func.count()).where(ranked.c.rank == 1)
        .group_by(ranked.c.purpose, ranked.c.granted))}


def refresh_consent_summary(session: Session, as_of: dt.date) -> int:
    """Count every customer's current choice per purpose once (the batch), for the Privacy page; the
    entries recorded after it are added when the page reads it. Returns the entries counted."""
    last_id = session.scalar(select(func.max(ConsentRecord.id))) or 0
    counts = _live_consent_counts(session) if last_id else {}
    replace_summary(session, CONSENT_SUMMARY, as_of, {
        "last_id": int(last_id), "counts": [[p, g, n] for (p, g), n in counts.items()]})
    return sum(counts.values())


def _stored_consent_counts(session: Session) -> dict[tuple[str, bool], int] | None:
    """The batch's counts moved by each (customer, purpose) whose current choice changed since."""
    stored = session.scalar(select(RollupSummary).where(RollupSummary.name == CONSENT_SUMMARY))
    if stored is None or history_rewritten_since(session, stored.built_at):
        return None
    counts = {(p, bool(g)): int(n) for p, g, n in stored.payload["counts"]}
    last_id = stored.payload["last_id"]
    changed = session.execute(select(ConsentRecord.customer_id, ConsentRecord.purpose).where(
        ConsentRecord.id > last_id).distinct()).all()
    for customer_id, purpose in changed:
        scope = (ConsentRecord.customer_id == customer_id, ConsentRecord.purpose == purpose)
        newest = (ConsentRecord.recorded_at.desc(), ConsentRecord.id.desc())
        before = session.scalar(select(ConsentRecord.granted).where(*scope, ConsentRecord.id <= last_id)
                                .order_by(*newest).limit(1))
        now = session.scalar(select(ConsentRecord.granted).where(*scope).order_by(*newest).limit(1))
        if before is not None:
            counts[(purpose, bool(before))] = counts.get((purpose, bool(before)), 0) - 1
        if now is not None:
            counts[(purpose, bool(now))] = counts.get((purpose, bool(now)), 0) + 1
    return counts


def consent_summary(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Per purpose, how many customers currently grant and withdraw consent (latest entry each): the
    batch's counts and the entries since, or (before the first refresh) counted now."""
    require(viewer, "privacy.manage")
    counts = _stored_consent_counts(session)
    if counts is None:
        counts = _live_consent_counts(session)
    return [{"purpose": p, "state": "granted" if g else "withdrawn", "customers": n}
            for (p, g), n in sorted(counts.items()) if n]


# --------------------------------------------------------------------------- preference center


def get_preferences(session: Session, viewer: Actor, customer_id: Any) -> dict[str, Any]:
    require(viewer, "privacy.manage")
    customer = _customer(session, customer_id)
    row = session.get(CustomerPreferenceCenter, customer.id)
    consents = current_consents(session, viewer, customer.id)
    channels = [c for c in PREFERENCE_CHANNELS if row is not None and getattr(row, f"{c}_opt_in")]
    return {
        "customer_id": customer.id, "name": f"{customer.first_name} {customer.last_name}".strip(),
        "channels": channels,
        "frequency": row.contact_frequency if row else "weekly",
        "preferred_channel": row.preferred_channel if row else None,
        "language": (row.preferred_language if row else None) or customer.preferred_language,
        "categories": list(row.interests or []) if row else [],
        **{key: bool(consents.get(purpose, {}).get("granted", False)) for key, purpose in PREFERENCE_CONSENTS.items()},
        "version": row.version if row else 0,
    }


def save_preferences(session: Session, actor: Actor, customer_id: Any, preferences: dict[str, Any],
                     expected_version: int | None, policy_version: str = "2026-01") -> dict[str, Any]:
    """Save the preference center; data sharing, analytics and personalization go to the consent ledger."""
    require(actor, "privacy.manage")
    customer = _customer(session, customer_id)
    if is_gone(customer.status):
        raise ValidationError(f"Customer {customer.id} is {customer.status}; preferences cannot be changed.")
    channels = preferences.get("channels") or []
    if not isinstance(channels, list | tuple) or any(c not in PREFERENCE_CHANNELS for c in channels):
        raise ValidationError(f"Channels must be chosen from {', '.join(PREFERENCE_CHANNELS)}.")
    frequency = preferences.get("frequency")
    if frequency not in CONTACT_FREQUENCIES:
        raise ValidationError(f"Frequency must be one of {', '.join(CONTACT_FREQUENCIES)}.")
    if frequency != "never" and not channels:
        raise ValidationError("Choose at least one channel, or set the frequency to 'never'.")
    preferred = preferences.get("preferred_channel") or None
    if preferred is not None and (preferred not in COMM_CHANNELS or preferred not in channels):
        raise ValidationError("The preferred channel must be one of the channels the customer opted in to.")
    language = (preferences.get("language") or "").strip() or None
    if language is not None and not LANGUAGE.match(language):
        raise ValidationError(f"{language!r} is not a language code such as 'en' or 'pt-BR'.")
    categories = preferences.get("categories") or []
    if not isinstance(categories, list | tuple) or any(not isinstance(c, str) or not c.strip() for c in categories):
        raise ValidationError("Categories must be a list of names.")
    categories = sorted({c.strip() for c in categories})
    if len(categories) > 30:
        raise ValidationError("Choose at most 30 categories.")
    switches = {}
    for key in PREFERENCE_CONSENTS:
        value = preferences.get(key, False)
        if not isinstance(value, bool):
            raise ValidationError(f"{key.replace('_', ' ').capitalize()} must be yes or no.")
        switches[key] = value

    row = session.get(CustomerPreferenceCenter, customer.id)
    before = get_preferences(session, actor, customer.id)
    if row is None:
        if expected_version not in (None, 0):
            raise ValidationError("These preferences were removed meanwhile; reload and try again.")
        row = CustomerPreferenceCenter(customer_id=customer.id)
        session.add(row)
    else:
        check_version(row, expected_version, f"Preferences of customer {customer.id}")
    for channel in PREFERENCE_CHANNELS:
        setattr(row, f"{channel}_opt_in", channel in channels)
    row.contact_frequency = frequency
    row.preferred_channel = preferred
    row.preferred_language = language
    row.interests = categories
    row.updated_at = utcnow()
    session.flush()
    for key, purpose in PREFERENCE_CONSENTS.items():
        if switches[key] != before[key]:
            record_consent(session, actor, customer.id, purpose, switches[key], "consent", "preference_center",
                           policy_version)
    after = get_preferences(session, actor, customer.id)
    record_audit(session, actor, "preferences.update", "customer", customer.id,
                 before={k: v for k, v in before.items() if k not in ("name",)},
                 after={k: v for k, v in after.items() if k not in ("name",)})
    return after


# --------------------------------------------------------------------------- data-subject requests


def create_privacy_request(session: Session, actor: Actor, customer_id: Any, request_type: str, notes: str | None = None,
                   received_at: dt.datetime | None = None) -> DataSubjectRequest:
    """Log a request; it is due 30 days after it was received."""
    require(actor, "privacy.manage")
    customer = _customer(session, customer_id)
    if request_type not in DSR_TYPES:
        raise ValidationError(f"Request type must be one of {', '.join(DSR_TYPES)}.")
    if customer.status == "erased":
        raise ValidationError(f"Customer {customer.id} was already erased.")
    received = received_at or utcnow()
    if received > utcnow() + dt.timedelta(minutes=5):
        raise ValidationError("A request cannot be received in the future.")
    request = DataSubjectRequest(customer_id=customer.id, request_type=request_type, status="received",
                                 received_at=received, due_at=received + dt.timedelta(days=RESPONSE_DAYS),
                                 notes=_text(notes, "Notes", 2000, False), handled_by_id=actor.id)
    session.add(request)
    session.flush()
    record_audit(session, actor, "dsr.create", "data_subject_request", request.id,
                 after={"customer_id": customer.id, "type": request_type, "due_at": request.due_at})
    return request


def _request(session: Session, request_id: Any) -> DataSubjectRequest:
    try:
        request_id = int(request_id)
    except (TypeError, ValueError):
        raise ValidationError(f"A request id is a whole number, not {request_id!r}.") from None
    request = session.get(DataSubjectRequest, request_id)
    if request is None:
        raise NotFound(f"There is no request {request_id}.")
    return request


def _open(request: DataSubjectRequest) -> None:
    if request.status in ("completed", "rejected"):
        raise ValidationError(f"Request {request.id} is already {request.status}.")


def set_privacy_request_status(session: Session, actor: Actor, request_id: Any, status: str, note: str | None = None) -> DataSubjectRequest:
    """Move a request to in_progress, or reject it with a reason."""
    require(actor, "privacy.manage")
    request = _request(session, request_id)
    _open(request)
    if status not in ("in_progress", "rejected"):
        raise ValidationError("A request is set in progress or rejected here; completing it happens by processing it.")
    if status == "rejected":
        note = _text(note, "A reason for the rejection", 2000)
    before = request.status
    request.status = status
    request.handled_by_id = actor.id
    if note:
        request.notes = f"{request.notes}\n{note}" if request.notes else note
    if status == "rejected":
        request.completed_at = utcnow()
    session.flush()
    record_audit(session, actor, f"dsr.{status}", "data_subject_request", request.id,
                 before={"status": before}, after={"status": status})
    return request


def list_privacy_requests(session: Session, viewer: Actor, status: str | None = None, request_type: str | None = None,
                  overdue_only: bool = False, page: int = 1, page_size: int = 25, now: dt.datetime | None = None,
                  after: str | None = None) -> Page:
    """The request log, most urgent first (open ones by due date, then closed ones), with days left and an
    overdue flag; a numbered page, or with `after` (a cursor, FIRST for the start) the next `page_size`."""
    require(viewer, "privacy.manage")
    now = now or utcnow()
    conditions = []
    if status:
        if status not in DSR_STATUSES:
            raise ValidationError(f"Status must be one of {', '.join(DSR_STATUSES)}.")
        conditions.append(DataSubjectRequest.status == status)
    if request_type:
        if request_type not in DSR_TYPES:
            raise ValidationError(f"Request type must be one of {', '.join(DSR_TYPES)}.")
        conditions.append(DataSubjectRequest.request_type == request_type)
    if overdue_only:
        conditions += [DataSubjectRequest.status.in_(("received", "in_progress")), DataSubjectRequest.due_at < now]
    page = 0 if after is not None else max(1, int(page))
    total = None if after is not None else (
        session.scalar(select(func.count()).select_from(DataSubjectRequest).where(*conditions)) or 0)
    d = DataSubjectRequest
    found, next_after = fetch_rows(
        session, select(d).where(*conditions),
        (SortKey(d.status.in_(("completed", "rejected"))), SortKey(d.due_at), SortKey(d.id)), "privacy_requests",
        page=page, page_size=page_size, after=after)
    rows = []
    for r in (row[0] for row in found):
        open_ = r.status in ("received", "in_progress")
        rows.append({"request_id": r.id, "customer_id": r.customer_id, "type": r.request_type, "status": r.status,
                     "received_at": r.received_at, "due_at": r.due_at,
                     "days_left": (r.due_at - now).days if open_ else None,
                     "overdue": bool(open_ and r.due_at < now), "completed_at": r.completed_at, "notes": r.notes})
    return Page(rows=rows, total=total, page=page, page_size=page_size, next_after=next_after)


def get_privacy_request(session: Session, viewer: Actor, request_id: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """One request as a log row (days left, overdue flag)."""
    require(viewer, "privacy.manage")
    request = _request(session, request_id)
    now = now or utcnow()
    open_ = request.status in ("received", "in_progress")
    return {"request_id": request.id, "customer_id": request.customer_id, "type": request.request_type,
            "status": request.status, "received_at": request.received_at, "due_at": request.due_at,
            "days_left": (request.due_at - now).days if open_ else None, "overdue": bool(open_ and request.due_at < now),
            "completed_at": request.completed_at, "notes": request.notes, "result": request.result}


def privacy_request_counts(session: Session, viewer: Actor, now: dt.datetime | None = None) -> dict[str, int]:
    require(viewer, "privacy.manage")
    now = now or utcnow()
    open_ = DataSubjectRequest.status.in_(("received", "in_progress"))

    def count(*conditions) -> int:
        return int(session.scalar(select(func.count()).select_from(DataSubjectRequest).where(*conditions)) or 0)

    return {"open": count(open_), "overdue": count(open_, DataSubjectRequest.due_at < now),
            "due_7_days": count(open_, DataSubjectRequest.due_at >= now,
                                DataSubjectRequest.due_at < now + dt.timedelta(days=7)),
            "completed": count(DataSubjectRequest.status == "completed")}


# --------------------------------------------------------------------------- the person's data


def _person_ids(session: Session, customer: Customer) -> list[int]:
    """The customer and every record merged into it: one person."""
    merged = session.scalars(select(Customer.id).where(Customer.merged_into_id == customer.id)).all()
    return [customer.id, *merged]


def _children(reference_tables: set[str]) -> list[tuple[Table, Any, Table]]:
    """(child table, fk column, parent table) for tables hanging off the person's rows."""
    found = []
    for table in Base.metadata.sorted_tables:
        if table.name in reference_tables:
            continue
        for fk in table.foreign_keys:
            parent = fk.column.table
            if parent.name in reference_tables and parent.name != "customers" and len(parent.primary_key.columns) == 1:
                found.append((table, fk.parent, parent))
    return found


def _person_scopes(ids: list[int]) -> list[tuple[Table, Any]]:
    """(table, where-condition) for every row that belongs to the person."""
    scopes: dict[str, tuple[Table, list]] = {}
    owner: dict[str, Any] = {}
    for reference in customer_references():
        if reference.table.name == "customers":
            continue
        table, conds = scopes.setdefault(reference.table.name, (reference.table, []))
        conds.append(reference.column.in_(ids))
        owner.setdefault(reference.table.name, []).append(reference.column)
    for child, fk, parent in _children(set(scopes) | {"customers"}):
        parent_pk = list(parent.primary_key.columns)[0]
        parent_cond = or_(*[c.in_(ids) for c in owner[parent.name]])
        table, conds = scopes.setdefault(child.name, (child, []))
        conds.append(fk.in_(select(parent_pk).where(parent_cond)))
    return [(table, or_(*conds)) for table, conds in scopes.values()]


def _export_value(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return f"<{len(value)} bytes>"
    if isinstance(value, float | int | str | bool | type(None) | list | dict):
        return value
    return str(value)


def subject_data(session: Session, customer_id: Any) -> dict[str, list[dict[str, Any]]]:
    """Everything held about the person, per table."""
    customer = _customer(session, customer_id)
    ids = _person_ids(session, customer)
    customers = Customer.__table__
    data = {"customers": [{c: _export_value(v) for c, v in row.items()}
                          for row in session.execute(select(customers).where(customers.c.id.in_(ids))).mappings()]}
    for table, condition in _person_scopes(ids):
        rows = session.execute(select(table).where(condition).limit(EXPORT_ROW_LIMIT)).mappings().all()
        if rows:
            data[table.name] = [{c: _export_value(v) for c, v in row.items()} for row in rows]
    return data


def export_subject_data(session: Session, actor: Actor, customer_id: Any) -> bytes:
    """A zip of everything held about a person: `subject.json`, plus one CSV per table (formula-safe).
    Needs `privacy.manage`; the export is audited."""
    require(actor, "privacy.manage")
    data = subject_data(session, customer_id)
    payload = _zip(data)
    record_audit(session, actor, "customer.export_subject", "customer", customer_id,
                 after={"tables": {k: len(v) for k, v in data.items()}, "bytes": len(payload)})
    return payload


def _zip(data: dict[str, list[dict[str, Any]]]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("subject.json", json.dumps({"exported_at": utcnow().isoformat(), "tables": data},
                                                    indent=2, default=str))
        for name, rows in data.items():
            text = io.StringIO()
            columns = list(rows[0])
            writer = csv.DictWriter(text, fieldnames=columns)
            writer.writeheader()
            for row in rows:
                writer.writerow({k: neutralize(json.dumps(v) if isinstance(v, dict | list) else v)
                                 for k, v in row.items()})
            archive.writestr(f"{name}.csv", text.getvalue())
    return buffer.getvalue()


def process_access_request(session: Session, actor: Actor, request_id: Any) -> bytes:
    """Answer an access (or portability) request with the export zip and complete it."""
    require(actor, "privacy.manage")
    request = _request(session, request_id)
    _open(request)
    if request.request_type not in ("access", "portability"):
        raise ValidationError(f"Request {request.id} is a {request.request_type} request, not an access request.")
    if request.customer_id is None:
        raise ValidationError(f"Request {request.id} names no customer.")
    data = subject_data(session, request.customer_id)
    payload = _zip(data)
    tables = {k: len(v) for k, v in data.items()}
    request.status = "completed"
    request.completed_at = utcnow()
    request.handled_by_id = actor.id
    request.result = {"exported_tables": tables, "bytes": len(payload)}
    session.flush()
    record_audit(session, actor, "dsr.access", "data_subject_request", request.id, after=request.result)
    return payload


# --------------------------------------------------------------------------- erasure


def _is_enum(table: Table, column_name: str) -> bool:
    pattern = re.compile(rf"(?<![\w]){re.escape(column_name)} = '")
    return any(pattern.search(str(getattr(c, "sqltext", ""))) for c in table.constraints)


def _erasure_values(table: Table) -> dict[str, Any]:
    """Column -> anonymised value (an SQL expression) for one table's personal columns."""
    keys = {c.name for c in table.primary_key.columns} | {fk.parent.name for fk in table.foreign_keys}
    pk = list(table.primary_key.columns)
    values: dict[str, Any] = {}
    for column in table.columns:
        name = column.name
        if name in keys or name in KEPT_COLUMNS:
            continue
        if name in PERSONAL_NUMBERS:
            values[name] = None
            continue
        if not isinstance(column.type, String | Text | JSON | LargeBinary) or _is_enum(table, name):
            continue
        if column.nullable:
            values[name] = None
        elif isinstance(column.type, JSON):
            values[name] = {}
        elif len(pk) == 1 and (column.unique or any(
                isinstance(c, UniqueConstraint) and name in c.columns for c in table.constraints)):
            values[name] = literal("erased:") + cast(pk[0], String)
        else:
            values[name] = ""
    return values


def _scrub(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(v, secrets) for v in value]
    if isinstance(value, str):
        lowered = value.lower()
        if any(s.lower() in lowered for s in secrets):
            return ERASED
    return value


def _secrets(session: Session, ids: list[int]) -> list[str]:
    """The person's identifying values, to find them quoted in audit entries and the merge log."""
    values: set[str] = set()
    for c in session.scalars(select(Customer).where(Customer.id.in_(ids))):
        values |= {c.email or "", c.phone or "", c.notes or "", f"{c.first_name} {c.last_name}".strip(),
                   c.external_id or ""}
        values |= {n for n in (c.first_name, c.last_name) if n and len(n) >= 4}
    for a in session.scalars(select(CustomerAddress).where(CustomerAddress.customer_id.in_(ids))):
        values |= {a.line1 or "", a.line2 or ""}
    values |= set(session.scalars(select(SocialAccount.handle).where(SocialAccount.customer_id.in_(ids))))
    values |= set(session.scalars(select(CustomerPaymentMethod.processor_token)
                                  .where(CustomerPaymentMethod.customer_id.in_(ids))))
    values |= _past_values(session, ids)
    # Full names the person went by: every first name they had with every last name they had.
    firsts, lasts = _single_names(session, ids, "first_name"), _single_names(session, ids, "last_name")
    values |= {f"{first} {last}" for first in firsts for last in lasts if first and last}
    return sorted(v for v in values if v and len(v) >= 4)


# Keys under which audit snapshots and merge-log payloads keep a person's identifying values.
PERSONAL_KEYS = frozenset({"first_name", "last_name", "name", "full_name", "email", "phone", "company", "notes",
                           "external_id", "line1", "line2", "handle", "processor_token", "customer_email"})


def _personal_values(snapshot: Any) -> set[str]:
    """Identifying values in an audit snapshot or a merge payload, at any depth, plus full names."""
    found: set[str] = set()
    if isinstance(snapshot, list):
        for item in snapshot:
            found |= _personal_values(item)
    elif isinstance(snapshot, dict):
        for key, value in snapshot.items():
            if key in PERSONAL_KEYS and isinstance(value, str):
                found.add(value)
            elif isinstance(value, dict | list):
                found |= _personal_values(value)
        first, last = snapshot.get("first_name"), snapshot.get("last_name")
        if isinstance(first, str) and isinstance(last, str):
            found.add(f"{first} {last}".strip())
    return found


def _past_values(session: Session, ids: list[int]) -> set[str]:
    """Values the person had before: a changed name, e-mail or phone lives on in the 'before' of
    `customer.update` audit entries and in the merge log's payloads."""
    values: set[str] = set()
    entries = session.execute(select(AuditLog.before, AuditLog.after).where(
        AuditLog.entity_type == "customer", AuditLog.entity_id.in_([str(i) for i in ids])))
    for before, after in entries:
        values |= _personal_values(before) | _personal_values(after)
    merges = select(CustomerMerge.id).where(or_(CustomerMerge.survivor_id.in_(ids), CustomerMerge.merged_id.in_(ids)))
    for payload in session.scalars(select(CustomerMergeRow.payload).where(CustomerMergeRow.merge_id.in_(merges),
                                                                           CustomerMergeRow.payload.is_not(None))):
        values |= _personal_values(payload)
    return values


def _single_names(session: Session, ids: list[int], *keys: str) -> set[str]:
    """The person's first and/or last names (`keys`, default both) on their own, now and before."""
    keys = keys or ("first_name", "last_name")
    names: set[str] = set()
    for row in session.execute(select(*[getattr(Customer, k) for k in keys]).where(Customer.id.in_(ids))):
        names |= {v for v in row if v}
    entries = session.execute(select(AuditLog.before, AuditLog.after).where(
        AuditLog.entity_type == "customer", AuditLog.entity_id.in_([str(i) for i in ids])))
    for snapshots in entries:
        for snapshot in snapshots:
            if isinstance(snapshot, dict):
                names |= {v for k, v in snapshot.items() if k in keys and isinstance(v, str) and v}
    return names


def _variants(secret: str) -> set[str]:
    """How a value may be stored: as typed, and inside JSON text with non-ASCII letters escaped."""
    return {secret, json.dumps(secret)[1:-1], json.dumps(secret, ensure_ascii=False)[1:-1]}


def _sweep_free_text(session: Session, secrets: list[str], skip: set[str]) -> dict[str, int]:
    """Every text and JSON column of every table, searched for the person's values (JSON decoded, so
    "Zoë" is found however it was escaped) and scrubbed where found: saved searches, import runs,
    other people's tickets and notes that mention them, audit entries. Returns rows per table."""
    scrubbed: dict[str, int] = {}
    folded = [s.casefold() for s in secrets]
    for table in Base.metadata.sorted_tables:
        if table.name in skip:
            continue
        keys = {c.name for c in table.primary_key.columns} | {fk.parent.name for fk in table.foreign_keys}
        columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON) and c.name not in keys
                   and not _is_enum(table, c.name)]
        if not columns or not table.primary_key.columns:
            continue
        found = or_(*[cast(c, Text).icontains(v, autoescape=True) for c in columns for s in secrets
                      for v in _variants(s)])
        pk = list(table.primary_key.columns)
        unique = {c.name for c in columns if c.unique} | {
            col.name for constraint in table.constraints if isinstance(constraint, UniqueConstraint)
            for col in constraint.columns} | {col.name for index in table.indexes if index.unique for col in index.columns}
        for row in session.execute(select(*pk, *columns).where(found)).all():
            key = row[:len(pk)]
            changes: dict[str, Any] = {}
            for column, value in zip(columns, row[len(pk):], strict=True):
                if isinstance(value, dict | list):
                    cleaned = _scrub_folded(value, folded)
                    if cleaned != value:
                        changes[column.name] = cleaned
                elif isinstance(value, str) and any(f in value.casefold() for f in folded):
                    changes[column.name] = f"erased:{key[0]}" if column.name in unique else ERASED
            if changes:
                session.execute(update(table).where(*[c == k for c, k in zip(pk, key, strict=True)]).values(changes))
                scrubbed[table.name] = scrubbed.get(table.name, 0) + 1
    return scrubbed


def _scrub_folded(value: Any, folded: list[str]) -> Any:
    if isinstance(value, dict):
        return {k: _scrub_folded(v, folded) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_folded(v, folded) for v in value]
    if isinstance(value, str) and any(f in value.casefold() for f in folded):
        return ERASED
    return value


def _attachment_files(session: Session, ids: list[int]) -> list[str]:
    """The stored attachment files of the person's tickets (paths under the attachment store)."""
    tickets = select(SupportTicket.id).where(SupportTicket.customer_id.in_(ids))
    return list(session.scalars(select(SupportTicketResponse.attachment_path).where(
        SupportTicketResponse.ticket_id.in_(tickets), SupportTicketResponse.attachment_path.is_not(None))))


def _ascii_folded(text: str) -> str:
    """How an attachment's stored file name spells a value: accents and other letters outside ASCII
    dropped, spaces as underscores (tickets.sanitize_file_name)."""
    return re.sub(r"\s+", "_", unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode())


def _quoting_attachments(session: Session, ids: list[int], secrets: list[str]) -> list[tuple[int, str]]:
    """(response id, path) of attachments on OTHER people's tickets whose file name or text quotes one
    of the person's identifying values: a forwarded e-mail, a statement with their name. Text is read
    as UTF-8, UTF-16 and Latin-1; a compressed format (a PDF's streams, an image) cannot be read and
    is left as it is."""
    if not secrets:
        return []
    folded = {s.casefold() for s in secrets} | {_ascii_folded(s).casefold() for s in secrets if len(_ascii_folded(s)) >= 4}
    theirs = select(SupportTicket.id).where(SupportTicket.customer_id.in_(ids))
    rows = session.execute(select(SupportTicketResponse.id, SupportTicketResponse.attachment_path,
                                  SupportTicketResponse.attachment_name)
                           .where(SupportTicketResponse.attachment_path.is_not(None),
                                  SupportTicketResponse.ticket_id.not_in(theirs)))
    store = attachments_dir().resolve()
    found: list[tuple[int, str]] = []
    for response_id, path, name in rows:
        if not path:
            continue
        texts: list[str] = [path, name or ""]
        target = (store / path).resolve()
        if store in target.parents and target.is_file():
            with open(target, "rb") as handle:
                content = handle.read(MAX_ATTACHMENT_BYTES + 1)
            texts += [content.decode("utf-8", "ignore"), content.decode("utf-16", "ignore"), content.decode("latin-1")]
        haystack = "\n".join(texts).casefold()
        if any(secret in haystack or secret in haystack.replace("_", " ") for secret in folded):
            found.append((response_id, path))
    return found


def _delete_attachments(paths: list[str]) -> int:
    store = attachments_dir().resolve()
    deleted = 0
    for relative in paths:
        target = (store / relative).resolve()
        if store not in target.parents:
            continue  # a path that leaves the store is nobody's attachment
        if target.exists():
            target.unlink()
            deleted += 1
        if target.parent != store and target.parent.exists() and not any(target.parent.iterdir()):
            target.parent.rmdir()
    return deleted


def erase_customer(session: Session, actor: Actor, customer_id: Any, request_id: Any) -> dict[str, Any]:
    """Anonymise the person everywhere, keep non-identifying facts, and complete the erasure request."""
    require(actor, "privacy.manage")
    customer = _customer(session, customer_id)
    request = _request(session, request_id)
    _open(request)
    if request.request_type != "erasure":
        raise ValidationError(f"Request {request.id} is a {request.request_type} request, not an erasure request.")
    if request.customer_id not in (None, customer.id):
        raise ValidationError(f"Request {request.id} is for customer {request.customer_id}, not {customer.id}.")
    if customer.status == "erased":
        raise ValidationError(f"Customer {customer.id} was already erased.")
    if customer.status == "merged":
        raise ValidationError(f"Customer {customer.id} was merged into {customer.merged_into_id}; erase that customer.")
    ids = _person_ids(session, customer)
    secrets = _secrets(session, ids)
    names = _single_names(session, ids)  # a first or last name alone is not searched for everywhere: others share it
    attachments = _attachment_files(session, ids)
    # Files on other people's tickets that quote them: dropped from their rows now, before the sweep
    # below would rewrite a path that holds a value (and so lose the file), deleted with the others.
    quoting = _quoting_attachments(session, ids, [v for v in secrets if v not in names])
    if quoting:
        session.execute(update(SupportTicketResponse).where(SupportTicketResponse.id.in_([r for r, _ in quoting]))
                        .values(attachment_path=None, attachment_name=ERASED, attachment_type=None,
                                attachment_size=None))
        attachments += [path for _, path in quoting]
    now = utcnow()
    session.flush()

    affected: dict[str, int] = {}
    for table, condition in _person_scopes(ids):
        values = _erasure_values(table)
        if table.name == CustomerPaymentMethod.__tablename__:
            values["status"] = "removed"
        if table.name == DataSubjectRequest.__tablename__:
            values.pop("result", None)
        if values:
            count = rows_affected(session.execute(update(table).where(condition).values(values))) or 0
            if count:
                affected[table.name] = count
    from crm_core.success.ctas import erase_cta_texts  # here: success imports customers at import time

    affected.update(erase_cta_texts(session, ids))  # notes and history written while working their CTAs
    session.execute(update(Customer.__table__).where(Customer.id.in_(ids)).values(
        first_name=ERASED, last_name="", email=None, phone=None, date_of_birth=None, gender=None, city=None,
        notes=None, external_id=None, status="erased", erased_at=now, version=Customer.version + 1))
    affected["customers"] = len(ids)

    # Audit entries and merge-log payloads that quote the person's values.
    scrubbed = 0
    if secrets:
        text_of = [cast(AuditLog.before, Text), cast(AuditLog.after, Text)]
        quoted = or_(*[t.contains(s) for s in secrets for t in text_of],
                     *[AuditLog.entity_id == str(i) for i in ids])
        for entry in session.scalars(select(AuditLog).where(quoted)):
            entry.before, entry.after = _scrub(entry.before, secrets), _scrub(entry.after, secrets)
            scrubbed += 1
        merges = select(CustomerMerge.id).where(or_(CustomerMerge.survivor_id.in_(ids), CustomerMerge.merged_id.in_(ids)))
        for row in session.scalars(select(CustomerMergeRow).where(CustomerMergeRow.merge_id.in_(merges),
                                                                  CustomerMergeRow.payload.is_not(None))):
            row.payload = _scrub(row.payload, secrets)
        session.flush()
        # Whatever else quotes them: decoded JSON, other rows' free text, saved searches, import runs.
        identifying = [v for v in secrets if v not in names]
        for name, count in _sweep_free_text(session, identifying, skip={DataSubjectRequest.__tablename__}).items():
            affected[name] = affected.get(name, 0) + count
    exceptions = [{"table": name, "reason": why} for name, why in RETAINED_TABLES.items()
                  if session.scalar(select(func.count()).select_from(Base.metadata.tables[name])
                                    .where(Base.metadata.tables[name].c.customer_id.in_(ids)))]
    request.customer_id = customer.id
    request.status = "completed"
    request.completed_at = now
    request.handled_by_id = actor.id
    request.notes = "; ".join(f"Retention exception: {e['reason']}" for e in exceptions) or "Erased; no exceptions."
    request.result = {"erased_customers": ids, "rows_anonymised": affected, "audit_entries_scrubbed": scrubbed,
                      "retention_exceptions": exceptions, "attachment_files_deleted": len(attachments)}
    session.flush()
    record_audit(session, actor, "dsr.erasure", "data_subject_request", request.id,
                 after={"customers": ids, "tables": sorted(affected), "retention_exceptions": len(exceptions),
                        "attachment_files_deleted": len(attachments)})
    session.flush()
    # Last, once everything else has succeeded: the files cannot be rolled back.
    _delete_attachments(attachments)
    session.expire_all()
    return request.result


def find_request_subjects(session: Session, viewer: Actor, text: str, limit: int = 20) -> list[dict[str, Any]]:
    """Customers by id, email or name, for picking the subject of a request."""
    require(viewer, "privacy.manage")
    text = (text or "").strip()
    if not text:
        return []
    if text.isdigit():
        condition = Customer.id == int(text)
    else:
        like = f"%{text.lower()}%"
        condition = or_(func.lower(Customer.email).like(like),
                        func.lower(Customer.first_name + " " + Customer.last_name).like(like))
    rows = session.execute(select(Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.status)
                           .where(condition).order_by(Customer.id).limit(limit)).all()
    return [{"customer_id": r.id, "name": f"{r.first_name} {r.last_name}".strip(), "email": r.email,
             "status": r.status} for r in rows]

