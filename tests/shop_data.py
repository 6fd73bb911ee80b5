"""A small shop's order log as a CSV file would bring it: customer id, date, quantity, amount, nothing else.

Customers arrive over the first weeks and buy as BG/NBD says real customers do (a personal Poisson
rate while active, a chance to stop after each purchase), so every model has something to find.
"""

from __future__ import annotations

import datetime as dt
import io

import numpy as np

from crm_core import imports, platform


def order_log(customers: int = 600, start: dt.date = dt.date(2024, 1, 1), days: int = 300,
              arrival_days: int = 60, seed: int = 3) -> str:
    rng = np.random.default_rng(seed)
    lines = ["customer_id,date,quantity,amount"]
    for number in range(1, customers + 1):
        day = float(rng.integers(0, arrival_days))
        rate = rng.gamma(0.8, 1 / 25)  # purchases per day while active
        dropout = rng.beta(1.2, 3.0)
        while day < days:
            quantity = int(rng.integers(1, 4))
            amount = round(float(rng.gamma(2.0, 15.0)) * quantity, 2)
            lines.append(f"C{number:05d},{(start + dt.timedelta(days=int(day))).isoformat()},{quantity},{amount}")
            if rng.random() < dropout:
                break
            day += rng.exponential(1 / max(rate, 1e-3))
    return "\n".join(lines) + "\n"


def import_log(engine, text: str, name: str = "orders.csv"):
    with platform.unit_of_work(engine) as session:
        return imports.import_orders(session, platform.SYSTEM, io.BytesIO(text.encode()), "customer_id", "date", "amount",
                                     "quantity", fmt="csv", file_name=name)
