"""NPS and CSAT answers: validation, NPS (% promoters - % detractors) overall and by month, CSAT.

A detractor (NPS 0-6) opens a follow-up ticket for the customer; the answer keeps the ticket's id,
so recording or re-processing the same answer never opens a second one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.sql import year_month
from crm_core.service import tickets
from db.models import SURVEY_TYPES, Customer, SupportTicket, SupportTicketEvent, SurveyResponse, utcnow

SCORE_RANGES = {"nps": (0, 10), "csat": (1, 5)}
DETRACTOR_MAX = 6
PROMOTER_MIN = 9
COMMENT_MAX = 2000


def _score(survey_type: Any, score: Any) -> tuple[str, int]:
    if survey_type not in SURVEY_TYPES:
        raise ValidationError(f"Survey type must be one of {', '.join(SURVEY_TYPES)} (got {survey_type!r}).")
    low, high = SCORE_RANGES[survey_type]
    if isinstance(score, bool) or not isinstance(score, int):
        raise ValidationError(f"A {survey_type.upper()} score must be a whole number from {low} to {high}, "
                              f"not {score!r}.")
    if not low <= score <= high:
        raise ValidationError(f"A {survey_type.upper()} score must be from {low} to {high} (got {score}).")
    return survey_type, score


def _comment(comment: Any) -> str | None:
    if comment is None:
        return None
    if not isinstance(comment, str):
        raise ValidationError("The comment must be text.")
    comment = comment.strip()
    if len(comment) > COMMENT_MAX:
        raise ValidationError(f"The comment is at most {COMMENT_MAX:,} characters.")
    return comment or None


def record_survey_answer(session: Session, actor: Actor, customer_id: Any, survey_type: Any, score: Any, comment: Any = None,
                  ticket_id: int | None = None, responded_at: dt.datetime | None = None) -> SurveyResponse:
    """Store an NPS or CSAT answer; an NPS detractor gets a follow-up ticket."""
    require(actor, "surveys.record")
    survey_type, score = _score(survey_type, score)
    comment = _comment(comment)
    if isinstance(customer_id, bool) or not isinstance(customer_id, int) or session.get(Customer, customer_id) is None:
        raise ValidationError(f"Customer {customer_id!r} does not exist.")
    if ticket_id is not None:
        ticket = session.get(SupportTicket, ticket_id)
        if ticket is None or ticket.customer_id != customer_id:
            raise ValidationError(f"Ticket {ticket_id} does not exist or belongs to another customer.")
    answer = SurveyResponse(customer_id=customer_id, survey_type=survey_type, score=score, comment=comment,
                            ticket_id=ticket_id, responded_at=responded_at or utcnow())
    session.add(answer)
    session.flush()
    record_audit(session, actor, f"survey.{survey_type}", "survey_response", answer.id,
                 after={"customer_id": customer_id, "score": score, "ticket_id": ticket_id})
    if survey_type == "nps" and score <= DETRACTOR_MAX:
        open_follow_up(session, actor, answer.id)
    return answer


def open_follow_up(session: Session, actor: Actor, survey_id: int) -> SupportTicket:
    """The follow-up ticket of a detractor answer, opened once (idempotent)."""
    require(actor, "surveys.record")
    query = select(SurveyResponse).where(SurveyResponse.id == survey_id)
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update()
    answer = session.scalar(query)
    if answer is None:
        raise NotFound(f"Survey answer {survey_id} does not exist.")
    if answer.survey_type != "nps" or answer.score > DETRACTOR_MAX:
        raise ValidationError("Only NPS detractor answers (0-6) get a follow-up ticket.")
    if answer.follow_up_ticket_id is not None:
        existing = session.get(SupportTicket, answer.follow_up_ticket_id)
        if existing is not None:
            return existing
    ticket = tickets.create_ticket(
        session, actor, answer.customer_id, f"NPS follow-up: customer scored {answer.score}/10",
        "Detractor answer to the NPS survey. " + (f"Comment: {answer.comment}" if answer.comment else "No comment."),
        category="other", priority="high", channel="web",
    )
    answer.follow_up_ticket_id = ticket.id
    session.flush()
    record_audit(session, actor, "survey.follow_up", "survey_response", answer.id, after={"ticket_id": ticket.id})
    return ticket


def record_csat(session: Session, actor: Actor, ticket_id: int, rating: Any, comment: Any = None) -> SurveyResponse:
    """The customer's CSAT for a resolved (or closed) ticket; a second rating replaces the first."""
    require(actor, "surveys.record")
    _, rating = _score("csat", rating)
    comment = _comment(comment)
    ticket = session.get(SupportTicket, ticket_id)
    if ticket is None:
        raise NotFound(f"Ticket {ticket_id} does not exist.")
    if ticket.status not in ("resolved", "closed"):
        raise ValidationError(f"Ticket {ticket.ticket_number} is {ticket.status.replace('_', ' ')}; "
                              "CSAT is asked once it is resolved.")
    before = ticket.csat_rating
    answer = session.scalar(select(SurveyResponse).where(SurveyResponse.ticket_id == ticket.id,
                                                         SurveyResponse.survey_type == "csat"))
    if answer is None:
        answer = SurveyResponse(customer_id=ticket.customer_id, survey_type="csat", ticket_id=ticket.id,
                                score=rating, comment=comment, responded_at=utcnow())
        session.add(answer)
    else:
        answer.score, answer.comment, answer.responded_at = rating, comment, utcnow()
    ticket.csat_rating = rating
    session.add(SupportTicketEvent(ticket_id=ticket.id, event="csat_recorded", detail={"rating": rating},
                                           actor_id=actor.id, occurred_at=utcnow()))
    tickets.flush_ticket(session, ticket)
    record_audit(session, actor, "survey.csat", "support_ticket", ticket.id, before={"csat_rating": before},
                 after={"csat_rating": rating})
    return answer


def _nps_columns():
    s = SurveyResponse
    return (func.count(), func.sum(case((s.score >= PROMOTER_MIN, 1), else_=0)),
            func.sum(case((s.score <= DETRACTOR_MAX, 1), else_=0)))


def _nps_row(n, promoters, detractors) -> dict[str, Any]:
    n, promoters, detractors = int(n or 0), int(promoters or 0), int(detractors or 0)
    return {"responses": n, "promoters": promoters, "passives": n - promoters - detractors, "detractors": detractors,
            "nps": round(100 * (promoters - detractors) / n, 1) if n else None}


def nps_summary(session: Session, viewer: Actor, start: dt.datetime | None = None, end: dt.datetime | None = None) -> dict[str, Any]:
    """NPS = % promoters (9-10) - % detractors (0-6), over answers in [start, end)."""
    require(viewer, "sla.view")
    s = SurveyResponse
    query = select(*_nps_columns()).where(s.survey_type == "nps")
    if start:
        query = query.where(s.responded_at >= start)
    if end:
        query = query.where(s.responded_at < end)
    return _nps_row(*session.execute(query).one())


def nps_trend(session: Session, viewer: Actor, now: dt.datetime, months: int = 12) -> list[dict[str, Any]]:
    """NPS per calendar month for the last `months` months."""
    require(viewer, "sla.view")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 60:
        raise ValidationError("Months must be between 1 and 60.")
    first = dt.datetime(now.year, now.month, 1)
    for _ in range(months - 1):
        first = (first - dt.timedelta(days=1)).replace(day=1)
    s = SurveyResponse
    month = year_month(s.responded_at).label("month")
    rows = session.execute(select(month, *_nps_columns()).where(s.survey_type == "nps", s.responded_at >= first)
                           .group_by(month).order_by(month)).all()
    return [{"month": r[0], **_nps_row(*r[1:])} for r in rows]


def csat_summary(session: Session, viewer: Actor, start: dt.datetime | None = None) -> dict[str, Any]:
    """Average CSAT and the share of satisfied answers (4-5)."""
    require(viewer, "sla.view")
    s = SurveyResponse
    query = select(func.count(), func.avg(s.score), func.sum(case((s.score >= 4, 1), else_=0))).where(
        s.survey_type == "csat")
    if start:
        query = query.where(s.responded_at >= start)
    n, avg, satisfied = session.execute(query).one()
    n = int(n or 0)
    return {"responses": n, "average": round(float(avg), 2) if avg is not None else None,
            "satisfied_pct": round(100 * int(satisfied or 0) / n, 1) if n else None}
