"""Hostile or careless input becomes a clear domain error, never an internal exception: rule depth and
out-of-range values, ids too large for any table, broken or oversized workbooks, deeply nested JSON,
NUL characters, and a race on a unique name."""

from __future__ import annotations

import datetime as dt
import io
import json
import zipfile

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from crm_core import customers, imports, platform, segmentation, service
from crm_core.customers import search as search_module
from crm_core.imports import files
from db.engine import session_factory
from db.models import Customer, SavedSearch
from tests.factories import make_user

TODAY = dt.date.today()


@pytest.mark.parametrize("rules, message", [
    ('{"all":[' * 5000 + "]}" * 5000, "nested too deeply"),
    ({"all": [{"field": "last_order_date", "op": "gt", "value": "9999-12-31"}]}, "from 1900-01-01 to 2999-12-31"),
    ({"all": [{"field": "signup_date", "op": "between", "value": ["0001-01-01", "2020-01-01"]}]}, "from 1900-01-01"),
    ({"all": [{"field": "total_revenue", "op": "gt", "value": 10**30}]}, "a number between"),
    ('{"all": [{"field": "total_revenue", "op": "gt", "value": ' + "9" * 5000 + "}]}", "too long to read"),
])
def test_hostile_rules_are_refused_with_a_message(session, rules, message):
    with pytest.raises(platform.ValidationError, match=message):
        segmentation.preview_rules(session, make_user(session, "analyst"), rules, TODAY)


@pytest.mark.parametrize("text", ["99999999999999999999999", "-1", "0", "1e3", "٣", "12 ", "x" * 1000])
def test_record_ids_from_the_address_bar_are_checked(text):
    if text == "12 ":
        assert platform.parse_record_id(text) == 12
        return
    with pytest.raises(platform.ValidationError, match="is not an id"):
        platform.parse_record_id(text)


def test_ids_too_large_for_any_table_are_not_found(session):
    viewer = make_user(session, "admin")
    with pytest.raises(platform.NotFound):
        customers.customer_profile(session, viewer, 10**23)
    with pytest.raises(platform.ValidationError, match="whole number from 1"):
        service.get_ticket(session, viewer, 10**23)


def _workbook(rows: list[list]) -> bytes:
    workbook = Workbook()
    for row in rows:
        workbook.active.append(row)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def _with_part(data: bytes, part: str, content: bytes) -> bytes:
    """The workbook with one of its zipped parts replaced (or added)."""
    source, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as target:
        for info in source.infolist():
            if info.filename != part:
                target.writestr(info.filename, source.read(info.filename))
        target.writestr(part, content)
    return out.getvalue()


def _rows(data: bytes, name: str) -> list[files.RawRow]:
    with files.TableReader(io.BytesIO(data), name=name) as reader:
        return list(reader.rows())


def test_a_workbook_with_malformed_xml_is_refused_with_a_message():
    data = _with_part(_workbook([["email"], ["a@example.com"]]), "xl/worksheets/sheet1.xml", b"<worksheet><sheetData><row")
    with pytest.raises(platform.ValidationError, match="not a valid Excel"):
        _rows(data, "broken.xlsx")


def test_a_workbook_that_expands_too_far_is_refused(monkeypatch):
    """Compressed size says nothing: a few hundred kilobytes can unzip to gigabytes."""
    workbook = _workbook([["email"], ["a@example.com"]])
    bomb = _with_part(workbook, "xl/sharedStrings.xml", b"<sst>" + b"A" * 30_000_000 + b"</sst>")
    assert len(bomb) < 100_000
    monkeypatch.setattr(files, "MAX_XLSX_SHARED_STRINGS", 10_000_000)
    with pytest.raises(platform.ValidationError, match="MB of text in its shared strings"):
        _rows(bomb, "bomb.xlsx")
    monkeypatch.setattr(files, "MAX_XLSX_EXPANDED", 20_000_000)
    with pytest.raises(platform.ValidationError, match="expands to 29 MB when unzipped"):
        _rows(bomb, "bomb.xlsx")


def test_a_huge_column_name_or_cell_is_refused():
    with pytest.raises(platform.ValidationError, match="column name"):
        _rows(_workbook([["e" * 5000], ["a@example.com"]]), "header.xlsx")
    with pytest.raises(platform.ValidationError, match="column name"):
        _rows(b"email," + b"h" * 1000 + b"\na@example.com,1\n", "header.csv")
    for data, name in [(b"email,note\na@example.com," + b"z" * 40_000 + b"\nb@example.com,fine\n", "long.csv"),
                       (json.dumps([{"email": "a", "note": "z" * 40_000}, {"email": "b", "note": "fine"}]).encode(),
                        "long.json")]:
        rows = _rows(data, name)
        assert rows[0].problem and "longer than 32,767" in rows[0].problem and rows[1].problem is None


def test_a_deeply_nested_json_upload_is_refused_with_a_message():
    data = ('[{"email": "a@example.com", "note": ' + "[" * 100_000 + "]" * 100_000 + "}]").encode()
    with pytest.raises(platform.ValidationError, match="nests its values too deeply"):
        _rows(data, "deep.json")


def test_a_nul_character_leaves_the_row_out_and_stores_nothing(engine):
    """On PostgreSQL a NUL in text crashes the insert; on SQLite it would be stored silently."""
    json_data = json.dumps([{"external_id": "n1", "first_name": "Nul\x00byte", "last_name": "P", "email": "nul@example.com",
                             "country": "DE"},
                            {"external_id": "n2", "first_name": "Clean", "last_name": "P", "email": "clean@example.com",
                             "country": "DE"}]).encode()
    csv_data = b"external_id,first_name,last_name,email,country\nc1,Nul\x00,P,nulc@example.com,DE\n"
    for data, name in [(csv_data, "nul.csv"), (json_data, "nul.json")]:
        with platform.unit_of_work(session_factory(engine)) as s:
            report = imports.import_customers(s, platform.SYSTEM, io.BytesIO(data), file_name=name)
        assert report.invalid == 1 and "NUL" in report.errors[0].reason
    with engine.connect() as connection:
        names = connection.scalars(select(Customer.first_name)).all()
    assert names == ["Clean"]


def test_a_same_name_saved_search_race_is_a_conflict_not_a_crash(engine, monkeypatch):
    with platform.unit_of_work(session_factory(engine)) as s:
        user = make_user(s, "analyst", "racer")
    query = customers.CustomerQuery(text="smith")
    with platform.unit_of_work(session_factory(engine)) as s:
        customers.save_search(s, s.get(type(user), user.id), "My list", query)
    # The second request checked the name before the first one committed.
    monkeypatch.setattr(search_module, "_name_taken", lambda *args, **kwargs: False)
    with pytest.raises(platform.ConflictError, match="at the same moment"), \
            platform.unit_of_work(session_factory(engine)) as s:
        customers.save_search(s, s.get(type(user), user.id), "My list", query)
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(SavedSearch)) == 1


def test_json_ids_and_rules_round_trip_unchanged():
    """The bounds refuse only what nothing could match: ordinary rules still parse."""
    rules = {"all": [{"field": "total_revenue", "op": "gt", "value": 1_000_000},
                     {"field": "signup_date", "op": "ge", "value": "2020-01-01"}]}
    assert segmentation.parse_rules(json.dumps(rules)) == rules
