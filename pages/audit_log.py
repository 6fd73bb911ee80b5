"""Audit log: who changed what and when, filtered and paginated."""

import datetime as dt

import pandas as pd
import streamlit as st

from crm_core import platform
from ui import context

context.require_page("audit.view")
st.title("Audit log")

options = context.read(platform.audit_filter_options) or {"actor": [], "entity_type": [], "action": []}

c1, c2, c3, c4 = st.columns(4)
who = c1.selectbox("Actor", ["All", *options["actor"]])
entity = c2.selectbox("Entity", ["All", *options["entity_type"]])
action = c3.selectbox("Action", ["All", *options["action"]])
# Staff actions happen now, whatever date the shop's data runs to: the range ends today.
today = dt.date.today()
dates = c4.date_input("Dates", value=(today - dt.timedelta(days=30), today), min_value=platform.EARLIEST_DATE, max_value=today,
                      format="YYYY-MM-DD")
date_from, date_to = (dates if isinstance(dates, tuple) and len(dates) == 2 else (None, None))
filters = platform.AuditFilter(
    actor=None if who == "All" else who,
    entity_type=None if entity == "All" else entity,
    action=None if action == "All" else action,
    date_from=date_from, date_to=date_to,
)

page_number = st.session_state.get("audit_page", 1)
result = context.read(platform.search_audit_log, filters, page=page_number, page_size=50)
if result is None:
    st.stop()
if page_number > result.pages:
    result = context.read(platform.search_audit_log, filters, page=1, page_size=50)

st.caption(f"{result.total:,} entries")
if not result.rows:
    st.info("No audit entries match these filters.")
else:
    frame = pd.DataFrame(result.rows)
    frame["before"] = frame["before"].map(lambda v: "" if v is None else str(v))
    frame["after"] = frame["after"].map(lambda v: "" if v is None else str(v))
    st.dataframe(
        frame, hide_index=True, width="stretch",
        column_config={"time": st.column_config.DatetimeColumn("Time", format="YYYY-MM-DD HH:mm:ss")},
    )
    st.pagination(result.pages, default=min(page_number, result.pages), key="audit_page")
