"""Customer lifecycle: stages from data-driven rules, evaluated set-based in the database.

Rules are stored as JSON in `app_settings` under the key "lifecycle_rules" (no row means the
defaults in `DEFAULT_RULES`). "Days since the last order" counts calendar days from the order's
date to `as_of`; "within N days" means at most N days. Inputs come from the `customer_analytics`
snapshot (the batch refresh writes it, including the churn probability of the churn model).

A customer gets the first stage whose rule holds, in this order (the precedence):

1. prospect      - no orders (or no analytics snapshot yet);
2. churned       - no order for more than `churned_days`;
3. inactive      - no order for more than `inactive_days`;
4. at_risk       - no order for more than `at_risk_days`;
5. win_back      - the previous stage was at_risk, inactive or churned and the customer ordered
                   again after entering it, within `win_back_days`; a customer stays in win_back
                   for `win_back_days` after entering it (unless a rule above applies);
6. at_risk       - stored churn probability >= `at_risk_probability`;
7. new_customer  - first order within `new_customer_days`;
8. champion      - in the top `champion_value_percentile` % by total revenue of the buyers who
                   ordered within `churned_days` (their peers, not everyone who ever bought: an
                   imported history of long-gone buyers would make champions of average ones),
                   and ordered within `active_days`;
9. loyal         - at least `loyal_min_orders` orders and ordered within `active_days`;
10. active       - everyone else (ordered within `at_risk_days`; between `active_days` and
                   `at_risk_days`, when an admin sets them apart, is a grace period).

Scores written with the stage (0-100): engagement = the mean of 100 x sessions in 90 days (capped
at `ENGAGEMENT_SESSION_CAP`, when the shop records web sessions at all) and 100 x email open rate
(when the customer was e-mailed), no data (NULL) when neither exists; loyalty = 50 x orders (capped at
`loyal_min_orders`) + 50 x revenue percent-rank among buyers; churn = churn probability x 100,
or, when no probability is stored, days since the last order as a share of `churned_days`.

A manual `change_stage` holds until the next evaluation recomputes the stage.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import (
    Column,
    ColumnElement,
    Float,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    case,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    true,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER, is_gone, shown_email, shown_name
from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import end_of, midnight
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page, SortKey, check_limit, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.rollup_state import mark_built
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.platform.sql import calendar_day, days_between, rows_affected, use_batch_memory, year_month
from crm_core.segmentation.churn_levels import AT_RISK_PROBABILITY
from crm_core.segmentation.lifecycle_rollups import (
    COHORT_ROLLUP_MONTHS,
    NEW_STAGE,
    ROLLUP,
    as_date,
    stored_change_count,
    stored_cohorts,
    stored_flows,
    stored_stage_counts,
    stored_time_in_stage,
)
from db.models import (
    LIFECYCLE_STAGES,
    REVENUE_ORDER_STATUSES,
    Customer,
    CustomerAnalytics,
    CustomerLifecycleHistory,
    CustomerLifecycleStage,
    Order,
    RollupCohort,
    RollupLifecycleFlow,
    RollupLifecycleStage,
    User,
    utcnow,
)

RULES_KEY = "lifecycle_rules"
ENGAGEMENT_SESSION_CAP = 12
NEW_FLOW_LABEL = "(new)"
REVENUE_ORDER = Order.status.in_(REVENUE_ORDER_STATUSES)
COHORT_PATTERN = re.compile(r"^(\d{4})-(\d{2})$")

DEFAULT_LIFECYCLE_RULES: dict[str, Any] = {
    "new_customer_days": 30,
    "active_days": 90,
    "at_risk_days": 90,
    "at_risk_probability": AT_RISK_PROBABILITY,  # the floor of the "high" churn risk level
    "inactive_days": 180,
    "churned_days": 365,
    "win_back_days": 60,
    "loyal_min_orders": 5,
    "champion_value_percentile": 10.0,
}

_DAY_RULES = (
    "new_customer_days", "active_days", "at_risk_days", "inactive_days", "churned_days",
    "win_back_days",
)


def _upsert(session: Session):
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


# --------------------------------------------------------------------------- rules


def get_lifecycle_rules(session: Session) -> tuple[dict[str, Any], int]:
    """The stored rules merged over the defaults, and the version to send back when saving (0 = never saved)."""
    value, version = stored_setting(session, RULES_KEY)
    return {**DEFAULT_LIFECYCLE_RULES, **(value or {})}, version


# --------------------------------------------------------------------------- live accounts

ACCOUNT_RELATIONSHIPS = ("live", "churned", "never_bought")


def churned_after_days(session: Session) -> int:
    """Days without an order after which a customer is churned, not a live account: the rule
    `churned_days` (one definition for the Lifecycle and Health pages and the CTA rules)."""
    rules, _ = get_lifecycle_rules(session)
    return int(rules["churned_days"])


def account_relationships(session: Session, as_of: dt.date, customer_ids: list[int]) -> dict[int, str]:
    """Each customer's relationship at the end of `as_of`, one of ACCOUNT_RELATIONSHIPS: "live" with a
    revenue order within `churned_after_days` before then, "churned" with only older ones,
    "never_bought" without one. Health scores live accounts only (ml.health tells them apart the same
    way from its inputs), and the CTA rules open CTAs for live accounts only."""
    cutoff = end_of(as_of)
    # The lifecycle rule's calendar days: churned is no order on the day `churned_after_days` before
    # `as_of` or since (the Lifecycle page's stage, so both pages count the same customers)
    live_from = midnight(as_of - dt.timedelta(days=churned_after_days(session)))
    found = {cid: "never_bought" for cid in customer_ids}
    ids = sorted(found)
    for start in range(0, len(ids), 1000):
        for cid, last in session.execute(
                select(Order.customer_id, func.max(Order.ordered_at))
                .where(Order.customer_id.in_(ids[start:start + 1000]), REVENUE_ORDER, Order.ordered_at < cutoff)
                .group_by(Order.customer_id)).all():
            found[cid] = "live" if last >= live_from else "churned"
    return found


def validate_rules(rules: dict[str, Any]) -> dict[str, Any]:
    """Complete the given rules with the defaults and check types, ranges and ordering."""
    if not isinstance(rules, dict):
        raise ValidationError("Lifecycle rules must be a mapping of rule name to value.")
    unknown = sorted(set(rules) - set(DEFAULT_LIFECYCLE_RULES))
    if unknown:
        raise ValidationError(
            f"Unknown lifecycle rule(s): {', '.join(unknown)}; known rules: {', '.join(DEFAULT_LIFECYCLE_RULES)}."
        )
    merged = {**DEFAULT_LIFECYCLE_RULES, **rules}
    for name in (*_DAY_RULES, "loyal_min_orders"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationError(f"{name} must be a whole number, not {value!r}.")
    for name in ("at_risk_probability", "champion_value_percentile"):
        value = merged[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValidationError(f"{name} must be a number, not {value!r}.")
        merged[name] = float(value)
    for name in _DAY_RULES:
        if not 1 <= merged[name] <= 3650:
            raise ValidationError(f"{name} must be between 1 and 3650 days (got {merged[name]}).")
    if not 1 <= merged["loyal_min_orders"] <= 1000:
        raise ValidationError(f"loyal_min_orders must be between 1 and 1000 (got {merged['loyal_min_orders']}).")
    if not 0 < merged["at_risk_probability"] <= 1:
        raise ValidationError(
            f"at_risk_probability must be above 0 and at most 1 (got {merged['at_risk_probability']})."
        )
    if not 0 < merged["champion_value_percentile"] <= 50:
        raise ValidationError(
            "champion_value_percentile must be above 0 and at most 50 percent "
            f"(got {merged['champion_value_percentile']})."
        )
    ordering = [
        ("active_days", "at_risk_days", False),
        ("at_risk_days", "inactive_days", True),
        ("active_days", "inactive_days", True),
        ("inactive_days", "churned_days", True),
        ("new_customer_days", "active_days", False),
        ("win_back_days", "active_days", False),
    ]
    for low, high, strict in ordering:
        if merged[low] > merged[high] or (strict and merged[low] == merged[high]):
            relation = "less than" if strict else "at most"
            raise ValidationError(
                f"{low} must be {relation} {high} ({low} is {merged[low]}, {high} is {merged[high]})."
            )
    return merged


def save_lifecycle_rules(
    session: Session, actor: Actor, rules: dict[str, Any], expected_version: int | None
) -> tuple[dict[str, Any], int]:
    """Validate and store the rules; refuse an edit made against an older version."""
    require(actor, "lifecycle.rules")
    new_rules = validate_rules(rules)
    version = save_setting(session, actor, RULES_KEY, new_rules, expected_version,
                            what="The lifecycle rules", action="lifecycle.rules.save")
    return dict(new_rules), version


# --------------------------------------------------------------------------- evaluation


def _evaluation_query(rules: dict[str, Any], as_of: dt.date, now: dt.datetime, has_sessions: bool = True):
    """One row per counted customer: previous stage, new stage, reason and scores."""
    a = CustomerAnalytics
    s = CustomerLifecycleStage
    order_count = func.coalesce(a.order_count, 0)
    revenue = func.coalesce(a.total_revenue, 0)
    buyer = case((order_count > 0, 1), else_=0)
    peer = case((and_(order_count > 0, a.last_order_at >= midnight(as_of - dt.timedelta(days=rules["churned_days"]))),
                 1), else_=0)
    ranked = (
        select(
            Customer.id.label("customer_id"),
            order_count.label("order_count"),
            a.first_order_at,
            a.last_order_at,
            a.churn_probability,
            func.coalesce(a.sessions_90d, 0).label("sessions_90d"),
            a.email_open_rate,
            s.stage.label("prev_stage"),
            s.entered_at.label("prev_entered_at"),
            func.cume_dist().over(partition_by=peer, order_by=revenue.desc()).label("top_share"),
            func.percent_rank().over(partition_by=buyer, order_by=revenue).label("value_rank"),
        )
        .select_from(Customer)
        .outerjoin(a, a.customer_id == Customer.id)
        .outerjoin(s, s.customer_id == Customer.id)
        .where(COUNTED_CUSTOMER)
        .subquery("ranked")
    )
    r = ranked.c

    def ordered_within(days: int):
        return r.last_order_at >= midnight(as_of - dt.timedelta(days=days))

    def no_order_for_more_than(days: int):
        return r.last_order_at < midnight(as_of - dt.timedelta(days=days))

    recent = ordered_within(rules["active_days"])
    rule_list = [
        (or_(r.order_count == 0, r.last_order_at.is_(None)), "prospect", "prospect: no orders yet"),
        (no_order_for_more_than(rules["churned_days"]), "churned",
         f"churned: no order for more than {rules['churned_days']} days"),
        (no_order_for_more_than(rules["inactive_days"]), "inactive",
         f"inactive: no order for more than {rules['inactive_days']} days"),
        (no_order_for_more_than(rules["at_risk_days"]), "at_risk",
         f"at_risk: no order for more than {rules['at_risk_days']} days"),
        (
            or_(
                and_(r.prev_stage.in_(("at_risk", "inactive", "churned")),
                     r.last_order_at > r.prev_entered_at, ordered_within(rules["win_back_days"])),
                and_(r.prev_stage == "win_back",
                     r.prev_entered_at >= now - dt.timedelta(days=rules["win_back_days"])),
            ),
            "win_back",
            f"win_back: ordered again within {rules['win_back_days']} days after being at risk, inactive or churned",
        ),
        (r.churn_probability >= rules["at_risk_probability"], "at_risk",
         f"at_risk: churn probability at least {rules['at_risk_probability']:g}"),
        (r.first_order_at >= midnight(as_of - dt.timedelta(days=rules["new_customer_days"])),
         "new_customer", f"new_customer: first order within {rules['new_customer_days']} days"),
        (and_(r.top_share <= rules["champion_value_percentile"] / 100 + 1e-9, recent), "champion",
         f"champion: top {rules['champion_value_percentile']:g}% by revenue of buyers within {rules['churned_days']} days, "
         f"ordered within {rules['active_days']} days"),
        (and_(r.order_count >= rules["loyal_min_orders"], recent), "loyal",
         f"loyal: at least {rules['loyal_min_orders']} orders, ordered within {rules['active_days']} days"),
    ]
    active_reason = f"active: ordered within {rules['at_risk_days']} days"
    stage = case(*[(cond, literal(name)) for cond, name, _ in rule_list], else_=literal("active"))
    reason = case(*[(cond, literal(text)) for cond, _, text in rule_list], else_=literal(active_reason))

    visits = (case((r.sessions_90d >= ENGAGEMENT_SESSION_CAP, ENGAGEMENT_SESSION_CAP), else_=r.sessions_90d)
              / ENGAGEMENT_SESSION_CAP) if has_sessions else literal(None, Float)
    opens = r.email_open_rate
    engagement = case(
        (and_(visits.is_(None), opens.is_(None)), literal(None, Float)),
        (opens.is_(None), 100.0 * visits),
        (visits.is_(None), 100.0 * opens),
        else_=50.0 * visits + 50.0 * opens,
    )
    loyalty = case(
        (r.order_count == 0, 0.0),
        else_=50.0 * case((r.order_count >= rules["loyal_min_orders"], rules["loyal_min_orders"]),
                          else_=r.order_count) / rules["loyal_min_orders"]
        + 50.0 * r.value_rank,
    )
    days_since = days_between(midnight(as_of), r.last_order_at)
    churn = case(
        (r.churn_probability.is_not(None), 100.0 * r.churn_probability),
        (r.last_order_at.is_(None), None),
        (days_since >= rules["churned_days"], 100.0),
        (days_since <= 0, 0.0),
        else_=100.0 * days_since / rules["churned_days"],
    )
    return select(
        r.customer_id,
        r.prev_stage,
        stage.label("stage"),
        reason.label("reason"),
        engagement.label("engagement_score"),
        loyalty.label("loyalty_score"),
        churn.label("churn_score"),
    ).subquery("evaluated")


EVALUATED = Table(
    "tmp_lifecycle_evaluated", MetaData(),
    Column("customer_id", Integer), Column("prev_stage", String(16)), Column("stage", String(16)),
    Column("reason", Text), Column("engagement_score", Float), Column("loyalty_score", Float),
    Column("churn_score", Float),
    prefixes=["TEMPORARY"],
)


def evaluate_lifecycle(session: Session, as_of: dt.date, actor: Actor = SYSTEM, now: dt.datetime | None = None) -> dict[str, int]:
    """Recompute every counted customer's stage as of a date, set-based (`actor`: the batch's system
    actor, or anyone allowed to run the refresh).

    Returns the number of customers per stage (every stage, in stage order) and, under the key
    "changed", how many customers changed stage (a first assignment counts as a change).
    `updated_at` on a stage row is the last evaluation that changed its stage, reason or scores.
    """
    require(actor, "refresh.run")
    now = now or utcnow()
    rules, _ = get_lifecycle_rules(session)
    # Evaluate once into a temporary table: the history rows and the stage rows both read it.
    connection = session.connection()
    EVALUATED.drop(connection, checkfirst=True)
    EVALUATED.create(connection)
    # A shop without web-session data (no visit in anyone's snapshot) gives nobody a visit count:
    # "no data", not 0.
    has_sessions = session.scalar(
        select(CustomerAnalytics.customer_id).where(CustomerAnalytics.sessions_90d > 0).limit(1)) is not None
    evaluated = _evaluation_query(rules, as_of, now, has_sessions)
    session.execute(insert(EVALUATED).from_select(
        [c.name for c in EVALUATED.columns], select(*[evaluated.c[c.name] for c in EVALUATED.columns])))
    e = EVALUATED.c
    changed_rows = or_(e.prev_stage.is_(None), e.prev_stage != e.stage)

    history = insert(CustomerLifecycleHistory).from_select(
        ["customer_id", "from_stage", "to_stage", "changed_at", "reason", "actor_kind", "actor_id"],
        select(e.customer_id, e.prev_stage, e.stage, literal(now), e.reason, literal("system"),
               literal(actor.id, Integer)).where(changed_rows),
    )
    changed = rows_affected(session.execute(history)) or 0

    columns = ["customer_id", "stage", "entered_at", "reason", "engagement_score", "loyalty_score",
               "churn_score", "updated_at"]
    # The WHERE keeps SQLite from reading ON CONFLICT as a join constraint.
    rows = select(e.customer_id, e.stage, literal(now), e.reason, e.engagement_score, e.loyalty_score,
                  e.churn_score, literal(now)).where(true())
    upsert = _upsert(session)(CustomerLifecycleStage).from_select(columns, rows)
    stages = CustomerLifecycleStage.__table__
    upsert = upsert.on_conflict_do_update(
        index_elements=["customer_id"],
        set_={
            "stage": upsert.excluded.stage,
            "entered_at": case((stages.c.stage == upsert.excluded.stage, stages.c.entered_at),
                               else_=upsert.excluded.entered_at),
            "reason": upsert.excluded.reason,
            "engagement_score": upsert.excluded.engagement_score,
            "loyalty_score": upsert.excluded.loyalty_score,
            "churn_score": upsert.excluded.churn_score,
            "updated_at": upsert.excluded.updated_at,
        },
        # Rewrite only rows whose stage, reason or scores moved: most customers keep theirs.
        where=or_(*[
            stages.c[name].is_distinct_from(upsert.excluded[name])
            for name in ("stage", "reason", "engagement_score", "loyalty_score", "churn_score")
        ]),
    )
    session.execute(upsert)
    EVALUATED.drop(connection)
    counts = _stage_counts(session)
    record_audit(session, actor, "lifecycle.evaluate", "lifecycle", as_of.isoformat(),
                 after={"changed": changed, **counts})
    session.flush()
    return {**counts, "changed": changed}


def refresh_lifecycle_rollups(session: Session, as_of: dt.date, now: dt.datetime | None = None) -> dict[str, Any]:
    """Rebuild the stage counts and time in stage of as_of, the changes per day and the cohorts of as_of."""
    use_batch_memory(session.connection())
    built_at = utcnow()
    counts = _stage_counts(session)
    durations = {row["stage"]: row for row in _time_in_stage_rows(session, as_of)}
    session.execute(delete(RollupLifecycleStage).where(RollupLifecycleStage.as_of == as_of))
    session.execute(insert(RollupLifecycleStage), [
        {"as_of": as_of, "stage": stage, "customers": counts[stage],
         "timed_customers": durations[stage]["customers"] if stage in durations else 0,
         "median_days": durations[stage]["median_days"] if stage in durations else None,
         "avg_days": durations[stage]["avg_days"] if stage in durations else None}
        for stage in LIFECYCLE_STAGES
    ])
    h = CustomerLifecycleHistory
    day = calendar_day(h.changed_at).label("day")
    flows = session.execute(
        select(day, func.coalesce(h.from_stage, NEW_STAGE), h.to_stage, func.count())
        .join(Customer, Customer.id == h.customer_id)
        .where(COUNTED_CUSTOMER, h.changed_at < built_at)
        .group_by(day, h.from_stage, h.to_stage)
    ).all()
    session.execute(delete(RollupLifecycleFlow))
    if flows:
        session.execute(insert(RollupLifecycleFlow), [
            {"day": as_date(d), "from_stage": f, "to_stage": t, "changes": int(n)} for d, f, t, n in flows])
    cohorts = cohort_rows(session, as_of, COHORT_ROLLUP_MONTHS)
    session.execute(delete(RollupCohort).where(RollupCohort.as_of == as_of))
    if cohorts:
        session.execute(insert(RollupCohort), [
            {"as_of": as_of, "cohort": r["cohort"], "month_offset": r["month_offset"], "customers": r["customers"],
             "active_customers": r["active_customers"]} for r in cohorts])
    mark_built(session, ROLLUP, as_of, as_of, True, built_at=built_at)
    return {"stages": len(LIFECYCLE_STAGES), "flow_rows": len(flows), "cohort_cells": len(cohorts)}


def _stage_counts(session: Session) -> dict[str, int]:
    found = dict(session.execute(
        select(CustomerLifecycleStage.stage, func.count())
        .join(Customer, Customer.id == CustomerLifecycleStage.customer_id)
        .where(COUNTED_CUSTOMER)
        .group_by(CustomerLifecycleStage.stage)
    ).all())
    return {stage: int(found.get(stage, 0)) for stage in LIFECYCLE_STAGES}


# --------------------------------------------------------------------------- manual change


def change_stage(session: Session, actor: Actor, customer_id: int, stage: str, reason: str,
                 now: dt.datetime | None = None) -> CustomerLifecycleStage:
    """Put a customer in a stage by hand, with the reason recorded in the history and audit log."""
    require(actor, "lifecycle.edit")
    if stage not in LIFECYCLE_STAGES:
        raise ValidationError(f"Unknown stage {stage!r}; choose one of: {', '.join(LIFECYCLE_STAGES)}.")
    reason = (reason or "").strip()
    if not reason:
        raise ValidationError("Give a reason for changing the stage by hand.")
    if len(reason) > 255:
        raise ValidationError("The reason must have at most 255 characters.")
    customer = session.get(Customer, customer_id)
    if customer is None or is_gone(customer.status):
        raise NotFound(f"No customer with id {customer_id}.")
    now = now or utcnow()
    current = session.get(CustomerLifecycleStage, customer_id)
    previous = None if current is None else current.stage
    if previous == stage:
        raise ValidationError(f"The customer is already in the stage {stage}.")
    if current is None:
        current = CustomerLifecycleStage(customer_id=customer_id)
        session.add(current)
    current.stage = stage
    current.entered_at = now
    current.reason = reason
    current.updated_at = now
    session.add(CustomerLifecycleHistory(
        customer_id=customer_id, from_stage=previous, to_stage=stage, changed_at=now, reason=reason,
        actor_kind="user", actor_id=actor.id,
    ))
    session.flush()
    record_audit(session, actor, "lifecycle.change_stage", "customer", customer_id,
                 before={"stage": previous}, after={"stage": stage, "reason": reason})
    return current


# --------------------------------------------------------------------------- reads


def _check_paging(page: int, page_size: int) -> int:
    if not 1 <= page_size <= 1000:
        raise ValidationError("Page size must be between 1 and 1000.")
    return max(1, page)


def _check_stage(stage: str | None) -> None:
    if stage is not None and stage not in LIFECYCLE_STAGES:
        raise ValidationError(f"Unknown stage {stage!r}; choose one of: {', '.join(LIFECYCLE_STAGES)}.")


def stage_distribution(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Customers per current stage, every stage in stage order."""
    require(viewer, "lifecycle.view")
    stored = stored_stage_counts(session)
    counts = stored[0] if stored is not None else _stage_counts(session)
    return [{"stage": stage, "customers": n} for stage, n in counts.items()]


def stage_flows(session: Session, viewer: Actor, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
    """Stage changes in [start, end] as (from, to, changes), for a Sankey diagram.

    Each change counts: a customer who moved at_risk -> active twice in the period counts twice, so the
    figures add up over days and the batch keeps them per day."""
    require(viewer, "lifecycle.view")
    if start > end:
        raise ValidationError("The start date must not be after the end date.")
    stored = stored_flows(session, start, end)
    if stored is not None:
        rows = [(from_stage, to_stage, n) for (from_stage, to_stage), n in stored.items() if n]
    else:
        h = CustomerLifecycleHistory
        rows = [(from_stage, to_stage, int(n)) for from_stage, to_stage, n in session.execute(
            select(h.from_stage, h.to_stage, func.count())
            .join(Customer, Customer.id == h.customer_id)
            .where(COUNTED_CUSTOMER, h.changed_at >= midnight(start),
                   h.changed_at < midnight(end + dt.timedelta(days=1)))
            .group_by(h.from_stage, h.to_stage)
        )]
    order = {stage: i for i, stage in enumerate(LIFECYCLE_STAGES)}
    result = [
        {"from_stage": from_stage or NEW_FLOW_LABEL, "to_stage": to_stage, "customers": int(n)}
        for from_stage, to_stage, n in rows
    ]
    return sorted(result, key=lambda row: (order.get(row["from_stage"], -1), order[row["to_stage"]]))


def time_in_stage(session: Session, viewer: Actor, as_of: dt.date) -> list[dict[str, Any]]:
    """Median and mean days customers have spent in their current stage, up to the end of as_of."""
    require(viewer, "lifecycle.view")
    stored = stored_time_in_stage(session, as_of)
    return stored if stored is not None else _time_in_stage_rows(session, as_of)


def _time_in_stage_rows(session: Session, as_of: dt.date) -> list[dict[str, Any]]:
    s = CustomerLifecycleStage
    end = midnight(as_of + dt.timedelta(days=1))
    days = days_between(end, s.entered_at)
    ranked = (
        select(
            s.stage,
            days.label("days"),
            func.row_number().over(partition_by=s.stage, order_by=days).label("position"),
            func.count().over(partition_by=s.stage).label("n"),
        )
        .join(Customer, Customer.id == s.customer_id)
        .where(COUNTED_CUSTOMER, s.entered_at < end)
        .subquery()
    )
    r = ranked.c
    # The middle row (odd count) or the two middle rows (even count); integer division on both backends.
    middle = r.position.in_(((r.n + 1) // 2, (r.n + 2) // 2))
    rows = session.execute(
        select(
            r.stage,
            func.avg(case((middle, r.days))),
            func.avg(r.days),
            func.count(),
        ).group_by(r.stage)
    ).all()
    found = {stage: (median, mean, n) for stage, median, mean, n in rows}
    return [
        {
            "stage": stage,
            "median_days": round(float(found[stage][0]), 1),
            "avg_days": round(float(found[stage][1]), 1),
            "customers": int(found[stage][2]),
        }
        for stage in LIFECYCLE_STAGES
        if stage in found
    ]


def _month_index(column):
    return func.extract("year", column) * 12 + func.extract("month", column)


def cohort_retention(session: Session, viewer: Actor, as_of: dt.date, months: int = 12) -> list[dict[str, Any]]:
    """Share of each signup-month cohort with a revenue order in each month since signup.

    Cohorts are the `months` calendar months up to and including as_of's month; offsets run from
    0 (the signup month) to as_of's month, with orders counted up to the end of as_of.
    """
    require(viewer, "lifecycle.view")
    if not 1 <= months <= 120:
        raise ValidationError("Cohort retention covers between 1 and 120 months.")
    stored = stored_cohorts(session, as_of, months)
    return stored if stored is not None else cohort_rows(session, as_of, months)


def cohort_rows(session: Session, as_of: dt.date, months: int) -> list[dict[str, Any]]:
    last_index = as_of.year * 12 + as_of.month - 1
    first_index = last_index - (months - 1)
    window_start = dt.datetime(first_index // 12, first_index % 12 + 1, 1)
    end = midnight(as_of + dt.timedelta(days=1))
    in_window = and_(COUNTED_CUSTOMER, Customer.signed_up_at >= window_start, Customer.signed_up_at < end)

    cohort = year_month(Customer.signed_up_at)
    sizes: dict[str, int] = dict(session.execute(
        select(cohort, func.count()).where(in_window).group_by(cohort)
    ).all())
    offset = _month_index(Order.ordered_at) - _month_index(Customer.signed_up_at)
    active = session.execute(
        select(cohort, offset, func.count(func.distinct(Order.customer_id)))
        .join(Customer, Customer.id == Order.customer_id)
        .where(in_window, REVENUE_ORDER, Order.ordered_at < end, Order.ordered_at >= Customer.signed_up_at)
        .group_by(cohort, offset)
    ).all()
    buyers = {(c, int(o)): int(n) for c, o, n in active}
    rows = []
    for name in sorted(sizes):
        year, month = map(int, name.split("-"))
        for month_offset in range(last_index - (year * 12 + month - 1) + 1):
            rows.append({
                "cohort": name,
                "month_offset": month_offset,
                "customers": int(sizes[name]),
                "active_customers": buyers.get((name, month_offset), 0),
                "active_share": buyers.get((name, month_offset), 0) / sizes[name],
            })
    return rows


def recent_stage_changes(session: Session, viewer: Actor, page: int = 1, page_size: int = 50,
                   stage: str | None = None, after: str | None = None) -> Page:
    """Stage changes, newest first; `stage` keeps changes into that stage. A numbered page, or with
    `after` (a cursor, FIRST for the start) the next `page_size` by keyset."""
    require(viewer, "lifecycle.view")
    _check_stage(stage)
    if after is None:
        page = _check_paging(page, page_size)
    else:
        page, page_size = 0, check_limit(page_size, 500)
    h = CustomerLifecycleHistory
    conditions: list[ColumnElement[bool]] = [COUNTED_CUSTOMER]
    if stage is not None:
        conditions.append(h.to_stage == stage)
    total = None if after is not None else stored_change_count(session, stage)
    if total is None and after is None:
        total = session.scalar(
            select(func.count()).select_from(h).join(Customer, Customer.id == h.customer_id).where(*conditions)
        ) or 0
    found, next_after = fetch_rows(
        session,
        select(h.changed_at, h.customer_id, Customer.first_name, Customer.last_name, h.from_stage,
               h.to_stage, h.reason, h.actor_kind, User.username)
        .join(Customer, Customer.id == h.customer_id)
        .outerjoin(User, User.id == h.actor_id)
        .where(*conditions),
        (SortKey(h.changed_at, descending=True), SortKey(h.id, descending=True)), "lifecycle_history",
        page=page, page_size=page_size, after=after)
    rows = [
        {
            "time": changed_at,
            "customer_id": customer_id,
            "customer": shown_name(viewer, first, last, customer_id),
            "from_stage": from_stage,
            "to_stage": to_stage,
            "reason": reason,
            "actor": username or ("system" if actor_kind == "system" else "(deleted user)"),
        }
        for changed_at, customer_id, first, last, from_stage, to_stage, reason, actor_kind, username, *_key in found
    ]
    return Page(rows=rows, total=None if total is None else int(total), page=page, page_size=page_size,
                next_after=next_after)


def _cohort_range(cohort: str) -> tuple[dt.datetime, dt.datetime]:
    match = COHORT_PATTERN.match(cohort or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise ValidationError(f"A cohort is a signup month written YYYY-MM, not {cohort!r}.")
    year, month = int(match.group(1)), int(match.group(2))
    start = dt.datetime(year, month, 1)
    return start, dt.datetime(year + month // 12, month % 12 + 1, 1)


def customers_in_stage(session: Session, viewer: Actor, stage: str | None = None, cohort: str | None = None,
                 page: int = 1, page_size: int = 50) -> Page:
    """Drill-down: customers in a current stage (by id) and/or signup cohort ("YYYY-MM", by sign-up time)."""
    require(viewer, "lifecycle.view")
    _check_stage(stage)
    page = _check_paging(page, page_size)
    s = CustomerLifecycleStage
    conditions = [COUNTED_CUSTOMER, s.stage == stage if stage is not None else true()]
    if cohort is not None:
        start, stop = _cohort_range(cohort)
        conditions += [Customer.signed_up_at >= start, Customer.signed_up_at < stop]
    stored = stored_stage_counts(session) if stage is not None and cohort is None else None
    if stored is not None and stage is not None:
        total = stored[0][stage]
    else:
        base = select(Customer.id).outerjoin(s, s.customer_id == Customer.id).where(*conditions)
        total = session.scalar(select(func.count()).select_from(base.subquery())) or 0
    found = session.execute(
        select(Customer.id, Customer.first_name, Customer.last_name, Customer.email, Customer.signed_up_at,
               s.stage, s.entered_at, s.reason, s.engagement_score, s.loyalty_score, s.churn_score)
        .outerjoin(s, s.customer_id == Customer.id)
        .where(*conditions)
        # A cohort in sign-up order (its index range; ids and sign-up times rise together, so walking the
        # ids would pass every later customer first), a stage by id.
        .order_by(*((Customer.signed_up_at, Customer.id) if cohort is not None else (Customer.id,)))
        .limit(page_size)
        .offset((page - 1) * page_size)
    ).all()
    rows = [
        {
            "customer_id": cid,
            "customer": shown_name(viewer, first, last, cid),
            "email": shown_email(viewer, email),
            "signed_up_at": signed_up_at,
            "stage": row_stage,
            "entered_at": entered_at,
            "reason": reason,
            "engagement_score": engagement,
            "loyalty_score": loyalty,
            "churn_score": churn,
        }
        for cid, first, last, email, signed_up_at, row_stage, entered_at, reason, engagement, loyalty, churn
        in found
    ]
    return Page(rows=rows, total=int(total), page=page, page_size=page_size)

