"""What every domain stands on: errors, permissions, staff users and sign-in, the audit log, the unit
of work and the acting user, admin settings, dates, SQL helpers, paging and spreadsheet-safe CSV.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.platform.actors import SYSTEM, Actor, SystemActor
from crm_core.platform.api_tokens import (
    TokenActor,
    authenticate_token,
    create_token,
    list_tokens,
    revoke_token,
    user_by_name,
)
from crm_core.platform.audit import AuditFilter, audit_filter_options, record_audit, search_audit_log
from crm_core.platform.dates import (
    EARLIEST_DATE,
    HISTORICAL_AFTER_DAYS,
    DataDate,
    check_as_of,
    check_backfill_months,
    data_date,
    end_of,
    latest_order_date,
    midnight,
)
from crm_core.platform.errors import (
    AuthenticationError,
    ConflictError,
    DomainError,
    NotFound,
    PermissionDenied,
    ValidationError,
)
from crm_core.platform.idempotency import (
    check_idempotency_key,
    purge_idempotency_keys,
    request_fingerprint,
    store_response,
    stored_response,
)
from crm_core.platform.jobs import (
    create_job,
    finish_job,
    job_results,
    job_status,
    latest_jobs,
    mark_job_running,
    set_job_progress,
)
from crm_core.platform.paging import Page
from crm_core.platform.permissions import PERMISSIONS, allowed, require
from crm_core.platform.settings import save_setting, stored_setting
from crm_core.platform.shop import (
    SHOP_COUNTRY,
    SHOP_CURRENCY,
    SHOP_TIMEZONE,
    get_shop_country,
    save_shop_country,
    supported_countries,
)
from crm_core.platform.spreadsheet import csv_chunks, neutralize
from crm_core.platform.sql import (
    calendar_day,
    day_start,
    days_between,
    drop_temporary_table,
    least,
    next_day_start,
    rows_affected,
    temporary_table_as,
    use_batch_memory,
    week_start,
    whole_days_between,
    year_month,
)
from crm_core.platform.transactions import check_version, unit_of_work
from crm_core.platform.users import (
    SignedInUser,
    authenticate,
    change_role,
    create_user,
    list_users,
    load_actor,
    reset_password,
    set_active,
)

__all__ = [
    "TokenActor",
    "authenticate_token",
    "check_idempotency_key",
    "create_job",
    "create_token",
    "finish_job",
    "job_results",
    "job_status",
    "latest_jobs",
    "list_tokens",
    "mark_job_running",
    "purge_idempotency_keys",
    "request_fingerprint",
    "revoke_token",
    "set_job_progress",
    "store_response",
    "stored_response",
    "user_by_name",
    "Actor",
    "AuditFilter",
    "AuthenticationError",
    "ConflictError",
    "DataDate",
    "DomainError",
    "EARLIEST_DATE",
    "HISTORICAL_AFTER_DAYS",
    "NotFound",
    "Page",
    "PermissionDenied",
    "PERMISSIONS",
    "SHOP_COUNTRY",
    "SHOP_CURRENCY",
    "SHOP_TIMEZONE",
    "SignedInUser",
    "SYSTEM",
    "SystemActor",
    "ValidationError",
    "allowed",
    "audit_filter_options",
    "authenticate",
    "calendar_day",
    "change_role",
    "check_as_of",
    "check_backfill_months",
    "check_version",
    "create_user",
    "csv_chunks",
    "data_date",
    "day_start",
    "days_between",
    "drop_temporary_table",
    "end_of",
    "get_shop_country",
    "latest_order_date",
    "least",
    "list_users",
    "load_actor",
    "midnight",
    "neutralize",
    "next_day_start",
    "record_audit",
    "require",
    "reset_password",
    "rows_affected",
    "save_setting",
    "save_shop_country",
    "search_audit_log",
    "set_active",
    "stored_setting",
    "supported_countries",
    "temporary_table_as",
    "unit_of_work",
    "use_batch_memory",
    "week_start",
    "whole_days_between",
    "year_month",
]
