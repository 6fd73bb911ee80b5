"""Loyalty: a member's balance and ledger, adjustments within the role's limits (above the approval
limit they wait for a second person), and decisions on pending adjustments."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import loyalty, platform

from ..context import Actor, json_response, post, read
from ..schemas import Strict
from .common import After, Id, Limit500, PageNumber, PageSize, page, paging

router = APIRouter(tags=["loyalty"])


class Adjustment(Strict):
    points: int = Field(ge=-10**9, le=10**9)
    reason: str = Field(max_length=500)


class Decision(Strict):
    approve: bool
    note: str = Field("", max_length=500)


@router.get("/customers/{customer_id}/loyalty", summary="Balance, tier, progress and expiring points")
def account(request: Request, customer_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, loyalty.account_summary, customer_id))


@router.get("/customers/{customer_id}/loyalty/ledger", summary="The member's ledger, newest first")
def ledger(request: Request, customer_id: Id, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
           page_size: PageSize = 25, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, loyalty.ledger_page, customer_id, number, size, after=cursor)))


@router.post("/customers/{customer_id}/loyalty/adjustments", status_code=201,
             summary="Adjust points with a reason (posted, or pending approval above the limit)")
def adjust(request: Request, customer_id: Id, body: Adjustment, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        result = loyalty.adjust(session, actor, customer_id, body.points, body.reason)
        entry = result.transaction
        return {"status": result.status, "transaction_id": entry.id if entry else None,
                "balance_after": entry.balance_after if entry else None,
                "request_id": result.request.id if result.request else None}

    return post(request, actor, body, work)


@router.get("/loyalty/adjustments/pending", summary="Adjustments waiting for approval, oldest first")
def pending(request: Request, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
            page_size: PageSize = 25, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, loyalty.pending_adjustments, number, size, after=cursor)))


@router.post("/loyalty/adjustments/{request_id}/decision", summary="Approve or reject (never your own)")
def decide(request: Request, request_id: Id, body: Decision, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        decided = loyalty.decide_adjustment(session, actor, request_id, body.approve, body.note)
        return {"id": decided.id, "status": decided.status}

    return post(request, actor, body, work, status=200)
