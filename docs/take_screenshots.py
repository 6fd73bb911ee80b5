"""Screenshots of the real app for the README, taken with headless Chromium.

    python docs/take_screenshots.py [--url http://127.0.0.1:8501]

Expects `make run` (or `streamlit run streamlit_app.py`) serving the demo database.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from playwright.sync_api import expect, sync_playwright

import demo

OUT = Path(__file__).resolve().parent / "screenshots"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8501")
    args = parser.parse_args()
    OUT.mkdir(exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1440, "height": 1100})
        page.set_default_timeout(60_000)
        expect.set_options(timeout=60_000)
        page.goto(args.url, wait_until="networkidle")
        page.get_by_label("Username").fill("admin1")
        page.get_by_label("Password", exact=True).fill(demo.demo_password("admin1"))
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("heading", name="Executive overview")).to_be_visible()
        expect(page.locator(".js-plotly-plot")).to_have_count(3)
        page.wait_for_timeout(1500)
        page.screenshot(path=str(OUT / "overview.png"), full_page=True)
        charted = (("Segments", "segments.png"), ("Lifecycle", "lifecycle.png"), ("Churn", "churn.png"),
                   ("Customer value", "customer_value.png"), ("Health", "health.png"), ("Forecast", "forecast.png"),
                   ("SLA", "sla.png"), ("Journeys", "journeys.png"), ("Social", "social.png"))
        other = (("Success workbench", "success_workbench.png"), ("Campaigns", "campaigns.png"),
                 ("Risk reviews", "risk_reviews.png"), ("Referrals", "referrals.png"))
        for title, file_name in (*charted, *other):
            page.locator('[data-testid="stSidebarNav"] a', has_text=title).click()
            expect(page.get_by_role("heading", name=title, exact=True)).to_be_visible()
            if (title, file_name) in charted:
                expect(page.locator(".js-plotly-plot").first).to_be_visible()
            if title == "Success workbench":  # an admin owns no CTAs: show the team's queue
                page.get_by_role("tab", name="Team", exact=True).click()
            page.wait_for_timeout(3500)
            page.screenshot(path=str(OUT / file_name))
        browser.close()


if __name__ == "__main__":
    main()
