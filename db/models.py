"""SQLAlchemy 2 typed models: the whole customer schema.

Enumerated columns are plain strings guarded by CHECK constraints, so the same migration runs on
SQLite and PostgreSQL and a new value is one constraint change, not a type migration. The tuples
below are the single source of those enumerations; `crm_core` imports them for validation.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    Text,
    UniqueConstraint,
    func,
    literal_column,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "analyst", "success_manager", "support_agent", "executive", "risk_analyst")
CUSTOMER_STATUSES = ("active", "suspended", "closed", "merged", "erased")
ACQUISITION_CHANNELS = (
    "organic_search", "paid_search", "social", "email", "referral", "affiliate", "direct",
    "marketplace", "import",
)
GENDERS = ("female", "male", "non_binary", "unknown")
ADDRESS_KINDS = ("billing", "shipping")
ADDRESS_VALIDATION = ("unverified", "valid", "invalid", "corrected")
PAYMENT_BRANDS = ("visa", "mastercard", "amex", "discover", "paypal", "other")
PAYMENT_STATUSES = ("active", "expired", "removed")
ORDER_STATUSES = ("placed", "paid", "shipped", "delivered", "cancelled", "returned", "refunded")
REVENUE_ORDER_STATUSES = ("placed", "paid", "shipped", "delivered")
# Orders undone (cancelled, returned, refunded): never revenue; loyalty takes their points back,
# referrals hold their rewards, risk and health count them as a signal.
UNDONE_ORDER_STATUSES = tuple(s for s in ORDER_STATUSES if s not in REVENUE_ORDER_STATUSES)
ORDER_CHANNELS = ("web", "mobile", "store", "marketplace", "phone")
SESSION_SOURCES = ("direct", "organic", "paid_search", "social", "email", "referral")
DEVICES = ("desktop", "mobile", "tablet")
SEGMENT_TYPES = (
    "demographic", "behavioural", "geographic", "psychographic", "transactional", "lifecycle",
    "value_based", "custom", "rfm", "cluster",
)
SEGMENT_KINDS = ("dynamic", "static")
ASSIGNMENTS = ("auto", "manual")
LIFECYCLE_STAGES = (
    "prospect", "new_customer", "active", "at_risk", "inactive", "churned", "win_back", "loyal",
    "champion",
)
ACTOR_KINDS = ("system", "user")
COMM_CHANNELS = ("email", "sms", "call", "chat", "push", "in_app")
DIRECTIONS = ("inbound", "outbound")
COMM_STATUSES = ("sent", "delivered", "opened", "clicked", "replied", "bounced", "failed", "logged")
TICKET_PRIORITIES = ("low", "normal", "high", "urgent", "critical")
TICKET_STATUSES = (
    "new", "open", "pending_customer", "on_hold", "resolved", "closed", "reopened",
)
OPEN_TICKET_STATUSES = ("new", "open", "pending_customer", "on_hold", "reopened")
TICKET_CATEGORIES = (
    "order", "delivery", "returns", "billing", "product", "account", "technical", "other",
)
TICKET_CHANNELS = ("email", "chat", "phone", "web", "social")
RESPONSE_AUTHORS = ("agent", "customer", "system")
RISK_LEVELS = ("low", "medium", "high", "critical")
HEALTH_LEVELS = ("excellent", "good", "fair", "poor", "critical")
CONTACT_FREQUENCIES = ("daily", "weekly", "monthly", "never")
CONSENT_PURPOSES = (
    "marketing_email", "marketing_sms", "marketing_push", "profiling", "third_party_sharing",
    "analytics",
)
DSR_TYPES = ("access", "erasure", "rectification", "portability", "restriction", "objection")
DSR_STATUSES = ("received", "in_progress", "completed", "rejected")
LOYALTY_TIERS = ("bronze", "silver", "gold", "platinum", "diamond")
LOYALTY_KINDS = ("earn", "redeem", "expire", "adjust", "reverse")
LOYALTY_ACCOUNT_STATUSES = ("active", "suspended", "closed")
RISK_TYPES = ("fraud", "credit", "chargeback", "abuse", "compliance")
RISK_REVIEW_STATUSES = ("open", "reviewed", "cleared", "confirmed")
SOCIAL_PLATFORMS = ("twitter", "facebook", "instagram", "linkedin", "tiktok", "youtube")
SENTIMENTS = ("positive", "neutral", "negative")
CAMPAIGN_STATUSES = ("draft", "scheduled", "running", "completed", "cancelled")
TARGET_GROUPS = ("treatment", "control")
COMPLAINT_SEVERITIES = ("low", "medium", "high", "critical")
COMPLAINT_STATUSES = ("open", "investigating", "escalated", "resolved", "closed")
COMPENSATION_KINDS = ("none", "refund", "voucher", "points", "replacement")
REFERRAL_STATUSES = ("pending", "signed_up", "converted", "rewarded", "expired")
SURVEY_TYPES = ("nps", "csat")
MODEL_NAMES = ("churn", "clv", "forecast", "health", "cluster")


def _in(column: str, values: tuple[str, ...]) -> str:
    # An OR chain rather than IN (...): SQLite evaluates IN lists in CHECK constraints slowly
    # enough to halve bulk-load speed; PostgreSQL treats both alike.
    return "(" + " OR ".join(f"{column} = '{v}'" for v in values) + ")"


def enum_check(column: str, values: tuple[str, ...], nullable: bool = False) -> CheckConstraint:
    expr = _in(column, values)
    if nullable:
        expr = f"{column} IS NULL OR {expr}"
    return CheckConstraint(expr, name=f"{column}_valid")


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

Money = Numeric(14, 2)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    # Every model here is mapped to one Table (declarative types it as any FromClause).
    __table__: ClassVar[Table]

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, Decimal: Money}


def created_at_col() -> Mapped[dt.datetime]:
    return mapped_column(DateTime, default=utcnow, server_default=func.current_timestamp())


def customer_fk(nullable: bool = False, index: bool = True) -> Mapped[Any]:
    return mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), nullable=nullable, index=index
    )


def user_fk() -> Mapped[Any]:
    return mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True)


# --------------------------------------------------------------------------- staff and audit


class User(Base):
    __tablename__ = "users"
    __table_args__ = (enum_check("role", ROLES),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = created_at_col()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class AuditLog(Base):
    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_entity", "entity_type", "entity_id"),
        Index("ix_audit_log_actor_time", "actor_id", "occurred_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, index=True)
    actor_id: Mapped[int | None] = user_fk()
    actor_username: Mapped[str] = mapped_column(String(64))
    action: Mapped[str] = mapped_column(String(64), index=True)
    entity_type: Mapped[str] = mapped_column(String(64))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# --------------------------------------------------------------------------- customers


class Customer(Base):
    __tablename__ = "customers"
    __table_args__ = (
        enum_check("status", CUSTOMER_STATUSES),
        enum_check("acquisition_channel", ACQUISITION_CHANNELS),
        enum_check("gender", GENDERS, nullable=True),
        CheckConstraint("merged_into_id IS NULL OR merged_into_id <> id", name="not_self_merged"),
        Index("ix_customers_signup", "signed_up_at"),
        Index("ix_customers_status_country", "status", "country_code"),
        Index("ix_customers_email_lower", func.lower("email")),
        Index("ix_customers_last_name", "last_name", "first_name"),
        Index("ix_customers_merged_into", "merged_into_id"),  # merges and erasure find merged records
        Index("ix_customers_phone", "phone"),  # exact phone dedupe on import (migration 0008)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    first_name: Mapped[str] = mapped_column(String(100), default="")
    last_name: Mapped[str] = mapped_column(String(100), default="")
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    company: Mapped[str | None] = mapped_column(String(200))  # added by migration 0007 (search)
    date_of_birth: Mapped[dt.date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(String(16))
    country_code: Mapped[str | None] = mapped_column(String(2))
    city: Mapped[str | None] = mapped_column(String(100))
    preferred_language: Mapped[str | None] = mapped_column(String(8))
    acquisition_channel: Mapped[str] = mapped_column(String(32), default="direct")
    status: Mapped[str] = mapped_column(String(16), default="active")
    merged_into_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL")
    )
    # The success manager who owns the relationship (at-risk lists filter on it).
    account_manager_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    signed_up_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    notes: Mapped[str | None] = mapped_column(Text)
    erased_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = created_at_col()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class CustomerAddress(Base):
    __tablename__ = "customer_addresses"
    __table_args__ = (
        enum_check("kind", ADDRESS_KINDS),
        enum_check("validation_status", ADDRESS_VALIDATION),
        CheckConstraint("latitude IS NULL OR (latitude BETWEEN -90 AND 90)", name="latitude_range"),
        CheckConstraint(
            "longitude IS NULL OR (longitude BETWEEN -180 AND 180)", name="longitude_range"
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk()
    kind: Mapped[str] = mapped_column(String(16), default="shipping")
    line1: Mapped[str] = mapped_column(String(200))
    line2: Mapped[str | None] = mapped_column(String(200))
    city: Mapped[str] = mapped_column(String(100))
    region: Mapped[str | None] = mapped_column(String(100))
    postal_code: Mapped[str | None] = mapped_column(String(20))
    country_code: Mapped[str] = mapped_column(String(2))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    validation_status: Mapped[str] = mapped_column(String(16), default="unverified")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = created_at_col()


class CustomerPaymentMethod(Base):
    """A processor token and display facts only; card numbers and CVVs are never stored."""

    __tablename__ = "customer_payment_methods"
    __table_args__ = (
        enum_check("brand", PAYMENT_BRANDS),
        enum_check("status", PAYMENT_STATUSES),
        CheckConstraint("last4 IS NULL OR length(last4) = 4", name="last4_length"),
        CheckConstraint("exp_month IS NULL OR exp_month BETWEEN 1 AND 12", name="exp_month_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk()
    processor: Mapped[str] = mapped_column(String(32))
    processor_token: Mapped[str] = mapped_column(String(128), unique=True)
    brand: Mapped[str] = mapped_column(String(16))
    last4: Mapped[str | None] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[dt.datetime] = created_at_col()


# --------------------------------------------------------------------------- commerce


class Product(Base):
    __tablename__ = "products"
    __table_args__ = (CheckConstraint("unit_price >= 0", name="price_non_negative"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    sku: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    category: Mapped[str] = mapped_column(String(64), index=True)
    brand: Mapped[str] = mapped_column(String(64))
    unit_price: Mapped[Decimal] = mapped_column(Money)
    unit_cost: Mapped[Decimal | None] = mapped_column(Money)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = created_at_col()


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        enum_check("status", ORDER_STATUSES),
        enum_check("channel", ORDER_CHANNELS),
        CheckConstraint("total >= 0", name="total_non_negative"),
        Index("ix_orders_customer_time", "customer_id", "ordered_at"),
        Index("ix_orders_time", "ordered_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_number: Mapped[str] = mapped_column(String(64), unique=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    ordered_at: Mapped[dt.datetime] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="paid")
    channel: Mapped[str] = mapped_column(String(16), default="web")
    currency: Mapped[str] = mapped_column(String(3), default="EUR")
    subtotal: Mapped[Decimal] = mapped_column(Money, default=0)
    discount: Mapped[Decimal] = mapped_column(Money, default=0)
    shipping: Mapped[Decimal] = mapped_column(Money, default=0)
    total: Mapped[Decimal] = mapped_column(Money, default=0)
    item_count: Mapped[int] = mapped_column(Integer, default=0)


class OrderItem(Base):
    __tablename__ = "order_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), index=True
    )
    # No index on product_id: product analytics join from the small products table.
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)
    line_total: Mapped[Decimal] = mapped_column(Money)


class WebSession(Base):
    __tablename__ = "web_sessions"
    __table_args__ = (
        enum_check("source", SESSION_SOURCES),
        enum_check("device", DEVICES),
        CheckConstraint("page_views >= 0", name="page_views_non_negative"),
        CheckConstraint("duration_seconds >= 0", name="duration_non_negative"),
        Index("ix_web_sessions_customer_time", "customer_id", "started_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int | None] = customer_fk(nullable=True, index=False)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime)
    duration_seconds: Mapped[int] = mapped_column(Integer)
    page_views: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(16))
    device: Mapped[str] = mapped_column(String(16))
    converted: Mapped[bool] = mapped_column(Boolean, default=False)


# --------------------------------------------------------------------------- segments, lifecycle


class CustomerSegment(Base):
    __tablename__ = "customer_segments"
    __table_args__ = (
        enum_check("segment_type", SEGMENT_TYPES),
        enum_check("kind", SEGMENT_KINDS),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    segment_type: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16), default="dynamic")
    rules: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    priority: Mapped[int] = mapped_column(Integer, default=100)
    owner_id: Mapped[int | None] = user_fk()
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    is_system: Mapped[bool] = mapped_column(Boolean, default=False)
    last_refreshed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_at: Mapped[dt.datetime] = created_at_col()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class CustomerSegmentMembership(Base):
    __tablename__ = "customer_segment_memberships"
    __table_args__ = (
        enum_check("assignment", ASSIGNMENTS),
        CheckConstraint("confidence BETWEEN 0 AND 1", name="confidence_range"),
        Index("ix_memberships_segment_active", "segment_id", "is_active"),
        Index("ix_memberships_customer", "customer_id", "is_active"),
        Index("ix_memberships_segment_customer", "segment_id", "is_active", "customer_id"),  # overlaps, counts (0015)
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    segment_id: Mapped[int] = mapped_column(ForeignKey("customer_segments.id", ondelete="CASCADE"))
    customer_id: Mapped[int] = customer_fk(index=False)
    confidence: Mapped[float] = mapped_column(Float, default=1.0)
    assignment: Mapped[str] = mapped_column(String(8), default="auto")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    entered_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    left_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class CustomerLifecycleStage(Base):
    """The current stage of each customer, with the scores that put them there."""

    __tablename__ = "customer_lifecycle_stages"
    __table_args__ = (
        enum_check("stage", LIFECYCLE_STAGES),
        Index("ix_lifecycle_stage", "stage"),
        Index("ix_lifecycle_stage_customer", "stage", "customer_id"),  # a stage's customers by id, paged (0015)
    )

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    stage: Mapped[str] = mapped_column(String(16))
    entered_at: Mapped[dt.datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(String(255), default="")
    engagement_score: Mapped[float | None] = mapped_column(Float)
    loyalty_score: Mapped[float | None] = mapped_column(Float)
    churn_score: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class CustomerLifecycleHistory(Base):
    __tablename__ = "customer_lifecycle_history"
    __table_args__ = (
        enum_check("from_stage", LIFECYCLE_STAGES, nullable=True),
        enum_check("to_stage", LIFECYCLE_STAGES),
        enum_check("actor_kind", ACTOR_KINDS),
        Index("ix_lifecycle_history_customer", "customer_id", "changed_at"),
        Index("ix_lifecycle_history_time", "changed_at"),
        Index("ix_lifecycle_history_recent", "changed_at", "id"),  # the newest changes, one page at a time (0015)
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    from_stage: Mapped[str | None] = mapped_column(String(16))
    to_stage: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime)
    reason: Mapped[str] = mapped_column(String(255))
    actor_kind: Mapped[str] = mapped_column(String(8), default="system")
    actor_id: Mapped[int | None] = user_fk()


# --------------------------------------------------------------------------- communications


class CustomerCommunication(Base):
    __tablename__ = "customer_communication_history"
    __table_args__ = (
        enum_check("channel", COMM_CHANNELS),
        enum_check("direction", DIRECTIONS),
        enum_check("status", COMM_STATUSES),
        Index("ix_comm_customer_time", "customer_id", "sent_at"),
        Index("ix_comm_campaign", "campaign"),
        # Readers of the communications rollup add the messages sent since its cutoff (migration 0021).
        Index("ix_comm_sent_at", "sent_at"),
        # Imported messages keep their source's id (or a key derived from the row): importing a file
        # twice adds nothing (migration 0013). Partial: messages logged here have none.
        Index("ix_comm_external_id", "external_id", unique=True,
              postgresql_where=text("external_id IS NOT NULL"), sqlite_where=text("external_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    channel: Mapped[str] = mapped_column(String(8))
    direction: Mapped[str] = mapped_column(String(8), default="outbound")
    status: Mapped[str] = mapped_column(String(12))
    campaign: Mapped[str | None] = mapped_column(String(100))
    template: Mapped[str | None] = mapped_column(String(100))
    subject: Mapped[str | None] = mapped_column(String(255))
    body: Mapped[str | None] = mapped_column(Text)
    sent_at: Mapped[dt.datetime] = mapped_column(DateTime)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    opened_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    clicked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    replied_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    logged_by_id: Mapped[int | None] = user_fk()
    # VADER compound score of inbound free text (-1..1), set when the message is logged (migration 0006).
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    external_id: Mapped[str | None] = mapped_column(String(100))
    # The win-back campaign a message was sent for (issue 17, migration 0018).
    campaign_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_winback_campaigns.id", ondelete="SET NULL"), index=True
    )


class CustomerPreferenceCenter(Base):
    __tablename__ = "customer_preference_centers"
    __table_args__ = (
        enum_check("contact_frequency", CONTACT_FREQUENCIES),
        enum_check("preferred_channel", COMM_CHANNELS, nullable=True),
    )

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    email_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    sms_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    push_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    phone_opt_in: Mapped[bool] = mapped_column(Boolean, default=False)
    contact_frequency: Mapped[str] = mapped_column(String(8), default="weekly")
    preferred_channel: Mapped[str | None] = mapped_column(String(8))
    preferred_language: Mapped[str | None] = mapped_column(String(8))
    interests: Mapped[list[Any] | None] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


# --------------------------------------------------------------------------- support


class ServiceLevelAgreement(Base):
    """An SLA policy: targets in business minutes on a business calendar (JSON)."""

    __tablename__ = "customer_service_level_agreements"
    __table_args__ = (
        enum_check("priority", TICKET_PRIORITIES),
        enum_check("category", TICKET_CATEGORIES, nullable=True),
        enum_check("loyalty_tier", LOYALTY_TIERS, nullable=True),
        CheckConstraint("first_response_minutes > 0", name="first_response_positive"),
        CheckConstraint("resolution_minutes > 0", name="resolution_positive"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    priority: Mapped[str] = mapped_column(String(16))
    category: Mapped[str | None] = mapped_column(String(16))
    loyalty_tier: Mapped[str | None] = mapped_column(String(16))
    first_response_minutes: Mapped[int] = mapped_column(Integer)
    next_response_minutes: Mapped[int | None] = mapped_column(Integer)
    resolution_minutes: Mapped[int] = mapped_column(Integer)
    calendar: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = created_at_col()
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")  # service desk (0005)

    __mapper_args__ = {"version_id_col": version}


class SupportTicket(Base):
    __tablename__ = "customer_support_tickets"
    __table_args__ = (
        enum_check("priority", TICKET_PRIORITIES),
        enum_check("status", TICKET_STATUSES),
        enum_check("category", TICKET_CATEGORIES),
        enum_check("channel", TICKET_CHANNELS),
        CheckConstraint("csat_rating IS NULL OR csat_rating BETWEEN 1 AND 5", name="csat_range"),
        Index("ix_tickets_status_priority", "status", "priority"),
        Index("ix_tickets_assignee_status", "assignee_id", "status"),
        Index("ix_tickets_customer", "customer_id", "created_at"),
        Index("ix_tickets_created", "created_at"),
        # The helpdesk's own ticket id of an imported ticket (migration 0013); tickets opened here have none.
        Index("ix_tickets_external_id", "external_id", unique=True,
              postgresql_where=text("external_id IS NOT NULL"), sqlite_where=text("external_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    ticket_number: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    subject: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(16), default="other")
    priority: Mapped[str] = mapped_column(String(16), default="normal")
    status: Mapped[str] = mapped_column(String(16), default="new")
    channel: Mapped[str] = mapped_column(String(8), default="email")
    department: Mapped[str | None] = mapped_column(String(64))
    assignee_id: Mapped[int | None] = user_fk()
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    sla_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_service_level_agreements.id", ondelete="SET NULL")
    )
    first_response_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    next_response_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolution_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    first_responded_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sla_paused_since: Mapped[dt.datetime | None] = mapped_column(DateTime)
    sla_breached: Mapped[bool] = mapped_column(Boolean, default=False)
    csat_rating: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)
    external_id: Mapped[str | None] = mapped_column(String(100))

    __mapper_args__ = {"version_id_col": version}


class SupportTicketResponse(Base):
    __tablename__ = "customer_support_ticket_responses"
    __table_args__ = (
        enum_check("author_kind", RESPONSE_AUTHORS),
        CheckConstraint(
            "attachment_size IS NULL OR attachment_size >= 0", name="attachment_size_non_negative"
        ),
        Index("ix_ticket_responses_ticket", "ticket_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="CASCADE")
    )
    author_kind: Mapped[str] = mapped_column(String(8))
    author_user_id: Mapped[int | None] = user_fk()
    body: Mapped[str] = mapped_column(Text)
    is_internal: Mapped[bool] = mapped_column(Boolean, default=False)
    is_read: Mapped[bool] = mapped_column(Boolean, default=False)
    attachment_path: Mapped[str | None] = mapped_column(String(500))
    attachment_name: Mapped[str | None] = mapped_column(String(255))
    attachment_type: Mapped[str | None] = mapped_column(String(100))
    attachment_size: Mapped[int | None] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SupportTicketEvent(Base):
    """Ticket history: status and assignment changes, SLA breaches, escalations."""

    __tablename__ = "customer_support_ticket_events"
    __table_args__ = (Index("ix_ticket_events_ticket", "ticket_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="CASCADE")
    )
    event: Mapped[str] = mapped_column(String(32))
    detail: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    actor_id: Mapped[int | None] = user_fk()
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Complaint(Base):
    __tablename__ = "customer_complaint_management"
    __table_args__ = (
        enum_check("severity", COMPLAINT_SEVERITIES),
        enum_check("status", COMPLAINT_STATUSES),
        enum_check("compensation_kind", COMPENSATION_KINDS),
        CheckConstraint("compensation_amount >= 0", name="compensation_non_negative"),
        CheckConstraint(
            "satisfaction IS NULL OR satisfaction BETWEEN 1 AND 5", name="satisfaction_range"
        ),
        Index("ix_complaints_status", "status", "severity"),
        Index("ix_complaints_created", "created_at", "id"),  # newest first, keyset pages (0022)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk()
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="SET NULL")
    )
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    category: Mapped[str] = mapped_column(String(32))
    severity: Mapped[str] = mapped_column(String(16), default="medium")
    description: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")
    resolution: Mapped[str | None] = mapped_column(Text)
    compensation_kind: Mapped[str] = mapped_column(String(16), default="none")
    compensation_amount: Mapped[Decimal] = mapped_column(Money, default=0)
    approved_by_id: Mapped[int | None] = user_fk()
    created_by_id: Mapped[int | None] = user_fk()
    resolution_due_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    resolved_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    satisfaction: Mapped[int | None] = mapped_column(Integer)
    escalation_level: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class SurveyResponse(Base):
    __tablename__ = "customer_survey_responses"
    __table_args__ = (
        enum_check("survey_type", SURVEY_TYPES),
        CheckConstraint(
            "(survey_type = 'nps' AND score BETWEEN 0 AND 10)"
            " OR (survey_type = 'csat' AND score BETWEEN 1 AND 5)",
            name="score_range",
        ),
        Index("ix_surveys_type_time", "survey_type", "responded_at"),
        Index("ix_surveys_customer", "customer_id", "responded_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    survey_type: Mapped[str] = mapped_column(String(8))
    score: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="SET NULL")
    )
    follow_up_ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="SET NULL")
    )
    responded_at: Mapped[dt.datetime] = mapped_column(DateTime)


# --------------------------------------------------------------------------- analytics and models


class CustomerAnalytics(Base):
    """Per-customer snapshot computed by the batch refresh as of a date; dashboards read it."""

    __tablename__ = "customer_analytics"
    __table_args__ = (
        CheckConstraint("recency_score IS NULL OR recency_score BETWEEN 1 AND 5", name="r_range"),
        CheckConstraint(
            "frequency_score IS NULL OR frequency_score BETWEEN 1 AND 5", name="f_range"
        ),
        CheckConstraint(
            "monetary_score IS NULL OR monetary_score BETWEEN 1 AND 5", name="m_range"
        ),
        enum_check("health_level", HEALTH_LEVELS, nullable=True),
        Index("ix_analytics_rfm", "rfm_segment"),
        Index("ix_analytics_revenue", "total_revenue"),
        Index("ix_analytics_clv", "clv_12m"),  # lifetime value: top customers by CLV
    )

    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True
    )
    as_of: Mapped[dt.date] = mapped_column(Date)
    order_count: Mapped[int] = mapped_column(Integer, default=0)
    total_revenue: Mapped[Decimal] = mapped_column(Money, default=0)
    avg_order_value: Mapped[Decimal | None] = mapped_column(Money)
    first_order_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_order_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    days_since_last_order: Mapped[int | None] = mapped_column(Integer)
    recency_score: Mapped[int | None] = mapped_column(Integer)
    frequency_score: Mapped[int | None] = mapped_column(Integer)
    monetary_score: Mapped[int | None] = mapped_column(Integer)
    rfm_segment: Mapped[str | None] = mapped_column(String(32))
    sessions_90d: Mapped[int] = mapped_column(Integer, default=0)
    email_open_rate: Mapped[float | None] = mapped_column(Float)
    open_tickets: Mapped[int] = mapped_column(Integer, default=0)
    last_nps: Mapped[int | None] = mapped_column(Integer)
    preferred_category: Mapped[str | None] = mapped_column(String(64))
    predicted_purchases_12m: Mapped[float | None] = mapped_column(Float)
    prob_alive: Mapped[float | None] = mapped_column(Float)
    clv_12m: Mapped[Decimal | None] = mapped_column(Money)
    historic_clv: Mapped[Decimal | None] = mapped_column(Money)
    # Lifetime value inputs (BG/NBD): repeat purchase days, and the ages at the last purchase and
    # at `as_of`, in the CLV model's time unit (weeks); they place customers on the P(alive) heatmap.
    clv_frequency: Mapped[int | None] = mapped_column(Integer)
    clv_recency: Mapped[float | None] = mapped_column(Float)
    clv_age: Mapped[float | None] = mapped_column(Float)
    expected_order_value: Mapped[Decimal | None] = mapped_column(Money)
    churn_probability: Mapped[float | None] = mapped_column(Float)
    health_score: Mapped[float | None] = mapped_column(Float)
    health_level: Mapped[str | None] = mapped_column(String(16))
    features: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    refreshed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class MLModel(Base):
    """Model registry: one row per trained version, with its metrics and artifact."""

    __tablename__ = "ml_models"
    __table_args__ = (
        enum_check("name", MODEL_NAMES),
        UniqueConstraint("name", "version", name="uq_ml_models_name_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(32))
    version: Mapped[int] = mapped_column(Integer)
    algorithm: Mapped[str] = mapped_column(String(64))
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    features: Mapped[list[Any] | None] = mapped_column(JSON)
    training_start: Mapped[dt.date | None] = mapped_column(Date)
    training_end: Mapped[dt.date | None] = mapped_column(Date)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = created_at_col()


class ChurnPrediction(Base):
    __tablename__ = "customer_churn_predictions"
    __table_args__ = (
        enum_check("risk_level", RISK_LEVELS),
        CheckConstraint("probability BETWEEN 0 AND 1", name="probability_range"),
        Index("ix_churn_customer_asof", "customer_id", "as_of"),
        Index("ix_churn_asof_risk", "as_of", "risk_level"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("ml_models.id", ondelete="SET NULL"))
    as_of: Mapped[dt.date] = mapped_column(Date)
    horizon_days: Mapped[int] = mapped_column(Integer, default=90)
    probability: Mapped[float] = mapped_column(Float)
    risk_level: Mapped[str] = mapped_column(String(16))
    confidence: Mapped[float | None] = mapped_column(Float)
    drivers: Mapped[list[Any] | None] = mapped_column(JSON)
    interventions: Mapped[list[Any] | None] = mapped_column(JSON)
    actual_churned: Mapped[bool | None] = mapped_column(Boolean)
    evaluated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class AccountHealthScore(Base):
    __tablename__ = "customer_account_health_scores"
    __table_args__ = (
        enum_check("level", HEALTH_LEVELS),
        CheckConstraint("overall BETWEEN 0 AND 100", name="overall_range"),
        CheckConstraint("engagement BETWEEN 0 AND 100", name="engagement_range"),
        CheckConstraint("satisfaction BETWEEN 0 AND 100", name="satisfaction_range"),
        CheckConstraint("loyalty BETWEEN 0 AND 100", name="loyalty_range"),
        CheckConstraint("payment BETWEEN 0 AND 100", name="payment_range"),
        CheckConstraint("support BETWEEN 0 AND 100", name="support_range"),
        UniqueConstraint("customer_id", "as_of", name="uq_health_customer_asof"),
        Index("ix_health_asof_level", "as_of", "level"),
        Index("ix_health_asof_trend", "as_of", "trend"),  # the movers, in order (0015)
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    as_of: Mapped[dt.date] = mapped_column(Date)
    # A component is NULL ("no data") when none of its inputs exists for the customer or the shop.
    engagement: Mapped[float | None] = mapped_column(Float)
    satisfaction: Mapped[float | None] = mapped_column(Float)
    loyalty: Mapped[float | None] = mapped_column(Float)
    payment: Mapped[float | None] = mapped_column(Float)
    support: Mapped[float | None] = mapped_column(Float)
    overall: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    trend: Mapped[float | None] = mapped_column(Float)
    risk_indicators: Mapped[list[Any] | None] = mapped_column(JSON)
    recommendations: Mapped[list[Any] | None] = mapped_column(JSON)
    action_items: Mapped[list[Any] | None] = mapped_column(JSON)



class CustomerLifetimeValue(Base):
    """The latest lifetime-value scores (BG/NBD and Gamma-Gamma), one row per customer with purchases.

    The batch refresh replaces them wholesale; the analytics snapshot of the same date reads them,
    so a refresh writes each snapshot row once instead of updating it per model.
    """

    __tablename__ = "customer_lifetime_values"

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    predicted_purchases_12m: Mapped[float | None] = mapped_column(Float)
    prob_alive: Mapped[float | None] = mapped_column(Float)
    clv_12m: Mapped[Decimal | None] = mapped_column(Money)
    historic_clv: Mapped[Decimal | None] = mapped_column(Money)
    expected_order_value: Mapped[Decimal | None] = mapped_column(Money)
    clv_frequency: Mapped[int | None] = mapped_column(Integer)
    clv_recency: Mapped[float | None] = mapped_column(Float)
    clv_age: Mapped[float | None] = mapped_column(Float)


# --------------------------------------------------------------------------- privacy


class ConsentRecord(Base):
    """Consent ledger: each grant or withdrawal is a new row; the latest per purpose wins."""

    __tablename__ = "customer_gdpr_compliance"
    __table_args__ = (
        enum_check("purpose", CONSENT_PURPOSES),
        Index("ix_consent_customer_purpose", "customer_id", "purpose", "recorded_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    purpose: Mapped[str] = mapped_column(String(32))
    granted: Mapped[bool] = mapped_column(Boolean)
    source: Mapped[str] = mapped_column(String(32), default="web_form")
    legal_basis: Mapped[str] = mapped_column(String(32), default="consent")
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    recorded_by_id: Mapped[int | None] = user_fk()
    notes: Mapped[str | None] = mapped_column(Text)
    policy_version: Mapped[str | None] = mapped_column(String(32))


class DataSubjectRequest(Base):
    __tablename__ = "customer_data_subject_requests"
    __table_args__ = (
        enum_check("request_type", DSR_TYPES),
        enum_check("status", DSR_STATUSES),
        Index("ix_dsr_status_due", "status", "due_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), index=True
    )
    request_type: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="received")
    received_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    completed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    handled_by_id: Mapped[int | None] = user_fk()
    notes: Mapped[str | None] = mapped_column(Text)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# --------------------------------------------------------------------------- loyalty


class LoyaltyAccount(Base):
    """A customer's membership of the loyalty programme; the balance mirrors the ledger."""

    __tablename__ = "customer_loyalty_programs"
    __table_args__ = (
        enum_check("tier", LOYALTY_TIERS),
        enum_check("status", LOYALTY_ACCOUNT_STATUSES),
        CheckConstraint("points_balance >= 0", name="balance_non_negative"),
        CheckConstraint("lifetime_points >= 0", name="lifetime_non_negative"),
        Index("ix_loyalty_tier", "tier"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(
        ForeignKey("customers.id", ondelete="CASCADE"), unique=True
    )
    program: Mapped[str] = mapped_column(String(64), default="Rewards")
    tier: Mapped[str] = mapped_column(String(16), default="bronze")
    points_balance: Mapped[int] = mapped_column(Integer, default=0)
    lifetime_points: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(16), default="active")
    enrolled_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    tier_updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class LoyaltyTransaction(Base):
    """Append-only points ledger; each entry carries the balance after it."""

    __tablename__ = "customer_loyalty_transactions"
    __table_args__ = (
        enum_check("kind", LOYALTY_KINDS),
        CheckConstraint("points <> 0", name="points_non_zero"),
        CheckConstraint("balance_after >= 0", name="balance_after_non_negative"),
        Index("ix_loyalty_tx_customer_time", "customer_id", "created_at"),
        Index("ix_loyalty_tx_time", "created_at"),  # the month so far of the programme chart (0015)
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("customer_loyalty_programs.id", ondelete="CASCADE")
    )
    customer_id: Mapped[int] = customer_fk(index=False)
    kind: Mapped[str] = mapped_column(String(8))
    points: Mapped[int] = mapped_column(Integer)
    balance_after: Mapped[int] = mapped_column(Integer)
    source_type: Mapped[str | None] = mapped_column(String(32))
    source_id: Mapped[str | None] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    reason: Mapped[str | None] = mapped_column(String(255))
    created_by_id: Mapped[int | None] = user_fk()
    approved_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class LoyaltyTierChange(Base):
    __tablename__ = "customer_loyalty_tier_changes"
    __table_args__ = (
        enum_check("from_tier", LOYALTY_TIERS, nullable=True),
        enum_check("to_tier", LOYALTY_TIERS),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("customer_loyalty_programs.id", ondelete="CASCADE"), index=True
    )
    from_tier: Mapped[str | None] = mapped_column(String(16))
    to_tier: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --------------------------------------------------------------------------- risk, social


class RiskAssessment(Base):
    __tablename__ = "customer_risk_assessments"
    __table_args__ = (
        enum_check("risk_type", RISK_TYPES),
        enum_check("level", RISK_LEVELS),
        enum_check("status", RISK_REVIEW_STATUSES),
        CheckConstraint("score BETWEEN 0 AND 100", name="score_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk()
    risk_type: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    factors: Mapped[list[Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open")
    assessed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reviewed_by_id: Mapped[int | None] = user_fk()
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class SocialAccount(Base):
    __tablename__ = "customer_social_media_integrations"
    __table_args__ = (
        enum_check("platform", SOCIAL_PLATFORMS),
        UniqueConstraint("platform", "handle", name="uq_social_platform_handle"),
        CheckConstraint("followers >= 0", name="followers_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk()
    platform: Mapped[str] = mapped_column(String(16))
    handle: Mapped[str] = mapped_column(String(100))
    profile_url: Mapped[str | None] = mapped_column(String(500))
    followers: Mapped[int] = mapped_column(Integer, default=0)
    is_verified: Mapped[bool] = mapped_column(Boolean, default=False)
    connected_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class SocialMention(Base):
    __tablename__ = "customer_social_media_mentions"
    __table_args__ = (
        enum_check("platform", SOCIAL_PLATFORMS),
        enum_check("sentiment_label", SENTIMENTS, nullable=True),
        CheckConstraint(
            "sentiment_score IS NULL OR sentiment_score BETWEEN -1 AND 1", name="sentiment_range"
        ),
        Index("ix_mentions_time", "posted_at"),
        # Issue 17 (migration 0020): matching by author handle, and importing a file twice adds nothing.
        Index("ix_mentions_platform_author", "platform", "author"),
        Index("ix_mentions_external_id", "external_id", unique=True,
              postgresql_where=text("external_id IS NOT NULL"), sqlite_where=text("external_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    social_account_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_social_media_integrations.id", ondelete="SET NULL")
    )
    customer_id: Mapped[int | None] = customer_fk(nullable=True)
    platform: Mapped[str] = mapped_column(String(16))
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    text: Mapped[str] = mapped_column(Text)
    url: Mapped[str | None] = mapped_column(String(500))
    reach: Mapped[int] = mapped_column(Integer, default=0)
    sentiment_score: Mapped[float | None] = mapped_column(Float)
    sentiment_label: Mapped[str | None] = mapped_column(String(16))
    # Issue 17 (migration 0020): the author's handle as posted, the import key, the scorer that set
    # the sentiment, and the ticket opened from the mention.
    author: Mapped[str | None] = mapped_column(String(100))
    external_id: Mapped[str | None] = mapped_column(String(100))
    sentiment_model: Mapped[str | None] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="SET NULL")
    )


# --------------------------------------------------------------------------- campaigns, referrals


class WinbackCampaign(Base):
    __tablename__ = "customer_winback_campaigns"
    __table_args__ = (
        enum_check("status", CAMPAIGN_STATUSES),
        enum_check("channel", COMM_CHANNELS),
        CheckConstraint("control_fraction BETWEEN 0 AND 0.9", name="control_fraction_range"),
        CheckConstraint("offer_value >= 0", name="offer_value_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="draft")
    segment_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_segments.id", ondelete="SET NULL")
    )
    channel: Mapped[str] = mapped_column(String(8), default="email")
    offer_type: Mapped[str] = mapped_column(String(32), default="discount")
    offer_value: Mapped[Decimal] = mapped_column(Money, default=0)
    control_fraction: Mapped[float] = mapped_column(Float, default=0.1)
    starts_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    ends_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = created_at_col()
    version: Mapped[int] = mapped_column(Integer, default=1)
    # The campaign's definition (issue 17, migration 0018): who qualifies (crm_core.campaigns triggers,
    # as JSON data), what the holdout is sized for, how long a conversion is attributed, the margin
    # the ROI counts, and the share of qualifying customers targeted by uplift (NULL: everyone).
    trigger: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    subject: Mapped[str | None] = mapped_column(String(255))
    expected_lift: Mapped[float | None] = mapped_column(Float)
    baseline_rate: Mapped[float | None] = mapped_column(Float)
    attribution_days: Mapped[int] = mapped_column(Integer, default=30, server_default="30")
    gross_margin: Mapped[float] = mapped_column(Float, default=0.4, server_default="0.4")
    uplift_share: Mapped[float | None] = mapped_column(Float)
    uplift_model_id: Mapped[int | None] = mapped_column(
        ForeignKey("campaign_uplift_models.id", ondelete="SET NULL")
    )
    launched_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)

    __mapper_args__ = {"version_id_col": version}


class WinbackTarget(Base):
    __tablename__ = "customer_winback_targets"
    __table_args__ = (
        enum_check("target_group", TARGET_GROUPS),
        UniqueConstraint("campaign_id", "customer_id", name="uq_winback_target"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    campaign_id: Mapped[int] = mapped_column(
        ForeignKey("customer_winback_campaigns.id", ondelete="CASCADE")
    )
    customer_id: Mapped[int] = customer_fk()
    target_group: Mapped[str] = mapped_column(String(16))
    assigned_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    contacted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    converted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revenue_after: Mapped[Decimal] = mapped_column(Money, default=0)
    # Spend in the pre-period before assignment (the CUPED covariate) and the uplift score the
    # customer was targeted with (issue 17, migration 0018).
    pre_period_spend: Mapped[Decimal] = mapped_column(Money, default=0, server_default="0")
    uplift_score: Mapped[float | None] = mapped_column(Float)


class Referral(Base):
    __tablename__ = "customer_referral_program"
    __table_args__ = (
        enum_check("status", REFERRAL_STATUSES),
        CheckConstraint("referred_id IS NULL OR referred_id <> referrer_id", name="not_self"),
        CheckConstraint("reward_points >= 0", name="reward_non_negative"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    referrer_id: Mapped[int] = customer_fk()
    referred_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id", ondelete="SET NULL"), unique=True
    )
    referral_code: Mapped[str] = mapped_column(String(32), unique=True)
    referred_email: Mapped[str | None] = mapped_column(String(254))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    reward_points: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    converted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --------------------------------------------------------------------------- settings


class AppSetting(Base):
    """Rules and parameters kept as data (lifecycle rules, loyalty thresholds, health weights)."""

    __tablename__ = "app_settings"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = user_fk()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


# --------------------------------------------------------------------------- complaints, communications, loyalty (issue 5)

ADJUSTMENT_STATUSES = ("pending", "approved", "rejected")


class LoyaltyAdjustmentRequest(Base):
    """A manual points adjustment above the approval limit, waiting for a second person."""

    __tablename__ = "customer_loyalty_adjustment_requests"
    __table_args__ = (
        enum_check("status", ADJUSTMENT_STATUSES),
        CheckConstraint("points <> 0", name="points_non_zero"),
        Index("ix_loyalty_adjustment_status", "status", "requested_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("customer_loyalty_programs.id", ondelete="CASCADE"), index=True
    )
    customer_id: Mapped[int] = customer_fk(index=False)
    points: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(255))
    status: Mapped[str] = mapped_column(String(16), default="pending")
    idempotency_key: Mapped[str | None] = mapped_column(String(128), unique=True)
    requested_by_id: Mapped[int | None] = user_fk()
    requested_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    decided_by_id: Mapped[int | None] = user_fk()
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decision_note: Mapped[str | None] = mapped_column(String(255))
    transaction_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"),
        ForeignKey("customer_loyalty_transactions.id", ondelete="SET NULL"),
    )
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


# --------------------------------------------------------------------------- customer search and profile (issue 6)


class SavedSearch(Base):
    """A customer search a user stored under a name of their own; the query is CustomerQuery data."""

    __tablename__ = "customer_saved_searches"
    __table_args__ = (UniqueConstraint("user_id", "name", name="uq_saved_search_user_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(120))
    query: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = created_at_col()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


# --------------------------------------------------------------------------- duplicates, merge and privacy (issue 6)

DUPLICATE_STATUSES = ("open", "merged", "dismissed")
MERGE_STATUSES = ("completed", "undone")
MERGE_KINDS = ("merge", "split")
MERGE_ROW_ACTIONS = ("moved", "removed", "retained", "field", "loyalty", "status")


class DuplicateCandidate(Base):
    """A pair of customers the duplicate scan thinks may be one person, waiting for review.

    The pair is stored smaller id first, so a re-scan finds the same row instead of adding one.
    """

    __tablename__ = "customer_duplicate_candidates"
    __table_args__ = (
        enum_check("status", DUPLICATE_STATUSES),
        UniqueConstraint("customer_a_id", "customer_b_id", name="uq_duplicate_pair"),
        CheckConstraint("customer_a_id < customer_b_id", name="pair_ordered"),
        CheckConstraint("score BETWEEN 0 AND 1", name="score_range"),
        Index("ix_duplicates_status_score", "status", "score"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    # Bookkeeping about the pair itself: a merge never re-points these (info["merge"] == "skip").
    customer_a_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"),
                                               info={"merge": "skip"})
    customer_b_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True,
                                               info={"merge": "skip"})
    score: Mapped[float] = mapped_column(Float)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open")
    detected_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    reviewed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reviewed_by_id: Mapped[int | None] = user_fk()
    merge_id: Mapped[int | None] = mapped_column(ForeignKey("customer_merges.id", ondelete="SET NULL"))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class CustomerMerge(Base):
    """One merge of `merged_id` into `survivor_id`; its rows say exactly what changed, for undo."""

    __tablename__ = "customer_merges"
    __table_args__ = (
        enum_check("status", MERGE_STATUSES),
        enum_check("kind", MERGE_KINDS),
        CheckConstraint("survivor_id <> merged_id", name="not_self"),
        Index("ix_merges_time", "merged_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    survivor_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True,
                                             info={"merge": "skip"})
    merged_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), index=True,
                                           info={"merge": "skip"})
    kind: Mapped[str] = mapped_column(String(8), default="merge")
    status: Mapped[str] = mapped_column(String(16), default="completed")
    field_choices: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    merged_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    merged_by_id: Mapped[int | None] = user_fk()
    undone_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    undone_by_id: Mapped[int | None] = user_fk()


class CustomerMergeRow(Base):
    """One change a merge made: a re-pointed row, a removed or retained colliding row, a field."""

    __tablename__ = "customer_merge_rows"
    __table_args__ = (
        enum_check("action", MERGE_ROW_ACTIONS),
        Index("ix_merge_rows_merge", "merge_id", "table_name"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    merge_id: Mapped[int] = mapped_column(ForeignKey("customer_merges.id", ondelete="CASCADE"))
    action: Mapped[str] = mapped_column(String(8))
    table_name: Mapped[str] = mapped_column(String(64))
    column_name: Mapped[str | None] = mapped_column(String(64))
    row_key: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# --------------------------------------------------------------------------- lifetime value and forecasts (issue 4)

FORECAST_METRICS = ("revenue", "orders", "new_customers")
FORECAST_STATUSES = ("fitted", "skipped")


class ForecastRun(Base):
    """One fitted (or skipped) forecast of a daily metric as of a date, with its backtest error."""

    __tablename__ = "forecast_runs"
    __table_args__ = (
        enum_check("metric", FORECAST_METRICS),
        enum_check("status", FORECAST_STATUSES),
        CheckConstraint("horizon_days > 0", name="horizon_positive"),
        CheckConstraint("mape IS NULL OR mape >= 0", name="mape_non_negative"),
        Index("ix_forecast_runs_metric", "metric", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    metric: Mapped[str] = mapped_column(String(16))
    as_of: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(8))
    reason: Mapped[str | None] = mapped_column(Text)
    model_id: Mapped[int | None] = mapped_column(ForeignKey("ml_models.id", ondelete="SET NULL"))
    horizon_days: Mapped[int] = mapped_column(Integer)
    history_start: Mapped[dt.date | None] = mapped_column(Date)
    history_days: Mapped[int] = mapped_column(Integer, default=0)
    country: Mapped[str | None] = mapped_column(String(2))
    mape: Mapped[float | None] = mapped_column(Float)
    backtest: Mapped[list[Any] | None] = mapped_column(JSON)
    created_at: Mapped[dt.datetime] = created_at_col()


class ForecastPoint(Base):
    """A day of a forecast run: the actual value (history) and the prediction with its 80% interval."""

    __tablename__ = "forecast_points"
    __table_args__ = (UniqueConstraint("run_id", "day", name="uq_forecast_points_run_day"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("forecast_runs.id", ondelete="CASCADE"))
    day: Mapped[dt.date] = mapped_column(Date)
    actual: Mapped[float | None] = mapped_column(Float)
    predicted: Mapped[float] = mapped_column(Float)
    lower: Mapped[float] = mapped_column(Float)
    upper: Mapped[float] = mapped_column(Float)
    is_forecast: Mapped[bool] = mapped_column(Boolean, default=False)


# --------------------------------------------------------------------------- import and export (issue 6)

IMPORT_ENTITIES = ("customers", "orders", "tickets", "communications", "mentions")
IMPORT_RUN_STATUSES = ("completed", "failed")


class ImportMapping(Base):
    """A named column mapping (file column -> field) for imports, private to its owner or shared."""

    __tablename__ = "import_mappings"
    __table_args__ = (
        enum_check("entity", IMPORT_ENTITIES),
        UniqueConstraint("entity", "name", name="uq_import_mappings_entity_name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(120))
    mapping: Mapped[dict[str, Any]] = mapped_column(JSON)
    is_shared: Mapped[bool] = mapped_column(Boolean, default=False)
    owner_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = created_at_col()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class ImportRun(Base):
    """One import of a file: who ran it, when, with which outcome and counts."""

    __tablename__ = "import_runs"
    __table_args__ = (
        enum_check("entity", IMPORT_ENTITIES),
        enum_check("status", IMPORT_RUN_STATUSES),
        Index("ix_import_runs_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    entity: Mapped[str] = mapped_column(String(16))
    file_name: Mapped[str] = mapped_column(String(255))
    file_format: Mapped[str] = mapped_column(String(8))
    on_duplicate: Mapped[str | None] = mapped_column(String(8))
    status: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[int | None] = user_fk()
    actor_username: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    rows_read: Mapped[int] = mapped_column(Integer, default=0)
    created: Mapped[int] = mapped_column(Integer, default=0)
    updated: Mapped[int] = mapped_column(Integer, default=0)
    skipped: Mapped[int] = mapped_column(Integer, default=0)
    invalid: Mapped[int] = mapped_column(Integer, default=0)
    message: Mapped[str | None] = mapped_column(Text)


# --------------------------------------------------------------------------- service desk (issue 5)

SLA_TARGETS = ("first_response", "next_response", "resolution")


class SlaBreach(Base):
    """A missed SLA target, recorded once per ticket, target and due time; priority, category and
    assignee are copied so breach reports do not change when the ticket does."""

    __tablename__ = "customer_support_sla_breaches"
    __table_args__ = (
        enum_check("target", SLA_TARGETS),
        enum_check("priority", TICKET_PRIORITIES),
        enum_check("category", TICKET_CATEGORIES),
        UniqueConstraint("ticket_id", "target", "due_at", name="uq_sla_breach_ticket_target_due"),
        Index("ix_sla_breaches_detected", "detected_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    ticket_id: Mapped[int] = mapped_column(ForeignKey("customer_support_tickets.id", ondelete="CASCADE"))
    target: Mapped[str] = mapped_column(String(16))
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    detected_at: Mapped[dt.datetime] = mapped_column(DateTime)
    priority: Mapped[str] = mapped_column(String(16))
    category: Mapped[str] = mapped_column(String(16))
    assignee_id: Mapped[int | None] = user_fk()


class StaffNotification(Base):
    """A message for a staff member (an escalated ticket); no user means the whole support team."""

    __tablename__ = "staff_notifications"
    __table_args__ = (Index("ix_staff_notifications_user", "user_id", "read_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(32))
    ticket_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_support_tickets.id", ondelete="CASCADE"), index=True
    )
    message: Mapped[str] = mapped_column(String(500))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --------------------------------------------------------------------------- batch refresh runs (issue 11)

REFRESH_RUN_STATUSES = ("running", "ok", "partial", "failed")
REFRESH_STEP_STATUSES = ("running", "ok", "skipped", "failed")


class RefreshRun(Base):
    """One batch refresh as of a date: who started it, when, and how it ended."""

    __tablename__ = "refresh_runs"
    __table_args__ = (
        enum_check("status", REFRESH_RUN_STATUSES),
        Index("ix_refresh_runs_started", "started_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    status: Mapped[str] = mapped_column(String(16), default="running")
    triggered_by: Mapped[str] = mapped_column(String(64))
    started_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    seconds: Mapped[float | None] = mapped_column(Float)


class RefreshRunStep(Base):
    """One step of a refresh run: its outcome, the reason when skipped or failed, rows written."""

    __tablename__ = "refresh_run_steps"
    __table_args__ = (
        enum_check("status", REFRESH_STEP_STATUSES),
        UniqueConstraint("run_id", "step", name="uq_refresh_run_steps_run_step"),
        Index("ix_refresh_run_steps_step", "step", "run_id"),
        Index("ix_refresh_run_steps_finished", "finished_at"),  # the data version pages key caches by (0015)
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("refresh_runs.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    step: Mapped[str] = mapped_column(String(32))
    label: Mapped[str] = mapped_column(String(120))
    status: Mapped[str] = mapped_column(String(16), default="running")
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    seconds: Mapped[float | None] = mapped_column(Float)
    rows_written: Mapped[int | None] = mapped_column(BigInteger)
    detail: Mapped[str | None] = mapped_column(Text)


# --- issue 13: trust (limits that add up)
# A person's manual loyalty adjustments of the last day, summed against the approval limit.
Index("ix_loyalty_tx_creator_time", LoyaltyTransaction.created_by_id, LoyaltyTransaction.created_at)


# --- issue 14: rollups the batch refresh maintains, so dashboards read aggregates at any size


class RollupState(Base):
    """How far a rollup goes: the refresh that built it, the last complete day it covers, and when."""

    __tablename__ = "rollup_state"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    covered_through: Mapped[dt.date] = mapped_column(Date)
    # What the rollup counts was placed before this moment; readers add what came after it, live.
    cutoff: Mapped[dt.datetime | None] = mapped_column(DateTime)
    built_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    full_rebuild: Mapped[bool] = mapped_column(Boolean, default=False)


class RollupDailyOrders(Base):
    """Revenue orders per calendar day, with the customers whose first and second revenue order it was."""

    __tablename__ = "rollup_daily_orders"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    orders: Mapped[int] = mapped_column(Integer, default=0)
    revenue: Mapped[Decimal] = mapped_column(Money, default=0)
    first_buyers: Mapped[int] = mapped_column(Integer, default=0)
    second_buyers: Mapped[int] = mapped_column(Integer, default=0)


class RollupDailyBuyerGap(Base):
    """Customers ordering on a day by the days since their previous order day (capped; first orders at the
    cap): the customers active in any window ending on a day are a sum over this table."""

    __tablename__ = "rollup_daily_buyer_gaps"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    gap_days: Mapped[int] = mapped_column(Integer, primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)


class RollupDailySignups(Base):
    """Counted customers by the calendar day they signed up."""

    __tablename__ = "rollup_daily_signups"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)


class RollupLifecycleStage(Base):
    """Customers per lifecycle stage as of a refresh, and their median and mean days in it."""

    __tablename__ = "rollup_lifecycle_stages"

    as_of: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    # Customers who entered the stage by the end of as_of, and their median and mean days in it.
    timed_customers: Mapped[int] = mapped_column(Integer, default=0)
    median_days: Mapped[float | None] = mapped_column(Float)
    avg_days: Mapped[float | None] = mapped_column(Float)


class RollupLifecycleFlow(Base):
    """Stage changes of counted customers per calendar day, from one stage ('' for a first stage) to another."""

    __tablename__ = "rollup_lifecycle_flows"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    from_stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    to_stage: Mapped[str] = mapped_column(String(16), primary_key=True)
    changes: Mapped[int] = mapped_column(Integer, default=0)


class RollupCohort(Base):
    """Signup-month cohorts as of a refresh: size and customers with a revenue order in each month since."""

    __tablename__ = "rollup_cohorts"

    as_of: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    cohort: Mapped[str] = mapped_column(String(7), primary_key=True)
    month_offset: Mapped[int] = mapped_column(Integer, primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    active_customers: Mapped[int] = mapped_column(Integer, default=0)


class RollupChurnSummary(Base):
    """Scored customers per prediction date, risk level, account owner and segment (0 = every customer):
    how many, their probability summed, value and expected loss."""

    __tablename__ = "rollup_churn_summary"
    __table_args__ = (Index("ix_rollup_churn_summary_as_of", "as_of", "segment_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    risk_level: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int | None] = mapped_column(Integer)
    segment_id: Mapped[int] = mapped_column(Integer, default=0)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    probability_sum: Mapped[float] = mapped_column(Float, default=0.0)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    expected_loss: Mapped[float] = mapped_column(Float, default=0.0)


class RollupChurnRanking(Base):
    """Each scored customer's place on the latest prediction date by expected loss (probability x value,
    ties by customer id), so the at-risk list pages in rank order without sorting every prediction."""

    __tablename__ = "rollup_churn_ranking"
    __table_args__ = (Index("ix_rollup_churn_ranking_level", "as_of", "risk_level", "position"),)

    as_of: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer)
    risk_level: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[int | None] = mapped_column(Integer)
    value: Mapped[float] = mapped_column(Float, default=0.0)
    expected_loss: Mapped[float] = mapped_column(Float, default=0.0)


class RollupSegmentStats(Base):
    """A segment's active members and their revenue, kept by the refresh and by every membership change."""

    __tablename__ = "rollup_segment_stats"

    segment_id: Mapped[int] = mapped_column(
        ForeignKey("customer_segments.id", ondelete="CASCADE"), primary_key=True)
    members: Mapped[int] = mapped_column(Integer, default=0)
    revenue: Mapped[Decimal] = mapped_column(Money, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class RollupSegmentProfile(Base):
    """Members of a segment (0 = every counted customer) by country, loyalty tier and lifecycle stage, and
    their average orders, revenue and days since the last order, as of the last refresh."""

    __tablename__ = "rollup_segment_profiles"

    segment_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    dimension: Mapped[str] = mapped_column(String(32), primary_key=True)
    value: Mapped[str] = mapped_column(String(64), primary_key=True)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    average: Mapped[float | None] = mapped_column(Float)


class RollupSummary(Base):
    """One computed summary per name and date (the Health page's overview of a scoring date), as JSON."""

    __tablename__ = "rollup_summaries"

    name: Mapped[str] = mapped_column(String(48), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    built_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


# --- issue 15: the HTTP API (personal tokens, idempotency keys, jobs, webhook subscriptions and outbox)

API_JOB_KINDS = ("import_customers", "import_orders", "bulk_action")
API_JOB_STATUSES = ("queued", "running", "succeeded", "failed")
WEBHOOK_DELIVERY_STATUSES = ("pending", "delivered", "failed")


class ApiToken(Base):
    """A personal API token: only its SHA-256 digest is stored; the token acts with its user's role."""

    __tablename__ = "api_tokens"
    __table_args__ = (Index("ix_api_tokens_user", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(100))
    prefix: Mapped[str] = mapped_column(String(16))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    read_only: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = created_at_col()
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))


class ApiIdempotencyKey(Base):
    """The first response to a POST with an Idempotency-Key, replayed for the same user and key."""

    __tablename__ = "api_idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_api_idempotency_keys_user_key"),
        Index("ix_api_idempotency_keys_expires", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(String(255))
    request_hash: Mapped[str] = mapped_column(String(64))
    status_code: Mapped[int] = mapped_column(Integer)
    response_body: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_col()
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ApiJob(Base):
    """Long work started over the API (an import, a bulk action): status, progress and per-record results."""

    __tablename__ = "api_jobs"
    __table_args__ = (
        enum_check("kind", API_JOB_KINDS),
        enum_check("status", API_JOB_STATUSES),
        Index("ix_api_jobs_user_created", "user_id", "created_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int | None] = user_fk()
    kind: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), default="queued")
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    summary: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    results: Mapped[list[Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_col()
    started_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    # The worker's sign of life while the job runs (0022): older than the jobs' stale limit means it stopped.
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    records_done: Mapped[int | None] = mapped_column(Integer)
    records_total: Mapped[int | None] = mapped_column(Integer)


class WebhookSubscription(Base):
    """An admin's subscription of a URL to events; deliveries are signed with its secret."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    url: Mapped[str] = mapped_column(String(2000))
    events: Mapped[list[Any]] = mapped_column(JSON, default=list)
    secret: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = created_at_col()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class WebhookDelivery(Base):
    """The outbox: one event for one subscription, retried with backoff until delivered or given up."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        enum_check("status", WEBHOOK_DELIVERY_STATUSES),
        UniqueConstraint("subscription_id", "event_key", name="uq_webhook_deliveries_subscription_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        Index("ix_webhook_deliveries_subscription", "subscription_id", "id"),  # a subscription's log (0022)
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id", ondelete="CASCADE"))
    event: Mapped[str] = mapped_column(String(64))
    event_key: Mapped[str] = mapped_column(String(120))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_col()
    delivered_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


# --- issue 16: risk (fraud, credit, account takeover) and referrals

RISK_SCORE_TYPES = ("fraud", "credit", "account_takeover")
RISK_ACTIONS = ("none", "review", "restrict", "block")
RISK_LIST_KINDS = ("allow", "block")
RISK_LIST_FIELDS = ("email", "email_domain", "phone", "device", "ip", "payment_fingerprint", "country")
RISK_REVIEW_SOURCES = ("score", "rule", "list", "referral")
RISK_REVIEW_STATES = ("open", "approved", "restricted", "blocked")
RISK_DECISION_ACTIONS = ("restrict", "block")
ACCOUNT_CHANGE_KINDS = ("password", "email", "phone", "address", "payout")
CHARGEBACK_STATUSES = ("open", "won", "lost")
IDENTITY_STATUSES = ("unverified", "pending", "verified", "failed")
IDENTITY_SOURCES = ("reviewer", "import")
PLANTED_RISK_SCENARIOS = ("fraud_ring", "account_takeover", "bad_credit")
REFERRAL_VERDICTS = ("accepted", "rejected", "review")
REFERRAL_REWARD_SIDES = ("referrer", "friend")
REFERRAL_REWARD_STATUSES = ("held", "paid", "reversed", "rejected")
REFERRAL_REWARD_KINDS = ("points", "voucher")  # migration 0024


class SignInEvent(Base):
    """One customer sign-in: the device, the IP address and where it came from."""

    __tablename__ = "customer_sign_in_events"
    __table_args__ = (
        CheckConstraint("latitude IS NULL OR (latitude BETWEEN -90 AND 90)", name="latitude_range"),
        CheckConstraint("longitude IS NULL OR (longitude BETWEEN -180 AND 180)", name="longitude_range"),
        Index("ix_sign_ins_customer_time", "customer_id", "signed_in_at"),
        Index("ix_sign_ins_device", "device_id"),
        Index("ix_sign_ins_time", "signed_in_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    signed_in_at: Mapped[dt.datetime] = mapped_column(DateTime)
    device_id: Mapped[str] = mapped_column(String(64))
    ip_address: Mapped[str] = mapped_column(String(45))
    country_code: Mapped[str | None] = mapped_column(String(2))
    city: Mapped[str | None] = mapped_column(String(100))
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    succeeded: Mapped[bool] = mapped_column(Boolean, default=True)


class AccountChange(Base):
    """A change to a customer's credentials or where money and parcels go (takeover signals)."""

    __tablename__ = "customer_account_changes"
    __table_args__ = (
        enum_check("kind", ACCOUNT_CHANGE_KINDS),
        Index("ix_account_changes_customer_time", "customer_id", "changed_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    kind: Mapped[str] = mapped_column(String(16))
    changed_at: Mapped[dt.datetime] = mapped_column(DateTime)


class Chargeback(Base):
    __tablename__ = "customer_chargebacks"
    __table_args__ = (
        enum_check("status", CHARGEBACK_STATUSES),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        Index("ix_chargebacks_customer_time", "customer_id", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"), index=True)
    amount: Mapped[Decimal] = mapped_column(Money, default=0)
    reason: Mapped[str] = mapped_column(String(64), default="fraudulent")
    status: Mapped[str] = mapped_column(String(8), default="open")
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime)


class IdentityCheck(Base):
    """Identity verification history; a customer's status is their latest row (none: unverified)."""

    __tablename__ = "customer_identity_checks"
    __table_args__ = (
        enum_check("status", IDENTITY_STATUSES),
        enum_check("source", IDENTITY_SOURCES),
        CheckConstraint("status <> 'failed' OR reason IS NOT NULL", name="failed_has_reason"),
        Index("ix_identity_checks_customer_time", "customer_id", "checked_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(16), default="reviewer")
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    checked_by_id: Mapped[int | None] = user_fk()


class RiskRule(Base):
    """A risk rule kept as data: a condition over the signals, a weight and an action."""

    __tablename__ = "risk_rules"
    __table_args__ = (
        enum_check("risk_type", RISK_SCORE_TYPES),
        enum_check("action", RISK_ACTIONS),
        CheckConstraint("weight BETWEEN 0 AND 100", name="weight_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120), unique=True)
    risk_type: Mapped[str] = mapped_column(String(16))
    condition: Mapped[dict[str, Any]] = mapped_column(JSON)
    weight: Mapped[int] = mapped_column(Integer)
    action: Mapped[str] = mapped_column(String(16), default="none")
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = created_at_col()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class RiskListEntry(Base):
    """An allow- or block-list entry over one normalised value of a field."""

    __tablename__ = "risk_list_entries"
    __table_args__ = (
        enum_check("list_kind", RISK_LIST_KINDS),
        enum_check("field", RISK_LIST_FIELDS),
        UniqueConstraint("list_kind", "field", "value", name="uq_risk_list_entries_value"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    list_kind: Mapped[str] = mapped_column(String(8))
    field: Mapped[str] = mapped_column(String(24))
    value: Mapped[str] = mapped_column(String(254))
    reason: Mapped[str] = mapped_column(String(255))
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = created_at_col()


class RiskScore(Base):
    """A customer's risk scores (0-100) as of a date, the rules that fired and the action taken."""

    __tablename__ = "customer_risk_scores"
    __table_args__ = (
        enum_check("level", RISK_LEVELS),
        enum_check("action", RISK_ACTIONS),
        CheckConstraint("overall BETWEEN 0 AND 100", name="overall_range"),
        Index("ix_risk_scores_as_of_overall", "as_of", "overall"),
    )

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    fraud: Mapped[float] = mapped_column(Float)
    credit: Mapped[float] = mapped_column(Float)
    account_takeover: Mapped[float] = mapped_column(Float)
    overall: Mapped[float] = mapped_column(Float)
    level: Mapped[str] = mapped_column(String(16))
    anomaly: Mapped[float | None] = mapped_column(Float)
    action: Mapped[str] = mapped_column(String(16), default="none")
    fired: Mapped[list[Any] | None] = mapped_column(JSON)


class RiskReview(Base):
    """A case in the review queue: why it was opened, and the reviewer's decision."""

    __tablename__ = "risk_reviews"
    __table_args__ = (
        enum_check("source", RISK_REVIEW_SOURCES),
        enum_check("status", RISK_REVIEW_STATES),
        enum_check("risk_type", RISK_SCORE_TYPES),
        Index("ix_risk_reviews_status_score", "status", "score"),
        Index("ix_risk_reviews_customer", "customer_id", "status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    referral_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_referral_program.id", ondelete="SET NULL"))
    source: Mapped[str] = mapped_column(String(16))
    risk_type: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float)
    anomaly: Mapped[float | None] = mapped_column(Float)
    fired: Mapped[list[Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default="open")
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime)
    due_at: Mapped[dt.datetime] = mapped_column(DateTime)
    decided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    decided_by_id: Mapped[int | None] = user_fk()
    reason: Mapped[str | None] = mapped_column(String(500))
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class RiskDecision(Base):
    """A restriction or block on a customer, enforced by the core until it expires or is lifted."""

    __tablename__ = "customer_risk_decisions"
    __table_args__ = (
        enum_check("action", RISK_DECISION_ACTIONS),
        CheckConstraint("expires_at IS NULL OR expires_at > created_at", name="expires_after_created"),
        Index("ix_risk_decisions_customer", "customer_id", "lifted_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    action: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(String(500))
    order_limit: Mapped[Decimal | None] = mapped_column(Money)
    review_id: Mapped[int | None] = mapped_column(ForeignKey("risk_reviews.id", ondelete="SET NULL"))
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    lifted_at: Mapped[dt.datetime | None] = mapped_column(DateTime)


class PlantedRisk(Base):
    """The simulator's planted truth: who it made a fraud ring member, a takeover or a bad payer."""

    __tablename__ = "simulated_risk_truth"
    __table_args__ = (enum_check("scenario", PLANTED_RISK_SCENARIOS), enum_check("risk_type", RISK_SCORE_TYPES))

    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), primary_key=True)
    scenario: Mapped[str] = mapped_column(String(24))
    risk_type: Mapped[str] = mapped_column(String(16))
    planted_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ReferralCode(Base):
    """A customer's unguessable referral code."""

    __tablename__ = "customer_referral_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id", ondelete="CASCADE"), unique=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    created_at: Mapped[dt.datetime] = created_at_col()


class ReferralCheck(Base):
    """The fraud checks' verdict on a referral before any payout; a rejection keeps its reason."""

    __tablename__ = "customer_referral_checks"
    __table_args__ = (enum_check("verdict", REFERRAL_VERDICTS),)

    referral_id: Mapped[int] = mapped_column(
        ForeignKey("customer_referral_program.id", ondelete="CASCADE"), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    first_order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    checked_at: Mapped[dt.datetime] = mapped_column(DateTime)


class ReferralReward(Base):
    """One side's reward for a referral: held until the friend's first paid order is past returns."""

    __tablename__ = "customer_referral_rewards"
    __table_args__ = (
        enum_check("side", REFERRAL_REWARD_SIDES),
        enum_check("status", REFERRAL_REWARD_STATUSES),
        enum_check("kind", REFERRAL_REWARD_KINDS),
        # points rewards post points; voucher rewards issue a voucher of `amount` (migration 0024)
        CheckConstraint("(kind = 'points' AND points > 0) OR (kind = 'voucher' AND points = 0 AND amount > 0)",
                        name="reward_positive"),
        UniqueConstraint("referral_id", "side", name="uq_customer_referral_rewards_side"),
        Index("ix_referral_rewards_status", "status", "payable_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    referral_id: Mapped[int] = mapped_column(ForeignKey("customer_referral_program.id", ondelete="CASCADE"))
    side: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int] = customer_fk()
    points: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16), default="held")
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id", ondelete="SET NULL"))
    payable_at: Mapped[dt.datetime] = mapped_column(DateTime)
    settled_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    reason: Mapped[str | None] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16), default="points", server_default="points")
    amount: Mapped[Decimal | None] = mapped_column(Money)
    voucher_id: Mapped[int | None] = mapped_column(ForeignKey("vouchers.id", ondelete="SET NULL"))


# --- issue 17: win-back campaigns (carts, uplift models)

CART_STATUSES = ("open", "converted")


class Cart(Base):
    """A shopping cart; an open cart left untouched is abandoned (crm_core.campaigns says after how long)."""

    __tablename__ = "carts"
    __table_args__ = (
        enum_check("status", CART_STATUSES),
        CheckConstraint("value >= 0", name="value_non_negative"),
        Index("ix_carts_status_updated", "status", "updated_at"),
        Index("ix_carts_customer", "customer_id", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    status: Mapped[str] = mapped_column(String(16), default="open")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime)
    value: Mapped[Decimal] = mapped_column(Money, default=0)
    order_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("orders.id", ondelete="SET NULL")
    )


class CartItem(Base):
    __tablename__ = "cart_items"
    __table_args__ = (CheckConstraint("quantity > 0", name="quantity_positive"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cart_id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("carts.id", ondelete="CASCADE"), index=True
    )
    product_id: Mapped[int | None] = mapped_column(ForeignKey("products.id", ondelete="SET NULL"))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[Decimal] = mapped_column(Money)


class CampaignUpliftModel(Base):
    """An uplift model trained on finished campaigns' treatment and control customers, with its Qini
    curve and area measured on held-out customers."""

    __tablename__ = "campaign_uplift_models"

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    algorithm: Mapped[str] = mapped_column(String(64))
    campaign_ids: Mapped[list[Any]] = mapped_column(JSON)
    features: Mapped[list[Any]] = mapped_column(JSON)
    train_customers: Mapped[int] = mapped_column(Integer)
    test_customers: Mapped[int] = mapped_column(Integer)
    qini_area: Mapped[float | None] = mapped_column(Float)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    artifact: Mapped[bytes | None] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = user_fk()
    created_at: Mapped[dt.datetime] = created_at_col()


# --- issue 18: the success manager's workbench (health level runs, CTAs, playbooks, holdouts)

HEALTH_BAND_SOURCES = ("default", "calibrated", "admin")
CTA_PRIORITIES = ("low", "medium", "high", "urgent")
CTA_STATUSES = ("open", "in_progress", "snoozed", "closed")
CTA_OUTCOMES = ("saved", "churned", "unreachable", "not_needed", "trigger_cleared")
CTA_SOURCES = ("rule", "manual")
CTA_LINK_KINDS = ("communication", "ticket", "complaint", "note")


class AccountHealthRun(Base):
    """One health scoring date: live accounts scored, customers shown apart (churned, never bought),
    and the level bands that were applied."""

    __tablename__ = "account_health_runs"
    __table_args__ = (enum_check("bands_source", HEALTH_BAND_SOURCES),)

    as_of: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    scored: Mapped[int] = mapped_column(Integer, default=0)
    churned: Mapped[int] = mapped_column(Integer, default=0)
    never_bought: Mapped[int] = mapped_column(Integer, default=0)
    churned_after_days: Mapped[int] = mapped_column(Integer)
    thresholds: Mapped[dict[str, Any]] = mapped_column(JSON)
    bands_source: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = created_at_col()


class SuccessPlaybook(Base):
    """The admin-editable template of a CTA trigger: steps, priority, due days, holdout share."""

    __tablename__ = "success_playbooks"
    __table_args__ = (
        enum_check("priority", CTA_PRIORITIES),
        CheckConstraint("due_days BETWEEN 0 AND 365", name="due_days_range"),
        CheckConstraint("holdout_share BETWEEN 0 AND 0.5", name="holdout_share_range"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    trigger: Mapped[str] = mapped_column(String(32), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    steps: Mapped[list[Any]] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(16), default="medium")
    due_days: Mapped[int] = mapped_column(Integer, default=7)
    holdout_share: Mapped[float] = mapped_column(Float, default=0.1)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = user_fk()
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class SuccessCta(Base):
    """A call to action on one customer: opened by a rule or by hand, owned, worked, closed with an outcome.

    At most one CTA per customer and trigger is not closed (a partial unique index)."""

    __tablename__ = "success_ctas"
    __table_args__ = (
        enum_check("priority", CTA_PRIORITIES),
        enum_check("status", CTA_STATUSES),
        enum_check("outcome", CTA_OUTCOMES, nullable=True),
        enum_check("source", CTA_SOURCES),
        CheckConstraint("status <> 'closed' OR outcome IS NOT NULL", name="closed_has_outcome"),
        CheckConstraint("status <> 'snoozed' OR snoozed_until IS NOT NULL", name="snoozed_has_date"),
        Index("ix_success_ctas_one_open", "customer_id", "trigger", unique=True,
              postgresql_where=text("status <> 'closed'"), sqlite_where=text("status <> 'closed'")),
        Index("ix_success_ctas_owner_status", "owner_id", "status", "due_on"),
        Index("ix_success_ctas_status_opened", "status", "opened_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk()
    trigger: Mapped[str] = mapped_column(String(32))
    source: Mapped[str] = mapped_column(String(16), default="manual")
    playbook_id: Mapped[int | None] = mapped_column(ForeignKey("success_playbooks.id", ondelete="SET NULL"))
    title: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str] = mapped_column(Text, default="")
    signals: Mapped[dict[str, Any]] = mapped_column(JSON)
    steps: Mapped[list[Any]] = mapped_column(JSON)
    priority: Mapped[str] = mapped_column(String(16), default="medium")
    status: Mapped[str] = mapped_column(String(16), default="open")
    owner_id: Mapped[int | None] = user_fk()
    due_on: Mapped[dt.date] = mapped_column(Date)
    snoozed_until: Mapped[dt.date | None] = mapped_column(Date)
    outcome: Mapped[str | None] = mapped_column(String(16))
    outcome_note: Mapped[str | None] = mapped_column(Text)
    opened_on: Mapped[dt.date] = mapped_column(Date)
    opened_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    first_action_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    closed_on: Mapped[dt.date | None] = mapped_column(Date)
    created_by_id: Mapped[int | None] = user_fk()
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}


class SuccessCtaEvent(Base):
    """Every change to a CTA, in order: created, edited, status, step done, linked, closed."""

    __tablename__ = "success_cta_events"
    __table_args__ = (Index("ix_success_cta_events_cta", "cta_id", "occurred_at"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    cta_id: Mapped[int] = mapped_column(ForeignKey("success_ctas.id", ondelete="CASCADE"))
    occurred_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    actor_id: Mapped[int | None] = user_fk()
    actor_username: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(32))
    before: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    after: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SuccessCtaLink(Base):
    """A communication, ticket, complaint or note logged while working a CTA."""

    __tablename__ = "success_cta_links"
    __table_args__ = (enum_check("kind", CTA_LINK_KINDS), Index("ix_success_cta_links_cta", "cta_id"))

    id: Mapped[int] = mapped_column(primary_key=True)
    cta_id: Mapped[int] = mapped_column(ForeignKey("success_ctas.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    communication_id: Mapped[int | None] = mapped_column(
        ForeignKey("customer_communication_history.id", ondelete="SET NULL"))
    ticket_id: Mapped[int | None] = mapped_column(ForeignKey("customer_support_tickets.id", ondelete="SET NULL"))
    complaint_id: Mapped[int | None] = mapped_column(ForeignKey("customer_complaint_management.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at_col()
    created_by_id: Mapped[int | None] = user_fk()


class SuccessHoldout(Base):
    """A rule trigger deliberately left without a CTA (the randomised comparison group)."""

    __tablename__ = "success_holdouts"
    __table_args__ = (
        Index("ix_success_holdouts_one_open", "customer_id", "trigger", unique=True,
              postgresql_where=text("cleared_on IS NULL"), sqlite_where=text("cleared_on IS NULL")),
        Index("ix_success_holdouts_trigger", "trigger", "fired_on"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    trigger: Mapped[str] = mapped_column(String(32))
    playbook_id: Mapped[int | None] = mapped_column(ForeignKey("success_playbooks.id", ondelete="SET NULL"))
    fired_on: Mapped[dt.date] = mapped_column(Date)
    cleared_on: Mapped[dt.date | None] = mapped_column(Date)
    signals: Mapped[dict[str, Any]] = mapped_column(JSON)


# --- issue 17: social listening and customer journeys

JOURNEY_KINDS = ("to_purchase", "to_churn", "first_touch")


class JourneyRun(Base):
    """One computation of customer journeys as of a date (the batch's journeys step): how many
    customers it followed and how many touchpoints each source gave (0 = the shop has none)."""

    __tablename__ = "journey_runs"
    __table_args__ = (Index("ix_journey_runs_computed", "computed_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    as_of: Mapped[dt.date] = mapped_column(Date)
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    customers: Mapped[int] = mapped_column(Integer, default=0)
    buyers: Mapped[int] = mapped_column(Integer, default=0)
    churned: Mapped[int] = mapped_column(Integer, default=0)
    sources: Mapped[dict[str, Any]] = mapped_column(JSON)
    seconds: Mapped[float | None] = mapped_column(Float)


class JourneyRollup(Base):
    """The most common paths of a run (to the first purchase, from it to churn) and conversion by
    first-touch channel, for all customers and per segment and signup cohort (NULL = all): how many
    customers took the path, how many reached its goal, how many ended at each end node, and the
    median days between its steps."""

    __tablename__ = "journey_rollups"
    __table_args__ = (
        enum_check("kind", JOURNEY_KINDS),
        Index("ix_journey_rollups_lookup", "run_id", "kind", "segment_id", "cohort", "rank"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("journey_runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    segment_id: Mapped[int | None] = mapped_column(ForeignKey("customer_segments.id", ondelete="CASCADE"))
    cohort: Mapped[str | None] = mapped_column(String(7))
    rank: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    steps: Mapped[int] = mapped_column(Integer)
    customers: Mapped[int] = mapped_column(Integer)
    reached: Mapped[int] = mapped_column(Integer)
    outcomes: Mapped[dict[str, Any]] = mapped_column(JSON)
    median_days: Mapped[list[Any]] = mapped_column(JSON)
    median_days_total: Mapped[float | None] = mapped_column(Float)


class SocialMentionTerm(Base):
    """A topic, category, brand or product a mention's text names (crm_core.social.topics), with the
    mention's time, platform and negativity copied so the Social page counts terms over a date range
    with one GROUP BY."""

    __tablename__ = "customer_social_mention_terms"
    __table_args__ = (
        Index("ix_mention_terms_time", "posted_at"),
        Index("ix_mention_terms_mention", "mention_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    mention_id: Mapped[int] = mapped_column(ForeignKey("customer_social_media_mentions.id", ondelete="CASCADE"))
    term: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16))
    posted_at: Mapped[dt.datetime] = mapped_column(DateTime)
    platform: Mapped[str] = mapped_column(String(16))
    negative: Mapped[bool] = mapped_column(Boolean, default=False)


# --- issue 14: the communications rollup (migration 0021)


class RollupDailyCommunications(Base):
    """Outbound messages per calendar day, channel, campaign and template by the furthest funnel stage
    they reached (crm_core.service.communication_rollups): the Communications page's funnel and campaign
    table sum a few thousand of these rows instead of every message. No campaign or template is ''."""

    __tablename__ = "rollup_daily_communications"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    channel: Mapped[str] = mapped_column(String(8), primary_key=True)
    campaign: Mapped[str] = mapped_column(String(100), primary_key=True)
    template: Mapped[str] = mapped_column(String(100), primary_key=True)
    sent: Mapped[int] = mapped_column(Integer, default=0)
    delivered: Mapped[int] = mapped_column(Integer, default=0)
    opened: Mapped[int] = mapped_column(Integer, default=0)
    clicked: Mapped[int] = mapped_column(Integer, default=0)
    replied: Mapped[int] = mapped_column(Integer, default=0)
    bounced: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    first_sent: Mapped[dt.datetime] = mapped_column(DateTime)
    last_sent: Mapped[dt.datetime] = mapped_column(DateTime)


# --- issue 14: keys the risk signals match accounts on, indexed (migration 0023)

PHONE_SEPARATORS = (" ", "-", "+", "(", ")", ".")


def phone_digits(phone: Any) -> Any:
    """A phone number without separators. The constants are literals, not parameters, so the index below
    serves the risk signals' "shares a phone" lookups on both databases."""
    expression = phone
    for char in PHONE_SEPARATORS:
        expression = func.replace(expression, literal_column(f"'{char}'", String), literal_column("''", String))
    return expression


def address_key(line1: Any, postal_code: Any, country_code: Any) -> Any:
    """A shipping address as the "shares an address" signal compares it: line, postcode and country."""
    separator = literal_column("'|'", String)
    return (func.lower(func.trim(line1)).concat(separator)
            .concat(func.coalesce(postal_code, literal_column("''", String))).concat(separator).concat(country_code))


# `_table`: SQLAlchemy finds the table of a functional index only through shallow expressions.
Index("ix_customers_phone_digits", phone_digits(Customer.__table__.c.phone), _table=Customer.__table__)
Index("ix_addresses_key", address_key(CustomerAddress.__table__.c.line1, CustomerAddress.__table__.c.postal_code,
                                      CustomerAddress.__table__.c.country_code), _table=CustomerAddress.__table__)


# --- issues 16 and 17: vouchers (migration 0024)

VOUCHER_KINDS = ("percent", "amount")
VOUCHER_SOURCES = ("campaign", "referral", "manual")
VOUCHER_STATUSES = ("issued", "redeemed", "void", "expired")


class Voucher(Base):
    """A single-use voucher issued to one customer (a campaign's incentive, a referral reward or by
    hand), redeemed on one of their orders. Status changes are conditional UPDATEs that bump
    `version`, so two orders redeeming one code at once cannot both succeed."""

    __tablename__ = "vouchers"
    __table_args__ = (
        enum_check("kind", VOUCHER_KINDS),
        enum_check("source", VOUCHER_SOURCES),
        enum_check("status", VOUCHER_STATUSES),
        CheckConstraint("value > 0", name="value_positive"),
        CheckConstraint("kind = 'amount' OR value <= 100", name="percent_range"),
        CheckConstraint("min_order >= 0", name="min_order_non_negative"),
        # never two vouchers for one customer from one campaign or one referral reward
        UniqueConstraint("source", "source_id", "customer_id", name="uq_vouchers_source"),
        Index("ix_vouchers_customer", "customer_id", "issued_at"),
        Index("ix_vouchers_status_expiry", "status", "expires_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = customer_fk(index=False)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[Decimal] = mapped_column(Money)
    min_order: Mapped[Decimal] = mapped_column(Money, default=0)
    source: Mapped[str] = mapped_column(String(16))
    source_id: Mapped[str | None] = mapped_column(String(64))
    issued_at: Mapped[dt.datetime] = mapped_column(DateTime)
    expires_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    status: Mapped[str] = mapped_column(String(16), default="issued")
    redeemed_order_id: Mapped[int | None] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), ForeignKey("orders.id", ondelete="SET NULL")
    )
    redeemed_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    voided_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    void_reason: Mapped[str | None] = mapped_column(String(255))
    # A redeemed voucher whose reward was reversed (the friend's order refunded) is clawed back:
    # it cannot be unredeemed, so the reversal is noted here and in the audit log.
    clawed_back_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    issued_by_id: Mapped[int | None] = user_fk()
    version: Mapped[int] = mapped_column(Integer, default=1)
