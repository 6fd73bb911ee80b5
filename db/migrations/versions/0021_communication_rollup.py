"""The communications rollup (issue 14): outbound messages per day, channel, campaign and template by
funnel stage, and an index on the send time for the messages readers add live after its cutoff.

Revision ID: 0021
Revises: 0020
"""
import sqlalchemy as sa
from alembic import op

revision = "0021"
down_revision = "0020"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "rollup_daily_communications",
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("channel", sa.String(length=8), nullable=False),
        sa.Column("campaign", sa.String(length=100), nullable=False),
        sa.Column("template", sa.String(length=100), nullable=False),
        sa.Column("sent", sa.Integer(), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("opened", sa.Integer(), nullable=False),
        sa.Column("clicked", sa.Integer(), nullable=False),
        sa.Column("replied", sa.Integer(), nullable=False),
        sa.Column("bounced", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("first_sent", sa.DateTime(), nullable=False),
        sa.Column("last_sent", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("day", "channel", "campaign", "template", name=op.f("pk_rollup_daily_communications")),
    )
    op.create_index("ix_comm_sent_at", "customer_communication_history", ["sent_at"])


def downgrade() -> None:
    op.drop_index("ix_comm_sent_at", table_name="customer_communication_history")
    op.drop_table("rollup_daily_communications")
