"""Reporting: the executive overview, figures computed in the database over the other domains, and
the daily sales rollups the batch keeps for it.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.reporting.overview import Overview, executive_overview
from crm_core.reporting.sales_rollups import ACTIVE_DAYS, daily_sales, refresh_sales_rollups

__all__ = [
    "ACTIVE_DAYS",
    "Overview",
    "daily_sales",
    "executive_overview",
    "refresh_sales_rollups",
]
