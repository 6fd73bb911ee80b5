"""API keyset paging and job heartbeats (issue 15).

Jobs keep a heartbeat and how many records they have processed (of how many, when known), so a job
whose worker stopped is reported failed instead of "running" forever. Two lists the API pages by
keyset get the index their order needs: complaints newest first, a subscription's deliveries
newest first.

Revision ID: 0022
Revises: 0021
"""
import sqlalchemy as sa
from alembic import op

revision = "0022"
down_revision = "0021"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("api_jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("records_done", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("records_total", sa.Integer(), nullable=True))
    with op.batch_alter_table("customer_complaint_management") as batch:
        batch.create_index("ix_complaints_created", ["created_at", "id"], unique=False)
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.create_index("ix_webhook_deliveries_subscription", ["subscription_id", "id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries") as batch:
        batch.drop_index("ix_webhook_deliveries_subscription")
    with op.batch_alter_table("customer_complaint_management") as batch:
        batch.drop_index("ix_complaints_created")
    with op.batch_alter_table("api_jobs") as batch:
        batch.drop_column("records_total")
        batch.drop_column("records_done")
        batch.drop_column("heartbeat_at")
