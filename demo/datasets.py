"""Public transaction logs the models are measured on, loaded the way a shop's file would be.

CDNOW (Fader, Hardie and Lee): 69,659 purchases of 23,570 customers who first bought in the first
quarter of 1997, up to 30 June 1998; customer id, date (yyyymmdd), number of CDs, amount. The
master log ships inside the `lifetimes` wheel. It goes through the same `crm import orders` path
as any shop's CSV, so a measurement on it is a measurement of what a user would get.
"""

from __future__ import annotations

import datetime as dt
import io
from importlib.resources import files

from sqlalchemy import Engine

from crm_core import imports, platform

CDNOW_FIRST_DAY = dt.date(1997, 1, 1)
CDNOW_LAST_DAY = dt.date(1998, 6, 30)


def cdnow_csv() -> str:
    """The CDNOW master log as CSV text: customer_id, date (YYYY-MM-DD), quantity, amount."""
    text = files("lifetimes").joinpath("datasets/CDNOW_master.txt").read_text(encoding="ascii")
    lines = ["customer_id,date,quantity,amount"]
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) != 4:
            continue
        customer, day, quantity, amount = fields
        lines.append(f"{customer},{day[:4]}-{day[4:6]}-{day[6:]},{quantity},{amount}")
    return "\n".join(lines) + "\n"


def load_cdnow(engine: Engine) -> imports.ImportReport:
    """Import the CDNOW log into a migrated database as a shop would import its orders."""
    source = io.BytesIO(cdnow_csv().encode("ascii"))
    with platform.unit_of_work(engine) as session:
        return imports.import_orders(session, platform.SYSTEM, source, "customer_id", "date", "amount", "quantity",
                                     fmt="csv", file_name="CDNOW_master.csv")
