"""Each customer's journey from their dated touchpoints, vectorised over all customers at once.

No I/O: `customer_journeys` takes the customers and their touchpoints as frames and returns one
row per customer for the path to the first purchase and one per buyer for the path from it to
churn. Churn is the lifecycle rule's: no order for more than `churned_days`; the journey churns the
day that gap is crossed. Days between steps are fractional days between the first touchpoint of
each step.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from crm_core.journeys.steps import (
    ACQUISITION_LABELS,
    CHANNEL_STEPS,
    CHURN_PATH_TAIL,
    CHURNED,
    FIRST_PURCHASE,
    FIRST_TOUCH_LABELS,
    NOT_PURCHASED,
    ORDER,
    PATH_BASE,
    PATH_TAIL,
    PURCHASED,
    REPEAT_PURCHASE,
    SIGNUP,
    STAGES,
    STANDING,
)

DAY_NS = 86_400 * 10**9


@dataclass(frozen=True)
class ChurnRules:
    """The lifecycle rule's day limits (crm_core.segmentation.lifecycle) that say where a buyer stands."""

    churned_days: int
    inactive_days: int
    at_risk_days: int


def _compress(events: pd.DataFrame, tail: int) -> pd.DataFrame:
    """Consecutive repeats of a step once, then each customer's first step and last `tail` steps,
    numbered by `slot` (events sorted by customer and time)."""
    cid = events["customer_id"].to_numpy()
    code = events["code"].to_numpy()
    repeat = np.zeros(len(events), bool)
    repeat[1:] = (cid[1:] == cid[:-1]) & (code[1:] == code[:-1])
    events = events[~repeat]
    groups = events.groupby("customer_id", sort=False)
    position = groups.cumcount().to_numpy()
    size = groups["customer_id"].transform("size").to_numpy()
    events = events[(position == 0) | (position >= size - tail)]
    return events.assign(slot=events.groupby("customer_id", sort=False).cumcount().to_numpy())


def _matrix(events: pd.DataFrame, index: pd.Index, width: int) -> tuple[np.ndarray, np.ndarray]:
    """(codes, times) as customer x slot matrices aligned with `index` (-1 / NaT-as-NaN where empty)."""
    codes = np.full((len(index), width), -1, dtype=np.int64)
    times = np.full((len(index), width), np.nan)
    if len(events):
        rows = index.get_indexer(events["customer_id"].to_numpy())
        slots = events["slot"].to_numpy()
        codes[rows, slots] = events["code"].to_numpy()
        times[rows, slots] = events["at"].to_numpy().astype("datetime64[ns]").astype(np.int64) / DAY_NS
    return codes, times


def _path_numbers(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    steps = (codes >= 0).sum(axis=1)
    weights = PATH_BASE ** np.arange(codes.shape[1], dtype=np.int64)
    numbers = ((codes + 1) * weights).sum(axis=1)
    return numbers.astype(np.int64), steps


def _gaps(times: np.ndarray, steps: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Days between consecutive steps, from the last step to `end` (NaN where none), and in all."""
    between = np.diff(times, axis=1) if times.shape[1] > 1 else np.empty((len(times), 0))
    last = np.full(len(times), np.nan)
    has = steps > 0
    last[has] = times[np.flatnonzero(has), steps[has] - 1]
    return between, end - last, end - times[:, 0]


def customer_journeys(people: pd.DataFrame, events: pd.DataFrame, end: pd.Timestamp,
                      rules: ChurnRules) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(to_purchase, to_churn), one row per customer and per buyer.

    `people`: customer_id, signed_up_at, acquisition_channel. `events`: customer_id, at, code (step
    codes of crm_core.journeys.steps; ORDER for every revenue order). Nothing after `end` is read.

    to_purchase: customer_id, path, steps, reached (bought), first_touch, gap_1.., gap_end (last
    step to the purchase), total (first step to the purchase), first_touch_days.
    to_churn: customer_id, path, steps, reached (churned), outcome, gap_1.., gap_end, total.
    """
    people = people.sort_values("customer_id").reset_index(drop=True)
    index = pd.Index(people["customer_id"].to_numpy())
    end_day = end.value / DAY_NS
    events = events[(events["at"] <= end) & events["customer_id"].isin(index)]
    orders = events[events["code"] == ORDER].sort_values(["customer_id", "at"], kind="stable")
    first_at = orders.groupby("customer_id", sort=False)["at"].min()
    first_day = np.full(len(index), np.nan)
    bought = index.get_indexer(first_at.index)
    first_day[bought] = first_at.to_numpy().astype("datetime64[ns]").astype(np.int64) / DAY_NS

    # ------------------------------------------------------------------ to the first purchase
    signups = people[people["signed_up_at"] <= end]
    signups = pd.DataFrame({"customer_id": signups["customer_id"].to_numpy(), "at": signups["signed_up_at"].to_numpy(),
                            "code": SIGNUP})
    touches = pd.concat([signups, events[events["code"] != ORDER]], ignore_index=True)
    first_by_customer = pd.Series(first_day, index=index)
    touch_day = touches["at"].to_numpy().astype("datetime64[ns]").astype(np.int64) / DAY_NS
    limit = first_by_customer.reindex(touches["customer_id"].to_numpy()).to_numpy()
    before = np.isnan(limit) | (touch_day < limit)
    # A sign-up at (or after) the first purchase is that purchase's own account, not a step before it.
    touches = touches[before].sort_values(["customer_id", "at", "code"], kind="stable")
    pre = _compress(touches, PATH_TAIL)
    codes, times = _matrix(pre, index, PATH_TAIL + 1)
    path, steps = _path_numbers(codes)
    reached = ~np.isnan(first_day)
    between, to_end, total = _gaps(times, steps, first_day)

    channel_touches = touches[touches["code"].isin(CHANNEL_STEPS)]
    first_touch = channel_touches.groupby("customer_id", sort=False).first()
    touch_label = pd.Series(first_touch["code"].map(FIRST_TOUCH_LABELS).to_numpy(), index=first_touch.index)
    fallback = people["acquisition_channel"].map(lambda c: ACQUISITION_LABELS.get(c, str(c).capitalize()))
    label = touch_label.reindex(index).to_numpy()
    label = np.where(pd.isna(label), fallback.to_numpy(), label)
    ft_day = np.full(len(index), np.nan)
    rows = index.get_indexer(first_touch.index)
    ft_day[rows] = first_touch["at"].to_numpy().astype("datetime64[ns]").astype(np.int64) / DAY_NS
    to_purchase = pd.DataFrame({
        "customer_id": index.to_numpy(), "path": path, "steps": steps, "reached": reached,
        "outcome": np.where(reached, PURCHASED, NOT_PURCHASED), "first_touch": label,
        **{f"gap_{i + 1}": between[:, i] for i in range(between.shape[1])},
        "gap_end": np.where(reached, to_end, np.nan), "total": np.where(reached, total, np.nan),
        "first_touch_days": first_day - ft_day,
    })
    # Customers who had signed up, or bought, by the end.
    known = reached | (people["signed_up_at"] <= end).to_numpy()
    to_purchase = to_purchase[known].reset_index(drop=True)

    # ------------------------------------------------------------------ from the first purchase to churn
    buyers = index[reached]
    if not len(buyers):
        return to_purchase, _empty_churn()
    order_day = orders["at"].to_numpy().astype("datetime64[ns]").astype(np.int64) / DAY_NS
    order_cid = orders["customer_id"].to_numpy()
    next_day = np.empty(len(orders))
    next_day[:-1] = order_day[1:]
    last_of_customer = np.ones(len(orders), bool)
    last_of_customer[:-1] = order_cid[1:] != order_cid[:-1]
    next_day[last_of_customer] = end_day
    crossed = (next_day - order_day) > rules.churned_days
    churn = pd.Series(order_day[crossed] + rules.churned_days, index=order_cid[crossed])
    churn_day = churn.groupby(level=0).min().reindex(buyers).to_numpy()
    churned = ~np.isnan(churn_day)
    last_order_day = pd.Series(order_day, index=order_cid).groupby(level=0).max().reindex(buyers).to_numpy()
    idle = end_day - last_order_day
    outcome = np.select([churned, idle > rules.inactive_days, idle > rules.at_risk_days],
                        [CHURNED, STANDING[0], STANDING[1]], STANDING[2])
    stop = np.where(churned, churn_day, end_day)
    stop_of = pd.Series(stop, index=buyers)
    start_of = pd.Series(first_day[reached], index=buyers)

    after = events[events["customer_id"].isin(buyers) & (events["code"] != STAGES["churned"])]
    after = after.assign(code=np.where(after["code"] == ORDER, REPEAT_PURCHASE, after["code"]))
    day = after["at"].to_numpy().astype("datetime64[ns]").astype(np.int64) / DAY_NS
    cids = after["customer_id"].to_numpy()
    keep = (day > start_of.reindex(cids).to_numpy()) & (day <= stop_of.reindex(cids).to_numpy())
    after = after[keep]
    firsts = pd.DataFrame({"customer_id": buyers.to_numpy(), "at": first_at.reindex(buyers).to_numpy(),
                           "code": FIRST_PURCHASE})
    journey = pd.concat([firsts, after], ignore_index=True).sort_values(["customer_id", "at"], kind="stable")
    # The first purchase sorts first among equal times because it comes first in the frame.
    post = _compress(journey, CHURN_PATH_TAIL)
    codes, times = _matrix(post, buyers, CHURN_PATH_TAIL + 1)
    path, steps = _path_numbers(codes)
    between, to_end, total = _gaps(times, steps, churn_day)
    to_churn = pd.DataFrame({
        "customer_id": buyers.to_numpy(), "path": path, "steps": steps, "reached": churned, "outcome": outcome,
        **{f"gap_{i + 1}": between[:, i] for i in range(between.shape[1])},
        "gap_end": np.where(churned, to_end, np.nan), "total": np.where(churned, total, np.nan),
    })
    return to_purchase, to_churn


def _empty_churn() -> pd.DataFrame:
    columns = ["customer_id", "path", "steps", "reached", "outcome",
               *[f"gap_{i + 1}" for i in range(CHURN_PATH_TAIL)], "gap_end", "total"]
    return pd.DataFrame({c: pd.Series(dtype=float) for c in columns})
