"""Social listening at scale: import a listening tool's file of mentions (matched by handle, scored
by VADER) twice, then time what the Social page reads over a year of them.

    python bench/social_bench.py --customers 10000 --mentions 100000 [--skip-sqlite] [--postgres URL]
"""

from __future__ import annotations

import csv
import datetime as dt
import tempfile
import time
from pathlib import Path

import numpy as np
from common import on_each_backend, parser
from sqlalchemy import select

import demo
from crm_core import platform, social
from db import migrate
from db.engine import make_engine
from db.models import SocialAccount

TEXTS = ("Love the new {p}, great quality!", "My {p} arrived broken, I want a refund.",
         "Parcel is late again, terrible delivery.", "Ordered a {p} today.", "Customer service was really helpful.",
         "Way too expensive for a {p}.", "Anyone else waiting for their order?", "Best shop for {p} by far :)")
PRODUCTS = ("jacket", "kettle", "lamp", "book", "dog bed", "serum", "tent", "necklace")


def write_file(path: Path, handles: list[tuple[str, str]], mentions: int, end: dt.datetime) -> None:
    rng = np.random.default_rng(1)
    known = rng.random(mentions) < 0.3
    picks = rng.integers(0, len(handles), mentions)
    texts = rng.integers(0, len(TEXTS), mentions)
    products = rng.integers(0, len(PRODUCTS), mentions)
    seconds = rng.integers(0, 365 * 86_400, mentions)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["mention_id", "platform", "author", "text", "posted_at", "url", "reach"])
        for i in range(mentions):
            network, author = handles[picks[i]] if known[i] else ("twitter", f"someone{i % 50_000}")
            writer.writerow([f"m{i}", network, f"@{author}", TEXTS[texts[i]].format(p=PRODUCTS[products[i]]),
                             (end - dt.timedelta(seconds=int(seconds[i]))).isoformat(sep=" "), "", int(rng.integers(0, 5000))])


def run(url: str, customers: int, label: str, mentions: int) -> None:
    migrate.upgrade(url)
    engine = make_engine(url)
    end = dt.datetime(2026, 11, 27, 12)
    demo.seed_database(engine, customers, seed=7, end=end)
    with engine.connect() as connection:
        handles = [tuple(r) for r in connection.execute(select(SocialAccount.platform, SocialAccount.handle))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "mentions.csv"
        write_file(path, handles, mentions, end)
        for attempt in ("first", "again"):
            started = time.perf_counter()
            with platform.unit_of_work(engine) as session:
                report = social.import_mentions(session, platform.SYSTEM, str(path), now=end)
            print(f"{label}: import {attempt}: {time.perf_counter() - started:.1f} s; {report.created:,} imported, "
                  f"{report.matched:,} matched, {report.skipped:,} skipped, {report.invalid:,} invalid")
    year = social.MentionFilter(end.date() - dt.timedelta(days=365), end.date())
    with platform.unit_of_work(engine) as session:
        for what, call in (("summary", social.mention_summary), ("volume by week and platform", social.volume_over_time),
                           ("top negative (page 1)", social.top_negative_mentions), ("topics", social.topic_counts)):
            started = time.perf_counter()
            call(session, platform.SYSTEM, year)
            print(f"{label}: read {what} {1000 * (time.perf_counter() - started):.0f} ms")
    engine.dispose()


if __name__ == "__main__":
    arguments = parser(__doc__ or "", 10_000)
    arguments.add_argument("--mentions", type=int, default=100_000)
    args = arguments.parse_args()
    on_each_backend(args, lambda url, customers, label: run(url, customers, label, args.mentions))
