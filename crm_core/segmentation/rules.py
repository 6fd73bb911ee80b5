"""The segment rule language: rules are JSON data compiled to SQLAlchemy expressions.

A rule is a group `{"all": [...]}` / `{"any": [...]}` (nested up to MAX_DEPTH levels) of
conditions `{"field": name, "op": operator, "value": ...}`. Fields come from a whitelist (the
RULE_FIELDS catalogue) over customers and their snapshot rows (customer_analytics, loyalty,
lifecycle stage, preference centre); every value is a bound parameter. Conventions a person would
expect: "is not" / "is none of" also match customers with no value; dates are whole days; ages are
completed years on the `as_of` date; a missing preference row means "not opted in".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Boolean,
    ColumnElement,
    Float,
    Numeric,
    and_,
    false,
    func,
    not_,
    or_,
    select,
)
from sqlalchemy.orm import Session, outerjoin

from crm_core.customers.rules import COUNTED_CUSTOMER, display_name
from crm_core.platform.actors import Actor
from crm_core.platform.dates import midnight
from crm_core.platform.errors import ValidationError
from crm_core.platform.permissions import require
from db.models import (
    ACQUISITION_CHANNELS,
    CUSTOMER_STATUSES,
    GENDERS,
    HEALTH_LEVELS,
    LIFECYCLE_STAGES,
    LOYALTY_TIERS,
    Customer,
    CustomerAnalytics,
    CustomerLifecycleStage,
    CustomerPreferenceCenter,
    LoyaltyAccount,
)

MAX_DEPTH = 5
MAX_CONDITIONS = 200
MAX_LIST_VALUES = 1000
MAX_TEXT_LENGTH = 255
MAX_AGE = 150
MAX_DAYS = 36500
# Numbers and dates a condition may compare with: anything beyond cannot be stored, so cannot match.
MAX_NUMBER = 10**15
EARLIEST_RULE_DATE = dt.date(1900, 1, 1)
LATEST_RULE_DATE = dt.date(2999, 12, 31)

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
        if not -MAX_NUMBER <= value <= MAX_NUMBER:
            raise cond.fail(f"expected a number between -{MAX_NUMBER:,} and {MAX_NUMBER:,}.")
        column_type = spec.column.type
        if isinstance(column_type, Numeric) and not isinstance(column_type, Float):
            return Decimal(str(value))
        return value
    if spec.type == "date":
        day: dt.date | None = None
        if isinstance(value, dt.datetime):
            day = value.date()
        elif isinstance(value, dt.date):
            day = value
        elif isinstance(value, str):
            with contextlib.suppress(ValueError):
                day = dt.date.fromisoformat(value)
        if day is None:
            raise cond.fail(f"expected a date written YYYY-MM-DD, got {_describe(value)}.")
        if not EARLIEST_RULE_DATE <= day <= LATEST_RULE_DATE:
            raise cond.fail(f"expected a date from {EARLIEST_RULE_DATE.isoformat()} to {LATEST_RULE_DATE.isoformat()}, "
                            f"got {day.isoformat()}.")
        return day
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
        except RecursionError:
            raise ValidationError(f"The rules are nested too deeply: groups go at most {MAX_DEPTH} levels deep.") from None
        except ValueError:  # an integer of thousands of digits
            raise ValidationError(f"The rules hold a number too long to read: numbers go up to {MAX_NUMBER:,}.") from None
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


def preview_rules(session: Session, viewer: Actor, rules: dict[str, Any] | str, as_of: dt.date, sample: int = 20) -> dict:
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
                "name": display_name(r.first_name, r.last_name, r.id),
                "email": r.email,
                "country": r.country_code,
                "order_count": r.order_count,
                "total_revenue": r.total_revenue,
            }
            for r in rows
        ],
    }
