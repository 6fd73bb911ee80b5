"""Split: chosen related records move to a new customer; dependent rows follow; bad input is refused."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, select

from crm_core import customers, platform
from db.models import AuditLog, Customer, CustomerMerge, LoyaltyAccount, LoyaltyTransaction, Order, SupportTicket

from .factories import make_customer, make_order, make_user

T0 = dt.datetime(2025, 3, 1)


def _orders(session, customer_id):
    return session.scalars(select(Order.id).where(Order.customer_id == customer_id).order_by(Order.id)).all()


def test_split_moves_the_chosen_orders_to_a_new_customer(session):
    shared = make_customer(session, T0, first_name="Sam", last_name="Household", email="family@example.com")
    orders = [make_order(session, shared, T0 + dt.timedelta(days=d), 10 + d) for d in range(4)]
    session.add(SupportTicket(ticket_number="TK-1", customer_id=shared.id, subject="Where is my parcel"))
    session.flush()
    new_id = customers.split_customer(session, platform.SYSTEM, shared.id, {"orders": [orders[1].id, orders[3].id]},
                           {"first_name": "Alex", "last_name": "Household", "email": "alex@example.com"})
    assert _orders(session, new_id) == [orders[1].id, orders[3].id]
    assert _orders(session, shared.id) == [orders[0].id, orders[2].id]
    new = session.get(Customer, new_id)
    assert (new.first_name, new.email, new.status) == ("Alex", "alex@example.com", "active")
    total = session.scalar(select(func.sum(Order.total)).where(Order.customer_id.in_([shared.id, new_id])))
    assert float(total) == 10 + 11 + 12 + 13  # nothing lost
    record = session.scalar(select(CustomerMerge).where(CustomerMerge.kind == "split"))
    assert record.summary == {"moved": {"orders": 2}} and record.merged_id == new_id
    assert session.scalar(select(AuditLog.after).where(AuditLog.action == "customer.split"))["new_customer"] == new_id
    with pytest.raises(platform.ValidationError, match="is a split"):
        customers.undo_merge(session, platform.SYSTEM, record.id)
    # Merging the new customer back is the way to reverse a split.
    customers.merge_customers(session, platform.SYSTEM, shared.id, new_id)
    assert len(_orders(session, shared.id)) == 4


def test_dependent_ledger_rows_follow_a_moved_loyalty_account(session):
    source = make_customer(session, T0)
    account = LoyaltyAccount(customer_id=source.id, points_balance=30, lifetime_points=30)
    session.add(account)
    session.flush()
    session.add(LoyaltyTransaction(account_id=account.id, customer_id=source.id, kind="earn", points=30, balance_after=30))
    session.flush()
    new_id = customers.split_customer(session, platform.SYSTEM, source.id, {"customer_loyalty_programs": [account.id]},
                           {"first_name": "Kim"})
    assert session.get(LoyaltyAccount, account.id).customer_id == new_id
    assert session.scalar(select(LoyaltyTransaction.customer_id)) == new_id


def test_split_rejects_bad_input(session):
    source = make_customer(session, T0)
    other = make_customer(session, T0)
    mine = make_order(session, source, T0, 5)
    theirs = make_order(session, other, T0, 5)
    with pytest.raises(platform.ValidationError, match="at least one"):
        customers.split_customer(session, platform.SYSTEM, source.id, {}, {"first_name": "X"})
    with pytest.raises(platform.ValidationError, match="name"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"orders": [mine.id]}, {"email": "x@example.com"})
    with pytest.raises(platform.ValidationError, match="not an email"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"orders": [mine.id]}, {"first_name": "X", "email": "nope"})
    with pytest.raises(platform.ValidationError, match="do not belong"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"orders": [theirs.id]}, {"first_name": "X"})
    with pytest.raises(platform.ValidationError, match="whole numbers"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"orders": ["abc"]}, {"first_name": "X"})
    with pytest.raises(platform.ValidationError, match="not a table"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"products": [1]}, {"first_name": "X"})
    with pytest.raises(platform.ValidationError, match="exactly one customer"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"customer_lifecycle_stages": [source.id]}, {"first_name": "X"})
    with pytest.raises(platform.ValidationError, match="Unknown fields"):
        customers.split_customer(session, platform.SYSTEM, source.id, {"orders": [mine.id]}, {"first_name": "X", "status": "vip"})
    with pytest.raises(platform.PermissionDenied):
        customers.split_customer(session, make_user(session, "support_agent"), source.id, {"orders": [mine.id]}, {"first_name": "X"})
    assert session.scalar(select(func.count()).select_from(Customer)) == 2  # nothing created


def test_undo_of_merge_refused_after_a_split_moved_its_rows(session):
    survivor = make_customer(session, T0)
    other = make_customer(session, T0)
    order = make_order(session, other, T0, 7)
    merge_id = customers.merge_customers(session, platform.SYSTEM, survivor.id, other.id)
    customers.split_customer(session, platform.SYSTEM, survivor.id, {"orders": [order.id]}, {"first_name": "Split"})
    with pytest.raises(platform.ConflictError, match="moved since"):
        customers.undo_merge(session, platform.SYSTEM, merge_id)


def test_splittable_rows_lists_the_customer_rows(session):
    source = make_customer(session, T0)
    order = make_order(session, source, T0, 5)
    found = {t["table"]: t["keys"] for t in customers.splittable_rows(session, platform.SYSTEM, source.id)}
    assert found == {"orders": [order.id]}
