"""The Import / Export page under AppTest: upload, mapping, preview, import, saved mappings, export."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from db.engine import make_engine
from db.models import AuditLog, Customer, CustomerSegment, CustomerSegmentMembership, ImportMapping, ImportRun

from .apptest_support import APP, open_page, titles


@pytest.fixture(scope="module")
def page_db(tmp_path_factory):
    """A seeded demo database with one static segment; no batch refresh (this page needs none)."""
    from crm_core import segments
    from crm_core.service import SYSTEM
    from db import migrate
    from db.engine import session_scope
    from db.simulator import seed_database

    url = f"sqlite:///{tmp_path_factory.mktemp('import_page') / 'app.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    seed_database(engine, 150, seed=3, end=dt.datetime.now().replace(microsecond=0))
    with session_scope(engine) as s:
        segment = segments.create_segment(s, SYSTEM, "Hand picked", "custom", "static")
        segments.add_members(s, SYSTEM, segment.id, list(s.scalars(select(Customer.id).limit(40))))
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
