"""Customer journeys at scale: seed a shop, run the snapshot, segments and lifecycle steps (the
journeys read stage changes and segment memberships), then time the journeys step and the page reads.

    python bench/journeys_bench.py --customers 100000 [--skip-sqlite] [--postgres URL]
"""

from __future__ import annotations

import datetime as dt
import time

from common import on_each_backend, parser

import demo
from batch import refresh
from crm_core import journeys, platform
from db import migrate
from db.engine import make_engine


def run(url: str, customers: int, label: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    end = dt.datetime(2026, 11, 27, 12)
    started = time.perf_counter()
    demo.seed_database(engine, customers, seed=7, end=end)
    print(f"{label}: seeded {customers:,} customers in {time.perf_counter() - started:.1f} s")
    as_of = end.date()
    steps = dict((step.__name__, step) for _, step in refresh.STEPS)
    for name in ("_snapshot", "_segments", "_lifecycle"):
        started = time.perf_counter()
        steps[name](engine, as_of, end)
        print(f"{label}: {name.lstrip('_')} {time.perf_counter() - started:.1f} s")
    started = time.perf_counter()
    with platform.unit_of_work(engine) as session:
        result = journeys.refresh_journeys(session, as_of, end)
    print(f"{label}: journeys {time.perf_counter() - started:.1f} s: {result['customers']:,} customers, "
          f"{result['buyers']:,} buyers, {result['churned']:,} churned, {result['rows']:,} rollup rows; "
          f"touchpoints {result['sources']}")
    with platform.unit_of_work(engine) as session:
        options = journeys.filter_options(session, platform.SYSTEM)
        segment = options["segments"][0]["id"] if options["segments"] else None
        cohort = options["cohorts"][0] if options["cohorts"] else None
        for what, call in (
            ("top paths", lambda: journeys.top_paths(session, platform.SYSTEM, "to_purchase")),
            ("paths of a segment and cohort", lambda: journeys.top_paths(session, platform.SYSTEM, "to_churn",
                                                                          segment, cohort)),
            ("sankey", lambda: journeys.sankey(session, platform.SYSTEM, "to_purchase")),
            ("first-touch conversion", lambda: journeys.first_touch_conversion(session, platform.SYSTEM)),
        ):
            started = time.perf_counter()
            call()
            print(f"{label}: read {what} {1000 * (time.perf_counter() - started):.0f} ms")
    engine.dispose()


if __name__ == "__main__":
    on_each_backend(parser(__doc__ or "", 100_000).parse_args(), run)
