"""Reporting: the executive overview, figures computed in the database over the other domains.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.reporting.overview import Overview, executive_overview

__all__ = [
    "Overview",
    "executive_overview",
]
