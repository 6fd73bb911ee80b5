"""Complaints: dashboard (open by severity, time to resolve, compensation), list, intake and resolution."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, service
from db.models import COMPENSATION_KINDS, COMPLAINT_SEVERITIES, COMPLAINT_STATUSES
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date
from ui.format import plain


@shared
def severity_chart(severity: pd.DataFrame):
    return px.bar(severity, x="severity", y="complaints", color="measure", barmode="group",
                  title="Open complaints by severity", labels={"severity": "", "measure": ""})


@shared
def resolve_chart(frame: pd.DataFrame):
    return px.bar(frame, x="severity", y="median_hours", hover_data=["avg_hours", "resolved", "on_time_share"],
                  title="Median hours to resolve (last 12 months)", labels={"severity": "", "median_hours": "Hours"})


@shared
def compensation_chart(money: pd.DataFrame):
    return px.bar(money, x="month", y="amount", color="kind", hover_data=["complaints"],
                  title="Compensation paid by month and kind", labels={"month": "", "amount": "Amount", "kind": "Kind"})


viewer = context.require_page("complaints.view")
can_manage = platform.allowed(viewer.role, "complaints.manage")
st.title("Complaints")
as_of = show_data_date().day
if flash := st.session_state.pop("complaints_flash", None):
    st.success(flash)


@st.cache_data(ttl=60, refresh_mode="background", max_entries=8, show_spinner=False)
def dashboard(url: str, since: dt.date, as_of: dt.date) -> dict:
    with context.session() as s:
        return {
            "by_severity": service.open_complaints_by_severity(s, viewer),
            "resolve": service.complaint_time_to_resolve(s, viewer, since=since),
            "money": service.compensation_by_month(s, viewer, months=12, as_of=as_of),
        }


def saved(message: str) -> None:
    dashboard.clear()
    st.session_state["complaints_flash"] = message
    st.rerun()


figures = context.read(service.complaint_kpis)
if figures is None:
    st.stop()
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Open complaints", f"{figures['open']:,}", border=True)
c2.metric("Overdue", f"{figures['overdue']:,}", border=True)
c3.metric("Resolved in 30 days", f"{figures['resolved_30d']:,}", border=True)
c4.metric("Satisfaction", "–" if figures["avg_satisfaction"] is None else f"{figures['avg_satisfaction']:.2f} / 5",
          help="Customers' average satisfaction with the resolution of their complaint, 1 (very unhappy) to 5",
          border=True)
c5.metric("Compensation in 30 days", f"€{figures['compensation_30d']:,.2f}", border=True)

tab_names = ["Dashboard", "Complaints"] + (["New complaint", "Work on a complaint"] if can_manage else [])
tabs = st.tabs(tab_names, key="complaints_tab")

with tabs[0]:
    if not figures["total"]:
        st.info("No complaints recorded yet.")
    else:
        data = dashboard(str(context.engine().url), as_of - dt.timedelta(days=365), as_of)
        left, right = st.columns(2)
        severity = pd.DataFrame(data["by_severity"]).melt(id_vars="severity", var_name="measure", value_name="complaints")
        if severity.empty or not severity["complaints"].fillna(0).any():
            left.info("No complaint is open now, so there is nothing to show by severity.")
        else:
            left.plotly_chart(severity_chart(severity), width="stretch")
        if data["resolve"]:
            right.plotly_chart(resolve_chart(pd.DataFrame(data["resolve"])), width="stretch")
        else:
            right.info("No complaints resolved in the last 12 months.")
        if data["money"]:
            st.plotly_chart(compensation_chart(pd.DataFrame(data["money"])), width="stretch")
        else:
            st.info("No compensation paid in the last 12 months.")

with tabs[1]:
    f1, f2, f3, f4 = st.columns(4)
    status = f1.selectbox("Status", ["All", "any open", *COMPLAINT_STATUSES], key="complaints_status")
    severity = f2.selectbox("Severity", ["All", *COMPLAINT_SEVERITIES], key="complaints_severity")
    category = f3.selectbox("Category", ["All", *service.COMPLAINT_CATEGORIES], key="complaints_category")
    overdue_only = f4.toggle("Overdue only", key="complaints_overdue")
    filters = service.ComplaintFilter(
        status=None if status == "All" else status, severity=None if severity == "All" else severity,
        category=None if category == "All" else category, overdue_only=overdue_only,
    )
    page_number = st.session_state.get("complaints_page", 1)
    found = context.read(service.search_complaints, filters, page=page_number, page_size=25)
    if found is not None and found.total:
        st.caption(f"{found.total:,} complaints")
        st.dataframe(pd.DataFrame(found.rows).drop(columns=["version"]), hide_index=True, width="stretch",
                     column_config={"id": "Complaint", "created_at": st.column_config.DatetimeColumn("Received", format="YYYY-MM-DD HH:mm"),
                                    "resolution_due_at": st.column_config.DatetimeColumn("Due", format="YYYY-MM-DD HH:mm"),
                                    "compensation_amount": st.column_config.NumberColumn("Compensation", format="€%.2f")})
        st.pagination(found.pages, default=min(page_number, found.pages), key="complaints_page")
    elif found is not None:
        st.info("No complaints match these filters.")

if can_manage:
    with tabs[2], st.form("new_complaint"):
        st.markdown("**Register a complaint**")
        a, b, c = st.columns(3)
        customer_id = a.number_input("Customer id", min_value=0, step=1, key="new_customer_id")
        new_category = b.selectbox("Category", service.COMPLAINT_CATEGORIES, key="new_category")
        new_severity = c.selectbox("Severity", COMPLAINT_SEVERITIES, index=1, key="new_severity")
        description = st.text_area("Description", key="new_description", max_chars=service.MAX_COMPLAINT_DESCRIPTION)
        d, e = st.columns(2)
        ticket_id = d.text_input("Linked ticket id (optional)", key="new_ticket_id")
        order_id = e.text_input("Linked order id (optional)", key="new_order_id")
        if st.form_submit_button("Register complaint", type="primary", key="new_submit"):
            created = context.act(service.create_complaint, int(customer_id), new_category, new_severity, description,
                                  ticket_id=ticket_id or None, order_id=order_id or None)
            if created is not None:
                saved(f"Complaint {created.id} registered; resolution due {created.resolution_due_at:%Y-%m-%d %H:%M}.")

    with tabs[3]:
        limit = context.read(service.compensation_limit)
        if not figures["total"]:
            st.info("No complaints recorded yet: register one in the New complaint tab.")
            item = None
        else:
            complaint_id = st.number_input("Complaint id", min_value=1, step=1, key="work_complaint_id")
            item = context.read(service.complaint_detail, int(complaint_id))
        if item is not None:
            st.markdown(f"**Complaint {item['id']}** · customer {item['customer_id']} · {item['category']} · "
                        f"{item['severity']} · **{item['status']}** · escalation level {item['escalation_level']}")
            st.caption(plain(item["description"]))
            if item["resolution"]:
                st.caption(f"Resolution: {plain(item['resolution'])} · compensation {item['compensation_kind']} "
                           f"€{item['compensation_amount']:,.2f} (approved by {item['approved_by'] or '–'})")
            left, right = st.columns(2)
            with left, st.form("complaint_status"):
                st.markdown("**Move or escalate**")
                choices = item["next_statuses"]
                target = st.selectbox("New status", choices or ["(final)"], key="work_status")
                moved = st.form_submit_button("Change status", disabled=not choices, key="work_status_submit")
                escalated = st.form_submit_button("Escalate", disabled=item["status"] in ("resolved", "closed"),
                                                  key="work_escalate")
                if moved and context.act(service.change_complaint_status, item["id"], target,
                                         expected_version=item["version"]) is not None:
                    saved(f"Complaint {item['id']} is now {target}.")
                if escalated and context.act(service.escalate_complaint, item["id"], expected_version=item["version"]) is not None:
                    saved(f"Complaint {item['id']} escalated to level {item['escalation_level'] + 1}.")
            with right:
                if item["status"] in ("resolved", "closed"):
                    with st.form("complaint_satisfaction"):
                        st.markdown("**Customer satisfaction with the resolution**")
                        score = st.slider("Score (1 = very unhappy, 5 = very happy)", 1, 5,
                                          value=item["satisfaction"] or 3, key="work_satisfaction")
                        if st.form_submit_button("Save satisfaction", key="work_satisfaction_submit") and \
                                context.act(service.record_complaint_satisfaction, item["id"], int(score),
                                            expected_version=item["version"]) is not None:
                            saved(f"Satisfaction {score}/5 saved for complaint {item['id']}.")
                else:
                    with st.form("complaint_resolve"):
                        st.markdown("**Resolve**")
                        if limit is not None:
                            st.caption(f"You may approve compensation up to €{limit:,.2f}.")
                        resolution = st.text_area("Resolution", key="work_resolution")
                        kind = st.selectbox("Compensation", COMPENSATION_KINDS, key="work_kind")
                        amount = st.number_input("Amount (€)", min_value=0.0, step=5.0, format="%.2f", key="work_amount")
                        if st.form_submit_button("Resolve", type="primary", key="work_resolve") and \
                                context.act(service.resolve_complaint, item["id"], resolution, kind, amount,
                                            expected_version=item["version"]) is not None:
                            saved(f"Complaint {item['id']} resolved.")

if platform.allowed(viewer.role, "complaints.settings"):
    with st.expander("Resolution SLA and compensation limits (admin)"):
        with context.session() as s:
            settings, version = service.get_complaint_settings(s)
        with st.form("complaint_settings"):
            hours = {}
            columns = st.columns(len(COMPLAINT_SEVERITIES))
            for column, sev in zip(columns, COMPLAINT_SEVERITIES, strict=True):
                hours[sev] = column.number_input(f"Hours to resolve: {sev}", min_value=1, max_value=8760,
                                                 value=int(settings["resolution_hours"][sev]), step=1)
            limits = {}
            columns = st.columns(len(settings["compensation_limits"]))
            for column, (role, value) in zip(columns, settings["compensation_limits"].items(), strict=True):
                limits[role] = column.number_input(f"Compensation limit (€): {role}", min_value=0.0, value=float(value), step=10.0)
            if st.form_submit_button("Save settings") and context.act(
                    service.save_complaint_settings, {"resolution_hours": hours, "compensation_limits": limits},
                    expected_version=version) is not None:
                saved("Complaint settings saved; new due dates apply to new complaints.")
