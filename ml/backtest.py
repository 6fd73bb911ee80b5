"""Backtest: train on data up to a date, predict the next N days, and compare with what happened.

The churn model is trained exactly as the batch refresh trains it (time-based cuts ending at the
date) and scores every customer who had ordered by the date; the BG/NBD + Gamma-Gamma model is
fitted on the same history. Their predictions are then compared with the orders of the following
`horizon_days`:

- churn: ROC AUC, PR AUC and Brier score of the churn probability for "no order in the horizon";
- baseline: the AUC of BG/NBD's expected purchases (fewer expected purchases = more likely to churn);
- purchases: BG/NBD's expected purchase days against the days with an order (the model counts
  purchase days, so the actuals do too);
- revenue: expected purchases x Gamma-Gamma expected spend against the revenue booked;
- deciles: customers ranked by churn probability, with predicted and realized figures per tenth.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sqlalchemy import Engine, func, select

from crm_core.analytics import end_of
from crm_core.data_dates import check_as_of, latest_order_date
from crm_core.errors import ValidationError
from db.models import REVENUE_ORDER_STATUSES, Order

from . import churn, clv
from .features import build_features
from .labels import churn_labels


def _actuals(connection, as_of: dt.date, horizon_days: int) -> pd.DataFrame:
    start, stop = end_of(as_of), end_of(as_of + dt.timedelta(days=horizon_days))
    day = func.date(Order.ordered_at)
    rows = connection.execute(
        select(Order.customer_id, func.count(func.distinct(day)), func.sum(Order.total))
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at >= start, Order.ordered_at < stop)
        .group_by(Order.customer_id)
    ).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "actual_purchases", "actual_revenue"]).set_index("customer_id")
    return frame.astype(float)


def check_window(connection, as_of: dt.date, horizon_days: int) -> None:
    check_as_of(as_of, "--as-of")
    if horizon_days < 1:
        raise ValidationError("--horizon-days must be at least 1.")
    latest = latest_order_date(connection)
    if latest is None:
        raise ValidationError("There are no orders to backtest on.")
    if horizon_days > (latest - as_of).days:
        ends = (f"on {(as_of + dt.timedelta(days=horizon_days)).isoformat()}" if horizon_days <= (dt.date.max - as_of).days
                else f"{horizon_days:,} days after {as_of.isoformat()}")
        raise ValidationError(
            f"The horizon ends {ends}, after the latest order "
            f"({latest.isoformat()}): pick an earlier --as-of or a shorter --horizon-days so the outcome is known."
        )


def run_backtest(engine: Engine, as_of: dt.date, horizon_days: int) -> dict[str, Any]:
    with engine.connect() as connection:
        check_window(connection, as_of, horizon_days)
        model, metrics, _cuts = churn.train(connection, as_of, horizon_days)
        X = build_features(connection, as_of)
        labels = churn_labels(connection, as_of, horizon_days)
        summary = clv.summarize(connection, as_of)
        actual = _actuals(connection, as_of, horizon_days)
    value_model = clv.LifetimeValueModel().fit(summary)
    periods = horizon_days / value_model.time_unit_days

    frame = pd.DataFrame(index=summary.index)
    frame["probability"] = pd.Series(model.predict_proba(X), index=X.index)
    frame["churned"] = labels
    frame["predicted_purchases"] = value_model.expected_purchases(summary, periods)
    frame["predicted_revenue"] = frame["predicted_purchases"] * value_model.expected_spend(summary)
    frame = frame.join(actual, how="left").fillna({"actual_purchases": 0.0, "actual_revenue": 0.0})
    y = frame["churned"].to_numpy(dtype=int)
    p = frame["probability"].to_numpy(dtype=float)
    two_classes = len(np.unique(y)) == 2

    ranked = frame.sort_values("probability", ascending=False, kind="stable")
    ranked["decile"] = np.arange(len(ranked)) * 10 // max(len(ranked), 1) + 1
    deciles = [
        {
            "decile": int(decile), "customers": int(len(group)),
            "mean_probability": round(float(group["probability"].mean()), 4),
            "churn_rate": round(float(group["churned"].mean()), 4),
            "predicted_purchases": round(float(group["predicted_purchases"].sum()), 2),
            "actual_purchases": round(float(group["actual_purchases"].sum()), 2),
            "predicted_revenue": round(float(group["predicted_revenue"].sum()), 2),
            "actual_revenue": round(float(group["actual_revenue"].sum()), 2),
        }
        for decile, group in ranked.groupby("decile")
    ]
    params = value_model.params_
    return {
        "as_of": as_of.isoformat(),
        "horizon_days": horizon_days,
        "customers": int(len(frame)),
        "churn": {
            "model": model.algorithm,
            "auc": float(roc_auc_score(y, p)) if two_classes else None,
            "pr_auc": float(average_precision_score(y, p)) if two_classes else None,
            "brier": float(brier_score_loss(y, p)),
            "base_rate": float(y.mean()),
        },
        "baseline_bgnbd": {
            "auc": float(roc_auc_score(y, -frame["predicted_purchases"].to_numpy())) if two_classes else None,
        },
        "purchases": {
            "predicted_total": round(float(frame["predicted_purchases"].sum()), 2),
            "actual_total": round(float(frame["actual_purchases"].sum()), 2),
        },
        "revenue": {
            "predicted_total": round(float(frame["predicted_revenue"].sum()), 2),
            "actual_total": round(float(frame["actual_revenue"].sum()), 2),
        },
        "lifetime_value_model": {
            "bgnbd": {k: params["bgnbd"][k] for k in ("r", "alpha", "a", "b", "time_unit")},
            "gamma_gamma": {k: params["gamma_gamma"][k] for k in ("p", "q", "v")},
        },
        "deciles": deciles,
        "validation": {k: metrics.get(k) for k in ("roc_auc", "pr_auc", "validation_cut", "selected")},
    }


def format_report(result: dict[str, Any]) -> str:
    """The readable table `crm backtest` prints."""
    c, b = result["churn"], result["baseline_bgnbd"]
    bg, gg = result["lifetime_value_model"]["bgnbd"], result["lifetime_value_model"]["gamma_gamma"]

    def num(value, spec=".3f"):
        return "n/a" if value is None else format(value, spec)

    lines = [
        f"Backtest as of {result['as_of']}, horizon {result['horizon_days']} days, "
        f"{result['customers']:,} customers with an order by then",
        "",
        f"Churn ({c['model'].replace('_', ' ')}): AUC {num(c['auc'])}  PR AUC {num(c['pr_auc'])}  "
        f"Brier {num(c['brier'])}  base rate {c['base_rate']:.1%}",
        f"Baseline (BG/NBD expected purchases): AUC {num(b['auc'])}",
        f"Purchases: predicted {result['purchases']['predicted_total']:,.1f}  "
        f"actual {result['purchases']['actual_total']:,.0f}",
        f"Revenue:   predicted {result['revenue']['predicted_total']:,.2f}  "
        f"actual {result['revenue']['actual_total']:,.2f}",
        f"BG/NBD r={bg['r']:.4f} alpha={bg['alpha']:.4f} a={bg['a']:.4f} b={bg['b']:.4f} (per {bg['time_unit']}); "
        f"Gamma-Gamma p={gg['p']:.4f} q={gg['q']:.4f} v={gg['v']:.4f}",
        "",
        f"{'decile':>6} {'customers':>10} {'mean p':>7} {'churned':>8} {'pred purch':>11} {'act purch':>10} "
        f"{'pred revenue':>13} {'act revenue':>12}",
    ]
    for d in result["deciles"]:
        lines.append(
            f"{d['decile']:>6} {d['customers']:>10,} {d['mean_probability']:>7.2f} {d['churn_rate']:>8.1%} "
            f"{d['predicted_purchases']:>11,.1f} {d['actual_purchases']:>10,.0f} "
            f"{d['predicted_revenue']:>13,.0f} {d['actual_revenue']:>12,.0f}"
        )
    return "\n".join(lines)
