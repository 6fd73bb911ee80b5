"""Read models of the Insights pages: the executive overview, segments (with preview and members),
lifecycle stages and history, churn predictions, health scores and lifetime values."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import Field

from crm_core import platform, reporting, segmentation
from ml import churn_reports, clv_reports, health_reports

from ..context import Actor, etag, if_match, json_response, post, precondition, read, unit
from ..schemas import Strict
from .common import After, Id, Limit100, Limit500, PageNumber, PageSize, page, paging

router = APIRouter(tags=["insights"])


@router.get("/overview", summary="The executive overview's figures for a date range")
def overview(request: Request, actor: platform.TokenActor = Actor, start: dt.date | None = None,
             end: dt.date | None = None) -> Response:
    with unit(request) as session:
        last = platform.check_as_of(end, "end") if end else platform.data_date(session).day
        first = platform.check_as_of(start, "start") if start else last - dt.timedelta(days=89)
        figures = dataclasses.asdict(reporting.executive_overview(session, actor, first, last))
    return json_response(figures)


# --------------------------------------------------------------------------- segments


class SegmentCreate(Strict):
    name: str = Field(max_length=200)
    segment_type: str = Field("custom", max_length=40)
    kind: Literal["dynamic", "static"] = "dynamic"
    rules: dict[str, Any] | None = None
    priority: int = Field(100, ge=0, le=10_000)
    description: str = Field("", max_length=2000)


class SegmentUpdate(Strict):
    name: str | None = Field(None, max_length=200)
    description: str | None = Field(None, max_length=2000)
    segment_type: str | None = Field(None, max_length=40)
    rules: dict[str, Any] | None = None
    priority: int | None = Field(None, ge=0, le=10_000)


class RulesPreview(Strict):
    rules: dict[str, Any]
    as_of: dt.date | None = None
    sample: int = Field(20, ge=0, le=100)


class Members(Strict):
    customer_ids: list[Annotated[int, Field(ge=1, le=2**62)]] = Field(min_length=1, max_length=10_000)


def _segment(session, actor, segment_id: int) -> dict[str, Any]:
    found = [s for s in segmentation.list_segments(session, actor) if s["id"] == segment_id]
    if not found:
        raise platform.NotFound(f"No segment with id {segment_id}.")
    return found[0]


@router.get("/segments", tags=["segments"], summary="Segments with their member counts")
def list_segments(request: Request, actor: platform.TokenActor = Actor) -> Response:
    return json_response({"data": read(request, actor, segmentation.list_segments)})


@router.post("/segments", status_code=201, tags=["segments"], summary="Create a segment (rules validated)")
def create_segment(request: Request, body: SegmentCreate, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        made = segmentation.create_segment(session, actor, body.name, body.segment_type, body.kind, body.rules,
                                           body.priority, body.description)
        return _segment(session, actor, made.id)

    return post(request, actor, body, work, headers=lambda s: {"ETag": etag(s["version"])})


@router.post("/segments/preview", tags=["segments"], summary="How many customers rules select, with a sample")
def preview_segment(request: Request, body: RulesPreview, actor: platform.TokenActor = Actor) -> Response:
    as_of = platform.check_as_of(body.as_of) if body.as_of else dt.date.today()
    return post(request, actor, body, lambda s: segmentation.preview_rules(s, actor, body.rules, as_of, body.sample),
                status=200)


@router.get("/segments/{segment_id}", tags=["segments"], summary="A segment")
def get_segment(request: Request, segment_id: Id, actor: platform.TokenActor = Actor) -> Response:
    segment = read(request, actor, _segment, segment_id)
    return json_response(segment, headers={"ETag": etag(segment["version"])})


@router.patch("/segments/{segment_id}", tags=["segments"], summary="Edit a segment (If-Match required)")
def update_segment(request: Request, segment_id: Id, body: SegmentUpdate, actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request)
    with precondition(), unit(request) as session:
        segmentation.update_segment(session, actor, segment_id, version, **body.model_dump(exclude_unset=True))
        segment = _segment(session, actor, segment_id)
    return json_response(segment, headers={"ETag": etag(segment["version"])})


@router.delete("/segments/{segment_id}", tags=["segments"], summary="Deactivate a segment (kept with its history)")
def deactivate_segment(request: Request, segment_id: Id, actor: platform.TokenActor = Actor) -> Response:
    version = if_match(request) if request.headers.get("If-Match") else None
    with precondition(), unit(request) as session:
        segmentation.set_segment_active(session, actor, segment_id, False, version)
        segment = _segment(session, actor, segment_id)
    return json_response(segment, headers={"ETag": etag(segment["version"])})


@router.get("/segments/{segment_id}/members", tags=["segments"], summary="A page of a segment's members")
def segment_members(request: Request, segment_id: Id, actor: platform.TokenActor = Actor,
                    page_number: Annotated[int | None, Query(alias="page", ge=1, le=10**7)] = None,
                    page_size: PageSize = 50, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, segmentation.segment_members, segment_id, number, size,
                                   after=cursor)))


@router.post("/segments/{segment_id}/members", tags=["segments"], summary="Add customers to a static segment")
def add_members(request: Request, segment_id: Id, body: Members, actor: platform.TokenActor = Actor) -> Response:
    return post(request, actor, body, lambda s: {"added": segmentation.add_members(s, actor, segment_id,
                                                                                     body.customer_ids)}, status=200)


# --------------------------------------------------------------------------- lifecycle


class StageChange(Strict):
    stage: str = Field(max_length=40)
    reason: str = Field(max_length=255)


@router.get("/lifecycle/stages", tags=["lifecycle"], summary="Customers per lifecycle stage")
def lifecycle_stages(request: Request, actor: platform.TokenActor = Actor) -> Response:
    return json_response({"data": read(request, actor, segmentation.stage_distribution)})


@router.get("/lifecycle/history", tags=["lifecycle"], summary="Recent stage changes, newest first")
def lifecycle_history(request: Request, actor: platform.TokenActor = Actor, page_number: Annotated[
        int | None, Query(alias="page", ge=1, le=10**7)] = None, page_size: PageSize = 50,
        stage: Annotated[str | None, Query(max_length=40)] = None, limit: Limit500 = None,
        after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, segmentation.recent_stage_changes, number, size, stage,
                                   after=cursor)))


@router.post("/customers/{customer_id}/lifecycle", tags=["lifecycle"], summary="Move a customer to a stage by hand")
def change_stage(request: Request, customer_id: Id, body: StageChange, actor: platform.TokenActor = Actor) -> Response:
    def work(session):
        row = segmentation.change_stage(session, actor, customer_id, body.stage, body.reason)
        return {"customer_id": customer_id, "stage": row.stage, "entered_at": row.entered_at, "reason": row.reason}

    return post(request, actor, body, work, status=200)


# --------------------------------------------------------------------------- scores


@router.get("/churn/predictions", tags=["scores"], summary="Customers at risk, ranked by risk x value")
def churn_predictions(request: Request, actor: platform.TokenActor = Actor,
                      risk_level: Annotated[list[str] | None, Query(max_length=4)] = None,
                      segment_id: Annotated[int | None, Query(ge=1, le=2**62)] = None,
                      page_number: Annotated[int | None, Query(alias="page", ge=1, le=10**7)] = None,
                      page_size: Annotated[int, Query(ge=1, le=100, description="10, 25, 50 or 100")] = 25,
                      limit: Limit100 = None,
                      after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, churn_reports.at_risk, risk_levels=risk_level,
                                   segment_id=segment_id, page=number, page_size=size, after=cursor)))


@router.get("/customers/{customer_id}/churn", tags=["scores"], summary="A customer's churn prediction and history")
def customer_churn(request: Request, customer_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, churn_reports.customer_prediction, customer_id))


@router.get("/customers/{customer_id}/health", tags=["scores"], summary="A customer's account health")
def customer_health(request: Request, customer_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, health_reports.customer_health, customer_id))


@router.get("/health-scores/overview", tags=["scores"], summary="Account health distribution and averages")
def health_overview(request: Request, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, health_reports.overview) or {})


@router.get("/lifetime-values", tags=["scores"], summary="Customers by predicted 12-month lifetime value")
def lifetime_values(request: Request, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
                    page_size: PageSize = 50, limit: Limit500 = None, after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, clv_reports.top_customers, number, size, after=cursor)))


@router.get("/lifetime-values/overview", tags=["scores"], summary="The lifetime value model's figures")
def lifetime_value_overview(request: Request, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, clv_reports.overview) or {})
