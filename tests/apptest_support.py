"""Shared helpers for AppTest-driven page tests (fixtures `app_db` and `app` live in conftest)."""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "streamlit_app.py")


def page_path(name: str) -> str:
    """Absolute path of a page file, e.g. page_path("segments") for pages/segments.py."""
    return str(ROOT / "pages" / f"{name}.py")


def sign_in(at: AppTest, username: str, password: str) -> AppTest:
    at.run()
    at.text_input[0].input(username)
    at.text_input[1].input(password)
    return at.button[0].click().run()


def open_page(at: AppTest, username: str, name: str) -> AppTest:
    """Sign in as a demo user (password from demo.demo_password) and switch to a page."""
    import demo

    sign_in(at, username, demo.demo_password(username))
    return at.switch_page(page_path(name)).run()


def open_tab(at: AppTest, key: str, label: str) -> AppTest:
    """Open a tab of ui.tabs.lazy_tabs (only the open tab's content is built) and rerun, as a click on it does."""
    at.session_state[key] = label
    return at.run()


def titles(at: AppTest) -> list[str]:
    return [t.value for t in at.title]


def registered_scripts(at: AppTest) -> set[str]:
    """Script files the navigation registered for this session (what the sidebar lists)."""
    return {Path(str(info["script_path"])).name for info in at._registered_pages.values() if info.get("script_path")}
