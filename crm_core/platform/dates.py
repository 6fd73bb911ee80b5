"""Which date the data runs to, and which dates a command or a form may be asked for.

A shop that imports a historical log (the latest order years back) should see its data, not an
empty "today": when the latest order is more than HISTORICAL_AFTER_DAYS before today, every date
that defaults (the refresh, the as-of of a batch step, a page's date range) defaults to the
latest order's date instead, and the pages say so. Dates from outside are bounded: nothing after
tomorrow (a day of slack for time zones ahead of the server), nothing before 1900.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, func, select
from sqlalchemy.orm import Session

from crm_core.platform.errors import ValidationError
from db.models import Order, utcnow


def midnight(day: dt.date) -> dt.datetime:
    """The start of a day (naive UTC, as every timestamp is stored)."""
    return dt.datetime.combine(day, dt.time())


def end_of(as_of: dt.date) -> dt.datetime:
    """The exclusive upper bound for data 'as of' a date: midnight after it."""
    return midnight(as_of + dt.timedelta(days=1))


# The latest order more than this many days before today makes the data historical.
HISTORICAL_AFTER_DAYS = 30
# The bounds of any date a command, a form or a service takes from outside.
EARLIEST_DATE = dt.date(1900, 1, 1)
DAYS_AFTER_TODAY_ALLOWED = 1
# `crm refresh --backfill-months`: at most a century of month ends (each one a whole refresh).
MAX_BACKFILL_MONTHS = 1200
# Where a run over historical data stands on its date: late in the day, as a backfill stamps its month ends.
HISTORICAL_RUN_TIME = dt.time(23, 0)


@dataclass(frozen=True)
class DataDate:
    """The date dates default to (`day`), the latest order's date, and whether the data is historical."""

    day: dt.date
    latest_order: dt.date | None
    historical: bool

    def run_time(self, as_of: dt.date | None = None) -> dt.datetime:
        """The moment a run as of `as_of` (default `day`) stands at, to stamp stage changes,
        memberships and SLA checks: the current time, or for historical data late on that date
        (never after the current time), so the history it writes lines up with the data."""
        now = utcnow()
        if not self.historical:
            return now
        return min(dt.datetime.combine(as_of or self.day, HISTORICAL_RUN_TIME), now)


# One step down the index on orders.ordered_at, however many orders there are.
LATEST_ORDER = select(func.max(Order.ordered_at))


def latest_order_date(db: Session | Connection | Engine) -> dt.date | None:
    """The date of the latest order of any status."""
    if isinstance(db, Engine):
        with db.connect() as connection:
            latest = connection.scalar(LATEST_ORDER)
    else:
        latest = db.scalar(LATEST_ORDER)
    return None if latest is None else latest.date()


def data_date(db: Session | Connection | Engine, today: dt.date | None = None) -> DataDate:
    """Today while the latest order is at most HISTORICAL_AFTER_DAYS old (or there are no orders);
    otherwise the latest order's date, and the data is historical."""
    today = today or dt.date.today()
    latest = latest_order_date(db)
    if latest is None or latest >= today - dt.timedelta(days=HISTORICAL_AFTER_DAYS):
        return DataDate(today, latest, False)
    return DataDate(latest, latest, True)


def latest_allowed(today: dt.date | None = None) -> dt.date:
    """The latest date anything may be asked for: tomorrow."""
    return (today or dt.date.today()) + dt.timedelta(days=DAYS_AFTER_TODAY_ALLOWED)


def check_as_of(day: dt.date, name: str = "The date", today: dt.date | None = None) -> dt.date:
    """`day` when it lies between EARLIEST_DATE and tomorrow; otherwise a ValidationError that says
    which dates are allowed. `name` is how the message refers to the date (e.g. "--as-of")."""
    latest = latest_allowed(today)
    if day > latest:
        raise ValidationError(
            f"{name} {day.isoformat()} is in the future: pick a date up to {latest.isoformat()} (tomorrow).")
    if day < EARLIEST_DATE:
        raise ValidationError(
            f"{name} {day.isoformat()} is before {EARLIEST_DATE.isoformat()}: pick a date from then on.")
    return day


def check_backfill_months(months: int, until: dt.date) -> int:
    """`months` when that many month ends before `until` can be refreshed: not negative, at most
    MAX_BACKFILL_MONTHS, and the earliest month end not before EARLIEST_DATE."""
    if months < 0:
        raise ValidationError("--backfill-months cannot be negative")
    # Months since January 1900, the first month whose end is allowed, up to the month before until's.
    reachable = (until.year - EARLIEST_DATE.year) * 12 + until.month - EARLIEST_DATE.month
    if months > MAX_BACKFILL_MONTHS:
        raise ValidationError(f"--backfill-months {months:,} is too many: pick at most {MAX_BACKFILL_MONTHS:,} "
                              "(a century of month ends).")
    if months > reachable:
        raise ValidationError(f"--backfill-months {months:,} reaches back before {EARLIEST_DATE.isoformat()} from "
                              f"{until.isoformat()}: pick at most {reachable:,}.")
    return months
