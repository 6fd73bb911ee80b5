"""Vouchers (issues 16 and 17): single-use codes issued to one customer by a campaign, a referral
reward or by hand, redeemed on one order. Referral rewards may be a voucher instead of points:
a reward has a kind, a voucher amount and the voucher it issued.

Revision ID: 0024
Revises: 0023
"""
import sqlalchemy as sa
from alembic import op

revision = "0024"
down_revision = "0023"
branch_labels = None
depends_on = None

REWARDS = "customer_referral_rewards"


def _in(column: str, values: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"{column} = '{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "vouchers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Numeric(14, 2), nullable=False),
        sa.Column("min_order", sa.Numeric(14, 2), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_id", sa.String(length=64), nullable=True),
        sa.Column("issued_at", sa.DateTime(), nullable=False),
        sa.Column("expires_at", sa.DateTime(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("redeemed_order_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("redeemed_at", sa.DateTime(), nullable=True),
        sa.Column("voided_at", sa.DateTime(), nullable=True),
        sa.Column("void_reason", sa.String(length=255), nullable=True),
        sa.Column("clawed_back_at", sa.DateTime(), nullable=True),
        sa.Column("issued_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(_in("kind", ("percent", "amount")), name=op.f("ck_vouchers_kind_valid")),
        sa.CheckConstraint(_in("source", ("campaign", "referral", "manual")), name=op.f("ck_vouchers_source_valid")),
        sa.CheckConstraint(_in("status", ("issued", "redeemed", "void", "expired")),
                           name=op.f("ck_vouchers_status_valid")),
        sa.CheckConstraint("value > 0", name=op.f("ck_vouchers_value_positive")),
        sa.CheckConstraint("kind = 'amount' OR value <= 100", name=op.f("ck_vouchers_percent_range")),
        sa.CheckConstraint("min_order >= 0", name=op.f("ck_vouchers_min_order_non_negative")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_vouchers_customer_id_customers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["redeemed_order_id"], ["orders.id"],
                                name=op.f("fk_vouchers_redeemed_order_id_orders"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["issued_by_id"], ["users.id"], name=op.f("fk_vouchers_issued_by_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vouchers")),
        sa.UniqueConstraint("code", name=op.f("uq_vouchers_code")),
        sa.UniqueConstraint("source", "source_id", "customer_id", name="uq_vouchers_source"),
    )
    op.create_index("ix_vouchers_customer", "vouchers", ["customer_id", "issued_at"])
    op.create_index("ix_vouchers_status_expiry", "vouchers", ["status", "expires_at"])
    with op.batch_alter_table(REWARDS) as batch:
        batch.add_column(sa.Column("kind", sa.String(length=16), server_default="points", nullable=False))
        batch.add_column(sa.Column("amount", sa.Numeric(14, 2), nullable=True))
        batch.add_column(sa.Column("voucher_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_customer_referral_rewards_voucher_id_vouchers"), "vouchers",
                                 ["voucher_id"], ["id"], ondelete="SET NULL")
        batch.drop_constraint(op.f("ck_customer_referral_rewards_points_positive"), type_="check")
        batch.create_check_constraint(op.f("ck_customer_referral_rewards_kind_valid"), _in("kind", ("points", "voucher")))
        batch.create_check_constraint(
            op.f("ck_customer_referral_rewards_reward_positive"),
            "(kind = 'points' AND points > 0) OR (kind = 'voucher' AND points = 0 AND amount > 0)")


def downgrade() -> None:
    # Voucher rewards have no points to fall back to: they go with the vouchers.
    op.execute(sa.text(f"DELETE FROM {REWARDS} WHERE kind = 'voucher'"))
    with op.batch_alter_table(REWARDS) as batch:
        batch.drop_constraint(op.f("ck_customer_referral_rewards_reward_positive"), type_="check")
        batch.drop_constraint(op.f("ck_customer_referral_rewards_kind_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_customer_referral_rewards_points_positive"), "points > 0")
        batch.drop_constraint(op.f("fk_customer_referral_rewards_voucher_id_vouchers"), type_="foreignkey")
        for column in ("voucher_id", "amount", "kind"):
            batch.drop_column(column)
    op.drop_index("ix_vouchers_status_expiry", table_name="vouchers")
    op.drop_index("ix_vouchers_customer", table_name="vouchers")
    op.drop_table("vouchers")
