"""The Import / Export page under AppTest: upload, mapping, preview, import, saved mappings, export."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest
from sqlalchemy import func, select

from db.engine import make_engine
from db.models import (
    AuditLog,
    Customer,
    CustomerCommunication,
    CustomerSegment,
    CustomerSegmentMembership,
    ImportMapping,
    ImportRun,
    Order,
    SupportTicket,
)

from .apptest_support import APP, open_page, titles


@pytest.fixture(scope="module")
def page_db(tmp_path_factory):
    """A seeded demo database with one static segment; no batch refresh (this page needs none)."""
    import demo
    from crm_core import platform, segmentation
    from db import migrate

    url = f"sqlite:///{tmp_path_factory.mktemp('import_page') / 'app.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    demo.seed_database(engine, 150, seed=3, end=dt.datetime.now().replace(microsecond=0), demo_users=True)
    with platform.unit_of_work(engine) as s:
        segment = segmentation.create_segment(s, platform.SYSTEM, "Hand picked", "custom", "static")
        segmentation.add_members(s, platform.SYSTEM, segment.id, list(s.scalars(select(Customer.id).limit(40))))
    engine.dispose()
    return url


@pytest.fixture
def app(page_db, monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CRM_DATABASE_URL", page_db)
    return AppTest.from_file(APP, default_timeout=60)


@pytest.fixture
def app_db(page_db):
    return page_db

UPLOAD = (
    "Kunden-Nr,first_name,last_name,email,phone,country,city,signup_date\n"
    "P-000501,Zoë,Página,zoe.pagina@example.com,,DE,Berlin,2024-01-05\n"
    "P-000502,Bad,Date,bad.date@example.com,,DE,Bonn,2023-02-30\n"
    "P-000503,Ñandú,Página,nandu.pagina@example.com,,Atlantis,Madrid,2024-02-01\n"
    "P-000504,=HYPERLINK(1),Página,hyper.pagina@example.com,,FR,Paris,2024-02-01\n"
).encode()


def widget(items, label):
    return next(w for w in items if w.label == label)


def upload(at, content: bytes = UPLOAD, name: str = "kunden.csv"):
    at.file_uploader[0].set_value((name, content, "text/csv"))
    return at.run()


def refresh_notes(at) -> list[str]:
    return [i.value for i in at.info if "only after the next refresh" in i.value]


def test_admin_maps_previews_and_imports_a_file(app, app_db):
    at = open_page(app, "admin1", "import_export")
    assert not at.exception
    assert titles(at) == ["Import / Export"]
    assert any("need no mapping" in c.value for c in at.caption)
    assert [i.value for i in at.info][0].startswith("Upload a file")
    upload(at)
    assert not at.exception
    # Standard names are mapped already; the unusual id column is not.
    assert widget(at.selectbox, "Column “first_name”").value == "first_name"
    assert widget(at.selectbox, "Column “Kunden-Nr”").value == "(ignore)"
    widget(at.selectbox, "Column “Kunden-Nr”").select("external_id").run()
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Valid rows in the preview"] == "2" and metrics["Invalid rows in the preview"] == "2"
    preview = at.dataframe[0].value
    assert preview["status"].tolist() == ["ok", "invalid", "invalid", "ok"]
    assert "not a real date" in preview["reason"].tolist()[1]

    widget(at.button, "Import").click().run()
    assert not at.exception
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Rows read"], metrics["Imported"], metrics["Invalid"]) == ("4", "2", "2")
    # The dashboards read the last batch refresh: the result says so, with a link to run it.
    assert len(refresh_notes(at)) == 1
    assert [link.proto.label for link in at.get("page_link")] == ["Run the refresh now on the Refresh runs page"]
    assert any(b.label == "Download the error file" for b in at.get("download_button"))
    errors = at.dataframe[1].value
    assert errors["row"].tolist() == [3, 4]
    with make_engine(app_db).connect() as connection:
        names = dict(connection.execute(select(Customer.external_id, Customer.first_name)
                                        .where(Customer.last_name == "Página")).all())
        assert names == {"P-000501": "Zoë", "P-000504": "=HYPERLINK(1)"}
        run = connection.execute(select(ImportRun).where(ImportRun.file_name == "kunden.csv")).one()
        assert (run.actor_username, run.created, run.invalid) == ("admin1", 2, 2)

    # Importing the same file again skips every valid row as a duplicate.
    widget(at.button, "Import").click().run()
    metrics = {m.label: m.value for m in at.metric}
    assert (metrics["Imported"], metrics["Skipped as duplicates"]) == ("0", "2")
    assert not refresh_notes(at)  # nothing new to wait for


def test_saved_mapping_is_saved_and_loaded(app, app_db):
    at = open_page(app, "admin2", "import_export")
    upload(at, name="other.csv")
    widget(at.selectbox, "Column “Kunden-Nr”").select("external_id").run()
    widget(at.text_input, "Save this mapping as").input("Kunden export")
    widget(at.checkbox, "Shared").check()
    widget(at.button, "Save mapping").click().run()
    assert not at.exception
    assert any("Saved the mapping 'Kunden export'" in s.value for s in at.success)
    with make_engine(app_db).connect() as connection:
        saved = connection.execute(select(ImportMapping).where(ImportMapping.name == "Kunden export")).one()
        assert saved.mapping["Kunden-Nr"] == "external_id" and saved.is_shared

    widget(at.selectbox, "Column “Kunden-Nr”").select("(ignore)").run()
    widget(at.selectbox, "Saved mapping").select("Kunden export").run()
    widget(at.button, "Load mapping").click().run()
    assert widget(at.selectbox, "Column “Kunden-Nr”").value == "external_id"


def test_a_malformed_upload_shows_an_error_not_a_traceback(app):
    at = open_page(app, "admin3", "import_export")
    upload(at, b'[{"first_name": "A"', "broken.json")
    assert not at.exception
    assert any("not valid JSON" in e.value for e in at.error)


def test_analyst_exports_but_cannot_import(app, app_db):
    at = open_page(app, "analyst2", "import_export")
    assert not at.exception
    assert titles(at) == ["Import / Export"]
    assert len(at.file_uploader) == 0
    with make_engine(app_db).connect() as connection:
        live = connection.scalar(select(func.count()).select_from(Customer)
                                 .where(Customer.status.not_in(["merged", "erased"])))
    assert {m.label: m.value for m in at.metric}["Customers in scope"] == f"{live:,}"
    widget(at.selectbox, "Format").select("json").run()
    widget(at.multiselect, "Columns").set_value(["external_id", "first_name"]).run()
    widget(at.button, "Prepare export").click().run()
    assert not at.exception
    download = next(b for b in at.get("download_button"))
    assert download.proto.label == f"Download {live:,} customers (json)"
    with make_engine(app_db).connect() as connection:
        entry = connection.execute(select(AuditLog).where(AuditLog.action == "customers.export",
                                                          AuditLog.actor_username == "analyst2")).one()
        assert entry.after["rows"] == live and entry.after["columns"] == ["external_id", "first_name"]


def test_export_a_segment(app, app_db):
    at = open_page(app, "analyst3", "import_export")
    widget(at.radio, "Customers").set_value("A segment").run()
    assert not at.exception
    with make_engine(app_db).connect() as connection:
        sizes = dict(connection.execute(
            select(CustomerSegment.name, func.count(CustomerSegmentMembership.id))
            .join(CustomerSegmentMembership, CustomerSegmentMembership.segment_id == CustomerSegment.id)
            .join(Customer, Customer.id == CustomerSegmentMembership.customer_id)
            .where(CustomerSegment.is_active, CustomerSegmentMembership.is_active,
                   Customer.status.not_in(["merged", "erased"]))
            .group_by(CustomerSegment.name)
        ).all())
    name = max(sizes, key=sizes.get)
    widget(at.selectbox, "Segment").select(name).run()
    assert {m.label: m.value for m in at.metric}["Customers in scope"] == f"{sizes[name]:,}"
    widget(at.selectbox, "Format").select("csv").run()
    widget(at.button, "Prepare export").click().run()
    assert not at.exception
    download = next(b for b in at.get("download_button"))
    assert download.proto.label == f"Download {sizes[name]:,} customers (csv)"


SHOPIFY_EXPORT = Path(__file__).parent / "data" / "shopify_orders_export.csv"


def figures(at) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def error_table(at):
    return next(d.value for d in at.dataframe if "identifier" in d.value.columns)


def test_admin_imports_a_shopify_export_twice(app, app_db):
    at = open_page(app, "admin1", "import_export")
    widget(at.radio, "What to import").set_value("shopify").run()
    assert any("Orders > Export > CSV" in c.value for c in at.caption)
    upload(at, SHOPIFY_EXPORT.read_bytes(), "orders_export.csv")
    assert not at.exception
    preview = at.dataframe[0].value
    assert preview["Name"].tolist()[:3] == ["#1010", "#1009", "#1008"]
    # The preview already knows the shop's books are in EUR: #1008 (USD) is flagged before importing.
    flagged = preview[preview["status"] != "ok"]
    assert flagged["Name"].tolist() == ["#1008"] and "in USD, not the shop's EUR" in flagged["reason"].iloc[0]
    widget(at.button, "Import").click().run()
    assert not at.exception
    shown = figures(at)
    assert (shown["Orders imported"], shown["Refunded or cancelled"], shown["In another currency"],
            shown["Invalid"]) == ("9", "2", "1", "1")
    assert len(refresh_notes(at)) == 1 and len(at.get("page_link")) == 1
    captions = [c.value for c in at.caption]
    assert "Shop currency EUR (the orders already in the database)." in captions
    assert error_table(at)["identifier"].tolist() == ["#1008"]
    with make_engine(app_db).connect() as connection:
        statuses = dict(connection.execute(select(Order.order_number, Order.status)
                                           .where(Order.order_number.in_(["#1006", "#1009", "#1007"]))).all())
        assert statuses == {"#1006": "refunded", "#1009": "cancelled", "#1007": "paid"}
        run = connection.execute(select(ImportRun).where(ImportRun.file_name == "orders_export.csv")).one()
        assert (run.actor_username, run.entity, run.created) == ("admin1", "orders", 9)
    widget(at.button, "Import").click().run()
    assert (figures(at)["Orders imported"], figures(at)["Skipped (already imported)"]) == ("0", "9")
    assert not refresh_notes(at)
    # Uploaded again, the preview says which orders are already in the database.
    upload(at, SHOPIFY_EXPORT.read_bytes(), "orders_export.csv")
    again = at.dataframe[0].value
    assert "skipped" in set(again["status"]) and {m.label for m in at.metric} >= {"Already imported"}


def test_a_file_that_is_not_a_shopify_export_is_one_clear_error(app):
    at = open_page(app, "admin2", "import_export")
    widget(at.radio, "What to import").set_value("shopify").run()
    upload(at, UPLOAD, "kunden.csv")
    assert not at.exception
    assert any(e.value.startswith("This is not a Shopify orders export") for e in at.error)


def existing_customer(app_db) -> tuple[str, str]:
    with make_engine(app_db).connect() as connection:
        return connection.execute(select(Customer.external_id, Customer.email)
                                  .where(Customer.status == "active", Customer.email.is_not(None))
                                  .order_by(Customer.id).limit(1)).one()


def test_tickets_are_mapped_previewed_and_imported(app, app_db):
    external_id, email = existing_customer(app_db)
    content = (
        "Nummer,Kunde,Erstellt,Betreff,Priorität\n"
        f"HD-501,{external_id},2024-03-01 09:00:00 +0100,Paket fehlt,medium\n"
        f"HD-502,{external_id},2024-03-02,Rechnung,blocker\n"
        "HD-503,nobody-here,2024-03-02,Wer?,low\n"
    ).encode()
    at = open_page(app, "admin3", "import_export")
    widget(at.radio, "What to import").set_value("tickets").run()
    upload(at, content, "tickets.csv")
    assert not at.exception
    assert any("needs a column for Ticket id and Created at" in w.value for w in at.warning)
    for column, field in (("Nummer", "ticket_id"), ("Kunde", "customer_external_id"), ("Erstellt", "created_at"),
                          ("Betreff", "subject"), ("Priorität", "priority")):
        widget(at.selectbox, f"Column “{column}”").select(field).run()
    assert not at.warning
    preview = at.dataframe[0].value
    assert preview["status"].tolist() == ["ok", "invalid", "ok"]  # customers are matched on import
    assert "priority 'blocker' is not one of" in preview["reason"].tolist()[1]
    widget(at.button, "Import").click().run()
    assert not at.exception
    shown = figures(at)
    assert (shown["Rows read"], shown["Tickets imported"], shown["Invalid"]) == ("3", "1", "2")
    errors = error_table(at)
    assert errors["row"].tolist() == [3, 4]
    assert "no customer with external id 'nobody-here'" in errors["reason"].tolist()[1]
    with make_engine(app_db).connect() as connection:
        ticket = connection.execute(select(SupportTicket).where(SupportTicket.external_id == "HD-501")).one()
        assert (ticket.ticket_number, ticket.priority, ticket.sla_id) == ("H-HD-501", "normal", None)

    widget(at.text_input, "Save this mapping as").input("Helpdesk export")
    widget(at.button, "Save mapping").click().run()
    assert any("Saved the mapping 'Helpdesk export'" in s.value for s in at.success)
    with make_engine(app_db).connect() as connection:
        saved = connection.execute(select(ImportMapping).where(ImportMapping.name == "Helpdesk export")).one()
        assert (saved.entity, saved.mapping["Nummer"]) == ("tickets", "ticket_id")


def test_communications_and_an_orders_log_with_named_columns(app, app_db):
    external_id, email = existing_customer(app_db)
    at = open_page(app, "admin1", "import_export")
    widget(at.radio, "What to import").set_value("communications").run()
    upload(at, (f"customer_email,channel,sent_at,subject\n{email},email,2024-03-01,Hallo\n"
                f"{email},fax,2024-03-01,Hallo\n").encode(), "messages.csv")
    widget(at.button, "Import").click().run()
    assert not at.exception
    assert (figures(at)["Messages imported"], figures(at)["Invalid"]) == ("1", "1")

    widget(at.radio, "What to import").set_value("orders").run()
    upload(at, f"customer,date,amount,status\n{external_id},2024-03-01,10.00,refunded\n".encode(), "log.csv")
    assert widget(at.selectbox, "Column “status”").value == "status"
    assert at.dataframe[0].value["status"].tolist() == ["ok"]
    widget(at.button, "Import").click().run()
    assert not at.exception
    assert figures(at)["Orders imported"] == "1"
    with make_engine(app_db).connect() as connection:
        assert connection.scalar(select(func.count()).select_from(CustomerCommunication)
                                 .where(CustomerCommunication.subject == "Hallo")) == 1
        assert connection.scalar(select(Order.status).where(Order.order_number.like("L-%"))) == "refunded"
