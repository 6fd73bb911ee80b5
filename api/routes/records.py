"""Merge, undo and split; streamed exports; imports and bulk actions as jobs with status and
per-record results."""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import Field

from crm_core import customers, imports, platform

from ..context import Actor, json_response, post, read, unit
from ..schemas import Strict
from .common import After, Id, Limit1000, PageNumber, page, paging

router = APIRouter(tags=["records"])
log = logging.getLogger("crm.api")


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


class OrdersImportJob(Strict):
    """A transaction log: one order (or, with product_col, one order line) per row; the columns name the
    fields as `crm import orders` does."""

    csv: str = Field(max_length=200_000_000, description="The file's text (CSV with a header row)")
    customer_col: str | None = Field(None, max_length=200)
    date_col: str = Field(max_length=200)
    amount_col: str = Field(max_length=200)
    quantity_col: str | None = Field(None, max_length=200)
    order_col: str | None = Field(None, max_length=200)
    email_col: str | None = Field(None, max_length=200)
    status_col: str | None = Field(None, max_length=200)
    product_col: str | None = Field(None, max_length=200)
    currency_col: str | None = Field(None, max_length=200)


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


@router.get("/exports/customers.jsonl", summary="Every customer (or a segment's) as JSON Lines, streamed with flat "
            "memory", response_class=StreamingResponse, responses={200: {"content": {"application/x-ndjson": {}}}})
def export_customers_jsonl(request: Request, actor: platform.TokenActor = Actor,
                           columns: Annotated[list[str] | None, Query(max_length=50)] = None,
                           segment: Annotated[str | None, Query(max_length=200)] = None) -> StreamingResponse:
    """The same customers, columns, permission and audit row as the CSV export; one JSON object a line."""
    with unit(request) as session:  # checked and audited before the first byte
        chosen, count = customers.start_csv_stream(session, actor, columns, segment=segment, fmt="jsonl")
    sessions = request.app.state.sessions

    def chunks():
        with platform.unit_of_work(sessions) as session:
            yield from customers.jsonl_stream(session, actor, chosen, segment=segment)

    return StreamingResponse(chunks(), media_type="application/x-ndjson; charset=utf-8",
                             headers={"Content-Disposition": 'attachment; filename="customers.jsonl"',
                                      "X-Total-Count": str(count)})


# --------------------------------------------------------------------------- jobs


@contextmanager
def _heartbeat(sessions, job_id: int) -> Iterator[None]:
    """While the block runs, this process says every JOB_HEARTBEAT_EVERY that the job is alive (and this
    process knows it is running it). On SQLite the job's transaction holds the one write lock, so there
    the heartbeat is written only before and after the work; the process's own record covers the rest."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(platform.JOB_HEARTBEAT_EVERY.total_seconds()):
            try:
                with platform.unit_of_work(sessions) as session:
                    platform.set_job_progress(session, job_id)
            except Exception:  # noqa: BLE001 - a missed beat is retried; the job itself goes on
                log.warning("job %s: heartbeat not written", job_id, exc_info=True)

    thread = None
    if sessions.kw["bind"].dialect.name != "sqlite":
        thread = threading.Thread(target=beat, daemon=True, name=f"crm-api-job-{job_id}-heartbeat")
        thread.start()
    with platform.running_here(job_id):
        try:
            yield
        finally:
            stop.set()
            if thread is not None:
                thread.join()


def _run_job(sessions, actor: platform.TokenActor, job_id: int, kind: str, body: dict[str, Any]) -> None:
    """The job's work in its own thread and transactions, with a heartbeat; failures are recorded on the job."""
    with _heartbeat(sessions, job_id):
        _work(sessions, actor, job_id, kind, body)


def _work(sessions, actor: platform.TokenActor, job_id: int, kind: str, body: dict[str, Any]) -> None:
    def progress(fraction: float | None, done: int, total: int | None = None) -> None:
        if sessions.kw["bind"].dialect.name == "sqlite":
            return  # one writer at a time: the job's own transaction holds the lock until it is done
        with platform.unit_of_work(sessions) as session:
            platform.set_job_progress(session, job_id, fraction, done, total)

    try:
        with platform.unit_of_work(sessions) as session:
            ids = body.get("customer_ids") if kind == "bulk_action" else None
            platform.mark_job_running(session, job_id, records_total=len(ids) if ids else None)
        with platform.unit_of_work(sessions) as session:
            if kind == "bulk_action":
                selection = body["customer_ids"] or customers.CustomerQuery.from_dict(body["search"] or {})
                result = customers.run_bulk_action(
                    session, actor, body["action"], selection, body["params"],
                    progress=lambda done, total: progress(done / max(1, total), done, total))
                summary: dict[str, Any] = dict(result.summary())
                rows = result.rows()
            elif kind == "import_orders":
                columns = {k: v for k, v in body.items() if k.endswith("_col")}
                report = imports.import_orders(session, actor, io.BytesIO(body["csv"].encode()), fmt="csv",
                                               file_name="api.csv", progress=progress, **columns)
                summary = {**report.counts(), "run_id": report.run_id}
                rows = [{"row": e.row, "identifier": e.identifier, "result": "invalid", "reason": e.reason}
                        for e in report.errors]
            else:
                report = imports.import_customers(session, actor, io.BytesIO(body["csv"].encode()), fmt="csv",
                                                  file_name="api.csv", on_duplicate=body["on_duplicate"],
                                                  default_country=body["default_country"], progress=progress)
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


@router.post("/jobs/imports/orders", status_code=202, summary="Import a transaction log (CSV text), as a job")
def import_orders_job(request: Request, body: OrdersImportJob, actor: platform.TokenActor = Actor) -> Response:
    return _start(request, actor, "import_orders", body, "customers.import")


@router.get("/jobs", summary="Your jobs, newest first (keyset pages)")
def jobs(request: Request, actor: platform.TokenActor = Actor, limit: Limit1000 = None,
         after: After = None) -> Response:
    return json_response(page(read(request, actor, platform.job_page, limit or 50, after or platform.FIRST)))


@router.get("/jobs/{job_id}", summary="A job's status, progress and summary (failed with the reason when its "
            "worker stopped)")
def job(request: Request, job_id: Id, actor: platform.TokenActor = Actor) -> Response:
    return json_response(read(request, actor, platform.job_status, job_id))


@router.get("/jobs/{job_id}/results", summary="A page of a job's per-record results")
def job_results(request: Request, job_id: Id, actor: platform.TokenActor = Actor, page_number: PageNumber = None,
                page_size: Annotated[int, Query(ge=1, le=1000)] = 100, limit: Limit1000 = None,
                after: After = None) -> Response:
    number, size, cursor = paging(page_number, page_size, limit, after)
    return json_response(page(read(request, actor, platform.job_results, job_id, number, size, after=cursor)))
