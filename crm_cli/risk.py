"""`crm risk score` and `crm referrals process`: the risk and referral steps of the refresh on their own."""

from __future__ import annotations

import argparse

from crm_core import platform, referrals
from db.engine import database_url, make_engine

from .arguments import DATA_DATE_DEFAULT, iso_date


def cmd_risk_score(args: argparse.Namespace) -> int:
    from ml.risk import refresh_risk

    engine = make_engine(database_url())
    try:
        data = platform.data_date(engine)
        as_of = platform.check_as_of(args.as_of, "--as-of") if args.as_of else data.day
        result = refresh_risk(engine, as_of, data.run_time(as_of))
    finally:
        engine.dispose()
    if result["status"] != "ok":
        print(f"Risk not scored: {result['reason']}")
        return 1
    print(f"Scored {result['scored']:,} customers as of {as_of}: {result['level_high']:,} high, "
          f"{result['level_critical']:,} critical; {result['reviews_opened']:,} reviews opened, "
          f"{result['decisions']:,} decisions; " + "; ".join(result["notes"]))
    for name, why in result["left_out"].items():
        print(f"  left out {name}: {why}")
    return 0


def cmd_referrals_process(args: argparse.Namespace) -> int:
    engine = make_engine(database_url())
    try:
        now = platform.data_date(engine).run_time()
        with platform.unit_of_work(engine) as session:
            done = referrals.process_referrals(session, platform.SYSTEM, now)
    finally:
        engine.dispose()
    print(", ".join(f"{name.replace('_', ' ')} {count:,}" for name, count in done.items()))
    return 0


def register(sub) -> None:
    risk = sub.add_parser("risk", help="fraud, credit and account-takeover scores")
    risk_sub = risk.add_subparsers(dest="risk_command", required=True)
    score = risk_sub.add_parser("score", help="compute signals, fit the anomaly model, score every customer, "
                                              "open reviews")
    score.add_argument("--as-of", type=iso_date, help=f"date to score as of (default {DATA_DATE_DEFAULT})")
    score.set_defaults(func=cmd_risk_score)
    programme = sub.add_parser("referrals", help="the referral programme")
    programme_sub = programme.add_subparsers(dest="referrals_command", required=True)
    process = programme_sub.add_parser("process", help="check new referrals, hold, pay and reverse rewards")
    process.set_defaults(func=cmd_referrals_process)


