"""Webhooks: admins subscribe URLs to events; events are collected from what the product records
into an outbox and delivered signed, with retries.

Pages, the `crm` command, the API and the batch use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.webhooks.delivery import (
    MAX_ATTEMPTS,
    SIGNATURE_HEADER,
    backoff,
    deliver_due,
    http_send,
    signature,
    verify_signature,
)
from crm_core.webhooks.events import (
    WEBHOOK_EVENTS,
    collect_events,
    create_subscription,
    delete_subscription,
    get_subscription,
    list_deliveries,
    list_subscriptions,
    update_subscription,
)

__all__ = [
    "MAX_ATTEMPTS",
    "SIGNATURE_HEADER",
    "WEBHOOK_EVENTS",
    "backoff",
    "collect_events",
    "create_subscription",
    "delete_subscription",
    "deliver_due",
    "get_subscription",
    "http_send",
    "list_deliveries",
    "list_subscriptions",
    "signature",
    "update_subscription",
    "verify_signature",
]
