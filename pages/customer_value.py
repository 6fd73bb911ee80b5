"""Customer value: 12-month CLV distribution, probability alive, expected purchases, top customers."""

import pandas as pd
import plotly.express as px
import streamlit as st

from ml import clv_reports
from ui import context
from ui.charts import shared
from ui.data_date import show_data_date
from ui.format import compact_euros
from ui.step_status import show_step_status
from ui.tabs import keep, lazy_tabs


@shared
def histogram_chart(histogram: pd.DataFrame):
    return px.bar(histogram, x="label", y="customers", hover_data={"clv_total": ":,.0f"},
                  title="Customers by 12-month CLV", labels={"label": "12-month CLV", "customers": "Customers"})


@shared
def alive_chart(grid: pd.DataFrame):
    figure = px.imshow(
        grid * 100, text_auto=".0f", aspect="auto", color_continuous_scale="RdYlGn", origin="lower",
        labels={"x": "Weeks from first to last purchase (recency)", "y": "Repeat purchases (frequency)",
                "color": "P(alive) %"},
        title="Probability alive (%) by frequency and recency",
    )
    return figure.update_xaxes(type="category").update_yaxes(type="category")


@shared
def segments_chart(by_segment: pd.DataFrame):
    return px.bar(by_segment, x="segment", y="clv_12m", hover_data=["customers", "expected_purchases_12m"],
                  title="12-month CLV by RFM segment", labels={"segment": "", "clv_12m": "12-month CLV (€)"})


viewer = context.require_page("value.view")
st.title("Customer value")
st.caption(
    "Lifetime value from the batch refresh: BG/NBD for expected purchases, the modified BG/NBD for the "
    "probability that a customer is still active (a one-time buyer long silent is likely gone), Gamma-Gamma for "
    "the spend per purchase; 12-month CLV discounted at 10% a year."
)
show_data_date()
show_step_status("lifetime_value", "Lifetime value")


@st.cache_data(ttl=300, refresh_mode="background", max_entries=16, show_spinner="Aggregating…")
def load_aggregates(url: str, model_id: int | None, version: str) -> dict:
    """Figures and chart data; keyed by the active model and the data version, so a new scoring is shown at once."""
    with context.session() as s:
        return clv_reports.aggregates(s, viewer)


key = context.read(clv_reports.scoring_key)
data = load_aggregates(str(context.engine().url), key, context.data_version().key)
summary = data["summary"]
if summary is None:
    st.info("No lifetime values yet: run the batch refresh (`crm refresh`, or the Lifecycle page) to fit the "
            "models and score every customer.")
    st.stop()
model = summary["model"] or {}


c1, c2, c3, c4, c5 = st.columns(5)
c1.metric("Customers scored", f"{summary['customers_scored']:,}", border=True)
c2.metric("12-month CLV", compact_euros(summary['clv_12m_total']), border=True,
          help=f"Mean €{summary['clv_12m_mean']:,.2f} per customer")
c3.metric("Expected purchases", f"{summary['expected_purchases_12m']:,.0f}", border=True,
          help="Purchases the model expects these customers to make in the next 12 months (BG/NBD).")
c4.metric("Likely active", f"{summary['likely_alive'] / summary['customers_scored']:.0%}", border=True,
          help="Share of customers with a probability alive of at least 50% (modified BG/NBD, in which a "
               "one-time buyer long silent is likely gone).")
c5.metric("Historic value", compact_euros(summary['historic_clv_total']), border=True,
          help="Revenue from these customers so far")
st.caption(f"Scored as of {summary['as_of']}" + (f" with model version {model['version']}." if model else "."))

# Only the open tab is built and drawn; the other tabs' choices are kept meanwhile.
keep("value_top_page")
tab_dist, tab_alive, tab_top, tab_segments, tab_model = lazy_tabs(
    ["CLV distribution", "Probability alive", "Top customers", "By segment", "Model"], key="value_tab"
)

if tab_dist.open:
    with tab_dist:
        histogram = pd.DataFrame(data["histogram"])
        if histogram.empty:
            st.info("No customer has a lifetime value yet.")
        else:
            st.plotly_chart(histogram_chart(histogram), width="stretch")

if tab_alive.open:
    with tab_alive:
        heatmap = data["heatmap"]
        if not heatmap["cells"]:
            st.info("No scored customers to place on the heatmap.")
        else:
            cells = pd.DataFrame(heatmap["cells"])
            grid = cells.pivot(index="frequency", columns="recency", values="mean_prob_alive")
            grid = grid.reindex(index=[f for f in heatmap["frequency_labels"] if f in grid.index],
                                columns=[r for r in heatmap["recency_labels"] if r in grid.columns])
            st.plotly_chart(alive_chart(grid), width="stretch")
            st.caption("Customers who bought often and recently are most likely still active; frequent buyers who "
                       "stopped long ago most likely are not. BG/NBD lets a customer drop out only after a repeat "
                       "purchase, so it counts every one-time buyer (frequency 0) as active: read their churn "
                       "probability on the Churn page instead.")
            counts = cells.pivot(index="frequency", columns="recency", values="customers").fillna(0).astype(int)
            st.dataframe(counts.reindex(index=grid.index, columns=grid.columns), width="stretch")

if tab_top.open:
    with tab_top:
        page_number = st.session_state.get("value_top_page", 1)
        top = context.read(clv_reports.top_customers, page=page_number, page_size=50)
        if top is not None and top.total:
            st.caption(f"{top.total:,} customers by 12-month CLV")
            rows = pd.DataFrame(top.rows)
            if rows["email"].isna().all():  # a role that may not see people reads customers by number
                rows = rows.drop(columns="email")
            st.dataframe(
                rows, hide_index=True, width="stretch",
                column_config={
                    "clv_12m": st.column_config.NumberColumn("12-month CLV", format="€%.2f"),
                    "historic_clv": st.column_config.NumberColumn("Historic value", format="€%.2f"),
                    "expected_order_value": st.column_config.NumberColumn("Expected order value", format="€%.2f"),
                    "prob_alive": st.column_config.ProgressColumn("P(alive)", min_value=0.0, max_value=1.0, format="%.2f"),
                    "expected_purchases_12m": st.column_config.NumberColumn("Expected purchases", format="%.2f"),
                },
            )
            st.pagination(top.pages, default=min(page_number, top.pages), key="value_top_page")
        elif top is not None:
            st.info("No customer has a lifetime value yet.")

if tab_segments.open:
    with tab_segments:
        by_segment = pd.DataFrame(data["segments"])
        if by_segment.empty:
            st.info("No segments to compare.")
        else:
            st.plotly_chart(segments_chart(by_segment), width="stretch")
            st.dataframe(by_segment, hide_index=True, width="stretch", column_config={
                "segment": st.column_config.TextColumn("RFM segment"),
                "customers": st.column_config.NumberColumn("Customers", format="localized"),
                "expected_purchases_12m": st.column_config.NumberColumn("Expected purchases (12 months)",
                                                                        format="%.0f"),
                "clv_12m": st.column_config.NumberColumn("CLV, next 12 months", format="€%.2f"),
                "mean_prob_alive": st.column_config.ProgressColumn("Mean P(alive)", min_value=0, max_value=1,
                                                                   format="percent"),
                "historic_clv": st.column_config.NumberColumn("Revenue so far", format="€%.2f"),
            })

if tab_model.open:
    with tab_model:
        if not model:
            st.info("No active CLV model in the registry.")
        else:
            params = model.get("params") or {}
            metrics = model.get("metrics") or {}
            left, right = st.columns(2)
            left.markdown("**BG/NBD** (expected purchases, per week)")
            left.dataframe(pd.DataFrame([params.get("bgnbd", {})]), hide_index=True)
            if params.get("mbgnbd"):
                left.markdown("**Modified BG/NBD** (probability alive, per week)")
                left.dataframe(pd.DataFrame([params["mbgnbd"]]), hide_index=True)
            left.markdown("**Gamma-Gamma** (spend per purchase)")
            left.dataframe(pd.DataFrame([params.get("gamma_gamma", {})]), hide_index=True)
            if metrics.get("pareto_nbd"):
                left.markdown("**Pareto/NBD** (for comparison)")
                left.dataframe(pd.DataFrame([metrics["pareto_nbd"]]), hide_index=True)
            if "holdout_actual_purchases" in metrics:
                right.metric(f"Holdout: actual repeat purchases in {metrics['holdout_days']} days",
                             f"{metrics['holdout_actual_purchases']:,.0f}",
                             delta=f"predicted {metrics['holdout_predicted_purchases']:,.0f}", delta_color="off")
                right.metric("Holdout error per customer (MAE)", f"{metrics['holdout_mae_per_customer']:.2f} purchases")
            elif metrics.get("holdout_skipped"):
                right.info(f"Holdout check skipped: {metrics['holdout_skipped']}")
            else:
                right.caption("No holdout check with this version: `crm clv --holdout-days 90` refits 90 days earlier "
                              "and compares its predictions with the repeat purchases since.")
            right.caption(f"Version {model['version']} ({model['algorithm']}), trained {model['created_at']:%Y-%m-%d %H:%M}, "
                          f"fitted on {metrics.get('customers_fit', 0):,} customers.")
