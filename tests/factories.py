"""Small builders for hand-made fixtures."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sqlalchemy.orm import Session

from crm_core import platform
from db.models import Customer, Order, User

_counter = iter(range(1, 10**9))


def make_user(session: Session, role: str = "admin", username: str | None = None,
              password: str = "correct-horse") -> User:
    username = username or f"{role.replace('_', '')}{next(_counter)}"
    user = platform.create_user(session, platform.SYSTEM, username, role, password, full_name=username.title())
    session.flush()
    return user


def make_customer(session: Session, signed_up: dt.datetime, status: str = "active", **fields) -> Customer:
    n = next(_counter)
    customer = Customer(
        first_name=fields.pop("first_name", f"First{n}"), last_name=fields.pop("last_name", f"Last{n}"),
        email=fields.pop("email", f"c{n}@example.com"), signed_up_at=signed_up, status=status,
        acquisition_channel=fields.pop("acquisition_channel", "direct"), **fields,
    )
    session.add(customer)
    session.flush()
    return customer


def make_order(session: Session, customer: Customer, when: dt.datetime, total: str | float,
               status: str = "delivered") -> Order:
    n = next(_counter)
    amount = Decimal(str(total))
    order = Order(order_number=f"T-{n}", customer_id=customer.id, ordered_at=when, status=status,
                  channel="web", currency="EUR", subtotal=amount, discount=0, shipping=0, total=amount,
                  item_count=1)
    session.add(order)
    session.flush()
    return order
