"""The fields a column of each kind of import can be mapped to (field -> label, in the order the
mapping form shows them); the field names are also the column names that need no mapping.
"""

from __future__ import annotations

import re

from crm_core.platform.errors import ValidationError

CUSTOMER_FIELDS: dict[str, str] = {
    "external_id": "External id",
    "first_name": "First name",
    "last_name": "Last name",
    "email": "Email",
    "phone": "Phone",
    "company": "Company",
    "country": "Country",
    "city": "City",
    "signup_date": "Signup date",
    "date_of_birth": "Date of birth",
    "gender": "Gender",
}
STANDARD_COLUMNS = (
    "external_id", "first_name", "last_name", "email", "phone", "country", "city", "signup_date", "company",
)
COLUMN_ALIASES = {
    "id": "external_id", "customer_id": "external_id", "firstname": "first_name", "given_name": "first_name",
    "lastname": "last_name", "surname": "last_name", "family_name": "last_name", "e_mail": "email",
    "mail": "email", "telephone": "phone", "phone_number": "phone", "mobile": "phone",
    "country_code": "country", "signed_up_at": "signup_date", "signup": "signup_date",
    "dob": "date_of_birth", "birth_date": "date_of_birth", "birthday": "date_of_birth",
}

ORDER_FIELDS = {"customer": "Customer id", "date": "Order date", "amount": "Amount", "quantity": "Quantity",
                "order_number": "Order number", "email": "Customer email", "status": "Status",
                "product": "Product (SKU)", "currency": "Currency"}

TICKET_FIELDS = {
    "ticket_id": "Ticket id", "customer_external_id": "Customer external id", "customer_email": "Customer email",
    "created_at": "Created at", "subject": "Subject", "description": "Description", "status": "Status",
    "priority": "Priority", "category": "Category", "channel": "Channel", "first_responded_at": "First responded at",
    "resolved_at": "Resolved at", "closed_at": "Closed at", "csat_rating": "CSAT rating",
}
COMMUNICATION_FIELDS = {
    "message_id": "Message id", "customer_external_id": "Customer external id", "customer_email": "Customer email",
    "channel": "Channel", "direction": "Direction", "status": "Status", "sent_at": "Sent at", "subject": "Subject",
    "campaign": "Campaign", "template": "Template", "body": "Body", "delivered_at": "Delivered at",
    "opened_at": "Opened at", "clicked_at": "Clicked at", "replied_at": "Replied at",
}


def mapping_fields(entity: str) -> dict[str, str]:
    """The fields a column of an import of this kind can be mapped to."""
    catalogue = {"customers": CUSTOMER_FIELDS, "orders": ORDER_FIELDS, "tickets": TICKET_FIELDS,
                 "communications": COMMUNICATION_FIELDS}
    if entity not in catalogue:
        raise ValidationError(f"Unknown import kind {entity!r}.")
    return catalogue[entity]


def normalized_column(column: str) -> str:
    """A file column's name as the fields and aliases spell it (lower case, words joined by _)."""
    return re.sub(r"[\s\-]+", "_", column.strip().lower())
