"""Sign-in, lockout, administration, permissions and the audit trail."""

import datetime as dt

import pytest
from sqlalchemy import select

from crm_core import platform
from db.engine import make_engine, session_factory
from db.models import AuditLog, User
from tests.conftest import clear
from tests.factories import make_user


def test_sign_in_with_correct_password(session):
    make_user(session, "analyst", "ana", password="s3cret-passphrase")
    session.commit()
    signed_in = platform.authenticate(session, "ANA ", "s3cret-passphrase")
    assert (signed_in.username, signed_in.role) == ("ana", "analyst")
    stored = session.scalar(select(User.password_hash).where(User.username == "ana"))
    assert stored.startswith("$argon2") and "s3cret-passphrase" not in stored


def test_five_failures_lock_the_account_for_fifteen_minutes(session):
    make_user(session, "support_agent", "sam", password="right-password")
    session.commit()
    now = dt.datetime(2026, 3, 1, 9, 0)
    for _ in range(5):  # the fifth failure locks the account, and says no more than the others
        with pytest.raises(platform.AuthenticationError, match="^Unknown username or wrong password.$"):
            platform.authenticate(session, "sam", "wrong", now=now)
    # Even the right password is refused while locked, and only the right password learns why...
    with pytest.raises(platform.AuthenticationError, match="locked for another 1 minute"):
        platform.authenticate(session, "sam", "right-password", now=now + dt.timedelta(minutes=14))
    with pytest.raises(platform.AuthenticationError, match="^Unknown username or wrong password.$"):
        platform.authenticate(session, "sam", "wrong", now=now + dt.timedelta(minutes=14))
    # ...and accepted once the lock has expired.
    assert platform.authenticate(session, "sam", "right-password", now=now + dt.timedelta(minutes=16)).username == "sam"
    failures = session.scalars(select(AuditLog).where(AuditLog.action == "auth.sign_in_failed")).all()
    assert len(failures) == 6


def test_failed_attempts_survive_the_callers_rollback(engine):
    with platform.unit_of_work(session_factory(engine)) as s:
        make_user(s, "analyst", "carla", password="good-password")
    with pytest.raises(platform.AuthenticationError), platform.unit_of_work(session_factory(engine)) as s:
        platform.authenticate(s, "carla", "bad")
    with platform.unit_of_work(session_factory(engine)) as s:
        assert s.scalar(select(User.failed_login_count).where(User.username == "carla")) == 1


def test_deactivated_user_cannot_sign_in(session):
    admin = make_user(session, "admin", "root1")
    target = make_user(session, "analyst", "gone", password="faded-away-phrase")
    platform.set_active(session, admin, target.id, False)
    session.commit()
    with pytest.raises(platform.AuthenticationError, match="deactivated"):
        platform.authenticate(session, "gone", "faded-away-phrase")


@pytest.mark.parametrize("username,role,password,message", [
    ("ab", "analyst", "long-enough-phrase", "3-64 characters"),
    ("good.name", "wizard", "long-enough-phrase", "Unknown role"),
    ("good.name", "analyst", "short", "at least 12"),
    ("bad name!", "analyst", "long-enough-phrase", "3-64 characters"),
])
def test_create_user_validation(session, username, role, password, message):
    with pytest.raises(platform.ValidationError, match=message):
        platform.create_user(session, platform.SYSTEM, username, role, password)


def test_duplicate_username_refused(session):
    make_user(session, "analyst", "dup")
    with pytest.raises(platform.ValidationError, match="taken"):
        platform.create_user(session, platform.SYSTEM, "DUP", "executive", "long-enough-phrase")


@pytest.mark.parametrize("role", ["analyst", "success_manager", "support_agent", "executive"])
def test_only_admins_manage_users(session, role):
    actor = make_user(session, role)
    target = make_user(session, "analyst")
    with pytest.raises(platform.PermissionDenied):
        platform.create_user(session, actor, "newbie", "analyst", "long-enough-phrase")
    with pytest.raises(platform.PermissionDenied):
        platform.change_role(session, actor, target.id, "admin")
    with pytest.raises(platform.PermissionDenied):
        platform.reset_password(session, actor, target.id, "another-passphrase")
    with pytest.raises(platform.PermissionDenied):
        platform.list_users(session, actor)


def test_changes_are_audited_with_before_and_after(session):
    admin = make_user(session, "admin", "chief")
    target = make_user(session, "analyst", "moves")
    platform.change_role(session, admin, target.id, "success_manager")
    session.commit()
    entry = session.scalars(select(AuditLog).where(AuditLog.action == "user.change_role")).one()
    assert (entry.actor_username, entry.entity_type, entry.entity_id) == ("chief", "user", str(target.id))
    assert entry.before == {"role": "analyst"} and entry.after == {"role": "success_manager"}


def test_stale_edit_is_reported_not_overwritten(session):
    admin = make_user(session, "admin", "boss1")
    target = make_user(session, "analyst", "edited")
    read_version = target.version
    platform.change_role(session, admin, target.id, "executive", expected_version=read_version)
    session.commit()
    with pytest.raises(platform.ConflictError, match="changed by someone else"):
        platform.change_role(session, admin, target.id, "support_agent", expected_version=read_version)
    assert session.get(User, target.id).role == "executive"


def test_last_admin_cannot_be_demoted_or_deactivated(session):
    admin = make_user(session, "admin", "only")
    other = make_user(session, "analyst", "helper")
    with pytest.raises(platform.ValidationError, match="last active administrator"):
        platform.change_role(session, admin, admin.id, "analyst")
    with pytest.raises(platform.ValidationError, match="your own account"):
        platform.set_active(session, admin, admin.id, False)
    platform.change_role(session, admin, other.id, "admin")
    platform.change_role(session, admin, admin.id, "analyst")
    assert session.get(User, admin.id).role == "analyst"


def test_reset_password_unlocks(session):
    admin = make_user(session, "admin", "resetter")
    target = make_user(session, "executive", "locked1", password="old-password")
    session.commit()
    for _ in range(5):
        with pytest.raises(platform.AuthenticationError):
            platform.authenticate(session, "locked1", "nope")
    platform.reset_password(session, admin, target.id, "new-password")
    session.commit()
    assert platform.authenticate(session, "locked1", "new-password").role == "executive"


def test_database_gone_mid_operation_saves_nothing(postgresql_engine):
    """A server connection killed mid-transaction: a clear domain error, the half-done work rolled back.

    (An embedded SQLite database cannot lose its connection; the next test covers it being unreachable.)
    """
    engine = postgresql_engine
    clear(engine)
    factory = session_factory(engine)
    with pytest.raises(platform.DomainError, match="could not be reached"), platform.unit_of_work(factory) as s:
        make_user(s, "admin", "first")
        pid = s.connection().exec_driver_sql("SELECT pg_backend_pid()").scalar()
        with engine.connect() as killer:
            killer.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        make_user(s, "analyst", "second")
    with platform.unit_of_work(factory) as s:
        assert s.scalars(select(User.username)).all() == []


def test_unreachable_database_file_is_a_clear_error(tmp_path):
    (tmp_path / "crm.sqlite").mkdir()  # a directory where the database file should be
    engine = make_engine(f"sqlite:///{tmp_path / 'crm.sqlite'}")
    with pytest.raises(platform.DomainError, match="could not be reached"), platform.unit_of_work(session_factory(engine)) as s:
        make_user(s, "admin", "nobody")
