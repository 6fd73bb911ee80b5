"""Models: behavioural clusters, churn, lifetime value, forecasts and health, trained and scored in
batch. May use crm_core; never imports streamlit."""
