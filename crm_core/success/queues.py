"""What the workbench reads: my CTAs and the team's (priority, then due date; overdue flagged), workload
per person, each success manager's book of business, a customer's CTAs, the staff who can own CTAs.

Every read aggregates in the database and pages its rows.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import and_, case, func, or_, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER, shown_name
from crm_core.platform.actors import Actor
from crm_core.platform.dates import check_as_of
from crm_core.platform.errors import ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import PERMISSIONS, require
from crm_core.platform.rollup_state import history_rewritten_since, replace_summary
from crm_core.segmentation.churn_levels import AT_RISK_PROBABILITY
from crm_core.success.ctas import OPEN_STATUSES, PRIORITY_RANK
from crm_core.success.triggers import TRIGGER_LABELS
from db.models import (
    CTA_OUTCOMES,
    HEALTH_LEVELS,
    AccountHealthScore,
    Customer,
    CustomerAnalytics,
    RollupSummary,
    SuccessCta,
    User,
)

MAX_PAGE_SIZE = 200
QUEUE_VIEWS = ("active", "due", "snoozed", "closed")
UNASSIGNED = 0  # the owner filter value for "nobody"


def _page_args(page: int, page_size: int) -> tuple[int, int]:
    if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= MAX_PAGE_SIZE:
        raise ValidationError(f"Page size must be between 1 and {MAX_PAGE_SIZE}.")
    return max(1, int(page)), page_size


def _priority_order():
    return case(*[(SuccessCta.priority == p, rank) for p, rank in PRIORITY_RANK.items()], else_=0)


def _view(view: str, today: dt.date) -> list[Any]:
    c = SuccessCta
    if view not in QUEUE_VIEWS:
        raise ValidationError(f"The queue view is one of {', '.join(QUEUE_VIEWS)}.")
    if view == "closed":
        return [c.status == "closed"]
    if view == "snoozed":
        return [c.status == "snoozed", c.snoozed_until > today]
    awake = or_(c.status.in_(("open", "in_progress")), and_(c.status == "snoozed", c.snoozed_until <= today))
    if view == "due":
        return [awake, c.due_on <= today]
    return [awake]


def _rows(session: Session, viewer: Actor, conditions: list[Any], today: dt.date, page: int, page_size: int,
          closed: bool = False) -> Page:
    c = SuccessCta
    total = session.scalar(select(func.count()).select_from(c).where(*conditions)) or 0
    order = ((c.closed_at.desc(), c.id.desc()) if closed
             else (_priority_order().desc(), c.due_on.asc(), c.id.asc()))
    # One page of CTAs first (over the CTA table's own indexes), then their customers and owners by key.
    paged = (select(c.id).where(*conditions).order_by(*order).limit(page_size).offset((page - 1) * page_size)
             .subquery())
    found = session.execute(
        select(c.id, c.customer_id, Customer.first_name, Customer.last_name, c.trigger, c.title, c.reason, c.priority,
               c.status, c.due_on, c.snoozed_until, c.outcome, c.opened_on, c.version, User.username.label("owner"))
        .join(paged, paged.c.id == c.id)
        .join(Customer, Customer.id == c.customer_id).outerjoin(User, User.id == c.owner_id)
        .order_by(*order)
    ).all()
    rows = [{
        "id": r.id, "customer_id": r.customer_id, "customer": shown_name(viewer, r.first_name, r.last_name, r.customer_id),
        "trigger": TRIGGER_LABELS.get(r.trigger, r.trigger), "title": r.title, "reason": r.reason,
        "priority": r.priority, "status": r.status, "due_on": r.due_on,
        "overdue": r.status != "closed" and r.due_on < today,
        "snoozed_until": r.snoozed_until, "outcome": r.outcome, "opened_on": r.opened_on,
        "owner": r.owner or "(unassigned)", "version": r.version,
    } for r in found]
    return Page(rows=rows, total=int(total), page=page, page_size=page_size)


def my_ctas(session: Session, viewer: Actor, today: dt.date, view: str = "active", page: int = 1,
            page_size: int = 25) -> Page:
    """The viewer's CTAs: urgent first, then the earliest due date; snoozed ones return when their date comes."""
    require(viewer, "success.work")
    check_as_of(today)
    page, page_size = _page_args(page, page_size)
    conditions = [SuccessCta.owner_id == viewer.id, *_view(view, today)]
    return _rows(session, viewer, conditions, today, page, page_size, closed=view == "closed")


def team_ctas(session: Session, viewer: Actor, today: dt.date, view: str = "active", owner_id: int | None = None,
              trigger: str | None = None, page: int = 1, page_size: int = 25) -> Page:
    """Everyone's CTAs, optionally of one owner (UNASSIGNED: nobody's) or one trigger."""
    require(viewer, "success.view")
    check_as_of(today)
    page, page_size = _page_args(page, page_size)
    conditions = list(_view(view, today))
    if owner_id == UNASSIGNED:
        conditions.append(SuccessCta.owner_id.is_(None))
    elif owner_id is not None:
        conditions.append(SuccessCta.owner_id == owner_id)
    if trigger:
        if trigger not in TRIGGER_LABELS:
            raise ValidationError(f"Unknown trigger {trigger!r}.")
        conditions.append(SuccessCta.trigger == trigger)
    return _rows(session, viewer, conditions, today, page, page_size, closed=view == "closed")


def team_workload(session: Session, viewer: Actor, today: dt.date) -> list[dict[str, Any]]:
    """Per owner (and unassigned): open, in progress, snoozed, overdue, due in 7 days, closed in 30 days."""
    require(viewer, "success.view")
    check_as_of(today)
    c = SuccessCta
    awake = or_(c.status.in_(("open", "in_progress")), and_(c.status == "snoozed", c.snoozed_until <= today))

    def count(condition) -> Any:
        return func.sum(case((condition, 1), else_=0))

    rows = session.execute(
        select(c.owner_id, User.username,
               count(c.status == "open"), count(c.status == "in_progress"), count(c.status == "snoozed"),
               count(and_(awake, c.due_on < today)), count(and_(awake, c.due_on >= today,
                                                              c.due_on <= today + dt.timedelta(days=7))),
               count(and_(c.status == "closed", c.closed_on > today - dt.timedelta(days=30))),
               count(and_(c.status == "closed", c.closed_on > today - dt.timedelta(days=30), c.outcome == "saved")))
        .outerjoin(User, User.id == c.owner_id)
        .where(or_(c.status != "closed", c.closed_on > today - dt.timedelta(days=30)))
        .group_by(c.owner_id, User.username)
    ).all()
    result = [{"owner_id": r[0], "owner": r[1] or "(unassigned)", "open": int(r[2] or 0), "in_progress": int(r[3] or 0),
               "snoozed": int(r[4] or 0), "overdue": int(r[5] or 0), "due_7_days": int(r[6] or 0),
               "closed_30_days": int(r[7] or 0), "saved_30_days": int(r[8] or 0)} for r in rows]
    return sorted(result, key=lambda r: (r["owner_id"] is None, -(r["open"] + r["in_progress"]), r["owner"]))


def assignable_owners(session: Session, viewer: Actor) -> list[dict[str, Any]]:
    """Active staff whose role may work CTAs, by username."""
    require(viewer, "success.view")
    roles = sorted(PERMISSIONS["success.work"])
    return [{"id": u.id, "username": u.username, "role": u.role} for u in session.scalars(
        select(User).where(User.is_active.is_(True), User.role.in_(roles)).order_by(User.username))]


BOOKS_SUMMARY = "books_of_business"


def _books_and_health(session: Session, today: dt.date) -> tuple[dict[int | None, dict[str, Any]],
                                                                 dict[int | None, dict[str, Any]]]:
    """Per owner: accounts, accounts and revenue at risk; and the latest health scores' levels (a pass over
    every owned customer: stored by the refresh for the page)."""
    a, h = CustomerAnalytics, AccountHealthScore
    owned = (select(Customer.account_manager_id.label("owner_id"), func.count().label("accounts"),
                    func.sum(case((a.churn_probability >= AT_RISK_PROBABILITY,
                                   func.coalesce(a.clv_12m, a.total_revenue, 0)), else_=0)).label("at_risk_value"),
                    func.sum(case((a.churn_probability >= AT_RISK_PROBABILITY, 1), else_=0)).label("at_risk"))
             .outerjoin(a, a.customer_id == Customer.id)
             .where(Customer.account_manager_id.is_not(None), COUNTED_CUSTOMER)
             .group_by(Customer.account_manager_id))
    books: dict[int | None, dict[str, Any]] = {r.owner_id: {"accounts": int(r.accounts), "accounts_at_risk": int(r.at_risk or 0),
                          "revenue_at_risk": round(float(r.at_risk_value or 0), 2)}
             for r in session.execute(owned).all()}
    latest = session.scalar(select(func.max(h.as_of)).where(h.as_of <= today))
    health: dict[int | None, dict[str, Any]] = {}
    if latest is not None:
        for owner_id, level, n, avg in session.execute(
                select(Customer.account_manager_id, h.level, func.count(), func.avg(h.overall))
                .join(Customer, Customer.id == h.customer_id)
                .where(h.as_of == latest, Customer.account_manager_id.is_not(None), COUNTED_CUSTOMER)
                .group_by(Customer.account_manager_id, h.level)).all():
            entry = health.setdefault(owner_id, {"scored": 0, "total": 0.0, "levels": {}})
            entry["scored"] += int(n)
            entry["total"] += float(avg or 0) * int(n)
            entry["levels"][level] = int(n)
    return books, health


def store_books(session: Session, today: dt.date) -> int:
    """The success step's last act: the owners' books as of the date, stored for the workbench (account
    owners change only through imports and merges, after which the page counts them itself)."""
    books, health = _books_and_health(session, today)
    replace_summary(session, BOOKS_SUMMARY, today, {"books": {str(k): v for k, v in books.items()},
                                                    "health": {str(k): v for k, v in health.items()}})
    return len(books)


def book_of_business(session: Session, viewer: Actor, today: dt.date) -> list[dict[str, Any]]:
    """Per account owner: accounts owned, portfolio health (average and per level, latest scores),
    revenue at risk (12-month CLV, else revenue, of accounts at high churn risk), CTAs open and closed by outcome."""
    require(viewer, "success.view")
    check_as_of(today)
    stored = session.get(RollupSummary, (BOOKS_SUMMARY, today))
    if stored is not None and not history_rewritten_since(session, stored.built_at):
        books: dict[int | None, dict[str, Any]] = {int(k): v for k, v in stored.payload["books"].items()}
        health: dict[int | None, dict[str, Any]] = {int(k): v for k, v in stored.payload["health"].items()}
    else:
        books, health = _books_and_health(session, today)
    c = SuccessCta
    ctas: dict[int | None, dict[str, int]] = {}
    for owner_id, status, outcome, n in session.execute(
            select(c.owner_id, c.status, c.outcome, func.count()).where(c.owner_id.is_not(None))
            .group_by(c.owner_id, c.status, c.outcome)).all():
        entry2 = ctas.setdefault(owner_id, {})
        key = f"closed_{outcome}" if status == "closed" else "open"
        entry2[key] = entry2.get(key, 0) + int(n)
    users: dict[int | None, str] = {u.id: u.username for u in session.scalars(select(User).where(User.id.in_(set(books) | set(ctas))))}
    result = []
    for owner_id in sorted(set(books) | set(ctas), key=lambda o: users.get(o, "")):
        book = books.get(owner_id, {"accounts": 0, "accounts_at_risk": 0, "revenue_at_risk": 0.0})
        portfolio = health.get(owner_id)
        row: dict[str, Any] = {
            "owner_id": owner_id, "owner": users.get(owner_id, f"user {owner_id}"), **book,
            "avg_health": round(portfolio["total"] / portfolio["scored"], 1) if portfolio and portfolio["scored"] else None,
            **{f"health_{level}": (portfolio or {}).get("levels", {}).get(level, 0) for level in HEALTH_LEVELS},
            "ctas_open": ctas.get(owner_id, {}).get("open", 0),
            **{f"closed_{o}": ctas.get(owner_id, {}).get(f"closed_{o}", 0) for o in CTA_OUTCOMES},
        }
        result.append(row)
    return result


def customer_ctas(session: Session, viewer: Actor, customer_id: int, today: dt.date) -> list[dict[str, Any]]:
    """A customer's CTAs, open ones first (for the panels on Churn, Health and Customer 360)."""
    require(viewer, "success.view")
    check_as_of(today)
    c = SuccessCta
    rows = session.execute(
        select(c.id, c.trigger, c.title, c.reason, c.priority, c.status, c.due_on, c.outcome, c.opened_on,
               User.username).outerjoin(User, User.id == c.owner_id)
        .where(c.customer_id == customer_id)
        .order_by(case((c.status.in_(OPEN_STATUSES), 0), else_=1), c.opened_at.desc()).limit(50)
    ).all()
    return [{"id": r.id, "trigger": TRIGGER_LABELS.get(r.trigger, r.trigger), "title": r.title, "reason": r.reason,
             "priority": r.priority, "status": r.status, "due_on": r.due_on,
             "overdue": r.status != "closed" and r.due_on < today, "outcome": r.outcome, "opened_on": r.opened_on,
             "owner": r.username or "(unassigned)"} for r in rows]
