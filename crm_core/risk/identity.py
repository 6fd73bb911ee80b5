"""Identity verification per customer: unverified -> pending -> verified / failed (with the reason),
set by reviewers or imported; the latest check is the status, and rules read it."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.customers.rules import COUNTED_CUSTOMER
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.permissions import require
from crm_core.reporting.sales_rollups import counted_customers
from db.models import IDENTITY_STATUSES, Customer, IdentityCheck, utcnow

# status -> the statuses a reviewer may move it to
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "unverified": ("pending",),
    "pending": ("verified", "failed", "unverified"),
    "verified": ("pending",),
    "failed": ("pending",),
}
REASON_LIMIT = 255


def identity_status(session: Session, customer_id: int) -> dict[str, Any]:
    check = session.scalar(select(IdentityCheck).where(IdentityCheck.customer_id == customer_id)
                           .order_by(IdentityCheck.id.desc()).limit(1))
    if check is None:
        return {"status": "unverified", "reason": None, "checked_at": None, "source": None}
    return {"status": check.status, "reason": check.reason, "checked_at": check.checked_at, "source": check.source}


def customer_identity(session: Session, viewer: Actor, customer_id: int) -> dict[str, Any]:
    require(viewer, "risk.view")
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    return identity_status(session, customer_id)


def set_identity_status(session: Session, actor: Actor, customer_id: int, status: str,
                        reason: str | None = None) -> IdentityCheck:
    """Move a customer's verification one step (see TRANSITIONS); a failure needs its reason."""
    require(actor, "risk.identity")
    if session.get(Customer, customer_id) is None:
        raise NotFound(f"Customer {customer_id} does not exist.")
    if status not in IDENTITY_STATUSES:
        raise ValidationError(f"Unknown status {status!r}; use one of {', '.join(IDENTITY_STATUSES)}.")
    current = identity_status(session, customer_id)["status"]
    if status not in TRANSITIONS[current]:
        allowed = ", ".join(TRANSITIONS[current])
        raise ValidationError(f"Identity status {current} can move to {allowed}, not to {status}.")
    reason = (reason or "").strip() or None
    if status == "failed" and not reason:
        raise ValidationError("Say why the identity check failed.")
    if reason and len(reason) > REASON_LIMIT:
        raise ValidationError(f"The reason has at most {REASON_LIMIT} characters.")
    check = IdentityCheck(customer_id=customer_id, status=status, reason=reason, source="reviewer",
                          checked_at=utcnow(), checked_by_id=actor.id)
    session.add(check)
    session.flush()
    record_audit(session, actor, "risk.identity", "customer", customer_id, before={"status": current},
                 after={"status": status, "reason": reason})
    return check


def import_identity_statuses(session: Session, actor: Actor, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Import verification results from a provider: rows of customer_id, status (verified, failed,
    pending) and reason; all rows are checked before any is written, and a bad row names its line."""
    require(actor, "risk.identity")
    if not rows:
        raise ValidationError("The file has no rows.")
    ids = {row.get("customer_id") for row in rows}
    known = set(session.scalars(select(Customer.id).where(Customer.id.in_([i for i in ids if isinstance(i, int)]))))
    problems = []
    for line, row in enumerate(rows, start=2):
        status, customer_id = row.get("status"), row.get("customer_id")
        if customer_id not in known:
            problems.append(f"line {line}: no customer {customer_id!r}")
        elif status not in ("pending", "verified", "failed"):
            problems.append(f"line {line}: status {status!r} is not pending, verified or failed")
        elif status == "failed" and not str(row.get("reason") or "").strip():
            problems.append(f"line {line}: a failed check needs its reason")
    if problems:
        raise ValidationError("Nothing was imported: " + "; ".join(problems[:5])
                              + (f" and {len(problems) - 5} more" if len(problems) > 5 else "") + ".")
    now = utcnow()
    session.execute(IdentityCheck.__table__.insert(), [
        {"customer_id": row["customer_id"], "status": row["status"],
         "reason": (str(row.get("reason") or "").strip() or None), "source": "import", "checked_at": now,
         "checked_by_id": actor.id} for row in rows])
    counts = {status: sum(row["status"] == status for row in rows) for status in ("pending", "verified", "failed")}
    record_audit(session, actor, "risk.identity_import", "customer_identity_checks", None, after=counts)
    return {"imported": len(rows), **counts}


IDENTITY_FILE_COLUMNS = ("customer_id", "status", "reason")
MAX_IDENTITY_ROWS = 100_000


def import_identity_file(session: Session, actor: Actor, source: Any, file_name: str | None = None) -> dict[str, Any]:
    """Import a provider's results from a CSV, Excel or JSON file with columns customer_id, status
    and reason; nothing is written unless every row is good."""
    # Imported here: crm_core.imports reaches crm_core.service, which reaches customers and so risk.
    from crm_core.imports.files import TableReader

    require(actor, "risk.identity")
    rows: list[dict[str, Any]] = []
    with TableReader(source, "auto", file_name) as reader:
        missing = [c for c in ("customer_id", "status") if c not in reader.columns]
        if missing:
            raise ValidationError(f"The file needs the column(s) {', '.join(missing)}; it has {', '.join(reader.columns)}.")
        for raw in reader.rows():
            if len(rows) >= MAX_IDENTITY_ROWS:
                raise ValidationError(f"Import at most {MAX_IDENTITY_ROWS:,} rows at once.")
            text = (raw.values.get("customer_id") or "").strip()
            rows.append({"customer_id": int(text) if text.isdigit() else text,
                         "status": (raw.values.get("status") or "").strip().lower(),
                         "reason": (raw.values.get("reason") or "").strip() or None})
    return import_identity_statuses(session, actor, rows)


def identity_counts(session: Session, viewer: Actor) -> dict[str, int]:
    """Customers per current status (customers without a check are unverified)."""
    require(viewer, "risk.view")
    latest = select(IdentityCheck.customer_id, func.max(IdentityCheck.id).label("id")).group_by(
        IdentityCheck.customer_id).subquery()
    rows = session.execute(select(IdentityCheck.status, func.count()).join(latest, latest.c.id == IdentityCheck.id)
                           .group_by(IdentityCheck.status)).all()
    counts = {status: 0 for status in IDENTITY_STATUSES}
    counts.update({status: int(n) for status, n in rows})
    checked = sum(counts.values())
    total = counted_customers(session)
    if total is None:  # no rollup to read yet (or history rewritten since): count them
        total = session.scalar(select(func.count()).select_from(Customer).where(COUNTED_CUSTOMER)) or 0
    counts["unverified"] += max(0, total - checked)
    return counts
