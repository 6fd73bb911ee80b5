"""Decisions that take effect: reviewers approve, restrict or block; the core refuses what a
restriction or a block forbids, with the reason.

A restriction refuses loyalty and voucher redemptions, e-mail changes, referral rewards and orders
over its limit; a block closes every account action. Each decision has a reason, an expiry and an audit row.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, InvalidOperation

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import DomainError, NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from db.models import AccountChange, Customer, RiskDecision, RiskReview, utcnow

DECISION_DAYS = 30  # a decision without an expiry given lasts this long
RESTRICTED_ORDER_LIMIT = 200  # a restricted customer's largest order, unless the decision says otherwise
REVIEW_OUTCOMES = {"approve": "approved", "restrict": "restricted", "block": "blocked"}
# What a restriction refuses (a block refuses every action).
RESTRICTED_ACTIONS = {
    "loyalty_redeem": "redeem loyalty points",
    "voucher_redeem": "redeem a voucher",
    "email_change": "change the e-mail address",
    "referral_reward": "receive referral rewards",
}
ACCOUNT_ACTIONS = {**RESTRICTED_ACTIONS, "profile_edit": "change the profile", "order": "place an order"}
REASON_LIMIT = 500
MAX_DECISION_DAYS = 3650


class RiskRestricted(DomainError):
    """The customer's restriction or block forbids the action."""


def decisions_in_force(session: Session, customer_id: int, now: dt.datetime | None = None) -> list[RiskDecision]:
    now = now or utcnow()
    return list(session.scalars(select(RiskDecision).where(
        RiskDecision.customer_id == customer_id, RiskDecision.lifted_at.is_(None),
        or_(RiskDecision.expires_at.is_(None), RiskDecision.expires_at > now)).order_by(RiskDecision.id)))


def enforce(session: Session, customer_id: int, action: str, amount: Decimal | float | None = None,
            now: dt.datetime | None = None) -> None:
    """Raise RiskRestricted when a decision in force forbids `action` (one of ACCOUNT_ACTIONS)."""
    if action not in ACCOUNT_ACTIONS:
        raise ValueError(f"unknown account action {action!r}")
    decisions = decisions_in_force(session, customer_id, now)
    for decision in decisions:
        until = f" until {decision.expires_at:%Y-%m-%d}" if decision.expires_at else ""
        if decision.action == "block":
            raise RiskRestricted(f"Customer {customer_id} is blocked{until} ({decision.reason}): every account "
                                 f"action is closed, so they cannot {ACCOUNT_ACTIONS[action]}.")
    for decision in decisions:
        until = f" until {decision.expires_at:%Y-%m-%d}" if decision.expires_at else ""
        if action in RESTRICTED_ACTIONS:
            raise RiskRestricted(f"Customer {customer_id} is restricted{until} ({decision.reason}) and cannot "
                                 f"{RESTRICTED_ACTIONS[action]}.")
        if action == "order":
            limit = decision.order_limit if decision.order_limit is not None else Decimal(RESTRICTED_ORDER_LIMIT)
            if amount is not None and Decimal(str(amount)) > limit:
                raise RiskRestricted(f"Customer {customer_id} is restricted{until} ({decision.reason}): orders over "
                                     f"{limit:,.2f} are refused.")


def record_account_change(session: Session, customer_id: int, kind: str, when: dt.datetime | None = None) -> None:
    """Note a change of e-mail, password, phone, address or payout account (takeover signals read them)."""
    session.add(AccountChange(customer_id=customer_id, kind=kind, changed_at=when or utcnow()))


def check_order(session: Session, customer_id: int, total: Decimal | float, now: dt.datetime | None = None) -> None:
    """For order intake: refuse an order a block or a restriction's limit forbids."""
    enforce(session, customer_id, "order", total, now)


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give a reason for the decision.")
    if len(reason) > REASON_LIMIT:
        raise ValidationError(f"The reason has at most {REASON_LIMIT} characters.")
    return reason


def _expiry(days: int | None, now: dt.datetime) -> dt.datetime:
    days = DECISION_DAYS if days is None else days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_DECISION_DAYS:
        raise ValidationError(f"A decision lasts from 1 to {MAX_DECISION_DAYS} days.")
    return now + dt.timedelta(days=days)


def _limit(order_limit: Decimal | float | str | None) -> Decimal | None:
    if order_limit is None or order_limit == "":
        return None
    try:
        value = Decimal(str(order_limit))
    except InvalidOperation:
        raise ValidationError(f"The order limit {order_limit!r} is not an amount.") from None
    if not value.is_finite() or value < 0 or value > Decimal("1000000"):
        raise ValidationError("The order limit is an amount from 0 to 1,000,000.")
    return value.quantize(Decimal("0.01"))


def restrict_customer(session: Session, actor: Actor, customer_id: int, action: str, reason: str,
                      days: int | None = None, order_limit: Decimal | float | str | None = None,
                      review_id: int | None = None) -> RiskDecision:
    """Record a restriction or block on a customer, with its reason and expiry."""
    require(actor, "risk.review")
    if action not in ("restrict", "block"):
        raise ValidationError(f"Unknown decision {action!r}; use restrict or block.")
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    now = utcnow()
    decision = RiskDecision(customer_id=customer_id, action=action, reason=_reason(reason), created_by_id=actor.id,
                            created_at=now, expires_at=_expiry(days, now), review_id=review_id,
                            order_limit=_limit(order_limit) if action == "restrict" else None)
    session.add(decision)
    session.flush()
    record_audit(session, actor, f"risk.{action}", "customer", customer_id,
                 after={"decision": decision.id, "reason": decision.reason, "expires_at": decision.expires_at,
                        "order_limit": decision.order_limit, "review": review_id})
    return decision


def lift_decision(session: Session, actor: Actor, decision_id: int, reason: str) -> None:
    require(actor, "risk.review")
    decision = session.get(RiskDecision, decision_id)
    if decision is None:
        raise NotFound(f"Decision {decision_id} does not exist.")
    if decision.lifted_at is not None:
        raise ValidationError(f"Decision {decision_id} was already lifted.")
    decision.lifted_at = utcnow()
    record_audit(session, actor, "risk.lift", "customer", decision.customer_id,
                 before={"decision": decision.id, "action": decision.action}, after={"reason": _reason(reason)})


def decide_review(session: Session, actor: Actor, review_id: int, outcome: str, reason: str,
                  days: int | None = None, order_limit: Decimal | float | str | None = None,
                  expected_version: int | None = None) -> RiskReview:
    """Approve, restrict or block the customer of an open review; the outcome becomes its label."""
    require(actor, "risk.review")
    if outcome not in REVIEW_OUTCOMES:
        raise ValidationError(f"Unknown outcome {outcome!r}; use approve, restrict or block.")
    review = session.get(RiskReview, review_id)
    if review is None:
        raise NotFound(f"Review {review_id} does not exist.")
    check_version(review, expected_version, f"review {review_id}")
    if review.status != "open":
        raise ValidationError(f"Review {review_id} was already decided ({review.status}).")
    reason = _reason(reason)
    if outcome != "approve":
        restrict_customer(session, actor, review.customer_id, outcome, reason, days, order_limit, review.id)
    review.status = REVIEW_OUTCOMES[outcome]
    review.reason = reason
    review.decided_at = utcnow()
    review.decided_by_id = actor.id
    session.flush()
    record_audit(session, actor, "risk.review_decide", "risk_review", review.id,
                 before={"status": "open"}, after={"status": review.status, "reason": reason})
    return review
