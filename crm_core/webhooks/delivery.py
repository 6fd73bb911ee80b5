"""Delivering the outbox: each pending event is POSTed as JSON to its subscription's URL, signed with
HMAC-SHA256 over "<timestamp>.<body>" with the subscription's secret, and retried with exponential
backoff (1, 2, 4 ... minutes, at most `MAX_ATTEMPTS` tries) until a 2xx answer. Every attempt's
response code or error is kept on the delivery row.

Receivers check `CRM-Signature: t=<unix seconds>,v1=<hex digest>` with `signature(secret, t, body)`
and refuse timestamps older than a few minutes (replays).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.permissions import require
from db.models import WebhookDelivery, WebhookSubscription, utcnow

MAX_ATTEMPTS = 8
FIRST_RETRY = dt.timedelta(minutes=1)
TIMEOUT_SECONDS = 10.0
DELIVERY_BATCH = 200
SIGNATURE_HEADER = "CRM-Signature"

# (url, body, headers) -> (status code or None, error text or None)
Sender = Callable[[str, bytes, dict[str, str]], tuple[int | None, str | None]]


def signature(secret: str, timestamp: int, body: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def verify_signature(secret: str, header: str, body: bytes, now: float | None = None, tolerance: int = 300) -> bool:
    """What a receiver does: the header's digest matches and its timestamp is recent."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now or time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), parts.get("v1", ""))


def http_send(url: str, body: bytes, headers: dict[str, str]) -> tuple[int | None, str | None]:
    request = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310 - admin's http(s) URL
            return response.status, None
    except urllib.error.HTTPError as exc:
        return exc.code, f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return None, str(getattr(exc, "reason", exc))[:500]


def backoff(attempts: int) -> dt.timedelta:
    """Wait before the next try after `attempts` failed tries: 1, 2, 4, 8 ... minutes."""
    return FIRST_RETRY * (2 ** max(0, attempts - 1))


def deliver_due(session: Session, actor: Actor, send: Sender = http_send, now: dt.datetime | None = None,
                limit: int = DELIVERY_BATCH) -> dict[str, int]:
    """Try every pending delivery that is due; returns how many were delivered, retried and given up."""
    require(actor, "webhooks.manage")
    now = now or utcnow()
    due = session.execute(
        select(WebhookDelivery, WebhookSubscription).join(WebhookSubscription)
        .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
        .order_by(WebhookDelivery.next_attempt_at, WebhookDelivery.id).limit(limit)
    ).all()
    counts = {"delivered": 0, "retrying": 0, "failed": 0}
    for delivery, subscription in due:
        if not subscription.is_active:
            continue
        body = json.dumps(delivery.payload, separators=(",", ":"), sort_keys=True).encode()
        timestamp = int(time.time())
        headers: dict[str, Any] = {
            "Content-Type": "application/json", "User-Agent": "customer-intelligence-webhooks",
            "CRM-Event": delivery.event, "CRM-Delivery": str(delivery.id),
            SIGNATURE_HEADER: f"t={timestamp},v1={signature(subscription.secret, timestamp, body)}",
        }
        status, error = send(subscription.url, body, headers)
        delivery.attempts += 1
        delivery.last_status_code = status
        if status is not None and 200 <= status < 300:
            delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
            counts["delivered"] += 1
        elif delivery.attempts >= MAX_ATTEMPTS:
            delivery.status, delivery.last_error = "failed", error or f"HTTP {status}"
            counts["failed"] += 1
        else:
            delivery.next_attempt_at = now + backoff(delivery.attempts)
            delivery.last_error = error or f"HTTP {status}"
            counts["retrying"] += 1
    session.flush()
    return counts
