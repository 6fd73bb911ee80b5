"""`crm import customers|orders` and `crm export customers`: the command lines are contracts."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from crm_cli.main import main
from crm_core import platform, segmentation
from db.engine import make_engine
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
    with platform.unit_of_work(make_engine(db_url)) as s:
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
    with platform.unit_of_work(make_engine(db_url)) as s:
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
        with platform.unit_of_work(make_engine(db_url)) as s:
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
    with platform.unit_of_work(make_engine(db_url)) as s:
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
    with platform.unit_of_work(make_engine(db_url)) as s:
        segment = segmentation.create_segment(s, platform.SYSTEM, "Berliners", "custom", "static")
        berlin = s.scalar(select(Customer.id).where(Customer.external_id == "00123"))
        segmentation.add_members(s, platform.SYSTEM, segment.id, [berlin])
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


SHOPIFY_EXPORT = Path(__file__).parent / "data" / "shopify_orders_export.csv"


def figure(out: str, label: str) -> int:
    return next(int(line.split()[-1].replace(",", "")) for line in out.splitlines() if line.strip().startswith(label))


def test_import_a_shopify_export_twice(db_url, tmp_path, capsys):
    errors = tmp_path / "errors.csv"
    argv = ["import", "orders", str(SHOPIFY_EXPORT), "--format", "shopify", "--errors", str(errors), "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (figure(out, "orders imported"), figure(out, "customers created"), figure(out, "refunded or cancelled"),
            figure(out, "in another currency")) == (9, 6, 2, 1)
    assert "Shop currency EUR (the most common currency in the file)." in out
    assert "1 order in USD not imported" in out and "1 order partially refunded" in out
    assert "#1008" in errors.read_text(encoding="utf-8")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (figure(out, "orders imported"), figure(out, "skipped (already imported)")) == (0, 9)
    assert count(db_url, Order) == 9 and count(db_url, Customer) == 6
    with platform.unit_of_work(make_engine(db_url)) as s:
        assert [r.file_format for r in s.scalars(select(ImportRun))] == ["csv", "csv"]


def test_shopify_format_refuses_other_files_and_column_flags(db_url, customers_file, capsys):
    assert main(["import", "orders", str(customers_file), "--format", "shopify"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: This is not a Shopify orders export") and err.count("\n") == 1
    with platform.unit_of_work(make_engine(db_url)) as s:
        run = s.scalar(select(ImportRun))
        assert (run.status, run.file_format) == ("failed", "shopify")
    with pytest.raises(SystemExit):
        main(["import", "orders", str(SHOPIFY_EXPORT), "--format", "shopify", "--customer-col", "Email"])
    assert "drop --customer-col" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["import", "orders", str(SHOPIFY_EXPORT), "--email-col", "Email"])
    assert "required: --date-col, --amount-col" in capsys.readouterr().err


def test_import_orders_with_the_new_columns(db_url, tmp_path, capsys):
    path = tmp_path / "lines.csv"
    path.write_text("inv,mail,day,sku,n,value,state,cur\n"
                    "A1,ana@example.com,2024-05-01,S-1,2,20.00,paid,EUR\n"
                    "A1,ana@example.com,2024-05-01,S-2,1,5.00,paid,EUR\n"
                    "A2,bo@example.com,2024-05-02,S-1,1,10.00,refunded,EUR\n", encoding="utf-8")
    argv = ["import", "orders", str(path), "--email-col", "mail", "--date-col", "day", "--amount-col", "value",
            "--quantity-col", "n", "--order-col", "inv", "--product-col", "sku", "--status-col", "state",
            "--currency-col", "cur", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert (figure(out, "orders imported"), figure(out, "line items"), figure(out, "products created")) == (2, 3, 2)
    with platform.unit_of_work(make_engine(db_url)) as s:
        assert dict(s.execute(select(Order.order_number, Order.status)).all()) == {"A1": "paid", "A2": "refunded"}


TICKETS_CSV = (
    "ticket_id,customer_external_id,customer_email,created_at,subject,status,priority\n"
    "T-1,00123,,2024-03-01 09:00:00 +0100,Parcel,solved,medium\n"
    "T-2,,NANDU@example.com,2024-03-02,Refund,open,blocker\n"
    "T-3,99999,,2024-03-02,Who?,open,low\n"
)
MESSAGES_CSV = (
    "customer_email,channel,direction,sent_at,subject,opened_at\n"
    "zoe@example.com,email,outbound,2024-03-01,Spring,2024-03-02\n"
    "zoe@example.com,fax,outbound,2024-03-01,Spring,\n"
)


@pytest.mark.parametrize(("kind", "content", "imported", "reason"), [
    ("tickets", TICKETS_CSV, 1, "row 3 (T-2): priority 'blocker' is not one of low, normal, high, urgent, critical"),
    ("communications", MESSAGES_CSV, 1, "row 3 (zoe@example.com): channel 'fax' is not one of email, sms, call, chat, push"),
])
def test_import_tickets_and_communications(db_url, customers_file, tmp_path, capsys, kind, content, imported,
                                           reason):
    assert main(["import", "customers", str(customers_file), "--quiet"]) == 0
    path = tmp_path / f"{kind}.csv"
    path.write_text(content, encoding="utf-8")
    assert main(["import", kind, str(path), "--quiet"]) == 0
    captured = capsys.readouterr()
    assert f"Imported {kind} from" in captured.out
    assert figure(captured.out, f"{'tickets' if kind == 'tickets' else 'messages'} imported") == imported
    assert reason in captured.err
    assert main(["import", kind, str(path), "--quiet"]) == 0
    assert figure(capsys.readouterr().out, "skipped (already imported)") == imported
    with platform.unit_of_work(make_engine(db_url)) as s:
        assert [r.entity for r in s.scalars(select(ImportRun).order_by(ImportRun.id))][1:] == [kind, kind]


def test_tickets_file_without_the_documented_columns_is_one_clear_error(db_url, tmp_path, capsys):
    path = tmp_path / "t.csv"
    path.write_text("number,who\n1,a@example.com\n", encoding="utf-8")
    assert main(["import", "tickets", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: The tickets file needs a column for Ticket id and Created at") and err.count("\n") == 1
    with pytest.raises(SystemExit):
        main(["import", "tickets", "--help"])
    out = capsys.readouterr().out
    assert "ticket_id*" in out and "csat_rating" in out and "no SLA clock" in out


MENTIONS_CSV = (
    "mention_id,platform,author,text,posted_at,url\n"
    "m1,twitter,@zoe_m,Love the new boots!,2024-03-01 09:00:00 +0100,https://x.com/zoe_m/1\n"
    "m2,myspace,zoe_m,Old network,2024-03-02,\n"
    "m3,instagram,someone,\"Parcel late again, awful.\",2024-03-02,\n"
)


def test_import_mentions_twice_with_an_error_file(db_url, customers_file, tmp_path, capsys):
    from crm_core import social

    assert main(["import", "customers", str(customers_file), "--quiet"]) == 0
    with platform.unit_of_work(make_engine(db_url)) as s:
        zoe = s.scalar(select(Customer.id).where(Customer.external_id == "00123"))
        social.link_account(s, platform.SYSTEM, zoe, "twitter", "zoe_m")
    path, errors = tmp_path / "mentions.csv", tmp_path / "mention-errors.csv"
    path.write_text(MENTIONS_CSV, encoding="utf-8")
    assert main(["import", "mentions", str(path), "--errors", str(errors), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert (figure(out, "mentions imported"), figure(out, "matched to customers"), figure(out, "invalid")) == (2, 1, 1)
    assert "myspace" in errors.read_text(encoding="utf-8") and "1 invalid rows listed" in out
    assert main(["import", "mentions", str(path), "--quiet"]) == 0
    assert figure(capsys.readouterr().out, "skipped (already imported)") == 2
    with pytest.raises(SystemExit):
        main(["import", "mentions", "--help"])
    assert "author*" in capsys.readouterr().out
