"""Risk: each signal on crafted customers, rules as data, the order of actions, lists, scores with
reviews and decisions, enforcement in the core, identity verification and the replay of a rule."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import delete, func, select

from crm_core import customers, loyalty, platform, risk
from crm_core.risk.risk_reports import DISTRIBUTION_SUMMARY
from db.models import (
    AccountChange,
    AuditLog,
    Chargeback,
    CustomerAddress,
    CustomerPaymentMethod,
    IdentityCheck,
    RiskDecision,
    RiskReview,
    RiskRule,
    RiskScore,
    RollupSummary,
    SignInEvent,
)
from tests.factories import make_customer, make_order, make_user

AS_OF = dt.date(2026, 6, 30)
NOW = dt.datetime(2026, 6, 30, 23, 0)
START = dt.datetime(2025, 1, 1)


def days_before(days: float) -> dt.datetime:
    return dt.datetime(2026, 6, 30, 12, 0) - dt.timedelta(days=days)


def sign_in(session, customer, when, device, ip, lat=52.52, lon=13.40):
    session.add(SignInEvent(customer_id=customer.id, signed_in_at=when, device_id=device, ip_address=ip,
                            latitude=lat, longitude=lon, country_code="DE", city="Berlin"))


def card(session, customer, fingerprint, created, token=None):
    session.add(CustomerPaymentMethod(customer_id=customer.id, processor="stripe",
                                      processor_token=token or f"pm_{customer.id}_{fingerprint}_{created:%j%H%M}",
                                      brand="visa", fingerprint=fingerprint, created_at=created))


def address(session, customer, kind, line1, country="DE", postal="10115"):
    session.add(CustomerAddress(customer_id=customer.id, kind=kind, line1=line1, city="Berlin",
                                postal_code=postal, country_code=country, created_at=START))


def signal(frame: pd.DataFrame, customer, name: str) -> float:
    return float(frame.at[customer.id, name])


# --------------------------------------------------------------------------- signals


def test_each_signal_on_crafted_customers(session):
    c = [make_customer(session, START) for _ in range(14)]
    # c0, c1, c2 sign in on one device; c3 signs in on another one alone.
    for who in c[:3]:
        sign_in(session, who, days_before(40), "shared-dev", f"10.0.0.{who.id}")
    sign_in(session, c[3], days_before(40), "own-dev", "10.0.1.1")
    # c0 and c3 share a card; c4 added three cards in the month.
    card(session, c[0], "fp-shared", START)
    card(session, c[3], "fp-shared", START)
    for k in range(3):
        card(session, c[4], f"fp-new-{k}", days_before(5 + k))
    # c5: Berlin, then New York an hour later: impossible travel.
    sign_in(session, c[5], days_before(3), "d5", "10.5.0.1")
    sign_in(session, c[5], days_before(3) + dt.timedelta(hours=1), "d5", "10.5.0.2", lat=40.71, lon=-74.01)
    # c6: a new device and a new IP in the last two weeks; c7 a new device on a known IP.
    sign_in(session, c[6], days_before(60), "d6", "10.6.0.1")
    sign_in(session, c[6], days_before(2), "d6-new", "45.1.1.1")
    sign_in(session, c[7], days_before(60), "d7", "10.7.0.1")
    sign_in(session, c[7], days_before(2), "d7-new", "10.7.0.1")
    # c8: password change then address change within a day; c9 ten days apart.
    session.add_all([AccountChange(customer_id=c[8].id, kind="password", changed_at=days_before(5)),
                     AccountChange(customer_id=c[8].id, kind="address", changed_at=days_before(4)),
                     AccountChange(customer_id=c[9].id, kind="password", changed_at=days_before(20)),
                     AccountChange(customer_id=c[9].id, kind="address", changed_at=days_before(10))])
    # c10: 10 orders of 50 spread over the year before, then 5 in the last week, one of 400.
    for k in range(10):
        make_order(session, c[10], days_before(40 + 30 * k), 50)
    for k in range(4):
        make_order(session, c[10], days_before(1 + k), 50)
    make_order(session, c[10], days_before(5), 400)
    # c11: 4 orders, one refunded, two charged back.
    orders = [make_order(session, c[11], days_before(100 + k), 30, status="refunded" if k == 0 else "delivered")
              for k in range(4)]
    for order in orders[:2]:
        session.add(Chargeback(customer_id=c[11].id, order_id=order.id, amount=30, opened_at=days_before(50)))
    # c12: identity verified, then failed; c13: billing in DE, shipping in FR, and the same phone as c12.
    session.add_all([IdentityCheck(customer_id=c[12].id, status="verified", checked_at=days_before(90)),
                     IdentityCheck(customer_id=c[12].id, status="failed", reason="document", checked_at=days_before(9))])
    address(session, c[13], "billing", "1 Main St", "DE")
    address(session, c[13], "shipping", "2 Rue X", "FR", "75001")
    c[12].phone, c[13].phone = "+49 170 1234567", "+491701234567"
    # Shared shipping address: c0, c1 and c2 (c0's written differently).
    address(session, c[0], "shipping", " 5 Ring Road ")
    address(session, c[1], "shipping", "5 ring road")
    address(session, c[2], "shipping", "5 Ring Road")
    # After the as-of date: nothing of this may count.
    sign_in(session, c[3], NOW + dt.timedelta(days=1), "shared-dev", "10.0.9.9")
    session.add(Chargeback(customer_id=c[10].id, amount=5, opened_at=NOW + dt.timedelta(days=1)))
    session.flush()

    result = risk.compute_signals(session, AS_OF)
    frame = result.frame
    assert result.left_out == {}
    assert [signal(frame, who, "shared_device_accounts") for who in c[:4]] == [2, 2, 2, 0]
    assert [signal(frame, who, "shared_card_accounts") for who in (c[0], c[3], c[4])] == [1, 1, 0]
    assert signal(frame, c[4], "cards_added_30d") == 3
    assert signal(frame, c[5], "impossible_travel_30d") == 1 and signal(frame, c[6], "impossible_travel_30d") == 0
    assert signal(frame, c[6], "new_device_new_ip_14d") == 1 and signal(frame, c[7], "new_device_new_ip_14d") == 0
    assert signal(frame, c[8], "credential_then_payout_change") == 1
    assert signal(frame, c[9], "credential_then_payout_change") == 0
    assert signal(frame, c[10], "orders_7d") == 5
    assert signal(frame, c[10], "velocity_ratio") == pytest.approx(5 / (10 / 51))
    assert signal(frame, c[10], "amount_ratio") == pytest.approx(8.0)
    assert signal(frame, c[10], "chargebacks_365d") == 0
    assert signal(frame, c[11], "refund_ratio") == 0.25
    assert signal(frame, c[11], "chargebacks_365d") == 2 and signal(frame, c[11], "chargeback_ratio") == 0.5
    assert signal(frame, c[12], "identity_failed") == 1 and signal(frame, c[13], "identity_failed") == 0
    assert signal(frame, c[13], "country_mismatch") == 1 and signal(frame, c[12], "country_mismatch") == 0
    assert signal(frame, c[12], "shared_phone_accounts") == 1 and signal(frame, c[11], "shared_phone_accounts") == 0
    assert [signal(frame, who, "shared_address_accounts") for who in c[:3]] == [2, 2, 2]
    assert np.isnan(frame.at[c[0].id, "amount_ratio"])  # no orders: no ratio, not zero
    for who in (c[0], c[5], c[10], c[12]):  # one customer's signals (the case view) are the same as in bulk
        pd.testing.assert_series_equal(risk.compute_signals(session, AS_OF, [who.id]).frame.loc[who.id],
                                       frame.loc[who.id])


def test_a_shop_with_only_customers_and_orders_leaves_the_other_signals_out(session):
    shopper = make_customer(session, START)
    make_order(session, shopper, days_before(3), 20)
    result = risk.compute_signals(session, AS_OF)
    assert set(result.left_out) == {s.name for s in risk.SIGNALS if s.source not in ("orders", "customers")}
    assert result.left_out["impossible_travel_30d"] == "no sign-ins before 2026-07-01"
    assert {"orders_7d", "refund_ratio", "shared_phone_accounts"} <= set(result.frame.columns)
    catalogue = {row["signal"]: row["available"] for row in risk.signal_catalogue(result.left_out)}
    assert catalogue["orders_7d"] == "yes" and catalogue["chargebacks_365d"].startswith("no: no chargebacks")


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize("condition, message", [
    ({"all": [{"signal": "nope", "op": ">", "value": 1}]}, "Unknown signal 'nope'"),
    ({"all": [{"signal": "orders_7d", "op": "=~", "value": 1}]}, "Unknown operator"),
    ({"all": [{"signal": "orders_7d", "op": ">", "value": "3; DROP"}]}, "must be a number"),
    ({"all": [{"signal": "orders_7d", "op": ">", "value": True}]}, "must be a number"),
    ({"all": []}, "at least one comparison"),
    ({"both": []}, '{"all": [...]}'),
    ("orders_7d > 3", '{"all": [...]}'),
    ({"all": [{"any": [{"all": [{"any": [{"signal": "orders_7d", "op": ">", "value": 1}]}]}]}]}, "3 deep"),
    ({"all": [{"signal": "orders_7d", "op": ">"}]}, 'exactly "signal", "op" and "value"'),
])
def test_bad_conditions_are_refused_with_the_reason(condition, message):
    with pytest.raises(platform.ValidationError, match=message.replace("[", r"\[").replace("{", r"\{")):
        risk.parse_condition(condition)


def test_conditions_evaluate_column_wise_and_a_missing_signal_is_false():
    frame = pd.DataFrame({"orders_7d": [0, 3, 5, np.nan], "refund_ratio": [0.5, 0.0, 0.4, 0.9]})
    condition = risk.parse_condition({"any": [{"signal": "orders_7d", "op": ">=", "value": 5},
                                              {"all": [{"signal": "refund_ratio", "op": ">", "value": 0.3},
                                                       {"signal": "orders_7d", "op": "<", "value": 1}]}]})
    assert risk.evaluate(condition, frame).tolist() == [True, False, True, False]
    missing = risk.parse_condition({"all": [{"signal": "chargebacks_365d", "op": ">=", "value": 0}]})
    assert risk.evaluate(missing, frame).tolist() == [False] * 4
    assert risk.describe(condition) == "orders_7d >= 5 or (refund_ratio > 0.3 and orders_7d < 1)"


def test_rules_are_saved_checked_and_audited(session):
    admin, analyst, risk_analyst = make_user(session, "admin"), make_user(session, "analyst"), make_user(
        session, "risk_analyst")
    rule = risk.save_rule(session, risk_analyst, name="Burst", risk_type="fraud", weight=30, action="review",
                          condition={"all": [{"signal": "orders_7d", "op": ">=", "value": 5}]})
    with pytest.raises(platform.ValidationError, match="already exists"):
        risk.save_rule(session, admin, name="burst", risk_type="fraud", weight=10, condition=rule.condition)
    for bad, message in (({"weight": 101}, "0 to 100"), ({"risk_type": "money"}, "Unknown risk type"),
                         ({"action": "delete"}, "Unknown action"), ({"name": " "}, "needs a name")):
        spec = {"name": "Other", "risk_type": "fraud", "weight": 10, "action": "none", **bad}
        with pytest.raises(platform.ValidationError, match=message):
            risk.save_rule(session, admin, condition=rule.condition, **spec)
    with pytest.raises(platform.PermissionDenied):
        risk.save_rule(session, analyst, name="X", risk_type="fraud", weight=1, condition=rule.condition)
    risk.save_rule(session, admin, rule_id=rule.id, expected_version=rule.version, name="Burst", risk_type="fraud",
                   weight=40, action="block", condition=rule.condition)
    with pytest.raises(platform.ConflictError):
        risk.save_rule(session, admin, rule_id=rule.id, expected_version=1, name="Burst", risk_type="fraud",
                       weight=41, action="block", condition=rule.condition)
    actions = session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "risk_rule")).all()
    assert actions == ["risk.rule_create", "risk.rule_update"]
    assert risk.install_default_rules(session, platform.SYSTEM) == 0  # the shop already has a rule


# --------------------------------------------------------------------------- scores and actions


def _rule(rule_id, signal_name, risk_type, weight, action):
    return RiskRule(id=rule_id, name=f"r{rule_id}", risk_type=risk_type, weight=weight, action=action,
                    condition={"all": [{"signal": signal_name, "op": ">=", "value": 1}]})


def test_scores_sum_weights_per_type_and_actions_follow_the_fixed_order():
    frame = pd.DataFrame({"a": [1, 1, 1, 1, 0, 0, 1], "b": [1, 0, 0, 0, 1, 0, 0], "c": [0, 1, 0, 0, 0, 0, 0],
                          "d": [0, 0, 1, 0, 0, 0, 0]}, index=[1, 2, 3, 4, 5, 6, 7])
    rules = [_rule(1, "a", "fraud", 20, "none"), _rule(2, "b", "fraud", 30, "block"),
             _rule(3, "c", "credit", 60, "review"), _rule(4, "d", "account_takeover", 10, "restrict")]
    lists = {"allow": {1: "E-mail on the allow list"}, "block": {4: "Device id on the block list", 7: "x"}}
    lists["allow"][7] = "IP address on the allow list"
    out = risk.score_frame(frame, rules, None, lists)
    assert out.loc[1, ["fraud", "credit", "account_takeover", "overall"]].tolist() == [50, 0, 0, 50]
    assert out["action"].to_dict() == {1: "none", 2: "review", 3: "restrict", 4: "block", 5: "block", 6: "none",
                                       7: "none"}
    assert out.loc[1, "why"] == "E-mail on the allow list"  # allow-list first, over a block rule
    assert out.loc[4, "why"] == "Device id on the block list"
    assert out.loc[5, "why"] == "block rule" and out.loc[2, "why"] == "review rule"
    assert out.loc[2, "level"] == "high" and out.loc[6, "level"] == "low"
    assert out.loc[1, "fired"] == [1, 2] and out.loc[6, "fired"] is None
    # The anomaly model adds up to 20 points to fraud and account takeover, from the top decile.
    anomaly = pd.Series([1.0, 0.95, 0.5, 0.0, 0.0, 0.0, 0.0], index=frame.index)
    with_model = risk.score_frame(frame, rules, anomaly)
    assert with_model.loc[1, "fraud"] == 70 and with_model.loc[1, "account_takeover"] == 20
    assert with_model.loc[2, "fraud"] == 30 and with_model.loc[3, "fraud"] == 20
    assert with_model.loc[2, "credit"] == 60  # credit gets no anomaly points


def test_stored_scores_open_one_review_per_customer_and_record_block_decisions(session):
    a, b, c = (make_customer(session, START) for _ in range(3))
    frame = pd.DataFrame({"x": [1, 0, 0], "y": [0, 1, 0]}, index=[a.id, b.id, c.id])
    rules = [_rule(901, "x", "fraud", 60, "none"), _rule(902, "y", "fraud", 10, "block")]
    for _ in range(2):
        scored = risk.score_frame(frame, rules)
        summary = risk.store_scores(session, platform.SYSTEM, AS_OF, NOW, scored, {901: "Sixty", 902: "Ten"})
    assert summary["scored"] == 3 and summary["reviews_opened"] == 0 and summary["decisions"] == 0
    reviews = session.scalars(select(RiskReview)).all()
    assert [(r.customer_id, r.source, r.score, r.fired) for r in reviews] == [(a.id, "score", 60.0,
                                                                               [{"id": 901, "name": "Sixty"}])]
    assert reviews[0].due_at == NOW + dt.timedelta(hours=risk.REVIEW_SLA_HOURS)
    decisions = session.scalars(select(RiskDecision)).all()
    assert [(d.customer_id, d.action, d.reason) for d in decisions] == [(b.id, "block", "Automatic: block rule")]
    assert decisions[0].expires_at == NOW + dt.timedelta(days=risk.DECISION_DAYS)
    distribution = risk.score_distribution(session, platform.SYSTEM)
    assert distribution["actions"] == {"review": 1, "block": 1, "none": 1} and distribution["to_review"] == 1
    assert {(r["type"], r["level"]): r["customers"] for r in distribution["levels"]} == {
        ("fraud", "high"): 1, ("fraud", "low"): 2, ("credit", "low"): 3, ("account_takeover", "low"): 3,
        ("overall", "high"): 1, ("overall", "low"): 2}
    # The risk step stores the date's distribution; the page then reads it instead of every score.
    risk.store_score_distribution(session, AS_OF)
    session.execute(delete(RiskScore))
    assert risk.score_distribution(session, platform.SYSTEM, AS_OF) == distribution


# --------------------------------------------------------------------------- decisions take effect


def test_a_restriction_refuses_redemption_email_change_and_large_orders_with_the_reason(session):
    analyst = make_user(session, "risk_analyst")
    agent = make_user(session, "support_agent")
    customer = make_customer(session, START, email="before@example.com")
    loyalty.enroll(session, platform.SYSTEM, customer.id)
    risk.restrict_customer(session, analyst, customer.id, "restrict", "Card testing seen", days=10,
                           order_limit="150")
    with pytest.raises(risk.RiskRestricted, match=r"restricted until .* \(Card testing seen\) and cannot redeem"):
        loyalty.redeem(session, agent, customer.id, 10)
    with pytest.raises(risk.RiskRestricted, match="cannot change the e-mail address"):
        customers.update_customer(session, agent, customer.id, customer.version, {"email": "new@example.com"})
    customers.update_customer(session, agent, customer.id, customer.version, {"first_name": "Still"})
    with pytest.raises(risk.RiskRestricted, match="orders over 150.00 are refused"):
        risk.check_order(session, customer.id, Decimal("150.01"))
    risk.check_order(session, customer.id, Decimal("150.00"))
    # Expired or lifted decisions no longer hold.
    risk.check_order(session, customer.id, 999, now=dt.datetime.now() + dt.timedelta(days=11))
    decision = risk.decisions_in_force(session, customer.id)[0]
    risk.lift_decision(session, analyst, decision.id, "Customer called, card is theirs")
    with pytest.raises(platform.ValidationError, match="balance|points"):
        loyalty.redeem(session, agent, customer.id, 10)  # refused for the balance now, not the restriction
    audit = session.scalars(select(AuditLog.action).where(AuditLog.action.like("risk.%")).order_by(AuditLog.id)).all()
    assert audit == ["risk.restrict", "risk.lift"]


def test_a_block_closes_every_account_action(session):
    analyst = make_user(session, "risk_analyst")
    agent = make_user(session, "support_agent")
    customer = make_customer(session, START)
    risk.restrict_customer(session, analyst, customer.id, "block", "Confirmed fraud ring")
    for attempt in (lambda: customers.update_customer(session, agent, customer.id, customer.version,
                                                      {"first_name": "X"}),
                    lambda: customers.add_address(session, agent, customer.id,
                                                  {"line1": "1 Road", "city": "Berlin", "country_code": "DE", "postal_code": "10115"}),
                    lambda: risk.check_order(session, customer.id, 1),
                    lambda: risk.enforce(session, customer.id, "referral_reward")):
        with pytest.raises(risk.RiskRestricted, match=r"is blocked until .* \(Confirmed fraud ring\): every account"):
            attempt()


def test_profile_changes_are_noted_for_the_takeover_signals(session):
    agent = make_user(session, "support_agent")
    customer = make_customer(session, START)
    customers.update_customer(session, agent, customer.id, customer.version, {"email": "moved@example.com"})
    customers.add_address(session, agent, customer.id, {"line1": "1 Road", "city": "Berlin", "country_code": "DE", "postal_code": "10115"})
    kinds = session.scalars(select(AccountChange.kind).where(AccountChange.customer_id == customer.id)
                            .order_by(AccountChange.id)).all()
    assert kinds == ["email", "address"]
    assert risk.compute_signals(session, dt.date.today()).frame.at[customer.id, "credential_then_payout_change"] == 1


@pytest.mark.parametrize("kwargs, message", [
    ({"outcome": "delete", "reason": "x"}, "Unknown outcome"),
    ({"outcome": "block", "reason": "  "}, "Give a reason"),
    ({"outcome": "restrict", "reason": "x", "days": 0}, "from 1 to 3650 days"),
    ({"outcome": "restrict", "reason": "x", "order_limit": "lots"}, "not an amount"),
    ({"outcome": "restrict", "reason": "x", "order_limit": -5}, "from 0 to 1,000,000"),
])
def test_bad_review_decisions_are_refused_and_nothing_changes(session, kwargs, message):
    analyst = make_user(session, "risk_analyst")
    customer = make_customer(session, START)
    review = RiskReview(customer_id=customer.id, source="score", risk_type="fraud", score=60, status="open",
                        opened_at=NOW, due_at=NOW)
    session.add(review)
    session.flush()
    with pytest.raises(platform.ValidationError, match=message):
        risk.decide_review(session, analyst, review.id, **kwargs)
    session.rollback()


def test_review_decisions_are_audited_labelled_and_feed_rule_precision(session):
    analyst = make_user(session, "risk_analyst")
    manager = make_user(session, "success_manager")
    rules = {n: risk.save_rule(session, analyst, name=n, risk_type="fraud", weight=50,
                               condition={"all": [{"signal": "orders_7d", "op": ">=", "value": 1}]})
             for n in ("Device", "Card")}
    outcomes = [("block", ["Device", "Card"]), ("restrict", ["Device"]), ("approve", ["Card"]), ("approve", ["Card"])]
    reviews = []
    for k, (outcome, fired) in enumerate(outcomes):
        customer = make_customer(session, START)
        review = RiskReview(customer_id=customer.id, source="rule", risk_type="fraud", score=50 + k, status="open",
                            opened_at=NOW - dt.timedelta(hours=k), due_at=NOW, anomaly=0.95 if k == 0 else 0.1,
                            fired=[{"id": rules[n].id, "name": n} for n in fired])
        session.add(review)
        session.flush()
        reviews.append((review, outcome))
    page = risk.review_queue(session, manager, now=NOW + dt.timedelta(hours=1))
    assert [row["score"] for row in page.rows] == [53, 52, 51, 50] and all(row["overdue"] for row in page.rows)
    with pytest.raises(platform.PermissionDenied):
        risk.decide_review(session, manager, reviews[0][0].id, "approve", "looks fine")
    for review, outcome in reviews:
        risk.decide_review(session, analyst, review.id, outcome, f"{outcome} after checking", days=7)
    with pytest.raises(platform.ValidationError, match="already decided"):
        risk.decide_review(session, analyst, reviews[0][0].id, "approve", "again")
    assert [r.status for r, _ in reviews] == ["blocked", "restricted", "approved", "approved"]
    assert session.scalar(select(func.count()).select_from(RiskDecision)) == 2
    precision = {row["rule"]: (row["reviewed"], row["confirmed"]) for row in risk.rule_precision(session, analyst)}
    assert precision == {"Device": (2, 2), "Card": (3, 1), "Anomaly model (top 10% unusual)": (1, 1)}
    assert risk.queue_summary(session, analyst) == {"open": 0, "overdue": 0, "confirmed": 2, "approved": 2}
    assert session.scalar(select(func.count()).select_from(AuditLog).where(
        AuditLog.action == "risk.review_decide")) == 4


# --------------------------------------------------------------------------- lists


@pytest.mark.parametrize("field, value, stored", [
    ("email", " Fraud@Example.COM ", "fraud@example.com"), ("email_domain", "@Mailinator.com", "mailinator.com"),
    ("phone", "+49 (170) 123-4567", "491701234567"), ("ip", "2001:db8::0:1", "2001:db8::1"),
    ("country", "ng", "NG"), ("device", "dev-42", "dev-42"), ("payment_fingerprint", "fp_abc", "fp_abc"),
])
def test_list_values_are_normalised(field, value, stored):
    assert risk.normalise(field, value) == stored


@pytest.mark.parametrize("field, value, message", [
    ("email", "not-an-email", "not an e-mail address"), ("email_domain", "x", "not an e-mail domain"),
    ("phone", "12", "6 to 15 digits"), ("ip", "300.1.1.1", "not an IPv4 or IPv6"), ("country", "XX", "ISO country"),
    ("device", "a b", "letters, digits"), ("colour", "red", "Unknown list field"), ("email", "", "Enter the e-mail"),
])
def test_bad_list_values_are_refused(field, value, message):
    with pytest.raises(platform.ValidationError, match=message):
        risk.normalise(field, value)


def test_lists_match_customers_and_are_audited(session):
    analyst = make_user(session, "risk_analyst")
    by_email = make_customer(session, START, email="Bad@Spam.example")
    by_device = make_customer(session, START)
    by_card = make_customer(session, START)
    by_country = make_customer(session, START, country_code="NG")
    allowed = make_customer(session, START, email="vip@spam.example")
    sign_in(session, by_device, days_before(3), "dev-9", "10.9.9.9")
    card(session, by_card, "fp-stolen", START)
    session.flush()
    for kind, field, value in (("block", "email_domain", "spam.example"), ("block", "device", "dev-9"),
                               ("block", "payment_fingerprint", "fp-stolen"), ("block", "country", "NG"),
                               ("allow", "email", "VIP@spam.example")):
        risk.add_entry(session, analyst, list_kind=kind, field=field, value=value, reason="seen in a ring")
    with pytest.raises(platform.ValidationError, match="already on the block list"):
        risk.add_entry(session, analyst, list_kind="block", field="device", value="dev-9", reason="again")
    with pytest.raises(platform.ValidationError, match="Say why"):
        risk.add_entry(session, analyst, list_kind="block", field="ip", value="1.2.3.4", reason="")
    found = risk.list_matches(session, NOW)
    assert set(found["block"]) == {by_email.id, by_device.id, by_card.id, by_country.id, allowed.id}
    assert found["allow"] == {allowed.id: "E-mail on the allow list"}
    assert found["block"][by_device.id] == "Device id on the block list"
    assert risk.list_entries(session, analyst).total == 5
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "risk.list_add")) == 5


# --------------------------------------------------------------------------- identity


def test_identity_status_moves_step_by_step_and_a_failure_needs_its_reason(session):
    analyst = make_user(session, "risk_analyst")
    customer = make_customer(session, START)
    assert risk.identity_status(session, customer.id)["status"] == "unverified"
    with pytest.raises(platform.ValidationError, match="unverified can move to pending, not to verified"):
        risk.set_identity_status(session, analyst, customer.id, "verified")
    risk.set_identity_status(session, analyst, customer.id, "pending")
    with pytest.raises(platform.ValidationError, match="Say why"):
        risk.set_identity_status(session, analyst, customer.id, "failed")
    risk.set_identity_status(session, analyst, customer.id, "failed", "Selfie does not match the document")
    assert risk.identity_status(session, customer.id) | {"checked_at": None} == {
        "status": "failed", "reason": "Selfie does not match the document", "checked_at": None, "source": "reviewer"}
    with pytest.raises(platform.PermissionDenied):
        risk.set_identity_status(session, make_user(session, "support_agent"), customer.id, "pending")
    other = make_customer(session, START)
    with pytest.raises(platform.ValidationError, match="line 3: a failed check needs its reason"):
        risk.import_identity_statuses(session, analyst, [{"customer_id": other.id, "status": "verified"},
                                                         {"customer_id": other.id, "status": "failed"}])
    assert risk.import_identity_statuses(session, analyst, [{"customer_id": other.id, "status": "verified"}])[
        "verified"] == 1
    assert risk.identity_counts(session, analyst) == {"unverified": 0, "pending": 0, "verified": 1, "failed": 1}


# --------------------------------------------------------------------------- replay


def test_replay_counts_flagged_customers_orders_and_what_happened_after(session):
    viewer = make_user(session, "risk_analyst")
    start = AS_OF - dt.timedelta(days=30)
    burst = [make_customer(session, START) for _ in range(3)]
    calm = [make_customer(session, START) for _ in range(3)]
    for who in burst:  # three orders in the week before the replay starts
        for k in range(3):
            make_order(session, who, dt.datetime.combine(start, dt.time(10)) - dt.timedelta(days=k), 20)
    for who in calm:
        make_order(session, who, dt.datetime.combine(start, dt.time(10)) - dt.timedelta(days=100), 20)
    # After the start: burst[0] charges back, burst[1] has a refunded order, calm[0] charges back too.
    later = dt.datetime.combine(start, dt.time(10)) + dt.timedelta(days=5)
    order = make_order(session, burst[0], later, 40)
    session.add(Chargeback(customer_id=burst[0].id, order_id=order.id, amount=40, opened_at=later))
    make_order(session, burst[1], later, 40, status="refunded")
    make_order(session, burst[1], later + dt.timedelta(days=1), 40)
    session.add(Chargeback(customer_id=calm[0].id, amount=20, opened_at=later))
    session.flush()
    result = risk.replay_rule(session, viewer, {"all": [{"signal": "orders_7d", "op": ">=", "value": 3}]}, 30, AS_OF)
    assert result["customers_scored"] == 6 and result["customers_flagged"] == 3
    assert result["orders_flagged"] == 3  # orders the flagged customers placed in the 30 days
    assert (result["later_chargeback"], result["later_refund"], result["later_any"]) == (1, 1, 2)
    assert result["base_rate_any"] == pytest.approx(3 / 6)
    with pytest.raises(platform.ValidationError, match="1 to 365 days"):
        risk.replay_rule(session, viewer, {"all": [{"signal": "orders_7d", "op": ">=", "value": 3}]}, 0, AS_OF)
    with pytest.raises(platform.ValidationError, match="Unknown signal"):
        risk.replay_rule(session, viewer, {"all": [{"signal": "x", "op": ">=", "value": 3}]}, 30, AS_OF)


# --------------------------------------------------------------------------- the refresh step


def test_the_risk_step_skips_without_customers_and_works_on_orders_and_customers_alone(engine):
    from batch import refresh
    from db.engine import session_factory

    assert refresh._risk(engine, AS_OF, NOW).status == "skipped"
    with session_factory(engine)() as session:
        for k in range(60):
            shopper = make_customer(session, START)
            for j in range(1 + k % 4):
                make_order(session, shopper, days_before(3 + 20 * j + k), 20 + 10 * (k % 7),
                           status="refunded" if k % 9 == 0 else "delivered")
        session.commit()
    outcome = refresh._risk(engine, AS_OF, NOW)
    assert outcome.status == "ok" and outcome.rows == 60
    assert "anomaly model over" in outcome.detail and "left out: country_mismatch (no addresses before" in outcome.detail
    with session_factory(engine)() as session:
        assert len(risk.list_rules(session, platform.SYSTEM)) == len(risk.DEFAULT_RISK_RULES)
        assert risk.score_distribution(session, platform.SYSTEM)["as_of"] == AS_OF
        assert session.get(RollupSummary, (DISTRIBUTION_SUMMARY, AS_OF)) is not None


def test_the_risk_step_finds_the_simulators_planted_cases(engine):
    import demo
    from batch import refresh
    from db.engine import session_factory

    demo.seed_database(engine, 1500, seed=4, end=dt.datetime(2026, 6, 30, 12))
    outcome = refresh._risk(engine, AS_OF, NOW)
    assert outcome.status == "ok" and outcome.rows == 1500
    with session_factory(engine)() as session:
        quality = {row["type"]: row for row in risk.truth_quality(session, platform.SYSTEM)}
        assert quality["overall"]["planted"] > 0
        assert quality["overall"]["precision"] >= 0.8 and quality["overall"]["recall"] >= 0.6
        assert quality["fraud"]["recall"] >= 0.8
        assert risk.queue_summary(session, platform.SYSTEM)["open"] == quality["overall"]["flagged"]


def test_identity_results_import_from_a_file_all_or_nothing(session, tmp_path):
    analyst = make_user(session, "risk_analyst")
    a, b = make_customer(session, START), make_customer(session, START)
    bad = tmp_path / "bad.csv"
    bad.write_text(f"customer_id,status,reason\n{a.id},verified,\n{b.id},failed,\n")
    with pytest.raises(platform.ValidationError, match="line 3: a failed check needs its reason"):
        risk.import_identity_file(session, analyst, str(bad))
    assert session.scalar(select(func.count()).select_from(IdentityCheck)) == 0
    missing = tmp_path / "missing.csv"
    missing.write_text("id,state\n1,verified\n")
    with pytest.raises(platform.ValidationError, match="needs the column"):
        risk.import_identity_file(session, analyst, str(missing))
    good = tmp_path / "good.csv"
    good.write_text(f"customer_id,status,reason\n{a.id},Verified,\n{b.id},failed,Document expired\n")
    assert risk.import_identity_file(session, analyst, str(good)) == {"imported": 2, "pending": 0, "verified": 1,
                                                                      "failed": 1}
    assert risk.identity_status(session, b.id)["reason"] == "Document expired"
