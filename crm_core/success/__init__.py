"""Customer success: calls to action (CTAs) opened by rules and by hand, their playbooks, the queues
and portfolios success managers work from, and whether the work saves customers.

Pages, the `crm` command and the batch use these names; modules inside crm_core import the
submodule they need.
"""

from crm_core.success.automation import COOLDOWN_DAYS, held_out, refresh_success, run_success_rules
from crm_core.success.ctas import (
    OPEN_STATUSES,
    OPENED_FROM,
    PERSON_OUTCOMES,
    close_cta,
    cta_detail,
    customer_signals,
    erase_cta_texts,
    log_on_cta,
    open_cta,
    reassign_ctas,
    set_step,
    update_cta,
)
from crm_core.success.playbooks import DEFAULT_PLAYBOOKS, ensure_playbooks, list_playbooks, save_playbook
from crm_core.success.queues import (
    QUEUE_VIEWS,
    UNASSIGNED,
    assignable_owners,
    book_of_business,
    customer_ctas,
    my_ctas,
    team_ctas,
    team_workload,
)
from crm_core.success.results import (
    DEFAULT_HORIZON_DAYS,
    SAVE_RATE_OUTCOMES,
    playbook_effects,
    proportion_difference,
    save_rates,
    save_rates_by,
)
from crm_core.success.triggers import (
    HEALTH_DROP_POINTS,
    HIGH_VALUE_SHARE,
    MANUAL_TRIGGER,
    RULES,
    TRIGGER_LABELS,
    Firing,
    TriggerRule,
)

__all__ = [
    "COOLDOWN_DAYS",
    "DEFAULT_HORIZON_DAYS",
    "DEFAULT_PLAYBOOKS",
    "HEALTH_DROP_POINTS",
    "HIGH_VALUE_SHARE",
    "MANUAL_TRIGGER",
    "OPENED_FROM",
    "OPEN_STATUSES",
    "PERSON_OUTCOMES",
    "QUEUE_VIEWS",
    "RULES",
    "SAVE_RATE_OUTCOMES",
    "TRIGGER_LABELS",
    "UNASSIGNED",
    "Firing",
    "TriggerRule",
    "assignable_owners",
    "book_of_business",
    "close_cta",
    "cta_detail",
    "customer_ctas",
    "customer_signals",
    "ensure_playbooks",
    "erase_cta_texts",
    "held_out",
    "list_playbooks",
    "log_on_cta",
    "my_ctas",
    "open_cta",
    "playbook_effects",
    "proportion_difference",
    "reassign_ctas",
    "refresh_success",
    "run_success_rules",
    "save_playbook",
    "save_rates",
    "save_rates_by",
    "set_step",
    "team_ctas",
    "team_workload",
    "update_cta",
]
