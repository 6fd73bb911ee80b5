"""API tokens: each user creates and revokes their own personal tokens for the HTTP API; admins see
and revoke everyone's. A new token is shown once; only its digest is stored."""

import pandas as pd
import streamlit as st

from crm_core import platform
from ui import context
from ui.format import plain

viewer = context.require_page("tokens.own")
is_admin = platform.allowed(viewer.role, "tokens.manage")
st.title("API tokens")
st.caption("A personal token lets a script or another system (the shop, the e-mail tool, a warehouse) use the "
           "HTTP API as you: it has your role's permissions, and every change it makes is audited under your name. "
           "Send it as `Authorization: Bearer <token>`; the API's documentation is at `/docs` of the API server "
           "(`make api`).")

if flash := st.session_state.pop("api_token_flash", None):
    st.success(flash)

EXPIRY = {"30 days": 30, "90 days": 90, "1 year": 365, "Never": None}
with st.form("new_token", clear_on_submit=True):
    st.subheader("New token")
    c1, c2, c3 = st.columns([3, 1, 1])
    name = c1.text_input("Name", placeholder="e.g. nightly warehouse sync", max_chars=100)
    expiry = c2.selectbox("Expires after", list(EXPIRY), index=1)
    read_only = c3.checkbox("Read-only", help="The token can read and export but not change anything.")
    submitted = st.form_submit_button("Create token", type="primary")
if submitted:
    made = context.act(platform.create_token, viewer.id, name, read_only=read_only, expires_days=EXPIRY[expiry])
    if made is not None:
        row, token = made
        st.success(f"Token “{plain(row.name)}” created. Copy it now: it is shown only this once.")
        st.code(token, language=None)

everyone = is_admin and st.toggle("Everyone's tokens", help="Admins see and revoke every user's tokens.")
tokens = context.read(platform.list_tokens, everyone) or []
active = [t for t in tokens if t["status"] == "active"]
c1, c2, c3 = st.columns(3)
c1.metric("Active tokens", f"{len(active):,}", border=True)
c2.metric("Read-only", f"{sum(t['read_only'] for t in active):,}", border=True)
c3.metric("Never used", f"{sum(t['last_used_at'] is None for t in active):,}", border=True)

if not tokens:
    st.info("No API tokens yet. Create one above; `crm tokens create USERNAME` does the same for operators.")
    st.stop()

table = pd.DataFrame(tokens)
st.dataframe(
    table[["id", "user", "name", "prefix", "status", "read_only", "created_at", "expires_at", "last_used_at"]],
    hide_index=True, width="stretch",
    column_config={
        "id": st.column_config.NumberColumn("Id", format="%d"), "user": "User", "name": "Name",
        "prefix": "Starts with", "status": "Status", "read_only": "Read-only",
        "created_at": st.column_config.DatetimeColumn("Created (UTC)", format="YYYY-MM-DD HH:mm"),
        "expires_at": st.column_config.DatetimeColumn("Expires (UTC)", format="YYYY-MM-DD HH:mm"),
        "last_used_at": st.column_config.DatetimeColumn("Last used (UTC)", format="YYYY-MM-DD HH:mm"),
    },
)

if active:
    with st.form("revoke_token"):
        labels = {f"{t['id']} · {t['name']} · {t['prefix']}… ({t['user']})": t["id"] for t in active}
        chosen = st.selectbox("Revoke a token", list(labels))
        revoked = st.form_submit_button("Revoke", help="Takes effect on the token's next request.") and \
            context.act(platform.revoke_token, labels[chosen]) is not None
    if revoked:
        st.session_state["api_token_flash"] = f"Token {chosen} is revoked; it stops working at once."
        st.rerun()
