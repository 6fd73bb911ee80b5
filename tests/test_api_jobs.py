"""Jobs whose worker stopped do not stay "running": a queued or running job whose heartbeat is older than
the stale limit is stored as failed with the reason (how many records had been processed, that nothing
was saved, to re-submit), when the API starts and whenever the job is read; a live job is left alone."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import select

from crm_core import platform
from db.models import ApiJob, AuditLog, utcnow

from .api_support import make_api

OLD = platform.JOB_STALE_AFTER + dt.timedelta(minutes=1)


def _job(engine, user_id: int, status: str, heartbeat_age: dt.timedelta, done: int | None = None,
         total: int | None = None) -> int:
    """A job as a worker that died would leave it (or, with a young heartbeat, as a live one keeps it)."""
    now = utcnow()
    with platform.unit_of_work(engine) as session:
        job = ApiJob(user_id=user_id, kind="bulk_action", status=status, params={"action": "change_status"},
                     progress=0.0, created_at=now - heartbeat_age - dt.timedelta(seconds=5))
        if status == "running":
            job.started_at = job.heartbeat_at = now - heartbeat_age
            job.records_done, job.records_total = done, total
        session.add(job)
        session.flush()
        return job.id


def _stored(engine, job_id: int) -> ApiJob:
    with platform.unit_of_work(engine) as session:
        job = session.get(ApiJob, job_id)
        session.expunge(job)
        return job


def test_reading_a_job_whose_worker_died_fails_it_with_the_reason(engine):
    api = make_api(engine, roles=("admin",))
    dead = _job(engine, api.user_ids["admin"], "running", OLD, done=300, total=1000)
    live = _job(engine, api.user_ids["admin"], "running", dt.timedelta(seconds=5), done=10, total=1000)
    body = api.get("admin", f"/jobs/{dead}").json()
    assert body["status"] == "failed" and body["finished_at"]
    assert body["error"].startswith("Interrupted: the worker running this job stopped")
    assert "300 of 1,000 records" in body["error"] and "nothing was changed; re-submit it" in body["error"]
    assert (body["records_done"], body["records_total"]) == (300, 1000)
    stored = _stored(engine, dead)
    assert stored.status == "failed" and stored.error == body["error"]  # stored, not only reported
    assert api.get("admin", f"/jobs/{live}").json()["status"] == "running"
    assert api.get("admin", f"/jobs/{live}/results").json()["data"] == []
    with platform.unit_of_work(engine) as session:
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "job.interrupted")).all()
        assert [(a.entity_id, a.after["records_done"]) for a in audit] == [(str(dead), 300)]


def test_the_results_and_the_jobs_list_also_fail_a_dead_job(engine):
    api = make_api(engine, roles=("admin",))
    by_results = _job(engine, api.user_ids["admin"], "running", OLD, done=0)
    by_list = _job(engine, api.user_ids["admin"], "queued", OLD)
    assert api.get("admin", f"/jobs/{by_results}/results").status_code == 200
    assert _stored(engine, by_results).status == "failed"
    listed = {j["id"]: j for j in api.get("admin", "/jobs").json()["data"]}
    assert listed[by_list]["status"] == "failed"
    assert "before a worker started this job" in listed[by_list]["error"]
    assert "0 records had been processed" in _stored(engine, by_results).error


def test_a_restart_fails_the_jobs_the_stopped_process_left_running(engine):
    first = make_api(engine, roles=("admin",))
    dead = _job(engine, first.user_ids["admin"], "running", OLD, done=2, total=5)
    queued = _job(engine, first.user_ids["admin"], "queued", OLD)
    live = _job(engine, first.user_ids["admin"], "running", dt.timedelta(seconds=1))
    make_api(engine, roles=("support_agent",))  # a new API process starts on the same database
    assert _stored(engine, dead).status == "failed" and "2 of 5 records" in _stored(engine, dead).error
    assert _stored(engine, queued).status == "failed"
    assert _stored(engine, live).status == "running"  # another worker's job, still beating


def test_a_job_this_process_runs_is_alive_whatever_its_heartbeat_says(engine):
    api = make_api(engine, roles=("admin",))
    job_id = _job(engine, api.user_ids["admin"], "running", OLD)
    with platform.running_here(job_id):  # SQLite: the job's transaction holds the lock, no beat is written
        assert api.get("admin", f"/jobs/{job_id}").json()["status"] == "running"
    assert api.get("admin", f"/jobs/{job_id}").json()["status"] == "failed"


def test_a_finished_job_is_never_failed_afterwards_and_a_real_job_keeps_its_heartbeat(engine):
    api = make_api(engine, roles=("admin",))
    started = api.post("admin", "/jobs/imports/customers", json={"csv": "first_name,last_name,email\nAna,Lima,ana@example.com\n"}).json()
    job = _stored(engine, started["id"])
    assert job.status == "succeeded" and job.heartbeat_at is not None and job.heartbeat_at >= job.started_at
    with platform.unit_of_work(engine) as session:
        assert platform.fail_stale_jobs(session, now=utcnow() + OLD * 10) == []
    assert _stored(engine, started["id"]).status == "succeeded"
