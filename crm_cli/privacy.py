"""`crm privacy export|erase`: a data subject's access export and erasure, for operators.

    crm privacy export CUSTOMER_ID --out FILE.zip     everything held about the person (audited)
    crm privacy erase CUSTOMER_ID --reason TEXT       log an erasure request and carry it out at once
"""

from __future__ import annotations

import argparse
from pathlib import Path

from crm_core import platform
from db import migrate
from db.engine import database_url, make_engine
from db.private_files import write_private

from .arguments import positive_id

MIN_REASON = 5


def _session():
    url = database_url()
    migrate.ensure_migrated(url)
    return platform.unit_of_work(make_engine(url), write=True)


def cmd_export(args: argparse.Namespace) -> int:
    from crm_core import customers

    out = Path(args.out)
    if out.suffix.lower() != ".zip":
        raise platform.ValidationError(f"--out {out} must name a .zip file.")
    if out.is_dir():
        raise platform.ValidationError(f"--out {out} is a folder; name the .zip file to write.")
    if not out.parent.exists():
        raise platform.ValidationError(f"--out {out}: the folder {out.parent} does not exist.")
    with _session() as session:
        payload = customers.export_subject_data(session, platform.SYSTEM, args.customer_id)
        write_private(out, payload)  # inside the unit of work: no file without its audit row, and none left on failure
    print(f"Wrote everything held about customer {args.customer_id} to {out} ({len(payload) / 1024:,.1f} KB; audited).")
    return 0


def cmd_erase(args: argparse.Namespace) -> int:
    from crm_core import customers

    reason = (args.reason or "").strip()
    if len(reason) < MIN_REASON:
        raise platform.ValidationError(f"--reason must say why, in at least {MIN_REASON} characters.")
    with _session() as session:
        request = customers.create_privacy_request(session, platform.SYSTEM, args.customer_id, "erasure", notes=reason)
        result = customers.erase_customer(session, platform.SYSTEM, args.customer_id, request.id)
    rows = sum(result["rows_anonymised"].values())
    kept = "; kept: " + ", ".join(e["table"] for e in result["retention_exceptions"]) \
        if result["retention_exceptions"] else ""
    print(f"Erased customer {args.customer_id} ({len(result['erased_customers'])} record(s), {rows:,} rows anonymised, "
          f"{result['attachment_files_deleted']} attachment file(s) deleted{kept}; request {request.id}).")
    return 0


def register(subparsers) -> None:
    privacy = subparsers.add_parser("privacy", help="data-subject access export and erasure")
    sub = privacy.add_subparsers(dest="privacy_command", required=True)
    export = sub.add_parser("export", help="write everything held about a customer to a zip (audited)")
    export.add_argument("customer_id", type=positive_id)
    export.add_argument("--out", required=True, metavar="FILE.zip", help="the zip file to write (created private)")
    export.set_defaults(func=cmd_export)
    erase = sub.add_parser("erase", help="erase a customer now: logs an erasure request and carries it out")
    erase.add_argument("customer_id", type=positive_id)
    erase.add_argument("--reason", required=True, help="why (kept on the request), e.g. 'E-mail of 3 May'")
    erase.set_defaults(func=cmd_erase)
