"""Lifetime-value scores get their own table, so the analytics snapshot is written once per refresh.

Revision ID: 0011
Revises: 0010
"""
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(14, 2)


def upgrade() -> None:
    op.create_table(
        "customer_lifetime_values",
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("predicted_purchases_12m", sa.Float(), nullable=True),
        sa.Column("prob_alive", sa.Float(), nullable=True),
        sa.Column("clv_12m", MONEY, nullable=True),
        sa.Column("historic_clv", MONEY, nullable=True),
        sa.Column("expected_order_value", MONEY, nullable=True),
        sa.Column("clv_frequency", sa.Integer(), nullable=True),
        sa.Column("clv_recency", sa.Float(), nullable=True),
        sa.Column("clv_age", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_customer_lifetime_values_customer_id_customers"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("customer_id", name=op.f("pk_customer_lifetime_values")),
    )
    # Scores of the current snapshot's customers, copied from the snapshot so nothing is lost.
    op.execute(
        "INSERT INTO customer_lifetime_values (customer_id, as_of, predicted_purchases_12m, prob_alive, clv_12m, "
        "historic_clv, expected_order_value, clv_frequency, clv_recency, clv_age) "
        "SELECT customer_id, as_of, predicted_purchases_12m, prob_alive, clv_12m, historic_clv, "
        "expected_order_value, clv_frequency, clv_recency, clv_age FROM customer_analytics "
        "WHERE clv_12m IS NOT NULL"
    )


def downgrade() -> None:
    op.drop_table("customer_lifetime_values")
