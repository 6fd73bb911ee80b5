"""Calls to action worked by hand: open one, change owner / priority / due date / status, snooze,
tick playbook steps, log notes, communications, tickets and complaints on it, close it with an outcome.

Every change checks the permission, refuses an edit made against an older version, writes a CTA
event (its history shows every change) and an audit row. A success manager works the CTAs they
own or that nobody owns; whoever has "success.assign" (admins) may change any CTA.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from crm_core.customers.rules import display_name, is_gone, shown_name
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import check_as_of
from crm_core.platform.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from crm_core.platform.permissions import allowed, require
from crm_core.platform.sql import rows_affected
from crm_core.platform.transactions import check_version
from crm_core.service.communications import log_communication
from crm_core.success.playbooks import ensure_playbooks
from crm_core.success.triggers import MANUAL_TRIGGER, TRIGGER_LABELS
from db.models import (
    CTA_OUTCOMES,
    CTA_PRIORITIES,
    AccountHealthScore,
    ChurnPrediction,
    Complaint,
    Customer,
    SuccessCta,
    SuccessCtaEvent,
    SuccessCtaLink,
    SupportTicket,
    User,
    utcnow,
)

OPEN_STATUSES = ("open", "in_progress", "snoozed")
WORK_STATUSES = ("open", "in_progress", "snoozed")  # what a person may set; closing takes an outcome
PERSON_OUTCOMES = tuple(o for o in CTA_OUTCOMES if o != "trigger_cleared")  # trigger_cleared is the rules' own
MAX_REASON = 2000
MAX_NOTE = 5000
MAX_DUE_DAYS = 365
MAX_SNOOZE_DAYS = 180
PRIORITY_RANK = {p: i for i, p in enumerate(CTA_PRIORITIES)}  # low 0 ... urgent 3
OPENED_FROM = ("churn", "health", "customer_360", "workbench")


def plain(value: Any) -> Any:
    """JSON-safe: dates as ISO text, containers walked."""
    if isinstance(value, dt.date | dt.datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


def _event(session: Session, cta: SuccessCta, actor: Actor, kind: str, before: dict[str, Any] | None,
           after: dict[str, Any] | None) -> None:
    session.add(SuccessCtaEvent(cta_id=cta.id, occurred_at=utcnow(), actor_id=actor.id,
                                actor_username=actor.username, kind=kind, before=plain(before),
                                after=plain(after)))
    record_audit(session, actor, f"success.cta.{kind}", "success_cta", cta.id, before=before, after=after)


def _acted(cta: SuccessCta, actor: Actor) -> None:
    """The first thing a person does on a CTA starts its 'time to first action' clock's end."""
    if actor.id is not None and cta.first_action_at is None:
        cta.first_action_at = utcnow()


def _start_work(cta: SuccessCta, before: dict[str, Any], after: dict[str, Any]) -> None:
    """Working an open CTA (a step ticked, something logged) puts it in progress; the event says so,
    so the history shows the status change too."""
    before["status"], after["status"] = cta.status, "in_progress"
    cta.status = "in_progress"


def _text(value: Any, what: str, limit: int, required: bool = True) -> str | None:
    text = str(value or "").strip()
    if not text:
        if required:
            raise ValidationError(f"{what} is required.")
        return None
    if len(text) > limit:
        raise ValidationError(f"{what} is at most {limit:,} characters (got {len(text):,}).")
    return text


def _whole(value: Any, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValidationError(f"{what} must be a positive whole number, not {value!r}.")
    return value


def _owner(session: Session, owner_id: Any) -> User | None:
    if owner_id is None:
        return None
    user = session.get(User, _whole(owner_id, "The owner"))
    if user is None or not user.is_active:
        raise ValidationError(f"There is no active staff user {owner_id} to own the CTA.")
    if not allowed(user.role, "success.work"):
        raise ValidationError(f"{user.username} ({user.role}) cannot work CTAs; choose a success manager or an admin.")
    return user


def _due(value: Any, today: dt.date, what: str = "The due date", limit: int = MAX_DUE_DAYS) -> dt.date:
    if not isinstance(value, dt.date) or isinstance(value, dt.datetime):
        raise ValidationError(f"{what} must be a date.")
    if value < today:
        raise ValidationError(f"{what} cannot be before today ({today.isoformat()}).")
    if value > today + dt.timedelta(days=limit):
        raise ValidationError(f"{what} is at most {limit} days ahead ({(today + dt.timedelta(days=limit)).isoformat()}).")
    return value


def customer_signals(session: Session, customer_id: int) -> dict[str, Any]:
    """The latest churn risk and health of a customer, kept with a CTA opened by hand."""
    signals: dict[str, Any] = {}
    churn = session.execute(
        select(ChurnPrediction.probability, ChurnPrediction.risk_level, ChurnPrediction.as_of)
        .where(ChurnPrediction.customer_id == customer_id).order_by(ChurnPrediction.as_of.desc()).limit(1)).first()
    if churn is not None:
        signals.update(churn_probability=round(float(churn.probability), 4), churn_risk=churn.risk_level)
    health = session.execute(
        select(AccountHealthScore.overall, AccountHealthScore.level, AccountHealthScore.trend)
        .where(AccountHealthScore.customer_id == customer_id).order_by(AccountHealthScore.as_of.desc()).limit(1)).first()
    if health is not None:
        signals.update(health=health.overall, health_level=health.level, health_trend=health.trend)
    return signals


def _snapshot(cta: SuccessCta) -> dict[str, Any]:
    return {"status": cta.status, "owner_id": cta.owner_id, "priority": cta.priority, "due_on": cta.due_on,
            "snoozed_until": cta.snoozed_until, "outcome": cta.outcome}


def open_cta(session: Session, actor: Actor, customer_id: Any, reason: Any, today: dt.date, *,
             priority: Any = None, due_on: Any = None, owner_id: Any = "account_owner",
             opened_from: str = "workbench") -> SuccessCta:
    """Open a CTA by hand. The owner defaults to the account owner (else whoever opens it), priority
    and due date to the manual playbook's; one CTA opened by hand may be open per customer."""
    require(actor, "success.work")
    check_as_of(today)
    customer = session.get(Customer, _whole(customer_id, "The customer id"))
    if customer is None or is_gone(customer.status):
        raise NotFound(f"There is no customer {customer_id}.")
    reason_text = _text(reason, "A reason", MAX_REASON)
    if opened_from not in OPENED_FROM:
        raise ValidationError(f"Opened from must be one of {', '.join(OPENED_FROM)}.")
    playbook = ensure_playbooks(session)[MANUAL_TRIGGER]
    priority = priority or playbook.priority
    if priority not in CTA_PRIORITIES:
        raise ValidationError(f"Priority must be one of {', '.join(CTA_PRIORITIES)} (got {priority!r}).")
    due = _due(due_on, today) if due_on is not None else today + dt.timedelta(days=playbook.due_days)
    if owner_id == "account_owner":
        owner_id = customer.account_manager_id or actor.id
    owner = _owner(session, owner_id)
    existing = session.scalar(select(SuccessCta.id).where(SuccessCta.customer_id == customer.id,
                                                          SuccessCta.trigger == MANUAL_TRIGGER,
                                                          SuccessCta.status != "closed"))
    if existing is not None:
        raise ValidationError(f"{display_name(customer.first_name, customer.last_name, customer.id)} already has an "
                              f"open CTA opened by hand (#{existing}); work or close that one first.")
    now = utcnow()
    cta = SuccessCta(customer_id=customer.id, trigger=MANUAL_TRIGGER, source="manual", playbook_id=playbook.id,
                     title=playbook.name, reason=reason_text,
                     signals={"opened_from": opened_from, **customer_signals(session, customer.id)},
                     steps=[{"title": s, "done_at": None, "done_by": None} for s in playbook.steps],
                     priority=priority, status="open", owner_id=owner.id if owner else None, due_on=due,
                     opened_on=today, opened_at=now, created_by_id=actor.id, updated_at=now)
    session.add(cta)
    session.flush()
    _event(session, cta, actor, "created", None, {**_snapshot(cta), "trigger": MANUAL_TRIGGER, "reason": reason_text,
                                                  "customer_id": customer.id})
    return cta


def _get(session: Session, cta_id: Any, expected_version: int | None) -> SuccessCta:
    cta = session.get(SuccessCta, _whole(cta_id, "The CTA id"))
    if cta is None:
        raise NotFound(f"There is no CTA {cta_id}.")
    check_version(cta, expected_version, f"CTA #{cta.id}")
    return cta


def _may_work(actor: Actor, cta: SuccessCta) -> None:
    require(actor, "success.work")
    if cta.owner_id not in (None, actor.id) and not allowed(actor.role, "success.assign"):
        raise PermissionDenied(f"CTA #{cta.id} belongs to someone else; ask them or a manager to reassign it.")


def update_cta(session: Session, actor: Actor, cta_id: Any, today: dt.date, *, expected_version: int | None,
               **changes: Any) -> SuccessCta:
    """Change owner_id, priority, due_on, status (open, in_progress, snoozed) and snoozed_until.

    Snoozing needs a date after today; a CTA closed stays closed. Only the fields given change."""
    check_as_of(today)
    cta = _get(session, cta_id, expected_version)
    _may_work(actor, cta)
    unknown = sorted(set(changes) - {"owner_id", "priority", "due_on", "status", "snoozed_until"})
    if unknown:
        raise ValidationError(f"Unknown field(s): {', '.join(unknown)}.")
    if cta.status == "closed":
        raise ValidationError(f"CTA #{cta.id} is closed ({cta.outcome}); open a new one instead.")
    before = _snapshot(cta)
    if "owner_id" in changes and changes["owner_id"] != cta.owner_id:
        owner = _owner(session, changes["owner_id"])
        if not allowed(actor.role, "success.assign") and owner is not None and owner.id != actor.id \
                and cta.owner_id not in (None, actor.id):
            raise PermissionDenied("Only a manager may reassign someone else's CTA.")
        cta.owner_id = owner.id if owner else None
    if "priority" in changes:
        if changes["priority"] not in CTA_PRIORITIES:
            raise ValidationError(f"Priority must be one of {', '.join(CTA_PRIORITIES)} (got {changes['priority']!r}).")
        cta.priority = changes["priority"]
    if "due_on" in changes and changes["due_on"] != cta.due_on:
        cta.due_on = _due(changes["due_on"], today)
    if "status" in changes:
        status = changes["status"]
        if status not in WORK_STATUSES:
            raise ValidationError(f"Status must be one of {', '.join(WORK_STATUSES)}; to close a CTA give its outcome.")
        if status == "snoozed":
            until = changes.get("snoozed_until")
            if until is None:
                raise ValidationError("Say until when to snooze the CTA.")
            until = _due(until, today, "The snooze date", MAX_SNOOZE_DAYS)
            if until <= today:
                raise ValidationError("Snooze until a day after today.")
            cta.snoozed_until = until
        else:
            cta.snoozed_until = None
        cta.status = status
    after = _snapshot(cta)
    changed = {k: v for k, v in after.items() if before[k] != v}
    if not changed:
        return cta
    if set(changed) - {"owner_id"}:
        _acted(cta, actor)
    cta.updated_at = utcnow()
    session.flush()
    kind = "reassigned" if set(changed) == {"owner_id"} else "snoozed" if changed.get("status") == "snoozed" else "changed"
    _event(session, cta, actor, kind, {k: before[k] for k in changed}, changed)
    return cta


def close_cta(session: Session, actor: Actor, cta_id: Any, outcome: Any, today: dt.date, note: Any = None, *,
              expected_version: int | None) -> SuccessCta:
    """Close with an outcome a person chose: saved, churned, unreachable or not needed."""
    check_as_of(today)
    cta = _get(session, cta_id, expected_version)
    _may_work(actor, cta)
    if cta.status == "closed":
        raise ValidationError(f"CTA #{cta.id} is already closed ({cta.outcome}).")
    if outcome not in PERSON_OUTCOMES:
        raise ValidationError(f"The outcome must be one of {', '.join(PERSON_OUTCOMES)} (got {outcome!r}).")
    before = _snapshot(cta)
    cta.status, cta.outcome = "closed", outcome
    cta.outcome_note = _text(note, "The note", MAX_NOTE, required=False)
    cta.closed_at, cta.closed_on, cta.snoozed_until = utcnow(), today, None
    _acted(cta, actor)
    cta.updated_at = utcnow()
    session.flush()
    _event(session, cta, actor, "closed", before, {**_snapshot(cta), "note": cta.outcome_note})
    return cta


def set_step(session: Session, actor: Actor, cta_id: Any, index: Any, done: bool, *,
             expected_version: int | None) -> SuccessCta:
    """Tick (or untick) playbook step `index` (0-based)."""
    cta = _get(session, cta_id, expected_version)
    _may_work(actor, cta)
    if cta.status == "closed":
        raise ValidationError(f"CTA #{cta.id} is closed; its steps can no longer change.")
    steps = [dict(s) for s in cta.steps]
    if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < len(steps):
        raise ValidationError(f"There is no step {index!r} on CTA #{cta.id}.")
    step = steps[index]
    before: dict[str, Any] = {"step": step["title"], "done": step["done_at"] is not None}
    after: dict[str, Any] = {"step": step["title"], "done": bool(done)}
    step["done_at"] = utcnow().isoformat(timespec="seconds") if done else None
    step["done_by"] = actor.username if done else None
    cta.steps = steps
    if cta.status == "open" and done:
        _start_work(cta, before, after)
    _acted(cta, actor)
    cta.updated_at = utcnow()
    session.flush()
    _event(session, cta, actor, "step", before, after)
    return cta


def log_on_cta(session: Session, actor: Actor, cta_id: Any, kind: str, *, note: Any = None, channel: Any = None,
               subject: Any = None, body: Any = None, ticket_id: Any = None, complaint_id: Any = None) -> SuccessCtaLink:
    """Log what was done while working the CTA: a note, a communication (logged on the customer's
    timeline too), or a link to one of the customer's tickets or complaints."""
    cta = _get(session, cta_id, None)
    _may_work(actor, cta)
    link = SuccessCtaLink(cta_id=cta.id, kind=kind, created_by_id=actor.id, created_at=utcnow())
    if kind == "note":
        link.note = _text(note, "The note", MAX_NOTE)
    elif kind == "communication":
        entry = log_communication(session, actor, cta.customer_id, channel or "", "outbound", subject, body)
        link.communication_id = entry.id
        link.note = entry.subject
    elif kind == "ticket":
        if ticket_id is None:
            raise ValidationError("Give the id of the customer's ticket to link.")
        ticket = session.get(SupportTicket, _whole(ticket_id, "The ticket id"))
        if ticket is None or ticket.customer_id != cta.customer_id:
            raise ValidationError(f"Ticket {ticket_id} is not one of this customer's tickets.")
        link.ticket_id, link.note = ticket.id, f"{ticket.ticket_number}: {ticket.subject}"
    elif kind == "complaint":
        if complaint_id is None:
            raise ValidationError("Give the id of the customer's complaint to link.")
        complaint = session.get(Complaint, _whole(complaint_id, "The complaint id"))
        if complaint is None or complaint.customer_id != cta.customer_id:
            raise ValidationError(f"Complaint {complaint_id} is not one of this customer's complaints.")
        link.complaint_id, link.note = complaint.id, f"Complaint #{complaint.id} ({complaint.category})"
    else:
        raise ValidationError("Log a note, a communication, a ticket or a complaint.")
    session.add(link)
    before: dict[str, Any] = {}
    after: dict[str, Any] = {"kind": kind, "note": link.note, "communication_id": link.communication_id,
                             "ticket_id": link.ticket_id, "complaint_id": link.complaint_id}
    if cta.status == "open":
        _start_work(cta, before, after)
    _acted(cta, actor)
    cta.updated_at = utcnow()
    session.flush()
    _event(session, cta, actor, "logged", before or None, after)
    return link


# --------------------------------------------------------------------------- reads


def _owner_named(change: dict[str, Any] | None, users: dict[int, str]) -> dict[str, Any] | None:
    """An event's before or after with the owner as a username ("owner": "csm1"), not a user id."""
    if not change or "owner_id" not in change:
        return change
    named = {k: v for k, v in change.items() if k != "owner_id"}
    owner_id = change["owner_id"]
    named["owner"] = users.get(owner_id, f"user {owner_id}") if owner_id is not None else "nobody"
    return named


def cta_detail(session: Session, viewer: Actor, cta_id: Any) -> dict[str, Any]:
    """One CTA with its customer, owner, steps, links and full history (oldest first)."""
    require(viewer, "success.view")
    cta = _get(session, cta_id, None)
    customer = session.get(Customer, cta.customer_id)
    owner = session.get(User, cta.owner_id) if cta.owner_id else None
    links = session.scalars(select(SuccessCtaLink).where(SuccessCtaLink.cta_id == cta.id)
                            .order_by(SuccessCtaLink.created_at, SuccessCtaLink.id)).all()
    users = {u.id: u.username for u in session.scalars(select(User))}
    events = session.scalars(select(SuccessCtaEvent).where(SuccessCtaEvent.cta_id == cta.id)
                             .order_by(SuccessCtaEvent.occurred_at, SuccessCtaEvent.id)).all()
    return {
        "id": cta.id, "customer_id": cta.customer_id, "version": cta.version,
        "customer": shown_name(viewer, customer.first_name, customer.last_name, customer.id) if customer else "",
        "trigger": cta.trigger, "trigger_label": TRIGGER_LABELS.get(cta.trigger, cta.trigger), "source": cta.source,
        "title": cta.title, "reason": cta.reason, "signals": dict(cta.signals or {}), "steps": list(cta.steps),
        "priority": cta.priority, "status": cta.status, "owner_id": cta.owner_id,
        "owner": owner.username if owner else None, "due_on": cta.due_on, "snoozed_until": cta.snoozed_until,
        "outcome": cta.outcome, "outcome_note": cta.outcome_note, "opened_on": cta.opened_on,
        "opened_at": cta.opened_at, "first_action_at": cta.first_action_at, "closed_on": cta.closed_on,
        "links": [{"kind": link.kind, "note": link.note, "communication_id": link.communication_id,
                   "ticket_id": link.ticket_id, "complaint_id": link.complaint_id, "at": link.created_at,
                   "by": users.get(link.created_by_id) if link.created_by_id else "system"} for link in links],
        "history": [{"at": e.occurred_at, "by": e.actor_username, "kind": e.kind,
                     "before": _owner_named(e.before, users), "after": _owner_named(e.after, users)} for e in events],
    }


def reassign_ctas(session: Session, actor: Actor, from_owner_id: int | None, to_owner_id: int | None,
                  trigger: str | None = None) -> int:
    """A manager moves every CTA not closed of one owner (None: the unassigned ones), optionally of one
    trigger, to another owner; each CTA gets a "reassigned" event, the move one audit row. Returns how many."""
    require(actor, "success.assign")
    target = _owner(session, to_owner_id)
    to_id = target.id if target else None
    if from_owner_id == to_id:
        raise ValidationError("Choose two different owners.")
    if trigger is not None and trigger not in TRIGGER_LABELS:
        raise ValidationError(f"Unknown trigger {trigger!r}.")
    query = select(SuccessCta).where(SuccessCta.status != "closed",
                                     SuccessCta.owner_id.is_(None) if from_owner_id is None
                                     else SuccessCta.owner_id == from_owner_id)
    if trigger is not None:
        query = query.where(SuccessCta.trigger == trigger)
    moved = list(session.scalars(query.with_for_update()))
    now = utcnow()
    for cta in moved:
        cta.owner_id, cta.updated_at = to_id, now
    session.flush()
    if moved:
        session.execute(insert(SuccessCtaEvent), [
            {"cta_id": cta.id, "occurred_at": now, "actor_id": actor.id, "actor_username": actor.username,
             "kind": "reassigned", "before": {"owner_id": from_owner_id}, "after": {"owner_id": to_id}}
            for cta in moved])
    record_audit(session, actor, "success.cta.reassign_all", "success_cta", None,
                 before={"owner_id": from_owner_id, "trigger": trigger},
                 after={"owner_id": to_id, "ctas": [cta.id for cta in moved]})
    return len(moved)


def erase_cta_texts(session: Session, customer_ids: list[int]) -> dict[str, int]:
    """For an erasure: blank what was written about the person while working their CTAs (link notes,
    the before / after of every CTA event); the CTAs' own text columns go with the customer's rows."""
    ctas = select(SuccessCta.id).where(SuccessCta.customer_id.in_(customer_ids))
    links = session.execute(update(SuccessCtaLink).where(SuccessCtaLink.cta_id.in_(ctas), SuccessCtaLink.note.is_not(None))
                            .values(note=None))
    events = session.execute(update(SuccessCtaEvent).where(SuccessCtaEvent.cta_id.in_(ctas))
                             .values(before=None, after=None))
    found = {SuccessCtaLink.__tablename__: rows_affected(links) or 0,
             SuccessCtaEvent.__tablename__: rows_affected(events) or 0}
    return {name: n for name, n in found.items() if n}


# --------------------------------------------------------------------------- customer merges

MERGED_AWAY_NOTE = ("Customer {other} was merged into customer {survivor}, whose call to action #{kept} for "
                    "this trigger carries on.")


def close_merged_duplicates(session: Session, actor: Actor, survivor_id: int, other_id: int,
                            now: dt.datetime) -> list[dict[str, Any]]:
    """Before a customer merge: close the merged customer's open CTAs whose trigger the survivor also
    has open as "not needed" (one open CTA per customer and trigger), each with a history event saying
    which CTA it was merged into. Returns what `reopen_merged_duplicates` needs to undo it."""
    c = SuccessCta
    kept = dict(session.execute(select(c.trigger, c.id).where(c.customer_id == survivor_id, c.status != "closed")).all())
    if not kept:
        return []
    closed = []
    for cta in session.scalars(select(c).where(c.customer_id == other_id, c.status != "closed",
                                               c.trigger.in_(sorted(kept))).order_by(c.id)):
        before = _snapshot(cta)
        note = MERGED_AWAY_NOTE.format(other=other_id, survivor=survivor_id, kept=kept[cta.trigger])
        cta.status, cta.outcome, cta.outcome_note = "closed", "not_needed", note
        cta.closed_at, cta.closed_on, cta.snoozed_until, cta.updated_at = now, now.date(), None, now
        session.flush()
        _event(session, cta, actor, "closed", before,
               {**_snapshot(cta), "note": note, "merged_into_cta": kept[cta.trigger]})
        closed.append({"id": cta.id, "status": before["status"], "snoozed_until": plain(before["snoozed_until"]),
                       "version": cta.version})
    return closed


def check_merged_duplicates(session: Session, closed: list[dict[str, Any]]) -> None:
    """Before undoing a merge: each CTA the merge closed is as the merge left it (else undo would lose an edit)."""
    for entry in closed:
        cta = session.get(SuccessCta, entry["id"])
        if cta is None or cta.version != entry["version"]:
            raise ConflictError(f"Call to action #{entry['id']}, which the merge closed as a duplicate, was "
                                "changed since, so the merge can no longer be undone exactly.")


def reopen_merged_duplicates(session: Session, actor: Actor, closed: list[dict[str, Any]], merge_id: int) -> None:
    """Undoing a merge: the CTAs it closed as duplicates are open again, as they were."""
    for entry in closed:
        cta = session.get(SuccessCta, entry["id"])
        if cta is None:
            continue
        before = _snapshot(cta)
        cta.status, cta.outcome, cta.outcome_note = entry["status"], None, None
        cta.snoozed_until = dt.date.fromisoformat(entry["snoozed_until"]) if entry["snoozed_until"] else None
        cta.closed_at = cta.closed_on = None
        cta.updated_at = utcnow()
        session.flush()
        _event(session, cta, actor, "reopened", before, {**_snapshot(cta), "note": f"Merge {merge_id} was undone."})
