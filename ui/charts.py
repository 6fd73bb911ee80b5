"""Small fixes plotly needs on the pages' charts."""

from __future__ import annotations

from collections.abc import Iterable

import plotly.graph_objects as go


def time_axis(figure: go.Figure, values: Iterable) -> go.Figure:
    """A date axis with a single distinct value becomes a category axis: plotly would otherwise zoom
    into that one instant and label it in milliseconds ("23:59:59.9996 Feb 29")."""
    if len(set(values)) < 2:
        figure.update_xaxes(type="category")
    return figure
