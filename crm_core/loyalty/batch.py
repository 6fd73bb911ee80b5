"""The loyalty batch jobs (the refresh and `crm loyalty ...`): earn points for orders, take back the
points of orders not paid for, expire old points. Each is set-based, idempotent (a key per entry)
and runs in one write unit of work, retried when it loses a clash with a concurrent writer."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import TypeVar

from sqlalchemy import (
    Engine,
    Integer,
    String,
    and_,
    case,
    cast,
    exists,
    func,
    insert,
    literal,
    select,
    type_coerce,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from crm_core.loyalty.ledger import expiring_by_account, is_sqlite, lock_accounts
from crm_core.loyalty.rules import EARNING_ORDER_STATUSES, get_settings, retier
from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import check_as_of, midnight
from crm_core.platform.errors import ConflictError, DomainError, ServiceUnavailable
from crm_core.platform.permissions import require
from crm_core.platform.sql import least, rows_affected
from crm_core.platform.transactions import unit_of_work
from db.models import LOYALTY_TIERS, UNDONE_ORDER_STATUSES, LoyaltyAccount, LoyaltyTransaction, Order, utcnow

T = TypeVar("T")

# How many times a batch job runs before a clash with concurrent writers is reported, and the pause
# before each new attempt (times the attempt's number).
RETRY_ATTEMPTS = 4
RETRY_PAUSE_SECONDS = 0.05


def _worth_retrying(error: DomainError) -> bool:
    """Whether a fresh attempt can win what the unit of work reported: a version or unique clash with a
    concurrent writer, a database busy beyond its timeout, a deadlock or a serialization failure. Not a
    lost connection, and not a conflict the work found itself (a request already decided)."""
    cause = error.__cause__
    if isinstance(error, ConflictError):
        return isinstance(cause, StaleDataError | IntegrityError)
    if isinstance(error, ServiceUnavailable) and isinstance(cause, OperationalError):
        text = str(cause.orig or "").lower()
        return any(word in text for word in ("locked", "busy", "deadlock", "could not serialize"))
    return False


def run_with_retry(engine: Engine, work: Callable[[Session], T], attempts: int = RETRY_ATTEMPTS) -> T:
    """Run `work(session)` in a write unit of work (`platform.unit_of_work(engine, write=True)`), again
    when it lost a clash with a concurrent writer, at most `attempts` times in all. What is not worth
    retrying, or still fails at the last attempt, propagates as the unit of work raised it: a
    ConflictError or ServiceUnavailable (one line for the caller), never a raw database error."""
    for attempt in range(1, attempts + 1):
        try:
            with unit_of_work(engine, write=True) as session:
                return work(session)
        except (ConflictError, ServiceUnavailable) as error:
            if attempt == attempts or not _worth_retrying(error):
                raise
        time.sleep(RETRY_PAUSE_SECONDS * attempt)
    raise ValueError(f"attempts must be at least 1, not {attempts}")


def _floor_to_int(expression):
    return cast(func.floor(expression), Integer)


def earn_for_orders(engine: Engine, since: dt.date | dt.datetime, now: dt.datetime | None = None, *,
                    actor: Actor = SYSTEM) -> dict[str, int]:
    """Post points for every earning order since `since` that has none yet (set-based).

    Orders of active members placed at or after enrolment count; the key "earn:order:<id>" makes
    the batch safe to re-run and to overlap with `earn_for_order`. A batch operation: `actor` (the
    batch's system actor by default) must be allowed to run the refresh."""
    require(actor, "refresh.run")
    now = now or utcnow()
    start = since if isinstance(since, dt.datetime) else midnight(since)

    def work(session: Session) -> dict[str, int]:
        settings, _ = get_settings(session)
        a, o, t = LoyaltyAccount, Order, LoyaltyTransaction
        multiplier = case(*[(a.tier == tier, settings["tier_multipliers"][tier]) for tier in LOYALTY_TIERS], else_=1.0)
        points = _floor_to_int(o.total * settings["points_per_currency_unit"] * multiplier)
        key = literal("earn:order:") + cast(o.id, String)
        already = exists().where(t.idempotency_key == key)
        candidates = (
            select(a.id.label("account_id"), a.customer_id, o.id.label("order_id"), o.order_number, o.ordered_at,
                   a.points_balance, points.label("points"), key.label("key"))
            .join(o, o.customer_id == a.customer_id)
            .where(a.status == "active", o.status.in_(EARNING_ORDER_STATUSES), o.ordered_at >= start,
                   o.ordered_at >= a.enrolled_at, o.ordered_at <= now, points > 0, ~already)
        ).subquery("candidates")
        lock_accounts(session, select(candidates.c.account_id).distinct())
        c = candidates.c
        running = func.sum(c.points).over(partition_by=c.account_id, order_by=(c.ordered_at, c.order_id),
                                          rows=(None, 0))
        inserted = rows_affected(session.execute(insert(t).from_select(
            ["account_id", "customer_id", "kind", "points", "balance_after", "source_type", "source_id",
             "idempotency_key", "reason", "created_at"],
            select(c.account_id, c.customer_id, literal("earn"), c.points, c.points_balance + running,
                   literal("order"), cast(c.order_id, String), c.key,
                   literal("Points for order ") + c.order_number, literal(now)),
        ))) or 0
        batch = and_(t.customer_id == a.customer_id, t.kind == "earn", t.source_type == "order", t.created_at == now)
        gained = select(func.coalesce(func.sum(t.points), 0)).where(batch).scalar_subquery()
        posted = exists().where(batch)
        session.execute(update(a).where(posted).values(
            points_balance=a.points_balance + gained, lifetime_points=a.lifetime_points + gained,
            version=a.version + 1).execution_options(synchronize_session=False))
        raised = retier(session, settings["tier_thresholds"], now,
                        account_ids=select(t.account_id).where(t.kind == "earn", t.created_at == now))
        total_points = session.scalar(select(func.coalesce(func.sum(t.points), 0))
                                      .where(t.kind == "earn", t.source_type == "order", t.created_at == now)) or 0
        record_audit(session, SYSTEM, "loyalty.earn.batch", "loyalty_ledger", None,
                     after={"since": start, "entries": inserted, "points": int(total_points), "tiers_raised": raised})
        return {"entries": inserted, "points": int(total_points), "tiers_raised": raised}

    return run_with_retry(engine, work)


def reverse_for_orders(engine: Engine, since: dt.date | dt.datetime, now: dt.datetime | None = None, *,
                       actor: Actor = SYSTEM) -> dict[str, int]:
    """Take back the points of orders cancelled, returned or refunded after they earned (set-based).

    Each such order gets one "reverse" entry (key "reverse:order:<id>") of at most the points it
    earned and at most what the balance still holds, taken in order id within an account: with
    R(k) the running total of points earned by an account's reversible orders, the k-th entry is
    min(balance, R(k)) - min(balance, R(k-1)). Points already spent are not clawed back into a
    negative balance; an order that could take nothing back gets no entry and is looked at again
    by the next run. Lifetime points go down by the same amount (tiers are not lowered). Orders
    placed before `since` are not looked at (the refresh passes a year: refunds come sooner).
    A batch operation: `actor` must be allowed to run the refresh.
    """
    require(actor, "refresh.run")
    now = now or utcnow()
    start = since if isinstance(since, dt.datetime) else midnight(since)

    def work(session: Session) -> dict[str, int]:
        a, o, t = LoyaltyAccount, Order, LoyaltyTransaction
        earned = LoyaltyTransaction.__table__.alias("earned")
        order_id = cast(o.id, String)
        key = literal("reverse:order:") + order_id
        # From the few reversed orders to their earn entries through the unique idempotency key.
        pending = (
            select(earned.c.account_id, earned.c.customer_id, earned.c.source_id, earned.c.points, o.id.label("order_id"),
                   o.order_number, key.label("key"))
            .select_from(o)
            .join(earned, earned.c.idempotency_key == literal("earn:order:") + order_id)
            .where(o.status.in_(UNDONE_ORDER_STATUSES), o.ordered_at >= start, earned.c.kind == "earn",
                   ~exists().where(t.idempotency_key == key))
        ).subquery("pending")
        lock_accounts(session, select(pending.c.account_id).distinct())
        running = func.sum(pending.c.points).over(partition_by=pending.c.account_id, order_by=pending.c.order_id,
                                                  rows=(None, 0))
        staged = select(pending, running.label("upto"), a.points_balance.label("balance")).join(
            a, a.id == pending.c.account_id).where(a.status == "active").subquery("staged")
        c = staged.c
        taken = type_coerce(least(c.balance, c.upto), Integer)
        before = type_coerce(least(c.balance, c.upto - c.points), Integer)
        inserted = rows_affected(session.execute(insert(t).from_select(
            ["account_id", "customer_id", "kind", "points", "balance_after", "source_type", "source_id",
             "idempotency_key", "reason", "created_at"],
            select(c.account_id, c.customer_id, literal("reverse"), -(taken - before), c.balance - taken,
                   literal("order"), c.source_id, c.key,
                   literal("Points taken back: order ") + c.order_number + literal(" was not paid for"), literal(now))
            .where(taken > before),
        ))) or 0
        batch = and_(t.customer_id == a.customer_id, t.kind == "reverse", t.created_at == now)
        lost = select(func.coalesce(func.sum(t.points), 0)).where(batch).scalar_subquery()
        session.execute(update(a).where(exists().where(batch)).values(
            points_balance=a.points_balance + lost, lifetime_points=func.max(a.lifetime_points + lost, 0)
            if is_sqlite(session) else func.greatest(a.lifetime_points + lost, 0),
            version=a.version + 1).execution_options(synchronize_session=False))
        points = -(session.scalar(select(func.coalesce(func.sum(t.points), 0))
                                  .where(t.kind == "reverse", t.created_at == now)) or 0)
        record_audit(session, SYSTEM, "loyalty.reverse.batch", "loyalty_ledger", None,
                     after={"entries": inserted, "points": int(points)})
        return {"entries": inserted, "points": int(points)}

    return run_with_retry(engine, work)


def expire_points(engine: Engine, as_of: dt.date, now: dt.datetime | None = None, *,
                  actor: Actor = SYSTEM) -> dict[str, int]:
    """Expire, first in first out, points earned more than `expiry_days` before `as_of` (set-based).

    One "expire" entry per account with an idempotency key per account and date; safe to re-run.
    A date after tomorrow or before 1900 is refused: expiry cannot be undone. A batch operation:
    `actor` must be allowed to run the refresh."""
    require(actor, "refresh.run")
    check_as_of(as_of, "The expiry date")
    now = now or utcnow()

    def work(session: Session) -> dict[str, int]:
        settings, _ = get_settings(session)
        cutoff = midnight(as_of - dt.timedelta(days=settings["expiry_days"]))
        due = expiring_by_account([cutoff]).subquery("due")
        lock_accounts(session, select(due.c.account_id).where(due.c.due_0 > 0))
        due = expiring_by_account([cutoff]).subquery("due_locked")  # recomputed under the locks
        a, t = LoyaltyAccount, LoyaltyTransaction
        key = literal(f"expire:{as_of.isoformat()}:") + cast(a.id, String)
        inserted = rows_affected(session.execute(insert(t).from_select(
            ["account_id", "customer_id", "kind", "points", "balance_after", "source_type", "source_id",
             "idempotency_key", "reason", "created_at"],
            select(a.id, a.customer_id, literal("expire"), -due.c.due_0, a.points_balance - due.c.due_0,
                   literal("expiry"), literal(as_of.isoformat()), key,
                   literal(f"Points earned before {cutoff.date().isoformat()} expired"), literal(now))
            .join(due, due.c.account_id == a.id)
            .where(due.c.due_0 > 0, ~exists().where(t.idempotency_key == key)),
        ))) or 0
        this_run = and_(t.idempotency_key == key, t.created_at == now)
        expired = select(t.points).where(this_run).scalar_subquery()
        session.execute(update(a).where(exists().where(this_run))
                        .values(points_balance=a.points_balance + expired, version=a.version + 1)
                        .execution_options(synchronize_session=False))
        points = -(session.scalar(select(func.coalesce(func.sum(t.points), 0))
                                  .where(t.kind == "expire", t.created_at == now)) or 0)
        record_audit(session, SYSTEM, "loyalty.expire", "loyalty_ledger", None,
                     after={"as_of": as_of, "cutoff": cutoff, "accounts": inserted, "points": int(points)})
        return {"accounts": inserted, "points": int(points)}

    return run_with_retry(engine, work)
