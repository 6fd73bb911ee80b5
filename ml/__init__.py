"""Models: behavioural clusters, churn, lifetime value, forecasts and health: fit, score and evaluate,
run by the batch (batch/refresh.py); `<model>_reports.py` is what the pages read of their outputs.
May use crm_core and db; never imports streamlit, fastapi or batch."""
