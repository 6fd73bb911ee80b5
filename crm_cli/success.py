"""`crm ctas run`: the CTA rules of the batch refresh on their own (open, hold out, auto-close), for cron."""

from __future__ import annotations

import argparse

from crm_cli.arguments import dated, iso_date
from db.engine import database_url, make_engine


def cmd_run(args: argparse.Namespace) -> int:
    from crm_core import platform, success

    engine = make_engine(database_url())
    try:
        as_of = dated(engine, args.as_of, "The as-of date")
        data = platform.data_date(engine)
        result = success.refresh_success(engine, as_of, data.run_time() if as_of == data.day else None)
    finally:
        engine.dispose()
    for key, outcome in result["rules"].items():
        label = success.TRIGGER_LABELS[key]
        if "skipped" in outcome:
            print(f"{label}: skipped ({outcome['skipped']})")
        else:
            print(f"{label}: {outcome['active']:,} active, {outcome['opened']:,} opened, {outcome['held_out']:,} held "
                  f"out, {outcome['auto_closed']:,} closed as the trigger cleared"
                  + (f" ({outcome['closed_churned']:,} as churned)" if outcome["closed_churned"] else ""))
    print(f"{result['woke']:,} snoozed CTAs woke up (as of {as_of.isoformat()}).")
    return 0


def register(sub) -> None:
    group = sub.add_parser("ctas", help="calls to action for success managers")
    commands = group.add_subparsers(dest="ctas_command", required=True)
    run = commands.add_parser("run", help="run the CTA rules (the last refresh step) as of a date (default: the data date)")
    run.add_argument("--as-of", type=iso_date, default=None, help="YYYY-MM-DD")
    run.set_defaults(func=cmd_run)
