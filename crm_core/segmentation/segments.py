"""Segments: rules as JSON data compiled to SQL, evaluated and refreshed in the database.

A rule is a group `{"all": [...]}` / `{"any": [...]}` (nested up to MAX_DEPTH levels) of
conditions `{"field": name, "op": operator, "value": ...}`. Fields come from a whitelist (the
FIELDS catalogue) over customers and their snapshot rows (customer_analytics, loyalty, lifecycle
stage, preference centre); every value is a bound parameter. Conventions a person would expect:
"is not" / "is none of" also match customers with no value; dates are whole days; ages are
completed years on the `as_of` date; a missing preference row means "not opted in".

Dynamic segments are refreshed set-based (INSERT ... SELECT and UPDATE ... NOT EXISTS) and keep
their history: leaving closes the membership row (is_active false, left_at), re-entering opens a
new one.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    ColumnElement,
    DateTime,
    Float,
    Integer,
    Numeric,
    and_,
    bindparam,
    case,
    except_,
    false,
    func,
    insert,
    literal,
    not_,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session, outerjoin

from crm_core.platform.audit import record_audit
from crm_core.platform.dates import midnight
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from db import bulk
from db.models import (
    ACQUISITION_CHANNELS,
    CUSTOMER_STATUSES,
    GENDERS,
    HEALTH_LEVELS,
    LIFECYCLE_STAGES,
    LOYALTY_TIERS,
    SEGMENT_KINDS,
    SEGMENT_TYPES,
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerPreferenceCenter,
    CustomerSegment,
    CustomerSegmentMembership,
    LoyaltyAccount,
    utcnow,
)

MAX_DEPTH = 5
MAX_CONDITIONS = 200
MAX_LIST_VALUES = 1000
MAX_TEXT_LENGTH = 255
MAX_AGE = 150
MAX_DAYS = 36500
STAGE_UPDATES_OVER = 500  # more row updates than this go through a staged table and one UPDATE
ANALYZE_AFTER_CHANGES = 1000  # membership rows written before PostgreSQL statistics are refreshed
MODEL_SEGMENT_TYPES = ("rfm", "cluster")  # membership written by a model, not by rules

Membership = CustomerSegmentMembership
memberships = CustomerSegmentMembership.__table__
COUNTED_CUSTOMER = Customer.status.not_in(("merged", "erased"))

OPERATORS: dict[str, str] = {
    "eq": "is",
    "ne": "is not",
    "lt": "is less than",
    "le": "is at most",
    "gt": "is greater than",
    "ge": "is at least",
    "between": "is between",
    "in": "is one of",
    "not_in": "is none of",
    "contains": "contains",
    "is_empty": "is empty",
    "is_not_empty": "is not empty",
    "within_last_days": "is within the last N days",
}
TYPE_OPERATORS: dict[str, tuple[str, ...]] = {
    "string": ("eq", "ne", "in", "not_in", "contains", "is_empty", "is_not_empty"),
    "enum": ("eq", "ne", "in", "not_in", "is_empty", "is_not_empty"),
    "number": ("eq", "ne", "lt", "le", "gt", "ge", "between", "in", "not_in", "is_empty", "is_not_empty"),
    "date": ("eq", "ne", "lt", "le", "gt", "ge", "between", "within_last_days", "is_empty", "is_not_empty"),
    "boolean": ("eq", "ne"),
}
NO_VALUE_OPERATORS = ("is_empty", "is_not_empty")
LIST_OPERATORS = ("in", "not_in")
AGE_OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "between", "is_empty", "is_not_empty")


@dataclass(frozen=True)
class FieldSpec:
    """One field a rule may test: its label, value type, SQL expression and operators."""

    label: str
    type: str
    column: Any
    operators: tuple[str, ...]
    choices: tuple[str, ...] = ()
    is_age: bool = False


def _field(label: str, type_: str, column: Any, choices: tuple[str, ...] = ()) -> FieldSpec:
    return FieldSpec(label, type_, column, TYPE_OPERATORS[type_], choices)


def _opt_in(column: Any) -> ColumnElement[bool]:
    return func.coalesce(column, false(), type_=Boolean)


CA = CustomerAnalytics
RULE_FIELDS: dict[str, FieldSpec] = {
    "country": _field("Country (ISO code)", "string", Customer.country_code),
    "city": _field("City", "string", Customer.city),
    "age": FieldSpec("Age (years)", "number", Customer.date_of_birth, AGE_OPERATORS, is_age=True),
    "gender": _field("Gender", "enum", Customer.gender, GENDERS),
    "acquisition_channel": _field("Acquisition channel", "enum", Customer.acquisition_channel, ACQUISITION_CHANNELS),
    "status": _field("Customer status", "enum", Customer.status, CUSTOMER_STATUSES),
    "signup_date": _field("Signed up on", "date", Customer.signed_up_at),
    "order_count": _field("Orders", "number", CA.order_count),
    "total_revenue": _field("Total revenue", "number", CA.total_revenue),
    "avg_order_value": _field("Average order value", "number", CA.avg_order_value),
    "first_order_date": _field("First order on", "date", CA.first_order_at),
    "last_order_date": _field("Last order on", "date", CA.last_order_at),
    "days_since_last_order": _field("Days since last order", "number", CA.days_since_last_order),
    "recency_score": _field("Recency score (1-5)", "number", CA.recency_score),
    "frequency_score": _field("Frequency score (1-5)", "number", CA.frequency_score),
    "monetary_score": _field("Monetary score (1-5)", "number", CA.monetary_score),
    "rfm_segment": _field("RFM segment", "string", CA.rfm_segment),
    "sessions_90d": _field("Web sessions in 90 days", "number", CA.sessions_90d),
    "email_open_rate": _field("Email open rate (0-1)", "number", CA.email_open_rate),
    "open_tickets": _field("Open support tickets", "number", CA.open_tickets),
    "last_nps": _field("Last NPS answer (0-10)", "number", CA.last_nps),
    "preferred_category": _field("Preferred category", "string", CA.preferred_category),
    "churn_probability": _field("Churn probability (0-1)", "number", CA.churn_probability),
    "health_level": _field("Account health", "enum", CA.health_level, HEALTH_LEVELS),
    "clv_12m": _field("Predicted 12-month CLV", "number", CA.clv_12m),
    "loyalty_tier": _field("Loyalty tier", "enum", LoyaltyAccount.tier, LOYALTY_TIERS),
    "loyalty_points": _field("Loyalty points balance", "number", LoyaltyAccount.points_balance),
    "lifecycle_stage": _field("Lifecycle stage", "enum", CustomerLifecycleStage.stage, LIFECYCLE_STAGES),
    "email_opt_in": _field("Email opt-in", "boolean", _opt_in(CustomerPreferenceCenter.email_opt_in)),
    "sms_opt_in": _field("SMS opt-in", "boolean", _opt_in(CustomerPreferenceCenter.sms_opt_in)),
    "push_opt_in": _field("Push opt-in", "boolean", _opt_in(CustomerPreferenceCenter.push_opt_in)),
}


def field_catalogue() -> list[dict[str, Any]]:
    """The fields, their operators and choices, for a rule builder."""
    return [
        {
            "name": name,
            "label": spec.label,
            "type": spec.type,
            "operators": [{"op": op, "label": OPERATORS[op]} for op in spec.operators],
            "choices": list(spec.choices),
        }
        for name, spec in RULE_FIELDS.items()
    ]


def _customer_from():
    """Customers with their one-row-per-customer snapshots (LEFT OUTER: every row is optional)."""
    return (
        outerjoin(Customer, CustomerAnalytics, CustomerAnalytics.customer_id == Customer.id)
        .outerjoin(LoyaltyAccount, LoyaltyAccount.customer_id == Customer.id)
        .outerjoin(CustomerLifecycleStage, CustomerLifecycleStage.customer_id == Customer.id)
        .outerjoin(CustomerPreferenceCenter, CustomerPreferenceCenter.customer_id == Customer.id)
    )


# --------------------------------------------------------------------------- rule validation


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"the text {value!r}"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if value is None:
        return "nothing"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return f"{type(value).__name__} {value!r}"


@dataclass
class _Condition:
    where: str
    name: str
    spec: FieldSpec
    op: str

    def fail(self, message: str) -> ValidationError:
        return ValidationError(f"Rule {self.where} (field {self.name!r}, operator {self.op!r}): {message}")


def _scalar(cond: _Condition, value: Any) -> Any:
    spec = cond.spec
    if spec.type in ("string", "enum"):
        if not isinstance(value, str):
            raise cond.fail(f"expected text, got {_describe(value)}.")
        if len(value) > MAX_TEXT_LENGTH:
            raise cond.fail(f"the text is longer than {MAX_TEXT_LENGTH} characters.")
        if spec.type == "enum" and value not in spec.choices:
            raise cond.fail(f"unknown value {value!r}; allowed values: {', '.join(spec.choices)}.")
        return value
    if spec.type == "number":
        if spec.is_age:
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_AGE:
                raise cond.fail(f"expected a whole number of years from 0 to {MAX_AGE}, got {_describe(value)}.")
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
            raise cond.fail(f"expected a number, got {_describe(value)}.")
        if isinstance(value, float) and not math.isfinite(value):
            raise cond.fail("expected a finite number.")
        column_type = spec.column.type
        if isinstance(column_type, Numeric) and not isinstance(column_type, Float):
            return Decimal(str(value))
        return value
    if spec.type == "date":
        if isinstance(value, dt.datetime):
            return value.date()
        if isinstance(value, dt.date):
            return value
        if isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                pass
        raise cond.fail(f"expected a date written YYYY-MM-DD, got {_describe(value)}.")
    if not isinstance(value, bool):
        raise cond.fail(f"expected true or false, got {_describe(value)}.")
    return value


def _value(cond: _Condition, raw: dict[str, Any]) -> Any:
    op = cond.op
    if op in NO_VALUE_OPERATORS:
        if raw.get("value") is not None:
            raise cond.fail("this operator takes no value; remove 'value'.")
        return None
    if "value" not in raw or raw["value"] is None:
        raise cond.fail("a value is required.")
    value = raw["value"]
    if op == "within_last_days":
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_DAYS:
            raise cond.fail(f"expected a whole number of days from 0 to {MAX_DAYS}, got {_describe(value)}.")
        return value
    if op == "between":
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise cond.fail(f"expected a list of two values [low, high], got {_describe(value)}.")
        low, high = _scalar(cond, value[0]), _scalar(cond, value[1])
        if low > high:
            raise cond.fail(f"the low value {value[0]!r} is greater than the high value {value[1]!r}.")
        return (low, high)
    if op in LIST_OPERATORS:
        if not isinstance(value, list | tuple) or not value:
            raise cond.fail(f"expected a non-empty list of values, got {_describe(value)}.")
        if len(value) > MAX_LIST_VALUES:
            raise cond.fail(f"at most {MAX_LIST_VALUES} values are allowed in a list.")
        return list(dict.fromkeys(_scalar(cond, v) for v in value))
    if isinstance(value, list | tuple | dict):
        raise cond.fail(f"expected a single value, got {_describe(value)}.")
    result = _scalar(cond, value)
    if op == "contains" and result == "":
        raise cond.fail("the text to look for is empty.")
    return result


# --------------------------------------------------------------------------- compilation


def _years_before(day: dt.date, years: int) -> dt.date:
    try:
        return day.replace(year=day.year - years)
    except ValueError:  # 29 February in a year without one
        return day.replace(year=day.year - years, day=28)


def _or_empty(column: Any, expression: ColumnElement[bool]) -> ColumnElement[bool]:
    return or_(expression, column.is_(None))


def _compile_age(column: Any, op: str, value: Any, as_of: dt.date) -> ColumnElement[bool]:
    """Age in completed years on as_of: age >= n exactly when born on or before as_of - n years."""

    def at_least(years: int) -> ColumnElement[bool]:
        return column <= _years_before(as_of, years)

    def below(years: int) -> ColumnElement[bool]:
        return column > _years_before(as_of, years)

    if op == "ge":
        return at_least(value)
    if op == "gt":
        return at_least(value + 1)
    if op == "lt":
        return below(value)
    if op == "le":
        return below(value + 1)
    if op == "eq":
        return and_(at_least(value), below(value + 1))
    if op == "ne":
        return _or_empty(column, not_(and_(at_least(value), below(value + 1))))
    low, high = value  # between
    return and_(at_least(low), below(high + 1))


def _compile_date(column: Any, op: str, value: Any, as_of: dt.date) -> ColumnElement[bool]:
    """Timestamps compared by whole days, as half-open ranges [day, day + 1)."""
    if op == "within_last_days":
        return and_(column >= midnight(as_of - dt.timedelta(days=value)),
                    column < midnight(as_of + dt.timedelta(days=1)))
    if op == "between":
        low, high = value
        return and_(column >= midnight(low), column < midnight(high + dt.timedelta(days=1)))
    start, end = midnight(value), midnight(value + dt.timedelta(days=1))
    if op == "eq":
        return and_(column >= start, column < end)
    if op == "ne":
        return or_(column < start, column >= end, column.is_(None))
    if op == "lt":
        return column < start
    if op == "le":
        return column < end
    if op == "gt":
        return column >= end
    return column >= start  # ge


def _compile_condition(spec: FieldSpec, op: str, value: Any, as_of: dt.date) -> ColumnElement[bool]:
    column = spec.column
    if op == "is_empty":
        return or_(column.is_(None), column == "") if spec.type == "string" else column.is_(None)
    if op == "is_not_empty":
        return and_(column.is_not(None), column != "") if spec.type == "string" else column.is_not(None)
    if spec.is_age:
        return _compile_age(column, op, value, as_of)
    if spec.type == "date":
        return _compile_date(column, op, value, as_of)
    if spec.type == "boolean":
        return column.is_(value if op == "eq" else not value)
    simple: dict[str, Callable[[], ColumnElement[bool]]] = {
        "eq": lambda: column == value,
        "ne": lambda: _or_empty(column, column != value),
        "lt": lambda: column < value,
        "le": lambda: column <= value,
        "gt": lambda: column > value,
        "ge": lambda: column >= value,
        "between": lambda: column.between(*value),
        "in": lambda: column.in_(value),
        "not_in": lambda: _or_empty(column, column.not_in(value)),
        "contains": lambda: column.icontains(value, autoescape=True),
    }
    return simple[op]()


class _Compiler:
    def __init__(self, as_of: dt.date):
        self.as_of = as_of
        self.conditions = 0

    def node(self, node: Any, where: str, depth: int) -> ColumnElement[bool]:
        if not isinstance(node, dict):
            raise ValidationError(
                f"Rule {where}: expected a group {{\"all\": [...]}} / {{\"any\": [...]}} or a condition "
                f"{{\"field\": ..., \"op\": ..., \"value\": ...}}, got {_describe(node)}."
            )
        if "all" in node or "any" in node:
            return self.group(node, where, depth)
        return self.condition(node, where)

    def group(self, node: dict[str, Any], where: str, depth: int) -> ColumnElement[bool]:
        if len(node) != 1:
            extra = sorted(set(node) - {"all", "any"}) or ["all", "any"]
            raise ValidationError(
                f"Rule {where}: a group has exactly one key, 'all' or 'any'; remove {', '.join(map(repr, extra))}."
            )
        if depth > MAX_DEPTH:
            raise ValidationError(f"Rule {where}: groups are nested too deeply (at most {MAX_DEPTH} levels).")
        key, children = next(iter(node.items()))
        if not isinstance(children, list):
            raise ValidationError(f"Rule {where}: '{key}' must be a list of conditions, got {_describe(children)}.")
        if not children:
            raise ValidationError(f"Rule {where}: the '{key}' group is empty; add at least one condition.")
        parts = [self.node(child, f"{where}.{key}[{i}]", depth + 1) for i, child in enumerate(children)]
        return and_(*parts) if key == "all" else or_(*parts)

    def condition(self, node: dict[str, Any], where: str) -> ColumnElement[bool]:
        unknown = sorted(set(node) - {"field", "op", "value"}, key=str)
        if unknown:
            raise ValidationError(
                f"Rule {where}: unknown key(s) {', '.join(map(repr, unknown))}; a condition has 'field', 'op' "
                "and 'value', a group has 'all' or 'any'."
            )
        name, op = node.get("field"), node.get("op")
        if not isinstance(name, str) or not name:
            raise ValidationError(f"Rule {where}: the condition needs a 'field' (one of: {', '.join(RULE_FIELDS)}).")
        spec = RULE_FIELDS.get(name)
        if spec is None:
            raise ValidationError(f"Rule {where}: unknown field {name!r}; known fields: {', '.join(RULE_FIELDS)}.")
        if not isinstance(op, str) or op not in spec.operators:
            shown = "no operator" if op is None else f"operator {op!r}"
            raise ValidationError(
                f"Rule {where} (field {name!r}): {shown} is not allowed for this {spec.type} field; "
                f"allowed operators: {', '.join(spec.operators)}."
            )
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise ValidationError(f"Rule {where}: too many conditions (at most {MAX_CONDITIONS}).")
        value = _value(_Condition(where, name, spec, op), node)
        return _compile_condition(spec, op, value, self.as_of)


def _load(rules: Any) -> Any:
    if isinstance(rules, str | bytes):
        try:
            return json.loads(rules)
        except json.JSONDecodeError as exc:
            raise ValidationError(
                f"The rules are not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from None
    if rules is None:
        raise ValidationError('No rules given; write a group such as {"all": [...]}.')
    return rules


def parse_rules(rules: dict[str, Any] | str) -> dict[str, Any]:
    """Validate rules given as a dict or a JSON string and return them as a dict."""
    loaded = _load(rules)
    if not isinstance(loaded, dict):
        raise ValidationError(f"The rules must be a JSON object (a group or a condition), got {_describe(loaded)}.")
    _Compiler(dt.date.today()).node(loaded, "rules", 1)
    return loaded


def compile_rules(rules: dict[str, Any] | str, as_of: dt.date) -> ColumnElement[bool]:
    """The rules as one SQLAlchemy boolean expression over `_customer_from()`; values are bound."""
    return _Compiler(as_of).node(_load(rules), "rules", 1)


def matching_ids_query(rules: dict[str, Any] | str, as_of: dt.date):
    """`SELECT customers.id` of the customers who match, merged and erased customers excluded."""
    return select(Customer.id).select_from(_customer_from()).where(COUNTED_CUSTOMER, compile_rules(rules, as_of))


def preview_rules(session: Session, viewer, rules: dict[str, Any] | str, as_of: dt.date, sample: int = 20) -> dict:
    """How many customers the rules select now, with a sample of them for the editor."""
    require(viewer, "segments.view")
    condition = and_(COUNTED_CUSTOMER, compile_rules(rules, as_of))
    count = session.scalar(select(func.count()).select_from(_customer_from()).where(condition)) or 0
    rows = session.execute(
        select(Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.country_code,
               CA.order_count, CA.total_revenue)
        .select_from(_customer_from())
        .where(condition)
        .order_by(Customer.id)
        .limit(max(0, int(sample)))
    ).all()
    return {
        "count": count,
        "sample": [
            {
                "id": r.id,
                "name": f"{r.first_name} {r.last_name}".strip(),
                "email": r.email,
                "country": r.country_code,
                "order_count": r.order_count,
                "total_revenue": r.total_revenue,
            }
            for r in rows
        ],
    }


# --------------------------------------------------------------------------- segment CRUD

EDITABLE = ("name", "description", "segment_type", "rules", "priority")


def _get(session: Session, segment_id: int) -> CustomerSegment:
    segment = session.get(CustomerSegment, segment_id) if isinstance(segment_id, int) else None
    if segment is None:
        raise NotFound(f"No segment with id {segment_id}.")
    return segment


def _clean_name(session: Session, name: Any, segment_id: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A segment needs a name.")
    name = " ".join(name.split())
    if len(name) > 120:
        raise ValidationError("A segment name has at most 120 characters.")
    clash = session.scalar(select(CustomerSegment.id).where(func.lower(CustomerSegment.name) == name.lower()))
    if clash is not None and clash != segment_id:
        raise ValidationError(f"There is already a segment named {name!r}; choose another name.")
    return name


def _check_definition(segment_type: Any, kind: Any, rules: Any, priority: Any, description: Any) -> Any:
    """Validate the fields of a segment together; returns the parsed rules."""
    if segment_type not in SEGMENT_TYPES:
        raise ValidationError(f"Unknown segment type {segment_type!r}; choose one of: {', '.join(SEGMENT_TYPES)}.")
    if kind not in SEGMENT_KINDS:
        raise ValidationError(f"Unknown segment kind {kind!r}; choose one of: {', '.join(SEGMENT_KINDS)}.")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 10000:
        raise ValidationError(f"The priority must be a whole number from 0 to 10000, got {_describe(priority)}.")
    if not isinstance(description, str):
        raise ValidationError("The description must be text.")
    if kind == "static":
        if rules:
            raise ValidationError("A static segment has no rules: its members are added by hand.")
        return None
    if rules is None and segment_type in MODEL_SEGMENT_TYPES:
        return None  # members assigned by the RFM / clustering model
    if rules is None:
        raise ValidationError("A dynamic segment needs rules that say who belongs to it.")
    return parse_rules(rules)


def _snapshot(segment: CustomerSegment) -> dict[str, Any]:
    return {
        "name": segment.name, "description": segment.description, "segment_type": segment.segment_type,
        "kind": segment.kind, "rules": segment.rules, "priority": segment.priority,
        "is_active": segment.is_active,
    }


def create_segment(
    session: Session,
    actor,
    name: str,
    segment_type: str,
    kind: str,
    rules: dict[str, Any] | str | None = None,
    priority: int = 100,
    description: str = "",
    is_system: bool = False,
) -> CustomerSegment:
    require(actor, "segments.manage")
    name = _clean_name(session, name)
    parsed = _check_definition(segment_type, kind, rules, priority, description)
    segment = CustomerSegment(
        name=name, segment_type=segment_type, kind=kind, rules=parsed, priority=priority,
        description=description.strip(), is_system=bool(is_system), is_active=True,
        owner_id=getattr(actor, "id", None),
    )
    session.add(segment)
    session.flush()
    record_audit(session, actor, "segment.create", "segment", segment.id, after=_snapshot(segment))
    return segment


def update_segment(session: Session, actor, segment_id: int, expected_version: int | None, **changes) -> CustomerSegment:
    """Change name, description, segment_type, rules or priority; refused if edited meanwhile."""
    require(actor, "segments.manage")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValidationError(f"Cannot change {', '.join(unknown)}; editable: {', '.join(EDITABLE)}.")
    segment = _get(session, segment_id)
    check_version(segment, expected_version, f"Segment {segment.name}")
    before = _snapshot(segment)
    name = _clean_name(session, changes["name"], segment.id) if "name" in changes else segment.name
    merged = {k: changes.get(k, getattr(segment, k)) for k in ("segment_type", "rules", "priority", "description")}
    parsed = _check_definition(merged["segment_type"], segment.kind, merged["rules"], merged["priority"],
                               merged["description"])
    segment.name = name
    segment.segment_type = merged["segment_type"]
    segment.rules = parsed
    segment.priority = merged["priority"]
    segment.description = merged["description"].strip()
    after = _snapshot(segment)
    if after == before:
        return segment
    session.flush()
    changed = [k for k in after if after[k] != before[k]]
    record_audit(session, actor, "segment.update", "segment", segment.id,
                 before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    return segment


def set_segment_active(session: Session, actor, segment_id: int, active: bool,
               expected_version: int | None = None) -> CustomerSegment:
    """Pause or resume a segment; an inactive segment is skipped by the refresh."""
    require(actor, "segments.manage")
    segment = _get(session, segment_id)
    check_version(segment, expected_version, f"Segment {segment.name}")
    if segment.is_active == bool(active):
        return segment
    segment.is_active = bool(active)
    session.flush()
    record_audit(session, actor, "segment.activate" if active else "segment.deactivate", "segment", segment.id,
                 before={"is_active": not active}, after={"is_active": bool(active)})
    return segment


def _customer_ids(customer_ids: Any) -> list[int]:
    if isinstance(customer_ids, str | bytes) or not hasattr(customer_ids, "__iter__"):
        raise ValidationError("Give the customers as a list of customer ids.")
    ids = list(customer_ids)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ValidationError("Customer ids are whole numbers.")
    return list(dict.fromkeys(ids))


def _chunks(items: list, size: int = 1000) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _static(session: Session, segment_id: int) -> CustomerSegment:
    segment = _get(session, segment_id)
    if segment.kind != "static":
        raise ValidationError(
            f"Segment {segment.name!r} is dynamic: its members follow its rules and cannot be changed by hand."
        )
    return segment


def add_members(session: Session, actor, segment_id: int, customer_ids: list[int],
                now: dt.datetime | None = None) -> int:
    """Add customers to a static segment by hand; returns how many were not already members."""
    require(actor, "segments.manage")
    segment = _static(session, segment_id)
    ids = _customer_ids(customer_ids)
    now = now or utcnow()
    existing: set[int] = set()
    current: set[int] = set()
    for chunk in _chunks(ids):
        existing.update(session.scalars(select(Customer.id).where(Customer.id.in_(chunk), COUNTED_CUSTOMER)))
        current.update(session.scalars(select(Membership.customer_id).where(
            Membership.segment_id == segment.id, Membership.is_active == true(), Membership.customer_id.in_(chunk))))
    missing = [i for i in ids if i not in existing]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValidationError(f"No customer (or a merged or erased one) with id {shown}; nothing was added.")
    new = [i for i in ids if i not in current]
    if new:
        session.execute(insert(memberships), [
            {"segment_id": segment.id, "customer_id": i, "confidence": 1.0, "assignment": "manual",
             "is_active": True, "entered_at": now, "left_at": None}
            for i in new
        ])
    record_audit(session, actor, "segment.add_members", "segment", segment.id,
                 after={"added": len(new), "customer_ids": new[:100]})
    return len(new)


def remove_members(session: Session, actor, segment_id: int, customer_ids: list[int],
                   now: dt.datetime | None = None) -> int:
    """Close the memberships of customers in a static segment (rows are kept as history)."""
    require(actor, "segments.manage")
    segment = _static(session, segment_id)
    ids = _customer_ids(customer_ids)
    now = now or utcnow()
    removed = 0
    for chunk in _chunks(ids):
        removed += session.execute(
            update(memberships)
            .where(memberships.c.segment_id == segment.id, memberships.c.is_active == true(),
                   memberships.c.customer_id.in_(chunk))
            .values(is_active=False, left_at=now)
        ).rowcount
    record_audit(session, actor, "segment.remove_members", "segment", segment.id,
                 after={"removed": removed, "customer_ids": ids[:100]})
    return removed


# --------------------------------------------------------------------------- membership refresh


def _active_count(session: Session, segment_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(memberships)
        .where(memberships.c.segment_id == segment_id, memberships.c.is_active == true())
    ) or 0


def _mark_refreshed(session: Session, segment_id: int, now: dt.datetime) -> None:
    # A plain UPDATE: a refresh must not bump the version a person may be editing against.
    session.execute(
        update(CustomerSegment).where(CustomerSegment.id == segment_id).values(last_refreshed_at=now)
        .execution_options(synchronize_session="evaluate")
    )


def _refresh_statistics(session: Session) -> None:
    """Give PostgreSQL's planner current membership counts before the next anti-join.

    After a bulk insert the statistics still describe a (nearly) empty table, and the planner
    then probes it with a nested loop per customer: minutes instead of seconds at 1,000,000
    customers. ANALYZE samples a fixed number of rows and sees this transaction's own inserts.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {memberships.name}"))


def refresh_memberships(session: Session, as_of: dt.date, now: dt.datetime | None = None,
                        segment_ids: list[int] | None = None) -> dict[str, dict[str, int]]:
    """Bring every active rule-based dynamic segment up to date, in set-based SQL.

    Customers who stopped matching leave (their open auto row is closed); customers who match and
    have no open row enter with a new row, so leaving and re-entering keeps the history.
    """
    now = now or utcnow()
    session.flush()
    query = select(CustomerSegment).where(
        CustomerSegment.kind == "dynamic", CustomerSegment.is_active.is_(True)
    ).order_by(CustomerSegment.priority, CustomerSegment.id)
    if segment_ids is not None:
        query = query.where(CustomerSegment.id.in_(list(segment_ids)))
    result: dict[str, dict[str, int]] = {}
    changed_since_analyze = ANALYZE_AFTER_CHANGES  # statistics may be stale from earlier writes
    for segment in session.scalars(query).all():
        if not segment.rules:  # model-assigned (RFM, cluster): see replace_model_memberships
            continue
        if changed_since_analyze >= ANALYZE_AFTER_CHANGES:
            _refresh_statistics(session)
            changed_since_analyze = 0
        try:
            condition = and_(COUNTED_CUSTOMER, compile_rules(segment.rules, as_of))
        except ValidationError as exc:
            raise ValidationError(f"Segment {segment.name!r} has invalid rules: {exc}") from None
        still_matches = (
            select(literal(1)).select_from(_customer_from())
            .where(Customer.id == memberships.c.customer_id, condition)
            .exists()
        )
        left = session.execute(
            update(memberships)
            .where(memberships.c.segment_id == segment.id, memberships.c.is_active == true(),
                   memberships.c.assignment == "auto", ~still_matches)
            .values(is_active=False, left_at=now)
        ).rowcount
        # EXCEPT reads the open rows in full before the first insert; a correlated NOT EXISTS may
        # be planned as a nested loop that rescans the table as this very statement grows it.
        newcomers = except_(
            select(Customer.id.label("customer_id")).select_from(_customer_from()).where(condition),
            select(memberships.c.customer_id).where(memberships.c.segment_id == segment.id,
                                                    memberships.c.is_active == true()),
        ).subquery()
        entered = session.execute(
            insert(memberships).from_select(
                ["segment_id", "customer_id", "confidence", "assignment", "is_active", "entered_at"],
                select(literal(segment.id), newcomers.c.customer_id, literal(1.0, Float), literal("auto"),
                       true(), literal(now, DateTime)),
            )
        ).rowcount
        changed_since_analyze += entered + left
        _mark_refreshed(session, segment.id, now)
        result[segment.name] = {"entered": entered, "left": left, "members": _active_count(session, segment.id)}
    return result


def _id_column() -> Column:
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


def replace_model_memberships(session: Session, segment_id: int, assignments: list[tuple[int, float]],
                              now: dt.datetime | None = None) -> dict[str, int]:
    """Make the given (customer id, confidence) pairs the segment's open auto memberships.

    Used by the RFM and clustering jobs; same enter/leave history as `refresh_memberships`.
    """
    now = now or utcnow()
    segment = _get(session, segment_id)
    wanted: dict[int, float] = {}
    for customer_id, confidence in assignments:
        if isinstance(customer_id, bool) or not isinstance(customer_id, int):
            raise ValidationError(f"Customer ids are whole numbers, got {_describe(customer_id)}.")
        confidence = float(confidence)
        if not 0.0 <= confidence <= 1.0:
            raise ValidationError(f"Confidence must be between 0 and 1, got {confidence} for customer {customer_id}.")
        wanted[customer_id] = confidence
    session.flush()
    current = {
        row.customer_id: (row.id, row.confidence)
        for row in session.execute(
            select(memberships.c.id, memberships.c.customer_id, memberships.c.confidence).where(
                memberships.c.segment_id == segment.id, memberships.c.is_active == true(),
                memberships.c.assignment == "auto")
        )
    }
    leaving = [{"b_id": row_id} for cid, (row_id, _) in current.items() if cid not in wanted]
    changed = [{"b_id": current[cid][0], "b_confidence": conf}
               for cid, conf in wanted.items() if cid in current and current[cid][1] != conf]
    entering = [(cid, conf) for cid, conf in wanted.items() if cid not in current]
    by_id = memberships.c.id == bindparam("b_id")
    if len(leaving) > STAGE_UPDATES_OVER:
        frame = pd.DataFrame({"id": [row["b_id"] for row in leaving]})
        with bulk.staged(session.connection(), "tmp_membership_leaving", [_id_column()], frame) as gone:
            session.execute(update(memberships).where(memberships.c.id == gone.c.id)
                            .values(is_active=False, left_at=now))
    elif leaving:
        session.execute(update(memberships).where(by_id).values(is_active=False, left_at=now), leaving)
    if len(changed) > STAGE_UPDATES_OVER:
        # A model refresh moves almost every confidence a little: one UPDATE ... FROM a staged table.
        frame = pd.DataFrame({"id": [c["b_id"] for c in changed], "confidence": [c["b_confidence"] for c in changed]})
        columns = [_id_column(), Column("confidence", Float)]
        with bulk.staged(session.connection(), "tmp_membership_confidence", columns, frame) as new:
            session.execute(update(memberships).where(memberships.c.id == new.c.id)
                            .values(confidence=new.c.confidence))
    elif changed:
        session.execute(update(memberships).where(by_id).values(confidence=bindparam("b_confidence")), changed)
    if entering:
        ids, confidences = zip(*entering, strict=True)
        bulk.load(session.connection(), memberships, pd.DataFrame({
            "segment_id": segment.id, "customer_id": ids, "confidence": confidences, "assignment": "auto",
            "is_active": True, "entered_at": pd.Timestamp(now),
        }))
    if len(entering) + len(leaving) >= ANALYZE_AFTER_CHANGES:
        _refresh_statistics(session)
    _mark_refreshed(session, segment.id, now)
    return {"entered": len(entering), "left": len(leaving), "members": _active_count(session, segment.id)}


# --------------------------------------------------------------------------- reads for the pages


def _open_members(segment_id: int):
    return select(memberships.c.customer_id).where(
        memberships.c.segment_id == segment_id, memberships.c.is_active == true()
    )


def list_segments(session: Session, viewer) -> list[dict[str, Any]]:
    """All segments by priority with their size and share of revenue."""
    require(viewer, "segments.view")
    counts = dict(session.execute(
        select(memberships.c.segment_id, func.count())
        .where(memberships.c.is_active == true())
        .group_by(memberships.c.segment_id)
    ).all())
    revenue = dict(session.execute(
        select(memberships.c.segment_id, func.sum(CA.total_revenue))
        .select_from(memberships.join(CustomerAnalytics.__table__, CA.customer_id == memberships.c.customer_id)
                     .join(Customer.__table__, Customer.id == memberships.c.customer_id))
        .where(memberships.c.is_active == true(), COUNTED_CUSTOMER)
        .group_by(memberships.c.segment_id)
    ).all())
    total = session.scalar(
        select(func.sum(CA.total_revenue)).select_from(CustomerAnalytics).join(Customer, Customer.id == CA.customer_id)
        .where(COUNTED_CUSTOMER)
    ) or 0
    segments = session.scalars(select(CustomerSegment).order_by(CustomerSegment.priority, CustomerSegment.name)).all()
    return [
        {
            "id": s.id,
            "name": s.name,
            "type": s.segment_type,
            "kind": s.kind,
            "members": counts.get(s.id, 0),
            "priority": s.priority,
            "active": s.is_active,
            "is_system": s.is_system,
            "description": s.description,
            "revenue_share": round(float(revenue.get(s.id) or 0) / float(total), 4) if total else 0.0,
            "last_refreshed_at": s.last_refreshed_at,
        }
        for s in segments
    ]


def _month_starts(last: dt.date, months: int) -> list[dt.date]:
    starts = []
    year, month = last.year, last.month
    for _ in range(months):
        starts.append(dt.date(year, month, 1))
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return starts[::-1]


def _next_month(day: dt.date) -> dt.date:
    return dt.date(day.year + day.month // 12, day.month % 12 + 1, 1)


def segment_size_history(session: Session, viewer, segment_id: int, months: int = 12,
                 as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Members at each month end for the last `months` months up to as_of (one scan of the rows)."""
    require(viewer, "segments.view")
    if isinstance(months, bool) or not isinstance(months, int) or not 1 <= months <= 120:
        raise ValidationError("Ask for 1 to 120 months of history.")
    segment = _get(session, segment_id)
    starts = _month_starts(as_of or utcnow().date(), months)
    ends = [midnight(_next_month(start)) for start in starts]
    m = memberships.c
    row = session.execute(
        select(*[
            func.coalesce(func.sum(case((and_(m.entered_at < end, or_(m.left_at.is_(None), m.left_at >= end)), 1),
                                        else_=0)), 0)
            for end in ends
        ]).where(m.segment_id == segment.id)
    ).one()
    return [{"month": start.strftime("%Y-%m"), "members": int(n)} for start, n in zip(starts, row, strict=True)]


MEMBER_SORTS: dict[str, Any] = {
    "id": Customer.id,
    "name": Customer.last_name,
    "email": Customer.email,
    "country": Customer.country_code,
    "order_count": CA.order_count,
    "total_revenue": CA.total_revenue,
    "days_since_last_order": CA.days_since_last_order,
    "churn_probability": CA.churn_probability,
    "entered_at": memberships.c.entered_at,
}


def _member_select(segment_id: int):
    return (
        select(
            Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.country_code,
            Customer.city, Customer.status, CA.order_count, CA.total_revenue, CA.days_since_last_order,
            CA.churn_probability, LoyaltyAccount.tier, CustomerLifecycleStage.stage, memberships.c.confidence,
            memberships.c.assignment, memberships.c.entered_at,
        )
        .select_from(_customer_from().join(memberships, memberships.c.customer_id == Customer.id))
        .where(memberships.c.segment_id == segment_id, memberships.c.is_active == true())
    )


def _member_row(r) -> dict[str, Any]:
    return {
        "id": r.id,
        "name": f"{r.first_name} {r.last_name}".strip(),
        "email": r.email,
        "country": r.country_code,
        "city": r.city,
        "status": r.status,
        "order_count": r.order_count,
        "total_revenue": r.total_revenue,
        "days_since_last_order": r.days_since_last_order,
        "churn_probability": r.churn_probability,
        "loyalty_tier": r.tier,
        "lifecycle_stage": r.stage,
        "confidence": r.confidence,
        "assignment": r.assignment,
        "entered_at": r.entered_at,
    }


def segment_members(session: Session, viewer, segment_id: int, page: int = 1, page_size: int = 50,
            sort_by: str = "total_revenue", descending: bool = True) -> Page:
    """One page of a segment's current members; sort_by is one of MEMBER_SORTS (nulls last)."""
    require(viewer, "segments.view")
    if sort_by not in MEMBER_SORTS:
        raise ValidationError(f"Cannot sort by {sort_by!r}; choose one of: {', '.join(MEMBER_SORTS)}.")
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 1000:
        raise ValidationError("The page size must be from 1 to 1000.")
    segment = _get(session, segment_id)
    total = session.scalar(select(func.count()).select_from(_open_members(segment.id).subquery())) or 0
    page = max(1, int(page))
    column = MEMBER_SORTS[sort_by]
    order = (column.desc() if descending else column.asc()).nulls_last()
    rows = session.execute(
        _member_select(segment.id).order_by(order, Customer.id).limit(page_size).offset((page - 1) * page_size)
    ).all()
    return Page([_member_row(r) for r in rows], total, page, page_size)


def iter_member_rows(session: Session, viewer, segment_id: int, batch: int = 5000) -> Iterator[dict[str, Any]]:
    """All current members for a CSV export, streamed from a server-side cursor `batch` rows at a time."""
    require(viewer, "segments.view")
    segment = _get(session, segment_id)
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ValidationError("The batch size must be a positive whole number.")

    def rows() -> Iterator[dict[str, Any]]:
        query = _member_select(segment.id).order_by(Customer.id).execution_options(yield_per=batch)
        for r in session.execute(query):
            yield _member_row(r)

    return rows()


PROFILE_DISTRIBUTIONS = {
    "country": Customer.country_code,
    "loyalty_tier": LoyaltyAccount.tier,
    "lifecycle_stage": CustomerLifecycleStage.stage,
}
PROFILE_AVERAGES = {
    "order_count": CA.order_count,
    "total_revenue": CA.total_revenue,
    "days_since_last_order": CA.days_since_last_order,
}


def _profile(session: Session, scope: ColumnElement[bool]) -> dict[str, Any]:
    condition = and_(COUNTED_CUSTOMER, scope)
    averages_row = session.execute(
        select(func.count(), *[func.avg(c) for c in PROFILE_AVERAGES.values()])
        .select_from(_customer_from()).where(condition)
    ).one()
    customers = averages_row[0]
    result: dict[str, Any] = {
        "customers": customers,
        "averages": {
            name: None if value is None else round(float(value), 2)
            for name, value in zip(PROFILE_AVERAGES, averages_row[1:], strict=True)
        },
    }
    for name, column in PROFILE_DISTRIBUTIONS.items():
        rows = session.execute(
            select(column, func.count().label("n")).select_from(_customer_from()).where(condition)
            .group_by(column).order_by(func.count().desc(), column)
        ).all()
        result[name] = [
            {"value": value if value is not None else "(none)", "count": n,
             "share": round(n / customers, 4) if customers else 0.0}
            for value, n in rows
        ]
    return result


def segment_profile(session: Session, viewer, segment_id: int) -> dict[str, Any]:
    """Members against the whole customer base: countries, tiers, stages and averages."""
    require(viewer, "segments.view")
    segment = _get(session, segment_id)
    return {
        "segment": {"id": segment.id, "name": segment.name},
        "members": _profile(session, Customer.id.in_(_open_members(segment.id))),
        "base": _profile(session, true()),
    }


def compare_segments(session: Session, viewer, segment_a: int, segment_b: int) -> dict[str, Any]:
    """Sizes, overlap and profiles of two segments side by side."""
    require(viewer, "segments.view")
    a, b = _get(session, segment_a), _get(session, segment_b)
    size_a, size_b = _active_count(session, a.id), _active_count(session, b.id)
    in_a, in_b = memberships.alias(), memberships.alias()
    overlap = session.scalar(
        select(func.count(func.distinct(in_a.c.customer_id)))
        .select_from(in_a.join(in_b, in_b.c.customer_id == in_a.c.customer_id))
        .where(in_a.c.segment_id == a.id, in_a.c.is_active == true(),
               in_b.c.segment_id == b.id, in_b.c.is_active == true())
    ) or 0
    union = size_a + size_b - overlap
    return {
        "a": {"id": a.id, "name": a.name, "members": size_a},
        "b": {"id": b.id, "name": b.name, "members": size_b},
        "overlap": overlap,
        "only_a": size_a - overlap,
        "only_b": size_b - overlap,
        "jaccard": round(overlap / union, 4) if union else 0.0,
        "profiles": {
            "a": _profile(session, Customer.id.in_(_open_members(a.id))),
            "b": _profile(session, Customer.id.in_(_open_members(b.id))),
        },
    }
