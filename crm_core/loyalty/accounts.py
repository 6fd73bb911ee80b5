"""One member's account: enrolment, points for an order, redemption, programme rewards and taking them back.

Each call locks the account first (see `ledger`), so concurrent calls queue; earning is idempotent
per order (the key "earn:order:<order id>"), redemptions and rewards per the caller's key.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.customers.rules import UNREWARDABLE_STATUSES
from crm_core.loyalty.ledger import entry_by_key, lock_account, post_entry
from crm_core.loyalty.rules import EARNING_ORDER_STATUSES, get_settings, order_points
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.risk.decisions import enforce
from db.models import LOYALTY_TIERS, Customer, LoyaltyAccount, LoyaltyTierChange, LoyaltyTransaction, Order, utcnow


def enroll(session: Session, actor: Actor, customer_id: int, program: str = "Rewards") -> LoyaltyAccount:
    """Open a bronze account for a customer (refused if they already have one)."""
    require(actor, "loyalty.adjust")
    return _open_account(session, actor, customer_id, program)


def _open_account(session: Session, actor: Actor, customer_id: int, program: str = "Rewards") -> LoyaltyAccount:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"There is no customer {customer_id}.")
    if customer.status in UNREWARDABLE_STATUSES:
        raise ValidationError(f"Customer {customer_id} is {customer.status} and cannot join the programme.")
    existing = session.scalars(select(LoyaltyAccount).where(LoyaltyAccount.customer_id == customer_id)).one_or_none()
    if existing is not None:
        raise ValidationError(f"Customer {customer_id} is already a member (tier {existing.tier}).")
    now = utcnow()
    account = LoyaltyAccount(customer_id=customer_id, program=program, tier=LOYALTY_TIERS[0], points_balance=0,
                             lifetime_points=0, status="active", enrolled_at=now, tier_updated_at=now)
    session.add(account)
    session.flush()
    session.add(LoyaltyTierChange(account_id=account.id, from_tier=None, to_tier=LOYALTY_TIERS[0], changed_at=now))
    record_audit(session, actor, "loyalty.enroll", "loyalty_account", account.id, after={"customer_id": customer_id})
    return account


def earn_key(order_id: int) -> str:
    return f"earn:order:{order_id}"


def earn_for_order(session: Session, actor: Actor, order_id: int) -> LoyaltyTransaction | None:
    """Post the points of one order; a second call returns the entry of the first (no-op).

    Returns None when the order earns no points (a zero total)."""
    require(actor, "loyalty.adjust")
    key = earn_key(order_id)
    existing = entry_by_key(session, key)
    if existing is not None:
        return existing
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound(f"There is no order {order_id}.")
    if order.status not in EARNING_ORDER_STATUSES:
        raise ValidationError(f"Order {order.order_number} is {order.status}; only paid, shipped or delivered orders earn points.")
    account = lock_account(session, order.customer_id)
    existing = entry_by_key(session, key)  # re-check under the lock: a concurrent call may have posted it
    if existing is not None:
        return existing
    if order.ordered_at < account.enrolled_at:
        raise ValidationError(f"Order {order.order_number} was placed before the customer joined the programme.")
    settings, _ = get_settings(session)
    points = order_points(order.total, account.tier, settings)
    if points <= 0:
        return None
    entry = post_entry(session, account, "earn", points, actor, reason=f"Points for order {order.order_number}",
                       source_type="order", source_id=str(order_id), key=key)
    record_audit(session, actor, "loyalty.earn", "loyalty_account", account.id,
                 after={"order_id": order_id, "points": points, "balance_after": entry.balance_after})
    return entry


def _positive_points(points: Any, what: str) -> int:
    if isinstance(points, bool) or not isinstance(points, int | float) or int(points) != points:
        raise ValidationError(f"{what} must be a whole number of points, not {points!r}.")
    if points <= 0:
        raise ValidationError(f"{what} must be more than 0 points (got {points}).")
    return int(points)


def redeem(session: Session, actor: Actor, customer_id: int, points: int, reason: str = "Redemption",
           idempotency_key: str | None = None) -> LoyaltyTransaction:
    """Spend points; refused (nothing written) when the balance is too small."""
    require(actor, "loyalty.adjust")
    enforce(session, customer_id, "loyalty_redeem")
    points = _positive_points(points, "A redemption")
    reason = (reason or "").strip() or "Redemption"
    existing = entry_by_key(session, idempotency_key)
    if existing is not None:
        return existing
    account = lock_account(session, customer_id)
    existing = entry_by_key(session, idempotency_key)
    if existing is not None:
        return existing
    if account.status != "active":
        raise ValidationError(f"The loyalty account of customer {customer_id} is {account.status}.")
    entry = post_entry(session, account, "redeem", -points, actor, reason=reason, source_type="redemption",
                       source_id=idempotency_key, key=idempotency_key)
    record_audit(session, actor, "loyalty.redeem", "loyalty_account", account.id,
                 after={"points": -points, "balance_after": entry.balance_after, "reason": reason})
    return entry


def credit_reward(session: Session, actor: Actor, customer_id: int, points: int, reason: str, *,
                  source_type: str, source_id: str, idempotency_key: str,
                  authorised_by: str = "loyalty.adjust") -> LoyaltyTransaction:
    """Post programme points (a referral reward, a campaign's incentive) once per key, enrolling the
    customer when needed. `authorised_by` is the permission the paying programme acts under
    (campaigns.manage for a campaign's points); by default, the loyalty adjuster's."""
    require(actor, authorised_by)
    points = _positive_points(points, "A reward")
    existing = entry_by_key(session, idempotency_key)
    if existing is not None:
        return existing
    if session.scalar(select(LoyaltyAccount.id).where(LoyaltyAccount.customer_id == customer_id)) is None:
        _open_account(session, actor, customer_id)
    account = lock_account(session, customer_id)
    entry = post_entry(session, account, "earn", points, actor, reason=reason, source_type=source_type,
                       source_id=source_id, key=idempotency_key)
    record_audit(session, actor, "loyalty.reward", "loyalty_account", account.id,
                 after={"points": points, "balance_after": entry.balance_after, "reason": reason})
    return entry


def take_back_reward(session: Session, actor: Actor, customer_id: int, points: int, reason: str, *,
                     source_type: str, source_id: str, idempotency_key: str) -> int:
    """Take programme points back once per key, at most what the balance still holds; how many."""
    require(actor, "loyalty.adjust")
    if entry_by_key(session, idempotency_key) is not None:
        return 0
    account = lock_account(session, customer_id)
    amount = min(points, account.points_balance)
    if amount <= 0:
        return 0
    post_entry(session, account, "reverse", -amount, actor, reason=reason, source_type=source_type, source_id=source_id,
               key=idempotency_key)
    account.lifetime_points = max(0, account.lifetime_points - amount)
    record_audit(session, actor, "loyalty.reward_reverse", "loyalty_account", account.id,
                 after={"points": -amount, "reason": reason})
    return amount
