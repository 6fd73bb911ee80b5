"""Formal complaints: intake, a status workflow, resolution with compensation, SLA and satisfaction.

Settings live in `app_settings` under "complaint_settings" (no row means `DEFAULT_SETTINGS`):
the hours to resolve by severity (the resolution SLA; a complaint past its due time and not yet
resolved is overdue) and the largest compensation each role may approve. Compensation amounts
are money; a "points" compensation is credited to the loyalty ledger through `loyalty.adjust`
at the programme's point value (so the loyalty role limits and approval rules apply as well).

Workflow: open -> investigating -> escalated -> resolved -> closed. Escalation raises the level
(and may be repeated); a resolved complaint may be reopened to investigating; closed is final.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, and_, case, func, select
from sqlalchemy.orm import Session

from crm_core.loyalty.adjustments import adjust
from crm_core.loyalty.rules import get_settings as get_loyalty_settings
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.dates import data_date, midnight
from crm_core.platform.errors import NotFound, PermissionDenied, ValidationError
from crm_core.platform.paging import Page, SortKey, fetch_rows
from crm_core.platform.permissions import require
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.platform.sql import days_between, year_month
from crm_core.platform.transactions import check_version
from db.models import (
    COMPENSATION_KINDS,
    COMPLAINT_SEVERITIES,
    COMPLAINT_STATUSES,
    Complaint,
    Customer,
    Order,
    SupportTicket,
    User,
    utcnow,
)

SETTINGS_KEY = "complaint_settings"
COMPLAINT_CATEGORIES = ("delivery", "product", "billing", "returns", "service", "privacy", "other")
OPEN_COMPLAINT_STATUSES = ("open", "investigating", "escalated")
# Severities a complaint weighs more by (account health penalises them more).
SEVERE_COMPLAINT_SEVERITIES = ("high", "critical")
DONE_STATUSES = ("resolved", "closed")
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "open": ("investigating", "escalated", "resolved"),
    "investigating": ("escalated", "resolved"),
    "escalated": ("investigating", "resolved"),
    "resolved": ("closed", "investigating"),
    "closed": (),
}
MAX_COMPLAINT_DESCRIPTION = 5000
MAX_RESOLUTION = 5000

DEFAULT_SETTINGS: dict[str, Any] = {
    "resolution_hours": {"low": 168, "medium": 72, "high": 24, "critical": 8},
    "compensation_limits": {"support_agent": 50, "success_manager": 500, "admin": 5000},
}


# --------------------------------------------------------------------------- settings


def get_complaint_settings(session: Session) -> tuple[dict[str, Any], int]:
    stored, version = stored_setting(session, SETTINGS_KEY)
    merged = {k: dict(v) for k, v in DEFAULT_SETTINGS.items()}
    for key, value in (stored or {}).items():
        merged[key] = dict(value)
    return merged, version


def validate_settings(settings: dict[str, Any]) -> dict[str, Any]:
    if not isinstance(settings, dict) or set(settings) - set(DEFAULT_SETTINGS):
        raise ValidationError(f"Complaint settings take only: {', '.join(DEFAULT_SETTINGS)}.")
    merged = {**{k: dict(v) for k, v in DEFAULT_SETTINGS.items()}, **settings}
    hours = merged["resolution_hours"]
    if not isinstance(hours, dict) or set(hours) != set(COMPLAINT_SEVERITIES):
        raise ValidationError(f"Give the hours to resolve for each severity: {', '.join(COMPLAINT_SEVERITIES)}.")
    for severity, value in hours.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value or not 1 <= value <= 8760:
            raise ValidationError(f"Hours to resolve a {severity} complaint must be a whole number from 1 to 8760.")
    limits = merged["compensation_limits"]
    if not isinstance(limits, dict):
        raise ValidationError("Compensation limits must map a role to an amount.")
    for role, value in limits.items():
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ValidationError(f"The compensation limit of {role} must be an amount of 0 or more.")
    merged["resolution_hours"] = {k: int(v) for k, v in hours.items()}
    merged["compensation_limits"] = {str(k): float(v) for k, v in limits.items()}
    return merged


def save_complaint_settings(session: Session, actor: Actor, settings: dict[str, Any], expected_version: int | None):
    require(actor, "complaints.settings")
    new = validate_settings(settings)
    version = save_setting(session, actor, SETTINGS_KEY, new, expected_version,
                                what="The complaint settings", action="complaints.settings.save")
    return new, version


# --------------------------------------------------------------------------- intake and workflow


def _snapshot(c: Complaint) -> dict[str, Any]:
    return {"status": c.status, "severity": c.severity, "escalation_level": c.escalation_level,
            "compensation_kind": c.compensation_kind, "compensation_amount": c.compensation_amount,
            "satisfaction": c.satisfaction, "resolution": c.resolution}


def _choice(value: Any, allowed: tuple[str, ...], what: str) -> str:
    if value not in allowed:
        raise ValidationError(f"{what} must be one of {', '.join(allowed)} (got {value!r}).")
    return value


def _get(session: Session, complaint_id: int, expected_version: int | None) -> Complaint:
    complaint = session.get(Complaint, complaint_id)
    if complaint is None:
        raise NotFound(f"There is no complaint {complaint_id}.")
    check_version(complaint, expected_version, f"Complaint {complaint_id}")
    return complaint


def _optional_id(value: Any, what: str) -> int | None:
    """An optional positive id from a number or digits; None when left empty."""
    if value is None or value == "" or value == 0:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and value.strip().isdigit():
        number = int(value.strip())
    else:
        raise ValidationError(f"{what} must be a whole number, not {value!r}.")
    if number <= 0:
        raise ValidationError(f"{what} must be a positive whole number, not {value!r}.")
    return number


def create_complaint(session: Session, actor: Actor, customer_id: int, category: str, severity: str, description: str,
           ticket_id: int | None = None, order_id: int | None = None, now: dt.datetime | None = None) -> Complaint:
    """Register a complaint; a linked ticket or order must belong to the same customer."""
    require(actor, "complaints.manage")
    _choice(category, COMPLAINT_CATEGORIES, "Category")
    _choice(severity, COMPLAINT_SEVERITIES, "Severity")
    description = (description or "").strip() if isinstance(description, str) or description is None else None
    if not description:
        raise ValidationError("Describe the complaint (the description is required).")
    if len(description) > MAX_COMPLAINT_DESCRIPTION:
        raise ValidationError(f"The description is too long ({len(description):,} characters; at most {MAX_COMPLAINT_DESCRIPTION:,}).")
    chosen = _optional_id(customer_id, "Customer id")
    customer = session.get(Customer, chosen) if chosen else None
    if customer is None:
        raise NotFound(f"There is no customer {chosen}." if chosen else "Choose the customer who complains.")
    ticket_id = _optional_id(ticket_id, "Ticket id")
    if ticket_id is not None:
        ticket = session.get(SupportTicket, ticket_id)
        if ticket is None:
            raise NotFound(f"There is no ticket {ticket_id}.")
        if ticket.customer_id != customer.id:
            raise ValidationError(f"Ticket {ticket.ticket_number} belongs to another customer.")
    order_id = _optional_id(order_id, "Order id")
    if order_id is not None:
        order = session.get(Order, order_id)
        if order is None:
            raise NotFound(f"There is no order {order_id}.")
        if order.customer_id != customer.id:
            raise ValidationError(f"Order {order.order_number} belongs to another customer.")
    now = now or utcnow()
    settings, _ = get_complaint_settings(session)
    complaint = Complaint(
        customer_id=customer.id, ticket_id=ticket_id, order_id=order_id, category=category, severity=severity,
        description=description, status="open", compensation_kind="none", compensation_amount=Decimal("0"),
        created_by_id=actor.id, escalation_level=0, created_at=now, updated_at=now,
        resolution_due_at=now + dt.timedelta(hours=settings["resolution_hours"][severity]),
    )
    session.add(complaint)
    session.flush()
    record_audit(session, actor, "complaint.create", "complaint", complaint.id, after=_snapshot(complaint))
    return complaint


def change_complaint_status(session: Session, actor: Actor, complaint_id: int, status: str,
                  expected_version: int | None = None) -> Complaint:
    """Move a complaint along the workflow (resolving goes through `resolve`)."""
    require(actor, "complaints.manage")
    _choice(status, COMPLAINT_STATUSES, "Status")
    complaint = _get(session, complaint_id, expected_version)
    if status not in TRANSITIONS[complaint.status]:
        allowed = ", ".join(TRANSITIONS[complaint.status]) or "nothing (it is final)"
        raise ValidationError(f"A {complaint.status} complaint can move to {allowed}, not {status}.")
    if status == "resolved":
        raise ValidationError("Resolve a complaint with its resolution (use the resolve form).")
    before = _snapshot(complaint)
    if status == "escalated":
        complaint.escalation_level += 1
    if status == "investigating" and complaint.status == "resolved":
        complaint.resolved_at = None
    complaint.status = status
    complaint.updated_at = utcnow()
    session.flush()
    record_audit(session, actor, f"complaint.{status}", "complaint", complaint.id, before=before,
                 after=_snapshot(complaint))
    return complaint


def escalate_complaint(session: Session, actor: Actor, complaint_id: int, expected_version: int | None = None) -> Complaint:
    """Raise the escalation level (also of an already escalated complaint)."""
    require(actor, "complaints.manage")
    complaint = _get(session, complaint_id, expected_version)
    if complaint.status in DONE_STATUSES:
        raise ValidationError(f"Complaint {complaint_id} is {complaint.status}; reopen it before escalating.")
    before = _snapshot(complaint)
    complaint.escalation_level += 1
    complaint.status = "escalated"
    complaint.updated_at = utcnow()
    session.flush()
    record_audit(session, actor, "complaint.escalated", "complaint", complaint.id, before=before,
                 after=_snapshot(complaint))
    return complaint


def _amount(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise ValidationError("The compensation amount must be a number.")
    try:
        amount = Decimal(str(value if value not in (None, "") else 0))
    except InvalidOperation:
        raise ValidationError(f"The compensation amount must be a number, not {value!r}.") from None
    if not amount.is_finite() or amount < 0:
        raise ValidationError("The compensation amount must be 0 or more.")
    if amount > Decimal("1000000"):
        raise ValidationError("The compensation amount is implausibly large (over 1,000,000).")
    return amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def _limit_for(session: Session, role: str) -> float:
    settings, _ = get_complaint_settings(session)
    return float(settings["compensation_limits"].get(role, 0))


def compensation_limit(session: Session, viewer: Actor) -> float:
    """The most compensation the viewer's role may approve."""
    require(viewer, "complaints.manage")
    return _limit_for(session, viewer.role)


def resolve_complaint(session: Session, actor: Actor, complaint_id: int, resolution: str, compensation_kind: str = "none",
            compensation_amount: Any = 0, expected_version: int | None = None,
            now: dt.datetime | None = None) -> Complaint:
    """Resolve with a resolution text and optional compensation within the actor's approval limit."""
    require(actor, "complaints.manage")
    complaint = _get(session, complaint_id, expected_version)
    if complaint.status in DONE_STATUSES:
        raise ValidationError(f"Complaint {complaint_id} is already {complaint.status}.")
    resolution = (resolution or "").strip() if isinstance(resolution, str) or resolution is None else ""
    if not resolution:
        raise ValidationError("Say how the complaint was resolved (the resolution is required).")
    if len(resolution) > MAX_RESOLUTION:
        raise ValidationError(f"The resolution is too long (at most {MAX_RESOLUTION:,} characters).")
    _choice(compensation_kind, COMPENSATION_KINDS, "Compensation kind")
    amount = _amount(compensation_amount)
    if compensation_kind == "none" and amount != 0:
        raise ValidationError("Choose the kind of compensation for a non-zero amount.")
    if compensation_kind != "none" and amount == 0:
        raise ValidationError(f"Give the amount of the {compensation_kind} compensation.")
    limit = _limit_for(session, actor.role)
    if amount > Decimal(str(limit)):
        higher = _roles_allowed(session, amount)
        who = f"ask {' or '.join(higher)}" if higher else "no role may approve that much"
        raise PermissionDenied(
            f"Your role ({actor.role}) may approve compensation up to €{limit:,.2f}; €{amount:,.2f} needs a higher "
            f"limit: {who}."
        )
    before = _snapshot(complaint)
    now = now or utcnow()
    complaint.resolution = resolution
    complaint.compensation_kind = compensation_kind
    complaint.compensation_amount = amount
    complaint.approved_by_id = actor.id if amount > 0 else None
    complaint.status = "resolved"
    complaint.resolved_at = now
    complaint.updated_at = now
    session.flush()
    if compensation_kind == "points":
        point_value = get_loyalty_settings(session)[0]["point_value"]
        points = int((amount / Decimal(str(point_value))).to_integral_value(rounding=ROUND_HALF_UP))
        adjust(session, actor, complaint.customer_id, points,
               f"Compensation for complaint {complaint.id}", idempotency_key=f"complaint:{complaint.id}")
    record_audit(session, actor, "complaint.resolved", "complaint", complaint.id, before=before,
                 after=_snapshot(complaint))
    return complaint


def _roles_allowed(session: Session, amount: Decimal) -> list[str]:
    settings, _ = get_complaint_settings(session)
    return sorted(role for role, limit in settings["compensation_limits"].items() if Decimal(str(limit)) >= amount)


def record_complaint_satisfaction(session: Session, actor: Actor, complaint_id: int, score: Any,
                        expected_version: int | None = None) -> Complaint:
    """The customer's satisfaction with the resolution, 1 (very unhappy) to 5 (very happy)."""
    require(actor, "complaints.manage")
    if isinstance(score, bool) or not isinstance(score, int) or not 1 <= score <= 5:
        raise ValidationError(f"Satisfaction is a whole number from 1 to 5, not {score!r}.")
    complaint = _get(session, complaint_id, expected_version)
    if complaint.status not in DONE_STATUSES:
        raise ValidationError("Record satisfaction once the complaint is resolved.")
    before = _snapshot(complaint)
    complaint.satisfaction = score
    complaint.updated_at = utcnow()
    session.flush()
    record_audit(session, actor, "complaint.satisfaction", "complaint", complaint.id, before=before,
                 after=_snapshot(complaint))
    return complaint


# --------------------------------------------------------------------------- reads


@dataclass(frozen=True)
class ComplaintFilter:
    status: str | None = None  # a status, or "open" meaning any open status
    severity: str | None = None
    category: str | None = None
    customer_id: int | None = None
    overdue_only: bool = False


def _overdue(now: dt.datetime):
    return and_(Complaint.status.in_(OPEN_COMPLAINT_STATUSES), Complaint.resolution_due_at < now)


def search_complaints(session: Session, viewer: Actor, filters: ComplaintFilter = ComplaintFilter(), page: int = 1,
           page_size: int = 25, now: dt.datetime | None = None, after: str | None = None) -> Page:
    """Complaints, newest first, with the overdue flag computed in the database; a numbered page, or
    with `after` (a cursor, FIRST for the start) the next `page_size` by keyset."""
    require(viewer, "complaints.view")
    now = now or utcnow()
    c = Complaint
    conditions: list[ColumnElement[bool]] = []
    if filters.status == "any open":
        conditions.append(c.status.in_(OPEN_COMPLAINT_STATUSES))
    elif filters.status:
        conditions.append(c.status == _choice(filters.status, COMPLAINT_STATUSES, "Status"))
    if filters.severity:
        conditions.append(c.severity == _choice(filters.severity, COMPLAINT_SEVERITIES, "Severity"))
    if filters.category:
        conditions.append(c.category == filters.category)
    if filters.customer_id:
        conditions.append(c.customer_id == filters.customer_id)
    if filters.overdue_only:
        conditions.append(_overdue(now))
    total = None if after is not None else session.scalar(select(func.count()).select_from(c).where(*conditions)) or 0
    page = 0 if after is not None else max(1, page)
    found, next_after = fetch_rows(
        session,
        select(c.id, c.created_at, c.customer_id, Customer.first_name, Customer.last_name,
               c.category, c.severity, c.status, c.escalation_level, c.resolution_due_at,
               case((_overdue(now), True), else_=False).label("overdue"), c.compensation_kind,
               c.compensation_amount, c.satisfaction, c.ticket_id, c.order_id, c.version)
        .join(Customer, Customer.id == c.customer_id).where(*conditions),
        (SortKey(c.created_at, descending=True), SortKey(c.id, descending=True)), "complaints",
        page=page, page_size=page_size, after=after)
    rows = [{k: v for k, v in r._mapping.items() if not k.startswith("sort_key_")} for r in found]
    # Names are personal data: a role without customers.view (an executive) reads "Customer #id".
    # Imported here: crm_core.customers reaches back into the service package.
    from crm_core.customers.rules import shown_name

    out = []
    for row in rows:
        item = {k: v for k, v in row.items() if k not in ("first_name", "last_name")}
        item["customer"] = shown_name(viewer, row["first_name"], row["last_name"], row["customer_id"])
        out.append({**item, "overdue": bool(row["overdue"]), "compensation_amount": float(row["compensation_amount"])})
    return Page(rows=out, total=total, page=page, page_size=page_size, next_after=next_after)


def customer_complaints(session: Session, viewer: Actor, customer_id: int, page: int = 1, page_size: int = 20) -> Page:
    """One customer's complaints, newest first (for the Customer 360 timeline)."""
    return search_complaints(session, viewer, ComplaintFilter(customer_id=customer_id), page=page, page_size=page_size)


def complaint_detail(session: Session, viewer: Actor, complaint_id: int) -> dict[str, Any]:
    require(viewer, "complaints.view")
    complaint = session.get(Complaint, complaint_id)
    if complaint is None:
        raise NotFound(f"There is no complaint {complaint_id}.")
    approver = session.get(User, complaint.approved_by_id) if complaint.approved_by_id else None
    return {
        "id": complaint.id, "customer_id": complaint.customer_id, "category": complaint.category,
        "severity": complaint.severity, "status": complaint.status, "description": complaint.description,
        "resolution": complaint.resolution, "compensation_kind": complaint.compensation_kind,
        "compensation_amount": float(complaint.compensation_amount), "approved_by": approver.username if approver else None,
        "created_at": complaint.created_at, "resolution_due_at": complaint.resolution_due_at,
        "resolved_at": complaint.resolved_at, "satisfaction": complaint.satisfaction,
        "escalation_level": complaint.escalation_level, "ticket_id": complaint.ticket_id,
        "order_id": complaint.order_id, "version": complaint.version,
        "next_statuses": [s for s in TRANSITIONS[complaint.status] if s != "resolved"],
    }


def open_complaints_by_severity(session: Session, viewer: Actor, now: dt.datetime | None = None) -> list[dict[str, Any]]:
    """Open complaints per severity, and how many of them are overdue."""
    require(viewer, "complaints.view")
    now = now or utcnow()
    c = Complaint
    rows = session.execute(
        select(c.severity, func.count(), func.sum(case((c.resolution_due_at < now, 1), else_=0)))
        .where(c.status.in_(OPEN_COMPLAINT_STATUSES)).group_by(c.severity)
    ).all()
    found = {s: (int(n), int(late or 0)) for s, n, late in rows}
    return [{"severity": s, "open": found.get(s, (0, 0))[0], "overdue": found.get(s, (0, 0))[1]}
            for s in COMPLAINT_SEVERITIES]


def complaint_time_to_resolve(session: Session, viewer: Actor, since: dt.date | None = None) -> list[dict[str, Any]]:
    """Median and mean hours from complaint to resolution per severity, and the share on time."""
    require(viewer, "complaints.view")
    c = Complaint
    hours = days_between(c.resolved_at, c.created_at) * 24
    conditions: list[ColumnElement[bool]] = [c.resolved_at.is_not(None)]
    if since:
        conditions.append(c.resolved_at >= midnight(since))
    ranked = select(
        c.severity, hours.label("hours"),
        case((c.resolved_at <= c.resolution_due_at, 1), else_=0).label("on_time"),
        func.row_number().over(partition_by=c.severity, order_by=hours).label("position"),
        func.count().over(partition_by=c.severity).label("n"),
    ).where(*conditions).subquery()
    r = ranked.c
    middle = r.position.in_(((r.n + 1) // 2, (r.n + 2) // 2))
    rows = session.execute(
        select(r.severity, func.avg(case((middle, r.hours))), func.avg(r.hours), func.count(), func.avg(r.on_time))
        .group_by(r.severity)
    ).all()
    found = {s: (median, mean, n, on_time) for s, median, mean, n, on_time in rows}
    return [{"severity": s, "median_hours": round(float(found[s][0]), 1), "avg_hours": round(float(found[s][1]), 1),
             "resolved": int(found[s][2]), "on_time_share": round(float(found[s][3] or 0), 3)}
            for s in COMPLAINT_SEVERITIES if s in found]


def compensation_by_month(session: Session, viewer: Actor, months: int = 12,
                          as_of: dt.date | None = None) -> list[dict[str, Any]]:
    """Compensation paid per month (of resolution) and kind."""
    require(viewer, "complaints.view")
    as_of = as_of or data_date(session).day
    start = dt.date(as_of.year, as_of.month, 1)
    for _ in range(months - 1):
        start = (start - dt.timedelta(days=1)).replace(day=1)
    c = Complaint
    month = year_month(c.resolved_at)
    rows = session.execute(
        select(month, c.compensation_kind, func.count(), func.sum(c.compensation_amount))
        .where(c.resolved_at >= midnight(start), c.compensation_kind != "none")
        .group_by(month, c.compensation_kind).order_by(month)
    ).all()
    return [{"month": m, "kind": k, "complaints": int(n), "amount": round(float(a or 0), 2)} for m, k, n, a in rows]


def complaint_kpis(session: Session, viewer: Actor, now: dt.datetime | None = None) -> dict[str, Any]:
    """Headline figures: open, overdue, resolved in 30 days, average satisfaction, compensation in 30 days."""
    require(viewer, "complaints.view")
    now = now or utcnow()
    c = Complaint
    month_ago = now - dt.timedelta(days=30)
    row = session.execute(select(
        func.sum(case((c.status.in_(OPEN_COMPLAINT_STATUSES), 1), else_=0)),
        func.sum(case((_overdue(now), 1), else_=0)),
        func.sum(case((c.resolved_at >= month_ago, 1), else_=0)),
        func.avg(c.satisfaction),
        func.sum(case((c.resolved_at >= month_ago, c.compensation_amount), else_=0)),
        func.count(),
    )).one()
    return {"open": int(row[0] or 0), "overdue": int(row[1] or 0), "resolved_30d": int(row[2] or 0),
            "avg_satisfaction": None if row[3] is None else round(float(row[3]), 2),
            "compensation_30d": round(float(row[4] or 0), 2), "total": int(row[5] or 0)}
