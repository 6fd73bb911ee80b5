"""Risk scoring and referral processing at scale on the simulator, with precision and recall.

Seeds a simulated shop (or uses `--existing URL`), then times the risk step (signals, anomaly model,
rules, scores, reviews) and the referral step as the refresh runs them, and prints precision and
recall per risk type at the review threshold against the simulator's planted fraud rings, account
takeovers and bad payers.

    python bench/risk_bench.py --customers 100000 [--postgres URL] [--skip-sqlite] [--existing URL]
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import demo  # noqa: E402
from batch import refresh  # noqa: E402
from bench.common import on_each_backend, parser  # noqa: E402
from crm_core import platform, risk  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402

END = dt.datetime(2026, 11, 27, 12, 0)


def measure(url: str, customers: int, label: str, seed: bool = True) -> None:
    engine = make_engine(url)
    if seed:
        migrate.upgrade(url)
        started = time.perf_counter()
        demo.seed_database(engine, customers, seed=7, end=END)
        print(f"[{label}] seeded {customers:,} customers in {time.perf_counter() - started:.1f} s")
    with platform.unit_of_work(engine) as session:
        data = platform.data_date(session)
    as_of, now = data.day, data.run_time()
    for name, step in (("risk", refresh._risk), ("referrals", refresh._in_session(refresh._referrals))):
        started = time.perf_counter()
        outcome = step(engine, as_of, now)
        print(f"[{label}] {name} step: {time.perf_counter() - started:.1f} s · {outcome.detail if hasattr(outcome, 'detail') else outcome}")
    with platform.unit_of_work(engine) as session:
        print(f"[{label}] precision and recall at a score of {risk.REVIEW_THRESHOLD:.0f} (as of {as_of}):")
        print(f"[{label}] {'type':<18}{'flagged':>9}{'planted':>9}{'found':>7}{'precision':>11}{'recall':>8}")
        for row in risk.truth_quality(session, platform.SYSTEM, as_of):
            precision = "–" if row["precision"] is None else f"{row['precision']:.3f}"
            recall = "–" if row["recall"] is None else f"{row['recall']:.3f}"
            print(f"[{label}] {row['type']:<18}{row['flagged']:>9,}{row['planted']:>9,}{row['found']:>7,}"
                  f"{precision:>11}{recall:>8}")
    engine.dispose()


def main() -> None:
    arguments = parser(__doc__.splitlines()[0], 100_000)
    arguments.add_argument("--existing", metavar="URL", help="score this already seeded database instead")
    args = arguments.parse_args()
    if args.existing:
        measure(args.existing, 0, "existing", seed=False)
        return
    on_each_backend(args, measure)


if __name__ == "__main__":
    main()
