"""Role -> action permissions, kept in one place.

Pages are shown by these permissions and every mutating service checks them again, so a role
that reaches a page it lacks still cannot act.
"""

from __future__ import annotations

from crm_core.platform.actors import Actor
from crm_core.platform.errors import PermissionDenied
from db.models import ROLES

ALL_ROLES = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    "overview.view": ALL_ROLES,
    "customers.view": frozenset({"admin", "analyst", "success_manager", "support_agent"}),
    "customers.edit": frozenset({"admin", "success_manager", "support_agent"}),
    "customers.merge": frozenset({"admin", "success_manager"}),
    "customers.import": frozenset({"admin"}),
    "customers.export": frozenset({"admin", "analyst"}),
    "customers.bulk": frozenset({"admin", "analyst", "success_manager"}),
    "segments.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
    "segments.manage": frozenset({"admin", "analyst"}),
    "lifecycle.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
    "lifecycle.edit": frozenset({"admin", "success_manager"}),
    "lifecycle.rules": frozenset({"admin"}),
    "churn.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
    "value.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
    "forecast.view": frozenset({"admin", "analyst", "executive"}),
    "health.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
    "models.manage": frozenset({"admin"}),
    "refresh.run": frozenset({"admin"}),
    "tickets.view": frozenset({"admin", "success_manager", "support_agent"}),
    "tickets.manage": frozenset({"admin", "success_manager", "support_agent"}),
    "sla.view": frozenset({"admin", "success_manager", "support_agent", "executive"}),
    "sla.manage": frozenset({"admin"}),
    "surveys.record": frozenset({"admin", "success_manager", "support_agent"}),
    "complaints.manage": frozenset({"admin", "success_manager", "support_agent"}),
    "loyalty.adjust": frozenset({"admin", "success_manager", "support_agent"}),
    "loyalty.approve": frozenset({"admin", "success_manager"}),
    "loyalty.view": frozenset({"admin", "analyst", "success_manager", "support_agent", "executive"}),
    "loyalty.settings": frozenset({"admin"}),
    "complaints.view": frozenset({"admin", "success_manager", "support_agent", "executive"}),
    "complaints.settings": frozenset({"admin"}),
    "communications.view": frozenset({"admin", "analyst", "success_manager", "support_agent"}),
    "communications.log": frozenset({"admin", "success_manager", "support_agent"}),
    "privacy.manage": frozenset({"admin"}),
    "users.manage": frozenset({"admin"}),
    "audit.view": frozenset({"admin"}),
    # Issue 17: social listening (mentions are public posts; names of matched customers need
    # customers.view) and customer journeys (aggregates only).
    "social.view": ALL_ROLES,
    "social.import": frozenset({"admin", "analyst"}),
    "journeys.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
}


def allowed(role: str | None, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}")
    return role in PERMISSIONS[action]


def require(user: Actor | None, action: str) -> None:
    """Raise PermissionDenied unless the user is active and the role may perform the action."""
    if user is None or not user.is_active or not allowed(user.role, action):
        who, role = (user.username, user.role) if user is not None else ("anonymous", None)
        raise PermissionDenied(f"{who} ({role or 'no role'}) is not allowed to {action}.")
