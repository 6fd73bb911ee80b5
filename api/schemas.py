"""Request and response bodies that the OpenAPI schema documents (and Schemathesis checks)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


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
