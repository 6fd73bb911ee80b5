"""What every route uses: the database of the app, the acting token's user, units of work, safe
retries (Idempotency-Key) and edits (ETag / If-Match), and the rate-limit headers."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any

import orjson
from fastapi import Depends, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session

from crm_core import platform

from .errors import ApiError

bearer = HTTPBearer(auto_error=False, description="A personal API token (crm_...), from the API tokens page "
                                                  "or `crm tokens create USERNAME`.")
Work = Callable[[Session], Any]


def _sessions(request: Request):
    return request.app.state.sessions


def current_actor(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer),
                  ) -> Iterator[platform.TokenActor]:
    """The token's user (checked on every request, so a revocation takes effect at once), rate limited.

    The session that checks the token is the request's unit of work too (`unit`), so a request costs
    one connection and one transaction; it is closed here whatever happens."""
    token = credentials.credentials if credentials is not None else None
    session = _sessions(request)()
    try:
        try:
            actor = platform.authenticate_token(session, token)
        except OperationalError as exc:
            raise platform.ServiceUnavailable("The database could not be reached. Try again in a moment.") from exc
        quota = request.app.state.limiter.hit(f"token:{actor.token_id}")
        request.state.ratelimit = quota.headers()
        if quota.exceeded:
            raise ApiError(429, "rate_limit_error", "rate_limited",
                           f"Too many requests: {quota.limit} per {request.app.state.limiter.window} s for a token; "
                           f"retry in {quota.reset} s.", headers={"Retry-After": str(quota.reset)})
        request.state.session = session
        yield actor
    finally:
        session.close()


Actor = Depends(current_actor)


def read(request: Request, actor: platform.Actor, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """`fn(session, actor, ...)` in the request's unit of work."""
    with unit(request) as session:
        return fn(session, actor, *args, **kwargs)


@contextmanager
def unit(request: Request) -> Iterator[Session]:
    """The request's unit of work, on the session that authenticated it (committed or rolled back here)."""
    session = getattr(request.state, "session", None)
    with platform.unit_of_work((lambda: session) if session is not None else _sessions(request)) as work:
        yield work


def _utc(moment: dt.datetime) -> str:
    """Times are stored in UTC without an offset; clients get RFC 3339 with one."""
    return (moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)).isoformat().replace("+00:00", "Z")


def _default(value: Any) -> Any:
    """What orjson does not write itself, as FastAPI's encoder would: times in UTC, decimals as numbers."""
    if isinstance(value, dt.datetime):
        return _utc(value)
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value.as_tuple().exponent >= 0 else float(value)  # type: ignore[operator]
    if isinstance(value, set | frozenset):
        return list(value)
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return jsonable_encoder(value, custom_encoder={dt.datetime: _utc})


def encode(content: Any) -> str:
    """A response body: orjson (several times the standard library's speed on a Customer 360), with
    FastAPI's encoder for anything it does not know."""
    try:
        return orjson.dumps(content, default=_default,
                            option=orjson.OPT_PASSTHROUGH_DATETIME | orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY
                            ).decode()
    except orjson.JSONEncodeError:  # what orjson refuses (an integer beyond 64 bits): the standard library
        return json.dumps(jsonable_encoder(content, custom_encoder={dt.datetime: _utc}), separators=(",", ":"))


def json_response(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(encode(content), status_code=status, media_type="application/json", headers=headers)


def _canonical(payload: BaseModel | dict | None) -> bytes:
    data = payload.model_dump(mode="json") if isinstance(payload, BaseModel) else payload
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str).encode()


def post(request: Request, actor: platform.TokenActor, payload: BaseModel | dict | None, work: Work,
         status: int = 201, headers: Callable[[Any], dict[str, str]] | None = None,
         stored: Callable[[Any], Any] | None = None) -> Response:
    """Run a POST's work; with an Idempotency-Key the first response is stored in the same transaction
    and replayed for 24 hours, and the key with a different request is a 409. `stored` gives what
    is kept for a replay when the response holds a secret that must not be stored (a new token)."""
    key = request.headers.get("Idempotency-Key")
    path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    fingerprint = platform.request_fingerprint("POST", path, _canonical(payload))
    with unit(request) as session:
        if key is not None:
            key = platform.check_idempotency_key(key)
            earlier = platform.stored_response(session, actor.id, key, fingerprint)
            if earlier is not None:
                return Response(earlier[1], status_code=earlier[0], media_type="application/json",
                                headers={"Idempotent-Replayed": "true"})
        result = work(session)
        body = encode(result)
        if key is not None:
            kept = body if stored is None else encode(stored(result))
            platform.store_response(session, actor.id, key, fingerprint, status, kept)
    return Response(body, status_code=status, media_type="application/json",
                    headers=headers(result) if headers else None)


def etag(version: int) -> str:
    return f'"{version}"'


def if_match(request: Request) -> int:
    """The version an edit was read at, from If-Match; 428 without it."""
    value = request.headers.get("If-Match")
    if not value:
        raise ApiError(428, "invalid_request_error", "precondition_required",
                       "Send If-Match with the ETag from your last read, so a concurrent change is not overwritten.",
                       param="If-Match")
    tag = value.strip().removeprefix("W/").strip('"')
    if not tag.isdigit():
        raise ApiError(412, "invalid_request_error", "precondition_failed",
                       "If-Match must be the ETag from your last read, such as \"3\".", param="If-Match")
    return int(tag)


@contextmanager
def precondition() -> Iterator[None]:
    """A stale edit (the record's version moved on) is a 412, never a silent overwrite."""
    try:
        yield
    except platform.ConflictError as exc:
        raise ApiError(412, "invalid_request_error", "precondition_failed", str(exc), param="If-Match") from exc


def page_args(limit: int, after: str | None) -> tuple[int, int | None]:
    """A keyset cursor is the last id of the previous page, sent back as `after`."""
    if after is None or after == "":
        return limit, None
    if not after.isdigit():
        raise ApiError(400, "invalid_request_error", "invalid", "after must be the next_after of a previous page.",
                       param="after")
    return limit, int(after)
