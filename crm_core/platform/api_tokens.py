"""Personal API tokens: created by a user for themself (or by an admin or an operator for anyone),
shown once, stored as a SHA-256 digest, optionally read-only, with an expiry, revocable at once.

A token is 32 random bytes, so a fast digest is as safe as a slow password hash and lets every
request be checked with one indexed lookup. A token acts with its user's current role: a role
change or a deactivated account takes effect on the next request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor, TokenActor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import AuthenticationError, NotFound, PermissionDenied, ValidationError
from crm_core.platform.paging import FIRST, Page, SortKey, check_limit, fetch_rows
from crm_core.platform.permissions import allowed, require
from db.models import ApiToken, User, utcnow

TOKEN_PREFIX = "crm_"
MAX_EXPIRY_DAYS = 3650
LAST_USED_PRECISION = dt.timedelta(minutes=1)  # last use is written at most once a minute per token
MAX_TOKEN_NAME = 100


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _user(session: Session, user_id: Any) -> User:
    user = session.get(User, user_id) if isinstance(user_id, int) and not isinstance(user_id, bool) else None
    if user is None:
        raise NotFound(f"No user with id {user_id}.")
    return user


def user_by_name(session: Session, username: str) -> User:
    user = session.scalar(select(User).where(User.username == (username or "").strip().lower()))
    if user is None:
        raise NotFound(f"No user named {username!r}.")
    return user


def _may_manage(actor: Actor, user_id: int) -> None:
    """Own tokens need tokens.own; anybody else's need tokens.manage."""
    require(actor, "tokens.own")
    if actor.id != user_id and not allowed(actor.role, "tokens.manage"):
        raise PermissionDenied(f"{actor.username} ({actor.role}) may manage only their own API tokens.")


def create_token(session: Session, actor: Actor, user_id: int, name: str = "", *, read_only: bool = False,
                 expires_days: int | None = None, now: dt.datetime | None = None) -> tuple[ApiToken, str]:
    """A new token for the user; returns the row and the token itself, which is never stored or shown again."""
    user = _user(session, user_id)
    _may_manage(actor, user.id)
    if not user.is_active:
        raise ValidationError(f"{user.username} is deactivated; activate the account before giving it a token.")
    name = " ".join(str(name or "").split()) or "API token"
    if len(name) > MAX_TOKEN_NAME:
        raise ValidationError(f"A token name has at most {MAX_TOKEN_NAME} characters.")
    if expires_days is not None and (isinstance(expires_days, bool) or not isinstance(expires_days, int)
                                     or not 1 <= expires_days <= MAX_EXPIRY_DAYS):
        raise ValidationError(f"A token expires after 1 to {MAX_EXPIRY_DAYS} days (or never).")
    now = now or utcnow()
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = ApiToken(user_id=user.id, name=name, prefix=token[:12], token_hash=digest(token), read_only=bool(read_only),
                   created_at=now, expires_at=now + dt.timedelta(days=expires_days) if expires_days else None)
    session.add(row)
    session.flush()
    record_audit(session, actor, "api_token.create", "api_token", row.id,
                 after={"user": user.username, "name": name, "read_only": row.read_only, "expires_at": row.expires_at})
    return row, token


def authenticate_token(session: Session, token: str | None, now: dt.datetime | None = None) -> TokenActor:
    """The acting user of a bearer token; refuses an unknown, revoked or expired token or an inactive user."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        raise AuthenticationError("Send a personal API token as 'Authorization: Bearer crm_...'.")
    now = now or utcnow()
    # Plain columns, not ORM objects: this runs on every API request.
    row = session.execute(
        select(ApiToken.id, ApiToken.revoked_at, ApiToken.expires_at, ApiToken.last_used_at, ApiToken.read_only,
               User.id.label("user_id"), User.username, User.role, User.is_active)
        .join(User, User.id == ApiToken.user_id).where(ApiToken.token_hash == digest(token))
    ).first()
    if row is None:
        raise AuthenticationError("This API token is not valid.")
    if row.revoked_at is not None:
        raise AuthenticationError("This API token was revoked.")
    if row.expires_at is not None and row.expires_at <= now:
        raise AuthenticationError("This API token has expired; create a new one.")
    if not row.is_active:
        raise AuthenticationError(f"The account {row.username} is deactivated.")
    if row.last_used_at is None or now - row.last_used_at >= LAST_USED_PRECISION:
        stored = session.get(ApiToken, row.id)  # rare (once per LAST_USED_PRECISION): through the ORM
        if stored is not None:
            stored.last_used_at = now
            session.flush()
    return TokenActor(row.user_id, row.username, row.role, row.is_active, row.id, row.read_only)


def revoke_token(session: Session, actor: Actor, token_id: Any, now: dt.datetime | None = None) -> ApiToken:
    """Revoke a token at once; a token already revoked stays revoked."""
    row = session.get(ApiToken, token_id) if isinstance(token_id, int) and not isinstance(token_id, bool) else None
    if row is None:
        raise NotFound(f"No API token with id {token_id}.")
    _may_manage(actor, row.user_id)
    if row.revoked_at is None:
        row.revoked_at = now or utcnow()
        row.revoked_by = actor.username
        session.flush()
        record_audit(session, actor, "api_token.revoke", "api_token", row.id, after={"revoked_at": row.revoked_at})
    return row


def list_tokens(session: Session, viewer: Actor, everyone: bool = False,
                now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """The viewer's own tokens, or with `everyone` (tokens.manage) every user's, newest first."""
    query = _token_query(viewer, everyone)
    rows = session.execute(query.order_by(*(clause for key in TOKEN_ORDER for clause in key.clauses()))).all()
    return [_token_row(t, username, now or utcnow()) for t, username in rows]


TOKEN_ORDER = (SortKey(ApiToken.created_at, descending=True), SortKey(ApiToken.id, descending=True))


def token_page(session: Session, viewer: Actor, everyone: bool = False, limit: int = 100, after: str = FIRST,
               now: dt.datetime | None = None) -> Page:
    """`limit` tokens (as `list_tokens`) after the cursor `after`, by keyset."""
    query = _token_query(viewer, everyone)
    check_limit(limit, 1000, "limit")
    rows, next_after = fetch_rows(session, query, TOKEN_ORDER, "tokens", page_size=limit, after=after)
    return Page([_token_row(t, username, now or utcnow()) for t, username, *_key in rows], None, 0, limit, next_after)


def _token_query(viewer: Actor, everyone: bool):
    require(viewer, "tokens.own")
    if everyone:
        require(viewer, "tokens.manage")
    query = select(ApiToken, User.username).join(User, User.id == ApiToken.user_id)
    return query if everyone else query.where(ApiToken.user_id == viewer.id)


def _token_row(t: ApiToken, username: str, now: dt.datetime) -> dict[str, Any]:
    return {"id": t.id, "user": username, "name": t.name, "prefix": t.prefix, "read_only": t.read_only,
            "created_at": t.created_at, "expires_at": t.expires_at, "last_used_at": t.last_used_at,
            "status": token_status(t, now)}


def token_status(row: ApiToken, now: dt.datetime) -> str:
    if row.revoked_at is not None:
        return "revoked"
    if row.expires_at is not None and row.expires_at <= now:
        return "expired"
    return "active"
