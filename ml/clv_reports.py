"""What the Customer value page reads of lifetime value: aggregates of the scored snapshot.

Everything is aggregated in the database from `customer_analytics` (the snapshot step copies in
the values `ml.clv.refresh_lifetime_value` stores); only bins, buckets and one page of customers
leave it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, Integer, case, cast, delete, func, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import Session
from sqlalchemy.sql.functions import FunctionElement

from crm_core import customers, platform
from db.models import Customer, CustomerAnalytics, MLModel, RollupSummary

from . import registry

A = CustomerAnalytics
SCORED = A.clv_12m.is_not(None)
FREQUENCY_EDGES = (1, 2, 3, 5, 8, 13, 21)  # repeat purchases: 0, 1, 2, 3-4, 5-7, 8-12, 13-20, 21+
RECENCY_BUCKETS = 8
MAX_BINS = 60


class bin_index(FunctionElement):
    """floor(value / width) as an integer, for non-negative values (histogram bins in SQL)."""

    type = Integer()
    inherit_cache = True
    name = "bin_index"


@compiles(bin_index, "sqlite")
def _bin_index_sqlite(element, compiler, **kw):
    value, width = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(({value}) / ({width}) AS INTEGER)"


@compiles(bin_index, "postgresql")
def _bin_index_postgresql(element, compiler, **kw):
    value, width = (compiler.process(c, **kw) for c in element.clauses)
    return f"CAST(FLOOR(({value}) / ({width})) AS INTEGER)"


def _nice_width(span: float, bins: int) -> float:
    """A round bin width (1, 2 or 5 times a power of ten) giving about `bins` bins over `span`."""
    import math

    raw = max(span / bins, 0.01)
    power = 10 ** math.floor(math.log10(raw))
    for step in (1, 2, 5, 10):
        if raw <= step * power:
            return step * power
    return 10 * power


def scoring_key(session: Session, viewer: platform.Actor) -> int | None:
    """The active CLV model's id: it changes with every scoring, so it keys the page's cached aggregates."""
    platform.require(viewer, "value.view")
    return session.scalar(select(MLModel.id).where(MLModel.name == "clv", MLModel.is_active.is_(True)))


def overview(session: Session, viewer: platform.Actor) -> dict[str, Any] | None:
    """Headline figures of the scored snapshot and the active model, or None before the first scoring."""
    platform.require(viewer, "value.view")
    row = session.execute(
        select(
            func.count(),
            func.max(A.as_of),
            func.sum(A.clv_12m),
            func.sum(A.predicted_purchases_12m),
            func.avg(A.prob_alive),
            func.sum(case((A.prob_alive >= 0.5, 1), else_=0)),
            func.sum(A.historic_clv),
            func.avg(A.expected_order_value),
        ).where(SCORED)
    ).one()
    scored, as_of, clv, purchases, alive, likely_alive, historic, order_value = row
    if not scored:
        return None
    model = next((v for v in registry.versions(session, "clv") if v["active"]), None)
    return {
        "as_of": as_of,
        "customers_scored": int(scored),
        "clv_12m_total": float(clv or 0),
        "clv_12m_mean": float(clv or 0) / scored,
        "expected_purchases_12m": float(purchases or 0),
        "mean_prob_alive": float(alive or 0),
        "likely_alive": int(likely_alive or 0),
        "historic_clv_total": float(historic or 0),
        "mean_expected_order_value": float(order_value or 0),
        "model": model,
    }


def clv_histogram(session: Session, viewer: platform.Actor, bins: int = 25) -> list[dict[str, Any]]:
    """Customers per 12-month CLV bin; the bins span 0 to the 99th percentile, the last one is open-ended."""
    platform.require(viewer, "value.view")
    if isinstance(bins, bool) or not isinstance(bins, int) or not 2 <= bins <= MAX_BINS:
        raise platform.ValidationError(f"The number of bins must be a whole number from 2 to {MAX_BINS}.")
    scored = session.scalar(select(func.count()).where(SCORED)) or 0
    if not scored:
        return []
    offset = min(scored - 1, int(scored * 0.99))
    cap = session.scalar(select(A.clv_12m).where(SCORED).order_by(A.clv_12m).offset(offset).limit(1))
    width = _nice_width(float(cap or 0), bins)
    last = max(1, int(float(cap or 0) // width))
    index = bin_index(cast(A.clv_12m, Float), width)
    bucket = case((index >= last, last), else_=index)
    rows = session.execute(
        select(bucket.label("bin"), func.count(), func.sum(A.clv_12m))
        .where(SCORED)
        .group_by(bucket)
        .order_by(bucket)
    ).all()
    return [
        {
            "bin": int(b),
            "lower": round(b * width, 2),
            "upper": None if b == last else round((b + 1) * width, 2),
            "label": f"€{b * width:,.0f}+" if b == last else f"€{b * width:,.0f}–{(b + 1) * width:,.0f}",
            "customers": int(n),
            "clv_total": float(total or 0),
        }
        for b, n, total in rows
    ]


def _frequency_bucket():
    labels = []
    whens = []
    previous = 0
    for edge in FREQUENCY_EDGES:
        label = str(previous) if edge - previous == 1 else f"{previous}–{edge - 1}"
        whens.append((A.clv_frequency < edge, len(labels)))
        labels.append(label)
        previous = edge
    labels.append(f"{previous}+")
    return case(*whens, else_=len(labels) - 1), labels


def alive_heatmap(session: Session, viewer: platform.Actor) -> dict[str, Any]:
    """Mean P(alive) and customers per repeat-purchase bucket x recency bucket (weeks to the last purchase)."""
    platform.require(viewer, "value.view")
    longest = session.scalar(select(func.max(A.clv_recency)).where(SCORED, A.clv_recency.is_not(None)))
    if longest is None:
        return {"cells": [], "frequency_labels": [], "recency_labels": []}
    width = max(1.0, float(-(-float(longest) // RECENCY_BUCKETS)))
    raw_recency = bin_index(cast(A.clv_recency, Float), width)
    recency = case((raw_recency >= RECENCY_BUCKETS - 1, RECENCY_BUCKETS - 1), else_=raw_recency)
    frequency, frequency_labels = _frequency_bucket()
    rows = session.execute(
        select(frequency.label("f"), recency.label("r"), func.count(), func.avg(A.prob_alive),
               func.avg(A.predicted_purchases_12m))
        .where(SCORED, A.clv_recency.is_not(None), A.clv_frequency.is_not(None))
        .group_by(frequency, recency)
    ).all()
    recency_labels = [f"{i * width:.0f}–{(i + 1) * width:.0f}" for i in range(RECENCY_BUCKETS)]
    return {
        "cells": [
            {"frequency": frequency_labels[int(f)], "recency": recency_labels[int(r)], "frequency_index": int(f),
             "recency_index": int(r), "customers": int(n), "mean_prob_alive": float(p or 0),
             "mean_expected_purchases": float(e or 0)}
            for f, r, n, p, e in rows
        ],
        "frequency_labels": frequency_labels,
        "recency_labels": recency_labels,
    }


def by_segment(session: Session, viewer: platform.Actor) -> list[dict[str, Any]]:
    """Expected purchases, CLV and P(alive) per RFM segment, highest CLV first."""
    platform.require(viewer, "value.view")
    segment = func.coalesce(A.rfm_segment, "(no segment)")
    rows = session.execute(
        select(segment, func.count(), func.sum(A.predicted_purchases_12m), func.sum(A.clv_12m),
               func.avg(A.prob_alive), func.sum(A.historic_clv))
        .where(SCORED)
        .group_by(segment)
        .order_by(func.sum(A.clv_12m).desc())
    ).all()
    return [
        {"segment": s, "customers": int(n), "expected_purchases_12m": float(p or 0), "clv_12m": float(c or 0),
         "mean_prob_alive": float(a or 0), "historic_clv": float(h or 0)}
        for s, n, p, c, a, h in rows
    ]


VALUE_SUMMARY = "customer_value"


def _aggregates(session: Session, viewer: platform.Actor) -> dict[str, Any]:
    summary = overview(session, viewer)
    if summary is None:
        return {"summary": None}
    return {"summary": summary, "histogram": clv_histogram(session, viewer),
            "heatmap": alive_heatmap(session, viewer), "segments": by_segment(session, viewer)}


def refresh_value_summary(session: Session, as_of: dt.date) -> dict[str, Any] | None:
    """The batch step after the snapshot: the page's aggregates of the scored snapshot, computed once
    (five passes over every customer's row) and stored with the model they came from."""
    found = _aggregates(session, platform.SYSTEM)
    if found["summary"] is None:
        session.execute(delete(RollupSummary).where(RollupSummary.name == VALUE_SUMMARY))
        return None
    found["summary"] = {k: v for k, v in found["summary"].items() if k != "model"}
    platform.replace_summary(session, VALUE_SUMMARY, as_of,
                             platform.jsonable({**found, "model_id": scoring_key(session, platform.SYSTEM)}, float))
    return found["summary"]


def aggregates(session: Session, viewer: platform.Actor) -> dict[str, Any]:
    """The Customer value page's headline figures and chart data: as the refresh stored them after the
    last snapshot, or counted now when there is no stored summary for the active model, or an import, a
    merge or an erasure has changed the snapshot since."""
    platform.require(viewer, "value.view")
    stored = session.scalar(select(RollupSummary).where(RollupSummary.name == VALUE_SUMMARY))
    if (stored is None or stored.payload.get("model_id") != scoring_key(session, viewer)
            or platform.history_rewritten_since(session, stored.built_at)):
        return _aggregates(session, viewer)
    payload = {k: v for k, v in stored.payload.items() if k != "model_id"}
    summary = dict(payload["summary"])
    summary["as_of"] = dt.date.fromisoformat(summary["as_of"]) if summary.get("as_of") else None
    summary["model"] = next((v for v in registry.versions(session, "clv") if v["active"]), None)
    return {**payload, "summary": summary}


def top_customers(session: Session, viewer: platform.Actor, page: int = 1, page_size: int = 50,
                  after: str | None = None) -> platform.Page:
    """Customers by 12-month CLV, highest first (customer id breaks ties): a numbered page, or with
    `after` (a cursor, FIRST for the start) the next `page_size` by keyset."""
    platform.require(viewer, "value.view")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 1000:
        raise platform.ValidationError("Page size must be a whole number between 1 and 1000.")
    if isinstance(page, bool) or not isinstance(page, int):
        raise platform.ValidationError("The page must be a whole number.")
    page = 0 if after is not None else max(1, page)
    total = None if after is not None else session.scalar(select(func.count()).where(SCORED)) or 0
    rows, next_after = platform.fetch_rows(
        session,
        select(A.customer_id, Customer.first_name, Customer.last_name, Customer.email, A.clv_12m, A.historic_clv,
               A.predicted_purchases_12m, A.prob_alive, A.expected_order_value, A.clv_frequency, A.order_count,
               A.last_order_at, A.rfm_segment)
        .join(Customer, Customer.id == A.customer_id)
        .where(SCORED),
        (platform.SortKey(A.clv_12m, descending=True), platform.SortKey(A.customer_id)), "lifetime_values",
        page=page, page_size=page_size, after=after)
    return platform.Page(
        rows=[
            {
                "customer_id": cid, "customer": customers.shown_name(viewer, first, last, cid),
                "email": customers.shown_email(viewer, email),
                "clv_12m": float(clv or 0), "historic_clv": float(historic or 0),
                "expected_purchases_12m": round(float(purchases or 0), 2),
                "prob_alive": round(float(alive or 0), 3),
                "expected_order_value": float(order_value or 0), "repeat_purchases": repeat,
                "orders": orders, "last_order_at": last_order, "rfm_segment": segment,
            }
            for cid, first, last, email, clv, historic, purchases, alive, order_value, repeat, orders, last_order,
            segment, *_key in rows
        ],
        total=None if total is None else int(total), page=page, page_size=page_size, next_after=next_after,
    )
