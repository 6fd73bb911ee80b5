"""Bringing a shop's data in: customers, transaction logs, Shopify exports, helpdesk tickets and
communications from CSV, Excel or JSON, with previews, column mappings and import runs.

Pages, the `crm` command, the batch and models use these names; modules inside crm_core import
the submodule they need.
"""

from crm_core.imports.customers import (
    DEFAULT_FUZZY_THRESHOLD,
    DUPLICATE_POLICIES,
    check_customer_mapping,
    default_customer_mapping,
    import_customers,
    preview_customers,
)
from crm_core.imports.fields import COMMUNICATION_FIELDS, CUSTOMER_FIELDS, ORDER_FIELDS, STANDARD_COLUMNS, TICKET_FIELDS
from crm_core.imports.files import FORMATS, file_columns
from crm_core.imports.helpdesk import (
    check_service_mapping,
    default_service_mapping,
    documented_columns,
    import_service_file,
    preview_service_file,
)
from crm_core.imports.orders import check_order_mapping, default_order_mapping, import_orders, preview_orders
from crm_core.imports.runs import (
    ImportReport,
    PreviewRow,
    delete_mapping,
    list_mappings,
    recent_import_runs,
    record_failed_run,
    save_mapping,
)
from crm_core.imports.shopify import import_shopify_orders, preview_shopify

__all__ = [
    "COMMUNICATION_FIELDS",
    "CUSTOMER_FIELDS",
    "DEFAULT_FUZZY_THRESHOLD",
    "DUPLICATE_POLICIES",
    "FORMATS",
    "ImportReport",
    "ORDER_FIELDS",
    "PreviewRow",
    "STANDARD_COLUMNS",
    "TICKET_FIELDS",
    "check_customer_mapping",
    "check_order_mapping",
    "check_service_mapping",
    "default_customer_mapping",
    "default_order_mapping",
    "default_service_mapping",
    "delete_mapping",
    "documented_columns",
    "file_columns",
    "import_customers",
    "import_orders",
    "import_service_file",
    "import_shopify_orders",
    "list_mappings",
    "preview_customers",
    "preview_orders",
    "preview_service_file",
    "preview_shopify",
    "recent_import_runs",
    "record_failed_run",
    "save_mapping",
]
