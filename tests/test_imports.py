"""Customer and order imports: messy files, validation, dedupe policies, rollback, on both backends."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from decimal import Decimal

import pytest
from openpyxl import Workbook
from sqlalchemy import func, select

from crm_core import imports, platform
from crm_core.imports import customers as customer_imports
from crm_core.imports import values
from db.engine import session_factory
from db.models import AuditLog, Customer, ImportMapping, ImportRun, Order, OrderItem, Product
from tests.factories import make_customer, make_order, make_user

NOW = dt.datetime(2025, 6, 1, 12, 0)
HEADER = ["external_id", "first_name", "last_name", "email", "phone", "country", "city", "signup_date", "company"]
MESSY_ROWS = [
    ["00123", "Zoë", "Müller", "zoe@example.com", "+49 30 901820", "DE", "Berlin", "2024-01-05", "Käse GmbH"],  # 2
    ["00124", "李", "雷", "li.lei@example.cn", "", "CHN", "北京", "2023-02-30", ""],  # 3 impossible date
    ["00125", '=HYPERLINK("http://evil.example","x")', "Formula", "formula@example.com", "", "FR", "Paris",
     "2024-03-01", "@corp"],  # 4 formula-like, valid
    ["00126", "Ñandú", "Pérez", "not-an-email", "", "ES", "Madrid", "2024-01-01", ""],  # 5 bad email
    ["00127", "Zoe", "Mueller", "  ZOE@Example.COM ", "", "DE", "Berlin", "2024-01-06", ""],  # 6 duplicate of row 2
    ["00128", "Ana", "Silva", "ana@example.com", "", "Atlantis", "Lisbon", "2024-02-01", ""],  # 7 unknown country
    ["00129", "Li", "Wei", "wei@example.com", "+86 10 6552 9988", "China", "Beijing", "01.02.2024", ""],  # 8 valid
    ["00130", "", "Nobody", "nobody@example.com", "", "DE", "Bonn", "2024-01-01", ""],  # 9 first name missing
]


def messy_csv() -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(HEADER)
    writer.writerows(MESSY_ROWS)
    return buffer.getvalue().encode("utf-8")


def messy_xlsx() -> bytes:
    workbook = Workbook()
    sheet = workbook.active
    sheet.append(HEADER)
    for row in MESSY_ROWS:
        sheet.append(row)
    for cells in sheet.iter_rows(min_row=2):
        for cell in cells:
            cell.data_type = "s"  # text cells, as a spreadsheet saves typed-in text (no formulas)
    buffer = io.BytesIO()
    workbook.save(buffer)
    return buffer.getvalue()


def messy_json() -> bytes:
    return json.dumps([dict(zip(HEADER, row, strict=True)) for row in MESSY_ROWS], ensure_ascii=False).encode()


MESSY = {"csv": messy_csv, "xlsx": messy_xlsx, "json": messy_json}


def run_import(session, data: bytes, name: str, **options):
    options.setdefault("now", NOW)
    return imports.import_customers(session, platform.SYSTEM, io.BytesIO(data), file_name=name, **options)


def customers_by_external(session) -> dict[str, Customer]:
    session.expire_all()
    return {c.external_id: c for c in session.scalars(select(Customer))}


@pytest.mark.parametrize("fmt", ["csv", "xlsx", "json"])
def test_messy_file_imports_the_valid_rows_exactly_and_reports_the_rest(session, fmt, tmp_path):
    errors_file = tmp_path / "errors.csv"
    report = run_import(session, MESSY[fmt](), f"messy.{fmt}", errors_path=errors_file)

    assert report.counts() == {"rows_read": 8, "created": 3, "updated": 0, "skipped": 1, "invalid": 4}
    # Spreadsheet rows (header = row 1) for CSV and Excel; object positions for JSON.
    shift = 0 if fmt == "json" else 1
    reasons = {e.row - shift: (e.identifier, e.reason) for e in report.errors}
    assert set(reasons) == {2, 4, 6, 8}
    assert reasons[2] == ("00124", "signup date: '2023-02-30' is not a real date")
    assert reasons[4][0] == "00126" and "email 'not-an-email' is not valid" in reasons[4][1]
    assert reasons[6][0] == "00128" and "unknown country 'Atlantis'" in reasons[6][1]
    assert reasons[8] == ("00130", "first name is missing")
    assert [(d.row - shift, d.match, d.action, d.matched) for d in report.duplicates] == [
        (5, "email", "skipped", f"row {1 + shift} of this file")]

    saved = customers_by_external(session)
    assert set(saved) == {"00123", "00125", "00129"}  # leading zeros kept
    zoe = saved["00123"]
    assert (zoe.first_name, zoe.last_name, zoe.company, zoe.city) == ("Zoë", "Müller", "Käse GmbH", "Berlin")
    assert (zoe.email, zoe.phone, zoe.country_code) == ("zoe@example.com", "+4930901820", "DE")
    assert zoe.signed_up_at == dt.datetime(2024, 1, 5)
    assert zoe.acquisition_channel == "import" and zoe.status == "active" and zoe.version == 1
    assert saved["00125"].first_name == '=HYPERLINK("http://evil.example","x")'  # stored as given
    assert saved["00125"].company == "@corp"
    assert saved["00129"].country_code == "CN" and saved["00129"].signed_up_at == dt.datetime(2024, 2, 1)

    with open(errors_file, encoding="utf-8", newline="") as handle:
        lines = list(csv.reader(handle))
    assert lines[0] == ["row", "identifier", "reason"]
    assert [int(line[0]) - shift for line in lines[1:]] == [2, 4, 6, 8]

    run = session.scalar(select(ImportRun))
    assert (run.status, run.created, run.skipped, run.invalid, run.file_format) == ("completed", 3, 1, 4, fmt)
    entry = session.scalar(select(AuditLog).where(AuditLog.action == "customers.import"))
    assert entry.after["created"] == 3 and entry.after["file"] == f"messy.{fmt}"


def test_duplicate_in_different_case_against_existing_customer_follows_the_policy(session):
    existing = make_customer(session, dt.datetime(2020, 1, 1), first_name="Maria", last_name="Lopez",
                             email="maria.lopez@example.com", country_code="ES", city="Sevilla")
    data = ("external_id,first_name,last_name,email,phone,country,city,signup_date,company\n"
            "0042,María,López, MARIA.LOPEZ@Example.com ,,ES,Sevilla,,Tapas SL\n").encode()

    skipped = run_import(session, data, "dup.csv")
    assert (skipped.created, skipped.updated, skipped.skipped) == (0, 0, 1)
    assert skipped.duplicates[0].matched == f"customer {existing.id}"

    updated = run_import(session, data, "dup.csv", on_duplicate="update")
    assert (updated.created, updated.updated, updated.skipped) == (0, 1, 0)
    session.expire_all()
    row = session.get(Customer, existing.id)
    assert (row.first_name, row.last_name, row.company, row.external_id) == ("María", "López", "Tapas SL", "0042")
    assert row.email == "MARIA.LOPEZ@example.com" and row.version == 2
    assert row.signed_up_at == dt.datetime(2020, 1, 1)  # an empty cell never blanks a field

    created = run_import(session, data.replace(b"0042", b"0043"), "dup.csv", on_duplicate="create")
    assert (created.created, created.updated, created.skipped) == (1, 0, 0)
    assert session.scalar(select(func.count()).select_from(Customer)) == 2

    again = run_import(session, data, "dup.csv", on_duplicate="create")  # same external id: cannot create twice
    assert again.invalid == 1 and "already belongs to" in again.errors[0].reason


def test_an_external_id_of_a_merged_customer_is_refused_not_a_crash(session):
    make_customer(session, dt.datetime(2020, 1, 1), status="merged", external_id="0099", email="old@example.com")
    data = b"external_id,first_name,last_name,email\n0099,New,Person,new@example.com\n0100,Old,Mail,old@example.com\n"
    report = run_import(session, data, "merged.csv")
    assert (report.created, report.invalid) == (1, 1)  # the merged record's email is free to use again
    assert "which is merged" in report.errors[0].reason and report.errors[0].row == 2


def test_phone_duplicates_match_across_spellings(session):
    make_customer(session, dt.datetime(2021, 1, 1), email=None, phone="+49 30901820", country_code="DE")
    data = b"first_name,last_name,phone,country\nAnna,Berg,030 901820,DE\nOtto,Berg,+49 (30) 901820,DE\n"
    report = run_import(session, data, "phones.csv")
    assert (report.created, report.skipped) == (0, 2)
    assert {d.match for d in report.duplicates} == {"phone"}


def test_fuzzy_duplicates_by_name_and_city_with_a_configurable_threshold(session):
    make_customer(session, dt.datetime(2022, 1, 1), first_name="Jonathan", last_name="Smith", email=None,
                  phone="+44 20 7946 0958", country_code="GB", city="London")
    data = b"first_name,last_name,phone,country,city\nJonathon,Smith,+44 20 7946 0000,GB,london\n"
    found = run_import(session, data, "fuzzy.csv")
    assert found.skipped == 1 and found.duplicates[0].match.startswith("name (")
    assert run_import(session, data, "fuzzy.csv", fuzzy_threshold=99).created == 1  # stricter: not a duplicate
    assert run_import(session, data.replace(b"0000", b"0001"), "fuzzy.csv", fuzzy_threshold=0).created == 1


def test_fuzzy_match_is_not_taken_when_emails_differ(session):
    make_customer(session, dt.datetime(2022, 1, 1), first_name="Jonathan", last_name="Smith",
                  email="jonathan@example.com", country_code="GB", city="London")
    data = b"first_name,last_name,email,country,city\nJonathon,Smith,jonathon@example.com,GB,London\n"
    assert run_import(session, data, "fuzzy.csv").created == 1


def test_duplicates_within_the_file_across_chunks(session):
    rows = "".join(f"C{i:03d},First{i},Last{i},p{i}@example.com\n" for i in range(10))
    data = f"external_id,first_name,last_name,email\n{rows}X1,Again,Person, P3@EXAMPLE.COM\n".encode()
    report = run_import(session, data, "chunks.csv", chunk_size=4, on_duplicate="update")
    assert (report.created, report.updated) == (10, 1)
    saved = customers_by_external(session)
    assert saved["C003"].first_name == "Again" and saved["C003"].version == 2
    assert "X1" not in saved  # an update never replaces an external id already set


def test_a_failure_mid_import_leaves_nothing_written(engine, monkeypatch):
    rows = "".join(f"{i:05d},First{i},Last{i},p{i}@example.com\n" for i in range(12))
    data = f"external_id,first_name,last_name,email\n{rows}".encode()
    calls = {"n": 0}
    real = customer_imports._write_customers

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(customer_imports, "_write_customers", failing)
    with pytest.raises(RuntimeError, match="disk full"), platform.unit_of_work(session_factory(engine)) as s:
        imports.import_customers(s, platform.SYSTEM, io.BytesIO(data), file_name="fail.csv", chunk_size=4)
    assert calls["n"] == 3
    with engine.connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Customer)) == 0
        assert connection.scalar(select(func.count()).select_from(ImportRun)) == 0
        assert connection.scalar(select(func.count()).select_from(AuditLog)) == 0


def test_only_import_roles_may_import(session):
    analyst = make_user(session, "analyst")
    with pytest.raises(platform.PermissionDenied):
        imports.import_customers(session, analyst, io.BytesIO(messy_csv()), file_name="x.csv")


@pytest.mark.parametrize(("data", "name", "message"), [
    (b"", "empty.csv", "is empty"),
    (b"\xff\xfe\x00bad bytes\n", "latin.csv", "not UTF-8"),
    (b'[{"first_name": "A", "last_name": "B", "email": "a@b.co"}, {"first_name": ', "cut.json", "not valid JSON"),
    (b'{"first_name": "A", "last_name": "B", "email": "a@b.co"} 42', "lines.json", "is not an object"),
    (b'"just text"', "text.json", "array of objects or JSON Lines"),
    (b"PK\x03\x04 not really a workbook", "broken.xlsx", "not a valid Excel"),
    (b"a,b\n1,2\n", "data.bin", "Cannot tell the format"),
    (b"given,family,mail\nA,B,a@b.co\n", "unmapped.csv", "Map a column to First name and Last name"),
])
def test_malformed_files_are_refused_with_a_clear_message(session, data, name, message):
    with pytest.raises(platform.ValidationError, match=message):
        run_import(session, data, name)
    assert session.scalar(select(func.count()).select_from(Customer)) == 0


def test_missing_file_is_a_clear_error(session, tmp_path):
    with pytest.raises(platform.ValidationError, match="File not found"):
        imports.import_customers(session, platform.SYSTEM, tmp_path / "nope.csv")


def test_column_mapping_and_semicolon_csv_with_bom(session):
    data = "\ufeffKundennummer;Vorname;Nachname;E-Mail;Land\n000777;Jürgen;Groß;jg@example.de;Deutschland\n"
    mapping = {"Kundennummer": "external_id", "Vorname": "first_name", "Nachname": "last_name",
               "E-Mail": "email", "Land": "country"}
    with pytest.raises(platform.ValidationError, match="unknown country"):
        values.normalize_country("Deutschland")
    report = run_import(session, data.replace("Deutschland", "DEU").encode(), "kunden.csv", mapping=mapping)
    assert report.created == 1
    saved = customers_by_external(session)["000777"]
    assert (saved.first_name, saved.last_name, saved.country_code) == ("Jürgen", "Groß", "DE")
    with pytest.raises(platform.ValidationError, match="mapped to Email"):
        imports.check_customer_mapping({**mapping, "Land": "email"}, list(mapping))


def test_json_is_streamed_in_chunks_and_json_lines_work(session):
    people = [{"external_id": f"{i:07d}", "first_name": f"Name{i}", "last_name": "Ünal" + "x" * 40,
               "email": f"user{i}@example.com", "note": "y" * 60} for i in range(1500)]
    data = json.dumps(people, ensure_ascii=False, indent=1).encode()
    assert len(data) > 3 * 64 * 1024  # crosses several read chunks
    report = run_import(session, data, "many.json", fuzzy_threshold=0)
    assert report.created == 1500
    lines = "\n".join(json.dumps({"external_id": "0000001", "first_name": "N", "last_name": "L", "email": "n@l.io"})
                      for _ in range(2)).encode()
    assert run_import(session, lines, "people.jsonl").skipped == 2
    assert customers_by_external(session)["0000000"].last_name.startswith("Ünal")


def test_preview_reports_each_row_status_without_writing(session):
    columns, rows = imports.preview_customers(io.BytesIO(messy_csv()), file_name="messy.csv", limit=3)
    assert columns == HEADER
    assert [(r.row, r.status) for r in rows] == [(2, "ok"), (3, "invalid"), (4, "ok")]
    assert "not a real date" in rows[1].reason
    assert session.scalar(select(func.count()).select_from(Customer)) == 0


def test_dates_in_documented_forms():
    parse = values.parse_datetime
    assert parse("2024-03-01") == dt.datetime(2024, 3, 1)
    assert parse("2024-03-01T14:30:00+02:00") == dt.datetime(2024, 3, 1, 12, 30)
    # Shopify's spelling: the offset after a space; stored as naive UTC.
    assert parse("2024-03-05 14:22:10 +0100") == dt.datetime(2024, 3, 5, 13, 22, 10)
    assert parse("2024-03-05 00:10:00 +0100") == dt.datetime(2024, 3, 4, 23, 10)
    assert parse("2024-03-05 14:22:10 UTC") == parse("2024-03-05 14:22:10Z") == dt.datetime(2024, 3, 5, 14, 22, 10)
    assert parse("01.03.2024") == parse("01/03/2024") == parse("2024/03/01") == dt.datetime(2024, 3, 1)
    for bad in ("2023-02-30", "31.04.2024", "2024-13-01"):
        with pytest.raises(platform.ValidationError, match="not a real date"):
            parse(bad)
    with pytest.raises(platform.ValidationError, match="known form"):
        parse("March 1st")


def test_saved_mappings_per_user_or_shared(session):
    admin, other = make_user(session, "admin"), make_user(session, "admin")
    mine = imports.save_mapping(session, admin, "Shop export", {"Mail": "email", "Vorname": "first_name"})
    imports.save_mapping(session, other, "Team default", {"Mail": "email"}, shared=True)
    assert [m["name"] for m in imports.list_mappings(session, admin)] == ["Shop export", "Team default"]
    assert [m["name"] for m in imports.list_mappings(session, other)] == ["Team default"]
    with pytest.raises(platform.ConflictError, match="private mapping"):
        imports.save_mapping(session, other, "Shop export", {"Mail": "email"})
    updated = imports.save_mapping(session, admin, "Shop export", {"Mail": "email"}, expected_version=mine.version)
    assert updated.mapping == {"Mail": "email"} and updated.version == 2
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        imports.save_mapping(session, admin, "Shop export", {"Mail": "phone"}, expected_version=1)
    with pytest.raises(platform.ValidationError, match="not a field"):
        imports.save_mapping(session, admin, "Bad", {"Mail": "password"})
    imports.delete_mapping(session, admin, mine.id, expected_version=2)
    assert session.scalar(select(func.count()).select_from(ImportMapping)) == 1
    actions = set(session.scalars(select(AuditLog.action)))
    assert {"import_mapping.create", "import_mapping.update", "import_mapping.delete"} <= actions


# --------------------------------------------------------------------------- orders

ORDERS = (
    "customer,date,amount,qty\n"
    "00042,2024-03-01,19.99,2\n"
    "42,2024-03-02,5,\n"  # a different customer from 00042
    "00042,2024-03-05 10:15,1,234.50,1\n"  # too many values
    "00042,2024-02-30,10,1\n"  # impossible date
    "00077,2024-04-01,-3,1\n"  # negative
    ",2024-04-01,3,1\n"  # no customer
    "00077,2024-04-02,12.5,x\n"  # bad quantity
)


def test_orders_import_creates_customers_and_keeps_leading_zeros(session, tmp_path):
    existing = make_customer(session, dt.datetime(2020, 1, 1), external_id="00042")
    errors_file = tmp_path / "order-errors.csv"
    report = imports.import_orders(session, platform.SYSTEM, io.BytesIO(ORDERS.encode()), "customer", "date", "amount", "qty",
                                   file_name="log.csv", errors_path=errors_file, now=NOW)
    assert (report.rows_read, report.created, report.customers_created, report.invalid) == (7, 2, 1, 5)
    assert {e.row: e.reason for e in report.errors}[5] == "order date: '2024-02-30' is not a real date"
    assert "negative" in {e.row: e.reason for e in report.errors}[6]
    assert "customer id is missing" in {e.row: e.reason for e in report.errors}[7]
    assert "has 5 values" in {e.row: e.reason for e in report.errors}[4]
    session.expire_all()
    orders = {o.customer_id: o for o in session.scalars(select(Order))}
    first = orders[existing.id]
    assert (first.total, first.item_count, first.status, first.ordered_at) == (
        Decimal("19.99"), 2, "paid", dt.datetime(2024, 3, 1))
    created = session.scalar(select(Customer).where(Customer.external_id == "42"))
    assert created is not None and created.acquisition_channel == "import"
    assert created.signed_up_at == dt.datetime(2024, 3, 2)
    assert orders[created.id].item_count == 1
    assert errors_file.read_text(encoding="utf-8").count("\n") == 6

    again = imports.import_orders(session, platform.SYSTEM, io.BytesIO(ORDERS.encode()), "customer", "date", "amount", "qty",
                                  file_name="log.csv", now=NOW)
    assert (again.created, again.skipped, again.customers_created) == (0, 2, 0)
    assert session.scalar(select(func.count()).select_from(Order)) == 2


def test_the_same_transactions_are_not_imported_twice_whatever_the_file_is_called(session):
    log = ("customer,date,amount,qty\n"
           "7,2024-03-01,10.00,1\n"
           "7,2024-03-01,10.00,1\n"  # two equal purchases the same day: both are real
           "8,2024-03-02,20.00,2\n")

    def load(text: str, name: str):
        return imports.import_orders(session, platform.SYSTEM, io.BytesIO(text.encode()), "customer", "date",
                                     "amount", "qty", file_name=name, now=NOW)

    assert load(log, "export.csv").created == 3
    renamed = load(log, "export (1).csv")  # downloaded again under another name
    assert (renamed.created, renamed.skipped) == (0, 3)
    grown = "customer,date,amount,qty\n9,2024-02-28,5.00,1\n" + log.split("\n", 1)[1] + "7,2024-03-01,10.00,1\n"
    again = load(grown, "export.csv")  # a new row on top, and a third equal purchase at the end
    assert (again.created, again.skipped) == (2, 3)
    assert session.scalar(select(func.count()).select_from(Order)) == 5


@pytest.mark.parametrize("kind", ["customers", "orders"])
def test_a_file_with_a_header_and_no_rows_is_refused(session, kind):
    header = io.BytesIO(b"customer,date,amount\n" if kind == "orders" else b"email,first_name,last_name\n")
    with pytest.raises(platform.ValidationError, match="has a header but no rows"):
        if kind == "orders":
            imports.import_orders(session, platform.SYSTEM, header, "customer", "date", "amount", file_name="empty.csv")
        else:
            imports.import_customers(session, platform.SYSTEM, header, file_name="empty.csv")


def test_orders_with_an_order_column_reject_repeated_numbers(session):
    data = b"id,cust,when,total\nA-1,007,2024-01-01,10\nA-2,007,2024-01-02,11\nA-1,008,2024-01-03,12\n"
    report = imports.import_orders(session, platform.SYSTEM, io.BytesIO(data), "cust", "when", "total", order_col="id",
                                   file_name="o.csv", now=NOW)
    assert (report.created, report.invalid) == (2, 1)
    assert report.errors[0].row == 4 and "appears earlier" in report.errors[0].reason
    numbers = set(session.scalars(select(Order.order_number)))
    assert numbers == {"A-1", "A-2"}
    assert session.scalar(select(func.count()).select_from(Customer)) == 1  # 008 had no valid order


LINES = (
    "invoice,mail,day,sku,qty,line_total,state,cur\n"
    "INV-1,Ana@Example.com,2024-05-01,SKU-A,2,20.00,paid,eur\n"
    "INV-1,ana@example.com,2024-05-01,SKU-B,1,5.50,,EUR\n"  # a second line of INV-1
    "INV-2,bo@example.com,2024-05-02 10:00 +0200,SKU-A,1,10.00,Refunded,EUR\n"
    "INV-3,cy@example.com,2024-05-03,SKU-C,1,7.00,canceled,EUR\n"
    "INV-4,dee@example.com,2024-05-04,SKU-A,1,9.00,paid,USD\n"  # not the shop currency
    "INV-5,eve@example.com,2024-05-05,SKU-A,1,9.00,lost,EUR\n"  # unknown status
    "INV-1,zed@example.com,2024-05-06,SKU-C,1,1.00,paid,EUR\n"  # INV-1 belongs to Ana
    "INV-6,fay@example.com,2024-05-06,SKU-A,1,3.00,pending,E\n"  # bad currency
)


def import_lines(session, **options):
    return imports.import_orders(session, platform.SYSTEM, io.BytesIO(LINES.encode()), None, "day", "line_total", "qty",
                                 order_col="invoice", email_col="mail", status_col="state", product_col="sku",
                                 currency_col="cur", file_name="lines.csv", now=NOW, **options)


def test_orders_log_with_email_status_product_and_currency_columns(session):
    ana = make_customer(session, dt.datetime(2020, 1, 1), email="ANA@example.com")
    make_order(session, ana, dt.datetime(2023, 1, 1), "1.00")  # the shop keeps its books in EUR
    report = import_lines(session)
    reasons = {e.row: e.reason for e in report.errors}
    assert "status 'lost' is not one of" in reasons[7]
    assert "belongs to another customer on row 2" in reasons[8]
    assert "'E' is not a three-letter ISO 4217 code" in reasons[9]
    assert "in USD, not in the shop currency EUR (the orders already in the database)" in reasons[6]
    assert (report.created, report.items_created, report.products_created, report.customers_created,
            report.invalid) == (3, 4, 3, 2, 4)
    assert report.other_currency == {"USD": 1}
    assert report.notes()[1].startswith("1 order in USD not imported")
    session.expire_all()
    orders = {o.order_number: o for o in session.scalars(select(Order))}
    assert orders["INV-1"].customer_id == ana.id  # found by email, case ignored
    assert (orders["INV-1"].total, orders["INV-1"].item_count, orders["INV-1"].status) == (Decimal("25.50"), 3, "paid")
    assert orders["INV-2"].status == "refunded" and orders["INV-2"].ordered_at == dt.datetime(2024, 5, 2, 8, 0)
    assert orders["INV-3"].status == "cancelled"
    items = session.execute(select(Product.sku, OrderItem.quantity, OrderItem.unit_price, OrderItem.line_total)
                            .join(Product, Product.id == OrderItem.product_id)
                            .join(Order, Order.id == OrderItem.order_id).where(Order.order_number == "INV-1")
                            .order_by(Product.sku)).all()
    assert items == [("SKU-A", 2, Decimal("10.00"), Decimal("20.00")), ("SKU-B", 1, Decimal("5.50"), Decimal("5.50"))]
    assert session.scalar(select(Customer.email).where(Customer.id == orders["INV-2"].customer_id)) == "bo@example.com"

    again = import_lines(session)
    assert (again.created, again.skipped, again.customers_created, again.products_created) == (0, 3, 0, 0)
    assert session.scalar(select(func.count()).select_from(OrderItem)) == 4


def test_an_email_only_log_in_a_new_database_takes_its_currency_from_the_file(session):
    data = ("mail,date,amount,currency\n"
            "a@example.com,2024-01-01,10,USD\nb@example.com,2024-01-02,11,USD\na@example.com,2024-01-03,12,GBP\n")
    report = imports.import_orders(session, platform.SYSTEM, io.BytesIO(data.encode()), None, "date", "amount",
                                   email_col="mail", currency_col="currency", file_name="e.csv", now=NOW)
    assert (report.created, report.customers_created, report.invalid) == (2, 2, 1)
    assert (report.currency, report.currency_source) == ("USD", "the most common currency in the file")
    assert set(session.scalars(select(Order.currency))) == {"USD"}
    # A row with an id and an email creates the customer; a later row with only that email finds it.
    mixed = "id,mail,date,amount\nK-1,kim@example.com,2024-01-01,5\n,KIM@example.com,2024-01-02,6\n"
    report = imports.import_orders(session, platform.SYSTEM, io.BytesIO(mixed.encode()), "id", "date", "amount",
                                   email_col="mail", file_name="m.csv", now=NOW)
    assert (report.created, report.customers_created) == (2, 1)
    with pytest.raises(platform.ValidationError, match="customer id column or the customer email column"):
        imports.import_orders(session, platform.SYSTEM, io.BytesIO(data.encode()), None, "date", "amount", file_name="e.csv")


def test_orders_import_names_a_missing_column(session):
    with pytest.raises(platform.ValidationError, match="no amount column 'total'"):
        imports.import_orders(session, platform.SYSTEM, io.BytesIO(ORDERS.encode()), "customer", "date", "total",
                              file_name="log.csv")


def test_orders_import_is_bulk_across_chunks(session):
    rows = "".join(f"{i % 37:05d},2024-01-{1 + i % 28:02d},{i}.25\n" for i in range(500))
    report = imports.import_orders(session, platform.SYSTEM, io.BytesIO(f"c,d,a\n{rows}".encode()), "c", "d", "a",
                                   file_name="bulk.csv", chunk_size=64, now=NOW)
    assert (report.created, report.customers_created, report.invalid) == (500, 37, 0)
    total = session.scalar(select(func.sum(Order.total)))
    assert float(total) == pytest.approx(sum(i + 0.25 for i in range(500)))


def test_progress_is_reported_per_chunk_and_ends_at_one(session):
    rows = "".join(f"{i:04d},F{i},L{i},p{i}@example.com\n" for i in range(9))
    seen: list[tuple[float | None, int]] = []
    run_import(session, f"external_id,first_name,last_name,email\n{rows}".encode(), "p.csv", chunk_size=4,
               progress=lambda fraction, read: seen.append((fraction, read)))
    assert [read for _, read in seen] == [4, 8, 9]
    assert seen[-1][0] == 1.0 and all(0 < f <= 1 for f, _ in seen)


def test_an_import_update_makes_a_concurrent_edit_a_conflict(engine):
    from crm_core import platform

    factory = session_factory(engine)
    with platform.unit_of_work(factory) as s:
        customer_id = make_customer(s, dt.datetime(2020, 1, 1), email="edit@example.com").id
    editor = factory()
    stale = editor.get(Customer, customer_id)  # read before the import (the page shows it)
    editor.commit()  # the read transaction ends; the object keeps version 1
    with platform.unit_of_work(factory) as s:
        run_import(s, b"first_name,last_name,email\nNew,Name,edit@example.com\n", "u.csv", on_duplicate="update")
    stale.city = "Lost update"
    with pytest.raises(platform.ConflictError), platform.unit_of_work(lambda: editor) as s:
        s.flush()
    with platform.unit_of_work(factory) as s:
        fresh = s.get(Customer, customer_id)
        assert (fresh.first_name, fresh.city, fresh.version) == ("New", None, 2)
        with pytest.raises(platform.ConflictError, match="changed by someone else"):
            platform.check_version(fresh, 1, "The customer")
