"""Streamlit plumbing shared by the pages: engine, sessions, the signed-in user, navigation."""
