"""SLA: % of targets met, breaches by priority, agent and category, weekly trend, breaching soon, NPS and CSAT;
for admins the policy and business-calendar editors."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, service
from db.models import LOYALTY_TIERS, TICKET_CATEGORIES, TICKET_PRIORITIES
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date

TREND_SERIES = {"pct_met": "All targets", "first_response_pct": "First response", "resolution_pct": "Resolution"}


def in_priority_order(rows: list[dict], key: str = "key") -> list[dict]:
    """Groups by priority from the least to the most severe, as the app lists priorities, not alphabetically."""
    rank = {p: i for i, p in enumerate(TICKET_PRIORITIES)}
    return sorted(rows, key=lambda r: rank.get(r[key], len(rank)))


@shared
def weekly_trend_chart(frame: pd.DataFrame):
    return px.line(frame.rename(columns=TREND_SERIES), x="week", y=list(TREND_SERIES.values()), markers=True,
                   title="Targets met by week of ticket creation (%)",
                   labels={"week": "Week starting", "value": "% met", "variable": ""})


@shared
def targets_met_chart(rows: list[dict], title: str):
    return px.bar(pd.DataFrame(rows), x="key", y="pct_met", hover_data=["targets", "met"],
                  title=f"Targets met {title} (%)", labels={"key": "", "pct_met": "% met"}, range_y=[0, 100])


@shared
def breaches_chart(frame: pd.DataFrame, by: str):
    return px.bar(frame, x=by, y="breached", hover_data=["tickets", "breached_pct"],
                  title=f"Breached tickets by {by}", labels={by: "", "breached": "Tickets"})


@shared
def nps_trend_chart(frame: pd.DataFrame):
    return px.bar(frame, x="month", y="nps", hover_data=["responses", "promoters", "detractors"],
                  title="NPS by month (% promoters − % detractors)", labels={"month": "", "nps": "NPS"})


viewer = context.require_page("sla.view")
can_manage = platform.allowed(viewer.role, "sla.manage")
can_see_tickets = platform.allowed(viewer.role, "tickets.view")
can_record = platform.allowed(viewer.role, "surveys.record")
st.title("SLA")
if flash := st.session_state.pop("sla_flash", None):
    st.success(flash)

# The current time (or late on the data date for historical data), to the minute: the figures below are
# cached per minute, so a widget interaction within it reads them from memory.
now = show_data_date().run_time().replace(second=0, microsecond=0)
weeks = st.segmented_control("Period", [4, 12, 26, 52], default=12, format_func=lambda w: f"{w} weeks",
                             key="sla_weeks") or 12
start = now - dt.timedelta(weeks=weeks)
st.caption(f"Figures as of {now:%Y-%m-%d %H:%M} UTC, read again each minute.")

if can_manage:
    with st.expander("Breach detection"):
        st.caption("Records missed targets, flags the tickets and escalates each newly breached ticket once "
                   "(priority one level up, owner notified). The batch refresh runs the same check.")
        if st.button("Check SLAs now", icon=":material/alarm:"):
            result = context.act(service.check_sla_now, now=now)
            if result is not None:
                st.success(f"{result['tickets_breached']:,} newly breached tickets, {result['escalated']:,} escalated.")

summary = context.cached(service.sla_summary, now, start=start)
nps = context.cached(service.nps_summary, start=start)
csat = context.cached(service.csat_summary, start=start)
if summary is None:
    st.stop()
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Targets met", "–" if summary["pct_met"] is None else f"{summary['pct_met']:.1f}%",
          help=f"{summary['targets']:,} first-response and resolution targets reached or past due", border=True)
c2.metric("Open in breach", f"{summary['open_breached']:,}", border=True,
          help="Open tickets that have missed a target, first response or resolution. A ticket answered late "
               "stays in breach while its resolution time still runs, so this can be more than the Support "
               "queue's overdue tickets, whose next target has passed.")
c3.metric("Breaching within 2 hours", f"{summary['breaching_soon']:,}", border=True)
period = f"last {weeks} weeks, since {start:%Y-%m-%d}"
c4.metric(f"NPS, {weeks} wk", "–" if not nps or nps["nps"] is None else f"{nps['nps']:+.0f}",
          help=(f"{nps['responses'] if nps else 0:,} answers in the {period} (the Period above). Other pages that "
                "show an NPS, such as the Executive overview, cover their own period, so the figures can differ."),
          border=True)
c5.metric(f"CSAT, {weeks} wk", "–" if not csat or csat["average"] is None else f"{csat['average']:.2f} / 5",
          help=(f"{csat['satisfied_pct']}% satisfied (4-5) of {csat['responses']:,} answers in the {period}"
                if csat and csat["responses"] else f"No answers in the {period}"),
          border=True)

tab_overview, tab_breaches, tab_soon, tab_surveys = st.tabs(["Targets met", "Breaches", "Breaching soon", "NPS and CSAT"],
                                                                       key="sla_tab")

with tab_overview:
    trend = context.cached(service.sla_weekly_trend, now, weeks=weeks) or []
    if not trend:
        st.info("No tickets in this period.")
    else:
        frame = pd.DataFrame(trend)
        frame["week"] = pd.to_datetime(frame["week"])
        # The week in progress counts only the targets already due (quick answers, quick resolutions), so
        # it reads higher than a finished week: it is left out, as the monthly charts leave out a month.
        in_progress = frame["week"] + pd.Timedelta(days=7) > pd.Timestamp(now)
        if in_progress.any() and not in_progress.all():
            st.caption(f"The week from {frame['week'][in_progress].iloc[0]:%d %b} is in progress and left out: "
                       "only its targets already due count so far.")
            frame = frame[~in_progress]
        st.plotly_chart(weekly_trend_chart(frame), width="stretch")
    left, right = st.columns(2)
    for column, by, title in ((left, "priority", "by priority"), (right, "agent", "by agent")):
        rows = context.cached(service.sla_targets_met, now, by=by, start=start) or []
        rows = [r for r in rows if r["targets"]]
        if by == "priority":
            rows = in_priority_order(rows)
        if rows:
            column.plotly_chart(targets_met_chart(rows, title), width="stretch")
        unassigned = next((r for r in rows if r["key"] == "(unassigned)"), None)
        if unassigned:
            column.caption(f"(unassigned) is the tickets no agent has taken: {unassigned['targets']:,} targets, "
                           f"{unassigned['pct_met']:.0f}% met{' (hence no bar)' if not unassigned['pct_met'] else ''}.")
    by_category = context.cached(service.sla_targets_met, now, by="category", start=start) or []
    if by_category:
        st.dataframe(pd.DataFrame(by_category), hide_index=True, width="stretch", column_config={
            "key": "Category", "targets": "Targets", "met": "Met", "pct_met": "% met",
            "first_response_pct": "First response % met", "resolution_pct": "Resolution % met"})

with tab_breaches:
    cols = st.columns(3)
    for column, by in zip(cols, ("priority", "agent", "category"), strict=True):
        rows = context.cached(service.sla_breaches_by, by, start=start) or []
        if by == "priority":
            rows = in_priority_order(rows, key="priority")
        if rows:
            frame = pd.DataFrame(rows)
            column.plotly_chart(breaches_chart(frame, by), width="stretch")
        else:
            column.info(f"No tickets to group by {by} in this period.")

with tab_soon:
    window = st.select_slider("Due within", options=[30, 60, 120, 240, 480, 1440], value=240,
                              format_func=lambda m: f"{m // 60} h" if m >= 60 else f"{m} min")
    if not can_see_tickets:
        st.info("The ticket list is for support staff.")
    else:
        page_number = st.session_state.get("soon_page", 1)
        soon = context.cached(service.breaching_soon, now, within_minutes=window, page=page_number, page_size=25)
        if soon is None or not soon.total:
            st.info("Nothing is due in this window.")
        else:
            st.caption(f"{soon.total:,} tickets due within the window, soonest first")
            st.dataframe(pd.DataFrame(soon.rows), hide_index=True, width="stretch", column_config={
                "id": None, "ticket_number": "Ticket", "subject": "Subject", "priority": "Priority",
                "status": "Status", "category": "Category", "assignee": "Agent",
                "next_due_at": st.column_config.DatetimeColumn("Due (UTC)", format="YYYY-MM-DD HH:mm"),
                "minutes_left": "Minutes left"})
            st.pagination(soon.pages, default=min(page_number, soon.pages), key="soon_page")

with tab_surveys:
    trend = context.cached(service.nps_trend, now, months=12) or []
    if trend:
        frame = pd.DataFrame(trend)
        st.plotly_chart(nps_trend_chart(frame), width="stretch")
    else:
        st.info("No NPS answers in the last 12 months.")
    if can_record:
        with st.form("survey_answer", clear_on_submit=True):
            st.markdown("**Record a survey answer**")
            st.caption("A detractor (NPS 0-6) opens a follow-up ticket for the customer.")
            a, b, c = st.columns(3)
            customer_id = a.number_input("Customer id", min_value=1, step=1)
            survey_type = b.selectbox("Survey", ["nps", "csat"], format_func=str.upper)
            score = c.number_input("Score (NPS 0-10, CSAT 1-5)", min_value=0, max_value=10, step=1, value=9)
            comment = st.text_input("Comment (optional)")
            if st.form_submit_button("Save answer"):
                answer = context.act(service.record_survey_answer, int(customer_id), survey_type, int(score), comment or None)
                if answer is not None:
                    follow = f" Follow-up ticket #{answer.follow_up_ticket_id} opened." if answer.follow_up_ticket_id else ""
                    st.session_state["sla_flash"] = f"{survey_type.upper()} answer saved.{follow}"
                    st.rerun()

if can_manage:
    with st.expander("SLA policies (admin)"):
        policies = context.read(service.list_sla_policies) or []
        if policies:
            st.dataframe(pd.DataFrame(policies).drop(columns=["version"]), hide_index=True, width="stretch")
        options = {"(new policy)": None, **{p["name"]: p for p in policies}}
        chosen = options[st.selectbox("Edit", list(options), key="policy_pick")]
        with st.form("policy"):
            name = st.text_input("Name", value=chosen["name"] if chosen else "")
            a, b, c = st.columns(3)
            priority = a.selectbox("Priority", TICKET_PRIORITIES,
                                   index=TICKET_PRIORITIES.index(chosen["priority"]) if chosen else 1)
            categories = ["(any)", *TICKET_CATEGORIES]
            category = b.selectbox("Category", categories,
                                   index=categories.index(chosen["category"] or "(any)") if chosen else 0)
            tiers = ["(any)", *LOYALTY_TIERS]
            tier = c.selectbox("Loyalty tier", tiers, index=tiers.index(chosen["loyalty_tier"] or "(any)") if chosen else 0)
            first = a.number_input("First response (business minutes)", min_value=0, step=15,
                                   value=chosen["first_response_minutes"] if chosen else 60)
            nxt = b.number_input("Next response (business minutes, 0 = none)", min_value=0, step=15,
                                 value=(chosen["next_response_minutes"] or 0) if chosen else 120)
            resolution = c.number_input("Resolution (business minutes)", min_value=0, step=60,
                                        value=chosen["resolution_minutes"] if chosen else 960)
            active = st.checkbox("Active", value=chosen["is_active"] if chosen else True)
            if st.form_submit_button("Save policy", type="primary"):
                fields = {"name": name, "priority": priority, "category": None if category == "(any)" else category,
                          "loyalty_tier": None if tier == "(any)" else tier, "first_response_minutes": int(first),
                          "next_response_minutes": int(nxt) or None, "resolution_minutes": int(resolution),
                          "is_active": active}
                if chosen is None:
                    saved = context.act(service.create_sla_policy, **fields)
                else:
                    saved = context.act(service.update_sla_policy, chosen["id"], chosen["version"], **fields)
                if saved is not None:
                    st.session_state["sla_flash"] = f"Policy {saved.name} saved; open tickets were recomputed."
                    st.rerun()

    with st.expander("Business calendar (admin)"):
        with context.session() as s:
            calendar, calendar_version = service.get_business_calendar(s)
        with st.form("calendar"):
            a, b, c = st.columns(3)
            timezone = a.text_input("Time zone (IANA)", value=calendar.timezone)
            country = b.text_input("Public holidays of country", value=calendar.country or "")
            subdivision = c.text_input("Region (optional)", value=calendar.subdivision or "")
            st.caption("Working periods per weekday as HH:MM-HH:MM, comma-separated; an end before the start runs "
                       "overnight. Leave a day empty when closed.")
            periods = {}
            day_columns = st.columns(7)
            for weekday, column in enumerate(day_columns):
                periods[weekday] = column.text_input(service.WEEKDAY_NAMES[weekday],
                                                     value=service.periods_to_text(calendar, weekday))
            extra = st.text_area("Extra closed days (YYYY-MM-DD, one per line)",
                                 value="\n".join(d.isoformat() for d in sorted(calendar.holidays)))
            if st.form_submit_button("Save calendar", type="primary"):
                try:
                    data = service.calendar_from_form(timezone, country, subdivision, periods, extra)
                except platform.ValidationError as exc:
                    st.error(str(exc))
                else:
                    if context.act(service.save_business_calendar, data, calendar_version) is not None:
                        st.session_state["sla_flash"] = "Business calendar saved; every policy uses it."
                        st.rerun()
