"""Bulk actions over a selection of customer ids or a whole search result.

Each action takes a list of ids or a `CustomerQuery`, works through the customers in chunks of
`CHUNK` (set-based statements per chunk, never a row-at-a-time ORM loop), reports progress after
each chunk, and returns a per-record result: "ok", "skipped" (nothing to do, with the reason) or
"failed" (cannot be done, with the reason: unknown, merged or erased customers).

Atomicity: all or nothing per action. Every chunk is written in the caller's transaction (the unit
of work of the page or CLI), so an error part-way (a database failure, a lost connection) rolls
back every chunk, and the audit row, together. Per-record "failed" outcomes are decided before
writing and do not abort the action.

Each action writes one audit row `bulk.<action>` with the counts, the parameters, the selection
and the first `AUDIT_DETAILS` records that were not ok; the full per-record list is returned.
"""

from __future__ import annotations

import datetime as dt
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Integer, String, insert, literal, select, true, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_core.customers import search
from crm_core.customers.rules import GONE_STATUSES
from crm_core.customers.search import CustomerQuery
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import allowed, require
from crm_core.platform.spreadsheet import csv_chunks
from crm_core.segmentation import segments
from crm_core.segmentation.segments import hand_edited_segment
from db.models import (
    COMM_CHANNELS,
    LIFECYCLE_STAGES,
    Customer,
    CustomerCommunication,
    CustomerLifecycleHistory,
    CustomerLifecycleStage,
    CustomerPreferenceCenter,
    CustomerSegmentMembership,
    utcnow,
)

CHUNK = 1000
AUDIT_DETAILS = 200
SETTABLE_STATUSES = ("active", "suspended", "closed")
EXPORT_COLUMNS = ["id", "name", "email", "phone", "company", "country", "city", "status", "stage", "tier",
                  "signed_up_at", "last_order_at", "orders", "revenue", "clv_12m", "churn_probability", "risk_level"]
# Channels that need a contact detail and an opt-in in the preference centre.
CHANNEL_NEEDS = {
    "email": ("email", "email_opt_in"), "sms": ("phone", "sms_opt_in"), "push": (None, "push_opt_in"),
    "call": ("phone", "phone_opt_in"),
}

Progress = Callable[[int, int], None]
Selection = list[int] | tuple[int, ...] | CustomerQuery


@dataclass(frozen=True)
class BulkAction:
    key: str
    label: str
    permission: str


ACTIONS: tuple[BulkAction, ...] = (
    BulkAction("add_to_segment", "Add to a static segment", "segments.manage"),
    BulkAction("change_lifecycle_stage", "Change lifecycle stage", "lifecycle.edit"),
    BulkAction("change_status", "Change status", "customers.edit"),
    BulkAction("log_campaign_communication", "Log a campaign communication", "customers.edit"),
    BulkAction("export", "Export as CSV", "customers.export"),
)


def available_bulk_actions(role: str | None) -> list[BulkAction]:
    """The bulk actions a role may run (bulk access plus the action's own permission)."""
    if not allowed(role, "customers.bulk"):
        return []
    return [a for a in ACTIONS if allowed(role, a.permission)]


@dataclass
class BulkResult:
    action: str
    total: int = 0
    ok: int = 0
    skipped: int = 0
    failed: int = 0
    records: list[tuple[int, str, str]] = field(default_factory=list)
    content: bytes | None = None

    def add(self, customer_id: int, outcome: str, reason: str = "") -> None:
        self.records.append((customer_id, outcome, reason))
        setattr(self, outcome, getattr(self, outcome) + 1)
        self.total += 1

    def rows(self) -> list[dict[str, Any]]:
        return [{"customer_id": i, "result": outcome, "reason": reason} for i, outcome, reason in self.records]

    def summary(self) -> dict[str, int]:
        return {"total": self.total, "ok": self.ok, "skipped": self.skipped, "failed": self.failed}


# --------------------------------------------------------------------------- selection


def _ids(selection: Any) -> list[int]:
    if isinstance(selection, str | bytes) or not hasattr(selection, "__iter__"):
        raise ValidationError("Select customers by a list of ids or a search.")
    ids = list(selection)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ValidationError("Customer ids are whole numbers.")
    ids = list(dict.fromkeys(ids))
    if not ids:
        raise ValidationError("Select at least one customer.")
    return ids


def selection_size(session: Session, viewer: Actor, selection: Selection) -> int:
    """How many customers the action would touch (for the confirmation)."""
    require(viewer, "customers.bulk")
    if isinstance(selection, CustomerQuery):
        return search.count_matches(session, viewer, selection)
    return len(_ids(selection))


def _chunks(session: Session, actor: Actor, selection: Selection) -> tuple[int, Iterator[list[int]]]:
    if isinstance(selection, CustomerQuery):
        total = search.count_matches(session, actor, selection)
        if total == 0:
            raise ValidationError("The search matches no customers; nothing to do.")
        return total, search.search_ids(session, actor, selection, batch=CHUNK)
    ids = _ids(selection)
    return len(ids), (ids[i:i + CHUNK] for i in range(0, len(ids), CHUNK))


def _describe_selection(selection: Selection) -> dict[str, Any]:
    if isinstance(selection, CustomerQuery):
        return {"query": search.validate_query(selection).to_dict()}
    ids = _ids(selection)
    return {"ids": ids[:100], "count": len(ids)}


def _statuses(session: Session, chunk: list[int]) -> dict[int, str]:
    return dict(session.execute(select(Customer.id, Customer.status).where(Customer.id.in_(chunk))).all())


def _usable(result: BulkResult, chunk: list[int], statuses: dict[int, str]) -> list[int]:
    """Record unknown, merged and erased customers as failed; return the rest."""
    usable = []
    for customer_id in chunk:
        status = statuses.get(customer_id)
        if status is None:
            result.add(customer_id, "failed", "no such customer")
        elif status in GONE_STATUSES:
            result.add(customer_id, "failed", f"customer was {status}")
        else:
            usable.append(customer_id)
    return usable


def _run(session: Session, actor: Actor, selection: Selection, result: BulkResult, progress: Progress | None,
         handle: Callable[[list[int], dict[int, str]], None]) -> None:
    total, chunks = _chunks(session, actor, selection)
    for chunk in chunks:
        statuses = _statuses(session, chunk)
        handle(_usable(result, chunk, statuses), statuses)
        if progress:
            progress(min(result.total, total), total)


def _audit(session: Session, actor: Actor, result: BulkResult, selection: Selection, params: dict[str, Any]) -> None:
    not_ok = [list(r) for r in result.records if r[1] != "ok"][:AUDIT_DETAILS]
    record_audit(session, actor, f"bulk.{result.action}", "customer", None,
                 after={**result.summary(), "params": params, "selection": _describe_selection(selection),
                        "not_ok": not_ok})
    session.flush()


def _reason(reason: Any, required: bool) -> str:
    if reason is None:
        reason = ""
    if not isinstance(reason, str):
        raise ValidationError("The reason must be text.")
    reason = " ".join(reason.split())
    if required and not reason:
        raise ValidationError("Give a reason; it is recorded with every change.")
    if len(reason) > 255:
        raise ValidationError("The reason has at most 255 characters.")
    return reason


# --------------------------------------------------------------------------- actions


def bulk_add_to_segment(session: Session, actor: Actor, selection: Selection, segment_id: int,
                   progress: Progress | None = None, now: dt.datetime | None = None) -> BulkResult:
    """Add the customers to a static segment; current members are skipped."""
    require(actor, "customers.bulk")
    require(actor, "segments.manage")
    if not isinstance(segment_id, int) or isinstance(segment_id, bool):
        raise NotFound(f"No segment with id {segment_id}.")
    segment = hand_edited_segment(session, segment_id)
    if not segment.is_active:
        raise ValidationError(f"Segment {segment.name!r} is paused; resume it before adding customers.")
    now = now or utcnow()
    result = BulkResult("add_to_segment")
    m = CustomerSegmentMembership

    def handle(usable: list[int], _statuses: dict[int, str]) -> None:
        if not usable:
            return
        members = set(session.scalars(select(m.customer_id).where(
            m.segment_id == segment.id, m.is_active == true(), m.customer_id.in_(usable))))
        new = []
        for customer_id in usable:
            if customer_id in members:
                result.add(customer_id, "skipped", "already a member")
            else:
                new.append(customer_id)
                result.add(customer_id, "ok")
        if new:
            segments.add_members(session, actor, segment.id, new, now=now)

    _run(session, actor, selection, result, progress, handle)
    _audit(session, actor, result, selection, {"segment_id": segment.id, "segment": segment.name})
    return result


def _upsert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


def bulk_change_lifecycle_stage(session: Session, actor: Actor, selection: Selection, stage: str, reason: str,
                           progress: Progress | None = None, now: dt.datetime | None = None) -> BulkResult:
    """Put the customers in a stage by hand, with the reason in each history row."""
    require(actor, "customers.bulk")
    require(actor, "lifecycle.edit")
    if stage not in LIFECYCLE_STAGES:
        raise ValidationError(f"Unknown stage {stage!r}; choose one of: {', '.join(LIFECYCLE_STAGES)}.")
    reason = _reason(reason, required=True)
    now = now or utcnow()
    result = BulkResult("change_lifecycle_stage")
    s = CustomerLifecycleStage

    def handle(usable: list[int], _statuses: dict[int, str]) -> None:
        if not usable:
            return
        current = dict(session.execute(select(s.customer_id, s.stage).where(s.customer_id.in_(usable))).all())
        moving = []
        for customer_id in usable:
            if current.get(customer_id) == stage:
                result.add(customer_id, "skipped", f"already {stage}")
            else:
                moving.append(customer_id)
                result.add(customer_id, "ok")
        if not moving:
            return
        session.execute(insert(CustomerLifecycleHistory), [
            {"customer_id": i, "from_stage": current.get(i), "to_stage": stage, "changed_at": now, "reason": reason,
             "actor_kind": "user", "actor_id": actor.id}
            for i in moving
        ])
        upsert = _upsert(session)(s).values([
            {"customer_id": i, "stage": stage, "entered_at": now, "reason": reason, "updated_at": now} for i in moving
        ])
        session.execute(upsert.on_conflict_do_update(
            index_elements=["customer_id"],
            set_={"stage": upsert.excluded.stage, "entered_at": upsert.excluded.entered_at,
                  "reason": upsert.excluded.reason, "updated_at": upsert.excluded.updated_at},
        ))

    _run(session, actor, selection, result, progress, handle)
    session.expire_all()
    _audit(session, actor, result, selection, {"stage": stage, "reason": reason})
    return result


def bulk_change_status(session: Session, actor: Actor, selection: Selection, status: str, reason: str = "",
                  progress: Progress | None = None, now: dt.datetime | None = None) -> BulkResult:
    """Set the status (active, suspended or closed); merged and erased customers fail."""
    require(actor, "customers.bulk")
    require(actor, "customers.edit")
    if status not in SETTABLE_STATUSES:
        raise ValidationError(f"Status {status!r} cannot be set here; choose one of: {', '.join(SETTABLE_STATUSES)}.")
    reason = _reason(reason, required=False)
    now = now or utcnow()
    result = BulkResult("change_status")

    def handle(usable: list[int], statuses: dict[int, str]) -> None:
        changing = []
        for customer_id in usable:
            if statuses[customer_id] == status:
                result.add(customer_id, "skipped", f"already {status}")
            else:
                changing.append(customer_id)
                result.add(customer_id, "ok")
        if changing:
            # Bumping the version makes an open edit form of these customers report a conflict.
            session.execute(
                update(Customer)
                .where(Customer.id.in_(changing), Customer.status.not_in(GONE_STATUSES))
                .values(status=status, version=Customer.version + 1, updated_at=now)
                .execution_options(synchronize_session=False)
            )

    _run(session, actor, selection, result, progress, handle)
    session.expire_all()
    _audit(session, actor, result, selection, {"status": status, "reason": reason})
    return result


def bulk_log_campaign_communication(session: Session, actor: Actor, selection: Selection, campaign: str, channel: str,
                               subject: str | None = None, body: str | None = None,
                               progress: Progress | None = None, now: dt.datetime | None = None) -> BulkResult:
    """Record that a campaign message went to each customer (status "logged").

    Skipped: customers already logged for this campaign, customers without the contact detail the
    channel needs, and, for email, SMS, push and calls, customers without an opt-in on record.
    """
    require(actor, "customers.bulk")
    require(actor, "customers.edit")
    if not isinstance(campaign, str) or not campaign.strip():
        raise ValidationError("The campaign name is required.")
    campaign = " ".join(campaign.split())
    if len(campaign) > 100:
        raise ValidationError("The campaign name has at most 100 characters.")
    if channel not in COMM_CHANNELS:
        raise ValidationError(f"Unknown channel {channel!r}; choose one of: {', '.join(COMM_CHANNELS)}.")
    if subject is not None and (not isinstance(subject, str) or len(subject.strip()) > 255):
        raise ValidationError("The subject is text of at most 255 characters.")
    if body is not None and not isinstance(body, str):
        raise ValidationError("The message body must be text.")
    subject = (subject or "").strip() or None
    body = (body or "").strip() or None
    now = now or utcnow()
    result = BulkResult("log_campaign_communication")
    contact, opt_in = CHANNEL_NEEDS.get(channel, (None, None))
    comm = CustomerCommunication
    pref = CustomerPreferenceCenter

    def handle(usable: list[int], _statuses: dict[int, str]) -> None:
        if not usable:
            return
        facts = {r.id: r for r in session.execute(
            select(Customer.id, Customer.email, Customer.phone, pref.email_opt_in, pref.sms_opt_in,
                   pref.push_opt_in, pref.phone_opt_in)
            .outerjoin(pref, pref.customer_id == Customer.id).where(Customer.id.in_(usable)))}
        logged = set(session.scalars(select(comm.customer_id).where(comm.campaign == campaign,
                                                                   comm.customer_id.in_(usable))))
        sending = []
        for customer_id in usable:
            row = facts[customer_id]
            if customer_id in logged:
                result.add(customer_id, "skipped", "already logged for this campaign")
            elif contact and not getattr(row, contact):
                result.add(customer_id, "skipped", f"no {contact} on record")
            elif opt_in and not getattr(row, opt_in):
                result.add(customer_id, "skipped", f"no {channel} opt-in")
            else:
                sending.append(customer_id)
                result.add(customer_id, "ok")
        if sending:
            session.execute(insert(comm).from_select(
                ["customer_id", "channel", "direction", "status", "campaign", "subject", "body", "sent_at",
                 "logged_by_id"],
                select(Customer.id, literal(channel, String), literal("outbound", String), literal("logged", String),
                       literal(campaign, String), literal(subject, String), literal(body, String), literal(now),
                       literal(actor.id, Integer))
                .where(Customer.id.in_(sending)),
            ))

    _run(session, actor, selection, result, progress, handle)
    _audit(session, actor, result, selection, {"campaign": campaign, "channel": channel, "subject": subject})
    return result


def bulk_export(session: Session, actor: Actor, selection: Selection, progress: Progress | None = None) -> BulkResult:
    """The selected customers as CSV (formula-safe), in `result.content`."""
    require(actor, "customers.bulk")
    require(actor, "customers.export")
    result = BulkResult("export")
    latest = search._latest_prediction_date(session)
    columns = search._row_columns(search.risk_level_expr(latest))
    rows: list[dict[str, Any]] = []

    def handle(usable: list[int], _statuses: dict[int, str]) -> None:
        if not usable:
            return
        found = {r.id: search._as_row(r) for r in session.execute(
            search._joined(select(*columns)).where(Customer.id.in_(usable)))}
        for customer_id in usable:
            rows.append(found[customer_id])
            result.add(customer_id, "ok")

    _run(session, actor, selection, result, progress, handle)
    result.content = "".join(csv_chunks(rows, EXPORT_COLUMNS)).encode("utf-8")
    _audit(session, actor, result, selection, {"columns": EXPORT_COLUMNS, "bytes": len(result.content)})
    return result


def run_bulk_action(session: Session, actor: Actor, action: str, selection: Selection, params: dict[str, Any],
        progress: Progress | None = None) -> BulkResult:
    """Dispatch by action key (for the page and the CLI)."""
    handlers: dict[str, Callable[..., BulkResult]] = {
        "add_to_segment": bulk_add_to_segment, "change_lifecycle_stage": bulk_change_lifecycle_stage,
        "change_status": bulk_change_status, "log_campaign_communication": bulk_log_campaign_communication,
        "export": bulk_export,
    }
    if action not in handlers:
        raise ValidationError(f"Unknown bulk action {action!r}; choose one of: {', '.join(handlers)}.")
    if not isinstance(params, dict):
        raise ValidationError("Action parameters must be a mapping.")
    handler = handlers[action]
    _check_params(action, handler, params)
    return handler(session, actor, selection, progress=progress, **params)


# Arguments the dispatcher supplies itself; a caller's params never name them.
_SUPPLIED = ("session", "actor", "selection", "progress", "now")


def _check_params(action: str, handler: Callable[..., BulkResult], params: dict[str, Any]) -> None:
    """Refuse missing or unknown parameters with a message that names the action, not the handler."""
    label = next((a.label for a in ACTIONS if a.key == action), action)
    accepted = {n: p for n, p in inspect.signature(handler).parameters.items() if n not in _SUPPLIED}
    missing = [n.replace("_id", "").replace("_", " ") for n, p in accepted.items()
               if p.default is inspect.Parameter.empty and params.get(n) is None]
    if missing:
        raise ValidationError(f"“{label}” needs a {' and a '.join(missing)}: choose one before running it.")
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise ValidationError(f"“{label}” takes no {', '.join(unknown)}; it takes: {', '.join(accepted) or 'nothing'}.")
