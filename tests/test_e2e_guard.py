"""In real Chromium against a freshly started `streamlit run`: the first request of all is for a page's
own address (/audit_log, Streamlit's folder route). No page shows, no script is listed, the sign-in
form asks for the page, and after sign-in the page opens."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from crm_cli.main import main as crm
from db import migrate

from .test_e2e import CHROMIUM, CHROMIUM_ARGS, REQUIRE_E2E, ROOT, _free_port, _wait_healthy, _wait_until_idle

pytestmark = pytest.mark.e2e
PASSWORD = "a-long-and-private-passphrase"


@pytest.fixture
def fresh_server(tmp_path, monkeypatch):
    if not Path(CHROMIUM).exists():
        if REQUIRE_E2E:
            pytest.fail(f"{CHROMIUM} is missing (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed")
    db_url = f"sqlite:///{tmp_path / 'crm.sqlite'}"
    migrate.upgrade(db_url)
    monkeypatch.setenv("CRM_DATABASE_URL", db_url)
    monkeypatch.setattr(sys, "stdin", io.StringIO(PASSWORD + "\n"))
    assert crm(["users", "create", "boss", "--role", "admin"]) == 0
    port = _free_port()
    env = {**os.environ, "CRM_DATABASE_URL": db_url, "STREAMLIT_SERVER_PORT": str(port),
           "STREAMLIT_SERVER_HEADLESS": "true", "STREAMLIT_SERVER_ADDRESS": "127.0.0.1"}
    process = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(ROOT / "streamlit_app.py")],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def test_the_first_request_for_a_page_file_meets_the_sign_in_gate(fresh_server):
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1000})
        page.set_default_timeout(45_000)
        expect.set_options(timeout=45_000)
        page.goto(f"{fresh_server}/audit_log", wait_until="networkidle")
        expect(page.get_by_role("heading", name="Customer Intelligence")).to_be_visible()
        _wait_until_idle(page)
        assert page.locator('[data-testid="stSidebarNav"] a').count() == 0
        sidebar = page.locator('[data-testid="stSidebar"]')
        listed = sidebar.inner_text().lower() if sidebar.count() else ""
        for script in ("audit", "admin", "privacy", "refresh"):
            assert script not in listed, script
        assert "You do not have access" not in page.locator("body").inner_text()
        assert page.locator('[data-testid="stException"]').count() == 0
        expect(page.get_by_text("Sign in to open Audit log")).to_be_visible()
        page.get_by_label("Username").fill("boss")
        page.get_by_label("Password", exact=True).fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Audit log", exact=True)).to_be_visible()
        browser.close()
