"""Merge two customer records into one, undo a merge, split records off into a new customer.

Every table that points at a customer is found by reflecting the foreign keys of the schema
(`customer_references`), so a table added later is re-pointed without touching this module.
Each change is written to `customer_merge_rows`, which is what makes a merge exactly undoable:

- "moved": a row whose customer column was re-pointed from the merged customer to the survivor;
- "removed": a row of the merged customer that collided with a unique key the survivor already
  holds (one lifecycle stage, one analytics row, one preference center, one open membership per
  segment, ...). The survivor's row wins; the loser's row is deleted and kept whole in the log;
- "retained": rows that stay with the merged customer on purpose: its loyalty account (the points
  move through the append-only ledger instead) and the ledger entries of that account;
- "loyalty", "field", "status": the ledger transfer, survivor fields overwritten by the other
  record's values, and the previous status of the merged customer and of each of its open calls to
  action (CTAs) that the merge closed as "not needed" because the survivor has one open for the
  same trigger (one open CTA per customer and trigger); undo opens those again.

Segments, lifecycle stages and scores are recomputed by the next batch refresh (`crm refresh`):
merged customers no longer count, and the survivor is evaluated with everything it now owns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import (
    Column,
    ColumnElement,
    Date,
    DateTime,
    Index,
    Numeric,
    PrimaryKeyConstraint,
    Table,
    UniqueConstraint,
    and_,
    delete,
    exists,
    func,
    insert,
    or_,
    select,
    tuple_,
    update,
)
from sqlalchemy.orm import Session, aliased

from crm_core.customers.rules import GONE_STATUSES
from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import ConflictError, DomainError, NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import require
from crm_core.platform.transactions import check_version
from db.models import (
    Base,
    Customer,
    CustomerMerge,
    CustomerMergeRow,
    DuplicateCandidate,
    LoyaltyAccount,
    LoyaltyTransaction,
    SuccessCta,
    utcnow,
)

# Survivor fields a reviewer may take from the other record.
MERGEABLE_FIELDS: tuple[str, ...] = (
    "first_name", "last_name", "email", "phone", "date_of_birth", "gender", "country_code", "city",
    "preferred_language", "acquisition_channel", "notes",
)
# Uniqueness the schema cannot express: one open membership per segment and customer.
LOGICAL_KEYS: dict[str, list[tuple[tuple[str, ...], dict[str, Any]]]] = {
    "customer_segment_memberships": [(("segment_id",), {"is_active": True})],
}
# On a collision these rows stay with the merged customer instead of being removed: the loyalty
# account, and a referral naming the merged customer as the friend (its checks, rewards and reviews
# hang on it).
RETAINED_ON_COLLISION = frozenset({"customer_loyalty_programs", "customer_referral_program"})
SAMPLE_ROWS = 5


@dataclass(frozen=True)
class Reference:
    """One foreign-key column that points at customers.id."""

    table: Table
    column: Column

    @property
    def name(self) -> str:
        return f"{self.table.name}.{self.column.name}"


def customer_references(metadata=None) -> list[Reference]:
    """Every column in the schema with a foreign key to customers.id, except bookkeeping columns.

    A column opts out with `info={"merge": "skip"}` (the duplicate queue and the merge log).
    """
    metadata = metadata or Base.metadata
    customers = metadata.tables["customers"]
    found = []
    for table in metadata.sorted_tables:
        for fk in sorted(table.foreign_keys, key=lambda f: f.parent.name):
            if fk.column.table is customers and fk.column.name == "id" and fk.parent.info.get("merge") != "skip":
                found.append(Reference(table, fk.parent))
    return found


# --------------------------------------------------------------------------- JSON round trip


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, bytes):
        return value.hex()
    return value


def _row_json(table: Table, row) -> dict[str, Any]:
    mapping = row._mapping
    return {c.name: _jsonable(mapping[c]) for c in table.columns}


def _from_json(table: Table, data: dict[str, Any]) -> dict[str, Any]:
    values = {}
    for column in table.columns:
        if column.name not in data:
            continue
        value = data[column.name]
        if value is not None:
            if isinstance(column.type, DateTime):
                value = dt.datetime.fromisoformat(value)
            elif isinstance(column.type, Date):
                value = dt.date.fromisoformat(value)
            elif isinstance(column.type, Numeric) and column.type.asdecimal:
                value = Decimal(value)
        values[column.name] = value
    return values


def _pk_columns(table: Table) -> list[Column]:
    return list(table.primary_key.columns)


def _key_of(table: Table, row, moved_column: Column | None = None, target: int | None = None) -> dict[str, Any]:
    """The primary key of a row, as it reads after `moved_column` is set to `target`."""
    key = {}
    for column in _pk_columns(table):
        value = row._mapping[column]
        key[column.name] = target if column is moved_column else _jsonable(value)
    return key


def _key_condition(table: Table, key: dict[str, Any]):
    return and_(*[table.c[name] == _from_json(table, {name: value})[name] for name, value in key.items()])


# --------------------------------------------------------------------------- planning


@dataclass
class _Plan:
    moves: dict[str, list]
    removed: dict[str, list]
    retained: dict[str, list]


def _index_where(index: Index) -> Any:
    """A partial unique index's WHERE, None for a full one: only the rows it covers can collide (one
    open CTA per customer and trigger, however many closed ones)."""
    for dialect in ("postgresql", "sqlite"):
        where = index.dialect_options[dialect].get("where")
        if where is not None:
            return where
    return None


def _unique_keys(reference: Reference) -> list[tuple[list[Column], dict[str, Any], Any]]:
    table, column = reference.table, reference.column
    keys: list[tuple[list[Column], dict[str, Any], Any]] = []
    for constraint in table.constraints:
        if isinstance(constraint, UniqueConstraint | PrimaryKeyConstraint) and any(c is column for c in constraint.columns):
            keys.append((list(constraint.columns), {}, None))
    for index in table.indexes:
        if index.unique and any(c is column for c in index.columns):
            keys.append((list(index.columns), {}, _index_where(index)))
    for names, condition in LOGICAL_KEYS.get(table.name, []):
        keys.append(([table.c[n] for n in names] + [column], condition, None))
    return keys


def _collisions(reference: Reference, survivor_id: int, other_id: int):
    """Condition on the merged customer's rows that would break a unique key on re-pointing."""
    table, column = reference.table, reference.column
    conditions = []
    for columns, condition, where in _unique_keys(reference):
        # a partial index: the twin is among the rows it covers (a derived table reads its WHERE unaliased)
        twin = aliased(table) if where is None else select(table).where(where).subquery()
        twin_cols = twin.c
        others = [c for c in columns if c is not column]
        matches = [twin_cols[column.name] == survivor_id]
        matches += [twin_cols[c.name] == table.c[c.name] for c in others]
        matches += [twin_cols[name] == value for name, value in condition.items()]
        own = [table.c[name] == value for name, value in condition.items()] + ([where] if where is not None else [])
        conditions.append(and_(*own, exists(select(1).select_from(twin).where(*matches))))
    # A second customer column on the same row already naming the survivor (e.g. a referral of the
    # survivor by the merged customer) would make the row refer to one customer twice.
    for fk in table.foreign_keys:
        other_column = fk.parent
        if other_column is not column and fk.column.table.name == "customers" and other_column.info.get("merge") != "skip":
            conditions.append(other_column == survivor_id)
    return or_(*conditions) if conditions else None


def _plan(session: Session, survivor_id: int, other_id: int, retained_keys: dict[str, set] | None = None) -> _Plan:
    plan = _Plan({}, {}, {})
    retained_keys = retained_keys or {}
    for reference in customer_references():
        table, column = reference.table, reference.column
        pk = _pk_columns(table)
        rows = session.execute(select(table).where(column == other_id)).all()
        if not rows:
            continue
        colliding = _collisions(reference, survivor_id, other_id)
        colliding_keys = set()
        if colliding is not None:
            colliding_keys = {
                tuple(r._mapping[c] for c in pk)
                for r in session.execute(select(*pk).where(column == other_id, colliding)).all()
            }
        held = retained_keys.get(table.name, set())
        for row in rows:
            key = tuple(row._mapping[c] for c in pk)
            if key in held or (key in colliding_keys and table.name in RETAINED_ON_COLLISION):
                plan.retained.setdefault(reference.name, []).append(row)
            elif key in colliding_keys:
                plan.removed.setdefault(reference.name, []).append(row)
            else:
                plan.moves.setdefault(reference.name, []).append(row)
    return plan


def _reference(name: str) -> Reference:
    for reference in customer_references():
        if reference.name == name:
            return reference
    raise DomainError(f"The merge log names {name}, which is no longer in the schema.")


def _loyalty_accounts(session: Session, survivor_id: int, other_id: int):
    accounts = {a.customer_id: a for a in session.scalars(
        select(LoyaltyAccount).where(LoyaltyAccount.customer_id.in_([survivor_id, other_id])))}
    return accounts.get(survivor_id), accounts.get(other_id)


def _retained_keys(session: Session, survivor_id: int, other_id: int) -> dict[str, set]:
    """Rows that stay with the merged customer: its loyalty account (when both have one) and its ledger."""
    survivor_account, other_account = _loyalty_accounts(session, survivor_id, other_id)
    if survivor_account is None or other_account is None:
        return {}
    accounts = LoyaltyAccount.__table__
    held: dict[str, set] = {accounts.name: {(other_account.id,)}}
    for reference in customer_references():
        table = reference.table
        for fk in table.foreign_keys:
            if fk.column.table is accounts:
                pk = _pk_columns(table)
                keys = {tuple(r) for r in session.execute(select(*pk).where(fk.parent == other_account.id)).all()}
                held.setdefault(table.name, set()).update(keys)
    return held


# --------------------------------------------------------------------------- guards

T = TypeVar("T")


def _logged(value: T | None) -> T:
    """A value the merge log always holds for its action (this module writes the log)."""
    if value is None:
        raise ConflictError("The merge log is incomplete, so this merge can no longer be undone exactly.")
    return value



def _customer(session: Session, customer_id: Any, label: str) -> Customer:
    if isinstance(customer_id, bool) or not isinstance(customer_id, int):
        try:
            customer_id = int(str(customer_id).strip())
        except ValueError:
            raise ValidationError(f"{label} must be a customer id (a whole number), not {customer_id!r}.") from None
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(f"{label}: there is no customer {customer_id}.")
    return customer


def _check_pair(session: Session, survivor_id: Any, other_id: Any) -> tuple[Customer, Customer]:
    survivor = _customer(session, survivor_id, "Survivor")
    other = _customer(session, other_id, "Customer to merge")
    if survivor.id == other.id:
        raise ValidationError("A customer cannot be merged into itself: choose two different customers.")
    for customer, label in ((survivor, "survivor"), (other, "customer to merge")):
        if customer.status in GONE_STATUSES:
            detail = f" into customer {customer.merged_into_id}" if customer.merged_into_id else ""
            raise ValidationError(
                f"The {label} (customer {customer.id}) is already {customer.status}{detail}; "
                "merge the surviving record instead."
            )
    return survivor, other


def _check_fields(field_choices: dict[str, Any] | None) -> dict[str, str]:
    choices = dict(field_choices or {})
    unknown = sorted(set(choices) - set(MERGEABLE_FIELDS))
    if unknown:
        raise ValidationError(f"These fields cannot be chosen in a merge: {', '.join(unknown)}.")
    for name, side in choices.items():
        if side not in ("survivor", "other"):
            raise ValidationError(f"For {name}, choose 'survivor' or 'other', not {side!r}.")
    return choices


# --------------------------------------------------------------------------- preview


def _sample(table: Table, rows: list) -> list[dict[str, Any]]:
    shown = [c for c in table.columns if c.name not in ("customer_id",)][:6]
    return [{c.name: _jsonable(r._mapping[c]) for c in shown} for r in rows[:SAMPLE_ROWS]]


def preview_merge(session: Session, viewer: Actor, survivor_id: Any, other_id: Any) -> dict[str, Any]:
    """What a merge would do: field values side by side and, per table, the rows that would move."""
    require(viewer, "customers.merge")
    survivor, other = _check_pair(session, survivor_id, other_id)
    plan = _plan(session, survivor.id, other.id, _retained_keys(session, survivor.id, other.id))
    tables = []
    for bucket, action in ((plan.moves, "move"), (plan.removed, "replaced by the survivor's"),
                           (plan.retained, "stay (loyalty combined through the ledger)")):
        for name, rows in bucket.items():
            reference = _reference(name)
            if reference.table.name == SuccessCta.__tablename__ and bucket is plan.removed:
                action = "closed as not needed (the survivor has one open for the same trigger), then move"
            tables.append({"table": reference.table.name, "column": reference.column.name, "action": action,
                           "rows": len(rows), "sample": _sample(reference.table, rows)})
    survivor_account, other_account = _loyalty_accounts(session, survivor.id, other.id)
    fields = [{"field": f, "survivor": _jsonable(getattr(survivor, f)), "other": _jsonable(getattr(other, f)),
               "differs": getattr(survivor, f) != getattr(other, f)} for f in MERGEABLE_FIELDS]
    return {
        "survivor": {"id": survivor.id, "version": survivor.version, "name": f"{survivor.first_name} {survivor.last_name}"},
        "other": {"id": other.id, "version": other.version, "name": f"{other.first_name} {other.last_name}"},
        "fields": fields,
        "tables": tables,
        "rows_moving": sum(len(r) for r in plan.moves.values()),
        "loyalty_points_moving": other_account.points_balance if survivor_account and other_account else 0,
    }


# --------------------------------------------------------------------------- merge


def _log(session: Session, merge_id: int, entries: list[dict[str, Any]]) -> None:
    if entries:
        session.execute(insert(CustomerMergeRow), [{"merge_id": merge_id, **e} for e in entries])


def _ledger_entry(session: Session, account: LoyaltyAccount, points: int, kind: str, merge_id: int,
                  actor: Actor, reason: str) -> LoyaltyTransaction:
    balance = account.points_balance + points
    if balance < 0:
        raise DomainError(
            f"Loyalty account {account.id} holds {account.points_balance} points, fewer than the {-points} "
            "this would take out."
        )
    entry = LoyaltyTransaction(
        account_id=account.id, customer_id=account.customer_id, kind=kind, points=points, balance_after=balance,
        source_type="customer_merge", source_id=str(merge_id), reason=reason,
        created_by_id=actor.id, created_at=utcnow(),
    )
    account.points_balance = balance
    session.add(entry)
    session.flush()
    return entry


def _combine_loyalty(session: Session, actor: Actor, merge: CustomerMerge) -> dict[str, Any] | None:
    survivor_account, other_account = _loyalty_accounts(session, merge.survivor_id, merge.merged_id)
    if survivor_account is None or other_account is None:
        return None
    points = other_account.points_balance
    record: dict[str, Any] = {"survivor_account": survivor_account.id, "merged_account": other_account.id,
                              "points": points, "merged_status": other_account.status}
    if points:
        reason = f"Merged into customer {merge.survivor_id} (merge {merge.id})"
        out = _ledger_entry(session, other_account, -points, "adjust", merge.id, actor, reason)
        into = _ledger_entry(session, survivor_account, points, "adjust", merge.id, actor,
                             f"Points of customer {merge.merged_id} (merge {merge.id})")
        record.update(out_entry=out.id, in_entry=into.id)
    other_account.status = "closed"
    session.flush()
    return record


def merge_customers(session: Session, actor: Actor, survivor_id: Any, other_id: Any, field_choices: dict[str, Any] | None = None,
          survivor_version: int | None = None, other_version: int | None = None) -> int:
    """Merge `other_id` into `survivor_id`; returns the merge id (for `undo_merge`)."""
    require(actor, "customers.merge")
    survivor, other = _check_pair(session, survivor_id, other_id)
    check_version(survivor, survivor_version, f"Customer {survivor.id}")
    check_version(other, other_version, f"Customer {other.id}")
    choices = _check_fields(field_choices)
    now = utcnow()
    record = CustomerMerge(survivor_id=survivor.id, merged_id=other.id, kind="merge", status="completed",
                           field_choices=choices, merged_at=now, merged_by_id=actor.id)
    session.add(record)
    session.flush()

    loyalty = _combine_loyalty(session, actor, record)
    entries: list[dict[str, Any]] = []
    if loyalty:
        entries.append({"action": "loyalty", "table_name": LoyaltyAccount.__tablename__, "payload": loyalty})

    # Survivor fields chosen from the other record; its unique external id is never copied.
    field_log = []
    for name, side in choices.items():
        new, old = getattr(other, name), getattr(survivor, name)
        if side == "other" and new != old:
            setattr(survivor, name, new)
            field_log.append({"action": "field", "table_name": "customers", "column_name": name,
                              "row_key": {"id": survivor.id},
                              "payload": {"before": _jsonable(old), "after": _jsonable(new)}})
    entries += field_log
    entries.append({"action": "status", "table_name": "customers", "row_key": {"id": other.id},
                    "payload": {"status": other.status, "merged_into_id": other.merged_into_id}})
    other.status = "merged"
    other.merged_into_id = survivor.id
    # Touch the survivor too: its version check makes a concurrent merge of either record fail.
    survivor.updated_at = now
    session.flush()
    from crm_core.success.ctas import close_merged_duplicates  # here: success imports customers at import time

    entries += [{"action": "status", "table_name": SuccessCta.__tablename__, "row_key": {"id": closed["id"]},
                 "payload": closed} for closed in close_merged_duplicates(session, actor, survivor.id, other.id, now)]

    plan = _plan(session, survivor.id, other.id, _retained_keys(session, survivor.id, other.id))
    for name in plan.removed:
        table = _reference(name).table
        children = sorted({t.name for t in Base.metadata.sorted_tables for fk in t.foreign_keys if fk.column.table is table})
        if children:
            raise DomainError(
                f"Both customers have a {table.name} row and the merge cannot replace it because "
                f"{', '.join(children)} depend on it; resolve that record by hand first."
            )
    counts: dict[str, int] = {}
    for name, rows in plan.removed.items():
        reference = _reference(name)
        table = reference.table
        for row in rows:
            entries.append({"action": "removed", "table_name": table.name, "column_name": reference.column.name,
                            "row_key": _key_of(table, row), "payload": _row_json(table, row)})
            session.execute(delete(table).where(_key_condition(table, _key_of(table, row))))
    for name, rows in plan.retained.items():
        reference = _reference(name)
        entries += [{"action": "retained", "table_name": reference.table.name, "column_name": reference.column.name,
                     "row_key": _key_of(reference.table, row)} for row in rows]
    for name, rows in plan.moves.items():
        reference = _reference(name)
        table, column = reference.table, reference.column
        pk = _pk_columns(table)
        keys = [tuple(r._mapping[c] for c in pk) for r in rows]
        for chunk in _chunks(keys):
            key_match = pk[0].in_([k[0] for k in chunk]) if len(pk) == 1 else tuple_(*pk).in_(chunk)
            session.execute(update(table).where(key_match, column == other.id).values({column.name: survivor.id}))
        entries += [{"action": "moved", "table_name": table.name, "column_name": column.name,
                     "row_key": _key_of(table, row, column, survivor.id)} for row in rows]
        counts[name] = len(rows)
    _log(session, record.id, entries)

    pair = sorted((survivor.id, other.id))
    session.execute(
        update(DuplicateCandidate)
        .where(DuplicateCandidate.customer_a_id == pair[0], DuplicateCandidate.customer_b_id == pair[1])
        .values(status="merged", merge_id=record.id, reviewed_at=now, reviewed_by_id=actor.id,
                version=DuplicateCandidate.version + 1)
    )
    record.summary = {"moved": counts, "removed": {k: len(v) for k, v in plan.removed.items()},
                      "retained": {k: len(v) for k, v in plan.retained.items()},
                      "loyalty_points": (loyalty or {}).get("points", 0), "fields": [e["column_name"] for e in field_log]}
    record_audit(session, actor, "customer.merge", "customer", survivor.id,
                 before={"merged_customer": other.id}, after={"merge_id": record.id, **record.summary})
    session.flush()
    session.expire_all()
    return record.id


def _chunks(items: list, size: int = 500):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# --------------------------------------------------------------------------- undo


def undo_merge(session: Session, actor: Actor, merge_id: Any) -> dict[str, Any]:
    """Put back exactly what the merge changed; loyalty points return through new ledger entries."""
    require(actor, "customers.merge")
    try:
        merge_id = int(merge_id)
    except (TypeError, ValueError):
        raise ValidationError(f"A merge id is a whole number, not {merge_id!r}.") from None
    record = session.get(CustomerMerge, merge_id)
    if record is None:
        raise NotFound(f"There is no merge {merge_id}.")
    if record.kind != "merge":
        raise ValidationError(f"Record {merge_id} is a split; merge the new customer back instead of undoing it.")
    if record.status != "completed":
        raise ConflictError(f"Merge {merge_id} was already undone.")
    survivor = _customer(session, record.survivor_id, "The survivor")
    other = _customer(session, record.merged_id, "The merged customer")
    if survivor.status in GONE_STATUSES:
        raise ConflictError(
            f"The survivor (customer {survivor.id}) is now {survivor.status}; undo that first."
        )
    if other.status != "merged" or other.merged_into_id != survivor.id:
        raise ConflictError(f"Customer {other.id} is no longer merged into customer {survivor.id}.")

    rows = session.scalars(select(CustomerMergeRow).where(CustomerMergeRow.merge_id == merge_id)
                           .order_by(CustomerMergeRow.id)).all()
    by_action: dict[str, list[CustomerMergeRow]] = {}
    for row in rows:
        by_action.setdefault(row.action, []).append(row)
    from crm_core.success.ctas import check_merged_duplicates, reopen_merged_duplicates  # as in merge_customers

    closed_ctas = [_logged(row.payload) for row in by_action.pop("status", []) if row.table_name == SuccessCta.__tablename__]
    by_action["status"] = [row for row in rows if row.action == "status" and row.table_name == "customers"]
    check_merged_duplicates(session, closed_ctas)

    for entry in by_action.get("field", []):
        current = _jsonable(getattr(survivor, _logged(entry.column_name)))
        if current != _logged(entry.payload)["after"]:
            raise ConflictError(
                f"The survivor's {entry.column_name} was edited after the merge; undo would overwrite that edit."
            )

    # Every moved row must still be where the merge put it (a split or later merge may have moved it).
    moved_groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for entry in by_action.get("moved", []):
        moved_groups.setdefault((entry.table_name, _logged(entry.column_name)), []).append(_logged(entry.row_key))
    for (table_name, column_name), keys in moved_groups.items():
        table = Base.metadata.tables[table_name]
        column = table.c[column_name]
        pk = _pk_columns(table)
        found = 0
        for chunk in _chunks(keys):
            match: ColumnElement[bool]
            if len(pk) == 1:
                match = pk[0].in_([_from_json(table, k)[pk[0].name] for k in chunk])
            else:
                match = or_(*[_key_condition(table, k) for k in chunk])
            found += session.scalar(select(func.count()).select_from(table).where(column == survivor.id, match)) or 0
        if found != len(keys):
            raise ConflictError(
                f"{len(keys) - found} {table_name} row(s) from this merge have moved since (a split or another "
                "merge), so it can no longer be undone exactly."
            )

    for entry in by_action.get("loyalty", []):
        payload = _logged(entry.payload)
        survivor_account = _logged(session.get(LoyaltyAccount, payload["survivor_account"]))
        other_account = _logged(session.get(LoyaltyAccount, payload["merged_account"]))
        if payload["points"]:
            _ledger_entry(session, survivor_account, -payload["points"], "reverse", merge_id, actor,
                          f"Undo of merge {merge_id}")
            _ledger_entry(session, other_account, payload["points"], "reverse", merge_id, actor,
                          f"Undo of merge {merge_id}")
        other_account.status = payload["merged_status"]

    for (table_name, column_name), keys in moved_groups.items():
        table = Base.metadata.tables[table_name]
        column = table.c[column_name]
        pk = _pk_columns(table)
        if len(pk) == 1 and pk[0] is not column:  # the common case: chunked IN lists, not a statement per row
            values = [_from_json(table, k)[pk[0].name] for k in keys]
            for chunk in _chunks(values):
                session.execute(update(table).where(pk[0].in_(chunk), column == survivor.id)
                                .values({column_name: other.id}))
            continue
        for key in keys:
            session.execute(update(table).where(_key_condition(table, key), column == survivor.id)
                            .values({column_name: other.id}))
    for entry in by_action.get("removed", []):
        table = Base.metadata.tables[entry.table_name]
        if session.scalar(select(func.count()).select_from(table)
                          .where(_key_condition(table, _logged(entry.row_key)))) == 0:
            session.execute(insert(table).values(_from_json(table, _logged(entry.payload))))
    for entry in by_action.get("field", []):
        name = _logged(entry.column_name)
        setattr(survivor, name, _from_json(Customer.__table__, {name: _logged(entry.payload)["before"]})[name])
    for entry in by_action.get("status", []):
        other.status = _logged(entry.payload)["status"]
        other.merged_into_id = _logged(entry.payload)["merged_into_id"]
    reopen_merged_duplicates(session, actor, closed_ctas, merge_id)

    now = utcnow()
    survivor.updated_at = now
    record.status = "undone"
    record.undone_at = now
    record.undone_by_id = actor.id
    session.execute(update(DuplicateCandidate).where(DuplicateCandidate.merge_id == merge_id)
                    .values(status="open", reviewed_at=now, reviewed_by_id=actor.id,
                            version=DuplicateCandidate.version + 1))
    result = {"moved_back": sum(len(k) for k in moved_groups.values()), "restored": len(by_action.get("removed", [])),
              "fields": len(by_action.get("field", []))}
    record_audit(session, actor, "customer.undo_merge", "customer", survivor.id,
                 before={"merge_id": merge_id}, after={"restored_customer": other.id, **result})
    session.flush()
    session.expire_all()
    return result


# --------------------------------------------------------------------------- split

SPLIT_FIELDS = ("first_name", "last_name", "email", "phone", "country_code", "city", "preferred_language")


def splittable_rows(session: Session, viewer: Actor, customer_id: Any) -> list[dict[str, Any]]:
    """Rows of a customer that a split can move, per table: single-column keys only."""
    require(viewer, "customers.merge")
    customer = _customer(session, customer_id, "Customer")
    columns_of: dict[str, list[Column]] = {}
    for reference in customer_references():
        pk = _pk_columns(reference.table)
        if len(pk) == 1 and pk[0] is not reference.column and reference.table.name != "customers":
            columns_of.setdefault(reference.table.name, []).append(reference.column)
    found = []
    for table_name, columns in columns_of.items():
        table = Base.metadata.tables[table_name]
        key = _pk_columns(table)[0]
        rows = list(session.execute(select(table).where(or_(*[c == customer.id for c in columns]))
                                    .order_by(key).limit(200)).all())
        if rows:
            found.append({"table": table_name, "keys": [r._mapping[key] for r in rows], "sample": _sample(table, rows)})
    return found


def split_customer(session: Session, actor: Actor, customer_id: Any, moves: dict[str, list[Any]],
          new_customer_fields: dict[str, Any]) -> int:
    """Move the chosen related rows of a customer to a new customer; returns the new customer's id.

    Rows that depend on a moved row and also name the customer (the ledger entries of a moved
    loyalty account, say) follow it, so the two records stay consistent.
    """
    require(actor, "customers.merge")
    source = _customer(session, customer_id, "Customer to split")
    if source.status in GONE_STATUSES:
        raise ValidationError(f"Customer {source.id} is {source.status}; split the surviving record instead.")
    if not isinstance(moves, dict) or not any(moves.values()):
        raise ValidationError("Choose at least one related record to move to the new customer.")
    fields = {k: (v.strip() if isinstance(v, str) else v) for k, v in (new_customer_fields or {}).items()}
    unknown = sorted(set(fields) - set(SPLIT_FIELDS))
    if unknown:
        raise ValidationError(f"Unknown fields for the new customer: {', '.join(unknown)}.")
    if not fields.get("first_name") and not fields.get("last_name"):
        raise ValidationError("Give the new customer a first or last name.")
    if fields.get("email") and "@" not in fields["email"]:
        raise ValidationError(f"{fields['email']!r} is not an email address.")
    columns_of: dict[str, list[Column]] = {}
    for reference in customer_references():
        if reference.table.name != "customers":
            columns_of.setdefault(reference.table.name, []).append(reference.column)

    def owned_by_source(table: Table, keys: list[int]) -> set[int]:
        pk = _pk_columns(table)[0]
        return set(session.scalars(select(pk).where(pk.in_(keys), or_(*[c == source.id for c in columns_of[table.name]]))))

    moved_keys: dict[str, list[int]] = {}
    for table_name, keys in moves.items():
        if not keys:
            continue
        if table_name not in columns_of:
            raise ValidationError(f"{table_name!r} is not a table of customer records.")
        table = Base.metadata.tables[table_name]
        pk = _pk_columns(table)
        if len(pk) != 1 or any(pk[0] is c for c in columns_of[table_name]):
            raise ValidationError(f"Rows of {table_name} belong to exactly one customer and cannot be split off.")
        try:
            wanted = sorted({int(k) for k in keys})
        except (TypeError, ValueError):
            raise ValidationError(f"Row ids for {table_name} must be whole numbers.") from None
        owned = owned_by_source(table, wanted)
        missing = [k for k in wanted if k not in owned]
        if missing:
            raise ValidationError(f"{table_name} row(s) {missing[:5]} do not belong to customer {source.id}.")
        moved_keys[table_name] = wanted
    # Dependents that name the customer follow their parent row.
    for table_name in columns_of:
        table = Base.metadata.tables[table_name]
        if table_name in moved_keys or len(_pk_columns(table)) != 1:
            continue
        for fk in table.foreign_keys:
            parent = fk.column.table.name
            if parent in moved_keys:
                children = list(session.scalars(select(_pk_columns(table)[0]).where(fk.parent.in_(moved_keys[parent]))))
                extra = owned_by_source(table, children) if children else set()
                if extra:
                    moved_keys[table_name] = sorted(set(moved_keys.get(table_name, [])) | extra)
    new = Customer(**{k: v or None for k, v in fields.items() if k not in ("first_name", "last_name")},
                   first_name=fields.get("first_name") or "", last_name=fields.get("last_name") or "",
                   acquisition_channel=source.acquisition_channel, status="active", signed_up_at=source.signed_up_at)
    session.add(new)
    session.flush()
    record = CustomerMerge(survivor_id=source.id, merged_id=new.id, kind="split", status="completed",
                           merged_at=utcnow(), merged_by_id=actor.id)
    session.add(record)
    session.flush()

    entries, counts = [], {}
    for table_name, keys in moved_keys.items():
        table = Base.metadata.tables[table_name]
        key = _pk_columns(table)[0]
        for column in columns_of[table_name]:  # e.g. a referral names the customer as referrer or referred
            for chunk in _chunks(keys):
                hits = list(session.scalars(select(key).where(key.in_(chunk), column == source.id)))
                if hits:
                    session.execute(update(table).where(key.in_(hits), column == source.id).values({column.name: new.id}))
                entries += [{"action": "moved", "table_name": table_name, "column_name": column.name,
                             "row_key": {key.name: k}} for k in hits]
        counts[table_name] = len(keys)
    _log(session, record.id, entries)
    record.summary = {"moved": counts}
    record_audit(session, actor, "customer.split", "customer", source.id,
                 after={"new_customer": new.id, "moved": counts, "split_id": record.id})
    session.flush()
    session.expire_all()
    return new.id


# --------------------------------------------------------------------------- history


def merge_history(session: Session, viewer: Actor, page: int = 1, page_size: int = 25) -> Page:
    """Merges and splits, newest first."""
    require(viewer, "customers.merge")
    page = max(1, int(page))
    total = session.scalar(select(func.count()).select_from(CustomerMerge)) or 0
    records = session.scalars(select(CustomerMerge).order_by(CustomerMerge.merged_at.desc(), CustomerMerge.id.desc())
                              .limit(page_size).offset((page - 1) * page_size)).all()
    rows = [{"merge_id": r.id, "kind": r.kind, "survivor_id": r.survivor_id, "other_id": r.merged_id,
             "status": r.status, "when": r.merged_at,
             "rows_moved": sum((r.summary or {}).get("moved", {}).values()),
             "loyalty_points": (r.summary or {}).get("loyalty_points", 0), "undone_at": r.undone_at}
            for r in records]
    return Page(rows=rows, total=total, page=page, page_size=page_size)
