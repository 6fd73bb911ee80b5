"""The HTTP API: FastAPI routes over the same crm_core services the pages use.

`create_app()` builds the application; `uvicorn --factory api.app:create_app` (or `make api`,
`crm api serve`) serves it on the database `CRM_DATABASE_URL` names.
"""
