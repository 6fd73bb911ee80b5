"""Business time: working periods in the shop's time zone, weekends and holidays.

A calendar is data (JSON in `app_settings` under "business_calendar", copied onto each SLA
policy):

    {"timezone": "Europe/Berlin", "country": "DE", "subdivision": null,
     "working_periods": {"0": [["08:00", "12:30"], ["13:00", "18:00"]], ...},   # 0 = Monday
     "holidays": ["2026-12-24", ...]}                                          # extra closed days

A period whose end is not after its start runs overnight into the next day ("22:00"-"06:00");
it belongs to the day it starts on, so a holiday closes the whole night that starts on it. Public
holidays of `country` (and `subdivision`) come from the `holidays` package.

Business time is real elapsed time inside working periods. Periods are laid out in local time and
converted to UTC with zoneinfo, so a period spanning a daylight-saving change is an hour shorter
(spring) or longer (autumn), as the clock on the wall says. Local times that do not exist (the
spring gap) resolve with the offset before the change; repeated times (the autumn overlap) mean
their first occurrence.

Datetimes in and out are UTC; naive values are read as UTC (the database convention) and naive
values come back.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays as public_holidays

from crm_core.platform.actors import Actor
from crm_core.platform.errors import ValidationError
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.platform.shop import SHOP_COUNTRY, SHOP_TIMEZONE

UTC = dt.UTC
SETTING_KEY = "business_calendar"
WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MAX_PERIODS_PER_DAY = 6
MAX_EXTRA_HOLIDAYS = 500
SEARCH_LIMIT_DAYS = 3 * 366
_TIME = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")

DEFAULT_CALENDAR: dict[str, Any] = {
    "timezone": SHOP_TIMEZONE,
    "country": SHOP_COUNTRY,
    "subdivision": None,
    "working_periods": {str(d): [["08:00", "12:30"], ["13:00", "18:00"]] for d in range(5)},
    "holidays": [],
}


@lru_cache(maxsize=256)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[dt.date]:
    return frozenset(public_holidays.country_holidays(country, subdiv=subdivision, years=year))


@dataclass(frozen=True)
class BusinessCalendar:
    timezone: str
    working_periods: tuple[tuple[tuple[dt.time, dt.time], ...], ...]  # index 0 = Monday
    holidays: frozenset[dt.date] = frozenset()
    country: str | None = None
    subdivision: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_holiday(self, day: dt.date) -> bool:
        if day in self.holidays:
            return True
        return bool(self.country) and day in _public_holidays(self.country, self.subdivision, day.year)

    def to_dict(self) -> dict[str, Any]:
        return {
            "timezone": self.timezone,
            "country": self.country,
            "subdivision": self.subdivision,
            "working_periods": {
                str(d): [[s.strftime("%H:%M"), e.strftime("%H:%M")] for s, e in periods]
                for d, periods in enumerate(self.working_periods) if periods
            },
            "holidays": sorted(d.isoformat() for d in self.holidays),
        }

    def weekly_minutes(self) -> int:
        total = 0
        for periods in self.working_periods:
            for start, end in periods:
                minutes = (end.hour * 60 + end.minute) - (start.hour * 60 + start.minute)
                total += minutes if minutes > 0 else minutes + 24 * 60
        return total

    def day_intervals(self, day: dt.date) -> list[tuple[dt.datetime, dt.datetime]]:
        """The working periods starting on local `day`, as aware UTC intervals."""
        if self.is_holiday(day):
            return []
        zone = self.zone
        out = []
        for start, end in self.working_periods[day.weekday()]:
            end_day = day if end > start else day + dt.timedelta(days=1)
            begin = dt.datetime.combine(day, start, tzinfo=zone).astimezone(UTC)
            finish = dt.datetime.combine(end_day, end, tzinfo=zone).astimezone(UTC)
            if finish > begin:
                out.append((begin, finish))
        return sorted(out)


def _parse_time(value: Any, where: str) -> dt.time:
    if not isinstance(value, str) or not _TIME.match(value.strip()):
        raise ValidationError(f"{where}: {value!r} is not a time of day as HH:MM (00:00 to 23:59).")
    hours, minutes = value.strip().split(":")
    return dt.time(int(hours), int(minutes))


def parse_calendar(data: Any) -> BusinessCalendar:
    """Validate calendar data (as stored or as typed by an admin) into a BusinessCalendar."""
    if isinstance(data, BusinessCalendar):
        return data
    if not isinstance(data, dict):
        raise ValidationError("A business calendar must be a mapping with timezone, working_periods and holidays.")
    unknown = sorted(set(data) - set(DEFAULT_CALENDAR))
    if unknown:
        raise ValidationError(f"Unknown calendar field(s): {', '.join(unknown)}.")
    timezone = data.get("timezone")
    if not isinstance(timezone, str) or not timezone.strip():
        raise ValidationError("The calendar needs a time zone, e.g. Europe/Berlin.")
    timezone = timezone.strip()
    try:
        if timezone not in available_timezones():
            raise ZoneInfoNotFoundError(timezone)
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationError(f"Unknown time zone {timezone!r}; use an IANA name such as Europe/Berlin.") from None

    country = data.get("country") or None
    subdivision = data.get("subdivision") or None
    if country is not None:
        if not isinstance(country, str):
            raise ValidationError("The holiday country must be a two-letter country code such as DE.")
        country = country.strip().upper()
        if country not in public_holidays.list_supported_countries():
            raise ValidationError(f"No public-holiday calendar for country {country!r}; use a code such as DE or FR.")
        if subdivision is not None:
            supported = public_holidays.list_supported_countries()[country]
            if subdivision not in supported:
                raise ValidationError(
                    f"Unknown subdivision {subdivision!r} for {country}; known: {', '.join(supported) or 'none'}."
                )
    elif subdivision is not None:
        raise ValidationError("A holiday subdivision needs a country.")

    raw_periods = data.get("working_periods")
    if not isinstance(raw_periods, dict):
        raise ValidationError("working_periods must map weekday numbers (0 = Monday … 6 = Sunday) to periods.")
    days: list[tuple[tuple[dt.time, dt.time], ...]] = [() for _ in range(7)]
    for key, periods in raw_periods.items():
        if str(key) not in {str(d) for d in range(7)}:
            raise ValidationError(f"Weekday {key!r} is not 0 (Monday) to 6 (Sunday).")
        day = int(key)
        name = WEEKDAY_NAMES[day]
        if not isinstance(periods, list | tuple) or len(periods) > MAX_PERIODS_PER_DAY:
            raise ValidationError(f"{name}: give a list of at most {MAX_PERIODS_PER_DAY} [start, end] periods.")
        parsed = []
        for period in periods:
            if not isinstance(period, list | tuple) or len(period) != 2:
                raise ValidationError(f"{name}: each period is a pair [start, end], not {period!r}.")
            start, end = (_parse_time(v, name) for v in period)
            if start == end:
                raise ValidationError(f"{name}: a period cannot start and end at {start:%H:%M}.")
            parsed.append((start, end))
        parsed.sort()
        # Overlaps within a day (an overnight period runs to the end of the day for this check).
        for (s1, e1), (s2, _) in zip(parsed, parsed[1:], strict=False):
            if e1 <= s1 or s2 < e1:
                raise ValidationError(f"{name}: periods overlap or an overnight period is not the day's last.")
        days[day] = tuple(parsed)
    if not any(days):
        raise ValidationError("The calendar has no working periods at all; add at least one.")
    for day in range(7):
        periods = days[day]
        if periods and periods[-1][1] <= periods[-1][0]:  # overnight: must end before the next day's first start
            following = days[(day + 1) % 7]
            if following and following[0][0] < periods[-1][1]:
                raise ValidationError(
                    f"{WEEKDAY_NAMES[day]}: the overnight period runs past the start of {WEEKDAY_NAMES[(day + 1) % 7]}'s "
                    "first period."
                )

    raw_holidays = data.get("holidays") or []
    if not isinstance(raw_holidays, list | tuple) or len(raw_holidays) > MAX_EXTRA_HOLIDAYS:
        raise ValidationError(f"holidays must be a list of at most {MAX_EXTRA_HOLIDAYS} dates (YYYY-MM-DD).")
    extra = set()
    for value in raw_holidays:
        if isinstance(value, dt.date):
            extra.add(value)
            continue
        try:
            extra.add(dt.date.fromisoformat(str(value).strip()))
        except ValueError:
            raise ValidationError(f"Holiday {value!r} is not a date as YYYY-MM-DD.") from None
    return BusinessCalendar(timezone, tuple(days), frozenset(extra), country, subdivision)


def _as_utc(moment: dt.datetime) -> dt.datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _like(result: dt.datetime, template: dt.datetime) -> dt.datetime:
    return result.replace(tzinfo=None) if template.tzinfo is None else result


def _intervals_from(calendar: BusinessCalendar, start: dt.datetime) -> Iterator[tuple[dt.datetime, dt.datetime]]:
    """Merged working intervals (aware UTC) that end after `start`, in order."""
    day = start.astimezone(calendar.zone).date() - dt.timedelta(days=1)  # yesterday's overnight period
    pending: tuple[dt.datetime, dt.datetime] | None = None
    for _ in range(SEARCH_LIMIT_DAYS):
        for begin, finish in calendar.day_intervals(day):
            if pending and begin <= pending[1]:
                pending = (pending[0], max(pending[1], finish))
                continue
            if pending and pending[1] > start:
                yield pending
            pending = (begin, finish)
        day += dt.timedelta(days=1)
    if pending and pending[1] > start:
        yield pending
    raise ValidationError(f"The business calendar has no working time within {SEARCH_LIMIT_DAYS} days.")


def add_business_minutes(calendar: BusinessCalendar | dict, start_utc: dt.datetime, minutes: float) -> dt.datetime:
    """The moment `minutes` of business time after `start_utc` (a start outside hours waits for the next period)."""
    calendar = parse_calendar(calendar)
    if minutes < 0:
        raise ValidationError("Business minutes to add must not be negative.")
    start = _as_utc(start_utc)
    if minutes == 0:
        return start_utc
    remaining = dt.timedelta(minutes=minutes)
    for begin, finish in _intervals_from(calendar, start):
        begin = max(begin, start)
        available = finish - begin
        if remaining <= available:
            return _like(begin + remaining, start_utc)
        remaining -= available
    raise AssertionError("unreachable")  # _intervals_from raises when it runs out


def business_minutes_between(calendar: BusinessCalendar | dict, a: dt.datetime, b: dt.datetime) -> float:
    """Business minutes from `a` to `b` (negative when `b` is before `a`)."""
    calendar = parse_calendar(calendar)
    start, end = _as_utc(a), _as_utc(b)
    if end < start:
        return -business_minutes_between(calendar, b, a)
    total = dt.timedelta()
    for begin, finish in _intervals_from(calendar, start):
        if begin >= end:
            break
        total += min(finish, end) - max(begin, start)
    return total.total_seconds() / 60


# --------------------------------------------------------------------------- the stored shop calendar


def get_business_calendar(session) -> tuple[BusinessCalendar, int]:
    """The shop calendar and the version to send back when saving (0 = never saved: the default)."""

    value, version = stored_setting(session, SETTING_KEY)
    return parse_calendar(DEFAULT_CALENDAR if value is None else value), version


def save_business_calendar(session, actor: Actor, data: dict[str, Any], expected_version: int | None) -> tuple[BusinessCalendar, int]:
    """Validate and store the shop calendar and give it to every SLA policy (open tickets keep their due times
    until their next recomputation: a status, priority or policy change)."""
    from sqlalchemy import update

    from crm_core.platform.permissions import require
    from db.models import ServiceLevelAgreement

    require(actor, "sla.manage")
    calendar = parse_calendar(data)
    stored = calendar.to_dict()
    version = save_setting(session, actor, SETTING_KEY, stored, expected_version,
                                what="The business calendar", action="sla.calendar.save")
    session.execute(update(ServiceLevelAgreement).values(calendar=stored))
    return calendar, version


# --------------------------------------------------------------------------- the admin form


def periods_to_text(calendar: BusinessCalendar, weekday: int) -> str:
    """'08:00-12:30, 13:00-18:00' for one weekday (empty when closed)."""
    return ", ".join(f"{s:%H:%M}-{e:%H:%M}" for s, e in calendar.working_periods[weekday])


def calendar_from_form(timezone: str, country: str | None, subdivision: str | None, periods: dict[int, str],
                       holidays_text: str) -> dict[str, Any]:
    """Calendar data from the admin form: periods as 'HH:MM-HH:MM, ...' per weekday, holidays one per line."""
    working: dict[str, list[list[str]]] = {}
    for weekday, text in periods.items():
        items = [item.strip() for item in (text or "").split(",") if item.strip()]
        pairs = []
        for item in items:
            parts = [p.strip() for p in item.split("-")]
            if len(parts) != 2:
                raise ValidationError(f"{WEEKDAY_NAMES[weekday]}: write periods as HH:MM-HH:MM, not {item!r}.")
            pairs.append(parts)
        if pairs:
            working[str(weekday)] = pairs
    holidays = [line.strip() for line in (holidays_text or "").replace(",", "\n").splitlines() if line.strip()]
    data = {"timezone": (timezone or "").strip(), "country": (country or "").strip() or None,
            "subdivision": (subdivision or "").strip() or None, "working_periods": working, "holidays": holidays}
    return parse_calendar(data).to_dict()
