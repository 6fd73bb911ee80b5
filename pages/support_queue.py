"""Support queue: my tickets and the team queue with SLA timers, filters, paging and a new-ticket form."""

import pandas as pd
import streamlit as st

from crm_core import platform, service
from db.models import TICKET_CATEGORIES, TICKET_CHANNELS, TICKET_PRIORITIES, TICKET_STATUSES, utcnow
from ui import context
from ui.format import plain, words

viewer = context.require_page("tickets.view")
can_manage = platform.allowed(viewer.role, "tickets.manage")
st.title("Support queue")
if flash := st.session_state.pop("queue_flash", None):
    st.success(flash)

SLA_COLOURS = {
    "overdue": "background-color: #f8d7da; color: #842029", "under 1h": "background-color: #ffe5d0; color: #8a3b00",
    "under 4h": "background-color: #fff3cd; color: #664d03", "on track": "background-color: #d1e7dd; color: #0f5132",
    "paused": "background-color: #e2e3e5; color: #41464b",
}
now = utcnow()

mine_total = context.read(service.ticket_queue, "mine", page_size=1)
team_total = context.read(service.ticket_queue, "team", page_size=1)
soon = context.read(service.breaching_soon, now, within_minutes=120, page_size=1)
c1, c2, c3 = st.columns(3)
c1.metric("My open tickets", f"{mine_total.total:,}" if mine_total else "–", border=True)
c2.metric("Open tickets (team)", f"{team_total.total:,}" if team_total else "–", border=True)
c3.metric("Breaching within 2 hours", f"{soon.total:,}" if soon else "–", border=True)

notes = context.read(service.notifications_for) or []
if notes:
    with st.expander(f"Notifications ({len(notes)} unread)", icon=":material/notifications:"):
        for note in notes:
            st.markdown(f"- {note['created_at']:%Y-%m-%d %H:%M} UTC · {plain(note['message'])}")
        if st.button("Mark my notifications read"):
            context.act(service.mark_notifications_read)
            st.rerun()

agent_rows = context.read(service.ticket_agents) or []
agent_names = {a["username"]: a["id"] for a in agent_rows}

with st.container(border=True):
    f1, f2, f3, f4, f5 = st.columns([2, 1, 1, 1, 1])
    search = f1.text_input("Search subject or ticket number", key="queue_search")
    status = f2.selectbox("Status", ["Open (any)", "All", *TICKET_STATUSES], key="queue_status",
                          format_func=words)
    priority = f3.selectbox("Priority", ["All", *TICKET_PRIORITIES], key="queue_priority")
    category = f4.selectbox("Category", ["All", *TICKET_CATEGORIES], key="queue_category")
    agent = f5.selectbox("Agent", ["All", *agent_names], key="queue_agent")
filters = {
    "text": search or None,
    "status": status if status in TICKET_STATUSES else None,
    "open_only": status == "Open (any)",
    "priority": None if priority == "All" else priority,
    "category": None if category == "All" else category,
    "assignee_id": agent_names.get(agent),
}


def show_queue(view: str) -> None:
    key = f"queue_page_{view}"
    page_number = st.session_state.get(key, 1)
    found = context.read(service.ticket_queue, view, page=page_number, page_size=25, now=now, **filters)
    if found is None:
        return
    if not found.total:
        st.info("No tickets match." if view == "team" else "No tickets assigned to you match these filters.")
        return
    st.caption(f"{found.total:,} tickets, soonest SLA due first")
    frame = pd.DataFrame(found.rows)
    frame["time_left"] = frame["minutes_left"].map(
        lambda m: "" if pd.isna(m) else (f"{int(m) // 60}h {int(m) % 60:02d}m" if m >= 0 else f"-{int(-m) // 60}h {int(-m) % 60:02d}m"))
    frame["status"] = frame["status"].map(words)
    table = frame[["ticket_number", "subject", "customer", "status", "priority", "category", "assignee", "sla",
                   "time_left", "next_due_at", "unread", "created_at"]]
    styled = table.style.map(lambda band: SLA_COLOURS.get(band, ""), subset=["sla"])
    # Twelve columns share the width: short dates (the year is this one's, the zone in the help) and a
    # blank for a paused ticket's next due time.
    st.dataframe(styled, hide_index=True, width="stretch", placeholder="", column_config={
        "ticket_number": "Ticket", "subject": "Subject", "customer": "Customer",
        "status": st.column_config.TextColumn("Status", width=115),
        "priority": "Priority", "category": "Category", "assignee": "Agent", "sla": "SLA",
        "time_left": "Time left", "unread": st.column_config.NumberColumn("Unread"),
        "next_due_at": st.column_config.DatetimeColumn(
            "Next due", format="D MMM HH:mm", help="UTC. Blank while the clock is paused (waiting on the customer, on hold)."),
        "created_at": st.column_config.DatetimeColumn("Created", format="D MMM", help="Day the ticket was opened (UTC)"),
    })
    st.pagination(found.pages, default=min(page_number, found.pages), key=key)
    labels = {f"{r['ticket_number']}: {r['subject']}": r["id"] for r in found.rows}
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    chosen = left.selectbox("Open a ticket", list(labels), key=f"open_{view}")
    if right.button("Open ticket", key=f"open_button_{view}", icon=":material/open_in_new:"):
        st.switch_page("pages/ticket.py", query_params={"id": str(labels[chosen])})


tab_names = ["My tickets", "Team queue"] + (["New ticket"] if can_manage else [])
tabs = st.tabs(tab_names, key="queue_tab")
with tabs[0]:
    show_queue("mine")
with tabs[1]:
    show_queue("team")

if can_manage:
    with tabs[2]:
        query = st.text_input("Find the customer (id, e-mail or name)", key="new_ticket_customer_query")
        matches = context.read(service.lookup_customers, query) if query else []
        customer = None
        if query and not matches:
            st.warning("No customer matches; try the e-mail address or the customer id.")
        elif matches:
            by_label = {m["label"]: m for m in matches}
            customer = by_label[st.selectbox("Customer", list(by_label), key="new_ticket_customer")]
        orders = context.read(service.ticket_customer_orders, customer["id"]) if customer else []
        order_labels = {"(none)": None, **{o["label"]: o["id"] for o in orders or []}}
        with st.form("new_ticket", clear_on_submit=False):
            subject = st.text_input("Subject")
            description = st.text_area("Description")
            a, b, c = st.columns(3)
            category_choice = a.selectbox("Category", TICKET_CATEGORIES, key="new_ticket_category")
            priority_choice = b.selectbox("Priority", TICKET_PRIORITIES, index=TICKET_PRIORITIES.index("normal"),
                                           key="new_ticket_priority")
            channel_choice = c.selectbox("Channel", TICKET_CHANNELS, index=TICKET_CHANNELS.index("email"))
            d, e, f = st.columns(3)
            order_choice = d.selectbox("Related order", list(order_labels))
            department = e.selectbox("Department", ["(none)", *service.DEPARTMENTS])
            assignee = f.selectbox("Assign to", ["(unassigned)", *agent_names])
            if st.form_submit_button("Create ticket", type="primary"):
                if customer is None:
                    st.error("Choose the customer first: search by id, e-mail or name above the form.")
                else:
                    created = context.act(
                        service.create_ticket, customer["id"], subject, description, category=category_choice,
                        priority=priority_choice, channel=channel_choice, order_id=order_labels[order_choice],
                        department=None if department == "(none)" else department,
                        assignee_id=agent_names.get(assignee))
                    if created is not None:
                        st.session_state["queue_flash"] = f"Ticket {created.ticket_number} created for {plain(customer['name'])}."
                        st.rerun()
