"""Referrals: the programme's figures and charts, the referrals with their checks, codes and
attribution, and the programme settings."""

import datetime as dt

import pandas as pd
import plotly.express as px
import streamlit as st

from crm_core import platform, referrals
from db.models import REFERRAL_REWARD_KINDS
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date


@shared
def months_chart(months: list[dict]):
    return px.bar(pd.DataFrame(months), x="month", y="referrals", color="status",
                  title="Referrals by month and status", labels={"month": "", "status": "Status"})


@shared
def revenue_per_customer_chart(groups: pd.DataFrame):
    return px.bar(groups, x="group", y="revenue_per_customer", title="Revenue per customer",
                  labels={"group": "", "revenue_per_customer": "Revenue"}).update_yaxes(tickprefix="€")


@shared
def retention_chart(groups: pd.DataFrame):
    return px.bar(groups, x="group", y="retention_90d", title="Ordered in the last 90 days",
                  labels={"group": "", "retention_90d": "Share of customers"}, range_y=[0, 1]).update_yaxes(tickformat=".0%")


viewer = context.require_page("referrals.view")
can_manage = platform.allowed(viewer.role, "referrals.manage")
can_settings = platform.allowed(viewer.role, "referrals.settings")
st.title("Referrals")
as_of = show_data_date().day
if flash := st.session_state.pop("referrals_flash", None):
    st.success(flash)


@st.cache_data(ttl=300, refresh_mode="background", max_entries=8, show_spinner=False)
def figures(url: str, as_of: dt.date) -> dict:
    with context.session() as s:
        return {"kpis": referrals.referral_kpis(s, viewer, as_of),
                "months": referrals.referrals_by_month(s, viewer, as_of),
                "groups": referrals.referred_vs_others(s, viewer, as_of)}


def saved(message: str) -> None:
    figures.clear()
    st.session_state["referrals_flash"] = message
    st.rerun()


try:
    data = figures(str(context.engine().url), as_of)
except platform.DomainError as exc:
    st.error(str(exc))
    st.stop()
kpis = data["kpis"]
c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Referrals", f"{kpis['referrals']:,}", help=f"from {kpis['referrers']:,} referrers", border=True)
c2.metric("Conversion", "–" if kpis["conversion"] is None else f"{kpis['conversion']:.1%}",
          help="Referred friends with a paid first order.", border=True)
c3.metric("K-factor", "–" if kpis["k_factor"] is None else f"{kpis['k_factor']:.3f}",
          help=f"Invites per customer ({kpis['invites_per_customer']:.3f}) × invite conversion.", border=True)
c4.metric("Days to first order", "–" if kpis["days_to_first_order"] is None else f"{kpis['days_to_first_order']:.1f}",
          help="Average days from a referred friend's sign-up to their first paid order.", border=True)
c5.metric("Reward points paid", f"{kpis['points'].get('paid', 0):,}",
          help=f"held {kpis['points'].get('held', 0):,} · reversed {kpis['points'].get('reversed', 0):,}; "
               f"vouchers paid €{kpis['vouchers'].get('paid', 0):,.2f} · held €{kpis['vouchers'].get('held', 0):,.2f}"
               f" · reversed €{kpis['vouchers'].get('reversed', 0):,.2f}", border=True)

tabs = st.tabs(["Programme", "Referrals", "Codes and attribution"] + (["Settings"] if can_settings else []),
               key="referrals_tab")

with tabs[0]:
    if not kpis["referrals"]:
        st.info("No referrals yet: give customers a code in the Codes and attribution tab.")
    else:
        if data["months"]:
            st.plotly_chart(months_chart(data["months"]), width="stretch")
        groups = pd.DataFrame(data["groups"])
        if not groups.empty:
            left, right = st.columns(2)
            left.plotly_chart(revenue_per_customer_chart(groups), width="stretch")
            right.plotly_chart(retention_chart(groups), width="stretch")
            st.dataframe(groups, hide_index=True, width="stretch", column_config={
                "group": "Customers", "customers": "Count",
                "revenue_per_customer": st.column_config.NumberColumn("Revenue per customer", format="€%.2f"),
                "retention_90d": st.column_config.NumberColumn(
                    "90-day retention", format="percent", help="Share of the customers who ordered in the last 90 days"),
                "clv_12m": st.column_config.NumberColumn("12-month CLV", format="€%.2f")})

with tabs[1]:
    status = st.selectbox("Status", ["All", "pending", "signed_up", "converted", "rewarded", "expired", "rejected",
                                     "in review"], key="referrals_status")
    page_number = st.session_state.get("referrals_page", 1)
    found = context.read(referrals.referral_list, None if status == "All" else status, page=page_number)
    if found is not None and found.total:
        st.caption(f"{found.total:,} referrals, newest first. A rejected referral keeps its reasons.")
        st.dataframe(pd.DataFrame(found.rows), hide_index=True, width="stretch", column_config={
            "referred_at": st.column_config.DatetimeColumn("Referred", format="YYYY-MM-DD"),
            "first_order_at": st.column_config.DatetimeColumn("First paid order", format="YYYY-MM-DD")})
        st.pagination(found.pages, default=min(page_number, found.pages), key="referrals_page")
    elif found is not None:
        st.info("No referrals match this status.")
    referral_id = st.number_input("Referral number", min_value=0, step=1, key="referrals_detail")
    if referral_id:
        detail = context.read(referrals.referral_detail, int(referral_id))
        if detail is not None:
            st.text(f"Referral {detail['id']}: customer {detail['referrer_id']} referred {detail['friend_id']} · "
                    f"{detail['status']} · check: {detail['verdict'] or 'not yet (no paid first order)'}")
            for reason in detail["reasons"]:
                st.text(f"• {reason}")
            if detail["rewards"]:
                st.dataframe(pd.DataFrame(detail["rewards"]), hide_index=True, width="stretch")

with tabs[2]:
    if not can_manage:
        st.info("Codes and attribution are managed by administrators and success managers.")
    else:
        with st.form("referral_code"):
            customer_id = st.number_input("Customer id", min_value=1, step=1, key="referral_code_customer")
            if st.form_submit_button("Show or create the code"):
                code = context.act(referrals.referral_code, int(customer_id))
                if code is not None:
                    st.session_state["referral_code_shown"] = code
        if shown := st.session_state.get("referral_code_shown"):
            st.text(f"Code {shown['code']} · link {shown['link']}")
        with st.form("referral_attribute"):
            st.markdown("**Attribute a sign-up or first order to a code**")
            a, b = st.columns(2)
            friend = a.number_input("Friend's customer id", min_value=1, step=1)
            code_text = b.text_input("Referral code", max_chars=32)
            day = a.date_input("Link used on", value=as_of, max_value=dt.date.today())
            at_time = b.time_input("at", value=dt.time(12, 0))
            if st.form_submit_button("Attribute", type="primary"):
                made = context.act(referrals.attribute, int(friend), code_text, dt.datetime.combine(day, at_time))
                if made is not None:
                    saved(f"Customer {int(friend)} is attributed to referrer {made.referrer_id} (referral {made.id}).")

if can_settings:
    with tabs[3]:
        with context.session() as s:
            settings, version = referrals.get_referral_settings(s)
        with st.form("referral_settings"):
            a, b, c = st.columns(3)
            attribution = a.selectbox("Attribution", ["first_touch", "last_touch"],
                                      index=["first_touch", "last_touch"].index(settings["attribution"]))
            window = b.number_input("Attribution window (days)", 1, 365, int(settings["attribution_window_days"]))
            returns = c.number_input("Return window before payout (days)", 0, 365, int(settings["return_window_days"]))
            kinds = list(REFERRAL_REWARD_KINDS)
            referrer_reward = a.selectbox("Referrer is rewarded with", kinds,
                                          index=kinds.index(settings["referrer_reward"]))
            friend_reward = b.selectbox("Friend is rewarded with", kinds, index=kinds.index(settings["friend_reward"]))
            voucher_days = c.number_input("A voucher reward is valid for (days)", 1, 730,
                                          int(settings["voucher_valid_days"]))
            referrer_points = a.number_input("Referrer reward (points)", 0, 100_000, int(settings["referrer_points"]))
            friend_points = b.number_input("Friend reward (points)", 0, 100_000, int(settings["friend_points"]))
            referrer_amount = a.number_input("Referrer voucher (€)", 0, 1_000, int(settings["referrer_voucher_amount"]))
            friend_amount = b.number_input("Friend voucher (€)", 0, 1_000, int(settings["friend_voucher_amount"]))
            monthly = c.number_input("Programme allowance per month (points)", 0, 100_000_000,
                                     int(settings["global_monthly_points"]))
            yearly = a.number_input("Allowance per referrer per year (points)", 0, 10_000_000,
                                    int(settings["per_referrer_yearly_points"]))
            burst = b.number_input("Referrals in a day that count as a burst", 2, 1000, int(settings["burst_referrals"]))
            crowd = c.number_input("Friends on one device or IP that need a review", 2, 1000,
                                   int(settings["shared_device_friends"]))
            link = st.text_input("Link base", value=settings["link_base"], max_chars=200)
            if st.form_submit_button("Save settings", type="primary") and context.act(
                    referrals.save_referral_settings, {
                        "attribution": attribution, "attribution_window_days": int(window),
                        "return_window_days": int(returns), "referrer_points": int(referrer_points),
                        "friend_points": int(friend_points), "global_monthly_points": int(monthly),
                        "per_referrer_yearly_points": int(yearly), "burst_referrals": int(burst),
                        "shared_device_friends": int(crowd), "link_base": link,
                        "referrer_reward": referrer_reward, "friend_reward": friend_reward,
                        "referrer_voucher_amount": int(referrer_amount), "friend_voucher_amount": int(friend_amount),
                        "voucher_valid_days": int(voucher_days)}, version) is not None:
                saved("Referral settings saved; the next refresh applies them.")
