"""Support tickets: create, assign, move through statuses, converse, attach files; the queues.

Allowed status changes (`TRANSITIONS`):

    new              -> open, pending_customer, on_hold, resolved, closed
    open, reopened   -> pending_customer, on_hold, resolved, closed   (reopened also -> open)
    pending_customer -> open, on_hold, resolved, closed
    on_hold          -> open, pending_customer, resolved, closed
    resolved         -> closed, reopened    (the customer is asked for a CSAT rating 1-5)
    closed           -> reopened

Every change bumps the ticket's version (optimistic locking: an edit made against an older read
raises ConflictError), writes a history event and an audit row in the same transaction, and
recomputes the SLA due times (see `sla`).
"""

from __future__ import annotations

import datetime as dt
import mimetypes
import os
import re
import secrets
import unicodedata
from pathlib import Path
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from crm_core.customers.rules import GONE_STATUSES, display_name, is_gone
from crm_core.platform import audit
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, ValidationError
from crm_core.platform.ids import MAX_RECORD_ID, is_record_id
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from crm_core.service import sla
from db.engine import PROJECT_ROOT
from db.models import (
    OPEN_TICKET_STATUSES,
    TICKET_CATEGORIES,
    TICKET_CHANNELS,
    TICKET_PRIORITIES,
    TICKET_STATUSES,
    Customer,
    Order,
    Product,
    ServiceLevelAgreement,
    SupportTicket,
    SupportTicketEvent,
    SupportTicketResponse,
    User,
    utcnow,
)
from db.private_files import private_dir, write_private

TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"open", "pending_customer", "on_hold", "resolved", "closed"}),
    "open": frozenset({"pending_customer", "on_hold", "resolved", "closed"}),
    "reopened": frozenset({"open", "pending_customer", "on_hold", "resolved", "closed"}),
    "pending_customer": frozenset({"open", "on_hold", "resolved", "closed"}),
    "on_hold": frozenset({"open", "pending_customer", "resolved", "closed"}),
    "resolved": frozenset({"closed", "reopened"}),
    "closed": frozenset({"reopened"}),
}
ASSIGNABLE_ROLES = ("support_agent", "success_manager", "admin")
DEPARTMENTS = ("Customer care", "Billing", "Logistics", "Technical support")
SUBJECT_MAX = 255
DESCRIPTION_MAX = 20_000
BODY_MAX = 20_000
MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024
ALLOWED_ATTACHMENT_TYPES = {
    ".pdf": "application/pdf", ".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg",
    ".gif": "image/gif", ".txt": "text/plain", ".csv": "text/csv",
    ".docx": "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    ".xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}
LOOKUP_LIMIT = 10
QUEUE_VIEWS = ("mine", "team")


def attachments_dir() -> Path:
    """Where attachment files live: CRM_ATTACHMENTS_DIR, else data/attachments under the project."""
    configured = os.environ.get("CRM_ATTACHMENTS_DIR", "").strip()
    return Path(configured) if configured else PROJECT_ROOT / "data" / "attachments"


# --------------------------------------------------------------------------- helpers


def _text(value: Any, label: str, max_length: int, required: bool = True) -> str:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError(f"{label} must be text, not {type(value).__name__}.")
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{label} is required.")
    if len(value) > max_length:
        raise ValidationError(f"{label} is at most {max_length:,} characters (got {len(value):,}).")
    return value


def _choice(value: Any, options: tuple[str, ...], label: str) -> str:
    if value not in options:
        raise ValidationError(f"{label} must be one of {', '.join(options)} (got {value!r}).")
    return value


def _int_id(value: Any, label: str) -> int:
    if not is_record_id(value):
        raise ValidationError(f"{label} must be a positive whole number up to {MAX_RECORD_ID:,} (got {value!r}).")
    return value


def _load(session: Session, ticket_id: Any) -> SupportTicket:
    ticket = session.get(SupportTicket, _int_id(ticket_id, "Ticket id"))
    if ticket is None:
        raise NotFound(f"Ticket {ticket_id} does not exist.")
    return ticket


def _event(session: Session, ticket: SupportTicket, actor: Actor, event: str, detail: dict[str, Any], now: dt.datetime
           ) -> None:
    session.add(SupportTicketEvent(ticket_id=ticket.id, event=event, detail=audit.jsonable(detail),
                                   actor_id=actor.id, occurred_at=now))


def flush_ticket(session: Session, ticket: SupportTicket) -> None:
    """Flush, turning a concurrent version bump into a ConflictError with the ticket number."""
    number = ticket.ticket_number  # read now: a failed flush expires the object
    try:
        session.flush()
    except StaleDataError as exc:
        raise ConflictError(
            f"Ticket {number} was changed by someone else at the same time. Reload and try again."
        ) from exc


def _snapshot(ticket: SupportTicket) -> dict[str, Any]:
    return {k: getattr(ticket, k) for k in ("status", "priority", "category", "assignee_id", "department", "sla_id",
                                             "subject", "csat_rating")}


def _assignee(session: Session, assignee_id: Any) -> User | None:
    if assignee_id is None:
        return None
    user = session.get(User, _int_id(assignee_id, "Assignee"))
    if user is None:
        raise ValidationError(f"User {assignee_id} does not exist.")
    if not user.is_active or user.role not in ASSIGNABLE_ROLES:
        raise ValidationError(f"{user.username} cannot take tickets: only active support agents, success managers "
                              "and admins can.")
    return user


def _department(value: Any) -> str | None:
    value = _text(value, "Department", 64, required=False)
    return value or None


# --------------------------------------------------------------------------- customer lookup


def lookup_customers(session: Session, viewer: Actor, query: str, limit: int = LOOKUP_LIMIT) -> list[dict[str, Any]]:
    """Customers for the ticket form: by id ('123' or '#123'), exact e-mail, or name prefix / contains."""
    require(viewer, "tickets.view")
    text = (query or "").strip() if isinstance(query, str) else ""
    if len(text) < 2 and not text.lstrip("#").isdigit():
        return []
    limit = max(1, min(int(limit), 50))
    c = Customer
    columns = (c.id, c.first_name, c.last_name, c.email, c.city, c.country_code, c.status)
    visible = c.status.not_in(GONE_STATUSES)
    if text.lstrip("#").isdigit():
        rows = session.execute(select(*columns).where(c.id == int(text.lstrip("#")), visible)).all()
    elif "@" in text:
        rows = session.execute(select(*columns).where(func.lower(c.email) == text.lower(), visible).limit(limit)).all()
    else:
        needle = text.lower().replace("%", "").replace("_", "")
        parts = needle.split()
        prefix = or_(func.lower(c.last_name).like(f"{parts[0]}%"), func.lower(c.first_name).like(f"{parts[0]}%"))
        if len(parts) > 1:
            prefix = func.lower(c.first_name + " " + c.last_name).like(f"%{needle}%")
        rows = session.execute(select(*columns).where(prefix, visible).order_by(c.last_name, c.first_name, c.id)
                               .limit(limit)).all()
        if len(rows) < limit and len(parts) == 1:
            seen = {r.id for r in rows}
            more = session.execute(
                select(*columns).where(func.lower(c.first_name + " " + c.last_name).like(f"%{needle}%"), visible)
                .order_by(c.last_name, c.first_name, c.id).limit(limit)
            ).all()
            rows = [*rows, *[r for r in more if r.id not in seen]][:limit]
    return [{"id": r.id, "name": display_name(r.first_name, r.last_name, r.id), "email": r.email,
             "city": r.city, "country": r.country_code,
             "label": f"#{r.id} {display_name(r.first_name, r.last_name, r.id)} <{r.email or 'no e-mail'}>"} for r in rows]


def ticket_customer_orders(session: Session, viewer: Actor, customer_id: int, limit: int = 20) -> list[dict[str, Any]]:
    """The customer's latest orders, for the 'related order' picker."""
    require(viewer, "tickets.view")
    rows = session.execute(select(Order.id, Order.order_number, Order.ordered_at, Order.total)
                           .where(Order.customer_id == customer_id).order_by(Order.ordered_at.desc()).limit(limit))
    return [{"id": r.id, "label": f"{r.order_number} ({r.ordered_at:%Y-%m-%d}, {r.total})"} for r in rows]


def ticket_agents(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    require(viewer, "tickets.view")
    rows = session.execute(select(User.id, User.username, User.full_name, User.role)
                           .where(User.is_active.is_(True), User.role.in_(ASSIGNABLE_ROLES)).order_by(User.username))
    return [dict(r._mapping) for r in rows]


# --------------------------------------------------------------------------- create and change


def create_ticket(session: Session, actor: Actor, customer_id: Any, subject: Any, description: Any,
                  category: Any = "other", priority: Any = "normal", channel: Any = "web",
                  order_id: Any = None, product_id: Any = None, department: Any = None,
                  assignee_id: Any = None, now: dt.datetime | None = None) -> SupportTicket:
    require(actor, "tickets.manage")
    now = now or utcnow()
    subject = _text(subject, "Subject", SUBJECT_MAX)
    description = _text(description, "Description", DESCRIPTION_MAX)
    category = _choice(category, TICKET_CATEGORIES, "Category")
    priority = _choice(priority, TICKET_PRIORITIES, "Priority")
    channel = _choice(channel, TICKET_CHANNELS, "Channel")
    customer = session.get(Customer, _int_id(customer_id, "Customer"))
    if customer is None or is_gone(customer.status):
        raise ValidationError(f"Customer {customer_id} does not exist (or was merged or erased).")
    if order_id is not None:
        order = session.get(Order, _int_id(order_id, "Related order"))
        if order is None:
            raise ValidationError(f"Order {order_id} does not exist.")
        if order.customer_id != customer.id:
            raise ValidationError(f"Order {order.order_number} belongs to another customer.")
    if product_id is not None and session.get(Product, _int_id(product_id, "Related product")) is None:
        raise ValidationError(f"Product {product_id} does not exist.")
    assignee = _assignee(session, assignee_id)
    policy = sla.match_policy(session, priority, category, customer.id)
    ticket = SupportTicket(
        ticket_number=f"T-{now:%y%m%d}-{secrets.token_hex(3).upper()}", customer_id=customer.id,
        subject=subject, description=description, category=category, priority=priority,
        status="open" if assignee else "new", channel=channel, department=_department(department),
        assignee_id=assignee.id if assignee else None, order_id=order_id, product_id=product_id,
        sla_id=policy.id if policy else None, sla_breached=False, created_at=now, updated_at=now,
    )
    sla.recompute_ticket(session, ticket, now)
    session.add(ticket)
    session.flush()
    session.add(SupportTicketResponse(ticket_id=ticket.id, author_kind="customer", body=description,
                                      is_internal=False, is_read=True, created_at=now))
    _event(session, ticket, actor, "created", {"priority": priority, "category": category,
                                               "policy": policy.name if policy else None}, now)
    session.flush()
    record_audit(session, actor, "ticket.create", "support_ticket", ticket.id, after=_snapshot(ticket))
    return ticket


def update_ticket(session: Session, actor: Actor, ticket_id: Any, expected_version: int | None,
                  now: dt.datetime | None = None, **changes) -> SupportTicket:
    """Apply status, priority, category, assignee and department changes together (one version check).

    `changes` takes any of: status, priority, category, assignee_id (None = unassign), department.
    """
    require(actor, "tickets.manage")
    now = now or utcnow()
    with session.no_autoflush:  # one flush, one version bump, per change
        unknown = sorted(set(changes) - {"status", "priority", "category", "assignee_id", "department"})
        if unknown:
            raise ValidationError(f"Cannot change {', '.join(unknown)} on a ticket.")
        ticket = _load(session, ticket_id)
        check_version(ticket, expected_version, f"Ticket {ticket.ticket_number}")
        before = _snapshot(ticket)
        rematch = False
        if "priority" in changes and changes["priority"] != ticket.priority:
            ticket.priority = _choice(changes["priority"], TICKET_PRIORITIES, "Priority")
            _event(session, ticket, actor, "priority_changed", {"from": before["priority"], "to": ticket.priority}, now)
            rematch = True
        if "category" in changes and changes["category"] != ticket.category:
            ticket.category = _choice(changes["category"], TICKET_CATEGORIES, "Category")
            _event(session, ticket, actor, "category_changed", {"from": before["category"], "to": ticket.category}, now)
            rematch = True
        if "assignee_id" in changes and changes["assignee_id"] != ticket.assignee_id:
            assignee = _assignee(session, changes["assignee_id"])
            ticket.assignee_id = assignee.id if assignee else None
            _event(session, ticket, actor, "assigned",
                   {"from": before["assignee_id"], "to": ticket.assignee_id,
                    "username": assignee.username if assignee else None}, now)
        if "department" in changes and (_department(changes["department"]) != ticket.department):
            ticket.department = _department(changes["department"])
            _event(session, ticket, actor, "department_changed", {"from": before["department"], "to": ticket.department},
                   now)
        if "status" in changes and changes["status"] != ticket.status:
            _set_status(session, actor, ticket, changes["status"], now)
        if ticket.status == "new" and ticket.assignee_id is not None and "status" not in changes:
            _set_status(session, actor, ticket, "open", now)
        if rematch and ticket.external_id is None:  # imported tickets have no SLA (see imports.helpdesk)
            policy = sla.match_policy(session, ticket.priority, ticket.category, ticket.customer_id)
            ticket.sla_id = policy.id if policy else None
        after = _snapshot(ticket)
        if after == before:
            return ticket
        ticket.updated_at = now
        sla.recompute_ticket(session, ticket, now)
        flush_ticket(session, ticket)
        record_audit(session, actor, "ticket.update", "support_ticket", ticket.id,
                     before={k: v for k, v in before.items() if after[k] != v},
                     after={k: v for k, v in after.items() if before[k] != v})
        return ticket


def _set_status(session: Session, actor: Actor, ticket: SupportTicket, new_status: Any, now: dt.datetime) -> None:
    new_status = _choice(new_status, TICKET_STATUSES, "Status")
    allowed = TRANSITIONS[ticket.status]
    if new_status not in allowed:
        raise ValidationError(
            f"A {ticket.status.replace('_', ' ')} ticket cannot become {new_status.replace('_', ' ')}; "
            f"allowed: {', '.join(sorted(allowed))}."
        )
    old = ticket.status
    ticket.status = new_status
    if new_status == "resolved":
        ticket.resolved_at = now
    elif new_status == "closed":
        ticket.closed_at = now
        ticket.resolved_at = ticket.resolved_at or now
    elif new_status == "reopened":
        ticket.resolved_at = None
        ticket.closed_at = None
    _event(session, ticket, actor, "status_changed", {"from": old, "to": new_status}, now)


def change_ticket_status(session: Session, actor: Actor, ticket_id: Any, new_status: str, expected_version: int | None,
                  now: dt.datetime | None = None) -> SupportTicket:
    return update_ticket(session, actor, ticket_id, expected_version, now=now, status=new_status)


def assign_ticket(session: Session, actor: Actor, ticket_id: Any, assignee_id: Any, expected_version: int | None,
           department: Any = None, now: dt.datetime | None = None) -> SupportTicket:
    changes: dict[str, Any] = {"assignee_id": assignee_id}
    if department is not None:
        changes["department"] = department
    return update_ticket(session, actor, ticket_id, expected_version, now=now, **changes)


# --------------------------------------------------------------------------- conversation


def _store_attachment(ticket: SupportTicket, attachment: tuple[str, bytes, str | None]) -> dict[str, Any]:
    if not isinstance(attachment, tuple) or len(attachment) != 3:
        raise ValidationError("An attachment is (file name, content, content type).")
    name, content, content_type = attachment
    if not isinstance(content, bytes | bytearray):
        raise ValidationError("The attachment content must be bytes.")
    safe = sanitize_file_name(name)
    extension = Path(safe).suffix.lower()
    if extension not in ALLOWED_ATTACHMENT_TYPES:
        raise ValidationError(f"Files of type {extension or '(none)'} cannot be attached; allowed: "
                              f"{', '.join(sorted(ALLOWED_ATTACHMENT_TYPES))}.")
    if not content:
        raise ValidationError(f"{safe} is empty.")
    if len(content) > MAX_ATTACHMENT_BYTES:
        raise ValidationError(f"{safe} is {len(content) / 1024 / 1024:.1f} MB; the limit is "
                              f"{MAX_ATTACHMENT_BYTES // 1024 // 1024} MB.")
    expected_type = ALLOWED_ATTACHMENT_TYPES[extension]
    if content_type and content_type not in (expected_type, "application/octet-stream") and \
            mimetypes.guess_extension(content_type) not in (extension, None):
        raise ValidationError(f"{safe} says it is {content_type}, which does not match its {extension} name.")
    relative = Path(str(ticket.id)) / f"{secrets.token_hex(8)}_{safe}"
    private_dir(attachments_dir())
    write_private(attachments_dir() / relative, bytes(content))
    return {"attachment_path": str(relative), "attachment_name": safe, "attachment_type": expected_type,
            "attachment_size": len(content)}


def sanitize_file_name(name: Any) -> str:
    """A safe file name: no directories, no control or shell characters, at most 120 characters."""
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("The attachment needs a file name.")
    name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    name = re.split(r"[\\/]", name)[-1]
    name = re.sub(r"[^A-Za-z0-9._ -]", "_", name).strip(" .")
    name = re.sub(r"\s+", "_", name)
    if not name or name.startswith("."):
        raise ValidationError("The attachment's file name has no usable characters.")
    stem, suffix = os.path.splitext(name)
    return stem[: 120 - len(suffix)] + suffix


def add_response(session: Session, actor: Actor, ticket_id: Any, body: Any, internal: bool = False,
                 from_customer: bool = False, attachment: tuple[str, bytes, str | None] | None = None,
                 now: dt.datetime | None = None) -> SupportTicketResponse:
    """An external reply, an internal note, or a customer message logged by an agent."""
    require(actor, "tickets.manage")
    now = now or utcnow()
    with session.no_autoflush:  # one flush, one version bump, per change
        body = _text(body, "The message", BODY_MAX)
        if internal and from_customer:
            raise ValidationError("A customer message cannot be an internal note.")
        ticket = _load(session, ticket_id)
        if ticket.status == "closed" and not internal:
            raise ValidationError(f"Ticket {ticket.ticket_number} is closed; reopen it to reply.")
        stored = _store_attachment(ticket, attachment) if attachment is not None else {}
        try:
            response = SupportTicketResponse(
                ticket_id=ticket.id, author_kind="customer" if from_customer else "agent",
                author_user_id=None if from_customer else actor.id, body=body,
                is_internal=bool(internal), is_read=not from_customer, created_at=now, **stored)
            session.add(response)
            kind = "customer_message" if from_customer else ("note_added" if internal else "replied")
            _event(session, ticket, actor, kind, {"attachment": stored.get("attachment_name")}, now)
            if not internal and not from_customer and ticket.first_responded_at is None:
                ticket.first_responded_at = now
            if not internal and not from_customer and ticket.status == "new":
                _set_status(session, actor, ticket, "open", now)
            if from_customer and ticket.status == "pending_customer":
                _set_status(session, actor, ticket, "open", now)
            ticket.updated_at = now
            sla.recompute_ticket(session, ticket, now)
            flush_ticket(session, ticket)
            record_audit(session, actor, f"ticket.{kind}", "support_ticket", ticket.id,
                         after={"response_id": response.id, "internal": bool(internal), **stored})
        except BaseException:
            if stored:
                (attachments_dir() / stored["attachment_path"]).unlink(missing_ok=True)
            raise
        return response


def read_attachment(session: Session, viewer: Actor, response_id: int) -> tuple[str, str, bytes]:
    """(file name, content type, bytes) of a response's attachment."""
    require(viewer, "tickets.view")
    response = session.get(SupportTicketResponse, response_id)
    if response is None or not response.attachment_path:
        raise NotFound(f"Response {response_id} has no attachment.")
    path = (attachments_dir() / response.attachment_path).resolve()
    if attachments_dir().resolve() not in path.parents or not path.exists():
        raise NotFound(f"The file {response.attachment_name} is missing from the attachment store.")
    return (response.attachment_name or path.name, response.attachment_type or "application/octet-stream",
            path.read_bytes())


def mark_ticket_read(session: Session, actor: Actor, ticket_id: Any) -> int:
    """Mark the customer's messages on a ticket as read; returns how many were unread."""
    require(actor, "tickets.manage")
    ticket = _load(session, ticket_id)
    unread = session.scalars(select(SupportTicketResponse).where(
        SupportTicketResponse.ticket_id == ticket.id, SupportTicketResponse.is_read.is_(False))).all()
    for response in unread:
        response.is_read = True
    if unread:
        record_audit(session, actor, "ticket.read", "support_ticket", ticket.id, after={"messages": len(unread)})
    return len(unread)


def ticket_conversation(session: Session, viewer: Actor, ticket_id: Any, include_internal: bool = True) -> list[dict[str, Any]]:
    """The messages of a ticket, oldest first."""
    require(viewer, "tickets.view")
    ticket = _load(session, ticket_id)
    r = SupportTicketResponse
    query = (select(r.id, r.author_kind, User.username.label("author"), r.body, r.is_internal, r.is_read,
                    r.attachment_name, r.attachment_size, r.attachment_type, r.created_at)
             .outerjoin(User, User.id == r.author_user_id).where(r.ticket_id == ticket.id))
    if not include_internal:
        query = query.where(r.is_internal.is_(False))
    return [dict(row._mapping) for row in session.execute(query.order_by(r.created_at, r.id))]


def ticket_history(session: Session, viewer: Actor, ticket_id: Any) -> list[dict[str, Any]]:
    require(viewer, "tickets.view")
    ticket = _load(session, ticket_id)
    e = SupportTicketEvent
    rows = session.execute(select(e.occurred_at, e.event, e.detail, User.username.label("by"))
                           .outerjoin(User, User.id == e.actor_id).where(e.ticket_id == ticket.id)
                           .order_by(e.occurred_at, e.id))
    return [dict(row._mapping) for row in rows]


def get_ticket(session: Session, viewer: Actor, ticket_id: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """One ticket with its customer, assignee, policy and SLA clocks."""
    require(viewer, "tickets.view")
    now = now or utcnow()
    ticket = _load(session, ticket_id)
    customer = session.get(Customer, ticket.customer_id)
    assignee = session.get(User, ticket.assignee_id) if ticket.assignee_id else None
    policy = session.get(ServiceLevelAgreement, ticket.sla_id) if ticket.sla_id else None
    order = session.get(Order, ticket.order_id) if ticket.order_id else None
    paused = ticket.status in sla.PAUSED_STATUSES
    running = ticket.status in sla.CLOCK_STATUSES
    clocks = []
    for label, due, done_at in (
        ("First response", ticket.first_response_due_at, ticket.first_responded_at),
        ("Next response", ticket.next_response_due_at, None),
        ("Resolution", ticket.resolution_due_at, ticket.resolved_at),
    ):
        if due is None:
            continue
        if done_at is not None:
            state = "met" if done_at <= due else "missed"
        else:
            state = sla.time_left_band(due, now, paused=paused) if (running or paused) else "stopped"
        clocks.append({"clock": label, "due_at": due, "done_at": done_at, "state": state,
                       "minutes_left": None if done_at else round((due - now).total_seconds() / 60)})
    unread = session.scalar(select(func.count()).where(SupportTicketResponse.ticket_id == ticket.id,
                                                       SupportTicketResponse.is_read.is_(False))) or 0
    return {
        "id": ticket.id, "ticket_number": ticket.ticket_number, "subject": ticket.subject,
        "description": ticket.description, "status": ticket.status, "priority": ticket.priority,
        "category": ticket.category, "channel": ticket.channel, "department": ticket.department,
        "customer_id": ticket.customer_id,
        "customer": display_name(customer.first_name, customer.last_name, customer.id) if customer else None,
        "customer_email": customer.email if customer else None,
        "assignee_id": ticket.assignee_id, "assignee": assignee.username if assignee else None,
        "order": order.order_number if order else None, "policy": policy.name if policy else None,
        "sla_breached": ticket.sla_breached, "csat_rating": ticket.csat_rating, "created_at": ticket.created_at,
        "resolved_at": ticket.resolved_at, "closed_at": ticket.closed_at, "version": ticket.version,
        "clocks": clocks, "unread": unread, "allowed_statuses": sorted(TRANSITIONS[ticket.status]),
    }


# --------------------------------------------------------------------------- queues


def ticket_queue(session: Session, viewer: Actor, view: str = "team", status: str | None = None, priority: str | None = None,
          category: str | None = None, assignee_id: int | None = None, text: str | None = None,
          open_only: bool = True, page: int = 1, page_size: int = 25, now: dt.datetime | None = None,
          after: str | None = None) -> Page:
    """My tickets or the team queue, filtered, soonest SLA due first (tickets without a running clock last);
    a numbered page, or with `after` (a cursor, FIRST for the start) the next `page_size` by keyset."""
    require(viewer, "tickets.view")
    now = now or utcnow()
    view = _choice(view, QUEUE_VIEWS, "Queue")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 200:
        raise ValidationError("Page size must be between 1 and 200.")
    t = SupportTicket
    conditions = []
    if view == "mine":
        conditions.append(t.assignee_id == viewer.id)
    if status:
        conditions.append(t.status == _choice(status, TICKET_STATUSES, "Status"))
    elif open_only:
        conditions.append(t.status.in_(OPEN_TICKET_STATUSES))
    if priority:
        conditions.append(t.priority == _choice(priority, TICKET_PRIORITIES, "Priority"))
    if category:
        conditions.append(t.category == _choice(category, TICKET_CATEGORIES, "Category"))
    if assignee_id is not None:
        conditions.append(t.assignee_id == _int_id(assignee_id, "Agent"))
    if text and text.strip():
        needle = text.strip().lower()
        conditions.append(or_(func.lower(t.subject).contains(needle, autoescape=True),
                              func.lower(t.ticket_number) == needle))
    total = None if after is not None else session.scalar(select(func.count()).select_from(t).where(*conditions)) or 0
    due = sla.next_due_expression()
    page = 0 if after is not None else max(1, int(page))
    unread = (select(func.count()).where(SupportTicketResponse.ticket_id == t.id,
                                         SupportTicketResponse.is_read.is_(False)).scalar_subquery())
    rows, next_after = fetch_rows(
        session,
        select(t.id, t.ticket_number, t.subject, t.status, t.priority, t.category,
               (Customer.first_name + " " + Customer.last_name).label("customer"),
               User.username.label("assignee"), t.department, t.created_at, due.label("next_due_at"), t.sla_breached,
               unread.label("unread"))
        .join(Customer, Customer.id == t.customer_id).outerjoin(User, User.id == t.assignee_id)
        .where(*conditions),
        (SortKey(due, nullable=True), SortKey(t.created_at), SortKey(t.id)), "tickets",
        page=page, page_size=page_size, after=after)
    out = []
    for r in rows:
        row = {k: v for k, v in r._mapping.items() if not k.startswith("sort_key_")}
        paused = r.status in sla.PAUSED_STATUSES
        row["sla"] = sla.time_left_band(r.next_due_at, now, paused=paused)
        row["minutes_left"] = None if r.next_due_at is None else round((r.next_due_at - now).total_seconds() / 60)
        out.append(row)
    return Page(rows=out, total=total, page=page, page_size=page_size, next_after=next_after)
