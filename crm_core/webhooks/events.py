"""Webhook subscriptions and the outbox of events for them.

Events are read from what the product already writes in the same transaction as a change, so a
change and its event can never disagree: the audit log (customer created / updated / merged /
erased, ticket created, order created by intake), segment memberships (entered / left), lifecycle
history (stage changed), SLA breaches (ticket breached) and churn predictions (risk became high). `collect_events` reads
each source past its high-water mark and writes one outbox row per event and subscription;
marks start at the newest row when the first subscription is made, so old history is not sent.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import and_, exists, func, insert, or_, select
from sqlalchemy.orm import Session, aliased

from crm_core.platform.actors import Actor
from crm_core.platform.audit import jsonable, record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import FIRST, Page, SortKey, check_limit, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.settings import stored_setting
from crm_core.platform.transactions import check_version
from crm_core.segmentation.churn_levels import AT_RISK_LEVELS
from db.models import (
    AppSetting,
    AuditLog,
    ChurnPrediction,
    CustomerLifecycleHistory,
    CustomerSegmentMembership,
    SlaBreach,
    WebhookDelivery,
    WebhookSubscription,
    utcnow,
)

AUDIT_EVENTS = {
    "customer.create": "customer.created",
    "customer.update": "customer.updated",
    "customer.merge": "customer.merged",
    "dsr.erasure": "customer.erased",
    "ticket.create": "ticket.created",
    "order.create": "order.created",
}
WEBHOOK_EVENTS = (
    "customer.created", "customer.updated", "customer.merged", "customer.erased", "segment.entered",
    "segment.left", "lifecycle.stage_changed", "ticket.created", "ticket.breached", "churn.risk_high",
    "order.created",
)
CURSOR_KEY = "webhook_cursors"
EVENT_BATCH = 5_000  # source rows read per source and collection
MAX_URL = 2000


def _clean_url(url: Any) -> str:
    if not isinstance(url, str) or len(url) > MAX_URL:
        raise ValidationError(f"A webhook URL is text of at most {MAX_URL} characters.")
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValidationError(f"{url!r} is not an http(s) URL such as https://example.com/hooks/crm.")
    return url.strip()


def _clean_events(events: Any) -> list[str]:
    if isinstance(events, str) or not isinstance(events, Iterable):
        raise ValidationError("Events are a list of event names.")
    events = list(dict.fromkeys(events))
    unknown = [e for e in events if e not in WEBHOOK_EVENTS]
    if unknown or not events:
        raise ValidationError(f"Choose at least one event from: {', '.join(WEBHOOK_EVENTS)}"
                              + (f" (unknown: {', '.join(map(str, unknown))})." if unknown else "."))
    return events


def _subscription_row(s: WebhookSubscription) -> dict[str, Any]:
    return {"id": s.id, "url": s.url, "events": list(s.events), "is_active": s.is_active,
            "created_by": s.created_by, "created_at": s.created_at, "version": s.version}


def create_subscription(session: Session, actor: Actor, url: str, events: list[str]) -> tuple[dict[str, Any], str]:
    """Subscribe a URL; returns the subscription and its signing secret (shown once)."""
    require(actor, "webhooks.manage")
    url, events = _clean_url(url), _clean_events(events)
    if session.scalar(select(func.count()).select_from(WebhookSubscription)) == 0:
        _start_cursors(session, actor)
    secret = "whsec_" + secrets.token_urlsafe(24)
    sub = WebhookSubscription(url=url, events=events, secret=secret, is_active=True, created_by=actor.username)
    session.add(sub)
    session.flush()
    record_audit(session, actor, "webhook.create", "webhook_subscription", sub.id, after={"url": url, "events": events})
    return _subscription_row(sub), secret


def _subscription(session: Session, subscription_id: Any) -> WebhookSubscription:
    sub = session.get(WebhookSubscription, subscription_id) if isinstance(subscription_id, int) else None
    if sub is None:
        raise NotFound(f"No webhook subscription with id {subscription_id}.")
    return sub


def update_subscription(session: Session, actor: Actor, subscription_id: int, expected_version: int | None,
                        url: str | None = None, events: list[str] | None = None,
                        is_active: bool | None = None) -> dict[str, Any]:
    require(actor, "webhooks.manage")
    sub = _subscription(session, subscription_id)
    check_version(sub, expected_version, f"Webhook subscription {sub.id}")
    before = _subscription_row(sub)
    if url is not None:
        sub.url = _clean_url(url)
    if events is not None:
        sub.events = _clean_events(events)
    if is_active is not None:
        sub.is_active = bool(is_active)
    session.flush()
    after = _subscription_row(sub)
    record_audit(session, actor, "webhook.update", "webhook_subscription", sub.id,
                 before={k: before[k] for k in ("url", "events", "is_active")},
                 after={k: after[k] for k in ("url", "events", "is_active")})
    return after


def delete_subscription(session: Session, actor: Actor, subscription_id: int) -> None:
    require(actor, "webhooks.manage")
    sub = _subscription(session, subscription_id)
    record_audit(session, actor, "webhook.delete", "webhook_subscription", sub.id, before=_subscription_row(sub))
    session.delete(sub)
    session.flush()


def list_subscriptions(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    require(viewer, "webhooks.manage")
    return [_subscription_row(s) for s in session.scalars(select(WebhookSubscription).order_by(WebhookSubscription.id))]


def get_subscription(session: Session, viewer: Actor, subscription_id: int) -> dict[str, Any]:
    require(viewer, "webhooks.manage")
    return _subscription_row(_subscription(session, subscription_id))


def list_deliveries(session: Session, viewer: Actor, subscription_id: int, limit: int = 50,
                    after: str = FIRST) -> Page:
    """A subscription's deliveries, newest first, with their attempts and response codes: `limit` of them
    after the cursor `after` (keyset pages)."""
    require(viewer, "webhooks.manage")
    check_limit(limit, 500, "limit")
    _subscription(session, subscription_id)
    w = WebhookDelivery
    rows, next_after = fetch_rows(session, select(w).where(w.subscription_id == subscription_id),
                                  (SortKey(w.id, descending=True),), f"webhook_deliveries:{subscription_id}",
                                  page_size=limit, after=after)
    return Page([{"id": d.id, "event": d.event, "status": d.status, "attempts": d.attempts,
                  "last_status_code": d.last_status_code, "last_error": d.last_error, "created_at": d.created_at,
                  "next_attempt_at": d.next_attempt_at, "delivered_at": d.delivered_at} for d, *_key in rows],
                None, 0, limit, next_after)


# --------------------------------------------------------------------------- collecting events

SOURCES = ("audit", "membership_entered", "membership_left", "lifecycle", "breach", "churn")


def _newest(session: Session) -> dict[str, Any]:
    left = session.scalar(select(func.max(CustomerSegmentMembership.left_at)))
    left_id = session.scalar(select(func.max(CustomerSegmentMembership.id))
                             .where(CustomerSegmentMembership.left_at == left)) if left else 0
    return {
        "membership_left_id": left_id or 0,
        "audit": session.scalar(select(func.max(AuditLog.id))) or 0,
        "membership_entered": session.scalar(select(func.max(CustomerSegmentMembership.id))) or 0,
        "membership_left": left.isoformat() if left else None,
        "lifecycle": session.scalar(select(func.max(CustomerLifecycleHistory.id))) or 0,
        "breach": session.scalar(select(func.max(SlaBreach.id))) or 0,
        "churn": session.scalar(select(func.max(ChurnPrediction.id))) or 0,
    }


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


def _save_cursors(session: Session, cursors: dict[str, Any]) -> None:
    """The high-water marks, kept as a setting (without an audit row: they move on every collection)."""
    setting = session.get(AppSetting, CURSOR_KEY)
    if setting is None:
        session.add(AppSetting(key=CURSOR_KEY, value=dict(cursors), updated_at=utcnow()))
    else:
        setting.value, setting.updated_at = dict(cursors), utcnow()
    session.flush()


def _start_cursors(session: Session, actor: Actor) -> None:
    _save_cursors(session, _newest(session))


def _events_from_sources(session: Session, cursors: dict[str, Any]) -> tuple[list[tuple[str, str, dict]], dict]:
    """(event, event key, data) of every new source row, and the advanced cursors."""
    found: list[tuple[str, str, dict]] = []
    moved = dict(cursors)
    audit = session.execute(
        select(AuditLog).where(AuditLog.id > cursors["audit"]).order_by(AuditLog.id).limit(EVENT_BATCH)).scalars().all()
    for row in audit:
        moved["audit"] = row.id
        if row.action in AUDIT_EVENTS:
            found.append((AUDIT_EVENTS[row.action], f"audit:{row.id}", {
                "entity": row.entity_type, "entity_id": row.entity_id, "actor": row.actor_username,
                "before": row.before, "after": row.after, "occurred_at": row.occurred_at}))
    entered = session.execute(
        select(CustomerSegmentMembership).where(CustomerSegmentMembership.id > cursors["membership_entered"])
        .order_by(CustomerSegmentMembership.id).limit(EVENT_BATCH)).scalars().all()
    for m in entered:
        moved["membership_entered"] = m.id
        found.append(("segment.entered", f"membership:{m.id}:in", {
            "segment_id": m.segment_id, "customer_id": m.customer_id, "occurred_at": m.entered_at}))
    # A refresh stamps many departures with one time: the mark is (time, id), so none is skipped.
    M = CustomerSegmentMembership
    left_query = select(M).where(M.left_at.is_not(None))
    if cursors.get("membership_left"):
        left_at, left_id = dt.datetime.fromisoformat(cursors["membership_left"]), cursors.get("membership_left_id", 0)
        left_query = left_query.where(or_(M.left_at > left_at, and_(M.left_at == left_at, M.id > left_id)))
    for m in session.execute(left_query.order_by(M.left_at, M.id).limit(EVENT_BATCH)).scalars():
        moved["membership_left"], moved["membership_left_id"] = _iso(m.left_at), m.id
        found.append(("segment.left", f"membership:{m.id}:out", {
            "segment_id": m.segment_id, "customer_id": m.customer_id, "occurred_at": m.left_at}))
    for h in session.execute(select(CustomerLifecycleHistory).where(CustomerLifecycleHistory.id > cursors["lifecycle"])
                             .order_by(CustomerLifecycleHistory.id).limit(EVENT_BATCH)).scalars():
        moved["lifecycle"] = h.id
        found.append(("lifecycle.stage_changed", f"lifecycle:{h.id}", {
            "customer_id": h.customer_id, "from_stage": h.from_stage, "to_stage": h.to_stage, "reason": h.reason,
            "occurred_at": h.changed_at}))
    for b in session.execute(select(SlaBreach).where(SlaBreach.id > cursors["breach"])
                             .order_by(SlaBreach.id).limit(EVENT_BATCH)).scalars():
        moved["breach"] = b.id
        found.append(("ticket.breached", f"breach:{b.id}", {
            "ticket_id": b.ticket_id, "target": b.target, "due_at": b.due_at, "priority": b.priority,
            "occurred_at": b.detected_at}))
    found += _risk_became_high(session, cursors, moved)
    return found, moved


def _risk_became_high(session: Session, cursors: dict[str, Any], moved: dict[str, Any]) -> list[tuple[str, str, dict]]:
    """New at-risk predictions of customers who were not at risk at the previous prediction date (a
    refresh writes one date; each date's previous one is found once, then one indexed anti-join)."""
    now, earlier = ChurnPrediction, aliased(ChurnPrediction)
    newest = session.scalar(select(func.max(now.id)).where(now.id > cursors["churn"]))
    if newest is None:
        return []
    upper = min(newest, cursors["churn"] + EVENT_BATCH * 20)
    moved["churn"] = upper
    window = and_(now.id > cursors["churn"], now.id <= upper)
    found: list[tuple[str, str, dict]] = []
    for as_of in session.scalars(select(now.as_of).where(window).distinct()):
        previous = session.scalar(select(func.max(now.as_of)).where(now.as_of < as_of))
        was_at_risk = exists().where(earlier.customer_id == now.customer_id, earlier.as_of == previous,
                                     earlier.risk_level.in_(AT_RISK_LEVELS))
        rows = session.execute(select(now.id, now.customer_id, now.probability, now.risk_level, now.as_of).where(
            window, now.as_of == as_of, now.risk_level.in_(AT_RISK_LEVELS), ~was_at_risk).order_by(now.id)).all()
        found += [("churn.risk_high", f"churn:{r.id}", {"customer_id": r.customer_id, "probability": r.probability,
                                                         "risk_level": r.risk_level, "as_of": r.as_of}) for r in rows]
    return found


def collect_events(session: Session, actor: Actor, now: dt.datetime | None = None) -> int:
    """Write new events into the outbox for the active subscriptions to them; returns rows written."""
    require(actor, "webhooks.manage")
    now = now or utcnow()
    cursors, _version = stored_setting(session, CURSOR_KEY)
    if cursors is None:
        if session.scalar(select(func.count()).select_from(WebhookSubscription)) == 0:
            return 0
        _start_cursors(session, actor)
        return 0
    subscriptions = session.scalars(select(WebhookSubscription).where(WebhookSubscription.is_active.is_(True))).all()
    events, moved = _events_from_sources(session, cursors)
    rows = [
        {"subscription_id": s.id, "event": event, "event_key": key, "status": "pending", "attempts": 0,
         "next_attempt_at": now, "created_at": now,
         "payload": {"id": key, "type": event, "created_at": now.isoformat(), "data": jsonable(data)}}
        for event, key, data in events for s in subscriptions if event in s.events
    ]
    if rows:
        session.execute(insert(WebhookDelivery), rows)
    if moved != cursors:
        _save_cursors(session, moved)
    return len(rows)
