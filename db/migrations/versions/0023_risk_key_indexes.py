"""Indexes on the keys the risk signals match accounts on (issue 14): a phone number's digits and a
shipping address's line, postcode and country, so a case view finds the accounts sharing one
customer's phone or address through an index instead of reading every customer and address.

The expressions are exactly those of `db.models.phone_digits` and `db.models.address_key`.

Revision ID: 0023
Revises: 0022
"""
import sqlalchemy as sa
from alembic import op

revision = "0023"
down_revision = "0022"
branch_labels = None
depends_on = None

PHONE_DIGITS = ("replace(replace(replace(replace(replace(replace(phone, ' ', ''), '-', ''), '+', ''), '(', ''), ')', ''), "
                "'.', '')")
ADDRESS_KEY = "lower(trim(line1)) || '|' || coalesce(postal_code, '') || '|' || country_code"


def upgrade() -> None:
    op.create_index("ix_customers_phone_digits", "customers", [sa.text(PHONE_DIGITS)])
    op.create_index("ix_addresses_key", "customer_addresses", [sa.text(f"({ADDRESS_KEY})")])


def downgrade() -> None:
    op.drop_index("ix_addresses_key", table_name="customer_addresses")
    op.drop_index("ix_customers_phone_digits", table_name="customers")
