"""The `crm` command never prints a traceback: bad input, a missing revision, a locked database or a
bug all end in one line on stderr and exit 2; a bug's traceback goes to the error log under an id."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys

import pytest

from crm_cli import main as cli
from crm_cli.main import main


@pytest.fixture
def db_url(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    monkeypatch.setenv("CRM_ERROR_LOG", str(tmp_path / "errors.log"))
    return url


def one_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


def test_an_unknown_revision_is_one_line(db_url, capsys):
    assert main(["db", "upgrade", "nosuchrev"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "nosuchrev" in line and "'head'" in line


def test_an_unknown_revision_as_a_process_is_one_line(db_url):
    done = subprocess.run([sys.executable, "-m", "crm_cli.main", "db", "upgrade", "nosuchrev"],
                          capture_output=True, text=True, env=dict(os.environ), timeout=120)
    assert done.returncode == 2
    one_line(done.stderr)


def test_a_locked_database_is_one_line(db_url, tmp_path, capsys, monkeypatch):
    """Another process holds the write lock of the SQLite file for longer than the busy timeout."""
    assert main(["db", "upgrade"]) == 0
    monkeypatch.setattr("db.engine.SQLITE_BUSY_TIMEOUT_MS", 200)
    holder = sqlite3.connect(tmp_path / "cli.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password-for-her\n"))
    try:
        assert main(["users", "create", "maria", "--role", "analyst"]) == 2
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    line = one_line(capsys.readouterr().err)
    assert "busy" in line


def test_upgrades_started_at_once_on_a_new_sqlite_file_all_succeed(db_url):
    """The first migrates; the others wait for its write lock and then find the schema at head."""
    started = [subprocess.Popen([sys.executable, "-m", "crm_cli.main", "db", "upgrade"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=dict(os.environ)) for _ in range(3)]
    results = [(p.wait(timeout=120), p.stderr.read()) for p in started]
    for process in started:
        process.stdout.close()
        process.stderr.close()
    assert results == [(0, "")] * 3


def test_an_upgrade_that_fails_half_way_leaves_the_new_file_empty(db_url, tmp_path, capsys):
    """All migrations run in one transaction, so a second upgrade waiting for the lock can never read
    a version half-way (and run the next migration again); a failure rolls every one of them back."""
    holder = sqlite3.connect(tmp_path / "cli.sqlite")
    holder.execute("CREATE TABLE vouchers (id INTEGER PRIMARY KEY)")  # the last migration creates it
    holder.commit()
    assert main(["db", "upgrade"]) == 2
    assert "vouchers" in one_line(capsys.readouterr().err)
    tables = {row[0] for row in holder.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    holder.close()
    assert tables == {"vouchers"}


def test_a_bug_prints_an_error_id_and_logs_the_trace(db_url, tmp_path, capsys, monkeypatch):
    def broken(args):
        raise ZeroDivisionError("secret internals: SELECT * FROM users")

    monkeypatch.setattr(cli, "cmd_segments_list", broken)
    assert main(["segments", "list"]) == 2
    line = one_line(capsys.readouterr().err)
    assert "error id" in line and "SELECT" not in line
    error_id = line.split("error id ")[1].split(")")[0]
    logged = (tmp_path / "errors.log").read_text()
    assert error_id in logged and "ZeroDivisionError" in logged and "Traceback" in logged


def test_forecast_horizon_is_bounded(db_url, capsys):
    assert main(["forecast", "--horizon-days", "100000"]) == 2
    assert "--horizon-days" in one_line(capsys.readouterr().err)
