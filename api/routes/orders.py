"""Orders: a customer's orders (newest first) and order intake, which the core checks against the
risk decisions in force; a voucher may be redeemed and a referral code attributed on a first order.
And a customer's vouchers: listed, issued by hand, voided (If-Match with the version listed)."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import customers, orders, platform, vouchers
from db.models import ORDER_CHANNELS

from ..context import Actor, etag, if_match, json_response, post, precondition, read
from ..schemas import Strict, Voucher, VoucherIssue, VoucherVoid, VoucherVoided
from .common import After, Id, Limit500, PageNumber, PageSize, page, paging

router = APIRouter(tags=["orders"])
Amount = Decimal | float | str


class OrderItem(Strict):
    product_id: int = Field(ge=1, le=2**62)
    quantity: int = Field(1, ge=1, le=10_000)
    unit_price: Amount | None = Field(None, description="Defaults to the product's price")


class OrderCreate(Strict):
    """Either `items` or a `total`; amounts in the order's currency (the shop's by default)."""

    items: list[OrderItem] | None = Field(None, min_length=1, max_length=200)
    total: Amount | None = None
    shipping: Amount | None = None
    channel: str | None = Field(None, max_length=16, description=", ".join(ORDER_CHANNELS) + " (default web)")
    currency: str | None = Field(None, max_length=3)
    status: str | None = Field(None, max_length=16, description=", ".join(orders.INTAKE_STATUSES) + " (default paid)")
    order_number: str | None = Field(None, max_length=64, description="The shop's own number; generated if omitted")
    voucher_code: str | None = Field(None, max_length=64)
    referral_code: str | None = Field(None, max_length=64, description="Attributed on a first order only")


@router.get("/customers/{customer_id}/orders", summary="The customer's orders, newest first")
def list_orders(request: Request, customer_id: Id, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
                page_size: PageSize = 25, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, customers.orders, customer_id, number, size, after=cursor)))


@router.post("/customers/{customer_id}/orders", status_code=201,
             summary="Record a new order (refused with the reason when a risk decision forbids it)")
def create_order(request: Request, customer_id: Id, body: OrderCreate, actor: platform.TokenActor = Actor) -> Response:
    fields = body.model_dump(exclude_none=True)
    return post(request, actor, body, lambda s: orders.record_order(s, actor, customer_id, fields))


@router.get("/customers/{customer_id}/vouchers",
            summary="The customer's vouchers, newest first (whole codes for roles that record orders; "
                    "`version` is the If-Match to void one)")
def list_vouchers(request: Request, customer_id: Id, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
                  page_size: PageSize = 25, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, vouchers.customer_vouchers, customer_id, number, size,
                                   after=cursor)))


@router.post("/customers/{customer_id}/vouchers", status_code=201, response_model=Voucher,
             summary="Issue a voucher by hand with a reason (the answer shows its whole code)")
def issue_voucher(request: Request, customer_id: Id, body: VoucherIssue, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made = vouchers.issue_voucher(session, actor, customer_id, body.kind, body.value, days=body.days,
                                      min_order=body.min_order, reason=body.reason)
        return {field: getattr(made, field) for field in Voucher.model_fields}  # the answer's schema, in order

    return post(request, actor, body, work, headers=lambda v: {"ETag": etag(v["version"])})


@router.post("/vouchers/{voucher_id}/void", response_model=VoucherVoided,
             summary="Void an unused voucher with a reason (If-Match required: the version listed)")
def void_voucher(request: Request, voucher_id: Id, body: VoucherVoid, actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)

    def work(session):
        outcome = vouchers.void_voucher(session, actor, voucher_id, body.reason, expected_version=version)
        return {"id": voucher_id, "outcome": outcome}

    with precondition():
        return post(request, actor, body, work, status=200)
