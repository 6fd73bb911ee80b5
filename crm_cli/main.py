"""`crm` console command.

    crm db upgrade                      migrate the database CRM_DATABASE_URL names to head
    crm seed --customers N --seed S     fill an empty database with a simulated business
    crm users create USERNAME --role R  create a staff user; password from stdin or a prompt
    crm refresh [--as-of DATE]          analytics snapshot, clusters, segments, lifecycle
    crm segments list [--json]          segments with member counts
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import logging
import os
import sys
import time
from pathlib import Path

from sqlalchemy.exc import OperationalError

from crm_core import platform
from db import migrate
from db.engine import PROJECT_ROOT, database_url, make_engine
from db.models import ROLES
from db.private_files import private_file

from .arguments import DATA_DATE_DEFAULT, iso_date

# Modules of crm_cli that add their own subcommands (see _area_commands).
AREA_MODULES: tuple[str, ...] = ("transfer", "models", "customers", "loyalty", "value", "sla", "api", "campaigns",
                                 "success", "privacy", "risk")


def _engine():
    return make_engine(database_url())


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    from alembic.util import CommandError

    url = database_url()
    try:
        migrate.upgrade(url, args.revision)
    except CommandError as exc:
        raise platform.ValidationError(
            f"Cannot migrate to {args.revision!r}: {str(exc).splitlines()[0]}. Name 'head' or a revision such as "
            f"{migrate.head_revision(url)}.") from None
    print(f"Database at revision {args.revision}: {make_engine(url).url.render_as_string(hide_password=True)}")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    import demo

    url = database_url()
    migrate.ensure_migrated(url)
    engine = _engine()
    if not demo.database_is_empty(engine):
        if args.if_empty:
            print("Database already has customers; nothing to seed.")
            return 0
        print("error: the database already has customers; seed only an empty database.", file=sys.stderr)
        return 2
    started = time.perf_counter()

    def progress(step: str, rows: int) -> None:
        print(f"  {time.perf_counter() - started:6.1f}s  {step:<40} {rows:>10,}", flush=True)

    # Demo staff (passwords in the README) only for the embedded demo database, or when asked for.
    demo_users = args.demo_users or not os.environ.get("CRM_DATABASE_URL", "").strip()
    result = demo.seed_database(engine, args.customers, seed=args.seed, progress=None if args.quiet else progress,
                                demo_users=demo_users)
    orders = result.counts.get("orders", 0)
    print(f"Seeded {args.customers:,} customers and {orders:,} orders in {result.seconds:.1f}s.")
    print("Demo staff can sign in with the passwords the README lists." if demo_users else
          "No demo staff can sign in: create your users with `crm users create`.")
    return 0


def _read_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise platform.DomainError("The passwords do not match.")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def cmd_users_create(args: argparse.Namespace) -> int:

    migrate.ensure_migrated(database_url())
    password = _read_password()
    with platform.unit_of_work(_engine(), write=True) as session:
        user = platform.create_user(
            session, platform.SYSTEM, args.username, args.role, password, full_name=args.full_name or "",
            email=args.email,
        )
        print(f"Created user {user.username} ({user.role}).")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    import batch

    if args.as_of is not None:
        platform.check_as_of(args.as_of, "--as-of")
    platform.check_backfill_months(args.backfill_months, args.as_of or dt.date.today())
    migrate.ensure_migrated(database_url())
    if args.if_empty:
        from crm_core import segmentation

        with platform.unit_of_work(_engine()) as session:
            if not segmentation.snapshot_is_empty(session):
                print("Analytics already computed; nothing to refresh.")
                return 0
    engine = _engine()
    data = platform.data_date(engine)
    as_of = args.as_of or data.day
    platform.check_backfill_months(args.backfill_months, as_of)
    historical = f" (the data runs to {data.day.isoformat()}, the latest order)" if data.historical else ""
    print(f"Refreshing as of {as_of.isoformat()}{historical}", flush=True)
    started = time.perf_counter()

    def progress(index: int, total: int, label: str, detail: str) -> None:
        bar = "#" * index + "." * (total - index)
        print(f"  [{bar}] {index}/{total} {label}: {detail} ({time.perf_counter() - started:.1f}s)", flush=True)

    if args.backfill_months:
        batch.backfill(engine, as_of, args.backfill_months, progress=None if args.quiet else progress)
    report = batch.run_refresh(engine, as_of, progress=None if args.quiet else progress, now=data.run_time(as_of),
                               triggered_by="crm refresh")
    if report.failed:
        print(f"Refresh done in {time.perf_counter() - started:.1f}s; the other steps landed.")
        failed = "; ".join(f"{step.label} {step.detail}" for step in report.failed)
        print(f"error: {len(report.failed)} refresh step(s) failed (run {report.run_id}): {failed}", file=sys.stderr)
        return 2
    print(f"Refresh done in {time.perf_counter() - started:.1f}s.")
    return 0


def cmd_segments_list(args: argparse.Namespace) -> int:
    from crm_core import segmentation

    with platform.unit_of_work(_engine()) as session:
        rows = segmentation.list_segments(session, platform.SYSTEM)
    if args.json:
        keys = ("name", "type", "kind", "members", "priority")
        print(json.dumps([{k: row[k] for k in keys} for row in rows], indent=2))
    else:
        for row in rows:
            print(f"{row['name']:<40} {row['type']:<14} {row['kind']:<8} {row['members']:>10,}  priority {row['priority']}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crm", description="Customer Intelligence operations.")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="database schema").add_subparsers(dest="db_command", required=True)
    up = db.add_parser("upgrade", help="migrate the database named by CRM_DATABASE_URL")
    up.add_argument("revision", nargs="?", default="head")
    up.set_defaults(func=cmd_db_upgrade)

    seed = sub.add_parser("seed", help="fill an empty database with demo data")
    seed.add_argument("--customers", type=int, default=10_000, help="number of customers (default 10000)")
    seed.add_argument("--seed", type=int, default=7, help="random seed (default 7)")
    seed.add_argument("--if-empty", action="store_true", help="do nothing when customers exist")
    seed.add_argument("--quiet", action="store_true", help="no progress lines")
    seed.add_argument("--demo-users", action="store_true",
                      help="let the 15 demo staff (passwords in the README) sign in; always so for the embedded "
                           "demo database, never otherwise unless asked")
    seed.set_defaults(func=cmd_seed)

    refresh = sub.add_parser("refresh", help="batch refresh: analytics, clusters, segments, lifecycle")
    refresh.add_argument("--as-of", type=iso_date, help=f"date to compute as of, YYYY-MM-DD (default {DATA_DATE_DEFAULT})")
    refresh.add_argument("--quiet", action="store_true", help="no progress lines")
    refresh.add_argument("--if-empty", action="store_true", help="only when no analytics snapshot exists yet")
    refresh.add_argument("--backfill-months", type=int, default=0, metavar="N",
                         help="first refresh as of each of the N previous month ends, to build history")
    refresh.set_defaults(func=cmd_refresh)

    segs = sub.add_parser("segments", help="customer segments").add_subparsers(dest="segments_command", required=True)
    listing = segs.add_parser("list", help="list segments with their active member counts")
    listing.add_argument("--json", action="store_true", help="a JSON array: name, type, kind, members, priority")
    listing.set_defaults(func=cmd_segments_list)

    users = sub.add_parser("users", help="staff users").add_subparsers(dest="users_command", required=True)
    create = users.add_parser("create", help="create a user; the password is read from stdin")
    create.add_argument("username")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--full-name")
    create.add_argument("--email")
    create.set_defaults(func=cmd_users_create)

    for register in _area_commands():
        register(sub)
    return parser


def _area_commands():
    """Each area's commands live in its own module with `register(subparsers)`."""
    from importlib import import_module

    for name in AREA_MODULES:
        yield import_module(f"crm_cli.{name}").register


# Where the `crm` command logs the traceback of an unexpected error (its output says only the id).
ERROR_LOG_FILE = PROJECT_ROOT / "data" / "crm-errors.log"


_error_log_handler: logging.FileHandler | None = None


def _log_errors_to_file() -> Path:
    """Send unexpected errors' tracebacks to ERROR_LOG_FILE (created private), not to the terminal."""
    global _error_log_handler
    path = Path(os.environ.get("CRM_ERROR_LOG", "") or ERROR_LOG_FILE).resolve()
    if _error_log_handler is None or Path(_error_log_handler.baseFilename) != path:
        if _error_log_handler is not None:
            platform.ERROR_LOG.removeHandler(_error_log_handler)
            _error_log_handler.close()
        private_file(path)
        _error_log_handler = logging.FileHandler(path, encoding="utf-8")
        _error_log_handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        platform.ERROR_LOG.addHandler(_error_log_handler)
    platform.ERROR_LOG.propagate = False
    return path


def main(argv: list[str] | None = None) -> int:
    """Run one command: exit 0 on success, 2 with one line on stderr otherwise, never a traceback."""
    args = build_parser().parse_args(argv)
    if getattr(args, "customers", 1) is not None and getattr(args, "customers", 1) < 1:
        print("error: --customers must be at least 1", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except platform.DomainError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OperationalError as exc:
        reason = str(exc.orig or exc).strip().splitlines()[0] if str(exc.orig or exc).strip() else "no reason given"
        busy = "locked" in reason or "busy" in reason
        print("error: the database is busy with another writer; try again when it has finished (" + reason + ")."
              if busy else f"error: the database could not be reached ({reason}).", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; the unfinished transaction was rolled back.", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - one line for the operator, the traceback to the log
        log_file = _log_errors_to_file()
        error_id = platform.report_unexpected(exc, f"crm {' '.join(sys.argv[1:] if argv is None else argv)}")
        print(f"error: an unexpected failure (error id {error_id}); nothing more was changed. The details are in "
              f"{log_file}.", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
