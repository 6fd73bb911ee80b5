"""Referrals: codes, attribution window and touch, every fraud check, rewards held past the return
window, reversal on refund, allowances, and the programme's analytics."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import loyalty, platform, referrals, risk, vouchers
from db.models import (
    AuditLog,
    CustomerAddress,
    CustomerPaymentMethod,
    LoyaltyAccount,
    Order,
    Referral,
    ReferralCheck,
    ReferralReward,
    RiskReview,
    SignInEvent,
    Voucher,
)
from tests.factories import make_customer, make_order, make_user

T0 = dt.datetime(2026, 3, 1, 10, 0)


def _code(session, customer):
    return referrals.referral_code(session, platform.SYSTEM, customer.id)["code"]


def _refer(session, referrer, friend_kwargs=None, touched=T0, **order):
    friend = make_customer(session, touched + dt.timedelta(hours=1), **(friend_kwargs or {}))
    referral = referrals.attribute(session, platform.SYSTEM, friend.id, _code(session, referrer), touched)
    if order.get("total"):
        make_order(session, friend, touched + dt.timedelta(days=2), order["total"], status=order.get("status", "delivered"))
    return friend, referral


def _reward(session, referral_id, side):
    return session.scalars(select(ReferralReward).where(ReferralReward.referral_id == referral_id,
                                                        ReferralReward.side == side)).one()


def _balance(session, customer):
    return session.scalar(select(LoyaltyAccount.points_balance).where(LoyaltyAccount.customer_id == customer.id))


def test_codes_are_unguessable_stable_and_need_the_permission(session):
    customer, other = make_customer(session, T0), make_customer(session, T0)
    first = referrals.referral_code(session, platform.SYSTEM, customer.id)
    assert first == referrals.referral_code(session, platform.SYSTEM, customer.id)
    assert len(first["code"]) == 10 and first["link"].endswith(first["code"])
    assert _code(session, other) != first["code"]
    with pytest.raises(platform.PermissionDenied):
        referrals.referral_code(session, make_user(session, "executive"), customer.id)
    with pytest.raises(platform.ValidationError, match="No referral code 'NOPE'"):
        referrals.attribute(session, platform.SYSTEM, other.id, "nope", T0)


def test_attribution_window_and_first_or_last_touch(session):
    a, b = make_customer(session, T0), make_customer(session, T0)
    friend = make_customer(session, T0 + dt.timedelta(days=40))
    with pytest.raises(platform.ValidationError, match="outside the 30-day attribution window"):
        referrals.attribute(session, platform.SYSTEM, friend.id, _code(session, a), T0)
    # A registered friend who has not ordered yet: the first order will carry a later link.
    browser = make_customer(session, T0 - dt.timedelta(days=200))
    assert referrals.attribute(session, platform.SYSTEM, browser.id, _code(session, b), T0).referrer_id == b.id
    buyer = make_customer(session, T0 - dt.timedelta(days=200))
    make_order(session, buyer, T0 - dt.timedelta(days=100), 20)
    with pytest.raises(platform.ValidationError, match="had already ordered"):
        referrals.attribute(session, platform.SYSTEM, buyer.id, _code(session, a), T0)
    first = referrals.attribute(session, platform.SYSTEM, friend.id, _code(session, a), T0 + dt.timedelta(days=20))
    again = referrals.attribute(session, platform.SYSTEM, friend.id, _code(session, b), T0 + dt.timedelta(days=30))
    assert again.id == first.id and again.referrer_id == a.id  # first touch keeps the first referrer
    settings, version = referrals.get_referral_settings(session)
    referrals.save_referral_settings(session, platform.SYSTEM, {**settings, "attribution": "last_touch"}, version)
    moved = referrals.attribute(session, platform.SYSTEM, friend.id, _code(session, b), T0 + dt.timedelta(days=35))
    assert moved.id == first.id and moved.referrer_id == b.id
    with pytest.raises(platform.ValidationError, match="first_touch or last_touch"):
        referrals.save_referral_settings(session, platform.SYSTEM, {"attribution": "any"}, None)
    with pytest.raises(platform.ValidationError, match="Return window days is a whole number from 0 to 365"):
        referrals.save_referral_settings(session, platform.SYSTEM, {"return_window_days": -1}, None)


def test_rewards_are_held_until_the_return_window_then_paid_once_through_the_ledger(session):
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    friend, referral = _refer(session, referrer, total=80)
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=1))["checked"] == 0  # no order yet
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    assert (done["accepted"], done["held"], done["paid"]) == (1, 2, 0)
    assert _reward(session, referral.id, "referrer").payable_at == T0 + dt.timedelta(days=32)
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=33))
    assert done["paid"] == 2 and done["checked"] == 0
    assert (_balance(session, referrer), _balance(session, friend)) == (500, 250)
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=34))["paid"] == 0
    assert session.get(Referral, referral.id).status == "rewarded"


def test_a_closed_referrers_reward_lapses_and_the_friends_is_still_paid(session):
    """Loyalty refuses a closed account; the referral step must not fail on it (seeded data has them)."""
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    friend, referral = _refer(session, referrer, total=80)
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    referrer.status = "closed"
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=33))
    assert done["paid"] == 1 and _balance(session, friend) == 250
    lapsed = _reward(session, referral.id, "referrer")
    assert (lapsed.status, lapsed.reason) == ("rejected", "the referrer's account is closed")
    assert session.get(Referral, referral.id).status == "converted"


def test_a_reward_the_ledger_refuses_lapses_with_its_reason_and_the_step_goes_on(session):
    """A suspended loyalty account refuses points: that side's reward is rejected with the ledger's reason;
    the other side is paid and the referral step does not fail."""
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    friend, referral = _refer(session, referrer, total=80)
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    loyalty.enroll(session, platform.SYSTEM, referrer.id)
    session.execute(LoyaltyAccount.__table__.update().where(LoyaltyAccount.customer_id == referrer.id)
                    .values(status="suspended"))
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=33))
    assert done["paid"] == 1 and _balance(session, friend) == 250
    lapsed = _reward(session, referral.id, "referrer")
    assert lapsed.status == "rejected" and lapsed.reason.startswith("refused: ") and "suspended" in lapsed.reason
    assert _balance(session, referrer) == 0


def test_a_refund_reverses_held_rewards_and_takes_paid_points_back(session):
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    _, held = _refer(session, referrer, total=80)
    _, paid = _refer(session, referrer, total=60, touched=T0 + dt.timedelta(days=3))
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    held_order = _reward(session, held.id, "friend").order_id
    from db.models import Order

    session.get(Order, held_order).status = "refunded"  # within the return window: nothing paid
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=40))
    assert _reward(session, held.id, "referrer").status == "reversed"
    assert _reward(session, paid.id, "referrer").status == "paid" and _balance(session, referrer) == 500
    session.get(Order, _reward(session, paid.id, "friend").order_id).status = "returned"  # after the payout
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=60))
    assert done["reversed"] == 2 and _balance(session, referrer) == 0
    assert "cancelled, returned or refunded" in _reward(session, paid.id, "referrer").reason


def test_allowances_cap_a_referrer_and_the_programme(session):
    settings, version = referrals.get_referral_settings(session)
    referrals.save_referral_settings(session, platform.SYSTEM, {**settings, "per_referrer_yearly_points": 1000,
                                                                "global_monthly_points": 1600}, version)
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    made = [_refer(session, referrer, total=50, touched=T0 + dt.timedelta(hours=6 * k))[1] for k in range(3)]
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    done = referrals.process_referrals(session, platform.SYSTEM, dt.datetime(2026, 4, 5))
    statuses = [_reward(session, r.id, "referrer").status for r in made]
    assert statuses == ["paid", "paid", "rejected"]  # 500 + 500 reaches the referrer's 1,000
    assert "yearly reward allowance" in _reward(session, made[2].id, "referrer").reason
    friends = [_reward(session, r.id, "friend") for r in made]
    assert [f.status for f in friends] == ["paid", "paid", "held"]  # 1,600 a month: the third waits
    assert "monthly allowance" in friends[2].reason and done["over_allowance"] == 2


@pytest.mark.parametrize("setup, reason", [
    ("email", "self-referral: same e-mail as the referrer"),
    ("phone", "self-referral: same phone as the referrer"),
    ("address", "self-referral: same address as the referrer"),
    ("card", "self-referral: same payment card as the referrer"),
    ("device", "self-referral: same device as the referrer"),
    ("existing", "the friend was already a customer (an order before the referral)"),
    ("blocked", "the referrer is restricted or blocked"),
])
def test_each_fraud_check_rejects_with_its_reason_and_nothing_is_paid(session, setup, reason):
    referrer = make_customer(session, T0 - dt.timedelta(days=100), email="ref@example.com", phone="+49 170 5550001")
    kwargs = {"email": "REF@example.com"} if setup == "email" else {}
    if setup == "phone":
        kwargs["phone"] = "+491705550001"
    _code(session, referrer)
    friend, referral = _refer(session, referrer, kwargs, total=40)
    if setup == "address":
        for who in (referrer, friend):
            session.add(CustomerAddress(customer_id=who.id, kind="shipping", line1="1 Same St", city="Berlin",
                                        postal_code="10115", country_code="DE"))
    if setup == "card":
        for k, who in enumerate((referrer, friend)):
            session.add(CustomerPaymentMethod(customer_id=who.id, processor="stripe", processor_token=f"pm_{k}",
                                              brand="visa", fingerprint="fp-same"))
    if setup == "device":
        for who in (referrer, friend):
            session.add(SignInEvent(customer_id=who.id, signed_in_at=T0, device_id="dev-same", ip_address="10.0.0.1"))
    if setup == "existing":
        make_order(session, friend, T0 - dt.timedelta(days=3), 10)
    if setup == "blocked":
        risk.restrict_customer(session, make_user(session, "risk_analyst"), referrer.id, "block", "ring")
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=40))
    check = session.get(ReferralCheck, referral.id)
    assert check.verdict == "rejected" and reason in check.reasons
    assert done["paid"] == 0 and session.scalar(select(func.count()).select_from(ReferralReward)) == 0
    assert referrals.referral_detail(session, platform.SYSTEM, referral.id)["reasons"] == check.reasons


def test_bursts_and_friends_sharing_a_device_go_to_the_review_queue(session):
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    made = []
    for k in range(5):
        friend, referral = _refer(session, referrer, total=30, touched=T0 + dt.timedelta(hours=k))
        session.add(SignInEvent(customer_id=friend.id, signed_in_at=T0, device_id="farm-1", ip_address=f"10.1.1.{k}"))
        made.append(referral)
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    check = session.get(ReferralCheck, made[-1].id)
    assert check.verdict == "review"
    assert "burst: 5 referrals from this referrer within a day" in check.reasons
    assert "5 friends of this referrer share one device" in check.reasons
    reviews = session.scalars(select(RiskReview).where(RiskReview.source == "referral")).all()
    assert len(reviews) == 5 and reviews[0].customer_id == referrer.id
    # Under review nothing is paid, even past the return window; an approval releases it.
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=40))["paid"] == 0
    analyst = make_user(session, "risk_analyst")
    risk.decide_review(session, analyst, reviews[0].id, "approve", "Office colleagues, checked")
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=41))["paid"] == 2


def test_analytics_conversion_k_factor_and_referred_customers(session):
    viewer = make_user(session, "executive")
    referrers = [make_customer(session, T0 - dt.timedelta(days=200)) for _ in range(2)]
    others = [make_customer(session, T0 - dt.timedelta(days=200)) for _ in range(6)]
    for who in referrers + others:
        make_order(session, who, T0 - dt.timedelta(days=150), 100)
    _refer(session, referrers[0], total=50)
    _refer(session, referrers[0], touched=T0 + dt.timedelta(days=1))  # never orders
    _refer(session, referrers[1], total=70, touched=T0 + dt.timedelta(days=2))
    as_of = dt.date(2026, 6, 30)
    referrals.process_referrals(session, platform.SYSTEM, dt.datetime(2026, 6, 30, 23))
    kpis = referrals.referral_kpis(session, viewer, as_of)
    assert (kpis["referrals"], kpis["referrers"], kpis["converted"], kpis["customers"]) == (3, 2, 2, 11)
    assert kpis["conversion"] == pytest.approx(2 / 3)
    assert kpis["k_factor"] == pytest.approx(3 / 11 * 2 / 3)
    assert kpis["days_to_first_order"] == pytest.approx(2 - 1 / 24, abs=1e-3)
    assert kpis["points"] == {"paid": 1500}
    months = referrals.referrals_by_month(session, viewer, as_of)
    assert {(m["month"], m["status"]): m["referrals"] for m in months} == {("2026-03", "rewarded"): 2,
                                                                        ("2026-03", "signed_up"): 1}
    groups = {g["group"]: g for g in referrals.referred_vs_others(session, viewer, as_of)}
    assert groups["referred"]["customers"] == 3 and groups["other"]["customers"] == 8
    assert groups["referred"]["revenue_per_customer"] == pytest.approx(120 / 3)
    assert groups["other"]["retention_90d"] == 0.0  # their only orders were 150 days before March
    # The refresh stores the comparison and the days to a first order; the page reads them for the date.
    stored = referrals.refresh_referral_summary(session, as_of)
    assert {g["group"]: g for g in stored["groups"]} == groups
    make_order(session, others[0], T0 + dt.timedelta(days=3), 1000)  # not in the stored figures
    assert {g["group"]: g for g in referrals.referred_vs_others(session, viewer, as_of)} == groups
    assert referrals.referral_kpis(session, viewer, as_of)["days_to_first_order"] == kpis["days_to_first_order"]
    later = {g["group"]: g for g in referrals.referred_vs_others(session, viewer, as_of + dt.timedelta(days=1))}
    assert later["other"]["revenue_per_customer"] == pytest.approx((800 + 1000) / 8)  # another date: counted now
    page = referrals.referral_list(session, viewer)
    assert page.total == 3 and {row["status"] for row in page.rows} == {"rewarded", "signed_up"}
    assert loyalty is not None


# --------------------------------------------------------------------------- voucher rewards


def _voucher_settings(session, **changes):
    settings, version = referrals.get_referral_settings(session)
    referrals.save_referral_settings(session, platform.SYSTEM, {**settings, "referrer_reward": "voucher",
                                                                "referrer_voucher_amount": 10, **changes}, version)


def test_a_voucher_reward_issues_a_voucher_when_payable_and_the_points_side_stays_points(session):
    _voucher_settings(session)
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    friend, referral = _refer(session, referrer, total=80)
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    assert (done["accepted"], done["held"], done["paid"]) == (1, 2, 0)
    held = _reward(session, referral.id, "referrer")
    assert (held.kind, held.points, held.amount, held.voucher_id) == ("voucher", 0, Decimal("10.00"), None)
    assert session.scalar(select(func.count()).select_from(Voucher)) == 0  # nothing before the return window
    paid_at = T0 + dt.timedelta(days=33)
    assert referrals.process_referrals(session, platform.SYSTEM, paid_at)["paid"] == 2
    voucher = session.get(Voucher, _reward(session, referral.id, "referrer").voucher_id)
    assert (voucher.customer_id, voucher.kind, voucher.value, voucher.source, voucher.status) == (
        referrer.id, "amount", Decimal("10.00"), "referral", "issued")
    assert voucher.expires_at == paid_at + dt.timedelta(days=90)
    assert _balance(session, friend) == 250 and _balance(session, referrer) is None  # no points for the referrer
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=34))["paid"] == 0
    assert session.scalar(select(func.count()).select_from(Voucher)) == 1
    detail = referrals.referral_detail(session, platform.SYSTEM, referral.id)
    assert {r["side"]: r["kind"] for r in detail["rewards"]} == {"referrer": "voucher", "friend": "points"}


def test_a_refund_voids_an_unused_voucher_reward_and_notes_a_used_one_clawed_back(session):
    _voucher_settings(session, friend_reward="voucher", friend_voucher_amount=5)
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    unused_friend, unused = _refer(session, referrer, total=80)
    used_friend, used = _refer(session, referrer, total=60, touched=T0 + dt.timedelta(days=3))
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=40))
    spent = session.get(Voucher, _reward(session, used.id, "friend").voucher_id)
    order = make_order(session, used_friend, T0 + dt.timedelta(days=41), 30)
    vouchers.redeem_voucher(session, platform.SYSTEM, spent, order.id, T0 + dt.timedelta(days=41))
    for referral in (unused, used):
        session.get(Order, _reward(session, referral.id, "friend").order_id).status = "refunded"
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=60))
    assert done["reversed"] == 4
    unused_voucher = session.get(Voucher, _reward(session, unused.id, "friend").voucher_id)
    assert unused_voucher.status == "void" and "Referral reward reversed" in unused_voucher.void_reason
    assert _reward(session, unused.id, "friend").reason.endswith("its voucher was voided")
    session.refresh(spent)
    assert spent.status == "redeemed" and spent.clawed_back_at is not None
    assert _reward(session, used.id, "friend").reason.endswith("already been used (clawed back)")
    actions = session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "voucher")).all()
    assert actions.count("voucher.void") == 3 and actions.count("voucher.claw_back") == 1
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=61))["reversed"] == 0
    del unused_friend


def test_voucher_rewards_count_against_the_allowances_at_their_value_in_points(session):
    _voucher_settings(session, per_referrer_yearly_points=1_500, friend_points=0)  # 10.00 = 1,000 points
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    _, first = _refer(session, referrer, total=80)
    _, second = _refer(session, referrer, total=80, touched=T0 + dt.timedelta(days=1))
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    done = referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=40))
    assert done["paid"] == 1 and done["over_allowance"] == 1
    assert _reward(session, first.id, "referrer").status == "paid"
    assert _reward(session, second.id, "referrer").reason == "the referrer's yearly reward allowance is spent"
    assert session.scalar(select(func.count()).select_from(Voucher)) == 1


def test_a_restricted_referrer_waits_for_a_voucher_reward_as_for_points(session):
    _voucher_settings(session, friend_points=0)
    referrer = make_customer(session, T0 - dt.timedelta(days=100))
    _, referral = _refer(session, referrer, total=80)
    referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=10))
    risk.restrict_customer(session, make_user(session, "risk_analyst"), referrer.id, "restrict", "Promo abuse",
                           days=3650)
    assert referrals.process_referrals(session, platform.SYSTEM, T0 + dt.timedelta(days=40))["paid"] == 0
    assert _reward(session, referral.id, "referrer").reason.startswith("waiting: Customer")
    assert session.scalar(select(func.count()).select_from(Voucher)) == 0


@pytest.mark.parametrize(("change", "message"), [
    ({"referrer_reward": "cash"}, "referrer's reward is points or voucher"),
    ({"friend_voucher_amount": -1}, "Friend voucher amount is a whole number from 0"),
    ({"voucher_valid_days": 0}, "Voucher valid days is a whole number from 1"),
])
def test_bad_reward_settings_are_refused(change, message):
    with pytest.raises(platform.ValidationError, match=message):
        referrals.validate_referral_settings(change)
