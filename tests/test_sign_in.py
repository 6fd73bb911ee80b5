"""Sign-in gives nothing away, and many people signing in at once all get in (SQLite and PostgreSQL)."""

from __future__ import annotations

import datetime as dt
import threading

import pytest
from argon2 import PasswordHasher
from sqlalchemy import select

from crm_core import platform
from crm_core.platform import users
from db.engine import session_factory
from db.models import AuditLog, User
from tests.factories import make_user

REFUSED = "^Unknown username or wrong password.$"


class CountingHasher(PasswordHasher):
    """The test hasher, counting password checks."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8192, parallelism=1)
        self.verified = 0

    def verify(self, hash, password):  # noqa: A002 - argon2's own parameter name
        self.verified += 1
        return super().verify(hash, password)


def test_every_failure_checks_one_password_and_says_the_same(session, monkeypatch):
    """Unknown, wrong, deactivated and locked: one argon2 check each (the same time) and one message."""
    hasher = CountingHasher()
    monkeypatch.setattr(users, "_hasher", hasher)
    admin = make_user(session, "admin", "boss", password="quiet-river-stone")
    make_user(session, "analyst", "real", password="amber-window-seven")
    gone = make_user(session, "analyst", "gone", password="copper-kettle-song")
    platform.set_active(session, admin, gone.id, False)
    locked = make_user(session, "analyst", "locked", password="silent-meadow-owl")
    locked.locked_until = dt.datetime(2030, 1, 1)
    session.commit()
    for username, password in [("nobody", "whatever-you-like"), ("real", "wrong"), ("gone", "wrong"),
                               ("locked", "wrong")]:
        before = hasher.verified
        with pytest.raises(platform.AuthenticationError, match=REFUSED):
            platform.authenticate(session, username, password)
        assert hasher.verified - before == 1, username
    # Who gives the right password learns why they cannot get in.
    with pytest.raises(platform.AuthenticationError, match="deactivated"):
        platform.authenticate(session, "gone", "copper-kettle-song")
    with pytest.raises(platform.AuthenticationError, match="locked for another"):
        platform.authenticate(session, "locked", "silent-meadow-owl")


def test_sign_in_bookkeeping_does_not_bump_the_version(session):
    """Bookkeeping is not an edit: an admin's form open on the user still saves afterwards."""
    user = make_user(session, "analyst", "vera", password="linen-harbour-bell")
    session.commit()
    version = user.version
    platform.authenticate(session, "vera", "linen-harbour-bell")
    with pytest.raises(platform.AuthenticationError):
        platform.authenticate(session, "vera", "wrong")
    session.expire_all()
    assert session.get(User, user.id).version == version


def _sign_in_together(engine, usernames: list[str], password_of) -> list[str]:
    """Sign each username in from its own thread and unit of work, all released at once."""
    barrier = threading.Barrier(len(usernames))
    outcomes: list[str] = [""] * len(usernames)

    def attempt(index: int, username: str) -> None:
        barrier.wait()
        try:
            with platform.unit_of_work(session_factory(engine), write=True) as s:
                platform.authenticate(s, username, password_of(username))
            outcomes[index] = "ok"
        except Exception as exc:  # noqa: BLE001 - the test reports what each got
            outcomes[index] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=attempt, args=(i, u)) for i, u in enumerate(usernames)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return outcomes


def test_twenty_people_sign_in_at_once(engine):
    with platform.unit_of_work(session_factory(engine)) as s:
        for n in range(20):
            make_user(s, "analyst", f"person{n}", password=f"secret-of-number-{n}")
    outcomes = _sign_in_together(engine, [f"person{n}" for n in range(20)], lambda u: f"secret-of-number-{u.removeprefix('person')}")
    assert outcomes == ["ok"] * 20


def test_twenty_sessions_of_one_account_sign_in_at_once(engine):
    with platform.unit_of_work(session_factory(engine)) as s:
        make_user(s, "success_manager", "shared", password="violet-canyon-drum")
    outcomes = _sign_in_together(engine, ["shared"] * 20, lambda _: "violet-canyon-drum")
    assert outcomes == ["ok"] * 20
    with platform.unit_of_work(session_factory(engine)) as s:
        assert s.scalar(select(User.last_login_at).where(User.username == "shared")) is not None


def test_twenty_wrong_passwords_at_once_count_and_lock(engine):
    with platform.unit_of_work(session_factory(engine)) as s:
        make_user(s, "support_agent", "target", password="maple-orbit-flute")
    outcomes = _sign_in_together(engine, ["target"] * 20, lambda _: "wrong")
    assert outcomes == ["AuthenticationError: Unknown username or wrong password."] * 20
    with platform.unit_of_work(session_factory(engine)) as s:
        locked_until = s.scalar(select(User.locked_until).where(User.username == "target"))
    assert locked_until is not None


def test_twelve_redemptions_at_once_through_page_writes_all_land(engine):
    """What the Loyalty page does (context.act: a write unit of work): none told the database is busy."""
    from crm_core import loyalty
    from crm_core.loyalty import ledger
    from db.models import LoyaltyAccount

    from .factories import make_customer

    with platform.unit_of_work(session_factory(engine)) as s:
        customer = make_customer(s, dt.datetime(2024, 1, 1))
        loyalty.enroll(s, platform.SYSTEM, customer.id)
        ledger.post_entry(s, s.scalars(select(LoyaltyAccount)).one(), "earn", 1200, platform.SYSTEM, reason="seed")
        customer_id = customer.id
    barrier = threading.Barrier(12)
    outcomes = [""] * 12

    def redeem(index: int) -> None:
        barrier.wait()
        try:
            with platform.unit_of_work(session_factory(engine), write=True) as s:
                loyalty.redeem(s, platform.SYSTEM, customer_id, 100, "Voucher")
            outcomes[index] = "ok"
        except Exception as exc:  # noqa: BLE001 - the test reports what each got
            outcomes[index] = f"{type(exc).__name__}: {exc}"

    threads = [threading.Thread(target=redeem, args=(i,)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert outcomes == ["ok"] * 12
    with session_factory(engine)() as s:
        assert loyalty.recompute_balance(s, customer_id)["balance"] == 0


def test_every_refused_sign_in_is_audited_an_unknown_username_too(session):
    make_user(session, "analyst", "known", password="amber-window-seven")
    session.commit()
    for username in ("known", "nobody-here"):
        with pytest.raises(platform.AuthenticationError, match=REFUSED):
            platform.authenticate(session, username, "wrong")
        session.rollback()  # what the caller's unit of work does: the audit row is committed already
    rows = session.execute(select(AuditLog.entity_id, AuditLog.after).where(
        AuditLog.action == "auth.sign_in_failed").order_by(AuditLog.id)).all()
    assert len(rows) == 2 and rows[1].entity_id is None
    assert "nobody-here" not in str(rows[1].after)
