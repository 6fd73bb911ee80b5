"""Orders: a customer's orders (newest first) and order intake, which the core checks against the
risk decisions in force; a voucher may be redeemed and a referral code attributed on a first order.
And a customer's vouchers."""

from __future__ import annotations

from decimal import Decimal

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import customers, orders, platform, vouchers
from db.models import ORDER_CHANNELS

from ..context import Actor, json_response, post, read
from ..schemas import Strict
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
            summary="The customer's vouchers, newest first (whole codes for roles that record orders)")
def list_vouchers(request: Request, customer_id: Id, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
                  page_size: PageSize = 25, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, vouchers.customer_vouchers, customer_id, number, size,
                                   after=cursor)))
