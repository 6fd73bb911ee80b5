"""Files are private: the SQLite database, its folder, its journal and attachments are created
0600 / 0700 whatever the umask; sign-out forgets the whole session."""

from __future__ import annotations

import os
import stat

import pytest
from sqlalchemy import text

from crm_core import service
from db import migrate
from db.engine import make_engine
from tests.factories import make_customer, make_user


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture
def open_umask():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_the_sqlite_database_and_its_folder_are_private(tmp_path, open_umask):
    folder = tmp_path / "data" / "nested"
    url = f"sqlite:///{folder / 'crm.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE IF NOT EXISTS probe (x INTEGER)"))
        connection.execute(text("INSERT INTO probe VALUES (1)"))
        assert mode(folder) == 0o700 and mode(tmp_path / "data") == 0o700
        for name in ("crm.sqlite", "crm.sqlite-wal", "crm.sqlite-shm"):
            assert mode(folder / name) == 0o600, name
    engine.dispose()


def test_attachments_are_private(session, tmp_path, monkeypatch, open_umask):
    import datetime as dt

    monkeypatch.setenv("CRM_ATTACHMENTS_DIR", str(tmp_path / "files" / "attachments"))
    agent = make_user(session, "support_agent")
    customer = make_customer(session, dt.datetime(2025, 1, 1))
    ticket = service.create_ticket(session, agent, customer.id, "Broken parcel", "It arrived broken.")
    service.add_response(session, agent, ticket.id, "Photo", attachment=("photo.pdf", b"%PDF-1.4", "application/pdf"))
    stored = next((tmp_path / "files" / "attachments").rglob("*.pdf"))
    assert mode(stored) == 0o600
    assert mode(stored.parent) == 0o700 and mode(tmp_path / "files" / "attachments") == 0o700
    assert mode(tmp_path / "files") == 0o700
    assert ticket.id


def test_sign_out_forgets_the_whole_session(app):
    """An admin's export offered for download must not be offered to the next person at the tab."""
    import demo
    from ui.context import USER_KEY

    from .apptest_support import sign_in

    sign_in(app, "admin1", demo.demo_password("admin1"))
    app.session_state["bulk_export_csv"] = b"id,name,email\n1,Ann,ann@example.com\n"
    next(b for b in app.sidebar.button if b.label == "Sign out").click().run()
    assert USER_KEY not in app.session_state
    assert "bulk_export_csv" not in app.session_state
