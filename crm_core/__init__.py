"""The domain: rules and data access, one package per bounded context (platform, customers,
imports, service, loyalty, segmentation, risk, referrals, reporting, webhooks, campaigns, success,
social, journeys, orders, vouchers; see docs/architecture.md).

Callers outside crm_core use a package's public names (`from crm_core import customers`);
modules inside import the submodule they need. Never imports streamlit, fastapi or ml.
"""
