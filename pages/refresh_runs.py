"""Refresh runs: the last batch refreshes, each step's status, duration, rows and reason; run one now."""

import pandas as pd
import plotly.express as px
import streamlit as st

import batch
from ui import context
from ui.charts import shared
from ui.refresh_panel import refresh_panel


@shared
def steps_chart(finished: pd.DataFrame, labels: list):
    fig = px.bar(finished, x="seconds", y="label", color="status", orientation="h",
                 color_discrete_map={"ok": "#2e7d32", "skipped": "#9e9e9e", "failed": "#c62828"},
                 labels={"seconds": "Seconds", "label": "", "status": "Status"},
                 category_orders={"label": labels})
    return fig.update_layout(height=60 + 32 * len(finished), margin={"t": 10, "b": 10})


viewer = context.require_page("refresh.run")
st.title("Refresh runs")
st.caption("Every batch refresh (`crm refresh`, the panel below, `make run`) records each step: ok, skipped with "
           "the reason (a source the shop does not have, too little history) or failed. One failing step never "
           "stops the others.")
refresh_panel(viewer, key="runs_refresh")

# Plain words in the tables: emoji show as empty boxes where the browser has no emoji font.
STATUS_ICONS = {"ok": "ok", "partial": "PARTIAL", "failed": "FAILED", "running": "running…",
                "interrupted": "INTERRUPTED", "skipped": "skipped"}

listing = context.read(batch.recent_runs, limit=30)
if not listing:
    st.info("No refresh has run yet. Run one above, or `crm refresh` on the command line.")
    st.stop()

table = pd.DataFrame(listing)
table["status"] = table["status"].map(lambda s: STATUS_ICONS.get(s, s))
picked = st.dataframe(
    table[["id", "as_of", "status", "started_at", "seconds", "ok", "skipped", "failed", "triggered_by"]],
    hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row", key="runs_table",
    column_config={
        "id": st.column_config.NumberColumn("Run", format="%d"), "as_of": "As of", "status": "Status",
        "started_at": st.column_config.DatetimeColumn("Started (UTC)", format="YYYY-MM-DD HH:mm:ss"),
        "seconds": st.column_config.NumberColumn("Seconds", format="%.1f"), "ok": "Steps ok",
        "skipped": "Skipped", "failed": "Failed", "triggered_by": "Started by",
    },
)
rows = picked.selection.rows if picked else []
run = listing[rows[0]] if rows else listing[0]
st.subheader(f"Run {run['id']}: as of {run['as_of'].isoformat()}")
steps = pd.DataFrame(context.read(batch.run_steps, run["id"]) or [])
if steps.empty:
    st.info("This run recorded no steps.")
    st.stop()
finished = steps[steps["seconds"].notna()]
if not finished.empty:
    st.plotly_chart(steps_chart(finished, list(steps["label"])), width="stretch")
steps["status"] = steps["status"].map(lambda s: STATUS_ICONS.get(s, s))
st.dataframe(
    steps[["position", "label", "status", "seconds", "rows_written", "detail"]], hide_index=True, width="stretch",
    column_config={
        "position": "#", "label": "Step", "status": "Status",
        "seconds": st.column_config.NumberColumn("Seconds", format="%.2f"),
        "rows_written": st.column_config.NumberColumn("Rows written", format="%d"),
        "detail": st.column_config.TextColumn("Detail or reason", width="large"),
    },
)
