"""The domain: rules and data access for customers, support, loyalty, analytics, auth and audit.

Never imports streamlit or ml.
"""
