"""Passwords: at least 12 characters, not common, not built from the username; demo staff only where
the demo is."""

from __future__ import annotations

import pytest
from sqlalchemy import select

import demo
from crm_cli.main import main
from crm_core import platform
from db.engine import make_engine
from db.models import User
from tests.factories import make_user


@pytest.mark.parametrize("password, message", [
    (" " * 8, "at least 12 characters"),
    ("password", "at least 12 characters"),
    (" " * 12, "5 different characters"),
    ("aaaaaaaaaaaaaaaa", "5 different characters"),
    ("Password1234!", "most common"),
    ("passwordpassword", "most common"),
    ("123456789012", "most common"),
    ("qwertyuiop12", "most common"),
    ("!!Welcome2026!!", "most common"),
    ("maria-rocks-2026", "username"),
    ("xMARIAx-long-one", "username"),
])
def test_weak_passwords_are_refused(session, password, message):
    with pytest.raises(platform.ValidationError, match=message):
        platform.create_user(session, platform.SYSTEM, "maria", "analyst", password)
    admin = make_user(session, "admin")
    target = make_user(session, "analyst", "maria")
    with pytest.raises(platform.ValidationError, match=message):
        platform.reset_password(session, admin, target.id, password)


@pytest.mark.parametrize("password", ["correct horse battery", "orchid-lantern-42", "Tr0ub4dor&3xyz"])
def test_good_passwords_are_accepted(session, password):
    assert platform.create_user(session, platform.SYSTEM, "maria", "analyst", password).username == "maria"


def test_the_common_list_is_bundled():
    from crm_core.platform import passwords

    assert {"password", "123456", "qwerty", "iloveyou"} <= passwords.common_passwords()


@pytest.fixture
def external_db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'shop.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    return url


def _active_staff(url: str) -> list[str]:
    with make_engine(url).connect() as connection:
        return list(connection.scalars(select(User.username).where(User.is_active.is_(True))))


def test_seeding_a_configured_database_creates_no_demo_staff(external_db, capsys):
    assert main(["seed", "--customers", "30", "--quiet"]) == 0
    assert "No demo staff can sign in" in capsys.readouterr().out
    assert _active_staff(external_db) == []
    with platform.unit_of_work(make_engine(external_db)) as s, pytest.raises(platform.AuthenticationError):
        platform.authenticate(s, "admin1", demo.demo_password("admin1"))


def test_demo_staff_when_asked_for(external_db):
    assert main(["seed", "--customers", "30", "--quiet", "--demo-users"]) == 0
    assert len(_active_staff(external_db)) == 18  # three of each role
    with platform.unit_of_work(make_engine(external_db)) as s:
        assert platform.authenticate(s, "admin1", demo.demo_password("admin1")).role == "admin"


@pytest.mark.parametrize("password", ["zaq12wsxcde3", "qazwsxedcrfv", "Aa123456789!", "123456789abc"])
def test_keyboard_walks_and_digit_runs_with_a_letter_or_two_are_common(password):
    with pytest.raises(platform.ValidationError, match="most common"):
        platform.check_password(password, "jane")
