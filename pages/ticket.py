"""Ticket: conversation, reply and note forms with attachments, status and assignment, SLA clocks, CSAT."""

import pandas as pd
import streamlit as st

from crm_core import platform, service
from db.models import TICKET_CATEGORIES, TICKET_PRIORITIES
from ui import context
from ui.format import plain, words

viewer = context.require_page("tickets.view")
can_manage = platform.allowed(viewer.role, "tickets.manage")
st.title("Ticket")
if flash := st.session_state.pop("ticket_flash", None):
    st.success(flash)

# Status words short enough for their card at 1440 px ('pending customer' was cut to 'pendin…').
STATUS_SHORT = {"pending_customer": "Pending", "on_hold": "On hold"}
STATUS_HELP = {"pending_customer": "Pending customer: waiting for the customer's reply; the SLA clock is paused.",
               "on_hold": "On hold: parked by the agent; the SLA clock is paused."}
# Plain words in the clocks table (emoji show as empty boxes where the browser has no emoji font):
# capitals for the states that need someone now.
CLOCK_ICONS = {"overdue": "OVERDUE", "under 1h": "DUE <1h", "missed": "MISSED"}

# Which ticket: ?id=… when navigated to (the query parameter mirrors the picker), else the last one
# opened, else the top of the team queue.
param = st.query_params.get("id")
if param and param != st.session_state.get("ticket_mirrored"):
    try:
        st.session_state["ticket_picker"] = platform.parse_record_id(param, "The ticket id in the address")
    except platform.ValidationError as exc:
        st.error(str(exc))
if "ticket_picker" not in st.session_state:
    top = context.read(service.ticket_queue, "team", page_size=1)
    if top is not None and not top.rows:  # nothing open: show the latest ticket of any status instead
        top = context.read(service.ticket_queue, "team", open_only=False, page_size=1)
    first = st.session_state.get("ticket_id") or (top.rows[0]["id"] if top and top.rows else None)
    if first is None:
        st.info("No tickets yet. Create one on the Support queue page or import a helpdesk history with "
                "`crm import tickets`.")
        st.stop()
    st.session_state["ticket_picker"] = first
ticket_id = int(st.number_input("Ticket id", min_value=1, max_value=platform.MAX_RECORD_ID, step=1, key="ticket_picker"))
st.session_state["ticket_id"] = ticket_id
st.session_state["ticket_mirrored"] = str(ticket_id)
st.query_params["id"] = str(ticket_id)

# The version the forms were rendered with (on the previous run), so a change saved by someone else
# in between is refused instead of overwritten.
version_key = f"ticket_version_{ticket_id}"
read_version = st.session_state.get(version_key)

ticket = context.read(service.get_ticket, ticket_id)
if ticket is None:
    st.stop()
if read_version is None:
    read_version = ticket["version"]

st.subheader(f"{ticket['ticket_number']} · {plain(ticket['subject'])}")
m1, m2, m3, m4 = st.columns([1, 1, 1, 2])  # the customer's name is the longest value
m1.metric("Status", STATUS_SHORT.get(ticket["status"], words(ticket["status"])), border=True,
          help=STATUS_HELP.get(ticket["status"]))
m2.metric("Priority", ticket["priority"], border=True)
m3.metric("Agent", ticket["assignee"] or "nobody", border=True,
          help=None if ticket["assignee"] else "Not assigned: nobody has taken this ticket yet.")
m4.metric("Customer", ticket["customer"] or "–", border=True)
st.caption(f"{plain(ticket['category'])} · via {plain(ticket['channel'])} · "
           f"department {plain(ticket['department'] or '–')} · order {plain(ticket['order'] or '–')} · "
           f"SLA policy {plain(ticket['policy'] or 'none')} · "
           f"created {ticket['created_at']:%Y-%m-%d %H:%M} UTC"
           + (" · **SLA breached**" if ticket["sla_breached"] else ""))

# The clocks over the whole width: five columns do not fit beside the conversation.
st.markdown("**SLA clocks**")
if ticket["clocks"]:
    clocks = pd.DataFrame(ticket["clocks"])
    clocks["state"] = clocks["state"].map(lambda s: CLOCK_ICONS.get(s, s))
    clocks["minutes_left"] = clocks["minutes_left"].astype("Int64")
    # A stopped clock has no minutes left and a running one no done time: blank, not "None".
    st.dataframe(clocks[["clock", "state", "due_at", "minutes_left", "done_at"]], hide_index=True, width="stretch",
                 placeholder="",
                 column_config={"clock": "Clock", "state": "State",
                                "due_at": st.column_config.DatetimeColumn("Due (UTC)", format="D MMM YYYY HH:mm"),
                                "minutes_left": st.column_config.NumberColumn(
                                    "Minutes left", help="Minutes left until the clock is due; blank once it has stopped"),
                                "done_at": st.column_config.DatetimeColumn("Done (UTC)", format="D MMM YYYY HH:mm")})
else:
    st.info("No SLA policy applies to this ticket.")

left, right = st.columns([3, 2])
with right:
    if can_manage:
        agent_rows = context.read(service.ticket_agents) or []
        agent_names = {"(unassigned)": None, **{a["username"]: a["id"] for a in agent_rows}}
        current_agent = ticket["assignee"] or "(unassigned)"
        departments = ["(none)", *service.DEPARTMENTS]
        if ticket["department"] and ticket["department"] not in departments:
            departments.append(ticket["department"])
        statuses = [ticket["status"], *ticket["allowed_statuses"]]
        with st.form("ticket_update"):
            st.markdown("**Status and assignment**")
            status = st.selectbox("Status", statuses, format_func=lambda s: s.replace("_", " "))
            a, b = st.columns(2)
            priority = a.selectbox("Priority", TICKET_PRIORITIES, index=TICKET_PRIORITIES.index(ticket["priority"]))
            category = b.selectbox("Category", TICKET_CATEGORIES, index=TICKET_CATEGORIES.index(ticket["category"]))
            assignee = a.selectbox("Agent", list(agent_names),
                                   index=list(agent_names).index(current_agent) if current_agent in agent_names else 0)
            department = b.selectbox("Department", departments, index=departments.index(ticket["department"] or "(none)"))
            if st.form_submit_button("Save changes", type="primary"):
                changes = {"status": status, "priority": priority, "category": category,
                           "assignee_id": agent_names[assignee],
                           "department": None if department == "(none)" else department}
                saved = context.act(service.update_ticket, ticket_id, read_version, **changes)
                if saved is not None:
                    st.session_state["ticket_flash"] = f"{ticket['ticket_number']} saved."
                    st.rerun()

        if ticket["status"] in ("resolved", "closed"):
            with st.form("csat"):
                st.markdown("**Customer satisfaction (CSAT)**")
                st.caption(f"Current rating: {ticket['csat_rating'] or 'not rated yet'}")
                rating = st.select_slider("Rating", options=[1, 2, 3, 4, 5], value=ticket["csat_rating"] or 5)
                comment = st.text_input("Customer's comment (optional)")
                submitted = st.form_submit_button("Save CSAT")
                if submitted and context.act(service.record_csat, ticket_id, int(rating), comment or None) is not None:
                    st.session_state["ticket_flash"] = f"CSAT {int(rating)} recorded."
                    st.rerun()

with left:
    st.markdown("**Conversation**")
    if ticket["unread"] and can_manage and st.button(f"Mark {ticket['unread']} unread message(s) read"):
        context.act(service.mark_ticket_read, ticket_id)
        st.rerun()
    messages = context.read(service.ticket_conversation, ticket_id) or []
    for message in messages:
        role = "user" if message["author_kind"] == "customer" else "assistant"
        with st.chat_message(role, avatar=":material/lock:" if message["is_internal"] else None):
            who = "Customer" if role == "user" else (message["author"] or "agent")
            label = " · internal note" if message["is_internal"] else ""
            unread = " · unread" if not message["is_read"] else ""
            st.caption(f"{plain(who)}{label}{unread} · {message['created_at']:%Y-%m-%d %H:%M} UTC")
            st.text(message["body"])
            if message["attachment_name"]:
                attachment = context.read(service.read_attachment, message["id"])
                if attachment:
                    name, kind, data = attachment
                    st.download_button(f"{name} ({message['attachment_size'] / 1024:.0f} KB)", data, file_name=name,
                                       mime=kind, key=f"attachment_{message['id']}", icon=":material/attach_file:")

    if can_manage:
        with st.form("reply", clear_on_submit=True):
            kind = st.radio("Add", ["Reply to the customer", "Internal note", "Customer's message (logged)"],
                            horizontal=True)
            body = st.text_area("Message")
            limit_mb = service.MAX_ATTACHMENT_BYTES // 1024 // 1024
            upload = st.file_uploader(f"Attachment (PDF, image, text, CSV, Word or Excel; up to {limit_mb} MB)",
                                      type=[ext.lstrip(".") for ext in service.ALLOWED_ATTACHMENT_TYPES],
                                      max_upload_size=limit_mb)
            if st.form_submit_button("Send", type="primary"):
                attachment = (upload.name, upload.getvalue(), upload.type) if upload is not None else None
                added = context.act(service.add_response, ticket_id, body, internal=kind == "Internal note",
                                    from_customer=kind.startswith("Customer"), attachment=attachment)
                if added is not None:
                    st.session_state["ticket_flash"] = "Note added." if kind == "Internal note" else "Message added."
                    st.rerun()

with st.expander("History"):
    events = context.read(service.ticket_history, ticket_id) or []
    if events:
        frame = pd.DataFrame(events)
        frame["detail"] = frame["detail"].map(lambda d: ", ".join(f"{k}: {v}" for k, v in (d or {}).items() if v is not None))
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "occurred_at": st.column_config.DatetimeColumn("When (UTC)", format="YYYY-MM-DD HH:mm"),
            "event": "Event", "detail": "Detail", "by": "By"})
    else:
        st.info("No recorded changes yet.")

st.session_state[version_key] = ticket["version"]  # what the forms above were rendered with
