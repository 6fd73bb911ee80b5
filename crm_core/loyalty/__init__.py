"""Loyalty: the append-only points ledger, tiers, earning, redemption, expiry and manual adjustments.

rules (the programme's settings: tiers, the earn rule, expiry, limits), ledger (posting to a locked
account, the FIFO expiry formula, the balance check), accounts (enrol, earn, redeem, rewards),
adjustments (by hand, with approval), batch (the earn, reverse and expire jobs) and loyalty_reports
(what the Loyalty page reads).

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.loyalty.accounts import credit_reward, earn_for_order, enroll, redeem, take_back_reward
from crm_core.loyalty.adjustments import (
    ADJUSTMENT_WINDOW,
    adjust,
    adjusted_without_approval,
    decide_adjustment,
    pending_adjustments,
)
from crm_core.loyalty.batch import earn_for_orders, expire_points, reverse_for_orders, run_with_retry
from crm_core.loyalty.ledger import InsufficientPoints, recompute_balance
from crm_core.loyalty.loyalty_reports import (
    account_summary,
    expiry_outlook,
    first_member,
    ledger_page,
    monthly_activity,
    points_liability,
    refresh_expiry_outlook,
    refresh_monthly_activity,
    tier_distribution,
)
from crm_core.loyalty.rules import (
    DEFAULT_SETTINGS,
    DEFAULT_TIER_THRESHOLDS,
    get_settings,
    save_settings,
    validate_settings,
)

__all__ = [
    "ADJUSTMENT_WINDOW",
    "DEFAULT_SETTINGS",
    "DEFAULT_TIER_THRESHOLDS",
    "InsufficientPoints",
    "account_summary",
    "adjust",
    "adjusted_without_approval",
    "credit_reward",
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
    "refresh_expiry_outlook",
    "refresh_monthly_activity",
    "reverse_for_orders",
    "run_with_retry",
    "save_settings",
    "take_back_reward",
    "tier_distribution",
    "validate_settings",
]
