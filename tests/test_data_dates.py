"""Dates follow the data: the data date of a live shop, a historical import and an empty database;
the bounds on any date from outside; the services that take an as-of date refuse one out of bounds."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import func, insert, select, text

import batch
from batch import refresh
from crm_core import loyalty, platform
from crm_core.platform import dates
from db.models import LoyaltyAccount, LoyaltyTransaction, Order
from ml import backtest

from .factories import make_customer, make_order

TODAY = dt.date.today()
IMPORT_END = dt.date(1998, 6, 30)


def _orders(session, *days: dt.date, status: str = "delivered") -> None:
    customer = make_customer(session, dt.datetime(1996, 1, 1))
    for day in days:
        make_order(session, customer, dt.datetime.combine(day, dt.time(14, 30)), "40", status=status)
    session.commit()


# --------------------------------------------------------------------------- the data date


def test_recent_orders_mean_today(session):
    _orders(session, TODAY - dt.timedelta(days=200), TODAY - dt.timedelta(days=3))
    found = platform.data_date(session)
    assert found == platform.DataDate(TODAY, TODAY - dt.timedelta(days=3), False)


def test_an_old_import_runs_to_its_latest_order(session, engine):
    _orders(session, dt.date(1997, 1, 1), IMPORT_END, dt.date(1998, 2, 14))
    assert platform.data_date(session) == platform.DataDate(IMPORT_END, IMPORT_END, True)
    assert platform.data_date(engine) == platform.DataDate(IMPORT_END, IMPORT_END, True)  # from an engine too (the CLI)
    assert platform.data_date(session).run_time() == dt.datetime(1998, 6, 30, 23, 0)
    assert platform.data_date(session).run_time(dt.date(1998, 3, 31)) == dt.datetime(1998, 3, 31, 23, 0)


def test_no_orders_mean_today(session):
    assert platform.data_date(session) == platform.DataDate(TODAY, None, False)
    before = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    assert before <= platform.data_date(session).run_time() <= before + dt.timedelta(minutes=1)


def test_the_latest_order_of_any_status_counts_and_30_days_is_still_live(session):
    _orders(session, dt.date(2001, 5, 1))
    _orders(session, TODAY - dt.timedelta(days=platform.HISTORICAL_AFTER_DAYS), status="cancelled")
    assert platform.data_date(session) == platform.DataDate(TODAY, TODAY - dt.timedelta(days=30), False)
    # a day older and the data is historical
    assert platform.data_date(session, today=TODAY + dt.timedelta(days=1)) == platform.DataDate(
        TODAY - dt.timedelta(days=30), TODAY - dt.timedelta(days=30), True)


def test_the_latest_order_is_read_from_the_index(session, backend):
    customer = make_customer(session, dt.datetime(1996, 1, 1))
    start = dt.datetime(1997, 1, 1)
    session.execute(insert(Order), [
        {"order_number": f"IDX-{n}", "customer_id": customer.id, "ordered_at": start + dt.timedelta(hours=n),
         "status": "delivered", "channel": "web", "currency": "EUR", "subtotal": 10, "discount": 0, "shipping": 0,
         "total": 10, "item_count": 1}
        for n in range(5000)
    ])
    session.commit()
    sql = str(dates.LATEST_ORDER.compile(session.bind))
    if backend == "sqlite":
        plan = " ".join(str(row[-1]) for row in session.execute(text(f"EXPLAIN QUERY PLAN {sql}")))
        assert "ix_orders_time" in plan and "SCAN" not in plan.replace("COVERING INDEX", "")
    else:
        session.execute(text("ANALYZE orders"))
        plan = " ".join(row[0] for row in session.execute(text(f"EXPLAIN {sql}")))
        assert "Index Only Scan Backward using ix_orders_time" in plan, plan


# --------------------------------------------------------------------------- bounds


def test_dates_up_to_tomorrow_and_from_1900_are_accepted():
    assert platform.check_as_of(TODAY + dt.timedelta(days=1)) == TODAY + dt.timedelta(days=1)
    assert platform.check_as_of(dt.date(1900, 1, 1)) == dt.date(1900, 1, 1)
    assert platform.check_as_of(IMPORT_END, "--as-of") == IMPORT_END


@pytest.mark.parametrize("day, words", [
    (TODAY + dt.timedelta(days=2), "is in the future: pick a date up to"),
    (dt.date(9999, 12, 31), "is in the future"),
    (dt.date(1899, 12, 31), "is before 1900-01-01"),
    (dt.date(1, 1, 1), "is before 1900-01-01"),
])
def test_dates_after_tomorrow_or_before_1900_are_refused(day, words):
    with pytest.raises(platform.ValidationError, match=words) as refused:
        platform.check_as_of(day, "--as-of")
    assert str(refused.value).startswith(f"--as-of {day.isoformat()} ")


def test_backfill_months_are_bounded():
    assert platform.check_backfill_months(0, TODAY) == 0
    assert platform.check_backfill_months(1200, TODAY) == 1200
    with pytest.raises(platform.ValidationError, match="cannot be negative"):
        platform.check_backfill_months(-1, TODAY)
    with pytest.raises(platform.ValidationError, match="pick at most 1,200"):
        platform.check_backfill_months(100_000, TODAY)
    # January and February 1900 end after 1900-01-01; December 1899 does not
    assert platform.check_backfill_months(2, dt.date(1900, 3, 15)) == 2
    with pytest.raises(platform.ValidationError, match="reaches back before 1900-01-01 from 1900-03-15: pick at most 2"):
        platform.check_backfill_months(3, dt.date(1900, 3, 15))
    assert batch.month_ends_before(dt.date(1900, 3, 15), 2) == [dt.date(1900, 1, 31), dt.date(1900, 2, 28)]


# --------------------------------------------------------------------------- services check their dates


def test_loyalty_expiry_refuses_a_future_date_and_leaves_balances(session, engine):
    customer = make_customer(session, dt.datetime(2019, 6, 1))
    loyalty.enroll(session, platform.SYSTEM, customer.id)
    session.commit()
    loyalty.adjust(session, platform.SYSTEM, customer.id, 500, "welcome bonus")
    session.commit()
    with pytest.raises(platform.ValidationError, match="The expiry date 2030-01-01 is in the future"):
        loyalty.expire_points(engine, dt.date(2030, 1, 1))
    session.expire_all()
    assert session.scalar(select(LoyaltyAccount.points_balance)) == 500
    assert session.scalar(select(func.count()).where(LoyaltyTransaction.kind == "expire")) == 0


def test_the_refresh_refuses_dates_out_of_bounds_before_any_step(engine, monkeypatch):
    ran: list = []
    monkeypatch.setattr(refresh, "STEPS", (("Record", _recorder(ran)),))
    for day in (dt.date(9999, 12, 31), TODAY + dt.timedelta(days=2), dt.date(1, 1, 1)):
        with pytest.raises(platform.ValidationError):
            batch.run_refresh(engine, day)
    with pytest.raises(platform.ValidationError, match="--backfill-months 100,000"):
        batch.backfill(engine, TODAY, 100_000)
    assert ran == []


def _recorder(ran: list):
    def _record(engine, as_of, now):
        ran.append((as_of, now))
        return "recorded"

    return _record


def test_the_refresh_defaults_to_the_data_date(session, engine, monkeypatch):
    ran: list = []
    monkeypatch.setattr(refresh, "STEPS", (("Record", _recorder(ran)),))
    batch.run_refresh(engine)  # no orders: today, stamped now
    assert ran[-1][0] == TODAY and ran[-1][1].date() >= TODAY - dt.timedelta(days=1)
    _orders(session, dt.date(1997, 3, 1), IMPORT_END)
    report = batch.run_refresh(engine)
    assert report.as_of == IMPORT_END
    assert ran[-1] == (IMPORT_END, dt.datetime(1998, 6, 30, 23, 0))  # history lines up with the data


def test_the_backtest_checks_its_date_and_a_huge_horizon(session):
    _orders(session, dt.date(1997, 3, 1), IMPORT_END)
    connection = session.connection()
    with pytest.raises(platform.ValidationError, match="--as-of 2030-01-01 is in the future"):
        backtest.check_window(connection, dt.date(2030, 1, 1), 90)
    with pytest.raises(platform.ValidationError, match="after the latest order \\(1998-06-30\\)"):
        backtest.check_window(connection, dt.date(1998, 3, 31), 10**9)
    with pytest.raises(platform.ValidationError, match="The horizon ends on 1998-07-30, after the latest order"):
        backtest.check_window(connection, dt.date(1998, 5, 1), 90)
    backtest.check_window(connection, dt.date(1998, 3, 31), 90)
