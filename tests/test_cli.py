"""The `crm` command: a contract for operators and scripts."""

import io
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select, update

from crm_cli.main import main
from crm_core import platform, segmentation
from db.engine import make_engine
from db.models import Customer, User


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    return url


def test_db_upgrade_creates_the_schema(db_url, capsys):
    assert main(["db", "upgrade"]) == 0
    assert "head" in capsys.readouterr().out
    with make_engine(db_url).connect() as connection:
        assert connection.scalar(select(func.count()).select_from(User)) == 0


def test_users_create_reads_the_password_from_stdin(db_url, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))
    assert main(["users", "create", "Maria", "--role", "success_manager"]) == 0
    assert "Created user maria (success_manager)" in capsys.readouterr().out
    with platform.unit_of_work(make_engine(db_url)) as s:
        assert platform.authenticate(s, "maria", "a-long-password").role == "success_manager"


def test_users_create_rejects_bad_input_with_a_message(db_url, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["users", "create", "maria", "--role", "analyst"]) == 2
    assert "at least 12 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["users", "create", "maria", "--role", "overlord"])


def test_a_version_conflict_prints_one_line_and_exits_2(db_url, monkeypatch, capsys):
    """Someone else saves the same row while a command works on it: one line, exit 2, nothing saved."""
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))
    assert main(["users", "create", "maria", "--role", "analyst"]) == 0
    engine = make_engine(db_url)

    def create_user(session, actor, username, role, password, **_):
        maria = session.scalar(select(User).where(User.username == "maria"))
        session.commit()  # read in one transaction, written in the next (as a page does)
        with engine.begin() as other:  # meanwhile someone else saves the same user
            other.execute(update(User).where(User.id == maria.id).values(version=User.version + 1))
        maria.full_name = "Maria from the command"
        session.flush()

    monkeypatch.setattr(platform, "create_user", create_user)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))
    capsys.readouterr()
    assert main(["users", "create", "someone", "--role", "analyst"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: This record was changed by someone else") and err.count("\n") == 1
    assert "Traceback" not in err
    with engine.connect() as connection:
        assert connection.scalar(select(User.full_name).where(User.username == "maria")) != "Maria from the command"


@pytest.mark.parametrize("error", [platform.ConflictError, platform.NotFound, platform.DomainError])
def test_a_domain_error_prints_one_line_and_exits_2(db_url, monkeypatch, capsys, error):
    main(["db", "upgrade"])
    monkeypatch.setattr(segmentation, "list_segments", lambda session, viewer: (_ for _ in ()).throw(error("No such thing.")))
    capsys.readouterr()
    assert main(["segments", "list"]) == 2
    assert capsys.readouterr().err == "error: No such thing.\n"


def test_seed_then_seed_if_empty(db_url, capsys):
    assert main(["seed", "--customers", "120", "--seed", "4", "--quiet"]) == 0
    assert "Seeded 120 customers" in capsys.readouterr().out
    assert main(["seed", "--customers", "120", "--if-empty"]) == 0
    assert "nothing to seed" in capsys.readouterr().out
    assert main(["seed", "--customers", "120"]) == 2
    assert "already has customers" in capsys.readouterr().err
    with make_engine(db_url).connect() as connection:
        assert connection.scalar(select(func.count()).select_from(Customer)) == 120


def test_console_script_runs_as_a_process(db_url):
    env = {**os.environ, "CRM_DATABASE_URL": db_url}
    done = subprocess.run([sys.executable, "-m", "crm_cli.main", "users", "create", "ops1", "--role", "admin"],
                          input="process-password\n", capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Created user ops1 (admin)" in done.stdout


def test_refresh_then_segments_list_json(db_url, capsys):
    assert main(["seed", "--customers", "200", "--seed", "3", "--quiet"]) == 0
    assert main(["refresh", "--as-of", "2026-01-15", "--backfill-months", "1"]) == 0
    out = capsys.readouterr().out
    assert "Refreshing as of 2026-01-15" in out and "Backfill as of 2025-12-31" in out
    assert "Lifecycle stages:" in out and "Churn model" in out
    assert main(["segments", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed and all(set(item) == {"name", "type", "kind", "members", "priority"} for item in listed)
    rfm = [item for item in listed if item["type"] == "rfm"]
    assert len(rfm) == 11 and all(item["kind"] == "dynamic" for item in rfm)
    with make_engine(db_url).connect() as connection:
        from db.models import CustomerAnalytics

        buyers = connection.scalar(select(func.count()).select_from(CustomerAnalytics).where(CustomerAnalytics.order_count > 0))
    assert sum(item["members"] for item in rfm) == buyers  # every buyer in exactly one RFM segment
    assert main(["refresh", "--if-empty"]) == 0
    assert "nothing to refresh" in capsys.readouterr().out


def test_refresh_rejects_a_malformed_date(db_url, capsys):
    with pytest.raises(SystemExit):
        main(["refresh", "--as-of", "15/01/2026"])
    assert "YYYY-MM-DD" in capsys.readouterr().err


# --------------------------------------------------------------------------- dates: bounds and the data date

OUT_OF_BOUNDS = [
    ["refresh", "--as-of", "9999-12-31"],
    ["refresh", "--as-of", "0001-01-01"],
    ["refresh", "--as-of", "2099-01-01", "--backfill-months", "3"],
    ["refresh", "--backfill-months", "100000"],
    ["refresh", "--as-of", "1900-03-31", "--backfill-months", "3"],
    ["loyalty", "expire", "--as-of", "2030-01-01"],
    ["loyalty", "earn", "--since", "1899-12-31"],
    ["loyalty", "reverse", "--since", "9999-12-31"],
    ["backtest", "--as-of", "9999-12-31"],
    ["clv", "--as-of", "0001-01-01"],
    ["forecast", "--as-of", "2030-01-01"],
]


@pytest.mark.parametrize("argv", OUT_OF_BOUNDS, ids=" ".join)
def test_dates_out_of_bounds_are_refused_with_one_line(db_url, argv, capsys):
    assert main(argv) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: --"), captured.err
    assert "Traceback" not in captured.err and not captured.out
    assert any(words in lines[0] for words in ("in the future", "before 1900-01-01", "pick at most"))


def test_a_future_as_of_never_prints_a_traceback_as_a_process(db_url):
    env = {**os.environ, "CRM_DATABASE_URL": db_url}
    for day in ("9999-12-31", "0001-01-01"):
        done = subprocess.run([sys.executable, "-m", "crm_cli.main", "refresh", "--as-of", day],
                              capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 2
        assert done.stderr.count("\n") == 1 and done.stderr.startswith(f"error: --as-of {day} is ")


def test_the_edges_of_the_bounds_are_accepted(db_url, capsys):
    import datetime as dt

    assert main(["db", "upgrade"]) == 0
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    assert main(["loyalty", "expire", "--as-of", tomorrow]) == 0
    assert main(["loyalty", "earn", "--since", "1900-01-01"]) == 0
    assert main(["loyalty", "expire", "--as-of", (dt.date.today() + dt.timedelta(days=2)).isoformat()]) == 2


def _historical_shop(engine) -> None:
    """Orders of a log that ends on 30 June 1998, and a loyalty member with points."""
    import datetime as dt

    from crm_core import loyalty, platform
    from tests.factories import make_customer, make_order

    with platform.unit_of_work(engine) as s:
        customer = make_customer(s, dt.datetime(1996, 11, 2))
        for day in (dt.date(1997, 1, 3), dt.date(1998, 2, 14), dt.date(1998, 6, 30)):
            make_order(s, customer, dt.datetime.combine(day, dt.time(15)), "35")
        loyalty.enroll(s, platform.SYSTEM, customer.id)


def test_commands_default_to_the_latest_order_of_a_historical_import(engine, monkeypatch, capsys):
    import datetime as dt

    from batch import refresh

    _historical_shop(engine)
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    ran: list = []

    def record(engine, as_of, now):
        ran.append((as_of, now))
        return "recorded"

    monkeypatch.setattr(refresh, "STEPS", (("Record", record),))
    assert main(["refresh", "--backfill-months", "2"]) == 0
    out = capsys.readouterr().out
    assert "Refreshing as of 1998-06-30 (the data runs to 1998-06-30, the latest order)" in out
    assert "Backfill as of 1998-04-30" in out and "Backfill as of 1998-05-31" in out
    # each refresh stamps its history late on its own date, so stages and memberships line up with the data
    assert ran == [(dt.date(1998, 4, 30), dt.datetime(1998, 4, 30, 23)), (dt.date(1998, 5, 31), dt.datetime(1998, 5, 31, 23)),
                   (dt.date(1998, 6, 30), dt.datetime(1998, 6, 30, 23))]
    # a backfill that would reach before 1900 from the data date is refused before anything runs
    assert main(["refresh", "--backfill-months", str((1998 - 1900) * 12 + 6)]) == 2
    assert "reaches back before 1900-01-01 from 1998-06-30: pick at most 1,181" in capsys.readouterr().err
    assert len(ran) == 3
    assert main(["loyalty", "expire"]) == 0
    assert "as of 1998-06-30." in capsys.readouterr().out
    assert main(["sla", "check"]) == 0
    assert main(["backtest", "--as-of", "1998-03-31", "--horizon-days", "120"]) == 2
    assert "after the latest order (1998-06-30)" in capsys.readouterr().err


def test_commands_default_to_today_on_live_data(engine, monkeypatch, capsys):
    import datetime as dt

    from batch import refresh
    from tests.factories import make_customer, make_order

    with platform.unit_of_work(engine) as s:
        make_order(s, make_customer(s, dt.datetime(2024, 1, 1)), dt.datetime.now() - dt.timedelta(days=2), "20")
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    monkeypatch.setattr(refresh, "STEPS", (("Record", lambda engine, as_of, now: "recorded"),))
    assert main(["refresh"]) == 0
    assert f"Refreshing as of {dt.date.today().isoformat()}\n" in capsys.readouterr().out
    assert main(["loyalty", "expire"]) == 0
    assert f"as of {dt.date.today().isoformat()}." in capsys.readouterr().out


def test_ctas_run_reports_each_rule(db_url, capsys):
    import datetime as dt

    from tests.factories import make_customer, make_order

    assert main(["db", "upgrade"]) == 0
    engine = make_engine(db_url)
    with platform.unit_of_work(engine) as s:
        c = make_customer(s, dt.datetime(2024, 1, 1))
        make_order(s, c, dt.datetime(2024, 3, 1), 20)
    engine.dispose()
    capsys.readouterr()
    assert main(["ctas", "run"]) == 0
    out = capsys.readouterr().out
    assert "Churn risk became high: skipped (no churn predictions" in out
    assert "Detractor NPS answer: skipped (no NPS answers)" in out
    assert "snoozed CTAs woke up (as of 2024-03-01)" in out
    assert main(["ctas", "run", "--as-of", "2999-01-01"]) == 2
