"""Customer exports: formula neutralization in every format, chosen columns, scopes, permissions."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json

import pytest
from openpyxl import load_workbook
from sqlalchemy import select

from crm_core import customers, imports, platform, segmentation
from db.models import AuditLog
from tests.factories import make_customer, make_user

SIGNUP = dt.datetime(2024, 5, 17, 9, 30)
DANGEROUS = {
    "first_name": '=HYPERLINK("http://evil.example","click")',
    "last_name": "+SUM(A1:A9)",
    "city": "-2+3",
    "company": "@cmd",
    "email": "ok@example.com",
}


@pytest.fixture
def people(session):
    evil = make_customer(session, SIGNUP, external_id="00017", phone="\tTab", country_code="DE", **DANGEROUS)
    plain = make_customer(session, SIGNUP, external_id="00018", first_name="Zoë", last_name="李雷",
                          email="zoe@example.com", company="\rCR", country_code="FR", city="Paris")
    merged = make_customer(session, SIGNUP, status="merged", external_id="00019")
    return evil, plain, merged


def export(session, fmt, columns=None, **scope):
    out = io.BytesIO()
    count = customers.export_customers(session, platform.SYSTEM, out, fmt, columns, **scope)
    return out.getvalue(), count


def rows_of(data: bytes, fmt: str) -> list[dict]:
    if fmt == "csv":
        return list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"))))
    if fmt == "json":
        return json.loads(data)
    sheet = load_workbook(io.BytesIO(data), read_only=True).worksheets[0]
    values = list(sheet.iter_rows(values_only=True))
    return [dict(zip(values[0], row, strict=True)) for row in values[1:]]


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_text_cells_that_start_like_formulas_are_neutralized(session, people, fmt):
    columns = ["external_id", "first_name", "last_name", "email", "phone", "city", "company", "signup_date"]
    data, count = export(session, fmt, columns)
    assert count == 2  # the merged record is left out
    rows = {r["external_id"]: r for r in rows_of(data, fmt)}
    evil, plain = rows["00017"], rows["00018"]
    assert evil["first_name"] == "'" + DANGEROUS["first_name"]
    assert evil["last_name"] == "'+SUM(A1:A9)"
    assert evil["city"] == "'-2+3"
    assert evil["company"] == "'@cmd"
    assert evil["phone"] == "'\tTab"
    assert evil["email"] == "ok@example.com"  # ordinary text untouched
    assert plain["first_name"] == "Zoë" and plain["last_name"] == "李雷"  # Unicode exact
    # XML (inside .xlsx) turns a carriage return into a line feed; the apostrophe is what matters.
    assert plain["company"] == ("'\nCR" if fmt == "xlsx" else "'\rCR")
    if fmt == "xlsx":
        assert evil["signup_date"] == SIGNUP  # a real date cell
        assert "00017" in rows  # leading zeros kept as text
    else:
        assert evil["signup_date"] == "2024-05-17 09:30:00"


def test_csv_export_is_a_formula_free_spreadsheet(session, people):
    data, _ = export(session, "xlsx", ["first_name", "last_name"])
    sheet = load_workbook(io.BytesIO(data)).worksheets[0]
    assert all(cell.data_type != "f" for row in sheet.iter_rows() for cell in row)


def test_chosen_columns_in_order_and_unknown_columns_refused(session, people):
    data, _ = export(session, "csv", ["email", "external_id"])
    assert data.decode("utf-8-sig").splitlines()[0] == "email,external_id"
    with pytest.raises(platform.ValidationError, match="Unknown column"):
        export(session, "csv", ["email", "password_hash"])
    with pytest.raises(platform.ValidationError, match="at least one column"):
        export(session, "csv", [])
    with pytest.raises(platform.ValidationError, match="chosen twice"):
        export(session, "csv", ["email", "email"])
    with pytest.raises(platform.ValidationError, match="format"):
        export(session, "pdf")


def test_segment_and_id_list_scopes(session, people):
    evil, plain, _ = people
    admin = make_user(session, "admin")
    segment = segmentation.create_segment(session, admin, "Export me", "custom", "static")
    segmentation.add_members(session, admin, segment.id, [plain.id])
    data, count = export(session, "json", ["id", "first_name"], segment="Export me")
    assert count == 1 and json.loads(data) == [{"id": plain.id, "first_name": "Zoë"}]
    assert customers.count_exported(session, platform.SYSTEM, segment="export ME") == 1  # name case ignored
    with pytest.raises(platform.NotFound, match="No segment named 'Nope'"):
        export(session, "csv", segment="Nope")
    data, count = export(session, "json", ["id"], customer_ids=iter([plain.id, evil.id, 999_999]))
    assert count == 2 and [r["id"] for r in json.loads(data)] == sorted([plain.id, evil.id])
    data, count = export(session, "json", ["id"], customer_ids=iter([[plain.id], [evil.id, 999_999]]))  # chunks
    assert count == 2
    with pytest.raises(platform.ValidationError, match="whole numbers"):
        export(session, "json", ["id"], customer_ids=["x"])


def test_analytics_columns_join_without_dropping_customers(session, people):
    data, count = export(session, "json", ["external_id", "order_count", "total_revenue", "lifecycle_stage"])
    assert count == 2
    assert json.loads(data)[0] == {"external_id": "00017", "order_count": None, "total_revenue": None,
                                   "lifecycle_stage": None}


def test_export_permissions_and_audit(session, people):
    analyst, agent = make_user(session, "analyst"), make_user(session, "support_agent")
    out = io.BytesIO()
    assert customers.export_customers(session, analyst, out, "csv") == 2
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "customers.export"))
    assert entry.actor_username == analyst.username
    assert entry.after == {"format": "csv", "columns": customers.DEFAULT_EXPORT_COLUMNS, "scope": "all", "rows": 2}
    with pytest.raises(platform.PermissionDenied):
        customers.export_customers(session, agent, io.BytesIO(), "csv")


def test_empty_export_is_a_valid_file(session):
    data, count = export(session, "json")
    assert count == 0 and json.loads(data) == []
    data, count = export(session, "xlsx")
    assert rows_of(data, "xlsx") == []


def test_default_export_imports_again_as_the_same_customers(session):
    for n in range(3):
        make_customer(session, SIGNUP, external_id=f"{n:06d}", phone=f"+49 30 90182{n}", country_code="DE")
    data, _ = export(session, "csv")
    report = imports.import_customers(session, platform.SYSTEM, io.BytesIO(data), file_name="again.csv")
    assert (report.rows_read, report.skipped, report.created, report.invalid) == (3, 3, 0, 0)
