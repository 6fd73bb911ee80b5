"""Win-back campaigns that run and are measured (issue 17): carts and cart items (abandoned carts are
a trigger), the campaign's definition (trigger, holdout sizing, attribution window, margin, uplift
targeting), each target's pre-period spend and uplift score, the campaign id on every message sent
for a campaign, and the uplift models trained on finished campaigns.

Revision ID: 0018
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0018"
down_revision = "0017"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
MONEY = sa.Numeric(14, 2)


def upgrade() -> None:
    op.create_table(
        "campaign_uplift_models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("algorithm", sa.String(length=64), nullable=False),
        sa.Column("campaign_ids", sa.JSON(), nullable=False),
        sa.Column("features", sa.JSON(), nullable=False),
        sa.Column("train_customers", sa.Integer(), nullable=False),
        sa.Column("test_customers", sa.Integer(), nullable=False),
        sa.Column("qini_area", sa.Float(), nullable=True),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("artifact", sa.LargeBinary(), nullable=True),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.current_timestamp(), nullable=False),
        sa.ForeignKeyConstraint(["created_by_id"], ["users.id"],
                                name=op.f("fk_campaign_uplift_models_created_by_id_users"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_campaign_uplift_models")),
    )
    op.create_table(
        "carts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("value", MONEY, nullable=False),
        sa.Column("order_id", BIG_ID, nullable=True),
        sa.CheckConstraint("(status = 'open' OR status = 'converted')", name=op.f("ck_carts_status_valid")),
        sa.CheckConstraint("value >= 0", name=op.f("ck_carts_value_non_negative")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_carts_customer_id_customers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["order_id"], ["orders.id"], name=op.f("fk_carts_order_id_orders"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_carts")),
    )
    op.create_index("ix_carts_status_updated", "carts", ["status", "updated_at"])
    op.create_index("ix_carts_customer", "carts", ["customer_id", "updated_at"])
    op.create_table(
        "cart_items",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("cart_id", BIG_ID, nullable=False),
        sa.Column("product_id", sa.Integer(), nullable=True),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_price", MONEY, nullable=False),
        sa.CheckConstraint("quantity > 0", name=op.f("ck_cart_items_quantity_positive")),
        sa.ForeignKeyConstraint(["cart_id"], ["carts.id"], name=op.f("fk_cart_items_cart_id_carts"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["product_id"], ["products.id"], name=op.f("fk_cart_items_product_id_products"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_cart_items")),
    )
    op.create_index(op.f("ix_cart_items_cart_id"), "cart_items", ["cart_id"])

    with op.batch_alter_table("customer_winback_campaigns") as batch:
        batch.add_column(sa.Column("trigger", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("subject", sa.String(length=255), nullable=True))
        batch.add_column(sa.Column("expected_lift", sa.Float(), nullable=True))
        batch.add_column(sa.Column("baseline_rate", sa.Float(), nullable=True))
        batch.add_column(sa.Column("attribution_days", sa.Integer(), server_default="30", nullable=False))
        batch.add_column(sa.Column("gross_margin", sa.Float(), server_default="0.4", nullable=False))
        batch.add_column(sa.Column("uplift_share", sa.Float(), nullable=True))
        batch.add_column(sa.Column("uplift_model_id", sa.Integer(), sa.ForeignKey(
            "campaign_uplift_models.id", ondelete="SET NULL",
            name=op.f("fk_customer_winback_campaigns_uplift_model_id_campaign_uplift_models")), nullable=True))
        batch.add_column(sa.Column("launched_at", sa.DateTime(), nullable=True))
        batch.add_column(sa.Column("finished_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("customer_winback_targets") as batch:
        batch.add_column(sa.Column("pre_period_spend", MONEY, server_default="0", nullable=False))
        batch.add_column(sa.Column("uplift_score", sa.Float(), nullable=True))
    with op.batch_alter_table("customer_communication_history") as batch:
        batch.add_column(sa.Column("campaign_id", sa.Integer(), sa.ForeignKey(
            "customer_winback_campaigns.id", ondelete="SET NULL",
            name=op.f("fk_customer_communication_history_campaign_id_customer_winback_campaigns")), nullable=True))
        batch.create_index(op.f("ix_customer_communication_history_campaign_id"), ["campaign_id"])


def downgrade() -> None:
    with op.batch_alter_table("customer_communication_history") as batch:
        batch.drop_index(op.f("ix_customer_communication_history_campaign_id"))
        batch.drop_constraint(
            op.f("fk_customer_communication_history_campaign_id_customer_winback_campaigns"), type_="foreignkey")
        batch.drop_column("campaign_id")
    with op.batch_alter_table("customer_winback_targets") as batch:
        batch.drop_column("uplift_score")
        batch.drop_column("pre_period_spend")
    with op.batch_alter_table("customer_winback_campaigns") as batch:
        batch.drop_constraint(op.f("fk_customer_winback_campaigns_uplift_model_id_campaign_uplift_models"),
                              type_="foreignkey")
        for column in ("finished_at", "launched_at", "uplift_model_id", "uplift_share", "gross_margin",
                       "attribution_days", "baseline_rate", "expected_lift", "subject", "trigger"):
            batch.drop_column(column)
    op.drop_index(op.f("ix_cart_items_cart_id"), table_name="cart_items")
    op.drop_table("cart_items")
    op.drop_index("ix_carts_customer", table_name="carts")
    op.drop_index("ix_carts_status_updated", table_name="carts")
    op.drop_table("carts")
    op.drop_table("campaign_uplift_models")
