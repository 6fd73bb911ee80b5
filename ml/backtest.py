"""Backtest: train on data up to a date, predict the next N days, and compare with what happened.

The churn model is trained exactly as the batch refresh trains it (time-based cuts ending at the
date) and scores every customer who had ordered by the date; the BG/NBD + Gamma-Gamma model is
fitted on the same history. Their predictions are then compared with the orders of the following
`horizon_days`:

- churn: ROC AUC, PR AUC and Brier score of the churn probability for "no order in the horizon";
- baseline: the AUC of BG/NBD's expected purchases (fewer expected purchases = more likely to churn);
- purchases: BG/NBD's expected purchase days against the days with an order (the model counts
  purchase days, so the actuals do too), corrected by how far BG/NBD missed the same season a
  year earlier when the history holds one (ml.clv.seasonal_factor);
- revenue: expected purchases x Gamma-Gamma expected spend against the revenue booked;
- deciles: customers ranked by churn probability, with predicted and realized figures per tenth;
- calibration: the mean predicted probability against the churn rate in ten equal-sized bins.

It runs on any as-of date with at least `MIN_HISTORY_DAYS` (8 weeks) of orders before it: the
churn model adapts to the history (ml.churn.plan_training), and when the lifetime value model
cannot be fitted the purchase and revenue predictions are null with the reason in `notes`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score
from sqlalchemy import Engine, func, select

from crm_core import platform
from db.models import REVENUE_ORDER_STATUSES, Order

from . import churn, clv
from .features import build_features
from .labels import churn_labels

MIN_HISTORY_DAYS = 56
CALIBRATION_BINS = 10


def _actuals(connection, as_of: dt.date, horizon_days: int) -> pd.DataFrame:
    start, stop = platform.end_of(as_of), platform.end_of(as_of + dt.timedelta(days=horizon_days))
    day = func.date(Order.ordered_at)
    rows = connection.execute(
        select(Order.customer_id, func.count(func.distinct(day)), func.sum(Order.total))
        .where(Order.status.in_(REVENUE_ORDER_STATUSES), Order.ordered_at >= start, Order.ordered_at < stop)
        .group_by(Order.customer_id)
    ).all()
    frame = pd.DataFrame(rows, columns=["customer_id", "actual_purchases", "actual_revenue"]).set_index("customer_id")
    return frame.astype(float)


def check_window(connection, as_of: dt.date, horizon_days: int) -> None:
    platform.check_as_of(as_of, "--as-of")
    if horizon_days < 1:
        raise platform.ValidationError("--horizon-days must be at least 1.")
    latest = platform.latest_order_date(connection)
    if latest is None:
        raise platform.ValidationError("There are no orders to backtest on.")
    first = connection.scalar(select(func.min(Order.ordered_at)).where(Order.status.in_(REVENUE_ORDER_STATUSES)))
    if first is None or (as_of - first.date()).days < MIN_HISTORY_DAYS:
        earliest = (first.date() + dt.timedelta(days=MIN_HISTORY_DAYS)).isoformat() if first else "?"
        raise platform.ValidationError(
            f"A backtest needs at least {MIN_HISTORY_DAYS // 7} weeks of orders before --as-of; the first order "
            f"is on {first.date().isoformat() if first else '?'}, so pick --as-of {earliest} or later."
        )
    if horizon_days > (latest - as_of).days:
        ends = (f"on {(as_of + dt.timedelta(days=horizon_days)).isoformat()}" if horizon_days <= (dt.date.max - as_of).days
                else f"{horizon_days:,} days after {as_of.isoformat()}")
        raise platform.ValidationError(
            f"The horizon ends {ends}, after the latest order "
            f"({latest.isoformat()}): pick an earlier --as-of or a shorter --horizon-days so the outcome is known."
        )


def calibration_table(y: np.ndarray, p: np.ndarray, bins: int = CALIBRATION_BINS) -> list[dict[str, Any]]:
    """Customers ranked by probability in `bins` equal-sized groups: mean predicted against observed."""
    order = np.argsort(p, kind="stable")
    rows = []
    for number, members in enumerate(np.array_split(order, min(bins, max(len(p), 1))), start=1):
        if len(members):
            rows.append({"bin": number, "customers": int(len(members)),
                         "mean_predicted": round(float(p[members].mean()), 4),
                         "observed_rate": round(float(y[members].mean()), 4)})
    return rows


def run_backtest(engine: Engine, as_of: dt.date, horizon_days: int) -> dict[str, Any]:
    notes: list[str] = []
    with engine.connect() as connection:
        check_window(connection, as_of, horizon_days)
        model, metrics, _cuts = churn.train(connection, as_of, horizon_days)
        X = build_features(connection, as_of)
        labels = churn_labels(connection, as_of, horizon_days)
        summary = clv.summarize(connection, as_of)
        actual = _actuals(connection, as_of, horizon_days)
    notes.extend(metrics.get("notes") or [])
    try:
        value_model = clv.LifetimeValueModel(fit_pareto=False).fit(summary)
    except clv.NotEnoughData as exc:
        value_model = None
        notes.append(f"Lifetime value not predicted: {exc}")

    frame = pd.DataFrame(index=summary.index)
    frame["probability"] = pd.Series(model.predict_proba(X), index=X.index)
    frame["churned"] = labels
    if value_model is not None:
        periods = horizon_days / value_model.time_unit_days
        with engine.connect() as connection:
            factor, season = clv.seasonal_factor(connection, as_of, horizon_days)
        notes.append(season)
        frame["predicted_purchases"] = value_model.expected_purchases(summary, periods) * factor
        frame["predicted_revenue"] = frame["predicted_purchases"] * value_model.expected_spend(summary)
    else:
        frame["predicted_purchases"] = np.nan
        frame["predicted_revenue"] = np.nan
    frame = frame.join(actual, how="left").fillna({"actual_purchases": 0.0, "actual_revenue": 0.0})
    frame = frame.dropna(subset=["probability", "churned"])
    y = frame["churned"].to_numpy(dtype=int)
    p = frame["probability"].to_numpy(dtype=float)
    two_classes = len(np.unique(y)) == 2
    valued = value_model is not None

    def total(column: str) -> float | None:
        return round(float(frame[column].sum()), 2) if valued or column.startswith("actual") else None

    ranked = frame.sort_values("probability", ascending=False, kind="stable")
    ranked["decile"] = np.arange(len(ranked)) * 10 // max(len(ranked), 1) + 1
    deciles = [
        {
            "decile": int(decile), "customers": int(len(group)),
            "mean_probability": round(float(group["probability"].mean()), 4),
            "churn_rate": round(float(group["churned"].mean()), 4),
            "predicted_purchases": round(float(group["predicted_purchases"].sum()), 2) if valued else None,
            "actual_purchases": round(float(group["actual_purchases"].sum()), 2),
            "predicted_revenue": round(float(group["predicted_revenue"].sum()), 2) if valued else None,
            "actual_revenue": round(float(group["actual_revenue"].sum()), 2),
        }
        for decile, group in ranked.groupby("decile")
    ]
    params = value_model.params_ if valued and value_model is not None else None
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
            "auc": float(roc_auc_score(y, -frame["predicted_purchases"].to_numpy())) if two_classes and valued
            else None,
        },
        "purchases": {"predicted_total": total("predicted_purchases"), "actual_total": total("actual_purchases")},
        "revenue": {"predicted_total": total("predicted_revenue"), "actual_total": total("actual_revenue")},
        "lifetime_value_model": {
            "bgnbd": {k: params["bgnbd"][k] for k in ("r", "alpha", "a", "b", "time_unit")} if params else None,
            "gamma_gamma": {k: params["gamma_gamma"][k] for k in ("p", "q", "v")} if params else None,
        },
        "deciles": deciles,
        "validation": {k: metrics.get(k) for k in ("roc_auc", "pr_auc", "validation_cut", "selected")},
        "calibration": calibration_table(y, p),
        "training": {k: metrics.get(k) for k in ("label_days", "history_days", "validated", "features_not_used")},
        "notes": notes,
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
        f"Purchases: predicted {num(result['purchases']['predicted_total'], ',.1f')}  "
        f"actual {result['purchases']['actual_total']:,.0f}",
        f"Revenue:   predicted {num(result['revenue']['predicted_total'], ',.2f')}  "
        f"actual {result['revenue']['actual_total']:,.2f}",
    ]
    if bg and gg:
        lines.append(f"BG/NBD r={bg['r']:.4f} alpha={bg['alpha']:.4f} a={bg['a']:.4f} b={bg['b']:.4f} "
                     f"(per {bg['time_unit']}); Gamma-Gamma p={gg['p']:.4f} q={gg['q']:.4f} v={gg['v']:.4f}")
    lines += [f"Note: {note}" for note in result.get("notes") or []]
    lines += [
        "",
        f"{'decile':>6} {'customers':>10} {'mean p':>7} {'churned':>8} {'pred purch':>11} {'act purch':>10} "
        f"{'pred revenue':>13} {'act revenue':>12}",
    ]
    for d in result["deciles"]:
        lines.append(
            f"{d['decile']:>6} {d['customers']:>10,} {d['mean_probability']:>7.2f} {d['churn_rate']:>8.1%} "
            f"{num(d['predicted_purchases'], ',.1f'):>11} {d['actual_purchases']:>10,.0f} "
            f"{num(d['predicted_revenue'], ',.0f'):>13} {d['actual_revenue']:>12,.0f}"
        )
    return "\n".join(lines)
