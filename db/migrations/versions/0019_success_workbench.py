"""The success manager's workbench (issue 18): health scoring runs (live accounts scored, churned and
never-bought customers counted apart, the level bands applied), CTAs with their events and links,
playbook templates per trigger, and the holdouts a playbook's effect is measured against.

Revision ID: 0019
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def _check(column: str, values: tuple[str, ...], nullable: bool = False) -> str:
    expr = "(" + " OR ".join(f"{column} = '{v}'" for v in values) + ")"
    return f"{column} IS NULL OR {expr}" if nullable else expr


def _user(name: str, table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint([name], ["users.id"], name=op.f(f"fk_{table}_{name}_users"), ondelete="SET NULL")


def upgrade() -> None:
    op.create_table(
        "account_health_runs",
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("scored", sa.Integer(), nullable=False),
        sa.Column("churned", sa.Integer(), nullable=False),
        sa.Column("never_bought", sa.Integer(), nullable=False),
        sa.Column("churned_after_days", sa.Integer(), nullable=False),
        sa.Column("thresholds", sa.JSON(), nullable=False),
        sa.Column("bands_source", sa.String(length=16), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.CheckConstraint(_check("bands_source", ("default", "calibrated", "admin")),
                           name=op.f("ck_account_health_runs_bands_source_valid")),
        sa.PrimaryKeyConstraint("as_of", name=op.f("pk_account_health_runs")),
    )
    op.create_table(
        "success_playbooks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=120), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("due_days", sa.Integer(), nullable=False),
        sa.Column("holdout_share", sa.Float(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by_id", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(_check("priority", ("low", "medium", "high", "urgent")),
                           name=op.f("ck_success_playbooks_priority_valid")),
        sa.CheckConstraint("due_days BETWEEN 0 AND 365", name=op.f("ck_success_playbooks_due_days_range")),
        sa.CheckConstraint("holdout_share BETWEEN 0 AND 0.5", name=op.f("ck_success_playbooks_holdout_share_range")),
        _user("updated_by_id", "success_playbooks"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_success_playbooks")),
        sa.UniqueConstraint("trigger", name=op.f("uq_success_playbooks_trigger")),
    )
    op.create_table(
        "success_ctas",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("playbook_id", sa.Integer(), nullable=True),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("priority", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Integer(), nullable=True),
        sa.Column("due_on", sa.Date(), nullable=False),
        sa.Column("snoozed_until", sa.Date(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=True),
        sa.Column("outcome_note", sa.Text(), nullable=True),
        sa.Column("opened_on", sa.Date(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("first_action_at", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("closed_on", sa.Date(), nullable=True),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.CheckConstraint(_check("priority", ("low", "medium", "high", "urgent")),
                           name=op.f("ck_success_ctas_priority_valid")),
        sa.CheckConstraint(_check("status", ("open", "in_progress", "snoozed", "closed")),
                           name=op.f("ck_success_ctas_status_valid")),
        sa.CheckConstraint(_check("outcome", ("saved", "churned", "unreachable", "not_needed", "trigger_cleared"),
                                  nullable=True), name=op.f("ck_success_ctas_outcome_valid")),
        sa.CheckConstraint(_check("source", ("rule", "manual")), name=op.f("ck_success_ctas_source_valid")),
        sa.CheckConstraint("status <> 'closed' OR outcome IS NOT NULL", name=op.f("ck_success_ctas_closed_has_outcome")),
        sa.CheckConstraint("status <> 'snoozed' OR snoozed_until IS NOT NULL",
                           name=op.f("ck_success_ctas_snoozed_has_date")),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"], name=op.f("fk_success_ctas_customer_id_customers"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["playbook_id"], ["success_playbooks.id"],
                                name=op.f("fk_success_ctas_playbook_id_success_playbooks"), ondelete="SET NULL"),
        _user("owner_id", "success_ctas"),
        _user("created_by_id", "success_ctas"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_success_ctas")),
    )
    op.create_index(op.f("ix_success_ctas_customer_id"), "success_ctas", ["customer_id"])
    op.create_index("ix_success_ctas_one_open", "success_ctas", ["customer_id", "trigger"], unique=True,
                    postgresql_where=sa.text("status <> 'closed'"), sqlite_where=sa.text("status <> 'closed'"))
    op.create_index("ix_success_ctas_owner_status", "success_ctas", ["owner_id", "status", "due_on"])
    op.create_index("ix_success_ctas_status_opened", "success_ctas", ["status", "opened_at"])
    op.create_table(
        "success_cta_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("cta_id", sa.Integer(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("actor_id", sa.Integer(), nullable=True),
        sa.Column("actor_username", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.ForeignKeyConstraint(["cta_id"], ["success_ctas.id"], name=op.f("fk_success_cta_events_cta_id_success_ctas"),
                                ondelete="CASCADE"),
        _user("actor_id", "success_cta_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_success_cta_events")),
    )
    op.create_index("ix_success_cta_events_cta", "success_cta_events", ["cta_id", "occurred_at"])
    op.create_table(
        "success_cta_links",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cta_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("communication_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("ticket_id", sa.Integer(), nullable=True),
        sa.Column("complaint_id", sa.Integer(), nullable=True),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.text("(CURRENT_TIMESTAMP)"), nullable=False),
        sa.Column("created_by_id", sa.Integer(), nullable=True),
        sa.CheckConstraint(_check("kind", ("communication", "ticket", "complaint", "note")),
                           name=op.f("ck_success_cta_links_kind_valid")),
        sa.ForeignKeyConstraint(["cta_id"], ["success_ctas.id"], name=op.f("fk_success_cta_links_cta_id_success_ctas"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["communication_id"], ["customer_communication_history.id"],
                                name=op.f("fk_success_cta_links_communication_id_customer_communication_history"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["ticket_id"], ["customer_support_tickets.id"],
                                name=op.f("fk_success_cta_links_ticket_id_customer_support_tickets"),
                                ondelete="SET NULL"),
        sa.ForeignKeyConstraint(["complaint_id"], ["customer_complaint_management.id"],
                                name=op.f("fk_success_cta_links_complaint_id_customer_complaint_management"),
                                ondelete="SET NULL"),
        _user("created_by_id", "success_cta_links"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_success_cta_links")),
    )
    op.create_index("ix_success_cta_links_cta", "success_cta_links", ["cta_id"])
    op.create_table(
        "success_holdouts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("trigger", sa.String(length=32), nullable=False),
        sa.Column("playbook_id", sa.Integer(), nullable=True),
        sa.Column("fired_on", sa.Date(), nullable=False),
        sa.Column("cleared_on", sa.Date(), nullable=True),
        sa.Column("signals", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["customer_id"], ["customers.id"],
                                name=op.f("fk_success_holdouts_customer_id_customers"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["playbook_id"], ["success_playbooks.id"],
                                name=op.f("fk_success_holdouts_playbook_id_success_playbooks"), ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_success_holdouts")),
    )
    op.create_index("ix_success_holdouts_one_open", "success_holdouts", ["customer_id", "trigger"], unique=True,
                    postgresql_where=sa.text("cleared_on IS NULL"), sqlite_where=sa.text("cleared_on IS NULL"))
    op.create_index("ix_success_holdouts_trigger", "success_holdouts", ["trigger", "fired_on"])


def downgrade() -> None:
    op.drop_index("ix_success_holdouts_trigger", table_name="success_holdouts")
    op.drop_index("ix_success_holdouts_one_open", table_name="success_holdouts")
    op.drop_table("success_holdouts")
    op.drop_index("ix_success_cta_links_cta", table_name="success_cta_links")
    op.drop_table("success_cta_links")
    op.drop_index("ix_success_cta_events_cta", table_name="success_cta_events")
    op.drop_table("success_cta_events")
    op.drop_index("ix_success_ctas_status_opened", table_name="success_ctas")
    op.drop_index("ix_success_ctas_owner_status", table_name="success_ctas")
    op.drop_index("ix_success_ctas_one_open", table_name="success_ctas")
    op.drop_index(op.f("ix_success_ctas_customer_id"), table_name="success_ctas")
    op.drop_table("success_ctas")
    op.drop_table("success_playbooks")
    op.drop_table("account_health_runs")
