"""`crm customers merge|undo-merge|split` and `crm duplicates scan`.

    crm customers merge SURVIVOR_ID OTHER_ID [--json]   merge OTHER into SURVIVOR; --json prints {"merge_id": N}
    crm customers undo-merge MERGE_ID [--json]          put back exactly what the merge changed
    crm duplicates scan [--json]                        fill the duplicate review queue
"""

from __future__ import annotations

import argparse
import json
import sys

from crm_core import platform
from db import migrate
from db.engine import database_url, make_engine
from db.models import CustomerMerge

from .arguments import positive_id


def _session():
    url = database_url()
    migrate.ensure_migrated(url)
    return platform.unit_of_work(make_engine(url))


def cmd_merge(args: argparse.Namespace) -> int:
    from crm_core import customers

    with _session() as session:
        merge_id = customers.merge_customers(session, platform.SYSTEM, args.survivor_id, args.other_id)
        summary = session.get(CustomerMerge, merge_id).summary or {}
    if args.json:
        print(json.dumps({"merge_id": merge_id}))
    else:
        moved = sum(summary.get("moved", {}).values())
        print(f"Merged customer {args.other_id} into {args.survivor_id} (merge {merge_id}): {moved} related rows moved, "
              f"{summary.get('loyalty_points', 0)} loyalty points combined. Undo with: crm customers undo-merge {merge_id}")
    return 0


def cmd_undo_merge(args: argparse.Namespace) -> int:
    from crm_core import customers

    with _session() as session:
        result = customers.undo_merge(session, platform.SYSTEM, args.merge_id)
    if args.json:
        print(json.dumps({"merge_id": args.merge_id, **result}))
    else:
        print(f"Undid merge {args.merge_id}: {result['moved_back']} rows moved back, "
              f"{result['restored']} replaced rows restored.")
    return 0


def cmd_duplicates_scan(args: argparse.Namespace) -> int:
    from crm_core import customers

    def progress(fraction: float, text: str) -> None:
        if not args.json:
            print(f"  {fraction:4.0%} {text}", file=sys.stderr, flush=True)

    with _session() as session:
        result = customers.scan_duplicates(session, platform.SYSTEM, progress=progress)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"Scanned {result['customers']:,} customers in {result['seconds']}s: {result['likely_duplicates']:,} "
              f"likely duplicates ({result['new']:,} new, {result['updated']:,} updated).")
    return 0


def register(subparsers) -> None:
    customers = subparsers.add_parser("customers", help="customer records: merge and undo")
    sub = customers.add_subparsers(dest="customers_command", required=True)
    merge = sub.add_parser("merge", help="merge OTHER_ID into SURVIVOR_ID")
    merge.add_argument("survivor_id", type=positive_id)
    merge.add_argument("other_id", type=positive_id)
    merge.add_argument("--json", action="store_true", help='print {"merge_id": N}')
    merge.set_defaults(func=cmd_merge)
    undo = sub.add_parser("undo-merge", help="undo a merge by its id")
    undo.add_argument("merge_id", type=positive_id)
    undo.add_argument("--json", action="store_true", help="print the result as JSON")
    undo.set_defaults(func=cmd_undo_merge)

    dupes = subparsers.add_parser("duplicates", help="duplicate customers")
    dsub = dupes.add_subparsers(dest="duplicates_command", required=True)
    scan = dsub.add_parser("scan", help="scan every customer and fill the review queue")
    scan.add_argument("--json", action="store_true", help="print counts and timing as JSON")
    scan.set_defaults(func=cmd_duplicates_scan)
