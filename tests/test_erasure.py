"""Erasure leaves nothing behind: one person built through the services across every table and the
attachment store (a non-ASCII name, a changed name, e-mail and phone), erased, then every text and
JSON column (decoded) and every stored file scanned for any current or past value."""

from __future__ import annotations

import datetime as dt
import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from sqlalchemy import JSON, String, Text, select

from crm_cli.main import main as crm
from crm_core import customers, imports, platform, service
from db import migrate
from db.engine import make_engine, session_factory
from db.models import AuditLog, Base, Customer, SavedSearch

from .every_table import fill_every_table
from .factories import make_customer, make_user

T0 = dt.datetime(2025, 2, 1)
FIRST, LAST = "Zoë", "Þórsdóttir-Müller"
NEW_LAST = "Þórsdóttir-Jónsdóttir"
OLD_EMAIL, NEW_EMAIL = "zoe.thors@example.is", "zoe.muller@example.de"


@pytest.fixture
def attachment_store(tmp_path, monkeypatch):
    monkeypatch.setenv("CRM_ATTACHMENTS_DIR", str(tmp_path / "attachments"))
    return tmp_path / "attachments"


def _strings(value) -> list[str]:
    """Every text inside a value, JSON decoded (a string that holds JSON is decoded too)."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in [str(k), *_strings(v)]]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    if isinstance(value, str):
        if value[:1] in "[{":
            try:
                return [value, *_strings(json.loads(value))]
            except ValueError:
                pass
        return [value]
    return []


def hits(session, secrets: list[str]) -> list[str]:
    folded = [s.casefold() for s in secrets]
    found = []
    for table in Base.metadata.sorted_tables:
        columns = [c for c in table.columns if isinstance(c.type, String | Text | JSON)]
        if not columns:
            continue
        for row in session.execute(select(*columns)).all():
            for column, value in zip(columns, row, strict=True):
                for text in _strings(value):
                    found += [f"{table.name}.{column.name}: {s}" for s, f in zip(secrets, folded, strict=True)
                              if f in text.casefold()]
    return found


def file_hits(store: Path, secrets: list[str]) -> list[str]:
    found = []
    for path in store.rglob("*") if store.exists() else []:
        if path.is_file():
            text = (path.name + path.read_bytes().decode("utf-8", "ignore")).casefold()
            found += [f"{path.name}: {s}" for s in secrets if s.casefold() in text]
    return found


def build_person(session, store: Path) -> tuple[int, list[str], int]:
    """Zoë, arriving through an import and living through the services; returns her id, every value
    she has had, and a namesake who must keep her name."""
    admin = make_user(session, "admin")
    agent = make_user(session, "support_agent")
    data = (f"external_id,first_name,last_name,email,phone,country\n"
            f"ZTM-7,{FIRST},{LAST},{OLD_EMAIL},+354 551 2345,IS\n").encode()
    imports.import_customers(session, admin, io.BytesIO(data), file_name=f"{FIRST} {LAST} contacts.csv")
    zoe = session.scalar(select(Customer).where(Customer.external_id == "ZTM-7"))
    old_phone = zoe.phone
    customers.update_customer(session, admin, zoe.id, zoe.version,
                              {"last_name": NEW_LAST, "email": NEW_EMAIL, "phone": "+49 30 901820"})
    session.flush()
    bystander = make_customer(session, T0, first_name="Bob", last_name="Other", email="bob@example.com")
    namesake = make_customer(session, T0, first_name=FIRST, last_name="Jensen", email="zoe.jensen@example.dk")
    fill_every_table(session, zoe.id, bystander.id)
    ticket = service.create_ticket(session, agent, zoe.id, f"Refund for {FIRST} {NEW_LAST}",
                                   f"{FIRST} {NEW_LAST} writes from {NEW_EMAIL}")
    service.add_response(session, agent, ticket.id, "Her receipt",
                         attachment=(f"receipt {LAST}.pdf", f"%PDF-1.4 {FIRST} {LAST} {OLD_EMAIL}".encode(),
                                     "application/pdf"))
    service.log_communication(session, agent, zoe.id, "email", "outbound", f"Hello {FIRST} {NEW_LAST}",
                              body=f"Dear {FIRST} {NEW_LAST}, we wrote to {NEW_EMAIL}.")
    other_ticket = service.create_ticket(session, agent, bystander.id, "Wrong parcel",
                                         f"Got the parcel meant for {OLD_EMAIL}")
    customers.save_search(session, admin, f"Find {NEW_EMAIL}", customers.CustomerQuery(text=NEW_EMAIL))
    customers.save_search(session, admin, f"Find {OLD_EMAIL}", customers.CustomerQuery(text=f"{FIRST} {LAST}"))
    session.flush()
    assert other_ticket.id
    values = [f"{FIRST} {LAST}", f"{FIRST} {NEW_LAST}", LAST, NEW_LAST, OLD_EMAIL, NEW_EMAIL, old_phone,
              zoe.phone, "ZTM-7"]
    return zoe.id, values, namesake.id


def test_erasure_leaves_nothing_in_any_column_or_file(session, attachment_store):
    zoe_id, values, namesake_id = build_person(session, attachment_store)
    assert len(hits(session, values)) > 20 and file_hits(attachment_store, values)
    # The JSON audit trail stores "Zoë" escaped: the scan decodes it, and so must the erasure.
    raw = session.scalar(select(AuditLog.after).where(AuditLog.action == "ticket.create"))
    assert FIRST in json.dumps(raw, ensure_ascii=False)
    request = customers.create_privacy_request(session, platform.SYSTEM, zoe_id, "erasure")
    result = customers.erase_customer(session, platform.SYSTEM, zoe_id, request.id)
    session.commit()

    assert hits(session, values) == []
    assert file_hits(attachment_store, values) == [] and result["attachment_files_deleted"] == 1
    assert not [p for p in attachment_store.rglob("*") if p.is_file()]
    # Nothing more than the person: a namesake keeps her first name, other searches and rows stay.
    assert session.get(Customer, namesake_id).first_name == FIRST
    assert session.scalar(select(Customer.email).where(Customer.id == namesake_id)) == "zoe.jensen@example.dk"
    assert all(s.name.startswith("erased") or s.name == "[erased]" for s in session.scalars(select(SavedSearch)))


def test_crm_privacy_export_and_erase(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    monkeypatch.setenv("CRM_ATTACHMENTS_DIR", str(tmp_path / "attachments"))
    migrate.upgrade(url)
    engine = make_engine(url)
    with platform.unit_of_work(session_factory(engine)) as s:
        zoe_id, values, _ = build_person(s, tmp_path / "attachments")
    out = tmp_path / "zoe.zip"
    assert crm(["privacy", "export", str(zoe_id), "--out", str(out)]) == 0
    assert os.stat(out).st_mode & 0o777 == 0o600
    assert NEW_EMAIL in zipfile.ZipFile(out).read("customers.csv").decode()
    assert crm(["privacy", "erase", str(zoe_id), "--reason", "E-mail of 3 May"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"Erased customer {zoe_id}") and "1 attachment file(s) deleted" in line
    with session_factory(engine)() as s:
        assert hits(s, values) == []
        assert s.scalar(select(AuditLog.action).where(AuditLog.action == "customer.export_subject"))
    for argv, message in [(["privacy", "erase", str(zoe_id), "--reason", "again please"], "already erased"),
                          (["privacy", "erase", "999999", "--reason", "no such person"], "999999"),
                          (["privacy", "erase", str(zoe_id), "--reason", "x"], "--reason"),
                          (["privacy", "export", str(zoe_id), "--out", str(tmp_path / "x.txt")], ".zip")]:
        assert crm(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ") and message in err, err
    engine.dispose()


def test_erasure_deletes_other_peoples_attachments_that_quote_the_person(session, attachment_store):
    """A file on someone else's ticket that names the person (in its name or its text) goes too; the
    row no longer points at it, and a file that does not mention them stays."""
    from db.models import SupportTicket, SupportTicketResponse

    zoe_id, values, _ = build_person(session, attachment_store)
    agent = make_user(session, "support_agent")
    bob = session.scalar(select(Customer.id).where(Customer.email == "bob@example.com"))
    ticket = session.scalar(select(SupportTicket.id).where(SupportTicket.customer_id == bob))
    for name, content in [("ZTM-7 statement.txt", b"account statement"),
                          ("call notes.txt", f"Bob forwarded mail from {FIRST} {LAST} <{OLD_EMAIL}>".encode()),
                          ("invoice.txt", b"Bob's own invoice, nobody else in it")]:
        service.add_response(session, agent, ticket, "See the file", attachment=(name, content, "text/plain"))
    session.flush()
    request = customers.create_privacy_request(session, platform.SYSTEM, zoe_id, "erasure")
    result = customers.erase_customer(session, platform.SYSTEM, zoe_id, request.id)
    session.commit()

    assert file_hits(attachment_store, values) == []
    assert result["attachment_files_deleted"] == 3
    stored = session.execute(select(SupportTicketResponse.attachment_path, SupportTicketResponse.attachment_name)
                             .where(SupportTicketResponse.ticket_id == ticket,
                                    SupportTicketResponse.attachment_path.is_not(None))).all()
    assert [name for _, name in stored] == ["invoice.txt"]
    assert all((attachment_store / path).is_file() for path, _ in stored)  # no row points at a missing file
    assert sorted(p.name.split("_", 1)[1] for p in attachment_store.rglob("*") if p.is_file()) == ["invoice.txt"]
