"""The CTA rules as a batch step: open CTAs where a rule fires, hold out a random share of them as
the comparison group, close CTAs whose trigger cleared, and wake snoozed CTAs whose date came.

Rules open CTAs (and hold out) for live accounts only, as health scoring defines them
(`segmentation.account_relationships`): a customer already churned or who never bought is not an
account to save. An open CTA whose trigger is no longer active closes as "trigger_cleared", unless
the account has churned meanwhile (it then drops out of what the rules read, health scores
first): that CTA closes as "churned", with a note saying so.

One open CTA per customer and trigger (a partial unique index holds it too). A rule does not open a
CTA again within COOLDOWN_DAYS of one a person closed for the same trigger: closing says the
episode was handled. Writes are bulk (executemany): CTAs, their "created" events, holdouts; one
audit row sums the run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any

from sqlalchemy import Engine, exists, insert, select, update
from sqlalchemy.orm import Session

from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import check_as_of
from crm_core.platform.permissions import require
from crm_core.platform.transactions import unit_of_work
from crm_core.segmentation.lifecycle import account_relationships, churned_after_days
from crm_core.success.ctas import PRIORITY_RANK, plain
from crm_core.success.playbooks import ensure_playbooks
from crm_core.success.queues import store_books
from crm_core.success.triggers import RULES, Firing, TriggerRule
from db.models import CTA_PRIORITIES, Customer, SuccessCta, SuccessCtaEvent, SuccessHoldout, utcnow

COOLDOWN_DAYS = 60
AUTO_CLOSED = "auto_closed"  # the event of a CTA the rules closed
CHUNK = 1000


def held_out(customer_id: int, trigger: str, fired_on: dt.date, share: float) -> bool:
    """The randomised draw: a stable hash of customer, trigger and date, below `share` of its range."""
    if share <= 0:
        return False
    digest = hashlib.sha256(f"{customer_id}:{trigger}:{fired_on.isoformat()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < share


def _chunks(ids: list[int]):
    for start in range(0, len(ids), CHUNK):
        yield ids[start:start + CHUNK]


def _raised(priority: str, steps: int) -> str:
    return CTA_PRIORITIES[min(len(CTA_PRIORITIES) - 1, PRIORITY_RANK[priority] + steps)]


def _closed_by_the_rules(cta_id) -> Any:
    """The CTA was closed by the rules, not by a person (only a person's close starts the cooldown)."""
    e = SuccessCtaEvent
    return exists(select(e.id).where(e.cta_id == cta_id, e.kind == AUTO_CLOSED))


def _run_rule(session: Session, rule: TriggerRule, as_of: dt.date, now: dt.datetime, playbooks: dict,
              actor: Actor) -> dict[str, Any]:
    connection = session.connection()
    playbook = playbooks[rule.key]
    active: dict[int, Firing] = rule.active(connection, as_of)
    c = SuccessCta
    open_ctas = {cid: (cta_id, version) for cta_id, cid, version in connection.execute(
        select(c.id, c.customer_id, c.version).where(c.trigger == rule.key, c.status != "closed"))}
    h = SuccessHoldout
    open_holdouts = dict(connection.execute(select(h.customer_id, h.id).where(h.trigger == rule.key,
                                                                               h.cleared_on.is_(None))).all())
    cooled = set(connection.execute(
        select(c.customer_id).where(c.trigger == rule.key, c.status == "closed", c.outcome != "trigger_cleared",
                                    c.closed_on > as_of - dt.timedelta(days=COOLDOWN_DAYS), ~_closed_by_the_rules(c.id))
    ).scalars())
    candidates = sorted(cid for cid, firing in active.items()
                        if firing.fresh and cid not in open_ctas and cid not in open_holdouts and cid not in cooled)
    cleared_customers = sorted(cid for cid in open_ctas if cid not in active)
    relationship = account_relationships(session, as_of, cleared_customers + candidates)

    # Close the CTAs whose trigger cleared: as churned when the account churned meanwhile.
    churned_note = (f"The account churned (no order for more than {churned_after_days(session)} days), so the "
                    "rules closed this call to action.")
    cleared = {outcome: [open_ctas[cid][0] for cid in cleared_customers
                         if (relationship[cid] == "churned") == (outcome == "churned")]
               for outcome in ("churned", "trigger_cleared")}
    for outcome, ids in cleared.items():
        note = churned_note if outcome == "churned" else None
        for chunk in _chunks(ids):
            connection.execute(update(c).where(c.id.in_(chunk), c.status != "closed").values(
                status="closed", outcome=outcome, outcome_note=note, closed_at=now, closed_on=as_of,
                snoozed_until=None, updated_at=now, version=c.version + 1))
        if ids:
            after = {"status": "closed", "outcome": outcome} | ({"note": note} if note else {})
            connection.execute(insert(SuccessCtaEvent), [
                {"cta_id": cta_id, "occurred_at": now, "actor_id": actor.id, "actor_username": actor.username,
                 "kind": AUTO_CLOSED, "before": None, "after": after} for cta_id in ids])
    cleared_holdouts = [hid for cid, hid in open_holdouts.items() if cid not in active]
    for chunk in _chunks(cleared_holdouts):
        connection.execute(update(h).where(h.id.in_(chunk)).values(cleared_on=as_of))

    # Open CTAs (or hold out) where the rule fires afresh, for live accounts.
    fresh = [cid for cid in candidates if relationship[cid] == "live"]
    opened = holdouts = 0
    if fresh and playbook.is_active:
        owners: dict[int, int | None] = {}
        for chunk in _chunks(fresh):
            owners.update(connection.execute(select(Customer.id, Customer.account_manager_id)
                                             .where(Customer.id.in_(chunk))).all())
        held = [cid for cid in fresh if held_out(cid, rule.key, as_of, playbook.holdout_share)]
        held_set = set(held)
        if held:
            connection.execute(insert(h), [
                {"customer_id": cid, "trigger": rule.key, "playbook_id": playbook.id, "fired_on": as_of,
                 "signals": plain({"reason": active[cid].reason, **active[cid].signals})} for cid in held])
        steps = [{"title": s, "done_at": None, "done_by": None} for s in playbook.steps]
        rows = [
            {"customer_id": cid, "trigger": rule.key, "source": "rule", "playbook_id": playbook.id,
             "title": playbook.name, "reason": active[cid].reason, "signals": plain(active[cid].signals),
             "steps": steps, "priority": _raised(playbook.priority, 1 if active[cid].high_value else 0),
             "status": "open", "owner_id": owners.get(cid), "due_on": as_of + dt.timedelta(days=playbook.due_days),
             "opened_on": as_of, "opened_at": now, "created_by_id": actor.id, "updated_at": now, "version": 1}
            for cid in fresh if cid not in held_set
        ]
        if rows:
            created = connection.execute(insert(c).returning(c.id, c.priority, c.owner_id), rows).all()
            connection.execute(insert(SuccessCtaEvent), [
                {"cta_id": cta_id, "occurred_at": now, "actor_id": actor.id, "actor_username": actor.username,
                 "kind": "created", "before": None,
                 "after": {"status": "open", "priority": priority, "owner_id": owner_id, "trigger": rule.key}}
                for cta_id, priority, owner_id in created])
        opened, holdouts = len(rows), len(held)
    return {"active": len(active), "opened": opened, "held_out": holdouts,
            "auto_closed": len(cleared["churned"]) + len(cleared["trigger_cleared"]),
            "closed_churned": len(cleared["churned"]), "not_live": len(candidates) - len(fresh),
            "holdouts_cleared": len(cleared_holdouts)}


def _wake_snoozed(session: Session, as_of: dt.date, now: dt.datetime, actor: Actor) -> int:
    c = SuccessCta
    due = session.execute(select(c.id).where(c.status == "snoozed", c.snoozed_until <= as_of)).scalars().all()
    for chunk in _chunks(list(due)):
        session.execute(update(c).where(c.id.in_(chunk)).values(status="open", snoozed_until=None, updated_at=now,
                                                                version=c.version + 1))
    if due:
        session.execute(insert(SuccessCtaEvent), [
            {"cta_id": cta_id, "occurred_at": now, "actor_id": actor.id, "actor_username": actor.username,
             "kind": "woke", "before": {"status": "snoozed"}, "after": {"status": "open"}} for cta_id in due])
    return len(due)


def run_success_rules(session: Session, as_of: dt.date, now: dt.datetime | None = None,
                      actor: Actor = SYSTEM, rules: tuple[TriggerRule, ...] = RULES) -> dict[str, Any]:
    """Run every rule as of a date. Returns per trigger: active, opened, held_out, auto_closed (or
    `skipped` with the reason when its source is missing), and `woke` (snoozed CTAs reopened)."""
    require(actor, "refresh.run")
    check_as_of(as_of)
    now = now or utcnow()
    playbooks = ensure_playbooks(session)
    results: dict[str, Any] = {}
    for rule in rules:
        missing = rule.missing_source(session.connection(), as_of)
        if missing is not None:
            results[rule.key] = {"skipped": missing}
            continue
        results[rule.key] = _run_rule(session, rule, as_of, now, playbooks, actor)
    woke = _wake_snoozed(session, as_of, now, actor)
    session.expire_all()  # bulk writes went around the identity map
    summary = {"as_of": as_of, "rules": results, "woke": woke}
    record_audit(session, actor, "success.rules", "success_cta", None, after=plain(summary))
    return summary


def refresh_success(engine: Engine, as_of: dt.date, now: dt.datetime | None = None,
                    actor: Actor = SYSTEM) -> dict[str, Any]:
    """The batch step: `run_success_rules` in its own unit of work, then the owners' books for the workbench."""
    require(actor, "refresh.run")
    with unit_of_work(engine) as session:
        summary = run_success_rules(session, as_of, now, actor=actor)
        store_books(session, as_of)
        return summary
