"""The churn label, shared by churn training, health-weight fitting and backtests.

A customer is labelled as of a date when they have at least one revenue order on or before it;
the label is 1 ("churned") when they place no revenue order in the next `horizon_days` days.
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
from sqlalchemy import Connection, and_, case, func, literal, select

from crm_core import platform
from db import bulk
from db.models import REVENUE_ORDER_STATUSES, Order

DEFAULT_HORIZON_DAYS = 90


def sampled(column, sample_every: int):
    """Keep only ids divisible by `sample_every` (everything when it is 1): a cheap, stable sample."""
    return literal(True) if sample_every <= 1 else (column % sample_every) == 0


def churn_labels(connection: Connection, as_of: dt.date, horizon_days: int = DEFAULT_HORIZON_DAYS, *,
                 sample_every: int = 1) -> pd.Series:
    """1/0 per customer id (the index) for every customer who had ordered by the end of `as_of`
    (only ids divisible by `sample_every`, as in `ml.features.build_features`)."""
    if horizon_days < 1:
        raise ValueError("horizon_days must be at least 1")
    cutoff = platform.end_of(as_of)
    horizon_end = platform.end_of(as_of + dt.timedelta(days=horizon_days))
    ordered_after = func.max(case((and_(Order.ordered_at >= cutoff, Order.ordered_at < horizon_end), 1), else_=0))
    query = (
        select(Order.customer_id, ordered_after.label("ordered_after"))
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at < horizon_end,
               sampled(Order.customer_id, sample_every))
        .group_by(Order.customer_id)
        .having(func.min(Order.ordered_at) < cutoff)
    )
    _, rows = bulk.fetch_raw(connection, query)
    frame = pd.DataFrame(rows, columns=["customer_id", "ordered_after"])
    labels = pd.Series(1 - frame["ordered_after"].astype("int64").to_numpy(), index=frame["customer_id"].astype("int64"),
                       name="churned")
    labels.index.name = "customer_id"
    return labels.sort_index()
