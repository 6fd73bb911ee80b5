"""What the Social page reads: mention volume and sentiment over time by platform, the share of
negative mentions, the most negative mentions with their customer, and the most-mentioned topics,
products, categories and brands. Every figure is one aggregate query over a date range of
`customer_social_media_mentions` or of its stored term matches (both indexed on posted_at); only
the paginated list returns rows.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, distinct, func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import display_name, sees_people
from crm_core.platform.actors import Actor
from crm_core.platform.dates import check_as_of, end_of, midnight
from crm_core.platform.errors import ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.sql import calendar_day, week_start, year_month
from crm_core.social.accounts import normalize_platform
from db.models import Customer, SocialMention, SocialMentionTerm, SupportTicket

MAX_PAGE_SIZE = 200


@dataclass(frozen=True)
class MentionFilter:
    """A date range (inclusive) and optionally one platform."""

    start: dt.date
    end: dt.date
    platform: str | None = None

    def checked(self) -> MentionFilter:
        if not isinstance(self.start, dt.date) or not isinstance(self.end, dt.date):
            raise ValidationError("Choose a start and an end date.")
        check_as_of(self.start, "The start date")
        check_as_of(self.end, "The end date")
        if self.start > self.end:
            raise ValidationError("The start date is after the end date.")
        platform = normalize_platform(self.platform) if self.platform else None
        return MentionFilter(self.start, self.end, platform)

    def conditions(self) -> list[Any]:
        m = SocialMention
        found = [m.posted_at >= midnight(self.start), m.posted_at <= end_of(self.end)]
        if self.platform:
            found.append(m.platform == self.platform)
        return found


def grain_for(start: dt.date, end: dt.date) -> str:
    """day up to two months, week up to about a year, month beyond (hundreds of points at most)."""
    days = (end - start).days
    return "day" if days <= 62 else "week" if days <= 400 else "month"


NEGATIVE = SocialMention.sentiment_label == "negative"


def mention_dates(session: Session, viewer: Actor) -> dict[str, Any]:
    """How many mentions there are and the dates of the first and the latest (None without any)."""
    require(viewer, "social.view")
    m = SocialMention
    total, first, last = session.execute(select(func.count(), func.min(m.posted_at), func.max(m.posted_at))).one()
    return {"mentions": int(total or 0), "first": first.date() if first else None,
            "last": last.date() if last else None}


def _count_if(condition) -> Any:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def mention_summary(session: Session, viewer: Actor, filters: MentionFilter) -> dict[str, Any]:
    """Mentions, average sentiment, share negative, matched to customers, tickets opened."""
    require(viewer, "social.view")
    f = filters.checked()
    m = SocialMention
    row = session.execute(select(
        func.count(), func.avg(m.sentiment_score), _count_if(NEGATIVE), _count_if(m.customer_id.is_not(None)),
        func.count(distinct(m.customer_id)), _count_if(m.ticket_id.is_not(None)), func.coalesce(func.sum(m.reach), 0),
    ).where(*f.conditions())).one()
    total = int(row[0] or 0)
    return {"mentions": total, "avg_sentiment": float(row[1]) if row[1] is not None else None,
            "negative": int(row[2]), "negative_share": int(row[2]) / total if total else None,
            "matched": int(row[3]), "matched_share": int(row[3]) / total if total else None,
            "customers": int(row[4]), "tickets": int(row[5]), "reach": int(row[6])}


def volume_over_time(session: Session, viewer: Actor, filters: MentionFilter) -> dict[str, Any]:
    """Mentions, average sentiment and negative mentions per period and platform."""
    require(viewer, "social.view")
    f = filters.checked()
    grain = grain_for(f.start, f.end)
    m = SocialMention
    period = {"day": calendar_day(m.posted_at), "week": week_start(m.posted_at),
              "month": year_month(m.posted_at)}[grain].label("period")
    rows = session.execute(
        select(period, m.platform, func.count().label("mentions"), func.avg(m.sentiment_score).label("sentiment"),
               _count_if(NEGATIVE).label("negative"))
        .where(*f.conditions()).group_by(period, m.platform).order_by(period, m.platform)
    ).all()
    return {"grain": grain, "rows": [
        {"period": str(r.period), "platform": r.platform, "mentions": int(r.mentions),
         "avg_sentiment": round(float(r.sentiment), 4) if r.sentiment is not None else None,
         "negative": int(r.negative), "negative_share": int(r.negative) / int(r.mentions) if r.mentions else None}
        for r in rows]}


def by_platform(session: Session, viewer: Actor, filters: MentionFilter) -> list[dict[str, Any]]:
    require(viewer, "social.view")
    f = filters.checked()
    m = SocialMention
    rows = session.execute(
        select(m.platform, func.count().label("mentions"), func.avg(m.sentiment_score).label("sentiment"),
               _count_if(NEGATIVE).label("negative"), _count_if(m.sentiment_label == "positive").label("positive"))
        .where(*f.conditions()).group_by(m.platform).order_by(func.count().desc())
    ).all()
    return [{"platform": r.platform, "mentions": int(r.mentions),
             "avg_sentiment": round(float(r.sentiment), 4) if r.sentiment is not None else None,
             "positive": int(r.positive), "negative": int(r.negative),
             "negative_share": int(r.negative) / int(r.mentions)} for r in rows]


def top_negative_mentions(session: Session, viewer: Actor, filters: MentionFilter, page: int = 1,
                          page_size: int = 20) -> Page:
    """Negative mentions, most negative (then widest reach) first, with their customer when matched.

    The customer's name is shown to roles that may view customers; others see only that one matched.
    """
    require(viewer, "social.view")
    f = filters.checked()
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"Page size must be between 1 and {MAX_PAGE_SIZE}.")
    page = max(1, int(page))
    m = SocialMention
    where = [*f.conditions(), NEGATIVE]
    total = session.scalar(select(func.count()).select_from(m).where(*where)) or 0
    rows = session.execute(
        select(m.id, m.posted_at, m.platform, m.author, m.text, m.url, m.reach, m.sentiment_score, m.customer_id,
               Customer.first_name, Customer.last_name, Customer.external_id, SupportTicket.id.label("ticket_id"),
               SupportTicket.ticket_number)
        .outerjoin(Customer, Customer.id == m.customer_id).outerjoin(SupportTicket, SupportTicket.id == m.ticket_id)
        .where(*where).order_by(m.sentiment_score, m.reach.desc(), m.id.desc())
        .limit(page_size).offset((page - 1) * page_size)
    ).all()
    names = sees_people(viewer)
    found = []
    for r in rows:
        customer = (display_name(r.first_name, r.last_name, r.customer_id, r.external_id) if names else "(matched)") \
            if r.customer_id is not None else None
        found.append({"mention_id": r.id, "posted_at": r.posted_at, "platform": r.platform,
                      "author": f"@{r.author}" if r.author else None, "text": r.text, "url": r.url,
                      "reach": r.reach, "sentiment": r.sentiment_score,
                      "customer_id": r.customer_id if names else None, "customer": customer,
                      "ticket_id": r.ticket_id, "ticket": r.ticket_number})
    return Page(rows=found, total=total, page=page, page_size=page_size)


def topic_counts(session: Session, viewer: Actor, filters: MentionFilter, limit: int = 15) -> list[dict[str, Any]]:
    """The most-mentioned topics, products, categories and brands (crm_core.social.topics), with how
    many of those mentions were negative: one GROUP BY over the stored matches of the range."""
    require(viewer, "social.view")
    f = filters.checked()
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= 100:
        raise ValidationError("Show between 1 and 100 terms.")
    t = SocialMentionTerm
    where = [t.posted_at >= midnight(f.start), t.posted_at <= end_of(f.end)]
    if f.platform:
        where.append(t.platform == f.platform)
    mentions = func.count()
    rows = session.execute(
        select(t.term, t.kind, mentions.label("mentions"), _count_if(t.negative).label("negative"))
        .where(*where).group_by(t.term, t.kind).order_by(mentions.desc(), t.term).limit(limit)
    ).all()
    return [{"term": r.term, "kind": r.kind, "mentions": int(r.mentions), "negative": int(r.negative),
             "negative_share": int(r.negative) / int(r.mentions)} for r in rows]
