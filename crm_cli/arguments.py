"""Argument types and date defaults shared by every `crm` area module."""

from __future__ import annotations

import argparse
import datetime as dt

from crm_core import platform

# How --help describes a default that follows the data (crm_core/platform/dates.py).
DATA_DATE_DEFAULT = f"today, or the latest order's date when that is more than {platform.HISTORICAL_AFTER_DAYS} days ago"


def iso_date(text: str) -> dt.date:
    """A YYYY-MM-DD argument."""
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a date in the form YYYY-MM-DD") from None


def positive_id(text: str) -> int:
    """A record id argument: a whole number from 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (a whole number)") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not an id (ids start at 1)")
    return value


def dated(engine, given: dt.date | None, name: str, days_before: int = 0) -> dt.date:
    """A command's date: `given` when it is within the bounds, else `days_before` the data date."""
    if given is not None:
        return platform.check_as_of(given, name)
    return platform.data_date(engine).day - dt.timedelta(days=days_before)
