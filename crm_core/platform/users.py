"""Staff accounts: sign-in with argon2 hashes and lockout, and administration."""

from __future__ import annotations

import datetime as dt
import math
import re
import secrets
from dataclasses import dataclass
from functools import lru_cache

from argon2 import PasswordHasher, profiles
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import case, func, select, update
from sqlalchemy.orm import Session

from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import AuthenticationError, NotFound, ValidationError
from crm_core.platform.passwords import check_password
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from db.models import ROLES, User, utcnow

MAX_FAILED_ATTEMPTS = 5
LOCKOUT = dt.timedelta(minutes=15)
USERNAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{2,63}$")

# argon2-cffi's default parameters (RFC 9106's low-memory profile: 3 passes over 64 MiB, 4 lanes) for
# every password, demo staff included. Tests swap in a cheaper hasher (tests/conftest.py).
PASSWORD_HASH_PARAMETERS = profiles.RFC_9106_LOW_MEMORY
_hasher = PasswordHasher.from_parameters(PASSWORD_HASH_PARAMETERS)


def hash_password(password: str) -> str:
    return _hasher.hash(password)




def _validate_role(role: str) -> None:
    if role not in ROLES:
        raise ValidationError(f"Unknown role {role!r}; choose one of: {', '.join(ROLES)}.")


@dataclass(frozen=True)
class SignedInUser:
    """What the UI keeps about the signed-in user (no ORM object across reruns)."""

    id: int
    username: str
    full_name: str
    role: str
    is_active: bool = True


# Every refused sign-in says the same, whatever the reason, so the answer tells nobody which usernames
# exist; who has the right password learns more (deactivated, locked) only after giving it.
SIGN_IN_REFUSED = "Unknown username or wrong password."


@lru_cache(maxsize=4)
def _dummy_hash(hasher: PasswordHasher) -> str:
    """A hash of a password nobody knows, with the hasher's parameters: an unknown username is
    checked against it, so it takes as long to refuse as a wrong password."""
    return hasher.hash(secrets.token_urlsafe(24))


def _password_matches(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password or "")
    except (VerificationError, InvalidHashError):
        return False


def authenticate(session: Session, username: str, password: str, now: dt.datetime | None = None) -> SignedInUser:
    """Check credentials; count failures and lock the account for 15 minutes after five.

    Every failure takes one password check and gives the same message. The bookkeeping (failures,
    lock, last sign-in) is one atomic UPDATE that never conflicts with other sign-ins of the same
    account. Failed attempts are committed before the error is raised, so they count even though
    the caller's unit of work rolls back.
    """
    now = now or utcnow()
    user = session.execute(
        select(User.id, User.username, User.full_name, User.role, User.is_active, User.locked_until,
               User.password_hash).where(User.username == (username or "").strip().lower())
    ).one_or_none()
    if user is None:
        _password_matches(_dummy_hash(_hasher), password)
        # Audited like any refused sign-in, without what was typed (it may be someone's password).
        record_audit(session, SYSTEM, "auth.sign_in_failed", "user", None, after={"unknown_username": True})
        session.commit()
        raise AuthenticationError(SIGN_IN_REFUSED)
    locked = user.locked_until is not None and user.locked_until > now
    if not _password_matches(user.password_hash, password):
        if not locked:  # while locked, failures neither count nor extend the lock
            reached = User.failed_login_count + 1 >= MAX_FAILED_ATTEMPTS
            session.execute(
                update(User).where(User.id == user.id).values(
                    failed_login_count=case((reached, 0), else_=User.failed_login_count + 1),
                    locked_until=case((reached, now + LOCKOUT), else_=User.locked_until),
                )
            )
        record_audit(session, SYSTEM, "auth.sign_in_failed", "user", user.id, after={"locked": locked})
        session.commit()
        raise AuthenticationError(SIGN_IN_REFUSED)
    if not user.is_active:
        raise AuthenticationError("This account is deactivated; ask an administrator.")
    if locked:
        minutes = max(1, math.ceil((user.locked_until - now).total_seconds() / 60))
        raise AuthenticationError(
            f"Too many failed attempts: the account is locked for another {minutes} minute(s).")
    values: dict = {"failed_login_count": 0, "locked_until": None, "last_login_at": now}
    if _hasher.check_needs_rehash(user.password_hash):
        values["password_hash"] = hash_password(password)
    session.execute(update(User).where(User.id == user.id).values(**values))
    record_audit(session, SignedInUser(user.id, user.username, user.full_name, user.role), "auth.sign_in", "user",
                 user.id)
    session.flush()
    return SignedInUser(user.id, user.username, user.full_name, user.role, user.is_active)


def create_user(
    session: Session,
    actor: Actor,
    username: str,
    role: str,
    password: str,
    full_name: str = "",
    email: str | None = None,
) -> User:
    require(actor, "users.manage")
    username = (username or "").strip().lower()
    if not USERNAME_PATTERN.match(username):
        raise ValidationError(
            "A username has 3-64 characters: lower-case letters, digits, '.', '_' or '-', "
            "starting with a letter or digit."
        )
    _validate_role(role)
    check_password(password, username)
    if session.scalar(select(User.id).where(User.username == username)) is not None:
        raise ValidationError(f"The username {username!r} is taken.")
    user = User(
        username=username,
        role=role,
        password_hash=hash_password(password),
        full_name=(full_name or "").strip(),
        email=(email or "").strip() or None,
        is_active=True,
        failed_login_count=0,
    )
    session.add(user)
    session.flush()
    record_audit(session, actor, "user.create", "user", user.id, after={"username": username, "role": role})
    return user


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def _active_admins(session: Session) -> int:
    return session.scalar(
        select(func.count()).select_from(User).where(User.role == "admin", User.is_active.is_(True))
    ) or 0


def _ensure_not_last_admin(session: Session, user: User) -> None:
    if user.role == "admin" and user.is_active and _active_admins(session) <= 1:
        raise ValidationError("This is the last active administrator; make another admin first.")


def change_role(session: Session, actor: Actor, user_id: int, role: str, expected_version: int | None = None) -> User:
    require(actor, "users.manage")
    _validate_role(role)
    user = get_user(session, user_id)
    check_version(user, expected_version, f"User {user.username}")
    if role == user.role:
        return user
    if role != "admin":
        _ensure_not_last_admin(session, user)
    before = {"role": user.role}
    user.role = role
    session.flush()
    record_audit(session, actor, "user.change_role", "user", user.id, before=before, after={"role": role})
    return user


def reset_password(session: Session, actor: Actor, user_id: int, new_password: str) -> User:
    require(actor, "users.manage")
    user = get_user(session, user_id)
    check_password(new_password, user.username)
    user.password_hash = hash_password(new_password)
    user.failed_login_count = 0
    user.locked_until = None
    session.flush()
    record_audit(session, actor, "user.reset_password", "user", user.id)
    return user


def set_active(session: Session, actor: Actor, user_id: int, active: bool, expected_version: int | None = None) -> User:
    require(actor, "users.manage")
    user = get_user(session, user_id)
    check_version(user, expected_version, f"User {user.username}")
    if user.is_active == active:
        return user
    if not active:
        if actor.id == user.id:
            raise ValidationError("You cannot deactivate your own account.")
        _ensure_not_last_admin(session, user)
    user.is_active = active
    session.flush()
    record_audit(
        session, actor, "user.activate" if active else "user.deactivate", "user", user.id,
        before={"is_active": not active}, after={"is_active": active},
    )
    return user


def list_users(session: Session, viewer: Actor) -> list[dict]:
    require(viewer, "users.manage")
    users = session.scalars(select(User).order_by(User.role, User.username)).all()
    now = utcnow()
    return [
        {
            "id": u.id,
            "username": u.username,
            "full_name": u.full_name,
            "role": u.role,
            "active": u.is_active,
            "locked": bool(u.locked_until and u.locked_until > now),
            "last_sign_in": u.last_login_at,
            "version": u.version,
        }
        for u in users
    ]


def load_actor(session: Session, signed_in: SignedInUser) -> User:
    """The current database row for a signed-in user (role or activity may have changed)."""
    return get_user(session, signed_in.id)
