"""Orders: intake of a new order as it is placed (validated, checked against the risk decisions in
force, with a voucher redeemed and a referral code attributed on a first order). Historical orders
are imported by `crm_core.imports`.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.orders.intake import INTAKE_STATUSES, ORDER_FIELDS, order_detail, record_order

__all__ = ["INTAKE_STATUSES", "ORDER_FIELDS", "order_detail", "record_order"]
