"""`crm import customers|orders` and `crm export customers`: the command lines are contracts."""

from __future__ import annotations

import csv
import io
import json

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from crm_cli.main import main
from crm_core import segments
from crm_core.service import SYSTEM
from db.engine import make_engine, session_scope
from db.models import Customer, ImportRun, Order

CUSTOMERS = (
    "external_id,first_name,last_name,email,phone,country,city,signup_date,company\n"
    "00123,Zoë,Müller,zoe@example.com,+49 30 901820,DE,Berlin,2024-01-05,ACME\n"
    "00124,Bad,Date,bad@example.com,,DE,Bonn,2023-02-30,\n"
    "00125,Zoe,Mueller,ZOE@EXAMPLE.COM ,,DE,Berlin,2024-01-05,ACME Updated\n"
    "00126,Ñandú,Pérez,nandu@example.com,,ESP,Madrid,2024-02-01,\n"
)


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'transfer.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    return url


@pytest.fixture
def customers_file(tmp_path):
    path = tmp_path / "customers.csv"
    path.write_text(CUSTOMERS, encoding="utf-8")
    return path


def count(url, model) -> int:
    with make_engine(url).connect() as connection:
        return connection.scalar(select(func.count()).select_from(model))


def test_import_customers_prints_a_summary_and_writes_the_error_file(db_url, customers_file, tmp_path, capsys):
    errors = tmp_path / "errors.csv"
    assert main(["import", "customers", str(customers_file), "--errors", str(errors), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "Imported customers from" in out
    for label, value in (("rows read", 4), ("imported (new)", 2), ("updated", 0), ("skipped as duplicates", 1),
                         ("invalid", 1)):
        assert any(line.split()[-1] == str(value) and label in line for line in out.splitlines()), (label, out)
    assert f"1 invalid rows listed in {errors}" in out
    with open(errors, encoding="utf-8", newline="") as handle:
        assert list(csv.reader(handle)) == [["row", "identifier", "reason"],
                                            ["3", "00124", "signup date: '2023-02-30' is not a real date"]]
    with session_scope(make_engine(db_url)) as s:
        people = {c.external_id: c for c in s.scalars(select(Customer))}
    assert set(people) == {"00123", "00126"}
    assert people["00126"].country_code == "ES" and people["00126"].first_name == "Ñandú"


def test_on_duplicate_update_and_invalid_rows_listed_without_an_error_file(db_url, customers_file, capsys):
    assert main(["import", "customers", str(customers_file), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert "row 3 (00124): signup date: '2023-02-30' is not a real date" in captured.err
    assert main(["import", "customers", str(customers_file), "--on-duplicate", "update", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert any("updated" in line and line.split()[-1] == "3" for line in out.splitlines()), out
    with session_scope(make_engine(db_url)) as s:
        zoe = s.scalar(select(Customer).where(Customer.external_id == "00123"))
        assert zoe.company == "ACME Updated"


def test_format_flag_reads_json_under_any_name(db_url, tmp_path, capsys):
    path = tmp_path / "people.data"
    path.write_text(json.dumps([{"first_name": "A", "last_name": "B", "email": "a@b.example", "external_id": "007"}]))
    assert main(["import", "customers", str(path), "--quiet"]) == 2
    assert "Cannot tell the format" in capsys.readouterr().err
    assert main(["import", "customers", str(path), "--format", "json", "--fuzzy-threshold", "0", "--quiet"]) == 0
    assert count(db_url, Customer) == 1


@pytest.mark.parametrize(("content", "message"), [
    (None, "File not found"),
    (b"", "is empty"),
    (b"\x80\x81\x82,\xff\n", "not UTF-8"),
    (b"first_name,last_name\nA,B\n", "Map a column to Email or Phone"),
])
def test_missing_or_malformed_files_exit_non_zero_with_a_message(db_url, tmp_path, capsys, content, message):
    path = tmp_path / "input.csv"
    if content is not None:
        path.write_bytes(content)
    assert main(["import", "customers", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    if content is not None:
        assert count(db_url, Customer) == 0
        with session_scope(make_engine(db_url)) as s:
            run = s.scalar(select(ImportRun))
            assert run.status == "failed" and message in run.message


def test_bad_flags_are_refused_by_the_parser(db_url, customers_file, capsys):
    with pytest.raises(SystemExit):
        main(["import", "customers", str(customers_file), "--on-duplicate", "merge"])
    with pytest.raises(SystemExit):
        main(["import", "customers", str(customers_file), "--fuzzy-threshold", "150"])
    with pytest.raises(SystemExit):
        main(["import", "orders", str(customers_file), "--customer-col", "c"])


def test_import_orders_creates_customers_and_keeps_leading_zeros(db_url, tmp_path, capsys):
    path = tmp_path / "transactions.csv"
    path.write_text("cust,day,value,n\n000981,2024-05-01,10.00,1\n981,2024-05-02,20.50,3\n000981,2024-05-03,x,1\n")
    argv = ["import", "orders", str(path), "--customer-col", "cust", "--date-col", "day", "--amount-col", "value",
            "--quantity-col", "n", "--quiet"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "Imported orders from" in captured.out
    assert any("orders imported" in line and line.split()[-1] == "2" for line in captured.out.splitlines())
    assert any("customers created" in line and line.split()[-1] == "2" for line in captured.out.splitlines())
    assert "amount 'x' is not a number" in captured.err
    with session_scope(make_engine(db_url)) as s:
        ids = set(s.scalars(select(Customer.external_id)))
        assert ids == {"000981", "981"}
        assert s.scalar(select(func.sum(Order.item_count))) == 4
    assert main(argv) == 0  # the same log again adds nothing
    assert count(db_url, Order) == 2
    assert main(["import", "orders", str(path), "--customer-col", "customer", "--date-col", "day",
                 "--amount-col", "value"]) == 2
    assert "no customer column 'customer'" in capsys.readouterr().err


def test_export_customers_in_every_format_with_segment_and_columns(db_url, customers_file, tmp_path, capsys):
    assert main(["import", "customers", str(customers_file), "--quiet"]) == 0
    with session_scope(make_engine(db_url)) as s:
        segment = segments.create_segment(s, SYSTEM, "Berliners", "custom", "static")
        berlin = s.scalar(select(Customer.id).where(Customer.external_id == "00123"))
        segments.add_members(s, SYSTEM, segment.id, [berlin])
    capsys.readouterr()

    out_csv = tmp_path / "all.csv"
    assert main(["export", "customers", "--format", "csv", "--out", str(out_csv)]) == 0
    assert "Exported 2 customers to" in capsys.readouterr().out
    rows = list(csv.DictReader(io.StringIO(out_csv.read_text(encoding="utf-8-sig"))))
    assert [r["external_id"] for r in rows] == ["00123", "00126"] and rows[0]["first_name"] == "Zoë"

    out_json = tmp_path / "berlin.json"
    assert main(["export", "customers", "--format", "json", "--out", str(out_json), "--segment", "Berliners",
                 "--columns", "external_id,email"]) == 0
    assert "Exported 1 customers in segment Berliners" in capsys.readouterr().out
    assert json.loads(out_json.read_text()) == [{"external_id": "00123", "email": "zoe@example.com"}]

    out_xlsx = tmp_path / "all.xlsx"
    assert main(["export", "customers", "--format", "xlsx", "--out", str(out_xlsx), "--columns", "last_name"]) == 0
    sheet = load_workbook(out_xlsx, read_only=True).worksheets[0]
    assert [r[0] for r in sheet.iter_rows(values_only=True)] == ["last_name", "Müller", "Pérez"]


def test_export_errors_exit_non_zero(db_url, tmp_path, capsys):
    out = tmp_path / "x.csv"
    assert main(["export", "customers", "--format", "csv", "--out", str(out), "--segment", "Nope"]) == 2
    assert "No segment named 'Nope'" in capsys.readouterr().err
    assert not out.exists() and not (tmp_path / "x.csv.partial").exists()
    assert main(["export", "customers", "--format", "csv", "--out", str(out), "--columns", "email,secret"]) == 2
    assert "Unknown column(s) secret" in capsys.readouterr().err
    assert main(["export", "customers", "--format", "csv", "--out", str(tmp_path / "no" / "x.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["export", "customers", "--format", "pdf", "--out", str(out)])
