"""Referrals: unguessable codes, attribution (window, first or last touch), fraud checks before any
payout, two-sided rewards held past the return window and reversed on refund, allowances, and the
programme's analytics (conversion, K-factor, referred customers' retention and value).

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.referrals.program import (
    DEFAULT_REFERRAL_SETTINGS,
    PAID_FRIEND_STATUSES,
    REFERRAL_SETTINGS_KEY,
    attribute,
    attribute_order,
    get_referral_settings,
    process_referrals,
    referral_code,
    referral_detail,
    referral_reasons,
    save_referral_settings,
    validate_referral_settings,
)
from crm_core.referrals.referral_reports import (
    referral_kpis,
    referral_list,
    referrals_by_month,
    referred_vs_others,
    refresh_referral_summary,
)

__all__ = [
    "DEFAULT_REFERRAL_SETTINGS",
    "PAID_FRIEND_STATUSES",
    "REFERRAL_SETTINGS_KEY",
    "attribute",
    "attribute_order",
    "get_referral_settings",
    "process_referrals",
    "referral_code",
    "referral_detail",
    "referral_kpis",
    "referral_list",
    "referral_reasons",
    "referrals_by_month",
    "referred_vs_others",
    "refresh_referral_summary",
    "save_referral_settings",
    "validate_referral_settings",
]
