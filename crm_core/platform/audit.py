"""Audit trail: one row per change, written in the same transaction as the change."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.dates import midnight
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from db.models import AuditLog, utcnow


def jsonable(value: Any, decimal: Callable[[Decimal], Any] = str) -> Any:
    """`value` with dates as ISO text and decimals through `decimal` (text by default, exact), nested
    in dicts and lists: what audit rows, webhook payloads and the JSON of commands store or print."""
    if isinstance(value, dict):
        return {k: jsonable(v, decimal) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v, decimal) for v in value]
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return decimal(value)
    return value


def record_audit(
    session: Session,
    actor: Actor,
    action: str,
    entity_type: str,
    entity_id: Any,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> AuditLog:
    entry = AuditLog(
        occurred_at=utcnow(),
        actor_id=actor.id,
        actor_username=actor.username,
        action=action,
        entity_type=entity_type,
        entity_id=None if entity_id is None else str(entity_id),
        before=jsonable(before),
        after=jsonable(after),
    )
    session.add(entry)
    return entry


@dataclass(frozen=True)
class AuditFilter:
    actor: str | None = None
    entity_type: str | None = None
    action: str | None = None
    date_from: dt.date | None = None
    date_to: dt.date | None = None


def search_audit_log(
    session: Session, viewer: Actor, filters: AuditFilter, page: int = 1, page_size: int = 50
) -> Page:
    """Filtered, newest-first audit entries, one page at a time."""
    require(viewer, "audit.view")
    conditions = []
    if filters.actor:
        conditions.append(AuditLog.actor_username == filters.actor)
    if filters.entity_type:
        conditions.append(AuditLog.entity_type == filters.entity_type)
    if filters.action:
        conditions.append(AuditLog.action == filters.action)
    if filters.date_from:
        conditions.append(AuditLog.occurred_at >= midnight(filters.date_from))
    if filters.date_to:
        end = midnight(filters.date_to + dt.timedelta(days=1))
        conditions.append(AuditLog.occurred_at < end)
    total = session.scalar(select(func.count()).select_from(AuditLog).where(*conditions)) or 0
    page = max(1, page)
    entries = session.scalars(
        select(AuditLog)
        .where(*conditions)
        .order_by(AuditLog.occurred_at.desc(), AuditLog.id.desc())
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    rows = [
        {
            "time": e.occurred_at,
            "actor": e.actor_username,
            "action": e.action,
            "entity": e.entity_type,
            "entity_id": e.entity_id,
            "before": e.before,
            "after": e.after,
        }
        for e in entries
    ]
    return Page(rows=rows, total=total, page=page, page_size=page_size)


def audit_filter_options(session: Session, viewer: Actor) -> dict[str, list[str]]:
    """Distinct actors, entity types and actions, for the filter pickers."""
    require(viewer, "audit.view")
    return {
        "actor": list(session.scalars(select(AuditLog.actor_username).distinct().order_by(AuditLog.actor_username))),
        "entity_type": list(session.scalars(select(AuditLog.entity_type).distinct().order_by(AuditLog.entity_type))),
        "action": list(session.scalars(select(AuditLog.action).distinct().order_by(AuditLog.action))),
    }
