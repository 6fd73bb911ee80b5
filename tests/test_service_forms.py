"""AppTest of the Complaints, Communications and Loyalty pages: figures shown, forms refuse bad input
with a message and save good input."""

from __future__ import annotations

from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from db.engine import make_engine
from db.models import (
    Complaint,
    Customer,
    CustomerCommunication,
    LoyaltyAccount,
    LoyaltyAdjustmentRequest,
    LoyaltyTransaction,
)

from .apptest_support import APP, open_page, open_tab, titles


def _scalar(app_db, statement):
    engine = make_engine(app_db)
    try:
        with engine.connect() as connection:
            return connection.execute(statement).scalar()
    finally:
        engine.dispose()


def _messages(at, kind: str) -> str:
    return " ".join(e.value for e in getattr(at, kind))


def _submit(at, key: str):
    return at.button(key=key).click().run()


def test_complaints_page_shows_the_dashboard(app, app_db):
    at = open_page(app, "admin1", "complaints")
    assert not at.exception
    assert titles(at) == ["Complaints"]
    open_count = _scalar(app_db, select(func.count()).select_from(Complaint)
                         .where(Complaint.status.in_(("open", "investigating", "escalated"))))
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Open complaints"] == f"{open_count:,}"
    # A label short enough for its box; what it measures is in its help.
    assert "Satisfaction" in metrics and "resolution" in next(m for m in at.metric if m.label == "Satisfaction").help
    assert len(at.get("plotly_chart")) >= 2
    assert len(at.dataframe) >= 1


def test_complaint_forms_refuse_bad_input_and_save_good_input(app, app_db):
    customer_id = _scalar(app_db, select(func.min(Customer.id)).where(Customer.status == "active"))
    at = open_page(app, "agent1", "complaints")
    at.text_area(key="new_description").input("Parcel arrived crushed (apptest)")
    _submit(at, "new_submit")
    assert not at.exception
    assert "Choose the customer who complains" in _messages(at, "error")

    at.number_input(key="new_customer_id").set_value(customer_id)
    at.text_area(key="new_description").input("Parcel arrived crushed (apptest)")
    at.text_input(key="new_order_id").input("not-a-number")
    _submit(at, "new_submit")
    assert "Order id must be a whole number" in _messages(at, "error")

    at.text_input(key="new_order_id").input("")
    at.selectbox(key="new_severity").set_value("high")
    _submit(at, "new_submit")
    assert not at.exception
    assert "registered" in _messages(at, "success")
    complaint_id = _scalar(app_db, select(func.max(Complaint.id)).where(Complaint.description == "Parcel arrived crushed (apptest)"))
    assert complaint_id is not None

    at.number_input(key="work_complaint_id").set_value(complaint_id).run()
    at.text_area(key="work_resolution").input("Refunded the parcel")
    at.selectbox(key="work_kind").set_value("refund")
    at.number_input(key="work_amount").set_value(120.0)
    _submit(at, "work_resolve")
    assert "may approve compensation up to €50.00; €120.00 needs" in _messages(at, "error")
    assert any("You may approve compensation up to €" in c.value for c in at.caption)
    assert _scalar(app_db, select(Complaint.status).where(Complaint.id == complaint_id)) == "open"

    at.number_input(key="work_amount").set_value(20.0)
    _submit(at, "work_resolve")
    assert not at.exception
    assert f"Complaint {complaint_id} resolved" in _messages(at, "success")
    assert _scalar(app_db, select(Complaint.status).where(Complaint.id == complaint_id)) == "resolved"


def test_communications_page_funnel_and_log_form(app, app_db):
    customer_id = _scalar(app_db, select(func.max(Customer.id)).where(Customer.status == "active"))
    at = open_page(app, "agent1", "communications")
    assert not at.exception
    assert titles(at) == ["Communications"]
    metrics = {m.label: m.value for m in at.metric}
    assert int(metrics["Messages sent"].replace(",", "")) > 0
    assert len(at.get("plotly_chart")) == 2

    open_tab(at, "communications_tab", "Log a call or note")
    at.number_input(key="log_customer_id").set_value(customer_id)
    _submit(at, "log_submit")
    assert "subject is required" in _messages(at, "error")

    at.text_input(key="log_subject").input("Called about a late refund (apptest)")
    at.text_area(key="log_body").input("The customer was upset and wants the refund this week.")
    at.selectbox(key="log_direction").set_value("inbound")
    _submit(at, "log_submit")
    assert not at.exception
    assert f"Logged for customer {customer_id}" in _messages(at, "success")
    saved = _scalar(app_db, select(func.count()).select_from(CustomerCommunication).where(
        CustomerCommunication.subject == "Called about a late refund (apptest)",
        CustomerCommunication.customer_id == customer_id, CustomerCommunication.channel == "call"))
    assert saved == 1
    open_tab(at, "communications_tab", "Customer log")  # the page shows that customer's log there
    shown = [df.value for df in at.dataframe if "subject" in df.value.columns]
    assert any("Called about a late refund (apptest)" in set(frame["subject"]) for frame in shown)


def test_loyalty_page_adjustment_limits_and_approval(app, app_db):
    member = _scalar(app_db, select(func.min(LoyaltyAccount.customer_id)).where(LoyaltyAccount.status == "active"))
    balance = _scalar(app_db, select(LoyaltyAccount.points_balance).where(LoyaltyAccount.customer_id == member))
    at = open_page(app, "agent1", "loyalty")
    assert not at.exception
    assert titles(at) == ["Loyalty"]
    members = _scalar(app_db, select(func.count()).select_from(LoyaltyAccount).where(LoyaltyAccount.status == "active"))
    assert {m.label: m.value for m in at.metric}["Members"] == f"{members:,}"

    open_tab(at, "loyalty_tab", "Member account")
    at.number_input(key="loyalty_customer_id").set_value(member).run()
    assert {m.label: m.value for m in at.metric}["Balance"] == f"{balance:,} pts"
    at.number_input(key="adjust_points").set_value(100)
    _submit(at, "adjust_submit")
    assert "reason of at least 5 characters" in _messages(at, "error")

    at.number_input(key="adjust_points").set_value(5000)
    at.text_input(key="adjust_reason").input("Goodwill for a lost parcel")
    _submit(at, "adjust_submit")
    assert "may adjust at most 1,000 points" in _messages(at, "error")

    at.number_input(key="adjust_points").set_value(100)
    _submit(at, "adjust_submit")
    assert not at.exception
    assert f"balance is now {balance + 100:,}" in _messages(at, "success")
    assert _scalar(app_db, select(LoyaltyAccount.points_balance).where(LoyaltyAccount.customer_id == member)) == balance + 100

    csm = open_page(AppTest.from_file(APP, default_timeout=60), "csm1", "loyalty")  # a second browser session
    open_tab(csm, "loyalty_tab", "Member account")
    csm.number_input(key="loyalty_customer_id").set_value(member).run()
    csm.number_input(key="adjust_points").set_value(3000)
    csm.text_input(key="adjust_reason").input("Migration of points from the old programme")
    _submit(csm, "adjust_submit")
    assert "waits for an approver" in _messages(csm, "success")
    request_id = _scalar(app_db, select(func.max(LoyaltyAdjustmentRequest.id)).where(LoyaltyAdjustmentRequest.status == "pending"))
    open_tab(csm, "loyalty_tab", "Approvals")
    csm.selectbox(key="decide_request").set_value(request_id)
    _submit(csm, "decide_approve")
    assert "cannot approve or reject your own" in _messages(csm, "error")

    admin = open_page(AppTest.from_file(APP, default_timeout=60), "admin1", "loyalty")
    open_tab(admin, "loyalty_tab", "Approvals")
    admin.selectbox(key="decide_request").set_value(request_id)
    _submit(admin, "decide_approve")
    assert not admin.exception
    assert f"Request #{request_id} approved" in _messages(admin, "success")
    assert _scalar(app_db, select(LoyaltyAccount.points_balance).where(LoyaltyAccount.customer_id == member)) == balance + 3100
    ledger_sum = _scalar(app_db, select(func.sum(LoyaltyTransaction.points)).where(LoyaltyTransaction.customer_id == member))
    assert ledger_sum == balance + 3100


def test_read_only_roles_see_figures_without_forms(app_db, monkeypatch):
    monkeypatch.setenv("CRM_DATABASE_URL", app_db)
    for username, page, title in [("exec1", "complaints", "Complaints"), ("exec1", "loyalty", "Loyalty"),
                                  ("analyst1", "communications", "Communications"), ("analyst1", "loyalty", "Loyalty")]:
        at = open_page(AppTest.from_file(APP, default_timeout=60), username, page)
        assert not at.exception, (username, page)
        assert titles(at) == [title]
        assert len(at.metric) >= 4
        keys = {b.key for b in at.button}
        for tab in {"communications": ["Log a call or note"], "loyalty": ["Member account"]}.get(page, []):
            keys |= {b.key for b in open_tab(at, f"{page}_tab", tab).button}  # forms sit in tabs built when opened
        assert not keys & {"new_submit", "work_resolve", "adjust_submit", "redeem_submit", "log_submit", "decide_approve"}


def test_complaint_status_escalation_and_satisfaction_forms(app, app_db):
    customer_id = _scalar(app_db, select(func.min(Customer.id)).where(Customer.status == "active"))
    at = open_page(app, "csm1", "complaints")
    at.number_input(key="new_customer_id").set_value(customer_id)
    at.text_area(key="new_description").input("Wrong size delivered (apptest workflow)")
    _submit(at, "new_submit")
    complaint_id = _scalar(app_db, select(func.max(Complaint.id)).where(
        Complaint.description == "Wrong size delivered (apptest workflow)"))
    at.number_input(key="work_complaint_id").set_value(complaint_id).run()
    at.selectbox(key="work_status").set_value("investigating")
    _submit(at, "work_status_submit")
    assert f"Complaint {complaint_id} is now investigating" in _messages(at, "success")
    _submit(at, "work_escalate")
    assert "escalated to level 1" in _messages(at, "success")
    row = _scalar(app_db, select(Complaint.escalation_level).where(Complaint.id == complaint_id))
    assert row == 1

    _submit(at, "work_resolve")  # no resolution text
    assert "resolution is required" in _messages(at, "error")
    at.text_area(key="work_resolution").input("Exchanged for the right size")
    at.selectbox(key="work_kind").set_value("voucher")
    at.number_input(key="work_amount").set_value(0.0)
    _submit(at, "work_resolve")
    assert "Give the amount of the voucher compensation" in _messages(at, "error")
    at.number_input(key="work_amount").set_value(300.0)  # within the success manager's 500
    _submit(at, "work_resolve")
    assert f"Complaint {complaint_id} resolved" in _messages(at, "success")

    at.slider(key="work_satisfaction").set_value(5)
    _submit(at, "work_satisfaction_submit")
    assert f"Satisfaction 5/5 saved for complaint {complaint_id}" in _messages(at, "success")
    engine = make_engine(app_db)
    with engine.connect() as connection:
        saved = connection.execute(select(Complaint.status, Complaint.compensation_kind, Complaint.compensation_amount,
                                          Complaint.satisfaction).where(Complaint.id == complaint_id)).one()
    engine.dispose()
    assert (saved.status, saved.compensation_kind, float(saved.compensation_amount), saved.satisfaction) == \
        ("resolved", "voucher", 300.0, 5)


def test_loyalty_redeem_enrol_and_settings_forms(app, app_db):
    member = _scalar(app_db, select(func.max(LoyaltyAccount.customer_id)).where(LoyaltyAccount.status == "active"))
    balance = _scalar(app_db, select(LoyaltyAccount.points_balance).where(LoyaltyAccount.customer_id == member))
    outsider = _scalar(app_db, select(func.max(Customer.id)).where(
        Customer.status == "active", Customer.id.not_in(select(LoyaltyAccount.customer_id))))
    at = open_page(app, "admin1", "loyalty")
    open_tab(at, "loyalty_tab", "Member account")
    at.number_input(key="loyalty_customer_id").set_value(member).run()
    at.number_input(key="redeem_points").set_value(balance + 1)
    _submit(at, "redeem_submit")
    assert "can never go negative" in _messages(at, "error")
    if balance:
        at.number_input(key="redeem_points").set_value(balance)
        _submit(at, "redeem_submit")
        assert "the balance is now 0" in _messages(at, "success")
        assert _scalar(app_db, select(LoyaltyAccount.points_balance).where(LoyaltyAccount.customer_id == member)) == 0

    at.number_input(key="loyalty_customer_id").set_value(outsider).run()
    _submit(at, "loyalty_enroll")
    assert f"Customer {outsider} enrolled in bronze" in _messages(at, "success")
    assert _scalar(app_db, select(LoyaltyAccount.tier).where(LoyaltyAccount.customer_id == outsider)) == "bronze"

    at.number_input(key="set_threshold_silver").set_value(6000)
    _submit(at, "set_submit")
    assert "The gold threshold (5,000) must be above the silver threshold (6,000)" in _messages(at, "error")
    at.number_input(key="set_threshold_silver").set_value(1000)
    at.number_input(key="set_expiry").set_value(720)
    _submit(at, "set_submit")
    assert "Loyalty settings saved" in _messages(at, "success")
    from db.models import AppSetting

    stored = _scalar(app_db, select(AppSetting.value).where(AppSetting.key == "loyalty_settings"))
    stored = stored if isinstance(stored, dict) else __import__("json").loads(stored)
    assert stored["expiry_days"] == 720 and stored["tier_thresholds"]["silver"] == 1000
