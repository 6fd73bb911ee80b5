"""`crm sla check`: record SLA breaches and escalate newly breached tickets (the batch step, for cron)."""

from __future__ import annotations

import argparse

from db.engine import database_url, make_engine


def cmd_check(args: argparse.Namespace) -> int:
    from crm_core import platform, service

    engine = make_engine(database_url())
    try:
        result = service.run_sla_checks(engine, platform.data_date(engine).run_time())
    finally:
        engine.dispose()
    print(f"{result['tickets_breached']:,} newly breached tickets (first response {result['first_response']:,}, "
          f"next response {result['next_response']:,}, resolution {result['resolution']:,}); "
          f"{result['escalated']:,} escalated.")
    return 0


def register(sub) -> None:
    group = sub.add_parser("sla", help="service-desk SLA batch step")
    commands = group.add_subparsers(dest="sla_command", required=True)
    check = commands.add_parser("check", help="record missed SLA targets and escalate newly breached tickets (now, or "
                                              "late on the latest order's date when the data is historical)")
    check.set_defaults(func=cmd_check)
