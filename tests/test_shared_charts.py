"""Charts are built once per distinct data and shared between sessions and reruns (ui.charts.shared)."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import plotly.express as px

from ui.charts import shared

PAGES = Path(__file__).resolve().parent.parent / "pages"


def test_a_shared_chart_is_built_once_per_distinct_data():
    builds = []

    @shared
    def bars(frame: pd.DataFrame, title: str):
        builds.append(title)
        return px.bar(frame, x="stage", y="customers", title=title)

    frame = pd.DataFrame({"stage": ["new", "active"], "customers": [3, 5]})
    first = bars(frame, "Customers by stage")
    again = bars(frame.copy(), "Customers by stage")  # equal content, another object: the same figure
    assert again is first and builds == ["Customers by stage"]
    other = bars(frame.assign(customers=[4, 5]), "Customers by stage")  # new data, a new figure
    assert other is not first and list(other.data[0].y) == [4, 5]
    bars(frame, "Another title")
    assert len(builds) == 3


def _chart_calls(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "plotly_chart":
            yield node


def test_pages_show_only_shared_figures_and_never_change_them():
    """A figure built inline in a page is rebuilt on every rerun of every session (20-50 ms each); one
    changed after it is returned would change it for everybody. Every chart a page shows comes from a
    function decorated with @shared, called inside st.plotly_chart or held in a name that only such calls set."""
    offenders = []
    for path in sorted(PAGES.glob("*.py")):
        tree = ast.parse(path.read_text())
        builders = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)
                    and any(isinstance(d, ast.Name) and d.id == "shared" for d in node.decorator_list)}

        def built(node, builders=builders) -> bool:
            return isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in builders

        assigned: dict[str, list[bool]] = {}  # a name given to st.plotly_chart must only ever hold shared figures
        for node in ast.walk(tree):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    if isinstance(target, ast.Name):
                        assigned.setdefault(target.id, []).append(built(node.value))
        for call in _chart_calls(tree):
            argument = call.args[0] if call.args else None
            ok = built(argument) or (isinstance(argument, ast.Name) and all(assigned.get(argument.id, [False])))
            if not ok:
                offenders.append(f"{path.name}:{call.lineno}")
    assert not offenders, f"charts not built by a @shared function: {offenders}"


def test_forget_drops_the_shared_figures():
    from ui import charts

    @shared
    def line(values: list):
        return px.line(y=values)

    first = line([1, 2])
    charts.forget()
    assert line([1, 2]) is not first


def test_a_month_in_progress_is_left_out_of_monthly_charts():
    import datetime as dt

    import pandas as pd

    from ui.charts import complete_months

    monthly = pd.DataFrame({"month": ["2026-10", "2026-11", "2026-12"], "revenue": [10.0, 12.0, 0.4]})
    shown, caption = complete_months(monthly, dt.date(2026, 12, 1))
    assert list(shown["month"]) == ["2026-10", "2026-11"] and "December 2026 so far (1 day, to 01 Dec)" in caption
    whole, none = complete_months(monthly, dt.date(2026, 12, 31))  # the month is complete
    assert len(whole) == 3 and none is None
    assert complete_months(monthly.iloc[-1:], dt.date(2026, 12, 1))[1] is None  # the only month is kept
    assert complete_months(monthly.iloc[:2], dt.date(2026, 12, 1))[1] is None  # the range ends in no listed month
