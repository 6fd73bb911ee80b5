"""Risk scores 0-100 per type (fraud, credit, account takeover) and overall, with levels and the
action each customer gets.

A type's score is the sum of the weights of its rules that fire, plus up to `ANOMALY_POINTS` from
the anomaly model (for fraud and account takeover), capped at 100; overall is the highest of the
three. Actions are decided in a fixed order, the first that applies wins: allow-list (nothing
happens), block-list, a block rule, a review rule or an overall score at the review threshold, a
restrict rule.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.permissions import require
from crm_core.risk.decisions import DECISION_DAYS, RESTRICTED_ORDER_LIMIT
from crm_core.risk.rules import evaluate
from db import bulk
from db.models import RISK_SCORE_TYPES, RiskDecision, RiskReview, RiskRule, RiskScore

LEVEL_FLOORS: dict[str, float] = {"low": 0.0, "medium": 25.0, "high": 50.0, "critical": 75.0}
REVIEW_THRESHOLD = LEVEL_FLOORS["high"]  # an overall score from here opens a review
ANOMALY_POINTS = 20.0  # the most the anomaly model adds to the fraud and account-takeover scores
ANOMALY_FROM = 0.9  # the anomaly rank (share of customers less unusual) from which it adds points
ANOMALY_TYPES = ("fraud", "account_takeover")
ACTION_ORDER = ("allow-list", "block-list", "block", "review", "restrict")
REVIEW_SLA_HOURS = 24  # a review should be decided within this many hours of opening


def score_level(score: np.ndarray | float) -> Any:
    """The level of each score (the same bands as the churn levels' names)."""
    values = np.asarray(score, dtype=float)
    levels = np.select([values >= LEVEL_FLOORS["critical"], values >= LEVEL_FLOORS["high"],
                        values >= LEVEL_FLOORS["medium"]], ["critical", "high", "medium"], "low")
    return levels if values.ndim else str(levels)


def anomaly_points(anomaly: np.ndarray) -> np.ndarray:
    return ANOMALY_POINTS * np.clip((np.nan_to_num(anomaly, nan=0.0) - ANOMALY_FROM) / (1 - ANOMALY_FROM), 0, 1)


def score_frame(signals: pd.DataFrame, rules: list[RiskRule], anomaly: pd.Series | None = None,
                lists: dict[str, dict[int, str]] | None = None) -> pd.DataFrame:
    """Scores, level, fired rules and action for every customer (row) of the signal frame."""
    n = len(signals)
    ids = signals.index.to_numpy()
    points = {kind: np.zeros(n) for kind in RISK_SCORE_TYPES}
    wants = {action: np.zeros(n, dtype=bool) for action in ("block", "review", "restrict")}
    fired: list[list[int] | None] = [None] * n
    for rule in rules:
        mask = evaluate(rule.condition, signals)
        if not mask.any():
            continue
        points[rule.risk_type] += rule.weight * mask
        if rule.action in wants:
            wants[rule.action] |= mask
        for position in np.flatnonzero(mask):
            held = fired[position]
            if held is None:
                fired[position] = [rule.id]
            else:
                held.append(rule.id)
    rank = anomaly.reindex(ids).to_numpy(dtype=float) if anomaly is not None else np.full(n, np.nan)
    extra = anomaly_points(rank)
    for kind in ANOMALY_TYPES:
        points[kind] = points[kind] + extra
    out = pd.DataFrame({kind: np.round(np.minimum(points[kind], 100.0), 1) for kind in RISK_SCORE_TYPES}, index=ids)
    out["overall"] = out[list(RISK_SCORE_TYPES)].max(axis=1)
    out["level"] = score_level(out["overall"].to_numpy())
    out["anomaly"] = np.round(rank, 4)
    out["fired"] = fired
    lists = lists or {"allow": {}, "block": {}}
    allowed = np.isin(ids, list(lists["allow"]))
    blocked = np.isin(ids, list(lists["block"]))
    review = wants["review"] | (out["overall"].to_numpy() >= REVIEW_THRESHOLD)
    out["action"] = np.select([allowed, blocked, wants["block"], review, wants["restrict"]],
                              ["none", "block", "block", "review", "restrict"], "none")
    out["why"] = np.select([allowed, blocked, wants["block"], wants["review"], review, wants["restrict"]],
                           ["allow-list", "block-list", "block rule", "review rule", "score", "restrict rule"], "")
    for kind in ("allow", "block"):
        for customer_id, reason in lists[kind].items():
            if customer_id in out.index and (kind == "allow" or not allowed[out.index.get_loc(customer_id)]):
                out.at[customer_id, "why"] = reason
    return out


def _main_type(row: pd.Series) -> str:
    return max(RISK_SCORE_TYPES, key=lambda kind: row[kind])


def store_scores(session: Session, actor: Actor, as_of: dt.date, now: dt.datetime, scored: pd.DataFrame,
                 rule_names: dict[int, str]) -> dict[str, int]:
    """Write the scores of `as_of` (replacing that date's), open a review for each customer to review
    without an open one, and record a decision for each block or restriction not already in force."""
    require(actor, "refresh.run")
    connection = session.connection()
    session.execute(delete(RiskScore).where(RiskScore.as_of == as_of))
    frame = scored[["fraud", "credit", "account_takeover", "overall", "level", "anomaly", "action", "fired"]].copy()
    frame["anomaly"] = frame["anomaly"].astype(float).where(frame["anomaly"].notna(), None)
    frame.insert(0, "customer_id", scored.index.to_numpy())
    frame.insert(1, "as_of", as_of)
    bulk.load(connection, RiskScore.__table__, frame.reset_index(drop=True))

    open_reviews = set(session.scalars(select(RiskReview.customer_id).where(RiskReview.status == "open")))
    to_review = scored[(scored["action"] == "review") & ~scored.index.isin(list(open_reviews))]
    if len(to_review):
        reviews = pd.DataFrame({
            "customer_id": to_review.index.to_numpy(),
            "source": np.where(to_review["why"].str.endswith("list"), "list",
                               np.where(to_review["why"] == "review rule", "rule", "score")),
            "risk_type": [_main_type(row) for _, row in to_review.iterrows()],
            "score": to_review["overall"].to_numpy(),
            "anomaly": to_review["anomaly"].astype(float).where(to_review["anomaly"].notna(), None).to_numpy(),
            "fired": [[{"id": i, "name": rule_names.get(i, f"rule {i}")} for i in (f or [])] for f in to_review["fired"]],
            "status": "open", "opened_at": now, "due_at": now + dt.timedelta(hours=REVIEW_SLA_HOURS), "version": 1,
        })
        bulk.load(connection, RiskReview.__table__, reviews)
    in_force = active_decision_actions(session, now)
    decide = scored[scored["action"].isin(["block", "restrict"])]
    rows = [{"customer_id": int(cid), "action": row["action"], "reason": f"Automatic: {row['why']}",
             "created_at": now, "expires_at": now + dt.timedelta(days=DECISION_DAYS),
             "order_limit": RESTRICTED_ORDER_LIMIT if row["action"] == "restrict" else None}
            for cid, row in decide.iterrows()
            if not (in_force.get(int(cid)) == "block" or in_force.get(int(cid)) == row["action"])]
    if rows:
        session.execute(RiskDecision.__table__.insert(), rows)
    summary = {"scored": len(scored), "reviews_opened": len(to_review), "decisions": len(rows),
               **{f"level_{level}": int((scored["level"] == level).sum()) for level in LEVEL_FLOORS}}
    record_audit(session, actor, "risk.score", "customer_risk_scores", as_of.isoformat(), after=summary)
    return summary


def active_decision_actions(session: Session, now: dt.datetime, customer_ids: list[int] | None = None
                            ) -> dict[int, str]:
    """customer -> the strongest decision in force at `now` ("block" over "restrict")."""
    query = select(RiskDecision.customer_id, RiskDecision.action).where(
        RiskDecision.lifted_at.is_(None), RiskDecision.created_at <= now,
        or_(RiskDecision.expires_at.is_(None), RiskDecision.expires_at > now)).distinct()
    if customer_ids is not None:
        query = query.where(RiskDecision.customer_id.in_(customer_ids))
    found: dict[int, str] = {}
    for customer_id, action in session.execute(query):
        if found.get(int(customer_id)) != "block":
            found[int(customer_id)] = action
    return found
