"""Merge, undo and split; streamed exports; imports and bulk actions as jobs with status and
per-record results."""

from __future__ import annotations

import io
import json
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from crm_core import customers, imports, platform

from ..context import Actor, json_response, post, read, unit
from ..schemas import Strict
from .common import Id, PageNumber, page

router = APIRouter(tags=["records"])


class Merge(Strict):
    survivor_id: int = Field(ge=1, le=2**62)
    other_id: int = Field(ge=1, le=2**62)
    field_choices: dict[str, Literal["survivor", "other"]] | None = None


class Split(Strict):
    moves: dict[str, list[Annotated[int, Field(ge=1, le=2**62)]]]
    new_customer: dict[str, str | None] = Field(default_factory=dict)


class BulkJob(Strict):
    action: Literal["add_to_segment", "change_lifecycle_stage", "change_status", "log_campaign_communication"]
    customer_ids: list[Annotated[int, Field(ge=1, le=2**62)]] | None = Field(None, max_length=100_000)
    search: dict[str, Any] | None = Field(None, description="A customer search (the Customers page's filters)")
    params: dict[str, Any] = Field(default_factory=dict)


class ImportJob(Strict):
    csv: str = Field(max_length=50_000_000, description="The customers file's text (CSV with a header row)")
    on_duplicate: Literal["skip", "update", "create"] = "skip"
    default_country: str | None = Field(None, max_length=2)


@router.post("/merges", status_code=201, summary="Merge other_id into survivor_id (reversible)")
def merge(request: Request, body: Merge, actor: platform.TokenActor = Actor) -> Response:
    return post(request, actor, body, lambda s: {"merge_id": customers.merge_customers(
        s, actor, body.survivor_id, body.other_id, body.field_choices)})


@router.post("/merges/{merge_id}/undo", summary="Put back exactly what a merge changed")
def undo(request: Request, merge_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return post(request, actor, {"merge_id": merge_id},
                lambda s: {"merge_id": merge_id, **customers.undo_merge(s, actor, merge_id)}, status=200)


@router.get("/customers/{customer_id}/splittable", summary="Related rows that a split could move")
def splittable(request: Request, customer_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response({"data": read(request, actor, customers.splittable_rows, customer_id)})


@router.post("/customers/{customer_id}/split", status_code=201, summary="Move related rows to a new customer")
def split(request: Request, customer_id: Id, body: Split, actor: platform.TokenActor = Actor) -> Response:
    return post(request, actor, body, lambda s: {"customer_id": customers.split_customer(
        s, actor, customer_id, body.moves, body.new_customer)})


@router.get("/exports/customers.csv", summary="Every customer (or a segment's) as CSV, streamed with flat memory",
            response_class=StreamingResponse, responses={200: {"content": {"text/csv": {}}}})
def export_customers(request: Request, actor: platform.TokenActor = Actor,
                     columns: Annotated[list[str] | None, Query(max_length=50)] = None,
                     segment: Annotated[str | None, Query(max_length=200)] = None) -> StreamingResponse:
    with unit(request) as session:  # checked and audited before the first byte
        chosen, count = customers.start_csv_stream(session, actor, columns, segment=segment)
    sessions = request.app.state.sessions

    def chunks():
        with platform.unit_of_work(sessions) as session:
            yield from customers.csv_stream(session, actor, chosen, segment=segment)

    return StreamingResponse(chunks(), media_type="text/csv; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="customers.csv"',
                                      "X-Total-Count": str(count)})


# --------------------------------------------------------------------------- jobs


def _run_job(sessions, actor: platform.TokenActor, job_id: int, kind: str, body: dict[str, Any]) -> None:
    """The job's work in its own thread and transactions; failures are recorded on the job."""
    def progress(fraction: float) -> None:
        if sessions.kw["bind"].dialect.name == "sqlite":
            return  # one writer at a time: the job's own transaction holds the lock until it is done
        with platform.unit_of_work(sessions) as session:
            platform.set_job_progress(session, job_id, fraction)

    try:
        with platform.unit_of_work(sessions) as session:
            platform.mark_job_running(session, job_id)
        with platform.unit_of_work(sessions) as session:
            if kind == "bulk_action":
                selection = body["customer_ids"] or customers.CustomerQuery.from_dict(body["search"] or {})
                result = customers.run_bulk_action(session, actor, body["action"], selection, body["params"],
                                                   progress=lambda done, total: progress(done / max(1, total)))
                summary: dict[str, Any] = dict(result.summary())
                rows = result.rows()
            else:
                report = imports.import_customers(session, actor, io.BytesIO(body["csv"].encode()), fmt="csv",
                                                  file_name="api.csv", on_duplicate=body["on_duplicate"],
                                                  default_country=body["default_country"])
                summary = {**report.counts(), "run_id": report.run_id}
                rows = [{"row": e.row, "identifier": e.identifier, "result": "invalid", "reason": e.reason}
                        for e in report.errors]
                rows += [{"row": d.row, "identifier": d.identifier, "result": d.action,
                          "reason": f"duplicate of {d.matched} by {d.match}"} for d in report.duplicates]
    except Exception as exc:  # noqa: BLE001 - the job says why; unexpected errors only name themselves
        message = str(exc) if isinstance(exc, platform.DomainError) else f"Unexpected error ({type(exc).__name__})."
        with platform.unit_of_work(sessions) as session:
            platform.finish_job(session, job_id, None, [], error=message)
        return
    with platform.unit_of_work(sessions) as session:
        platform.finish_job(session, job_id, summary, rows)


def _start(request: Request, actor: platform.TokenActor, kind: str, body: Strict, permission: str) -> Response:
    data = body.model_dump()
    params = {k: v for k, v in data.items() if k != "csv"}

    def work(session):
        job = platform.create_job(session, actor, kind, params, permission)
        return {"id": job.id, "kind": kind, "status": "queued", "url": f"/jobs/{job.id}"}

    response = post(request, actor, body, work, status=202)
    if response.headers.get("Idempotent-Replayed") != "true":
        job_id = json.loads(bytes(response.body))["id"]
        runner = request.app.state.job_runner
        runner(lambda: _run_job(request.app.state.sessions, actor, job_id, kind, data))
    return response


def start_thread(work) -> None:
    threading.Thread(target=work, daemon=True, name="crm-api-job").start()


@router.post("/jobs/bulk-actions", status_code=202, summary="Run a bulk action over ids or a search, as a job")
def bulk_job(request: Request, body: BulkJob, actor: platform.TokenActor = Actor) -> Response:
    if (body.customer_ids is None) == (body.search is None):
        raise platform.ValidationError("Select customers by customer_ids or by a search, not both or neither.")
    return _start(request, actor, "bulk_action", body, "customers.bulk")


@router.post("/jobs/imports/customers", status_code=202, summary="Import customers from CSV text, as a job")
def import_job(request: Request, body: ImportJob, actor: platform.TokenActor = Actor) -> Response:
    return _start(request, actor, "import_customers", body, "customers.import")


@router.get("/jobs/{job_id}", summary="A job's status, progress and summary")
def job(request: Request, job_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, platform.job_status, job_id))


@router.get("/jobs/{job_id}/results", summary="A page of a job's per-record results")
def job_results(request: Request, job_id: Id, actor: platform.TokenActor = Actor, page_number: PageNumber = 1,
                page_size: Annotated[int, Query(ge=1, le=1000)] = 100) -> Response:
    return json_response(page(read(request, actor, platform.job_results, job_id, page_number, page_size)))
