"""The application factory: `create_app()` serves the database `CRM_DATABASE_URL` names."""

from __future__ import annotations

import logging
from collections.abc import Callable

from fastapi import FastAPI
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from crm_core import platform
from db import migrate
from db.engine import database_url, make_engine, session_factory

from . import errors
from .limits import Limiter, limiter_from_environment
from .routes import ROUTERS
from .routes.records import start_thread

DESCRIPTION = """The Customer Intelligence API: the same customers, segments, scores, service desk,
loyalty and privacy services the app's pages use, with the same permissions.

Authenticate with a personal token (`Authorization: Bearer crm_...`) that acts with its user's role.
Errors have one shape, `{"error": {"type", "code", "message", "param"}}`. POST takes an
`Idempotency-Key`; updates need `If-Match` with the ETag of the last read; every response carries
`RateLimit-*` headers. Lists page with `limit` and `after` (the `next_after` of the previous page);
lists that had numbered pages still take `page` and `page_size`.
"""
log = logging.getLogger("crm.api")
# No "SELECT 1" before every request's connection (6% of a customer read at 500 requests/s): a connection
# the database dropped fails its request with a 503 instead, and SQLAlchemy then replaces the whole pool.
ENGINE_OPTIONS = {"pool_pre_ping": False}


def fail_interrupted_jobs(sessions) -> None:
    """At start: jobs left queued or running by a process that stopped are failed with the reason."""
    try:
        with platform.unit_of_work(sessions) as session:
            failed = platform.fail_stale_jobs(session)
    except (SQLAlchemyError, platform.DomainError):  # the API still starts; reading a job checks it again
        log.warning("interrupted jobs not checked at start", exc_info=True)
        return
    if failed:
        log.warning("jobs interrupted by a stopped worker, now failed: %s", ", ".join(map(str, failed)))


class RateLimitHeaders:
    """Adds the caller's RateLimit-* headers (set by authentication) to every response, errors included."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message) -> None:
            if message["type"] == "http.response.start":
                extra = (scope.get("state") or {}).get("ratelimit")
                if extra:
                    message["headers"] = [*message.get("headers", []),
                                          *((k.lower().encode(), v.encode()) for k, v in extra.items())]
            await send(message)

        await self.app(scope, receive, send_with_headers)


def create_app(engine: Engine | None = None, limiter: Limiter | None = None,
               job_runner: Callable[[Callable[[], None]], None] | None = None) -> FastAPI:
    """The API over `engine` (default: the configured database, migrated to head on start). Jobs run in
    a thread of the serving process unless `job_runner` runs them otherwise (tests run them at once)."""
    if engine is None:
        url = database_url()
        migrate.ensure_migrated(url)
        engine = make_engine(url, **ENGINE_OPTIONS)
    app = FastAPI(title="Customer Intelligence API", version="1.0", description=DESCRIPTION,
                  responses=errors.ERROR_RESPONSES)
    app.state.engine = engine
    app.state.sessions = session_factory(engine)
    app.state.limiter = limiter or limiter_from_environment()
    app.state.job_runner = job_runner or start_thread
    fail_interrupted_jobs(app.state.sessions)
    errors.install(app)
    for router in ROUTERS:
        app.include_router(router)
    app.add_middleware(RateLimitHeaders)
    return app
