"""Manual adjustments: points added or removed by hand with a reason, within the role's limit, and
above the approval limit (alone or summed over ADJUSTMENT_WINDOW) queued for a second person."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.loyalty.ledger import MAX_REASON, InsufficientPoints, entry_by_key, lock_account, post_entry
from crm_core.loyalty.rules import get_settings
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, NotFound, PermissionDenied, ValidationError
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from db.models import LoyaltyAdjustmentRequest, LoyaltyTransaction, User, utcnow


@dataclass(frozen=True)
class AdjustmentResult:
    """What `adjust` did: posted at once (`transaction`) or queued for approval (`request`)."""

    status: str  # "posted" or "pending"
    transaction: LoyaltyTransaction | None = None
    request: LoyaltyAdjustmentRequest | None = None
    why_pending: str = ""  # for a pending request: which limit it is above


# Manual adjustments a person posted without approval within this window add up against the
# approval limit: ten adjustments of 1,000 points need approval as one of 10,000 would.
ADJUSTMENT_WINDOW = dt.timedelta(hours=24)


def adjusted_without_approval(session: Session, actor: Actor, now: dt.datetime | None = None) -> int:
    """Points (added or removed) `actor` posted by hand without approval in the last ADJUSTMENT_WINDOW."""
    if actor.id is None:
        return 0
    since = (now or utcnow()) - ADJUSTMENT_WINDOW
    total = session.scalar(
        select(func.coalesce(func.sum(func.abs(LoyaltyTransaction.points)), 0)).where(
            LoyaltyTransaction.created_by_id == actor.id, LoyaltyTransaction.created_at >= since,
            LoyaltyTransaction.kind == "adjust", LoyaltyTransaction.source_type == "manual",
            LoyaltyTransaction.approved_by_id.is_(None)))
    return int(total or 0)


def _adjust_limit(settings: dict[str, Any], role: str) -> int:
    return int(settings["adjust_limits"].get(role, 0))


def _check_reason(reason: Any) -> str:
    reason = (reason or "").strip() if isinstance(reason, str) or reason is None else None
    if reason is None:
        raise ValidationError("The reason must be text.")
    if len(reason) < 5:
        raise ValidationError("A manual adjustment needs a reason of at least 5 characters.")
    if len(reason) > MAX_REASON:
        raise ValidationError(f"The reason is too long ({len(reason)} characters; at most {MAX_REASON}).")
    return reason


def adjust(session: Session, actor: Actor, customer_id: int, points: int, reason: str,
           idempotency_key: str | None = None) -> AdjustmentResult:
    """Add (positive) or remove (negative) points by hand, with a reason.

    A role may adjust at most its limit at once (`adjust_limits`); above `approval_limit` the
    adjustment is queued as a pending request for someone else with `loyalty.approve`."""
    require(actor, "loyalty.adjust")
    if isinstance(points, bool) or not isinstance(points, int | float) or int(points) != points or points == 0:
        raise ValidationError(f"An adjustment must be a non-zero whole number of points, not {points!r}.")
    points = int(points)
    reason = _check_reason(reason)
    settings, _ = get_settings(session)
    limit = _adjust_limit(settings, actor.role)
    if abs(points) > limit:
        raise PermissionDenied(
            f"Your role ({actor.role}) may adjust at most {limit:,} points at once; "
            f"{abs(points):,} needs a role with a higher limit."
        )
    if idempotency_key:
        done = entry_by_key(session, idempotency_key)
        if done is not None:
            return AdjustmentResult("posted", transaction=done)
        queued = session.scalars(select(LoyaltyAdjustmentRequest)
                                 .where(LoyaltyAdjustmentRequest.idempotency_key == idempotency_key)).one_or_none()
        if queued is not None:
            return AdjustmentResult(queued.status, request=queued)
    account = lock_account(session, customer_id)
    if points < 0 and account.points_balance + points < 0:
        raise InsufficientPoints(
            f"Customer {customer_id} has {account.points_balance:,} points; {-points:,} cannot be taken off."
        )
    approval_limit = settings["approval_limit"]
    why_pending = ""
    if abs(points) > approval_limit:
        why_pending = f"{abs(points):,} points are above the approval limit of {approval_limit:,}"
    elif actor.id is not None:
        # One person's adjustments are summed one at a time: concurrent ones wait for each other.
        session.execute(select(User.id).where(User.id == actor.id).with_for_update())
        earlier = adjusted_without_approval(session, actor)
        if earlier + abs(points) > approval_limit:
            why_pending = (f"with the {earlier:,} points you adjusted in the last 24 hours this makes "
                           f"{earlier + abs(points):,}, above the approval limit of {approval_limit:,}")
    if why_pending:
        request = LoyaltyAdjustmentRequest(
            account_id=account.id, customer_id=customer_id, points=points, reason=reason, status="pending",
            idempotency_key=idempotency_key, requested_by_id=actor.id, requested_at=utcnow(),
        )
        session.add(request)
        session.flush()
        record_audit(session, actor, "loyalty.adjust.request", "loyalty_adjustment", request.id,
                     after={"customer_id": customer_id, "points": points, "reason": reason, "why": why_pending})
        return AdjustmentResult("pending", request=request, why_pending=why_pending)
    entry = post_entry(session, account, "adjust", points, actor, reason=reason, source_type="manual",
                       key=idempotency_key)
    record_audit(session, actor, "loyalty.adjust", "loyalty_account", account.id,
                 after={"points": points, "balance_after": entry.balance_after, "reason": reason})
    return AdjustmentResult("posted", transaction=entry)


def decide_adjustment(session: Session, actor: Actor, request_id: int, approve: bool, note: str = "",
                      expected_version: int | None = None) -> LoyaltyAdjustmentRequest:
    """Approve (post the points) or reject a pending adjustment; nobody decides their own."""
    require(actor, "loyalty.approve")
    request = session.get(LoyaltyAdjustmentRequest, request_id)
    if request is None:
        raise NotFound(f"There is no adjustment request {request_id}.")
    if expected_version is not None and request.version != expected_version:
        raise ConflictError(f"Adjustment request {request_id} was changed by someone else. Reload and try again.")
    if request.status != "pending":
        raise ConflictError(f"Adjustment request {request_id} was already {request.status}.")
    if request.requested_by_id is not None and request.requested_by_id == actor.id:
        raise PermissionDenied("You cannot approve or reject your own adjustment; another approver must decide.")
    note = (note or "").strip()[:MAX_REASON]
    if approve:
        settings, _ = get_settings(session)
        limit = _adjust_limit(settings, actor.role)
        if abs(request.points) > limit:
            raise PermissionDenied(
                f"Your role ({actor.role}) may approve at most {limit:,} points; this request is {abs(request.points):,}."
            )
        account = lock_account(session, request.customer_id)
        entry = post_entry(session, account, "adjust", request.points, actor, reason=request.reason, source_type="manual",
                           source_id=str(request.id), key=request.idempotency_key or f"adjust:request:{request.id}",
                           approved_by_id=actor.id)
        entry.created_by_id = request.requested_by_id
        request.transaction_id = entry.id
    elif not note:
        raise ValidationError("Say why the adjustment is rejected.")
    request.status = "approved" if approve else "rejected"
    request.decided_by_id = actor.id
    request.decided_at = utcnow()
    request.decision_note = note or None
    session.flush()
    record_audit(session, actor, f"loyalty.adjust.{request.status}", "loyalty_adjustment", request.id,
                 before={"status": "pending"}, after={"status": request.status, "points": request.points, "note": note})
    return request


def pending_adjustments(session: Session, viewer: Actor, page: int = 1, page_size: int = 25,
                        after: str | None = None) -> Page:
    """Pending requests, oldest first, for approvers; a numbered page, or with `after` (a cursor, FIRST for
    the start) the next `page_size` by keyset."""
    require(viewer, "loyalty.view")
    r = LoyaltyAdjustmentRequest
    condition = r.status == "pending"
    total = None if after is not None else session.scalar(select(func.count()).select_from(r).where(condition)) or 0
    page = 0 if after is not None else max(1, page)
    rows, next_after = fetch_rows(
        session,
        select(r.id, r.customer_id, r.points, r.reason, r.requested_at, User.username, r.version)
        .outerjoin(User, User.id == r.requested_by_id).where(condition),
        (SortKey(r.requested_at), SortKey(r.id)), "pending_adjustments", page=page, page_size=page_size, after=after)
    return Page(rows=[{"request": i, "customer_id": c, "points": p, "reason": why, "requested_at": at,
                       "requested_by": who, "version": v} for i, c, p, why, at, who, v, *_key in rows],
                total=total, page=page, page_size=page_size, next_after=next_after)
