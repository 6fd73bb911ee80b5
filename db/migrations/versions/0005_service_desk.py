"""Service desk: tickets, SLA calendars and policies, surveys (issue 5).

Adds a version to SLA policies (optimistic locking for the admin editor), the SLA breach records
and staff notifications (escalations).

Revision ID: 0005
Revises: 0004
"""
import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('customer_service_level_agreements', schema=None) as batch_op:
        batch_op.add_column(sa.Column('version', sa.Integer(), server_default='1', nullable=False))

    op.create_table('customer_support_sla_breaches',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('target', sa.String(length=16), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('detected_at', sa.DateTime(), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("(target = 'first_response' OR target = 'next_response' OR target = 'resolution')", name=op.f('ck_customer_support_sla_breaches_target_valid')),
    sa.CheckConstraint("(priority = 'low' OR priority = 'normal' OR priority = 'high' OR priority = 'urgent' OR priority = 'critical')", name=op.f('ck_customer_support_sla_breaches_priority_valid')),
    sa.CheckConstraint("(category = 'order' OR category = 'delivery' OR category = 'returns' OR category = 'billing' OR category = 'product' OR category = 'account' OR category = 'technical' OR category = 'other')", name=op.f('ck_customer_support_sla_breaches_category_valid')),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_customer_support_sla_breaches_assignee_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_customer_support_sla_breaches_ticket_id_customer_support_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_support_sla_breaches')),
    sa.UniqueConstraint('ticket_id', 'target', 'due_at', name='uq_sla_breach_ticket_target_due')
    )
    with op.batch_alter_table('customer_support_sla_breaches', schema=None) as batch_op:
        batch_op.create_index('ix_sla_breaches_detected', ['detected_at'], unique=False)

    op.create_table('staff_notifications',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('user_id', sa.Integer(), nullable=True),
    sa.Column('kind', sa.String(length=32), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('message', sa.String(length=500), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('read_at', sa.DateTime(), nullable=True),
    sa.ForeignKeyConstraint(['ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_staff_notifications_ticket_id_customer_support_tickets'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['user_id'], ['users.id'], name=op.f('fk_staff_notifications_user_id_users'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_notifications'))
    )
    with op.batch_alter_table('staff_notifications', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_staff_notifications_ticket_id'), ['ticket_id'], unique=False)
        batch_op.create_index('ix_staff_notifications_user', ['user_id', 'read_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('staff_notifications', schema=None) as batch_op:
        batch_op.drop_index('ix_staff_notifications_user')
        batch_op.drop_index(batch_op.f('ix_staff_notifications_ticket_id'))
    op.drop_table('staff_notifications')
    with op.batch_alter_table('customer_support_sla_breaches', schema=None) as batch_op:
        batch_op.drop_index('ix_sla_breaches_detected')
    op.drop_table('customer_support_sla_breaches')
    with op.batch_alter_table('customer_service_level_agreements', schema=None) as batch_op:
        batch_op.drop_column('version')
