"""Import and export: saved column mappings and import runs (issue 6).

Also an index on `customers.phone`, which import dedupe looks up by exact normalized number.

Revision ID: 0008
Revises: 0007
"""
import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_customers_phone", "customers", ["phone"], unique=False)

    op.create_table("import_mappings",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("entity", sa.String(length=16), nullable=False),
    sa.Column("name", sa.String(length=120), nullable=False),
    sa.Column("mapping", sa.JSON(), nullable=False),
    sa.Column("is_shared", sa.Boolean(), nullable=False),
    sa.Column("owner_id", sa.Integer(), nullable=True),
    sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.CheckConstraint("(entity = 'customers' OR entity = 'orders')", name=op.f("ck_import_mappings_entity_valid")),
    sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_import_mappings_owner_id_users"),
                            ondelete="SET NULL"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_import_mappings")),
    sa.UniqueConstraint("entity", "name", name="uq_import_mappings_entity_name"),
    )

    op.create_table("import_runs",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("entity", sa.String(length=16), nullable=False),
    sa.Column("file_name", sa.String(length=255), nullable=False),
    sa.Column("file_format", sa.String(length=8), nullable=False),
    sa.Column("on_duplicate", sa.String(length=8), nullable=True),
    sa.Column("status", sa.String(length=16), nullable=False),
    sa.Column("actor_id", sa.Integer(), nullable=True),
    sa.Column("actor_username", sa.String(length=64), nullable=False),
    sa.Column("started_at", sa.DateTime(), nullable=False),
    sa.Column("finished_at", sa.DateTime(), nullable=True),
    sa.Column("rows_read", sa.Integer(), nullable=False),
    sa.Column("created", sa.Integer(), nullable=False),
    sa.Column("updated", sa.Integer(), nullable=False),
    sa.Column("skipped", sa.Integer(), nullable=False),
    sa.Column("invalid", sa.Integer(), nullable=False),
    sa.Column("message", sa.Text(), nullable=True),
    sa.CheckConstraint("(entity = 'customers' OR entity = 'orders')", name=op.f("ck_import_runs_entity_valid")),
    sa.CheckConstraint("(status = 'completed' OR status = 'failed')", name=op.f("ck_import_runs_status_valid")),
    sa.ForeignKeyConstraint(["actor_id"], ["users.id"], name=op.f("fk_import_runs_actor_id_users"),
                            ondelete="SET NULL"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_import_runs")),
    )
    with op.batch_alter_table("import_runs", schema=None) as batch_op:
        batch_op.create_index("ix_import_runs_started", ["started_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("import_runs", schema=None) as batch_op:
        batch_op.drop_index("ix_import_runs_started")
    op.drop_table("import_runs")
    op.drop_table("import_mappings")
    op.drop_index("ix_customers_phone", table_name="customers")
