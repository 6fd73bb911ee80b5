"""Pages on a historical import: date inputs default to the latest order's date and the page says
which date the data runs to; on live data the pages keep their look."""

from __future__ import annotations

import datetime as dt

import pytest
from streamlit.testing.v1 import AppTest

import demo
from crm_core import platform

from .apptest_support import APP, open_page, titles
from .factories import make_customer, make_order

IMPORT_END = dt.date(1998, 6, 30)
CAPTION = "Data runs to 30 Jun 1998 (latest order); dates default to it."


@pytest.fixture
def historical_app(engine, monkeypatch):
    """A shop whose order log ends on 30 June 1998, with an executive and an admin."""
    with platform.unit_of_work(engine) as s:
        for username, role in (("exec1", "executive"), ("admin1", "admin")):
            platform.create_user(s, platform.SYSTEM, username, role, demo.demo_password(username))
        for n, signed_up in enumerate((dt.datetime(1997, 1, 10), dt.datetime(1997, 9, 3), dt.datetime(1998, 2, 2))):
            customer = make_customer(s, signed_up)
            for month in range(n, 6):
                make_order(s, customer, dt.datetime(1998, month + 1, 28 - n, 12), 100 + 10 * n)
        make_order(s, customer, dt.datetime.combine(IMPORT_END, dt.time(18)), "55")
    monkeypatch.setenv("CRM_DATABASE_URL", engine.url.render_as_string(hide_password=False))
    return AppTest.from_file(APP, default_timeout=60)


def captions(at: AppTest) -> list[str]:
    return [c.value for c in at.caption]


def metric(at: AppTest, label: str) -> str:
    return next(m for m in at.metric if m.label == label).value


def test_overview_defaults_its_range_to_the_latest_order_and_says_so(historical_app):
    at = open_page(historical_app, "exec1", "overview")
    assert not at.exception
    assert titles(at) == ["Executive overview"]
    assert CAPTION in captions(at)
    picked = at.date_input[0]
    assert picked.value == (dt.date(1997, 6, 1), IMPORT_END)
    assert picked.min == platform.EARLIEST_DATE and picked.max == dt.date.today()
    # the figures are those of the data, not of an empty "today"
    assert metric(at, "Customers") == "3"
    assert metric(at, "Active (90 days)") == "3"
    assert metric(at, "Revenue this month") == "€385"  # June 1998: 100 + 110 + 120 + 55
    assert not at.get("stException")


def test_the_refresh_panel_and_the_health_date_default_to_the_latest_order(historical_app):
    at = open_page(historical_app, "admin1", "lifecycle")
    assert not at.exception
    assert CAPTION in captions(at)
    as_of = at.date_input(key="lifecycle_refresh_as_of")
    assert as_of.value == IMPORT_END and as_of.min == platform.EARLIEST_DATE and as_of.max == dt.date.today()
    at = at.switch_page(str(APP).replace("streamlit_app.py", "pages/health.py")).run()
    assert not at.exception
    assert at.date_input(key="health_score_as_of").value == IMPORT_END
    assert CAPTION in captions(at)


def test_live_pages_keep_today_and_their_look(app):
    at = open_page(app, "exec1", "overview")
    assert not at.exception
    assert at.date_input[0].value[1] == dt.date.today()
    assert not any(c.startswith("Data runs to") for c in captions(at))
