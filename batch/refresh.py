"""The batch refresh: models, analytics snapshot, clusters, segment memberships and lifecycle, as of a date.

Each step commits on its own, so a long refresh shows progress, and one failing step never blocks
the others: its failure is recorded with the reason and the refresh goes on. When a model fails,
the snapshot, RFM, clusters, segments and lifecycle still land (that model's columns stay empty);
only steps that read a failed step's output (clusters, segments and lifecycle read the snapshot)
are skipped, with that as the reason. Every run and step is recorded (batch.run_log). On PostgreSQL the
model steps run at the same time, and the snapshot stages its aggregates alongside them, writing
its rows once they are done.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, nullcontext, suppress
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session
from threadpoolctl import threadpool_limits

from batch.run_log import DatabaseRunLog, NoRunLog, RunLog
from crm_core import (
    campaigns,
    customers,
    journeys,
    loyalty,
    platform,
    referrals,
    reporting,
    segmentation,
    service,
    social,
    success,
    vouchers,
)
from db.models import CustomerAnalytics, CustomerSegment, utcnow
from ml import churn, clv, clv_reports, forecast, health, health_reports, registry, risk, uplift
from ml.clusters import FEATURES, BehaviourClusterer, describe

log = logging.getLogger(__name__)

MIN_CUSTOMERS_TO_CLUSTER = 50
CLUSTER_TRAINING_SAMPLE = 50_000

Progress = Callable[[int, int, str, str], None]


@dataclass(frozen=True)
class StepOutcome:
    """What a step did: a one-line detail, the rows it wrote, and ok / skipped / failed."""

    detail: str
    rows: int | None = None
    status: str = "ok"


def skipped(reason: str) -> StepOutcome:
    return StepOutcome(f"skipped: {reason}", None, "skipped")


def _outcome(value: StepOutcome | str) -> StepOutcome:
    if isinstance(value, StepOutcome):
        return value
    if value.startswith("skipped: "):
        return StepOutcome(value, None, "skipped")
    return StepOutcome(value)


@dataclass(frozen=True)
class StepRecord:
    label: str
    seconds: float
    detail: str
    status: str = "ok"
    rows: int | None = None


@dataclass
class RefreshReport:
    as_of: dt.date
    steps: list[StepRecord] = field(default_factory=list)
    seconds: float = 0.0  # wall clock: less than the sum of the steps when some ran together
    run_id: int | None = None

    @property
    def failed(self) -> list[StepRecord]:
        return [s for s in self.steps if s.status == "failed"]

    @property
    def status(self) -> str:
        if not self.failed:
            return "ok"
        return "failed" if len(self.failed) == len(self.steps) else "partial"


def rfm_rules(name: str) -> dict:
    return {"all": [{"field": "rfm_segment", "op": "eq", "value": name}]}


def _snapshot(engine: Engine, as_of: dt.date, now: dt.datetime,
              before_write: Callable[[], None] | None = None) -> StepOutcome:
    timings: dict[str, float] = {}
    with platform.unit_of_work(engine) as session:
        rows = segmentation.refresh_snapshot(session, as_of, refreshed_at=now, timings=timings,
                                          before_write=before_write)
    started = time.perf_counter()
    segmentation.tidy_after_rewrite(engine)
    timings["vacuum and statistics"] = round(time.perf_counter() - started, 2)
    detail = f"{rows:,} customers; " + ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in timings.items())
    return StepOutcome(detail, rows)


def _segment_named(session: Session, name: str) -> CustomerSegment | None:
    return session.scalar(select(CustomerSegment).where(CustomerSegment.name == name))


def _clusters(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    rows = session.execute(
        select(CustomerAnalytics.customer_id, *[getattr(CustomerAnalytics, f) for f in FEATURES])
        .where(CustomerAnalytics.order_count > 0)
        .order_by(CustomerAnalytics.customer_id)
    ).all()
    if len(rows) < MIN_CUSTOMERS_TO_CLUSTER:
        return skipped(f"{len(rows)} customers with orders (need {MIN_CUSTOMERS_TO_CLUSTER})")
    frame = pd.DataFrame(rows, columns=["customer_id", *FEATURES])
    X = frame[list(FEATURES)].astype(float)
    rng = np.random.default_rng(0)
    train = X.iloc[rng.choice(len(X), size=min(CLUSTER_TRAINING_SAMPLE, len(X)), replace=False)]
    model = BehaviourClusterer(random_state=0).fit(train)
    labels, confidence = model.predict_confidence(X)
    profiles = describe(X, labels)

    current = set()
    for profile in profiles:
        segment = _segment_named(session, profile.name)
        description = (
            f"k-means cluster of {profile.size:,} customers: median {profile.means['order_count']:.0f} orders, "
            f"€{profile.means['total_revenue']:,.0f} revenue, {profile.means['days_since_last_order']:.0f} days "
            "since the last order."
        )
        if segment is None:
            segment = segmentation.create_segment(
                session, platform.SYSTEM, profile.name, "cluster", "static", description=description, is_system=True,
            )
        else:
            segment.description = description
            segment.is_active = True
        member = labels == profile.label
        assignments = list(zip(frame["customer_id"][member].tolist(), confidence[member].round(4).tolist(), strict=True))
        segmentation.replace_model_memberships(session, segment.id, assignments, now)
        current.add(segment.id)
    for stale in session.scalars(
        select(CustomerSegment).where(CustomerSegment.segment_type == "cluster", CustomerSegment.id.not_in(current))
    ):
        segmentation.replace_model_memberships(session, stale.id, [], now)
        stale.is_active = False
    registry.register(
        session, "cluster", "kmeans", model,
        params={"k": model.n_clusters_, "k_range": list(model.k_range)},
        features=list(model.features_), training_end=as_of,
        metrics={"silhouette": model.silhouettes_[model.n_clusters_],
                 "silhouette_by_k": {str(k): v for k, v in model.silhouettes_.items()},
                 "features_not_used": model.features_not_used_},
    )
    return StepOutcome(f"{len(profiles)} clusters over {len(frame):,} customers", len(frame))


def _segments(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    for name in segmentation.RFM_SEGMENTS:
        if _segment_named(session, name) is None:
            segmentation.create_segment(
                session, platform.SYSTEM, name, "rfm", "dynamic", rules=rfm_rules(name), priority=50, is_system=True,
                description=f"RFM segment '{name}' (see the RFM grid in the README).",
            )
    result = segmentation.refresh_memberships(session, as_of, now=now)
    entered = sum(r["entered"] for r in result.values())
    left = sum(r["left"] for r in result.values())
    return StepOutcome(f"{len(result)} dynamic segments, {entered:,} entered, {left:,} left", entered + left)


def _lifecycle(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    counts = segmentation.evaluate_lifecycle(session, as_of, now=now)
    detail = ", ".join(f"{stage} {n:,}" for stage, n in counts.items() if isinstance(n, int))
    changed = counts.get("changed")
    return StepOutcome(detail, changed if isinstance(changed, int) else None)


def _sales_rollups(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    with platform.unit_of_work(engine) as session:
        result = reporting.refresh_sales_rollups(session, as_of, now)
    return StepOutcome(f"{result['days']:,} days from {result['from']}, orders placed before {result['cutoff']}",
                       int(result["days"]))


def _communication_rollups(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    with platform.unit_of_work(engine) as session:
        result = service.refresh_communication_rollup(session, as_of, now)
    return StepOutcome(f"{result['messages']:,} messages in {result['rows']:,} rollup rows from {result['from']}",
                       result["rows"])


def _value_summary(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    summary = clv_reports.refresh_value_summary(session, as_of)
    if summary is None:
        return skipped("no customer has a lifetime value yet")
    return StepOutcome(f"{summary['customers_scored']:,} customers' lifetime values summarised", 1)


def _lifecycle_rollups(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    result = segmentation.refresh_lifecycle_rollups(session, as_of, now)
    return StepOutcome(f"{result['stages']} stages, {result['flow_rows']:,} flow rows, "
                       f"{result['cohort_cells']:,} cohort cells", result["flow_rows"] + result["cohort_cells"])


def _campaigns(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    """Running win-back campaigns enrol the customers who qualify now (each once per campaign),
    hold out their control share and send the rest their offer; campaigns past their end finish."""
    at = min(now, platform.end_of(as_of) - dt.timedelta(seconds=1))
    scorers: dict[int | None, uplift.UpliftScorer | None] = {}

    def scorer_for(campaign) -> uplift.UpliftScorer | None:
        if campaign.uplift_share is None:
            return None
        if campaign.uplift_model_id not in scorers:
            scorers[campaign.uplift_model_id] = uplift.scorer_for_model(session, campaign.uplift_model_id)
        return scorers[campaign.uplift_model_id]

    expired = vouchers.expire_vouchers(session, platform.SYSTEM, at)  # campaign and referral vouchers alike
    totals = campaigns.enrol_running_campaigns(session, platform.SYSTEM, at, scorer_for=scorer_for)
    measured = campaigns.store_results(session, at)  # what the Campaigns page shows until the next refresh
    stored = f"; results of {measured} campaigns stored" if measured else ""
    if not totals["campaigns"] and not totals["finished"]:
        if expired or measured:
            return StepOutcome(f"no running campaigns; {expired:,} unused vouchers expired{stored}", expired)
        return skipped("no running campaigns")
    detail = (f"{totals['campaigns']} running campaigns: {totals['enrolled']:,} customers enrolled, "
              f"{totals['sent']:,} messages sent")
    if totals["finished"]:
        detail += f"; {totals['finished']} reached their end date"
    if expired:
        detail += f"; {expired:,} unused vouchers expired"
    return StepOutcome(detail + stored, totals["enrolled"])


def _journeys(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    """Paths to the first purchase and from it to churn (after lifecycle: stage changes are steps)."""
    result = journeys.refresh_journeys(session, as_of, now)
    if not result["customers"]:
        return skipped("no customers had signed up or ordered by the date")
    run = journeys.latest_run(session, platform.SYSTEM)
    missing = run["missing"] if run else []
    detail = (f"{result['customers']:,} customers, {result['buyers']:,} buyers, {result['churned']:,} churned; "
              f"{result['rows']:,} rollup rows")
    if missing:
        detail += f"; no {', '.join(missing)}"
    return StepOutcome(detail, result["rows"])


def _social_topics(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    """The topics, categories, brands and products each mention names, again: the catalogue changes."""
    found = social.tag_mentions(session)
    if not found["mentions"]:
        return skipped("no social mentions")
    return StepOutcome(f"{found['mentions']:,} mentions name {found['terms']:,} topics, categories, brands or products",
                       found["terms"])


def _segment_rollups(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    result = segmentation.refresh_segment_rollups(session, as_of)
    return StepOutcome(f"{result['segments']:,} segments counted, {result['profiles']:,} profiles", result["segments"])


def _privacy_rollups(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    counted = customers.refresh_consent_summary(session, as_of)
    return StepOutcome(f"{counted:,} current consent choices counted", counted)


def _churn_rollups(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    result = segmentation.refresh_churn_rollups(session)
    if result["as_of"] is None:
        return skipped("no churn predictions yet")
    return StepOutcome(f"{result['ranked']:,} customers ranked by expected loss (predictions of {result['as_of']})",
                       result["ranked"])


def _churn(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    result = churn.refresh_churn(engine, as_of)
    if result.get("status") == "skipped":
        return skipped(result["reason"])
    return StepOutcome(result["detail"], result.get("scored"))


def _loyalty(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    """Points for recent orders (idempotent, so the overlap with the last run is harmless), points back
    from orders cancelled, returned or refunded, then expiry."""
    earned = loyalty.earn_for_orders(engine, as_of - dt.timedelta(days=LOYALTY_LOOKBACK_DAYS))
    reversed_ = loyalty.reverse_for_orders(engine, as_of - dt.timedelta(days=365))
    expired = loyalty.expire_points(engine, as_of)
    with platform.unit_of_work(engine) as session:  # the Loyalty page's expiry outlook, computed once
        loyalty.refresh_expiry_outlook(session, as_of)
        loyalty.refresh_monthly_activity(session, as_of)
    detail = (f"{earned.get('entries', 0):,} earn entries ({earned.get('points', 0):,} points), "
              f"{reversed_.get('points', 0):,} points taken back from {reversed_.get('entries', 0):,} unpaid orders, "
              f"{expired.get('points', 0):,} points expired on {expired.get('accounts', 0):,} accounts")
    rows = earned.get("entries", 0) + reversed_.get("entries", 0) + expired.get("accounts", 0)
    return StepOutcome(detail, rows)


def _sla(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    found = service.run_sla_checks(engine, now)
    return StepOutcome(f"{found.get('tickets_breached', 0):,} tickets newly breached, "
                       f"{found.get('escalated', 0):,} escalated", found.get("tickets_breached", 0))


def _lifetime_value(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    result = clv.refresh_lifetime_value(engine, as_of)
    if result.get("status") == "skipped":
        return skipped(result.get("reason", "no reason given"))
    scored = result.get("customers_scored", 0)
    return StepOutcome(f"{scored:,} customers, "
                       f"12-month CLV €{(result.get('metrics') or {}).get('clv_12m_total', 0):,.0f}", scored)


def _health(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    result = health.score_health(engine, as_of)
    if result.get("status") == "skipped":
        return skipped(result.get("reason", "no reason given"))
    with platform.unit_of_work(engine) as session:  # the Health page's overview of the date, computed once
        health_reports.store_overview(session, as_of)
    levels = result.get("levels") or {}
    detail = ", ".join(f"{level} {count:,}" for level, count in levels.items()) or str(result)
    no_data = result.get("components_without_data") or []
    if no_data:
        detail += f"; no data for {', '.join(no_data)}"
    return StepOutcome(detail, result.get("customers"))


def _forecasts_outcome(result: dict) -> StepOutcome:
    parts = []
    fitted = 0
    for metric, detail in (result.get("metrics") or {}).items():
        if detail.get("status") == "fitted":
            fitted += 1
            error = detail.get("mape")
            parts.append(f"{metric} MAPE {error:.1%}" if error is not None else f"{metric} fitted")
        else:
            parts.append(f"{metric} skipped ({detail.get('reason', 'no reason given')})")
    if not fitted:
        return skipped("; ".join(parts) or "nothing to forecast")
    return StepOutcome(", ".join(parts), result.get("rows"))


def _prepare_forecasts(engine: Engine, as_of: dt.date, now: dt.datetime) -> Callable[[], StepOutcome]:
    fitted = forecast.fit_forecasts(engine, as_of)
    return lambda: _forecasts_outcome(forecast.store_forecasts(engine, fitted))


def _forecasts(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    return _prepare_forecasts(engine, as_of, now)()


def _risk_outcome(result: dict) -> StepOutcome:
    if result.get("status") == "skipped":
        return skipped(result.get("reason", "no reason given"))
    detail = (f"{result['scored']:,} customers, {result['level_high'] + result['level_critical']:,} high or critical; "
              f"{result['reviews_opened']:,} reviews opened, {result['decisions']:,} decisions; "
              + "; ".join(result["notes"]))
    if result["left_out"]:
        detail += "; left out: " + ", ".join(f"{name} ({why})" for name, why in result["left_out"].items())
    return StepOutcome(detail, result["scored"])


def _prepare_risk(engine: Engine, as_of: dt.date, now: dt.datetime) -> Callable[[], StepOutcome]:
    computed = risk.compute_risk_signals(engine, as_of)
    return lambda: _risk_outcome(risk.store_risk(engine, computed, now))


def _risk(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    return _prepare_risk(engine, as_of, now)()


def _referrals(session: Session, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    done = referrals.process_referrals(session, platform.SYSTEM, now)
    referrals.refresh_referral_summary(session, as_of)  # the page's referred-against-others comparison
    return StepOutcome(f"{done['checked']:,} referrals checked ({done['accepted']:,} accepted, {done['rejected']:,} "
                       f"rejected, {done['review']:,} to review); {done['held']:,} rewards held, {done['paid']:,} paid, "
                       f"{done['reversed']:,} reversed, {done['over_allowance']:,} over an allowance",
                       done["checked"] + done["paid"] + done["reversed"])


def _success(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome:
    """CTA rules: open, hold out, auto-close; skipped when every rule lacks its source."""
    result = success.refresh_success(engine, as_of, now)
    rules = result["rules"]
    ran = {key: r for key, r in rules.items() if "skipped" not in r}
    skipped_rules = [f"{success.TRIGGER_LABELS[key]} ({r['skipped']})" for key, r in rules.items() if "skipped" in r]
    if not ran:
        return skipped("no rule has its source: " + "; ".join(skipped_rules))
    opened = sum(r["opened"] for r in ran.values())
    closed = sum(r["auto_closed"] for r in ran.values())
    churned = sum(r["closed_churned"] for r in ran.values())
    held = sum(r["held_out"] for r in ran.values())
    detail = (f"{opened:,} CTAs opened, {held:,} held out for comparison, {closed:,} closed as their trigger cleared"
              + (f" ({churned:,} of them because the account churned)" if churned else "")
              + f", {result['woke']:,} woke from snooze; the rules hold for: "
              + ", ".join(f"{success.TRIGGER_LABELS[key]} {r['active']:,} customers" for key, r in ran.items()))
    if skipped_rules:
        detail += "; skipped: " + "; ".join(skipped_rules)
    return StepOutcome(detail, opened + closed + held)


Step = Callable[[Engine, dt.date, dt.datetime], StepOutcome | str]


def _in_session(step: Callable[[Session, dt.date, dt.datetime], StepOutcome | str]) -> Step:
    """A step that works in one session, committed when it returns."""

    def run(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome | str:
        with platform.unit_of_work(engine) as session:
            return step(session, as_of, now)

    run.__name__ = step.__name__
    return run


LOYALTY_LOOKBACK_DAYS = 35

# Order matters: the models, forecasts and risk scores read the source tables and store their outputs
# in their own tables; the snapshot then writes each customer's row once, model outputs included; clusters,
# segments and lifecycle rules read the snapshot (lifecycle: the stored churn probability too).
STEPS: tuple[tuple[str, Step], ...] = (
    ("Loyalty points: earn for recent orders, expire old points", _loyalty),
    ("SLA checks: record breaches, escalate", _sla),
    ("Churn model: train when due, score everyone", _churn),
    ("Lifetime value: BG/NBD, MBG/NBD and Gamma-Gamma", _lifetime_value),
    ("Account health scores", _health),
    ("Forecasts of revenue, orders and new customers", _forecasts),
    ("Daily sales rollups for the executive overview", _sales_rollups),
    ("Communications rollup: messages per day, channel and campaign by funnel stage", _communication_rollups),
    ("Risk scores: signals, rules, anomaly model, reviews", _risk),
    ("Analytics snapshot and RFM scores", _snapshot),
    ("Behavioural clusters", _in_session(_clusters)),
    ("Segment memberships", _in_session(_segments)),
    ("Lifecycle stages", _in_session(_lifecycle)),
    ("Lifecycle rollups: stage counts, time in stage, flows, cohorts", _in_session(_lifecycle_rollups)),
    ("Segment rollups: members, revenue and profiles", _in_session(_segment_rollups)),
    ("Churn rollups: risk by level, owner and segment; the at-risk ranking", _in_session(_churn_rollups)),
    ("Privacy rollup: current consent choices per purpose", _in_session(_privacy_rollups)),
    ("Customer value summary: distributions of lifetime value", _in_session(_value_summary)),
    ("Referrals: fraud checks, held rewards, payouts and reversals", _in_session(_referrals)),
    ("Win-back campaigns: enrol newly qualifying customers", _in_session(_campaigns)),
    ("Calls to action: rules open, hold out and close CTAs", _success),
    ("Customer journeys: paths to the first purchase and to churn", _in_session(_journeys)),
    ("Social mentions: topics and products they name", _in_session(_social_topics)),
)
# Steps a backfill over past dates skips: they describe the present only (CTAs are today's work).
PRESENT_ONLY = frozenset({"_loyalty", "_sla", "_clusters", "_forecasts", "_risk", "_referrals", "_campaigns", "_success",
                          "_journeys", "_social_topics"})
# Steps that read another step's output: when that one failed they are skipped, not run on stale data.
NEEDS = {"_clusters": "_snapshot", "_segments": "_snapshot", "_lifecycle": "_snapshot",
         "_lifecycle_rollups": "_lifecycle", "_segment_rollups": "_segments", "_churn_rollups": "_snapshot",
         "_value_summary": "_snapshot", "_campaigns": "_snapshot", "_success": "_snapshot"}


# Steps that read only the source tables and write only their own: on PostgreSQL they run at the
# same time (one thread each), so the database works on one while Python fits or scores another.
CONCURRENT = frozenset({"_churn", "_lifetime_value", "_health", "_forecasts", "_sales_rollups",
                        "_communication_rollups", "_risk"})
# Steps that can read and compute ahead of their turn: the preparer reads the source tables (as of
# the date, so what earlier steps write does not change its result) and computes, writing nothing,
# and returns the step's write. On SQLite, where steps run one after another (one writer), the
# batch prepares these in a second thread from the start while the others run, then writes each in
# its turn; elsewhere a step is its preparer followed by its write.
Prepared = Callable[[], StepOutcome | str]
AHEAD: dict[str, Callable[[Engine, dt.date, dt.datetime], Prepared]] = {
    "_forecasts": _prepare_forecasts,
    "_risk": _prepare_risk,
}
# Joins that batch when it comes right after it: stages its aggregates alongside the models and
# waits for them before writing the rows that carry their outputs.
STAGES_ALONGSIDE = "_snapshot"


def step_key(step: Step) -> str:
    """The name a step is recorded under (`churn`, `snapshot`, ...)."""
    return step.__name__.lstrip("_")


def _batches(steps: list[tuple[str, Step]], concurrent: bool) -> list[list[tuple[str, Step]]]:
    """Consecutive CONCURRENT steps (and a STAGES_ALONGSIDE step right after them) form one batch
    when `concurrent`; every other step is a batch of its own."""
    batches: list[list[tuple[str, Step]]] = []
    for step in steps:
        name = step[1].__name__
        previous = batches[-1] if batches else []
        joins = concurrent and previous and all(s[1].__name__ in CONCURRENT for s in previous) and (
            name in CONCURRENT or name == STAGES_ALONGSIDE)
        if joins:
            previous.append(step)
        else:
            batches.append([step])
    return batches


def _failure_reason(exc: BaseException) -> str:
    """One line for the run record and the pages: the domain message, or the error's type and text."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, platform.DomainError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


# A step that finds SQLite busy runs again (each of its units of work rolled back whole): a step that
# reads and then writes fails at once when the app committed in between (a sign-in, a saved form).
BUSY_ATTEMPTS = 3


def _timed(step: Step, engine: Engine, as_of: dt.date, now: dt.datetime, run_log: RunLog) -> StepRecord:
    """Run one step; a failure becomes a failed record (the trace goes to the log), never an exception."""
    key = step_key(step)
    run_log.step_started(key)
    started = time.perf_counter()
    for attempt in range(1, BUSY_ATTEMPTS + 1):
        try:
            outcome = _outcome(step(engine, as_of, now))
        except Exception as exc:  # noqa: BLE001 - one failing step never blocks the others
            if attempt < BUSY_ATTEMPTS and platform.database_was_busy(exc):
                log.warning("Refresh step %s found the database busy (as of %s); running it again", key, as_of)
                time.sleep(attempt)
                continue
            log.exception("Refresh step %s failed (as of %s)", key, as_of)
            outcome = StepOutcome(f"failed: {_failure_reason(exc)}", None, "failed")
        break
    seconds = time.perf_counter() - started
    run_log.step_finished(key, outcome.status, seconds, outcome.detail, outcome.rows)
    return StepRecord("", seconds, outcome.detail, outcome.status, outcome.rows)


def run_refresh(
    engine: Engine,
    as_of: dt.date | None = None,
    progress: Progress | None = None,
    now: dt.datetime | None = None,
    include_clusters: bool = True,
    concurrent: bool | None = None,
    run_log: RunLog | None = None,
    triggered_by: str = "system",
    actor: platform.Actor = platform.SYSTEM,
) -> RefreshReport:
    """Run every step as of the end of `as_of` and record the run.

    `as_of` defaults to the data date: today, or the latest order's date for historical data (see
    crm_core/platform/dates.py). A date after tomorrow or before 1900 is refused.

    `now` stamps memberships and stage changes (default: the current time, or with the default
    as-of on historical data late on that date); a backfill over past dates passes the end of each
    date so history reads as if the refresh had run then.
    `concurrent` (default: on PostgreSQL) runs the independent model steps at the same time; SQLite
    allows one writer, so there they run one after another. Progress is reported, and the report
    lists the steps, in STEPS order; `report.seconds` is the wall-clock total. A failing step is
    recorded as failed and the others still run; `report.failed` lists them. `run_log` (default:
    the database) records the run; `triggered_by` names who asked for it. `actor` (the batch's system
    actor, or the admin who started it) must be allowed to run the refresh; the steps act as the batch.
    """
    platform.require(actor, "refresh.run")
    if as_of is None:
        data = platform.data_date(engine)
        as_of, now = data.day, now or data.run_time()
    platform.check_as_of(as_of)
    now = now or utcnow()
    if concurrent is None:
        concurrent = engine.dialect.name == "postgresql"
    if run_log is None:
        run_log = DatabaseRunLog(engine, triggered_by) if isinstance(engine, Engine) else NoRunLog()
    report = RefreshReport(as_of)
    started = time.perf_counter()
    steps = [s for s in STEPS if include_clusters or s[1].__name__ not in PRESENT_ONLY]
    report.run_id = run_log.start(as_of, [(step_key(step), label) for label, step in steps])
    ahead = None if concurrent else _Ahead(steps, engine, as_of, now)
    done = 0
    statuses: dict[str, str] = {}

    def finished(label: str, record: StepRecord) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, len(steps), label, record.detail)

    try:
        for batch in _batches(steps, concurrent):
            blocked = {label: NEEDS[step.__name__] for label, step in batch
                       if statuses.get(NEEDS.get(step.__name__, "")) == "failed"}
            results: dict[str, StepRecord] = {}
            for label, needed in blocked.items():
                outcome = skipped(f"the {needed.lstrip('_')} step failed")
                step = dict(batch)[label]
                run_log.step_finished(step_key(step), outcome.status, 0.0, outcome.detail, None)
                results[label] = StepRecord(label, 0.0, outcome.detail, outcome.status)
                finished(label, results[label])
            runnable = [(label, step) for label, step in batch if label not in blocked]
            if len(runnable) == 1:
                label, step = runnable[0]
                with ahead.sharing() if ahead else nullcontext():
                    results[label] = _timed(ahead.step(step) if ahead else step, engine, as_of, now, run_log)
                finished(label, results[label])
            elif runnable:
                results.update(_run_together(runnable, engine, as_of, now, finished, run_log))
            for label, step in batch:
                record = results[label]
                report.steps.append(StepRecord(label, record.seconds, record.detail, record.status, record.rows))
                statuses[step.__name__] = record.status
    finally:
        if ahead:
            ahead.close()
        report.seconds = time.perf_counter() - started
        run_log.finish(report.status if len(report.steps) == len(steps) else "failed", report.seconds)
    return report


def _behind_the_main_lane(prepare: Callable[[Engine, dt.date, dt.datetime], Prepared], engine: Engine,
                          as_of: dt.date, now: dt.datetime) -> Prepared:
    """Prepare with one thread of BLAS and OpenMP, at the lowest CPU priority (Linux schedules threads
    on their own), so the preparation takes what the steps in turn leave of the cores."""
    if hasattr(os, "setpriority"):
        with suppress(OSError):  # not allowed here: prepare at the usual priority
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)
    with threadpool_limits(limits=1):
        return prepare(engine, as_of, now)


class _Ahead:
    """The AHEAD steps of a run whose steps go one after another: their preparers run in order in one
    thread of their own from the start, and each step, in its turn, waits for its preparation (a
    failed preparation fails the step, with its reason) and writes."""

    def __init__(self, steps: list[tuple[str, Step]], engine: Engine, as_of: dt.date, now: dt.datetime) -> None:
        names = [step.__name__ for _, step in steps if step.__name__ in AHEAD]
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="refresh-ahead") if names else None
        self.futures: dict[str, Future] = {}
        if self.pool is not None:
            self.futures = {name: self.pool.submit(_behind_the_main_lane, AHEAD[name], engine, as_of, now)
                            for name in names}

    def step(self, step: Step) -> Step:
        future = self.futures.get(step.__name__)
        if future is None:
            return step

        def run(engine: Engine, as_of: dt.date, now: dt.datetime) -> StepOutcome | str:
            return future.result()()

        run.__name__ = step.__name__
        return run

    def sharing(self) -> AbstractContextManager:
        """While a preparation runs, a step in turn uses one OpenMP thread: the other core is busy, and
        a team of two threads would spin at every parallel region (scoring gradient boosting is
        thousands of them)."""
        if all(future.done() for future in self.futures.values()):
            return nullcontext()
        return threadpool_limits(limits=1, user_api="openmp")

    def close(self) -> None:
        """Cancel what has not started (the run stopped early) and wait for what has."""
        if self.pool is not None:
            for future in self.futures.values():
                future.cancel()
            self.pool.shutdown(wait=True)


def _run_together(batch: list[tuple[str, Step]], engine: Engine, as_of: dt.date, now: dt.datetime,
                  finished: Callable[[str, StepRecord], None], run_log: RunLog) -> dict[str, StepRecord]:
    """Run the steps in threads, reporting each as it finishes (from this thread).

    A STAGES_ALONGSIDE step gets a `before_write` that waits until every model step is done, so the
    rows it writes carry their outputs (a failed model's columns stay empty).
    """
    models = [label for label, step in batch if step.__name__ in CONCURRENT]
    remaining = len(models)
    lock = threading.Lock()
    models_done = threading.Event()
    if not models:
        models_done.set()

    def model_finished(future: Future) -> None:
        nonlocal remaining
        with lock:
            remaining -= 1
            if remaining == 0:
                models_done.set()

    results: dict[str, StepRecord] = {}
    # The steps are the parallelism: BLAS pools (process-wide) get one thread while they overlap.
    # OpenMP settings are per thread, so the churn step limits its own gradient boosting on small data.
    with threadpool_limits(limits=1), ThreadPoolExecutor(max_workers=len(batch), thread_name_prefix="refresh") as pool:
        futures: dict[Future, str] = {}
        for label, step in batch:
            run = step if label in models else _alongside(step, models_done.wait)
            future = pool.submit(_timed, run, engine, as_of, now, run_log)
            if label in models:
                future.add_done_callback(model_finished)
            futures[future] = label
        for future in as_completed(futures):
            label = futures[future]
            results[label] = future.result()
            finished(label, results[label])
    return results


def _alongside(step: Step, before_write: Callable[[], object]) -> Step:
    """The staging step, told to wait for the models before it writes (it takes `before_write`)."""
    staging: Callable[..., StepOutcome | str] = step
    run = functools.partial(staging, before_write=before_write)
    run.__name__ = step.__name__  # type: ignore[attr-defined]  # the run log records steps by name
    return run


def month_ends_before(day: dt.date, months: int) -> list[dt.date]:
    """The last day of each of the `months` calendar months before `day`'s month, oldest first."""
    ends, cursor = [], day.replace(day=1)
    for _ in range(months):
        cursor -= dt.timedelta(days=1)
        ends.append(cursor)
        cursor = cursor.replace(day=1)
    return ends[::-1]


def backfill(engine: Engine, until: dt.date, months: int, progress: Progress | None = None,
             triggered_by: str = "system", actor: platform.Actor = platform.SYSTEM) -> list[dt.date]:
    """Refresh as of each past month end (without re-clustering), so stage and segment history exist."""
    platform.require(actor, "refresh.run")
    platform.check_backfill_months(months, platform.check_as_of(until))
    dates = month_ends_before(until, months)
    for index, as_of in enumerate(dates, start=1):
        report = run_refresh(engine, as_of, now=dt.datetime.combine(as_of, platform.HISTORICAL_RUN_TIME), include_clusters=False,
                             triggered_by=f"{triggered_by} (backfill)"[:64], actor=actor)
        if progress:
            state = "done" if not report.failed else f"{len(report.failed)} step(s) failed"
            progress(index, len(dates), f"Backfill as of {as_of.isoformat()}", state)
    return dates
