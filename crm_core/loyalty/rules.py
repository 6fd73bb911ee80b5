"""The loyalty programme's rules, which an admin may change: tiers, the earn rule, expiry, limits.

They are data in `app_settings` under "loyalty_settings" (no row means `DEFAULT_SETTINGS`): tier
thresholds on lifetime points, the earn rule (points per currency unit times the member's tier
multiplier, rounded down), the expiry age in days, the value of a point (for the liability figure),
the most points each role may adjust at once and the approval limit above which a manual
adjustment waits for a second person with `loyalty.approve`. Tiers only rise; saving new thresholds
raises every member who now reaches a higher tier.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import case, insert, literal, select, update
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.platform.sql import rows_affected
from db.models import LOYALTY_TIERS, REVENUE_ORDER_STATUSES, LoyaltyAccount, LoyaltyTierChange, utcnow

SETTINGS_KEY = "loyalty_settings"
EARNING_ORDER_STATUSES = tuple(s for s in REVENUE_ORDER_STATUSES if s != "placed")  # paid, shipped, delivered


# Lifetime points from which each tier starts (an admin may change them; see get_settings).
DEFAULT_TIER_THRESHOLDS: dict[str, int] = {"bronze": 0, "silver": 1_000, "gold": 5_000, "platinum": 15_000,
                                           "diamond": 40_000}
DEFAULT_SETTINGS: dict[str, Any] = {
    "tier_thresholds": DEFAULT_TIER_THRESHOLDS,
    "points_per_currency_unit": 1.0,
    "tier_multipliers": {"bronze": 1.0, "silver": 1.1, "gold": 1.25, "platinum": 1.5, "diamond": 2.0},
    "expiry_days": 730,
    "point_value": 0.01,
    "adjust_limits": {"admin": 50_000, "success_manager": 5_000, "support_agent": 1_000},
    "approval_limit": 1_000,
}


def get_settings(session: Session) -> tuple[dict[str, Any], int]:
    """The stored settings merged over the defaults, and their version (0 = never saved)."""
    value, version = stored_setting(session, SETTINGS_KEY)
    return {**_copy(DEFAULT_SETTINGS), **(value or {})}, version


def _copy(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in settings.items()}


def _number(name: str, value: Any, *, whole: bool = False, minimum: float = 0, maximum: float | None = None):
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a whole number" if whole else "a number"
        raise ValidationError(f"{name} must be {kind}, not {value!r}.")
    if whole and int(value) != value:
        raise ValidationError(f"{name} must be a whole number, not {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ValidationError(f"{name} must be at least {minimum:g}{upper} (got {value}).")
    return int(value) if whole else float(value)


def validate_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Complete the settings with the defaults and check every value."""
    if not isinstance(settings, dict):
        raise ValidationError("Loyalty settings must be a mapping of setting name to value.")
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValidationError(f"Unknown loyalty setting(s): {', '.join(unknown)}.")
    merged = {**_copy(DEFAULT_SETTINGS), **_copy(settings)}
    for name in ("tier_thresholds", "tier_multipliers"):
        if not isinstance(merged[name], dict) or set(merged[name]) != set(LOYALTY_TIERS):
            raise ValidationError(f"{name} needs exactly one value for each tier: {', '.join(LOYALTY_TIERS)}.")
    thresholds = {t: _number(f"Threshold of {t}", merged["tier_thresholds"][t], whole=True) for t in LOYALTY_TIERS}
    if thresholds["bronze"] != 0:
        raise ValidationError("The bronze threshold must be 0: every member starts in bronze.")
    for lower, higher in zip(LOYALTY_TIERS, LOYALTY_TIERS[1:], strict=False):
        if thresholds[higher] <= thresholds[lower]:
            raise ValidationError(
                f"The {higher} threshold ({thresholds[higher]:,}) must be above the {lower} threshold "
                f"({thresholds[lower]:,})."
            )
    merged["tier_thresholds"] = thresholds
    merged["tier_multipliers"] = {
        t: _number(f"Multiplier of {t}", merged["tier_multipliers"][t], minimum=0, maximum=10) for t in LOYALTY_TIERS
    }
    merged["points_per_currency_unit"] = _number("Points per currency unit", merged["points_per_currency_unit"],
                                                 minimum=0, maximum=1000)
    merged["expiry_days"] = _number("Expiry age in days", merged["expiry_days"], whole=True, minimum=30, maximum=3650)
    merged["point_value"] = _number("Value of a point", merged["point_value"], minimum=0, maximum=100)
    merged["approval_limit"] = _number("Approval limit", merged["approval_limit"], whole=True, minimum=1)
    limits = merged["adjust_limits"]
    if not isinstance(limits, dict):
        raise ValidationError("Adjustment limits must map a role to the most points it may adjust at once.")
    merged["adjust_limits"] = {
        str(role): _number(f"Adjustment limit of {role}", value, whole=True) for role, value in limits.items()
    }
    return merged


def save_settings(session: Session, actor: Actor, settings: dict[str, Any], expected_version: int | None) -> tuple[dict, int]:
    """Validate and store the settings; tiers are recomputed for every member at once."""
    require(actor, "loyalty.settings")
    new = validate_settings(settings)
    version = save_setting(session, actor, SETTINGS_KEY, new, expected_version,
                          what="The loyalty settings", action="loyalty.settings.save")
    retier(session, new["tier_thresholds"], utcnow(), account_ids=None)
    return new, version


def order_points(total: Decimal | float, tier: str, settings: dict[str, Any]) -> int:
    """The earn rule: currency units x points per unit x the tier's multiplier, rounded down."""
    raw = Decimal(str(total)) * Decimal(str(settings["points_per_currency_unit"])) \
        * Decimal(str(settings["tier_multipliers"][tier]))
    return int(raw.to_integral_value(rounding="ROUND_FLOOR"))


def tier_for(points: int, thresholds: dict[str, int]) -> str:
    reached = [t for t in LOYALTY_TIERS if points >= thresholds[t]]
    return reached[-1] if reached else LOYALTY_TIERS[0]


def tier_case(lifetime, thresholds: dict[str, int]):
    whens = [(lifetime >= thresholds[t], t) for t in reversed(LOYALTY_TIERS[1:])]
    return case(*whens, else_=LOYALTY_TIERS[0])


def retier(session: Session, thresholds: dict[str, int], now: dt.datetime, account_ids=None) -> int:
    """Raise tiers to what lifetime points reach (set-based), with a tier-change row each."""
    a = LoyaltyAccount
    target = tier_case(a.lifetime_points, thresholds)
    rank = case(*[(a.tier == t, i) for i, t in enumerate(LOYALTY_TIERS)], else_=0)
    target_rank = case(*[(target == t, i) for i, t in enumerate(LOYALTY_TIERS)], else_=0)
    conditions = [target_rank > rank]
    if account_ids is not None:
        conditions.append(a.id.in_(account_ids))
    session.execute(insert(LoyaltyTierChange).from_select(
        ["account_id", "from_tier", "to_tier", "changed_at"],
        select(a.id, a.tier, target, literal(now)).where(*conditions),
    ))
    result = session.execute(update(a).where(*conditions)
                             .values(tier=target, tier_updated_at=now, version=a.version + 1)
                             .execution_options(synchronize_session=False))
    return rows_affected(result) or 0
