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
    INBOUND,
    MESSAGES,
    NO_TOUCHPOINT,
    ORDER,
    OTHER_PATHS,
    STAGES,
    TICKET,
    TOP_PATHS,
    VISITS,
    path_labels,
)
from crm_core.platform.dates import end_of
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
ALL = 0  # the segment key of "all customers"; the cohort key of all cohorts is ""
OTHER_PATH = -1


def _frame(connection: Connection, query, columns: list[str]) -> pd.DataFrame:
    _, rows = bulk.fetch_raw(connection, query)
    frame = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    if "at" in frame:
        frame["at"] = pd.to_datetime(frame["at"], format="ISO8601") if len(frame) else frame["at"].astype("datetime64[ns]")
    return frame


def _coded(frame: pd.DataFrame, mapping: dict[str, int]) -> pd.DataFrame:
    codes = frame.pop("kind").map(mapping)
    return frame.assign(code=codes).dropna(subset=["code"]).astype({"code": np.int64})


def _chunk(connection: Connection, low: int, high: int, end: dt.datetime,
           sources: dict[str, int]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The customers with ids in [low, high) and their touchpoints up to `end`."""
    c = Customer
    people = _frame(connection, select(c.id, c.signed_up_at, c.acquisition_channel)
                    .where(c.id >= low, c.id < high, COUNTED_CUSTOMER),
                    ["customer_id", "signed_up_at", "acquisition_channel"])
    people["signed_up_at"] = pd.to_datetime(people["signed_up_at"], format="ISO8601")
    sources["signups"] += int((people["signed_up_at"] <= pd.Timestamp(end)).sum())
    frames = []
    o = Order
    orders = _frame(connection, select(o.customer_id, o.ordered_at).where(
        o.customer_id >= low, o.customer_id < high, o.ordered_at <= end, o.status.in_(REVENUE_ORDER_STATUSES)),
        ["customer_id", "at"])
    sources["orders"] += len(orders)
    frames.append(orders.assign(code=ORDER))
    w = WebSession
    sessions = _frame(connection, select(w.customer_id, w.started_at, w.source).where(
        w.customer_id >= low, w.customer_id < high, w.started_at <= end), ["customer_id", "at", "kind"])
    sources["web_sessions"] += len(sessions)
    frames.append(_coded(sessions, VISITS))
    m = CustomerCommunication
    messages = _frame(connection, select(m.customer_id, m.sent_at, m.channel, m.direction).where(
        m.customer_id >= low, m.customer_id < high, m.sent_at <= end), ["customer_id", "at", "kind", "direction"])
    sources["communications"] += len(messages)
    inbound = messages.pop("direction").to_numpy() == "inbound"
    messages = _coded(messages.assign(kind=np.where(inbound, "(inbound)", messages["kind"])),
                      {**MESSAGES, "(inbound)": INBOUND})
    frames.append(messages)
    t = SupportTicket
    tickets = _frame(connection, select(t.customer_id, t.created_at).where(
        t.customer_id >= low, t.customer_id < high, t.created_at <= end), ["customer_id", "at"])
    sources["tickets"] += len(tickets)
    frames.append(tickets.assign(code=TICKET))
    h = CustomerLifecycleHistory
    stages = _frame(connection, select(h.customer_id, h.changed_at, h.to_stage).where(
        h.customer_id >= low, h.customer_id < high, h.changed_at <= end), ["customer_id", "at", "kind"])
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


def _rollup(frame: pd.DataFrame, key: str, kind: str, segment: int) -> list[dict[str, Any]]:
    """Rows of one kind for one segment key, for every cohort and all cohorts together: the top paths
    (by `key`) and the rest summed up as one row."""
    if frame.empty:
        return []
    both = pd.concat([frame, frame.assign(cohort="")], ignore_index=True)
    counts = both.groupby(["cohort", key], sort=False).size().rename("n").reset_index()
    counts["rank"] = counts.sort_values(["cohort", "n", key], ascending=[True, False, True]) \
        .groupby("cohort").cumcount()
    top = counts[counts["rank"] < TOP_PATHS]
    kept = pd.MultiIndex.from_frame(top[["cohort", key]])
    inside = pd.MultiIndex.from_frame(both[["cohort", key]]).isin(kept)
    if kind == "first_touch":
        both[key] = np.where(inside, both[key], OTHER_PATHS)
    else:
        both[key] = np.where(inside, both[key], OTHER_PATH)
    gaps = _gap_columns(both) if kind != "first_touch" else []
    medians = ["total", *gaps, "gap_end"] if kind != "first_touch" else ["first_touch_days"]
    grouped = both.groupby(["cohort", key], sort=False)
    summary = grouped.agg(customers=("customer_id", "size"), reached=("reached", "sum"),
                          steps=("steps", "max") if "steps" in both else ("reached", "size"))
    summary = summary.join(grouped[medians].median())
    outcomes = both.groupby(["cohort", key, "outcome"], sort=False).size().unstack(fill_value=0)
    summary = summary.join(outcomes.apply(lambda r: {k: int(v) for k, v in r.items() if v}, axis=1).rename("outcomes"))
    summary = summary.reset_index()
    summary["is_other"] = summary[key].isin([OTHER_PATH, OTHER_PATHS])
    summary = summary.sort_values(["cohort", "is_other", "customers"], ascending=[True, True, False])
    summary["rank"] = summary.groupby("cohort").cumcount() + 1
    rows = []
    for record in summary.to_dict("records"):
        if kind == "first_touch":
            path, steps, days, total = str(record[key]), 1, [], record["first_touch_days"]
        else:
            code = int(record[key])
            labels = [OTHER_PATHS] if code == OTHER_PATH else (path_labels(code) or [NO_TOUCHPOINT])
            steps = 0 if code == OTHER_PATH else int(record["steps"])
            path = " > ".join(labels)
            days = [_days(record[g]) for g in gaps[:max(steps - 1, 0)]] + [_days(record["gap_end"])]
            total = record["total"]
        rows.append({"kind": kind, "segment_id": segment or None, "cohort": record["cohort"] or None,
                     "rank": int(record["rank"]), "path": path, "steps": steps, "customers": int(record["customers"]),
                     "reached": int(record["reached"]), "outcomes": record["outcomes"] or {}, "median_days": days,
                     "median_days_total": _days(total)})
    return rows


def _days(value: Any) -> float | None:
    return None if value is None or pd.isna(value) else round(float(value), 2)


def refresh_journeys(session: Session, as_of: dt.date, now: dt.datetime | None = None) -> dict[str, Any]:
    """Compute the journeys as of the end of `as_of` and store them as the latest run."""
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
    for start in range(int(low or 0), int(high or 0) + 1, CHUNK_CUSTOMERS):
        people, events = _chunk(connection, start, start + CHUNK_CUSTOMERS, end, sources)
        if people.empty:
            continue
        to_purchase, to_churn = customer_journeys(people, events, pd.Timestamp(end), rules)
        purchase_parts.append(to_purchase)
        churn_parts.append(to_churn)
        cohorts.append(pd.Series(people["signed_up_at"].dt.strftime("%Y-%m").to_numpy(), index=people["customer_id"]))
    to_purchase = pd.concat(purchase_parts, ignore_index=True) if purchase_parts else pd.DataFrame()
    to_churn = pd.concat(churn_parts, ignore_index=True) if churn_parts else pd.DataFrame()
    cohort_of = pd.concat(cohorts) if cohorts else pd.Series(dtype=object)
    for frame in (to_purchase, to_churn):
        if not frame.empty:
            frame["cohort"] = cohort_of.reindex(frame["customer_id"].to_numpy()).to_numpy()

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
    rows: list[dict[str, Any]] = []
    segments = [(ALL, None), *((int(s), set(g["customer_id"])) for s, g in membership.groupby("segment_id"))]
    for segment, members_of in segments:
        for kind, frame, key in (("to_purchase", to_purchase, "path"), ("to_churn", to_churn, "path"),
                                 ("first_touch", to_purchase, "first_touch")):
            if frame.empty:
                continue
            subset = frame if members_of is None else frame[frame["customer_id"].isin(members_of)]
            rows += _rollup(subset, key, kind, segment)
    if rows:
        bulk.load(connection, JourneyRollup.__table__, pd.DataFrame(rows).assign(run_id=run.id))
    session.execute(delete(JourneyRollup).where(JourneyRollup.run_id != run.id))
    run.seconds = round(time.perf_counter() - started, 2)
    session.flush()
    return {"run_id": run.id, "customers": run.customers, "buyers": run.buyers, "churned": run.churned,
            "rows": len(rows), "sources": sources, "seconds": run.seconds}

