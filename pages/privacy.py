"""Privacy requests: the request log with deadlines, access exports, erasure, consent ledger, preferences."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import customers, platform
from db.models import CONSENT_PURPOSES, CONTACT_FREQUENCIES, DSR_STATUSES, DSR_TYPES
from ui import context
from ui.charts import shared
from ui.format import plain, words


@shared
def consent_chart(summary: list[dict]):
    return px.bar(pd.DataFrame(summary), x="purpose", y="customers", color="state", barmode="group",
                  title="Current consent by purpose (latest entry per customer)",
                  labels={"purpose": "", "customers": "Customers", "state": ""})


viewer = context.require_page("privacy.manage")
st.title("Privacy requests")
if flash := st.session_state.pop("privacy_flash", None):
    st.success(flash)

counts = context.read(customers.privacy_request_counts) or {"open": 0, "overdue": 0, "due_7_days": 0, "completed": 0}
c1, c2, c3, c4 = st.columns(4)
c1.metric("Open requests", f"{counts['open']:,}", border=True)
c2.metric("Overdue", f"{counts['overdue']:,}", border=True)
c3.metric("Due within 7 days", f"{counts['due_7_days']:,}", border=True)
c4.metric("Completed", f"{counts['completed']:,}", border=True)

tab_log, tab_new, tab_process, tab_consent, tab_prefs = st.tabs(
    ["Request log", "New request", "Process a request", "Consent ledger", "Preference center"], key="privacy_tab")

with tab_log:
    f1, f2, f3 = st.columns(3)
    status = f1.selectbox("Status", ["All", *DSR_STATUSES], key="log_status", format_func=words)
    kind = f2.selectbox("Type", ["All", *DSR_TYPES], key="log_type", format_func=words)
    overdue = f3.toggle("Overdue only", key="log_overdue")
    page_number = st.session_state.get("log_page", 1)
    log = context.read(customers.list_privacy_requests, status=None if status == "All" else status,
                       request_type=None if kind == "All" else kind, overdue_only=overdue,
                       page=page_number, page_size=25)
    if log is None or not log.total:
        st.info("No requests match. Log one in the New request tab.")
    else:
        st.caption(f"{log.total:,} requests; answer within {customers.RESPONSE_DAYS} days of receipt")
        requests = pd.DataFrame(log.rows)
        requests["type"] = requests["type"].map(words)
        requests["status"] = requests["status"].map(words)
        # Blank, not "None", for a closed request's days left, an open one's completion and missing notes.
        st.dataframe(requests, hide_index=True, width="stretch", placeholder="",
                     column_config={"request_id": st.column_config.NumberColumn("Request", format="%d"),
                                    "customer_id": st.column_config.NumberColumn("Customer", format="%d"),
                                    "type": "Type", "status": "Status",
                                    "overdue": st.column_config.CheckboxColumn("Overdue"),
                                    "due_at": st.column_config.DatetimeColumn("Due", format="YYYY-MM-DD"),
                                    "received_at": st.column_config.DatetimeColumn("Received", format="YYYY-MM-DD"),
                                    "days_left": st.column_config.NumberColumn(
                                        "Days left", help="Days until the answer is due; blank once the request is closed"),
                                    "completed_at": st.column_config.DatetimeColumn("Completed", format="YYYY-MM-DD HH:mm"),
                                    "notes": "Notes"})
        st.pagination(log.pages, default=min(page_number, log.pages), key="log_page")

with tab_new:
    lookup = st.text_input("Find a customer (id, email or name)", key="new_lookup")
    if lookup:
        matches = context.read(customers.find_request_subjects, lookup) or []
        if matches:
            st.dataframe(pd.DataFrame(matches), hide_index=True, width="stretch")
        else:
            st.caption("No customer matches.")
    with st.form("new_request", clear_on_submit=True):
        customer_id = st.number_input("Customer id", min_value=1, step=1, key="new_customer")
        request_type = st.selectbox("Type", DSR_TYPES, key="new_type")
        received = st.date_input("Received on", value=dt.date.today(), min_value=platform.EARLIEST_DATE,
                                 max_value=dt.date.today(), key="new_received")
        notes = st.text_area("Notes (how the request arrived, identity check)", key="new_notes")
        if st.form_submit_button("Log the request"):
            created = context.act(customers.create_privacy_request, int(customer_id), request_type, notes=notes or None,
                                  received_at=dt.datetime.combine(received, dt.datetime.now().time()))
            if created is not None:
                st.session_state["privacy_flash"] = (
                    f"Request {created.id} logged; due {created.due_at:%Y-%m-%d}."
                )
                st.rerun()

with tab_process:
    request_id = st.number_input("Request id", min_value=1, step=1, value=None, key="process_id")
    chosen = None if request_id is None else context.read(customers.get_privacy_request, int(request_id))
    if chosen is None:
        st.info("Enter the id of a request from the log.")
    else:
        st.write(f"**{chosen['type'].capitalize()}** request for customer {chosen['customer_id']}, "
                 f"status **{words(chosen['status']).lower()}**, due {chosen['due_at']:%Y-%m-%d}"
                 + (" — **overdue**" if chosen["overdue"] else ""))
        is_open = chosen["status"] in ("received", "in_progress")
        wants_export = is_open and chosen["type"] in ("access", "portability")
        if wants_export and st.button("Prepare the export (JSON + CSV, zipped)", key="run_export"):
            payload = context.act(customers.process_access_request, chosen["request_id"])
            if payload is not None:
                st.session_state["privacy_export"] = (chosen["request_id"], payload)
        if is_open and chosen["type"] == "erasure":
            with st.form("erase_form"):
                st.warning("Erasure anonymises this customer in every table and cannot be undone. "
                           "Orders are kept, de-identified, for legal retention.")
                typed = st.text_input("Type ERASE to confirm", key="erase_confirm")
                if st.form_submit_button("Erase the customer"):
                    if typed.strip() != "ERASE":
                        st.error("Type ERASE (in capitals) to confirm the erasure.")
                    else:
                        result = context.act(customers.erase_customer, chosen["customer_id"], chosen["request_id"])
                        if result is not None:
                            st.success(f"Erased {len(result['erased_customers'])} customer record(s); "
                                       f"{sum(result['rows_anonymised'].values()):,} rows anonymised.")
                            st.json(result)
        if is_open:
            with st.form("reject_form"):
                reason = st.text_input("Reason", key="reject_reason")
                left, right = st.columns(2)
                start = left.form_submit_button("Mark in progress")
                reject = right.form_submit_button("Reject")
                if start or reject:
                    done = context.act(customers.set_privacy_request_status, chosen["request_id"],
                                       "rejected" if reject else "in_progress", reason or None)
                    if done is not None:
                        st.session_state["privacy_flash"] = f"Request {done.id} is now {done.status}."
                        st.rerun()
        exported = st.session_state.get("privacy_export")
        if exported and exported[0] == chosen["request_id"]:
            st.download_button("Download the export", exported[1], file_name=f"subject-request-{exported[0]}.zip",
                               mime="application/zip", key="download_export")

with tab_consent:
    summary = context.cached(customers.consent_summary) or []
    if summary:
        st.plotly_chart(consent_chart(summary), width="stretch")
    consent_customer = st.number_input("Customer id", min_value=1, step=1, value=None, key="consent_customer")
    current = None if consent_customer is None else context.read(customers.current_consents, int(consent_customer))
    if consent_customer is None:
        st.info("Enter a customer id to see and record their consent.")
    if current is not None:
        if current:
            st.dataframe(pd.DataFrame([{"purpose": p, **v} for p, v in current.items()]), hide_index=True,
                         width="stretch")
        else:
            st.caption("No consent recorded for this customer yet.")
        ledger_page = st.session_state.get("ledger_page", 1)
        ledger = context.read(customers.consent_ledger, int(consent_customer), page=ledger_page, page_size=25)
        if ledger is not None and ledger.total:
            with st.expander(f"Full ledger ({ledger.total} entries)"):
                st.dataframe(pd.DataFrame(ledger.rows), hide_index=True, width="stretch")
                st.pagination(ledger.pages, default=min(ledger_page, ledger.pages), key="ledger_page")
        with st.form("consent_form", clear_on_submit=True):
            a, b = st.columns(2)
            purpose = a.selectbox("Purpose", CONSENT_PURPOSES, key="consent_purpose")
            decision = b.radio("Decision", ["Granted", "Withdrawn"], horizontal=True, key="consent_decision")
            basis = a.selectbox("Lawful basis", customers.LAWFUL_BASES, key="consent_basis")
            source = b.selectbox("Source", customers.CONSENT_SOURCES, index=customers.CONSENT_SOURCES.index("staff"),
                                 key="consent_source")
            policy = a.text_input("Policy version", key="consent_policy")
            notes = b.text_input("Notes", key="consent_notes")
            if st.form_submit_button("Record consent"):
                entry = context.act(customers.record_consent, int(consent_customer), purpose, decision == "Granted",
                                    basis, source, policy, notes or None)
                if entry is not None:
                    st.session_state["privacy_flash"] = f"Recorded: {purpose} {decision.lower()}."
                    st.rerun()

with tab_prefs:
    pref_customer = st.number_input("Customer id", min_value=1, step=1, value=None, key="pref_customer")
    prefs = None if pref_customer is None else context.read(customers.get_preferences, int(pref_customer))
    if pref_customer is None:
        st.info("Enter a customer id to edit their preference center.")
    if prefs is not None:
        st.caption(f"Preferences of {plain(prefs['name'] or 'customer')} #{prefs['customer_id']}")
        with st.form("preferences_form"):
            channels = st.multiselect("Channels", customers.PREFERENCE_CHANNELS, default=prefs["channels"],
                                      key="pref_channels")
            a, b = st.columns(2)
            frequency = a.selectbox("Frequency", CONTACT_FREQUENCIES, index=CONTACT_FREQUENCIES.index(prefs["frequency"]),
                                    key="pref_frequency")
            options = ["(none)", *customers.PREFERENCE_CHANNELS]
            preferred = b.selectbox("Preferred channel", options,
                                    index=options.index(prefs["preferred_channel"] or "(none)"), key="pref_preferred")
            language = a.text_input("Language code", value=prefs["language"] or "", key="pref_language")
            categories = b.text_input("Categories (comma-separated)", value=", ".join(prefs["categories"]),
                                      key="pref_categories")
            sharing = st.toggle("Share data with partners", value=prefs["data_sharing"], key="pref_sharing")
            analytics = st.toggle("Analytics consent", value=prefs["analytics"], key="pref_analytics")
            personal = st.toggle("Personalization", value=prefs["personalization"], key="pref_personalization")
            if st.form_submit_button("Save preferences"):
                saved = context.act(customers.save_preferences, int(pref_customer), {
                    "channels": channels, "frequency": frequency,
                    "preferred_channel": None if preferred == "(none)" else preferred, "language": language,
                    "categories": [c.strip() for c in categories.split(",") if c.strip()],
                    "data_sharing": sharing, "analytics": analytics, "personalization": personal,
                }, expected_version=prefs["version"])
                if saved is not None:
                    st.session_state["privacy_flash"] = f"Preferences of customer {int(pref_customer)} saved."
                    st.rerun()
