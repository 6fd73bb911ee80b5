"""`crm clv` and `crm forecast`: fit lifetime value and forecasts on their own, outside `crm refresh`.

Each writes only its own tables; the analytics snapshot (written only by `crm refresh`) picks the
lifetime values up when it is next built.
"""

from __future__ import annotations

import argparse
import sys

from crm_core import platform
from db.engine import database_url, make_engine

from .arguments import DATA_DATE_DEFAULT, dated, iso_date

# A forecast further out than two years is a guess, whatever the model says.
MAX_HORIZON_DAYS = 730


def _print_progress(index: int, total: int, label: str, detail: str) -> None:
    print(f"  [{index}/{total}] {label}: {detail}", flush=True)


def cmd_clv(args: argparse.Namespace) -> int:
    from ml.clv import refresh_lifetime_value

    if not 0 <= args.holdout_days <= 365:
        raise platform.ValidationError("--holdout-days must be from 0 to 365.")
    engine = make_engine(database_url())
    try:
        result = refresh_lifetime_value(engine, dated(engine, args.as_of, "--as-of"), progress=_print_progress,
                                        holdout_days=args.holdout_days)
    finally:
        engine.dispose()
    if result["status"] != "fitted":
        print(f"error: lifetime value not fitted: {result['reason']}", file=sys.stderr)
        return 2
    bgnbd = result["params"]["bgnbd"]
    print(f"Scored {result['customers_scored']:,} customers in {result['seconds']:.1f}s "
          f"(clv version {result['model_version']}; BG/NBD r={bgnbd['r']:.3f} alpha={bgnbd['alpha']:.3f} "
          f"a={bgnbd['a']:.3f} b={bgnbd['b']:.3f} per {bgnbd['time_unit']}).")
    metrics = result["metrics"]
    if "holdout_actual_purchases" in metrics:
        print(f"Holdout: fitted {args.holdout_days} days earlier, BG/NBD predicted "
              f"{metrics['holdout_predicted_purchases']:,.0f} repeat purchase days and "
              f"{metrics['holdout_actual_purchases']:,.0f} happened.")
    elif metrics.get("holdout_skipped"):
        print(f"Holdout check skipped: {metrics['holdout_skipped']}")
    print("Stored in customer_lifetime_values; the analytics snapshot picks them up at the next `crm refresh`.")
    return 0


def cmd_forecast(args: argparse.Namespace) -> int:
    from ml.forecast import refresh_forecasts

    if not 1 <= args.horizon_days <= MAX_HORIZON_DAYS:
        raise platform.ValidationError(f"--horizon-days must be from 1 to {MAX_HORIZON_DAYS}.")
    engine = make_engine(database_url())
    try:
        result = refresh_forecasts(engine, dated(engine, args.as_of, "--as-of"), horizon_days=args.horizon_days,
                                   progress=_print_progress)
    finally:
        engine.dispose()
    if not any(o["status"] == "fitted" for o in result["metrics"].values()):
        reasons = "; ".join(f"{metric}: {o['reason']}" for metric, o in result["metrics"].items())
        print(f"error: no forecast fitted ({reasons})", file=sys.stderr)
        return 2
    for metric, outcome in result["metrics"].items():
        if outcome["status"] == "fitted":
            error = "n/a" if outcome["mape"] is None else f"{outcome['mape']:.1%}"
            print(f"{metric}: backtest MAPE {error}")
        else:
            print(f"{metric}: skipped: {outcome['reason']}")
    return 0


def register(sub) -> None:

    clv = sub.add_parser("clv", help="fit BG/NBD + Gamma-Gamma and score every customer's lifetime value (the next refresh "
                                     "copies them into the analytics snapshot)")
    clv.add_argument("--as-of", type=iso_date, help=f"date to score as of (default {DATA_DATE_DEFAULT})")
    clv.add_argument("--holdout-days", type=int, default=0, metavar="N",
                     help="also refit N days earlier and compare its predictions with what happened since (0-365)")
    clv.set_defaults(func=cmd_clv)
    forecast = sub.add_parser("forecast", help="fit the Prophet forecasts of revenue, orders and new customers")
    forecast.add_argument("--as-of", type=iso_date, help=f"last day of history (default {DATA_DATE_DEFAULT})")
    forecast.add_argument("--horizon-days", type=int, default=90, help="days to forecast (default 90)")
    forecast.set_defaults(func=cmd_forecast)
