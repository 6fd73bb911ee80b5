"""Rule-builder rows become typed, validated rule JSON; CSV export is formula-safe."""

import pytest

from crm_core.platform.errors import ValidationError
from crm_core.platform.spreadsheet import csv_chunks, neutralize
from crm_core.segmentation.rule_input import customer_ids, rules_from_rows


def test_rows_become_typed_rules():
    rules = rules_from_rows([
        {"field": "country", "op": "in", "value": "DE, FR"},
        {"field": "order_count", "op": "ge", "value": "3"},
        {"field": "total_revenue", "op": "between", "value": "100, 250.5"},
        {"field": "email_opt_in", "op": "eq", "value": "yes"},
        {"field": "signup_date", "op": "within_last_days", "value": "30"},
        {"field": "city", "op": "is_empty", "value": ""},
        {"field": "", "op": "", "value": ""},  # an empty editor row is ignored
    ], "any")
    assert rules == {"any": [
        {"field": "country", "op": "in", "value": ["DE", "FR"]},
        {"field": "order_count", "op": "ge", "value": 3},
        {"field": "total_revenue", "op": "between", "value": [100, 250.5]},
        {"field": "email_opt_in", "op": "eq", "value": True},
        {"field": "signup_date", "op": "within_last_days", "value": 30},
        {"field": "city", "op": "is_empty"},
    ]}


@pytest.mark.parametrize("row,message", [
    ({"field": "order_count", "op": "ge", "value": "three"}, "not a number"),
    ({"field": "email_opt_in", "op": "eq", "value": "maybe"}, "true or false"),
    ({"field": "total_revenue", "op": "between", "value": "5"}, "two values"),
    ({"field": "shoe_size", "op": "eq", "value": "9"}, "unknown field"),
    ({"field": "country", "op": "eq", "value": ""}, "needs a value"),
])
def test_bad_rows_say_what_is_wrong(row, message):
    with pytest.raises(ValidationError, match=message):
        rules_from_rows([row])


def test_no_conditions_is_refused():
    with pytest.raises(ValidationError, match="at least one condition"):
        rules_from_rows([{"field": "", "op": "", "value": ""}])


def test_export_neutralizes_formulas():
    assert neutralize("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert neutralize("-2") == "'-2" and neutralize("@x") == "'@x" and neutralize("\tx") == "'\tx"
    assert neutralize("Ann") == "Ann" and neutralize(-2) == -2
    text = "".join(csv_chunks([{"name": "=1+1", "n": 3}] * 3, ["name", "n"]))
    assert text.splitlines() == ["name,n", "'=1+1,3", "'=1+1,3", "'=1+1,3"]


def test_customer_ids_from_text():
    assert customer_ids("1, 2 3\n4,5") == [1, 2, 3, 4, 5]
    with pytest.raises(ValidationError, match="whole numbers"):
        customer_ids("1, two")
    with pytest.raises(ValidationError, match="at least one"):
        customer_ids("  ")
