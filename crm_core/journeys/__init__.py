"""Customer journeys: each customer's dated touchpoints as paths to the first purchase and from it
to churn, computed by the batch (refresh_journeys) and read by the Journeys page.
"""

from crm_core.journeys.compute import refresh_journeys
from crm_core.journeys.paths import ChurnRules, customer_journeys
from crm_core.journeys.reports import (
    END_NODES,
    OPTIONAL_SOURCES,
    filter_options,
    first_touch_conversion,
    journey_totals,
    latest_run,
    sankey,
    top_paths,
)
from crm_core.journeys.steps import (
    ALL_PATHS,
    CHURN_PATH_TAIL,
    NO_TOUCHPOINT,
    OTHER_PATHS,
    PATH_TAIL,
    SOURCES,
    STEP_LABELS,
    TOP_PATHS,
    path_labels,
)

__all__ = [
    "ALL_PATHS",
    "CHURN_PATH_TAIL",
    "END_NODES",
    "NO_TOUCHPOINT",
    "OPTIONAL_SOURCES",
    "OTHER_PATHS",
    "PATH_TAIL",
    "SOURCES",
    "STEP_LABELS",
    "TOP_PATHS",
    "ChurnRules",
    "customer_journeys",
    "filter_options",
    "first_touch_conversion",
    "journey_totals",
    "latest_run",
    "path_labels",
    "refresh_journeys",
    "sankey",
    "top_paths",
]
