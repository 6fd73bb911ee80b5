"""CTA widgets shared by pages: a customer's CTAs with an "Open a CTA" form (Churn, Health, Customer 360),
and one CTA's editor (the Success workbench): details, steps, status / owner / priority / due / snooze,
close with an outcome, log a note, call, e-mail, ticket or complaint, and the history of every change."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import streamlit as st

from crm_core import platform, success
from db.models import CTA_PRIORITIES

from . import context
from .format import plain, readable, words

OUTCOME_LABELS = {"saved": "Saved", "churned": "Churned", "unreachable": "Unreachable", "not_needed": "Not needed",
                  "trigger_cleared": "Trigger cleared"}
STATUS_LABELS = {"open": "Open", "in_progress": "In progress", "snoozed": "Snoozed", "closed": "Closed"}


def customer_panel(customer_id: int, today: dt.date, opened_from: str) -> None:
    """The customer's CTAs and, for whoever works CTAs, a form to open one by hand."""
    viewer = context.signed_in()
    if not platform.allowed(viewer.role, "success.view"):
        return
    key = f"cta_{opened_from}_{customer_id}"
    if flash := st.session_state.pop(f"{key}_flash", None):
        st.success(flash)
    rows = context.read(success.customer_ctas, customer_id, today)
    if rows:
        frame = pd.DataFrame(rows)[["id", "trigger", "reason", "priority", "status", "owner", "due_on", "overdue",
                                    "outcome", "opened_on"]]
        st.dataframe(frame, hide_index=True, width="stretch", column_config={
            "id": "CTA", "trigger": "Trigger", "reason": "Reason", "priority": "Priority", "status": "Status",
            "owner": "Owner", "due_on": "Due", "overdue": st.column_config.CheckboxColumn("Overdue"),
            "outcome": "Outcome", "opened_on": "Opened"})
        st.caption("Work a CTA on the Success workbench.")
    elif rows is not None:
        st.caption("No calls to action for this customer yet.")
    if not platform.allowed(viewer.role, "success.work"):
        return
    owners = context.read(success.assignable_owners) or []
    names = {"Account owner (default)": "account_owner", **{o["username"]: o["id"] for o in owners}}
    with st.form(key, clear_on_submit=False):
        st.markdown("**Open a call to action**")
        reason = st.text_area("Reason", max_chars=2000, key=f"{key}_reason",
                              placeholder="What needs doing, and why now")
        c1, c2, c3 = st.columns(3)
        priority = c1.selectbox("Priority", ["(playbook default)", *CTA_PRIORITIES], key=f"{key}_priority")
        due = c2.date_input("Due", value=None, min_value=today, key=f"{key}_due")
        owner = c3.selectbox("Owner", list(names), key=f"{key}_owner")
        if st.form_submit_button("Open CTA", icon=":material/add_task:"):
            created = context.act(success.open_cta, customer_id, reason, today,
                                  priority=None if priority == "(playbook default)" else priority, due_on=due,
                                  owner_id=names[owner], opened_from=opened_from)
            if created is not None:
                st.session_state[f"{key}_flash"] = f"CTA #{created.id} opened, due {created.due_on.isoformat()}."
                st.rerun()


def _history(detail: dict) -> pd.DataFrame:
    def describe(entry: dict) -> str:
        after = entry["after"] or {}
        before = entry["before"] or {}
        # What changed only: a field written with the value it had is left out.
        parts = [f"{words(k)}: {before.get(k)!s} → {v!s}" if k in before else f"{words(k)}: {v!s}"
                 for k, v in after.items() if v is not None and not (k in before and before[k] == v)]
        return "; ".join(parts)
    return pd.DataFrame([{"When (UTC)": h["at"], "By": h["by"], "What": words(h["kind"]), "Change": describe(h)}
                         for h in detail["history"]])


def cta_editor(cta_id: int, today: dt.date) -> None:
    """Everything about one CTA, and the forms to work it (for whoever may)."""
    viewer = context.signed_in()
    detail = context.read(success.cta_detail, cta_id)
    if detail is None:
        return
    key = f"cta_edit_{cta_id}"
    if flash := st.session_state.pop(f"{key}_flash", None):
        st.success(flash)
    # Edits carry the version this person read: someone else's change in between is refused, not overwritten.
    seen_key = f"{key}_seen_version"
    if st.session_state.get(seen_key) is None:
        st.session_state[seen_key] = detail["version"]
    seen = st.session_state[seen_key]

    def saved(message: str | None = None) -> None:
        st.session_state[seen_key] = None
        if message:
            st.session_state[f"{key}_flash"] = message
        st.rerun()

    if seen != detail["version"]:
        st.warning("Someone changed this CTA since you opened it: reload to see their change before you edit.")
        if st.button("Reload the CTA", key=f"{key}_reload"):
            saved()
    st.markdown(f"**CTA #{detail['id']}**")
    # names, titles and reasons are user text: shown as text, never markdown
    st.text(f"{detail['title']} for {detail['customer']} (customer #{detail['customer_id']}) — "
            f"{detail['trigger_label']}\n{detail['reason']}")
    m = st.columns(5)
    m[0].metric("Status", STATUS_LABELS.get(detail["status"], detail["status"]), border=True)
    m[1].metric("Priority", detail["priority"], border=True)
    m[2].metric("Owner", detail["owner"] or "(unassigned)", border=True)
    overdue = detail["status"] != "closed" and detail["due_on"] < today
    m[3].metric("Due", f"{detail['due_on']:%d %b}", border=True, delta="overdue" if overdue else None,
                delta_color="inverse", help=f"Due on {detail['due_on'].isoformat()}")
    m[4].metric("Outcome", OUTCOME_LABELS.get(detail["outcome"] or "", "—"), border=True)
    if detail["signals"]:
        st.caption("Signals: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in detail["signals"].items()))
    closed = detail["status"] == "closed"
    owned = detail["owner_id"] in (None, viewer.id) or platform.allowed(viewer.role, "success.assign")
    may_work = platform.allowed(viewer.role, "success.work") and owned and not closed

    steps = detail["steps"]
    st.markdown("**Playbook steps**")
    if not steps:
        st.caption("No steps.")
    for index, step in enumerate(steps):
        done = step.get("done_at") is not None
        label = plain(step["title"]) + (f" (done by {step['done_by']})" if done else "")  # a checkbox label is Markdown
        ticked = st.checkbox(label, value=done, key=f"{key}_step_{index}_{detail['version']}", disabled=not may_work)
        if ticked != done and context.act(success.set_step, cta_id, index, ticked, expected_version=seen) is not None:
            saved()

    if may_work:
        owners = context.read(success.assignable_owners) or []
        owner_names = ["(unassigned)", *[o["username"] for o in owners]]
        owner_ids = {o["username"]: o["id"] for o in owners}
        left, right = st.columns(2)
        with left, st.form(f"{key}_update"):
            st.markdown("**Update**")
            status = st.selectbox("Status", list(success.OPEN_STATUSES),
                                  index=list(success.OPEN_STATUSES).index(detail["status"]),
                                  format_func=lambda s: STATUS_LABELS[s], key=f"{key}_status")
            snooze = st.date_input("Snooze until (when snoozing)", value=detail["snoozed_until"], key=f"{key}_snooze")
            priority = st.selectbox("Priority", CTA_PRIORITIES, index=list(CTA_PRIORITIES).index(detail["priority"]),
                                    key=f"{key}_priority")
            due = st.date_input("Due", value=detail["due_on"], key=f"{key}_due")
            current = detail["owner"] if detail["owner"] in owner_names else "(unassigned)"
            owner = st.selectbox("Owner", owner_names, index=owner_names.index(current), key=f"{key}_owner")
            if st.form_submit_button("Save changes"):
                changes = {"status": status, "priority": priority, "due_on": due}
                if owner != current:
                    changes["owner_id"] = owner_ids.get(owner)
                if status == "snoozed":
                    changes["snoozed_until"] = snooze
                if context.act(success.update_cta, cta_id, today, expected_version=seen, **changes) is not None:
                    saved("CTA updated.")
        with right, st.form(f"{key}_close"):
            st.markdown("**Close with an outcome**")
            outcome = st.selectbox("Outcome", list(success.PERSON_OUTCOMES), format_func=lambda o: OUTCOME_LABELS[o],
                                   key=f"{key}_outcome")
            note = st.text_area("Note", max_chars=5000, key=f"{key}_note")
            if st.form_submit_button("Close CTA") and context.act(
                    success.close_cta, cta_id, outcome, today, note, expected_version=seen) is not None:
                saved(f"CTA closed: {OUTCOME_LABELS[outcome]}.")
        with st.form(f"{key}_log", clear_on_submit=True):
            st.markdown("**Log what you did** (a call or e-mail goes on the customer's timeline too)")
            c1, c2 = st.columns([1, 3])
            kind = c1.selectbox("What", ["note", "call", "email", "ticket", "complaint"], key=f"{key}_log_kind")
            text = c2.text_input("Note, or the subject of the call / e-mail", max_chars=255, key=f"{key}_log_text")
            reference = c1.number_input("Ticket or complaint id", min_value=0, step=1, value=0, key=f"{key}_log_ref")
            body = c2.text_area("Details (optional)", max_chars=5000, key=f"{key}_log_body")
            if st.form_submit_button("Log"):
                if kind == "note":
                    logged = context.act(success.log_on_cta, cta_id, "note", note=text)
                elif kind in ("call", "email"):
                    logged = context.act(success.log_on_cta, cta_id, "communication", channel=kind, subject=text,
                                         body=body or None)
                else:
                    ref = int(reference) or None
                    logged = context.act(success.log_on_cta, cta_id, kind,
                                         **({"ticket_id": ref} if kind == "ticket" else {"complaint_id": ref}))
                if logged is not None:
                    saved("Logged on the CTA.")
    elif not closed and platform.allowed(viewer.role, "success.work"):
        st.info("This CTA belongs to someone else: ask them or an admin to reassign it to you.")

    if detail["links"]:
        st.markdown("**Logged while working it**")
        logged = pd.DataFrame(detail["links"])[["at", "by", "kind", "note", "communication_id", "ticket_id",
                                                "complaint_id"]].astype(object)
        st.dataframe(readable(logged.where(logged.notna(), ""), "kind", at="When (UTC)", communication_id="Message",
                              ticket_id="Ticket", complaint_id="Complaint"), hide_index=True, width="stretch")
    st.markdown("**History**")
    st.dataframe(_history(detail), hide_index=True, width="stretch")
