"""Complaints, communications and loyalty (issue 5).

Adds the pending manual loyalty adjustments (above the approval limit, decided by a second
person) and the sentiment score of logged inbound messages.

Revision ID: 0006
Revises: 0005
"""
import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "customer_loyalty_adjustment_requests",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("points", sa.Integer(), nullable=False),
        sa.Column("reason", sa.String(length=255), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("idempotency_key", sa.String(length=128), nullable=True),
        sa.Column("requested_by_id", sa.Integer(), nullable=True),
        sa.Column("requested_at", sa.DateTime(), nullable=False),
        sa.Column("decided_by_id", sa.Integer(), nullable=True),
        sa.Column("decided_at", sa.DateTime(), nullable=True),
        sa.Column("decision_note", sa.String(length=255), nullable=True),
        sa.Column("transaction_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint("(status = 'pending' OR status = 'approved' OR status = 'rejected')",
                           name=op.f("ck_customer_loyalty_adjustment_requests_status_valid")),
        sa.CheckConstraint("points <> 0", name=op.f("ck_customer_loyalty_adjustment_requests_points_non_zero")),
        sa.ForeignKeyConstraint(["account_id"], ["customer_loyalty_programs.id"],
                                name=op.f("fk_customer_loyalty_adjustment_requests_account_id_customer_loyalty_programs"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_loyalty_adjustment_requests_customer_id_customers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["requested_by_id"], ["users.id"],
                                name=op.f("fk_customer_loyalty_adjustment_requests_requested_by_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["decided_by_id"], ["users.id"],
                                name=op.f("fk_customer_loyalty_adjustment_requests_decided_by_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["transaction_id"], ["customer_loyalty_transactions.id"],
                                name=op.f("fk_customer_loyalty_adjustment_requests_transaction_id_customer_loyalty_transactions"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_loyalty_adjustment_requests")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_customer_loyalty_adjustment_requests_idempotency_key")),
    )
    with op.batch_alter_table("customer_loyalty_adjustment_requests", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_loyalty_adjustment_requests_account_id"), ["account_id"],
                              unique=False)
        batch_op.create_index("ix_loyalty_adjustment_status", ["status", "requested_at"], unique=False)
    with op.batch_alter_table("customer_communication_history", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sentiment_score", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customer_communication_history", schema=None) as batch_op:
        batch_op.drop_column("sentiment_score")
    with op.batch_alter_table("customer_loyalty_adjustment_requests", schema=None) as batch_op:
        batch_op.drop_index("ix_loyalty_adjustment_status")
        batch_op.drop_index(batch_op.f("ix_customer_loyalty_adjustment_requests_account_id"))
    op.drop_table("customer_loyalty_adjustment_requests")
