"""Churn: the at-risk list ranked by risk x value, with drivers and interventions; the model card."""

import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import streamlit as st

from crm_core import platform, segmentation
from db.models import RISK_LEVELS
from ml import churn_reports, registry
from ml.features import LABELS as FEATURE_LABELS
from ui import context
from ui.charts import shared, time_axis
from ui.cta_panel import customer_panel
from ui.data_date import show_data_date
from ui.refresh_panel import refresh_panel
from ui.step_status import show_step_status
from ui.tabs import keep, lazy_tabs


@shared
def risk_levels_chart(chart: pd.DataFrame):
    return px.bar(chart, x="risk_level", y="customers", color="risk_level",
                  category_orders={"risk_level": list(RISK_LEVELS)},
                  color_discrete_map={"low": "#2e7d32", "medium": "#f9a825", "high": "#ef6c00", "critical": "#c62828"},
                  hover_data={"expected_loss": ":,.0f", "mean_probability": ":.2f"},
                  labels={"risk_level": "Risk level", "customers": "Customers"},
                  ).update_layout(height=260, showlegend=False, margin={"t": 10, "b": 10})


@shared
def drivers_chart(drivers: pd.DataFrame):
    return px.bar(drivers, x="effect", y="label", orientation="h", hover_data=["value"],
                  labels={"effect": "Raises the log-odds of churn by", "label": ""},
                  ).update_layout(height=220, margin={"t": 10, "b": 10})


@shared
def probability_history_chart(history: pd.DataFrame):
    fig = px.line(history, x="as_of", y="probability", markers=True,
                  labels={"as_of": "Prediction date", "probability": "Churn probability"})
    fig.update_layout(height=260, yaxis_range=[0, 1], margin={"t": 10, "b": 10})
    return time_axis(fig, history["as_of"])


@shared
def calibration_chart(predicted: list, observed: list):
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="Perfect", line={"dash": "dot"}))
    fig.add_trace(go.Scatter(x=predicted, y=observed, mode="lines+markers", name="Model"))
    return fig.update_layout(title="Calibration (validation cut)", xaxis_title="Predicted probability",
                             yaxis_title="Observed churn rate", height=340, margin={"t": 40, "b": 10})


@shared
def importance_chart(importance: pd.DataFrame):
    return px.bar(importance.iloc[::-1], x="importance", y="feature", orientation="h",
                  title="Global feature importance (drop in ROC AUC when shuffled)",
                  ).update_layout(height=340, margin={"t": 40, "b": 10})


@shared
def accuracy_chart(accuracy: pd.DataFrame, measure: str, label: str, title: str):
    fig = px.line(accuracy, x="as_of", y=measure, color="risk_level", markers=True,
                  category_orders={"risk_level": list(reversed(RISK_LEVELS))},
                  labels={"as_of": "Prediction date", measure: label}, title=title)
    fig.update_layout(height=320, yaxis_range=[0, 1], margin={"t": 40, "b": 10})
    return time_axis(fig, accuracy["as_of"])


viewer = context.require_page("churn.view")
st.title("Churn")
data_day = show_data_date().day
refresh_panel(viewer, key="churn_refresh")
show_step_status("churn", "The churn model")

as_of = context.cached(churn_reports.latest_as_of)
card = context.cached(churn_reports.model_card)
if as_of is None or card is None:
    st.info("No churn predictions yet: run the batch refresh (`crm refresh`, or the button on the Lifecycle page).")
    st.stop()

metrics = card["metrics"]
summary = context.cached(churn_reports.risk_summary, as_of) or []
by_level = {row["risk_level"]: row for row in summary}
scored = sum(row["customers"] for row in summary)
urgent = sum(by_level.get(level, {}).get("customers", 0) for level in segmentation.AT_RISK_LEVELS)
st.caption(
    f"Predictions as of {as_of.isoformat()} for the next {metrics.get('horizon_days', 90)} days · "
    f"model v{card['version']} ({card['algorithm'].replace('_', ' ')})"
)
cols = st.columns(4)
cols[0].metric("Customers scored", f"{scored:,}")
cols[1].metric("High or critical risk", f"{urgent:,}",
               help=f"Churn probability of {segmentation.AT_RISK_PROBABILITY:.0%} or more.")
cols[2].metric("Expected revenue loss", f"€{sum(r['expected_loss'] for r in summary):,.0f}",
               help="Sum of churn probability x value (12-month CLV, or revenue to date).")
if metrics.get("roc_auc") is not None:
    cols[3].metric("Validation ROC AUC", f"{metrics['roc_auc']:.3f}",
                   delta=f"{metrics['roc_auc'] - (metrics.get('baseline_recency_auc') or 0):+.3f} vs recency",
                   help="Measured on a later cut than the model was trained on.")
else:
    cols[3].metric("Validation ROC AUC", "not validated",
                   help="Too little history for labelled training: BG/NBD's probability, which needs no labels.")
for note in metrics.get("notes") or []:
    st.info(note[0].upper() + note[1:] + ".", icon=":material/info:")

@st.fragment
def at_risk_list() -> None:
    """The filters, the ranked list and one customer's detail: a filter change reruns only this part."""
    segment_options = {s["name"]: s["id"] for s in (context.cached(segmentation.list_segments) or []) if s["active"]}
    owner_options = {f"{o['name']} ({o['customers']:,})": o["id"] for o in (context.cached(churn_reports.owners) or [])}
    f1, f2, f3, f4 = st.columns([2, 2, 2, 1])
    levels = f1.multiselect("Risk level", list(RISK_LEVELS), key="risk_levels")
    segment_name = f2.selectbox("Segment", ["All customers", *segment_options], key="risk_segment")
    owner_name = f3.selectbox("Account owner", ["Anyone", *owner_options], key="risk_owner")
    page_size = f4.selectbox("Rows", churn_reports.PAGE_SIZES, key="risk_page_size")
    page_number = st.session_state.get("risk_page", 1)
    found = context.cached(
        churn_reports.at_risk, as_of=as_of, risk_levels=levels or None,
        segment_id=segment_options.get(segment_name), owner_id=owner_options.get(owner_name),
        page=page_number, page_size=page_size,
    )
    if found is not None:
        if not found.total:
            st.info("No customers match these filters.")
        else:
            st.caption(f"{found.total:,} customers, ranked by churn probability x value")
            table = pd.DataFrame(found.rows)
            if table["email"].isna().all():  # a role that may not see people reads customers by number
                table = table.drop(columns="email")
            selection = st.dataframe(
                table, hide_index=True, width="stretch", on_select="rerun", selection_mode="single-row",
                key="risk_table",
                column_config={
                    "customer_id": st.column_config.NumberColumn("Customer", format="%d"),
                    "name": "Name", "email": "Email", "risk_level": "Risk", "stage": "Lifecycle stage",
                    "owner": "Account owner",
                    "probability": st.column_config.ProgressColumn("Churn probability", min_value=0, max_value=1,
                                                                   format="percent"),
                    "confidence": st.column_config.NumberColumn("Confidence", format="%.2f"),
                    "value": st.column_config.NumberColumn("Value (€)", format="%.0f"),
                    "expected_loss": st.column_config.NumberColumn("Expected loss (€)", format="%.0f"),
                    "drivers": st.column_config.TextColumn("Top drivers", width="large"),
                    "interventions": st.column_config.TextColumn("Recommended interventions", width="large"),
                },
            )
            st.pagination(found.pages, default=min(page_number, found.pages), key="risk_page")
            chosen = selection.selection.rows if selection else []
            if chosen:
                customer_id = int(table.iloc[chosen[0]]["customer_id"])
                detail = context.read(churn_reports.customer_prediction, customer_id)
                if detail:
                    st.subheader(f"Customer {customer_id}: {detail['probability']:.0%} ({detail['risk_level']})")
                    left, right = st.columns(2)
                    drivers = pd.DataFrame(detail["drivers"])
                    if not drivers.empty:
                        left.plotly_chart(drivers_chart(drivers), width="stretch")
                    else:
                        left.caption("No drivers: at low risk there is nothing to explain." if detail["risk_level"] == "low"
                                     else "No single factor stands out.")
                    left.markdown("\n".join(f"- {action}" for action in detail["interventions"]) or "No action needed.")
                    history = pd.DataFrame(detail["history"])
                    right.plotly_chart(probability_history_chart(history), width="stretch")
                    with st.expander("Calls to action", icon=":material/task_alt:"):
                        customer_panel(customer_id, data_day, "churn")


# Only the open tab is built and drawn; the at-risk list's filters are kept meanwhile.
keep("risk_segment", "risk_owner", "risk_page", risk_levels=list(segmentation.AT_RISK_LEVELS),
     risk_page_size=churn_reports.PAGE_SIZES[1])
at_risk_tab, card_tab, accuracy_tab = lazy_tabs(["At-risk customers", "Model card", "Accuracy over time"],
                                                key="churn_tab")

if at_risk_tab.open:
    with at_risk_tab:
        chart = pd.DataFrame(summary)
        if not chart.empty:
            st.plotly_chart(risk_levels_chart(chart), width="stretch")

        at_risk_list()


def _number(value, spec: str) -> str:
    return "n/a" if value is None else format(value, spec)


if card_tab.open:
    with card_tab:
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("ROC AUC", _number(metrics.get("roc_auc"), ".3f"))
        m2.metric("PR AUC", _number(metrics.get("pr_auc"), ".3f"))
        m3.metric("Brier score", _number(metrics.get("brier"), ".3f"), help="Lower is better.")
        m4.metric("Lift in top decile", _number(metrics.get("lift_top_decile"), ".2f") + "x")
        if metrics.get("validated", True):
            window = metrics.get("label_days") or metrics.get("horizon_days", 90)
            st.caption(
                f"Trained on cuts {', '.join(metrics.get('training_cuts', []))} with {window}-day label windows; "
                f"validated on {metrics.get('validation_cut', '?')} ({metrics.get('rows', 0):,} customers, base rate "
                f"{metrics.get('base_rate', 0):.0%}). Naive recency baseline AUC: "
                f"{_number(metrics.get('baseline_recency_auc'), '.3f')}."
                + (f" Once chosen, the model was fitted again on the training and validation cuts together "
                   f"({metrics['refit_rows']:,} rows), so it also learns the latest labels." if metrics.get("refit_rows") else "")
            )
        else:
            st.caption(f"BG/NBD fitted on {metrics.get('training_rows', 0):,} customers with "
                       f"{metrics.get('history_days', 0):,} days of orders; there is no labelled cut to validate on yet.")
        not_used = metrics.get("features_not_used") or {}
        if not_used:
            with st.expander(f"{len(not_used)} features not used, and why"):
                st.dataframe(pd.DataFrame([{"feature": FEATURE_LABELS.get(f, f), "reason": reason}
                                           for f, reason in not_used.items()]), hide_index=True, width="stretch")
        left, right = st.columns(2)
        calibration = metrics.get("calibration") or {}
        if calibration.get("predicted"):
            left.plotly_chart(calibration_chart(calibration["predicted"], calibration["observed"]), width="stretch")
        importance = pd.DataFrame(list((metrics.get("feature_importance") or {}).items()),
                                  columns=["feature", "importance"]).head(15)
        if not importance.empty:
            right.plotly_chart(importance_chart(importance), width="stretch")
        candidates = pd.DataFrame([{"algorithm": name, **values} for name, values in
                                   (metrics.get("candidates") or {}).items()])
        if not candidates.empty:
            st.markdown("**Candidates on the validation cut** (the better ROC AUC is kept)")
            st.dataframe(candidates, hide_index=True, width="stretch")
        st.markdown("**Version history**")
        versions = pd.DataFrame([
            {"id": v["id"], "version": v["version"], "algorithm": v["algorithm"], "active": v["active"],
             "roc_auc": (v["metrics"] or {}).get("roc_auc"), "training_end": v["training_end"],
             "created_at": v["created_at"]}
            for v in card["versions"]
        ])
        st.dataframe(versions, hide_index=True, width="stretch")
        if platform.allowed(viewer.role, "models.manage") and len(versions) > 1:
            with st.form("activate_model"):
                choice = st.selectbox("Activate version", versions["version"].tolist(), key="activate_version")
                if st.form_submit_button("Activate (roll back or forward)"):
                    model_id = int(versions.loc[versions["version"] == choice, "id"].iloc[0])
                    done = context.act(registry.activate, model_id,
                                       success=f"Version {choice} is active; the next refresh scores with it.")
                    if done is not None:
                        st.rerun()

if accuracy_tab.open:
    with accuracy_tab:
        accuracy = pd.DataFrame(context.cached(churn_reports.realized_accuracy) or [])
        if accuracy.empty:
            st.info(
                f"No prediction has reached its {metrics.get('horizon_days', 90)}-day horizon yet. Once one has, the "
                "refresh compares it with what happened and the realized precision and recall appear here."
            )
        else:
            left, right = st.columns(2)
            left.plotly_chart(accuracy_chart(accuracy, "precision", "Share who churned", "Realized precision by risk level"),
                              width="stretch")
            right.plotly_chart(accuracy_chart(accuracy, "recall_at_or_above", "Share of churners caught",
                                              "Realized recall at or above each level"), width="stretch")
            st.dataframe(accuracy, hide_index=True, width="stretch")
