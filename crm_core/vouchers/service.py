"""Vouchers: single-use codes issued to one customer and redeemed on one of their orders.

A voucher takes a percentage or a fixed amount off an order's goods (not its shipping), from a
minimum order value, until it expires. A campaign issues them as its incentive, a referral reward
may be one, and staff may issue one by hand. Every status change (redeemed, void, expired) is a
conditional UPDATE on the row's current status that bumps its version: of two orders redeeming one
code at the same moment exactly one succeeds (PostgreSQL re-checks the condition after the first
commits; SQLite lets one writer at a time), and the other is refused with nothing written.
"""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, ValidationError
from crm_core.platform.ids import CODE_ALPHABET, is_record_id, readable_code
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.shop import SHOP_CURRENCY
from crm_core.platform.sql import rows_affected
from crm_core.platform.transactions import check_version
from crm_core.risk.decisions import enforce
from crm_core.vouchers.codes import SHOWN_CODE_END, full_codes_for, shown_code
from db.models import VOUCHER_KINDS, VOUCHER_SOURCES, Customer, Order, Voucher, utcnow

VOUCHER_CODE_LENGTH = 12  # 32**12 ≈ 10**18 codes: unguessable by trying
DEFAULT_VOUCHER_DAYS = 90  # a voucher issued by hand without an expiry lasts this long
MAX_VOUCHER_DAYS = 730
MAX_VOUCHER_AMOUNT = Decimal("10000")
MAX_VOUCHER_PERCENT = Decimal("90")
REASON_LIMIT = 255
CENT = Decimal("0.01")


def _value(kind: Any, value: Any) -> tuple[str, Decimal]:
    if kind not in VOUCHER_KINDS:
        raise ValidationError(f"A voucher is one of {', '.join(VOUCHER_KINDS)} (got {kind!r}).")
    try:
        amount = Decimal(str(value))
    except (InvalidOperation, ValueError):
        raise ValidationError(f"The voucher's value {value!r} is not a number.") from None
    limit, words = ((MAX_VOUCHER_PERCENT, f"at most {MAX_VOUCHER_PERCENT}% off") if kind == "percent"
                    else (MAX_VOUCHER_AMOUNT, f"at most {MAX_VOUCHER_AMOUNT:,.0f}"))
    if not amount.is_finite() or amount <= 0 or amount > limit:
        raise ValidationError(f"A {kind} voucher is above 0 and {words}.")
    return str(kind), amount.quantize(CENT)


def _min_order(value: Any) -> Decimal:
    try:
        amount = Decimal(str(value or 0))
    except (InvalidOperation, ValueError):
        raise ValidationError(f"The minimum order {value!r} is not an amount.") from None
    if not amount.is_finite() or amount < 0 or amount > MAX_VOUCHER_AMOUNT * 10:
        raise ValidationError("The minimum order is an amount from 0 to 100,000.")
    return amount.quantize(CENT)


def normalise_code(code: Any) -> str:
    """A code as typed (any case, spaces or dashes between groups) in its stored form."""
    if not isinstance(code, str):
        raise ValidationError("The voucher code is text.")
    cleaned = "".join(code.split()).replace("-", "").upper()
    if not cleaned:
        raise ValidationError("Enter the voucher code.")
    return cleaned


def issue_vouchers(session: Session, actor: Actor, customer_ids: list[int], kind: str, value: Decimal, *,
                   source: str, source_id: str | None, expires_at: dt.datetime | None, authorised_by: str,
                   min_order: Decimal | int = 0, now: dt.datetime | None = None, reason: str | None = None,
                   ) -> dict[int, str]:
    """Issue one voucher to each customer in one bulk insert; customer id -> code.

    `authorised_by` is the permission the issuing programme acts under (campaigns.manage for a
    campaign's incentive, refresh.run for the batch's referral rewards, vouchers.manage by hand).
    A customer who already holds a voucher from this source and source id gets none again."""
    require(actor, authorised_by)
    if source not in VOUCHER_SOURCES:
        raise ValueError(f"unknown voucher source {source!r}")
    kind, value = _value(kind, value)
    minimum = _min_order(min_order)
    now = now or utcnow()
    wanted = list(dict.fromkeys(customer_ids))
    if source_id is not None and wanted:
        held = set(session.scalars(select(Voucher.customer_id).where(
            Voucher.source == source, Voucher.source_id == source_id, Voucher.customer_id.in_(wanted))))
        wanted = [c for c in wanted if c not in held]
    if not wanted:
        return {}
    codes = {customer_id: readable_code(VOUCHER_CODE_LENGTH) for customer_id in wanted}
    session.execute(insert(Voucher), [
        {"code": code, "customer_id": customer_id, "kind": kind, "value": value, "min_order": minimum,
         "source": source, "source_id": source_id, "issued_at": now, "expires_at": expires_at, "status": "issued",
         "issued_by_id": actor.id, "version": 1} for customer_id, code in codes.items()])
    record_audit(session, actor, "voucher.issue", "voucher", None, after={
        "source": source, "source_id": source_id, "kind": kind, "value": value, "expires_at": expires_at,
        "customers": len(codes), "customer_id": wanted[0] if len(wanted) == 1 else None, "reason": reason})
    return codes


def issue_voucher(session: Session, actor: Actor, customer_id: int, kind: str, value: Any, *,
                  days: int | None = None, min_order: Any = 0, reason: str = "") -> Voucher:
    """Issue a voucher by hand (goodwill, a complaint's compensation), with a reason."""
    require(actor, "vouchers.manage")
    customer = session.get(Customer, customer_id) if is_record_id(customer_id) else None
    if customer is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    if customer.status != "active":
        raise ValidationError(f"Customer {customer_id} is {customer.status}; vouchers go to active customers only.")
    reason = (reason or "").strip()
    if not reason or len(reason) > REASON_LIMIT:
        raise ValidationError(f"Give a reason for the voucher (at most {REASON_LIMIT} characters).")
    days = DEFAULT_VOUCHER_DAYS if days is None else days
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= MAX_VOUCHER_DAYS:
        raise ValidationError(f"A voucher is valid for 1 to {MAX_VOUCHER_DAYS} days.")
    now = utcnow()
    code = issue_vouchers(session, actor, [customer.id], kind, value, source="manual", source_id=None,
                          expires_at=now + dt.timedelta(days=days), authorised_by="vouchers.manage",
                          min_order=min_order, now=now, reason=reason)[customer.id]
    return session.scalars(select(Voucher).where(Voucher.code == code)).one()


def voucher_discount(voucher: Voucher, goods: Decimal) -> Decimal:
    """What the voucher takes off goods worth `goods`: a percentage, or its amount up to the goods."""
    if voucher.kind == "percent":
        return (goods * voucher.value / 100).quantize(CENT, rounding=ROUND_HALF_UP)
    return min(voucher.value, goods)


def check_voucher(session: Session, code: Any, customer_id: int, goods: Decimal, currency: str,
                  now: dt.datetime) -> tuple[Voucher, Decimal]:
    """The voucher a code names and its discount on goods worth `goods`, or the reason it cannot be
    used on this order: someone else's, used, void, expired, below its minimum, an amount in another
    currency, or the customer's restriction."""
    cleaned = normalise_code(code)
    if len(cleaned) > 32 or set(cleaned) - set(CODE_ALPHABET):
        raise ValidationError(f"{cleaned[:32]!r} is not a voucher code.")
    voucher = session.scalars(select(Voucher).where(Voucher.code == cleaned)).one_or_none()
    if voucher is None:
        raise ValidationError(f"There is no voucher {cleaned!r}.")
    label = f"Voucher …{cleaned[-SHOWN_CODE_END:]}"
    if voucher.customer_id != customer_id:
        raise ValidationError(f"{label} was issued to another customer; a voucher is used by its owner only.")
    if voucher.status == "redeemed":
        raise ValidationError(f"{label} was already used on {voucher.redeemed_at:%Y-%m-%d}; a voucher is used once.")
    if voucher.status == "void":
        raise ValidationError(f"{label} was voided ({voucher.void_reason}).")
    if voucher.status == "expired" or (voucher.expires_at is not None and voucher.expires_at <= now):
        raise ValidationError(f"{label} expired on {voucher.expires_at:%Y-%m-%d}.")
    if goods < voucher.min_order:
        raise ValidationError(f"{label} needs an order of at least {voucher.min_order:,.2f} "
                              f"(this order's goods come to {goods:,.2f}).")
    if voucher.kind == "amount" and currency != SHOP_CURRENCY:
        raise ValidationError(f"{label} is worth {voucher.value:,.2f} {SHOP_CURRENCY}; "
                              f"it cannot be used on an order in {currency}.")
    enforce(session, customer_id, "voucher_redeem", now=now)
    return voucher, voucher_discount(voucher, goods)


def redeem_voucher(session: Session, actor: Actor, voucher: Voucher, order_id: int, now: dt.datetime) -> None:
    """Mark a checked voucher used by the order, if it is still unused: the conditional UPDATE is
    what makes one code good for one order even when two orders race for it."""
    require(actor, "customers.edit")
    result = session.execute(
        update(Voucher).where(Voucher.id == voucher.id, Voucher.status == "issued", Voucher.version == voucher.version)
        .values(status="redeemed", redeemed_order_id=order_id, redeemed_at=now, version=Voucher.version + 1)
        .execution_options(synchronize_session=False))
    if rows_affected(result) != 1:
        raise ConflictError(f"Voucher …{voucher.code[-SHOWN_CODE_END:]} was used by another order at the same "
                            "moment; this order was not recorded.")
    session.expire(voucher)
    record_audit(session, actor, "voucher.redeem", "voucher", voucher.id,
                 before={"status": "issued"}, after={"status": "redeemed", "order_id": order_id})


def void_voucher(session: Session, actor: Actor, voucher_id: int, reason: str, *,
                 authorised_by: str = "vouchers.manage", expected_version: int | None = None) -> str:
    """Void an unused voucher with a reason ("void"); a used one cannot be unused, so the reversal
    is noted on it as clawed back ("clawed_back"). `authorised_by` as in `issue_vouchers`. With
    `expected_version` (the version a person saw), a voucher changed since then (used, voided) is
    refused with a ConflictError instead of being voided or clawed back unseen."""
    require(actor, authorised_by)
    reason = (reason or "").strip()
    if not reason or len(reason) > REASON_LIMIT:
        raise ValidationError(f"Give a reason for voiding the voucher (at most {REASON_LIMIT} characters).")
    voucher = session.get(Voucher, voucher_id) if is_record_id(voucher_id) else None
    if voucher is None:
        raise NotFound(f"Voucher {voucher_id} does not exist.")
    label = f"Voucher {voucher.id} (…{voucher.code[-SHOWN_CODE_END:]})"
    check_version(voucher, expected_version, label)
    now = utcnow()
    unchanged = () if expected_version is None else (Voucher.version == expected_version,)
    voided = rows_affected(session.execute(
        update(Voucher).where(Voucher.id == voucher.id, Voucher.status.in_(("issued", "expired")), *unchanged)
        .values(status="void", voided_at=now, void_reason=reason, version=Voucher.version + 1)
        .execution_options(synchronize_session=False)))
    session.expire(voucher)
    if voided:
        record_audit(session, actor, "voucher.void", "voucher", voucher.id, after={"reason": reason})
        return "void"
    check_version(voucher, expected_version, label)  # changed between the read above and the UPDATE
    if voucher.status == "void":
        raise ValidationError(f"Voucher {voucher_id} is already void ({voucher.void_reason}).")
    voucher.clawed_back_at, voucher.void_reason = now, reason
    voucher.version += 1
    record_audit(session, actor, "voucher.claw_back", "voucher", voucher.id,
                 after={"reason": reason, "order_id": voucher.redeemed_order_id})
    return "clawed_back"


def expire_vouchers(session: Session, actor: Actor, now: dt.datetime) -> int:
    """Mark unused vouchers past their expiry expired (the refresh does this); how many."""
    require(actor, "refresh.run")
    expired = rows_affected(session.execute(
        update(Voucher).where(Voucher.status == "issued", Voucher.expires_at.is_not(None), Voucher.expires_at <= now)
        .values(status="expired", version=Voucher.version + 1).execution_options(synchronize_session=False)))
    if expired:
        record_audit(session, actor, "voucher.expire", "voucher", None, after={"expired": expired, "as_of": now})
    return expired


def customer_vouchers(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 25,
                      after: str | None = None, now: dt.datetime | None = None) -> Page:
    """The customer's vouchers, newest first; a numbered page, or with `after` (a cursor, FIRST for the
    start) the next `page_size` by keyset. Roles that record orders (customers.edit) see the whole
    code; other viewers see its last characters only. `version` is what `void_voucher` expects;
    `redeemed_order_number` is the used-on order as people know it (its `order_number`)."""
    require(viewer, "customers.view")
    if (session.get(Customer, customer_id) if is_record_id(customer_id) else None) is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    if not 1 <= page_size <= 500:
        raise ValidationError("Page size must be between 1 and 500.")
    now = now or utcnow()
    full = full_codes_for(viewer)
    v = Voucher
    condition = v.customer_id == customer_id
    total = None if after is not None else session.scalar(select(func.count()).select_from(v).where(condition)) or 0
    page = 0 if after is not None else max(1, page)
    found, next_after = fetch_rows(
        session, select(v.id, v.code, v.kind, v.value, v.min_order, v.source, v.source_id, v.issued_at, v.expires_at,
                        v.status, v.redeemed_order_id, Order.order_number.label("redeemed_order_number"),
                        v.redeemed_at, v.void_reason, v.clawed_back_at, v.version)
        .outerjoin(Order, Order.id == v.redeemed_order_id).where(condition),
        (SortKey(v.issued_at, descending=True), SortKey(v.id, descending=True)), "customer_vouchers",
        page=page, page_size=page_size, after=after)
    rows = [{"id": r.id, "code": shown_code(r.code, full), "kind": r.kind, "value": r.value, "min_order": r.min_order,
             "source": r.source, "source_id": r.source_id, "issued_at": r.issued_at, "expires_at": r.expires_at,
             "status": "expired" if r.status == "issued" and r.expires_at is not None and r.expires_at <= now
             else r.status,
             "redeemed_order_id": r.redeemed_order_id, "redeemed_order_number": r.redeemed_order_number,
             "redeemed_at": r.redeemed_at, "void_reason": r.void_reason,
             "clawed_back_at": r.clawed_back_at, "version": r.version} for r in found]
    return Page(rows=rows, total=total, page=page, page_size=page_size, next_after=next_after)
