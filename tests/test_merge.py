"""Merge and undo: row accounting across every foreign key to customers, collisions, loyalty, guards."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from sqlalchemy import Column, ForeignKey, Integer, String, Table, func, inspect, select
from sqlalchemy.orm import Session

from crm_core import customers, platform
from crm_core.customers import merge as merging
from db.models import (
    AuditLog,
    Base,
    Customer,
    CustomerLifecycleStage,
    CustomerMergeRow,
    CustomerSegment,
    CustomerSegmentMembership,
    DuplicateCandidate,
    LoyaltyAccount,
    LoyaltyTransaction,
    Order,
)

from .every_table import fill_every_table
from .factories import make_customer, make_order, make_user

T0 = dt.datetime(2025, 1, 1)


def _snapshot(session: Session) -> dict[str, set]:
    """Every row of every referencing table as (primary key, customer column value)."""
    found = {}
    for reference in customers.customer_references():
        pk = list(reference.table.primary_key.columns)
        rows = session.execute(select(*pk, reference.column)).all()
        found[reference.name] = {tuple(r) for r in rows}
    return found


def _pointing(session: Session, customer_id: int) -> dict[str, int]:
    counts = {}
    for reference in customers.customer_references():
        counts[reference.name] = session.scalar(
            select(func.count()).select_from(reference.table).where(reference.column == customer_id)) or 0
    return counts


def _pair(session: Session):
    survivor = make_customer(session, T0, first_name="Ada", last_name="Lovelace", email="ada@example.com")
    other = make_customer(session, T0, first_name="Ada", last_name="Lovelace", email="ada.l@example.com",
                          phone="+44 20 7946 0001")
    bystander = make_customer(session, T0)
    return survivor, other, bystander


def test_reflection_finds_every_foreign_key_to_customers(engine):
    """The reflected set equals the database's own foreign keys to customers (minus bookkeeping)."""
    live = set()
    inspector = inspect(engine)
    for table in inspector.get_table_names():
        if table not in Base.metadata.tables:
            continue
        for fk in inspector.get_foreign_keys(table):
            if fk["referred_table"] == "customers":
                for column in fk["constrained_columns"]:
                    live.add(f"{table}.{column}")
    skipped = {f"{t.name}.{c.name}" for t in Base.metadata.sorted_tables for c in t.columns if c.info.get("merge") == "skip"}
    assert {r.name for r in customers.customer_references()} == live - skipped
    assert "orders.customer_id" in live and "customer_merges.survivor_id" in skipped


def test_merge_moves_every_row_and_undo_puts_back_exactly_those(session):
    survivor, other, bystander = _pair(session)
    shared: dict = {}
    fill_every_table(session, survivor.id, bystander.id, shared)
    made_o = fill_every_table(session, other.id, bystander.id, shared)
    assert made_o.keys() == {r.name for r in customers.customer_references()}
    before = _snapshot(session)
    before_s, before_o = _pointing(session, survivor.id), _pointing(session, other.id)
    assert all(before_o[name] >= 1 for name in made_o), before_o
    session.commit()

    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id,
                             field_choices={"phone": "other", "first_name": "survivor"})
    session.commit()
    logged = session.execute(select(CustomerMergeRow.action, CustomerMergeRow.table_name, CustomerMergeRow.column_name,
                                    func.count()).where(CustomerMergeRow.merge_id == merge_id)
                             .group_by(CustomerMergeRow.action, CustomerMergeRow.table_name,
                                       CustomerMergeRow.column_name)).all()
    per = {(a, f"{t}.{c}"): n for a, t, c, n in logged}
    after_s, after_o = _pointing(session, survivor.id), _pointing(session, other.id)
    for name in made_o:
        moved, removed, retained = (per.get((a, name), 0) for a in ("moved", "removed", "retained"))
        transfer_out = 1 if name == "customer_loyalty_transactions.customer_id" else 0  # new ledger entry
        assert moved + removed + retained == before_o[name] + transfer_out, name
        assert after_o[name] == retained, name          # only rows kept on purpose still name the loser
        itself = 1 if name == "customers.merged_into_id" else 0  # the merged record now points at the survivor
        assert after_s[name] == before_s[name] + moved + itself + transfer_out, name  # + the transfer-in entry
    # Unique collisions were resolved by keeping the survivor's row.
    assert per[("removed", "customer_lifecycle_stages.customer_id")] == 1
    assert per[("removed", "customer_analytics.customer_id")] == 1
    assert per[("removed", "customer_preference_centers.customer_id")] == 1
    assert per[("retained", "customer_loyalty_programs.customer_id")] == 1
    merged = session.get(Customer, other.id)
    assert (merged.status, merged.merged_into_id) == ("merged", survivor.id)
    assert session.get(Customer, survivor.id).phone == "+44 20 7946 0001"
    assert session.scalar(select(AuditLog.after).where(AuditLog.action == "customer.merge"))["merge_id"] == merge_id

    result = customers.undo_merge(session, platform.SYSTEM, merge_id)
    session.commit()
    assert result["moved_back"] == sum(n for (a, _), n in per.items() if a == "moved")
    after_undo = _snapshot(session)
    ledger = "customer_loyalty_transactions.customer_id"
    new_ledger_rows = {r for r in after_undo[ledger] - before[ledger]}
    assert len(new_ledger_rows) == 4  # transfer out/in, then reverse out/in: the ledger is append-only
    for name in before:
        extra = new_ledger_rows if name == ledger else set()
        assert after_undo[name] == before[name] | extra, name
    restored = session.get(Customer, other.id)
    assert (restored.status, restored.merged_into_id) == ("active", None)
    assert session.get(Customer, survivor.id).phone is None
    with pytest.raises(platform.ConflictError, match="already undone"):
        customers.undo_merge(session, platform.SYSTEM, merge_id)


def test_a_table_added_later_is_re_pointed_without_code_changes(session):
    probe = Table("zz_merge_probe", Base.metadata,
                  Column("id", Integer, primary_key=True),
                  Column("customer_id", ForeignKey("customers.id", ondelete="CASCADE"), nullable=False),
                  Column("note", String(50)))
    try:
        probe.create(session.connection())
        assert "zz_merge_probe.customer_id" in {r.name for r in customers.customer_references()}
        survivor, other, bystander = _pair(session)
        fill_every_table(session, other.id, bystander.id)
        assert session.scalar(select(func.count()).select_from(probe).where(probe.c.customer_id == other.id)) == 1
        merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
        assert session.scalar(select(func.count()).select_from(probe).where(probe.c.customer_id == survivor.id)) == 1
        customers.undo_merge(session, platform.SYSTEM, merge_id)
        assert session.scalar(select(func.count()).select_from(probe).where(probe.c.customer_id == other.id)) == 1
    finally:
        session.rollback()
        Base.metadata.remove(probe)


def test_loyalty_balances_combine_through_ledger_entries(session):
    survivor, other, _ = _pair(session)
    accounts = {}
    for customer, points in ((survivor, 120), (other, 80)):
        account = LoyaltyAccount(customer_id=customer.id, points_balance=points, lifetime_points=points)
        session.add(account)
        session.flush()
        session.add(LoyaltyTransaction(account_id=account.id, customer_id=customer.id, kind="earn", points=points,
                                       balance_after=points))
        accounts[customer.id] = account.id
    session.flush()
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    s_account, o_account = session.get(LoyaltyAccount, accounts[survivor.id]), session.get(LoyaltyAccount, accounts[other.id])
    assert (s_account.points_balance, o_account.points_balance, o_account.status) == (200, 0, "closed")
    entries = session.execute(select(LoyaltyTransaction.account_id, LoyaltyTransaction.kind, LoyaltyTransaction.points,
                                     LoyaltyTransaction.balance_after)
                              .where(LoyaltyTransaction.source_type == "customer_merge")
                              .order_by(LoyaltyTransaction.id)).all()
    assert [tuple(e) for e in entries] == [(o_account.id, "adjust", -80, 0), (s_account.id, "adjust", 80, 200)]
    # The balance can be recomputed from the ledger.
    for account in (s_account, o_account):
        total = session.scalar(select(func.sum(LoyaltyTransaction.points)).where(LoyaltyTransaction.account_id == account.id))
        assert total == account.points_balance

    customers.undo_merge(session, platform.SYSTEM, merge_id)
    s_account, o_account = session.get(LoyaltyAccount, accounts[survivor.id]), session.get(LoyaltyAccount, accounts[other.id])
    assert (s_account.points_balance, o_account.points_balance, o_account.status) == (120, 80, "active")
    kinds = session.scalars(select(LoyaltyTransaction.kind).where(LoyaltyTransaction.source_type == "customer_merge")
                            .order_by(LoyaltyTransaction.id)).all()
    assert kinds == ["adjust", "adjust", "reverse", "reverse"]


def test_undo_refused_when_survivor_spent_the_merged_points(session):
    survivor, other, _ = _pair(session)
    for customer, points in ((survivor, 0), (other, 50)):
        session.add(LoyaltyAccount(customer_id=customer.id, points_balance=points, lifetime_points=points))
    session.flush()
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    account = session.scalar(select(LoyaltyAccount).where(LoyaltyAccount.customer_id == survivor.id))
    account.points_balance = 10  # spent 40 (the loyalty service would write the ledger entry)
    session.flush()
    with pytest.raises(Exception, match="fewer than the 50"):
        customers.undo_merge(session, platform.SYSTEM, merge_id)


def test_open_memberships_in_the_same_segment_collide_and_are_restored(session):
    survivor, other, _ = _pair(session)
    segment = CustomerSegment(name="VIP", segment_type="custom", kind="static")
    session.add(segment)
    session.flush()
    for customer in (survivor, other):
        session.add(CustomerSegmentMembership(segment_id=segment.id, customer_id=customer.id, is_active=True))
    session.add(CustomerSegmentMembership(segment_id=segment.id, customer_id=other.id, is_active=False))
    session.flush()
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    rows = session.execute(select(CustomerSegmentMembership.customer_id, CustomerSegmentMembership.is_active)
                           .order_by(CustomerSegmentMembership.id)).all()
    assert [tuple(r) for r in rows] == [(survivor.id, True), (survivor.id, False)]  # one open row, history kept
    customers.undo_merge(session, platform.SYSTEM, merge_id)
    rows = session.execute(select(CustomerSegmentMembership.customer_id, CustomerSegmentMembership.is_active)
                           .order_by(CustomerSegmentMembership.id)).all()
    assert [tuple(r) for r in rows] == [(survivor.id, True), (other.id, True), (other.id, False)]


def test_preview_lists_the_rows_that_will_move(session):
    survivor, other, _ = _pair(session)
    for day in range(3):
        make_order(session, other, T0 + dt.timedelta(days=day), 10)
    session.add(CustomerLifecycleStage(customer_id=survivor.id, stage="active", entered_at=T0))
    session.add(CustomerLifecycleStage(customer_id=other.id, stage="at_risk", entered_at=T0))
    session.flush()
    preview = customers.preview_merge(session, platform.SYSTEM, survivor.id, other.id)
    tables = {(t["table"], t["action"]): t["rows"] for t in preview["tables"]}
    assert tables[("orders", "move")] == 3
    assert tables[("customer_lifecycle_stages", "replaced by the survivor's")] == 1
    assert preview["rows_moving"] == 3
    fields = {f["field"]: f for f in preview["fields"]}
    assert fields["email"]["differs"] and not fields["first_name"]["differs"]
    assert len(next(t for t in preview["tables"] if t["table"] == "orders")["sample"]) == 3
    # Preview changes nothing.
    assert session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == other.id)) == 3


def test_revenue_totals_add_up_after_merge(session):
    survivor, other, _ = _pair(session)
    make_order(session, survivor, T0, "100.50")
    make_order(session, other, T0, "20.25")
    customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    assert str(session.scalar(select(func.sum(Order.total)).where(Order.customer_id == survivor.id))) == "120.75"


def test_guards(session):
    survivor, other, third = _pair(session)
    with pytest.raises(platform.ValidationError, match="into itself"):
        customers.merge_customers(session, platform.SYSTEM, survivor.id, survivor.id)
    with pytest.raises(platform.NotFound):
        customers.merge_customers(session, platform.SYSTEM, survivor.id, 999_999)
    with pytest.raises(platform.ValidationError, match="whole number"):
        customers.merge_customers(session, platform.SYSTEM, "abc", other.id)
    with pytest.raises(platform.ValidationError, match="cannot be chosen"):
        customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id, field_choices={"external_id": "other"})
    with pytest.raises(platform.ValidationError, match="'survivor' or 'other'"):
        customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id, field_choices={"email": "both"})
    with pytest.raises(platform.ConflictError, match=rf"Customer {survivor.id} has no version {survivor.version + 5}; "
                                                     rf"its current version is {survivor.version}\."):
        customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id, survivor_version=survivor.version + 5)
    customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    with pytest.raises(platform.ValidationError, match="already merged"):
        customers.merge_customers(session, platform.SYSTEM, third.id, other.id)      # merging an already merged record
    with pytest.raises(platform.ValidationError, match="already merged"):
        customers.merge_customers(session, platform.SYSTEM, other.id, third.id)      # a chain onto a merged record
    analyst = make_user(session, "analyst")
    with pytest.raises(platform.PermissionDenied):
        customers.merge_customers(session, analyst, survivor.id, third.id)
    with pytest.raises(platform.NotFound):
        customers.undo_merge(session, platform.SYSTEM, 424242)


def test_undo_refused_after_the_survivor_was_edited_or_merged_again(session):
    survivor, other, third = _pair(session)
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id, field_choices={"phone": "other"})
    session.get(Customer, survivor.id).phone = "+1 555 0100"
    session.flush()
    with pytest.raises(platform.ConflictError, match="edited after the merge"):
        customers.undo_merge(session, platform.SYSTEM, merge_id)
    session.get(Customer, survivor.id).phone = "+44 20 7946 0001"
    customers.merge_customers(session, platform.SYSTEM, third.id, survivor.id)
    with pytest.raises(platform.ConflictError, match="undo that first"):
        customers.undo_merge(session, platform.SYSTEM, merge_id)


def test_failure_mid_merge_leaves_nothing_half_written(engine, monkeypatch):
    from db.engine import session_factory

    factory = session_factory(engine)
    with factory() as s:
        survivor, other, _ = _pair(s)
        make_order(s, other, T0, 10)
        s.commit()
        ids = survivor.id, other.id

    def boom(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(merging, "_log", boom)
    from crm_core import platform

    with pytest.raises(RuntimeError), platform.unit_of_work(factory) as s:
        customers.merge_customers(s, platform.SYSTEM, *ids)
    with factory() as s:
        assert s.get(Customer, ids[1]).status == "active"
        assert s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == ids[1])) == 1
        assert s.scalar(select(func.count()).select_from(CustomerMergeRow)) == 0


def test_merge_marks_the_reviewed_pair(session):
    survivor, other, _ = _pair(session)
    a, b = sorted((survivor.id, other.id))
    session.add(DuplicateCandidate(customer_a_id=a, customer_b_id=b, score=0.9, reasons=["same name"]))
    session.flush()
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    pair = session.scalar(select(DuplicateCandidate))
    session.refresh(pair)
    assert (pair.status, pair.merge_id) == ("merged", merge_id)
    customers.undo_merge(session, platform.SYSTEM, merge_id)
    session.refresh(pair)
    assert pair.status == "open"


def test_history_lists_merges(session):
    survivor, other, _ = _pair(session)
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    page = customers.merge_history(session, platform.SYSTEM)
    assert page.total == 1 and page.rows[0]["merge_id"] == merge_id and page.rows[0]["status"] == "completed"


def test_cli_merge_prints_the_merge_id_as_json(engine, monkeypatch, capsys):
    from crm_cli.main import main
    from db.engine import session_factory

    with session_factory(engine)() as s:
        survivor, other, _ = _pair(s)
        s.commit()
        ids = survivor.id, other.id
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    assert main(["customers", "merge", str(ids[0]), str(ids[1]), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"merge_id"} and isinstance(out["merge_id"], int)
    assert main(["customers", "merge", str(ids[0]), "999999"]) == 2
    assert "no customer 999999" in capsys.readouterr().err
    assert main(["customers", "undo-merge", str(out["merge_id"])]) == 0
    assert f"Undid merge {out['merge_id']}" in capsys.readouterr().out
    with session_factory(engine)() as s:
        assert s.get(Customer, ids[1]).status == "active"


def test_concurrent_merges_of_the_same_record_conflict(engine):
    """Two reviewers merge overlapping pairs from the same read: the second gets a conflict, not a chain."""
    from crm_core import platform
    from db.engine import session_factory

    factory = session_factory(engine)
    with factory() as s:
        a, b, c = _pair(s)
        make_order(s, b, T0, 10)
        s.commit()
        ids = a.id, b.id, c.id
    with factory() as s:  # both reviewers opened their pair in the page (the preview carries versions)
        seen_first = customers.preview_merge(s, platform.SYSTEM, ids[0], ids[1])
        seen_second = customers.preview_merge(s, platform.SYSTEM, ids[2], ids[0])
    with platform.unit_of_work(factory) as s:
        customers.merge_customers(s, platform.SYSTEM, ids[0], ids[1], survivor_version=seen_first["survivor"]["version"],
                      other_version=seen_first["other"]["version"])           # B into A
    with pytest.raises(platform.ConflictError, match="changed by someone else"), platform.unit_of_work(factory) as s:
        customers.merge_customers(s, platform.SYSTEM, ids[2], ids[0], survivor_version=seen_second["survivor"]["version"],
                      other_version=seen_second["other"]["version"])          # A into C, from a stale read of A
    with factory() as s:
        assert s.get(Customer, ids[0]).status == "active"
        assert s.scalar(select(func.count()).select_from(Order).where(Order.customer_id == ids[0])) == 1
