"""`crm import ...` and `crm export ...`: customers, orders, tickets and messages in and out of the database.

    crm import customers FILE [--errors ERRFILE] [--on-duplicate skip|update|create]
                              [--format auto|csv|xlsx|json] [--fuzzy-threshold N] [--default-country CC]
    crm import orders FILE --customer-col C --date-col D --amount-col A [--quantity-col Q] [--order-col O]
                           [--email-col E] [--status-col S] [--product-col P] [--currency-col K]
    crm import orders FILE --format shopify          # a Shopify admin orders export
    crm import tickets FILE [--errors ERRFILE] [--format auto|csv|xlsx|json]
    crm import communications FILE [--errors ERRFILE] [--format auto|csv|xlsx|json]
    crm import mentions FILE [--errors ERRFILE] [--format auto|csv|xlsx|json]   # social mentions
    crm export customers --format csv|xlsx|json --out FILE [--segment NAME] [--columns a,b,c]

Imports are all or nothing: a failure rolls back every row and is logged as a failed import run.
Invalid rows do not stop an import; they are listed (row, identifier, reason) in the error file.
The commands act as the system user.
"""

from __future__ import annotations

import argparse
import sys
import textwrap
import time
from pathlib import Path

from crm_core import customers, imports, platform, social
from db import migrate
from db.engine import database_url, make_engine
from db.models import ORDER_STATUSES

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
        raise platform.DomainError(f"File not found: {path}")
    if file.is_dir():
        raise platform.DomainError(f"{path} is a folder, not a file.")


def _run_import(args: argparse.Namespace, entity: str, run) -> int:
    _check_readable(args.file)
    url = database_url()
    migrate.ensure_migrated(url)
    engine = make_engine(url)
    try:
        with platform.unit_of_work(engine) as session:
            report = run(session)
    except platform.DomainError as exc:
        _log_failure(engine, entity, args, str(exc))
        raise
    except Exception as exc:
        _log_failure(engine, entity, args, f"{type(exc).__name__}: {exc}")
        raise platform.DomainError(f"the import failed and nothing was saved: {exc}") from exc
    print(f"Imported {entity} from {args.file} ({report.file_format}) in {report.seconds:.1f}s")
    for line in report.summary_lines():
        print(f"  {line}")
    for note in report.notes():
        print(f"  {note}")
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
        with platform.unit_of_work(engine) as session:
            imports.record_failed_run(session, platform.SYSTEM, entity, args.file, getattr(args, "format", "auto") or "auto",
                                      getattr(args, "on_duplicate", None), message)
    except Exception:  # noqa: BLE001 - the log is best effort; the original error is what matters
        pass


def cmd_import_customers(args: argparse.Namespace) -> int:
    return _run_import(args, "customers", lambda session: imports.import_customers(
        session, platform.SYSTEM, args.file, fmt=args.format, on_duplicate=args.on_duplicate,
        fuzzy_threshold=args.fuzzy_threshold, default_country=args.default_country, errors_path=args.errors,
        progress=_progress(args.quiet),
    ))


GENERIC_ORDER_FLAGS = ("customer_col", "date_col", "amount_col", "quantity_col", "order_col", "email_col", "status_col",
                       "product_col", "currency_col")


def cmd_import_orders(args: argparse.Namespace) -> int:
    if args.format == "shopify":
        given = [f"--{name.replace('_', '-')}" for name in GENERIC_ORDER_FLAGS if getattr(args, name)]
        if given:
            args.parser.error(f"--format shopify reads Shopify's own columns; drop {', '.join(given)}")
        return _run_import(args, "orders", lambda session: imports.import_shopify_orders(
            session, platform.SYSTEM, args.file, errors_path=args.errors, progress=_progress(args.quiet),
        ))
    missing = [flag for flag, value in (("--date-col", args.date_col), ("--amount-col", args.amount_col)) if not value]
    if not args.customer_col and not args.email_col:
        missing.insert(0, "--customer-col (or --email-col)")
    if missing:
        args.parser.error(f"the following arguments are required: {', '.join(missing)}")
    return _run_import(args, "orders", lambda session: imports.import_orders(
        session, platform.SYSTEM, args.file, args.customer_col, args.date_col, args.amount_col, args.quantity_col,
        order_col=args.order_col, email_col=args.email_col, status_col=args.status_col, product_col=args.product_col,
        currency_col=args.currency_col, fmt=args.format, errors_path=args.errors, progress=_progress(args.quiet),
    ))


def cmd_import_service(args: argparse.Namespace) -> int:
    return _run_import(args, args.kind, lambda session: imports.import_service_file(
        session, platform.SYSTEM, args.kind, args.file, fmt=args.format, errors_path=args.errors,
        progress=_progress(args.quiet),
    ))


def cmd_import_mentions(args: argparse.Namespace) -> int:
    return _run_import(args, "mentions", lambda session: social.import_mentions(
        session, platform.SYSTEM, args.file, fmt=args.format, errors_path=args.errors, progress=_progress(args.quiet),
    ))


def cmd_export_customers(args: argparse.Namespace) -> int:
    columns = [c.strip() for c in args.columns.split(",") if c.strip()] if args.columns else None
    customers.check_export_columns(columns)
    out = Path(args.out)
    if out.is_dir():
        raise platform.DomainError(f"{args.out} is a folder; name the file to write.")
    if not out.parent.exists():
        raise platform.DomainError(f"The folder {out.parent} does not exist.")
    url = database_url()
    migrate.ensure_migrated(url)
    partial = out.with_name(out.name + ".partial")
    try:
        with platform.unit_of_work(make_engine(url)) as session, open(partial, "wb") as handle:
            count = customers.export_customers(session, platform.SYSTEM, handle, args.format, columns, segment=args.segment)
        partial.replace(out)
    except OSError as exc:
        partial.unlink(missing_ok=True)
        raise platform.DomainError(f"Cannot write {args.out}: {exc.strerror or exc}") from None
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    scope = f" in segment {args.segment}" if args.segment else ""
    print(f"Exported {count:,} customers{scope} to {args.out} ({args.format}).")
    return 0


def register(subparsers) -> None:
    importing = subparsers.add_parser("import", help="import customers, orders, tickets, communications or social mentions")
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

    orders = targets.add_parser(
        "orders", help="a transaction log (one order, or order line, per row) or a Shopify orders export",
        description="Import orders. A transaction log names its columns with the --...-col flags (one order per "
                    "row, or with --product-col one order line per row); --format shopify reads a Shopify admin "
                    "orders export (Orders > Export > CSV) with its own columns. Orders in another currency than "
                    "the shop's are listed as invalid: revenue adds order totals without converting.")
    orders.add_argument("file", help="the file to import")
    orders.add_argument("--customer-col", metavar="C", help="column with the customer id (it or --email-col is "
                                                            "required)")
    orders.add_argument("--date-col", metavar="D", help="column with the order date (required)")
    orders.add_argument("--amount-col", metavar="A", help="column with the order amount (the line total with "
                                                          "--product-col; required)")
    orders.add_argument("--quantity-col", metavar="Q", help="column with the item count (default 1)")
    orders.add_argument("--order-col", metavar="O", help="column with the order number (default: derived)")
    orders.add_argument("--email-col", metavar="E", help="column with the customer's email: finds the customer by "
                                                         "email, or creates it with the email")
    orders.add_argument("--status-col", metavar="S",
                        help=f"column with the order status ({', '.join(ORDER_STATUSES)}; default paid)")
    orders.add_argument("--product-col", metavar="P", help="column with the product SKU: each row is then a line of "
                                                           "the order in --order-col (which it needs)")
    orders.add_argument("--currency-col", metavar="K", help="column with the currency code (default: the shop's)")
    orders.add_argument("--format", choices=("auto", *imports.FORMATS, "shopify"), default="auto",
                        help="file format (default: from the file name); shopify: a Shopify orders export")
    orders.add_argument("--errors", metavar="ERRFILE", help="write invalid rows to this CSV")
    orders.add_argument("--quiet", action="store_true", help="no progress lines")
    orders.set_defaults(func=cmd_import_orders, parser=orders)

    descriptions = {
        "tickets": "Import a helpdesk's tickets for existing customers. Imported tickets keep the helpdesk's id "
                   "(a ticket imported before is skipped) and get no SLA clock, so last year's tickets raise no "
                   "SLA breaches.",
        "communications": "Import an email, SMS and call history for existing customers. A message imported "
                          "before (same message_id, or without one the same values) is skipped.",
    }
    for kind, noun in (("tickets", "a helpdesk's tickets"), ("communications", "an email, SMS and call history")):
        service = targets.add_parser(
            kind, help=f"{noun} for existing customers (CSV, Excel or JSON)",
            description=textwrap.fill(descriptions[kind] + " Customers are found by customer_external_id, else by "
                                      "customer_email; rows that are not valid are listed with their row number "
                                      "and reason.", 100),
            epilog=imports.documented_columns(kind), formatter_class=argparse.RawDescriptionHelpFormatter)
        service.add_argument("file", help="the file to import")
        service.add_argument("--format", choices=("auto", *imports.FORMATS), default="auto",
                             help="file format (default: from the file name)")
        service.add_argument("--errors", metavar="ERRFILE", help="write invalid rows to this CSV")
        service.add_argument("--quiet", action="store_true", help="no progress lines")
        service.set_defaults(func=cmd_import_service, kind=kind)

    mentions = targets.add_parser(
        "mentions", help="brand mentions from a social listening tool (CSV, Excel or JSON)",
        description=textwrap.fill("Import brand mentions. Each is matched to a customer by its author's handle "
                                  "(a customer's social account) and gets a sentiment score (VADER, or the scorer "
                                  "CRM_SENTIMENT_SCORER names); a mention imported before is skipped, and rows that "
                                  "are not valid are listed with their row number and reason.", 100),
        epilog=social.documented_mention_columns(), formatter_class=argparse.RawDescriptionHelpFormatter)
    mentions.add_argument("file", help="the file to import")
    mentions.add_argument("--format", choices=("auto", *imports.FORMATS), default="auto",
                          help="file format (default: from the file name)")
    mentions.add_argument("--errors", metavar="ERRFILE", help="write invalid rows to this CSV")
    mentions.add_argument("--quiet", action="store_true", help="no progress lines")
    mentions.set_defaults(func=cmd_import_mentions)

    exporting = subparsers.add_parser("export", help="export customers to a file")
    export_targets = exporting.add_subparsers(dest="export_command", required=True)
    people_out = export_targets.add_parser("customers", help="customers to CSV, Excel (.xlsx) or JSON")
    people_out.add_argument("--format", choices=customers.EXPORT_FORMATS, required=True)
    people_out.add_argument("--out", required=True, metavar="FILE", help="the file to write")
    people_out.add_argument("--segment", metavar="NAME", help="only the current members of this segment")
    people_out.add_argument("--columns", metavar="a,b,c",
                           help=f"columns to write (default {','.join(customers.DEFAULT_EXPORT_COLUMNS)}); "
                                f"available: {','.join(customers.EXPORT_COLUMNS)}")
    people_out.set_defaults(func=cmd_export_customers)
