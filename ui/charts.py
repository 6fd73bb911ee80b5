"""The pages' charts: built once per distinct data and shared, plus small fixes plotly needs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from typing import ParamSpec

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

P = ParamSpec("P")

SHARED_FIGURES_PER_CHART = 128
_BUILDERS: dict[str, Callable] = {}


def shared(build: Callable[P, go.Figure]) -> Callable[P, go.Figure]:
    """Decorate a function that builds one chart from its data: the figure is built once per distinct
    arguments and then shared by every session and rerun.

    Building a plotly figure (plotly express, validation, templates) takes 20-50 ms of CPU per chart,
    most of what a rerun of an analytics page costs; a shared figure costs only its serialisation,
    so twenty people clicking at once queue for the interpreter far less. The arguments are the key
    (Streamlit hashes data frames by content), so new figures follow new data without a TTL.

    Because the figure is shared, do every `update_layout`, `update_xaxes` or `add_trace` inside
    `build`; never change the figure it returns.
    """
    cached = st.cache_resource(max_entries=SHARED_FIGURES_PER_CHART, show_spinner=False)(build)
    _BUILDERS[f"{build.__code__.co_filename}:{build.__qualname__}"] = cached  # pages rerun: one entry each
    return cached


def forget() -> None:
    """Drop every shared figure (the page benchmark's cold runs build them again)."""
    for cached in _BUILDERS.values():
        cached.clear()


def time_axis(figure: go.Figure, values: Iterable) -> go.Figure:
    """A date axis with a single distinct value becomes a category axis: plotly would otherwise zoom
    into that one instant and label it in milliseconds ("23:59:59.9996 Feb 29")."""
    if len(set(values)) < 2:
        figure.update_xaxes(type="category")
    return figure


def month_in_progress(end: dt.date) -> bool:
    """Whether `end` falls before its month's last day: that month's figures are only some of its days."""
    return (end + dt.timedelta(days=1)).day != 1


def complete_months(monthly: pd.DataFrame, end: dt.date, column: str = "month") -> tuple[pd.DataFrame, str | None]:
    """`monthly` (one row a "YYYY-MM" month, oldest first) without its last month when `end` falls
    before that month's last day, and a caption saying so: a month in progress drawn beside whole
    months reads as a drop (a month one day old shows almost nothing). Kept when it is the only month."""
    if len(monthly) < 2 or not month_in_progress(end) or monthly[column].iloc[-1] != f"{end:%Y-%m}":
        return monthly, None
    return monthly.iloc[:-1].copy(), (f"{end:%B %Y} so far ({end.day} day{'s' if end.day > 1 else ''}, to {end:%d %b}) is "
                               "left out of the monthly charts: a month in progress would read as a drop.")


# Sankey diagrams legible in the light and the dark theme: plotly draws node labels over the links with
# a halo in the background colour, which on the default grey links read as light grey on grey. Links
# faint enough for any label to stand out on them, labels without the halo in the theme's text
# colour, slightly larger, and a thin outline that keeps pale nodes visible on either background.
SANKEY_TEXT = {"size": 13, "shadow": "none"}
SANKEY_TEXT_COLOURS = {"light": "#31333f", "dark": "#fafafa"}  # Streamlit's own text colours
SANKEY_LINK = {"color": "rgba(128, 128, 128, 0.25)"}


def sankey_text() -> dict:
    """The Sankey label font for the viewer's theme: the text colour of that theme when Streamlit knows
    it (st.context.theme, from the browser), else the chart theme's own grey. An argument of the chart
    builder, so each theme gets its own shared figure."""
    colour = SANKEY_TEXT_COLOURS.get(st.context.theme.type or "")
    return {**SANKEY_TEXT, "color": colour} if colour else dict(SANKEY_TEXT)


SANKEY_NODE = {"thickness": 18, "line": {"color": "rgba(128, 128, 128, 0.6)", "width": 0.5}}
