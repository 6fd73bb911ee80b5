"""The Duplicates & merge and Privacy requests pages under AppTest, on the shared demo database.

Each test adds its own customers, so it never depends on (or disturbs) the simulated ones.
"""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from sqlalchemy import func, insert, select

from db.engine import make_engine
from db.models import ConsentRecord, Customer, CustomerPreferenceCenter, DataSubjectRequest, Order

from .apptest_support import open_page, titles

_n = itertools.count(1)


@pytest.fixture
def db(app_db):
    engine = make_engine(app_db)
    yield engine
    engine.dispose()


def add_customer(db, first: str, last: str, email: str, phone: str | None = None, orders: int = 0) -> int:
    with db.begin() as c:
        customer_id = c.execute(insert(Customer).values(
            first_name=first, last_name=last, email=email, phone=phone, country_code="NL", status="active",
            acquisition_channel="direct", signed_up_at=dt.datetime(2025, 1, 1), version=1,
            updated_at=dt.datetime(2025, 1, 1)).returning(Customer.id)).scalar_one()
        for i in range(orders):
            c.execute(insert(Order).values(order_number=f"PG-{customer_id}-{i}-{next(_n)}", customer_id=customer_id,
                                           ordered_at=dt.datetime(2025, 2, 1), status="delivered", channel="web",
                                           currency="EUR", subtotal=20, discount=0, shipping=0, total=20, item_count=1))
    return customer_id


def button(at, label):
    return next(b for b in at.button if b.label == label)


def metric(at, label):
    return next(m.value for m in at.metric if m.label == label)


def test_scan_review_merge_and_undo_from_the_page(app, db):
    tag = next(_n)
    a = add_customer(db, "Quentin", f"Zarathustra{tag}", f"quentin.z{tag}@example.com", "+31 20 555 0101", orders=2)
    b = add_customer(db, "Quentin", f"Zarathustra{tag}", f"Quentin.Z{tag}@example.com", orders=1)
    open_page(app, "admin1", "duplicates")
    assert not app.exception and titles(app) == ["Duplicates & merge"]
    button(app, "Run the duplicate scan").click().run()
    assert not app.exception
    assert any("likely duplicates" in s.value for s in app.success)
    assert int(metric(app, "Open pairs").replace(",", "")) >= 1
    queue = app.dataframe[0].value
    pair = queue[(queue["customer_a"] == a) & (queue["customer_b"] == b)]
    assert len(pair) == 1 and "same email" in pair.iloc[0]["reasons"]

    app.selectbox(key="queue_pair").select(int(pair.iloc[0]["pair_id"]))
    button(app, "Review in the Merge tab").click().run()
    assert not app.exception
    assert (app.number_input(key="merge_survivor").value, app.number_input(key="merge_other").value) == (a, b)
    assert any("related rows move" in c.value for c in app.caption)
    button(app, "Merge").click().run()
    assert any("Tick the confirmation" in e.value for e in app.error)
    with db.connect() as c:
        assert c.scalar(select(Customer.status).where(Customer.id == b)) == "active"

    app.checkbox(key="merge_confirm").check()
    button(app, "Merge").click().run()
    assert not app.exception
    assert any(f"Merged customer {b} into {a}" in s.value for s in app.success)
    # The merged pair leaves the form, so no preview of it says it is already merged.
    assert not app.error
    assert (app.number_input(key="merge_survivor").value, app.number_input(key="merge_other").value) == (None, None)
    with db.connect() as c:
        assert c.scalar(select(Customer.status).where(Customer.id == b)) == "merged"
        assert c.scalar(select(func.count()).select_from(Order).where(Order.customer_id == a)) == 3

    app.selectbox(key="undo_merge_id").select(app.selectbox(key="undo_merge_id").options[0])
    button(app, "Undo merge").click().run()
    assert not app.exception
    assert any("Undid merge" in s.value for s in app.success)
    with db.connect() as c:
        assert c.scalar(select(Customer.status).where(Customer.id == b)) == "active"
        assert c.scalar(select(func.count()).select_from(Order).where(Order.customer_id == b)) == 1


def test_merge_tab_rejects_bad_ids(app):
    open_page(app, "csm1", "duplicates")
    app.number_input(key="merge_survivor").set_value(5)
    app.number_input(key="merge_other").set_value(5).run()
    assert any("two different customers" in i.value for i in app.info)
    app.number_input(key="merge_other").set_value(999_999).run()
    assert not app.exception
    assert any("no customer 999999" in e.value for e in app.error)


def test_split_form_moves_chosen_orders(app, db):
    tag = next(_n)
    source = add_customer(db, "Shared", f"Account{tag}", f"shared{tag}@example.com", orders=2)
    with db.connect() as c:
        first_order = c.scalar(select(func.min(Order.id)).where(Order.customer_id == source))
    open_page(app, "admin1", "duplicates")
    app.number_input(key="split_customer").set_value(source).run()
    button(app, "Split into a new customer").click().run()
    assert any("at least one related record" in e.value for e in app.error)
    app.multiselect(key="split_orders").select(first_order)
    app.text_input(key="split_first").input("Partner")
    button(app, "Split into a new customer").click().run()
    assert not app.exception
    with db.connect() as c:
        new_id = c.scalar(select(Order.customer_id).where(Order.id == first_order))
        assert new_id != source
        assert c.scalar(select(Customer.first_name).where(Customer.id == new_id)) == "Partner"


def test_new_request_form_rejects_bad_input_and_saves_good(app, db):
    tag = next(_n)
    customer = add_customer(db, "Rita", f"Request{tag}", f"rita{tag}@example.com")
    open_page(app, "admin1", "privacy")
    assert not app.exception and titles(app) == ["Privacy requests"]
    assert metric(app, "Overdue") is not None
    app.number_input(key="new_customer").set_value(999_999)
    button(app, "Log the request").click().run()
    assert any("no customer 999999" in e.value for e in app.error)
    app.number_input(key="new_customer").set_value(customer)
    app.selectbox(key="new_type").select("access")
    button(app, "Log the request").click().run()
    assert not app.exception
    with db.connect() as c:
        request = c.execute(select(DataSubjectRequest).where(DataSubjectRequest.customer_id == customer)).one()
    assert (request.due_at - request.received_at).days == 30
    assert any(f"Request {request.id} logged" in s.value for s in app.success)
    # The request log names its columns and values in words and leaves a closed request's days left blank.
    log = next(d for d in app.dataframe if '"Days left"' in d.proto.columns)
    assert '"request_id"' in log.proto.columns and '"Request"' in log.proto.columns
    assert log.proto.placeholder == ""
    assert set(log.value["status"]) <= {"Received", "In progress", "Completed", "Rejected"}

    app.number_input(key="process_id").set_value(request.id).run()
    button(app, "Prepare the export (JSON + CSV, zipped)").click().run()
    assert not app.exception
    assert any(d.label == "Download the export" for d in app.get("download_button"))
    with db.connect() as c:
        assert c.scalar(select(DataSubjectRequest.status).where(DataSubjectRequest.id == request.id)) == "completed"


def test_erasure_needs_typed_confirmation(app, db):
    tag = next(_n)
    customer = add_customer(db, "Eraseme", f"Person{tag}", f"eraseme{tag}@example.com", "+31 6 9999 0000", orders=1)
    with db.begin() as c:
        request_id = c.execute(insert(DataSubjectRequest).values(
            customer_id=customer, request_type="erasure", status="received", received_at=dt.datetime.now(),
            due_at=dt.datetime.now() + dt.timedelta(days=30))).inserted_primary_key[0]
    open_page(app, "admin1", "privacy")
    app.number_input(key="process_id").set_value(request_id).run()
    app.text_input(key="erase_confirm").input("erase")
    button(app, "Erase the customer").click().run()
    assert any("Type ERASE" in e.value for e in app.error)
    with db.connect() as c:
        assert c.scalar(select(Customer.status).where(Customer.id == customer)) == "active"
    app.text_input(key="erase_confirm").input("ERASE")
    button(app, "Erase the customer").click().run()
    assert not app.exception
    assert any("Erased 1 customer record" in s.value for s in app.success)
    with db.connect() as c:
        row = c.execute(select(Customer.status, Customer.email, Customer.phone).where(Customer.id == customer)).one()
        assert tuple(row) == ("erased", None, None)
        assert c.scalar(select(func.count()).select_from(Order).where(Order.customer_id == customer)) == 1


def test_consent_and_preference_forms(app, db):
    tag = next(_n)
    customer = add_customer(db, "Connie", f"Consent{tag}", f"connie{tag}@example.com")
    open_page(app, "admin1", "privacy")
    app.number_input(key="consent_customer").set_value(customer).run()
    assert any("No consent recorded" in c.value for c in app.caption)
    button(app, "Record consent").click().run()
    assert any("Policy version is required" in e.value for e in app.error)
    app.selectbox(key="consent_purpose").select("marketing_sms")
    app.text_input(key="consent_policy").input("2026-01")
    button(app, "Record consent").click().run()
    assert not app.exception
    with db.connect() as c:
        entry = c.execute(select(ConsentRecord).where(ConsentRecord.customer_id == customer)).one()
    assert (entry.purpose, entry.granted, entry.policy_version) == ("marketing_sms", True, "2026-01")

    app.number_input(key="pref_customer").set_value(customer).run()
    app.multiselect(key="pref_channels").set_value([])
    button(app, "Save preferences").click().run()
    assert any("at least one channel" in e.value for e in app.error)
    app.multiselect(key="pref_channels").set_value(["email", "push"])
    app.selectbox(key="pref_frequency").select("monthly")
    app.text_input(key="pref_language").input("nl")
    app.text_input(key="pref_categories").input("Garden, Books")
    app.toggle(key="pref_analytics").set_value(True)
    button(app, "Save preferences").click().run()
    assert not app.exception
    with db.connect() as c:
        saved = c.execute(select(CustomerPreferenceCenter).where(CustomerPreferenceCenter.customer_id == customer)).one()
        analytics = c.scalar(select(ConsentRecord.granted).where(ConsentRecord.customer_id == customer,
                                                                 ConsentRecord.purpose == "analytics"))
    assert (saved.email_opt_in, saved.push_opt_in, saved.sms_opt_in) == (True, True, False)
    assert (saved.contact_frequency, saved.preferred_language, saved.interests) == ("monthly", "nl", ["Books", "Garden"])
    assert analytics is True
