"""Calls to action: each rule on crafted customers, no duplicates, auto-close, holdouts, cooldown, snooze,
CTAs by hand (owner, validation, permissions, version conflicts, history), queues, portfolios, results."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from sqlalchemy import func, select

from crm_core import platform, segmentation, success
from crm_core.success import automation
from db.models import (
    AccountHealthScore,
    AuditLog,
    ChurnPrediction,
    Complaint,
    CustomerCommunication,
    CustomerLifecycleStage,
    CustomerPaymentMethod,
    RiskDecision,
    SuccessCta,
    SuccessCtaEvent,
    SuccessHoldout,
    SuccessPlaybook,
    SupportTicket,
    SurveyResponse,
)

from .factories import make_customer, make_order, make_user

AS_OF = dt.date(2025, 6, 30)
CUTOFF = dt.datetime(2025, 7, 1)
NOW = dt.datetime(2025, 6, 30, 23, 0)


def at(days_before: float) -> dt.datetime:
    return CUTOFF - dt.timedelta(days=days_before)


def buyer(session, last_days_before: float = 20, revenue: float = 50, orders: int = 2, **fields):
    c = make_customer(session, at(700), **fields)
    for i in range(orders):
        make_order(session, c, at(last_days_before + 60 * i), revenue / orders)
    return c


def predict(session, c, as_of: dt.date, level: str, probability: float):
    session.add(ChurnPrediction(customer_id=c.id, as_of=as_of, horizon_days=90, probability=probability,
                                risk_level=level, drivers=[{"feature": "days_since_last_order",
                                                            "label": "Days since the last order"}]))


def run(session, as_of=AS_OF, rules=None):
    result = success.run_success_rules(session, as_of, NOW, rules=rules or success.RULES)
    session.flush()
    return result


def ctas(session, trigger: str | None = None) -> list[SuccessCta]:
    session.expire_all()
    query = select(SuccessCta).order_by(SuccessCta.id)
    if trigger:
        query = query.where(SuccessCta.trigger == trigger)
    return list(session.scalars(query))


def no_holdouts(session):
    for playbook in success.ensure_playbooks(session).values():
        playbook.holdout_share = 0.0
    session.flush()


# --------------------------------------------------------------------------- rules


def test_churn_rule_opens_when_risk_becomes_high_never_twice_and_closes_when_it_clears(session):
    no_holdouts(session)
    manager = make_user(session, "success_manager")
    became = buyer(session, account_manager_id=manager.id)
    already = buyer(session)
    gone = buyer(session, last_days_before=400)  # churned long ago: not a live account
    earlier = AS_OF - dt.timedelta(days=30)
    predict(session, became, earlier, "low", 0.1)
    predict(session, already, earlier, "high", 0.6)
    predict(session, gone, earlier, "medium", 0.4)
    for c in (became, already, gone):
        predict(session, c, AS_OF, "critical", 0.8)
    session.flush()

    result = run(session)
    assert result["rules"]["churn_high"]["opened"] == 1
    [cta] = ctas(session, "churn_high")
    assert cta.customer_id == became.id and cta.owner_id == manager.id and cta.source == "rule"
    assert cta.priority == "high" and cta.status == "open" and cta.due_on == AS_OF + dt.timedelta(days=7)
    assert "critical" in cta.reason and cta.signals["probability"] == 0.8
    assert cta.signals["drivers"] == ["Days since the last order"]
    assert [s["title"] for s in cta.steps] == success.DEFAULT_PLAYBOOKS["churn_high"]["steps"]
    assert session.scalar(select(SuccessCtaEvent.kind).where(SuccessCtaEvent.cta_id == cta.id)) == "created"

    run(session)  # the same trigger still active: no second CTA
    assert len(ctas(session, "churn_high")) == 1

    later = AS_OF + dt.timedelta(days=30)
    predict(session, became, later, "low", 0.2)
    predict(session, already, later, "critical", 0.9)
    session.flush()
    result = run(session, later)
    assert result["rules"]["churn_high"]["auto_closed"] == 1
    [cta] = ctas(session, "churn_high")
    assert (cta.status, cta.outcome, cta.closed_on) == ("closed", "trigger_cleared", later)
    kinds = session.scalars(select(SuccessCtaEvent.kind).where(SuccessCtaEvent.cta_id == cta.id)
                            .order_by(SuccessCtaEvent.id)).all()
    assert kinds == ["created", "auto_closed"]
    assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "success.rules")) == 3


def test_first_churn_scoring_opens_only_high_value_accounts(session):
    no_holdouts(session)
    big = buyer(session, revenue=900)
    small = [buyer(session, revenue=20) for _ in range(5)]
    for c in (big, *small):
        predict(session, c, AS_OF, "high", 0.6)
    segmentation.refresh_snapshot(session, AS_OF)
    session.flush()
    run(session)
    [cta] = ctas(session, "churn_high")
    assert cta.customer_id == big.id and cta.priority == "urgent"  # high value raises the playbook's priority


def health(session, c, as_of, overall, trend, level):
    session.add(AccountHealthScore(customer_id=c.id, as_of=as_of, engagement=overall, satisfaction=overall,
                                   loyalty=overall, payment=overall, support=overall, overall=overall, level=level,
                                   trend=trend))


def test_health_drop_rule_and_recovery(session):
    no_holdouts(session)
    fell, drifted = buyer(session), buyer(session)
    health(session, fell, AS_OF, 30, -20, "poor")
    health(session, drifted, AS_OF, 55, -3, "fair")
    session.flush()
    run(session)
    [cta] = ctas(session, "health_drop")
    assert cta.customer_id == fell.id and "fell 20 points" in cta.reason and cta.signals["trend"] == -20
    later = AS_OF + dt.timedelta(days=30)
    health(session, fell, later, 30, 0, "poor")  # no longer falling, still poor: stays open
    session.flush()
    run(session, later)
    assert ctas(session, "health_drop")[0].status == "open"
    recovered = later + dt.timedelta(days=30)
    health(session, fell, recovered, 62, 32, "good")
    session.flush()
    run(session, recovered)
    assert ctas(session, "health_drop")[0].outcome == "trigger_cleared"


def test_a_health_drop_cta_closes_as_churned_when_the_account_churns(session):
    """Health scores live accounts only: a churned account drops out, which is no recovery."""
    no_holdouts(session)
    lost, recovered = buyer(session, last_days_before=300), buyer(session, last_days_before=300)
    for c in (lost, recovered):
        health(session, c, AS_OF, 30, -20, "poor")
    session.flush()
    run(session)
    later = AS_OF + dt.timedelta(days=90)  # lost's last order is now 390 days old: churned, not scored
    make_order(session, recovered, at(10), 40)
    health(session, recovered, later, 70, 40, "good")
    session.flush()
    result = run(session, later)
    by_customer = {cta.customer_id: cta for cta in ctas(session, "health_drop")}
    gone = by_customer[lost.id]
    assert (gone.status, gone.outcome, gone.closed_on) == ("closed", "churned", later)
    assert result["rules"]["health_drop"]["auto_closed"] == 2 and result["rules"]["health_drop"]["closed_churned"] == 1
    assert "account churned" in gone.outcome_note and "365 days" in gone.outcome_note
    assert by_customer[recovered.id].outcome == "trigger_cleared" and by_customer[recovered.id].outcome_note is None
    event = session.scalars(select(SuccessCtaEvent).where(SuccessCtaEvent.cta_id == gone.id)
                            .order_by(SuccessCtaEvent.id)).all()[-1]
    assert event.kind == "auto_closed" and event.after["outcome"] == "churned" and "churned" in event.after["note"]
    # the rules' close is no person's verdict: if the customer comes back and the trigger fires again, a CTA opens
    make_order(session, lost, at(-90), 40)
    health(session, lost, later + dt.timedelta(days=5), 30, -25, "poor")
    session.flush()
    run(session, later + dt.timedelta(days=5))
    assert [c.status for c in ctas(session, "health_drop") if c.customer_id == lost.id] == ["closed", "open"]


def test_rules_open_ctas_for_live_accounts_only(session):
    """A detractor answer from a customer who churned long ago or never bought opens nothing (nor a holdout)."""
    success.ensure_playbooks(session)["detractor_nps"].holdout_share = 0.5
    live = buyer(session)
    churned = buyer(session, last_days_before=400)
    never = make_customer(session, at(300))
    for c in (live, churned, never):
        nps(session, c, 2, 5)
    session.flush()
    result = run(session)["rules"]["detractor_nps"]
    assert {c.customer_id for c in ctas(session, "detractor_nps")} <= {live.id}
    assert set(session.scalars(select(SuccessHoldout.customer_id))) <= {live.id}
    assert (result["active"], result["not_live"], result["opened"] + result["held_out"]) == (3, 2, 1)
    # the definition is health scoring's: the same customers are live accounts for both
    from ml.health import estimator, inputs

    everyone = [live.id, churned.id, never.id]
    frame = inputs.health_inputs(session.connection(), AS_OF).loc[everyone]
    by_health = dict(zip(everyone, estimator.relationships(frame, segmentation.churned_after_days(session)),
                         strict=True))
    assert by_health == segmentation.account_relationships(session, AS_OF, everyone) == {
        live.id: "live", churned.id: "churned", never.id: "never_bought"}


def test_live_and_churned_agree_with_the_lifecycle_stage_at_the_boundary_day(session):
    """Churned is the lifecycle rule's calendar days for the Lifecycle page, health scoring and the CTA
    rules alike: an order on the day `churned_days` before the as-of date is still live (the Health
    page counted such a customer as churned while the Lifecycle page did not)."""
    from ml.health import estimator, inputs

    days = segmentation.churned_after_days(session)
    boundary_day = dt.datetime.combine(AS_OF - dt.timedelta(days=days), dt.time(10))
    on_the_day = make_customer(session, at(900))
    make_order(session, on_the_day, boundary_day, 40)
    day_before = make_customer(session, at(900))
    make_order(session, day_before, boundary_day - dt.timedelta(hours=11), 40)  # 23:00 the day before
    session.flush()
    from .test_lifecycle import snapshot  # the analytics row the refresh would write, from the orders

    for customer in (on_the_day, day_before):
        snapshot(session, customer, as_of=AS_OF)
    session.flush()
    segmentation.evaluate_lifecycle(session, AS_OF, now=NOW)
    everyone = [on_the_day.id, day_before.id]
    stages = dict(session.execute(select(CustomerLifecycleStage.customer_id, CustomerLifecycleStage.stage)
                                  .where(CustomerLifecycleStage.customer_id.in_(everyone))).all())
    assert stages[on_the_day.id] != "churned" and stages[day_before.id] == "churned"
    frame = inputs.health_inputs(session.connection(), AS_OF).loc[everyone]
    by_health = dict(zip(everyone, estimator.relationships(frame, days), strict=True))
    assert by_health == segmentation.account_relationships(session, AS_OF, everyone) == {
        on_the_day.id: "live", day_before.id: "churned"}


def nps(session, c, score, days_before):
    session.add(SurveyResponse(customer_id=c.id, survey_type="nps", score=score, responded_at=at(days_before)))


def test_detractor_rule_fresh_answers_only_and_a_later_promoter_answer_clears_it(session):
    no_holdouts(session)
    fresh, old, promoter = buyer(session), buyer(session), buyer(session)
    nps(session, fresh, 3, 5)
    nps(session, old, 2, 80)
    nps(session, promoter, 4, 60)
    nps(session, promoter, 9, 10)
    session.flush()
    result = run(session)
    assert result["rules"]["detractor_nps"]["active"] == 2
    [cta] = ctas(session, "detractor_nps")
    assert cta.customer_id == fresh.id and cta.signals["nps"] == 3 and cta.priority == "high"
    nps(session, fresh, 10, -20)  # answered after AS_OF: not seen as of AS_OF ...
    session.flush()
    run(session)
    assert ctas(session, "detractor_nps")[0].status == "open"
    run(session, AS_OF + dt.timedelta(days=25))  # ... but by this date
    assert ctas(session, "detractor_nps")[0].outcome == "trigger_cleared"


def test_service_rule_for_high_value_customers_only(session):
    no_holdouts(session)
    vip = buyer(session, revenue=2000)
    regular = [buyer(session, revenue=30) for _ in range(6)]
    for c in (vip, regular[0]):
        session.add(Complaint(customer_id=c.id, category="delivery", severity="high", description="Late",
                              status="open", created_at=at(3)))
    segmentation.refresh_snapshot(session, AS_OF)
    session.flush()
    run(session)
    [cta] = ctas(session, "service_high_value")
    assert cta.customer_id == vip.id and cta.priority == "urgent" and cta.signals["open_complaints"] == 1
    session.execute(Complaint.__table__.update().where(Complaint.customer_id == vip.id).values(
        status="resolved", resolved_at=at(1)))
    run(session)
    assert ctas(session, "service_high_value")[0].outcome == "trigger_cleared"


def card(session, c, year, month):
    n = c.id * 100 + month
    session.add(CustomerPaymentMethod(customer_id=c.id, processor="stripe", processor_token=f"pm_s{n}-{year}",
                                      brand="visa", last4="4242", exp_month=month, exp_year=year, created_at=at(600)))


def test_payment_rule_before_a_repeat_purchase(session):
    no_holdouts(session)

    def monthly():
        c = make_customer(session, at(700))
        for days in (38, 78, 118, 158):  # every 40 days, the last on 23 May: the next is due on 2 July
            make_order(session, c, at(days), 40)
        return c

    stuck, updated, irregular = monthly(), monthly(), buyer(session, orders=1)
    card(session, stuck, 2025, 5)  # valid through May: it paid the last order and has expired since
    card(session, updated, 2025, 5)
    card(session, updated, 2027, 1)  # a valid card too
    card(session, irregular, 2025, 5)
    session.flush()
    result = run(session)
    assert result["rules"]["payment_renewal"]["active"] == 1
    [cta] = ctas(session, "payment_renewal")
    assert cta.customer_id == stuck.id and cta.signals["every_days"] == 40


def test_risk_rule_and_skips_without_a_source(session):
    no_holdouts(session)
    restricted, lifted, expired = buyer(session), buyer(session), buyer(session)
    result = run(session)
    assert result["rules"]["risk_restriction"] == {"skipped": "no risk restrictions or blocks"}
    assert result["rules"]["detractor_nps"] == {"skipped": "no NPS answers"}
    assert result["rules"]["churn_high"]["skipped"].startswith("no churn predictions")
    session.add_all([
        RiskDecision(customer_id=restricted.id, action="restrict", reason="Card testing pattern", created_at=at(2),
                     expires_at=at(-28)),
        RiskDecision(customer_id=lifted.id, action="block", reason="Chargebacks", created_at=at(20), lifted_at=at(5)),
        RiskDecision(customer_id=expired.id, action="restrict", reason="Old", created_at=at(60), expires_at=at(30)),
    ])
    session.flush()
    run(session)
    [cta] = ctas(session, "risk_restriction")
    assert cta.customer_id == restricted.id and cta.reason == "Risk restriction in force: Card testing pattern"
    assert cta.signals["action"] == "restrict"
    session.execute(RiskDecision.__table__.update().where(RiskDecision.customer_id == restricted.id).values(
        lifted_at=at(1)))
    run(session)
    assert ctas(session, "risk_restriction")[0].outcome == "trigger_cleared"


def test_holdouts_are_a_random_share_and_clear_with_the_trigger(session):
    playbooks = success.ensure_playbooks(session)
    playbooks["detractor_nps"].holdout_share = 0.5
    session.flush()
    customers = [buyer(session) for _ in range(40)]
    for c in customers:
        nps(session, c, 2, 3)
    session.flush()
    result = run(session)["rules"]["detractor_nps"]
    held = {h.customer_id for h in session.scalars(select(SuccessHoldout))}
    opened = {c.customer_id for c in ctas(session, "detractor_nps")}
    expected = {c.id for c in customers if automation.held_out(c.id, "detractor_nps", AS_OF, 0.5)}
    assert held == expected and opened == {c.id for c in customers} - expected
    assert 5 < len(held) < 35 and result["held_out"] == len(held)
    run(session)  # still active: neither drawn again nor given a CTA
    assert session.scalar(select(func.count()).select_from(SuccessHoldout)) == len(held)
    assert len(ctas(session, "detractor_nps")) == len(opened)
    for c in customers:
        nps(session, c, 10, 1)
    session.flush()
    run(session)
    assert session.scalar(select(func.count()).select_from(SuccessHoldout).where(
        SuccessHoldout.cleared_on.is_(None))) == 0


def test_a_cta_closed_by_a_person_is_not_reopened_within_the_cooldown(session):
    no_holdouts(session)
    csm = make_user(session, "success_manager")
    c = buyer(session, account_manager_id=csm.id)
    nps(session, c, 1, 2)
    session.flush()
    run(session)
    [cta] = ctas(session, "detractor_nps")
    success.close_cta(session, csm, cta.id, "not_needed", AS_OF, expected_version=cta.version)
    session.flush()
    run(session)
    assert len(ctas(session, "detractor_nps")) == 1


def test_snoozed_ctas_wake_when_their_date_comes(session):
    no_holdouts(session)
    csm = make_user(session, "success_manager")
    c = buyer(session, account_manager_id=csm.id)
    nps(session, c, 1, 2)
    session.flush()
    run(session)
    [cta] = ctas(session)
    success.update_cta(session, csm, cta.id, AS_OF, expected_version=cta.version, status="snoozed",
                       snoozed_until=AS_OF + dt.timedelta(days=5))
    session.flush()
    assert success.my_ctas(session, csm, AS_OF).total == 0
    assert success.my_ctas(session, csm, AS_OF, view="snoozed").total == 1
    assert success.my_ctas(session, csm, AS_OF + dt.timedelta(days=5)).total == 1  # back in the queue on the day
    result = run(session, AS_OF + dt.timedelta(days=5))
    assert result["woke"] == 1
    [cta] = ctas(session)
    assert cta.status == "open" and cta.snoozed_until is None


# --------------------------------------------------------------------------- by hand


def test_open_by_hand_owner_defaults_validation_and_history(session):
    csm, other, admin = (make_user(session, "success_manager"), make_user(session, "success_manager"),
                         make_user(session, "admin"))
    agent = make_user(session, "support_agent")
    owned = buyer(session, account_manager_id=other.id)
    unowned = buyer(session)
    cta = success.open_cta(session, csm, owned.id, "Asked to close the account", AS_OF, opened_from="churn")
    assert cta.owner_id == other.id and cta.trigger == success.MANUAL_TRIGGER and cta.source == "manual"
    assert cta.due_on == AS_OF + dt.timedelta(days=7) and cta.signals["opened_from"] == "churn"
    mine = success.open_cta(session, csm, unowned.id, "Check in", AS_OF, priority="urgent",
                            due_on=AS_OF + dt.timedelta(days=2))
    assert mine.owner_id == csm.id and mine.priority == "urgent"

    for kwargs, message in (
        ({"customer_id": owned.id, "reason": "again"}, "already has an open CTA opened by hand"),
        ({"customer_id": unowned.id + 1000, "reason": "x"}, "no customer"),
        ({"customer_id": owned.id, "reason": "  "}, "A reason is required"),
        ({"customer_id": "7", "reason": "x"}, "positive whole number"),
    ):
        with pytest.raises(platform.DomainError, match=message):
            success.open_cta(session, csm, kwargs["customer_id"], kwargs["reason"], AS_OF)
    third = buyer(session)
    with pytest.raises(platform.ValidationError, match="cannot be before today"):
        success.open_cta(session, csm, third.id, "x", AS_OF, due_on=AS_OF - dt.timedelta(days=1))
    with pytest.raises(platform.ValidationError, match="Priority must be one of"):
        success.open_cta(session, csm, third.id, "x", AS_OF, priority="asap")
    with pytest.raises(platform.ValidationError, match="cannot work CTAs"):
        success.open_cta(session, csm, third.id, "x", AS_OF, owner_id=agent.id)
    with pytest.raises(platform.PermissionDenied):
        success.open_cta(session, agent, third.id, "x", AS_OF)

    # someone else's CTA: a success manager may not change it; an admin may reassign it
    with pytest.raises(platform.PermissionDenied):
        success.update_cta(session, csm, cta.id, AS_OF, expected_version=cta.version, priority="high")
    success.update_cta(session, admin, cta.id, AS_OF, expected_version=cta.version, owner_id=csm.id)
    with pytest.raises(platform.ConflictError):
        success.update_cta(session, csm, cta.id, AS_OF, expected_version=1, priority="high")
    success.update_cta(session, csm, cta.id, AS_OF, expected_version=cta.version, status="in_progress",
                       priority="high")
    for changes, message in (({"status": "snoozed"}, "until when"),
                             ({"status": "snoozed", "snoozed_until": AS_OF}, "a day after today"),
                             ({"status": "closed"}, "give its outcome"),
                             ({"due_on": AS_OF + dt.timedelta(days=400)}, "at most 365 days"),
                             ({"colour": "red"}, "Unknown field")):
        with pytest.raises(platform.ValidationError, match=message):
            success.update_cta(session, csm, cta.id, AS_OF, expected_version=cta.version, **changes)
    success.set_step(session, csm, cta.id, 0, True, expected_version=cta.version)
    with pytest.raises(platform.ValidationError, match="no step 9"):
        success.set_step(session, csm, cta.id, 9, True, expected_version=cta.version)
    success.log_on_cta(session, csm, cta.id, "note", note="Left a voicemail")
    success.log_on_cta(session, csm, cta.id, "communication", channel="call", subject="Retention call",
                       body="Agreed a discount")
    with pytest.raises(platform.ValidationError, match="not one of this customer's tickets"):
        other_ticket = SupportTicket(ticket_number="S-1", customer_id=unowned.id, subject="x", priority="normal",
                                     status="open", created_at=at(1))
        session.add(other_ticket)
        session.flush()
        success.log_on_cta(session, csm, cta.id, "ticket", ticket_id=other_ticket.id)
    with pytest.raises(platform.ValidationError, match="outcome must be one of"):
        success.close_cta(session, csm, cta.id, "trigger_cleared", AS_OF, expected_version=cta.version)
    success.close_cta(session, csm, cta.id, "saved", AS_OF, "Ordered again", expected_version=cta.version)
    with pytest.raises(platform.ValidationError, match="already closed"):
        success.close_cta(session, csm, cta.id, "saved", AS_OF, expected_version=cta.version)
    session.flush()

    detail = success.cta_detail(session, make_user(session, "executive"), cta.id)
    assert [h["kind"] for h in detail["history"]] == ["created", "reassigned", "changed", "step", "logged",
                                                      "logged", "closed"]
    # The owner reads as a username in the history, not a user id.
    assert detail["history"][1]["before"] == {"owner": other.username} and detail["history"][1]["by"] == admin.username
    assert detail["history"][1]["after"]["owner"] == csm.username
    assert [link["kind"] for link in detail["links"]] == ["note", "communication"]
    assert detail["steps"][0]["done_by"] == csm.username and detail["outcome"] == "saved"
    assert detail["first_action_at"] is not None
    assert session.scalar(select(func.count()).select_from(CustomerCommunication).where(
        CustomerCommunication.customer_id == owned.id)) == 1
    audited = set(session.scalars(select(AuditLog.action).where(AuditLog.entity_type == "success_cta")))
    assert {"success.cta.created", "success.cta.reassigned", "success.cta.closed", "success.cta.logged"} <= audited


def test_working_an_open_cta_puts_it_in_progress_and_the_history_says_so(session):
    csm = make_user(session, "success_manager")
    by_step = success.open_cta(session, csm, buyer(session, account_manager_id=csm.id).id, "Check in", AS_OF)
    success.set_step(session, csm, by_step.id, 0, True, expected_version=by_step.version)
    by_log = success.open_cta(session, csm, buyer(session, account_manager_id=csm.id).id, "Check in", AS_OF)
    for kind in ("ticket", "complaint"):
        with pytest.raises(platform.ValidationError, match=f"Give the id of the customer's {kind} to link"):
            success.log_on_cta(session, csm, by_log.id, kind)
    success.log_on_cta(session, csm, by_log.id, "note", note="Left a voicemail")
    success.log_on_cta(session, csm, by_log.id, "note", note="Called again")
    session.flush()
    viewer = make_user(session, "executive")
    step = success.cta_detail(session, viewer, by_step.id)["history"][-1]
    assert step["kind"] == "step" and step["before"]["status"] == "open" and step["after"]["status"] == "in_progress"
    first, second = success.cta_detail(session, viewer, by_log.id)["history"][-2:]
    assert first["before"] == {"status": "open"} and first["after"]["status"] == "in_progress"
    assert second["before"] is None and "status" not in second["after"]  # already in progress: nothing changed


def test_queues_sort_by_priority_then_due_date_with_overdue_flags(session):
    csm, admin = make_user(session, "success_manager"), make_user(session, "admin")
    rows = []
    for priority, due_in in (("medium", 1), ("urgent", 5), ("medium", -1), ("low", 0)):
        c = buyer(session, account_manager_id=csm.id)
        cta = success.open_cta(session, admin, c.id, f"{priority} {due_in}", AS_OF - dt.timedelta(days=3),
                               priority=priority, due_on=AS_OF - dt.timedelta(days=3) + dt.timedelta(days=3 + due_in))
        rows.append(cta)
    session.flush()
    page = success.my_ctas(session, csm, AS_OF)
    assert [r["reason"] for r in page.rows] == ["urgent 5", "medium -1", "medium 1", "low 0"]
    assert [r["overdue"] for r in page.rows] == [False, True, False, False]
    assert success.my_ctas(session, csm, AS_OF, view="due").total == 2
    workload = {w["owner"]: w for w in success.team_workload(session, admin, AS_OF)}
    assert workload[csm.username]["open"] == 4 and workload[csm.username]["overdue"] == 1
    assert success.team_ctas(session, admin, AS_OF, owner_id=csm.id).total == 4
    assert success.team_ctas(session, admin, AS_OF, owner_id=success.UNASSIGNED).total == 0
    with pytest.raises(platform.PermissionDenied):
        success.my_ctas(session, make_user(session, "executive"), AS_OF)
    with pytest.raises(platform.ValidationError):
        success.my_ctas(session, csm, AS_OF, view="everything")
    book = {b["owner"]: b for b in success.book_of_business(session, admin, AS_OF)}
    assert book[csm.username]["accounts"] == 4 and book[csm.username]["ctas_open"] == 4
    # An executive reads the team queue and a CTA, but without customers.view not who the customer is.
    executive = make_user(session, "executive")
    seen = success.team_ctas(session, executive, AS_OF, owner_id=csm.id).rows
    assert {r["customer"] for r in seen} == {f"Customer #{cta.customer_id}" for cta in rows}
    assert success.cta_detail(session, executive, rows[0].id)["customer"] == f"Customer #{rows[0].customer_id}"
    assert not success.team_ctas(session, admin, AS_OF, owner_id=csm.id).rows[0]["customer"].startswith("Customer #")
    # The success step stores the books (accounts and health); the CTA counts stay live.
    from crm_core.success.queues import store_books

    assert store_books(session, AS_OF) == 1
    later = buyer(session, account_manager_id=csm.id)  # not in the stored books until the next refresh
    success.open_cta(session, admin, later.id, "one more", AS_OF)
    stored = {b["owner"]: b for b in success.book_of_business(session, admin, AS_OF)}
    assert stored[csm.username]["accounts"] == 4 and stored[csm.username]["ctas_open"] == 5


# --------------------------------------------------------------------------- results


def test_save_rate_and_time_to_first_action_arithmetic(session):
    csm = make_user(session, "success_manager")
    long_ago, recently = AS_OF - dt.timedelta(days=120), AS_OF - dt.timedelta(days=30)
    # (opened, outcome, reorder days after opening): the horizon (90 days) has passed for the first four
    # and not for the last three.
    outcomes = ((long_ago, "saved", 10), (long_ago, "saved", None), (long_ago, "churned", None),
                (long_ago, "not_needed", None),
                (recently, "saved", 5),  # reordered already: a save at once
                (recently, "saved", None),  # no reorder yet, 60 days of horizon left: pending, not a failure
                (recently, "churned", None))  # a person's verdict: counts at once
    for opened, outcome, reorder_after in outcomes:
        c = buyer(session, last_days_before=200, account_manager_id=csm.id)
        cta = success.open_cta(session, csm, c.id, "test", opened)
        cta.opened_at = dt.datetime.combine(opened, dt.time(9))
        session.flush()
        success.close_cta(session, csm, cta.id, outcome, AS_OF, expected_version=cta.version)
        cta.first_action_at = cta.opened_at + dt.timedelta(hours=4 if outcome == "saved" else 10)
        if reorder_after is not None:
            make_order(session, c, cta.opened_at + dt.timedelta(days=reorder_after), 30)
    session.flush()
    [row] = success.save_rates(session, csm, AS_OF, by="owner")
    assert (row["ctas"], row["closed"], row["claimed_saves"], row["verified_saves"]) == (7, 7, 4, 2)
    assert row["pending_saves"] == 1
    # saved (verified or not) and churned whose verdict is in: 2 + 1 old, 1 + 1 recent; the pending one is left out
    assert row["save_rate_base"] == 5 and row["save_rate"] == pytest.approx(2 / 5, abs=1e-4)
    assert row["median_hours_to_first_action"] == 4.0  # 4, 4, 4, 4, 10, 10, 10
    # Once its horizon has passed without a reorder, the pending save is a save that did not hold.
    [later] = success.save_rates(session, csm, AS_OF + dt.timedelta(days=61), by="owner")
    assert (later["verified_saves"], later["pending_saves"], later["save_rate_base"]) == (2, 0, 6)
    # A short horizon: the recent ones are past it too, and the recent reorder (5 days) still counts.
    [short] = success.save_rates(session, csm, AS_OF, by="owner", horizon_days=7)
    assert (short["verified_saves"], short["pending_saves"], short["save_rate_base"]) == (1, 0, 6)


def test_playbook_effect_against_the_holdout_with_a_confidence_interval(session):
    playbook = success.ensure_playbooks(session)["detractor_nps"]
    fired = AS_OF - dt.timedelta(days=100)
    for treated, reordered in [(True, True)] * 6 + [(True, False)] * 2 + [(False, True)] * 2 + [(False, False)] * 6:
        c = buyer(session, last_days_before=150)
        if reordered:
            make_order(session, c, dt.datetime.combine(fired + dt.timedelta(days=20), dt.time(12)), 25)
        if treated:
            session.add(SuccessCta(customer_id=c.id, trigger="detractor_nps", source="rule", playbook_id=playbook.id,
                                   title="t", reason="r", signals={}, steps=[], priority="high", status="open",
                                   due_on=fired, opened_on=fired, opened_at=dt.datetime.combine(fired, dt.time(23))))
        else:
            session.add(SuccessHoldout(customer_id=c.id, trigger="detractor_nps", playbook_id=playbook.id,
                                       fired_on=fired, signals={}))
    recent = buyer(session)
    session.add(SuccessHoldout(customer_id=recent.id, trigger="detractor_nps", playbook_id=playbook.id,
                               fired_on=AS_OF - dt.timedelta(days=10), signals={}))
    session.flush()
    [row] = success.playbook_effects(session, make_user(session, "executive"), AS_OF, horizon_days=90)
    assert (row["treated"], row["treated_reordered"], row["control"], row["control_reordered"]) == (8, 6, 8, 2)
    assert row["pending"] == 1
    se = math.sqrt(0.75 * 0.25 / 8 + 0.25 * 0.75 / 8)
    assert row["effect"] == pytest.approx(0.5) and row["ci_low"] == pytest.approx(0.5 - 1.959964 * se, abs=1e-4)
    assert row["ci_high"] == pytest.approx(0.5 + 1.959964 * se, abs=1e-4)
    assert success.proportion_difference(1, 2, 0, 0)["effect"] is None


def test_playbook_templates_are_admin_edited_and_validated(session):
    admin, csm = make_user(session, "admin"), make_user(session, "success_manager")
    [churn] = [p for p in success.list_playbooks(session, csm) if p["trigger"] == "churn_high"]
    fields = dict(name="Churn save v2", description="Call first", steps="Call\nOffer\nLog", priority="urgent",
                  due_days=3, holdout_share=0.2, is_active=True)
    with pytest.raises(platform.PermissionDenied):
        success.save_playbook(session, csm, "churn_high", **fields, expected_version=churn["version"])
    for bad, message in (({"steps": ""}, "at least one step"), ({"due_days": 500}, "from 0 to 365"),
                         ({"holdout_share": 0.9}, "between 0 and 0.5"), ({"priority": "now"}, "Priority"),
                         ({"name": ""}, "name")):
        with pytest.raises(platform.ValidationError, match=message):
            success.save_playbook(session, admin, "churn_high", **{**fields, **bad}, expected_version=churn["version"])
    saved = success.save_playbook(session, admin, "churn_high", **fields, expected_version=churn["version"])
    assert saved["steps"] == ["Call", "Offer", "Log"] and saved["holdout_share"] == 0.2
    with pytest.raises(platform.ConflictError):
        success.save_playbook(session, admin, "churn_high", **fields, expected_version=churn["version"])
    with pytest.raises(platform.ValidationError, match="never held out"):
        manual = session.scalar(select(SuccessPlaybook).where(SuccessPlaybook.trigger == "manual"))
        success.save_playbook(session, admin, "manual", **{**fields, "holdout_share": 0.1},
                              expected_version=manual.version)


def test_a_manager_reassigns_a_persons_open_ctas(session):
    leaving, taking, admin = (make_user(session, "success_manager"), make_user(session, "success_manager"),
                              make_user(session, "admin"))
    opened = [success.open_cta(session, admin, buyer(session, account_manager_id=leaving.id).id, "r", AS_OF)
              for _ in range(3)]
    success.close_cta(session, leaving, opened[0].id, "saved", AS_OF, expected_version=opened[0].version)
    with pytest.raises(platform.PermissionDenied):
        success.reassign_ctas(session, leaving, leaving.id, taking.id)
    with pytest.raises(platform.ValidationError, match="two different owners"):
        success.reassign_ctas(session, admin, taking.id, taking.id)
    assert success.reassign_ctas(session, admin, leaving.id, taking.id) == 2
    session.expire_all()
    owners = [session.get(SuccessCta, c.id).owner_id for c in opened]
    assert owners == [leaving.id, taking.id, taking.id]  # a closed CTA keeps its owner
    kinds = session.scalars(select(SuccessCtaEvent.kind).where(SuccessCtaEvent.cta_id == opened[1].id)
                            .order_by(SuccessCtaEvent.id)).all()
    assert kinds == ["created", "reassigned"]


def test_customers_whose_ctas_share_a_trigger_merge_when_at_most_one_is_open(session):
    """The one-open-CTA index is partial: closed CTAs (and cleared holdouts) move with the merged customer."""
    from crm_core import customers

    admin = make_user(session, "admin")
    survivor, other = buyer(session), buyer(session)
    closed = success.open_cta(session, admin, survivor.id, "earlier episode", AS_OF)
    success.close_cta(session, admin, closed.id, "saved", AS_OF, expected_version=closed.version)
    moved = success.open_cta(session, admin, other.id, "current episode", AS_OF)
    success.log_on_cta(session, admin, moved.id, "note", note="Called")
    session.add_all([SuccessHoldout(customer_id=c.id, trigger="churn_high", fired_on=AS_OF - dt.timedelta(days=d),
                                    cleared_on=cleared, signals={})
                     for c, d, cleared in ((survivor, 90, AS_OF - dt.timedelta(days=30)), (other, 5, None))])
    session.flush()
    customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    session.flush()
    session.expire_all()
    assert sorted(c.id for c in ctas(session) if c.customer_id == survivor.id) == [closed.id, moved.id]
    assert [h["kind"] for h in success.cta_detail(session, admin, moved.id)["history"]] == ["created", "logged"]
    assert session.scalar(select(func.count()).select_from(SuccessHoldout)
                          .where(SuccessHoldout.customer_id == survivor.id)) == 2



def test_a_merge_closes_the_merged_customers_duplicate_open_cta_and_undo_reopens_it(session):
    """Both customers with an open CTA for one trigger: the merged-away one closes as not needed, named in
    its history, and the merge goes ahead; undoing the merge opens it again on its customer."""
    from crm_core import customers

    admin = make_user(session, "admin")
    survivor, other = buyer(session), buyer(session)
    kept = success.open_cta(session, admin, survivor.id, "open", AS_OF)
    duplicate = success.open_cta(session, admin, other.id, "open", AS_OF)
    success.log_on_cta(session, admin, duplicate.id, "note", note="Called")
    other_trigger = SuccessCta(customer_id=other.id, trigger="detractor_nps", source="rule", title="t", reason="r",
                               signals={}, steps=[], priority="high", status="open", due_on=AS_OF, opened_on=AS_OF)
    session.add(other_trigger)
    session.flush()
    before = session.get(SuccessCta, duplicate.id).status
    preview = customers.preview_merge(session, admin, survivor.id, other.id)
    assert any(t["table"] == "success_ctas" and "not needed" in t["action"] for t in preview["tables"])

    merge_id = customers.merge_customers(session, admin, survivor.id, other.id)
    session.flush()
    session.expire_all()
    closed = session.get(SuccessCta, duplicate.id)
    assert (closed.customer_id, closed.status, closed.outcome) == (survivor.id, "closed", "not_needed")
    assert f"#{kept.id}" in closed.outcome_note and f"Customer {other.id} was merged" in closed.outcome_note
    history = success.cta_detail(session, admin, duplicate.id)["history"]
    assert [h["kind"] for h in history] == ["created", "logged", "closed"]
    event = session.scalars(select(SuccessCtaEvent).where(SuccessCtaEvent.cta_id == duplicate.id)
                            .order_by(SuccessCtaEvent.id.desc())).first()
    assert event.after["outcome"] == "not_needed" and event.after["merged_into_cta"] == kept.id
    assert session.get(SuccessCta, kept.id).status == "open"
    assert session.get(SuccessCta, other_trigger.id).status == "open"  # no twin on the survivor: it just moves

    customers.undo_merge(session, admin, merge_id)
    session.flush()
    session.expire_all()
    reopened = session.get(SuccessCta, duplicate.id)
    assert (reopened.customer_id, reopened.status, reopened.outcome, reopened.closed_on) == (other.id, before, None, None)
    assert reopened.outcome_note is None
    assert session.get(SuccessCta, other_trigger.id).customer_id == other.id
    assert session.get(SuccessCta, kept.id).customer_id == survivor.id
    kinds = session.scalars(select(SuccessCtaEvent.kind).where(SuccessCtaEvent.cta_id == duplicate.id)
                            .order_by(SuccessCtaEvent.id)).all()
    assert kinds == ["created", "logged", "closed", "reopened"]

    # A CTA edited after the merge that closed it: undo would lose the edit, so it is refused.
    merge_id = customers.merge_customers(session, admin, survivor.id, other.id)
    session.flush()
    session.expire_all()
    success.log_on_cta(session, admin, duplicate.id, "note", note="Written after the merge")
    session.flush()
    with pytest.raises(platform.ConflictError, match=f"#{duplicate.id}"):
        customers.undo_merge(session, admin, merge_id)


def test_erasure_blanks_what_was_written_while_working_the_ctas(session):
    from crm_core import customers

    no_holdouts(session)
    csm = make_user(session, "success_manager")
    person = buyer(session, account_manager_id=csm.id, first_name="Zelda", last_name="Quixote")
    nps(session, person, 1, 2)
    session.flush()
    run(session)  # a rule CTA ...
    manual = success.open_cta(session, csm, person.id, "Zelda Quixote asked for a call", AS_OF)  # ... and one by hand
    success.log_on_cta(session, csm, manual.id, "note", note="Zelda Quixote prefers mornings")
    request = customers.create_privacy_request(session, platform.SYSTEM, person.id, "erasure")
    result = customers.erase_customer(session, platform.SYSTEM, person.id, request.id)
    session.flush()
    assert result["rows_anonymised"]["success_ctas"] == 2 and result["rows_anonymised"]["success_cta_links"] == 1
    rows = ctas(session)
    assert {c.trigger for c in rows} == {"detractor_nps", "manual"}  # one open CTA per trigger still holds
    assert all("Zelda" not in (c.reason or "") for c in rows)
    assert success.cta_detail(session, csm, manual.id)["links"][0]["note"] is None
    assert all(h["after"] is None for h in success.cta_detail(session, csm, manual.id)["history"])
