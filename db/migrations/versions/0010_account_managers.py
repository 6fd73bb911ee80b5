"""Customers get an account manager: the success manager who owns the relationship.

Revision ID: 0010
Revises: 0009
"""
import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

FK = "fk_customers_account_manager_id_users"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # A plain ADD COLUMN: a batch copy of `customers` would lose its expression index.
        op.execute(
            f"ALTER TABLE customers ADD COLUMN account_manager_id INTEGER "
            f"CONSTRAINT {FK} REFERENCES users (id) ON DELETE SET NULL"
        )
    else:
        op.add_column("customers", sa.Column("account_manager_id", sa.Integer(), nullable=True))
        op.create_foreign_key(op.f(FK), "customers", "users", ["account_manager_id"], ["id"], ondelete="SET NULL")
    op.create_index(op.f("ix_customers_account_manager_id"), "customers", ["account_manager_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_customers_account_manager_id"), table_name="customers")
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot drop a column that carries a foreign key: copy the table without it, then
        # restore the expression index the copy cannot reflect.
        with op.batch_alter_table("customers") as batch:
            batch.drop_column("account_manager_id")
        op.execute("CREATE INDEX IF NOT EXISTS ix_customers_email_lower ON customers (lower(email))")
    else:
        op.drop_constraint(op.f(FK), "customers", type_="foreignkey")
        op.drop_column("customers", "account_manager_id")
