"""Forecast: daily revenue, orders and new customers with 80% intervals and the backtest error."""

import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from crm_core import platform
from ml import forecast_reports
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date
from ui.step_status import show_step_status


@shared
def forecast_chart(points: pd.DataFrame, label: str) -> go.Figure:
    figure = go.Figure()
    figure.add_trace(go.Scatter(x=points["day"], y=points["upper"], mode="lines", line={"width": 0},
                                showlegend=False, hoverinfo="skip"))
    figure.add_trace(go.Scatter(x=points["day"], y=points["lower"], mode="lines", line={"width": 0}, fill="tonexty",
                                fillcolor="rgba(31,119,180,0.2)", name="80% interval"))
    figure.add_trace(go.Scatter(x=points["day"], y=points["predicted"], mode="lines", name="Model",
                                line={"color": "#1f77b4"}))
    history = points[points["actual"].notna()]
    figure.add_trace(go.Scatter(x=history["day"], y=history["actual"], mode="lines", name="Actual",
                                line={"color": "#444", "width": 1}))
    start = points.loc[points["is_forecast"], "day"]
    if not start.empty:
        figure.add_vline(x=start.iloc[0], line_dash="dot", line_color="grey")
    figure.update_layout(title=f"{label}: history and forecast", height=460, hovermode="x unified",
                         legend={"orientation": "h", "y": -0.15}, margin={"t": 50})
    return figure


viewer = context.require_page("forecast.view")
st.title("Forecast")
st.caption("Prophet forecasts fitted in the batch refresh: weekly seasonality, yearly from two years of history, the shop country's "
           "public holidays, 80% intervals. The backtest error (MAPE) comes from three 30-day rolling-origin folds.")
show_data_date()
show_step_status("forecasts", "Forecasting")


@st.cache_data(ttl=300, refresh_mode="background", max_entries=32, show_spinner=False)
def load_series(url: str, run_key: str, metric: str, history_days: int) -> list[dict]:
    """Points of the latest run; keyed by the latest runs, so a new refresh is shown at once."""
    with context.session() as s:
        return forecast_reports.series(s, viewer, metric, history_days=history_days)


runs = context.read(forecast_reports.latest_runs)
if not runs:
    st.info("No forecasts yet: run the batch refresh (`crm refresh`, or the Lifecycle page) to fit them.")
else:
    run_key = "|".join(f"{r['metric']}:{r['created_at']}" for r in runs)
    history_days = st.segmented_control("History shown", [90, 180, 365, 730], default=365,
                                        format_func=lambda d: f"{d} days", key="forecast_history") or 365
    tabs = st.tabs([r["label"] for r in runs])
    for tab, run in zip(tabs, runs, strict=True):
        with tab:
            if run["status"] == "skipped":
                st.warning(f"Not forecast as of {run['as_of']}: {run['reason']}")
                continue
            points = pd.DataFrame(load_series(str(context.engine().url), run_key, run["metric"], int(history_days)))
            left, right = st.columns([3, 1])
            with left:
                if points.empty:
                    st.info("This forecast has no stored points.")
                else:
                    st.plotly_chart(forecast_chart(points, run["label"]), width="stretch")
                    if run["partial_day"] is not None:
                        st.caption(f"{run['partial_day']:%d %b %Y} is left out of the history drawn: the refresh ran "
                                   "before the day ended, and a day in progress would read as a drop.")
            with right:
                st.metric("Backtest MAPE", "n/a" if run["mape"] is None else f"{run['mape']:.1%}", border=True,
                          help="Mean absolute percentage error over the backtest folds (days with zero left out)")
                ahead = context.read(forecast_reports.outlook, run["metric"], days=30)
                if ahead:
                    money = run["metric"] == "revenue"
                    fmt = (lambda v: f"€{v:,.0f}") if money else (lambda v: f"{v:,.0f}")
                    change = (ahead["next_forecast"] / ahead["last_actual"] - 1) if ahead["last_actual"] else None
                    st.metric(f"Next {ahead['days']} days (forecast)", fmt(ahead["next_forecast"]), border=True,
                              delta=None if change is None else f"{change:+.1%} vs the last {ahead['days']} days")
                folds = pd.DataFrame(run["backtest"])
                if not folds.empty:
                    # A narrow column: three short columns, the folds' length said above them.
                    lengths = sorted({int(d) for d in folds["days"]})
                    st.caption(f"Backtest folds of {' / '.join(map(str, lengths))} days")
                    st.dataframe(folds[["origin", "mape", "interval_coverage"]], hide_index=True, width="stretch",
                                 column_config={
                                     "origin": st.column_config.TextColumn("From", width=80),
                                     "mape": st.column_config.NumberColumn("MAPE", format="percent", width=60),
                                     "interval_coverage": st.column_config.NumberColumn(
                                         "In 80%", format="percent", width=60,
                                         help="Share of the fold's days inside the 80% interval")})
                st.caption(f"As of {run['as_of']}; {run['history_days']:,} days of history; holidays: "
                           f"{run['country'] or 'none'}; horizon {run['horizon_days']} days.")

if platform.allowed(viewer.role, "models.manage"):
    with st.expander("Holiday calendar (admin)"):
        with context.session() as s:
            current, version = platform.get_shop_country(s)
        # The version the form was shown with, so a change saved meanwhile by someone else is a conflict.
        shown_version = st.session_state.setdefault("shop_country_version", version)
        countries = platform.supported_countries()
        codes = list(countries)
        with st.form("shop_country"):
            chosen = st.selectbox("Shop country (public holidays used by the forecasts)", codes,
                                  index=codes.index(current) if current in codes else 0,
                                  format_func=lambda c: f"{countries[c]} ({c})")
            if st.form_submit_button("Save country"):
                st.session_state.pop("shop_country_version", None)
                context.act(platform.save_shop_country, chosen, expected_version=shown_version,
                            success=f"Shop country set to {countries.get(chosen, chosen)}; it applies at the next refresh.")
