"""Lifecycle: stage distribution, flows, time in stage, cohort retention, changes and drill-down."""

import datetime as dt

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from crm_core import platform, segmentation
from db.models import LIFECYCLE_STAGES
from ui import context
from ui.charts import SANKEY_LINK, SANKEY_NODE, month_in_progress, sankey_text, shared
from ui.data_date import show_data_date, show_refresh_as_of
from ui.format import readable, words
from ui.refresh_panel import refresh_panel
from ui.tabs import keep, lazy_tabs

viewer = context.require_page("lifecycle.view")
COHORT_MONTHS_MAX = 24
st.title("Lifecycle")
as_of = show_data_date().day
show_refresh_as_of("Stages")


def drill_down(stage: str | None = None, cohort: str | None = None) -> None:
    key = f"drill_{stage}_{cohort}"
    page_number = st.session_state.get(key, 1)
    found = context.cached(segmentation.customers_in_stage, stage=stage, cohort=cohort, page=page_number, page_size=50)
    if found is None:
        return
    if not found.total:
        st.info("No customers here.")
        return
    st.caption(f"{found.total:,} customers")
    st.dataframe(stage_table(pd.DataFrame(found.rows)), hide_index=True, width="stretch")
    st.pagination(found.pages, default=min(page_number, found.pages), key=key)


def stage_reason(reason: object) -> object:
    """A stored reason names its stage as stored ("at_risk: no order for ..."): that stage in words."""
    if not isinstance(reason, str):
        return reason
    head, colon, rest = reason.partition(":")
    return f"{words(head)}{colon}{rest}" if colon and head in LIFECYCLE_STAGES else reason


def stage_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Customers or stage changes to show: stages and column names in words."""
    if "reason" in frame:
        frame = frame.assign(reason=frame["reason"].map(stage_reason))
    return readable(frame, "stage", "from_stage", "to_stage", customer_id="Customer id", from_stage="From stage",
                    to_stage="To stage", signed_up_at="Signed up", entered_at="In stage since")


@shared
def flows_chart(moves: list[dict], textfont: dict):
    labels = [segmentation.NEW_FLOW_LABEL, *LIFECYCLE_STAGES]
    sources = [f"{m['from_stage']} " for m in moves]  # trailing space: left and right columns differ
    nodes = [f"{label} " for label in labels] + list(LIFECYCLE_STAGES)
    index = {name: i for i, name in enumerate(nodes)}
    figure = go.Figure(go.Sankey(
        node={"label": [words(name) for name in nodes], "pad": 12, **SANKEY_NODE},
        link={"source": [index[s] for s in sources], "target": [index[m["to_stage"]] for m in moves],
              "value": [m["customers"] for m in moves], **SANKEY_LINK},
        textfont=textfont,
    ))
    return figure.update_layout(title="Stage changes in the period (from left to right)", height=520)


@shared
def cohort_chart(grid: pd.DataFrame):
    figure = px.imshow(grid * 100, text_auto=".0f", aspect="auto", color_continuous_scale="Blues",
                       labels={"x": "Months since signup", "y": "Signup month", "color": "% ordering"},
                       title="Share of each signup cohort ordering in each later month (%)")
    return figure.update_yaxes(type="category")


@shared
def stages_chart(frame: pd.DataFrame):
    frame = frame.assign(stage=frame["stage"].map(words))
    return px.bar(frame, x="stage", y="customers", title="Customers by stage", labels={"stage": "", "customers": "Customers"})


@shared
def durations_chart(durations: pd.DataFrame):
    durations = durations.assign(stage=durations["stage"].map(words))
    return px.bar(durations, x="stage", y="median_days", hover_data=["avg_days", "customers"],
                  title="Median days in the current stage",
                  labels={"stage": "", "median_days": "Days", "avg_days": "Average days", "customers": "Customers"})


refresh_panel(viewer, key="lifecycle_refresh")

distribution = context.cached(segmentation.stage_distribution) or []
total = sum(row["customers"] for row in distribution)
if not total:
    st.info("No lifecycle stages yet: run the batch refresh (`crm refresh`).")
    st.stop()

counts = {row["stage"]: row["customers"] for row in distribution}
c1, c2, c3, c4 = st.columns(4)
c1.metric("Customers staged", f"{total:,}", border=True)
c2.metric("Active, loyal and champions", f"{counts['active'] + counts['loyal'] + counts['champion']:,}", border=True)
c3.metric("At risk", f"{counts['at_risk']:,}", border=True)
c4.metric("Churned", f"{counts['churned']:,}", border=True)

# Only the open tab is built and drawn; the widgets of the others keep their values meanwhile.
keep("drill_cohort", "changes_stage", "changes_page", drill_stage="at_risk",
     flow_period=(as_of - dt.timedelta(days=90), as_of), cohort_months=12)
tab_now, tab_flows, tab_cohorts, tab_changes = lazy_tabs(["Distribution", "Flows", "Cohort retention", "Changes"],
                                                         key="lifecycle_tab")


@st.fragment
def stage_drill_down() -> None:
    stage = st.selectbox("Show the customers in", LIFECYCLE_STAGES, key="drill_stage", format_func=words)
    drill_down(stage=stage)


@st.fragment
def flows() -> None:
    period = st.date_input("Period", min_value=platform.EARLIEST_DATE, max_value=dt.date.today(), key="flow_period")
    if not isinstance(period, tuple) or len(period) != 2:
        return
    moves = context.cached(segmentation.stage_flows, *period) or []
    if not moves:
        st.info("No stage changes in this period.")
        return
    st.plotly_chart(flows_chart(moves, sankey_text()), width="stretch")
    st.dataframe(stage_table(pd.DataFrame(moves)), hide_index=True, width="stretch")


@st.fragment
def cohort_retention() -> None:
    months = st.slider("Cohorts (signup months)", 3, COHORT_MONTHS_MAX, key="cohort_months")
    cohorts = context.cached(segmentation.cohort_retention, as_of, months=months) or []
    if not cohorts and months < COHORT_MONTHS_MAX:
        cohorts = context.cached(segmentation.cohort_retention, as_of, months=COHORT_MONTHS_MAX) or []
        if cohorts:
            st.caption(f"No customer signed up in the {months} months to {as_of.isoformat()}: showing the "
                       f"{COHORT_MONTHS_MAX} months instead.")
    if not cohorts:
        st.info(f"No customer signed up in the {COHORT_MONTHS_MAX} months to {as_of.isoformat()}, so there are no "
                "cohorts to follow.")
        return
    if month_in_progress(as_of):
        # Each cohort's last cell is the month in progress: a few days of it read as retention falling off
        current = f"{as_of:%Y-%m}"
        last = {c["cohort"]: c["month_offset"] for c in cohorts}
        whole = [c for c in cohorts if c["month_offset"] < last[c["cohort"]] and c["cohort"] != current]
        if whole:
            cohorts = whole
            st.caption(f"{as_of:%B %Y} so far (to {as_of:%d %b}) is left out: each cohort's last cell would "
                       "hold only those days.")
    grid = pd.DataFrame(cohorts).pivot(index="cohort", columns="month_offset", values="active_share")
    st.plotly_chart(cohort_chart(grid), width="stretch")
    cohort = st.selectbox("Show the customers of cohort", list(grid.index)[::-1], key="drill_cohort")
    drill_down(cohort=cohort)


@st.fragment
def recent_changes() -> None:
    filter_stage = st.selectbox("Into stage", ["All", *LIFECYCLE_STAGES], key="changes_stage", format_func=words)
    page_number = st.session_state.get("changes_page", 1)
    changes = context.cached(segmentation.recent_stage_changes, page=page_number, page_size=50,
                             stage=None if filter_stage == "All" else filter_stage)
    if changes is not None and changes.total:
        st.dataframe(stage_table(pd.DataFrame(changes.rows)), hide_index=True, width="stretch")
        st.pagination(changes.pages, default=min(page_number, changes.pages), key="changes_page")
    else:
        st.info("No stage changes recorded yet.")


if tab_now.open:
    with tab_now:
        left, right = st.columns(2)
        frame = pd.DataFrame(distribution)
        left.plotly_chart(stages_chart(frame), width="stretch")
        durations = context.cached(segmentation.time_in_stage, as_of) or []
        if durations and max(d["median_days"] or 0 for d in durations) < 1:
            right.info("Every customer entered their current stage within the last day: time in stage builds up "
                       "with each refresh. To see it now, backfill the history of a fresh database with "
                       "`crm refresh --backfill-months 6`.")
        elif durations:
            right.plotly_chart(durations_chart(pd.DataFrame(durations)), width="stretch")
        stage_drill_down()

if tab_flows.open:
    with tab_flows:
        flows()

if tab_cohorts.open:
    with tab_cohorts:
        cohort_retention()

if tab_changes.open:
    with tab_changes:
        recent_changes()

        if platform.allowed(viewer.role, "lifecycle.edit"):
            with st.form("change_stage", clear_on_submit=True):
                st.markdown("**Move a customer by hand**")
                customer_id = st.number_input("Customer id", min_value=1, step=1)
                new_stage = st.selectbox("New stage", LIFECYCLE_STAGES, format_func=words)
                reason = st.text_input("Reason (required)")
                if st.form_submit_button("Change stage"):
                    context.act(segmentation.change_stage, int(customer_id), new_stage, reason,
                                success=f"Customer {int(customer_id)} is now {words(new_stage).lower()}.")

if platform.allowed(viewer.role, "lifecycle.rules"):
    with st.expander("Transition rules (admin)"):
        with context.session() as s:
            rules, version = segmentation.get_lifecycle_rules(s)
        with st.form("lifecycle_rules"):
            edited = {}
            columns = st.columns(3)
            for i, (key, value) in enumerate(rules.items()):
                label = words(key)
                if isinstance(value, float):
                    edited[key] = columns[i % 3].number_input(label, value=float(value), step=0.05, format="%.2f")
                else:
                    edited[key] = columns[i % 3].number_input(label, value=int(value), step=1)
            if st.form_submit_button("Save rules"):
                context.act(segmentation.save_lifecycle_rules, edited, expected_version=version,
                            success="Rules saved; they apply at the next refresh.")
