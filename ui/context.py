"""Per-app resources and the signed-in user, for pages."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import streamlit as st
from sqlalchemy import Engine
from sqlalchemy.orm import Session

import batch
from crm_core import platform
from db import migrate
from db.engine import database_url, make_engine, session_factory
from ui import run_times
from ui.navigation import PAGES, PageSpec

USER_KEY = "signed_in_user"


@st.cache_resource(show_spinner="Opening the database…")
def _engine_for(url: str) -> Engine:
    migrate.ensure_migrated(url)
    return make_engine(url)


def engine() -> Engine:
    return _engine_for(database_url())


@contextmanager
def session(write: bool = False) -> Iterator[Session]:
    """A unit of work for one page action: committed on success, rolled back on error. A `write`
    waits its turn for the database's write lock (SQLite) instead of failing half-way."""
    with platform.unit_of_work(session_factory(engine()), write=write) as s:
        yield s


def signed_in() -> platform.SignedInUser | None:
    return st.session_state.get(USER_KEY)


def sign_in(user: platform.SignedInUser) -> None:
    st.session_state[USER_KEY] = user


def sign_out() -> None:
    """Forget everything of the session, not only the user: the next person at the same browser
    must not be offered the last one's downloads, searches or form contents."""
    st.session_state.clear()


def refresh_signed_in() -> platform.SignedInUser | None:
    """Re-read the signed-in user so role changes and deactivation take effect at once."""
    user = signed_in()
    if user is None:
        return None
    try:
        with session() as s:
            row = platform.load_actor(s, user)
            fresh = platform.SignedInUser(row.id, row.username, row.full_name, row.role, row.is_active)
    except platform.NotFound:
        fresh = None
    if fresh is None or not fresh.is_active:
        sign_out()
        return None
    sign_in(fresh)
    return fresh


ENTRY_POINT = "streamlit_app.py"
REQUESTED_PAGE_KEY = "requested_page"
AFTER_SIGN_IN_KEY = "open_after_sign_in"


def _ran_outside_the_app() -> bool:
    """Whether Streamlit ran this page script straight from the pages/ folder, without the entry
    point's sign-in gate. Streamlit's folder-based routing does that after a server start until
    the entry point first calls st.navigation (an internal flag tells which). AppTest runs page
    files directly by design, and there the page's own check below is what is tested."""
    from streamlit import config
    from streamlit.runtime.pages_manager import PagesManager

    return bool(PagesManager.uses_pages_directory) and not config.get_option("global.appTest")


def requested_page() -> PageSpec | None:
    """The page a visitor asked for before signing in, if any."""
    return st.session_state.get(REQUESTED_PAGE_KEY)


def open_after_sign_in(page: PageSpec, query_params: dict[str, str]) -> None:
    st.session_state[AFTER_SIGN_IN_KEY] = (page.path, query_params)


def take_page_after_sign_in() -> tuple[str, dict[str, str]] | None:
    st.session_state.pop(REQUESTED_PAGE_KEY, None)
    return st.session_state.pop(AFTER_SIGN_IN_KEY, None)


def require_page(action: str) -> platform.SignedInUser:
    """Stop the page unless the signed-in user's role allows `action`. A page reached around the
    app's navigation goes through the entry point first (sign-in, the role's menu), and then on."""
    if _ran_outside_the_app():
        script = Path(str(sys._getframe(1).f_globals.get("__file__", ""))).name
        st.session_state[REQUESTED_PAGE_KEY] = next((p for p in PAGES if Path(p.path).name == script), None)
        st.switch_page(ENTRY_POINT, query_params=dict(st.query_params))
    user = signed_in()
    if user is None or not platform.allowed(user.role, action):
        st.error("You do not have access to this page.")
        st.stop()
    return user


def show_unexpected(exc: BaseException, where: str) -> None:
    """Log an unexpected error with its traceback and show only a short message with its id."""
    st.error(platform.unexpected_error_message(platform.report_unexpected(exc, where)), icon=":material/error:")


def read(fn, *args, **kwargs):
    """Call `fn(session, signed-in user, ...)` in its own unit of work.

    A domain error (bad input, no permission, database unreachable) is shown with st.error and
    gives None, so the rest of the page still renders; so does an unexpected error, as a short
    message with an error id (the traceback goes to the log).
    """
    try:
        with session() as s:
            return fn(s, signed_in(), *args, **kwargs)
    except platform.DomainError as exc:
        st.error(str(exc))
    except Exception as exc:  # noqa: BLE001 - nobody sees internals; the log keeps them
        show_unexpected(exc, getattr(fn, "__qualname__", "a page read"))
    return None


@st.cache_data(ttl=2, max_entries=8, show_spinner=False)
def _data_version(url: str) -> batch.DataVersion:
    with session() as s:
        return batch.data_version(s)


def data_version() -> batch.DataVersion:
    """The latest refresh step that landed (one indexed lookup, at most every 2 s): cached figures are
    keyed by it, so a refresh invalidates them as soon as it writes."""
    return _data_version(str(engine().url))


@st.cache_data(ttl=900, refresh_mode="background", max_entries=1024, show_spinner=False)
def _cached_call(url: str, version: str, role: str, name: str, args: tuple, kwargs: tuple, _fn, _viewer):
    with run_times.computing(), session() as s:
        return _fn(s, _viewer, *args, **dict(kwargs))


def cached(fn, *args, **kwargs):
    """`read`, with the result cached per database, data version, viewer's role, function and arguments.

    For read models whose result depends on the role only (not on who the viewer is): every
    aggregate and page of an analytics page. A widget interaction that asks for the same figures
    again costs a dictionary lookup; a refresh step or a change made through `act` invalidates them.
    """
    viewer = signed_in()
    try:
        return _cached_call(str(engine().url), data_version().key, viewer.role if viewer else "",
                            f"{fn.__module__}.{fn.__qualname__}", args, tuple(sorted(kwargs.items())),
                            _fn=fn, _viewer=viewer)
    except platform.DomainError as exc:
        st.error(str(exc))
        return None


def changed() -> None:
    """After a change made on a page: cached figures may no longer hold, for anyone."""
    st.cache_data.clear()


def act(fn, *args, success: str | None = None, **kwargs):
    """Call `fn(session, acting user, ...)` for a change; report success or the domain error."""
    try:
        with session(write=True) as s:
            result = fn(s, platform.load_actor(s, signed_in()), *args, **kwargs)
    except platform.DomainError as exc:
        st.error(str(exc))
        return None
    except Exception as exc:  # noqa: BLE001 - nobody sees internals; the log keeps them
        show_unexpected(exc, getattr(fn, "__qualname__", "a page action"))
        return None
    changed()
    if success:
        st.success(success)
    return result
