"""The Risk reviews page under AppTest on the demo database, as a risk analyst and a success manager:
the queue, a case decided, the rule editor with replay, lists and identity, and bad input refused."""

from __future__ import annotations

from sqlalchemy import select

from crm_core import platform, risk
from db.engine import make_engine
from db.models import Customer, RiskDecision, RiskListEntry, RiskReview, RiskRule

from .apptest_support import open_page, titles


def _one(widgets, label):
    found = [w for w in widgets if w.label == label]
    assert found, f"no widget labelled {label!r}: {[w.label for w in widgets]}"
    return found[0]


def _click(at, label):
    return _one(at.button, label).click().run()


def _errors(at):
    return [e.value for e in at.error]


def _an_open_review(engine) -> int:
    with platform.unit_of_work(engine) as s:
        review = s.scalars(select(RiskReview).where(RiskReview.status == "open").order_by(
            RiskReview.score.desc(), RiskReview.opened_at, RiskReview.id)).first()
        if review is None:
            customer_id = s.scalar(select(Customer.id).order_by(Customer.id.desc()))
            review = RiskReview(customer_id=customer_id, source="score", risk_type="fraud", score=99.0, status="open",
                                opened_at=platform.data_date(s).run_time(), due_at=platform.data_date(s).run_time())
            s.add(review)
            s.flush()
        return review.id


def test_the_analyst_works_the_queue_and_decides_a_case(app, app_db):
    engine = make_engine(app_db)
    review_id = _an_open_review(engine)
    with platform.unit_of_work(engine) as s:
        expected = risk.queue_summary(s, platform.SYSTEM)
    at = open_page(app, "risk1", "risk_reviews")
    assert not at.exception and titles(at) == ["Risk reviews"]
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open reviews"] == f"{expected['open']:,}"
    assert metrics["Confirmed"] == f"{expected['confirmed']:,}"  # short enough for its box; the detail is in its help
    assert any(f"{expected['open']:,} reviews, highest score first" in c.value for c in at.caption)
    assert at.number_input(key="risk_case").value == review_id
    assert any(f"Review {review_id}" in m.value for m in at.markdown)

    at = _click(at, "Save decision")  # no reason
    assert "Give a reason for the decision." in _errors(at)
    at.radio(key="risk_outcome").set_value("block")
    at.text_area(key="risk_reason").input("Shares a device with a known ring")
    at = _click(at, "Save decision")
    assert not at.exception and not _errors(at)
    assert any(f"Review {review_id}: blocked." in s.value for s in at.success)
    with platform.unit_of_work(engine) as s:
        review = s.get(RiskReview, review_id)
        assert review.status == "blocked" and review.reason == "Shares a device with a known ring"
        decision = s.scalars(select(RiskDecision).where(RiskDecision.review_id == review_id)).one()
        assert decision.action == "block" and decision.expires_at is not None
    engine.dispose()


def test_rules_replay_and_save_with_bad_input_refused(app, app_db):
    engine = make_engine(app_db)
    at = open_page(app, "risk1", "risk_reviews")
    assert not at.exception
    condition = _one(at.text_area, "Condition (JSON: all/any groups of signal, op, value)")
    condition.input('{"all": [{"signal": "orders_7d", "op": ">=", "value": 1}')  # unclosed
    at = _click(at, "Replay")
    assert any("The condition is not JSON" in e for e in _errors(at))
    _one(at.text_area, "Condition (JSON: all/any groups of signal, op, value)").input(
        '{"all": [{"signal": "chargebacks_365d", "op": ">=", "value": 1}]}')
    at = _click(at, "Replay")
    assert not at.exception and not _errors(at)
    assert "Customers flagged" in [m.label for m in at.metric]
    assert any("Replay of `chargebacks_365d >= 1`" in m.value for m in at.markdown)
    at = _click(at, "Save rule")  # no name
    assert "A rule needs a name." in _errors(at)
    _one(at.text_input, "Name").input("Any chargeback")
    at = _click(at, "Save rule")
    assert not _errors(at) and any("Rule 'Any chargeback' saved" in s.value for s in at.success)
    with platform.unit_of_work(engine) as s:
        rule = s.scalars(select(RiskRule).where(RiskRule.name == "Any chargeback")).one()
        assert rule.condition == {"all": [{"signal": "chargebacks_365d", "op": ">=", "value": 1.0}]}
    engine.dispose()


def test_lists_and_identity_forms(app, app_db):
    engine = make_engine(app_db)
    with platform.unit_of_work(engine) as s:
        customer_id = s.scalar(select(Customer.id).order_by(Customer.id))
    at = open_page(app, "risk1", "risk_reviews")
    form_value = [w for w in at.text_input if w.label == "Value"][0]
    form_value.input("999.1.1.1")
    at.selectbox[[w.label for w in at.selectbox].index("Field")].set_value("ip")
    _one(at.text_input, "Reason").input("Card testing")
    at = _click(at, "Add to list")
    assert any("is not an IPv4 or IPv6 address" in e for e in _errors(at))
    [w for w in at.text_input if w.label == "Value"][0].input("203.0.113.7")
    at = _click(at, "Add to list")
    assert not _errors(at) and any("Added to the block list." in s.value for s in at.success)
    with platform.unit_of_work(engine) as s:
        assert s.scalars(select(RiskListEntry.value).where(RiskListEntry.field == "ip")).all() == ["203.0.113.7"]

    at.number_input(key="risk_identity_customer").set_value(customer_id).run()
    current = risk.TRANSITIONS
    assert not at.exception
    target = [w for w in at.selectbox if w.label == "Move to"][0]
    status = target.options
    assert status and set(status) <= {s for moves in current.values() for s in moves}
    if "failed" in status:
        target.set_value("failed")
        at = _click(at, "Save status")
        assert "Say why the identity check failed." in _errors(at)
    else:
        target.set_value(status[0])
        at = _click(at, "Save status")
        assert not _errors(at) and any(f"Customer {customer_id} is now" in s.value for s in at.success)
    engine.dispose()


def test_a_success_manager_reads_the_queue_but_cannot_decide_or_edit_rules(app, app_db):
    engine = make_engine(app_db)
    _an_open_review(engine)
    at = open_page(app, "csm1", "risk_reviews")
    assert not at.exception and titles(at) == ["Risk reviews"]
    assert "Open reviews" in [m.label for m in at.metric]
    assert "Save decision" not in [b.label for b in at.button]
    assert _one(at.button, "Save rule").disabled
    assert "Add to list" not in [b.label for b in at.button]
    engine.dispose()

