"""Administration: create users, change roles, reset passwords, deactivate."""

import pandas as pd
import streamlit as st

from crm_core import platform
from db.models import ROLES
from ui import context

PASSWORD_HELP = (f"At least {platform.MIN_PASSWORD_LENGTH} characters, not containing the username and not one "
                 "of the most common passwords: a few unrelated words work well.")

CREATE_FIELDS = ("new_user_name", "new_user_full_name", "new_user_email", "new_user_role", "new_user_password")

context.require_page("users.manage")
st.title("Users")
if flash := st.session_state.pop("users_flash", None):
    st.success(flash)


listing = context.read(platform.list_users) or []
table = pd.DataFrame(listing)
active_count = int(table["active"].sum())
st.caption(f"{len(table)} users, {active_count} active")
st.dataframe(
    table.drop(columns=["id", "version"]), hide_index=True, width="stretch", placeholder="never",
    column_config={
        "username": "Username", "full_name": "Full name", "role": "Role",
        "active": st.column_config.CheckboxColumn("Active"), "locked": st.column_config.CheckboxColumn("Locked"),
        "last_sign_in": st.column_config.DatetimeColumn("Last sign-in", format="YYYY-MM-DD HH:mm",
                                                        help="UTC; never for an account not yet used"),
    },
)
by_name = {row["username"]: row for row in listing}

create, role, password, active = st.tabs(["Create user", "Change role", "Reset password", "Activate / deactivate"], key="admin_tab")
# The form keeps what was typed when the user is refused (a short password, a taken name) and is
# empty again only after a successful create.
if st.session_state.pop("new_user_created", False):
    for key in CREATE_FIELDS:
        st.session_state.pop(key, None)
with create, st.form("create_user", clear_on_submit=False):
    username = st.text_input("Username", key="new_user_name")
    full_name = st.text_input("Full name", key="new_user_full_name")
    email = st.text_input("Email", key="new_user_email")
    new_role = st.selectbox("Role", ROLES, key="new_user_role")
    pw = st.text_input("Initial password", type="password", help=PASSWORD_HELP, key="new_user_password")
    if st.form_submit_button("Create user", type="primary") and context.act(
            platform.create_user, username, new_role, pw, full_name=full_name, email=email) is not None:
        st.session_state["users_flash"] = f"Created {username.strip().lower()} as {new_role}."
        st.session_state["new_user_created"] = True
        st.rerun()

with role, st.form("change_role"):
    who = st.selectbox("User", list(by_name), key="role_user")
    target = st.selectbox("New role", ROLES, key="role_value")
    if st.form_submit_button("Change role") and who:
        context.act(platform.change_role, by_name[who]["id"], target, expected_version=by_name[who]["version"],
            success=f"{who} is now {target}.")

with password, st.form("reset_password", clear_on_submit=True):
    who = st.selectbox("User", list(by_name), key="pw_user")
    pw = st.text_input("New password", type="password", help=PASSWORD_HELP)
    if st.form_submit_button("Reset password") and who:
        context.act(platform.reset_password, by_name[who]["id"], pw, success=f"Password of {who} reset; the account is unlocked.")

with active, st.form("set_active"):
    who = st.selectbox("User", list(by_name), key="active_user")
    make_active = st.radio("Status", ["Active", "Deactivated"], horizontal=True) == "Active"
    if st.form_submit_button("Apply") and who:
        context.act(platform.set_active, by_name[who]["id"], make_active, expected_version=by_name[who]["version"],
            success=f"{who} is {'active' if make_active else 'deactivated'}.")
