"""Risk: the churn risk levels every domain, model and page agree on (risk assessments and rules will
join them here).

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.risk.levels import AT_RISK_LEVELS, AT_RISK_PROBABILITY, RISK_FLOORS, risk_band, risk_level

__all__ = [
    "AT_RISK_LEVELS",
    "AT_RISK_PROBABILITY",
    "RISK_FLOORS",
    "risk_band",
    "risk_level",
]
