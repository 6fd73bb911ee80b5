"""Social: mention volume and sentiment by platform, negative mentions with a one-click ticket,
most-mentioned topics and products, mention imports and customers' social accounts."""

import datetime as dt
import os
import tempfile

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import imports, platform, social
from db.models import SOCIAL_PLATFORMS
from ui import context
from ui.charts import shared, time_axis
from ui.format import plain


@shared
def volume_chart(frame: pd.DataFrame, grain: str):
    chart = px.bar(frame, x="period", y="mentions", color="platform",
                   title=f"Mentions per {grain} by platform", labels={"period": "", "mentions": "Mentions"})
    return time_axis(chart, frame["period"])


@shared
def sentiment_chart(frame: pd.DataFrame, grain: str):
    chart = px.line(frame, x="period", y="avg_sentiment", color="platform", markers=True,
                    title=f"Average sentiment per {grain}",
                    labels={"period": "", "avg_sentiment": "Sentiment (-1 to +1)"})
    chart.add_hline(y=0, line_dash="dot", line_color="grey")
    return time_axis(chart, frame["period"])


@shared
def topics_chart(frame: pd.DataFrame):
    chart = px.bar(frame.iloc[::-1], x="mentions", y="term", color="negative_share", orientation="h",
                   color_continuous_scale="RdYlGn_r", range_color=(0, 1),
                   hover_data=["kind", "negative"], title="Most-mentioned topics, products, categories and brands",
                   labels={"term": "", "mentions": "Mentions", "negative_share": "Negative share"})
    return chart.update_layout(height=max(320, 28 * len(frame)))


viewer = context.require_page("social.view")
st.title("Social")
DEFAULT_DAYS = 90
can_open_tickets = platform.allowed(viewer.role, "tickets.manage")
can_import = platform.allowed(viewer.role, "social.import")
can_link = platform.allowed(viewer.role, "customers.edit")
if flash := st.session_state.pop("social_flash", None):
    st.success(flash)


@st.cache_data(ttl=60, refresh_mode="background", max_entries=4, show_spinner=False)
def dates(url: str) -> dict:
    with context.session() as s:
        return social.mention_dates(s, viewer)


@st.cache_data(ttl=60, refresh_mode="background", max_entries=32, show_spinner=False)
def figures(url: str, role: str, filters: social.MentionFilter) -> dict:
    with context.session() as s:
        return {"summary": social.mention_summary(s, viewer, filters),
                "volume": social.volume_over_time(s, viewer, filters),
                "platforms": social.by_platform(s, viewer, filters),
                "topics": social.topic_counts(s, viewer, filters, limit=20)}


url = str(context.engine().url)
known = dates(url)
# Today, or the latest mention's date when the mentions stop more than a month ago (an old import).
latest = dt.date.today()
if known["last"] and known["last"] < latest - dt.timedelta(days=30):
    latest = known["last"]
f1, f2 = st.columns([2, 1])
period = f1.date_input("Posted between", value=(latest - dt.timedelta(days=DEFAULT_DAYS), latest),
                       min_value=platform.EARLIEST_DATE, max_value=dt.date.today() + dt.timedelta(days=1),
                       key="social_period")
chosen_platform = f2.selectbox("Platform", ["All", *SOCIAL_PLATFORMS], key="social_platform")
if not (isinstance(period, tuple) and len(period) == 2):
    st.info("Pick the last day of the period too.")
    st.stop()
filters = social.MentionFilter(period[0], period[1], None if chosen_platform == "All" else chosen_platform)
try:
    data = figures(url, viewer.role, filters)
except platform.DomainError as exc:
    st.error(str(exc))
    st.stop()
summary = data["summary"]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Mentions", f"{summary['mentions']:,}", border=True)
c2.metric("Average sentiment", f"{summary['avg_sentiment']:+.2f}" if summary["avg_sentiment"] is not None else "–",
          border=True, help="VADER compound score, -1 (negative) to +1 (positive).")
c3.metric("Negative", f"{summary['negative_share']:.0%}" if summary["negative_share"] is not None else "–",
          border=True)
c4.metric("Matched to customers", f"{summary['matched_share']:.0%}" if summary["matched_share"] is not None else "–",
          border=True, help="Mentions whose author's handle is a customer's social account.")
if not known["mentions"]:
    st.info("No mentions yet. Import a file of mentions from a listening tool (CSV, Excel or JSON) in the "
            "Import tab" + ("" if can_import else " (admins and analysts)") + ", or `crm import mentions FILE`.")
elif not summary["mentions"]:
    st.info(f"No mentions in this period. Mentions run from {known['first']:%d %b %Y} to {known['last']:%d %b %Y}.")

tab_names = ["Volume and sentiment", "Negative mentions", "Topics and products"]
if can_import:
    tab_names.append("Import")
if can_link:
    tab_names.append("Accounts")
tabs = dict(zip(tab_names, st.tabs(tab_names, key="social_tab"), strict=True))

with tabs["Volume and sentiment"]:
    volume = data["volume"]
    if volume["rows"]:
        frame = pd.DataFrame(volume["rows"])
        left, right = st.columns(2)
        left.plotly_chart(volume_chart(frame, volume["grain"]), width="stretch")
        right.plotly_chart(sentiment_chart(frame, volume["grain"]), width="stretch")
        platforms = pd.DataFrame(data["platforms"])
        st.dataframe(platforms, hide_index=True, width="stretch", column_config={
            "negative_share": st.column_config.NumberColumn("negative share", format="percent"),
            "avg_sentiment": st.column_config.NumberColumn("average sentiment", format="%+.2f")})
    else:
        st.caption("Nothing to chart in this selection.")

with tabs["Negative mentions"]:
    st.caption("Most negative first, then the widest reach. Texts are shown as written."
               + ("" if can_open_tickets else " Support staff can open a ticket from a mention."))
    page_number = st.session_state.get("social_negative_page", 1)
    found = context.read(social.top_negative_mentions, filters, page=page_number, page_size=10)
    if found is not None and not found.total:
        st.info("No negative mentions in this selection.")
    elif found is not None:
        st.caption(f"{found.total:,} negative mentions")
        for row in found.rows:
            with st.container(border=True):
                head, action = st.columns([4, 1])
                # A name only for roles that may see customers; otherwise the report's own "(matched)".
                who = plain(row["customer"]) if row["customer_id"] is not None else (
                    row["customer"] or "not matched to a customer")
                head.caption(f"{row['platform'].capitalize()} · {plain(row['author']) if row['author'] else '(no author)'} · {who} · "
                             f"{row['posted_at']:%d %b %Y %H:%M} · sentiment {row['sentiment']:+.2f} · "
                             f"reach {row['reach']:,}")
                head.text(row["text"])
                if row["url"]:
                    head.caption(plain(row["url"]))
                if row["ticket"]:
                    action.caption(f"Ticket {row['ticket']}")
                elif can_open_tickets and row["customer_id"] is not None:
                    if action.button("Open a ticket", key=f"mention_ticket_{row['mention_id']}",
                                     icon=":material/confirmation_number:"):
                        ticket = context.act(social.open_ticket_from_mention, row["mention_id"])
                        if ticket is not None:
                            st.session_state["social_flash"] = (f"Ticket {ticket.ticket_number} opened for "
                                                                f"{row['customer']}.")
                            figures.clear()
                            st.rerun()
                elif row["customer_id"] is None and can_link:
                    action.caption("Link the handle to a customer (Accounts) to open a ticket.")
        st.pagination(found.pages, default=min(page_number, found.pages), key="social_negative_page")

with tabs["Topics and products"]:
    topics = data["topics"]
    if topics:
        frame = pd.DataFrame(topics)
        st.plotly_chart(topics_chart(frame), width="stretch")
        st.caption("A mention counts for a term when its text holds one of the term's words (case ignored). "
                   "Topics: " + "; ".join(f"{name} ({', '.join(w.strip() for w in words)})"
                                          for name, words in social.TOPIC_KEYWORDS.items()) + ".")
    else:
        st.caption("No topic, product, category or brand is mentioned in this selection.")

if can_import:
    with tabs["Import"]:
        st.caption("A file of mentions from a listening tool: CSV, Excel or JSON. Columns: platform, author, text, "
                   "posted_at (required), mention_id, url, reach. Each mention is matched to a customer by the "
                   "author's handle and scored for sentiment; a mention imported before is skipped.")
        uploaded = st.file_uploader("Mentions file", type=["csv", "txt", "xlsx", "json", "jsonl"], key="mentions_file")
        if uploaded is not None:
            try:
                columns, preview = social.preview_mentions(uploaded, file_name=uploaded.name, limit=10)
            except platform.DomainError as exc:
                st.error(str(exc))
            else:
                st.dataframe(pd.DataFrame([{"row": p.row, "status": p.status, "reason": p.reason, **p.values}
                                           for p in preview]), hide_index=True, width="stretch")
                if st.button("Import the mentions", icon=":material/upload:", key="mentions_import"):
                    uploaded.seek(0)
                    bar = st.progress(0.0, text="Reading the file…")

                    def on_progress(fraction: float | None, rows: int) -> None:
                        bar.progress(min(1.0, fraction or 0.0), text=f"{rows:,} rows read")

                    handle, errors_path = tempfile.mkstemp(suffix=".csv", prefix="mention-errors-")
                    os.close(handle)
                    try:
                        with context.session() as s:
                            report = social.import_mentions(s, platform.load_actor(s, viewer), uploaded,
                                                            file_name=uploaded.name, errors_path=errors_path,
                                                            progress=on_progress)
                        with open(errors_path, "rb") as error_file:
                            st.session_state["mention_import"] = {
                                "file": report.file_name, "figures": report.figures(),
                                "errors": [vars(e) for e in report.errors[:500]], "error_csv": error_file.read()}
                        figures.clear()
                        dates.clear()
                        imported = True
                    except platform.DomainError as exc:
                        imported = False
                        bar.empty()
                        st.error(f"Nothing was imported: {exc}")
                        context.act(imports.record_failed_run, "mentions", uploaded.name, uploaded.name.rsplit(".", 1)[-1], None, str(exc))
                    finally:
                        os.unlink(errors_path)
                    if imported:
                        st.rerun()  # the figures above include the new mentions
        result = st.session_state.get("mention_import")
        if result:
            st.subheader(f"Last import: {plain(result['file'])}")
            for column, (label, value) in zip(st.columns(len(result["figures"])), result["figures"], strict=True):
                column.metric(label[:1].upper() + label[1:], f"{value:,}", border=True)
            if result["errors"]:
                st.dataframe(pd.DataFrame(result["errors"]), hide_index=True, width="stretch")
                st.download_button("Download the error file", result["error_csv"], file_name="mention-errors.csv",
                                   mime="text/csv", icon=":material/download:")

if can_link:
    with tabs["Accounts"]:
        st.caption("Link a customer's social account: their past and future mentions are matched to them.")
        with st.form("link_account", clear_on_submit=True):
            a1, a2, a3 = st.columns(3)
            customer_id = a1.number_input("Customer id", min_value=1, step=1)
            account_platform = a2.selectbox("Platform", SOCIAL_PLATFORMS)
            handle = a3.text_input("Handle", placeholder="@handle or profile link")
            b1, b2 = st.columns(2)
            followers = b1.number_input("Followers", min_value=0, step=1)
            verified = b2.checkbox("Verified account")
            if st.form_submit_button("Link the account"):
                linked = context.act(social.link_account, int(customer_id), account_platform, handle,
                                     followers=int(followers), verified=verified)
                if linked is not None:
                    st.success(f"@{plain(linked['handle'])} on {linked['platform']} linked to customer {int(customer_id)}; "
                               f"{linked['mentions_matched']:,} earlier mentions matched.")
                    figures.clear()
        lookup = st.number_input("Show the accounts of customer id", min_value=1, step=1, key="social_accounts_of")
        accounts = context.read(social.customer_accounts, int(lookup))
        if accounts:
            st.dataframe(pd.DataFrame(accounts).drop(columns=["id"]), hide_index=True, width="stretch")
            remove = st.selectbox("Unlink", [f"{a['platform']} @{a['handle']}" for a in accounts], key="social_unlink")
            if st.button("Unlink the account", key="social_unlink_button"):
                account = accounts[[f"{a['platform']} @{a['handle']}" for a in accounts].index(remove)]
                if context.act(social.unlink_account, account["id"]) is not None:
                    st.session_state["social_flash"] = f"{remove} unlinked."
                    st.rerun()
        elif accounts is not None:
            st.caption("No social accounts linked to this customer.")
