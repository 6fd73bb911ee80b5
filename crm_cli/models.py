"""`crm backtest`: train on data up to a date, predict the next N days, compare with what happened."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from db.engine import database_url, make_engine

from .arguments import iso_date


def cmd_backtest(args: argparse.Namespace) -> int:
    from crm_core import platform
    from ml.backtest import format_report, run_backtest
    from ml.churn import NotEnoughHistory

    engine = make_engine(database_url())
    try:
        result = run_backtest(engine, platform.check_as_of(args.as_of, "--as-of"), args.horizon_days)
    except (platform.DomainError, NotEnoughHistory) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        engine.dispose()
    print(format_report(result))
    if args.json:
        try:
            Path(args.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        except OSError as exc:
            print(f"error: cannot write {args.json}: {exc.strerror}", file=sys.stderr)
            return 2
        print(f"\nWrote {args.json}")
    return 0


def register(sub) -> None:

    backtest = sub.add_parser("backtest", help="train up to a date, predict the next N days, compare with actuals")
    backtest.add_argument("--as-of", type=iso_date, required=True, help="last day of training data, YYYY-MM-DD")
    backtest.add_argument("--horizon-days", type=int, default=90, help="days to predict and compare (default 90)")
    backtest.add_argument("--json", metavar="FILE", help="also write the results as JSON to FILE")
    backtest.set_defaults(func=cmd_backtest)
