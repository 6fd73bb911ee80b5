"""Rule-builder rows become typed, validated rule JSON; CSV export is formula-safe."""

import pytest

from crm_core import platform, segmentation


def test_rows_become_typed_rules():
    rules = segmentation.rules_from_rows([
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
    with pytest.raises(platform.ValidationError, match=message):
        segmentation.rules_from_rows([row])


def test_no_conditions_is_refused():
    with pytest.raises(platform.ValidationError, match="at least one condition"):
        segmentation.rules_from_rows([{"field": "", "op": "", "value": ""}])


def test_export_neutralizes_formulas():
    assert platform.neutralize("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert platform.neutralize("-2") == "'-2" and platform.neutralize("@x") == "'@x" and platform.neutralize("\tx") == "'\tx"
    assert platform.neutralize("Ann") == "Ann" and platform.neutralize(-2) == -2
    text = "".join(platform.csv_chunks([{"name": "=1+1", "n": 3}] * 3, ["name", "n"]))
    assert text.splitlines() == ["name,n", "'=1+1,3", "'=1+1,3", "'=1+1,3"]


def test_customer_ids_from_text():
    assert segmentation.customer_ids("1, 2 3\n4,5") == [1, 2, 3, 4, 5]
    with pytest.raises(platform.ValidationError, match="whole numbers"):
        segmentation.customer_ids("1, two")
    with pytest.raises(platform.ValidationError, match="at least one"):
        segmentation.customer_ids("  ")
