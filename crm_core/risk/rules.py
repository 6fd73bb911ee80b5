"""Risk rules kept as data: a condition over the signals, a weight, a risk type and an action.

A condition is JSON, `{"all": [...]}` or `{"any": [...]}` groups (nested up to three deep) of
`{"signal", "op", "value"}` comparisons, checked against the signal whitelist and the operators
below and evaluated column-wise over the signal frame; nothing is ever run as code. A comparison
over a signal the shop has no source for is false, so such a rule never fires (and says why).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from crm_core.risk.signals import SIGNALS_BY_NAME
from db.models import RISK_ACTIONS, RISK_SCORE_TYPES, RiskRule

OPERATORS = (">", ">=", "<", "<=", "==", "!=")
MAX_DEPTH = 3
MAX_CONDITIONS = 20
NAME_LIMIT = 120

# The rules a shop starts with (installed by the first risk refresh when there are none).
DEFAULT_RISK_RULES: tuple[dict[str, Any], ...] = (
    {"name": "Device shared with 2+ other accounts", "risk_type": "fraud", "weight": 35, "action": "review",
     "condition": {"all": [{"signal": "shared_device_accounts", "op": ">=", "value": 2}]}},
    {"name": "Card shared with another account", "risk_type": "fraud", "weight": 30, "action": "none",
     "condition": {"all": [{"signal": "shared_card_accounts", "op": ">=", "value": 1}]}},
    {"name": "Shipping address shared with 2+ other accounts", "risk_type": "fraud", "weight": 25, "action": "none",
     "condition": {"all": [{"signal": "shared_address_accounts", "op": ">=", "value": 2}]}},
    {"name": "Order burst: 4x the usual week", "risk_type": "fraud", "weight": 20, "action": "none",
     "condition": {"all": [{"signal": "velocity_ratio", "op": ">=", "value": 4},
                           {"signal": "orders_7d", "op": ">=", "value": 3}]}},
    {"name": "Order 5x the usual amount", "risk_type": "fraud", "weight": 15, "action": "none",
     "condition": {"all": [{"signal": "amount_ratio", "op": ">=", "value": 5}]}},
    {"name": "Billing and shipping countries differ", "risk_type": "fraud", "weight": 10, "action": "none",
     "condition": {"all": [{"signal": "country_mismatch", "op": "==", "value": 1}]}},
    {"name": "Two or more chargebacks in a year", "risk_type": "credit", "weight": 45, "action": "review",
     "condition": {"all": [{"signal": "chargebacks_365d", "op": ">=", "value": 2}]}},
    {"name": "Chargebacks on over 20% of orders", "risk_type": "credit", "weight": 30, "action": "none",
     "condition": {"all": [{"signal": "chargeback_ratio", "op": ">=", "value": 0.2}]}},
    {"name": "Three or more cards added in 30 days", "risk_type": "credit", "weight": 25, "action": "none",
     "condition": {"all": [{"signal": "cards_added_30d", "op": ">=", "value": 3}]}},
    {"name": "Identity check failed", "risk_type": "credit", "weight": 30, "action": "none",
     "condition": {"all": [{"signal": "identity_failed", "op": "==", "value": 1}]}},
    {"name": "Many orders undone", "risk_type": "credit", "weight": 20, "action": "none",
     "condition": {"all": [{"signal": "refund_ratio", "op": ">=", "value": 0.3},
                           {"signal": "orders_365d", "op": ">=", "value": 3}]}},
    {"name": "New device and new IP", "risk_type": "account_takeover", "weight": 30, "action": "none",
     "condition": {"all": [{"signal": "new_device_new_ip_14d", "op": "==", "value": 1}]}},
    {"name": "Impossible travel", "risk_type": "account_takeover", "weight": 35, "action": "none",
     "condition": {"all": [{"signal": "impossible_travel_30d", "op": "==", "value": 1}]}},
    {"name": "Password or e-mail change, then address or payout change", "risk_type": "account_takeover",
     "weight": 40, "action": "review",
     "condition": {"all": [{"signal": "credential_then_payout_change", "op": "==", "value": 1}]}},
)


def parse_condition(condition: Any, depth: int = 0) -> dict[str, Any]:
    """The condition checked and normalised; a ValidationError says what is wrong with it."""
    if depth >= MAX_DEPTH:
        raise ValidationError(f"A rule nests groups at most {MAX_DEPTH} deep.")
    if not isinstance(condition, dict) or len(condition) != 1 or next(iter(condition)) not in ("all", "any"):
        raise ValidationError('A condition is {"all": [...]} or {"any": [...]} with comparisons inside.')
    key, items = next(iter(condition.items()))
    if not isinstance(items, list) or not items:
        raise ValidationError(f'The "{key}" group needs at least one comparison.')
    if len(items) > MAX_CONDITIONS:
        raise ValidationError(f"A group holds at most {MAX_CONDITIONS} comparisons.")
    parsed: list[dict[str, Any]] = []
    for item in items:
        if isinstance(item, dict) and set(item) <= {"all", "any"} and len(item) == 1:
            parsed.append(parse_condition(item, depth + 1))
            continue
        if not isinstance(item, dict) or set(item) != {"signal", "op", "value"}:
            raise ValidationError('Each comparison has exactly "signal", "op" and "value".')
        if item["signal"] not in SIGNALS_BY_NAME:
            raise ValidationError(f"Unknown signal {item['signal']!r}; choose one of: {', '.join(SIGNALS_BY_NAME)}.")
        if item["op"] not in OPERATORS:
            raise ValidationError(f"Unknown operator {item['op']!r}; use one of {' '.join(OPERATORS)}.")
        value = item["value"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise ValidationError(f"The value for {item['signal']} must be a number, not {value!r}.")
        parsed.append({"signal": item["signal"], "op": item["op"], "value": float(value)})
    return {key: parsed}


def condition_signals(condition: dict[str, Any]) -> set[str]:
    key, items = next(iter(condition.items()))
    found: set[str] = set()
    for item in items:
        found |= condition_signals(item) if "signal" not in item else {item["signal"]}
    return found


def evaluate(condition: dict[str, Any], frame: pd.DataFrame) -> np.ndarray:
    """A boolean mask over the frame's rows; a missing signal or value compares false."""
    key, items = next(iter(condition.items()))
    masks = []
    for item in items:
        if "signal" not in item:
            masks.append(evaluate(item, frame))
            continue
        if item["signal"] not in frame:
            masks.append(np.zeros(len(frame), dtype=bool))
            continue
        column = frame[item["signal"]].to_numpy(dtype=float)
        value = item["value"]
        with np.errstate(invalid="ignore"):
            result = {">": column > value, ">=": column >= value, "<": column < value, "<=": column <= value,
                      "==": column == value, "!=": (column != value) & ~np.isnan(column)}[item["op"]]
        masks.append(result)
    return np.logical_and.reduce(masks) if key == "all" else np.logical_or.reduce(masks)


def describe(condition: dict[str, Any]) -> str:
    """The condition in words, e.g. `shared_device_accounts >= 2 and orders_7d >= 3`."""
    key, items = next(iter(condition.items()))
    parts = [f"({describe(i)})" if "signal" not in i else f"{i['signal']} {i['op']} {i['value']:g}" for i in items]
    return (" and " if key == "all" else " or ").join(parts)


def _check(name: str, risk_type: str, weight: int, action: str) -> str:
    name = (name or "").strip()
    if not name:
        raise ValidationError("A rule needs a name.")
    if len(name) > NAME_LIMIT:
        raise ValidationError(f"A rule name has at most {NAME_LIMIT} characters.")
    if risk_type not in RISK_SCORE_TYPES:
        raise ValidationError(f"Unknown risk type {risk_type!r}; use one of {', '.join(RISK_SCORE_TYPES)}.")
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise ValidationError("The weight is a whole number from 0 to 100.")
    if action not in RISK_ACTIONS:
        raise ValidationError(f"Unknown action {action!r}; use one of {', '.join(RISK_ACTIONS)}.")
    return name


def _as_dict(rule: RiskRule) -> dict[str, Any]:
    return {"id": rule.id, "name": rule.name, "risk_type": rule.risk_type, "condition": rule.condition,
            "weight": rule.weight, "action": rule.action, "is_active": rule.is_active, "version": rule.version}


def list_rules(session: Session, viewer: Actor, active_only: bool = False) -> list[dict[str, Any]]:
    require(viewer, "risk.view")
    query = select(RiskRule).order_by(RiskRule.risk_type, RiskRule.weight.desc(), RiskRule.id)
    if active_only:
        query = query.where(RiskRule.is_active)
    return [{**_as_dict(rule), "description": describe(rule.condition)} for rule in session.scalars(query)]


def active_rules(session: Session) -> list[RiskRule]:
    return list(session.scalars(select(RiskRule).where(RiskRule.is_active).order_by(RiskRule.id)))


def _name_taken(session: Session, name: str, rule_id: int | None) -> bool:
    query = select(RiskRule.id).where(func.lower(RiskRule.name) == name.lower())
    if rule_id is not None:
        query = query.where(RiskRule.id != rule_id)
    return session.scalar(query) is not None


def save_rule(session: Session, actor: Actor, *, name: str, risk_type: str, condition: Any, weight: int,
              action: str = "none", is_active: bool = True, rule_id: int | None = None,
              expected_version: int | None = None) -> RiskRule:
    """Create a rule (no rule_id) or change one, checked, with an audit row."""
    require(actor, "risk.rules")
    name = _check(name, risk_type, weight, action)
    parsed = parse_condition(condition)
    if _name_taken(session, name, rule_id):
        raise ValidationError(f"A rule named {name!r} already exists; choose another name.")
    if rule_id is None:
        rule = RiskRule(name=name, risk_type=risk_type, condition=parsed, weight=weight, action=action,
                        is_active=is_active, created_by_id=actor.id)
        session.add(rule)
        session.flush()
        record_audit(session, actor, "risk.rule_create", "risk_rule", rule.id, after=_as_dict(rule))
        return rule
    found = session.get(RiskRule, rule_id)
    if found is None:
        raise NotFound(f"Risk rule {rule_id} does not exist.")
    rule = found
    check_version(rule, expected_version, f"risk rule {rule.name!r}")
    before = _as_dict(rule)
    rule.name, rule.risk_type, rule.condition = name, risk_type, parsed
    rule.weight, rule.action, rule.is_active = weight, action, is_active
    session.flush()
    record_audit(session, actor, "risk.rule_update", "risk_rule", rule.id, before=before, after=_as_dict(rule))
    return rule


def delete_rule(session: Session, actor: Actor, rule_id: int) -> None:
    require(actor, "risk.rules")
    rule = session.get(RiskRule, rule_id)
    if rule is None:
        raise NotFound(f"Risk rule {rule_id} does not exist.")
    record_audit(session, actor, "risk.rule_delete", "risk_rule", rule.id, before=_as_dict(rule))
    session.delete(rule)


def install_default_rules(session: Session, actor: Actor) -> int:
    """The default rules, when the shop has none yet; how many were added."""
    require(actor, "risk.rules")
    if session.scalar(select(func.count()).select_from(RiskRule)):
        return 0
    for spec in DEFAULT_RISK_RULES:
        session.add(RiskRule(**spec, is_active=True, created_by_id=actor.id))
    session.flush()
    record_audit(session, actor, "risk.rules_install", "risk_rule", None, after={"rules": len(DEFAULT_RISK_RULES)})
    return len(DEFAULT_RISK_RULES)
