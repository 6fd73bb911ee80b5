"""The admin's "run the batch refresh" panel with a progress bar, shared by the model pages."""

from __future__ import annotations

import datetime as dt

import streamlit as st

import batch
from crm_core import platform

from . import context
from .data_date import data_date


def refresh_panel(viewer, key: str) -> None:
    """An expander for admins: pick a date (default: the data date), run every refresh step, watch the progress."""
    if not platform.allowed(viewer.role, "refresh.run"):
        return
    data = data_date()
    with st.expander("Batch refresh"):
        st.caption(
            "Recomputes the analytics snapshot and RFM, retrains the churn model when due and scores everyone, "
            "fits lifetime value, scores account health, rebuilds cluster and segment memberships, lifecycle "
            "stages, the forecasts and the customer journeys."
        )
        refresh_date = st.date_input("As of", value=data.day, min_value=platform.EARLIEST_DATE, max_value=dt.date.today(),
                                     key=f"{key}_as_of")
        if st.button("Run the refresh", icon=":material/refresh:", key=f"{key}_run"):
            bar = st.progress(0.0, text="Starting…")

            def progress(index: int, total: int, label: str, detail: str) -> None:
                bar.progress(index / total, text=f"{label}: {detail}")

            try:
                report = batch.run_refresh(context.engine(), refresh_date, progress=progress,
                                     now=data.run_time(refresh_date), triggered_by=viewer.username)
            except platform.DomainError as exc:
                st.error(str(exc))
            else:
                st.cache_data.clear()
                if report.failed:
                    st.warning(
                        f"Refreshed as of {refresh_date.isoformat()} in {report.seconds:.0f} s, but "
                        + "; ".join(f"{step.label} {step.detail}" for step in report.failed)
                        + ". The other steps landed; see Refresh runs.")
                else:
                    st.success(f"Refreshed as of {refresh_date.isoformat()} in {report.seconds:.0f} s.")
