"""Request and response bodies that the OpenAPI schema documents (and Schemathesis checks)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from crm_core import vouchers


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CustomerFields(Strict):
    first_name: str | None = Field(None, max_length=1000)
    last_name: str | None = Field(None, max_length=1000)
    email: str | None = Field(None, max_length=1000)
    phone: str | None = Field(None, max_length=1000)
    company: str | None = Field(None, max_length=1000)
    country_code: str | None = Field(None, max_length=100)
    city: str | None = Field(None, max_length=1000)
    preferred_language: str | None = Field(None, max_length=100)
    date_of_birth: dt.date | None = None
    gender: str | None = Field(None, max_length=100)
    notes: str | None = Field(None, max_length=10000)


class CustomerCreate(CustomerFields):
    external_id: str | None = Field(None, max_length=1000)
    acquisition_channel: str | None = Field(None, max_length=100)


class CustomerSummary(BaseModel):
    id: int
    external_id: str | None
    name: str
    email: str | None
    country: str | None
    status: str
    signed_up_at: dt.datetime | None
    version: int
    stage: str | None
    tier: str | None
    orders: int
    revenue: float
    last_order_at: dt.datetime | None
    clv_12m: float | None
    churn_probability: float | None


class CustomerList(BaseModel):
    data: list[CustomerSummary]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class CustomerSearch(Strict):
    """Filter groups over the segment rule fields: `{"any": [{"all": [{"field", "op", "value"}, ...]}, ...]}`
    (any nesting of `all` / `any` groups). Omitted: every customer."""

    filter: dict[str, Any] | None = None
    as_of: dt.date | None = None
    include_gone: bool = False
    limit: int = Field(100, ge=1, le=1000)
    after: str | None = Field(None, max_length=30, pattern=r"^[0-9]*$")


class Customer(BaseModel):
    """A customer's facts and latest scores (Customer 360); `expand` adds the named parts."""

    id: int
    facts: dict[str, Any]
    scores: dict[str, Any]
    orders: list[dict[str, Any]] | None = None
    tickets: list[dict[str, Any]] | None = None
    loyalty: dict[str, Any] | None = None
    segments: list[dict[str, Any]] | None = None
    timeline: list[dict[str, Any]] | None = None


class PrivacyRequest(BaseModel):
    id: int
    customer_id: int
    request_type: str
    status: str
    received_at: dt.datetime
    due_at: dt.datetime


class TokenCreate(Strict):
    name: str = Field("API token", max_length=100)
    read_only: bool = False
    expires_days: int | None = Field(None, ge=1, le=3650)


class TokenCreated(BaseModel):
    id: int
    token: str = Field(description="Shown once: store it now; only a digest is kept.")
    prefix: str
    read_only: bool
    expires_at: dt.datetime | None


class TokenInfo(BaseModel):
    id: int
    user: str
    name: str
    prefix: str
    read_only: bool
    created_at: dt.datetime
    expires_at: dt.datetime | None
    last_used_at: dt.datetime | None
    status: Literal["active", "expired", "revoked"]


class TokenList(BaseModel):
    data: list[TokenInfo]
    next_after: str | None = Field(description="Pass as `after` for the next page; null on the last page.")


class VoucherIssue(Strict):
    """A voucher issued by hand: a percentage or an amount in the shop's currency off an order's goods,
    within the core's limits (a value outside them is a 400 that names them)."""

    kind: str = Field(max_length=16, description="percent or amount")
    value: Decimal | float | str = Field(description=f"Up to {vouchers.MAX_VOUCHER_PERCENT} (percent) or "
                                                     f"{vouchers.MAX_VOUCHER_AMOUNT} (amount)")
    days: int | None = Field(None, ge=1, le=vouchers.MAX_VOUCHER_DAYS,
                             description=f"Valid for this many days (default {vouchers.DEFAULT_VOUCHER_DAYS})")
    min_order: Decimal | float | str = Field(0.0, description="The least an order's goods must come to")
    reason: str = Field(max_length=500, description="Why it is given (required; kept in the audit log)")


class Voucher(BaseModel):
    id: int
    customer_id: int
    code: str = Field(description="The whole code, for the customer")
    kind: str
    value: float
    min_order: float
    source: str
    status: str
    issued_at: dt.datetime
    expires_at: dt.datetime | None
    version: int = Field(description="Send as If-Match to void it")


class VoucherVoid(Strict):
    reason: str = Field(max_length=500, description="Why it is voided (required; kept on the voucher)")


class VoucherVoided(BaseModel):
    id: int
    outcome: Literal["void", "clawed_back"] = Field(
        description="void: it can no longer be used; clawed_back: it was already used, the reversal is noted on it")
