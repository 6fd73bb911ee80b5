"""The `crm` command: a contract for operators and scripts."""

import io
import json
import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select

from crm_cli.main import main
from crm_core import users
from db.engine import make_engine, session_scope
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
    with session_scope(make_engine(db_url)) as s:
        assert users.authenticate(s, "maria", "a-long-password").role == "success_manager"


def test_users_create_rejects_bad_input_with_a_message(db_url, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO("short\n"))
    assert main(["users", "create", "maria", "--role", "analyst"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["users", "create", "maria", "--role", "overlord"])


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
