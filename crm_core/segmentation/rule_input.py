"""Turning what a person types in the rule builder into rule JSON.

The builder shows one row per condition (field, operator, value typed as text). Values are
converted by the field's type: numbers, true/false, ISO dates, comma-separated lists for `in`,
two comma-separated values for `between`. The result is then validated by `segments.parse_rules`,
so every message about a wrong field, operator or value comes from one place.
"""

from __future__ import annotations

from typing import Any

from crm_core.platform.errors import ValidationError
from crm_core.segmentation.rules import LIST_OPERATORS, NO_VALUE_OPERATORS, RULE_FIELDS, parse_rules

TRUE_WORDS = {"true", "yes", "y", "1"}
FALSE_WORDS = {"false", "no", "n", "0"}


def _number(text: str, where: str) -> int | float:
    try:
        value = float(text.replace(" ", ""))
    except ValueError:
        raise ValidationError(f"{where}: {text!r} is not a number.") from None
    return int(value) if value.is_integer() else value


def _scalar(field_type: str, text: str, where: str) -> Any:
    text = text.strip()
    if field_type == "number":
        return _number(text, where)
    if field_type == "boolean":
        if text.lower() in TRUE_WORDS:
            return True
        if text.lower() in FALSE_WORDS:
            return False
        raise ValidationError(f"{where}: write true or false, not {text!r}.")
    return text


def condition_from_row(row: dict[str, Any], position: int) -> dict[str, Any]:
    where = f"Condition {position}"
    field = (row.get("field") or "").strip()
    op = (row.get("op") or "").strip()
    text = "" if row.get("value") is None else str(row["value"])
    if not field or not op:
        raise ValidationError(f"{where}: choose a field and an operator.")
    spec = RULE_FIELDS.get(field)
    if spec is None:
        raise ValidationError(f"{where}: unknown field {field!r}.")
    if op in NO_VALUE_OPERATORS:
        return {"field": field, "op": op}
    if not text.strip():
        raise ValidationError(f"{where}: {field} {op} needs a value.")
    if op == "within_last_days":
        return {"field": field, "op": op, "value": _number(text, where)}
    parts = [p for p in (s.strip() for s in text.split(",")) if p]
    if op in LIST_OPERATORS:
        return {"field": field, "op": op, "value": [_scalar(spec.type, p, where) for p in parts]}
    if op == "between":
        if len(parts) != 2:
            raise ValidationError(f"{where}: 'between' needs two values separated by a comma, like 10, 20.")
        return {"field": field, "op": op, "value": [_scalar(spec.type, p, where) for p in parts]}
    return {"field": field, "op": op, "value": _scalar(spec.type, text, where)}


def rules_from_rows(rows: list[dict[str, Any]], combinator: str = "all") -> dict[str, Any]:
    """Rule JSON for conditions joined by AND ('all') or OR ('any'), validated."""
    if combinator not in ("all", "any"):
        raise ValidationError("Combine conditions with 'all' (AND) or 'any' (OR).")
    filled = [r for r in rows if any(str(r.get(k) or "").strip() for k in ("field", "op", "value"))]
    if not filled:
        raise ValidationError("Add at least one condition.")
    return parse_rules({combinator: [condition_from_row(r, i) for i, r in enumerate(filled, start=1)]})


def customer_ids(text: str) -> list[int]:
    """Customer ids typed by a person: whole numbers separated by commas, spaces or new lines."""
    try:
        ids = [int(part) for part in (text or "").replace(",", " ").split()]
    except ValueError:
        raise ValidationError("Customer ids are whole numbers separated by commas or spaces.") from None
    if not ids:
        raise ValidationError("Enter at least one customer id.")
    return ids
