"""Success workbench: my CTAs, the team's workload and queue, each success manager's book of business,
whether playbooks work (save rates, time to first action, effect against the holdout), and the
playbook templates (admins edit them)."""

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, success
from db.models import CTA_PRIORITIES
from ui import context
from ui.charts import shared
from ui.cta_panel import OUTCOME_LABELS, STATUS_LABELS, cta_editor
from ui.data_date import show_data_date
from ui.format import plain


@shared
def workload_chart(long: pd.DataFrame):
    return px.bar(long, x="owner", y="CTAs", color="status", title="Workload per person",
                  labels={"owner": "", "status": ""})


@shared
def revenue_at_risk_chart(frame: pd.DataFrame):
    return px.bar(frame, x="owner", y="revenue_at_risk", title="Revenue at risk per book of business",
                  labels={"owner": "", "revenue_at_risk": "12-month value at high churn risk"})


@shared
def playbook_effect_chart(measured: pd.DataFrame, horizon: int):
    chart = px.scatter(measured, x="effect", y="playbook", error_x=measured["ci_high"] - measured["effect"],
                       error_x_minus=measured["effect"] - measured["ci_low"],
                       title=f"Difference in reorder rate within {horizon} days (CTA minus holdout), 95% CI",
                       labels={"effect": "Effect (share of customers)", "playbook": ""})
    return chart.add_vline(x=0, line_dash="dot")


viewer = context.require_page("success.view")
can_work = platform.allowed(viewer.role, "success.work")
st.title("Success workbench")
if flash := st.session_state.pop("workbench_flash", None):
    st.success(flash)
today = show_data_date().day
st.caption("Calls to action (CTAs) open from the rules in the batch refresh (churn risk, health drops, detractor "
           "answers, service problems of high-value customers, expired cards before a repeat order, risk "
           "restrictions) and by hand from the Churn, Health and Customer 360 pages.")

PRIORITY_COLOURS = {"urgent": "background-color: #f8d7da; color: #842029",
                    "high": "background-color: #ffe5d0; color: #8a3b00",
                    "medium": "background-color: #fff3cd; color: #664d03", "low": ""}
QUEUE_COLUMNS = {"id": "CTA", "customer": "Customer", "trigger": "Trigger", "reason": "Reason", "priority": "Priority",
                 "status": "Status", "due_on": "Due", "overdue": st.column_config.CheckboxColumn("Overdue"),
                 "owner": "Owner", "outcome": "Outcome", "opened_on": "Opened"}


@st.cache_data(ttl=60, refresh_mode="background", max_entries=16, show_spinner="Aggregating…")
def portfolio_figures(url: str, day, horizon: int) -> dict:
    """Books of business and results: heavier aggregates, cached a minute (queues are read live)."""
    with context.session() as s:
        rates = success.save_rates_by(s, viewer, day, ("playbook", "owner"), horizon_days=horizon)
        return {"books": success.book_of_business(s, viewer, day),
                "by_playbook": rates["playbook"], "by_person": rates["owner"],
                "effects": success.playbook_effects(s, viewer, day, horizon_days=horizon)}


def queue_table(found: platform.Page, key: str, empty: str) -> None:
    if not found.total:
        st.info(empty)
        return
    frame = pd.DataFrame(found.rows)
    frame["status"] = frame["status"].map(STATUS_LABELS)
    frame["outcome"] = frame["outcome"].map(lambda o: OUTCOME_LABELS.get(o, "") if o else "")
    shown = frame[list(QUEUE_COLUMNS)]
    event = st.dataframe(shown.style.map(lambda p: PRIORITY_COLOURS.get(p, ""), subset=["priority"]),
                         hide_index=True, width="stretch", column_config=QUEUE_COLUMNS, on_select="rerun",
                         selection_mode="single-row", key=f"{key}_table")
    picked = event.selection.rows if event else []
    if picked and st.session_state.get(f"{key}_picked") != int(frame.iloc[picked[0]]["id"]):
        # a newly selected row opens that CTA below (typing another number still works)
        st.session_state[f"{key}_picked"] = st.session_state["cta_pick"] = int(frame.iloc[picked[0]]["id"])
    st.caption(f"{found.total:,} CTAs · {int(frame['overdue'].sum())} overdue on this page · select a row to work it "
               "below")
    st.pagination(found.pages, default=min(st.session_state.get(key, 1), found.pages), key=key)


tab_names = (["My CTAs"] if can_work else []) + ["Team", "Portfolios", "Results", "Playbooks"]
tabs = dict(zip(tab_names, st.tabs(tab_names, key="workbench_tab"), strict=True))

if can_work:
    with tabs["My CTAs"]:
        counts = {view: context.read(success.my_ctas, today, view=view, page_size=1) for view in ("active", "due")}
        c1, c2 = st.columns(2)
        c1.metric("My open CTAs", f"{counts['active'].total:,}" if counts["active"] else "–", border=True)
        c2.metric("Due today or overdue", f"{counts['due'].total:,}" if counts["due"] else "–", border=True)
        view = st.segmented_control("Show", ["active", "due", "snoozed", "closed"], default="active",
                                    format_func={"active": "Open", "due": "Due or overdue", "snoozed": "Snoozed",
                                                 "closed": "Closed"}.get, key="my_view") or "active"
        mine = context.read(success.my_ctas, today, view=view, page=st.session_state.get("my_page", 1), page_size=25)
        if mine is not None:
            queue_table(mine, "my_page", "Nothing here: no CTAs of yours in this view.")

with tabs["Team"]:
    workload = context.read(success.team_workload, today)
    if workload:
        frame = pd.DataFrame(workload)
        long = frame.melt(id_vars=["owner"], value_vars=["open", "in_progress", "snoozed"], var_name="status",
                          value_name="CTAs")
        long["status"] = long["status"].map(STATUS_LABELS)
        st.plotly_chart(workload_chart(long), width="stretch")
        st.dataframe(frame.drop(columns=["owner_id"]), hide_index=True, width="stretch", column_config={
            "owner": "Owner", "open": "Open", "in_progress": "In progress", "snoozed": "Snoozed",
            "overdue": "Overdue", "due_7_days": "Due in 7 days", "closed_30_days": "Closed (30 days)",
            "saved_30_days": "Saved (30 days)"})
    elif workload is not None:
        st.info("No CTAs yet: the batch refresh opens them from the rules, or open one by hand on the Churn, "
                "Health or Customer 360 page.")
    owners = context.read(success.assignable_owners) or []
    owner_filter = {"Everyone": None, "(unassigned)": success.UNASSIGNED, **{o["username"]: o["id"] for o in owners}}
    f1, f2, f3 = st.columns(3)
    who = f1.selectbox("Owner", list(owner_filter), key="team_owner")
    trigger = f2.selectbox("Trigger", ["All", *success.TRIGGER_LABELS], key="team_trigger",
                           format_func=lambda t: t if t == "All" else success.TRIGGER_LABELS[t])
    team_view = f3.selectbox("Show", ["active", "due", "snoozed", "closed"], key="team_view",
                             format_func={"active": "Open", "due": "Due or overdue", "snoozed": "Snoozed",
                                          "closed": "Closed"}.get)
    if platform.allowed(viewer.role, "success.assign") and owners:
        with st.expander("Reassign a person's open CTAs", icon=":material/swap_horiz:"), st.form("reassign_all"):
            r1, r2 = st.columns(2)
            source = r1.selectbox("From", ["(unassigned)", *[o["username"] for o in owners]], key="reassign_from")
            target = r2.selectbox("To", [o["username"] for o in owners], key="reassign_to")
            ids = {o["username"]: o["id"] for o in owners}
            if st.form_submit_button("Reassign"):
                moved = context.act(success.reassign_ctas, ids.get(source), ids[target])
                if moved is not None:  # drawn again, so the workload above shows the move
                    st.session_state["workbench_flash"] = f"{moved:,} CTAs moved from {source} to {target}."
                    st.rerun()
    team = context.read(success.team_ctas, today, view=team_view, owner_id=owner_filter[who],
                        trigger=None if trigger == "All" else trigger, page=st.session_state.get("team_page", 1),
                        page_size=25)
    if team is not None:
        queue_table(team, "team_page", "No CTAs match.")

horizon = st.session_state.setdefault("results_h", 90)
figures = portfolio_figures(str(context.engine().url), today, horizon)

with tabs["Portfolios"]:
    books = figures["books"]
    if books:
        frame = pd.DataFrame(books)
        st.plotly_chart(revenue_at_risk_chart(frame), width="stretch")
        st.dataframe(frame.drop(columns=["owner_id"]), hide_index=True, width="stretch", column_config={
            "owner": "Success manager", "accounts": "Accounts", "accounts_at_risk": "At high churn risk",
            "revenue_at_risk": st.column_config.NumberColumn("Revenue at risk", format="%.0f"),
            "avg_health": st.column_config.NumberColumn("Avg health", format="%.1f"), "ctas_open": "CTAs open",
            **{f"closed_{o}": f"Closed: {label}" for o, label in OUTCOME_LABELS.items()}})
        st.caption("Accounts are the customers a success manager owns (their account manager); health is the latest "
                   "score of live accounts; revenue at risk is 12-month lifetime value (else revenue so far) of "
                   "accounts at high or critical churn risk.")
    elif books is not None:
        st.info("No books of business yet: no customer has an account manager and no CTA has an owner.")

with tabs["Results"]:
    st.select_slider("Horizon (days after the CTA opened)", [30, 60, 90, 180], key="results_h")
    by_playbook, by_person = figures["by_playbook"], figures["by_person"]
    st.caption("Save rate = CTAs closed as saved whose customer ordered again within the horizon, over the CTAs "
               "closed as saved, churned or unreachable. A save counts as soon as the customer reorders; one "
               "without a reorder yet whose horizon has not passed is pending and left out of the rate until it "
               "does. Time to first action = hours from opening to the first thing a person did on the CTA.")
    for title, rows in (("By playbook", by_playbook), ("By person", by_person)):
        st.subheader(title)
        if rows:
            frame = pd.DataFrame(rows).drop(columns=["key"])
            rate_first = ["name", "detail", "save_rate", "pending_saves"]
            frame = frame[rate_first + [c for c in frame.columns if c not in rate_first]]
            st.dataframe(frame, hide_index=True, width="stretch", column_config={
                "name": "Playbook" if title == "By playbook" else "Owner", "detail": "",
                "save_rate": st.column_config.ProgressColumn("Save rate", min_value=0, max_value=1, format="percent"),
                "pending_saves": st.column_config.NumberColumn(
                    "Pending saves", help="Closed as saved, no reorder yet, horizon not passed: not in the rate"),
                "median_hours_to_first_action": st.column_config.NumberColumn("Median hours to first action",
                                                                              format="%.1f")})
        elif rows is not None:
            st.info("No CTAs yet.")
    st.subheader("Playbook effect against the holdout")
    effects = figures["effects"]
    if effects:
        frame = pd.DataFrame(effects)
        measured = frame[frame["effect"].notna()]
        if not measured.empty:
            st.plotly_chart(playbook_effect_chart(measured, horizon), width="stretch")
        st.dataframe(frame.drop(columns=["playbook_id"]), hide_index=True, width="stretch")
        st.caption("A rule CTA's playbook is compared with the triggered accounts held out at random (the "
                   "playbook's holdout share): both only once the whole horizon has passed; `pending` are still "
                   "inside it.")
    elif effects is not None:
        st.info("No rule has fired yet, so there is nothing to compare.")

with tabs["Playbooks"]:
    playbooks = context.read(success.list_playbooks) or []
    for playbook in playbooks:
        with st.expander(f"{plain(playbook['name'])} — {playbook['trigger_label']}"
                         + ("" if playbook["is_active"] else " (off)")):
            if platform.allowed(viewer.role, "success.playbooks"):
                with st.form(f"playbook_{playbook['trigger']}"):
                    name = st.text_input("Name", value=playbook["name"], max_chars=120)
                    description = st.text_area("Description", value=playbook["description"], max_chars=2000)
                    steps = st.text_area("Steps (one a line)", value="\n".join(playbook["steps"]))
                    c1, c2, c3, c4 = st.columns(4)
                    priority = c1.selectbox("Priority", CTA_PRIORITIES,
                                            index=list(CTA_PRIORITIES).index(playbook["priority"]))
                    due_days = c2.number_input("Days to due", min_value=0, max_value=365, value=playbook["due_days"])
                    holdout = c3.number_input("Holdout share", min_value=0.0, max_value=0.5, step=0.05,
                                              value=float(playbook["holdout_share"]))
                    active = c4.checkbox("Rule opens CTAs", value=playbook["is_active"])
                    if st.form_submit_button("Save playbook"):
                        context.act(success.save_playbook, playbook["trigger"], name=name, description=description,
                                    steps=steps, priority=priority, due_days=int(due_days),
                                    holdout_share=float(holdout), is_active=active,
                                    expected_version=playbook["version"],
                                    success="Playbook saved; CTAs opened from now on use it.")
            else:
                st.text(playbook["description"])
                for number, step in enumerate(playbook["steps"], start=1):
                    st.text(f"{number}. {step}")
                st.caption(f"Priority {playbook['priority']}, due in {playbook['due_days']} days, "
                           f"{playbook['holdout_share']:.0%} held out for comparison.")

st.divider()
st.subheader("Work a CTA")
st.session_state.setdefault("cta_pick", None)  # empty until a row is selected or a number typed: no CTA is 0
chosen = st.number_input("CTA number", min_value=1, step=1, key="cta_pick", placeholder="Select a row or type a number",
                         help="Select a row in the tables above, or type the number from their CTA column.")
if chosen:
    cta_editor(int(chosen), today)
else:
    st.caption("Enter a CTA number from the tables above to see its steps and history and to work it.")
