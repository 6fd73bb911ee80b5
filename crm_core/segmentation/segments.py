"""Segments and their memberships: create, edit and activate segments, add and remove members of
static ones, and refresh the dynamic ones in the database.

Dynamic segments are refreshed set-based (INSERT ... SELECT and UPDATE ... NOT EXISTS) and keep
their history: leaving closes the membership row (is_active false, left_at), re-entering opens a
new one. Model segments (RFM, clusters) get their members from the batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pandas as pd
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Float,
    Integer,
    and_,
    bindparam,
    except_,
    func,
    insert,
    literal,
    select,
    text,
    true,
    update,
)
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.platform.sql import rows_affected
from crm_core.platform.transactions import check_version
from crm_core.segmentation.rules import COUNTED_CUSTOMER, _customer_from, _describe, compile_rules, parse_rules
from crm_core.segmentation.segment_stats import adjust_segment_stats, refresh_segment_stats
from db import bulk
from db.models import (
    SEGMENT_KINDS,
    SEGMENT_TYPES,
    Customer,
    CustomerSegment,
    CustomerSegmentMembership,
    utcnow,
)

STAGE_UPDATES_OVER = 500  # more row updates than this go through a staged table and one UPDATE
ANALYZE_AFTER_CHANGES = 1000  # membership rows written before PostgreSQL statistics are refreshed
MODEL_SEGMENT_TYPES = ("rfm", "cluster")  # membership written by a model, not by rules

Membership = CustomerSegmentMembership
memberships = CustomerSegmentMembership.__table__


# --------------------------------------------------------------------------- segment CRUD

EDITABLE = ("name", "description", "segment_type", "rules", "priority")


def get_segment(session: Session, segment_id: int) -> CustomerSegment:
    segment = session.get(CustomerSegment, segment_id) if isinstance(segment_id, int) else None
    if segment is None:
        raise NotFound(f"No segment with id {segment_id}.")
    return segment


def _clean_name(session: Session, name: Any, segment_id: int | None = None) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValidationError("A segment needs a name.")
    name = " ".join(name.split())
    if len(name) > 120:
        raise ValidationError("A segment name has at most 120 characters.")
    clash = session.scalar(select(CustomerSegment.id).where(func.lower(CustomerSegment.name) == name.lower()))
    if clash is not None and clash != segment_id:
        raise ValidationError(f"There is already a segment named {name!r}; choose another name.")
    return name


def _check_definition(segment_type: Any, kind: Any, rules: Any, priority: Any, description: Any) -> Any:
    """Validate the fields of a segment together; returns the parsed rules."""
    if segment_type not in SEGMENT_TYPES:
        raise ValidationError(f"Unknown segment type {segment_type!r}; choose one of: {', '.join(SEGMENT_TYPES)}.")
    if kind not in SEGMENT_KINDS:
        raise ValidationError(f"Unknown segment kind {kind!r}; choose one of: {', '.join(SEGMENT_KINDS)}.")
    if isinstance(priority, bool) or not isinstance(priority, int) or not 0 <= priority <= 10000:
        raise ValidationError(f"The priority must be a whole number from 0 to 10000, got {_describe(priority)}.")
    if not isinstance(description, str):
        raise ValidationError("The description must be text.")
    if kind == "static":
        if rules:
            raise ValidationError("A static segment has no rules: its members are added by hand.")
        return None
    if rules is None and segment_type in MODEL_SEGMENT_TYPES:
        return None  # members assigned by the RFM / clustering model
    if rules is None:
        raise ValidationError("A dynamic segment needs rules that say who belongs to it.")
    return parse_rules(rules)


def _snapshot(segment: CustomerSegment) -> dict[str, Any]:
    return {
        "name": segment.name, "description": segment.description, "segment_type": segment.segment_type,
        "kind": segment.kind, "rules": segment.rules, "priority": segment.priority,
        "is_active": segment.is_active,
    }


def create_segment(
    session: Session,
    actor: Actor,
    name: str,
    segment_type: str,
    kind: str,
    rules: dict[str, Any] | str | None = None,
    priority: int = 100,
    description: str = "",
    is_system: bool = False,
) -> CustomerSegment:
    require(actor, "segments.manage")
    name = _clean_name(session, name)
    parsed = _check_definition(segment_type, kind, rules, priority, description)
    segment = CustomerSegment(
        name=name, segment_type=segment_type, kind=kind, rules=parsed, priority=priority,
        description=description.strip(), is_system=bool(is_system), is_active=True,
        owner_id=actor.id,
    )
    session.add(segment)
    session.flush()
    record_audit(session, actor, "segment.create", "segment", segment.id, after=_snapshot(segment))
    return segment


def update_segment(session: Session, actor: Actor, segment_id: int, expected_version: int | None, **changes) -> CustomerSegment:
    """Change name, description, segment_type, rules or priority; refused if edited meanwhile."""
    require(actor, "segments.manage")
    unknown = sorted(set(changes) - set(EDITABLE))
    if unknown:
        raise ValidationError(f"Cannot change {', '.join(unknown)}; editable: {', '.join(EDITABLE)}.")
    segment = get_segment(session, segment_id)
    check_version(segment, expected_version, f"Segment {segment.name}")
    before = _snapshot(segment)
    name = _clean_name(session, changes["name"], segment.id) if "name" in changes else segment.name
    merged = {k: changes.get(k, getattr(segment, k)) for k in ("segment_type", "rules", "priority", "description")}
    parsed = _check_definition(merged["segment_type"], segment.kind, merged["rules"], merged["priority"],
                               merged["description"])
    segment.name = name
    segment.segment_type = merged["segment_type"]
    segment.rules = parsed
    segment.priority = merged["priority"]
    segment.description = merged["description"].strip()
    after = _snapshot(segment)
    if after == before:
        return segment
    session.flush()
    changed = [k for k in after if after[k] != before[k]]
    record_audit(session, actor, "segment.update", "segment", segment.id,
                 before={k: before[k] for k in changed}, after={k: after[k] for k in changed})
    return segment


def set_segment_active(session: Session, actor: Actor, segment_id: int, active: bool,
               expected_version: int | None = None) -> CustomerSegment:
    """Pause or resume a segment; an inactive segment is skipped by the refresh."""
    require(actor, "segments.manage")
    segment = get_segment(session, segment_id)
    check_version(segment, expected_version, f"Segment {segment.name}")
    if segment.is_active == bool(active):
        return segment
    segment.is_active = bool(active)
    session.flush()
    record_audit(session, actor, "segment.activate" if active else "segment.deactivate", "segment", segment.id,
                 before={"is_active": not active}, after={"is_active": bool(active)})
    return segment


def _customer_ids(customer_ids: Any) -> list[int]:
    if isinstance(customer_ids, str | bytes) or not hasattr(customer_ids, "__iter__"):
        raise ValidationError("Give the customers as a list of customer ids.")
    ids = list(customer_ids)
    if any(isinstance(i, bool) or not isinstance(i, int) for i in ids):
        raise ValidationError("Customer ids are whole numbers.")
    return list(dict.fromkeys(ids))


def _chunks(items: list, size: int = 1000) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def hand_edited_segment(session: Session, segment_id: int) -> CustomerSegment:
    """The segment, when people may add and remove its members by hand: static and not kept by the
    batch (cluster segments are static, but their members are the model's)."""
    segment = get_segment(session, segment_id)
    if segment.kind != "static":
        raise ValidationError(
            f"Segment {segment.name!r} is dynamic: its members follow its rules and cannot be changed by hand."
        )
    if segment.is_system:
        raise ValidationError(
            f"Segment {segment.name!r} is kept by the batch refresh ({segment.segment_type}): its members are "
            "assigned by the model and cannot be changed by hand. Choose a static segment of your own."
        )
    return segment


def add_members(session: Session, actor: Actor, segment_id: int, customer_ids: list[int],
                now: dt.datetime | None = None) -> int:
    """Add customers to a static segment by hand; returns how many were not already members."""
    require(actor, "segments.manage")
    segment = hand_edited_segment(session, segment_id)
    ids = _customer_ids(customer_ids)
    now = now or utcnow()
    existing: set[int] = set()
    current: set[int] = set()
    for chunk in _chunks(ids):
        existing.update(session.scalars(select(Customer.id).where(Customer.id.in_(chunk), COUNTED_CUSTOMER)))
        current.update(session.scalars(select(Membership.customer_id).where(
            Membership.segment_id == segment.id, Membership.is_active == true(), Membership.customer_id.in_(chunk))))
    missing = [i for i in ids if i not in existing]
    if missing:
        shown = ", ".join(map(str, missing[:10])) + (" ..." if len(missing) > 10 else "")
        raise ValidationError(f"No customer (or a merged or erased one) with id {shown}; nothing was added.")
    new = [i for i in ids if i not in current]
    if new:
        session.execute(insert(memberships), [
            {"segment_id": segment.id, "customer_id": i, "confidence": 1.0, "assignment": "manual",
             "is_active": True, "entered_at": now, "left_at": None}
            for i in new
        ])
    record_audit(session, actor, "segment.add_members", "segment", segment.id,
                 after={"added": len(new), "customer_ids": new[:100]})
    adjust_segment_stats(session, segment.id, new, 1)
    return len(new)


def remove_members(session: Session, actor: Actor, segment_id: int, customer_ids: list[int],
                   now: dt.datetime | None = None) -> int:
    """Close the memberships of customers in a static segment (rows are kept as history)."""
    require(actor, "segments.manage")
    segment = hand_edited_segment(session, segment_id)
    ids = _customer_ids(customer_ids)
    now = now or utcnow()
    removed = 0
    for chunk in _chunks(ids):
        leaving = list(session.scalars(select(Membership.customer_id).where(
            Membership.segment_id == segment.id, Membership.is_active == true(), Membership.customer_id.in_(chunk))))
        adjust_segment_stats(session, segment.id, leaving, -1)
        removed += rows_affected(session.execute(
            update(memberships)
            .where(memberships.c.segment_id == segment.id, memberships.c.is_active == true(),
                   memberships.c.customer_id.in_(chunk))
            .values(is_active=False, left_at=now)
        ))
    record_audit(session, actor, "segment.remove_members", "segment", segment.id,
                 after={"removed": removed, "customer_ids": ids[:100]})
    return removed


# --------------------------------------------------------------------------- membership refresh


def active_member_count(session: Session, segment_id: int) -> int:
    return session.scalar(
        select(func.count()).select_from(memberships)
        .where(memberships.c.segment_id == segment_id, memberships.c.is_active == true())
    ) or 0


def _mark_refreshed(session: Session, segment_id: int, now: dt.datetime) -> None:
    # A plain UPDATE: a refresh must not bump the version a person may be editing against.
    session.execute(
        update(CustomerSegment).where(CustomerSegment.id == segment_id).values(last_refreshed_at=now)
        .execution_options(synchronize_session="evaluate")
    )


def _refresh_statistics(session: Session) -> None:
    """Give PostgreSQL's planner current membership counts before the next anti-join.

    After a bulk insert the statistics still describe a (nearly) empty table, and the planner
    then probes it with a nested loop per customer: minutes instead of seconds at 1,000,000
    customers. ANALYZE samples a fixed number of rows and sees this transaction's own inserts.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text(f"ANALYZE {memberships.name}"))


def refresh_memberships(session: Session, as_of: dt.date, now: dt.datetime | None = None,
                        segment_ids: list[int] | None = None) -> dict[str, dict[str, int]]:
    """Bring every active rule-based dynamic segment up to date, in set-based SQL.

    Customers who stopped matching leave (their open auto row is closed); customers who match and
    have no open row enter with a new row, so leaving and re-entering keeps the history.
    """
    now = now or utcnow()
    session.flush()
    query = select(CustomerSegment).where(
        CustomerSegment.kind == "dynamic", CustomerSegment.is_active.is_(True)
    ).order_by(CustomerSegment.priority, CustomerSegment.id)
    if segment_ids is not None:
        query = query.where(CustomerSegment.id.in_(list(segment_ids)))
    result: dict[str, dict[str, int]] = {}
    changed_since_analyze = ANALYZE_AFTER_CHANGES  # statistics may be stale from earlier writes
    for segment in session.scalars(query).all():
        if not segment.rules:  # model-assigned (RFM, cluster): see replace_model_memberships
            continue
        if changed_since_analyze >= ANALYZE_AFTER_CHANGES:
            _refresh_statistics(session)
            changed_since_analyze = 0
        try:
            condition = and_(COUNTED_CUSTOMER, compile_rules(segment.rules, as_of))
        except ValidationError as exc:
            raise ValidationError(f"Segment {segment.name!r} has invalid rules: {exc}") from None
        still_matches = (
            select(literal(1)).select_from(_customer_from())
            .where(Customer.id == memberships.c.customer_id, condition)
            .exists()
        )
        left = rows_affected(session.execute(
            update(memberships)
            .where(memberships.c.segment_id == segment.id, memberships.c.is_active == true(),
                   memberships.c.assignment == "auto", ~still_matches)
            .values(is_active=False, left_at=now)
        ))
        # EXCEPT reads the open rows in full before the first insert; a correlated NOT EXISTS may
        # be planned as a nested loop that rescans the table as this very statement grows it.
        newcomers = except_(
            select(Customer.id.label("customer_id")).select_from(_customer_from()).where(condition),
            select(memberships.c.customer_id).where(memberships.c.segment_id == segment.id,
                                                    memberships.c.is_active == true()),
        ).subquery()
        entered = rows_affected(session.execute(
            insert(memberships).from_select(
                ["segment_id", "customer_id", "confidence", "assignment", "is_active", "entered_at"],
                select(literal(segment.id), newcomers.c.customer_id, literal(1.0, Float), literal("auto"),
                       true(), literal(now, DateTime)),
            )
        ))
        changed_since_analyze += entered + left
        _mark_refreshed(session, segment.id, now)
        result[segment.name] = {"entered": entered, "left": left, "members": active_member_count(session, segment.id)}
    if segment_ids is not None:  # a segment saved from the page: its counts at once, not at the next refresh
        refresh_segment_stats(session, list(segment_ids))
    return result


def _id_column() -> Column:
    return Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True)


def replace_model_memberships(session: Session, segment_id: int, assignments: list[tuple[int, float]],
                              now: dt.datetime | None = None) -> dict[str, int]:
    """Make the given (customer id, confidence) pairs the segment's open auto memberships.

    Used by the RFM and clustering jobs; same enter/leave history as `refresh_memberships`.
    """
    now = now or utcnow()
    segment = get_segment(session, segment_id)
    wanted: dict[int, float] = {}
    for customer_id, confidence in assignments:
        if isinstance(customer_id, bool) or not isinstance(customer_id, int):
            raise ValidationError(f"Customer ids are whole numbers, got {_describe(customer_id)}.")
        confidence = float(confidence)
        if not 0.0 <= confidence <= 1.0:
            raise ValidationError(f"Confidence must be between 0 and 1, got {confidence} for customer {customer_id}.")
        wanted[customer_id] = confidence
    session.flush()
    current = {
        row.customer_id: (row.id, row.confidence)
        for row in session.execute(
            select(memberships.c.id, memberships.c.customer_id, memberships.c.confidence).where(
                memberships.c.segment_id == segment.id, memberships.c.is_active == true(),
                memberships.c.assignment == "auto")
        )
    }
    leaving = [{"b_id": row_id} for cid, (row_id, _) in current.items() if cid not in wanted]
    changed = [{"b_id": current[cid][0], "b_confidence": conf}
               for cid, conf in wanted.items() if cid in current and current[cid][1] != conf]
    entering = [(cid, conf) for cid, conf in wanted.items() if cid not in current]
    by_id = memberships.c.id == bindparam("b_id")
    if len(leaving) > STAGE_UPDATES_OVER:
        frame = pd.DataFrame({"id": [row["b_id"] for row in leaving]})
        with bulk.staged(session.connection(), "tmp_membership_leaving", [_id_column()], frame) as gone:
            session.execute(update(memberships).where(memberships.c.id == gone.c.id)
                            .values(is_active=False, left_at=now))
    elif leaving:
        session.execute(update(memberships).where(by_id).values(is_active=False, left_at=now), leaving)
    if len(changed) > STAGE_UPDATES_OVER:
        # A model refresh moves almost every confidence a little: one UPDATE ... FROM a staged table.
        frame = pd.DataFrame({"id": [c["b_id"] for c in changed], "confidence": [c["b_confidence"] for c in changed]})
        columns = [_id_column(), Column("confidence", Float)]
        with bulk.staged(session.connection(), "tmp_membership_confidence", columns, frame) as new:
            session.execute(update(memberships).where(memberships.c.id == new.c.id)
                            .values(confidence=new.c.confidence))
    elif changed:
        session.execute(update(memberships).where(by_id).values(confidence=bindparam("b_confidence")), changed)
    if entering:
        ids, confidences = zip(*entering, strict=True)
        bulk.load(session.connection(), memberships, pd.DataFrame({
            "segment_id": segment.id, "customer_id": ids, "confidence": confidences, "assignment": "auto",
            "is_active": True, "entered_at": pd.Timestamp(now),
        }))
    if len(entering) + len(leaving) >= ANALYZE_AFTER_CHANGES:
        _refresh_statistics(session)
    _mark_refreshed(session, segment.id, now)
    return {"entered": len(entering), "left": len(leaving), "members": active_member_count(session, segment.id)}
