"""Pages guard themselves before the router does: no page script runs for a visitor without a signed-in
user with the page's permission, even when Streamlit's folder-based routing runs it directly (as it
does after a server start until the entry point has run once); a deep link survives sign-in."""

from __future__ import annotations

import demo

from .apptest_support import ROOT, titles


def test_a_deep_link_opens_its_page_after_sign_in(app):
    """/customer-360?id=N in a new tab: the sign-in form, then the customer, not the overview."""
    app.switch_page(str(ROOT / "streamlit_app.py"))
    app.run()
    app.query_params["id"] = "3"
    # An anonymous visitor at the page's address sees the sign-in form under that address.
    app._page_hash = next(h for h, info in app._registered_pages.items()  # noqa: SLF001 - AppTest has no API
                          if info.get("url_pathname") == "customer-360")
    app.run()
    assert titles(app) == ["Customer Intelligence"]
    assert any("Customer 360" in c.value for c in app.caption)
    app.text_input[0].input("csm1")
    app.text_input[1].input(demo.demo_password("csm1"))
    app.button[0].click().run()
    assert not app.exception
    assert titles(app) == ["Customer 360"]
    assert any("#3" in s.value for s in app.subheader)
