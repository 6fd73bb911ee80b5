"""Communications: the delivery funnel by channel, campaign performance, logging calls and notes, a customer's log."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, service
from db.models import COMM_CHANNELS, DIRECTIONS
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date
from ui.tabs import keep, lazy_tabs


@shared
def funnel_chart(funnel: pd.DataFrame):
    return px.funnel(funnel, x="messages", y="stage", title="Funnel: sent → delivered → opened → clicked → replied")


@shared
def channels_chart(long: pd.DataFrame):
    return px.bar(long, x="stage", y="messages", color="channel", barmode="group", log_y=True,
                  title="By channel (log scale)", labels={"stage": "", "messages": "Messages"})


viewer = context.require_page("communications.view")
st.title("Communications")
as_of = show_data_date().day
if flash := st.session_state.pop("communications_flash", None):
    st.success(flash)


@st.cache_data(ttl=60, refresh_mode="background", max_entries=32, show_spinner=False)
def funnel(url: str, filters: service.CommFilter, version: str) -> list[dict]:
    with context.session() as s:
        return service.funnel_by_channel(s, viewer, filters)


@st.cache_data(ttl=300, refresh_mode="background", max_entries=4, show_spinner=False)
def options(url: str) -> dict:
    with context.session() as s:
        return service.communication_filter_options(s, viewer)


url = str(context.engine().url)
choices = options(url)
f1, f2, f3 = st.columns([2, 1, 2])
period = f1.date_input("Sent between", value=(as_of - dt.timedelta(days=365), as_of), min_value=platform.EARLIEST_DATE,
                       max_value=dt.date.today(), key="comm_period")
channel = f2.selectbox("Channel", ["All", *COMM_CHANNELS], key="comm_channel")
campaign = f3.selectbox("Campaign", ["All", *choices["campaign"]], key="comm_campaign")
date_from, date_to = period if isinstance(period, tuple) and len(period) == 2 else (None, None)
filters = service.CommFilter(date_from=date_from, date_to=date_to, channel=None if channel == "All" else channel,
                           campaign=None if campaign == "All" else campaign)

# Only the open tab is built and drawn; the other tabs' choices are kept meanwhile.
keep("comm_template", "comm_campaign_page", "comm_customer_id", "comm_customer_page")
tab_funnel, tab_campaigns, tab_log, tab_customer = lazy_tabs(
    ["Funnel", "Campaigns", "Log a call or note", "Customer log"], key="communications_tab")

if tab_funnel.open:
    with tab_funnel:
        rows = funnel(url, filters, context.data_version().key)
        totals = {key: sum(r[key] for r in rows) for key in (*service.FUNNEL_STAGES, "bounced", "failed")}
        c1, c2, c3, c4, c5 = st.columns(5)
        c1.metric("Messages sent", f"{totals['sent']:,}", border=True)
        c2.metric("Delivered", f"{totals['delivered'] / totals['sent']:.1%}" if totals["sent"] else "–", border=True)
        c3.metric("Opened", f"{totals['opened'] / totals['delivered']:.1%}" if totals["delivered"] else "–", border=True)
        c4.metric("Clicked", f"{totals['clicked'] / totals['delivered']:.1%}" if totals["delivered"] else "–", border=True)
        c5.metric("Bounced or failed", f"{totals['bounced'] + totals['failed']:,}", border=True)
        if not rows:
            st.info("No outbound messages in this selection.")
        else:
            left, right = st.columns(2)
            left.plotly_chart(funnel_chart(pd.DataFrame({"stage": list(service.FUNNEL_STAGES),
                                                         "messages": [totals[s] for s in service.FUNNEL_STAGES]})),
                              width="stretch")
            long = pd.DataFrame(rows).melt(id_vars="channel", value_vars=[*service.FUNNEL_STAGES, "bounced", "failed"],
                                           var_name="stage", value_name="messages")
            right.plotly_chart(channels_chart(long), width="stretch")
            st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(k.replace("_", " "), format="percent")
                                        for k in ("delivery_rate", "open_rate", "click_rate", "reply_rate", "bounce_rate")})

if tab_campaigns.open:
    with tab_campaigns:
        template = st.selectbox("Template", ["All", *choices["template"]], key="comm_template")
        page_number = st.session_state.get("comm_campaign_page", 1)
        campaign_filters = service.CommFilter(date_from=date_from, date_to=date_to, channel=filters.channel,
                                            campaign=filters.campaign, template=None if template == "All" else template)
        found = context.read(service.campaign_performance, campaign_filters, page=page_number, page_size=25)
        if found is not None and found.total:
            st.caption(f"{found.total:,} campaigns and templates")
            st.dataframe(pd.DataFrame(found.rows), hide_index=True, width="stretch",
                         column_config={k: st.column_config.NumberColumn(k.replace("_", " "), format="percent")
                                        for k in ("delivery_rate", "open_rate", "click_rate", "reply_rate", "bounce_rate")})
            st.pagination(found.pages, default=min(page_number, found.pages), key="comm_campaign_page")
        elif found is not None:
            st.info("No campaign messages in this selection.")

if tab_log.open:
    with tab_log:
        if not platform.allowed(viewer.role, "communications.log"):
            st.info("Your role can read the log but not add to it.")
        else:
            with st.form("log_communication"):
                st.markdown("**Log a call or note** — it shows on the customer's timeline.")
                a, b, c = st.columns(3)
                customer_id = a.number_input("Customer id", min_value=0, step=1, key="log_customer_id")
                log_channel = b.selectbox("Channel", COMM_CHANNELS, index=COMM_CHANNELS.index("call"), key="log_channel")
                direction = c.selectbox("Direction", DIRECTIONS, key="log_direction")
                subject = st.text_input("Subject", max_chars=service.MAX_MESSAGE_SUBJECT, key="log_subject")
                body = st.text_area("Notes", key="log_body")
                if st.form_submit_button("Save to the log", type="primary", key="log_submit"):
                    entry = context.act(service.log_communication, int(customer_id), log_channel, direction, subject, body)
                    if entry is not None:
                        mood = "" if entry.sentiment_score is None else f" (sentiment {entry.sentiment_score:+.2f})"
                        st.session_state["communications_flash"] = f"Logged for customer {entry.customer_id}{mood}."
                        st.session_state["comm_customer_id"] = entry.customer_id
                        st.rerun()

if tab_customer.open:
    with tab_customer:
        who = st.number_input("Customer id", min_value=1, step=1, key="comm_customer_id")
        page_number = st.session_state.get("comm_customer_page", 1)
        log = context.read(service.customer_communications, int(who), page=page_number, page_size=20)
        if log is not None and log.total:
            st.caption(f"{log.total:,} communications for customer {int(who)}")
            st.dataframe(pd.DataFrame(log.rows), hide_index=True, width="stretch",
                         column_config={"time": st.column_config.DatetimeColumn("Time", format="YYYY-MM-DD HH:mm"),
                                        "sentiment": st.column_config.NumberColumn("Sentiment", format="%+.2f")})
            st.pagination(log.pages, default=min(page_number, log.pages), key="comm_customer_page")
        elif log is not None:
            st.info(f"No communications with customer {int(who)} yet.")
