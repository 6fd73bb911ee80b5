"""Churn and purchase predictions against what happened, on a real transaction log and the simulator.

    python bench/churn_quality_bench.py [--cuts 1997-09-30:90,...] [--simulator-customers 20000]
                                        [--candidates] [--skip-simulator]

For each cut (as-of date : horizon days) it runs `crm backtest`'s computation and prints one row:
customers, the churn model's ROC AUC for "no order within the horizon" and BG/NBD's (expected
purchases), the difference, purchases and revenue predicted against actual, and the Brier score.
`--candidates` also prints each candidate model's AUC on the outcome (diagnostics).
CDNOW is imported through the same path as a shop's CSV (demo.datasets); the simulator is seeded.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sklearn.metrics import roc_auc_score  # noqa: E402

import demo  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402
from ml import churn  # noqa: E402
from ml.backtest import run_backtest  # noqa: E402
from ml.features import build_features  # noqa: E402
from ml.labels import churn_labels  # noqa: E402

CDNOW_CUTS = "1997-02-26:90,1997-03-31:90,1997-06-30:90,1997-09-30:90,1997-09-30:182,1997-09-30:273," \
             "1997-12-31:90,1997-12-31:181,1998-03-31:91"
SIMULATOR_END = dt.date(2026, 6, 30)
SIMULATOR_CUTS = "2025-06-30:90,2025-12-31:90,2026-03-31:90,2025-09-30:180"


def _cuts(text: str) -> list[tuple[dt.date, int]]:
    pairs = []
    for item in text.split(","):
        day, horizon = item.split(":")
        pairs.append((dt.date.fromisoformat(day), int(horizon)))
    return pairs


def _pct(predicted, actual) -> str:
    if predicted is None or not actual:
        return "n/a"
    return f"{predicted / actual - 1:+.1%}"


HEADER = (f"{'data':<10} {'as of':<10} {'H':>4} {'customers':>9} {'model':<20} {'AUC':>6} {'BG/NBD':>6} {'diff':>7} "
          f"{'purch pred':>10} {'actual':>8} {'err':>7} {'revenue pred':>12} {'actual':>11} {'err':>7} {'Brier':>6} "
          f"{'s':>5}")


def measure(engine, data: str, cuts: list[tuple[dt.date, int]], candidates: bool) -> list[dict]:
    rows = []
    for as_of, horizon in cuts:
        started = time.perf_counter()
        result = run_backtest(engine, as_of, horizon)
        c, b = result["churn"], result["baseline_bgnbd"]
        row = {"data": data, "as_of": as_of, "horizon": horizon, "customers": result["customers"],
               "model": c["model"] + (f"/{result['training']['label_days']}d"
                                      if result["training"].get("label_days") not in (None, horizon) else ""),
               "auc": c["auc"], "bgnbd_auc": b["auc"], "purchases": result["purchases"],
               "revenue": result["revenue"], "brier": c["brier"], "seconds": time.perf_counter() - started}
        rows.append(row)
        diff = (row["auc"] - row["bgnbd_auc"]) if row["auc"] is not None and row["bgnbd_auc"] is not None else None
        p, r = row["purchases"], row["revenue"]
        print(f"{data:<10} {as_of.isoformat():<10} {horizon:>4} {row['customers']:>9,} {row['model']:<20} "
              f"{row['auc']:>6.3f} {row['bgnbd_auc'] or float('nan'):>6.3f} "
              f"{diff if diff is not None else float('nan'):>+7.3f} "
              f"{p['predicted_total'] or float('nan'):>10,.0f} {p['actual_total']:>8,.0f} "
              f"{_pct(p['predicted_total'], p['actual_total']):>7} "
              f"{r['predicted_total'] or float('nan'):>12,.0f} {r['actual_total']:>11,.0f} "
              f"{_pct(r['predicted_total'], r['actual_total']):>7} {row['brier']:>6.3f} {row['seconds']:>5.1f}",
              flush=True)
        if candidates:
            with engine.connect() as connection:
                found = churn.fit_candidates(connection, as_of, horizon)
                if isinstance(found, tuple):
                    continue
                X = build_features(connection, as_of)
                y = churn_labels(connection, as_of, horizon).reindex(X.index)
            for name, model in found.models.items():
                print(f"{'':<37} candidate {name:<20} test AUC {roc_auc_score(y, model.predict_proba(X)):.4f} "
                      f"validation AUC {found.validation[name]['roc_auc']:.4f}", flush=True)
    return rows


def summary(rows: list[dict]) -> None:
    diffs = [r["auc"] - r["bgnbd_auc"] for r in rows if r["auc"] is not None and r["bgnbd_auc"] is not None]
    within = [abs(r["purchases"]["predicted_total"] / r["purchases"]["actual_total"] - 1) <= 0.10
              for r in rows if r["purchases"]["predicted_total"] is not None and r["purchases"]["actual_total"]]
    if diffs:
        print(f"AUC over BG/NBD: mean {sum(diffs) / len(diffs):+.4f}, lowest {min(diffs):+.4f} over {len(diffs)} cuts; "
              f"purchases within ±10% on {sum(within)} of {len(within)} cuts")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cuts", default=CDNOW_CUTS, help="CDNOW cuts as DATE:HORIZON,...")
    parser.add_argument("--simulator-cuts", default=SIMULATOR_CUTS)
    parser.add_argument("--simulator-customers", type=int, default=20_000)
    parser.add_argument("--skip-simulator", action="store_true")
    parser.add_argument("--skip-cdnow", action="store_true")
    parser.add_argument("--candidates", action="store_true", help="also print each candidate's AUC on the outcome")
    args = parser.parse_args()
    print(HEADER)
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_cdnow:
            url = f"sqlite:///{tmp}/cdnow.sqlite"
            migrate.upgrade(url)
            engine = make_engine(url)
            demo.load_cdnow(engine)
            rows = measure(engine, "CDNOW", _cuts(args.cuts), args.candidates)
            summary(rows)
            engine.dispose()
        if not args.skip_simulator:
            url = f"sqlite:///{tmp}/simulator.sqlite"
            migrate.upgrade(url)
            engine = make_engine(url)
            demo.seed_database(engine, args.simulator_customers, seed=7,
                          end=dt.datetime.combine(SIMULATOR_END, dt.time(18)))
            rows = measure(engine, "simulator", _cuts(args.simulator_cuts), args.candidates)
            summary(rows)
            engine.dispose()


if __name__ == "__main__":
    main()
