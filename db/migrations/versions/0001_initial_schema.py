"""Initial schema: every customer table, with constraints and dashboard indexes.

Revision ID: 0001
Revises: 
Create Date: 2026-11-27 22:05:40.976047
"""
from alembic import op
import sqlalchemy as sa


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('customer_service_level_agreements',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=True),
    sa.Column('loyalty_tier', sa.String(length=16), nullable=True),
    sa.Column('first_response_minutes', sa.Integer(), nullable=False),
    sa.Column('next_response_minutes', sa.Integer(), nullable=True),
    sa.Column('resolution_minutes', sa.Integer(), nullable=False),
    sa.Column('calendar', sa.JSON(), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(priority = 'low' OR priority = 'normal' OR priority = 'high' OR priority = 'urgent' OR priority = 'critical')", name=op.f('ck_customer_service_level_agreements_priority_valid')),
    sa.CheckConstraint("category IS NULL OR (category = 'order' OR category = 'delivery' OR category = 'returns' OR category = 'billing' OR category = 'product' OR category = 'account' OR category = 'technical' OR category = 'other')", name=op.f('ck_customer_service_level_agreements_category_valid')),
    sa.CheckConstraint("loyalty_tier IS NULL OR (loyalty_tier = 'bronze' OR loyalty_tier = 'silver' OR loyalty_tier = 'gold' OR loyalty_tier = 'platinum' OR loyalty_tier = 'diamond')", name=op.f('ck_customer_service_level_agreements_loyalty_tier_valid')),
    sa.CheckConstraint('first_response_minutes > 0', name=op.f('ck_customer_service_level_agreements_first_response_positive')),
    sa.CheckConstraint('resolution_minutes > 0', name=op.f('ck_customer_service_level_agreements_resolution_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_service_level_agreements')),
    sa.UniqueConstraint('name', name=op.f('uq_customer_service_level_agreements_name'))
    )
    op.create_table('customers',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('external_id', sa.String(length=100), nullable=True),
    sa.Column('first_name', sa.String(length=100), nullable=False),
    sa.Column('last_name', sa.String(length=100), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('phone', sa.String(length=32), nullable=True),
    sa.Column('date_of_birth', sa.Date(), nullable=True),
    sa.Column('gender', sa.String(length=16), nullable=True),
    sa.Column('country_code', sa.String(length=2), nullable=True),
    sa.Column('city', sa.String(length=100), nullable=True),
    sa.Column('preferred_language', sa.String(length=8), nullable=True),
    sa.Column('acquisition_channel', sa.String(length=32), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('merged_into_id', sa.Integer(), nullable=True),
    sa.Column('signed_up_at', sa.DateTime(), nullable=False),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('erased_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(acquisition_channel = 'organic_search' OR acquisition_channel = 'paid_search' OR acquisition_channel = 'social' OR acquisition_channel = 'email' OR acquisition_channel = 'referral' OR acquisition_channel = 'affiliate' OR acquisition_channel = 'direct' OR acquisition_channel = 'marketplace' OR acquisition_channel = 'import')", name=op.f('ck_customers_acquisition_channel_valid')),
    sa.CheckConstraint("(status = 'active' OR status = 'suspended' OR status = 'closed' OR status = 'merged' OR status = 'erased')", name=op.f('ck_customers_status_valid')),
    sa.CheckConstraint("gender IS NULL OR (gender = 'female' OR gender = 'male' OR gender = 'non_binary' OR gender = 'unknown')", name=op.f('ck_customers_gender_valid')),
    sa.CheckConstraint('merged_into_id IS NULL OR merged_into_id <> id', name=op.f('ck_customers_not_self_merged')),
    sa.ForeignKeyConstraint(['merged_into_id'], ['customers.id'], name=op.f('fk_customers_merged_into_id_customers'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customers')),
    sa.UniqueConstraint('external_id', name=op.f('uq_customers_external_id'))
    )
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.create_index('ix_customers_last_name', ['last_name', 'first_name'], unique=False)
        batch_op.create_index('ix_customers_signup', ['signed_up_at'], unique=False)
        batch_op.create_index('ix_customers_status_country', ['status', 'country_code'], unique=False)
    op.create_index('ix_customers_email_lower', 'customers', [sa.text('lower(email)')])

    op.create_table('products',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=200), nullable=False),
    sa.Column('category', sa.String(length=64), nullable=False),
    sa.Column('brand', sa.String(length=64), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('unit_cost', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint('unit_price >= 0', name=op.f('ck_products_price_non_negative')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_products')),
    sa.UniqueConstraint('sku', name=op.f('uq_products_sku'))
    )
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_products_category'), ['category'], unique=False)

    op.create_table('users',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('username', sa.String(length=64), nullable=False),
    sa.Column('full_name', sa.String(length=200), nullable=False),
    sa.Column('email', sa.String(length=254), nullable=True),
    sa.Column('role', sa.String(length=32), nullable=False),
    sa.Column('password_hash', sa.String(length=255), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('failed_login_count', sa.Integer(), nullable=False),
    sa.Column('locked_until', sa.DateTime(), nullable=True),
    sa.Column('last_login_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(role = 'admin' OR role = 'analyst' OR role = 'success_manager' OR role = 'support_agent' OR role = 'executive')", name=op.f('ck_users_role_valid')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_users')),
    sa.UniqueConstraint('username', name=op.f('uq_users_username'))
    )
    op.create_table('audit_log',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('occurred_at', sa.DateTime(), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('actor_username', sa.String(length=64), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('entity_type', sa.String(length=64), nullable=False),
    sa.Column('entity_id', sa.String(length=64), nullable=True),
    sa.Column('before', sa.JSON(), nullable=True),
    sa.Column('after', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_audit_log_actor_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_log'))
    )
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_audit_log_action'), ['action'], unique=False)
        batch_op.create_index('ix_audit_log_actor_time', ['actor_id', 'occurred_at'], unique=False)
        batch_op.create_index('ix_audit_log_entity', ['entity_type', 'entity_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_audit_log_occurred_at'), ['occurred_at'], unique=False)

    op.create_table('customer_account_health_scores',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('engagement', sa.Float(), nullable=False),
    sa.Column('satisfaction', sa.Float(), nullable=False),
    sa.Column('loyalty', sa.Float(), nullable=False),
    sa.Column('payment', sa.Float(), nullable=False),
    sa.Column('support', sa.Float(), nullable=False),
    sa.Column('overall', sa.Float(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('trend', sa.Float(), nullable=True),
    sa.Column('risk_indicators', sa.JSON(), nullable=True),
    sa.Column('recommendations', sa.JSON(), nullable=True),
    sa.Column('action_items', sa.JSON(), nullable=True),
    sa.CheckConstraint("(level = 'excellent' OR level = 'good' OR level = 'fair' OR level = 'poor' OR level = 'critical')", name=op.f('ck_customer_account_health_scores_level_valid')),
    sa.CheckConstraint('engagement BETWEEN 0 AND 100', name=op.f('ck_customer_account_health_scores_engagement_range')),
    sa.CheckConstraint('loyalty BETWEEN 0 AND 100', name=op.f('ck_customer_account_health_scores_loyalty_range')),
    sa.CheckConstraint('overall BETWEEN 0 AND 100', name=op.f('ck_customer_account_health_scores_overall_range')),
    sa.CheckConstraint('payment BETWEEN 0 AND 100', name=op.f('ck_customer_account_health_scores_payment_range')),
    sa.CheckConstraint('satisfaction BETWEEN 0 AND 100', name=op.f('ck_customer_account_health_scores_satisfaction_range')),
    sa.CheckConstraint('support BETWEEN 0 AND 100', name=op.f('ck_customer_account_health_scores_support_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_account_health_scores_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_account_health_scores')),
    sa.UniqueConstraint('customer_id', 'as_of', name='uq_health_customer_asof')
    )
    with op.batch_alter_table('customer_account_health_scores', schema=None) as batch_op:
        batch_op.create_index('ix_health_asof_level', ['as_of', 'level'], unique=False)

    op.create_table('customer_addresses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('line1', sa.String(length=200), nullable=False),
    sa.Column('line2', sa.String(length=200), nullable=True),
    sa.Column('city', sa.String(length=100), nullable=False),
    sa.Column('region', sa.String(length=100), nullable=True),
    sa.Column('postal_code', sa.String(length=20), nullable=True),
    sa.Column('country_code', sa.String(length=2), nullable=False),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('validation_status', sa.String(length=16), nullable=False),
    sa.Column('latitude', sa.Float(), nullable=True),
    sa.Column('longitude', sa.Float(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(kind = 'billing' OR kind = 'shipping')", name=op.f('ck_customer_addresses_kind_valid')),
    sa.CheckConstraint("(validation_status = 'unverified' OR validation_status = 'valid' OR validation_status = 'invalid' OR validation_status = 'corrected')", name=op.f('ck_customer_addresses_validation_status_valid')),
    sa.CheckConstraint('latitude IS NULL OR (latitude BETWEEN -90 AND 90)', name=op.f('ck_customer_addresses_latitude_range')),
    sa.CheckConstraint('longitude IS NULL OR (longitude BETWEEN -180 AND 180)', name=op.f('ck_customer_addresses_longitude_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_addresses_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_addresses'))
    )
    with op.batch_alter_table('customer_addresses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_addresses_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_analytics',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('order_count', sa.Integer(), nullable=False),
    sa.Column('total_revenue', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('avg_order_value', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('first_order_at', sa.DateTime(), nullable=True),
    sa.Column('last_order_at', sa.DateTime(), nullable=True),
    sa.Column('days_since_last_order', sa.Integer(), nullable=True),
    sa.Column('recency_score', sa.Integer(), nullable=True),
    sa.Column('frequency_score', sa.Integer(), nullable=True),
    sa.Column('monetary_score', sa.Integer(), nullable=True),
    sa.Column('rfm_segment', sa.String(length=32), nullable=True),
    sa.Column('sessions_90d', sa.Integer(), nullable=False),
    sa.Column('email_open_rate', sa.Float(), nullable=True),
    sa.Column('open_tickets', sa.Integer(), nullable=False),
    sa.Column('last_nps', sa.Integer(), nullable=True),
    sa.Column('preferred_category', sa.String(length=64), nullable=True),
    sa.Column('predicted_purchases_12m', sa.Float(), nullable=True),
    sa.Column('prob_alive', sa.Float(), nullable=True),
    sa.Column('clv_12m', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('historic_clv', sa.Numeric(precision=14, scale=2), nullable=True),
    sa.Column('churn_probability', sa.Float(), nullable=True),
    sa.Column('health_score', sa.Float(), nullable=True),
    sa.Column('health_level', sa.String(length=16), nullable=True),
    sa.Column('features', sa.JSON(), nullable=True),
    sa.Column('refreshed_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("health_level IS NULL OR (health_level = 'excellent' OR health_level = 'good' OR health_level = 'fair' OR health_level = 'poor' OR health_level = 'critical')", name=op.f('ck_customer_analytics_health_level_valid')),
    sa.CheckConstraint('frequency_score IS NULL OR frequency_score BETWEEN 1 AND 5', name=op.f('ck_customer_analytics_f_range')),
    sa.CheckConstraint('monetary_score IS NULL OR monetary_score BETWEEN 1 AND 5', name=op.f('ck_customer_analytics_m_range')),
    sa.CheckConstraint('recency_score IS NULL OR recency_score BETWEEN 1 AND 5', name=op.f('ck_customer_analytics_r_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_analytics_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_analytics'))
    )
    with op.batch_alter_table('customer_analytics', schema=None) as batch_op:
        batch_op.create_index('ix_analytics_revenue', ['total_revenue'], unique=False)
        batch_op.create_index('ix_analytics_rfm', ['rfm_segment'], unique=False)

    op.create_table('customer_communication_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('direction', sa.String(length=8), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('campaign', sa.String(length=100), nullable=True),
    sa.Column('template', sa.String(length=100), nullable=True),
    sa.Column('subject', sa.String(length=255), nullable=True),
    sa.Column('body', sa.Text(), nullable=True),
    sa.Column('sent_at', sa.DateTime(), nullable=False),
    sa.Column('delivered_at', sa.DateTime(), nullable=True),
    sa.Column('opened_at', sa.DateTime(), nullable=True),
    sa.Column('clicked_at', sa.DateTime(), nullable=True),
    sa.Column('replied_at', sa.DateTime(), nullable=True),
    sa.Column('logged_by_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("(channel = 'email' OR channel = 'sms' OR channel = 'call' OR channel = 'chat' OR channel = 'push' OR channel = 'in_app')", name=op.f('ck_customer_communication_history_channel_valid')),
    sa.CheckConstraint("(direction = 'inbound' OR direction = 'outbound')", name=op.f('ck_customer_communication_history_direction_valid')),
    sa.CheckConstraint("(status = 'sent' OR status = 'delivered' OR status = 'opened' OR status = 'clicked' OR status = 'replied' OR status = 'bounced' OR status = 'failed' OR status = 'logged')", name=op.f('ck_customer_communication_history_status_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_communication_history_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['logged_by_id'], ['users.id'], name=op.f('fk_customer_communication_history_logged_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_communication_history'))
    )
    with op.batch_alter_table('customer_communication_history', schema=None) as batch_op:
        batch_op.create_index('ix_comm_campaign', ['campaign'], unique=False)
        batch_op.create_index('ix_comm_customer_time', ['customer_id', 'sent_at'], unique=False)

    op.create_table('customer_data_subject_requests',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('request_type', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('received_at', sa.DateTime(), nullable=False),
    sa.Column('due_at', sa.DateTime(), nullable=False),
    sa.Column('completed_at', sa.DateTime(), nullable=True),
    sa.Column('handled_by_id', sa.Integer(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.Column('result', sa.JSON(), nullable=True),
    sa.CheckConstraint("(request_type = 'access' OR request_type = 'erasure' OR request_type = 'rectification' OR request_type = 'portability' OR request_type = 'restriction' OR request_type = 'objection')", name=op.f('ck_customer_data_subject_requests_request_type_valid')),
    sa.CheckConstraint("(status = 'received' OR status = 'in_progress' OR status = 'completed' OR status = 'rejected')", name=op.f('ck_customer_data_subject_requests_status_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_data_subject_requests_customer_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['handled_by_id'], ['users.id'], name=op.f('fk_customer_data_subject_requests_handled_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_data_subject_requests'))
    )
    with op.batch_alter_table('customer_data_subject_requests', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_data_subject_requests_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_dsr_status_due', ['status', 'due_at'], unique=False)

    op.create_table('customer_gdpr_compliance',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('purpose', sa.String(length=32), nullable=False),
    sa.Column('granted', sa.Boolean(), nullable=False),
    sa.Column('source', sa.String(length=32), nullable=False),
    sa.Column('legal_basis', sa.String(length=32), nullable=False),
    sa.Column('recorded_at', sa.DateTime(), nullable=False),
    sa.Column('recorded_by_id', sa.Integer(), nullable=True),
    sa.Column('notes', sa.Text(), nullable=True),
    sa.CheckConstraint("(purpose = 'marketing_email' OR purpose = 'marketing_sms' OR purpose = 'marketing_push' OR purpose = 'profiling' OR purpose = 'third_party_sharing' OR purpose = 'analytics')", name=op.f('ck_customer_gdpr_compliance_purpose_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_gdpr_compliance_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['recorded_by_id'], ['users.id'], name=op.f('fk_customer_gdpr_compliance_recorded_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_gdpr_compliance'))
    )
    with op.batch_alter_table('customer_gdpr_compliance', schema=None) as batch_op:
        batch_op.create_index('ix_consent_customer_purpose', ['customer_id', 'purpose', 'recorded_at'], unique=False)

    op.create_table('customer_lifecycle_history',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('from_stage', sa.String(length=16), nullable=True),
    sa.Column('to_stage', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('actor_kind', sa.String(length=8), nullable=False),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.CheckConstraint("(actor_kind = 'system' OR actor_kind = 'user')", name=op.f('ck_customer_lifecycle_history_actor_kind_valid')),
    sa.CheckConstraint("(to_stage = 'prospect' OR to_stage = 'new_customer' OR to_stage = 'active' OR to_stage = 'at_risk' OR to_stage = 'inactive' OR to_stage = 'churned' OR to_stage = 'win_back' OR to_stage = 'loyal' OR to_stage = 'champion')", name=op.f('ck_customer_lifecycle_history_to_stage_valid')),
    sa.CheckConstraint("from_stage IS NULL OR (from_stage = 'prospect' OR from_stage = 'new_customer' OR from_stage = 'active' OR from_stage = 'at_risk' OR from_stage = 'inactive' OR from_stage = 'churned' OR from_stage = 'win_back' OR from_stage = 'loyal' OR from_stage = 'champion')", name=op.f('ck_customer_lifecycle_history_from_stage_valid')),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_customer_lifecycle_history_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_lifecycle_history_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_lifecycle_history'))
    )
    with op.batch_alter_table('customer_lifecycle_history', schema=None) as batch_op:
        batch_op.create_index('ix_lifecycle_history_customer', ['customer_id', 'changed_at'], unique=False)
        batch_op.create_index('ix_lifecycle_history_time', ['changed_at'], unique=False)

    op.create_table('customer_lifecycle_stages',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('stage', sa.String(length=16), nullable=False),
    sa.Column('entered_at', sa.DateTime(), nullable=False),
    sa.Column('reason', sa.String(length=255), nullable=False),
    sa.Column('engagement_score', sa.Float(), nullable=True),
    sa.Column('loyalty_score', sa.Float(), nullable=True),
    sa.Column('churn_score', sa.Float(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(stage = 'prospect' OR stage = 'new_customer' OR stage = 'active' OR stage = 'at_risk' OR stage = 'inactive' OR stage = 'churned' OR stage = 'win_back' OR stage = 'loyal' OR stage = 'champion')", name=op.f('ck_customer_lifecycle_stages_stage_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_lifecycle_stages_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_lifecycle_stages'))
    )
    with op.batch_alter_table('customer_lifecycle_stages', schema=None) as batch_op:
        batch_op.create_index('ix_lifecycle_stage', ['stage'], unique=False)

    op.create_table('customer_loyalty_programs',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('program', sa.String(length=64), nullable=False),
    sa.Column('tier', sa.String(length=16), nullable=False),
    sa.Column('points_balance', sa.Integer(), nullable=False),
    sa.Column('lifetime_points', sa.Integer(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('enrolled_at', sa.DateTime(), nullable=False),
    sa.Column('tier_updated_at', sa.DateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(status = 'active' OR status = 'suspended' OR status = 'closed')", name=op.f('ck_customer_loyalty_programs_status_valid')),
    sa.CheckConstraint("(tier = 'bronze' OR tier = 'silver' OR tier = 'gold' OR tier = 'platinum' OR tier = 'diamond')", name=op.f('ck_customer_loyalty_programs_tier_valid')),
    sa.CheckConstraint('lifetime_points >= 0', name=op.f('ck_customer_loyalty_programs_lifetime_non_negative')),
    sa.CheckConstraint('points_balance >= 0', name=op.f('ck_customer_loyalty_programs_balance_non_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_loyalty_programs_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_loyalty_programs')),
    sa.UniqueConstraint('customer_id', name=op.f('uq_customer_loyalty_programs_customer_id'))
    )
    with op.batch_alter_table('customer_loyalty_programs', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_tier', ['tier'], unique=False)

    op.create_table('customer_payment_methods',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('processor', sa.String(length=32), nullable=False),
    sa.Column('processor_token', sa.String(length=128), nullable=False),
    sa.Column('brand', sa.String(length=16), nullable=False),
    sa.Column('last4', sa.String(length=4), nullable=True),
    sa.Column('exp_month', sa.Integer(), nullable=True),
    sa.Column('exp_year', sa.Integer(), nullable=True),
    sa.Column('fingerprint', sa.String(length=64), nullable=True),
    sa.Column('is_default', sa.Boolean(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(brand = 'visa' OR brand = 'mastercard' OR brand = 'amex' OR brand = 'discover' OR brand = 'paypal' OR brand = 'other')", name=op.f('ck_customer_payment_methods_brand_valid')),
    sa.CheckConstraint("(status = 'active' OR status = 'expired' OR status = 'removed')", name=op.f('ck_customer_payment_methods_status_valid')),
    sa.CheckConstraint('exp_month IS NULL OR exp_month BETWEEN 1 AND 12', name=op.f('ck_customer_payment_methods_exp_month_range')),
    sa.CheckConstraint('last4 IS NULL OR length(last4) = 4', name=op.f('ck_customer_payment_methods_last4_length')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_payment_methods_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_payment_methods')),
    sa.UniqueConstraint('processor_token', name=op.f('uq_customer_payment_methods_processor_token'))
    )
    with op.batch_alter_table('customer_payment_methods', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_payment_methods_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_payment_methods_fingerprint'), ['fingerprint'], unique=False)

    op.create_table('customer_preference_centers',
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('email_opt_in', sa.Boolean(), nullable=False),
    sa.Column('sms_opt_in', sa.Boolean(), nullable=False),
    sa.Column('push_opt_in', sa.Boolean(), nullable=False),
    sa.Column('phone_opt_in', sa.Boolean(), nullable=False),
    sa.Column('contact_frequency', sa.String(length=8), nullable=False),
    sa.Column('preferred_channel', sa.String(length=8), nullable=True),
    sa.Column('preferred_language', sa.String(length=8), nullable=True),
    sa.Column('interests', sa.JSON(), nullable=True),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(contact_frequency = 'daily' OR contact_frequency = 'weekly' OR contact_frequency = 'monthly' OR contact_frequency = 'never')", name=op.f('ck_customer_preference_centers_contact_frequency_valid')),
    sa.CheckConstraint("preferred_channel IS NULL OR (preferred_channel = 'email' OR preferred_channel = 'sms' OR preferred_channel = 'call' OR preferred_channel = 'chat' OR preferred_channel = 'push' OR preferred_channel = 'in_app')", name=op.f('ck_customer_preference_centers_preferred_channel_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_preference_centers_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('customer_id', name=op.f('pk_customer_preference_centers'))
    )
    op.create_table('customer_referral_program',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('referrer_id', sa.Integer(), nullable=False),
    sa.Column('referred_id', sa.Integer(), nullable=True),
    sa.Column('referral_code', sa.String(length=32), nullable=False),
    sa.Column('referred_email', sa.String(length=254), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('reward_points', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('converted_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("(status = 'pending' OR status = 'signed_up' OR status = 'converted' OR status = 'rewarded' OR status = 'expired')", name=op.f('ck_customer_referral_program_status_valid')),
    sa.CheckConstraint('referred_id IS NULL OR referred_id <> referrer_id', name=op.f('ck_customer_referral_program_not_self')),
    sa.CheckConstraint('reward_points >= 0', name=op.f('ck_customer_referral_program_reward_non_negative')),
    sa.ForeignKeyConstraint(['referred_id'], ['customers.id'], name=op.f('fk_customer_referral_program_referred_id_customers'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['referrer_id'], ['customers.id'], name=op.f('fk_customer_referral_program_referrer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_referral_program')),
    sa.UniqueConstraint('referral_code', name=op.f('uq_customer_referral_program_referral_code')),
    sa.UniqueConstraint('referred_id', name=op.f('uq_customer_referral_program_referred_id'))
    )
    with op.batch_alter_table('customer_referral_program', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_referral_program_referrer_id'), ['referrer_id'], unique=False)

    op.create_table('customer_risk_assessments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('risk_type', sa.String(length=16), nullable=False),
    sa.Column('score', sa.Float(), nullable=False),
    sa.Column('level', sa.String(length=16), nullable=False),
    sa.Column('factors', sa.JSON(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('assessed_at', sa.DateTime(), nullable=False),
    sa.Column('reviewed_by_id', sa.Integer(), nullable=True),
    sa.Column('reviewed_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("(level = 'low' OR level = 'medium' OR level = 'high' OR level = 'critical')", name=op.f('ck_customer_risk_assessments_level_valid')),
    sa.CheckConstraint("(risk_type = 'fraud' OR risk_type = 'credit' OR risk_type = 'chargeback' OR risk_type = 'abuse' OR risk_type = 'compliance')", name=op.f('ck_customer_risk_assessments_risk_type_valid')),
    sa.CheckConstraint("(status = 'open' OR status = 'reviewed' OR status = 'cleared' OR status = 'confirmed')", name=op.f('ck_customer_risk_assessments_status_valid')),
    sa.CheckConstraint('score BETWEEN 0 AND 100', name=op.f('ck_customer_risk_assessments_score_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_risk_assessments_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['reviewed_by_id'], ['users.id'], name=op.f('fk_customer_risk_assessments_reviewed_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_risk_assessments'))
    )
    with op.batch_alter_table('customer_risk_assessments', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_risk_assessments_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_segments',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('segment_type', sa.String(length=32), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('rules', sa.JSON(), nullable=True),
    sa.Column('priority', sa.Integer(), nullable=False),
    sa.Column('owner_id', sa.Integer(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('is_system', sa.Boolean(), nullable=False),
    sa.Column('last_refreshed_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(kind = 'dynamic' OR kind = 'static')", name=op.f('ck_customer_segments_kind_valid')),
    sa.CheckConstraint("(segment_type = 'demographic' OR segment_type = 'behavioural' OR segment_type = 'geographic' OR segment_type = 'psychographic' OR segment_type = 'transactional' OR segment_type = 'lifecycle' OR segment_type = 'value_based' OR segment_type = 'custom' OR segment_type = 'rfm' OR segment_type = 'cluster')", name=op.f('ck_customer_segments_segment_type_valid')),
    sa.ForeignKeyConstraint(['owner_id'], ['users.id'], name=op.f('fk_customer_segments_owner_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_segments')),
    sa.UniqueConstraint('name', name=op.f('uq_customer_segments_name'))
    )
    op.create_table('customer_social_media_integrations',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('handle', sa.String(length=100), nullable=False),
    sa.Column('profile_url', sa.String(length=500), nullable=True),
    sa.Column('followers', sa.Integer(), nullable=False),
    sa.Column('is_verified', sa.Boolean(), nullable=False),
    sa.Column('connected_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(platform = 'twitter' OR platform = 'facebook' OR platform = 'instagram' OR platform = 'linkedin' OR platform = 'tiktok' OR platform = 'youtube')", name=op.f('ck_customer_social_media_integrations_platform_valid')),
    sa.CheckConstraint('followers >= 0', name=op.f('ck_customer_social_media_integrations_followers_non_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_social_media_integrations_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_social_media_integrations')),
    sa.UniqueConstraint('platform', 'handle', name='uq_social_platform_handle')
    )
    with op.batch_alter_table('customer_social_media_integrations', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_social_media_integrations_customer_id'), ['customer_id'], unique=False)

    op.create_table('ml_models',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('algorithm', sa.String(length=64), nullable=False),
    sa.Column('params', sa.JSON(), nullable=True),
    sa.Column('features', sa.JSON(), nullable=True),
    sa.Column('training_start', sa.Date(), nullable=True),
    sa.Column('training_end', sa.Date(), nullable=True),
    sa.Column('metrics', sa.JSON(), nullable=True),
    sa.Column('artifact', sa.LargeBinary(), nullable=True),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.CheckConstraint("(name = 'churn' OR name = 'clv' OR name = 'forecast' OR name = 'health' OR name = 'cluster')", name=op.f('ck_ml_models_name_valid')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_ml_models_created_by_id_users'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_ml_models')),
    sa.UniqueConstraint('name', 'version', name='uq_ml_models_name_version')
    )
    op.create_table('orders',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_number', sa.String(length=64), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('ordered_at', sa.DateTime(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=16), nullable=False),
    sa.Column('currency', sa.String(length=3), nullable=False),
    sa.Column('subtotal', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('discount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('shipping', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('item_count', sa.Integer(), nullable=False),
    sa.CheckConstraint("(channel = 'web' OR channel = 'mobile' OR channel = 'store' OR channel = 'marketplace' OR channel = 'phone')", name=op.f('ck_orders_channel_valid')),
    sa.CheckConstraint("(status = 'placed' OR status = 'paid' OR status = 'shipped' OR status = 'delivered' OR status = 'cancelled' OR status = 'returned' OR status = 'refunded')", name=op.f('ck_orders_status_valid')),
    sa.CheckConstraint('total >= 0', name=op.f('ck_orders_total_non_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_orders_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('order_number', name=op.f('uq_orders_order_number'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index('ix_orders_customer_time', ['customer_id', 'ordered_at'], unique=False)
        batch_op.create_index('ix_orders_time', ['ordered_at'], unique=False)

    op.create_table('web_sessions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('started_at', sa.DateTime(), nullable=False),
    sa.Column('duration_seconds', sa.Integer(), nullable=False),
    sa.Column('page_views', sa.Integer(), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('device', sa.String(length=16), nullable=False),
    sa.Column('converted', sa.Boolean(), nullable=False),
    sa.CheckConstraint("(device = 'desktop' OR device = 'mobile' OR device = 'tablet')", name=op.f('ck_web_sessions_device_valid')),
    sa.CheckConstraint("(source = 'direct' OR source = 'organic' OR source = 'paid_search' OR source = 'social' OR source = 'email' OR source = 'referral')", name=op.f('ck_web_sessions_source_valid')),
    sa.CheckConstraint('duration_seconds >= 0', name=op.f('ck_web_sessions_duration_non_negative')),
    sa.CheckConstraint('page_views >= 0', name=op.f('ck_web_sessions_page_views_non_negative')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_web_sessions_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_web_sessions'))
    )
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.create_index('ix_web_sessions_customer_time', ['customer_id', 'started_at'], unique=False)

    op.create_table('customer_churn_predictions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('model_id', sa.Integer(), nullable=True),
    sa.Column('as_of', sa.Date(), nullable=False),
    sa.Column('horizon_days', sa.Integer(), nullable=False),
    sa.Column('probability', sa.Float(), nullable=False),
    sa.Column('risk_level', sa.String(length=16), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=True),
    sa.Column('drivers', sa.JSON(), nullable=True),
    sa.Column('interventions', sa.JSON(), nullable=True),
    sa.Column('actual_churned', sa.Boolean(), nullable=True),
    sa.Column('evaluated_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("(risk_level = 'low' OR risk_level = 'medium' OR risk_level = 'high' OR risk_level = 'critical')", name=op.f('ck_customer_churn_predictions_risk_level_valid')),
    sa.CheckConstraint('probability BETWEEN 0 AND 1', name=op.f('ck_customer_churn_predictions_probability_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_churn_predictions_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['model_id'], ['ml_models.id'], name=op.f('fk_customer_churn_predictions_model_id_ml_models'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_churn_predictions'))
    )
    with op.batch_alter_table('customer_churn_predictions', schema=None) as batch_op:
        batch_op.create_index('ix_churn_asof_risk', ['as_of', 'risk_level'], unique=False)
        batch_op.create_index('ix_churn_customer_asof', ['customer_id', 'as_of'], unique=False)

    op.create_table('customer_loyalty_tier_changes',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('from_tier', sa.String(length=16), nullable=True),
    sa.Column('to_tier', sa.String(length=16), nullable=False),
    sa.Column('changed_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(to_tier = 'bronze' OR to_tier = 'silver' OR to_tier = 'gold' OR to_tier = 'platinum' OR to_tier = 'diamond')", name=op.f('ck_customer_loyalty_tier_changes_to_tier_valid')),
    sa.CheckConstraint("from_tier IS NULL OR (from_tier = 'bronze' OR from_tier = 'silver' OR from_tier = 'gold' OR from_tier = 'platinum' OR from_tier = 'diamond')", name=op.f('ck_customer_loyalty_tier_changes_from_tier_valid')),
    sa.ForeignKeyConstraint(['account_id'], ['customer_loyalty_programs.id'], name=op.f('fk_customer_loyalty_tier_changes_account_id_customer_loyalty_programs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_loyalty_tier_changes'))
    )
    with op.batch_alter_table('customer_loyalty_tier_changes', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_loyalty_tier_changes_account_id'), ['account_id'], unique=False)

    op.create_table('customer_loyalty_transactions',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('account_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.Column('points', sa.Integer(), nullable=False),
    sa.Column('balance_after', sa.Integer(), nullable=False),
    sa.Column('source_type', sa.String(length=32), nullable=True),
    sa.Column('source_id', sa.String(length=64), nullable=True),
    sa.Column('idempotency_key', sa.String(length=128), nullable=True),
    sa.Column('reason', sa.String(length=255), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(kind = 'earn' OR kind = 'redeem' OR kind = 'expire' OR kind = 'adjust' OR kind = 'reverse')", name=op.f('ck_customer_loyalty_transactions_kind_valid')),
    sa.CheckConstraint('balance_after >= 0', name=op.f('ck_customer_loyalty_transactions_balance_after_non_negative')),
    sa.CheckConstraint('points <> 0', name=op.f('ck_customer_loyalty_transactions_points_non_zero')),
    sa.ForeignKeyConstraint(['account_id'], ['customer_loyalty_programs.id'], name=op.f('fk_customer_loyalty_transactions_account_id_customer_loyalty_programs'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_customer_loyalty_transactions_approved_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_customer_loyalty_transactions_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_loyalty_transactions_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_loyalty_transactions')),
    sa.UniqueConstraint('idempotency_key', name=op.f('uq_customer_loyalty_transactions_idempotency_key'))
    )
    with op.batch_alter_table('customer_loyalty_transactions', schema=None) as batch_op:
        batch_op.create_index('ix_loyalty_tx_customer_time', ['customer_id', 'created_at'], unique=False)

    op.create_table('customer_segment_memberships',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('confidence', sa.Float(), nullable=False),
    sa.Column('assignment', sa.String(length=8), nullable=False),
    sa.Column('is_active', sa.Boolean(), nullable=False),
    sa.Column('entered_at', sa.DateTime(), nullable=False),
    sa.Column('left_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("(assignment = 'auto' OR assignment = 'manual')", name=op.f('ck_customer_segment_memberships_assignment_valid')),
    sa.CheckConstraint('confidence BETWEEN 0 AND 1', name=op.f('ck_customer_segment_memberships_confidence_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_segment_memberships_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['segment_id'], ['customer_segments.id'], name=op.f('fk_customer_segment_memberships_segment_id_customer_segments'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_segment_memberships'))
    )
    with op.batch_alter_table('customer_segment_memberships', schema=None) as batch_op:
        batch_op.create_index('ix_memberships_customer', ['customer_id', 'is_active'], unique=False)
        batch_op.create_index('ix_memberships_segment_active', ['segment_id', 'is_active'], unique=False)

    op.create_table('customer_social_media_mentions',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('social_account_id', sa.Integer(), nullable=True),
    sa.Column('customer_id', sa.Integer(), nullable=True),
    sa.Column('platform', sa.String(length=16), nullable=False),
    sa.Column('posted_at', sa.DateTime(), nullable=False),
    sa.Column('text', sa.Text(), nullable=False),
    sa.Column('url', sa.String(length=500), nullable=True),
    sa.Column('reach', sa.Integer(), nullable=False),
    sa.Column('sentiment_score', sa.Float(), nullable=True),
    sa.Column('sentiment_label', sa.String(length=16), nullable=True),
    sa.CheckConstraint("(platform = 'twitter' OR platform = 'facebook' OR platform = 'instagram' OR platform = 'linkedin' OR platform = 'tiktok' OR platform = 'youtube')", name=op.f('ck_customer_social_media_mentions_platform_valid')),
    sa.CheckConstraint("sentiment_label IS NULL OR (sentiment_label = 'positive' OR sentiment_label = 'neutral' OR sentiment_label = 'negative')", name=op.f('ck_customer_social_media_mentions_sentiment_label_valid')),
    sa.CheckConstraint('sentiment_score IS NULL OR sentiment_score BETWEEN -1 AND 1', name=op.f('ck_customer_social_media_mentions_sentiment_range')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_social_media_mentions_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['social_account_id'], ['customer_social_media_integrations.id'], name=op.f('fk_customer_social_media_mentions_social_account_id_customer_social_media_integrations'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_social_media_mentions'))
    )
    with op.batch_alter_table('customer_social_media_mentions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_social_media_mentions_customer_id'), ['customer_id'], unique=False)
        batch_op.create_index('ix_mentions_time', ['posted_at'], unique=False)

    op.create_table('customer_support_tickets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_number', sa.String(length=32), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('subject', sa.String(length=255), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('category', sa.String(length=16), nullable=False),
    sa.Column('priority', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('department', sa.String(length=64), nullable=True),
    sa.Column('assignee_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('product_id', sa.Integer(), nullable=True),
    sa.Column('sla_id', sa.Integer(), nullable=True),
    sa.Column('first_response_due_at', sa.DateTime(), nullable=True),
    sa.Column('next_response_due_at', sa.DateTime(), nullable=True),
    sa.Column('resolution_due_at', sa.DateTime(), nullable=True),
    sa.Column('first_responded_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.Column('sla_paused_since', sa.DateTime(), nullable=True),
    sa.Column('sla_breached', sa.Boolean(), nullable=False),
    sa.Column('csat_rating', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(category = 'order' OR category = 'delivery' OR category = 'returns' OR category = 'billing' OR category = 'product' OR category = 'account' OR category = 'technical' OR category = 'other')", name=op.f('ck_customer_support_tickets_category_valid')),
    sa.CheckConstraint("(channel = 'email' OR channel = 'chat' OR channel = 'phone' OR channel = 'web' OR channel = 'social')", name=op.f('ck_customer_support_tickets_channel_valid')),
    sa.CheckConstraint("(priority = 'low' OR priority = 'normal' OR priority = 'high' OR priority = 'urgent' OR priority = 'critical')", name=op.f('ck_customer_support_tickets_priority_valid')),
    sa.CheckConstraint("(status = 'new' OR status = 'open' OR status = 'pending_customer' OR status = 'on_hold' OR status = 'resolved' OR status = 'closed' OR status = 'reopened')", name=op.f('ck_customer_support_tickets_status_valid')),
    sa.CheckConstraint('csat_rating IS NULL OR csat_rating BETWEEN 1 AND 5', name=op.f('ck_customer_support_tickets_csat_range')),
    sa.ForeignKeyConstraint(['assignee_id'], ['users.id'], name=op.f('fk_customer_support_tickets_assignee_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_support_tickets_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_customer_support_tickets_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_customer_support_tickets_product_id_products'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['sla_id'], ['customer_service_level_agreements.id'], name=op.f('fk_customer_support_tickets_sla_id_customer_service_level_agreements'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_support_tickets')),
    sa.UniqueConstraint('ticket_number', name=op.f('uq_customer_support_tickets_ticket_number'))
    )
    with op.batch_alter_table('customer_support_tickets', schema=None) as batch_op:
        batch_op.create_index('ix_tickets_assignee_status', ['assignee_id', 'status'], unique=False)
        batch_op.create_index('ix_tickets_created', ['created_at'], unique=False)
        batch_op.create_index('ix_tickets_customer', ['customer_id', 'created_at'], unique=False)
        batch_op.create_index('ix_tickets_status_priority', ['status', 'priority'], unique=False)

    op.create_table('customer_winback_campaigns',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=120), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('segment_id', sa.Integer(), nullable=True),
    sa.Column('channel', sa.String(length=8), nullable=False),
    sa.Column('offer_type', sa.String(length=32), nullable=False),
    sa.Column('offer_value', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('control_fraction', sa.Float(), nullable=False),
    sa.Column('starts_at', sa.DateTime(), nullable=True),
    sa.Column('ends_at', sa.DateTime(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), server_default=sa.text('(CURRENT_TIMESTAMP)'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(channel = 'email' OR channel = 'sms' OR channel = 'call' OR channel = 'chat' OR channel = 'push' OR channel = 'in_app')", name=op.f('ck_customer_winback_campaigns_channel_valid')),
    sa.CheckConstraint("(status = 'draft' OR status = 'scheduled' OR status = 'running' OR status = 'completed' OR status = 'cancelled')", name=op.f('ck_customer_winback_campaigns_status_valid')),
    sa.CheckConstraint('control_fraction BETWEEN 0 AND 0.9', name=op.f('ck_customer_winback_campaigns_control_fraction_range')),
    sa.CheckConstraint('offer_value >= 0', name=op.f('ck_customer_winback_campaigns_offer_value_non_negative')),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_customer_winback_campaigns_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['segment_id'], ['customer_segments.id'], name=op.f('fk_customer_winback_campaigns_segment_id_customer_segments'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_winback_campaigns')),
    sa.UniqueConstraint('name', name=op.f('uq_customer_winback_campaigns_name'))
    )
    op.create_table('order_items',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('product_id', sa.Integer(), nullable=True),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('unit_price', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('line_total', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.CheckConstraint('quantity > 0', name=op.f('ck_order_items_quantity_positive')),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_order_items_order_id_orders'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['product_id'], ['products.id'], name=op.f('fk_order_items_product_id_products'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_order_items'))
    )
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_order_items_order_id'), ['order_id'], unique=False)

    op.create_table('customer_complaint_management',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('order_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('category', sa.String(length=32), nullable=False),
    sa.Column('severity', sa.String(length=16), nullable=False),
    sa.Column('description', sa.Text(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('resolution', sa.Text(), nullable=True),
    sa.Column('compensation_kind', sa.String(length=16), nullable=False),
    sa.Column('compensation_amount', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.Column('approved_by_id', sa.Integer(), nullable=True),
    sa.Column('created_by_id', sa.Integer(), nullable=True),
    sa.Column('resolution_due_at', sa.DateTime(), nullable=True),
    sa.Column('resolved_at', sa.DateTime(), nullable=True),
    sa.Column('satisfaction', sa.Integer(), nullable=True),
    sa.Column('escalation_level', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("(compensation_kind = 'none' OR compensation_kind = 'refund' OR compensation_kind = 'voucher' OR compensation_kind = 'points' OR compensation_kind = 'replacement')", name=op.f('ck_customer_complaint_management_compensation_kind_valid')),
    sa.CheckConstraint("(severity = 'low' OR severity = 'medium' OR severity = 'high' OR severity = 'critical')", name=op.f('ck_customer_complaint_management_severity_valid')),
    sa.CheckConstraint("(status = 'open' OR status = 'investigating' OR status = 'escalated' OR status = 'resolved' OR status = 'closed')", name=op.f('ck_customer_complaint_management_status_valid')),
    sa.CheckConstraint('compensation_amount >= 0', name=op.f('ck_customer_complaint_management_compensation_non_negative')),
    sa.CheckConstraint('satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5', name=op.f('ck_customer_complaint_management_satisfaction_range')),
    sa.ForeignKeyConstraint(['approved_by_id'], ['users.id'], name=op.f('fk_customer_complaint_management_approved_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['created_by_id'], ['users.id'], name=op.f('fk_customer_complaint_management_created_by_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_complaint_management_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['order_id'], ['orders.id'], name=op.f('fk_customer_complaint_management_order_id_orders'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_customer_complaint_management_ticket_id_customer_support_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_complaint_management'))
    )
    with op.batch_alter_table('customer_complaint_management', schema=None) as batch_op:
        batch_op.create_index('ix_complaints_status', ['status', 'severity'], unique=False)
        batch_op.create_index(batch_op.f('ix_customer_complaint_management_customer_id'), ['customer_id'], unique=False)

    op.create_table('customer_support_ticket_events',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.Column('actor_id', sa.Integer(), nullable=True),
    sa.Column('occurred_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['actor_id'], ['users.id'], name=op.f('fk_customer_support_ticket_events_actor_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_customer_support_ticket_events_ticket_id_customer_support_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_support_ticket_events'))
    )
    with op.batch_alter_table('customer_support_ticket_events', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_events_ticket', ['ticket_id', 'occurred_at'], unique=False)

    op.create_table('customer_support_ticket_responses',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('author_kind', sa.String(length=8), nullable=False),
    sa.Column('author_user_id', sa.Integer(), nullable=True),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('is_internal', sa.Boolean(), nullable=False),
    sa.Column('is_read', sa.Boolean(), nullable=False),
    sa.Column('attachment_path', sa.String(length=500), nullable=True),
    sa.Column('attachment_name', sa.String(length=255), nullable=True),
    sa.Column('attachment_type', sa.String(length=100), nullable=True),
    sa.Column('attachment_size', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(author_kind = 'agent' OR author_kind = 'customer' OR author_kind = 'system')", name=op.f('ck_customer_support_ticket_responses_author_kind_valid')),
    sa.CheckConstraint('attachment_size IS NULL OR attachment_size >= 0', name=op.f('ck_customer_support_ticket_responses_attachment_size_non_negative')),
    sa.ForeignKeyConstraint(['author_user_id'], ['users.id'], name=op.f('fk_customer_support_ticket_responses_author_user_id_users'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_customer_support_ticket_responses_ticket_id_customer_support_tickets'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_support_ticket_responses'))
    )
    with op.batch_alter_table('customer_support_ticket_responses', schema=None) as batch_op:
        batch_op.create_index('ix_ticket_responses_ticket', ['ticket_id', 'created_at'], unique=False)

    op.create_table('customer_survey_responses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('survey_type', sa.String(length=8), nullable=False),
    sa.Column('score', sa.Integer(), nullable=False),
    sa.Column('comment', sa.Text(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('follow_up_ticket_id', sa.Integer(), nullable=True),
    sa.Column('responded_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("(survey_type = 'nps' AND score BETWEEN 0 AND 10) OR (survey_type = 'csat' AND score BETWEEN 1 AND 5)", name=op.f('ck_customer_survey_responses_score_range')),
    sa.CheckConstraint("(survey_type = 'nps' OR survey_type = 'csat')", name=op.f('ck_customer_survey_responses_survey_type_valid')),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_survey_responses_customer_id_customers'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['follow_up_ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_customer_survey_responses_follow_up_ticket_id_customer_support_tickets'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['ticket_id'], ['customer_support_tickets.id'], name=op.f('fk_customer_survey_responses_ticket_id_customer_support_tickets'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_survey_responses'))
    )
    with op.batch_alter_table('customer_survey_responses', schema=None) as batch_op:
        batch_op.create_index('ix_surveys_customer', ['customer_id', 'responded_at'], unique=False)
        batch_op.create_index('ix_surveys_type_time', ['survey_type', 'responded_at'], unique=False)

    op.create_table('customer_winback_targets',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('campaign_id', sa.Integer(), nullable=False),
    sa.Column('customer_id', sa.Integer(), nullable=False),
    sa.Column('target_group', sa.String(length=16), nullable=False),
    sa.Column('assigned_at', sa.DateTime(), nullable=False),
    sa.Column('contacted_at', sa.DateTime(), nullable=True),
    sa.Column('converted_at', sa.DateTime(), nullable=True),
    sa.Column('revenue_after', sa.Numeric(precision=14, scale=2), nullable=False),
    sa.CheckConstraint("(target_group = 'treatment' OR target_group = 'control')", name=op.f('ck_customer_winback_targets_target_group_valid')),
    sa.ForeignKeyConstraint(['campaign_id'], ['customer_winback_campaigns.id'], name=op.f('fk_customer_winback_targets_campaign_id_customer_winback_campaigns'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['customer_id'], ['customers.id'], name=op.f('fk_customer_winback_targets_customer_id_customers'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_customer_winback_targets')),
    sa.UniqueConstraint('campaign_id', 'customer_id', name='uq_winback_target')
    )
    with op.batch_alter_table('customer_winback_targets', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_winback_targets_customer_id'), ['customer_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('customer_winback_targets', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_winback_targets_customer_id'))

    op.drop_table('customer_winback_targets')
    with op.batch_alter_table('customer_survey_responses', schema=None) as batch_op:
        batch_op.drop_index('ix_surveys_type_time')
        batch_op.drop_index('ix_surveys_customer')

    op.drop_table('customer_survey_responses')
    with op.batch_alter_table('customer_support_ticket_responses', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_responses_ticket')

    op.drop_table('customer_support_ticket_responses')
    with op.batch_alter_table('customer_support_ticket_events', schema=None) as batch_op:
        batch_op.drop_index('ix_ticket_events_ticket')

    op.drop_table('customer_support_ticket_events')
    with op.batch_alter_table('customer_complaint_management', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_complaint_management_customer_id'))
        batch_op.drop_index('ix_complaints_status')

    op.drop_table('customer_complaint_management')
    with op.batch_alter_table('order_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_order_items_order_id'))

    op.drop_table('order_items')
    op.drop_table('customer_winback_campaigns')
    with op.batch_alter_table('customer_support_tickets', schema=None) as batch_op:
        batch_op.drop_index('ix_tickets_status_priority')
        batch_op.drop_index('ix_tickets_customer')
        batch_op.drop_index('ix_tickets_created')
        batch_op.drop_index('ix_tickets_assignee_status')

    op.drop_table('customer_support_tickets')
    with op.batch_alter_table('customer_social_media_mentions', schema=None) as batch_op:
        batch_op.drop_index('ix_mentions_time')
        batch_op.drop_index(batch_op.f('ix_customer_social_media_mentions_customer_id'))

    op.drop_table('customer_social_media_mentions')
    with op.batch_alter_table('customer_segment_memberships', schema=None) as batch_op:
        batch_op.drop_index('ix_memberships_segment_active')
        batch_op.drop_index('ix_memberships_customer')

    op.drop_table('customer_segment_memberships')
    with op.batch_alter_table('customer_loyalty_transactions', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_tx_customer_time')

    op.drop_table('customer_loyalty_transactions')
    with op.batch_alter_table('customer_loyalty_tier_changes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_loyalty_tier_changes_account_id'))

    op.drop_table('customer_loyalty_tier_changes')
    with op.batch_alter_table('customer_churn_predictions', schema=None) as batch_op:
        batch_op.drop_index('ix_churn_customer_asof')
        batch_op.drop_index('ix_churn_asof_risk')

    op.drop_table('customer_churn_predictions')
    with op.batch_alter_table('web_sessions', schema=None) as batch_op:
        batch_op.drop_index('ix_web_sessions_customer_time')

    op.drop_table('web_sessions')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index('ix_orders_time')
        batch_op.drop_index('ix_orders_customer_time')

    op.drop_table('orders')
    op.drop_table('ml_models')
    with op.batch_alter_table('customer_social_media_integrations', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_social_media_integrations_customer_id'))

    op.drop_table('customer_social_media_integrations')
    op.drop_table('customer_segments')
    with op.batch_alter_table('customer_risk_assessments', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_risk_assessments_customer_id'))

    op.drop_table('customer_risk_assessments')
    with op.batch_alter_table('customer_referral_program', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_referral_program_referrer_id'))

    op.drop_table('customer_referral_program')
    op.drop_table('customer_preference_centers')
    with op.batch_alter_table('customer_payment_methods', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_payment_methods_fingerprint'))
        batch_op.drop_index(batch_op.f('ix_customer_payment_methods_customer_id'))

    op.drop_table('customer_payment_methods')
    with op.batch_alter_table('customer_loyalty_programs', schema=None) as batch_op:
        batch_op.drop_index('ix_loyalty_tier')

    op.drop_table('customer_loyalty_programs')
    with op.batch_alter_table('customer_lifecycle_stages', schema=None) as batch_op:
        batch_op.drop_index('ix_lifecycle_stage')

    op.drop_table('customer_lifecycle_stages')
    with op.batch_alter_table('customer_lifecycle_history', schema=None) as batch_op:
        batch_op.drop_index('ix_lifecycle_history_time')
        batch_op.drop_index('ix_lifecycle_history_customer')

    op.drop_table('customer_lifecycle_history')
    with op.batch_alter_table('customer_gdpr_compliance', schema=None) as batch_op:
        batch_op.drop_index('ix_consent_customer_purpose')

    op.drop_table('customer_gdpr_compliance')
    with op.batch_alter_table('customer_data_subject_requests', schema=None) as batch_op:
        batch_op.drop_index('ix_dsr_status_due')
        batch_op.drop_index(batch_op.f('ix_customer_data_subject_requests_customer_id'))

    op.drop_table('customer_data_subject_requests')
    with op.batch_alter_table('customer_communication_history', schema=None) as batch_op:
        batch_op.drop_index('ix_comm_customer_time')
        batch_op.drop_index('ix_comm_campaign')

    op.drop_table('customer_communication_history')
    with op.batch_alter_table('customer_analytics', schema=None) as batch_op:
        batch_op.drop_index('ix_analytics_rfm')
        batch_op.drop_index('ix_analytics_revenue')

    op.drop_table('customer_analytics')
    with op.batch_alter_table('customer_addresses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_addresses_customer_id'))

    op.drop_table('customer_addresses')
    with op.batch_alter_table('customer_account_health_scores', schema=None) as batch_op:
        batch_op.drop_index('ix_health_asof_level')

    op.drop_table('customer_account_health_scores')
    with op.batch_alter_table('audit_log', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_audit_log_occurred_at'))
        batch_op.drop_index('ix_audit_log_entity')
        batch_op.drop_index('ix_audit_log_actor_time')
        batch_op.drop_index(batch_op.f('ix_audit_log_action'))

    op.drop_table('audit_log')
    op.drop_table('users')
    with op.batch_alter_table('products', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_products_category'))

    op.drop_table('products')
    op.drop_index('ix_customers_email_lower', table_name='customers')
    with op.batch_alter_table('customers', schema=None) as batch_op:
        batch_op.drop_index('ix_customers_status_country')
        batch_op.drop_index('ix_customers_signup')
        batch_op.drop_index('ix_customers_last_name')

    op.drop_table('customers')
    op.drop_table('customer_service_level_agreements')
