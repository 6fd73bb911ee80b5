"""`crm import ...` and `crm export ...`: customers and orders in and out of the database.

    crm import customers FILE [--errors ERRFILE] [--on-duplicate skip|update|create]
                              [--format auto|csv|xlsx|json] [--fuzzy-threshold N] [--default-country CC]
    crm import orders FILE --customer-col C --date-col D --amount-col A [--quantity-col Q] [--order-col O]
    crm export customers --format csv|xlsx|json --out FILE [--segment NAME] [--columns a,b,c]

Imports are all or nothing: a failure rolls back every row and is logged as a failed import run.
Invalid rows do not stop an import; they are listed (row, identifier, reason) in the error file.
The commands act as the system user.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from crm_core import exports, imports
from crm_core.errors import DomainError
from crm_core.service import SYSTEM
from db import migrate
from db.engine import database_url, make_engine, session_scope

SHOWN_ERRORS = 20


def _threshold(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 100") from None
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number from 0 to 100")
    return value


def _progress(quiet: bool):
    if quiet:
        return None
    started = time.perf_counter()

    def show(fraction: float | None, rows: int) -> None:
        done = f"{fraction * 100:5.1f}%" if fraction is not None else "     "
        print(f"  {done} {rows:>12,} rows read ({time.perf_counter() - started:.1f}s)", file=sys.stderr, flush=True)

    return show


def _check_readable(path: str) -> None:
    file = Path(path)
    if not file.exists():
        raise DomainError(f"File not found: {path}")
    if file.is_dir():
        raise DomainError(f"{path} is a folder, not a file.")


def _run_import(args: argparse.Namespace, entity: str, run) -> int:
    _check_readable(args.file)
    url = database_url()
    migrate.ensure_migrated(url)
    engine = make_engine(url)
    try:
        with session_scope(engine) as session:
            report = run(session)
    except DomainError as exc:
        _log_failure(engine, entity, args, str(exc))
        raise
    except Exception as exc:
        _log_failure(engine, entity, args, f"{type(exc).__name__}: {exc}")
        raise DomainError(f"the import failed and nothing was saved: {exc}") from exc
    print(f"Imported {entity} from {args.file} ({report.file_format}) in {report.seconds:.1f}s")
    for line in report.summary_lines():
        print(f"  {line}")
    if report.invalid:
        if args.errors:
            print(f"  {report.invalid:,} invalid rows listed in {args.errors}")
        else:
            print(f"First invalid rows (use --errors FILE for all {report.invalid:,}):", file=sys.stderr)
            for error in report.errors[:SHOWN_ERRORS]:
                print(f"  row {error.row} ({error.identifier}): {error.reason}", file=sys.stderr)
    return 0


def _log_failure(engine, entity: str, args: argparse.Namespace, message: str) -> None:
    try:
        with session_scope(engine) as session:
            imports.record_failed_run(session, SYSTEM, entity, args.file, getattr(args, "format", "auto") or "auto",
                                      getattr(args, "on_duplicate", None), message)
    except Exception:  # noqa: BLE001 - the log is best effort; the original error is what matters
        pass


def cmd_import_customers(args: argparse.Namespace) -> int:
    return _run_import(args, "customers", lambda session: imports.import_customers(
        session, SYSTEM, args.file, fmt=args.format, on_duplicate=args.on_duplicate,
        fuzzy_threshold=args.fuzzy_threshold, default_country=args.default_country, errors_path=args.errors,
        progress=_progress(args.quiet),
    ))


def cmd_import_orders(args: argparse.Namespace) -> int:
    return _run_import(args, "orders", lambda session: imports.import_orders(
        session, SYSTEM, args.file, args.customer_col, args.date_col, args.amount_col, args.quantity_col,
        order_col=args.order_col, fmt=args.format, errors_path=args.errors, progress=_progress(args.quiet),
    ))


def cmd_export_customers(args: argparse.Namespace) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    exports.check_columns(columns)
    out = Path(args.out)
    if out.is_dir():
        raise DomainError(f"{args.out} is a folder; name the file to write.")
    if not out.parent.exists():
        raise DomainError(f"The folder {out.parent} does not exist.")
    url = database_url()
    migrate.ensure_migrated(url)
    partial = out.with_name(out.name + ".partial")
    try:
        with session_scope(make_engine(url)) as session, open(partial, "wb") as handle:
            count = exports.export_customers(session, SYSTEM, handle, args.format, columns, segment=args.segment)
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise DomainError(f"Cannot write {args.out}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    scope = f" in segment {args.segment}" if args.segment else ""
    print(f"Exported {count:,} customers{scope} to {args.out} ({args.format}).")
    return 0


def register(subparsers) -> None:
    importing = subparsers.add_parser("import", help="import customers or orders from a file")
    targets = importing.add_subparsers(dest="import_command", required=True)

    people = targets.add_parser("customers", help="customers from CSV, Excel (.xlsx) or JSON")
    people.add_argument("file", help="the file to import")
    people.add_argument("--errors", metavar="ERRFILE", help="write invalid rows (row, identifier, reason) to this CSV")
    people.add_argument("--on-duplicate", choices=imports.DUPLICATE_POLICIES, default="skip",
                        help="what to do with a row that matches an existing customer (default skip)")
    people.add_argument("--format", choices=("auto", *imports.FORMATS), default="auto",
                        help="file format (default: from the file name)")
    people.add_argument("--fuzzy-threshold", type=_threshold, default=imports.DEFAULT_FUZZY_THRESHOLD, metavar="N",
                        help=f"name similarity 0-100 that counts as a duplicate; 0 turns it off "
                             f"(default {imports.DEFAULT_FUZZY_THRESHOLD})")
    people.add_argument("--default-country", metavar="CC", help="country for rows without one (reads local phones)")
    people.add_argument("--quiet", action="store_true", help="no progress lines")
    people.set_defaults(func=cmd_import_customers)

    orders = targets.add_parser("orders", help="a transaction log (one paid order per row)")
    orders.add_argument("file", help="the file to import")
    orders.add_argument("--customer-col", required=True, metavar="C", help="column with the customer id")
    orders.add_argument("--date-col", required=True, metavar="D", help="column with the order date")
    orders.add_argument("--amount-col", required=True, metavar="A", help="column with the order amount")
    orders.add_argument("--quantity-col", metavar="Q", help="column with the item count (default 1)")
    orders.add_argument("--order-col", metavar="O", help="column with the order number (default: derived)")
    orders.add_argument("--format", choices=("auto", *imports.FORMATS), default="auto",
                        help="file format (default: from the file name)")
    orders.add_argument("--errors", metavar="ERRFILE", help="write invalid rows to this CSV")
    orders.add_argument("--quiet", action="store_true", help="no progress lines")
    orders.set_defaults(func=cmd_import_orders)

    exporting = subparsers.add_parser("export", help="export customers to a file")
    export_targets = exporting.add_subparsers(dest="export_command", required=True)
    customers = export_targets.add_parser("customers", help="customers to CSV, Excel (.xlsx) or JSON")
    customers.add_argument("--format", choices=exports.EXPORT_FORMATS, required=True)
    customers.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    customers.add_argument("--segment", metavar="NAME", help="only the current members of this segment")
    customers.add_argument("--columns", metavar="a,b,c",
                           help=f"columns to write (default {','.join(exports.DEFAULT_COLUMNS)}); "
                                f"available: {','.join(exports.EXPORT_COLUMNS)}")
    customers.set_defaults(func=cmd_export_customers)
