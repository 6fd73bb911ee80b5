"""The batch: the refresh that runs the domain steps (loyalty, SLA checks, the snapshot, segments,
lifecycle, rollups, referrals, campaigns, calls to action, journeys, social topics) and the models
(churn, lifetime value, health, forecasts, risk, clusters) as of a date, and the record of each run.

Entry points (pages, ui, the `crm` command, the API) call the batch; the batch calls ml and
crm_core, never the other way round.
"""

from batch.refresh import RefreshReport, StepRecord, backfill, month_ends_before, rfm_rules, run_refresh
from batch.run_reports import DataVersion, StepStatus, data_version, last_step_status, recent_runs, run_steps

__all__ = [
    "DataVersion",
    "RefreshReport",
    "StepRecord",
    "StepStatus",
    "backfill",
    "data_version",
    "last_step_status",
    "month_ends_before",
    "recent_runs",
    "rfm_rules",
    "run_refresh",
    "run_steps",
]
