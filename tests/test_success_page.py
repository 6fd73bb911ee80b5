"""The Success workbench and the CTA panels under AppTest, as each role would use them."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from crm_core import platform, success
from db.engine import make_engine, session_factory
from db.models import AuditLog, Customer, SuccessCta, SuccessCtaEvent, User

from .apptest_support import APP, open_page, open_tab, titles


@pytest.fixture(scope="module")
def cta_db(app_db):
    """The shared demo database (its refresh ran the CTA rules) with one CTA by hand for csm1."""
    engine = make_engine(app_db)
    with platform.unit_of_work(engine) as s:
        csm = s.scalar(select(User).where(User.username == "csm1"))
        customer = s.scalar(select(Customer).where(Customer.account_manager_id == csm.id).order_by(Customer.id))
        existing = s.scalar(select(SuccessCta).where(SuccessCta.customer_id == customer.id,
                                                     SuccessCta.trigger == success.MANUAL_TRIGGER,
                                                     SuccessCta.status != "closed"))
        if existing is None:
            success.open_cta(s, csm, customer.id, "Page test: call about the renewal", platform.data_date(s).day,
                             priority="urgent")
    yield app_db
    engine.dispose()


@pytest.fixture
def page_app(cta_db, monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", cta_db)
    return AppTest.from_file(APP, default_timeout=60)


def one(url: str, query):
    engine = make_engine(url)
    with session_factory(engine)() as s:
        value = s.execute(query).first()
    engine.dispose()
    return value


def my_open_cta(url: str, username: str) -> SuccessCta:
    engine = make_engine(url)
    with session_factory(engine)() as s:
        user = s.scalar(select(User).where(User.username == username))
        cta = s.scalar(select(SuccessCta).where(SuccessCta.owner_id == user.id, SuccessCta.status == "open",
                                                SuccessCta.trigger == success.MANUAL_TRIGGER).order_by(SuccessCta.id))
        s.expunge(cta)
    engine.dispose()
    return cta


def metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


def test_success_manager_sees_their_queue_in_priority_order(page_app, cta_db):
    at = open_page(page_app, "csm1", "success_workbench")
    assert not at.exception, at.exception
    assert titles(at) == ["Success workbench"]
    engine = make_engine(cta_db)
    with session_factory(engine)() as s:
        csm = s.scalar(select(User).where(User.username == "csm1"))
        today = platform.data_date(s).day
        mine = success.my_ctas(s, csm, today, page_size=25)
    engine.dispose()
    assert metric(at, "My open CTAs") == f"{mine.total:,}" and mine.total >= 1
    queue = at.dataframe[0].value
    assert list(queue["id"])[:5] == [r["id"] for r in mine.rows][:5]
    assert queue["priority"].iloc[0] == "urgent"  # urgent first
    # No CTA is open below until one is picked: the number box is empty, not 0 (no CTA has number 0).
    assert at.number_input(key="cta_pick").value is None
    assert any(c.value.startswith("Enter a CTA number") for c in at.caption)
    assert not any(b.label == "Save playbook" for b in at.button)  # templates are the admins'


def test_working_a_cta_saves_refuses_bad_input_and_stale_edits(page_app, cta_db):
    cta = my_open_cta(cta_db, "csm1")
    at = open_page(page_app, "csm1", "success_workbench")
    at.number_input(key="cta_pick").set_value(cta.id).run()
    assert not at.exception, at.exception
    key = f"cta_edit_{cta.id}"
    at.selectbox(key=f"{key}_status").set_value("snoozed")
    button(at, "Save changes").click().run()
    assert any("Say until when to snooze" in e.value for e in at.error)

    at.selectbox(key=f"{key}_status").set_value("in_progress")
    at.selectbox(key=f"{key}_priority").set_value("high")
    button(at, "Save changes").click().run()
    assert not at.exception
    assert any("CTA updated" in s.value for s in at.success)
    assert metric(at, "Status") == "In progress"

    at.selectbox(key=f"{key}_log_kind").set_value("note")
    at.text_input(key=f"{key}_log_text").input("")
    button(at, "Log").click().run()
    assert any("The note is required" in e.value for e in at.error)
    at.text_input(key=f"{key}_log_text").input("Left a voicemail")
    button(at, "Log").click().run()
    assert any("Logged on the CTA" in s.value for s in at.success)

    # someone else changes the CTA meanwhile: this form's save is refused, nothing is lost
    engine = make_engine(cta_db)
    with platform.unit_of_work(engine) as s:
        admin = s.scalar(select(User).where(User.username == "admin1"))
        fresh = s.get(SuccessCta, cta.id)
        success.update_cta(s, admin, cta.id, platform.data_date(s).day, expected_version=fresh.version,
                           priority="urgent")
    engine.dispose()
    at.selectbox(key=f"{key}_outcome").set_value("saved")
    button(at, "Close CTA").click().run()
    assert any("changed by someone else" in e.value for e in at.error)
    assert one(cta_db, select(SuccessCta.status).where(SuccessCta.id == cta.id))[0] == "in_progress"

    assert any("Someone changed this CTA" in w.value for w in at.warning)
    button(at, "Reload the CTA").click().run()  # reloaded: now it closes
    at.selectbox(key=f"{key}_outcome").set_value("saved")
    at.text_area(key=f"{key}_note").input("Ordered again after the call")
    button(at, "Close CTA").click().run()
    assert any("CTA closed: Saved" in s.value for s in at.success)
    history = at.dataframe[-1].value
    assert list(history["What"]) == ["Created", "Changed", "Logged", "Changed", "Closed"]
    assert one(cta_db, select(func.count()).select_from(SuccessCtaEvent).where(SuccessCtaEvent.cta_id == cta.id))[0] == 5


def test_opening_a_cta_from_customer_360(page_app, cta_db):
    engine = make_engine(cta_db)
    with session_factory(engine)() as s:
        customer_id = s.scalar(select(Customer.id).where(~select(SuccessCta.id).where(
            SuccessCta.customer_id == Customer.id, SuccessCta.trigger == success.MANUAL_TRIGGER).exists(),
            Customer.status == "active").order_by(Customer.id.desc()))
    engine.dispose()
    page_app.query_params["id"] = str(customer_id)
    at = open_page(page_app, "csm2", "customer_360")
    at.number_input(key="c360_id").set_value(customer_id).run()
    assert not at.exception, at.exception
    key = f"cta_customer_360_{customer_id}"
    button(at, "Open CTA").click().run()
    assert any("A reason is required" in e.value for e in at.error)
    at.text_area(key=f"{key}_reason").input("Asked for a call back about delivery times")
    button(at, "Open CTA").click().run()
    assert not at.exception
    assert any(s.value.startswith("CTA #") and "opened" in s.value for s in at.success)
    row = one(cta_db, select(SuccessCta.reason, SuccessCta.signals).where(SuccessCta.customer_id == customer_id,
                                                                          SuccessCta.trigger == "manual"))
    assert row[0] == "Asked for a call back about delivery times" and row[1]["opened_from"] == "customer_360"
    assert one(cta_db, select(AuditLog.id).where(AuditLog.action == "success.cta.created")) is not None


def test_executive_reads_the_team_and_results_but_works_nothing(page_app):
    at = open_page(page_app, "exec1", "success_workbench")
    assert not at.exception, at.exception
    assert not any(m.label == "My open CTAs" for m in at.metric)
    assert len(at.get("plotly_chart")) >= 2  # workload and revenue at risk
    assert [s.value for s in at.subheader][:3] == ["By playbook", "By person", "Playbook effect against the holdout"]
    by_playbook = next(d.value for d in at.dataframe if "save_rate" in d.value.columns)
    assert list(by_playbook.columns)[2:4] == ["save_rate", "pending_saves"]  # the pending count beside the rate
    assert any("pending and left out of the rate" in c.value for c in at.caption)
    assert not any(b.label in ("Save playbook", "Save changes", "Open CTA") for b in at.button)


def test_admin_edits_a_playbook_and_bad_input_is_refused(page_app, cta_db):
    at = open_page(page_app, "admin1", "success_workbench")
    assert not at.exception, at.exception
    form = at.get("form")
    steps = next(t for t in at.text_area if t.label == "Steps (one a line)")
    steps.input("")
    next(b for b in at.button if b.label == "Save playbook").click().run()
    assert any("at least one step" in e.value for e in at.error)
    steps = next(t for t in at.text_area if t.label == "Steps (one a line)")
    steps.input("Call\nOffer\nLog")
    next(b for b in at.button if b.label == "Save playbook").click().run()
    assert any("Playbook saved" in s.value for s in at.success)
    assert form is not None
    assert one(cta_db, select(AuditLog.id).where(AuditLog.action == "success.playbook.save")) is not None


def test_opening_a_cta_from_the_health_drill_down(page_app, cta_db):
    engine = make_engine(cta_db)
    with session_factory(engine)() as s:
        customer_id = s.scalar(select(Customer.id).where(~select(SuccessCta.id).where(
            SuccessCta.customer_id == Customer.id, SuccessCta.trigger == success.MANUAL_TRIGGER).exists(),
            Customer.status == "active").order_by(Customer.id))
    engine.dispose()
    at = open_tab(open_page(page_app, "csm3", "health"), "health_tab", "Account drill-down")
    at.number_input(key="health_customer").set_value(customer_id).run()
    assert not at.exception, at.exception
    assert any(e.label == "Calls to action" for e in at.expander)
    key = f"cta_health_{customer_id}"
    at.text_area(key=f"{key}_reason").input("Health fell after two late deliveries")
    at.selectbox(key=f"{key}_priority").set_value("high")
    button(at, "Open CTA").click().run()
    assert not at.exception
    assert any(s.value.startswith("CTA #") for s in at.success)
    row = one(cta_db, select(SuccessCta.priority, SuccessCta.signals).where(
        SuccessCta.customer_id == customer_id, SuccessCta.trigger == success.MANUAL_TRIGGER))
    assert row[0] == "high" and row[1]["opened_from"] == "health"


def test_cta_history_lists_what_changed_in_words():
    """A close that rewrites owner, priority and due date with their old values lists only its status."""
    import datetime as dt

    from ui.cta_panel import _history

    entry = {"at": dt.datetime(2026, 12, 1, 9, 0), "by": "csm1", "kind": "closed",
             "before": {"owner": "csm1", "priority": "high", "due_on": "2026-12-04", "status": "open"},
             "after": {"owner": "csm1", "priority": "high", "due_on": "2026-12-04", "status": "closed",
                       "outcome": "saved"}}
    shown = _history({"history": [entry]})
    assert shown.columns.tolist() == ["When (UTC)", "By", "What", "Change"]
    assert shown.iloc[0]["Change"] == "Status: open → closed; Outcome: saved"
    assert shown.iloc[0]["What"] == "Closed"


def test_reassigning_a_persons_ctas_shows_in_the_workload_at_once(page_app, cta_db):
    at = open_page(page_app, "admin1", "success_workbench")
    assert not at.exception, at.exception

    def workload(at_) -> dict[str, int]:
        table = next(d.value for d in at_.dataframe if "due_7_days" in d.value.columns)
        return dict(zip(table["owner"], table["open"], strict=True))

    before = workload(at)
    at.selectbox(key="reassign_from").set_value("(unassigned)")
    at.selectbox(key="reassign_to").set_value("csm3")
    button(at, "Reassign").click().run()
    assert not at.exception, at.exception
    moved = before.get("(unassigned)", 0)
    assert any(f"{moved:,} CTAs moved from (unassigned) to csm3" in s.value for s in at.success)
    after = workload(at)
    assert after.get("(unassigned)", 0) == 0 and after["csm3"] == before.get("csm3", 0) + moved
