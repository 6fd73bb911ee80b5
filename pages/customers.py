"""Customers: typo-tolerant search with filters, sortable paged results, saved searches, bulk actions."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import customers, platform, segmentation
from db.models import COMM_CHANNELS, LIFECYCLE_STAGES
from ui import context
from ui.charts import shared
from ui.format import words


@shared
def countries_chart(by_country: pd.DataFrame):
    return px.bar(by_country, x="country", y="customers", title="Customers on this page by country",
                  labels={"country": "", "customers": "Customers"})


viewer = context.require_page("customers.view")
st.title("Customers")
if flash := st.session_state.pop("customers_flash", None):
    st.success(flash)

QUERY_KEY = "customers_query"
PAGE_KEY = "customers_page"
PENDING_KEY = "customers_pending_query"
# Form widget keys, so a loaded saved search can fill the form.
FIELDS = {
    "text": "cq_text", "segment_ids": "cq_segments", "stages": "cq_stages", "tiers": "cq_tiers",
    "risk_levels": "cq_risk", "countries": "cq_countries", "statuses": "cq_statuses",
    "signup_from": "cq_signup_from", "signup_to": "cq_signup_to", "last_order_from": "cq_last_from",
    "last_order_to": "cq_last_to", "revenue_min": "cq_rev_min", "revenue_max": "cq_rev_max",
    "clv_min": "cq_clv_min", "clv_max": "cq_clv_max", "sort": "cq_sort", "direction": "cq_direction",
}


@st.cache_data(ttl=30, refresh_mode="background", max_entries=8, show_spinner=False)
def load_options(url: str, role: str) -> dict:
    with context.session() as s:
        return customers.search_filter_options(s, viewer)


def fill_form(query: customers.CustomerQuery) -> None:
    """Put a query's values into the form widgets (before they are drawn)."""
    for name, key in FIELDS.items():
        value = getattr(query, name)
        st.session_state[key] = list(value) if isinstance(value, tuple) else value


def sort_label(key: str) -> str:
    return "Relevance (newest sign-ups without search text)" if key == "relevance" else options["sorts"].get(key, key)


def current_query() -> customers.CustomerQuery:
    return st.session_state.get(QUERY_KEY) or customers.CustomerQuery()


def set_query(query: customers.CustomerQuery) -> None:
    st.session_state[QUERY_KEY] = query
    st.session_state.pop(PAGE_KEY, None)
    st.session_state.pop("customers_bulk_result", None)


options = load_options(str(context.engine().url), viewer.role)
segment_names = {s["id"]: s["name"] for s in options["segments"]}
if pending := st.session_state.pop(PENDING_KEY, None):
    fill_form(pending)
    set_query(pending)
elif FIELDS["text"] not in st.session_state:  # first visit, or widget state dropped after another page
    fill_form(current_query())

# --------------------------------------------------------------------------- search form

with st.form("customer_search"):
    st.text_input("Search", key=FIELDS["text"], placeholder="Name, email, phone, company or customer id",
                  help="Tolerates typos: 'Jonh Smiht' finds John Smith. Exact ids, emails and phones rank first.")
    with st.expander("Filters"):
        c1, c2, c3 = st.columns(3)
        c1.multiselect("Segments", list(segment_names), key=FIELDS["segment_ids"], format_func=segment_names.get)
        c2.multiselect("Lifecycle stage", options["stages"], key=FIELDS["stages"])
        c3.multiselect("Loyalty tier", options["tiers"], key=FIELDS["tiers"])
        c1.multiselect("Churn risk", options["risk_levels"], key=FIELDS["risk_levels"])
        c2.multiselect("Country", options["countries"], key=FIELDS["countries"])
        c3.multiselect("Status", options["statuses"], key=FIELDS["statuses"],
                       help="Empty: every status except merged and erased.")
        # From 1900 (a historical import's dates are far back) to today.
        dates = {"value": None, "min_value": platform.EARLIEST_DATE, "max_value": dt.date.today()}
        c1.date_input("Signed up from", key=FIELDS["signup_from"], **dates)
        c2.date_input("Signed up to", key=FIELDS["signup_to"], **dates)
        c3.write("")
        c1.date_input("Last order from", key=FIELDS["last_order_from"], **dates)
        c2.date_input("Last order to", key=FIELDS["last_order_to"], **dates)
        c3.write("")
        c1.number_input("Revenue at least (€)", key=FIELDS["revenue_min"], value=None, min_value=0.0, step=50.0)
        c2.number_input("Revenue at most (€)", key=FIELDS["revenue_max"], value=None, min_value=0.0, step=50.0)
        c3.write("")
        c1.number_input("CLV at least (€)", key=FIELDS["clv_min"], value=None, min_value=0.0, step=50.0)
        c2.number_input("CLV at most (€)", key=FIELDS["clv_max"], value=None, min_value=0.0, step=50.0)
    s1, s2, s3 = st.columns([2, 1, 1])
    s1.selectbox("Sort by", list(options["sorts"]), key=FIELDS["sort"], format_func=sort_label,
                 help="Relevance ranks by the search text; without text there is nothing to rank, so the newest "
                      "sign-ups come first (Ascending: the oldest).")
    s2.radio("Order", ["desc", "asc"], key=FIELDS["direction"], horizontal=True,
             format_func=lambda d: "Descending" if d == "desc" else "Ascending")
    page_size = s3.selectbox("Rows per page", [25, 50, 100], index=1, key="customers_page_size")
    if st.form_submit_button("Search", type="primary", icon=":material/search:"):
        try:
            set_query(customers.CustomerQuery.from_dict({name: st.session_state.get(key) for name, key in FIELDS.items()}))
        except platform.DomainError as exc:
            st.error(str(exc))

query = current_query()

# --------------------------------------------------------------------------- saved searches

with st.expander("Saved searches"):
    saved = context.read(customers.list_searches) or []
    if saved:
        by_id = {s["id"]: s for s in saved}
        chosen = st.selectbox("Your saved searches", list(by_id), format_func=lambda i: by_id[i]["name"],
                              key="saved_choice")
        load_col, delete_col = st.columns(2)
        if load_col.button("Load", icon=":material/folder_open:"):
            loaded = context.read(customers.load_search, chosen)
            if loaded is not None:
                st.session_state[PENDING_KEY] = loaded  # the form is already drawn: fill it on the rerun
                st.session_state["customers_flash"] = f"Loaded {by_id[chosen]['name']}."
                st.rerun()
        if delete_col.button("Delete", icon=":material/delete:") and context.act(customers.delete_search,
                                                                                chosen) is not None:
            st.session_state["customers_flash"] = f"Deleted {by_id[chosen]['name']}."
            st.rerun()
    else:
        st.caption("No saved searches yet.")
    with st.form("save_search", clear_on_submit=True):
        name = st.text_input("Save the current search as")
        if st.form_submit_button("Save search") and context.act(customers.save_search, name, query) is not None:
            st.session_state["customers_flash"] = f"Saved the search as {' '.join(name.split())}."
            st.rerun()

# --------------------------------------------------------------------------- results

page_number = st.session_state.get(PAGE_KEY, 1)
result = context.read(customers.search_customers, query, page=page_number, page_size=page_size)
if result is None:
    st.stop()
m1, m2, m3 = st.columns(3)
m1.metric("Matching customers", f"{result.total:,}", border=True)
revenues = [r["revenue"] for r in result.rows if r["revenue"] is not None]
m2.metric("Revenue on this page", f"€{sum(revenues):,.0f}", border=True)
at_risk = sum(r["risk_level"] in segmentation.AT_RISK_LEVELS for r in result.rows)
m3.metric("High or critical risk on this page", f"{at_risk:,}", border=True)

selected_ids: list[int] = []
if not result.total:
    st.info("No customers match this search. Loosen the filters or check the spelling.")
else:
    table = pd.DataFrame(result.rows)
    table.insert(1, "profile", [f"/customer-360?id={i}" for i in table["id"]])
    table["stage"] = table["stage"].map(lambda v: words(v) if isinstance(v, str) else v)
    if not query.text and query.sort == "relevance":
        # No text, no relevance: the rows come in sign-up order (ties by id), shown beside the name.
        table.insert(3, "signed_up_at", table.pop("signed_up_at"))
        st.caption(("Newest" if query.direction == "desc" else "Oldest") + " sign-ups first: without search text "
                   "there is no relevance to rank by.")
    event = st.dataframe(
        table, key="customer_results", on_select="rerun", selection_mode="multi-row", hide_index=True,
        width="stretch", placeholder="",  # no company or tier: an empty cell, not "None"
        column_config={
            "id": st.column_config.NumberColumn("Id", format="%d"),
            "profile": st.column_config.LinkColumn("Profile", display_text="Open"),
            "name": "Name", "email": "Email", "phone": "Phone", "company": "Company", "country": "Country",
            "city": "City", "status": "Status", "stage": "Stage", "tier": "Tier", "orders": "Orders",
            "risk_level": "Churn risk",
            "revenue": st.column_config.NumberColumn("Revenue", format="€%.2f"),
            "clv_12m": st.column_config.NumberColumn("CLV 12m", format="€%.2f"),
            "churn_probability": st.column_config.ProgressColumn("Churn", min_value=0, max_value=1, format="percent"),
            "signed_up_at": st.column_config.DatetimeColumn("Signed up", format="YYYY-MM-DD"),
            "last_order_at": st.column_config.DatetimeColumn("Last order", format="YYYY-MM-DD"),
            "relevance": st.column_config.NumberColumn("Relevance", format="%.2f"),
        },
    )
    selected_ids = [int(table.iloc[i]["id"]) for i in event.selection.rows]
    st.caption(f"Page {result.page} of {result.pages} · {result.total:,} customers · "
               f"{len(selected_ids)} selected on this page")
    st.pagination(result.pages, default=min(page_number, result.pages), key=PAGE_KEY)
    by_country = table.groupby("country", dropna=True).size().reset_index(name="customers")
    if len(by_country) > 1:
        st.plotly_chart(countries_chart(by_country), width="stretch")

# --------------------------------------------------------------------------- bulk actions

actions = customers.available_bulk_actions(viewer.role)
if actions and result.total:
    st.subheader("Bulk actions")
    labels = {a.key: a.label for a in actions}
    scope_options = ["selected", "result"]
    scope = st.radio(
        "Apply to", scope_options, horizontal=True, key="bulk_scope",
        index=0 if selected_ids else 1,
        format_func=lambda s: f"Selected rows ({len(selected_ids)})" if s == "selected"
        else f"The whole search result ({result.total:,})",
    )
    action = st.selectbox("Action", list(labels), format_func=labels.get, key="bulk_action")
    target_count = len(selected_ids) if scope == "selected" else result.total
    with st.form("bulk_form"):
        params: dict = {}
        missing_target = False
        if action == "add_to_segment":
            static = {s["id"]: s["name"] for s in options["segments"] if s["editable"]}
            if static:
                params["segment_id"] = st.selectbox("Static segment", list(static), format_func=static.get)
            else:
                missing_target = True
                st.info("There is no static segment yet; create one on the Segments page, then come back "
                        "to add customers to it.")
        elif action == "change_lifecycle_stage":
            params["stage"] = st.selectbox("New stage", LIFECYCLE_STAGES)
            params["reason"] = st.text_input("Reason (required)")
        elif action == "change_status":
            params["status"] = st.selectbox("New status", customers.SETTABLE_STATUSES)
            params["reason"] = st.text_input("Reason")
        elif action == "log_campaign_communication":
            params["campaign"] = st.text_input("Campaign")
            params["channel"] = st.selectbox("Channel", COMM_CHANNELS)
            params["subject"] = st.text_input("Subject")
            params["body"] = st.text_area("Message")
        confirmed = st.checkbox(f"Yes, apply “{labels[action]}” to {target_count:,} customers",
                                disabled=missing_target)
        run = st.form_submit_button("Run bulk action", type="primary", icon=":material/bolt:",
                                    disabled=missing_target)
    if run:
        if missing_target:
            st.warning("Create a static segment on the Segments page first.")
        elif not confirmed:
            st.warning("Tick the confirmation first.")
        elif scope == "selected" and not selected_ids:
            st.warning("Select rows in the table first, or apply the action to the whole result.")
        else:
            selection = selected_ids if scope == "selected" else query
            bar = st.progress(0.0, text="Starting…")

            def progress(done: int, total: int) -> None:
                bar.progress(min(1.0, done / max(total, 1)), text=f"{done:,} of {total:,} customers")

            outcome = context.act(customers.run_bulk_action, action, selection, params, progress=progress)
            if outcome is not None:
                bar.progress(1.0, text="Done")
                st.session_state["customers_bulk_result"] = {
                    "label": labels[action], "summary": outcome.summary(), "rows": outcome.rows(),
                    "content": outcome.content, "at": dt.datetime.now().strftime("%Y%m%d-%H%M%S"),
                }
                load_options.clear()

    done = st.session_state.get("customers_bulk_result")
    if done:
        st.success(f"{done['label']}: {done['summary']['ok']:,} done, {done['summary']['skipped']:,} skipped, "
                   f"{done['summary']['failed']:,} failed.")
        r1, r2, r3 = st.columns(3)
        r1.metric("Done", f"{done['summary']['ok']:,}")
        r2.metric("Skipped", f"{done['summary']['skipped']:,}")
        r3.metric("Failed", f"{done['summary']['failed']:,}")
        st.dataframe(pd.DataFrame(done["rows"]), hide_index=True, width="stretch", key="bulk_results")
        if done["content"] is not None:
            st.download_button("Download the export (CSV)", done["content"], file_name=f"customers-{done['at']}.csv",
                               mime="text/csv", icon=":material/download:")
elif not actions:
    st.caption("Your role can search and open customers; bulk actions need an analyst, success manager or admin.")
