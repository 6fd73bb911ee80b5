"""`crm api serve`, `crm tokens create|revoke` and `crm webhooks deliver`.

    crm api serve [--host H] [--port N] [--workers N]          the HTTP API (uvicorn) on CRM_DATABASE_URL
    crm tokens create USERNAME [--read-only] [--expires-days N] [--name NAME]   prints the token, nothing else
    crm tokens revoke TOKEN_ID                                 revoke at once
    crm webhooks deliver [--loop SECONDS]                      collect events into the outbox, deliver what is due
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from crm_core import platform, webhooks
from db import migrate
from db.engine import database_url, make_engine

from .arguments import positive_id


def _session():
    url = database_url()
    migrate.ensure_migrated(url)
    return platform.unit_of_work(make_engine(url))


def cmd_api_serve(args: argparse.Namespace) -> int:
    import uvicorn

    if args.workers < 1 or not 1 <= args.port <= 65535:
        raise platform.ValidationError("--workers is 1 or more and --port between 1 and 65535.")
    migrate.ensure_migrated(database_url())
    # uvicorn logs warnings only by default; say where the API is, as `streamlit run` does
    print(f"Serving the API on http://{args.host}:{args.port} with {args.workers} worker(s); "
          f"documentation at http://{args.host}:{args.port}/docs", file=sys.stderr, flush=True)
    uvicorn.run("api.app:create_app", factory=True, host=args.host, port=args.port, workers=args.workers,
                log_level=args.log_level, access_log=args.log_level == "debug")
    return 0


def cmd_tokens_create(args: argparse.Namespace) -> int:
    with _session() as session:
        user = platform.user_by_name(session, args.username)
        _row, token = platform.create_token(session, platform.SYSTEM, user.id, args.name or "crm tokens create",
                                            read_only=args.read_only, expires_days=args.expires_days)
    print(token)
    return 0


def cmd_tokens_revoke(args: argparse.Namespace) -> int:
    with _session() as session:
        row = platform.revoke_token(session, platform.SYSTEM, args.token_id)
        print(f"Token {row.id} ({row.prefix}…) is revoked.", file=sys.stderr)
    return 0


def _deliver_once() -> dict[str, int]:
    with _session() as session:
        collected = webhooks.collect_events(session, platform.SYSTEM)
    with _session() as session:
        counts = webhooks.deliver_due(session, platform.SYSTEM)
    return {"collected": collected, **counts}


def cmd_webhooks_deliver(args: argparse.Namespace) -> int:
    while True:
        counts = _deliver_once()
        print(json.dumps(counts) if args.json else
              f"{counts['collected']} events queued; {counts['delivered']} delivered, {counts['retrying']} to retry, "
              f"{counts['failed']} given up.", flush=True)
        if not args.loop:
            return 0
        time.sleep(args.loop)


def register(subparsers) -> None:
    api = subparsers.add_parser("api", help="the HTTP API")
    api_sub = api.add_subparsers(dest="api_command", required=True)
    serve = api_sub.add_parser("serve", help="serve the API with uvicorn on the configured database")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="worker processes (share limits through CRM_REDIS_URL)")
    serve.add_argument("--log-level", default="warning", choices=["critical", "error", "warning", "info", "debug"])
    serve.set_defaults(func=cmd_api_serve)

    tokens = subparsers.add_parser("tokens", help="personal API tokens")
    tokens_sub = tokens.add_subparsers(dest="tokens_command", required=True)
    create = tokens_sub.add_parser("create", help="create a token for a user; prints only the token")
    create.add_argument("username")
    create.add_argument("--read-only", action="store_true", help="the token may only read")
    create.add_argument("--expires-days", type=positive_id, default=None, help="expire after N days (default: never)")
    create.add_argument("--name", default="", help="a label for the token")
    create.set_defaults(func=cmd_tokens_create)
    revoke = tokens_sub.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("token_id", type=positive_id)
    revoke.set_defaults(func=cmd_tokens_revoke)

    hooks = subparsers.add_parser("webhooks", help="webhook deliveries")
    hooks_sub = hooks.add_subparsers(dest="webhooks_command", required=True)
    deliver = hooks_sub.add_parser("deliver", help="queue new events and deliver the due ones (signed, with retries)")
    deliver.add_argument("--loop", type=float, default=0, metavar="SECONDS", help="repeat every SECONDS")
    deliver.add_argument("--json", action="store_true", help="print the counts as JSON")
    deliver.set_defaults(func=cmd_webhooks_deliver)
