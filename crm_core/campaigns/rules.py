"""The rules of a win-back campaign, each defined once: triggers, offers, channels and their costs,
the frequency cap, the holdout's bounds and the experiment's error rates."""

from __future__ import annotations

from decimal import Decimal

from crm_core.vouchers.service import MAX_VOUCHER_AMOUNT, MAX_VOUCHER_PERCENT

# What makes a customer qualify. Parameters and their defaults per kind.
TRIGGER_KINDS: dict[str, str] = {
    "churn_risk": "Churn risk at or above a level",
    "no_order": "No order for N days",
    "abandoned_cart": "An abandoned cart",
    "low_engagement": "Low engagement",
    "health_level": "Account health at or below a level",
}
DEFAULT_NO_ORDER_DAYS = 90
MAX_NO_ORDER_DAYS = 3650
# An open cart untouched for this long is abandoned; older than the lookback it is forgotten.
ABANDONED_AFTER_HOURS = 24
ABANDONED_LOOKBACK_DAYS = 14
# Low engagement: no web session in 90 days and an e-mail open rate below this (or none measured).
LOW_ENGAGEMENT_OPEN_RATE = 0.10

OFFER_TYPES: dict[str, str] = {
    "percent_discount": "Percentage discount on the next order",
    "voucher": "Voucher of a fixed amount",
    "loyalty_points": "Loyalty points",
}
MAX_PERCENT_DISCOUNT = MAX_VOUCHER_PERCENT  # the offer becomes a voucher: the vouchers' own limits
MAX_VOUCHER = MAX_VOUCHER_AMOUNT
MAX_POINTS = 1_000_000
# What one loyalty point costs the shop (the redemption value).
POINT_VALUE = Decimal("0.01")

# Campaign channels, the contact detail each needs and the preference-centre opt-in and consent
# purpose it is sent under, and what one message costs.
CHANNELS: dict[str, dict[str, str | None]] = {
    "email": {"contact": "email", "opt_in": "email_opt_in", "consent": "marketing_email"},
    "sms": {"contact": "phone", "opt_in": "sms_opt_in", "consent": "marketing_sms"},
    "push": {"contact": None, "opt_in": "push_opt_in", "consent": "marketing_push"},
}
SEND_COST: dict[str, Decimal] = {"email": Decimal("0.002"), "sms": Decimal("0.06"), "push": Decimal("0.001")}
# The frequency cap: a customer gets at most one marketing message per this many days, after the
# contact frequency they chose in the preference centre ("never" means no marketing at all).
FREQUENCY_CAP_DAYS: dict[str, int] = {"daily": 1, "weekly": 7, "monthly": 30}
MARKETING_CHANNELS = tuple(CHANNELS)

# The holdout and the experiment.
MIN_CONTROL_SHARE = 0.05
MAX_CONTROL_SHARE = 0.5
DEFAULT_CONTROL_SHARE = 0.1
ALPHA = 0.05
POWER = 0.8
DEFAULT_EXPECTED_LIFT = 0.03  # absolute, in conversion rate
DEFAULT_ATTRIBUTION_DAYS = 30
MAX_ATTRIBUTION_DAYS = 365
PRE_PERIOD_DAYS = 180  # spend before assignment: the CUPED covariate
DEFAULT_GROSS_MARGIN = 0.4
DEFAULT_BASELINE_RATE = 0.05  # used only when the history cannot say

CAMPAIGN_STATUSES_EDITABLE = ("draft",)
CAMPAIGN_STATUSES_ENROLLING = ("running",)
