"""Preferences, consents and data-subject requests (admins, as on the Privacy requests page)."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import customers, platform

from ..context import Actor, etag, if_match, json_response, post, precondition, read, unit
from ..schemas import Strict
from .common import After, Id, Limit200, PageNumber, page, paging

router = APIRouter(tags=["privacy"])


class Preferences(Strict):
    channels: list[Annotated[str, Field(max_length=20)]] = Field(default_factory=list, max_length=10)
    frequency: str = Field(max_length=20)
    preferred_channel: str | None = Field(None, max_length=20)
    language: str | None = Field(None, max_length=20)
    categories: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=100)
    data_sharing: bool = False
    analytics: bool = False
    personalization: bool = False


class Consent(Strict):
    purpose: str = Field(max_length=40)
    granted: bool
    legal_basis: str = Field("consent", max_length=40)
    source: str = Field("api", max_length=40)
    notes: str | None = Field(None, max_length=2000)


class PrivacyRequestCreate(Strict):
    customer_id: int = Field(ge=1, le=2**62)
    request_type: Literal["access", "erasure", "rectification", "portability", "restriction", "objection"]
    notes: str | None = Field(None, max_length=2000)


class PrivacyRequestStatus(Strict):
    status: Literal["in_progress", "rejected"]
    note: str | None = Field(None, max_length=2000)


@router.get("/customers/{customer_id}/preferences", summary="The preference center (ETag for edits)")
def get_preferences(request: Request, customer_id: Id, actor: platform.TokenActor = Actor) -> Response:
    prefs = read(request, actor, customers.get_preferences, customer_id)
    return json_response(prefs, headers={"ETag": etag(prefs["version"])})


@router.put("/customers/{customer_id}/preferences", summary="Save the preference center (If-Match required; "
            "\"0\" before the first save)")
def save_preferences(request: Request, customer_id: Id, body: Preferences, actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)
    with precondition(), unit(request) as session:
        prefs = customers.save_preferences(session, actor, customer_id, body.model_dump(), version)
    return json_response(prefs, headers={"ETag": etag(prefs["version"])})


@router.get("/customers/{customer_id}/consents", summary="Current consent per purpose")
def consents(request: Request, customer_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, customers.current_consents, customer_id))


@router.post("/customers/{customer_id}/consents", status_code=201, summary="Record a grant or withdrawal")
def record_consent(request: Request, customer_id: Id, body: Consent, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        row = customers.record_consent(session, actor, customer_id, body.purpose, body.granted, body.legal_basis,
                                       body.source, notes=body.notes)
        return {"id": row.id, "customer_id": customer_id, "purpose": row.purpose, "granted": row.granted,
                "recorded_at": row.recorded_at}

    return post(request, actor, body, work)


@router.get("/privacy/requests", summary="Data-subject requests, most urgent first")
def list_requests(request: Request, actor: platform.TokenActor = Actor,
                  status: Annotated[str | None, Query(max_length=40)] = None,
                  request_type: Annotated[str | None, Query(max_length=40)] = None, overdue_only: bool = False,
                  page_number: PageNumber = None, page_size: Annotated[int, Query(ge=1, le=200)] = 25,
                  limit: Limit200 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, customers.list_privacy_requests, status, request_type,
                                   overdue_only, number, size, after=cursor)))


@router.post("/privacy/requests", status_code=201, summary="Log a data-subject request (due in 30 days)")
def create_request(request: Request, body: PrivacyRequestCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made = customers.create_privacy_request(session, actor, body.customer_id, body.request_type, body.notes)
        return customers.get_privacy_request(session, actor, made.id)

    return post(request, actor, body, work)


@router.get("/privacy/requests/{request_id}", summary="One data-subject request")
def get_request(request: Request, request_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, customers.get_privacy_request, request_id))


@router.post("/privacy/requests/{request_id}/status", summary="Start or reject a request")
def set_status(request: Request, request_id: Id, body: PrivacyRequestStatus, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        customers.set_privacy_request_status(session, actor, request_id, body.status, body.note)
        return customers.get_privacy_request(session, actor, request_id)

    return post(request, actor, body, work, status=200)


@router.post("/privacy/requests/{request_id}/erasure", summary="Carry out an erasure request (irreversible)")
def erase(request: Request, request_id: Id, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        found = customers.get_privacy_request(session, actor, request_id)
        if found["type"] != "erasure":
            raise platform.ValidationError(f"Request {request_id} is a {found['type']} request, not an erasure.")
        result = customers.erase_customer(session, actor, found["customer_id"], request_id)
        return {"request_id": request_id, "customer_id": found["customer_id"], **result}

    return post(request, actor, {"request_id": request_id}, work, status=200)
