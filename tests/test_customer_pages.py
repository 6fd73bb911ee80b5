"""The Customers and Customer 360 pages under AppTest, on the shared 150-customer demo database."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select, update

from db.engine import make_engine
from db.models import (
    AuditLog,
    Customer,
    CustomerAddress,
    CustomerAnalytics,
    CustomerCommunication,
    CustomerLifecycleHistory,
    Order,
    SavedSearch,
)

from .apptest_support import open_page, titles


@pytest.fixture
def db(app_db):
    engine = make_engine(app_db)
    yield engine
    engine.dispose()


def busiest_customer(db) -> Customer:
    """The active customer with the most orders (a full timeline)."""
    with db.connect() as c:
        customer_id = c.scalar(
            select(Order.customer_id).join(Customer, Customer.id == Order.customer_id)
            .where(Customer.status == "active").group_by(Order.customer_id)
            .order_by(func.count().desc(), Order.customer_id).limit(1)
        )
        return c.execute(select(Customer).where(Customer.id == customer_id)).one()


def button(at, label):
    return next(b for b in at.button if b.label == label)


def result_ids(at) -> list[int]:
    return at.dataframe(key="customer_results").value["id"].tolist() if any(
        d.key == "customer_results" for d in at.dataframe) else []


def test_customers_page_lists_everyone_and_finds_a_misspelt_name(app, db):
    open_page(app, "agent1", "customers")
    assert not app.exception
    assert titles(app) == ["Customers"]
    with db.connect() as c:
        visible = c.scalar(select(func.count()).select_from(Customer).where(Customer.status.not_in(["merged", "erased"])))
    assert next(m for m in app.metric if m.label == "Matching customers").value == f"{visible:,}"
    # No search text, so no relevance: newest sign-ups first, the order shown beside the name.
    shown = app.dataframe[0].value
    assert list(shown.columns[:4]) == ["id", "profile", "name", "signed_up_at"]
    signed_up = list(shown["signed_up_at"])
    assert signed_up == sorted(signed_up, reverse=True)
    assert any(c.value.startswith("Newest sign-ups first") for c in app.caption)

    target = busiest_customer(db)
    last = target.last_name
    typo = last[:2] + last[3] + last[2] + last[4:] if len(last) >= 4 else last  # swap two letters
    app.text_input(key="cq_text").input(f"{target.first_name} {typo}")
    button(app, "Search").click().run()
    assert not app.exception
    assert target.id in result_ids(app)[:3]
    # Support agents search and open profiles but have no bulk actions.
    assert not any(s.label == "Action" for s in app.selectbox)


def test_filters_sort_and_bad_ranges(app, db):
    open_page(app, "analyst1", "customers")
    app.multiselect(key="cq_countries").select("DE")
    app.selectbox(key="cq_sort").select("revenue")
    button(app, "Search").click().run()
    assert not app.exception
    table = app.dataframe(key="customer_results").value
    assert set(table["country"]) == {"DE"}
    revenues = table["revenue"].fillna(-1).tolist()
    assert revenues == sorted(revenues, reverse=True)
    with db.connect() as c:
        germans = c.scalar(select(func.count()).select_from(Customer).where(
            Customer.country_code == "DE", Customer.status.not_in(["merged", "erased"])))
    assert next(m for m in app.metric if m.label == "Matching customers").value == f"{germans:,}"

    app.number_input(key="cq_rev_min").set_value(500.0)
    app.number_input(key="cq_rev_max").set_value(100.0)
    button(app, "Search").click().run()
    assert not app.exception
    assert any("revenue min is above revenue max" in e.value for e in app.error)


def test_saved_search_is_stored_and_loaded(app, db):
    open_page(app, "csm2", "customers")
    app.multiselect(key="cq_countries").select("FR")
    button(app, "Search").click().run()
    next(t for t in app.text_input if t.label == "Save the current search as").input("French customers")
    button(app, "Save search").click().run()
    assert not app.exception
    assert any(s.value == "Saved the search as French customers." for s in app.success)
    with db.connect() as c:
        stored = c.execute(select(SavedSearch.query).where(SavedSearch.name == "French customers")).scalar_one()
    assert stored["countries"] == ["FR"]

    app.multiselect(key="cq_countries").set_value([])
    button(app, "Search").click().run()
    assert set(app.dataframe(key="customer_results").value["country"]) != {"FR"}
    button(app, "Load").click().run()
    assert not app.exception
    assert app.multiselect(key="cq_countries").value == ["FR"]
    assert set(app.dataframe(key="customer_results").value["country"]) == {"FR"}
    assert any(s.value == "Loaded French customers." for s in app.success)


def test_bulk_action_runs_on_the_whole_result_with_confirmation(app, db):
    open_page(app, "csm1", "customers")
    target = busiest_customer(db)
    app.text_input(key="cq_text").input(target.email)
    button(app, "Search").click().run()
    assert result_ids(app)[0] == target.id
    app.radio(key="bulk_scope").set_value("result").run()
    app.selectbox(key="bulk_action").select("log_campaign_communication").run()
    next(t for t in app.text_input if t.label == "Campaign").input("AppTest follow-up")
    next(s for s in app.selectbox if s.label == "Channel").select("chat")
    button(app, "Run bulk action").click().run()
    assert any("Tick the confirmation" in w.value for w in app.warning)  # nothing happens unconfirmed

    next(c for c in app.checkbox if c.label.startswith("Yes, apply")).check()
    button(app, "Run bulk action").click().run()
    assert not app.exception
    matched = len(result_ids(app))
    assert any(s.value.startswith(f"Log a campaign communication: {matched:,} done") for s in app.success)
    results = app.dataframe[-1].value
    assert target.id in results["customer_id"].tolist() and set(results["result"]) == {"ok"}
    with db.connect() as c:
        logged = c.scalars(select(CustomerCommunication.customer_id).where(
            CustomerCommunication.campaign == "AppTest follow-up")).all()
        assert target.id in logged
        assert c.scalar(select(func.count()).select_from(AuditLog).where(
            AuditLog.action == "bulk.log_campaign_communication")) >= 1


def test_bulk_stage_change_needs_a_reason(app, db):
    open_page(app, "csm3", "customers")
    target = busiest_customer(db)
    app.text_input(key="cq_text").input(str(target.id))
    button(app, "Search").click().run()
    app.radio(key="bulk_scope").set_value("result").run()
    app.selectbox(key="bulk_action").select("change_lifecycle_stage").run()
    next(c for c in app.checkbox if c.label.startswith("Yes, apply")).check()
    button(app, "Run bulk action").click().run()
    assert not app.exception
    assert any("Give a reason" in e.value for e in app.error)
    with db.connect() as c:
        assert c.scalar(select(func.count()).select_from(CustomerLifecycleHistory).where(
            CustomerLifecycleHistory.actor_kind == "user", CustomerLifecycleHistory.customer_id == target.id)) == 0


def test_adding_to_a_segment_without_any_static_segment_is_not_offered(app, monkeypatch):
    import streamlit as st

    from crm_core import customers

    real = customers.search_filter_options

    def without_static_segments(session, viewer):
        options = real(session, viewer)
        return {**options, "segments": [{**s, "editable": False} for s in options["segments"]]}

    monkeypatch.setattr(customers, "search_filter_options", without_static_segments)
    st.cache_data.clear()
    try:
        open_page(app, "analyst2", "customers")
        app.multiselect(key="cq_countries").select("AT")
        button(app, "Search").click().run()
        app.radio(key="bulk_scope").set_value("result").run()
        app.selectbox(key="bulk_action").select("add_to_segment").run()
        assert any("no static segment yet" in i.value for i in app.info)
        assert button(app, "Run bulk action").disabled
        assert next(c for c in app.checkbox if c.label.startswith("Yes, apply")).disabled
        assert not app.error and not app.exception
    finally:
        st.cache_data.clear()


def test_analyst_exports_a_search_result(app):
    open_page(app, "analyst2", "customers")
    app.multiselect(key="cq_countries").select("AT")
    button(app, "Search").click().run()
    app.radio(key="bulk_scope").set_value("result").run()
    app.selectbox(key="bulk_action").select("export").run()
    next(c for c in app.checkbox if c.label.startswith("Yes, apply")).check()
    button(app, "Run bulk action").click().run()
    assert not app.exception
    assert any(s.value.startswith("Export as CSV:") for s in app.success)
    downloads = app.get("download_button")
    assert downloads and downloads[0].proto.label == "Download the export (CSV)"


def open_profile(app, username: str, customer_id: int):
    open_page(app, username, "customer_360")
    app.number_input(key="c360_id").set_value(customer_id).run()
    assert not app.exception
    return app


def test_profile_shows_facts_scores_and_every_tab(app, db):
    target = busiest_customer(db)
    open_profile(app, "agent2", target.id)
    assert titles(app) == ["Customer 360"]
    assert app.subheader[0].value == f"{target.first_name} {target.last_name} · #{target.id}"
    with db.connect() as c:
        orders = c.scalar(select(func.count()).select_from(Order).where(Order.customer_id == target.id))
        counted = c.scalar(select(CustomerAnalytics.order_count).where(CustomerAnalytics.customer_id == target.id))
    metrics = {m.label: m.value for m in app.metric}
    assert metrics["Orders"] == f"{counted:,}"  # the snapshot counts orders that bring revenue
    assert {"Revenue", "CLV (12 months)", "Churn probability", "Lifecycle stage", "Health"} <= set(metrics)
    assert [t.label for t in app.tabs] == ["Timeline", "Orders", "Addresses", "Payment methods",
                                           "Preferences & consents", "Segments", "Scores"]
    timeline = app.tabs[0].dataframe[0].value
    assert "order" in set(timeline["kind"]) and timeline["at"].is_monotonic_decreasing
    assert any(c.value == f"{orders:,} orders" for c in app.tabs[1].caption)


def test_profile_without_a_customer_and_with_an_unknown_id(app):
    open_page(app, "agent3", "customer_360")
    assert not app.exception
    assert any("Enter a customer id" in i.value for i in app.info)
    app.number_input(key="c360_id").set_value(999_999).run()
    assert not app.exception
    assert any("No customer with id 999999" in e.value for e in app.error)


def test_edit_form_saves_and_then_reports_a_concurrent_edit(app, db):
    target = busiest_customer(db)
    open_profile(app, "csm1", target.id)
    next(t for t in app.text_input if t.label == "Company").input("Acme Testing GmbH")
    button(app, "Save changes").click().run()
    assert not app.exception
    assert any(s.value == "Saved company." for s in app.success)
    with db.connect() as c:
        company, version = c.execute(select(Customer.company, Customer.version).where(Customer.id == target.id)).one()
    assert company == "Acme Testing GmbH" and version == target.version + 1

    # Someone else saves meanwhile; this form still holds the version it was opened with.
    with db.begin() as c:
        c.execute(update(Customer).where(Customer.id == target.id).values(version=Customer.version + 1))
    next(t for t in app.text_input if t.label == "Company").input("Lost Update Ltd")
    button(app, "Save changes").click().run()
    assert not app.exception
    assert any("changed by someone else" in e.value for e in app.error)
    with db.connect() as c:
        assert c.scalar(select(Customer.company).where(Customer.id == target.id)) == "Acme Testing GmbH"
    button(app, "Reload the latest version").click().run()
    assert not app.exception
    assert not any("Someone else changed" in w.value for w in app.warning)


def test_edit_form_shows_validation_errors(app, db):
    target = busiest_customer(db)
    open_profile(app, "admin2", target.id)
    next(t for t in app.text_input if t.label == "Email").input("not an email")
    button(app, "Save changes").click().run()
    assert not app.exception
    assert any("is not valid" in e.value for e in app.error)


def test_address_form_validates_and_geocodes(app, db):
    target = busiest_customer(db)
    open_profile(app, "agent1", target.id)
    form = {t.label: t for t in app.tabs[2].text_input}
    form["Country code"].input("FR")
    form["Street and number"].input("1 Rue de Rivoli")
    form["Postal code"].input("750")
    form["City"].input("Paris")
    button(app, "Add address").click().run()
    assert any("format used in FR" in e.value for e in app.error)

    form = {t.label: t for t in app.tabs[2].text_input}
    form["Country code"].input("FR")
    form["Street and number"].input("1 Rue de Rivoli")
    form["Postal code"].input("75001")
    form["City"].input("Paris")
    button(app, "Add address").click().run()
    assert not app.exception
    assert any(s.value == "Address added and validated, placed at 48.86, 2.35." for s in app.success)
    with db.connect() as c:
        stored = c.execute(select(CustomerAddress.latitude, CustomerAddress.validation_status)
                           .where(CustomerAddress.customer_id == target.id, CustomerAddress.line1 == "1 Rue de Rivoli")
                           ).one()
    assert stored == (48.86, "valid")


@pytest.mark.parametrize("page", ["customers", "customer_360"])
def test_pages_refuse_a_role_without_customer_access(app_db, monkeypatch, page):
    from streamlit.testing.v1 import AppTest

    from crm_core import platform
    from db.models import User
    from ui.context import USER_KEY

    from .apptest_support import page_path

    monkeypatch.setenv("CRM_DATABASE_URL", app_db)
    at = AppTest.from_file(page_path(page), default_timeout=60)
    engine = make_engine(app_db)
    with engine.connect() as c:
        executive = c.execute(select(User).where(User.role == "executive")).first()
    engine.dispose()
    at.session_state[USER_KEY] = platform.SignedInUser(executive.id, executive.username, executive.full_name, "executive")
    at.run()
    assert not at.exception
    assert [e.value for e in at.error] == ["You do not have access to this page."]
    assert titles(at) == []


def test_profile_lookup_by_name_opens_the_customer(app, db):
    target = busiest_customer(db)
    open_page(app, "analyst3", "customer_360")
    app.text_input(key="c360_lookup").input(f"{target.first_name} {target.last_name}").run()
    assert not app.exception
    matches = app.selectbox(key="c360_match")
    assert matches.value == target.id
    assert app.subheader[0].value.endswith(f"#{target.id}")
    assert app.query_params["id"] == [str(target.id)] or app.query_params["id"] == str(target.id)
    assert not any(e.label == "Edit customer" for e in app.expander)  # analysts read, they do not edit


def _page_voucher(db, customer_id: int) -> str:
    import datetime as dt
    from decimal import Decimal

    from crm_core import platform, vouchers
    from db.models import Voucher

    with platform.unit_of_work(db) as s:
        s.execute(Voucher.__table__.delete().where(Voucher.source_id == "page-test"))
        return vouchers.issue_vouchers(s, platform.SYSTEM, [customer_id], "amount", Decimal("7.50"), source="manual",
                                       source_id="page-test", expires_at=dt.datetime.now() + dt.timedelta(days=30),
                                       authorised_by="vouchers.manage")[customer_id]


def test_profile_lists_the_customers_vouchers_with_whole_codes_for_those_who_record_orders(app, db):
    target = busiest_customer(db)
    code = _page_voucher(db, target.id)
    open_profile(app, "agent2", target.id)
    shown = app.tabs[1].dataframe[-1].value
    assert code in set(shown["code"]) and "Vouchers" in [m.value.strip("*") for m in app.tabs[1].markdown]
    row = shown[shown["code"] == code].iloc[0]
    assert (row["kind"], row["value"], row["status"], row["source"]) == ("Amount off (€)", 7.5, "issued", "manual")


def test_profile_masks_voucher_codes_for_roles_that_see_customers_but_do_not_record_orders(app, db):
    target = busiest_customer(db)
    code = _page_voucher(db, target.id)
    open_profile(app, "risk1", target.id)
    masked = app.tabs[1].dataframe[-1].value["code"].tolist()
    assert code not in masked and "•" * 8 + code[-4:] in masked


def _active_customers(db, n: int) -> list[int]:
    """The newest active customers: away from busiest_customer, whose vouchers other tests read."""
    with db.connect() as c:
        return list(c.scalars(select(Customer.id).where(Customer.status == "active").order_by(Customer.id.desc())
                              .limit(n)))


def _vouchers_of(db, customer_id: int) -> list:
    from sqlalchemy.orm import Session

    from db.models import Voucher

    with Session(db, expire_on_commit=False) as s:
        return list(s.scalars(select(Voucher).where(Voucher.customer_id == customer_id).order_by(Voucher.id)))


def _voucher_messages(app, kind: str) -> str:
    return " ".join(e.value for e in getattr(app.tabs[1], kind))


def _issue_submit(app):
    """The issue form's submit button, whose key carries the form's one-time token."""
    return next(b for b in app.button if (b.key or "").startswith("c360_voucher_issue_submit_"))


def _void_submit(app):
    """The void form's submit button, whose key carries the form's one-time token."""
    return next(b for b in app.button if (b.key or "").startswith("c360_void_submit_"))


def test_voucher_issue_form_refuses_bad_input_keeps_it_and_shows_the_new_code(app, db):
    customer_id = _active_customers(db, 1)[0]
    before = len(_vouchers_of(db, customer_id))
    open_profile(app, "csm1", customer_id)
    _issue_submit(app).click().run()  # no reason
    assert not app.exception
    assert "Give a reason for the voucher" in _voucher_messages(app, "error")

    app.selectbox(key="c360_voucher_kind").set_value("percent")
    app.number_input(key="c360_voucher_value").set_value(95.0)
    app.number_input(key="c360_voucher_days").set_value(14)
    app.number_input(key="c360_voucher_min_order").set_value(30.0)
    app.text_input(key="c360_voucher_reason").input("Parcel arrived late (apptest)")
    _issue_submit(app).click().run()
    assert not app.exception
    assert "A percent voucher is above 0 and at most 90% off" in _voucher_messages(app, "error")
    assert len(_vouchers_of(db, customer_id)) == before
    # What was typed is still there to correct.
    assert app.text_input(key="c360_voucher_reason").value == "Parcel arrived late (apptest)"
    assert (app.selectbox(key="c360_voucher_kind").value, app.number_input(key="c360_voucher_value").value,
            app.number_input(key="c360_voucher_min_order").value) == ("percent", 95.0, 30.0)

    app.number_input(key="c360_voucher_value").set_value(15.0)
    _issue_submit(app).click().run()
    assert not app.exception and not app.error
    made = _vouchers_of(db, customer_id)
    assert len(made) == before + 1
    voucher = made[-1]
    assert (voucher.kind, float(voucher.value), float(voucher.min_order), voucher.source, voucher.status) == (
        "percent", 15.0, 30.0, "manual", "issued")
    assert 13 <= (voucher.expires_at - voucher.issued_at).days <= 14
    assert f"Voucher {voucher.code} issued: 15.00% off on orders from €30.00" in _voucher_messages(app, "success")
    assert app.tabs[1].code[0].value == voucher.code
    assert voucher.code in set(app.tabs[1].dataframe[-1].value["code"])
    assert app.text_input(key="c360_voucher_reason").value == ""  # a fresh form for the next one
    with db.connect() as c:
        actor, after = c.execute(select(AuditLog.actor_username, AuditLog.after)
                                 .where(AuditLog.action == "voucher.issue").order_by(AuditLog.id.desc()).limit(1)).one()
    assert actor == "csm1" and after["customer_id"] == customer_id and after["reason"] == "Parcel arrived late (apptest)"


def test_voucher_void_form_voids_with_a_reason_and_refuses_a_voucher_changed_since_shown(app, db):
    import datetime as dt
    from decimal import Decimal

    from crm_core import platform, vouchers
    from db.models import Voucher

    customer_id = _active_customers(db, 2)[1]
    with platform.unit_of_work(db) as s:
        codes = [vouchers.issue_vouchers(s, platform.SYSTEM, [customer_id], "amount", Decimal(5), source="manual",
                                         source_id=None, expires_at=dt.datetime.now() + dt.timedelta(days=30),
                                         authorised_by="vouchers.manage")[customer_id] for _ in range(2)]
        first, second = (s.scalars(select(Voucher).where(Voucher.code == code)).one().id for code in codes)
    open_profile(app, "agent1", customer_id)
    picker = f"c360_void_id_{customer_id}"
    assert all(any(o.startswith(code) for o in app.selectbox(key=picker).options) for code in codes)
    app.selectbox(key=picker).set_value(first)
    _void_submit(app).click().run()  # no reason
    assert "Give a reason for voiding the voucher" in _voucher_messages(app, "error")
    assert {v.id: v.status for v in _vouchers_of(db, customer_id)}[first] == "issued"

    app.text_input(key="c360_void_reason").input("Issued by mistake (apptest)")
    _void_submit(app).click().run()
    assert not app.exception and not app.error
    assert f"Voucher {codes[0]} voided." in _voucher_messages(app, "success")
    assert app.text_input(key="c360_void_reason").value == ""  # a fresh form for the next one
    state = {v.id: v for v in _vouchers_of(db, customer_id)}
    assert (state[first].status, state[first].void_reason) == ("void", "Issued by mistake (apptest)")
    with db.connect() as c:
        assert c.scalar(select(AuditLog.actor_username).where(
            AuditLog.action == "voucher.void", AuditLog.entity_id == str(first))) == "agent1"

    # The other voucher is used at the till while the page still shows it unused.
    with db.begin() as c:
        c.execute(update(Voucher).where(Voucher.id == second).values(status="redeemed", version=Voucher.version + 1))
    app.selectbox(key=picker).set_value(second)
    app.text_input(key="c360_void_reason").input("Goodwill withdrawn (apptest)")
    _void_submit(app).click().run()
    assert not app.exception
    assert "was changed by someone else" in _voucher_messages(app, "error")
    assert any("changed since you opened them" in w.value for w in app.tabs[1].warning)
    state = {v.id: v for v in _vouchers_of(db, customer_id)}
    assert (state[second].status, state[second].clawed_back_at) == ("redeemed", None)
    button(app, "Reload the vouchers").click().run()
    assert not app.exception
    assert not any((b.key or "").startswith("c360_void_submit") for b in app.button)  # nothing unused left


@pytest.mark.parametrize("username", ["analyst1", "risk1"])
def test_roles_that_do_not_manage_vouchers_see_no_voucher_forms(app, db, username):
    open_profile(app, username, _active_customers(db, 1)[0])
    assert not app.exception
    keys = {b.key or "" for b in app.button}
    assert not any(k.startswith(("c360_voucher_issue_submit", "c360_void_submit")) for k in keys)
    assert not any(m.value in ("**Issue a voucher**", "**Void a voucher**") for m in app.markdown)


def test_voucher_issue_form_clears_after_an_issue_and_a_second_click_issues_nothing(app, db):
    customer_id = _active_customers(db, 3)[2]
    before = len(_vouchers_of(db, customer_id))
    open_profile(app, "csm1", customer_id)
    app.number_input(key="c360_voucher_value").set_value(12.0)
    app.text_input(key="c360_voucher_reason").input("Goodwill (apptest, once)")
    stale_submit = _issue_submit(app)
    stale_submit.click().run()
    assert not app.exception and not app.error
    made = _vouchers_of(db, customer_id)
    assert len(made) == before + 1
    code = made[-1].code
    assert app.tabs[1].code[0].value == code  # shown once to the issuer
    # The form is fresh: the reason and value are back to their defaults.
    assert app.text_input(key="c360_voucher_reason").value == ""
    assert app.number_input(key="c360_voucher_value").value == 10.0
    # ... and the browser is told so (dropping the keys alone left the typed values in the browser's form).
    assert app.text_input(key="c360_voucher_reason").proto.set_value
    assert app.number_input(key="c360_voucher_value").proto.set_value

    _issue_submit(app).click().run()  # a second click on the cleared form
    assert not app.exception
    assert len(_vouchers_of(db, customer_id)) == before + 1
    assert "Give a reason for the voucher" in _voucher_messages(app, "error")

    # A resubmission of the request already issued (a browser still holding the filled form) issues nothing.
    stale_submit.click().run()
    assert not app.exception
    assert len(_vouchers_of(db, customer_id)) == before + 1


def test_profile_shows_the_order_number_a_voucher_was_used_on_as_the_orders_table_does(app, db):
    import datetime as dt
    from decimal import Decimal

    from crm_core import orders, platform, vouchers

    customer_id = _active_customers(db, 4)[3]
    with platform.unit_of_work(db) as s:
        code = vouchers.issue_vouchers(s, platform.SYSTEM, [customer_id], "amount", Decimal(5), source="manual",
                                       source_id="vfix-test", expires_at=dt.datetime.now() + dt.timedelta(days=30),
                                       authorised_by="vouchers.manage")[customer_id]
        placed = orders.record_order(s, platform.SYSTEM, customer_id,
                                     {"total": "40", "voucher_code": code, "order_number": "SO-VFIX-3"})
    open_profile(app, "agent2", customer_id)
    assert "SO-VFIX-3" in set(app.tabs[1].dataframe[0].value["order_number"])  # the orders table
    shown = app.tabs[1].dataframe[-1].value
    row = shown[shown["code"] == code].iloc[0]
    assert row["redeemed_order_number"] == "SO-VFIX-3" and "redeemed_order_id" not in shown.columns
    assert str(placed["id"]) not in shown.astype(str).to_numpy().ravel().tolist()
