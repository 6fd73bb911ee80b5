"""Trust (issue 13): an index to sum a person's manual loyalty adjustments of the last day, so that
many small adjustments count against the approval limit like one large one.

Revision ID: 0014
Revises: 0013
"""
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_loyalty_tx_creator_time", "customer_loyalty_transactions", ["created_by_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_loyalty_tx_creator_time", table_name="customer_loyalty_transactions")
