"""Loyalty: programme figures (tiers, liability, expiry outlook), a member's account and ledger,
manual adjustments with approval, and the programme settings."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import loyalty, platform
from db.models import LOYALTY_TIERS
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date
from ui.format import plain
from ui.tabs import keep, lazy_tabs


@shared
def tiers_chart(tiers: pd.DataFrame):
    return px.bar(tiers, x="tier", y="members", hover_data=["points"], title="Members by tier",
                  category_orders={"tier": list(LOYALTY_TIERS)}, labels={"tier": "", "members": "Members"})


@shared
def expiry_chart(outlook: pd.DataFrame, expiry_days: int):
    return px.bar(outlook, x="month", y="points", hover_data=["value"],
                  title=f"Points expiring per month (older than {expiry_days} days, FIFO)",
                  labels={"month": "", "points": "Points"})


@shared
def activity_chart(activity: pd.DataFrame):
    return px.bar(activity, x="month", y="points", color="kind",
                  title="Points by month and kind (earned, redeemed, expired, adjusted)",
                  labels={"month": "", "points": "Points", "kind": ""})


viewer = context.require_page("loyalty.view")
can_adjust = platform.allowed(viewer.role, "loyalty.adjust")
can_approve = platform.allowed(viewer.role, "loyalty.approve")
st.title("Loyalty")
as_of = show_data_date().day
if flash := st.session_state.pop("loyalty_flash", None):
    st.success(flash)


@st.cache_data(ttl=60, refresh_mode="background", max_entries=8, show_spinner=False)
def programme(url: str, as_of: dt.date, version: str) -> dict:
    """Keyed by the data version: a refresh (earning, expiry) shows at once."""
    with context.session() as s:
        return {
            "liability": loyalty.points_liability(s, viewer),
            "tiers": loyalty.tier_distribution(s, viewer),
            "outlook": loyalty.expiry_outlook(s, viewer, as_of, months=12),
            "activity": loyalty.monthly_activity(s, viewer, months=12, as_of=as_of),
        }


def saved(message: str) -> None:
    programme.clear()
    st.session_state["loyalty_flash"] = message
    st.rerun()


data = programme(str(context.engine().url), as_of, context.data_version().key)
liability = data["liability"]
c1, c2, c3, c4 = st.columns(4)
c1.metric("Members", f"{liability['members']:,}", border=True)
c2.metric("Outstanding points", f"{liability['outstanding_points']:,}", border=True)
c3.metric("Points liability", f"€{liability['liability']:,.2f}", help=f"At €{liability['point_value']} per point", border=True)
c4.metric("Points past expiry age", f"{data['outlook']['overdue']:,}", border=True,
          help="Posted by the next expiry run of the batch refresh")

tab_names = ["Programme", "Member account"] + (["Approvals"] if can_approve else [])
# Only the open tab is built and drawn; the member shown and the pages are kept meanwhile.
keep("loyalty_customer_id", "loyalty_ledger_page", "loyalty_pending_page")
tabs = lazy_tabs(tab_names, key="loyalty_tab")

if tabs[0].open:
    with tabs[0]:
        if not liability["members"]:
            st.info("No loyalty members yet.")
        else:
            left, right = st.columns(2)
            tiers = pd.DataFrame(data["tiers"])
            left.plotly_chart(tiers_chart(tiers), width="stretch")
            outlook = pd.DataFrame(data["outlook"]["months"])
            right.plotly_chart(expiry_chart(outlook, data["outlook"]["expiry_days"]), width="stretch")
            if data["outlook"].get("as_of_refresh"):
                right.caption(f"Expiry outlook as the refresh of {as_of.isoformat()} computed it "
                              f"({data['outlook']['as_of_refresh']:%Y-%m-%d %H:%M} UTC); redemptions since count at the next one.")
            if data["activity"]:
                st.plotly_chart(activity_chart(pd.DataFrame(data["activity"])), width="stretch")

if tabs[1].open:
    with tabs[1]:
        if "loyalty_customer_id" not in st.session_state:  # the first value through session state only (see keep)
            st.session_state["loyalty_customer_id"] = context.read(loyalty.first_member) or 1
        customer_id = int(st.number_input("Customer id", min_value=1, step=1, key="loyalty_customer_id"))
        summary = context.read(loyalty.account_summary, customer_id, as_of=as_of)
        if summary is not None and not summary["member"]:
            st.info(f"{plain(summary['name'] or 'This customer')} (customer {customer_id}) is not a loyalty member.")
            if can_adjust and st.button("Enrol in the programme", key="loyalty_enroll") and \
                    context.act(loyalty.enroll, customer_id) is not None:
                saved(f"Customer {customer_id} enrolled in bronze.")
        elif summary is not None:
            st.markdown(f"**{plain(summary['name'])}** · {summary['program']} · member since {summary['enrolled_at']:%Y-%m-%d} · "
                        f"{summary['status']}")
            m1, m2, m3, m4 = st.columns(4)
            m1.metric("Balance", f"{summary['balance']:,} pts", help=f"Worth {summary['balance_value']:,.2f}", border=True)
            m2.metric("Tier", summary["tier"].capitalize(), border=True)
            m3.metric("Lifetime points", f"{summary['lifetime_points']:,}", border=True)
            m4.metric("Expiring within 3 months", f"{summary['expiring_next_3_months']:,}", border=True)
            if summary["next_tier"]:
                st.caption(f"{summary['points_to_next_tier']:,} lifetime points to {summary['next_tier']}.")
            if summary["pending_adjustments"]:
                st.warning(f"{summary['pending_adjustments']} adjustment(s) wait for approval.")
            page_number = st.session_state.get("loyalty_ledger_page", 1)
            ledger = context.read(loyalty.ledger_page, customer_id, page=page_number, page_size=25)
            if ledger is not None and ledger.total:
                st.markdown("**Ledger**")
                st.dataframe(pd.DataFrame(ledger.rows), hide_index=True, width="stretch",
                             column_config={"time": st.column_config.DatetimeColumn("Time", format="YYYY-MM-DD HH:mm")})
                st.pagination(ledger.pages, default=min(page_number, ledger.pages), key="loyalty_ledger_page")
            else:
                st.info("No ledger entries yet.")
            with st.expander("Tier history"):
                st.dataframe(pd.DataFrame(summary["tier_history"]), hide_index=True, width="stretch")
            if can_adjust:
                left, right = st.columns(2)
                with left, st.form("loyalty_adjust"):
                    st.markdown("**Adjust points by hand**")
                    points = st.number_input("Points (negative to remove)", step=10, value=0, key="adjust_points")
                    reason = st.text_input("Reason (required)", key="adjust_reason")
                    if st.form_submit_button("Adjust", type="primary", key="adjust_submit"):
                        result = context.act(loyalty.adjust, customer_id, int(points), reason)
                        if result is not None and result.status == "pending":
                            saved(f"{int(points):+,} points: the adjustment waits for an approver ({result.why_pending}).")
                        elif result is not None:
                            saved(f"{int(points):+,} points posted; the balance is now {result.transaction.balance_after:,}.")
                with right, st.form("loyalty_redeem"):
                    st.markdown("**Redeem points**")
                    spend = st.number_input("Points to redeem", min_value=0, step=100, key="redeem_points")
                    what = st.text_input("For", value="Voucher", key="redeem_reason")
                    if st.form_submit_button("Redeem", key="redeem_submit"):
                        entry = context.act(loyalty.redeem, customer_id, int(spend), what)
                        if entry is not None:
                            saved(f"{int(spend):,} points redeemed; the balance is now {entry.balance_after:,}.")

if can_approve and tabs[2].open:
    with tabs[2]:
        page_number = st.session_state.get("loyalty_pending_page", 1)
        pending = context.read(loyalty.pending_adjustments, page=page_number, page_size=25)
        if pending is None or not pending.total:
            st.info("No adjustments wait for approval.")
        else:
            st.caption(f"{pending.total:,} adjustments wait for approval")
            st.dataframe(pd.DataFrame(pending.rows).drop(columns=["version"]), hide_index=True, width="stretch")
            st.pagination(pending.pages, default=min(page_number, pending.pages), key="loyalty_pending_page")
            by_id = {row["request"]: row for row in pending.rows}
            with st.form("loyalty_decide"):
                request_id = st.selectbox("Request", list(by_id), key="decide_request",
                                          format_func=lambda i: f"#{i}: {by_id[i]['points']:+,} pts for customer "
                                                                f"{by_id[i]['customer_id']} by {by_id[i]['requested_by']}")
                note = st.text_input("Note (required to reject)", key="decide_note")
                approve = st.form_submit_button("Approve", type="primary", key="decide_approve")
                reject = st.form_submit_button("Reject", key="decide_reject")
                if (approve or reject) and context.act(loyalty.decide_adjustment, request_id, bool(approve), note,
                                                       expected_version=by_id[request_id]["version"]) is not None:
                    saved(f"Request #{request_id} {'approved' if approve else 'rejected'}.")

if platform.allowed(viewer.role, "loyalty.settings"):
    with st.expander("Programme settings (admin)"):
        with context.session() as s:
            settings, version = loyalty.get_settings(s)
        with st.form("loyalty_settings"):
            st.markdown("**Tier thresholds (lifetime points) and earn multipliers**")
            thresholds, multipliers = {}, {}
            for column, tier in zip(st.columns(len(LOYALTY_TIERS)), LOYALTY_TIERS, strict=True):
                thresholds[tier] = column.number_input(f"{tier} from", min_value=0, step=100,
                                                       value=int(settings["tier_thresholds"][tier]), key=f"set_threshold_{tier}")
                multipliers[tier] = column.number_input(f"{tier} ×", min_value=0.0, max_value=10.0, step=0.05,
                                                        value=float(settings["tier_multipliers"][tier]), key=f"set_mult_{tier}")
            a, b, c, d = st.columns(4)
            per_unit = a.number_input("Points per currency unit", min_value=0.0, step=0.5,
                                      value=float(settings["points_per_currency_unit"]), key="set_per_unit")
            expiry = b.number_input("Points expire after (days)", min_value=30, max_value=3650, step=30,
                                    value=int(settings["expiry_days"]), key="set_expiry")
            point_value = c.number_input("Value of a point", min_value=0.0, step=0.001, format="%.3f",
                                         value=float(settings["point_value"]), key="set_point_value")
            approval = d.number_input("Approval needed above (points)", min_value=1, step=100,
                                      value=int(settings["approval_limit"]), key="set_approval")
            limits = {}
            for column, (role, value) in zip(st.columns(len(settings["adjust_limits"])), settings["adjust_limits"].items(),
                                             strict=True):
                limits[role] = column.number_input(f"Adjustment limit: {role}", min_value=0, step=100, value=int(value),
                                                   key=f"set_limit_{role}")
            if st.form_submit_button("Save settings", key="set_submit") and context.act(
                loyalty.save_settings,
                {"tier_thresholds": thresholds, "tier_multipliers": multipliers, "points_per_currency_unit": per_unit,
                 "expiry_days": int(expiry), "point_value": point_value, "approval_limit": int(approval),
                 "adjust_limits": limits},
                expected_version=version,
            ) is not None:
                saved("Loyalty settings saved; tiers were recomputed.")
