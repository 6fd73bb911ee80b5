"""Business-time arithmetic, against due times computed by hand.

The shop calendar: Europe/Berlin, Monday-Friday 08:00-12:30 and 13:00-18:00 (270 + 300 = 570 minutes a day),
German public holidays. Berlin is UTC+1 in winter (CET) and UTC+2 in summer (CEST); in 2026 the
clocks go forward on Sunday 29 March (02:00 -> 03:00) and back on Sunday 25 October (03:00 -> 02:00).
All datetimes below are naive UTC, like the database's.
"""

from __future__ import annotations

import datetime as dt

import pytest

from crm_core import platform, service

SHOP = service.parse_calendar(service.DEFAULT_CALENDAR)
UTC = dt.datetime


def test_within_one_period():
    # Tue 24 Nov 2026 09:00 CET = 08:00 UTC; +90 min -> 10:30 CET = 09:30 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 24, 8, 0), 90) == UTC(2026, 11, 24, 9, 30)


def test_lunch_break_is_skipped():
    # 12:00 CET + 60: 30 min to 12:30, then 30 min from 13:00 -> 13:30 CET = 12:30 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 24, 11, 0), 60) == UTC(2026, 11, 24, 12, 30)


def test_ticket_created_before_opening_waits_for_the_first_period():
    # Tue 06:30 CET (05:30 UTC) + 30 -> 08:30 CET = 07:30 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 24, 5, 30), 30) == UTC(2026, 11, 24, 7, 30)
    # After closing, Tue 19:00 CET (18:00 UTC) + 30 -> Wed 08:30 CET = 07:30 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 24, 18, 0), 30) == UTC(2026, 11, 25, 7, 30)


def test_friday_evening_to_monday():
    # Fri 27 Nov 17:00 CET (16:00 UTC) + 120: 60 min on Friday, 60 on Monday -> Mon 09:00 CET = 08:00 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 27, 16, 0), 120) == UTC(2026, 11, 30, 8, 0)
    assert service.business_minutes_between(SHOP, UTC(2026, 11, 27, 16, 0), UTC(2026, 11, 30, 8, 0)) == 120
    # A ticket raised on Saturday: the clock starts Monday 08:00.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 28, 10, 0), 60) == UTC(2026, 11, 30, 8, 0)


def test_multi_day_target_counts_whole_days():
    # Mon 30 Nov 08:00 CET + 2880 min (5 days of 570 min + 30 min): Mon..Fri full, next Mon 08:00 + 30
    # -> Mon 7 Dec 08:30 CET = 07:30 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 30, 7, 0), 2880) == UTC(2026, 12, 7, 7, 30)
    # Mon 30 Nov 08:00 CET + 3000 = 5 x 570 + 150 -> Mon 7 Dec 10:30 CET = 09:30 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 30, 7, 0), 3000) == UTC(2026, 12, 7, 9, 30)


def test_public_holiday_is_skipped():
    # Thu 30 Apr 2026 17:00 CEST (15:00 UTC) + 120: 60 min Thursday; Fri 1 May is Labour Day; weekend;
    # Mon 4 May 08:00 + 60 -> 09:00 CEST = 07:00 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 4, 30, 15, 0), 120) == UTC(2026, 5, 4, 7, 0)
    # Christmas 2026: Fri 25 Dec and Sat 26 Dec; Thu 24 Dec 17:00 CET + 120 -> Mon 28 Dec 09:00 CET = 08:00 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 12, 24, 16, 0), 120) == UTC(2026, 12, 28, 8, 0)


def test_extra_holiday_dates_are_closed_too():
    calendar = service.parse_calendar({**service.DEFAULT_CALENDAR, "holidays": ["2026-12-24", "2026-12-28"]})
    # Wed 23 Dec 17:00 CET + 120: 60 on Wed; 24th extra, 25th public, weekend, 28th extra; Tue 29th 09:00 CET.
    assert service.add_business_minutes(calendar, UTC(2026, 12, 23, 16, 0), 120) == UTC(2026, 12, 29, 8, 0)


def test_weekday_target_across_spring_forward():
    # Fri 27 Mar 2026 17:00 CET (16:00 UTC) + 120 -> Mon 30 Mar 09:00 CEST = 07:00 UTC (not 08:00).
    assert service.add_business_minutes(SHOP, UTC(2026, 3, 27, 16, 0), 120) == UTC(2026, 3, 30, 7, 0)


def test_weekday_target_across_fall_back():
    # Fri 23 Oct 2026 17:00 CEST (15:00 UTC) + 120 -> Mon 26 Oct 09:00 CET = 08:00 UTC.
    assert service.add_business_minutes(SHOP, UTC(2026, 10, 23, 15, 0), 120) == UTC(2026, 10, 26, 8, 0)


NIGHT_SHIFT = {"timezone": "Europe/Berlin", "working_periods": {"5": [["22:00", "06:00"]]}}  # Saturday night


def test_overnight_period_during_spring_forward_is_an_hour_shorter():
    # Sat 28 Mar 22:00 CET (21:00 UTC) to Sun 06:00 CEST (04:00 UTC): 7 real hours, not 8.
    assert service.business_minutes_between(NIGHT_SHIFT, UTC(2026, 3, 28, 12), UTC(2026, 3, 29, 12)) == 420
    assert service.add_business_minutes(NIGHT_SHIFT, UTC(2026, 3, 28, 21, 0), 420) == UTC(2026, 3, 29, 4, 0)
    # 02:30 local does not exist that night: 01:00 UTC is 03:00 CEST, four hours after 22:00 CET.
    assert service.add_business_minutes(NIGHT_SHIFT, UTC(2026, 3, 28, 21, 0), 240) == UTC(2026, 3, 29, 1, 0)
    # 421 minutes run into the next Saturday night: 22:00 CEST = 20:00 UTC, + 1 minute.
    assert service.add_business_minutes(NIGHT_SHIFT, UTC(2026, 3, 28, 21, 0), 421) == UTC(2026, 4, 4, 20, 1)


def test_overnight_period_during_fall_back_is_an_hour_longer():
    # Sat 24 Oct 22:00 CEST (20:00 UTC) to Sun 06:00 CET (05:00 UTC): 9 real hours.
    assert service.business_minutes_between(NIGHT_SHIFT, UTC(2026, 10, 24, 12), UTC(2026, 10, 25, 12)) == 540
    assert service.add_business_minutes(NIGHT_SHIFT, UTC(2026, 10, 24, 20, 0), 540) == UTC(2026, 10, 25, 5, 0)


def test_overnight_period_starting_on_a_holiday_is_closed():
    night = {"timezone": "Europe/Berlin", "country": "DE",
             "working_periods": {str(d): [["22:00", "06:00"]] for d in range(7)}}
    # Thu 30 Apr 23:00 CEST (21:00 UTC) + 60 -> 00:00 CEST (22:00 UTC): Thursday's night is open.
    assert service.add_business_minutes(night, UTC(2026, 4, 30, 21, 0), 60) == UTC(2026, 4, 30, 22, 0)
    # Thu 30 Apr 05:00 CEST (Thursday night ended at 06:00 Fri) ... the night starting Fri 1 May (holiday) is shut:
    # Fri 1 May 05:30 CEST (03:30 UTC) + 60: 30 min until 06:00, then Sat 2 May 22:00 CEST + 30 = 20:30 UTC.
    assert service.add_business_minutes(night, UTC(2026, 5, 1, 3, 30), 60) == UTC(2026, 5, 2, 20, 30)


def test_between_is_signed_and_zero_outside_hours():
    assert service.business_minutes_between(SHOP, UTC(2026, 11, 28, 9), UTC(2026, 11, 29, 20)) == 0  # a weekend
    assert service.business_minutes_between(SHOP, UTC(2026, 11, 30, 8, 0), UTC(2026, 11, 27, 16, 0)) == -120
    assert service.add_business_minutes(SHOP, UTC(2026, 11, 28, 9), 0) == UTC(2026, 11, 28, 9)


def test_add_and_between_agree():
    start = UTC(2026, 3, 20, 10, 17)
    for minutes in (1, 59, 510, 511, 1440, 7200):
        assert service.business_minutes_between(SHOP, start, service.add_business_minutes(SHOP, start, minutes)) == pytest.approx(minutes)


def test_aware_datetimes_are_accepted_and_returned_aware():
    start = dt.datetime(2026, 11, 27, 16, 0, tzinfo=dt.UTC)
    assert service.add_business_minutes(SHOP, start, 120) == dt.datetime(2026, 11, 30, 8, 0, tzinfo=dt.UTC)


@pytest.mark.parametrize(("data", "message"), [
    ({**service.DEFAULT_CALENDAR, "timezone": "Mars/Olympus"}, "Unknown time zone"),
    ({**service.DEFAULT_CALENDAR, "timezone": ""}, "needs a time zone"),
    ({**service.DEFAULT_CALENDAR, "country": "XX"}, "No public-holiday calendar"),
    ({**service.DEFAULT_CALENDAR, "working_periods": {}}, "no working periods"),
    ({**service.DEFAULT_CALENDAR, "working_periods": {"7": [["08:00", "12:00"]]}}, "not 0"),
    ({**service.DEFAULT_CALENDAR, "working_periods": {"0": [["8am", "12:00"]]}}, "HH:MM"),
    ({**service.DEFAULT_CALENDAR, "working_periods": {"0": [["08:00", "08:00"]]}}, "cannot start and end"),
    ({**service.DEFAULT_CALENDAR, "working_periods": {"0": [["08:00", "12:00"], ["11:00", "13:00"]]}}, "overlap"),
    ({**service.DEFAULT_CALENDAR, "working_periods": {"0": [["22:00", "09:00"]], "1": [["08:00", "12:00"]]}}, "overnight"),
    ({**service.DEFAULT_CALENDAR, "holidays": ["24.12.2026"]}, "YYYY-MM-DD"),
    ({**service.DEFAULT_CALENDAR, "colour": "blue"}, "Unknown calendar field"),
    ("Mon-Fri 9-5", "must be a mapping"),
])
def test_bad_calendars_are_refused_with_a_reason(data, message):
    with pytest.raises(platform.ValidationError, match=message):
        service.parse_calendar(data)


def test_round_trip_through_storage_form():
    calendar = service.parse_calendar({**service.DEFAULT_CALENDAR, "holidays": ["2026-12-24"]})
    assert service.parse_calendar(calendar.to_dict()) == calendar
    assert calendar.weekly_minutes() == 5 * 570
