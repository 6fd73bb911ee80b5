"""Communications log: outbound and inbound messages, calls and notes, and the delivery funnel.

The funnel counts outbound messages by the furthest stage they reached: a message that was
clicked was also delivered and opened. Stages are read from the timestamps (delivered_at,
opened_at, clicked_at, replied_at) or, when a sender only reported a status, from the status;
bounced and failed messages never count as delivered. Logged calls and notes (status "logged")
stay out of the funnel. Inbound free text gets a VADER sentiment score (-1 negative .. 1 positive).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import is_gone
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import data_date, midnight
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.sql import year_month
from crm_core.service.communication_rollups import COUNTS, NONE, grouped_counts
from crm_core.vouchers.codes import mask_codes_in
from db.models import COMM_CHANNELS, COMM_STATUSES, DIRECTIONS, Customer, CustomerCommunication, User, utcnow

MAX_MESSAGE_SUBJECT = 255
MAX_BODY = 10_000
MAX_LABEL = 100
_STAGE_RANK = {"sent": 0, "delivered": 1, "opened": 2, "clicked": 3, "replied": 4}


@lru_cache(maxsize=1)
def _analyzer():
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def sentiment(text: str) -> float:
    """VADER compound score of a text, -1 (negative) to 1 (positive)."""
    return round(float(_analyzer().polarity_scores(text)["compound"]), 4)


def _text(value: Any, what: str, limit: int, required: bool = False) -> str | None:
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise ValidationError(f"{what} must be text.")
    value = value.strip()
    if required and not value:
        raise ValidationError(f"{what} is required.")
    if len(value) > limit:
        raise ValidationError(f"{what} is too long ({len(value):,} characters; at most {limit:,}).")
    return value or None


def log_communication(session: Session, actor: Actor, customer_id: Any, channel: str, direction: str, subject: str | None,
        body: str | None = None, status: str = "logged", campaign: str | None = None, template: str | None = None,
        occurred_at: dt.datetime | None = None) -> CustomerCommunication:
    """Log a message, call or note on the customer's timeline."""
    require(actor, "communications.log")
    if channel not in COMM_CHANNELS:
        raise ValidationError(f"Channel must be one of {', '.join(COMM_CHANNELS)} (got {channel!r}).")
    if direction not in DIRECTIONS:
        raise ValidationError(f"Direction must be inbound or outbound (got {direction!r}).")
    if status not in COMM_STATUSES:
        raise ValidationError(f"Status must be one of {', '.join(COMM_STATUSES)} (got {status!r}).")
    if direction == "inbound" and status not in ("logged", "delivered", "replied"):
        raise ValidationError("An inbound message is logged, delivered or a reply; it cannot be opened or bounced.")
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or customer_id <= 0:
        raise ValidationError(f"Customer id must be a positive whole number, not {customer_id!r}.")
    subject = _text(subject, "The subject", MAX_MESSAGE_SUBJECT, required=True)
    body = _text(body, "The body", MAX_BODY)
    campaign = _text(campaign, "The campaign", MAX_LABEL)
    template = _text(template, "The template", MAX_LABEL)
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"There is no customer {customer_id}.")
    if is_gone(customer.status):
        raise ValidationError(f"Customer {customer_id} is {customer.status}; log on the surviving record instead.")
    now = utcnow()
    when = occurred_at or now
    if when > now + dt.timedelta(minutes=5):
        raise ValidationError("A communication cannot be logged in the future.")
    rank = _STAGE_RANK.get(status, 0)
    entry = CustomerCommunication(
        customer_id=customer_id, channel=channel, direction=direction, status=status, campaign=campaign,
        template=template, subject=subject, body=body, sent_at=when,
        delivered_at=when if rank >= 1 else None, opened_at=when if rank >= 2 else None,
        clicked_at=when if rank >= 3 else None, replied_at=when if rank == 4 else None,
        logged_by_id=actor.id,
        sentiment_score=sentiment(f"{subject}. {body or ''}") if direction == "inbound" else None,
    )
    session.add(entry)
    session.flush()
    record_audit(session, actor, "communication.log", "communication", entry.id,
                 after={"customer_id": customer_id, "channel": channel, "direction": direction, "status": status,
                        "subject": subject})
    return entry


@dataclass(frozen=True)
class CommFilter:
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    channel: str | None = None
    campaign: str | None = None
    template: str | None = None


def _conditions(filters: CommFilter) -> list:
    c = CustomerCommunication
    conditions = []
    if filters.date_from:
        conditions.append(c.sent_at >= midnight(filters.date_from))
    if filters.date_to:
        conditions.append(c.sent_at < midnight(filters.date_to + dt.timedelta(days=1)))
    if filters.channel:
        if filters.channel not in COMM_CHANNELS:
            raise ValidationError(f"Unknown channel {filters.channel!r}.")
        conditions.append(c.channel == filters.channel)
    if filters.campaign:
        conditions.append(c.campaign == filters.campaign)
    if filters.template:
        conditions.append(c.template == filters.template)
    return conditions


def _rates(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: int(v or 0) if k not in ("channel", "campaign", "template") else v for k, v in row.items()}
    sent, delivered = out["sent"], out["delivered"]
    out["delivery_rate"] = round(delivered / sent, 4) if sent else 0.0
    out["open_rate"] = round(out["opened"] / delivered, 4) if delivered else 0.0
    out["click_rate"] = round(out["clicked"] / delivered, 4) if delivered else 0.0
    out["reply_rate"] = round(out["replied"] / delivered, 4) if delivered else 0.0
    out["bounce_rate"] = round(out["bounced"] / sent, 4) if sent else 0.0
    return out


def funnel_by_channel(session: Session, viewer: Actor, filters: CommFilter = CommFilter()) -> list[dict[str, Any]]:
    """Outbound messages per channel by the furthest funnel stage reached, with rates (from the
    communications rollup and the messages sent since it was built)."""
    require(viewer, "communications.view")
    rows = grouped_counts(session, ("channel",), filters.date_from, filters.date_to, _equal(filters),
                          _conditions(filters))
    return [_rates({k: row[k] for k in ("channel", *COUNTS)}) for row in sorted(rows, key=lambda r: r["channel"])]


def campaign_performance(session: Session, viewer: Actor, filters: CommFilter = CommFilter(), page: int = 1,
                         page_size: int = 25) -> Page:
    """Funnel figures per campaign and template, largest campaigns first."""
    require(viewer, "communications.view")
    conditions = [CustomerCommunication.campaign.is_not(None), *_conditions(filters)]
    rows = [row for row in grouped_counts(session, ("campaign", "template"), filters.date_from, filters.date_to,
                                          _equal(filters), conditions) if row["campaign"] != NONE]
    rows.sort(key=lambda r: (-r["sent"], r["campaign"], r["template"]))
    page = max(1, page)
    out = []
    for row in rows[(page - 1) * page_size: page * page_size]:
        data = _rates({k: row[k] for k in ("campaign", "template", *COUNTS)})
        data["template"] = data["template"] or None
        out.append({**data, "first_sent": row["first_sent"]})
    return Page(rows=out, total=len(rows), page=page, page_size=page_size)


def communication_filter_options(session: Session, viewer: Actor, limit: int = 500) -> dict[str, list[str]]:
    """Campaigns (most recent first) and templates for the filter pickers (of outbound messages)."""
    require(viewer, "communications.view")
    rows = grouped_counts(session, ("campaign", "template"), None, None, {}, [])
    last: dict[str, dt.datetime] = {}
    for row in rows:
        if row["campaign"] != NONE and row["last_sent"] is not None:
            last[row["campaign"]] = max(last.get(row["campaign"], row["last_sent"]), row["last_sent"])
    campaigns = sorted(last, key=lambda name: (-last[name].timestamp(), name))[:limit]
    templates = sorted({row["template"] for row in rows if row["template"] != NONE})[:limit]
    return {"campaign": campaigns, "template": templates}


def _equal(filters: CommFilter) -> dict[str, str | None]:
    return {"channel": filters.channel, "campaign": filters.campaign, "template": filters.template}


def customer_communications(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 20,
                            channel: str | None = None) -> Page:
    """One customer's communications, newest first (also for the Customer 360 timeline)."""
    require(viewer, "communications.view")
    c = CustomerCommunication
    conditions = [c.customer_id == customer_id]
    if channel:
        conditions.append(c.channel == channel)
    total = session.scalar(select(func.count()).select_from(c).where(*conditions)) or 0
    page = max(1, page)
    rows = session.execute(
        select(c.id, c.sent_at, c.channel, c.direction, c.status, c.subject, c.campaign, c.template, c.body,
               c.sentiment_score, User.username)
        .outerjoin(User, User.id == c.logged_by_id)
        .where(*conditions).order_by(c.sent_at.desc(), c.id.desc()).limit(page_size).offset((page - 1) * page_size)
    ).all()
    # a campaign's message carries its voucher code: shortened for roles that may not see whole codes
    bodies = mask_codes_in(session, viewer, customer_id, [row.body for row in rows])
    return Page(rows=[{"id": i, "time": at, "channel": ch, "direction": d, "status": s, "subject": subj,
                       "campaign": camp, "template": tpl, "body": body, "sentiment": sent, "logged_by": who}
                      for (i, at, ch, d, s, subj, camp, tpl, _, sent, who), body in zip(rows, bodies, strict=True)],
                total=total, page=page, page_size=page_size)


def monthly_volume(session: Session, viewer: Actor, months: int = 12, as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Messages per month, channel and direction (for the volume chart)."""
    require(viewer, "communications.view")
    as_of = as_of or data_date(session).day
    start = dt.date(as_of.year, as_of.month, 1)
    for _ in range(months - 1):
        start = (start - dt.timedelta(days=1)).replace(day=1)
    c = CustomerCommunication
    month = year_month(c.sent_at)
    rows = session.execute(select(month, c.channel, c.direction, func.count())
                           .where(c.sent_at >= midnight(start))
                           .group_by(month, c.channel, c.direction).order_by(month)).all()
    return [{"month": m, "channel": ch, "direction": d, "messages": int(n)} for m, ch, d, n in rows]
