"""Playbook templates, one per trigger: the steps a CTA starts with, its priority, days to its due date,
and the share of triggered accounts held out (no CTA) to measure the playbook against. Admins edit
them; the defaults below are created the first time they are needed.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from crm_core.success.triggers import MANUAL_TRIGGER, TRIGGER_LABELS
from db.models import CTA_PRIORITIES, SuccessPlaybook, utcnow

MAX_STEPS = 12
MAX_STEP_LENGTH = 200
MAX_NAME = 120
MAX_DESCRIPTION = 2000
MAX_HOLDOUT_SHARE = 0.5
DEFAULT_HOLDOUT_SHARE = 0.1

DEFAULT_PLAYBOOKS: dict[str, dict[str, Any]] = {
    "churn_high": {
        "name": "Churn save", "priority": "high", "due_days": 7, "holdout_share": DEFAULT_HOLDOUT_SHARE,
        "description": "The churn model puts the customer at high risk: find out why and give a reason to come back.",
        "steps": ["Read the churn drivers and the last orders", "Call or e-mail the customer personally",
                  "Offer the intervention the drivers suggest", "Log the outcome"],
    },
    "health_drop": {
        "name": "Health recovery", "priority": "medium", "due_days": 10, "holdout_share": DEFAULT_HOLDOUT_SHARE,
        "description": "Account health fell fast: check the weakest component and fix what caused the fall.",
        "steps": ["Check which component fell", "Fix the cause (ticket, complaint, payment, engagement)",
                  "Check in with the customer", "Log the outcome"],
    },
    "detractor_nps": {
        "name": "Detractor follow-up", "priority": "high", "due_days": 3, "holdout_share": DEFAULT_HOLDOUT_SHARE,
        "description": "A detractor answer: close the loop within three days.",
        "steps": ["Read the answer and the follow-up ticket", "Call the customer",
                  "Agree and log a fix", "Send a thank-you note"],
    },
    "service_high_value": {
        "name": "High-value service recovery", "priority": "urgent", "due_days": 2, "holdout_share": 0.0,
        "description": "A high-value customer waits on a complaint or a late ticket: own it until it is fixed.",
        "steps": ["Review the open complaint and late tickets", "Call the customer and apologise",
                  "Get the issue resolved with support", "Confirm the fix with the customer"],
    },
    "payment_renewal": {
        "name": "Payment update before the next order", "priority": "medium", "due_days": 7,
        "holdout_share": DEFAULT_HOLDOUT_SHARE,
        "description": "Every card has expired and a repeat order is due: ask for a new payment method first.",
        "steps": ["Send the payment-update request", "Follow up by phone if not updated in three days",
                  "Log the outcome"],
    },
    "risk_restriction": {
        "name": "Risk review", "priority": "high", "due_days": 3, "holdout_share": 0.0,
        "description": "The account is restricted by risk: coordinate with risk before any incentive.",
        "steps": ["Read the risk assessment", "Agree the next step with the risk team", "Log the outcome"],
    },
    MANUAL_TRIGGER: {
        "name": "Account review", "priority": "medium", "due_days": 7, "holdout_share": 0.0,
        "description": "Opened by hand from the Churn, Health or Customer 360 page.",
        "steps": ["Review the account", "Contact the customer", "Log the outcome"],
    },
}


def ensure_playbooks(session: Session) -> dict[str, SuccessPlaybook]:
    """Every trigger's playbook, creating the default of any that is missing; by trigger."""
    found = {p.trigger: p for p in session.scalars(select(SuccessPlaybook))}
    for trigger, template in DEFAULT_PLAYBOOKS.items():
        if trigger not in found:
            playbook = SuccessPlaybook(trigger=trigger, name=template["name"], description=template["description"],
                                       steps=list(template["steps"]), priority=template["priority"],
                                       due_days=template["due_days"], holdout_share=template["holdout_share"],
                                       is_active=True, updated_at=utcnow())
            session.add(playbook)
            found[trigger] = playbook
    session.flush()
    return found


def _playbook_row(p: SuccessPlaybook) -> dict[str, Any]:
    return {"id": p.id, "trigger": p.trigger, "trigger_label": TRIGGER_LABELS.get(p.trigger, p.trigger),
            "name": p.name, "description": p.description, "steps": list(p.steps), "priority": p.priority,
            "due_days": p.due_days, "holdout_share": p.holdout_share, "is_active": p.is_active, "version": p.version}


def list_playbooks(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    require(viewer, "success.view")
    playbooks = ensure_playbooks(session)
    order = list(DEFAULT_PLAYBOOKS)
    return [_playbook_row(p) for p in sorted(playbooks.values(),
                                             key=lambda p: order.index(p.trigger) if p.trigger in order else 99)]


def _steps(value: Any) -> list[str]:
    if isinstance(value, str):
        value = value.splitlines()
    if not isinstance(value, list | tuple):
        raise ValidationError("Steps are a list of lines.")
    steps = [str(s).strip() for s in value if str(s).strip()]
    if not steps:
        raise ValidationError("A playbook needs at least one step.")
    if len(steps) > MAX_STEPS:
        raise ValidationError(f"A playbook has at most {MAX_STEPS} steps (got {len(steps)}).")
    for step in steps:
        if len(step) > MAX_STEP_LENGTH:
            raise ValidationError(f"A step is at most {MAX_STEP_LENGTH} characters: {step[:40]}…")
    return steps


def save_playbook(session: Session, actor: Actor, trigger: str, *, name: Any, description: Any, steps: Any,
                  priority: Any, due_days: Any, holdout_share: Any, is_active: Any,
                  expected_version: int | None) -> dict[str, Any]:
    """An admin edits a trigger's template; CTAs opened later use it (open ones keep their steps)."""
    require(actor, "success.playbooks")
    playbook = ensure_playbooks(session).get(trigger)
    if playbook is None:
        raise NotFound(f"There is no playbook for the trigger {trigger!r}.")
    check_version(playbook, expected_version, f"The playbook '{playbook.name}'")
    name = str(name or "").strip()
    if not name:
        raise ValidationError("Give the playbook a name.")
    if len(name) > MAX_NAME:
        raise ValidationError(f"A playbook name is at most {MAX_NAME} characters.")
    description = str(description or "").strip()
    if len(description) > MAX_DESCRIPTION:
        raise ValidationError(f"A description is at most {MAX_DESCRIPTION} characters.")
    if priority not in CTA_PRIORITIES:
        raise ValidationError(f"Priority must be one of {', '.join(CTA_PRIORITIES)} (got {priority!r}).")
    if isinstance(due_days, bool) or not isinstance(due_days, int) or not 0 <= due_days <= 365:
        raise ValidationError(f"Days to the due date must be a whole number from 0 to 365 (got {due_days!r}).")
    if isinstance(holdout_share, bool) or not isinstance(holdout_share, int | float) or not math.isfinite(holdout_share) \
            or not 0 <= holdout_share <= MAX_HOLDOUT_SHARE:
        raise ValidationError(f"The holdout share must be between 0 and {MAX_HOLDOUT_SHARE:g} (got {holdout_share!r}).")
    if trigger == MANUAL_TRIGGER and holdout_share:
        raise ValidationError("CTAs opened by hand are never held out: keep the holdout share at 0.")
    before = _playbook_row(playbook)
    playbook.name, playbook.description, playbook.steps = name, description, _steps(steps)
    playbook.priority, playbook.due_days = priority, due_days
    playbook.holdout_share, playbook.is_active = round(float(holdout_share), 4), bool(is_active)
    playbook.updated_at, playbook.updated_by_id = utcnow(), actor.id
    session.flush()
    after = _playbook_row(playbook)
    record_audit(session, actor, "success.playbook.save", "success_playbook", playbook.id, before=before, after=after)
    return after
