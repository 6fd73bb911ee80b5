"""End to end in real headless Chromium (Debian's /usr/bin/chromium) against `streamlit run`."""

from __future__ import annotations

import datetime as dt
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from sqlalchemy import func, select

import batch
import demo
from db import migrate
from db.engine import make_engine
from db.models import Customer, Voucher

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
REQUIRE_E2E = os.environ.get("CRM_REQUIRE_E2E", "") == "1"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]

pytestmark = pytest.mark.e2e


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_healthy(url: str, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited early:\n{process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError("streamlit did not become healthy")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not Path(CHROMIUM).exists():
        if REQUIRE_E2E:
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    db_url = f"sqlite:///{tmp_path_factory.mktemp('e2e') / 'crm.sqlite'}"
    migrate.upgrade(db_url)
    engine = make_engine(db_url)
    demo.seed_database(engine, 250, seed=9, end=dt.datetime.now().replace(microsecond=0), demo_users=True)
    batch.run_refresh(engine, dt.date.today())
    with engine.connect() as connection:
        customers = connection.scalar(select(func.count()).select_from(Customer).where(Customer.status.not_in(["merged", "erased"])))
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "CRM_DATABASE_URL": db_url, "STREAMLIT_SERVER_PORT": str(port),
           "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_SERVER_ADDRESS": "127.0.0.1"}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py")],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield {"url": url, "customers": customers, "db_url": db_url}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


# The key figure each page must show, as (CSS selector, expected text fragment or callable).
def _expectations(customers: int) -> dict[str, tuple[str, str]]:
    return {
        "Executive overview": ('[data-testid="stMetricValue"]', f"{customers:,}"),
        "Segments": ('[data-testid="stMetricLabel"]', "Segments"),
        "Duplicates & merge": ('[data-testid="stMetricLabel"]', "Open pairs"),
        "Privacy requests": ('[data-testid="stMetricLabel"]', "Overdue"),
        "Lifecycle": ('[data-testid="stMetricValue"]', f"{customers:,}"),
        "Customer value": ('[data-testid="stMetricLabel"]', "12-month CLV"),
        "Forecast": ('[data-testid="stMetricLabel"]', "Backtest MAPE"),
        "Churn": ('[data-testid="stMetricLabel"]', "Customers scored"),
        "Health": ('[data-testid="stMetricLabel"]', "Live accounts"),
        "Journeys": ('[data-testid="stMetricLabel"]', "Customers followed"),
        "Social": ('[data-testid="stMetricLabel"]', "Matched to customers"),
        "Support queue": ('[data-testid="stMetricLabel"]', "Open tickets (team)"),
        "Ticket": ('[data-testid="stMetricLabel"]', "Priority"),
        "SLA": ('[data-testid="stMetricLabel"]', "Targets met"),
        "Complaints": ('[data-testid="stMetricLabel"]', "Open complaints"),
        "Communications": ('[data-testid="stMetricLabel"]', "Messages sent"),
        "Loyalty": ('[data-testid="stMetricLabel"]', "Points liability"),
        "Customers": ('[data-testid="stMetricValue"]', f"{customers:,}"),
        "Customer 360": ('[data-testid="stAlert"]', "Enter a customer id"),
        "Success workbench": ('[data-testid="stMetricLabel"]', "My open CTAs"),
        "Users": ('[data-testid="stCaptionContainer"]', "18 users"),
        "Audit log": ('[data-testid="stCaptionContainer"]', "entries"),
        "Import / Export": ('[data-testid="stCaptionContainer"]', "need no mapping"),
        "Refresh runs": ('[data-testid="stCaptionContainer"]', "records each step"),
        "API tokens": ('[data-testid="stMetricLabel"]', "Active tokens"),
        "Risk reviews": ('[data-testid="stMetricLabel"]', "Open reviews"),
        "Referrals": ('[data-testid="stMetricLabel"]', "K-factor"),
        "Campaigns": ('[data-testid="stMetricLabel"]', "Held out (control)"),
    }


def _wait_until_idle(page) -> None:
    """Streamlit shows its status widget ('Running…', 'Stop') while a script run is going."""
    page.wait_for_load_state("networkidle")
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="detached", timeout=60_000)


def _signed_in(playwright, url: str, username: str):
    """Debian's Chromium, headless, with one page signed in as a demo user at `url`."""
    from playwright.sync_api import expect

    ARTIFACTS.mkdir(exist_ok=True)
    browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    page = browser.new_page(viewport={"width": 1440, "height": 1000})
    page.set_default_timeout(45_000)
    expect.set_options(timeout=45_000)
    page.goto(url, wait_until="networkidle")
    expect(page.get_by_role("heading", name="Customer Intelligence")).to_be_visible()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password", exact=True).fill(demo.demo_password(username))
    page.get_by_role("button", name="Sign in").click()
    return browser, page


def test_sign_in_and_open_every_page(server):
    from playwright.sync_api import expect, sync_playwright

    expectations = _expectations(server["customers"])
    with sync_playwright() as p:
        browser, page = _signed_in(p, server["url"], "admin1")
        expect(page.get_by_role("heading", name="Executive overview")).to_be_visible()

        nav_links = page.locator('[data-testid="stSidebarNav"] a')
        expect(nav_links.first).to_be_visible()
        titles = [t.strip().splitlines()[-1].strip() for t in nav_links.all_inner_texts()]  # after the icon
        assert set(titles) == set(expectations), titles
        for title in titles:
            page.locator('[data-testid="stSidebarNav"] a', has_text=title).click()
            expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
            selector, fragment = expectations[title]
            expect(page.locator(selector).filter(has_text=fragment).first).to_be_visible()
            _wait_until_idle(page)
            if title == "Executive overview":
                expect(page.locator(".js-plotly-plot")).to_have_count(3)
            assert page.locator('[data-testid="stException"]').count() == 0, title
            slug = title.lower().replace(" ", "-")
            page.screenshot(path=str(ARTIFACTS / f"e2e-{slug}.png"), full_page=True)
        browser.close()


def test_a_success_manager_walks_every_tab_of_the_workbench(server):
    """In the browser, as a customer-success manager: each tab of the Success workbench shows its own
    content and no error."""
    from playwright.sync_api import expect, sync_playwright

    tab_content = {
        "My CTAs": page_text("Due today or overdue"),
        "Team": page_text("Owner"),
        "Portfolios": page_text("Revenue at risk per book of business", "No books of business yet"),
        "Results": page_text("Horizon (days after the CTA opened)"),
        "Playbooks": page_text("Churn risk became high"),
    }
    with sync_playwright() as p:
        browser, page = _signed_in(p, server["url"], "csm1")
        nav = page.locator('[data-testid="stSidebarNav"] a', has_text="Success workbench")
        expect(nav).to_be_visible()
        nav.click()
        expect(page.get_by_role("heading", name="Success workbench", exact=True)).to_be_visible()
        _wait_until_idle(page)
        for tab, texts in tab_content.items():
            page.get_by_role("tab", name=tab, exact=True).click()
            panel = page.get_by_role("tabpanel", name=tab)
            # visible=True: a data grid also names its columns in a hidden accessibility table
            expect(panel.get_by_text(texts, exact=False).filter(visible=True).first).to_be_visible()
            assert page.locator('[data-testid="stException"]').count() == 0, tab
        page.screenshot(path=str(ARTIFACTS / "e2e-success-workbench-playbooks.png"), full_page=True)
        # A link to a page the role may not open (a new visit: signed out) asks to sign in, then says
        # so, instead of landing on the overview.
        page.goto(f"{server['url']}/users", wait_until="networkidle")
        expect(page.get_by_text("Sign in to open Users")).to_be_visible()
        page.get_by_label("Username").fill("csm1")
        page.get_by_label("Password", exact=True).fill(demo.demo_password("csm1"))
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_text("Your role (success manager) cannot open Users")).to_be_visible()
        assert "Users" not in [t.strip().splitlines()[-1].strip()
                               for t in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]
        browser.close()


def test_an_agent_issues_and_voids_a_voucher_and_each_form_starts_empty_again(server):
    """Customer 360 in the browser: a voucher issued by hand shows its code once and the issue form
    empties; voiding it with a reason saves the reason and empties the void form too (the widgets'
    values are reset in the browser, not only on the server)."""
    import re

    from playwright.sync_api import expect, sync_playwright

    engine = make_engine(server["db_url"])
    with engine.connect() as connection:
        customer_id = connection.scalar(select(func.min(Customer.id)).where(Customer.status == "active"))
    with sync_playwright() as p:
        browser, page = _signed_in(p, server["url"], "agent1")
        page.locator('[data-testid="stSidebarNav"] a', has_text="Customer 360").click()
        expect(page.get_by_role("heading", name="Customer 360", exact=True)).to_be_visible()
        page.get_by_label("Customer id").fill(str(customer_id))
        page.get_by_label("Customer id").press("Enter")
        page.get_by_role("tab", name="Orders", exact=True).click()
        issue = page.locator('[data-testid="stForm"]').filter(has_text="Issue a voucher")
        for percent in (10, 15):  # two, so one unused voucher is left after the void below
            issue.get_by_role("spinbutton", name="Value (% or €)").fill(str(percent))
            issue.get_by_role("textbox", name="Reason (required)").fill("Goodwill for the late parcel")
            issue.get_by_role("button", name="Issue voucher").click()
            expect(page.get_by_text(re.compile(rf"Voucher \S+ issued: {percent}\.00% off"))).to_be_visible()
            _wait_until_idle(page)
            expect(issue.get_by_role("textbox", name="Reason (required)")).to_have_value("")
        with engine.connect() as connection:
            made = connection.execute(select(Voucher.id, Voucher.code).where(Voucher.customer_id == customer_id)
                                      .order_by(Voucher.id.desc())).first()
        void = page.locator('[data-testid="stForm"]').filter(has_text="Void a voucher")
        picker = void.get_by_role("combobox", name="Unused voucher")
        _pick(page, picker, re.compile(made.code))
        void.get_by_role("textbox", name="Reason (required)").fill("Issued by mistake")
        void.get_by_role("button", name="Void voucher").click()
        expect(page.get_by_text(f"Voucher {made.code} voided.")).to_be_visible()
        _wait_until_idle(page)
        assert page.locator('[data-testid="stException"]').count() == 0
        void = page.locator('[data-testid="stForm"]').filter(has_text="Void a voucher")
        expect(void.get_by_role("combobox", name="Unused voucher")).not_to_have_value(re.compile(made.code))
        expect(void.get_by_role("textbox", name="Reason (required)")).to_have_value("")
        page.screenshot(path=str(ARTIFACTS / "e2e-customer-360-vouchers.png"), full_page=True)
        browser.close()
    with engine.connect() as connection:
        status, reason = connection.execute(select(Voucher.status, Voucher.void_reason)
                                            .where(Voucher.id == made.id)).one()
    engine.dispose()
    assert (status, reason) == ("void", "Issued by mistake")


def _pick(page, picker, option_name) -> None:
    """Choose an option of a selectbox. A click that lands while the script is still drawing the page
    can find the list closed again by the redraw (seen on a loaded machine): open it again."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import expect

    option = page.get_by_role("option", name=option_name)
    for _ in range(3):
        _wait_until_idle(page)
        picker.click()
        try:
            option.click(timeout=10_000)
            break
        except PlaywrightTimeout:
            page.keyboard.press("Escape")
    expect(picker).to_have_value(option_name)


def page_text(*alternatives: str):
    """A pattern matching any of the texts (a tab shows one of them, depending on the data)."""
    import re

    return re.compile("|".join(re.escape(t) for t in alternatives))
