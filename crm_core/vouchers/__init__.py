"""Vouchers: single-use codes for one customer (a campaign's incentive, a referral reward, or by
hand), redeemed once on one of their orders at order intake, voided or clawed back on reversal.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.vouchers.service import (
    DEFAULT_VOUCHER_DAYS,
    MAX_VOUCHER_AMOUNT,
    MAX_VOUCHER_DAYS,
    MAX_VOUCHER_PERCENT,
    check_voucher,
    customer_vouchers,
    expire_vouchers,
    issue_voucher,
    issue_vouchers,
    normalise_code,
    redeem_voucher,
    void_voucher,
    voucher_discount,
)

__all__ = [
    "DEFAULT_VOUCHER_DAYS",
    "MAX_VOUCHER_AMOUNT",
    "MAX_VOUCHER_DAYS",
    "MAX_VOUCHER_PERCENT",
    "check_voucher",
    "customer_vouchers",
    "expire_vouchers",
    "issue_voucher",
    "issue_vouchers",
    "normalise_code",
    "redeem_voucher",
    "void_voucher",
    "voucher_discount",
]
