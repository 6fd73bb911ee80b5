"""Duplicates, merges and splits, privacy requests (issue 6).

Revision ID: 0009
Revises: 0008
"""
import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"{column} = '{v}'" for v in values) + ")"


def upgrade() -> None:
    op.create_table(
        "customer_merges",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("survivor_id", sa.Integer(), nullable=False),
        sa.Column("merged_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("field_choices", sa.JSON(), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("merged_at", sa.DateTime(), nullable=False),
        sa.Column("merged_by_id", sa.Integer(), nullable=True),
        sa.Column("undone_at", sa.DateTime(), nullable=True),
        sa.Column("undone_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_in("status", ("completed", "undone")), name=op.f("ck_customer_merges_status_valid")),
        sa.CheckConstraint(_in("kind", ("merge", "split")), name=op.f("ck_customer_merges_kind_valid")),
        sa.CheckConstraint("survivor_id <> merged_id", name=op.f("ck_customer_merges_not_self")),
        sa.ForeignKeyConstraint(["survivor_id"], ["customers.id"], name=op.f("fk_customer_merges_survivor_id_customers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["merged_id"], ["customers.id"], name=op.f("fk_customer_merges_merged_id_customers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["merged_by_id"], ["users.id"], name=op.f("fk_customer_merges_merged_by_id_users"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["undone_by_id"], ["users.id"], name=op.f("fk_customer_merges_undone_by_id_users"),
                                ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_merges")),
    )
    with op.batch_alter_table("customer_merges", schema=None) as batch_op:
        batch_op.create_index("ix_merges_time", ["merged_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_merges_survivor_id"), ["survivor_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_merges_merged_id"), ["merged_id"], unique=False)

    op.create_table(
        "customer_merge_rows",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("merge_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=8), nullable=False),
        sa.Column("table_name", sa.String(length=64), nullable=False),
        sa.Column("column_name", sa.String(length=64), nullable=True),
        sa.Column("row_key", sa.JSON(), nullable=True),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.CheckConstraint(_in("action", ("moved", "removed", "retained", "field", "loyalty", "status")),
                           name=op.f("ck_customer_merge_rows_action_valid")),
        sa.ForeignKeyConstraint(["merge_id"], ["customer_merges.id"], name=op.f("fk_customer_merge_rows_merge_id_customer_merges"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_merge_rows")),
    )
    with op.batch_alter_table("customer_merge_rows", schema=None) as batch_op:
        batch_op.create_index("ix_merge_rows_merge", ["merge_id", "table_name"], unique=False)

    op.create_table(
        "customer_duplicate_candidates",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("customer_a_id", sa.Integer(), nullable=False),
        sa.Column("customer_b_id", sa.Integer(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("detected_at", sa.DateTime(), nullable=False),
        sa.Column("reviewed_at", sa.DateTime(), nullable=True),
        sa.Column("reviewed_by_id", sa.Integer(), nullable=True),
        sa.Column("merge_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(_in("status", ("open", "merged", "dismissed")),
                           name=op.f("ck_customer_duplicate_candidates_status_valid")),
        sa.CheckConstraint("customer_a_id < customer_b_id", name=op.f("ck_customer_duplicate_candidates_pair_ordered")),
        sa.CheckConstraint("score BETWEEN 0 AND 1", name=op.f("ck_customer_duplicate_candidates_score_range")),
        sa.ForeignKeyConstraint(["customer_a_id"], ["customers.id"],
                                name=op.f("fk_customer_duplicate_candidates_customer_a_id_customers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["customer_b_id"], ["customers.id"],
                                name=op.f("fk_customer_duplicate_candidates_customer_b_id_customers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["reviewed_by_id"], ["users.id"],
                                name=op.f("fk_customer_duplicate_candidates_reviewed_by_id_users"), ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["merge_id"], ["customer_merges.id"],
                                name=op.f("fk_customer_duplicate_candidates_merge_id_customer_merges"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_duplicate_candidates")),
        sa.UniqueConstraint("customer_a_id", "customer_b_id", name="uq_duplicate_pair"),
    )
    with op.batch_alter_table("customer_duplicate_candidates", schema=None) as batch_op:
        batch_op.create_index("ix_duplicates_status_score", ["status", "score"], unique=False)
        batch_op.create_index(batch_op.f("ix_customer_duplicate_candidates_customer_b_id"), ["customer_b_id"],
                              unique=False)

    with op.batch_alter_table("customer_gdpr_compliance", schema=None) as batch_op:
        batch_op.add_column(sa.Column("policy_version", sa.String(length=32), nullable=True))
    op.create_index("ix_customers_merged_into", "customers", ["merged_into_id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_customers_merged_into", table_name="customers")
    with op.batch_alter_table("customer_gdpr_compliance", schema=None) as batch_op:
        batch_op.drop_column("policy_version")
    op.drop_table("customer_duplicate_candidates")
    op.drop_table("customer_merge_rows")
    op.drop_table("customer_merges")
