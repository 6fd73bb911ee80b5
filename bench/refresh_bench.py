"""Refresh benchmark: seed N customers, then time each batch-refresh step and a segment preview.

    python bench/refresh_bench.py [--customers 100000] [--postgres URL] [--skip-sqlite]
    python bench/refresh_bench.py --existing URL      # refresh an already seeded database
    python bench/refresh_bench.py --existing URL --only sales_rollups,lifecycle_rollups,segment_rollups,churn_rollups
                                                      # time some steps alone (here: the dashboard rollups)

Prints one line per step with seconds and the total (training and scoring included), on SQLite
and (when a server is given) PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import batch  # noqa: E402
import demo  # noqa: E402
from bench.common import on_each_backend, parser  # noqa: E402
from crm_core import (
    platform,
    segmentation,  # noqa: E402
)
from db import migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402

AS_OF = dt.date(2026, 11, 27)
RULES = {"all": [
    {"field": "country", "op": "in", "value": ["DE", "AT", "FR"]},
    {"any": [{"field": "order_count", "op": "ge", "value": 5},
             {"field": "loyalty_tier", "op": "in", "value": ["gold", "platinum", "diamond"]}]},
    {"field": "days_since_last_order", "op": "le", "value": 120},
]}


def run(url: str, customers: int, label: str, seed: bool = True, concurrent: bool | None = None) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    if seed:
        seeded = demo.seed_database(engine, customers, seed=7, end=dt.datetime.combine(AS_OF, dt.time(18)))
        print(f"{label:<10} customers={customers:,} orders={seeded.counts['orders']:,} "
              f"seed_seconds={seeded.seconds:.1f}", flush=True)
    # A seeded shop's history ends on AS_OF; an existing one is refreshed as of its data date, as `crm refresh` does.
    as_of = AS_OF if seed else platform.data_date(engine).day
    report = batch.run_refresh(engine, as_of, concurrent=concurrent)
    for record in report.steps:
        print(f"{label:<10} step={record.label!r} status={record.status} seconds={record.seconds:.1f} ({record.detail})",
              flush=True)
    print(f"{label:<10} refresh_total seconds={report.seconds:.1f} (wall clock; the steps' own times add up to "
          f"{sum(r.seconds for r in report.steps):.1f} s: on PostgreSQL the model steps overlap; on SQLite the "
          "forecasts and risk signals are prepared alongside the earlier steps, and their rows show the writing)",
          flush=True)
    started = time.perf_counter()
    with platform.unit_of_work(engine) as session:
        found = segmentation.preview_rules(session, platform.SYSTEM, RULES, as_of, sample=20)
    print(f"{label:<10} segment_preview matches={found['count']:,} seconds={time.perf_counter() - started:.2f}",
          flush=True)
    engine.dispose()


def run_only(url: str, steps: list[str]) -> None:
    """Run the named steps (as recorded: `snapshot`, `sales_rollups`, ...) alone, in STEPS order, as of the data date."""
    from batch import refresh

    engine = make_engine(url)
    data = platform.data_date(engine)
    known = {refresh.step_key(step): (label, step) for label, step in refresh.STEPS}
    unknown = sorted(set(steps) - set(known))
    if unknown:
        raise SystemExit(f"unknown step(s) {', '.join(unknown)}; steps: {', '.join(known)}")
    total = 0.0
    for key, (label, step) in known.items():
        if key in steps:
            started = time.perf_counter()
            outcome = step(engine, data.day, data.run_time())
            seconds = time.perf_counter() - started
            total += seconds
            print(f"existing   step={label!r} seconds={seconds:.1f} ({getattr(outcome, 'detail', outcome)})", flush=True)
    print(f"existing   steps_total seconds={total:.1f}", flush=True)
    engine.dispose()


def main() -> None:
    arguments = parser(__doc__.splitlines()[0], 100_000)
    arguments.add_argument("--existing", metavar="URL", help="refresh this already seeded database instead")
    arguments.add_argument("--only", help="with --existing: comma-separated steps to time alone")
    arguments.add_argument("--sequential", action="store_true",
                           help="run the model steps one after another on PostgreSQL too")
    args = arguments.parse_args()
    concurrent = False if args.sequential else None
    if args.existing and args.only:
        run_only(args.existing, [s.strip() for s in args.only.split(",") if s.strip()])
    elif args.existing:
        run(args.existing, 0, "existing", seed=False, concurrent=concurrent)
    else:
        on_each_backend(args, lambda url, customers, label: run(url, customers, label, concurrent=concurrent))

if __name__ == "__main__":
    main()
