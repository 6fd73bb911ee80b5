"""Lifetime value and forecast storage (issue 4).

Adds the BG/NBD inputs (frequency, recency, age) and the expected order value to the analytics
snapshot, an index for ranking customers by lifetime value, and the forecast tables.

Revision ID: 0004
Revises: 0003
"""
import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("customer_analytics", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clv_frequency", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("clv_recency", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("clv_age", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("expected_order_value", sa.Numeric(precision=14, scale=2), nullable=True))
        batch_op.create_index("ix_analytics_clv", ["clv_12m"], unique=False)

    op.create_table(
        "forecast_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("metric", sa.String(length=16), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=8), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("horizon_days", sa.Integer(), nullable=False),
        sa.Column("history_start", sa.Date(), nullable=True),
        sa.Column("history_days", sa.Integer(), nullable=False),
        sa.Column("country", sa.String(length=2), nullable=True),
        sa.Column("mape", sa.Float(), nullable=True),
        sa.Column("backtest", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.CheckConstraint("(metric = 'revenue' OR metric = 'orders' OR metric = 'new_customers')",
                           name=op.f("ck_forecast_runs_metric_valid")),
        sa.CheckConstraint("(status = 'fitted' OR status = 'skipped')", name=op.f("ck_forecast_runs_status_valid")),
        sa.CheckConstraint("horizon_days > 0", name=op.f("ck_forecast_runs_horizon_positive")),
        sa.CheckConstraint("mape IS NULL OR mape >= 0", name=op.f("ck_forecast_runs_mape_non_negative")),
        sa.ForeignKeyConstraint(["model_id"], ["ml_models.id"], name=op.f("fk_forecast_runs_model_id_ml_models"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast_runs")),
    )
    with op.batch_alter_table("forecast_runs", schema=None) as batch_op:
        batch_op.create_index("ix_forecast_runs_metric", ["metric", "created_at"], unique=False)

    op.create_table(
        "forecast_points",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("actual", sa.Float(), nullable=True),
        sa.Column("predicted", sa.Float(), nullable=False),
        sa.Column("lower", sa.Float(), nullable=False),
        sa.Column("upper", sa.Float(), nullable=False),
        sa.Column("is_forecast", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["forecast_runs.id"], name=op.f("fk_forecast_points_run_id_forecast_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forecast_points")),
        sa.UniqueConstraint("run_id", "day", name="uq_forecast_points_run_day"),
    )


def downgrade() -> None:
    op.drop_table("forecast_points")
    with op.batch_alter_table("forecast_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_forecast_runs_metric")
    op.drop_table("forecast_runs")
    with op.batch_alter_table("customer_analytics", schema=None) as batch_op:
        batch_op.drop_index("ix_analytics_clv")
        batch_op.drop_column("expected_order_value")
        batch_op.drop_column("clv_age")
        batch_op.drop_column("clv_recency")
        batch_op.drop_column("clv_frequency")
