"""Customer search, saved searches and the Customer 360 profile (issue 6).

Adds `customers.company` (searched with name, email and phone), the per-user saved searches and,
on PostgreSQL only, pg_trgm with GIN trigram indexes for typo-tolerant search. The trigram
expressions must stay identical to the ones `crm_core.search` filters on, or the planner will not
use the indexes.

Revision ID: 0007
Revises: 0006
"""
import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

TRIGRAM_INDEXES = {
    "ix_customers_name_trgm": "lower(first_name || ' ' || last_name)",
    "ix_customers_email_trgm": "lower(coalesce(email, ''))",
    "ix_customers_company_trgm": "lower(coalesce(company, ''))",
    "ix_customers_phone_trgm": "replace(replace(coalesce(phone, ''), ' ', ''), '-', '')",
}


def upgrade() -> None:
    op.add_column("customers", sa.Column("company", sa.String(length=200), nullable=True))

    op.create_table("customer_saved_searches",
    sa.Column("id", sa.Integer(), nullable=False),
    sa.Column("user_id", sa.Integer(), nullable=False),
    sa.Column("name", sa.String(length=120), nullable=False),
    sa.Column("query", sa.JSON(), nullable=False),
    sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
    sa.Column("updated_at", sa.DateTime(), nullable=False),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_customer_saved_searches_user_id_users"),
                            ondelete="CASCADE"),
    sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_saved_searches")),
    sa.UniqueConstraint("user_id", "name", name="uq_saved_search_user_name"),
    )
    with op.batch_alter_table("customer_saved_searches", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_customer_saved_searches_user_id"), ["user_id"], unique=False)

    if op.get_bind().dialect.name == "postgresql":
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
        for name, expression in TRIGRAM_INDEXES.items():
            op.execute(f"CREATE INDEX IF NOT EXISTS {name} ON customers USING gin (({expression}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for name in TRIGRAM_INDEXES:
            op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("customer_saved_searches", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_customer_saved_searches_user_id"))
    op.drop_table("customer_saved_searches")
    # A plain DROP COLUMN (SQLite 3.35+): a batch rebuild of customers would lose its expression index.
    op.drop_column("customers", "company")
