"""Segment evaluation at scale, on a synthetic analytics snapshot.

    python bench/segments_bench.py [--customers 1000000] [--postgres URL] [--skip-sqlite]

Loads N customers and their `customer_analytics` rows in bulk (random orders, revenue, recency
and RFM scores), then times the first refresh of the eleven RFM segments' memberships, a second
refresh (nothing changes) and a nested segment preview. (The RFM scores themselves are computed
inside the analytics snapshot: bench/refresh_bench.py times that on a simulated history.)
"""

from __future__ import annotations

import datetime as dt
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sqlalchemy import text  # noqa: E402

import batch  # noqa: E402
from bench.common import on_each_backend, parser  # noqa: E402
from crm_core import platform, segmentation
from db import bulk, migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import Base  # noqa: E402

AS_OF = dt.date(2026, 11, 27)
RULES = {"all": [
    {"field": "country", "op": "in", "value": ["DE", "AT", "FR"]},
    {"any": [{"field": "order_count", "op": "ge", "value": 5}, {"field": "total_revenue", "op": "ge", "value": 800}]},
    {"field": "days_since_last_order", "op": "le", "value": 120},
]}


def synthetic(n: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(1)
    ids = np.arange(1, n + 1)
    signup = pd.Timestamp("2023-12-01") + pd.to_timedelta(rng.integers(0, 1000, n), unit="D")
    customers = pd.DataFrame({
        "id": ids, "first_name": "F", "last_name": "L", "email": [f"c{i}@bench.example" for i in ids],
        "country_code": np.array(["DE", "FR", "NL", "GB", "AT"], dtype=object)[rng.integers(0, 5, n)],
        "acquisition_channel": "direct", "status": "active", "signed_up_at": signup, "created_at": signup,
        "updated_at": signup, "version": 1,
    })
    orders = np.where(rng.random(n) < 0.86, 1 + rng.poisson(7, n), 0)
    revenue = np.round(orders * rng.gamma(2, 60, n), 2)
    days = np.where(orders > 0, rng.integers(0, 900, n), -1)
    last = pd.Series(pd.Timestamp("2026-11-27") - pd.to_timedelta(np.maximum(days, 0), unit="D")).where(orders > 0)
    r, f, m = (rng.integers(1, 6, n) for _ in range(3))
    grid = np.array([segmentation.RFM_GRID[row] for row in range(1, 6)], dtype=object)  # [R-1][FM-1]
    segment = np.where(orders > 0, grid[r - 1, (f + m + 1) // 2 - 1], None)
    snapshot = pd.DataFrame({
        "customer_id": ids, "as_of": AS_OF, "order_count": orders, "total_revenue": revenue,
        "last_order_at": last, "days_since_last_order": pd.Series(days).where(orders > 0).astype("Int64"),
        "sessions_90d": rng.poisson(2, n), "open_tickets": 0,
        "recency_score": pd.Series(r).where(orders > 0).astype("Int64"),
        "frequency_score": pd.Series(f).where(orders > 0).astype("Int64"),
        "monetary_score": pd.Series(m).where(orders > 0).astype("Int64"), "rfm_segment": segment, "refreshed_at": pd.Timestamp("2026-11-27 23:00"),
    })
    return customers, snapshot


def timed(label: str, backend: str, fn):
    started = time.perf_counter()
    result = fn()
    print(f"{backend:<10} {label:<38} seconds={time.perf_counter() - started:6.2f}  {result}", flush=True)


def run(url: str, n: int, backend: str) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    customers, snapshot = synthetic(n)
    started = time.perf_counter()
    with engine.begin() as connection:
        bulk.load(connection, Base.metadata.tables["customers"], customers)
        bulk.load(connection, Base.metadata.tables["customer_analytics"], snapshot)
        connection.execute(text("ANALYZE"))
    print(f"{backend:<10} loaded {n:,} customers and snapshot rows in {time.perf_counter() - started:.1f}s", flush=True)

    def create_rfm_segments():
        with platform.unit_of_work(engine) as s:
            for name in segmentation.RFM_SEGMENTS:
                segmentation.create_segment(s, platform.SYSTEM, name, "rfm", "dynamic", rules=batch.rfm_rules(name), is_system=True)
        return "11 segments"

    def refresh():
        with platform.unit_of_work(engine) as s:
            result = segmentation.refresh_memberships(s, AS_OF)
        return f"entered={sum(r['entered'] for r in result.values()):,} left={sum(r['left'] for r in result.values()):,}"

    def preview():
        with platform.unit_of_work(engine) as s:
            return f"matches={segmentation.preview_rules(s, platform.SYSTEM, RULES, AS_OF)['count']:,}"

    create_rfm_segments()
    timed("RFM segment memberships (first)", backend, refresh)
    timed("RFM segment memberships (no change)", backend, refresh)
    timed("nested segment preview", backend, preview)
    engine.dispose()


def main() -> None:
    on_each_backend(parser(__doc__.splitlines()[0], 1_000_000).parse_args(), run)

if __name__ == "__main__":
    main()
