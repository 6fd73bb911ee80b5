"""Admin-editable settings kept as data in `app_settings`, saved with an optimistic version check.

Every settings area (lifecycle rules, loyalty tiers, complaint limits, the business calendar, the
shop's country) validates its own value, then calls `save`: the edit is refused with a
ConflictError when someone else saved since the editor read the version, and every save writes
one audit row with the value before and after.
"""

from __future__ import annotations

import copy
from typing import Any

from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.transactions import version_conflict
from db.models import AppSetting, utcnow


def stored_setting(session: Session, key: str) -> tuple[dict[str, Any] | None, int]:
    """The stored value (None when never saved) and the version to send back when saving (0 = never saved)."""
    setting = session.get(AppSetting, key)
    if setting is None:
        return None, 0
    return copy.deepcopy(setting.value or {}), setting.version


def save_setting(session: Session, actor: Actor, key: str, value: dict[str, Any], expected_version: int | None, *,
         what: str, action: str) -> int:
    """Store an already validated `value` under `key`; returns the new version.

    `what` names the setting in the conflict message ("The lifecycle rules"); `action` is the audit
    action. `expected_version` None skips the check (scripts that mean to overwrite).
    """
    setting = session.get(AppSetting, key)
    current = 0 if setting is None else setting.version
    if expected_version is not None and expected_version != current:
        raise version_conflict(what, expected_version, current, plural=what.endswith("s"))
    before = None if setting is None else copy.deepcopy(setting.value or {})
    fresh = copy.deepcopy(value)
    if setting is None:
        setting = AppSetting(key=key, value=fresh, updated_at=utcnow(), updated_by_id=actor.id)
        session.add(setting)
    else:
        setting.value = fresh
        setting.updated_at = utcnow()
        setting.updated_by_id = actor.id
    session.flush()
    record_audit(session, actor, action, "app_setting", key, before=before, after=value)
    return setting.version
