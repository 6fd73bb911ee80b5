"""The date the data runs to, for pages: their dates default to it, and on historical data they say so."""

from __future__ import annotations

import datetime as dt

import streamlit as st

from crm_core import platform

from . import context


@st.cache_data(ttl=300, refresh_mode="background", max_entries=8, show_spinner=False)
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


def figures_as_of(day: dt.date, rollup_through: dt.datetime | None) -> str:
    """The caption that says when a page's figures are from: the batch's daily totals up to a moment,
    and what came after it read live."""
    if rollup_through is None:
        return f"Figures as of {day_month_year(day)}, computed from the orders now."
    if rollup_through >= platform.end_of(day):
        return f"Figures as of {day_month_year(day)}, from the daily totals of the last refresh."
    return (f"Figures as of {day_month_year(day)}: daily totals of the last refresh up to "
            f"{rollup_through:%d %b %Y %H:%M} UTC, the orders since read live.")


def show_refresh_as_of(what: str = "Figures") -> None:
    """A caption saying which refresh the page's figures come from (the rollups and scores it wrote)."""
    version = context.data_version()
    if version.as_of is None:
        return
    finished = version.finished_at or version.step_finished_at
    when = f", refreshed {finished:%Y-%m-%d %H:%M} UTC" if finished else " (refresh still running)"
    st.caption(f"{what} as of {day_month_year(version.as_of)}{when}.")
