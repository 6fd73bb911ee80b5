"""Risk and referrals (issue 16): sign-ins with device and place, account changes, chargebacks,
identity checks, risk rules, allow/block lists, risk scores, the review queue and its decisions,
the simulator's planted truth, referral codes, checks and held rewards; a risk_analyst role.

Revision ID: 0017
Revises: 0013
"""
import sqlalchemy as sa
from alembic import op

OLD_ROLES = ("admin", "analyst", "success_manager", "support_agent", "executive")
NEW_ROLES = (*OLD_ROLES, "risk_analyst")


def _set_roles(roles: tuple[str, ...]) -> None:
    check = "(" + " OR ".join(f"role = '{role}'" for role in roles) + ")"
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("ck_users_role_valid"), type_="check")
        batch.create_check_constraint(op.f("ck_users_role_valid"), check)

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('risk_list_entries',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('list_kind', sa.String(length=8), nullable=False),
    sa.Column('field', sa.String(length=24), nullable=False),
    sa.Column('value', sa.String(length=254), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(field = 'email' OR field = 'email_domain' OR field = 'phone' OR field = 'device' OR field = 'ip' OR field = 'payment_fingerprint' OR field = 'country')", name=op.f('ck_risk_list_entries_field_valid')),
    sa.CheckConstraint("(list_kind = 'allow' OR list_kind = 'block')", name=op.f('ck_risk_list_entries_list_kind_valid')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_risk_list_entries_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_list_entries')),
    sa.UniqueConstraint('list_kind', 'field', 'value', name='uq_risk_list_entries_value')
    )
    op.create_table('risk_rules',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('risk_type', sa.String(length=16), nullable=False),
    sa.Column('condition', sa.JSON(), nullable=False),
    sa.Column('weight', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(action = 'none' OR action = 'review' OR action = 'restrict' OR action = 'block')", name=op.f('ck_risk_rules_action_valid')),
    sa.CheckConstraint("(risk_type = 'fraud' OR risk_type = 'credit' OR risk_type = 'account_takeover')", name=op.f('ck_risk_rules_risk_type_valid')),
    sa.CheckConstraint('weight BETWEEN 0 AND 100', name=op.f('ck_risk_rules_weight_range')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_risk_rules_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_rules')),
    sa.UniqueConstraint('name', name=op.f('uq_risk_rules_name'))
    )
    op.create_table('customer_account_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(kind = 'password' OR kind = 'email' OR kind = 'phone' OR kind = 'address' OR kind = 'payout')", name=op.f('ck_customer_account_changes_kind_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_account_changes_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_account_changes'))
    )
    with op.batch_alter_table('customer_account_changes', schema=None) as batch_op:
        batch_op.create_index('ix_account_changes_customer_time', ['customer_id', 'changed_at'], unique=False)

    op.create_table('customer_identity_checks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.Column('checked_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("(source = 'reviewer' OR source = 'import')", name=op.f('ck_customer_identity_checks_source_valid')),
    sa.CheckConstraint("(status = 'unverified' OR status = 'pending' OR status = 'verified' OR status = 'failed')", name=op.f('ck_customer_identity_checks_status_valid')),
    sa.CheckConstraint("status <> 'failed' OR reason IS NOT NULL", name=op.f('ck_customer_identity_checks_failed_has_reason')),
    sa.ForeignKeyConstraint(['checked_by_id'], ['users.id'], name=op.f('fk_customer_identity_checks_checked_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_identity_checks_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_identity_checks'))
    )
    with op.batch_alter_table('customer_identity_checks', schema=None) as batch_op:
        batch_op.create_index('ix_identity_checks_customer_time', ['customer_id', 'checked_at'], unique=False)

    op.create_table('customer_referral_codes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_referral_codes_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_referral_codes')),
    sa.UniqueConstraint('code', name=op.f('uq_customer_referral_codes_code')),
    sa.UniqueConstraint('customer_id', name=op.f('uq_customer_referral_codes_customer_id'))
    )
    op.create_table('customer_risk_scores',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('fraud', sa.Float(), nullable=False),
    sa.Column('credit', sa.Float(), nullable=False),
    sa.Column('account_takeover', sa.Float(), nullable=False),
    sa.Column('overall', sa.Float(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('anomaly', sa.Float(), nullable=True),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('fired', sa.JSON(), nullable=True),
    sa.CheckConstraint("(action = 'none' OR action = 'review' OR action = 'restrict' OR action = 'block')", name=op.f('ck_customer_risk_scores_action_valid')),
    sa.CheckConstraint("(level = 'low' OR level = 'medium' OR level = 'high' OR level = 'critical')", name=op.f('ck_customer_risk_scores_level_valid')),
    sa.CheckConstraint('overall BETWEEN 0 AND 100', name=op.f('ck_customer_risk_scores_overall_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_risk_scores_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', 'as_of', name=op.f('pk_customer_risk_scores'))
    )
    with op.batch_alter_table('customer_risk_scores', schema=None) as batch_op:
        batch_op.create_index('ix_risk_scores_as_of_overall', ['as_of', 'overall'], unique=False)

    op.create_table('customer_sign_in_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('signed_in_at', sa.DateTime(), nullable=False),
    sa.Column('device_id', sa.String(length=64), nullable=False),
    sa.Column('ip_address', sa.String(length=45), nullable=False),
    sa.Column('country_code', sa.String(length=2), nullable=True),
    sa.Column('city', sa.String(length=100), nullable=True),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('succeeded', sa.Boolean(), nullable=False),
    sa.CheckConstraint('latitude IS NULL OR (latitude BETWEEN -90 AND 90)', name=op.f('ck_customer_sign_in_events_latitude_range')),
    sa.CheckConstraint('longitude IS NULL OR (longitude BETWEEN -180 AND 180)', name=op.f('ck_customer_sign_in_events_longitude_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_sign_in_events_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_sign_in_events'))
    )
    with op.batch_alter_table('customer_sign_in_events', schema=None) as batch_op:
        batch_op.create_index('ix_sign_ins_customer_time', ['customer_id', 'signed_in_at'], unique=False)
        batch_op.create_index('ix_sign_ins_device', ['device_id'], unique=False)
        batch_op.create_index('ix_sign_ins_time', ['signed_in_at'], unique=False)

    op.create_table('simulated_risk_truth',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('scenario', sa.String(length=24), nullable=False),
    sa.Column('risk_type', sa.String(length=16), nullable=False),
    sa.Column('planted_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(risk_type = 'fraud' OR risk_type = 'credit' OR risk_type = 'account_takeover')", name=op.f('ck_simulated_risk_truth_risk_type_valid')),
    sa.CheckConstraint("(scenario = 'fraud_ring' OR scenario = 'account_takeover' OR scenario = 'bad_credit')", name=op.f('ck_simulated_risk_truth_scenario_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_simulated_risk_truth_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_simulated_risk_truth'))
    )
    op.create_table('customer_chargebacks',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('reason', sa.String(length=64), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(status = 'open' OR status = 'won' OR status = 'lost')", name=op.f('ck_customer_chargebacks_status_valid')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_customer_chargebacks_amount_non_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_chargebacks_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_customer_chargebacks_order_id_orders'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_chargebacks'))
    )
    with op.batch_alter_table('customer_chargebacks', schema=None) as batch_op:
        batch_op.create_index('ix_chargebacks_customer_time', ['customer_id', 'opened_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_chargebacks_order_id'), ['order_id'], unique=False)

    op.create_table('customer_referral_checks',
    sa.Column('referral_id', sa.Integer(), nullable=False),
    sa.Column('verdict', sa.String(length=16), nullable=False),
    sa.Column('reasons', sa.JSON(), nullable=False),
    sa.Column('first_order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('checked_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(verdict = 'accepted' OR verdict = 'rejected' OR verdict = 'review')", name=op.f('ck_customer_referral_checks_verdict_valid')),
    sa.ForeignKeyConstraint(['first_order_id'], ['orders.id'], name=op.f('fk_customer_referral_checks_first_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['referral_id'], ['customer_referral_program.id'], name=op.f('fk_customer_referral_checks_referral_id_customer_referral_program'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('referral_id', name=op.f('pk_customer_referral_checks'))
    )
    op.create_table('customer_referral_rewards',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('referral_id', sa.Integer(), nullable=False),
    sa.Column('side', sa.String(length=16), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('payable_at', sa.DateTime(), nullable=False),
    sa.Column('settled_at', sa.DateTime(), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.CheckConstraint("(side = 'referrer' OR side = 'friend')", name=op.f('ck_customer_referral_rewards_side_valid')),
    sa.CheckConstraint("(status = 'held' OR status = 'paid' OR status = 'reversed' OR status = 'rejected')", name=op.f('ck_customer_referral_rewards_status_valid')),
    sa.CheckConstraint('points > 0', name=op.f('ck_customer_referral_rewards_points_positive')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_referral_rewards_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_customer_referral_rewards_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['referral_id'], ['customer_referral_program.id'], name=op.f('fk_customer_referral_rewards_referral_id_customer_referral_program'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_referral_rewards')),
    sa.UniqueConstraint('referral_id', 'side', name='uq_customer_referral_rewards_side')
    )
    with op.batch_alter_table('customer_referral_rewards', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_referral_rewards_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_referral_rewards_status', ['status', 'payable_at'], unique=False)

    op.create_table('risk_reviews',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('referral_id', sa.Integer(), nullable=True),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('risk_type', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('anomaly', sa.Float(), nullable=True),
    sa.Column('fired', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('opened_at', sa.DateTime(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decided_by_id', sa.Integer(), nullable=True),
    sa.Column('reason', sa.String(length=500), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(risk_type = 'fraud' OR risk_type = 'credit' OR risk_type = 'account_takeover')", name=op.f('ck_risk_reviews_risk_type_valid')),
    sa.CheckConstraint("(source = 'score' OR source = 'rule' OR source = 'list' OR source = 'referral')", name=op.f('ck_risk_reviews_source_valid')),
    sa.CheckConstraint("(status = 'open' OR status = 'approved' OR status = 'restricted' OR status = 'blocked')", name=op.f('ck_risk_reviews_status_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_risk_reviews_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['decided_by_id'], ['users.id'], name=op.f('fk_risk_reviews_decided_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['referral_id'], ['customer_referral_program.id'], name=op.f('fk_risk_reviews_referral_id_customer_referral_program'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_risk_reviews'))
    )
    with op.batch_alter_table('risk_reviews', schema=None) as batch_op:
        batch_op.create_index('ix_risk_reviews_customer', ['customer_id', 'status'], unique=False)
        batch_op.create_index('ix_risk_reviews_status_score', ['status', 'score'], unique=False)

    op.create_table('customer_risk_decisions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('action', sa.String(length=16), nullable=False),
    sa.Column('reason', sa.String(length=500), nullable=False),
    sa.Column('order_limit', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('review_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=True),
    sa.Column('lifted_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("(action = 'restrict' OR action = 'block')", name=op.f('ck_customer_risk_decisions_action_valid')),
    sa.CheckConstraint('expires_at IS NULL OR expires_at > created_at', name=op.f('ck_customer_risk_decisions_expires_after_created')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_customer_risk_decisions_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_risk_decisions_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['review_id'], ['risk_reviews.id'], name=op.f('fk_customer_risk_decisions_review_id_risk_reviews'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_risk_decisions'))
    )
    with op.batch_alter_table('customer_risk_decisions', schema=None) as batch_op:
        batch_op.create_index('ix_risk_decisions_customer', ['customer_id', 'lifted_at'], unique=False)

    _set_roles(NEW_ROLES)


def downgrade() -> None:
    op.execute(sa.text("UPDATE users SET role = 'analyst', is_active = false WHERE role = 'risk_analyst'"))
    _set_roles(OLD_ROLES)

    with op.batch_alter_table('customer_risk_decisions', schema=None) as batch_op:
        batch_op.drop_index('ix_risk_decisions_customer')

    op.drop_table('customer_risk_decisions')
    with op.batch_alter_table('risk_reviews', schema=None) as batch_op:
        batch_op.drop_index('ix_risk_reviews_status_score')
        batch_op.drop_index('ix_risk_reviews_customer')

    op.drop_table('risk_reviews')
    with op.batch_alter_table('customer_referral_rewards', schema=None) as batch_op:
        batch_op.drop_index('ix_referral_rewards_status')
        batch_op.drop_index(batch_op.f('ix_customer_referral_rewards_customer_id'))

    op.drop_table('customer_referral_rewards')
    op.drop_table('customer_referral_checks')
    with op.batch_alter_table('customer_chargebacks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_chargebacks_order_id'))
        batch_op.drop_index('ix_chargebacks_customer_time')

    op.drop_table('customer_chargebacks')
    op.drop_table('simulated_risk_truth')
    with op.batch_alter_table('customer_sign_in_events', schema=None) as batch_op:
        batch_op.drop_index('ix_sign_ins_time')
        batch_op.drop_index('ix_sign_ins_device')
        batch_op.drop_index('ix_sign_ins_customer_time')

    op.drop_table('customer_sign_in_events')
    with op.batch_alter_table('customer_risk_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_risk_scores_as_of_overall')

    op.drop_table('customer_risk_scores')
    op.drop_table('customer_referral_codes')
    with op.batch_alter_table('customer_identity_checks', schema=None) as batch_op:
        batch_op.drop_index('ix_identity_checks_customer_time')

    op.drop_table('customer_identity_checks')
    with op.batch_alter_table('customer_account_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_account_changes_customer_time')

    op.drop_table('customer_account_changes')
    op.drop_table('risk_rules')
    op.drop_table('risk_list_entries')
