"""The referral programme: settings, unguessable codes, attribution of a friend's sign-up or first
order to a referrer, fraud checks before any payout, and two-sided rewards held until the friend's
first paid order is past the return window (reversed if that order is refunded).

A referral row (`customer_referral_program`) is one friend attributed to one referrer; its checks
(`customer_referral_checks`) keep the verdict and every reason; its rewards
(`customer_referral_rewards`) are points through the loyalty ledger or a voucher, per side, as the
settings say; a reversed voucher reward voids its voucher, or notes it clawed back if it was used.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import UNREWARDABLE_STATUSES
from crm_core.loyalty.accounts import credit_reward, take_back_reward
from crm_core.loyalty.rules import get_settings as get_loyalty_settings
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.ids import readable_code
from crm_core.platform.permissions import require
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.risk.decisions import RiskRestricted, decisions_in_force, enforce
from crm_core.risk.lists import phone_digits
from crm_core.risk.scoring import REVIEW_THRESHOLD
from crm_core.vouchers.service import issue_vouchers, void_voucher
from db.models import (
    REFERRAL_REWARD_KINDS,
    UNDONE_ORDER_STATUSES,
    Customer,
    CustomerAddress,
    CustomerPaymentMethod,
    Order,
    Referral,
    ReferralCheck,
    ReferralCode,
    ReferralReward,
    RiskReview,
    RiskScore,
    SignInEvent,
    Voucher,
)

REFERRAL_SETTINGS_KEY = "referral_settings"
DEFAULT_REFERRAL_SETTINGS: dict[str, Any] = {
    "attribution": "first_touch",  # or "last_touch"
    "attribution_window_days": 30,
    "referrer_reward": "points",  # or "voucher": each side is rewarded with points or a voucher
    "friend_reward": "points",
    "referrer_points": 500,
    "friend_points": 250,
    "referrer_voucher_amount": 10,  # in the shop currency, when that side's reward is a voucher
    "friend_voucher_amount": 5,
    "voucher_valid_days": 90,
    "return_window_days": 30,
    # Allowances, in points; a voucher reward counts at its value in points (amount / point value).
    "global_monthly_points": 200_000,  # all referral rewards paid in a calendar month
    "per_referrer_yearly_points": 5_000,  # one referrer's rewards paid in 365 days
    "burst_referrals": 5,  # this many referrals of one referrer within a day is a burst
    "shared_device_friends": 3,  # this many friends of one referrer on one device or IP
    "link_base": "https://shop.example/r/",
}
ATTRIBUTIONS = ("first_touch", "last_touch")
CODE_LENGTH = 10  # 32^10 ≈ 10^15 codes: unguessable by trying
PAID_FRIEND_STATUSES = ("paid", "shipped", "delivered")
OPEN_REFERRAL_STATUSES = ("pending", "signed_up")
REVIEW_SLA = dt.timedelta(hours=24)


# --------------------------------------------------------------------------- settings


def get_referral_settings(session: Session) -> tuple[dict[str, Any], int]:
    stored, version = stored_setting(session, REFERRAL_SETTINGS_KEY)
    return {**DEFAULT_REFERRAL_SETTINGS, **(stored or {})}, version


def validate_referral_settings(settings: dict[str, Any]) -> dict[str, Any]:
    clean = {**DEFAULT_REFERRAL_SETTINGS, **settings}
    unknown = set(settings) - set(DEFAULT_REFERRAL_SETTINGS)
    if unknown:
        raise ValidationError(f"Unknown referral setting(s): {', '.join(sorted(unknown))}.")
    if clean["attribution"] not in ATTRIBUTIONS:
        raise ValidationError("Attribution is first_touch or last_touch.")
    for side in ("referrer", "friend"):
        if clean[f"{side}_reward"] not in REFERRAL_REWARD_KINDS:
            raise ValidationError(f"The {side}'s reward is {' or '.join(REFERRAL_REWARD_KINDS)}.")
    bounds = {"attribution_window_days": (1, 365), "referrer_points": (0, 100_000), "friend_points": (0, 100_000),
              "referrer_voucher_amount": (0, 1_000), "friend_voucher_amount": (0, 1_000),
              "voucher_valid_days": (1, 730),
              "return_window_days": (0, 365), "global_monthly_points": (0, 100_000_000),
              "per_referrer_yearly_points": (0, 10_000_000), "burst_referrals": (2, 1000),
              "shared_device_friends": (2, 1000)}
    for name, (low, high) in bounds.items():
        value = clean[name]
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or not low <= value <= high:
            raise ValidationError(f"{name.replace('_', ' ').capitalize()} is a whole number from {low:,} to {high:,}.")
        clean[name] = int(value)
    if not str(clean["link_base"]).startswith(("https://", "http://")):
        raise ValidationError("The link base is a web address starting with https://.")
    return clean


def save_referral_settings(session: Session, actor: Actor, settings: dict[str, Any],
                           expected_version: int | None) -> int:
    require(actor, "referrals.settings")
    return save_setting(session, actor, REFERRAL_SETTINGS_KEY, validate_referral_settings(settings), expected_version,
                        what="The referral settings", action="referrals.settings")


# --------------------------------------------------------------------------- codes and attribution


def new_code() -> str:
    return readable_code(CODE_LENGTH)


def referral_code(session: Session, actor: Actor, customer_id: int) -> dict[str, str]:
    """The customer's code and link, created on first request."""
    require(actor, "referrals.manage")
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    found = session.scalar(select(ReferralCode).where(ReferralCode.customer_id == customer_id))
    if found is None:
        enforce(session, customer_id, "referral_reward")
        found = ReferralCode(customer_id=customer_id, code=new_code())
        session.add(found)
        session.flush()
        record_audit(session, actor, "referrals.code", "customer", customer_id, after={"code": found.code})
    settings, _ = get_referral_settings(session)
    return {"code": found.code, "link": f"{settings['link_base']}{found.code}"}


def _referrer_of(session: Session, code: str) -> int:
    cleaned = (code or "").strip().upper()
    if not cleaned:
        raise ValidationError("Enter the referral code.")
    referrer = session.scalar(select(ReferralCode.customer_id).where(ReferralCode.code == cleaned))
    if referrer is None:
        raise ValidationError(f"No referral code {cleaned!r}.")
    return int(referrer)


def attribute(session: Session, actor: Actor, friend_id: int, code: str, touched_at: dt.datetime,
              signed_up_at: dt.datetime | None = None) -> Referral:
    """Attribute a friend's sign-up (or first order) carrying `code`, touched at `touched_at`.

    The touch must fall within the attribution window before the sign-up. With first-touch a friend
    already attributed keeps their referrer; with last-touch a later touch within the window moves
    the referral to the new referrer while nothing has been paid for it.
    """
    require(actor, "referrals.manage")
    return _attribute(session, actor, friend_id, code, touched_at, signed_up_at)


def attribute_order(session: Session, actor: Actor, friend_id: int, code: str, ordered_at: dt.datetime) -> Referral:
    """Attribute a first order that carries a referral code (order intake calls this before it writes
    the order): the code is touched when the order is placed, under the same rules as `attribute`.
    Whoever may record the order may attribute it; a code on a later order is refused."""
    require(actor, "customers.edit")
    first_order = session.scalar(select(func.min(Order.ordered_at)).where(Order.customer_id == friend_id))
    _refuse_after_first_order(friend_id, first_order, ordered_at)
    return _attribute(session, actor, friend_id, code, ordered_at)


def _refuse_after_first_order(friend_id: int, first_order: dt.datetime | None, touched_at: dt.datetime) -> None:
    if first_order is not None and first_order < touched_at:
        raise ValidationError(f"Customer {friend_id} had already ordered ({first_order:%Y-%m-%d}) before the "
                              f"referral link was used; only a sign-up or a first order carries a code.")


def _attribute(session: Session, actor: Actor, friend_id: int, code: str, touched_at: dt.datetime,
               signed_up_at: dt.datetime | None = None) -> Referral:
    friend = session.get(Customer, friend_id)
    if friend is None:
        raise NotFound(f"Customer {friend_id} does not exist.")
    referrer_id = _referrer_of(session, code)
    settings, _ = get_referral_settings(session)
    window = dt.timedelta(days=settings["attribution_window_days"])
    signed_up = signed_up_at or friend.signed_up_at
    first_order = session.scalar(select(func.min(Order.ordered_at)).where(Order.customer_id == friend_id))
    # The sign-up carries the code when the link was used before it; otherwise the first order does.
    arrived: dt.datetime | None = signed_up
    if touched_at > signed_up + dt.timedelta(minutes=1):
        _refuse_after_first_order(friend_id, first_order, touched_at)
        arrived = first_order  # None: the coming first order will carry it
    if arrived is not None and arrived - touched_at > window:
        raise ValidationError(f"The referral link was used {touched_at:%Y-%m-%d %H:%M}, outside the "
                              f"{settings['attribution_window_days']}-day attribution window before "
                              f"{arrived:%Y-%m-%d %H:%M}.")
    existing = session.scalar(select(Referral).where(Referral.referred_id == friend_id))
    if existing is not None:
        paid = session.scalar(select(func.count()).select_from(ReferralReward).where(
            ReferralReward.referral_id == existing.id, ReferralReward.status == "paid"))
        if settings["attribution"] == "first_touch" or existing.referrer_id == referrer_id or paid \
                or touched_at <= existing.created_at:
            return existing
        before = {"referrer_id": existing.referrer_id}
        existing.referrer_id, existing.created_at = referrer_id, touched_at
        existing.referral_code = f"{code.strip().upper()}.{friend_id}"
        session.flush()
        record_audit(session, actor, "referrals.reattribute", "referral", existing.id, before=before,
                     after={"referrer_id": referrer_id, "attribution": "last_touch"})
        return existing
    if referrer_id == friend_id:
        raise ValidationError("A customer cannot refer themselves.")
    referral = Referral(referrer_id=referrer_id, referred_id=friend_id, referral_code=f"{code.strip().upper()}.{friend_id}",
                        referred_email=friend.email, status="signed_up", reward_points=0, created_at=touched_at)
    session.add(referral)
    session.flush()
    record_audit(session, actor, "referrals.attribute", "referral", referral.id,
                 after={"referrer_id": referrer_id, "friend_id": friend_id})
    return referral


# --------------------------------------------------------------------------- fraud checks


def _address_keys(session: Session, customer_id: int) -> set[str]:
    rows = session.execute(select(CustomerAddress.line1, CustomerAddress.postal_code, CustomerAddress.country_code)
                           .where(CustomerAddress.customer_id == customer_id)).all()
    return {f"{(a or '').strip().lower()}|{b or ''}|{c}" for a, b, c in rows}


def _values(session: Session, column, owner, customer_id: int) -> set[str]:
    return {v for v in session.scalars(select(column).where(owner == customer_id, column.is_not(None)).distinct())}


def referral_reasons(session: Session, referral: Referral, settings: dict[str, Any]) -> tuple[str, list[str]]:
    """The verdict (accepted, rejected, review) and every reason for it."""
    referrer = session.get(Customer, referral.referrer_id)
    friend = session.get(Customer, referral.referred_id) if referral.referred_id else None
    if referrer is None or friend is None:
        return "rejected", ["the referrer or the friend no longer exists"]
    reject: list[str] = []
    review: list[str] = []
    if referrer.email and friend.email and referrer.email.strip().lower() == friend.email.strip().lower():
        reject.append("self-referral: same e-mail as the referrer")
    if phone_digits(referrer.phone or "") and phone_digits(referrer.phone or "") == phone_digits(friend.phone or ""):
        reject.append("self-referral: same phone as the referrer")
    if _address_keys(session, referrer.id) & _address_keys(session, friend.id):
        reject.append("self-referral: same address as the referrer")
    fingerprints = CustomerPaymentMethod.fingerprint
    if _values(session, fingerprints, CustomerPaymentMethod.customer_id, referrer.id) & _values(
            session, fingerprints, CustomerPaymentMethod.customer_id, friend.id):
        reject.append("self-referral: same payment card as the referrer")
    if _values(session, SignInEvent.device_id, SignInEvent.customer_id, referrer.id) & _values(
            session, SignInEvent.device_id, SignInEvent.customer_id, friend.id):
        reject.append("self-referral: same device as the referrer")
    earlier_order = session.scalar(select(func.min(Order.ordered_at)).where(Order.customer_id == friend.id))
    if earlier_order is not None and earlier_order < referral.created_at:
        reject.append("the friend was already a customer (an order before the referral)")
    day = dt.timedelta(days=1)
    burst = session.scalar(select(func.count()).select_from(Referral).where(
        Referral.referrer_id == referrer.id, Referral.created_at > referral.created_at - day,
        Referral.created_at < referral.created_at + day)) or 0
    if burst >= settings["burst_referrals"]:
        review.append(f"burst: {burst} referrals from this referrer within a day")
    friends = select(Referral.referred_id).where(Referral.referrer_id == referrer.id, Referral.referred_id.is_not(None))
    for column, label in ((SignInEvent.device_id, "device"), (SignInEvent.ip_address, "IP address")):
        mine = _values(session, column, SignInEvent.customer_id, friend.id)
        if not mine:
            continue
        rows = session.execute(select(column, func.count(func.distinct(SignInEvent.customer_id))).where(
            SignInEvent.customer_id.in_(friends), column.in_(mine)).group_by(column)).all()
        crowded = max((int(n) for _, n in rows), default=0)
        if crowded >= settings["shared_device_friends"]:
            review.append(f"{crowded} friends of this referrer share one {label}")
    for who, label in ((referrer.id, "referrer"), (friend.id, "friend")):
        if decisions_in_force(session, who):
            reject.append(f"the {label} is restricted or blocked")
        latest = session.scalar(select(RiskScore.overall).where(RiskScore.customer_id == who)
                                .order_by(RiskScore.as_of.desc()).limit(1))
        if latest is not None and latest >= REVIEW_THRESHOLD:
            review.append(f"the {label}'s risk score is {latest:.0f}")
    if reject:
        return "rejected", reject + review
    if review:
        return "review", review
    return "accepted", []


def _first_paid_order(session: Session, customer_id: int, after: dt.datetime) -> Order | None:
    return session.scalar(select(Order).where(Order.customer_id == customer_id, Order.ordered_at >= after,
                                              Order.status.in_(PAID_FRIEND_STATUSES))
                          .order_by(Order.ordered_at, Order.id).limit(1))


def process_referrals(session: Session, actor: Actor, now: dt.datetime) -> dict[str, int]:
    """The referral step of the refresh: check referrals whose friend has a paid first order, hold
    their rewards, reverse held or paid rewards whose order was undone, pay those past the return
    window within the allowances. Idempotent: a second run changes nothing."""
    require(actor, "refresh.run")
    settings, _ = get_referral_settings(session)
    counts = {"checked": 0, "accepted": 0, "rejected": 0, "review": 0, "held": 0, "paid": 0, "reversed": 0,
              "over_allowance": 0}
    checked = select(ReferralCheck.referral_id)
    # Referrals settled outside this programme (rewarded or expired before it ran) are left alone;
    # only friends with a paid order are looked at.
    has_paid_order = select(Order.id).where(Order.customer_id == Referral.referred_id,
                                            Order.status.in_(PAID_FRIEND_STATUSES), Order.ordered_at <= now).exists()
    pending = session.scalars(select(Referral).where(
        Referral.referred_id.is_not(None), Referral.id.not_in(checked), Referral.created_at <= now,
        Referral.status.in_(OPEN_REFERRAL_STATUSES), has_paid_order).order_by(Referral.id))
    for referral in pending:
        assert referral.referred_id is not None
        order = _first_paid_order(session, referral.referred_id, referral.created_at - dt.timedelta(days=1))
        if order is None or order.ordered_at > now:
            continue
        verdict, reasons = referral_reasons(session, referral, settings)
        session.add(ReferralCheck(referral_id=referral.id, verdict=verdict, reasons=reasons, first_order_id=order.id,
                                  checked_at=now))
        counts["checked"] += 1
        counts[verdict] += 1
        referral.converted_at = order.ordered_at
        referral.status = "converted" if verdict != "rejected" else "expired"
        if verdict == "review":
            session.add(RiskReview(customer_id=referral.referrer_id, referral_id=referral.id, source="referral",
                                   risk_type="fraud", score=0.0, fired=[{"id": 0, "name": r} for r in reasons],
                                   status="open", opened_at=now, due_at=now + REVIEW_SLA))
        if verdict != "rejected":
            payable = order.ordered_at + dt.timedelta(days=settings["return_window_days"])
            for side, who in (("referrer", referral.referrer_id), ("friend", referral.referred_id)):
                kind = settings[f"{side}_reward"]
                points = settings[f"{side}_points"] if kind == "points" else 0
                amount = Decimal(settings[f"{side}_voucher_amount"]) if kind == "voucher" else None
                if points > 0 or (amount is not None and amount > 0):
                    session.add(ReferralReward(referral_id=referral.id, side=side, customer_id=who, points=points,
                                               kind=kind, amount=amount, status="held", order_id=order.id,
                                               payable_at=payable))
                    counts["held"] += 1
    session.flush()
    counts["reversed"] += _reverse_undone(session, actor, now)
    paid, over = _pay_due(session, actor, now, settings)
    counts["paid"], counts["over_allowance"] = paid, over
    record_audit(session, actor, "referrals.process", "customer_referral_program", None, after=counts)
    return counts


def _reverse_undone(session: Session, actor: Actor, now: dt.datetime) -> int:
    undone = session.scalars(select(ReferralReward).join(Order, Order.id == ReferralReward.order_id).where(
        ReferralReward.status.in_(("held", "paid")), Order.status.in_(UNDONE_ORDER_STATUSES)))
    reversed_ = 0
    for reward in undone:
        reward.reason = f"the friend's first order {reward.order_id} was cancelled, returned or refunded"
        if reward.status == "paid" and reward.kind == "points":
            take_back_reward(session, actor, reward.customer_id, reward.points,
                             f"Referral reward reversed: order {reward.order_id} was undone",
                             source_type="referral", source_id=str(reward.referral_id),
                             idempotency_key=f"referral:reverse:{reward.id}")
        elif reward.status == "paid" and reward.voucher_id is not None:
            # an unused voucher is voided; a used one cannot be, so it is noted as clawed back
            outcome = void_voucher(session, actor, reward.voucher_id, f"Referral reward reversed: {reward.reason}",
                                   authorised_by="refresh.run")
            if outcome == "clawed_back":
                reward.reason += "; its voucher had already been used (clawed back)"
            else:
                reward.reason += "; its voucher was voided"
        reward.status, reward.settled_at = "reversed", now
        reversed_ += 1
    return reversed_


def _points_per_unit(session: Session) -> Decimal:
    """How many points one unit of currency is worth: a voucher reward's weight in the allowances."""
    settings, _ = get_loyalty_settings(session)
    return Decimal(1) / Decimal(str(settings["point_value"]))


def _weight(reward: ReferralReward, per_unit: Decimal) -> int:
    return reward.points + int((reward.amount or 0) * per_unit)


def _paid_since(session: Session, since: dt.datetime, per_unit: Decimal, customer_id: int | None = None) -> int:
    weight = ReferralReward.points + func.coalesce(ReferralReward.amount, 0) * per_unit
    query = select(func.coalesce(func.sum(weight), 0)).where(
        ReferralReward.status == "paid", ReferralReward.settled_at >= since)
    if customer_id is not None:
        query = query.where(ReferralReward.customer_id == customer_id, ReferralReward.side == "referrer")
    return int(session.scalar(query) or 0)


def _pay_due(session: Session, actor: Actor, now: dt.datetime, settings: dict[str, Any]) -> tuple[int, int]:
    due = session.scalars(select(ReferralReward).join(Referral, Referral.id == ReferralReward.referral_id).where(
        ReferralReward.status == "held", ReferralReward.payable_at <= now,
        # a referral under review is paid only once a reviewer approved it
        ~Referral.id.in_(select(RiskReview.referral_id).where(RiskReview.referral_id.is_not(None),
                                                              RiskReview.status != "approved")))
        .order_by(ReferralReward.payable_at, ReferralReward.id)).all()
    status_of = dict(session.execute(select(Customer.id, Customer.status).where(
        Customer.id.in_({reward.customer_id for reward in due}))).all()) if due else {}
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    per_unit = _points_per_unit(session)
    global_paid = _paid_since(session, month_start, per_unit)
    paid = over = 0
    for reward in due:
        weight = _weight(reward, per_unit)
        if reward.side == "referrer" and _paid_since(session, now - dt.timedelta(days=365), per_unit,
                                                     reward.customer_id) + weight > settings["per_referrer_yearly_points"]:
            reward.status, reward.settled_at = "rejected", now
            reward.reason = "the referrer's yearly reward allowance is spent"
            over += 1
            continue
        if global_paid + weight > settings["global_monthly_points"]:
            reward.reason = "waiting: the programme's monthly allowance is spent"
            over += 1
            continue
        if (status := status_of.get(reward.customer_id)) in UNREWARDABLE_STATUSES:
            # loyalty and vouchers refuse a closed, merged or erased account, so this side's reward lapses
            reward.status, reward.settled_at = "rejected", now
            reward.reason = f"the {reward.side}'s account is {status}"
            continue
        try:
            enforce(session, reward.customer_id, "referral_reward", now=now)
        except RiskRestricted as exc:
            reward.reason = f"waiting: {exc}"
            continue
        try:
            with session.begin_nested():  # a side the ledger refuses (a suspended loyalty account) lapses alone
                if reward.kind == "voucher":
                    assert reward.amount is not None
                    issue_vouchers(session, actor, [reward.customer_id], "amount", reward.amount, source="referral",
                                   source_id=str(reward.id), authorised_by="refresh.run", now=now,
                                   expires_at=now + dt.timedelta(days=settings["voucher_valid_days"]),
                                   reason=f"Referral reward ({reward.side}) for referral {reward.referral_id}")
                    reward.voucher_id = session.scalar(select(Voucher.id).where(
                        Voucher.source == "referral", Voucher.source_id == str(reward.id)))
                else:
                    credit_reward(session, actor, reward.customer_id, reward.points,
                                  f"Referral reward ({reward.side}) for referral {reward.referral_id}",
                                  source_type="referral", source_id=str(reward.referral_id),
                                  idempotency_key=f"referral:reward:{reward.id}")
        except ValidationError as exc:
            reward.status, reward.settled_at, reward.reason = "rejected", now, f"refused: {exc}"[:255]
            continue
        reward.status, reward.settled_at, reward.reason = "paid", now, None
        referral = session.get(Referral, reward.referral_id)
        if referral is not None and reward.side == "referrer":
            referral.status, referral.reward_points = "rewarded", reward.points
        global_paid += weight
        paid += 1
    session.flush()
    return paid, over


def referral_detail(session: Session, viewer: Actor, referral_id: int) -> dict[str, Any]:
    require(viewer, "referrals.view")
    referral = session.get(Referral, referral_id)
    if referral is None:
        raise NotFound(f"Referral {referral_id} does not exist.")
    check = session.get(ReferralCheck, referral_id)
    rewards = session.scalars(select(ReferralReward).where(ReferralReward.referral_id == referral_id)
                              .order_by(ReferralReward.side))
    return {"id": referral.id, "referrer_id": referral.referrer_id, "friend_id": referral.referred_id,
            "status": referral.status, "created_at": referral.created_at, "converted_at": referral.converted_at,
            "verdict": check.verdict if check else None, "reasons": check.reasons if check else [],
            "rewards": [{"side": r.side, "customer_id": r.customer_id, "kind": r.kind, "points": r.points,
                         "voucher_amount": r.amount, "voucher_id": r.voucher_id, "status": r.status,
                         "payable_at": r.payable_at, "reason": r.reason} for r in rewards]}

