"""Risk: the churn risk levels every domain, model and page agree on (risk assessments and rules will
join them here), and the rollups of the latest churn predictions the Churn page reads.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.risk.churn_rollups import (
    churn_value,
    refresh_churn_rollups,
    stored_at_risk_page,
    stored_risk_summary,
)
from crm_core.risk.levels import AT_RISK_LEVELS, AT_RISK_PROBABILITY, RISK_FLOORS, risk_band, risk_level

__all__ = [
    "AT_RISK_LEVELS",
    "AT_RISK_PROBABILITY",
    "RISK_FLOORS",
    "churn_value",
    "refresh_churn_rollups",
    "risk_band",
    "risk_level",
    "stored_at_risk_page",
    "stored_risk_summary",
]
