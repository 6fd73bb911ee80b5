"""Rollups for dashboards at a million customers (issue 14).

Tables the batch refresh maintains (daily orders, buyer gaps and sign-ups; lifecycle stages, flows
and cohorts; churn summaries and the at-risk ranking; segment statistics and profiles), where each
one stands (`rollup_state`), and indexes matched to the queries pages still run on the source tables.

Revision ID: 0015
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None

MONEY = sa.Numeric(14, 2)

# (index, table, columns) on existing tables, each serving a page query (see tests/test_page_plans.py).
INDEXES = (
    ("ix_refresh_run_steps_finished", "refresh_run_steps", ["finished_at"]),
    ("ix_memberships_segment_customer", "customer_segment_memberships", ["segment_id", "is_active", "customer_id"]),
)


def upgrade() -> None:
    op.create_table(
        "rollup_state",
        sa.Column("name", sa.String(48), primary_key=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("covered_through", sa.Date(), nullable=False),
        sa.Column("built_at", sa.DateTime(), nullable=False),
        sa.Column("full_rebuild", sa.Boolean(), nullable=False),
    )
    op.create_table(
        "rollup_daily_orders",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("orders", sa.Integer(), nullable=False),
        sa.Column("revenue", MONEY, nullable=False),
        sa.Column("first_buyers", sa.Integer(), nullable=False),
        sa.Column("second_buyers", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rollup_daily_buyer_gaps",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("gap_days", sa.Integer(), primary_key=True),
        sa.Column("customers", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rollup_daily_signups",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("customers", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rollup_lifecycle_stages",
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("stage", sa.String(16), primary_key=True),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("timed_customers", sa.Integer(), nullable=False),
        sa.Column("median_days", sa.Float(), nullable=True),
        sa.Column("avg_days", sa.Float(), nullable=True),
    )
    op.create_table(
        "rollup_lifecycle_flows",
        sa.Column("day", sa.Date(), primary_key=True),
        sa.Column("from_stage", sa.String(16), primary_key=True),
        sa.Column("to_stage", sa.String(16), primary_key=True),
        sa.Column("changes", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rollup_cohorts",
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("cohort", sa.String(7), primary_key=True),
        sa.Column("month_offset", sa.Integer(), primary_key=True),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("active_customers", sa.Integer(), nullable=False),
    )
    op.create_table(
        "rollup_churn_summary",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("segment_id", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("probability_sum", sa.Float(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("expected_loss", sa.Float(), nullable=False),
    )
    op.create_index("ix_rollup_churn_summary_as_of", "rollup_churn_summary", ["as_of", "segment_id"])
    op.create_table(
        "rollup_churn_ranking",
        sa.Column("as_of", sa.Date(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), primary_key=True),
        sa.Column("risk_level", sa.String(16), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("expected_loss", sa.Float(), nullable=False),
    )
    op.create_index("ix_rollup_churn_ranking_rank", "rollup_churn_ranking", ["as_of", "expected_loss", "customer_id"])
    op.create_index("ix_rollup_churn_ranking_level", "rollup_churn_ranking",
                    ["as_of", "risk_level", "expected_loss", "customer_id"])
    op.create_index("ix_rollup_churn_ranking_owner", "rollup_churn_ranking",
                    ["as_of", "owner_id", "expected_loss", "customer_id"])
    op.create_table(
        "rollup_segment_stats",
        sa.Column("segment_id", sa.Integer(),
                  sa.ForeignKey("customer_segments.id", name=op.f("fk_rollup_segment_stats_segment_id_customer_segments"),
                                ondelete="CASCADE"),
                  primary_key=True),
        sa.Column("members", sa.Integer(), nullable=False),
        sa.Column("revenue", MONEY, nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "rollup_segment_profiles",
        sa.Column("segment_id", sa.Integer(), primary_key=True),
        sa.Column("dimension", sa.String(32), primary_key=True),
        sa.Column("value", sa.String(64), primary_key=True),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("average", sa.Float(), nullable=True),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, table, _columns in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for table in ("rollup_segment_profiles", "rollup_segment_stats", "rollup_churn_ranking", "rollup_churn_summary",
                  "rollup_cohorts", "rollup_lifecycle_flows", "rollup_lifecycle_stages", "rollup_daily_signups",
                  "rollup_daily_buyer_gaps", "rollup_daily_orders", "rollup_state"):
        op.drop_table(table)
