"""Customer Intelligence: sign-in gate and role-based navigation."""

import streamlit as st

from crm_core import platform
from ui import context
from ui.format import plain
from ui.navigation import sections_for

st.set_page_config(page_title="Customer Intelligence", page_icon=":material/insights:", layout="wide")


def sign_in_page() -> None:
    st.title("Customer Intelligence")
    st.caption("Sign in with your staff account.")
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
        st.rerun()


user = context.refresh_signed_in()
if user is None:
    navigation = st.navigation([st.Page(sign_in_page, title="Sign in", icon=":material/login:")])
else:
    navigation = st.navigation(
        {
            section: [
                st.Page(p.path, title=p.title, icon=p.icon, url_path=p.url_path) for p in pages
            ]
            for section, pages in sections_for(user.role).items()
        },
        expanded=True,  # every page in view: the catalogue is long enough to be folded otherwise
    )
    with st.sidebar:
        st.markdown(f"**{plain(user.full_name or user.username)}**  \n{user.role.replace('_', ' ')}")
        st.button("Sign out", icon=":material/logout:", on_click=context.sign_out)
try:
    navigation.run()
except Exception as exc:  # noqa: BLE001 - no traceback, SQL or parameter reaches the browser
    context.show_unexpected(exc, f"page {navigation.title}")
