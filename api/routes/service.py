"""The service desk: tickets with responses and SLA status, and complaints."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import platform, service

from ..context import Actor, etag, if_match, json_response, post, precondition, read, unit
from ..schemas import Strict
from .common import After, Id, Limit200, PageNumber, page, paging

router = APIRouter(tags=["service"])
Text = Annotated[str, Field(max_length=20_000)]


class TicketCreate(Strict):
    customer_id: int = Field(ge=1, le=2**62)
    subject: str = Field(max_length=500)
    description: Text
    category: str = Field("other", max_length=40)
    priority: str = Field("normal", max_length=40)
    channel: str = Field("web", max_length=40)
    order_id: int | None = Field(None, ge=1, le=2**62)


class TicketUpdate(Strict):
    status: str | None = Field(None, max_length=40)
    priority: str | None = Field(None, max_length=40)
    category: str | None = Field(None, max_length=40)
    assignee_id: int | None = Field(None, ge=1, le=2**62)
    department: str | None = Field(None, max_length=100)


class TicketResponse(Strict):
    body: Text
    internal: bool = False
    from_customer: bool = False


class ComplaintCreate(Strict):
    customer_id: int = Field(ge=1, le=2**62)
    category: str = Field(max_length=40)
    severity: str = Field(max_length=40)
    description: Text
    ticket_id: int | None = Field(None, ge=1, le=2**62)
    order_id: int | None = Field(None, ge=1, le=2**62)


class ComplaintResolution(Strict):
    resolution: Text
    compensation_kind: str = Field("none", max_length=40)
    compensation_amount: float = Field(0, ge=0, le=1e9)


def _ticket(session, actor, ticket_id: int) -> dict:
    return {**service.get_ticket(session, actor, ticket_id),
            "conversation": service.ticket_conversation(session, actor, ticket_id)}


@router.get("/tickets", summary="The ticket queue, soonest SLA due first")
def list_tickets(request: Request, actor: platform.TokenActor = Actor, view: Literal["team", "mine"] = "team",
                 status: Annotated[str | None, Query(max_length=40)] = None,
                 priority: Annotated[str | None, Query(max_length=40)] = None,
                 open_only: bool = True, page_number: Annotated[int | None, Query(alias="page", ge=1, le=10**7)] = None,
                 page_size: Annotated[int, Query(ge=1, le=200)] = 25, limit: Limit200 = None,
                 after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, service.ticket_queue, view=view, status=status, priority=priority,
                                   open_only=open_only, page=number, page_size=size, after=cursor)))


@router.post("/tickets", status_code=201, summary="Open a ticket")
def create_ticket(request: Request, body: TicketCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made = service.create_ticket(session, actor, **body.model_dump())
        return _ticket(session, actor, made.id)

    return post(request, actor, body, work, headers=lambda t: {"ETag": etag(t["version"])})


@router.get("/tickets/{ticket_id}", summary="A ticket with its SLA clocks and conversation")
def get_ticket(request: Request, ticket_id: Id, actor: platform.TokenActor = Actor) -> Response:
    ticket = read(request, actor, _ticket, ticket_id)
    return json_response(ticket, headers={"ETag": etag(ticket["version"])})


@router.patch("/tickets/{ticket_id}", summary="Change status, priority, category or assignee (If-Match required)")
def update_ticket(request: Request, ticket_id: Id, body: TicketUpdate, actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)
    with precondition(), unit(request) as session:
        service.update_ticket(session, actor, ticket_id, version, **body.model_dump(exclude_unset=True))
        ticket = _ticket(session, actor, ticket_id)
    return json_response(ticket, headers={"ETag": etag(ticket["version"])})


@router.post("/tickets/{ticket_id}/responses", status_code=201, summary="Reply, note or log a customer message")
def add_response(request: Request, ticket_id: Id, body: TicketResponse, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made = service.add_response(session, actor, ticket_id, body.body, internal=body.internal,
                                    from_customer=body.from_customer)
        return {"id": made.id, "ticket_id": ticket_id, "internal": made.is_internal, "created_at": made.created_at}

    return post(request, actor, body, work)


@router.get("/complaints", summary="Complaints, filtered")
def list_complaints(request: Request, actor: platform.TokenActor = Actor,
                    status: Annotated[str | None, Query(max_length=40)] = None,
                    severity: Annotated[str | None, Query(max_length=40)] = None,
                    customer_id: Annotated[int | None, Query(ge=1, le=2**62)] = None, overdue_only: bool = False,
                    page_number: PageNumber = None, page_size: Annotated[int, Query(ge=1, le=200)] = 25,
                    limit: Limit200 = None, after: After = None) -> Response:
    filters = service.ComplaintFilter(status=status, severity=severity, customer_id=customer_id,
                                      overdue_only=overdue_only)
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, service.search_complaints, filters, number, size, after=cursor)))


@router.post("/complaints", status_code=201, summary="Register a complaint")
def create_complaint(request: Request, body: ComplaintCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made = service.create_complaint(session, actor, **body.model_dump())
        return service.complaint_detail(session, actor, made.id)

    return post(request, actor, body, work, headers=lambda c: {"ETag": etag(c["version"])})


@router.get("/complaints/{complaint_id}", summary="A complaint")
def get_complaint(request: Request, complaint_id: Id, actor: platform.TokenActor = Actor) -> Response:
    complaint = read(request, actor, service.complaint_detail, complaint_id)
    return json_response(complaint, headers={"ETag": etag(complaint["version"])})


@router.post("/complaints/{complaint_id}/resolution", summary="Resolve with compensation within your limit "
             "(If-Match required)")
def resolve_complaint(request: Request, complaint_id: Id, body: ComplaintResolution,
                      actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)

    def work(session):
        service.resolve_complaint(session, actor, complaint_id, body.resolution, body.compensation_kind,
                                  body.compensation_amount, expected_version=version)
        return service.complaint_detail(session, actor, complaint_id)

    with precondition():
        return post(request, actor, body, work, status=200, headers=lambda c: {"ETag": etag(c["version"])})
