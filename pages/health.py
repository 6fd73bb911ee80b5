"""Health: live accounts by level (with each level's churn rate), churned and never-bought customers
apart, biggest movers, account drill-down, backtest, level bands and weights."""

import datetime as dt

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from crm_core import platform
from db.models import HEALTH_LEVELS
from ml import health, health_reports
from ui import context
from ui.charts import shared
from ui.cta_panel import customer_panel
from ui.data_date import show_data_date
from ui.format import plain, readable, words
from ui.step_status import show_step_status
from ui.tabs import keep, lazy_tabs

viewer = context.require_page("health.view")
LEVEL_COLOURS = {"excellent": "#1a7f37", "good": "#7ac143", "fair": "#f2c744", "poor": "#f08a24",
                 "critical": "#d1242f"}

@shared
def levels_chart(levels: pd.DataFrame):
    figure = go.Figure(go.Bar(x=levels["level"], y=levels["customers"], name="Accounts",
                              marker_color=[LEVEL_COLOURS[lv] for lv in levels["level"]]))
    for column, dash in (("churn rate (calibration) %", "solid"), ("churn rate (later check) %", "dot")):
        if levels[column].notna().any():
            figure.add_trace(go.Scatter(x=levels["level"], y=levels[column], name=column.capitalize(), yaxis="y2",
                                        mode="lines+markers", line={"color": "#333333", "dash": dash}))
    return figure.update_layout(title="Live accounts by health level, and each level's churn rate",
                                yaxis={"title": "Accounts"}, legend={"orientation": "h", "y": -0.15},
                                yaxis2={"title": "Churn rate %", "overlaying": "y", "side": "right", "range": [0, 100],
                                        "tickvals": [0, 25, 50, 75, 100], "showgrid": False})


@shared
def backtest_chart(rows: pd.DataFrame, horizon_days: int):
    return px.bar(rows, x="level", y="churn_rate", color="level", color_discrete_map=LEVEL_COLOURS,
                  title=f"Churn rate in the {horizon_days} days after scoring, by level",
                  labels={"level": "", "churn_rate": "Churn rate"}).update_layout(showlegend=False)


@shared
def components_chart(frame: pd.DataFrame):
    return px.line(frame, x="as_of", y="score", color="component", markers=True, title="Component history",
                   range_y=[0, 100], labels={"as_of": "", "score": "Score (0-100)", "component": ""})


@shared
def calibration_chart(frame: pd.DataFrame):
    return px.bar(frame, x="level", y="churn_rate", color="period", barmode="group",
                  category_orders={"level": list(HEALTH_LEVELS)},
                  title="Churn rate by level: calibration period and a later period",
                  labels={"level": "", "churn_rate": "Churn rate", "period": ""})


st.title("Health")
as_of = show_data_date().day
if flash := st.session_state.pop("health_flash", None):
    st.success(flash)

if platform.allowed(viewer.role, "refresh.run"):
    with st.expander("Score health now"):
        st.caption("Scores every customer as of the date (the batch refresh does this too, and copies the scores "
                   "into the analytics snapshot that customer lists and segments read).")
        score_date = st.date_input("As of", value=as_of, min_value=platform.EARLIEST_DATE, max_value=dt.date.today(),
                                   key="health_score_as_of")
        if st.button("Score health", icon=":material/monitor_heart:"):
            bar = st.progress(0.0, text="Starting…")

            def progress(index: int, total: int, label: str, detail: str) -> None:
                bar.progress(index / total, text=f"{label}: {detail}")

            try:
                result = health.score_health(context.engine(), score_date, progress=progress, actor=viewer)
            except platform.DomainError as exc:
                st.error(str(exc))
            else:
                context.changed()
                st.session_state["health_flash"] = (
                    f"Scored {result['customers']:,} customers as of {score_date.isoformat()}. Customer lists, "
                    "segments and lifecycle stages use the new scores after the next batch refresh."
                )
                st.rerun()

show_step_status("health", "Health scoring")
summary = context.cached(health_reports.overview)
if summary is None:
    st.info("No health scores yet: run the batch refresh (`crm refresh`) or score health above.")
    st.stop()

bands = summary["bands"] or dict(health.DEFAULT_BANDS)
BAND_SOURCES = {"calibrated": "calibrated from churn data", "admin": "set by an admin",
                "default": "the default bands"}
st.caption(
    f"Levels ({BAND_SOURCES.get(summary['bands_source'] or 'default', 'the default bands')}): "
    + ", ".join(f"{level} ≥ {bands[level]:g}" for level in list(HEALTH_LEVELS)[:-1])
    + ", critical below. Trend = change against the score stored about 30 days earlier. Components and their "
    "inputs are described in the README."
)
c1, c2, c3, c4, c5, c6 = st.columns(6)
c1.metric("Live accounts", f"{summary['customers']:,}", border=True,
          help="Customers who bought within the lifecycle rule's churned days: the accounts scored.")
c2.metric("Churned", "n/a" if summary["churned"] is None else f"{summary['churned']:,}", border=True,
          help="Bought before, but not within the lifecycle rule's churned days: not scored as accounts.")
c3.metric("Never bought", "n/a" if summary["never_bought"] is None else f"{summary['never_bought']:,}",
          border=True, help="Signed up without a revenue order yet: not scored as accounts.")
c4.metric("Average health", f"{summary['avg_overall']:.1f}", border=True,
          delta=None if summary["avg_trend"] is None else f"{summary['avg_trend']:+.1f} vs 30 days")
c5.metric("Improving", f"{summary['improving']:,}", border=True,
          help=f"Up {summary['mover_min_points']:g} points or more against about 30 days earlier.")
c6.metric("Declining", f"{summary['declining']:,}", border=True,
          help=f"Down {summary['mover_min_points']:g} points or more against about 30 days earlier.")
st.caption(f"Scored as of {summary['as_of'].isoformat()}"
           + (f"; churned = no order for more than {summary['churned_after_days']} days (the lifecycle rule)."
              if summary["churned_after_days"] else "."))
missing = [name for name, n in summary["components_with_data"].items() if n == 0]
partial = {name: n for name, n in summary["components_with_data"].items() if 0 < n < summary["customers"]}
if missing:
    st.info(f"No data for {', '.join(missing)}: the shop has no records they are built from, so they are left "
            "out of the overall score.", icon=":material/info:")
if partial:
    st.caption("Components with data for only some accounts (the others are scored on the rest): "
               + ", ".join(f"{name} {n / summary['customers']:.0%}" for name, n in partial.items()) + ".")

# Only the open tab is built and drawn; the other tabs' choices are kept meanwhile.
keep("health_customer", "health_movers_up", "health_movers_down", health_lag=90)
tab_levels, tab_movers, tab_account, tab_backtest, tab_bands, tab_weights = lazy_tabs(
    ["Distribution", "Movers", "Account drill-down", "Backtest", "Level bands", "Weights"], key="health_tab"
)
band_info = context.read(health.get_bands)
calibration = (band_info or {}).get("calibration") or {}


def calibration_rates(period: str) -> dict[str, float | None]:
    table = (calibration.get(period) or {}).get("table") or []
    return {row["level"]: row["churn_rate"] for row in table}


# The calibration's churn rates belong to the levels its own bands cut: shown against the levels only
# when those are the bands the latest scores were cut with (not after an admin set others).
rates_apply = health.calibration_describes(calibration, bands)

if tab_levels.open:
    with tab_levels:
        levels = pd.DataFrame(summary["levels"])
        fit_rates, check_rates = ((calibration_rates("fit"), calibration_rates("check")) if rates_apply else ({}, {}))
        levels["churn rate (calibration) %"] = [None if fit_rates.get(lv) is None else round(100 * fit_rates[lv], 1)
                                                for lv in levels["level"]]
        levels["churn rate (later check) %"] = [None if check_rates.get(lv) is None else round(100 * check_rates[lv], 1)
                                                for lv in levels["level"]]
        st.plotly_chart(levels_chart(levels), width="stretch")
        st.dataframe(
            readable(levels.assign(share=(levels["share"] * 100).round(1)), share="Share %",
                     avg_overall="Average score"),
            hide_index=True, width="stretch",
        )
        if fit_rates and any(v is not None for v in fit_rates.values()):
            st.caption(f"Churn rate = share of a level's accounts with no order in the {calibration['horizon_days']} "
                       f"days after they were scored: in the calibration period (scores of {calibration['fit']['feature_date']})"
                       + (f" and in the later check (scores of {calibration['check']['feature_date']})."
                          if calibration.get("check") else "; no later period to check yet."))
        elif calibration and not rates_apply:
            st.caption("These levels were cut with bands other than the calibrated ones (set by an admin), so the "
                       "calibration's churn rates per level do not describe them: the Level bands tab shows the rates "
                       "of the calibrated bands, and the Backtest tab measures the levels as they were stored.")
        elif summary["bands_source"] != "admin":
            st.caption("No churn rates per level yet: the bands are the defaults until there is enough history to "
                       "calibrate them (see Level bands).")


def movers_table(direction: str) -> None:
    key = f"health_movers_{direction}"
    page_number = st.session_state.get(key, 1)
    found = context.cached(health_reports.movers, direction=direction, page=page_number, page_size=25)
    if found is None:
        return
    if not found.total:
        st.info("No account moved this way (or no score from about 30 days earlier to compare with).")
        return
    st.caption(f"{found.total:,} accounts")
    st.dataframe(readable(pd.DataFrame(found.rows), customer_id="Customer id", previous="Score 30 days before"),
                 hide_index=True, width="stretch")
    st.pagination(found.pages, default=min(page_number, found.pages), key=key)


if tab_movers.open:
    with tab_movers:
        up, down = st.columns(2)
        with up:
            st.subheader("Biggest gains")
            movers_table("up")
        with down:
            st.subheader("Biggest drops")
            movers_table("down")

if tab_account.open:
    with tab_account:
        if "health_customer" not in st.session_state:  # the first value through session state only (see keep)
            first_drop = context.cached(health_reports.movers, direction="down", page=1, page_size=1)
            st.session_state["health_customer"] = first_drop.rows[0]["customer_id"] if first_drop and first_drop.rows else 1
        customer_id = int(st.number_input("Customer id", min_value=1, step=1, key="health_customer"))
        account = context.read(health_reports.customer_health, customer_id)
        if account is not None:
            score = account["score"]
            if account["relationship"]:
                st.info(f"{plain(account['customer'])} (#{customer_id}) is {account['relationship']}."
                        + (f" The last score below is from {score['as_of'].isoformat()}." if score else ""))
            if score is None:
                if not account["relationship"]:
                    st.info(f"{plain(account['customer'])} (#{customer_id}) has no health score yet.")
            else:
                st.markdown(f"**{plain(account['customer'])}** (#{customer_id}), scored as of {score['as_of'].isoformat()}")
                m = st.columns(6)
                m[0].metric("Overall", f"{score['overall']:.0f}", border=True,
                            delta=None if score["trend"] is None else f"{score['trend']:+.1f}")
                for column, name in zip(m[1:], health.COMPONENTS, strict=True):
                    column.metric(name.capitalize(), "no data" if score[name] is None else f"{score[name]:.0f}",
                                  border=True)
                st.markdown(f"Level: **{score['level']}**")
                history = context.read(health_reports.customer_history, customer_id) or []
                if len(history) > 1:
                    frame = pd.DataFrame(history).melt(id_vars=["as_of"], value_vars=["overall", *health.COMPONENTS],
                                                       var_name="component", value_name="score")
                    frame["component"] = frame["component"].map(words)
                    st.plotly_chart(components_chart(frame), width="stretch")
                else:
                    st.caption("Only one scoring date so far: the history chart appears after the next scoring.")
                left, right = st.columns(2)
                with left:
                    st.markdown("**Risk indicators**")
                    for indicator in score["risk_indicators"] or ["None"]:
                        st.markdown(f"- {indicator}")
                    st.markdown("**Recommendations**")
                    for recommendation in score["recommendations"]:
                        st.markdown(f"- {recommendation}")
                with right:
                    st.markdown("**Action items**")
                    if score["action_items"]:
                        st.dataframe(readable(pd.DataFrame(score["action_items"])), hide_index=True, width="stretch")
                    else:
                        st.caption("No action needed.")
            with st.expander("Calls to action", icon=":material/task_alt:"):
                customer_panel(customer_id, as_of, "health")

if tab_backtest.open:
    with tab_backtest:
        st.caption("How well the levels stored N days ago predicted churn (no revenue order since then).")
        lag = int(st.number_input("Days ago", min_value=7, max_value=730, step=1, key="health_lag"))
        result = context.cached(health_reports.backtest, lag)
        if result is not None:
            if result["scored_as_of"] is None:
                st.info(f"No scores stored {lag} or more days before {summary['as_of'].isoformat()} yet.")
            else:
                b1, b2, b3 = st.columns(3)
                b1.metric("Scored as of", result["scored_as_of"].isoformat(), border=True)
                b2.metric("Customers labelled", f"{result['customers']:,}", border=True)
                b3.metric("AUC (overall vs churn)", "n/a" if result["auc"] is None else f"{result['auc']:.3f}",
                          border=True)
                if result.get("rates_rise") is not None:
                    holds = "rises" if result["rates_rise"] else "does **not** rise"
                    st.markdown(f"The churn rate {holds} level by level from excellent to critical in this later "
                                f"period ({BAND_SOURCES.get(result.get('bands_source') or 'default', '')}).")
                rows = pd.DataFrame(result["rows"])
                st.plotly_chart(backtest_chart(rows, result["horizon_days"]), width="stretch")
                st.dataframe(readable(rows), hide_index=True, width="stretch")

if tab_bands.open:
    with tab_bands:
        if band_info is not None:
            st.markdown(f"Bands in force: **{BAND_SOURCES.get(band_info['source'], band_info['source'])}** — "
                        + ", ".join(f"{level} ≥ {band_info['bands'][level]:g}" for level in list(HEALTH_LEVELS)[:-1])
                        + ", critical below.")
            if calibration:
                st.caption(
                    f"Last calibration as of {calibration['as_of']}: live accounts scored on "
                    f"{calibration['fit']['feature_date']} ({calibration['fit']['accounts']:,} in the sample) against churn "
                    f"over the next {calibration['horizon_days']} days."
                    + (f" {calibration['fallback_reason'].capitalize()}." if calibration.get("fallback_reason") else "")
                )
                periods = []
                for name, label in (("fit", "calibration period"), ("check", "later period (check)")):
                    for row in (calibration.get(name) or {}).get("table") or []:
                        periods.append({"period": label, **row})
                if periods:
                    frame = pd.DataFrame(periods)
                    st.plotly_chart(calibration_chart(frame), width="stretch")
                    st.dataframe(readable(frame), hide_index=True, width="stretch")
                check = calibration.get("check")
                if check:
                    if check.get("holds"):
                        st.success("The calibration holds on the later period: churn rates still rise level by level.")
                    else:
                        st.warning("On the later period the churn rates do not rise level by level everywhere.")
            else:
                st.caption("Not calibrated yet: the next scoring calibrates the bands.")
            if platform.allowed(viewer.role, "models.manage"):
                with st.form("health_bands"):
                    st.markdown("**Set the bands** (the lowest overall score of each level; critical is below poor)")
                    columns = st.columns(4)
                    edited_bands = {
                        level: column.number_input(level.capitalize(), min_value=0.0, max_value=100.0,
                                                   value=float(band_info["bands"][level]), step=1.0, format="%.1f",
                                                   key=f"health_band_{level}")
                        for column, level in zip(columns, list(HEALTH_LEVELS)[:-1], strict=True)
                    }
                    if st.form_submit_button("Save bands"):
                        saved_bands = context.act(health.save_bands, edited_bands, expected_version=band_info["version"])
                        if saved_bands is not None:
                            st.session_state["health_flash"] = "Bands saved; they apply at the next scoring."
                            st.rerun()
                with st.form("health_bands_reset"):
                    st.caption("Go back to the bands calibrated from data.")
                    if st.form_submit_button("Use the calibrated bands") and context.act(
                            health.reset_bands, expected_version=band_info["version"]) is not None:
                        st.session_state["health_flash"] = "Calibrated bands restored; they apply at the next scoring."
                        st.rerun()

if tab_weights.open:
    with tab_weights:
        info = context.read(health.get_weights)
        if info is not None:
            sources = {"fitted": "fitted from churn data", "equal": "equal (too little data to fit)",
                       "admin": "set by an admin", "default": "equal (not fitted yet)"}
            st.markdown(f"Weights in force: **{sources.get(info['source'], info['source'])}**")
            st.dataframe(readable(pd.DataFrame([info["weights"]])), hide_index=True, width="stretch")
            fit = info["fit"]
            if fit:
                st.caption(
                    f"Last fit as of {fit['as_of']}: components on {fit['feature_date']} against churn over the next "
                    f"{fit['horizon_days']} days, {fit['metrics'].get('n_labelled', 0):,} customers."
                    + (f" {fit['fallback_reason'].capitalize()}." if fit.get("fallback_reason") else "")
                )
                if fit["metrics"].get("component_auc"):
                    metrics = fit["metrics"]
                    st.dataframe(
                        pd.DataFrame({"Component": [words(c) for c in health.COMPONENTS],
                                      "AUC": [metrics["component_auc"].get(c) for c in health.COMPONENTS],
                                      "Fitted weight": [fit["weights"][c] for c in health.COMPONENTS]}),
                        hide_index=True, width="stretch",
                    )
            if platform.allowed(viewer.role, "models.manage"):
                with st.form("health_weights"):
                    st.markdown("**Edit the weights** (they are normalised to sum 1; applied at the next scoring)")
                    columns = st.columns(len(health.COMPONENTS))
                    edited = {
                        name: column.number_input(name.capitalize(), min_value=0.0, max_value=100.0,
                                                  value=float(info["weights"][name]), step=0.05, format="%.3f")
                        for column, name in zip(columns, health.COMPONENTS, strict=True)
                    }
                    if st.form_submit_button("Save weights"):
                        saved = context.act(health.save_weights, edited, expected_version=info["version"])
                        if saved is not None:
                            st.session_state["health_flash"] = "Weights saved; they apply at the next scoring."
                            st.rerun()
                with st.form("health_weights_reset"):
                    st.caption("Go back to the weights fitted from data.")
                    if st.form_submit_button("Use the fitted weights"):
                        reset = context.act(health.reset_weights, expected_version=info["version"])
                        if reset is not None:
                            st.session_state["health_flash"] = "Fitted weights restored; they apply at the next scoring."
                            st.rerun()
