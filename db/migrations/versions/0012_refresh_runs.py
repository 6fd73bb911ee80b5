"""Refresh runs and their steps are recorded; health components may be empty ("no data").

Revision ID: 0012
Revises: 0011
"""
import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

COMPONENTS = ("engagement", "satisfaction", "loyalty", "payment", "support")


def upgrade() -> None:
    op.create_table(
        "refresh_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("triggered_by", sa.String(length=64), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.CheckConstraint("(status = 'running' OR status = 'ok' OR status = 'partial' OR status = 'failed')",
                           name=op.f("ck_refresh_runs_status_valid")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_runs")),
    )
    op.create_index("ix_refresh_runs_started", "refresh_runs", ["started_at"])
    op.create_table(
        "refresh_run_steps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("step", sa.String(length=32), nullable=False),
        sa.Column("label", sa.String(length=120), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.Column("rows_written", sa.BigInteger(), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        sa.CheckConstraint("(status = 'running' OR status = 'ok' OR status = 'skipped' OR status = 'failed')",
                           name=op.f("ck_refresh_run_steps_status_valid")),
        sa.ForeignKeyConstraint(["run_id"], ["refresh_runs.id"], name=op.f("fk_refresh_run_steps_run_id_refresh_runs"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_refresh_run_steps")),
        sa.UniqueConstraint("run_id", "step", name="uq_refresh_run_steps_run_step"),
    )
    op.create_index("ix_refresh_run_steps_step", "refresh_run_steps", ["step", "run_id"])
    with op.batch_alter_table("customer_account_health_scores") as batch_op:
        for name in COMPONENTS:
            batch_op.alter_column(name, existing_type=sa.Float(), nullable=True)


def downgrade() -> None:
    op.execute("UPDATE customer_account_health_scores SET "
                + ", ".join(f"{name} = COALESCE({name}, 50)" for name in COMPONENTS))
    with op.batch_alter_table("customer_account_health_scores") as batch_op:
        for name in COMPONENTS:
            batch_op.alter_column(name, existing_type=sa.Float(), nullable=False)
    op.drop_index("ix_refresh_run_steps_step", table_name="refresh_run_steps")
    op.drop_table("refresh_run_steps")
    op.drop_index("ix_refresh_runs_started", table_name="refresh_runs")
    op.drop_table("refresh_runs")
