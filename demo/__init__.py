"""The demo shop: a simulated business to seed an empty database (`crm seed`, `make run`, the tests,
the benchmarks) and the public transaction logs the models are measured on (CDNOW).

Demo data uses the domain's defaults, so it imports crm_core and db; only entry points, tests and
bench import demo.
"""

from demo.datasets import CDNOW_FIRST_DAY, CDNOW_LAST_DAY, cdnow_csv, load_cdnow
from demo.simulator import (
    LOAD_ORDER,
    ROLE_USERNAMES,
    UNUSABLE_PASSWORD_HASH,
    SeedResult,
    Simulator,
    database_is_empty,
    demo_password,
    seed_database,
)

__all__ = [
    "CDNOW_FIRST_DAY",
    "CDNOW_LAST_DAY",
    "LOAD_ORDER",
    "ROLE_USERNAMES",
    "UNUSABLE_PASSWORD_HASH",
    "SeedResult",
    "Simulator",
    "cdnow_csv",
    "database_is_empty",
    "demo_password",
    "load_cdnow",
    "seed_database",
]
