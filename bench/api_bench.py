"""The HTTP API under load: throughput and p50 / p95 / p99 latency of a customer read and of a search
page (filter groups, keyset paging), and the rows per second and server memory of a streamed export.

    python bench/api_bench.py --postgres postgresql://postgres@127.0.0.1:5432/test --customers 1000000
    python bench/api_bench.py --existing sqlite:///data/crm.sqlite      # a seeded database (migrated to head)
    python bench/api_bench.py --customers 5000 --seconds 5              # a throwaway SQLite file (a smoke run)

With --postgres it creates a throwaway database, migrates it and fills `customers` with
generate_series (names, e-mails, countries, cities, sign-up dates; no orders: the reads and searches
measured here touch customers and their optional one-row snapshots); without --postgres or --existing
it does the same in a throwaway SQLite file. Both exports (CSV and JSON Lines) are streamed in full,
with the server's peak resident memory sampled while they stream. It creates an admin and a
personal token, starts `crm api serve` (uvicorn, --workers N) with the rate limit lifted, and drives
it from client threads on the same machine: the client's own CPU is part of what is measured, so on
2 cores the figures are a floor. The machine's load average is printed with the results.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import func, select, text  # noqa: E402

from crm_core import platform  # noqa: E402
from db import migrate  # noqa: E402
from db.engine import make_engine  # noqa: E402
from db.models import Customer, User  # noqa: E402
from db.throwaway import PostgresServer  # noqa: E402

FILL = """
INSERT INTO customers (first_name, last_name, email, phone, country_code, city, acquisition_channel, status,
                       signed_up_at, created_at, updated_at, version)
SELECT (ARRAY['John','Jane','Maria','Peter','Anna','Lukas','Emma','Noah','Mia','Paul'])[1 + (i % 10)],
       (ARRAY['Smith','Müller','Schmidt','Dubois','Rossi','Garcia','Nowak','Jansen','Peeters','Brown'])[1 + (i / 10) % 10],
       'user' || i || '@mail.example', '+4930' || (1000000 + i)::text,
       (ARRAY['DE','FR','NL','GB','ES','IT'])[1 + (i % 6)],
       (ARRAY['Berlin','Paris','Amsterdam','London','Madrid','Rome','Hamburg','Lyon'])[1 + (i / 6) % 8],
       'direct', 'active', now() - (i % 1500) * interval '1 day', now(), now(), 1
FROM generate_series(1, :n) AS i
"""
# The same customers for SQLite, from a recursive row generator.
FILL_SQLITE = """
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < :n)
INSERT INTO customers (first_name, last_name, email, phone, country_code, city, acquisition_channel, status,
                       signed_up_at, created_at, updated_at, version)
SELECT json_extract('["John","Jane","Maria","Peter","Anna","Lukas","Emma","Noah","Mia","Paul"]', '$[' || (i % 10) || ']'),
       json_extract('["Smith","Müller","Schmidt","Dubois","Rossi","Garcia","Nowak","Jansen","Peeters","Brown"]',
                    '$[' || ((i / 10) % 10) || ']'),
       'user' || i || '@mail.example', '+4930' || (1000000 + i),
       json_extract('["DE","FR","NL","GB","ES","IT"]', '$[' || (i % 6) || ']'),
       json_extract('["Berlin","Paris","Amsterdam","London","Madrid","Rome","Hamburg","Lyon"]', '$[' || ((i / 6) % 8) || ']'),
       'direct', 'active', datetime('now', '-' || (i % 1500) || ' days'), datetime('now'), datetime('now'), 1
FROM n
"""
# The outcome's targets (2 cores, several workers, 1,000,000 customers on PostgreSQL).
TARGETS = {"read_p95_ms": 50, "read_per_second": 500, "search_p95_ms": 300, "export_rows_per_second": 50_000}
SEARCH = {"any": [{"all": [{"field": "country", "op": "eq", "value": "DE"},
                           {"field": "city", "op": "in", "value": ["Berlin", "Hamburg"]}]},
                  {"all": [{"field": "country", "op": "eq", "value": "FR"},
                           {"field": "signup_date", "op": "ge", "value": "2024-01-01"}]}]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _prepare(url: str) -> tuple[str, int]:
    """An admin with a fresh token, and the highest customer id."""
    engine = make_engine(url)
    with platform.unit_of_work(engine) as session:
        admin = session.scalar(select(User).where(User.username == "api-bench"))
        if admin is None:
            # nobody signs in with it: only the token is used
            admin = platform.create_user(session, platform.SYSTEM, "api-bench", "admin", secrets.token_urlsafe(24))
        _row, token = platform.create_token(session, platform.SYSTEM, admin.id, "api bench", expires_days=1)
        top = session.scalar(select(func.max(Customer.id))) or 0
    engine.dispose()
    return token, top


def _serve(url: str, workers: int) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {**os.environ, "CRM_DATABASE_URL": url, "CRM_API_RATE_LIMIT": str(10**9)}
    process = subprocess.Popen([sys.executable, "-m", "crm_cli.main", "api", "serve", "--port", str(port),
                                "--workers", str(workers)], env=env, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit("the API server did not start")


def _load(base: str, token: str, request, seconds: float, threads: int) -> dict:
    """Requests from `threads` client threads for `seconds`; latency percentiles in ms and requests/s."""
    latencies: list[float] = []
    errors = [0]
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    stop = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        mine: list[float] = []
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
            while time.perf_counter() < stop:
                started = time.perf_counter()
                response = request(client, rng)
                mine.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    with lock:
                        errors[0] += 1
                        statuses[response.status_code] = statuses.get(response.status_code, 0) + 1
        with lock:
            latencies.extend(mine)

    started = time.perf_counter()
    pool = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - started
    cuts = statistics.quantiles(latencies, n=100)
    return {"requests": len(latencies), "per_second": len(latencies) / elapsed, "p50": cuts[49], "p95": cuts[94],
            "p99": cuts[98], "errors": errors[0], "error_statuses": statuses}


AB = "/usr/bin/ab"  # Apache Bench (Debian's apache2-utils): a C client that leaves the cores to the server


def _ab(base: str, token: str, paths: list[str], seconds: float) -> dict:
    """One `ab -k` connection per path, all at once for `seconds`: requests/s summed; p50 the median of
    theirs, p95 and p99 the worst of theirs (ab's whole-millisecond figures)."""
    runs = [subprocess.Popen([AB, "-k", "-q", "-c", "1", "-t", str(int(seconds)), "-n", "100000000",
                              "-H", f"Authorization: Bearer {token}", f"{base}{path}"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for path in paths]
    figures: dict = {"requests": 0, "per_second": 0.0, "errors": 0, "error_statuses": {}}
    cuts: dict[str, list[float]] = {"p50": [], "p95": [], "p99": []}
    for run in runs:
        out, _err = run.communicate()
        for line in out.splitlines():
            words = line.split()
            if line.startswith("Requests per second:"):
                figures["per_second"] += float(words[3])
            elif line.startswith("Complete requests:"):
                figures["requests"] += int(words[2])
            elif line.startswith(("Non-2xx responses:", "Failed requests:")):
                figures["errors"] += int(words[-1])
            elif len(words) == 2 and words[0] in ("50%", "95%", "99%"):
                cuts[{"50%": "p50", "95%": "p95", "99%": "p99"}[words[0]]].append(float(words[1]))
    figures["p50"] = statistics.median(cuts["p50"]) if cuts["p50"] else float("nan")
    figures["p95"] = max(cuts["p95"], default=float("nan"))
    figures["p99"] = max(cuts["p99"], default=float("nan"))
    return figures


def _rss_kb(pid: int) -> int:
    """Resident memory of the server and its worker processes."""
    total = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            status = (proc / "status").read_text()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
        if int(fields.get("PPid", "0").strip()) == pid or proc.name == str(pid):
            total += int(fields.get("VmRSS", "0 kB").split()[0])
    return total


def _export(base: str, token: str, pid: int, fmt: str = "csv") -> dict[str, float]:
    """Stream a whole export (`csv` or `jsonl`), sampling the server's memory every 50 chunks."""
    peak, before = 0, _rss_kb(pid)
    lines = 0
    started = time.perf_counter()
    with httpx.stream("GET", f"{base}/exports/customers.{fmt}", headers={"Authorization": f"Bearer {token}"},
                      params={"columns": ["id", "first_name", "last_name", "email", "country", "signup_date"]},
                      timeout=None) as response:
        response.raise_for_status()
        for n, chunk in enumerate(response.iter_bytes()):
            lines += chunk.count(b"\n")
            if n % 50 == 0:
                peak = max(peak, _rss_kb(pid))
    seconds = time.perf_counter() - started
    rows = lines - 1 if fmt == "csv" else lines  # the CSV has a header line
    return {"rows": rows, "seconds": seconds, "rows_per_second": rows / seconds,
            "rss_before_mb": before / 1024, "rss_peak_mb": max(peak, _rss_kb(pid)) / 1024}


def _verdict(ok: bool) -> str:
    return "meets the target" if ok else "misses the target"


def run(url: str, workers: int, threads: int, seconds: float, export: bool, client: str = "python") -> None:
    token, top = _prepare(url)
    process, base = _serve(url, workers)
    try:
        if client == "ab":  # `threads` connections, each reading its own random customer over and over
            chosen = random.Random(7).sample(range(1, top + 1), min(threads, top))
            reads = _ab(base, token, [f"/customers/{customer}" for customer in chosen], seconds)
        else:
            reads = _load(base, token, lambda c, rng: c.get(f"/customers/{rng.randint(1, top)}"), seconds, threads)

        def search(client, rng):
            after = rng.randint(0, max(0, top - 1000))
            return client.post("/customers/search", json={"filter": SEARCH, "limit": 50, "after": str(after)})

        searches = _load(base, token, search, seconds, threads)

        def keyset_page(client, rng):
            after = rng.randint(0, max(0, top - 1000))
            return client.get("/customers", params={"limit": 50, "after": str(after)})

        pages = _load(base, token, keyset_page, seconds, threads)
        reader = (f"ab, {threads} connections on {threads} random customers" if client == "ab"
                  else "Python client threads, random customers")
        print(f"\nAPI at {top:,} customers, {workers} uvicorn workers, {threads} client threads, {seconds:.0f} s each; "
              f"customer reads by {reader} "
              f"(load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
        print(f"{'request':<36}{'requests/s':>12}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}{'errors':>8}")
        for label, figures in (("GET /customers/{id}", reads), ("POST /customers/search (50 rows)", searches),
                               ("GET /customers?limit=50&after=", pages)):
            print(f"{label:<36}{figures['per_second']:>12.0f}{figures['p50']:>9.1f}{figures['p95']:>9.1f}"
                  f"{figures['p99']:>9.1f}{figures['errors']:>8}"
                  + (f"  (status {figures['error_statuses']})" if figures["errors"] else ""))
        read_ok = reads["p95"] <= TARGETS["read_p95_ms"] and reads["per_second"] >= TARGETS["read_per_second"]
        print(f"customer read: p95 {reads['p95']:.1f} ms, {reads['per_second']:.0f} requests/s "
              f"(target p95 <= {TARGETS['read_p95_ms']} ms and >= {TARGETS['read_per_second']} requests/s): "
              f"{_verdict(read_ok)}")
        print(f"search page: p95 {searches['p95']:.1f} ms (target <= {TARGETS['search_p95_ms']} ms): "
              f"{_verdict(searches['p95'] <= TARGETS['search_p95_ms'])}")
        if export:
            for fmt in ("csv", "jsonl"):
                streamed = _export(base, token, process.pid, fmt)
                print(f"export {fmt}: {streamed['rows']:,} rows in {streamed['seconds']:.1f} s = "
                      f"{streamed['rows_per_second']:,.0f} rows/s (target >= {TARGETS['export_rows_per_second']:,}: "
                      f"{_verdict(streamed['rows_per_second'] >= TARGETS['export_rows_per_second'])}); server "
                      f"memory {streamed['rss_before_mb']:.0f} MB before, {streamed['rss_peak_mb']:.0f} MB at most "
                      f"during the stream")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--postgres", default="", help="a PostgreSQL server database URL to create a throwaway one on")
    parser.add_argument("--existing", default="", help="measure an existing (seeded, migrated) database instead")
    # neither: a throwaway SQLite file, for a smoke run
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--no-export", action="store_true")
    parser.add_argument("--client", choices=("python", "ab"), default="ab" if Path(AB).exists() else "python",
                        help="who reads customers: Apache Bench (C; the default when installed) or Python threads")
    args = parser.parse_args()
    if args.existing:
        migrate.ensure_migrated(args.existing)
        run(args.existing, args.workers, args.threads, args.seconds, not args.no_export, args.client)
        return
    if not args.postgres:
        with tempfile.TemporaryDirectory(prefix="crm-api-bench-") as folder:
            url = f"sqlite:///{folder}/bench.sqlite"
            migrate.upgrade(url)
            engine = make_engine(url)
            started = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(text(FILL_SQLITE), {"n": args.customers})
            engine.dispose()
            print(f"filled {args.customers:,} customers (SQLite) in {time.perf_counter() - started:.1f} s")
            run(url, args.workers, args.threads, args.seconds, not args.no_export, args.client)
        return
    server = PostgresServer(args.postgres)
    try:
        with server.database("crm_api_bench") as url:
            migrate.upgrade(url)
            engine = make_engine(url)
            started = time.perf_counter()
            with engine.begin() as connection:
                connection.execute(text(FILL), {"n": args.customers})
                connection.execute(text("ANALYZE customers"))
            engine.dispose()
            print(f"filled {args.customers:,} customers in {time.perf_counter() - started:.1f} s")
            run(url, args.workers, args.threads, args.seconds, not args.no_export, args.client)
    finally:
        server.dispose()


if __name__ == "__main__":
    main()
