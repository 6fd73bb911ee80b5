"""Role -> action permissions, kept in one place.

Pages are shown by these permissions and every mutating service checks them again, so a role
that reaches a page it lacks still cannot act.
"""

from __future__ import annotations

from crm_core.platform.actors import Actor, TokenActor
from crm_core.platform.errors import PermissionDenied
from db.models import ROLES

ALL_ROLES = frozenset(ROLES)

PERMISSIONS: dict[str, frozenset[str]] = {
    "overview.view": ALL_ROLES,
    "customers.view": frozenset({"admin", "analyst", "success_manager", "support_agent", "risk_analyst"}),
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
    # Win-back campaigns (issue 17): analysts and success managers design and run them, executives
    # read the results; training the uplift model is an analyst's job.
    "campaigns.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
    "campaigns.manage": frozenset({"admin", "analyst", "success_manager"}),
    "campaigns.models": frozenset({"admin", "analyst"}),
    "users.manage": frozenset({"admin"}),
    "audit.view": frozenset({"admin"}),
    # issue 15: the HTTP API. Everyone manages their own tokens; admins anyone's, and webhooks.
    "tokens.own": ALL_ROLES,
    "tokens.manage": frozenset({"admin"}),
    "webhooks.manage": frozenset({"admin"}),
    # issue 16: risk (fraud, credit, account takeover) and referrals
    "risk.view": frozenset({"admin", "risk_analyst", "success_manager"}),
    "risk.review": frozenset({"admin", "risk_analyst"}),
    "risk.rules": frozenset({"admin", "risk_analyst"}),
    "risk.lists": frozenset({"admin", "risk_analyst"}),
    "risk.identity": frozenset({"admin", "risk_analyst"}),
    "referrals.view": frozenset({"admin", "analyst", "success_manager", "risk_analyst", "executive"}),
    "referrals.manage": frozenset({"admin", "success_manager"}),
    "referrals.settings": frozenset({"admin"}),
    # vouchers issued or voided by hand (campaigns and referral rewards issue theirs under their own)
    "vouchers.manage": frozenset({"admin", "success_manager", "support_agent"}),
    # customer success (issue 18): read the workbench, work CTAs, reassign anyone's, edit playbooks
    "success.view": frozenset({"admin", "success_manager", "executive"}),
    "success.work": frozenset({"admin", "success_manager"}),
    "success.assign": frozenset({"admin"}),
    "success.playbooks": frozenset({"admin"}),
    # Issue 17: social listening (mentions are public posts; names of matched customers need
    # customers.view) and customer journeys (aggregates only).
    "social.view": ALL_ROLES,
    "social.import": frozenset({"admin", "analyst"}),
    "journeys.view": frozenset({"admin", "analyst", "success_manager", "executive"}),
}
# What a read-only API token may still do: view, and export what it may view (an export is audited).
READ_ONLY_ACTIONS = frozenset({a for a in PERMISSIONS if a.endswith(".view")} | {"customers.export"})


def allowed(role: str | None, action: str) -> bool:
    if action not in PERMISSIONS:
        raise KeyError(f"unknown action {action!r}")
    return role in PERMISSIONS[action]


def require(user: Actor | None, action: str) -> None:
    """Raise PermissionDenied unless the user is active and the role may perform the action (and, acting
    through a read-only API token, unless the action only reads)."""
    if user is None or not user.is_active or not allowed(user.role, action):
        who, role = (user.username, user.role) if user is not None else ("anonymous", None)
        raise PermissionDenied(f"{who} ({role or 'no role'}) is not allowed to {action}.")
    if isinstance(user, TokenActor) and user.read_only and action not in READ_ONLY_ACTIONS:
        raise PermissionDenied(f"{user.username} is using a read-only API token, which may not {action}.")
