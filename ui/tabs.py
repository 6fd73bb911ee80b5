"""Tabs that build only the open panel.

Streamlit's plain st.tabs runs and sends every panel, and the browser draws them all, hidden ones
included: on the analytics pages most charts and tables sat in tabs nobody had opened, and each
plotly chart or data grid costs the browser about 0.1 CPU second to draw (and again to take down
when the visitor leaves). With these tabs, a page visit draws the first panel only; opening
another tab reruns the page (its figures come from the cache) and draws that one.
"""

from __future__ import annotations

from collections.abc import Sequence

import streamlit as st


def lazy_tabs(labels: Sequence[str], key: str) -> Sequence:
    """st.tabs whose containers say whether they are open (`.open`): build a panel's content only
    `if tab.open`. The open tab is st.session_state[key] (its label)."""
    return st.tabs(list(labels), key=key, on_change="rerun")


def keep(*keys: str, **initial) -> None:
    """Keep these widgets' values while their tab is closed. Streamlit forgets the value of a widget
    that a run does not draw; writing the value back at the top of the page keeps it (Streamlit's
    documented way). Only for widgets whose value may be set (not buttons, forms' submit buttons,
    file uploaders or data editors).

    A kept widget's first value goes in `initial` (key=value), never in the widget's own index=,
    value= or default=: a widget given both a default and a value through the Session State API
    makes Streamlit log a warning on the server."""
    for key, value in initial.items():
        st.session_state.setdefault(key, value)
    for key in (*keys, *initial):
        if key in st.session_state:
            st.session_state[key] = st.session_state[key]
