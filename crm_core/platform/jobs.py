"""Jobs: long work started over the API (an import, a bulk action) that the caller polls.

The job row records who started it, its parameters, status, progress, a summary and the
per-record results; the work itself is a domain service run by the caller with the job's user.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from crm_core.platform.actors import Actor
from crm_core.platform.audit import record_audit
from crm_core.platform.errors import NotFound, ValidationError
from crm_core.platform.paging import Page
from crm_core.platform.permissions import allowed, require
from db.models import API_JOB_KINDS, ApiJob, utcnow

MAX_RESULTS_KEPT = 100_000  # per-record results kept with a job (the summary always counts every record)


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


def job_status(session: Session, viewer: Actor, job_id: Any) -> dict[str, Any]:
    """A job's status, progress and summary (its starter's, or any for an admin)."""
    require(viewer, "tokens.own")
    job = _job(session, viewer, job_id)
    return {"id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress, "params": job.params,
            "summary": job.summary, "error": job.error, "created_at": job.created_at,
            "started_at": job.started_at, "finished_at": job.finished_at,
            "results_count": len(job.results or [])}


def job_results(session: Session, viewer: Actor, job_id: Any, page: int = 1, page_size: int = 100) -> Page:
    """One page of a job's per-record results."""
    require(viewer, "tokens.own")
    if not 1 <= page_size <= 1000 or page < 1:
        raise ValidationError("Page is 1 or more and page size between 1 and 1000.")
    results = _job(session, viewer, job_id).results or []
    start = (page - 1) * page_size
    return Page(rows=results[start:start + page_size], total=len(results), page=page, page_size=page_size)


def mark_job_running(session: Session, job_id: int, now: dt.datetime | None = None) -> ApiJob:
    job = session.get(ApiJob, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    job.status, job.started_at = "running", now or utcnow()
    session.flush()
    return job


def set_job_progress(session: Session, job_id: int, fraction: float) -> None:
    job = session.get(ApiJob, job_id)
    if job is not None:
        job.progress = max(0.0, min(1.0, float(fraction)))
        session.flush()


def finish_job(session: Session, job_id: int, summary: dict[str, Any] | None, results: list[dict[str, Any]],
               error: str | None = None, now: dt.datetime | None = None) -> ApiJob:
    job = session.get(ApiJob, job_id)
    if job is None:
        raise NotFound(f"No job with id {job_id}.")
    job.status = "failed" if error else "succeeded"
    job.progress = job.progress if error else 1.0
    job.summary, job.results, job.error = summary, results[:MAX_RESULTS_KEPT], error
    job.finished_at = now or utcnow()
    session.flush()
    return job


def latest_jobs(session: Session, viewer: Actor, limit: int = 20) -> list[dict[str, Any]]:
    require(viewer, "tokens.own")
    rows = session.scalars(select(ApiJob).where(ApiJob.user_id == viewer.id)
                           .order_by(ApiJob.created_at.desc(), ApiJob.id.desc()).limit(limit)).all()
    return [{"id": j.id, "kind": j.kind, "status": j.status, "created_at": j.created_at} for j in rows]
