"""Safe retries over the API: the first response to a POST with an Idempotency-Key is kept for a day
and replayed to the same user; the same key with a different request is refused."""

from __future__ import annotations

import datetime as dt
import hashlib

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from crm_core.platform.errors import ConflictError, ValidationError
from crm_core.platform.sql import rows_affected
from db.models import ApiIdempotencyKey, utcnow

REPLAY_WINDOW = dt.timedelta(hours=24)
MAX_KEY_LENGTH = 255


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    """What makes two requests 'the same': method, path with its query, and the body."""
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + body).hexdigest()


def check_idempotency_key(key: str) -> str:
    key = key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationError(f"An Idempotency-Key has 1 to {MAX_KEY_LENGTH} characters.")
    return key


def stored_response(session: Session, user_id: int, key: str, fingerprint: str,
                    now: dt.datetime | None = None) -> tuple[int, str] | None:
    """(status, body) of the first request with this key within the window, or None."""
    now = now or utcnow()
    row = session.scalar(select(ApiIdempotencyKey).where(
        ApiIdempotencyKey.user_id == user_id, ApiIdempotencyKey.key == key))
    if row is None:
        return None
    if row.expires_at <= now:
        session.delete(row)
        session.flush()
        return None
    if row.request_hash != fingerprint:
        raise ConflictError("This Idempotency-Key was already used for a different request; use a new key.")
    return row.status_code, row.response_body


def store_response(session: Session, user_id: int, key: str, fingerprint: str, status: int, body: str,
                   now: dt.datetime | None = None) -> None:
    """Keep the response in the caller's transaction; a concurrent request with the same key that
    finished first wins, and this one is refused (and rolled back with its work)."""
    now = now or utcnow()
    session.add(ApiIdempotencyKey(user_id=user_id, key=key, request_hash=fingerprint, status_code=status,
                                  response_body=body, created_at=now, expires_at=now + REPLAY_WINDOW))
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError("Another request with this Idempotency-Key finished first; "
                            "retry to receive its response.") from exc


def purge_idempotency_keys(session: Session, now: dt.datetime | None = None) -> int:
    result = session.execute(delete(ApiIdempotencyKey).where(ApiIdempotencyKey.expires_at <= (now or utcnow())))
    return rows_affected(result)
