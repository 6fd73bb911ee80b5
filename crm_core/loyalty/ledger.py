"""Loyalty programme: an append-only points ledger with balances, tiers, expiry and adjustments.

Rules are data in `app_settings` under "loyalty_settings" (no row means `DEFAULT_SETTINGS`):
tier thresholds on lifetime points, the earn rule (points per currency unit times the member's
tier multiplier, rounded down), the expiry age in days, the value of a point (for the liability
figure), the most points each role may adjust at once and the approval limit above which a
manual adjustment waits for a second person with `loyalty.approve`.

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
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

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

from crm_core.customers.rules import GONE_STATUSES, shown_name
from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import check_as_of, data_date, midnight
from crm_core.platform.errors import (
    ConflictError,
    DomainError,
    NotFound,
    PermissionDenied,
    ServiceUnavailable,
    ValidationError,
)
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import replace_summary
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.platform.sql import least, rows_affected, year_month
from crm_core.platform.transactions import unit_of_work
from crm_core.risk.decisions import enforce
from db.models import (
    LOYALTY_TIERS,
    REVENUE_ORDER_STATUSES,
    UNDONE_ORDER_STATUSES,
    Customer,
    LoyaltyAccount,
    LoyaltyAdjustmentRequest,
    LoyaltyTierChange,
    LoyaltyTransaction,
    Order,
    RollupSummary,
    User,
    utcnow,
)

SETTINGS_KEY = "loyalty_settings"
EARNING_ORDER_STATUSES = tuple(s for s in REVENUE_ORDER_STATUSES if s != "placed")  # paid, shipped, delivered
DEBIT_KINDS = ("redeem", "expire")
MAX_REASON = 255

# Lifetime points from which each tier starts (an admin may change them; see get_settings).
DEFAULT_TIER_THRESHOLDS: dict[str, int] = {"bronze": 0, "silver": 1_000, "gold": 5_000, "platinum": 15_000,
                                           "diamond": 40_000}
DEFAULT_SETTINGS: dict[str, Any] = {
    "tier_thresholds": DEFAULT_TIER_THRESHOLDS,
    "points_per_currency_unit": 1.0,
    "tier_multipliers": {"bronze": 1.0, "silver": 1.1, "gold": 1.25, "platinum": 1.5, "diamond": 2.0},
    "expiry_days": 730,
    "point_value": 0.01,
    "adjust_limits": {"admin": 50_000, "success_manager": 5_000, "support_agent": 1_000},
    "approval_limit": 1_000,
}

T = TypeVar("T")


class InsufficientPoints(ValidationError):
    """A debit larger than the balance."""


@dataclass(frozen=True)
class AdjustmentResult:
    """What `adjust` did: posted at once (`transaction`) or queued for approval (`request`)."""

    status: str  # "posted" or "pending"
    transaction: LoyaltyTransaction | None = None
    request: LoyaltyAdjustmentRequest | None = None
    why_pending: str = ""  # for a pending request: which limit it is above


# Manual adjustments a person posted without approval within this window add up against the
# approval limit: ten adjustments of 1,000 points need approval as one of 10,000 would.
ADJUSTMENT_WINDOW = dt.timedelta(hours=24)


def adjusted_without_approval(session: Session, actor: Actor, now: dt.datetime | None = None) -> int:
    """Points (added or removed) `actor` posted by hand without approval in the last ADJUSTMENT_WINDOW."""
    if actor.id is None:
        return 0
    since = (now or utcnow()) - ADJUSTMENT_WINDOW
    total = session.scalar(
        select(func.coalesce(func.sum(func.abs(LoyaltyTransaction.points)), 0)).where(
            LoyaltyTransaction.created_by_id == actor.id, LoyaltyTransaction.created_at >= since,
            LoyaltyTransaction.kind == "adjust", LoyaltyTransaction.source_type == "manual",
            LoyaltyTransaction.approved_by_id.is_(None)))
    return int(total or 0)


# --------------------------------------------------------------------------- settings


def get_settings(session: Session) -> tuple[dict[str, Any], int]:
    """The stored settings merged over the defaults, and their version (0 = never saved)."""
    value, version = stored_setting(session, SETTINGS_KEY)
    return {**_copy(DEFAULT_SETTINGS), **(value or {})}, version


def _copy(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: dict(v) if isinstance(v, dict) else v for k, v in settings.items()}


def _number(name: str, value: Any, *, whole: bool = False, minimum: float = 0, maximum: float | None = None):
    if isinstance(value, bool) or not isinstance(value, int | float):
        kind = "a whole number" if whole else "a number"
        raise ValidationError(f"{name} must be {kind}, not {value!r}.")
    if whole and int(value) != value:
        raise ValidationError(f"{name} must be a whole number, not {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        upper = f" and at most {maximum:g}" if maximum is not None else ""
        raise ValidationError(f"{name} must be at least {minimum:g}{upper} (got {value}).")
    return int(value) if whole else float(value)


def validate_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Complete the settings with the defaults and check every value."""
    if not isinstance(settings, dict):
        raise ValidationError("Loyalty settings must be a mapping of setting name to value.")
    unknown = sorted(set(settings) - set(DEFAULT_SETTINGS))
    if unknown:
        raise ValidationError(f"Unknown loyalty setting(s): {', '.join(unknown)}.")
    merged = {**_copy(DEFAULT_SETTINGS), **_copy(settings)}
    for name in ("tier_thresholds", "tier_multipliers"):
        if not isinstance(merged[name], dict) or set(merged[name]) != set(LOYALTY_TIERS):
            raise ValidationError(f"{name} needs exactly one value for each tier: {', '.join(LOYALTY_TIERS)}.")
    thresholds = {t: _number(f"Threshold of {t}", merged["tier_thresholds"][t], whole=True) for t in LOYALTY_TIERS}
    if thresholds["bronze"] != 0:
        raise ValidationError("The bronze threshold must be 0: every member starts in bronze.")
    for lower, higher in zip(LOYALTY_TIERS, LOYALTY_TIERS[1:], strict=False):
        if thresholds[higher] <= thresholds[lower]:
            raise ValidationError(
                f"The {higher} threshold ({thresholds[higher]:,}) must be above the {lower} threshold "
                f"({thresholds[lower]:,})."
            )
    merged["tier_thresholds"] = thresholds
    merged["tier_multipliers"] = {
        t: _number(f"Multiplier of {t}", merged["tier_multipliers"][t], minimum=0, maximum=10) for t in LOYALTY_TIERS
    }
    merged["points_per_currency_unit"] = _number("Points per currency unit", merged["points_per_currency_unit"],
                                                 minimum=0, maximum=1000)
    merged["expiry_days"] = _number("Expiry age in days", merged["expiry_days"], whole=True, minimum=30, maximum=3650)
    merged["point_value"] = _number("Value of a point", merged["point_value"], minimum=0, maximum=100)
    merged["approval_limit"] = _number("Approval limit", merged["approval_limit"], whole=True, minimum=1)
    limits = merged["adjust_limits"]
    if not isinstance(limits, dict):
        raise ValidationError("Adjustment limits must map a role to the most points it may adjust at once.")
    merged["adjust_limits"] = {
        str(role): _number(f"Adjustment limit of {role}", value, whole=True) for role, value in limits.items()
    }
    return merged


def save_settings(session: Session, actor: Actor, settings: dict[str, Any], expected_version: int | None) -> tuple[dict, int]:
    """Validate and store the settings; tiers are recomputed for every member at once."""
    require(actor, "loyalty.settings")
    new = validate_settings(settings)
    version = save_setting(session, actor, SETTINGS_KEY, new, expected_version,
                                what="The loyalty settings", action="loyalty.settings.save")
    _retier(session, new["tier_thresholds"], utcnow(), account_ids=None)
    return new, version


def tier_for(points: int, thresholds: dict[str, int]) -> str:
    reached = [t for t in LOYALTY_TIERS if points >= thresholds[t]]
    return reached[-1] if reached else LOYALTY_TIERS[0]


def _tier_case(lifetime, thresholds: dict[str, int]):
    whens = [(lifetime >= thresholds[t], t) for t in reversed(LOYALTY_TIERS[1:])]
    return case(*whens, else_=LOYALTY_TIERS[0])


# --------------------------------------------------------------------------- locking and posting


def _is_sqlite(session: Session) -> bool:
    return session.get_bind().dialect.name == "sqlite"


def _lock_account(session: Session, customer_id: int) -> LoyaltyAccount:
    """The customer's account, locked for this transaction (see the module docstring)."""
    if _is_sqlite(session):
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


def _by_key(session: Session, key: str | None) -> LoyaltyTransaction | None:
    if not key:
        return None
    return session.scalars(select(LoyaltyTransaction).where(LoyaltyTransaction.idempotency_key == key)).one_or_none()


def _post(session: Session, account: LoyaltyAccount, kind: str, points: int, actor: Actor, *, reason: str,
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


# --------------------------------------------------------------------------- membership, earning, redemption


def enroll(session: Session, actor: Actor, customer_id: int, program: str = "Rewards") -> LoyaltyAccount:
    """Open a bronze account for a customer (refused if they already have one)."""
    require(actor, "loyalty.adjust")
    return _open_account(session, actor, customer_id, program)


def _open_account(session: Session, actor: Actor, customer_id: int, program: str = "Rewards") -> LoyaltyAccount:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"There is no customer {customer_id}.")
    if customer.status in (*GONE_STATUSES, "closed"):
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


def order_points(total: Decimal | float, tier: str, settings: dict[str, Any]) -> int:
    """The earn rule: currency units x points per unit x the tier's multiplier, rounded down."""
    raw = Decimal(str(total)) * Decimal(str(settings["points_per_currency_unit"])) \
        * Decimal(str(settings["tier_multipliers"][tier]))
    return int(raw.to_integral_value(rounding="ROUND_FLOOR"))


def earn_key(order_id: int) -> str:
    return f"earn:order:{order_id}"


def earn_for_order(session: Session, actor: Actor, order_id: int) -> LoyaltyTransaction | None:
    """Post the points of one order; a second call returns the entry of the first (no-op).

    Returns None when the order earns no points (a zero total)."""
    require(actor, "loyalty.adjust")
    key = earn_key(order_id)
    existing = _by_key(session, key)
    if existing is not None:
        return existing
    order = session.get(Order, order_id)
    if order is None:
        raise NotFound(f"There is no order {order_id}.")
    if order.status not in EARNING_ORDER_STATUSES:
        raise ValidationError(f"Order {order.order_number} is {order.status}; only paid, shipped or delivered orders earn points.")
    account = _lock_account(session, order.customer_id)
    existing = _by_key(session, key)  # re-check under the lock: a concurrent call may have posted it
    if existing is not None:
        return existing
    if order.ordered_at < account.enrolled_at:
        raise ValidationError(f"Order {order.order_number} was placed before the customer joined the programme.")
    settings, _ = get_settings(session)
    points = order_points(order.total, account.tier, settings)
    if points <= 0:
        return None
    entry = _post(session, account, "earn", points, actor, reason=f"Points for order {order.order_number}",
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
    existing = _by_key(session, idempotency_key)
    if existing is not None:
        return existing
    account = _lock_account(session, customer_id)
    existing = _by_key(session, idempotency_key)
    if existing is not None:
        return existing
    if account.status != "active":
        raise ValidationError(f"The loyalty account of customer {customer_id} is {account.status}.")
    entry = _post(session, account, "redeem", -points, actor, reason=reason, source_type="redemption",
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
    existing = _by_key(session, idempotency_key)
    if existing is not None:
        return existing
    if session.scalar(select(LoyaltyAccount.id).where(LoyaltyAccount.customer_id == customer_id)) is None:
        _open_account(session, actor, customer_id)
    account = _lock_account(session, customer_id)
    entry = _post(session, account, "earn", points, actor, reason=reason, source_type=source_type,
                  source_id=source_id, key=idempotency_key)
    record_audit(session, actor, "loyalty.reward", "loyalty_account", account.id,
                 after={"points": points, "balance_after": entry.balance_after, "reason": reason})
    return entry


def take_back_reward(session: Session, actor: Actor, customer_id: int, points: int, reason: str, *,
                     source_type: str, source_id: str, idempotency_key: str) -> int:
    """Take programme points back once per key, at most what the balance still holds; how many."""
    require(actor, "loyalty.adjust")
    if _by_key(session, idempotency_key) is not None:
        return 0
    account = _lock_account(session, customer_id)
    amount = min(points, account.points_balance)
    if amount <= 0:
        return 0
    _post(session, account, "reverse", -amount, actor, reason=reason, source_type=source_type, source_id=source_id,
          key=idempotency_key)
    account.lifetime_points = max(0, account.lifetime_points - amount)
    record_audit(session, actor, "loyalty.reward_reverse", "loyalty_account", account.id,
                 after={"points": -amount, "reason": reason})
    return amount


# --------------------------------------------------------------------------- manual adjustments


def _adjust_limit(settings: dict[str, Any], role: str) -> int:
    return int(settings["adjust_limits"].get(role, 0))


def _check_reason(reason: Any) -> str:
    reason = (reason or "").strip() if isinstance(reason, str) or reason is None else None
    if reason is None:
        raise ValidationError("The reason must be text.")
    if len(reason) < 5:
        raise ValidationError("A manual adjustment needs a reason of at least 5 characters.")
    if len(reason) > MAX_REASON:
        raise ValidationError(f"The reason is too long ({len(reason)} characters; at most {MAX_REASON}).")
    return reason


def adjust(session: Session, actor: Actor, customer_id: int, points: int, reason: str,
           idempotency_key: str | None = None) -> AdjustmentResult:
    """Add (positive) or remove (negative) points by hand, with a reason.

    A role may adjust at most its limit at once (`adjust_limits`); above `approval_limit` the
    adjustment is queued as a pending request for someone else with `loyalty.approve`."""
    require(actor, "loyalty.adjust")
    if isinstance(points, bool) or not isinstance(points, int | float) or int(points) != points or points == 0:
        raise ValidationError(f"An adjustment must be a non-zero whole number of points, not {points!r}.")
    points = int(points)
    reason = _check_reason(reason)
    settings, _ = get_settings(session)
    limit = _adjust_limit(settings, actor.role)
    if abs(points) > limit:
        raise PermissionDenied(
            f"Your role ({actor.role}) may adjust at most {limit:,} points at once; "
            f"{abs(points):,} needs a role with a higher limit."
        )
    if idempotency_key:
        done = _by_key(session, idempotency_key)
        if done is not None:
            return AdjustmentResult("posted", transaction=done)
        queued = session.scalars(select(LoyaltyAdjustmentRequest)
                                 .where(LoyaltyAdjustmentRequest.idempotency_key == idempotency_key)).one_or_none()
        if queued is not None:
            return AdjustmentResult(queued.status, request=queued)
    account = _lock_account(session, customer_id)
    if points < 0 and account.points_balance + points < 0:
        raise InsufficientPoints(
            f"Customer {customer_id} has {account.points_balance:,} points; {-points:,} cannot be taken off."
        )
    approval_limit = settings["approval_limit"]
    why_pending = ""
    if abs(points) > approval_limit:
        why_pending = f"{abs(points):,} points are above the approval limit of {approval_limit:,}"
    elif actor.id is not None:
        # One person's adjustments are summed one at a time: concurrent ones wait for each other.
        session.execute(select(User.id).where(User.id == actor.id).with_for_update())
        earlier = adjusted_without_approval(session, actor)
        if earlier + abs(points) > approval_limit:
            why_pending = (f"with the {earlier:,} points you adjusted in the last 24 hours this makes "
                           f"{earlier + abs(points):,}, above the approval limit of {approval_limit:,}")
    if why_pending:
        request = LoyaltyAdjustmentRequest(
            account_id=account.id, customer_id=customer_id, points=points, reason=reason, status="pending",
            idempotency_key=idempotency_key, requested_by_id=actor.id, requested_at=utcnow(),
        )
        session.add(request)
        session.flush()
        record_audit(session, actor, "loyalty.adjust.request", "loyalty_adjustment", request.id,
                     after={"customer_id": customer_id, "points": points, "reason": reason, "why": why_pending})
        return AdjustmentResult("pending", request=request, why_pending=why_pending)
    entry = _post(session, account, "adjust", points, actor, reason=reason, source_type="manual",
                  key=idempotency_key)
    record_audit(session, actor, "loyalty.adjust", "loyalty_account", account.id,
                 after={"points": points, "balance_after": entry.balance_after, "reason": reason})
    return AdjustmentResult("posted", transaction=entry)


def decide_adjustment(session: Session, actor: Actor, request_id: int, approve: bool, note: str = "",
                      expected_version: int | None = None) -> LoyaltyAdjustmentRequest:
    """Approve (post the points) or reject a pending adjustment; nobody decides their own."""
    require(actor, "loyalty.approve")
    request = session.get(LoyaltyAdjustmentRequest, request_id)
    if request is None:
        raise NotFound(f"There is no adjustment request {request_id}.")
    if expected_version is not None and request.version != expected_version:
        raise ConflictError(f"Adjustment request {request_id} was changed by someone else. Reload and try again.")
    if request.status != "pending":
        raise ConflictError(f"Adjustment request {request_id} was already {request.status}.")
    if request.requested_by_id is not None and request.requested_by_id == actor.id:
        raise PermissionDenied("You cannot approve or reject your own adjustment; another approver must decide.")
    note = (note or "").strip()[:MAX_REASON]
    if approve:
        settings, _ = get_settings(session)
        limit = _adjust_limit(settings, actor.role)
        if abs(request.points) > limit:
            raise PermissionDenied(
                f"Your role ({actor.role}) may approve at most {limit:,} points; this request is {abs(request.points):,}."
            )
        account = _lock_account(session, request.customer_id)
        entry = _post(session, account, "adjust", request.points, actor, reason=request.reason, source_type="manual",
                      source_id=str(request.id), key=request.idempotency_key or f"adjust:request:{request.id}",
                      approved_by_id=actor.id)
        entry.created_by_id = request.requested_by_id
        request.transaction_id = entry.id
    elif not note:
        raise ValidationError("Say why the adjustment is rejected.")
    request.status = "approved" if approve else "rejected"
    request.decided_by_id = actor.id
    request.decided_at = utcnow()
    request.decision_note = note or None
    session.flush()
    record_audit(session, actor, f"loyalty.adjust.{request.status}", "loyalty_adjustment", request.id,
                 before={"status": "pending"}, after={"status": request.status, "points": request.points, "note": note})
    return request


def pending_adjustments(session: Session, viewer: Actor, page: int = 1, page_size: int = 25,
                        after: str | None = None) -> Page:
    """Pending requests, oldest first, for approvers; a numbered page, or with `after` (a cursor, FIRST for
    the start) the next `page_size` by keyset."""
    require(viewer, "loyalty.view")
    r = LoyaltyAdjustmentRequest
    condition = r.status == "pending"
    total = None if after is not None else session.scalar(select(func.count()).select_from(r).where(condition)) or 0
    page = 0 if after is not None else max(1, page)
    rows, next_after = fetch_rows(
        session,
        select(r.id, r.customer_id, r.points, r.reason, r.requested_at, User.username, r.version)
        .outerjoin(User, User.id == r.requested_by_id).where(condition),
        (SortKey(r.requested_at), SortKey(r.id)), "pending_adjustments", page=page, page_size=page_size, after=after)
    return Page(rows=[{"request": i, "customer_id": c, "points": p, "reason": why, "requested_at": at,
                       "requested_by": who, "version": v} for i, c, p, why, at, who, v, *_key in rows],
                total=total, page=page, page_size=page_size, next_after=next_after)


# --------------------------------------------------------------------------- batch: earning, expiry, tiers


def _floor_to_int(expression):
    return cast(func.floor(expression), Integer)


def _lock_accounts(session: Session, account_ids) -> None:
    """Lock the given accounts (a subquery of ids) on PostgreSQL; SQLite holds its write lock."""
    if _is_sqlite(session):
        session.execute(update(LoyaltyAccount).where(LoyaltyAccount.id.in_(account_ids))
                        .values(version=LoyaltyAccount.version).execution_options(synchronize_session=False))
    else:
        session.execute(select(LoyaltyAccount.id).where(LoyaltyAccount.id.in_(account_ids)).with_for_update())


def _retier(session: Session, thresholds: dict[str, int], now: dt.datetime, account_ids=None) -> int:
    """Raise tiers to what lifetime points reach (set-based), with a tier-change row each."""
    a = LoyaltyAccount
    target = _tier_case(a.lifetime_points, thresholds)
    rank = case(*[(a.tier == t, i) for i, t in enumerate(LOYALTY_TIERS)], else_=0)
    target_rank = case(*[(target == t, i) for i, t in enumerate(LOYALTY_TIERS)], else_=0)
    conditions = [target_rank > rank]
    if account_ids is not None:
        conditions.append(a.id.in_(account_ids))
    session.execute(insert(LoyaltyTierChange).from_select(
        ["account_id", "from_tier", "to_tier", "changed_at"],
        select(a.id, a.tier, target, literal(now)).where(*conditions),
    ))
    result = session.execute(update(a).where(*conditions)
                             .values(tier=target, tier_updated_at=now, version=a.version + 1)
                             .execution_options(synchronize_session=False))
    return rows_affected(result) or 0


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
        _lock_accounts(session, select(candidates.c.account_id).distinct())
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
        raised = _retier(session, settings["tier_thresholds"], now,
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
        _lock_accounts(session, select(pending.c.account_id).distinct())
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
            if _is_sqlite(session) else func.greatest(a.lifetime_points + lost, 0),
            version=a.version + 1).execution_options(synchronize_session=False))
        points = -(session.scalar(select(func.coalesce(func.sum(t.points), 0))
                                  .where(t.kind == "reverse", t.created_at == now)) or 0)
        record_audit(session, SYSTEM, "loyalty.reverse.batch", "loyalty_ledger", None,
                     after={"entries": inserted, "points": int(points)})
        return {"entries": inserted, "points": int(points)}

    return run_with_retry(engine, work)


def _expiring_by_account(cutoffs: list[dt.datetime]):
    """Per account: points of credits dated before each cut-off still unspent under FIFO."""
    t = LoyaltyTransaction
    debits = func.coalesce(func.sum(case((t.points < 0, -t.points), else_=0)), 0)
    columns = [t.account_id.label("account_id"), func.max(t.customer_id).label("customer_id")]
    for i, cutoff in enumerate(cutoffs):
        credits = func.coalesce(func.sum(case((and_(t.points > 0, t.created_at < cutoff), t.points), else_=0)), 0)
        unspent = credits - debits
        columns.append(case((unspent > 0, unspent), else_=0).label(f"due_{i}"))
    return select(*columns).group_by(t.account_id)


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
        due = _expiring_by_account([cutoff]).subquery("due")
        _lock_accounts(session, select(due.c.account_id).where(due.c.due_0 > 0))
        due = _expiring_by_account([cutoff]).subquery("due_locked")  # recomputed under the locks
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


# --------------------------------------------------------------------------- reads


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


def account_summary(session: Session, viewer: Actor, customer_id: int, as_of: dt.date | None = None) -> dict[str, Any]:
    """A member's balance, tier, progress to the next tier, points expiring soon and tier history."""
    require(viewer, "loyalty.view")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"There is no customer {customer_id}.")
    account = session.scalars(select(LoyaltyAccount).where(LoyaltyAccount.customer_id == customer_id)).one_or_none()
    base = {"customer_id": customer_id, "name": shown_name(viewer, customer.first_name, customer.last_name, customer_id),
            "member": account is not None}
    if account is None:
        return base
    settings, _ = get_settings(session)
    thresholds = settings["tier_thresholds"]
    position = LOYALTY_TIERS.index(account.tier)
    next_tier = LOYALTY_TIERS[position + 1] if position + 1 < len(LOYALTY_TIERS) else None
    as_of = as_of or data_date(session).day
    overdue, outlook = _outlook(session, as_of, 3, settings, customer_id=customer_id)
    history = session.execute(
        select(LoyaltyTierChange.from_tier, LoyaltyTierChange.to_tier, LoyaltyTierChange.changed_at)
        .where(LoyaltyTierChange.account_id == account.id).order_by(LoyaltyTierChange.changed_at, LoyaltyTierChange.id)
    ).all()
    pending = session.scalar(select(func.count()).select_from(LoyaltyAdjustmentRequest).where(
        LoyaltyAdjustmentRequest.account_id == account.id, LoyaltyAdjustmentRequest.status == "pending")) or 0
    return {
        **base, "account_id": account.id, "program": account.program, "tier": account.tier,
        "status": account.status, "balance": account.points_balance, "lifetime_points": account.lifetime_points,
        "enrolled_at": account.enrolled_at, "tier_updated_at": account.tier_updated_at,
        "next_tier": next_tier,
        "points_to_next_tier": None if next_tier is None else max(0, thresholds[next_tier] - account.lifetime_points),
        "balance_value": round(account.points_balance * settings["point_value"], 2),
        "expiring_next_3_months": overdue + sum(row["points"] for row in outlook),
        "pending_adjustments": pending, "version": account.version,
        "tier_history": [{"from": f, "to": to, "changed_at": when} for f, to, when in history],
    }


def first_member(session: Session, viewer: Actor) -> int | None:
    """The lowest customer id with an active account: a sensible default for the lookup."""
    require(viewer, "loyalty.view")
    return session.scalar(select(func.min(LoyaltyAccount.customer_id)).where(LoyaltyAccount.status == "active"))


def ledger_page(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 25,
                after: str | None = None) -> Page:
    """A member's ledger, newest first; a numbered page, or with `after` (a cursor, FIRST for the start)
    the next `page_size` by keyset."""
    require(viewer, "loyalty.view")
    t = LoyaltyTransaction
    condition = t.customer_id == customer_id
    total = None if after is not None else session.scalar(select(func.count()).select_from(t).where(condition)) or 0
    page = 0 if after is not None else max(1, page)
    rows, next_after = fetch_rows(
        session,
        select(t.id, t.created_at, t.kind, t.points, t.balance_after, t.reason, t.source_type, t.source_id,
               User.username)
        .outerjoin(User, User.id == t.created_by_id).where(condition),
        (SortKey(t.created_at, descending=True), SortKey(t.id, descending=True)), "loyalty_ledger",
        page=page, page_size=page_size, after=after)
    return Page(rows=[{"entry": i, "time": at, "kind": k, "points": p, "balance_after": b, "reason": why,
                       "source": f"{st} {sid}" if st and sid else (st or ""), "by": who or "system"}
                      for i, at, k, p, b, why, st, sid, who, *_key in rows],
                total=total, page=page, page_size=page_size, next_after=next_after)


def tier_distribution(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Members and outstanding points per tier, in tier order (tiers without members show 0)."""
    require(viewer, "loyalty.view")
    a = LoyaltyAccount
    rows = session.execute(select(a.tier, func.count(), func.coalesce(func.sum(a.points_balance), 0))
                           .where(a.status == "active").group_by(a.tier)).all()
    found = {tier: (n, pts) for tier, n, pts in rows}
    return [{"tier": t, "members": int(found.get(t, (0, 0))[0]), "points": int(found.get(t, (0, 0))[1])}
            for t in LOYALTY_TIERS]


def points_liability(session: Session, viewer: Actor) -> dict[str, Any]:
    """Outstanding points of active accounts times the value of a point."""
    require(viewer, "loyalty.view")
    settings, _ = get_settings(session)
    a = LoyaltyAccount
    members, points = session.execute(select(func.count(), func.coalesce(func.sum(a.points_balance), 0))
                                      .where(a.status == "active")).one()
    return {"members": int(members), "outstanding_points": int(points), "point_value": settings["point_value"],
            "liability": round(int(points) * settings["point_value"], 2)}


def _month_starts(as_of: dt.date, months: int) -> list[dt.date]:
    starts, year, month = [], as_of.year, as_of.month
    for _ in range(months + 1):
        month += 1
        if month > 12:
            year, month = year + 1, 1
        starts.append(dt.date(year, month, 1))
    return starts


def _outlook(session: Session, as_of: dt.date, months: int, settings: dict[str, Any],
             customer_id: int | None = None) -> tuple[int, list[dict[str, Any]]]:
    """Points past the age at `as_of` (what `expire_points(as_of)` would post) and, per month,
    the points that reach the age in that month if nothing is redeemed."""
    age = dt.timedelta(days=settings["expiry_days"])
    ends = [as_of] + _month_starts(as_of, months)[:months]
    cutoffs = [midnight(end - age) for end in ends]
    due = _expiring_by_account(cutoffs)
    if customer_id is not None:
        due = due.where(LoyaltyTransaction.customer_id == customer_id)
    due = due.subquery()
    totals = session.execute(select(*[func.coalesce(func.sum(due.c[f"due_{i}"]), 0) for i in range(len(cutoffs))])).one()
    sums = [int(v) for v in totals]
    rows = []
    for i in range(1, len(cutoffs)):
        points = max(0, sums[i] - sums[i - 1])
        rows.append({"month": ends[i - 1].strftime("%Y-%m"), "points": points,
                     "value": round(points * settings["point_value"], 2)})
    return sums[0], rows


OUTLOOK_SUMMARY = "loyalty_expiry_outlook"  # its row in rollup_summaries
OUTLOOK_MONTHS = 12  # what the batch computes (the Loyalty page's outlook)


def refresh_expiry_outlook(session: Session, as_of: dt.date) -> int:
    """Compute the expiry outlook of as_of once (the batch, after earning and expiry), for the Loyalty page.
    Returns the points it sees expiring in the next OUTLOOK_MONTHS months."""
    settings, version = get_settings(session)
    overdue, rows = _outlook(session, as_of, OUTLOOK_MONTHS, settings)
    replace_summary(session, OUTLOOK_SUMMARY, as_of, {
        "overdue": overdue, "months": rows, "expiry_days": settings["expiry_days"], "settings_version": version})
    return sum(row["points"] for row in rows)


def expiry_outlook(session: Session, viewer: Actor, as_of: dt.date, months: int = 12) -> dict[str, Any]:
    """Points that will expire in each of the next months if nothing is redeemed (FIFO).

    "overdue" are points already past the age on `as_of`: the next `expire_points` run posts them.
    As the refresh of as_of computed it (`as_of_refresh` says when) while the settings are unchanged:
    redemptions since move it by a little and are counted at the next refresh; otherwise computed now."""
    require(viewer, "loyalty.view")
    if not 1 <= months <= 36:
        raise ValidationError("The outlook covers 1 to 36 months.")
    settings, version = get_settings(session)
    stored = session.get(RollupSummary, (OUTLOOK_SUMMARY, as_of))
    if stored is not None and months <= OUTLOOK_MONTHS and stored.payload["settings_version"] == version:
        return {"overdue": stored.payload["overdue"], "months": stored.payload["months"][:months],
                "expiry_days": stored.payload["expiry_days"], "as_of_refresh": stored.built_at}
    overdue, rows = _outlook(session, as_of, months, settings)
    return {"overdue": overdue, "months": rows, "expiry_days": settings["expiry_days"], "as_of_refresh": None}


ACTIVITY_SUMMARY = "loyalty_monthly_activity"  # its row in rollup_summaries


def _activity_rows(session: Session, start: dt.datetime, stop: dt.datetime | None = None) -> list[dict[str, Any]]:
    t = LoyaltyTransaction
    month = year_month(t.created_at)
    conditions = [t.created_at >= start] + ([t.created_at < stop] if stop is not None else [])
    return [{"month": m, "kind": k, "points": int(p)} for m, k, p in session.execute(
        select(month, t.kind, func.sum(t.points)).where(*conditions).group_by(month, t.kind).order_by(month))]


def _activity_start(as_of: dt.date, months: int) -> dt.datetime:
    start = midnight(dt.date(as_of.year, as_of.month, 1))
    for _ in range(months - 1):
        start = midnight((start.date() - dt.timedelta(days=1)).replace(day=1))
    return start


def refresh_monthly_activity(session: Session, as_of: dt.date) -> int:
    """The ledger's points per kind in each finished month of the OUTLOOK_MONTHS before as_of's month, once
    (the batch); the page adds the month of as_of live. Returns the rows stored."""
    rows = _activity_rows(session, _activity_start(as_of, OUTLOOK_MONTHS), midnight(as_of.replace(day=1)))
    replace_summary(session, ACTIVITY_SUMMARY, as_of, {"rows": rows})
    return len(rows)


def monthly_activity(session: Session, viewer: Actor, months: int = 12, as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Points earned, redeemed, expired and adjusted per month (for the programme chart): the finished
    months as the refresh of as_of summed them, the month of as_of read now."""
    require(viewer, "loyalty.view")
    as_of = as_of or data_date(session).day
    start = _activity_start(as_of, months)
    stored = session.get(RollupSummary, (ACTIVITY_SUMMARY, as_of))
    if stored is not None and months <= OUTLOOK_MONTHS:
        first = start.strftime("%Y-%m")
        return ([row for row in stored.payload["rows"] if row["month"] >= first]
                + _activity_rows(session, midnight(as_of.replace(day=1))))
    return _activity_rows(session, start)
