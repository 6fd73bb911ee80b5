"""The journeys step of the batch: read every customer's touchpoints as of a date in chunks of
customers, build their paths (crm_core.journeys.paths) and write the rollups the Journeys page
reads: the top paths to the first purchase and from it to churn, and conversion by first-touch
channel, for all customers, each active segment (current members) and each signup cohort, and each
segment and cohort together. Only the latest run's rollups are kept.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import Connection, delete, func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.journeys.paths import ChurnRules, customer_journeys
from crm_core.journeys.steps import (
    ALL_PATHS,
    CHURNED,
    INBOUND,
    MESSAGES,
    NO_TOUCHPOINT,
    NOT_PURCHASED,
    ORDER,
    OTHER_PATHS,
    PURCHASED,
    STAGES,
    STANDING,
    TICKET,
    TOP_PATHS,
    VISITS,
    path_labels,
)
from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.dates import end_of
from crm_core.platform.permissions import require
from crm_core.segmentation.lifecycle import get_lifecycle_rules
from db import bulk
from db.models import (
    REVENUE_ORDER_STATUSES,
    Customer,
    CustomerCommunication,
    CustomerLifecycleHistory,
    CustomerSegment,
    CustomerSegmentMembership,
    JourneyRollup,
    JourneyRun,
    Order,
    SupportTicket,
    WebSession,
    utcnow,
)

CHUNK_CUSTOMERS = 200_000  # customers read and followed at a time (by id range)
ALL = 0  # the segment key of "all customers" (and the cohort key of all cohorts)
OUTCOMES = (PURCHASED, NOT_PURCHASED, CHURNED, *STANDING)
OUTCOME_CODES = {name: code for code, name in enumerate(OUTCOMES)}


def _frame(connection: Connection, query, columns: list[str]) -> pd.DataFrame:
    _, rows = bulk.fetch_raw(connection, query)
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    if "at" in frame:
        frame["at"] = pd.to_datetime(frame["at"], format="ISO8601") if len(frame) else frame["at"].astype("datetime64[ns]")
    return frame


def _coded(frame: pd.DataFrame, mapping: dict[str, int]) -> pd.DataFrame:
    codes = frame.pop("kind").map(mapping)
    return frame.assign(code=codes).dropna(subset=["code"]).astype({"code": np.int64})


def _chunk(connection: Connection, low: int, high: int, end: dt.datetime, sources: dict[str, int],
           whole: bool = False) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The customers with ids in [low, high) and their touchpoints up to `end`. With `whole` (one
    chunk holds every customer) the tables are read without the id range: a sequential scan beats
    an index range scan that covers every row."""

    def ids(column) -> list[Any]:
        return [] if whole else [column >= low, column < high]

    c = Customer
    people = _frame(connection, select(c.id, c.signed_up_at, c.acquisition_channel)
                    .where(*ids(c.id), COUNTED_CUSTOMER),
                    ["customer_id", "signed_up_at", "acquisition_channel"])
    people["signed_up_at"] = pd.to_datetime(people["signed_up_at"], format="ISO8601")
    sources["signups"] += int((people["signed_up_at"] <= pd.Timestamp(end)).sum())
    frames = []
    o = Order
    orders = _frame(connection, select(o.customer_id, o.ordered_at).where(
        *ids(o.customer_id), o.ordered_at <= end, o.status.in_(REVENUE_ORDER_STATUSES)),
        ["customer_id", "at"])
    sources["orders"] += len(orders)
    frames.append(orders.assign(code=ORDER))
    w = WebSession
    sessions = _frame(connection, select(w.customer_id, w.started_at, w.source).where(
        *ids(w.customer_id), w.customer_id.is_not(None), w.started_at <= end), ["customer_id", "at", "kind"])
    sources["web_sessions"] += len(sessions)
    frames.append(_coded(sessions, VISITS))
    m = CustomerCommunication
    messages = _frame(connection, select(m.customer_id, m.sent_at, m.channel, m.direction).where(
        *ids(m.customer_id), m.sent_at <= end), ["customer_id", "at", "kind", "direction"])
    sources["communications"] += len(messages)
    inbound = messages.pop("direction").to_numpy() == "inbound"
    messages = _coded(messages.assign(kind=np.where(inbound, "(inbound)", messages["kind"])),
                      {**MESSAGES, "(inbound)": INBOUND})
    frames.append(messages)
    t = SupportTicket
    tickets = _frame(connection, select(t.customer_id, t.created_at).where(
        *ids(t.customer_id), t.created_at <= end), ["customer_id", "at"])
    sources["tickets"] += len(tickets)
    frames.append(tickets.assign(code=TICKET))
    h = CustomerLifecycleHistory
    stages = _frame(connection, select(h.customer_id, h.changed_at, h.to_stage).where(
        *ids(h.customer_id), h.changed_at <= end), ["customer_id", "at", "kind"])
    sources["lifecycle_changes"] += len(stages)
    frames.append(_coded(stages, STAGES))
    events = pd.concat([f[["customer_id", "at", "code"]] for f in frames if len(f)], ignore_index=True) \
        if any(len(f) for f in frames) else pd.DataFrame({"customer_id": [], "at": pd.Series(dtype="datetime64[ns]"),
                                                             "code": []})
    events["customer_id"] = events["customer_id"].astype(np.int64)
    events["code"] = events["code"].astype(np.int64)
    return people, events


def _gap_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c.startswith("gap_") and c != "gap_end"]


KEY_BITS = 32  # a group is cohort (YYYYMM, 0 = all) << 32 | path number (or channel code)
OTHER_KEY = (1 << KEY_BITS) - 1
EVERYONE_KEY = OTHER_KEY - 1  # the row of every path together (rank 0): totals and overall medians


def _rollup(frame: pd.DataFrame, key: str, kind: str, segment: int, labels: list[str]) -> pd.DataFrame | None:
    """Rows of one kind for one segment key, for every cohort and all cohorts together: every path
    together (rank 0), the top paths (by `key`: a path number, or a channel code into `labels`) and
    the rest summed up as one row.
    Groups are single integers, so counting and medians stay in numpy and pandas' integer paths."""
    if frame.empty:
        return None
    cohort = frame["cohort_code"].to_numpy(np.int64)
    value = frame[key].to_numpy(np.int64)
    group = np.concatenate([(cohort << KEY_BITS) | value, value])  # each customer in their cohort and in all
    groups, counts = np.unique(group, return_counts=True)
    order = np.lexsort((groups & OTHER_KEY, -counts, groups >> KEY_BITS))
    ranked_cohort = groups[order] >> KEY_BITS
    starts = np.r_[0, np.flatnonzero(np.diff(ranked_cohort)) + 1]
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    kept = groups[order][rank < TOP_PATHS]
    group = np.where(np.isin(group, kept), group, ((group >> KEY_BITS) << KEY_BITS) | OTHER_KEY)
    medians = ["first_touch_days"] if kind == "first_touch" else ["total", *_gap_columns(frame), "gap_end"]
    data = pd.DataFrame({"group": group, "reached": np.tile(frame["reached"].to_numpy(bool), 2),
                         "steps": np.tile(frame["steps"].to_numpy(np.int64), 2),
                         "outcome": np.tile(frame["outcome_code"].to_numpy(np.int64), 2),
                         **{m: np.tile(frame[m].to_numpy(float), 2) for m in medians}})
    everyone = data.assign(group=((data["group"].to_numpy(np.int64) >> KEY_BITS) << KEY_BITS) | EVERYONE_KEY)
    data = pd.concat([data, everyone], ignore_index=True)
    grouped = data.groupby("group", sort=False)
    summary = grouped.agg(customers=("reached", "size"), reached=("reached", "sum"), steps=("steps", "max"))
    summary = summary.join(grouped[medians].median())
    ends = data.groupby(["group", "outcome"], sort=False).size()
    outcomes: dict[int, dict[str, int]] = {}
    for (g, code), n in ends.items():
        outcomes.setdefault(int(g), {})[OUTCOMES[int(code)]] = int(n)
    summary = summary.reset_index()
    summary["cohort"] = summary["group"].to_numpy(np.int64) >> KEY_BITS
    summary["value"] = summary["group"].to_numpy(np.int64) & OTHER_KEY
    summary["is_other"] = summary["value"] == OTHER_KEY
    summary["place"] = np.select([summary["value"] == EVERYONE_KEY, summary["is_other"]], [0, 2], 1)
    summary = summary.sort_values(["cohort", "place", "customers", "value"], ascending=[True, True, False, True])
    summary["rank"] = summary.groupby("cohort").cumcount()
    values = summary["value"].to_numpy(np.int64).tolist()
    special = {OTHER_KEY: OTHER_PATHS, EVERYONE_KEY: ALL_PATHS}
    cohorts = {c: f"{c // 100:04d}-{c % 100:02d}" for c in set(summary["cohort"].tolist()) if c}
    if kind == "first_touch":
        paths = [special.get(v) or labels[v] for v in values]
        steps = [0 if v in special else 1 for v in values]
        days: list[list[float | None]] = [[] for _ in values]
        total = summary["first_touch_days"].to_numpy(float)
    else:
        names = {v: special.get(v) or " > ".join(path_labels(v) or [NO_TOUCHPOINT]) for v in set(values)}
        paths = [names[v] for v in values]
        steps = [0 if v in special else int(n) for n, v in zip(summary["steps"].tolist(), values, strict=True)]
        between = np.round(summary[_gap_columns(frame)].to_numpy(float), 2).tolist()
        last = np.round(summary["gap_end"].to_numpy(float), 2).tolist()
        days = [[_days(x) for x in row[:max(k - 1, 0)]] + [_days(e)] if k else []
                for row, k, e in zip(between, steps, last, strict=True)]
        total = summary["total"].to_numpy(float)
    return pd.DataFrame({
        "kind": kind, "segment_id": segment or None, "cohort": [cohorts.get(c) for c in summary["cohort"].tolist()],
        "rank": summary["rank"].to_numpy(np.int64), "path": paths, "steps": steps,
        "customers": summary["customers"].to_numpy(np.int64), "reached": summary["reached"].to_numpy(np.int64),
        "outcomes": [outcomes.get(g, {}) for g in summary["group"].tolist()], "median_days": days,
        "median_days_total": [_days(x) for x in np.round(total, 2).tolist()],  # rounded like the gaps
    })


def _days(value: Any) -> float | None:
    return None if value is None or value != value else float(value)  # NaN is not equal to itself


def refresh_journeys(session: Session, as_of: dt.date, now: dt.datetime | None = None,
                     actor: Actor = SYSTEM) -> dict[str, Any]:
    """Compute the journeys as of the end of `as_of` and store them as the latest run (a batch step:
    `actor` must be allowed to run the refresh)."""
    require(actor, "refresh.run")
    started = time.perf_counter()
    end = end_of(as_of)
    rules_stored, _ = get_lifecycle_rules(session)
    rules = ChurnRules(int(rules_stored["churned_days"]), int(rules_stored["inactive_days"]),
                       int(rules_stored["at_risk_days"]))
    connection = session.connection()
    low, high = connection.execute(select(func.min(Customer.id), func.max(Customer.id))).one()
    sources = {"signups": 0, "orders": 0, "web_sessions": 0, "communications": 0, "tickets": 0, "lifecycle_changes": 0}
    purchase_parts, churn_parts = [], []
    cohorts = []
    whole = int(high or 0) - int(low or 0) < CHUNK_CUSTOMERS
    for start in range(int(low or 0), int(high or 0) + 1, CHUNK_CUSTOMERS):
        people, events = _chunk(connection, start, start + CHUNK_CUSTOMERS, end, sources, whole)
        if people.empty:
            continue
        to_purchase, to_churn = customer_journeys(people, events, pd.Timestamp(end), rules)
        purchase_parts.append(to_purchase)
        churn_parts.append(to_churn)
        signup = people["signed_up_at"]
        cohorts.append(pd.Series((signup.dt.year * 100 + signup.dt.month).to_numpy(np.int64),
                                 index=people["customer_id"].to_numpy()))
    to_purchase = pd.concat(purchase_parts, ignore_index=True) if purchase_parts else pd.DataFrame()
    to_churn = pd.concat(churn_parts, ignore_index=True) if churn_parts else pd.DataFrame()
    cohort_of = pd.concat(cohorts) if cohorts else pd.Series(dtype=np.int64)
    channels: list[str] = []
    for frame in (to_purchase, to_churn):
        if not frame.empty:
            frame["cohort_code"] = cohort_of.reindex(frame["customer_id"].to_numpy()).to_numpy(np.int64)
            frame["outcome_code"] = frame["outcome"].map(OUTCOME_CODES).to_numpy(np.int64)
    if not to_purchase.empty:
        codes, uniques = pd.factorize(to_purchase["first_touch"].astype(object))
        to_purchase["channel_code"] = codes.astype(np.int64)
        channels = [str(u) for u in uniques]

    ms = CustomerSegmentMembership
    _, members = bulk.fetch_raw(connection, select(ms.segment_id, ms.customer_id).join(
        CustomerSegment, CustomerSegment.id == ms.segment_id).where(ms.is_active, CustomerSegment.is_active))
    membership = pd.DataFrame.from_records(members, columns=["segment_id", "customer_id"]) if members else \
        pd.DataFrame({"segment_id": pd.Series(dtype=np.int64), "customer_id": pd.Series(dtype=np.int64)})

    run = JourneyRun(as_of=as_of, computed_at=now or utcnow(), customers=len(to_purchase),
                     buyers=int(to_purchase["reached"].sum()) if len(to_purchase) else 0,
                     churned=int(to_churn["reached"].sum()) if len(to_churn) else 0, sources=sources)
    session.add(run)
    session.flush()
    parts: list[pd.DataFrame] = []
    segments = [(ALL, None), *((int(s), g["customer_id"].to_numpy(np.int64))
                               for s, g in membership.groupby("segment_id"))]
    for segment, members_of in segments:
        for kind, frame, key in (("to_purchase", to_purchase, "path"), ("to_churn", to_churn, "path"),
                                 ("first_touch", to_purchase, "channel_code")):
            if frame.empty:
                continue
            subset = frame if members_of is None else frame[np.isin(frame["customer_id"].to_numpy(), members_of)]
            part = _rollup(subset, key, kind, segment, channels)
            if part is not None:
                parts.append(part)
    rows = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if len(rows):
        rows["segment_id"] = rows["segment_id"].astype("Int64")
        bulk.load(connection, JourneyRollup.__table__, rows.assign(run_id=run.id))
    session.execute(delete(JourneyRollup).where(JourneyRollup.run_id != run.id))
    run.seconds = round(time.perf_counter() - started, 2)
    session.flush()
    return {"run_id": run.id, "customers": run.customers, "buyers": run.buyers, "churned": run.churned,
            "rows": len(rows), "sources": sources, "seconds": run.seconds}

