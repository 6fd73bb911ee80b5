"""SLA policies, due times in business time, breaches, escalation and the share of targets met.

Policies: a policy applies to a priority, optionally narrowed to a category and/or a loyalty tier.
The most specific active match wins: category and tier > category > tier > priority alone.

Clocks: first response runs from creation until the first external agent reply; next response runs
from the customer's latest message that has no agent reply yet; resolution runs from creation (or
from the latest reopening) until resolved. All three stop while the ticket is pending the customer
or on hold: due times are recomputed from the ticket's status history (`status_changed` events),
shifting each clock by the business time it spent paused before falling due. Due times are
recomputed when priority, category, policy or status changes; a calendar change applies to each
ticket at its next recomputation.

Imported tickets (`external_id` set, see `crm_core/imports/helpdesk.py`) have no policy and no due times, and
never get one: their history happened under the helpdesk's own rules.

Breaches: `detect_breaches` records each missed target once (per ticket, target and due time) in
`customer_support_sla_breaches`, flags the ticket and writes a history event, all set-based.
Escalation: the first breach of a ticket raises its priority one level, writes an "escalated"
event and notifies the owner (the whole team when unassigned). The due times stay those of the
policy that was missed: escalation reorders the queue, it does not move the goalposts.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, overload

from sqlalchemy import (
    DateTime,
    Engine,
    String,
    and_,
    case,
    exists,
    func,
    insert,
    literal,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.sql import least, rows_affected, week_start
from crm_core.platform.transactions import check_version, unit_of_work
from crm_core.service.business_calendar import (
    BusinessCalendar,
    add_business_minutes,
    business_minutes_between,
    get_business_calendar,
    parse_calendar,
)
from db.models import (
    LOYALTY_TIERS,
    TICKET_CATEGORIES,
    TICKET_PRIORITIES,
    AuditLog,
    LoyaltyAccount,
    ServiceLevelAgreement,
    SlaBreach,
    StaffNotification,
    SupportTicket,
    SupportTicketEvent,
    SupportTicketResponse,
    User,
    utcnow,
)

PAUSED_STATUSES = ("pending_customer", "on_hold")
CLOCK_STATUSES = ("new", "open", "reopened")
DONE_STATUSES = ("resolved", "closed")
MAX_TARGET_MINUTES = 60 * 24 * 365
RECOMPUTE_CHUNK = 500
FAR_FUTURE = dt.datetime(9999, 1, 1)
GROUPINGS = ("priority", "category", "agent")
# The targets a new shop starts with, in business minutes per priority: (first response, next
# response, resolution). The demo shop is seeded with them; admins edit the policies on the SLA page.
DEFAULT_POLICY_MINUTES: dict[str, tuple[int, int, int]] = {
    "low": (1440, 1440, 7200), "normal": (480, 480, 2880), "high": (240, 240, 1440),
    "urgent": (60, 120, 480), "critical": (30, 60, 240),
}


# --------------------------------------------------------------------------- portable SQL


def _far() -> Any:
    return literal(FAR_FUTURE, DateTime())


def next_due_expression():
    """The earliest running due time of a ticket (NULL when no clock runs), for sorting and 'breaching soon'."""
    t = SupportTicket
    earliest = least(
        case((t.first_responded_at.is_(None) & t.first_response_due_at.is_not(None), t.first_response_due_at),
             else_=_far()),
        func.coalesce(t.next_response_due_at, _far()),
        case((t.resolved_at.is_(None) & t.resolution_due_at.is_not(None), t.resolution_due_at), else_=_far()),
    )
    return case((t.status.in_(CLOCK_STATUSES) & (earliest < _far()), earliest), else_=None)


# --------------------------------------------------------------------------- policies


def policy_row(policy: ServiceLevelAgreement) -> dict[str, Any]:
    return {
        "id": policy.id, "name": policy.name, "priority": policy.priority, "category": policy.category,
        "loyalty_tier": policy.loyalty_tier, "first_response_minutes": policy.first_response_minutes,
        "next_response_minutes": policy.next_response_minutes, "resolution_minutes": policy.resolution_minutes,
        "is_active": policy.is_active, "version": policy.version,
    }


def list_sla_policies(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    require(viewer, "sla.view")
    rank = case({p: i for i, p in enumerate(TICKET_PRIORITIES)}, value=ServiceLevelAgreement.priority)
    policies = session.scalars(select(ServiceLevelAgreement).order_by(rank, ServiceLevelAgreement.name)).all()
    return [policy_row(p) for p in policies]


@overload
def _minutes(value: Any, label: str) -> int: ...
@overload
def _minutes(value: Any, label: str, required: bool) -> int | None: ...
def _minutes(value: Any, label: str, required: bool = True) -> int | None:
    if value is None or value == "":
        if required:
            raise ValidationError(f"{label} is required (business minutes).")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise ValidationError(f"{label} must be a whole number of minutes, not {value!r}.")
    value = int(value)
    if not 1 <= value <= MAX_TARGET_MINUTES:
        raise ValidationError(f"{label} must be between 1 and {MAX_TARGET_MINUTES:,} minutes (got {value}).")
    return value


def _validate_policy(session: Session, fields: dict[str, Any], policy_id: int | None) -> dict[str, Any]:
    name = (fields.get("name") or "").strip() if isinstance(fields.get("name"), str | None) else None
    if not name:
        raise ValidationError("The policy needs a name.")
    if len(name) > 120:
        raise ValidationError("The policy name is at most 120 characters.")
    priority = fields.get("priority")
    if priority not in TICKET_PRIORITIES:
        raise ValidationError(f"Priority must be one of {', '.join(TICKET_PRIORITIES)} (got {priority!r}).")
    category = fields.get("category") or None
    if category is not None and category not in TICKET_CATEGORIES:
        raise ValidationError(f"Category must be one of {', '.join(TICKET_CATEGORIES)} or empty (got {category!r}).")
    tier = fields.get("loyalty_tier") or None
    if tier is not None and tier not in LOYALTY_TIERS:
        raise ValidationError(f"Loyalty tier must be one of {', '.join(LOYALTY_TIERS)} or empty (got {tier!r}).")
    first = _minutes(fields.get("first_response_minutes"), "First response target")
    nxt = _minutes(fields.get("next_response_minutes"), "Next response target", required=False)
    resolution = _minutes(fields.get("resolution_minutes"), "Resolution target")
    if resolution < first:
        raise ValidationError(
            f"The resolution target ({resolution} min) cannot be shorter than the first response target ({first} min)."
        )
    is_active = bool(fields.get("is_active", True))
    clash = select(ServiceLevelAgreement.name).where(func.lower(ServiceLevelAgreement.name) == name.lower())
    if policy_id is not None:
        clash = clash.where(ServiceLevelAgreement.id != policy_id)
    if session.scalar(clash):
        raise ValidationError(f"A policy named {name!r} already exists.")
    if is_active:
        same_scope = select(ServiceLevelAgreement.name).where(
            ServiceLevelAgreement.is_active.is_(True), ServiceLevelAgreement.priority == priority,
            ServiceLevelAgreement.category.is_(None) if category is None else ServiceLevelAgreement.category == category,
            ServiceLevelAgreement.loyalty_tier.is_(None) if tier is None else ServiceLevelAgreement.loyalty_tier == tier,
        )
        if policy_id is not None:
            same_scope = same_scope.where(ServiceLevelAgreement.id != policy_id)
        other = session.scalar(same_scope)
        if other:
            raise ValidationError(f"The active policy {other!r} already covers this priority, category and tier.")
    return {"name": name, "priority": priority, "category": category, "loyalty_tier": tier,
            "first_response_minutes": first, "next_response_minutes": nxt, "resolution_minutes": resolution,
            "is_active": is_active}


def create_sla_policy(session: Session, actor: Actor, now: dt.datetime | None = None, **fields) -> ServiceLevelAgreement:
    require(actor, "sla.manage")
    values = _validate_policy(session, fields, None)
    calendar, _ = get_business_calendar(session)
    policy = ServiceLevelAgreement(**values, calendar=calendar.to_dict(), created_at=utcnow())
    session.add(policy)
    session.flush()
    record_audit(session, actor, "sla.policy.create", "sla_policy", policy.id, after=values)
    rematch_open_tickets(session, now or utcnow(), {policy.priority})
    return policy


def update_sla_policy(session: Session, actor: Actor, policy_id: int, expected_version: int | None,
                  now: dt.datetime | None = None, **changes) -> ServiceLevelAgreement:
    """Change a policy's targets or scope; open tickets are re-matched and their due times recomputed."""
    require(actor, "sla.manage")
    policy = session.get(ServiceLevelAgreement, policy_id)
    if policy is None:
        raise NotFound(f"SLA policy {policy_id} does not exist.")
    check_version(policy, expected_version, f"SLA policy {policy.name}")
    before = policy_row(policy)
    values = _validate_policy(session, {**before, **changes}, policy.id)
    for key, value in values.items():
        setattr(policy, key, value)
    session.flush()
    record_audit(session, actor, "sla.policy.update", "sla_policy", policy.id, before=before, after=policy_row(policy))
    rematch_open_tickets(session, now or utcnow(), {before["priority"], policy.priority})
    return policy


def match_policy(session: Session, priority: str, category: str | None, customer_id: int | None
                 ) -> ServiceLevelAgreement | None:
    """The most specific active policy for a ticket (category and tier > category > tier > priority)."""
    tier = None
    if customer_id is not None:
        tier = session.scalar(select(LoyaltyAccount.tier).where(LoyaltyAccount.customer_id == customer_id))
    p = ServiceLevelAgreement
    specificity = case((p.category.is_not(None), 2), else_=0) + case((p.loyalty_tier.is_not(None), 1), else_=0)
    return session.scalar(
        select(p).where(
            p.is_active.is_(True), p.priority == priority,
            or_(p.category.is_(None), p.category == category),
            or_(p.loyalty_tier.is_(None), p.loyalty_tier == tier),
        ).order_by(specificity.desc(), p.id).limit(1)
    )


def policy_calendar(session: Session, policy: ServiceLevelAgreement) -> BusinessCalendar:
    if policy.calendar:
        return parse_calendar(policy.calendar)
    return get_business_calendar(session)[0]


# --------------------------------------------------------------------------- clocks (pure)


@dataclass(frozen=True)
class Clocks:
    first_response_due_at: dt.datetime | None
    next_response_due_at: dt.datetime | None
    resolution_due_at: dt.datetime | None


def pauses_from_history(changes: Iterable[tuple[dt.datetime, str | None]]
                        ) -> tuple[list[tuple[dt.datetime, dt.datetime | None]], dt.datetime | None]:
    """Paused intervals and the latest reopening, from (time, new status) pairs in time order."""
    pauses: list[tuple[dt.datetime, dt.datetime | None]] = []
    started: dt.datetime | None = None
    reopened_at = None
    for when, after in changes:
        if after in PAUSED_STATUSES and started is None:
            started = when
        elif after not in PAUSED_STATUSES and started is not None:
            pauses.append((started, when))
            started = None
        if after == "reopened":
            reopened_at = when
    if started is not None:
        pauses.append((started, None))
    return pauses, reopened_at


def due_with_pauses(calendar: BusinessCalendar, anchor: dt.datetime, minutes: int,
                    pauses: Sequence[tuple[dt.datetime, dt.datetime | None]], now: dt.datetime) -> dt.datetime:
    """Due time of a clock started at `anchor`, stopped during each pause that began before it fell due.

    An open pause counts until `now`: the due time shown is the one that applies if work resumes now.
    """
    due = add_business_minutes(calendar, anchor, minutes)
    for start, end in sorted(pauses, key=lambda p: p[0]):
        end = end or max(now, start)
        if end <= anchor:
            continue
        start = max(start, anchor)
        if start >= due:
            break
        remaining = business_minutes_between(calendar, start, due)
        due = add_business_minutes(calendar, end, remaining)
    return due


def compute_clocks(calendar: BusinessCalendar, targets: tuple[int, int | None, int], created_at: dt.datetime,
                   awaiting_reply_since: dt.datetime | None, reopened_at: dt.datetime | None,
                   pauses: Sequence[tuple[dt.datetime, dt.datetime | None]], now: dt.datetime) -> Clocks:
    first, nxt, resolution = targets
    return Clocks(
        first_response_due_at=due_with_pauses(calendar, created_at, first, pauses, now),
        next_response_due_at=(due_with_pauses(calendar, awaiting_reply_since, nxt, pauses, now)
                              if awaiting_reply_since is not None and nxt else None),
        resolution_due_at=due_with_pauses(calendar, reopened_at or created_at, resolution, pauses, now),
    )


def time_left_band(due: dt.datetime | None, now: dt.datetime, paused: bool = False) -> str:
    """Colour band of an SLA timer: overdue, under an hour, under four hours, on track, paused or none."""
    if paused:
        return "paused"
    if due is None:
        return "none"
    left = (due - now).total_seconds() / 60
    if left < 0:
        return "overdue"
    if left < 60:
        return "under 1h"
    if left < 240:
        return "under 4h"
    return "on track"


# --------------------------------------------------------------------------- per-ticket recomputation


def recompute_ticket(session: Session, ticket: SupportTicket, now: dt.datetime) -> Clocks | None:
    """Store the ticket's due times from its policy, status history and conversation."""
    policy = session.get(ServiceLevelAgreement, ticket.sla_id) if ticket.sla_id else None
    if policy is None:
        ticket.first_response_due_at = ticket.next_response_due_at = ticket.resolution_due_at = None
        return None
    # Queried without autoflush, plus what this unit of work has added but not flushed yet, so that a
    # change is flushed once (one version bump per change).
    pending_events = [o for o in session.new if isinstance(o, SupportTicketEvent) and o.ticket_id == ticket.id]
    pending_responses = [o for o in session.new if isinstance(o, SupportTicketResponse) and o.ticket_id == ticket.id]
    with session.no_autoflush:
        history = [] if ticket.id is None else session.execute(
            select(SupportTicketEvent.occurred_at, SupportTicketEvent.detail)
            .where(SupportTicketEvent.ticket_id == ticket.id, SupportTicketEvent.event == "status_changed")
        ).all()
        responses = [] if ticket.id is None else session.execute(
            select(SupportTicketResponse.created_at, SupportTicketResponse.author_kind,
                   SupportTicketResponse.is_internal).where(SupportTicketResponse.ticket_id == ticket.id)
        ).all()
    changes: list[tuple[dt.datetime, dict[str, Any] | None]] = sorted(
        [*((w, d) for w, d in history),
         *((e.occurred_at, e.detail) for e in pending_events if e.event == "status_changed")],
        key=lambda item: item[0])
    replies: list[tuple[dt.datetime, str, bool]] = [
        *((r[0], r[1], r[2]) for r in responses),
        *((r.created_at, r.author_kind, bool(r.is_internal)) for r in pending_responses)]
    pauses, reopened_at = pauses_from_history((when, (detail or {}).get("to")) for when, detail in changes)
    awaiting = None
    if ticket.first_responded_at is not None:
        # The customer's oldest message (or the reopening) since the latest external agent reply.
        agent_replies = [when for when, kind, internal in replies if kind == "agent" and not internal]
        last_agent = max([*agent_replies, ticket.first_responded_at])
        waiting = [when for when, kind, _ in replies if kind == "customer" and when > last_agent]
        awaiting = min(waiting) if waiting else None
        if reopened_at is not None and reopened_at > last_agent:
            awaiting = min(awaiting or reopened_at, reopened_at)
    clocks = compute_clocks(
        policy_calendar(session, policy),
        (policy.first_response_minutes, policy.next_response_minutes, policy.resolution_minutes),
        ticket.created_at, awaiting, reopened_at, pauses, now,
    )
    ticket.first_response_due_at = clocks.first_response_due_at
    ticket.next_response_due_at = clocks.next_response_due_at
    ticket.resolution_due_at = clocks.resolution_due_at
    ticket.sla_paused_since = pauses[-1][0] if pauses and pauses[-1][1] is None else None
    return clocks


def rematch_open_tickets(session: Session, now: dt.datetime, priorities: Iterable[str] = TICKET_PRIORITIES) -> int:
    """After a policy change: give the open tickets of the affected priorities their best policy and recompute
    their due times, in chunks."""
    last_id, changed = 0, 0
    while True:
        tickets = session.scalars(
            select(SupportTicket).where(SupportTicket.status.not_in(DONE_STATUSES), SupportTicket.id > last_id,
                                        SupportTicket.priority.in_(list(priorities)),
                                        SupportTicket.external_id.is_(None))  # imported: no SLA (imports.helpdesk)
            .order_by(SupportTicket.id).limit(RECOMPUTE_CHUNK)
        ).all()
        if not tickets:
            return changed
        for ticket in tickets:
            policy = match_policy(session, ticket.priority, ticket.category, ticket.customer_id)
            ticket.sla_id = policy.id if policy else None
            recompute_ticket(session, ticket, now)
            changed += 1
        session.flush()
        last_id = tickets[-1].id


# --------------------------------------------------------------------------- breaches and escalation

_TARGET_COLUMNS = {
    "first_response": (SupportTicket.first_response_due_at, SupportTicket.first_responded_at.is_(None)),
    "next_response": (SupportTicket.next_response_due_at, None),
    "resolution": (SupportTicket.resolution_due_at, SupportTicket.resolved_at.is_(None)),
}


def detect_breaches(session: Session, now: dt.datetime) -> dict[str, Any]:
    """Record every running target that is past due and not yet recorded; flag tickets; write history.

    Returns the counts per target and the ids of the newly breached tickets.
    """
    t, b = SupportTicket, SlaBreach
    before_id = session.scalar(select(func.coalesce(func.max(b.id), 0)))
    counts: dict[str, Any] = {}
    for target, (due, running) in _TARGET_COLUMNS.items():
        conditions = [t.status.in_(CLOCK_STATUSES), due.is_not(None), due < now]
        if running is not None:
            conditions.append(running)
        recorded = exists().where(b.ticket_id == t.id, b.target == target, b.due_at == due)
        source = select(t.id, literal(target, String()), due, literal(now, DateTime()), t.priority, t.category,
                        t.assignee_id).where(*conditions, ~recorded)
        session.execute(insert(b).from_select(
            ["ticket_id", "target", "due_at", "detected_at", "priority", "category", "assignee_id"], source))
    new = session.execute(select(b.ticket_id, b.target, b.due_at).where(b.id > before_id).order_by(b.id)).all()
    for target in _TARGET_COLUMNS:
        counts[target] = sum(1 for row in new if row.target == target)
    if new:
        session.execute(insert(SupportTicketEvent), [
            {"ticket_id": ticket_id, "event": "sla_breached", "actor_id": None, "occurred_at": now,
             "detail": {"target": target, "due_at": due_at.isoformat()}}
            for ticket_id, target, due_at in new
        ])
        # A system flag, not an edit: the version a person is editing against stays.
        session.execute(update(t).where(t.id.in_(select(b.ticket_id).where(b.id > before_id)))
                        .values(sla_breached=True).execution_options(synchronize_session=False))
    counts["tickets"] = sorted({row.ticket_id for row in new})
    return counts


_RAISE = dict(zip(TICKET_PRIORITIES, [*TICKET_PRIORITIES[1:], TICKET_PRIORITIES[-1]], strict=True))


def escalate(session: Session, ticket_ids: Sequence[int], now: dt.datetime) -> int:
    """First escalation of each ticket: priority one level up, an 'escalated' event, the owner notified."""
    if not ticket_ids:
        return 0
    t = SupportTicket
    escalated_before = exists().where(SupportTicketEvent.ticket_id == t.id, SupportTicketEvent.event == "escalated")
    rows = session.execute(
        select(t.id, t.ticket_number, t.priority, t.assignee_id, t.subject)
        .where(t.id.in_(list(ticket_ids)), t.status.in_(CLOCK_STATUSES), ~escalated_before)
    ).all()
    if not rows:
        return 0
    ids = [r.id for r in rows]
    session.execute(
        update(t).where(t.id.in_(ids))
        .values(priority=case(_RAISE, value=t.priority), version=t.version + 1, updated_at=now)
        .execution_options(synchronize_session=False)
    )
    session.execute(insert(SupportTicketEvent), [
        {"ticket_id": r.id, "event": "escalated", "actor_id": None, "occurred_at": now,
         "detail": {"from_priority": r.priority, "to_priority": _RAISE[r.priority], "reason": "SLA breached"}}
        for r in rows
    ])
    session.execute(insert(StaffNotification), [
        {"user_id": r.assignee_id, "kind": "ticket_escalated", "ticket_id": r.id, "created_at": now,
         "message": f"{r.ticket_number} breached its SLA and was escalated to {_RAISE[r.priority]}: {r.subject}"[:500]}
        for r in rows
    ])
    session.execute(insert(AuditLog), [
        {"occurred_at": now, "actor_id": None, "actor_username": SYSTEM.username, "action": "ticket.escalate",
         "entity_type": "support_ticket", "entity_id": str(r.id),
         "before": {"priority": r.priority}, "after": {"priority": _RAISE[r.priority]}}
        for r in rows
    ])
    session.expire_all()
    return len(rows)


def _check(session: Session, now: dt.datetime) -> dict[str, int]:
    found = detect_breaches(session, now)
    escalated = escalate(session, found["tickets"], now)
    return {
        "first_response": found["first_response"], "next_response": found["next_response"],
        "resolution": found["resolution"], "tickets_breached": len(found["tickets"]), "escalated": escalated,
    }


def run_sla_checks(engine: Engine, now: dt.datetime | None = None, *, actor: Actor = SYSTEM) -> dict[str, int]:
    """Batch step: record breaches and escalate newly breached tickets, in one transaction. `actor`
    (the batch's system actor by default) must be allowed to manage SLAs."""
    require(actor, "sla.manage")
    with unit_of_work(engine) as session:
        return _check(session, now or utcnow())


def check_sla_now(session: Session, actor: Actor, now: dt.datetime | None = None) -> dict[str, int]:
    """The same check, started by an admin from the SLA page."""
    require(actor, "sla.manage")
    result = _check(session, now or utcnow())
    record_audit(session, actor, "sla.check", "sla", None, after=result)
    return result


def notifications_for(session: Session, viewer: Actor, unread_only: bool = True, limit: int = 20) -> list[dict[str, Any]]:
    require(viewer, "tickets.view")
    n = StaffNotification
    query = select(n.id, n.kind, n.ticket_id, n.message, n.created_at, n.read_at).where(
        or_(n.user_id == viewer.id, n.user_id.is_(None)))
    if unread_only:
        query = query.where(n.read_at.is_(None))
    return [dict(r._mapping) for r in session.execute(query.order_by(n.created_at.desc(), n.id.desc()).limit(limit))]


def mark_notifications_read(session: Session, actor: Actor, now: dt.datetime | None = None) -> int:
    """Mark the actor's own unread notifications read (team-wide ones stay for the others)."""
    require(actor, "tickets.view")
    n = StaffNotification
    result = session.execute(update(n).where(n.user_id == actor.id, n.read_at.is_(None))
                             .values(read_at=now or utcnow()).execution_options(synchronize_session=False))
    if rows_affected(result):
        record_audit(session, actor, "notifications.read", "staff_notification", None,
                     after={"count": rows_affected(result)})
    return rows_affected(result) or 0


# --------------------------------------------------------------------------- reports


def _soon(now: dt.datetime, within_minutes: int):
    due = next_due_expression().label("next_due_at")
    inner = select(SupportTicket.id, due).where(SupportTicket.status.in_(CLOCK_STATUSES)).subquery()
    window = and_(inner.c.next_due_at.is_not(None), inner.c.next_due_at >= now,
                  inner.c.next_due_at < now + dt.timedelta(minutes=within_minutes))
    return inner, window


def breaching_soon(session: Session, viewer: Actor, now: dt.datetime, within_minutes: int = 120,
                   page: int = 1, page_size: int = 25) -> Page:
    """Open tickets whose next running due time falls within the window (earliest first)."""
    require(viewer, "tickets.view")
    if isinstance(within_minutes, bool) or not isinstance(within_minutes, int) or not 1 <= within_minutes <= 10_080:
        raise ValidationError("The 'breaching soon' window must be between 1 and 10,080 minutes.")
    inner, window = _soon(now, within_minutes)
    total = session.scalar(select(func.count()).select_from(inner).where(window)) or 0
    t = SupportTicket
    rows = session.execute(
        select(t.id, t.ticket_number, t.subject, t.priority, t.status, t.category, User.username.label("assignee"),
               inner.c.next_due_at)
        .join(inner, inner.c.id == t.id).outerjoin(User, User.id == t.assignee_id)
        .where(window).order_by(inner.c.next_due_at, t.id)
        .limit(page_size).offset((max(page, 1) - 1) * page_size)
    ).all()
    out = []
    for r in rows:
        row = dict(r._mapping)
        row["minutes_left"] = round((r.next_due_at - now).total_seconds() / 60)
        out.append(row)
    return Page(rows=out, total=total, page=max(page, 1), page_size=page_size)


def _group_column(by: str):
    if by not in GROUPINGS:
        raise ValidationError(f"Group by one of {', '.join(GROUPINGS)} (got {by!r}).")
    if by == "agent":
        return func.coalesce(User.username, "(unassigned)")
    return getattr(SupportTicket, by)


def _window(start: dt.datetime | None, end: dt.datetime | None) -> list:
    conditions = []
    if start is not None:
        conditions.append(SupportTicket.created_at >= start)
    if end is not None:
        conditions.append(SupportTicket.created_at < end)
    return conditions


def _met_columns(now: dt.datetime):
    t = SupportTicket
    fr_measured = t.first_response_due_at.is_not(None) & (t.first_responded_at.is_not(None)
                                                          | (t.first_response_due_at < now))
    fr_met = fr_measured & t.first_responded_at.is_not(None) & (t.first_responded_at <= t.first_response_due_at)
    res_measured = t.resolution_due_at.is_not(None) & (t.resolved_at.is_not(None) | (t.resolution_due_at < now))
    res_met = res_measured & t.resolved_at.is_not(None) & (t.resolved_at <= t.resolution_due_at)
    one = lambda cond: func.sum(case((cond, 1), else_=0))  # noqa: E731
    return one(fr_measured), one(fr_met), one(res_measured), one(res_met)


def _met_row(key: Any, fr_n, fr_met, res_n, res_met) -> dict[str, Any]:
    fr_n, fr_met, res_n, res_met = (int(v or 0) for v in (fr_n, fr_met, res_n, res_met))
    targets, met = fr_n + res_n, fr_met + res_met
    return {
        "key": key, "targets": targets, "met": met, "pct_met": round(100 * met / targets, 1) if targets else None,
        "first_response_pct": round(100 * fr_met / fr_n, 1) if fr_n else None,
        "resolution_pct": round(100 * res_met / res_n, 1) if res_n else None,
    }


def sla_targets_met(session: Session, viewer: Actor, now: dt.datetime, by: str | None = None,
                start: dt.datetime | None = None, end: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Share of first-response and resolution targets met (a target counts once reached or past due)."""
    require(viewer, "sla.view")
    columns = _met_columns(now)
    query = select(*columns).select_from(SupportTicket).where(*_window(start, end))
    if by is None:
        row = session.execute(query).one()
        return [_met_row("all", *row)]
    key = _group_column(by).label("key")
    query = select(key, *columns).select_from(SupportTicket).where(*_window(start, end))
    if by == "agent":
        query = query.outerjoin(User, User.id == SupportTicket.assignee_id)
    rows = session.execute(query.group_by(key).order_by(key)).all()
    return [_met_row(r[0], *r[1:]) for r in rows]


def sla_weekly_trend(session: Session, viewer: Actor, now: dt.datetime, weeks: int = 12) -> list[dict[str, Any]]:
    """Per week of ticket creation: % of targets met, tickets and breached tickets."""
    require(viewer, "sla.view")
    if isinstance(weeks, bool) or not isinstance(weeks, int) or not 1 <= weeks <= 156:
        raise ValidationError("Weeks must be between 1 and 156.")
    start = now - dt.timedelta(weeks=weeks)
    week = week_start(SupportTicket.created_at).label("week")
    rows = session.execute(
        select(week, func.count(), func.sum(case((SupportTicket.sla_breached.is_(True), 1), else_=0)),
               *_met_columns(now))
        .where(SupportTicket.created_at >= start).group_by(week).order_by(week)
    ).all()
    out = []
    for r in rows:
        row = _met_row(r[0], *r[3:])
        row.update(week=row.pop("key"), tickets=int(r[1]), breached=int(r[2] or 0))
        out.append(row)
    return out


def sla_breaches_by(session: Session, viewer: Actor, by: str, start: dt.datetime | None = None,
                end: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Tickets with a breached SLA and their share, by priority, category or agent."""
    require(viewer, "sla.view")
    key = _group_column(by).label("key")
    breached = func.sum(case((SupportTicket.sla_breached.is_(True), 1), else_=0))
    query = select(key, func.count(), breached).select_from(SupportTicket).where(*_window(start, end))
    if by == "agent":
        query = query.outerjoin(User, User.id == SupportTicket.assignee_id)
    rows = session.execute(query.group_by(key).order_by(key)).all()
    return [{by: r[0], "tickets": int(r[1]), "breached": int(r[2] or 0),
             "breached_pct": round(100 * int(r[2] or 0) / int(r[1]), 1) if r[1] else None} for r in rows]


def sla_summary(session: Session, viewer: Actor, now: dt.datetime, start: dt.datetime | None = None) -> dict[str, Any]:
    """Headline figures for the SLA page."""
    require(viewer, "sla.view")
    met = sla_targets_met(session, viewer, now, start=start)[0]
    t = SupportTicket
    open_breached = session.scalar(select(func.count()).where(t.status.not_in(DONE_STATUSES),
                                                              t.sla_breached.is_(True))) or 0
    recorded = session.scalar(select(func.count()).select_from(SlaBreach).where(
        SlaBreach.detected_at >= (start or dt.datetime(1970, 1, 1)))) or 0
    inner, window = _soon(now, 120)
    soon = session.scalar(select(func.count()).select_from(inner).where(window)) or 0
    return {"pct_met": met["pct_met"], "targets": met["targets"], "open_breached": open_breached,
            "breaches_recorded": recorded, "breaching_soon": soon}
