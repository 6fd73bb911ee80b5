"""Does it work? Save rate by playbook and by person, time to first action, and each playbook's effect
against the randomised holdout of triggered accounts that got no CTA.

- A *verified save* is a CTA closed as saved whose customer placed a revenue order within the horizon
  after the CTA opened (and by `today`): it counts as soon as that order is placed. A CTA closed as
  saved without such an order while its horizon has not passed by `today` is a *pending save*: it
  is left out of the rate (and counted apart) until the customer orders or the horizon passes. The
  save rate is verified saves over the CTAs closed as saved, churned or unreachable, pending saves
  left out ("not needed" and "trigger cleared" do not count either; "churned" does, also when the
  rules closed the CTA because the account churned while it was open).
- *Time to first action* is the hours from opening to the first thing a person did on the CTA.
- A playbook's *effect* compares the share of customers who ordered again within the horizon after
  the trigger fired: rule CTAs of that playbook (treated) against its holdouts (comparison), both
  only when the whole horizon has passed by `today`. The difference comes with a 95% confidence
  interval (normal approximation of two proportions).
"""

from __future__ import annotations

import datetime as dt
import math
import statistics
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.dates import check_as_of, end_of, midnight
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from crm_core.success.triggers import TRIGGER_LABELS
from db.models import REVENUE_ORDER_STATUSES, Order, SuccessCta, SuccessHoldout, SuccessPlaybook, User

DEFAULT_HORIZON_DAYS = 90
Z_95 = 1.959964
SAVE_RATE_OUTCOMES = ("saved", "churned", "unreachable")  # the denominator of the save rate


def _horizon(horizon_days: Any) -> int:
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int) or not 1 <= horizon_days <= 365:
        raise ValidationError("The horizon is a whole number of days from 1 to 365.")
    return horizon_days


def proportion_difference(treated: int, treated_n: int, control: int, control_n: int) -> dict[str, Any]:
    """Rates, their difference and its 95% interval (None where a group is empty)."""
    p1 = treated / treated_n if treated_n else None
    p0 = control / control_n if control_n else None
    if p1 is None or p0 is None:
        return {"treated_rate": p1, "control_rate": p0, "effect": None, "ci_low": None, "ci_high": None}
    se = math.sqrt(p1 * (1 - p1) / treated_n + p0 * (1 - p0) / control_n)
    effect = p1 - p0
    return {"treated_rate": round(p1, 4), "control_rate": round(p0, 4), "effect": round(effect, 4),
            "ci_low": round(effect - Z_95 * se, 4), "ci_high": round(effect + Z_95 * se, 4)}


def save_rates(session: Session, viewer: Actor, today: dt.date, by: str = "playbook",
               horizon_days: int = DEFAULT_HORIZON_DAYS) -> list[dict[str, Any]]:
    """Per playbook or per owner: CTAs, open, closed, claimed, verified and pending saves, the save rate
    and the median hours to first action (see the module docstring)."""
    if by not in ("playbook", "owner"):
        require(viewer, "success.view")
        raise ValidationError("Save rates are by playbook or by owner.")
    return save_rates_by(session, viewer, today, (by,), horizon_days)[by]


def save_rates_by(session: Session, viewer: Actor, today: dt.date, groupings: tuple[str, ...] = ("playbook", "owner"),
                  horizon_days: int = DEFAULT_HORIZON_DAYS) -> dict[str, list[dict[str, Any]]]:
    """`save_rates` for several groupings from one read of the CTAs (the workbench shows both)."""
    require(viewer, "success.view")
    check_as_of(today)
    horizon = _horizon(horizon_days)
    unknown = [by for by in groupings if by not in ("playbook", "owner")]
    if unknown:
        raise ValidationError("Save rates are by playbook or by owner.")
    c = SuccessCta
    rows = session.execute(
        select(c.playbook_id, c.owner_id, c.customer_id, c.opened_at, c.first_action_at, c.status, c.outcome)
        .where(c.opened_on <= today)).all()
    saved_customers = sorted({r[2] for r in rows if r[6] == "saved"})
    orders = _orders_of(session, saved_customers)
    cutoff = end_of(today)
    verdicts = [_save_verdict(outcome, opened_at, orders.get(customer_id, []), horizon, cutoff)
                for _p, _o, customer_id, opened_at, _f, _s, outcome in rows]
    out: dict[str, list[dict[str, Any]]] = {}
    for by in groupings:
        names = ({p.id: (p.name, TRIGGER_LABELS.get(p.trigger, p.trigger)) for p in session.scalars(select(SuccessPlaybook))}
                 if by == "playbook" else {u.id: (u.username, u.role) for u in session.scalars(select(User))})
        column = 0 if by == "playbook" else 1
        groups: dict[Any, dict[str, Any]] = {}
        for row, verdict in zip(rows, verdicts, strict=True):
            _customer_id, opened_at, first_action_at, status, outcome = row[2:]
            entry = groups.setdefault(row[column], {"ctas": 0, "open": 0, "closed": 0, "claimed_saves": 0,
                                                    "verified_saves": 0, "pending_saves": 0, "save_rate_base": 0,
                                                    "hours": []})
            entry["ctas"] += 1
            entry["closed" if status == "closed" else "open"] += 1
            if first_action_at is not None:
                entry["hours"].append(max(0.0, (first_action_at - opened_at).total_seconds() / 3600))
            if outcome in SAVE_RATE_OUTCOMES and verdict != "pending":
                entry["save_rate_base"] += 1
            if outcome == "saved":
                entry["claimed_saves"] += 1
                entry["verified_saves"] += int(verdict == "verified")
                entry["pending_saves"] += int(verdict == "pending")
        result = []
        for key, entry in groups.items():
            name, detail = names.get(key, ("(unassigned)" if by == "owner" else "(none)", ""))
            hours = entry.pop("hours")
            base = entry["save_rate_base"]
            result.append({
                "key": key, "name": name, "detail": detail, **entry,
                "save_rate": round(entry["verified_saves"] / base, 4) if base else None,
                "median_hours_to_first_action": round(statistics.median(hours), 1) if hours else None,
            })
        out[by] = sorted(result, key=lambda r: (-r["ctas"], str(r["name"])))
    return out


def _save_verdict(outcome: str | None, opened_at: dt.datetime, orders: list[dt.datetime], horizon: int,
                  cutoff: dt.datetime) -> str | None:
    """For a CTA closed as saved: "verified" once the customer ordered within the horizon after it
    opened, "pending" while that horizon has not passed, else "unverified"; None for other outcomes."""
    if outcome != "saved":
        return None
    window_end = opened_at + dt.timedelta(days=horizon)
    if any(opened_at < when <= min(window_end, cutoff) for when in orders):
        return "verified"
    return "pending" if window_end > cutoff else "unverified"


def playbook_effects(session: Session, viewer: Actor, today: dt.date,
                     horizon_days: int = DEFAULT_HORIZON_DAYS) -> list[dict[str, Any]]:
    """Per playbook with a holdout: treated and comparison accounts whose horizon has passed, the
    share of each that ordered again within it, the effect and its 95% interval; and how many are
    still inside their horizon (`pending`)."""
    require(viewer, "success.view")
    check_as_of(today)
    horizon = _horizon(horizon_days)
    matured = today - dt.timedelta(days=horizon)
    c, h = SuccessCta, SuccessHoldout

    treated = _group_counts(session, c.playbook_id, c.customer_id, c.opened_on, [c.source == "rule"], matured, horizon)
    control = _group_counts(session, h.playbook_id, h.customer_id, h.fired_on, [], matured, horizon)
    playbooks = {p.id: p for p in session.scalars(select(SuccessPlaybook))}
    result = []
    for playbook_id in sorted(set(treated) | set(control), key=lambda i: playbooks[i].name if i in playbooks else ""):
        t = treated.get(playbook_id, {"n": 0, "reordered": 0, "pending": 0})
        k = control.get(playbook_id, {"n": 0, "reordered": 0, "pending": 0})
        playbook = playbooks.get(playbook_id)
        result.append({
            "playbook_id": playbook_id, "playbook": playbook.name if playbook else "(deleted)",
            "trigger": TRIGGER_LABELS.get(playbook.trigger, playbook.trigger) if playbook else "",
            "holdout_share": playbook.holdout_share if playbook else None,
            "treated": t["n"], "treated_reordered": t["reordered"], "control": k["n"],
            "control_reordered": k["reordered"], "pending": t["pending"] + k["pending"],
            **proportion_difference(t["reordered"], t["n"], k["reordered"], k["n"]),
        })
    return result


def _group_counts(session: Session, playbook_column, customer_column, fired_column, conditions: list[Any],
                  matured: dt.date, horizon: int) -> dict[int, dict[str, int]]:
    """Per playbook: triggers whose horizon passed by `matured` (n, reordered within it) and those still pending."""
    rows = session.execute(
        select(playbook_column, customer_column, fired_column).where(*conditions, playbook_column.is_not(None))
    ).all()
    by_playbook: dict[int, dict[str, int]] = {}
    ripe = [(pid, cid, fired) for pid, cid, fired in rows if fired <= matured]
    for pid, _cid, fired in rows:
        entry = by_playbook.setdefault(pid, {"n": 0, "reordered": 0, "pending": 0})
        if fired > matured:
            entry["pending"] += 1
    orders = _orders_of(session, sorted({cid for _, cid, _ in ripe}))
    for pid, cid, fired in ripe:
        entry = by_playbook[pid]
        entry["n"] += 1
        start, end = midnight(fired + dt.timedelta(days=1)), midnight(fired + dt.timedelta(days=horizon + 1))
        if any(start <= when < end for when in orders.get(cid, [])):
            entry["reordered"] += 1
    return by_playbook


def _orders_of(session: Session, customer_ids: list[int]) -> dict[int, list[dt.datetime]]:
    found: dict[int, list[dt.datetime]] = {}
    for start in range(0, len(customer_ids), 1000):
        chunk = customer_ids[start:start + 1000]
        for cid, when in session.execute(
                select(Order.customer_id, Order.ordered_at).where(Order.customer_id.in_(chunk),
                                                                   Order.status.in_(REVENUE_ORDER_STATUSES))).all():
            found.setdefault(cid, []).append(when)
    return found

