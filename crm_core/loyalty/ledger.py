"""The append-only points ledger: posting one entry to a locked account, and the FIFO expiry formula.

Ledger invariants
-----------------
* Every change of a balance is one `customer_loyalty_transactions` row carrying `balance_after`;
  rows are never updated or deleted, so `recompute_balance` can always check the account.
* Every write first locks the account row (`SELECT ... FOR UPDATE` on PostgreSQL; on SQLite a
  no-op UPDATE takes the database write lock at once, the equivalent of BEGIN IMMEDIATE), then
  reads the balance, so concurrent redemptions queue instead of overdrawing. CHECK constraints
  (`points_balance >= 0`, `balance_after >= 0`) are the last line of defence.
* Earning is idempotent: the key "earn:order:<order id>" is unique in the ledger; a second call
  returns the existing entry. Redemptions and adjustments accept an optional key too.
* Lifetime points (the tier basis) grow with earnings and positive adjustments; tiers only rise,
  each change writes a `customer_loyalty_tier_changes` row with its date.

Expiry (first in, first out)
----------------------------
Points are spent oldest first: every debit (redemption, expiry, negative adjustment) consumes
the oldest credits still unspent. Hence, for a cut-off date C = as_of - expiry_days, the points
of credits dated before C that are still unspent are

    max(0, sum(credits before C) - sum(all debits so far))

because all credits before C come first in FIFO order. `expire_points` posts exactly that as an
"expire" entry per account, set-based; running it twice for the same date expires nothing more
(the first run's expiry is itself a debit). `expiry_outlook` evaluates the same formula at each
future month end to show how many points will lapse per month if nothing is redeemed.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, select, update
from sqlalchemy.orm import Session

from crm_core.loyalty.rules import get_settings, tier_for
from crm_core.platform.actors import Actor
from crm_core.platform.errors import NotFound, ValidationError
from db.models import LOYALTY_TIERS, Customer, LoyaltyAccount, LoyaltyTierChange, LoyaltyTransaction, utcnow

MAX_REASON = 255


class InsufficientPoints(ValidationError):
    """A debit larger than the balance."""


def is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def lock_account(session: Session, customer_id: int) -> LoyaltyAccount:
    """The customer's account, locked for this transaction (see the module docstring)."""
    if is_sqlite(session):
        # Take SQLite's write lock before reading, so the balance read below cannot go stale.
        session.execute(
            update(LoyaltyAccount)
            .where(LoyaltyAccount.customer_id == customer_id)
            .values(points_balance=LoyaltyAccount.points_balance)
            .execution_options(synchronize_session=False)
        )
    account = session.scalars(
        select(LoyaltyAccount)
        .where(LoyaltyAccount.customer_id == customer_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one_or_none()
    if account is None:
        if session.get(Customer, customer_id) is None:
            raise NotFound(f"There is no customer {customer_id}.")
        raise NotFound(f"Customer {customer_id} is not a loyalty member; enrol them first.")
    return account


def lock_accounts(session: Session, account_ids) -> None:
    """Lock the given accounts (a subquery of ids) on PostgreSQL; SQLite holds its write lock."""
    if is_sqlite(session):
        session.execute(update(LoyaltyAccount).where(LoyaltyAccount.id.in_(account_ids))
                        .values(version=LoyaltyAccount.version).execution_options(synchronize_session=False))
    else:
        session.execute(select(LoyaltyAccount.id).where(LoyaltyAccount.id.in_(account_ids)).with_for_update())


def entry_by_key(session: Session, key: str | None) -> LoyaltyTransaction | None:
    if not key:
        return None
    return session.scalars(select(LoyaltyTransaction).where(LoyaltyTransaction.idempotency_key == key)).one_or_none()


def post_entry(session: Session, account: LoyaltyAccount, kind: str, points: int, actor: Actor, *, reason: str,
               source_type: str | None = None, source_id: str | None = None, key: str | None = None,
               approved_by_id: int | None = None, now: dt.datetime | None = None) -> LoyaltyTransaction:
    """Append one ledger entry to a locked account and move its balance, lifetime and tier."""
    now = now or utcnow()
    balance_after = account.points_balance + points
    if balance_after < 0:
        raise InsufficientPoints(
            f"Customer {account.customer_id} has {account.points_balance:,} points; "
            f"{-points:,} cannot be taken off (the balance can never go negative)."
        )
    if account.status != "active" and points > 0:
        raise ValidationError(f"The loyalty account of customer {account.customer_id} is {account.status}.")
    entry = LoyaltyTransaction(
        account_id=account.id, customer_id=account.customer_id, kind=kind, points=points,
        balance_after=balance_after, source_type=source_type, source_id=source_id, idempotency_key=key,
        reason=reason[:MAX_REASON], created_by_id=actor.id, approved_by_id=approved_by_id,
        created_at=now,
    )
    session.add(entry)
    account.points_balance = balance_after
    if points > 0 and kind in ("earn", "adjust"):
        account.lifetime_points += points
    settings, _ = get_settings(session)
    new_tier = tier_for(account.lifetime_points, settings["tier_thresholds"])
    if LOYALTY_TIERS.index(new_tier) > LOYALTY_TIERS.index(account.tier):
        session.add(LoyaltyTierChange(account_id=account.id, from_tier=account.tier, to_tier=new_tier, changed_at=now))
        account.tier = new_tier
        account.tier_updated_at = now
    session.flush()
    return entry


def expiring_by_account(cutoffs: list[dt.datetime]):
    """Per account: points of credits dated before each cut-off still unspent under FIFO."""
    t = LoyaltyTransaction
    debits = func.coalesce(func.sum(case((t.points < 0, -t.points), else_=0)), 0)
    columns = [t.account_id.label("account_id"), func.max(t.customer_id).label("customer_id")]
    for i, cutoff in enumerate(cutoffs):
        credits = func.coalesce(func.sum(case((and_(t.points > 0, t.created_at < cutoff), t.points), else_=0)), 0)
        unspent = credits - debits
        columns.append(case((unspent > 0, unspent), else_=0).label(f"due_{i}"))
    return select(*columns).group_by(t.account_id)


def recompute_balance(session: Session, customer_id: int) -> dict[str, Any]:
    """Check an account against its ledger: the sum of entries, the last balance_after, the stored balance."""
    account = session.scalars(select(LoyaltyAccount).where(LoyaltyAccount.customer_id == customer_id)).one_or_none()
    if account is None:
        raise NotFound(f"Customer {customer_id} is not a loyalty member.")
    t = LoyaltyTransaction
    mine = t.customer_id == customer_id  # one account per customer; this column is indexed
    ledger_sum = session.scalar(select(func.coalesce(func.sum(t.points), 0)).where(mine)) or 0
    last = session.scalar(select(t.balance_after).where(mine).order_by(t.id.desc()).limit(1))
    lowest = session.scalar(select(func.min(t.balance_after)).where(mine))
    return {
        "balance": account.points_balance, "ledger_sum": int(ledger_sum), "last_balance_after": last,
        "lowest_balance_after": lowest,
        "consistent": account.points_balance == ledger_sum and (last is None or last == ledger_sum),
    }
