"""The risk refresh: signals as of a date, the anomaly model fitted on them, rules and lists
applied, scores stored and reviews and decisions opened (crm_core.risk owns the rules)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Engine

from crm_core import platform, risk
from ml.risk_anomaly import RiskAnomalyModel

TRAINING_SAMPLE = 100_000


def refresh_risk(engine: Engine, as_of: dt.date, now: dt.datetime, seed: int = 0, *,
                 actor: platform.Actor = platform.SYSTEM) -> dict[str, Any]:
    """Score every customer as of `as_of`; `status` is "skipped" with a reason when there is nobody.
    `actor` (the batch's system actor by default) must be allowed to run the refresh."""
    platform.require(actor, "refresh.run")
    with platform.unit_of_work(engine) as session:
        installed = risk.install_default_rules(session, actor)
        signals = risk.compute_signals(session, as_of)
        frame = signals.frame
        if frame.empty:
            return {"status": "skipped", "reason": f"no customers signed up by {as_of.isoformat()}"}
        notes: list[str] = []
        anomaly = None
        try:
            sample = frame.sample(min(len(frame), TRAINING_SAMPLE), random_state=seed)
            model = RiskAnomalyModel(random_state=seed).fit(sample)
            anomaly = model.rank(frame)
            notes.append(f"anomaly model over {len(model.features_)} signals")
        except ValueError as exc:
            notes.append(f"no anomaly model: {exc}")
        rules = risk.active_rules(session)
        lists = risk.list_matches(session, now)
        scored = risk.score_frame(frame, rules, anomaly, lists)
        summary = risk.store_scores(session, actor, as_of, now, scored, {r.id: r.name for r in rules})
        risk.store_score_distribution(session, as_of)  # what the Risk reviews page shows of the date
    return {"status": "ok", **summary, "rules": len(rules), "rules_installed": installed,
            "left_out": signals.left_out, "notes": notes}
