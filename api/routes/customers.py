"""Customers: create, read (Customer 360 with `expand=`), update with ETag / If-Match, delete as an
erasure request, and search with filter groups and keyset paging."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import Response

from crm_core import customers, loyalty, platform

from ..context import Actor, etag, if_match, json_response, page_args, post, precondition, read, unit
from ..errors import ApiError
from ..schemas import Customer, CustomerCreate, CustomerFields, CustomerList, CustomerSearch, PrivacyRequest

router = APIRouter(prefix="/customers", tags=["customers"])
CustomerId = Annotated[int, Path(ge=1, le=2**62, description="The customer's id")]
EXPANSIONS = ("orders", "tickets", "loyalty", "segments", "timeline", "scores")  # scores are always included
EXPANDED_ROWS = 25


def _expansions(expand: str | None) -> list[str]:
    chosen = [part.strip() for part in (expand or "").split(",") if part.strip()]
    unknown = [part for part in chosen if part not in EXPANSIONS]
    if unknown:
        raise ApiError(400, "invalid_request_error", "invalid",
                       f"Cannot expand {unknown[0]!r}; choose from: {', '.join(EXPANSIONS)}.", param="expand")
    return list(dict.fromkeys(chosen))


def _list(result: dict) -> dict:
    after = result["next_after"]
    return {"data": result["rows"], "next_after": None if after is None else str(after)}


@router.get("", response_model=CustomerList, summary="List customers (id order, keyset pages)")
def list_customers(request: Request, actor: platform.TokenActor = Actor,
                   limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                   after: Annotated[str | None, Query(max_length=30, pattern=r"^[0-9]*$")] = None) -> Response:
    limit, after_id = page_args(limit, after)
    result = read(request, actor, customers.filter_customers, None, dt.date.today(), limit, after_id)
    return json_response(_list(result))


@router.post("/search", response_model=CustomerList, summary="Search with filter groups (keyset pages)")
def search_customers(request: Request, body: CustomerSearch, actor: platform.TokenActor = Actor) -> Response:
    limit, after_id = page_args(body.limit, body.after)
    as_of = platform.check_as_of(body.as_of) if body.as_of else dt.date.today()
    return post(request, actor, body, lambda s: _list(customers.filter_customers(
        s, actor, body.filter, as_of, limit, after_id, body.include_gone)), status=200)


@router.post("", status_code=201, response_model=Customer, summary="Create a customer")
def create_customer(request: Request, body: CustomerCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        created = customers.create_customer(session, actor, body.model_dump(exclude_unset=True))
        return {"id": created.id, **customers.customer_profile(session, actor, created.id)}

    return post(request, actor, body, work, headers=lambda c: {"ETag": etag(c["facts"]["version"]),
                                                               "Location": f"/customers/{c['id']}"})


@router.get("/{customer_id}", response_model=Customer, summary="A customer (Customer 360)")
def get_customer(request: Request, customer_id: CustomerId, actor: platform.TokenActor = Actor,
                 expand: Annotated[str | None, Query(max_length=200,
                                                     description=f"Comma-separated: {', '.join(EXPANSIONS)}")] = None,
                 ) -> Response:
    parts = _expansions(expand)
    with unit(request) as session:
        profile = customers.customer_profile(session, actor, customer_id)
        body = {"id": customer_id, **profile}
        if "orders" in parts:
            body["orders"] = customers.orders(session, actor, customer_id, page_size=EXPANDED_ROWS).rows
        if "tickets" in parts:
            body["tickets"] = customers.timeline(session, actor, customer_id, page_size=EXPANDED_ROWS,
                                                 kinds=["ticket"]).rows
        if "timeline" in parts:
            body["timeline"] = customers.timeline(session, actor, customer_id, page_size=EXPANDED_ROWS).rows
        if "segments" in parts:
            body["segments"] = customers.segments_of(session, actor, customer_id)
        if "loyalty" in parts:
            body["loyalty"] = loyalty.account_summary(session, actor, customer_id)
    return json_response(body, headers={"ETag": etag(profile["facts"]["version"])})


@router.patch("/{customer_id}", response_model=Customer, summary="Update a customer (If-Match required)")
def update_customer(request: Request, customer_id: CustomerId, body: CustomerFields,
                    actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)
    with precondition(), unit(request) as session:
        customers.update_customer(session, actor, customer_id, version, body.model_dump(exclude_unset=True))
        profile = customers.customer_profile(session, actor, customer_id)
    return json_response({"id": customer_id, **profile}, headers={"ETag": etag(profile["facts"]["version"])})


@router.delete("/{customer_id}", status_code=202, response_model=PrivacyRequest,
               summary="Delete = open an erasure request (answered on the Privacy requests page or via /privacy)")
def delete_customer(request: Request, customer_id: CustomerId, actor: platform.TokenActor = Actor) -> Response:
    with unit(request) as session:
        made = customers.create_privacy_request(session, actor, customer_id, "erasure",
                                                notes="Requested over the API")
        body = {"id": made.id, "customer_id": made.customer_id, "request_type": made.request_type,
                "status": made.status, "received_at": made.received_at, "due_at": made.due_at}
    return json_response(body, status=202)
