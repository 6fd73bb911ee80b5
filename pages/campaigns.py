"""Campaigns: win-back campaigns with a randomised holdout, their measured results and uplift targeting."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from crm_core import campaigns, platform, segmentation
from db.models import HEALTH_LEVELS, RISK_LEVELS
from ml import uplift, uplift_reports
from ui import context
from ui.charts import shared
from ui.data_date import day_month_year, show_data_date
from ui.format import compact_euros, plain

PAGE_SIZE = 25


@shared
def exclusions_chart(exclusions: dict):
    excluded = pd.DataFrame({"reason": list(exclusions), "customers": list(exclusions.values())})
    figure = go.Figure(go.Bar(x=excluded["customers"], y=excluded["reason"], orientation="h"))
    return figure.update_layout(title="Qualifying but not contacted, by reason", height=80 + 40 * len(excluded),
                                margin={"l": 10, "r": 10, "t": 40, "b": 10}, yaxis={"autorange": "reversed"})


@shared
def difference_chart(title: str, measures: list[tuple[str, dict]], scale: float, unit: str) -> go.Figure:
    """Treatment − control with its 95% interval, one row per measure."""
    figure = go.Figure()
    for label, d in measures:
        figure.add_trace(go.Scatter(
            x=[d["estimate"] * scale], y=[label], mode="markers", marker={"size": 12}, name=label,
            error_x={"type": "data", "symmetric": False, "array": [(d["high"] - d["estimate"]) * scale],
                     "arrayminus": [(d["estimate"] - d["low"]) * scale]},
            hovertemplate=f"%{{x:.2f}} {unit}<extra>{label}</extra>"))
    figure.add_vline(x=0, line_dash="dot")
    figure.update_layout(title=title, showlegend=False, height=120 + 50 * len(measures), xaxis_title=unit,
                         margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return figure


@shared
def conversion_curve_chart(curve: list[dict]):
    frame = pd.DataFrame(curve)
    figure = go.Figure([go.Scatter(x=g["day"], y=g["converted_share"] * 100, mode="lines", name=name)
                        for name, g in frame.groupby("group")])
    return figure.update_layout(title="Converted by day after the send (%)", height=300,
                                xaxis_title="days after the send", yaxis_title="% converted",
                                margin={"l": 10, "r": 10, "t": 40, "b": 10})


@shared
def qini_chart(qini_curve: dict, qini_curve_churn: dict | None, churn_basis: str | None):
    figure = go.Figure()
    churn_label = "Days since the last order" if (churn_basis or "").startswith("days") else "Churn risk"
    curves = (("Uplift model", qini_curve["qini"]),
              (churn_label, (qini_curve_churn or {}).get("qini")), ("Random", qini_curve["random"]))
    for label, values in curves:
        if values:
            figure.add_trace(go.Scatter(x=[s * 100 for s in qini_curve["share"]],
                                        y=[v * 100 for v in values], mode="lines", name=label))
    return figure.update_layout(title="Qini curve on held-out customers", xaxis_title="% of customers targeted",
                                yaxis_title="incremental conversions (% of treated)", height=360,
                                margin={"l": 10, "r": 10, "t": 40, "b": 10})


viewer = context.require_page("campaigns.view")
can_manage = platform.allowed(viewer.role, "campaigns.manage")
can_train = platform.allowed(viewer.role, "campaigns.models")

st.title("Campaigns")
st.caption(
    "Win-back campaigns: customers who meet a trigger and may be contacted (consent, preference centre, "
    "frequency cap) are enrolled when the campaign launches and in every batch refresh after, each once. "
    "A random holdout is never contacted, so results compare like with like: a conversion is an order after "
    "the send and within the attribution window."
)
data = show_data_date()
# To the minute: the moment the figures stand at, and the key their cache is kept under.
at = data.run_time().replace(second=0, microsecond=0)
url = str(context.engine().url)


@st.cache_data(ttl=60, refresh_mode="background", max_entries=32, show_spinner=False)
def results_for(url: str, campaign_id: int, moment) -> tuple[dict, list[dict]]:
    """One campaign's results and conversion curve (aggregated per group in the database)."""
    with context.session() as s:
        return (campaigns.campaign_results(s, viewer, campaign_id, at=moment),
                campaigns.conversion_curve(s, viewer, campaign_id, at=moment))


def changed(message: str) -> None:
    """After a change: figures are read afresh, and the message shows after the rerun."""
    results_for.clear()
    st.session_state["campaigns_flash"] = message
    st.rerun()

if flash := st.session_state.pop("campaigns_flash", None):
    st.success(flash)

rows = context.read(campaigns.list_campaigns) or []
c1, c2, c3, c4 = st.columns(4)
c1.metric("Campaigns", f"{len(rows):,}", border=True)
c2.metric("Running", f"{sum(r['status'] == 'running' for r in rows):,}", border=True)
c3.metric("Customers enrolled", f"{sum(r['targets'] for r in rows):,}", border=True)
c4.metric("Held out (control)", f"{sum(r['control'] for r in rows):,}", border=True)

tab_names = ["Campaigns", *(["New campaign"] if can_manage else []), "Results", "Uplift model"]
tabs = dict(zip(tab_names, st.tabs(tab_names, key="campaigns_tab"), strict=True))


def _percent(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}%}"


def _points(value: float | None) -> str:
    if value is None:
        return "–"
    shown = round(value * 100, 1)
    return f"{shown:+.1f} pp" if shown else "0.0 pp"  # no "-0.0 pp" (nor "+0.0") for a difference that rounds to nothing


def _signed_euros(value: float) -> str:
    return f"{'−' if value < 0 else '+'}€{abs(value):,.2f}"


with tabs["Campaigns"]:
    if not rows:
        st.info("No campaigns yet." + (" Build one under **New campaign**." if can_manage else ""))
    else:
        pages = max(1, -(-len(rows) // PAGE_SIZE))
        page = st.number_input("Page", 1, pages, 1, key="campaigns_page") if pages > 1 else 1
        shown = rows[(page - 1) * PAGE_SIZE: page * PAGE_SIZE]
        table = pd.DataFrame([{
            "Campaign": r["name"], "Status": r["status"], "Trigger": r["trigger"], "Channel": r["channel"],
            "Offer": r["offer"], "Enrolled": r["targets"], "Treatment": r["treatment"], "Control": r["control"],
            "Holdout": f"{r['control_share']:.0%}",
            "Targeting": "everyone" if r["uplift_share"] is None else f"top {r['uplift_share']:.0%} by uplift",
            "Launched": r["launched_at"],
        } for r in shown])
        # A day is enough for the launch (a time of day to the second pushed it out of view); a draft's is blank.
        st.dataframe(table, hide_index=True, width="stretch", placeholder="", column_config={
            "Launched": st.column_config.DatetimeColumn("Launched", format="YYYY-MM-DD", help="Day of launch (UTC)")})
        if pages > 1:
            st.caption(f"Page {page} of {pages}.")
        actionable = [r for r in rows if r["status"] in ("draft", "running")]
        if can_manage and actionable:
            st.subheader("Launch, finish or cancel")
            choice = st.selectbox("Campaign", actionable, format_func=lambda r: f"{r['name']} ({r['status']})",
                                  key="campaign_action_choice")
            if choice["status"] == "draft":
                detail = context.read(campaigns.get_campaign, choice["id"]) or {}
                st.caption(f"Trigger: {plain(detail.get('trigger_text', ''))}. Offer: {plain(detail.get('offer_text', ''))} by "
                           f"{detail.get('channel', '')}. Holdout {detail.get('control_share', 0):.0%}, attribution "
                           f"window {detail.get('attribution_days', 0)} days. Launching sends the message now to "
                           "everyone in the treatment group.")
                left, right = st.columns(2)
                if left.button("Launch campaign", type="primary", icon=":material/send:", key="launch_campaign"):
                    scorer = context.read(lambda s, v: uplift.active_scorer(s)) if detail.get("uplift_share") else None
                    with st.spinner("Enrolling the audience, drawing the holdout and logging the sends…"):
                        counts = context.act(campaigns.launch_campaign, choice["id"], at=at, scorer=scorer,
                                             version=detail.get("version"))
                    if counts is not None:
                        changed(f"Launched {plain(choice['name'])}: {counts['enrolled']:,} customers enrolled, "
                                f"{counts['sent']:,} messages sent, {counts['control']:,} held out.")
                if right.button("Cancel draft", key="cancel_draft") and context.act(
                        campaigns.cancel_campaign, choice["id"]) is not None:
                    changed(f"Cancelled {plain(choice['name'])}.")
            else:
                left, right = st.columns(2)
                if left.button("Finish (stop enrolling)", icon=":material/flag:", key="finish_campaign") and \
                        context.act(campaigns.finish_campaign, choice["id"], at=at) is not None:
                    changed(f"Finished {plain(choice['name'])}: no one else is enrolled; conversions keep counting until "
                            "each customer's attribution window closes.")
                if right.button("Cancel campaign", key="cancel_running") and context.act(
                        campaigns.cancel_campaign, choice["id"]) is not None:
                    changed(f"Cancelled {plain(choice['name'])}.")


def _show_preview(preview: dict) -> None:
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Qualifying", f"{preview['qualifying']:,}", border=True)
    m2.metric("Reachable", f"{preview['reachable']:,}", border=True)
    m3.metric("Value at stake", compact_euros(preview["value_at_stake"]), border=True,
              help="Sum of churn probability × 12-month CLV of the reachable customers "
                   f"({preview['customers_valued']:,} have both).")
    m4.metric("Holdout (set by hand)" if preview.get("control_share_by_hand") else "Holdout (power calculation)",
              f"{preview['control_share']:.0%}", border=True, help=f"Power {preview['power']:.0%} for the expected lift.")
    for note in preview["notes"]:
        st.warning(note, icon=":material/info:")
    st.caption(f"Baseline conversion without a campaign: {preview['baseline_rate']:.1%} — {preview['baseline_basis']}.")
    (st.success if preview["powered"] else st.warning)(preview["plan"])
    if preview["minimum_detectable_lift"] is not None:
        st.caption(f"With this holdout the smallest lift detected with 80% power is "
                   f"{preview['minimum_detectable_lift'] * 100:.1f} percentage points.")
    if preview["exclusions"]:
        st.plotly_chart(exclusions_chart(preview["exclusions"]), width="stretch")


if can_manage:
    with tabs["New campaign"]:
        st.caption("Choose who qualifies, preview the audience and the holdout, then save a draft and launch it "
                   "from the list.")
        kind = st.selectbox("Trigger", list(campaigns.TRIGGER_KINDS), format_func=campaigns.TRIGGER_KINDS.get,
                            key="builder_trigger")
        trigger: dict = {"kind": kind}
        if kind == "churn_risk":
            trigger["level"] = st.selectbox("Churn risk at or above", RISK_LEVELS, index=2, key="builder_risk")
        elif kind == "no_order":
            trigger["days"] = st.number_input("Days without an order", 1, 3650, 90, key="builder_days")
        elif kind == "health_level":
            trigger["level"] = st.selectbox("Health at or below", HEALTH_LEVELS, index=3, key="builder_health")
        segments = [s for s in (context.read(segmentation.list_segments) or []) if s["active"]]
        segment_names = {s["name"]: s["id"] for s in segments}
        model = context.read(uplift_reports.active_model)
        with st.form("campaign_builder"):
            name = st.text_input("Name", max_chars=120, key="builder_name")
            segment = st.selectbox("Only customers in segment", ["All customers", *segment_names], key="builder_segment")
            left, right = st.columns(2)
            channel = left.radio("Channel", list(campaigns.CHANNELS), horizontal=True, key="builder_channel")
            offer_type = right.selectbox("Offer", list(campaigns.OFFER_TYPES), format_func=campaigns.OFFER_TYPES.get,
                                      key="builder_offer_type")
            offer_value = left.number_input("Offer value (percent, amount or points)", min_value=0.0, value=15.0,
                                          key="builder_offer_value")
            subject = right.text_input("Message subject (optional)", max_chars=255, key="builder_subject")
            lift_points = left.number_input("Expected lift (percentage points of conversion)", 0.1, 50.0,
                                            campaigns.DEFAULT_EXPECTED_LIFT * 100, step=0.5, key="builder_lift")
            window = right.number_input("Attribution window (days)", 1, 365, campaigns.DEFAULT_ATTRIBUTION_DAYS,
                                     key="builder_window")
            margin = left.number_input("Gross margin (%)", 0.0, 100.0, campaigns.DEFAULT_GROSS_MARGIN * 100,
                                   key="builder_margin")
            holdout = right.radio("Holdout", ["Sized by the power calculation", "Set by hand"], key="builder_holdout")
            share = right.slider("Holdout share (when set by hand)", 5, 50, 10, format="%d%%", key="builder_share")
            if model:
                targeting = left.radio("Target", ["Everyone who qualifies", "Top share by uplift"], key="builder_targeting")
                uplift_share = left.slider("Top uplift share", 5, 100, 30, format="%d%%", key="builder_uplift_share")
            else:
                targeting, uplift_share = "Everyone who qualifies", 100
                left.caption("Targeting by uplift needs an uplift model (see **Uplift model**).")
            b1, b2 = st.columns(2)
            preview_clicked = b1.form_submit_button("Preview audience", icon=":material/visibility:", key="builder_preview")
            save_clicked = b2.form_submit_button("Save as draft", type="primary", icon=":material/save:",
                                                 key="builder_save")
        segment_id = segment_names.get(segment)
        hand_share = share / 100 if holdout == "Set by hand" else None
        if preview_clicked:
            st.session_state["campaign_preview"] = context.read(
                campaigns.preview_audience, trigger, channel, at, segment_id, lift_points / 100, window,
                control_share=hand_share)
        if save_clicked:
            created = context.act(
                campaigns.create_campaign, name=name, trigger=trigger, channel=channel, offer_type=offer_type,
                offer_value=offer_value, subject=subject or None, segment_id=segment_id,
                expected_lift=lift_points / 100, control_share=hand_share, attribution_days=window,
                gross_margin=margin / 100, uplift_share=uplift_share / 100 if targeting == "Top share by uplift" else None,
                at=at)
            if created is not None:
                st.session_state["campaigns_flash"] = (
                    f"Saved the draft {plain(created.name)} with a {created.control_fraction:.0%} holdout; launch it "
                    "from the list under Campaigns.")
                st.session_state.pop("campaign_preview", None)
                st.rerun()
        preview = st.session_state.get("campaign_preview")
        if preview:
            st.subheader(f"Audience: {plain(preview['description'])} by {preview['channel']}")
            _show_preview(preview)


with tabs["Results"]:
    launched = [r for r in rows if r["status"] != "draft" and r["targets"]]
    if not launched:
        st.info("No campaign has enrolled anyone yet: results appear once a campaign is launched.")
    else:
        chosen = st.selectbox("Campaign", launched, format_func=lambda r: f"{r['name']} ({r['status']})",
                              key="results_choice")
        stored = None if st.session_state.get(f"live_results_{chosen['id']}") else \
            context.cached(campaigns.stored_results, chosen["id"])
        if stored is not None:
            result, curve, measured_at = stored
            left, right = st.columns([4, 1])
            left.caption(f"Results as the refresh computed them at {measured_at:%d %b %Y %H:%M}.")
            if right.button("Recompute now", icon=":material/refresh:", key=f"recompute_{chosen['id']}"):
                st.session_state[f"live_results_{chosen['id']}"] = True
                st.rerun()
        else:
            try:
                result, curve = results_for(url, chosen["id"], at)
            except platform.DomainError as exc:
                st.error(str(exc))
                result, curve = None, []
        if result:
            info = result["campaign"]
            st.caption(f"{info['offer']} by {info['channel']}; holdout {info['control_share']:.0%}; attribution "
                       f"window {info['attribution_days']} days; gross margin {info['gross_margin']:.0%}; "
                       f"{result['sends']:,} messages sent.")
            for note in result["notes"]:
                st.info(note)
            groups = {g["group"]: g for g in result["groups"]}
            r1, r2, r3, r4 = st.columns(4)
            r1.metric("Conversion, treatment", _percent(groups["treatment"]["conversion_rate"]), border=True,
                      help=f"{groups['treatment']['conversions']:,} of {groups['treatment']['customers']:,}")
            r2.metric("Conversion, control", _percent(groups["control"]["conversion_rate"]), border=True,
                      help=f"{groups['control']['conversions']:,} of {groups['control']['customers']:,}")
            r3.metric("Revenue per customer, treatment", f"€{groups['treatment']['revenue_per_customer']:,.2f}",
                      border=True)
            r4.metric("Revenue per customer, control", f"€{groups['control']['revenue_per_customer']:,.2f}",
                      border=True)
            if result["conversion"]:
                conv, rev, cuped, roi = result["conversion"], result["revenue"], result["cuped"], result["roi"]
                d1, d2, d3, d4 = st.columns(4)
                d1.metric("Conversion lift", _points(conv["estimate"]), border=True,
                          help=f"95% CI {conv['low'] * 100:+.1f} to {conv['high'] * 100:+.1f} pp")
                d2.metric("Revenue lift (CUPED)", _signed_euros(cuped["estimate"]), border=True,
                          help=f"95% CI {_signed_euros(cuped['low'])} to {_signed_euros(cuped['high'])}; variance "
                               f"{cuped['variance_reduction']:.0%} lower than without CUPED")
                d3.metric("Incremental revenue", compact_euros(roi["incremental_revenue"]), border=True,
                          help=f"95% CI {compact_euros(roi['incremental_revenue_low'])} to "
                               f"{compact_euros(roi['incremental_revenue_high'])}")
                d4.metric("Incremental ROI", "–" if roi["roi"] is None else f"{roi['roi']:+.0%}", border=True,
                          help="(incremental gross margin − incentive cost − send cost) / cost")
                chart_left, chart_right = st.columns(2)
                chart_left.plotly_chart(difference_chart(
                    "Conversion lift, 95% CI", [("conversion rate", conv)], 100, "percentage points"), width="stretch")
                chart_right.plotly_chart(difference_chart(
                    "Revenue lift per customer, 95% CI", [("plain", rev), ("CUPED", cuped)], 1, "€"), width="stretch")
                table = pd.DataFrame([
                    {"measure": "Conversion rate", "difference": _points(conv["estimate"]),
                     "95% CI": f"{conv['low'] * 100:+.2f} to {conv['high'] * 100:+.2f} pp",
                     "significant": "yes" if conv["significant"] else "no"},
                    {"measure": "Revenue per customer", "difference": _signed_euros(rev["estimate"]),
                     "95% CI": f"{_signed_euros(rev['low'])} to {_signed_euros(rev['high'])}",
                     "significant": "yes" if rev["significant"] else "no"},
                    {"measure": "Revenue per customer (CUPED, pre-period spend)",
                     "difference": _signed_euros(cuped["estimate"]),
                     "95% CI": f"{_signed_euros(cuped['low'])} to {_signed_euros(cuped['high'])}",
                     "significant": "yes" if cuped["significant"] else "no"},
                    {"measure": "Incremental ROI", "difference": "–" if roi["roi"] is None else f"{roi['roi']:+.0%}",
                     "95% CI": "–" if roi["roi_low"] is None else f"{roi['roi_low']:+.0%} to {roi['roi_high']:+.0%}",
                     "significant": ""},
                ])
                st.dataframe(table, hide_index=True, width="stretch")
                basis = {"redeemed": "its vouchers' discounts on redeeming orders",
                         "posted": "the points posted to treated customers, at their value",
                         "estimated": "estimated: one offer per treated converter"}[roi["incentive_basis"]]
                st.caption(f"Costs: incentives €{roi['incentive_cost']:,.2f} ({basis}), "
                           f"sends €{roi['send_cost']:,.2f}; incremental gross margin "
                           f"€{roi['incremental_gross_margin']:,.2f}.")
            if curve:
                st.plotly_chart(conversion_curve_chart(curve), width="stretch")

with tabs["Uplift model"]:
    st.caption("An uplift model ranks customers by how much the offer changes their chance to buy, learned from "
               "finished campaigns' treatment and control customers. The Qini curve shows the extra conversions "
               "gained by contacting the top share it ranks, on customers held out from training, next to ranking "
               "by churn risk and at random.")
    card = context.read(uplift_reports.active_model)
    if card is None:
        st.info("No uplift model yet." + (" Train one below once a campaign has finished and its attribution "
                                          "windows have closed." if can_train else ""))
    else:
        u1, u2, u3, u4 = st.columns(4)
        u1.metric("Qini area (model)", f"{card['qini_area']:.4f}", border=True)
        u2.metric("Qini area (churn risk)", "–" if card["qini_area_churn"] is None else f"{card['qini_area_churn']:.4f}",
                  border=True, help=f"Ranking by {card['churn_basis']}.")
        top = card["top_share"] or 0.3
        u3.metric(f"Lift in the top {top:.0%} (model)", _points(card["uplift_top_model"]), border=True)
        u4.metric(f"Lift in the top {top:.0%} (churn risk)", _points(card["uplift_top_churn"]), border=True)
        st.caption(f"{card['algorithm']}, trained {day_month_year(card['as_of'])} on {card['train_customers']:,} "
                   f"customers of campaigns {', '.join(map(str, card['campaign_ids']))}; measured on "
                   f"{card['test_customers']:,} held-out customers. Lift over everyone: {_points(card['uplift_all'])}.")
        if card["qini_curve"]:
            st.plotly_chart(qini_chart(card["qini_curve"], card["qini_curve_churn"], card["churn_basis"]),
                            width="stretch")
        if card["unused_features"]:
            st.caption("Features left out (no data or no variation): " + ", ".join(card["unused_features"]) + ".")
    if can_train:
        with st.form("train_uplift"):
            algorithm = st.selectbox("Algorithm", list(uplift.ALGORITHMS), format_func=uplift.ALGORITHMS.get,
                                     key="uplift_algorithm")
            if st.form_submit_button("Train uplift model", icon=":material/model_training:", key="uplift_train"):
                with st.spinner("Building features as of each send and training…"):
                    trained = context.act(uplift.train_uplift, at=at, algorithm=algorithm)
                if trained is not None:
                    st.session_state["campaigns_flash"] = (
                        f"Trained an uplift model on {trained.train_customers:,} customers; Qini area "
                        f"{trained.qini_area:.4f} on {trained.test_customers:,} held-out customers.")
                    st.rerun()
