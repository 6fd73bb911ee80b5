"""Loyalty: the append-only points ledger, tiers, earning, redemption, expiry and manual adjustments.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.loyalty.ledger import (
    DEFAULT_SETTINGS,
    DEFAULT_TIER_THRESHOLDS,
    InsufficientPoints,
    account_summary,
    adjust,
    decide_adjustment,
    earn_for_order,
    earn_for_orders,
    enroll,
    expire_points,
    expiry_outlook,
    first_member,
    get_settings,
    ledger_page,
    monthly_activity,
    pending_adjustments,
    points_liability,
    recompute_balance,
    redeem,
    reverse_for_orders,
    run_with_retry,
    save_settings,
    tier_distribution,
    validate_settings,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "DEFAULT_TIER_THRESHOLDS",
    "InsufficientPoints",
    "account_summary",
    "adjust",
    "decide_adjustment",
    "earn_for_order",
    "earn_for_orders",
    "enroll",
    "expire_points",
    "expiry_outlook",
    "first_member",
    "get_settings",
    "ledger_page",
    "monthly_activity",
    "pending_adjustments",
    "points_liability",
    "recompute_balance",
    "redeem",
    "reverse_for_orders",
    "run_with_retry",
    "save_settings",
    "tier_distribution",
    "validate_settings",
]
