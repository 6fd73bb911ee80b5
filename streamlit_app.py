"""Customer Intelligence: sign-in gate and role-based navigation."""

import time

import streamlit as st

from crm_core import platform
from ui import context
from ui.format import plain
from ui.heap import freeze_loaded_modules
from ui.navigation import PAGES, PageSpec, sections_for
from ui.run_times import timed_run

RUN_STARTED = time.perf_counter()
st.set_page_config(page_title="Customer Intelligence", page_icon=":material/insights:", layout="wide")


def sign_in_page(target: PageSpec | None = None) -> None:
    """The sign-in form; `target` is the page the visitor asked for (a deep link such as
    /customer-360?id=42), opened once they are signed in and their role may see it."""
    target = target or context.requested_page()
    st.title("Customer Intelligence")
    st.caption("Sign in with your staff account." if target is None else f"Sign in to open {target.title}.")
    with st.form("sign_in", border=True):
        username = st.text_input("Username", autocomplete="username")
        password = st.text_input("Password", type="password", autocomplete="current-password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        if not username or not password:
            st.error("Enter your username and password.")
            return
        try:
            with context.session(write=True) as s:
                user = platform.authenticate(s, username, password)
        except platform.DomainError as exc:
            st.error(str(exc))
            return
        context.sign_in(user)
        if target is not None and platform.allowed(user.role, target.permission):
            context.open_after_sign_in(target, dict(st.query_params))
        st.rerun()


def _sign_in_to(target: PageSpec):
    """A page at `target`'s address that signs the visitor in and then opens `target`."""

    def sign_in_then_open() -> None:
        sign_in_page(target)

    sign_in_then_open.__name__ = f"sign_in_{target.url_path.replace('-', '_')}"
    return sign_in_then_open


def _not_for(role: str, target: PageSpec):
    """A page at `target`'s address for a role that may not open it: says so, rather than a link
    (or a sign-in with one) landing on the overview without a word."""

    def not_for_this_role() -> None:
        st.title(target.title)
        st.warning(f"Your role ({role.replace('_', ' ')}) cannot open {target.title}. "
                   "Ask an administrator if you need it.", icon=":material/block:")
        st.page_link(PAGES[0].path, label=f"Go to {PAGES[0].title}", icon=PAGES[0].icon)

    not_for_this_role.__name__ = f"not_for_{target.url_path.replace('-', '_')}"
    return not_for_this_role


user = context.refresh_signed_in()
if user is None:
    # Every page's address leads to the sign-in form (hidden from the menu), so a deep link survives it.
    navigation = st.navigation(
        [st.Page(sign_in_page, title="Sign in", icon=":material/login:", default=True)]
        + [st.Page(_sign_in_to(p), title="Sign in", url_path=p.url_path, visibility="hidden") for p in PAGES]
    )
else:
    sections = {
        section: [st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path) for p in pages]
        for section, pages in sections_for(user.role).items()
    }
    allowed = {p.url_path for pages in sections_for(user.role).values() for p in pages}
    # The other pages' addresses, hidden from the menu, say the page is not for this role.
    next(iter(sections.values())).extend(
        st.Page(_not_for(user.role, p), title=p.title, url_path=p.url_path, visibility="hidden")
        for p in PAGES if p.url_path not in allowed)
    # every page in view: the catalogue is long enough to be folded otherwise
    navigation = st.navigation(sections, expanded=True)
    with st.sidebar:
        st.markdown(f"**{plain(user.full_name or user.username)}**  \n{user.role.replace('_', ' ')}")
        st.button("Sign out", icon=":material/logout:", on_click=context.sign_out)
    if (after := context.take_page_after_sign_in()) is not None:
        st.switch_page(after[0], query_params=after[1])
try:
    with timed_run(navigation.title, RUN_STARTED):
        navigation.run()
except Exception as exc:  # noqa: BLE001 - no traceback, SQL or parameter reaches the browser
    context.show_unexpected(exc, f"page {navigation.title}")
finally:
    freeze_loaded_modules()  # a page's first visit imported its modules: out of the collector's scans
