"""Acting on a mention: one click opens a support ticket for the customer who wrote it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.service.tickets import DESCRIPTION_MAX, create_ticket
from db.models import SocialMention, SupportTicket

# A negative mention in public is answered quickly: its ticket starts at high priority.
MENTION_TICKET_PRIORITY = "high"


def open_ticket_from_mention(session: Session, actor: Actor, mention_id: Any, priority: str = MENTION_TICKET_PRIORITY,
                             now: dt.datetime | None = None) -> SupportTicket:
    """A ticket (channel social) for the mention's customer with its text and link; the mention keeps it."""
    require(actor, "tickets.manage")
    mention = session.get(SocialMention, mention_id) if isinstance(mention_id, int) else None
    if mention is None:
        raise NotFound(f"No mention with id {mention_id}.")
    if mention.ticket_id is not None:
        existing = session.get(SupportTicket, mention.ticket_id)
        number = existing.ticket_number if existing else mention.ticket_id
        raise ConflictError(f"A ticket was already opened from this mention ({number}).")
    if mention.customer_id is None:
        raise ValidationError("This mention is not matched to a customer: link the author's handle to a customer "
                              "(Social page, Accounts) before opening a ticket.")
    who = f"@{mention.author}" if mention.author else "a customer"
    description = f"{mention.platform.capitalize()} post by {who} on {mention.posted_at:%Y-%m-%d %H:%M}:\n\n{mention.text}"
    if mention.url:
        description += f"\n\n{mention.url}"
    ticket = create_ticket(session, actor, mention.customer_id, f"{mention.platform.capitalize()} mention by {who}"[:255],
                           description[:DESCRIPTION_MAX], category="other", priority=priority, channel="social", now=now)
    mention.ticket_id = ticket.id
    session.flush()
    record_audit(session, actor, "mention.ticket", "social_mention", mention.id,
                 after={"ticket": ticket.ticket_number, "customer_id": mention.customer_id})
    return ticket
