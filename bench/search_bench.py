"""Customer search at scale on PostgreSQL: typo-tolerant text, exact contacts, filters, bulk id streaming.

    CRM_BENCH_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/test python -m bench.search_bench --customers 1000000

Creates a throwaway database, migrates it (pg_trgm and the trigram indexes of migration 0007),
fills `customers` with generate_series (names built from common first and last names, so typo
searches meet many near matches), and prints the time of each search and of streaming every id
of a filtered result in bulk-action chunks.
"""

from __future__ import annotations

import argparse
import os
import time

from sqlalchemy import text

from crm_core import customers, platform
from db import migrate
from db.engine import make_engine, session_factory
from db.throwaway import PostgresServer

FILL = """
INSERT INTO customers (first_name, last_name, email, phone, company, country_code, acquisition_channel, status,
                       signed_up_at, created_at, updated_at, version)
SELECT (ARRAY['John','Jane','Maria','Peter','Anna','Lukas','Emma','Noah','Mia','Paul'])[1 + (i % 10)]
           || CASE WHEN i % 7 = 0 THEN '' ELSE chr(97 + i % 26) END,
       (ARRAY['Smith','Müller','Schmidt','Dubois','Rossi','Garcia','Nowak','Jansen','Peeters','Brown'])[1 + (i / 10) % 10]
           || CASE WHEN i % 3 = 0 THEN '' ELSE chr(97 + (i / 7) % 26) || chr(97 + (i / 3) % 26) END,
       'user' || i || '@mail.example', '+49 30 ' || (1000000 + i)::text,
       CASE WHEN i % 9 = 0 THEN 'Company ' || (i % 5000)::text END,
       (ARRAY['DE','FR','NL','GB','ES','IT'])[1 + (i % 6)], 'direct', 'active',
       now() - (i % 1500) * interval '1 day', now(), now(), 1
FROM generate_series(1, :n) AS i
"""

QUERIES = {
    "typo in a full name ('Jonh Smiht')": customers.CustomerQuery(text="Jonh Smiht"),
    "one misspelt word ('Schmidd')": customers.CustomerQuery(text="Schmidd"),
    "exact email": customers.CustomerQuery(text="user424242@mail.example"),
    "phone digits": customers.CustomerQuery(text="30 1424242"),
    "customer id": customers.CustomerQuery(text="4242"),
    "company": customers.CustomerQuery(text="Company 4242"),
    "filters only (two countries), sorted by name": customers.CustomerQuery(
        countries=("DE", "FR"), sort="name", direction="asc"),
    "text + filter": customers.CustomerQuery(text="Jonh Smiht", countries=("DE",)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    args = parser.parse_args()
    server = PostgresServer(os.environ.get("CRM_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"))
    url = server.create("crm_search_bench")
    try:
        migrate.upgrade(url)
        engine = make_engine(url)
        started = time.perf_counter()
        with engine.begin() as connection:
            connection.execute(text(FILL), {"n": args.customers})
            connection.execute(text("ANALYZE customers"))
        print(f"filled {args.customers:,} customers (with trigram indexes) in {time.perf_counter() - started:.1f}s")
        with session_factory(engine)() as session:
            for label, query in QUERIES.items():
                customers.search_customers(session, platform.SYSTEM, query, page_size=50)  # warm the cache
                started = time.perf_counter()
                page = customers.search_customers(session, platform.SYSTEM, query, page_size=50)
                top = page.rows[0]["name"] if page.rows else "-"
                print(f"{label:<48} {page.total:>10,} matches  first: {top:<22} {time.perf_counter() - started:6.3f}s")
            started = time.perf_counter()
            streamed = sum(len(chunk) for chunk in customers.search_ids(session, platform.SYSTEM, customers.CustomerQuery(countries=("DE",))))
            print(f"{'stream ids of a result (bulk chunks of 5,000)':<48} {streamed:>10,} ids"
                  f"{'':<32}{time.perf_counter() - started:6.3f}s")
        engine.dispose()
    finally:
        server.drop(url)


if __name__ == "__main__":
    main()
