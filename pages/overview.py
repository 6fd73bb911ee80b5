"""Executive overview: KPIs, revenue and customer trends, loyalty tiers, top customers."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, reporting
from ui import context
from ui.charts import complete_months, shared, time_axis
from ui.data_date import figures_as_of, show_data_date

user = context.require_page("overview.view")


def money(value) -> str:
    return "—" if value is None else f"€{value:,.0f}"


def pct(value) -> str | None:
    return None if value is None else f"{value:+.1f}%"


@shared
def revenue_chart(monthly: pd.DataFrame):
    return time_axis(px.bar(monthly, x="month", y="revenue", title="Monthly revenue",
                            labels={"revenue": "Revenue (€)", "month": ""}), monthly["month"])


@shared
def new_customers_chart(monthly: pd.DataFrame):
    return time_axis(px.line(monthly, x="month", y="new_customers", markers=True, title="New customers per month",
                             labels={"new_customers": "New customers", "month": ""}).update_yaxes(rangemode="tozero"),
                     monthly["month"])


@shared
def tiers_chart(tiers: pd.DataFrame):
    return px.bar(tiers, x="tier", y="members", title="Loyalty members by tier", labels={"tier": "", "members": "Members"})


st.title("Executive overview")
end_default = show_data_date().day
default_start = (end_default.replace(day=1) - dt.timedelta(days=365)).replace(day=1)
picked = st.date_input(
    "Date range", value=(default_start, end_default), min_value=platform.EARLIEST_DATE, max_value=dt.date.today(),
    format="YYYY-MM-DD",
    help="Charts, average order value, SLA breaches and NPS use this range; "
    "month-to-date and trailing-12-month revenue are as of its end date.",
)
if not isinstance(picked, tuple) or len(picked) != 2:
    st.info("Pick an end date to complete the range.")
    st.stop()
start, end = picked

data = context.cached(reporting.executive_overview, start, end)
if data is None:
    st.stop()
st.caption(figures_as_of(end, data.rollup_through))

c1, c2, c3, c4 = st.columns(4)
c1.metric("Customers", f"{data.customers_total:,}", border=True)
c2.metric("New this month", f"{data.customers_new_this_month:,}", border=True)
c3.metric("Active (90 days)", f"{data.customers_active_90d:,}", border=True)
c4.metric("Repeat-purchase rate", "—" if data.repeat_purchase_rate is None else f"{data.repeat_purchase_rate:.1f}%", border=True)
c1, c2, c3, c4 = st.columns(4)
c1.metric("Revenue this month", money(data.revenue_this_month), pct(data.revenue_this_month_change),
          help="Month to date vs the same days of the previous month", border=True)
c2.metric("Revenue, trailing 12 months", money(data.revenue_12m), pct(data.revenue_12m_change),
          help="The 365 days up to the end date vs the 365 days before", border=True)
c3.metric("Average order value", "—" if data.average_order_value is None else f"€{data.average_order_value:,.2f}",
          help=f"{data.orders_in_range:,} orders in the range", border=True)
c4.metric("NPS", "—" if data.nps is None else f"{data.nps:+.0f}", help=f"{data.nps_responses:,} answers in the range", border=True)
c1, c2, _, _ = st.columns(4)
c1.metric("Open tickets", f"{data.open_tickets:,}", border=True)
c2.metric("SLA breaches", f"{data.sla_breaches:,}", help="Tickets opened in the range that breached an SLA target", border=True)

if not data.monthly:
    st.info("No orders or sign-ups in this range yet.")
else:
    monthly, partial = complete_months(pd.DataFrame(data.monthly), end)
    monthly["revenue"] = monthly["revenue"].astype(float)
    if partial:
        st.caption(partial)
    left, right = st.columns(2)
    left.plotly_chart(revenue_chart(monthly), width="stretch")
    right.plotly_chart(new_customers_chart(monthly), width="stretch")

left, right = st.columns([1, 2])  # the table's five columns need the wider part of the row
tiers = pd.DataFrame(data.tiers)
if tiers["members"].sum():
    left.plotly_chart(tiers_chart(tiers), width="stretch")
else:
    left.info("No loyalty members yet.")
with right:
    st.subheader("Top 10 customers by revenue")
    if data.top_customers:
        top = pd.DataFrame(data.top_customers)
        top["revenue"] = top["revenue"].astype(float)
        shown = ["name", "email", "country", "orders", "revenue"] if top["email"].notna().any() else \
            ["name", "country", "orders", "revenue"]  # no e-mails for a role that may not see people
        st.dataframe(
            top[shown], hide_index=True, width="stretch",
            column_config={"name": st.column_config.TextColumn("Name", width=140),
                           "email": st.column_config.TextColumn("E-mail", width=220),
                           "country": st.column_config.TextColumn("Country", width=60),
                           "orders": st.column_config.NumberColumn("Orders", width=60),
                           "revenue": st.column_config.NumberColumn("Revenue", format="€%,.0f", width=90)},
        )
    else:
        st.info("No orders in this range.")
