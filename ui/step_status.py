"""Why a model's figures are missing or old: the outcome of its step in the last refresh."""

from __future__ import annotations

import streamlit as st

import batch

from . import context


def show_step_status(step: str, what: str) -> batch.StepStatus | None:
    """A warning when `step` was skipped, an error when it failed, in the latest run that reached it."""
    status = context.read(batch.last_step_status, step)
    if status is None or status.status == "ok":
        return status
    reason = (status.detail or "").removeprefix("skipped: ").removeprefix("failed: ")
    if status.status == "failed":
        st.error(f"{what} failed in the last refresh (as of {status.as_of.isoformat()}): {reason}. "
                 "Anything shown below is from an earlier run.", icon=":material/error:")
    else:
        st.warning(f"{what} was skipped in the last refresh (as of {status.as_of.isoformat()}): {reason}",
                   icon=":material/info:")
    return status
