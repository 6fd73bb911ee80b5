"""What the benchmarks share: run one measurement on SQLite and on a throwaway PostgreSQL database."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from db.throwaway import PostgresServer  # noqa: E402


def parser(description: str, customers: int) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--customers", type=int, default=customers)
    parser.add_argument("--postgres", default=os.environ.get("CRM_TEST_POSTGRES_URL", ""),
                        help="a database URL on the PostgreSQL server to use (default CRM_TEST_POSTGRES_URL)")
    parser.add_argument("--skip-sqlite", action="store_true")
    return parser


def on_each_backend(args: argparse.Namespace, run: Callable[[str, int, str], None]) -> None:
    """run(url, customers, label) on a temporary SQLite file and a throwaway PostgreSQL database."""
    if not args.skip_sqlite:
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/bench.sqlite", args.customers, "sqlite")
    if not args.postgres:
        print("postgresql skipped: pass --postgres URL or set CRM_TEST_POSTGRES_URL")
        return
    server = PostgresServer(args.postgres)
    try:
        with server.database("crm_bench") as url:
            run(url, args.customers, "postgresql")
    finally:
        server.dispose()
