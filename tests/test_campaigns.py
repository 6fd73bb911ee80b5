"""Win-back campaigns on crafted customers: triggers, consent and frequency caps, stable random
assignment, attribution ordering and the statistics (issue 17)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select, update

from crm_core import campaigns, loyalty, orders, platform, service
from crm_core.campaigns import stats
from db.models import (
    AuditLog,
    Cart,
    ConsentRecord,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerPreferenceCenter,
    LoyaltyAccount,
    LoyaltyTransaction,
    Voucher,
    WinbackTarget,
)
from tests.factories import make_customer, make_order, make_user

AT = dt.datetime(2026, 6, 30, 12, 0)


def days_ago(days: float) -> dt.datetime:
    return AT - dt.timedelta(days=days)


def customer(session, name: str, last_order_days: float | None = None, opt_in: bool | None = True,
             frequency: str = "weekly", **fields):
    c = make_customer(session, days_ago(900), first_name=name, **fields)
    if last_order_days is not None:
        make_order(session, c, days_ago(last_order_days + 200), 40)
        make_order(session, c, days_ago(last_order_days), 60)
    if opt_in is not None:
        session.add(CustomerPreferenceCenter(customer_id=c.id, email_opt_in=opt_in, sms_opt_in=False,
                                             push_opt_in=opt_in, contact_frequency=frequency))
    session.flush()
    return c


def consent(session, c, granted: bool, days: float, purpose: str = "marketing_email") -> None:
    session.add(ConsentRecord(customer_id=c.id, purpose=purpose, granted=granted, recorded_at=days_ago(days)))
    session.flush()


def message(session, c, days: float, campaign: str | None = "Newsletter") -> None:
    session.add(CustomerCommunication(customer_id=c.id, channel="email", direction="outbound", status="delivered",
                                      campaign=campaign, sent_at=days_ago(days)))
    session.flush()


def ids(session, trigger, channel="email", segment_id=None) -> set[int]:
    return set(session.scalars(campaigns.reachable(campaigns.normalize_trigger(trigger), channel, AT, segment_id)))


def qualifying_ids(session, trigger) -> set[int]:
    return set(session.scalars(campaigns.qualifying(campaigns.normalize_trigger(trigger), AT)))


def test_no_order_trigger_picks_lapsed_buyers_only(session):
    lapsed = customer(session, "Lapsed", 120)
    recent = customer(session, "Recent", 30)
    never = customer(session, "Never")
    both = customer(session, "Returned", 150)
    make_order(session, both, days_ago(10), 25)
    cancelled_only = customer(session, "CancelledRecent", 150)
    make_order(session, cancelled_only, days_ago(5), 25, status="cancelled")
    future = customer(session, "AfterAt", 120)
    make_order(session, future, AT + dt.timedelta(days=2), 25)  # after the moment: not seen
    found = qualifying_ids(session, {"kind": "no_order", "days": 90})
    assert lapsed.id in found and cancelled_only.id in found and future.id in found
    assert recent.id not in found and never.id not in found and both.id not in found
    assert recent.id in qualifying_ids(session, {"kind": "no_order", "days": 20})


def test_abandoned_cart_trigger(session):
    abandoned = customer(session, "Abandoned", 40)
    bought_after = customer(session, "BoughtAfter", 40)
    fresh = customer(session, "Fresh", 40)
    converted = customer(session, "Converted", 40)
    old = customer(session, "Old", 40)
    for c, updated, status in ((abandoned, days_ago(2), "open"), (bought_after, days_ago(3), "open"),
                               (fresh, AT - dt.timedelta(hours=2), "open"), (converted, days_ago(2), "converted"),
                               (old, days_ago(40), "open")):
        session.add(Cart(customer_id=c.id, status=status, created_at=updated - dt.timedelta(hours=1),
                         updated_at=updated, value=Decimal("80")))
    make_order(session, bought_after, days_ago(1), 80)
    session.flush()
    assert qualifying_ids(session, {"kind": "abandoned_cart"}) == {abandoned.id}


def test_model_triggers_read_the_snapshot(session):
    high = customer(session, "High", 100)
    medium = customer(session, "Medium", 100)
    poor = customer(session, "Poor", 100)
    quiet = customer(session, "Quiet", 100)
    rows = ((high, 0.62, "good", 3, 0.5), (medium, 0.30, "fair", 0, 0.05), (poor, 0.10, "poor", 2, 0.4),
            (quiet, 0.2, "critical", 0, None))
    for c, p, level, sessions, open_rate in rows:
        session.add(CustomerAnalytics(customer_id=c.id, as_of=AT.date(), order_count=2, total_revenue=100,
                                      churn_probability=p, health_level=level, sessions_90d=sessions,
                                      email_open_rate=open_rate))
    session.flush()
    assert qualifying_ids(session, {"kind": "churn_risk", "level": "high"}) == {high.id}
    assert qualifying_ids(session, {"kind": "churn_risk", "level": "medium"}) == {high.id, medium.id}
    assert qualifying_ids(session, {"kind": "health_level", "level": "poor"}) == {poor.id, quiet.id}
    assert qualifying_ids(session, {"kind": "low_engagement"}) == {medium.id, quiet.id}


def test_segment_filter(session):
    from crm_core import segmentation

    a = customer(session, "InSegment", 120)
    b = customer(session, "OutOfSegment", 120)
    admin = make_user(session, "admin")
    segment = segmentation.create_segment(session, admin, "Win-back list", "custom", "static")
    segmentation.add_members(session, admin, segment.id, [a.id])
    session.flush()
    assert ids(session, {"kind": "no_order", "days": 90}, segment_id=segment.id) == {a.id}
    assert ids(session, {"kind": "no_order", "days": 90}) == {a.id, b.id}


def test_consent_preference_centre_and_frequency_cap(session):
    ok = customer(session, "Ok", 120)
    no_pref = customer(session, "NoPreferences", 120, opt_in=None)
    opted_out = customer(session, "OptedOut", 120, opt_in=False)
    never = customer(session, "Never", 120, frequency="never")
    withdrawn = customer(session, "Withdrawn", 120)
    consent(session, withdrawn, True, 300)
    consent(session, withdrawn, False, 100)
    regranted = customer(session, "Regranted", 120)
    consent(session, regranted, False, 100)
    consent(session, regranted, True, 50)
    weekly_recent = customer(session, "WeeklyRecent", 120)
    message(session, weekly_recent, 3)
    weekly_older = customer(session, "WeeklyOlder", 120)
    message(session, weekly_older, 10)
    monthly_recent = customer(session, "MonthlyRecent", 120, frequency="monthly")
    message(session, monthly_recent, 20)
    service_message = customer(session, "ServiceMessage", 120)
    message(session, service_message, 1, campaign=None)  # not marketing: no cap
    no_email = customer(session, "NoEmail", 120, email=None)
    suspended = customer(session, "Suspended", 120, status="suspended")
    found = ids(session, {"kind": "no_order", "days": 90})
    assert found == {ok.id, regranted.id, weekly_older.id, service_message.id}
    # SMS needs a phone number and an SMS opt-in, which nobody here has.
    assert ids(session, {"kind": "no_order", "days": 90}, channel="sms") == set()
    admin = make_user(session, "admin")
    preview = campaigns.preview_audience(session, admin, {"kind": "no_order", "days": 90}, "email", AT)
    assert preview["qualifying"] == 12 and preview["reachable"] == 4
    assert preview["control_share_by_hand"] is False
    by_hand = campaigns.preview_audience(session, admin, {"kind": "no_order", "days": 90}, "email", AT,
                                         control_share=0.3)
    assert (by_hand["control_share"], by_hand["control_share_by_hand"]) == (0.3, True)
    assert by_hand["plan"].startswith("The 30% holdout set by hand") and not by_hand["powered"]
    with pytest.raises(platform.ValidationError, match="control share must be between"):
        campaigns.preview_audience(session, admin, {"kind": "no_order", "days": 90}, "email", AT, control_share=0.9)
    reasons = preview["exclusions"]
    ex = campaigns.EXCLUSION_REASONS
    assert reasons[ex["no_opt_in"]] == 2 and reasons[ex["never"]] == 1 and reasons[ex["withdrawn"]] == 1
    assert reasons[ex["capped"]] == 2 and reasons[ex["no_contact"]] == 1 and reasons[ex["inactive"]] == 1
    del no_pref, opted_out, never, no_email, suspended, monthly_recent


def test_assignment_is_random_stable_and_order_free():
    draws = [campaigns.assignment_draw(7, c) for c in range(1, 20_001)]
    assert draws == [campaigns.assignment_draw(7, c) for c in range(1, 20_001)]
    control = sum(d < 0.2 for d in draws) / len(draws)
    assert 0.19 < control < 0.21
    # Another campaign draws independently.
    other = [campaigns.assignment_draw(8, c) < 0.2 for c in range(1, 20_001)]
    both = sum((d < 0.2) and o for d, o in zip(draws, other, strict=True)) / len(draws)
    assert 0.03 < both < 0.05
    # Odd and even customers (or any other trait of the id) are split alike.
    odd = [d < 0.2 for c, d in enumerate(draws, 1) if c % 2]
    assert abs(sum(odd) / len(odd) - control) < 0.015


def _campaign(session, user, **overrides):
    fields = {"name": "Come back", "trigger": {"kind": "no_order", "days": 90}, "channel": "email",
              "offer_type": "voucher", "offer_value": 10, "control_share": 0.5, "at": AT}
    fields.update(overrides)
    return campaigns.create_campaign(session, user, **fields)


def test_launch_enrols_once_sends_and_audits(session):
    people = [customer(session, f"P{k}", 120) for k in range(40)]
    csm = make_user(session, "success_manager")
    campaign = _campaign(session, csm)
    assert campaign.status == "draft"
    counts = campaigns.launch_campaign(session, csm, campaign.id, at=AT)
    assert counts["enrolled"] == 40 and counts["treatment"] + counts["control"] == 40
    assert 8 < counts["control"] < 32
    targets = session.execute(select(WinbackTarget.customer_id, WinbackTarget.target_group, WinbackTarget.pre_period_spend)
                              .where(WinbackTarget.campaign_id == campaign.id)).all()
    for customer_id, group, spend in targets:
        assert group == campaigns.assigned_group(campaign.id, customer_id, 0.5)
        assert spend == Decimal("60.00")  # the order 120 days ago; the one 320 days ago is before the pre-period
    sent = session.execute(select(CustomerCommunication.customer_id).where(
        CustomerCommunication.campaign_id == campaign.id)).scalars().all()
    treated = {c for c, g, _ in targets if g == "treatment"}
    assert set(sent) == treated and len(sent) == len(treated)
    # A refresh a day later enrols nobody again (once per campaign), but a newly lapsed customer joins.
    newcomer = customer(session, "Newcomer", 91)
    later = AT + dt.timedelta(days=1)
    totals = campaigns.enrol_running_campaigns(session, platform.SYSTEM, later)
    assert totals["enrolled"] == 1
    assert session.scalar(select(func.count()).where(WinbackTarget.campaign_id == campaign.id)) == 41
    assert session.scalar(select(WinbackTarget.customer_id).where(WinbackTarget.assigned_at == later)) == newcomer.id
    assert campaigns.enrol_running_campaigns(session, platform.SYSTEM, later)["enrolled"] == 0
    actions = set(session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "winback_campaign")))
    assert {"campaign.create", "campaign.launch", "campaign.enrol"} <= actions
    with pytest.raises(platform.ValidationError, match="Only a draft"):
        campaigns.launch_campaign(session, csm, campaign.id, at=AT)
    del people


def test_treated_customers_are_not_messaged_again_within_their_cap(session):
    customer(session, "Once", 120)
    user = make_user(session, "analyst")
    first = _campaign(session, user, name="First", control_share=0.05)
    campaigns.launch_campaign(session, user, first.id, at=AT)
    second = _campaign(session, user, name="Second", control_share=0.05)
    counts = campaigns.launch_campaign(session, user, second.id, at=AT + dt.timedelta(days=2))
    treated_first = session.scalar(select(func.count()).where(WinbackTarget.campaign_id == first.id,
                                                              WinbackTarget.target_group == "treatment"))
    assert counts["enrolled"] == (0 if treated_first else 1)


def test_permissions_and_bad_input(session):
    customer(session, "Someone", 120)
    executive = make_user(session, "executive")
    agent = make_user(session, "support_agent")
    analyst = make_user(session, "analyst")
    with pytest.raises(platform.PermissionDenied):
        _campaign(session, executive)
    with pytest.raises(platform.PermissionDenied):
        campaigns.list_campaigns(session, agent)
    assert campaigns.list_campaigns(session, executive) == []
    bad = [
        ({"name": "  "}, "campaign name"),
        ({"trigger": {"kind": "moon_phase"}}, "Choose a trigger"),
        ({"trigger": {"kind": "no_order", "days": 0}}, "between 1"),
        ({"trigger": {"kind": "no_order", "days": "ninety"}}, "whole number"),
        ({"trigger": {"kind": "churn_risk", "level": "extreme"}}, "Churn risk level"),
        ({"channel": "pigeon"}, "Channel must be"),
        ({"offer_type": "hug"}, "offer must be one of"),
        ({"offer_value": -5}, "above zero"),
        ({"offer_type": "percent_discount", "offer_value": 95}, "at most 90%"),
        ({"offer_type": "loyalty_points", "offer_value": 10.5}, "whole number"),
        ({"control_share": 0.9}, "between 5% and 50%"),
        ({"expected_lift": "lots"}, "expected lift"),
        ({"attribution_days": 0}, "attribution window"),
        ({"gross_margin": 1.5}, "gross margin"),
        ({"segment_id": 99999}, "no segment"),
    ]
    for overrides, message_part in bad:
        with pytest.raises(platform.ValidationError, match=message_part):
            _campaign(session, analyst, **overrides)
    _campaign(session, analyst)
    with pytest.raises(platform.ValidationError, match="exists already"):
        _campaign(session, analyst)
    assert session.scalar(select(func.count()).select_from(WinbackTarget)) == 0


def test_a_purchase_before_the_send_never_counts(session):
    user = make_user(session, "admin")
    people = [customer(session, f"C{k}", 120) for k in range(30)]
    campaign = _campaign(session, user, offer_type="percent_discount", offer_value=10)
    campaigns.launch_campaign(session, user, campaign.id, at=AT)
    groups = dict(session.execute(select(WinbackTarget.customer_id, WinbackTarget.target_group)
                                  .where(WinbackTarget.campaign_id == campaign.id)).all())
    treated = [c for c in people if groups[c.id] == "treatment"]
    held = [c for c in people if groups[c.id] == "control"]
    assert treated and held
    for c in people:
        make_order(session, c, AT - dt.timedelta(minutes=5), 500)  # before the send: never counts
        make_order(session, c, AT + dt.timedelta(days=45), 700)  # after the 30-day window
    make_order(session, treated[0], AT + dt.timedelta(days=3), 100)
    make_order(session, treated[0], AT + dt.timedelta(days=29, hours=23), 50)
    make_order(session, held[0], AT + dt.timedelta(days=10), 80)
    make_order(session, held[0], AT + dt.timedelta(days=12), 40, status="refunded")
    result = campaigns.campaign_results(session, user, campaign.id, at=AT + dt.timedelta(days=60))
    by_group = {g["group"]: g for g in result["groups"]}
    assert by_group["treatment"]["conversions"] == 1 and by_group["treatment"]["revenue"] == pytest.approx(150)
    assert by_group["control"]["conversions"] == 1 and by_group["control"]["revenue"] == pytest.approx(80)
    assert result["conversion"]["estimate"] == pytest.approx(1 / len(treated) - 1 / len(held))
    assert result["revenue"]["estimate"] == pytest.approx(150 / len(treated) - 80 / len(held))
    roi = result["roi"]
    # The discount vouchers were issued and none was redeemed: the incentive cost nothing.
    assert roi["incentive_cost"] == 0 and roi["incentive_basis"] == "redeemed"
    assert roi["send_cost"] == pytest.approx(0.002 * len(treated))
    # Seen earlier, while the window is open, a later order is not yet there.
    early = campaigns.campaign_results(session, user, campaign.id, at=AT + dt.timedelta(days=5))
    assert {g["group"]: g["revenue"] for g in early["groups"]}["treatment"] == pytest.approx(100)
    assert early["windows_open_until"] is not None
    curve = campaigns.conversion_curve(session, user, campaign.id, at=AT + dt.timedelta(days=60))
    final = {r["group"]: r["converted_share"] for r in curve if r["day"] == 30}
    assert final["treatment"] == pytest.approx(1 / len(treated))


def test_rate_and_mean_differences_match_hand_computation():
    t = stats.GroupSums(n=1000, conversions=120, sum_y=6000, sum_y2=6000 * 60, sum_x=0, sum_x2=0, sum_xy=0)
    c = stats.GroupSums(n=500, conversions=40, sum_y=2000, sum_y2=2000 * 50, sum_x=0, sum_x2=0, sum_xy=0)
    d = stats.rate_difference(t, c)
    se = (0.12 * 0.88 / 1000 + 0.08 * 0.92 / 500) ** 0.5
    assert d.estimate == pytest.approx(0.04)
    assert d.low == pytest.approx(0.04 - 1.959964 * se, rel=1e-5)
    m = stats.mean_difference(t, c)
    var_t = (6000 * 60 - 6000**2 / 1000) / 999
    var_c = (2000 * 50 - 2000**2 / 500) / 499
    assert m.estimate == pytest.approx(2.0)
    assert m.standard_error == pytest.approx((var_t / 1000 + var_c / 500) ** 0.5)


def test_cuped_keeps_the_estimate_unbiased_and_narrows_it():
    import numpy as np

    rng = np.random.default_rng(3)
    estimates, plain = [], []
    for _ in range(200):
        x = rng.gamma(2, 50, 4000)
        treated = rng.random(4000) < 0.5
        y = 0.8 * x + rng.normal(0, 20, 4000) + np.where(treated, 5.0, 0.0)
        groups = [stats.GroupSums(int(m.sum()), 0, float(y[m].sum()), float((y[m] ** 2).sum()), float(x[m].sum()),
                                  float((x[m] ** 2).sum()), float((x[m] * y[m]).sum())) for m in (treated, ~treated)]
        d, reduction = stats.cuped_difference(*groups)
        estimates.append(d.estimate)
        plain.append(stats.mean_difference(*groups).estimate)
        assert reduction > 0.8
        assert d.standard_error < stats.mean_difference(*groups).standard_error
    assert np.mean(estimates) == pytest.approx(5.0, abs=0.2)
    assert np.std(estimates) < np.std(plain) / 2


def test_power_calculation_sizes_the_smallest_holdout():
    plan = stats.plan_holdout(20_000, 0.05, 0.02)
    assert plan.enough and stats.MIN_CONTROL_SHARE <= plan.control_share <= stats.MAX_CONTROL_SHARE
    assert stats.power_of(20_000, plan.control_share, 0.05, 0.02) >= 0.8
    if plan.control_share > stats.MIN_CONTROL_SHARE:
        assert stats.power_of(20_000, plan.control_share - 0.01, 0.05, 0.02) < 0.8
    # Equal groups of n each: the textbook n for 5% -> 7% at alpha 0.05, power 0.8 is about 2,210.
    assert stats.power_of(2 * 2210, 0.5, 0.05, 0.02) == pytest.approx(0.8, abs=0.01)
    small = stats.plan_holdout(300, 0.05, 0.01)
    assert not small.enough and small.control_share == stats.MAX_CONTROL_SHARE
    assert "too few" in small.message


def test_a_refresh_dated_before_the_launch_enrols_no_one(session):
    customer(session, "Early", 120)
    user = make_user(session, "analyst")
    campaign = _campaign(session, user)
    campaigns.launch_campaign(session, user, campaign.id, at=AT)
    customer(session, "LapsedLater", 95)
    earlier = campaigns.enrol_running_campaigns(session, platform.SYSTEM, AT - dt.timedelta(days=30))
    assert earlier["enrolled"] == 0
    assert campaigns.enrol_running_campaigns(session, platform.SYSTEM, AT + dt.timedelta(hours=1))["enrolled"] == 1


def test_a_shop_with_only_customers_and_orders_gets_a_preview_that_says_why(session):
    """A real shop's first import: no preference centre, consents, carts or snapshot yet."""
    buyers = []
    for k in range(60):
        c = make_customer(session, days_ago(400), first_name=f"Imported{k}")
        make_order(session, c, days_ago(300 - k), 30 + k)
        if k % 3 == 0:
            make_order(session, c, days_ago(100 - k), 45)  # a third came back within ~100 days
        buyers.append(c)
    analyst = make_user(session, "analyst")
    preview = campaigns.preview_audience(session, analyst, {"kind": "no_order", "days": 120}, "email", AT)
    assert preview["qualifying"] > 0 and preview["reachable"] == 0
    assert preview["exclusions"] == {campaigns.EXCLUSION_REASONS["no_opt_in"]: preview["qualifying"]}
    assert "ordered within" in preview["baseline_basis"] or "default" in preview["baseline_basis"]
    churn = campaigns.preview_audience(session, analyst, {"kind": "churn_risk", "level": "high"}, "email", AT)
    assert churn["qualifying"] == 0 and any("No analytics snapshot yet" in n for n in churn["notes"])
    carts = campaigns.preview_audience(session, analyst, {"kind": "abandoned_cart"}, "sms", AT)
    assert any("No carts are recorded" in n for n in carts["notes"])
    engagement = campaigns.preview_audience(session, analyst, {"kind": "low_engagement"}, "email", AT)
    assert any("engagement cannot be measured" in n for n in engagement["notes"])
    # A campaign can still be saved and launched; it enrols no one until customers opt in.
    campaign = _campaign(session, analyst, trigger={"kind": "no_order", "days": 120}, control_share=None)
    assert campaigns.MIN_CONTROL_SHARE <= campaign.control_fraction <= campaigns.MAX_CONTROL_SHARE
    assert campaigns.launch_campaign(session, analyst, campaign.id, at=AT)["enrolled"] == 0
    result = campaigns.campaign_results(session, analyst, campaign.id, at=AT)
    assert result["conversion"] is None and "nobody has been enrolled yet" in result["notes"][0]


def test_moments_out_of_bounds_are_refused(session):
    analyst = make_user(session, "analyst")
    with pytest.raises(platform.ValidationError, match="is in the future"):
        campaigns.preview_audience(session, analyst, {"kind": "no_order"}, "email", dt.datetime(2999, 1, 1))
    with pytest.raises(platform.ValidationError, match="before 1900"):
        campaigns.enrol_running_campaigns(session, platform.SYSTEM, dt.datetime(1850, 1, 1))


# --------------------------------------------------------------------------- incentives given


def _recent_lapsed(session, name: str, now: dt.datetime, **fields):
    c = make_customer(session, now - dt.timedelta(days=900), first_name=name, **fields)
    make_order(session, c, now - dt.timedelta(days=300), 40)
    make_order(session, c, now - dt.timedelta(days=120), 60)
    session.add(CustomerPreferenceCenter(customer_id=c.id, email_opt_in=True, sms_opt_in=False, push_opt_in=True,
                                         contact_frequency="weekly"))
    session.flush()
    return c


def _groups(session, campaign_id) -> dict[int, str]:
    return dict(session.execute(select(WinbackTarget.customer_id, WinbackTarget.target_group)
                                .where(WinbackTarget.campaign_id == campaign_id)).all())


def test_treated_customers_get_a_voucher_once_in_their_message_and_the_holdout_none(session):
    now = dt.datetime.now().replace(microsecond=0) - dt.timedelta(hours=1)
    people = [_recent_lapsed(session, f"V{k}", now) for k in range(30)]
    csm = make_user(session, "success_manager")
    campaign = _campaign(session, csm, at=now)
    counts = campaigns.launch_campaign(session, csm, campaign.id, at=now)
    groups = _groups(session, campaign.id)
    treated = {c for c, g in groups.items() if g == "treatment"}
    assert treated and len(treated) < len(people) and counts["incentives"] == len(treated)
    issued = session.scalars(select(Voucher).where(Voucher.source == "campaign",
                                                   Voucher.source_id == str(campaign.id))).all()
    assert {v.customer_id for v in issued} == treated and len(issued) == len(treated)
    assert all(v.kind == "amount" and v.value == Decimal("10.00") and v.status == "issued"
               and v.expires_at == now + dt.timedelta(days=30) for v in issued)
    bodies = dict(session.execute(select(CustomerCommunication.customer_id, CustomerCommunication.body)
                                  .where(CustomerCommunication.campaign_id == campaign.id)).all())
    assert all(v.code in bodies[v.customer_id] for v in issued)
    # The message as staff read it: whole for a role that records orders, the code's end for an analyst.
    shown = issued[0]
    analyst = make_user(session, "analyst")
    for viewer, whole in ((csm, True), (analyst, False)):
        body = service.customer_communications(session, viewer, shown.customer_id).rows[0]["body"]
        assert (shown.code in body) is whole and shown.code[-4:] in body and "Your code:" in body
    # A later refresh enrols nobody again, so nobody gets a second voucher.
    campaigns.enrol_running_campaigns(session, platform.SYSTEM, now + dt.timedelta(minutes=30))
    assert session.scalar(select(func.count()).select_from(Voucher)) == len(issued)
    # A treated customer spends the voucher: the campaign's incentive cost is what was redeemed.
    spender = issued[0]
    agent = make_user(session, "support_agent")
    made = orders.record_order(session, agent, spender.customer_id, {"total": 80, "voucher_code": spender.code})
    assert made["discount"] == Decimal("10.00")
    result = campaigns.campaign_results(session, csm, campaign.id, at=dt.datetime.now() + dt.timedelta(minutes=1))
    assert result["roi"]["incentive_cost"] == pytest.approx(10.0)
    assert result["roi"]["incentive_basis"] == "redeemed"


def test_a_points_offer_posts_points_to_treated_customers_once_through_the_ledger(session):
    now = dt.datetime.now().replace(microsecond=0) - dt.timedelta(hours=1)
    people = [_recent_lapsed(session, f"P{k}", now) for k in range(30)]
    analyst = make_user(session, "analyst")  # runs campaigns, may not adjust points by hand
    campaign = _campaign(session, analyst, name="Points back", offer_type="loyalty_points", offer_value=200, at=now)
    # A treated member whose loyalty account is suspended cannot take points; the others still get theirs.
    suspended = next(c for c in people if campaigns.assigned_group(campaign.id, c.id, 0.5) == "treatment")
    loyalty.enroll(session, platform.SYSTEM, suspended.id)
    session.execute(update(LoyaltyAccount).where(LoyaltyAccount.customer_id == suspended.id).values(status="suspended"))
    counts = campaigns.launch_campaign(session, analyst, campaign.id, at=now)
    groups = _groups(session, campaign.id)
    treated = {c for c, g in groups.items() if g == "treatment"}
    entries = session.execute(select(LoyaltyTransaction.customer_id, LoyaltyTransaction.points,
                                     LoyaltyTransaction.reason).where(LoyaltyTransaction.source_type == "campaign")
                              ).all()
    paid = {c for c, _, _ in entries}
    assert paid == treated - {suspended.id} and len(entries) == len(paid)
    assert all(p == 200 and r == "Campaign Points back: win-back offer" for _, p, r in entries)
    assert counts["incentives"] == len(paid)
    assert counts["incentives_refused"] == {f"The loyalty account of customer {suspended.id} is suspended.": 1}
    assert not paid & {c for c, g in groups.items() if g == "control"}
    assert session.scalar(select(func.count()).select_from(Voucher)) == 0
    campaigns.enrol_running_campaigns(session, platform.SYSTEM, now + dt.timedelta(minutes=30))
    assert session.scalar(select(func.count()).select_from(LoyaltyTransaction)
                          .where(LoyaltyTransaction.source_type == "campaign")) == len(entries)
    result = campaigns.campaign_results(session, analyst, campaign.id, at=dt.datetime.now())
    assert result["roi"]["incentive_cost"] == pytest.approx(len(entries) * 200 * 0.01)
    assert result["roi"]["incentive_basis"] == "posted"
