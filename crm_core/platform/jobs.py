"""Jobs: long work started over the API (an import, a bulk action) that the caller polls.

The job row records who started it, its parameters, status, progress, a summary and the
per-record results; the work itself is a domain service run by the caller with the job's user.

A running job has a heartbeat: the process running it writes `heartbeat_at` (and how many records it
has processed) every few seconds. A queued or running job whose heartbeat is older than
`JOB_STALE_AFTER` has lost its worker (the API process stopped or died) and is stored as failed with a
reason, when the API starts and whenever the job is read, so no job stays "running" forever. A job's
work runs in one transaction, so an interrupted job changed nothing.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from crm_core.platform.actors import SYSTEM, Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import FIRST, Page, SortKey, check_limit, decode_position, fetch_rows, position_cursor
from crm_core.platform.permissions import allowed, require
from db.models import API_JOB_KINDS, ApiJob, utcnow

MAX_RESULTS_KEPT = 100_000  # per-record results kept with a job (the summary always counts every record)
JOB_HEARTBEAT_EVERY = dt.timedelta(seconds=10)  # how often a running job's process says it is alive
JOB_STALE_AFTER = dt.timedelta(minutes=2)  # a queued or running job silent this long has lost its worker
UNFINISHED = ("queued", "running")

# Jobs this process is running now. SQLite has one writer at a time, so while a job's transaction
# holds the lock its heartbeat cannot be written; the process that runs it still knows it is alive.
_running_here: set[int] = set()
_running_lock = threading.Lock()


@contextmanager
def running_here(job_id: int) -> Iterator[None]:
    """Marks a job as run by this process for as long as the block lasts."""
    with _running_lock:
        _running_here.add(job_id)
    try:
        yield
    finally:
        with _running_lock:
            _running_here.discard(job_id)


def _alive_here() -> set[int]:
    with _running_lock:
        return set(_running_here)


def create_job(session: Session, actor: Actor, kind: str, params: dict[str, Any], permission: str) -> ApiJob:
    """A queued job; the actor needs the permission of the work it will do."""
    require(actor, permission)
    if kind not in API_JOB_KINDS:
        raise ValidationError(f"Unknown job kind {kind!r}; one of: {', '.join(API_JOB_KINDS)}.")
    job = ApiJob(user_id=actor.id, kind=kind, status="queued", params=params, progress=0.0)
    session.add(job)
    session.flush()
    record_audit(session, actor, "job.create", "api_job", job.id, after={"kind": kind, "params": params})
    return job


def _job(session: Session, viewer: Actor, job_id: Any) -> ApiJob:
    job = session.get(ApiJob, job_id) if isinstance(job_id, int) and not isinstance(job_id, bool) else None
    if job is None or (job.user_id != viewer.id and not allowed(viewer.role, "tokens.manage")):
        raise NotFound(f"No job with id {job_id}.")
    return job


def job_status(session: Session, viewer: Actor, job_id: Any, now: dt.datetime | None = None) -> dict[str, Any]:
    """A job's status, progress and summary (its starter's, or any for an admin); a job whose worker
    stopped is failed here, with the reason."""
    require(viewer, "tokens.own")
    job = _job(session, viewer, job_id)
    _fail_if_stale(session, job, now or utcnow(), _alive_here())
    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress, "params": job.params,
            "summary": job.summary, "error": job.error, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at,
            "results_count": len(job.results or []), "heartbeat_at": job.heartbeat_at,
            "records_done": job.records_done, "records_total": job.records_total}


def job_results(session: Session, viewer: Actor, job_id: Any, page: int = 1, page_size: int = 100,
                after: str | None = None, now: dt.datetime | None = None) -> Page:
    """One page of a job's per-record results: numbered, or with `after` (a cursor, FIRST for the start)
    the next `page_size` (the results are kept in order with the job, so a cursor is a position)."""
    require(viewer, "tokens.own")
    check_limit(page_size, 1000)
    if after is None and (isinstance(page, bool) or not isinstance(page, int) or page < 1):
        raise ValidationError("Page is 1 or more and page size between 1 and 1000.")
    job = _job(session, viewer, job_id)
    _fail_if_stale(session, job, now or utcnow(), _alive_here())
    results = job.results or []
    start = (page - 1) * page_size if after is None else decode_position(after, f"job_results:{job.id}")
    end = start + page_size
    next_after = position_cursor(f"job_results:{job.id}", end) if end < len(results) else None
    return Page(rows=results[start:end], total=None if after is not None else len(results),
                page=0 if after is not None else page, page_size=page_size, next_after=next_after)


def job_page(session: Session, viewer: Actor, limit: int = 50, after: str = FIRST,
             now: dt.datetime | None = None) -> Page:
    """The viewer's jobs, newest first, `limit` after the cursor `after` (keyset pages)."""
    require(viewer, "tokens.own")
    check_limit(limit, 1000, "limit")
    now = now or utcnow()
    alive = _alive_here()
    rows, next_after = fetch_rows(session, select(ApiJob).where(ApiJob.user_id == viewer.id),
                                  (SortKey(ApiJob.created_at, descending=True), SortKey(ApiJob.id, descending=True)),
                                  "jobs", page_size=limit, after=after)
    out = []
    for job, *_key in rows:
        _fail_if_stale(session, job, now, alive)
        out.append({"id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
                    "error": job.error, "created_at": job.created_at, "finished_at": job.finished_at,
                    "url": f"/jobs/{job.id}"})
    return Page(out, None, 0, limit, next_after)


def mark_job_running(session: Session, job_id: int, now: dt.datetime | None = None,
                     records_total: int | None = None) -> ApiJob:
    job = session.get(ApiJob, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    job.status, job.started_at = "running", now or utcnow()
    job.heartbeat_at, job.records_done, job.records_total = job.started_at, 0, records_total
    session.flush()
    return job


def set_job_progress(session: Session, job_id: int, fraction: float | None = None, done: int | None = None,
                     total: int | None = None, now: dt.datetime | None = None) -> None:
    """The heartbeat of a running job, with its progress when known (a fraction, records done and of how many)."""
    job = session.get(ApiJob, job_id)
    if job is None or job.status != "running":
        return
    if fraction is not None:
        job.progress = max(0.0, min(1.0, float(fraction)))
    if done is not None:
        job.records_done = done
    if total is not None:
        job.records_total = total
    job.heartbeat_at = now or utcnow()
    session.flush()


def interruption_reason(job: ApiJob) -> str:
    """Why a job whose worker stopped failed, and what to do about it."""
    if job.status == "queued":
        return ("Interrupted: the API process stopped before a worker started this job. Nothing was changed; "
                "re-submit it.")
    done = job.records_done or 0
    counted = f"{done:,} of {job.records_total:,}" if job.records_total is not None else f"{done:,}"
    seen = job.heartbeat_at or job.started_at or job.created_at
    return (f"Interrupted: the worker running this job stopped (last heartbeat {seen:%Y-%m-%d %H:%M:%S} UTC) after "
            f"{counted} records had been processed. A job's changes are saved only when it completes, so nothing "
            "was changed; re-submit it.")


def _fail_if_stale(session: Session, job: ApiJob, now: dt.datetime, alive: set[int],
                   stale_after: dt.timedelta = JOB_STALE_AFTER) -> bool:
    if job.status not in UNFINISHED or job.id in alive:
        return False
    seen = job.heartbeat_at or job.started_at or job.created_at
    if seen is None or now - seen <= stale_after:
        return False
    before = job.status
    job.error = interruption_reason(job)
    job.status, job.finished_at = "failed", now
    session.flush()
    record_audit(session, SYSTEM, "job.interrupted", "api_job", job.id, before={"status": before},
                 after={"status": "failed", "records_done": job.records_done, "records_total": job.records_total})
    return True


def fail_stale_jobs(session: Session, now: dt.datetime | None = None,
                    stale_after: dt.timedelta = JOB_STALE_AFTER) -> list[int]:
    """Fails every queued or running job whose worker stopped (its heartbeat is older than `stale_after` and
    this process is not running it); the API runs this when it starts. Returns their ids."""
    now = now or utcnow()
    seen = func.coalesce(ApiJob.heartbeat_at, ApiJob.started_at, ApiJob.created_at)
    alive = _alive_here()
    found = session.scalars(select(ApiJob).where(ApiJob.status.in_(UNFINISHED), seen < now - stale_after)
                            .order_by(ApiJob.id)).all()
    return [job.id for job in found if _fail_if_stale(session, job, now, alive, stale_after)]


def finish_job(session: Session, job_id: int, summary: dict[str, Any] | None, results: list[dict[str, Any]],
               error: str | None = None, now: dt.datetime | None = None) -> ApiJob:
    job = session.get(ApiJob, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    job.status = "failed" if error else "succeeded"
    job.progress = job.progress if error else 1.0
    job.heartbeat_at = now or utcnow()
    job.summary, job.results, job.error = summary, results[:MAX_RESULTS_KEPT], error
    job.finished_at = now or utcnow()
    session.flush()
    return job


def latest_jobs(session: Session, viewer: Actor, limit: int = 20) -> list[dict[str, Any]]:
    require(viewer, "tokens.own")
    rows = session.scalars(select(ApiJob).where(ApiJob.user_id == viewer.id)
                           .order_by(ApiJob.created_at.desc(), ApiJob.id.desc()).limit(limit)).all()
    return [{"id": j.id, "kind": j.kind, "status": j.status, "created_at": j.created_at} for j in rows]
