"""`crm loyalty ...`: the loyalty batch steps and a ledger check, for operators and cron."""

from __future__ import annotations

import argparse

from crm_core import platform
from db.engine import database_url, make_engine

from .arguments import DATA_DATE_DEFAULT, dated, iso_date


def _on_database(step, *args):
    """Run a batch step against CRM_DATABASE_URL with an engine of its own."""
    engine = make_engine(database_url())
    try:
        return step(engine, *args)
    finally:
        engine.dispose()


# Days before the as-of date the stand-alone earn and reverse look back by default.
EARN_LOOKBACK_DAYS = 30
REVERSE_LOOKBACK_DAYS = 365


def cmd_earn(args: argparse.Namespace) -> int:
    from crm_core import loyalty


    def earn(engine):
        return loyalty.earn_for_orders(engine, dated(engine, args.since, "--since", EARN_LOOKBACK_DAYS))

    result = _on_database(earn)
    print(f"Posted {result['entries']:,} earn entries ({result['points']:,} points); "
          f"{result['tiers_raised']:,} members moved up a tier.")
    return 0


def cmd_reverse(args: argparse.Namespace) -> int:
    from crm_core import loyalty


    def reverse(engine):
        return loyalty.reverse_for_orders(engine, dated(engine, args.since, "--since", REVERSE_LOOKBACK_DAYS))

    result = _on_database(reverse)
    print(f"Took back {result['points']:,} points with {result['entries']:,} entries for cancelled, returned or "
          "refunded orders.")
    return 0


def cmd_expire(args: argparse.Namespace) -> int:
    from crm_core import loyalty


    def expire(engine):
        as_of = dated(engine, args.as_of, "--as-of")
        return as_of, loyalty.expire_points(engine, as_of)

    as_of, result = _on_database(expire)
    print(f"Expired {result['points']:,} points on {result['accounts']:,} accounts as of {as_of.isoformat()}.")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from crm_core import loyalty

    def recompute(engine, customer_id):
        with platform.unit_of_work(engine) as session:
            return loyalty.recompute_balance(session, customer_id)

    check = _on_database(recompute, args.customer_id)
    verdict = "consistent" if check["consistent"] else "MISMATCH"
    print(f"Customer {args.customer_id}: balance {check['balance']:,}, ledger sum {check['ledger_sum']:,}, "
          f"last balance_after {check['last_balance_after']}: {verdict}")
    return 0 if check["consistent"] else 1


def register(sub) -> None:

    group = sub.add_parser("loyalty", help="loyalty batch steps: earn points for orders, take back points of "
                                               "unpaid orders, expire old points, check a ledger")
    commands = group.add_subparsers(dest="loyalty_command", required=True)
    earn = commands.add_parser("earn", help="post points for earning orders without an entry yet (idempotent)")
    earn.add_argument("--since", type=iso_date,
                      help=f"orders placed on or after this date, YYYY-MM-DD (default: {EARN_LOOKBACK_DAYS} days "
                           f"before {DATA_DATE_DEFAULT})")
    earn.set_defaults(func=cmd_earn)
    reverse = commands.add_parser("reverse", help="take back the points of orders cancelled, returned or refunded "
                                                  "(at most what the balance holds; idempotent)")
    reverse.add_argument("--since", type=iso_date,
                         help=f"orders placed on or after this date, YYYY-MM-DD (default: {REVERSE_LOOKBACK_DAYS} days "
                              f"before {DATA_DATE_DEFAULT})")
    reverse.set_defaults(func=cmd_reverse)
    expire = commands.add_parser("expire", help="expire points older than the configured age, first in first out")
    expire.add_argument("--as-of", type=iso_date, help=f"expiry date, YYYY-MM-DD (default {DATA_DATE_DEFAULT})")
    expire.set_defaults(func=cmd_expire)
    check = commands.add_parser("check", help="recompute a member's balance from the ledger")
    check.add_argument("customer_id", type=int)
    check.set_defaults(func=cmd_check)
