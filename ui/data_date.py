"""The date the data runs to, for pages: their dates default to it, and on historical data they say so."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from crm_core import platform

from . import context


@st.cache_data(ttl=300, max_entries=8, show_spinner=False)
def _data_date(url: str, today: dt.date) -> platform.DataDate:
    with context.session() as s:
        return platform.data_date(s, today)


def data_date() -> platform.DataDate:
    """Today, or the latest order's date when the data is historical (crm_core/platform/dates.py)."""
    return _data_date(str(context.engine().url), dt.date.today())


def day_month_year(day: dt.date) -> str:
    """30 Jun 1998."""
    return f"{day.day} {day:%b %Y}"


def show_data_date() -> platform.DataDate:
    """The data date, with a caption saying which date the data runs to when it is historical
    (otherwise the page keeps its look)."""
    data = data_date()
    if data.historical:
        st.caption(f"Data runs to {day_month_year(data.day)} (latest order); dates default to it.")
    return data
