"""Journeys: the most common paths to the first purchase and from it to churn (Sankey and table with
conversion and median days between steps), and conversion by first-touch channel, by segment and
signup cohort. Everything here is read from the rollups the batch refresh writes."""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from crm_core import journeys
from ui import context
from ui.charts import SANKEY_LINK, SANKEY_NODE, sankey_text, shared
from ui.refresh_panel import refresh_panel


@shared
def paths_chart(sankey: dict, title: str, textfont: dict):
    figure = go.Figure(go.Sankey(node={"label": sankey["nodes"], "pad": 14, **SANKEY_NODE},
                                 link={"source": sankey["source"], "target": sankey["target"],
                                       "value": sankey["value"], **SANKEY_LINK},
                                 textfont=textfont))
    return figure.update_layout(title=title, height=560)


@shared
def channels_chart(frame: pd.DataFrame):
    chart = px.bar(frame, x="channel", y="conversion", text_auto=".0%", hover_data=["customers", "buyers"],
                   title="Conversion to a first purchase by first-touch channel",
                   labels={"channel": "", "conversion": "Conversion"})
    return chart.update_yaxes(tickformat=".0%")


viewer = context.require_page("journeys.view")
st.title("Journeys")
refresh_panel(viewer, key="journeys_refresh")

run = context.read(journeys.latest_run)
if run is None:
    st.info("No journeys yet: they are computed by the batch refresh (`crm refresh`, or the refresh panel "
            "for admins).")
    st.stop()

st.caption(f"As of {run['as_of']:%d %b %Y} (computed {run['computed_at']:%d %b %Y %H:%M}): "
           f"{run['customers']:,} customers followed from their dated touchpoints.")
if run["missing"]:
    st.info(f"This shop has no {', '.join(run['missing'])}: paths are built from "
            + ", ".join(name for key, name in journeys.SOURCES.items() if run["sources"].get(key))
            + " only.")

options = context.read(journeys.filter_options) or {"segments": [], "cohorts": []}
f1, f2 = st.columns(2)
segment_names = {s["name"]: s["id"] for s in options["segments"]}
segment_choice = f1.selectbox("Segment (current members)", ["All customers", *segment_names], key="journeys_segment")
cohort_choice = f2.selectbox("Signup cohort", ["All cohorts", *options["cohorts"]], key="journeys_cohort")
segment_id = segment_names.get(segment_choice)
cohort = None if cohort_choice == "All cohorts" else cohort_choice

to_purchase = context.read(journeys.top_paths, "to_purchase", segment_id, cohort) or []
to_churn = context.read(journeys.top_paths, "to_churn", segment_id, cohort) or []
totals = context.read(journeys.journey_totals, segment_id, cohort)
if totals is None:
    st.stop()
bought, churn = totals["to_purchase"], totals["to_churn"]
customers = bought["customers"]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Customers followed", f"{customers:,}", border=True)
c2.metric("Bought at least once", f"{bought['rate']:.0%}" if bought["rate"] is not None else "–", border=True,
          help=f"{bought['reached']:,} of {customers:,}")
c3.metric("Buyers who churned", f"{churn['rate']:.0%}" if churn["rate"] is not None else "–", border=True,
          help=f"{churn['reached']:,} of {churn['customers']:,}")
# Not from sign-up: from the first visit or message, which for most buyers comes after signing up, so
# this is shorter than the paths' "median days in all" that count from sign-up (their first step).
c4.metric("Median, first touch → purchase",
          f"{bought['median_days']:.1f} days" if bought["median_days"] is not None else "–", border=True,
          help="Median days from the first visit or message (the first touch of the First-touch channel tab) to the "
               "first purchase, for buyers with one before it: the channel table's measure over every channel. Not "
               "from sign-up: a path's median days in all count from its first step, sign-up included.")
churned = churn["reached"]
if not customers:
    st.info("No customer in this segment and cohort.")
    st.stop()


def sankey_chart(kind: str, title: str, key: str) -> None:
    shown = st.slider("Paths in the chart", 3, journeys.TOP_PATHS, 10, key=key)
    chart = context.read(journeys.sankey, kind, segment_id, cohort, paths=shown)
    if not chart or not chart["nodes"]:
        st.caption("No paths to draw.")
        return
    st.plotly_chart(paths_chart(chart, title, sankey_text()), width="stretch")


def path_table(rows: list[dict], reached: str, rate: str) -> None:
    frame = pd.DataFrame(rows)[["rank", "path", "customers", "reached", "rate", "median_days_total", "between"]]
    st.dataframe(frame.rename(columns={"reached": reached, "rate": rate}), hide_index=True, width="stretch", placeholder="–",
                 column_config={"rank": "Rank", "path": "Path", "customers": "Customers", reached: reached.capitalize(),
                                rate: st.column_config.NumberColumn(rate.capitalize(), format="percent"),
                                "median_days_total": st.column_config.NumberColumn(
                                    "Median days in all", format="%.1f", help="From the path's first step"),
                                "between": st.column_config.TextColumn("Median days between steps", width="large")})


tab_purchase, tab_churn, tab_channels = st.tabs(["To the first purchase", "From first purchase to churn",
                                                 "First-touch channel"], key="journeys_tab")
with tab_purchase:
    st.caption(f"Each customer's touchpoints before their first purchase (or until {run['as_of']:%d %b %Y}): "
               "steps repeated in a row count once, and a long path shows its first step and its last "
               f"{journeys.PATH_TAIL}. Conversion is the share of customers on the path who bought; median days "
               "to the purchase count buyers only.")
    sankey_chart("to_purchase", "The most common paths to the first purchase (customers)", "journeys_purchase_paths")
    path_table(to_purchase, "bought", "conversion")

with tab_churn:
    st.caption("Each buyer's steps from their first purchase until they churned (no order for more than the "
               "lifecycle rule's churned days, set on the Lifecycle page) or until now; a long path shows the first "
               f"purchase and its last {journeys.CHURN_PATH_TAIL} steps. Buyers who have not churned end where they "
               "stand now: inactive, at risk or active.")
    if not churned:
        st.info("No buyer has churned yet in this selection: churn takes a whole churned-days gap without an order, "
                "so a young shop shows where its buyers stand instead.")
    elif churn["median_days"] is not None:
        st.caption(f"Churned buyers churned a median {churn['median_days']:.0f} days after their first purchase.")
    sankey_chart("to_churn", "Paths from the first purchase (customers)", "journeys_churn_paths")
    path_table(to_churn, "churned", "churn rate")

with tab_channels:
    channels = context.read(journeys.first_touch_conversion, segment_id, cohort) or []
    if channels:
        frame = pd.DataFrame(channels).astype({"median_days_to_purchase": float})
        st.plotly_chart(channels_chart(frame), width="stretch")
        st.dataframe(frame, hide_index=True, width="stretch", placeholder="–", key="journeys_channels", column_config={
            "channel": "Channel", "customers": "Customers", "buyers": "Buyers",
            "conversion": st.column_config.NumberColumn("Conversion", format="percent"),
            "median_days_to_purchase": st.column_config.NumberColumn(
                "Median days to purchase", format="%.1f", help="From the first touch (visit or message)")})
        st.caption("The first touch is the channel of the earliest web session (its source) or message; customers "
                   "without one are counted under their acquisition channel. Those have no touch date, so a "
                   "channel known only from acquisition shows no median days (–).")
