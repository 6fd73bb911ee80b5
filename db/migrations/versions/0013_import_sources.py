"""Imports of the files a shop has: helpdesk tickets and communications (issue 11).

Import runs and saved mappings may be about tickets and communications, and imported tickets and
messages keep their source's id in `external_id` (unique where set), so that importing the same
file twice adds nothing.

Revision ID: 0013
Revises: 0012
"""
import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

OLD_ENTITIES = ("customers", "orders")
NEW_ENTITIES = ("customers", "orders", "tickets", "communications")
EXTERNAL_IDS = {"customer_support_tickets": "ix_tickets_external_id",
                "customer_communication_history": "ix_comm_external_id"}


def _entity_check(values: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"entity = '{v}'" for v in values) + ")"


def _set_entities(values: tuple[str, ...]) -> None:
    for table in ("import_mappings", "import_runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_entity_valid"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_entity_valid"), _entity_check(values))


def upgrade() -> None:
    _set_entities(NEW_ENTITIES)
    for table, index in EXTERNAL_IDS.items():
        op.add_column(table, sa.Column("external_id", sa.String(length=100), nullable=True))
        op.create_index(index, table, ["external_id"], unique=True,
                        postgresql_where=sa.text("external_id IS NOT NULL"),
                        sqlite_where=sa.text("external_id IS NOT NULL"))


def downgrade() -> None:
    for table, index in EXTERNAL_IDS.items():
        op.drop_index(index, table_name=table)
        with op.batch_alter_table(table) as batch:
            batch.drop_column("external_id")
    for table in ("import_mappings", "import_runs"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE entity IN ('tickets', 'communications')"))
    _set_entities(OLD_ENTITIES)
