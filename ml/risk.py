"""The risk refresh: signals as of a date, the anomaly model fitted on them, rules and lists
applied, scores stored and reviews and decisions opened (crm_core.risk owns the rules)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from crm_core import platform, risk
from ml.risk_anomaly import RiskAnomalyModel

TRAINING_SAMPLE = 100_000


@dataclass
class ComputedSignals:
    """What `compute_risk_signals` read and ranked, not yet scored against the rules nor stored."""

    as_of: dt.date
    signals: risk.SignalFrame
    anomaly: Any = None
    notes: list[str] = field(default_factory=list)


def compute_risk_signals(engine: Engine, as_of: dt.date, seed: int = 0) -> ComputedSignals:
    """Every customer's signals as of `as_of` and the anomaly model's ranking; writes nothing (the
    batch runs this ahead of its turn on SQLite, while another step writes)."""
    with platform.unit_of_work(engine) as session:
        signals = risk.compute_signals(session, as_of)
    computed = ComputedSignals(as_of, signals)
    frame = signals.frame
    if frame.empty:
        return computed
    try:
        sample = frame.sample(min(len(frame), TRAINING_SAMPLE), random_state=seed)
        model = RiskAnomalyModel(random_state=seed).fit(sample)
        computed.anomaly = model.rank(frame)
        computed.notes.append(f"anomaly model over {len(model.features_)} signals")
    except ValueError as exc:
        computed.notes.append(f"no anomaly model: {exc}")
    return computed


def store_risk(engine: Engine, computed: ComputedSignals, now: dt.datetime, *,
               actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """Apply the rules and lists in force to computed signals, store the scores and open reviews and
    decisions; `status` is "skipped" with a reason when there is nobody. `actor` (the batch's system
    actor by default) must be allowed to run the refresh."""
    platform.require(actor, "refresh.run")
    as_of, signals = computed.as_of, computed.signals
    with platform.unit_of_work(engine, write=True) as session:
        installed = risk.install_default_rules(session, actor)
        if signals.frame.empty:
            return {"status": "skipped", "reason": f"no customers signed up by {as_of.isoformat()}"}
        rules = risk.active_rules(session)
        lists = risk.list_matches(session, now)
        scored = risk.score_frame(signals.frame, rules, computed.anomaly, lists)
        summary = risk.store_scores(session, actor, as_of, now, scored, {r.id: r.name for r in rules})
        risk.store_score_distribution(session, as_of)  # what the Risk reviews page shows of the date
    return {"status": "ok", **summary, "rules": len(rules), "rules_installed": installed,
            "left_out": signals.left_out, "notes": computed.notes}


def refresh_risk(engine: Engine, as_of: dt.date, now: dt.datetime, seed: int = 0, *,
                 actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """Score every customer as of `as_of`; `status` is "skipped" with a reason when there is nobody.
    `actor` (the batch's system actor by default) must be allowed to run the refresh."""
    platform.require(actor, "refresh.run")
    return store_risk(engine, compute_risk_signals(engine, as_of, seed), now, actor=actor)
