"""Social listening and customer journeys (issue 17).

Mentions keep their author's handle (matched to customers' social accounts), an import key
(unique where set, so importing a file twice adds nothing), the sentiment scorer's name and the
ticket opened from them; import runs and mappings may be about mentions. The journeys step of the
batch writes its runs and the rollups the Journeys page reads.

Revision ID: 0020
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None

MENTIONS = "customer_social_media_mentions"
OLD_ENTITIES = ("customers", "orders", "tickets", "communications")
NEW_ENTITIES = (*OLD_ENTITIES, "mentions")


def _entity_check(values: tuple[str, ...]) -> str:
    return "(" + " OR ".join(f"entity = '{v}'" for v in values) + ")"


def _set_entities(values: tuple[str, ...]) -> None:
    for table in ("import_mappings", "import_runs"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(op.f(f"ck_{table}_entity_valid"), type_="check")
            batch.create_check_constraint(op.f(f"ck_{table}_entity_valid"), _entity_check(values))


def upgrade() -> None:
    _set_entities(NEW_ENTITIES)
    with op.batch_alter_table(MENTIONS) as batch:
        batch.add_column(sa.Column("author", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("external_id", sa.String(length=100), nullable=True))
        batch.add_column(sa.Column("sentiment_model", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("ticket_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_customer_social_media_mentions_ticket_id_customer_support_tickets"),
                                 "customer_support_tickets", ["ticket_id"], ["id"], ondelete="SET NULL")
    op.create_index("ix_mentions_platform_author", MENTIONS, ["platform", "author"])
    op.create_index("ix_mentions_external_id", MENTIONS, ["external_id"], unique=True,
                    postgresql_where=sa.text("external_id IS NOT NULL"),
                    sqlite_where=sa.text("external_id IS NOT NULL"))
    op.create_table(
        "customer_social_mention_terms",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("mention_id", sa.Integer(), nullable=False),
        sa.Column("term", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("posted_at", sa.DateTime(), nullable=False),
        sa.Column("platform", sa.String(length=16), nullable=False),
        sa.Column("negative", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["mention_id"], ["customer_social_media_mentions.id"],
                                name=op.f("fk_customer_social_mention_terms_mention_id_customer_social_media_mentions"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_customer_social_mention_terms")),
    )
    op.create_index("ix_mention_terms_time", "customer_social_mention_terms", ["posted_at"])
    op.create_index("ix_mention_terms_mention", "customer_social_mention_terms", ["mention_id"])
    op.create_table(
        "journey_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("as_of", sa.Date(), nullable=False),
        sa.Column("computed_at", sa.DateTime(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("buyers", sa.Integer(), nullable=False),
        sa.Column("churned", sa.Integer(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_runs")),
    )
    op.create_index("ix_journey_runs_computed", "journey_runs", ["computed_at"])
    op.create_table(
        "journey_rollups",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("segment_id", sa.Integer(), nullable=True),
        sa.Column("cohort", sa.String(length=7), nullable=True),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("customers", sa.Integer(), nullable=False),
        sa.Column("reached", sa.Integer(), nullable=False),
        sa.Column("outcomes", sa.JSON(), nullable=False),
        sa.Column("median_days", sa.JSON(), nullable=False),
        sa.Column("median_days_total", sa.Float(), nullable=True),
        sa.CheckConstraint("(kind = 'to_purchase' OR kind = 'to_churn' OR kind = 'first_touch')",
                           name=op.f("ck_journey_rollups_kind_valid")),
        sa.ForeignKeyConstraint(["run_id"], ["journey_runs.id"], name=op.f("fk_journey_rollups_run_id_journey_runs"),
                                ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["segment_id"], ["customer_segments.id"],
                                name=op.f("fk_journey_rollups_segment_id_customer_segments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journey_rollups")),
    )
    op.create_index("ix_journey_rollups_lookup", "journey_rollups", ["run_id", "kind", "segment_id", "cohort", "rank"])


def downgrade() -> None:
    op.drop_index("ix_journey_rollups_lookup", table_name="journey_rollups")
    op.drop_table("journey_rollups")
    op.drop_index("ix_journey_runs_computed", table_name="journey_runs")
    op.drop_table("journey_runs")
    op.drop_index("ix_mention_terms_mention", table_name="customer_social_mention_terms")
    op.drop_index("ix_mention_terms_time", table_name="customer_social_mention_terms")
    op.drop_table("customer_social_mention_terms")
    op.drop_index("ix_mentions_external_id", table_name=MENTIONS)
    op.drop_index("ix_mentions_platform_author", table_name=MENTIONS)
    with op.batch_alter_table(MENTIONS) as batch:
        batch.drop_constraint(op.f("fk_customer_social_media_mentions_ticket_id_customer_support_tickets"),
                              type_="foreignkey")
        for column in ("ticket_id", "sentiment_model", "external_id", "author"):
            batch.drop_column(column)
    for table in ("import_mappings", "import_runs"):
        op.execute(sa.text(f"DELETE FROM {table} WHERE entity = 'mentions'"))
    _set_entities(OLD_ENTITIES)
