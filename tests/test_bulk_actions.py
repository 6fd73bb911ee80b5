"""Bulk actions: per-record results (ok, skipped, failed), progress, audit rows, all-or-nothing."""

from __future__ import annotations

import csv
import datetime as dt
import io

import pytest
from sqlalchemy import func, select

from crm_core import customers, platform
from crm_core.customers import bulk_actions
from db.engine import session_factory
from db.models import (
    AuditLog,
    Customer,
    CustomerCommunication,
    CustomerLifecycleHistory,
    CustomerLifecycleStage,
    CustomerPreferenceCenter,
    CustomerSegment,
    CustomerSegmentMembership,
)

from .factories import make_customer, make_user

SIGNUP = dt.datetime(2025, 1, 1)


@pytest.fixture
def crowd(session):
    admin = make_user(session, "admin")
    active = [make_customer(session, SIGNUP, country_code="DE", last_name=f"Active{i}") for i in range(5)]
    suspended = make_customer(session, SIGNUP, status="suspended", country_code="FR")
    merged = make_customer(session, SIGNUP, status="merged", country_code="DE")
    erased = make_customer(session, SIGNUP, status="erased", country_code="DE", email=None)
    static = CustomerSegment(name="Hand picked", segment_type="custom", kind="static")
    dynamic = CustomerSegment(name="Rules", segment_type="custom", kind="dynamic",
                              rules={"all": [{"field": "order_count", "op": ">=", "value": 1}]})
    session.add_all([static, dynamic])
    session.flush()
    session.add(CustomerSegmentMembership(segment_id=static.id, customer_id=active[0].id, assignment="manual"))
    session.flush()
    return {"admin": admin, "active": active, "suspended": suspended, "merged": merged, "erased": erased,
            "static": static, "dynamic": dynamic}


def outcomes(result) -> dict[int, tuple[str, str]]:
    return {i: (outcome, reason) for i, outcome, reason in result.records}


def bulk_audits(session, action):
    return session.scalars(select(AuditLog).where(AuditLog.action == f"bulk.{action}")).all()


def test_add_to_segment_reports_each_record(session, crowd):
    a = crowd["active"]
    selection = [a[0].id, a[1].id, a[2].id, crowd["merged"].id, 987_654, a[1].id]
    steps = []
    result = customers.bulk_add_to_segment(session, crowd["admin"], selection, crowd["static"].id,
                                         progress=lambda done, total: steps.append((done, total)))
    assert result.summary() == {"total": 5, "ok": 2, "skipped": 1, "failed": 2}
    got = outcomes(result)
    assert got[a[0].id] == ("skipped", "already a member")
    assert got[crowd["merged"].id] == ("failed", "customer was merged")
    assert got[987_654] == ("failed", "no such customer")
    assert steps[-1] == (5, 5)
    members = set(session.scalars(select(CustomerSegmentMembership.customer_id).where(
        CustomerSegmentMembership.segment_id == crowd["static"].id, CustomerSegmentMembership.is_active.is_(True))))
    assert members == {a[0].id, a[1].id, a[2].id}
    (entry,) = bulk_audits(session, "add_to_segment")
    assert entry.after["ok"] == 2 and entry.after["failed"] == 2
    assert [987_654, "failed", "no such customer"] in entry.after["not_ok"]


def test_add_to_segment_refuses_dynamic_and_unknown_segments(session, crowd):
    with pytest.raises(platform.ValidationError, match="dynamic"):
        customers.bulk_add_to_segment(session, crowd["admin"], [crowd["active"][1].id], crowd["dynamic"].id)
    with pytest.raises(platform.NotFound):
        customers.bulk_add_to_segment(session, crowd["admin"], [crowd["active"][1].id], 424242)
    cluster = CustomerSegment(name="High-value active frequent buyers", segment_type="cluster", kind="static",
                              is_system=True, is_active=True, priority=100)
    session.add(cluster)
    session.flush()
    with pytest.raises(platform.ValidationError, match="kept by the batch refresh"):
        customers.bulk_add_to_segment(session, crowd["admin"], [crowd["active"][1].id], cluster.id)
    options = customers.search_filter_options(session, crowd["admin"])
    assert [s["editable"] for s in options["segments"] if s["id"] == cluster.id] == [False]


def test_change_lifecycle_stage_requires_a_reason_and_writes_history(session, crowd):
    a = crowd["active"]
    with pytest.raises(platform.ValidationError, match="Give a reason"):
        customers.bulk_change_lifecycle_stage(session, crowd["admin"], [a[0].id], "at_risk", "   ")
    with pytest.raises(platform.ValidationError, match="Unknown stage"):
        customers.bulk_change_lifecycle_stage(session, crowd["admin"], [a[0].id], "doomed", "why not")
    session.add(CustomerLifecycleStage(customer_id=a[1].id, stage="at_risk", entered_at=SIGNUP))
    session.flush()
    result = customers.bulk_change_lifecycle_stage(session, crowd["admin"], [a[0].id, a[1].id, crowd["erased"].id],
                                                 "at_risk", "Campaign follow-up")
    assert outcomes(result) == {a[0].id: ("ok", ""), a[1].id: ("skipped", "already at_risk"),
                                crowd["erased"].id: ("failed", "customer was erased")}
    assert session.get(CustomerLifecycleStage, a[0].id).stage == "at_risk"
    history = session.scalars(select(CustomerLifecycleHistory)).all()
    assert [(h.customer_id, h.from_stage, h.to_stage, h.reason, h.actor_kind) for h in history] == [
        (a[0].id, None, "at_risk", "Campaign follow-up", "user")]
    assert bulk_audits(session, "change_lifecycle_stage")[0].after["params"]["reason"] == "Campaign follow-up"


def test_change_status_over_a_whole_search_result(session, crowd):
    query = customers.CustomerQuery(countries=("DE",))
    result = customers.bulk_change_status(session, crowd["admin"], query, "suspended", reason="fraud review")
    # Merged and erased customers are hidden from the search, so only the five active Germans are touched.
    assert result.summary() == {"total": 5, "ok": 5, "skipped": 0, "failed": 0}
    statuses = dict(session.execute(select(Customer.id, Customer.status)).all())
    assert all(statuses[c.id] == "suspended" for c in crowd["active"])
    assert statuses[crowd["merged"].id] == "merged"
    assert session.get(Customer, crowd["active"][0].id).version == 2  # open edit forms will see a conflict
    again = customers.bulk_change_status(session, crowd["admin"], [crowd["active"][0].id, crowd["merged"].id],
                                       "suspended")
    assert outcomes(again) == {crowd["active"][0].id: ("skipped", "already suspended"),
                               crowd["merged"].id: ("failed", "customer was merged")}
    with pytest.raises(platform.ValidationError, match="cannot be set here"):
        customers.bulk_change_status(session, crowd["admin"], [crowd["active"][0].id], "erased")
    entry = bulk_audits(session, "change_status")[0]
    assert entry.after["selection"] == {"query": query.to_dict() | {"countries": ["DE"]}}


def test_log_campaign_communication_respects_contact_and_opt_in(session, crowd):
    a = crowd["active"]
    session.add_all([CustomerPreferenceCenter(customer_id=a[0].id, email_opt_in=True),
                     CustomerPreferenceCenter(customer_id=a[1].id, email_opt_in=False)])
    no_email = make_customer(session, SIGNUP, email=None)
    session.add(CustomerPreferenceCenter(customer_id=no_email.id, email_opt_in=True))
    session.flush()
    selection = [a[0].id, a[1].id, a[2].id, no_email.id]
    result = customers.bulk_log_campaign_communication(session, crowd["admin"], selection, "Summer sale", "email",
                                                     subject="50% off")
    assert outcomes(result) == {a[0].id: ("ok", ""), a[1].id: ("skipped", "no email opt-in"),
                                a[2].id: ("skipped", "no email opt-in"), no_email.id: ("skipped", "no email on record")}
    rows = session.scalars(select(CustomerCommunication)).all()
    assert [(r.customer_id, r.campaign, r.status, r.subject, r.logged_by_id) for r in rows] == [
        (a[0].id, "Summer sale", "logged", "50% off", crowd["admin"].id)]
    again = customers.bulk_log_campaign_communication(session, crowd["admin"], [a[0].id], "Summer sale", "email")
    assert outcomes(again) == {a[0].id: ("skipped", "already logged for this campaign")}
    chat = customers.bulk_log_campaign_communication(session, crowd["admin"], [a[2].id], "Summer sale", "chat")
    assert chat.ok == 1  # no consent needed to record a chat
    with pytest.raises(platform.ValidationError, match="campaign name"):
        customers.bulk_log_campaign_communication(session, crowd["admin"], [a[0].id], "  ", "email")
    with pytest.raises(platform.ValidationError, match="Unknown channel"):
        customers.bulk_log_campaign_communication(session, crowd["admin"], [a[0].id], "X", "pigeon")


def test_export_gives_formula_safe_csv(session, crowd):
    a = crowd["active"]
    a[0].first_name = "=HYPERLINK(1)"
    session.flush()
    result = customers.bulk_export(session, crowd["admin"], [a[0].id, a[1].id, 55_555])
    assert result.summary() == {"total": 3, "ok": 2, "skipped": 0, "failed": 1}
    rows = list(csv.DictReader(io.StringIO(result.content.decode())))
    assert [int(r["id"]) for r in rows] == [a[0].id, a[1].id]
    assert rows[0]["name"].startswith("'=HYPERLINK")
    assert bulk_audits(session, "export")[0].after["params"]["bytes"] == len(result.content)


def test_permissions_are_checked_per_action(session, crowd):
    csm = make_user(session, "success_manager")
    agent = make_user(session, "support_agent")
    ids = [crowd["active"][1].id]
    with pytest.raises(platform.PermissionDenied):
        customers.bulk_export(session, csm, ids)  # CSMs may act in bulk but not export
    with pytest.raises(platform.PermissionDenied):
        customers.bulk_change_status(session, agent, ids, "closed")  # agents have no bulk access
    assert customers.bulk_change_status(session, csm, ids, "closed").ok == 1
    assert [a.key for a in customers.available_bulk_actions("success_manager")] == [
        "change_lifecycle_stage", "change_status", "log_campaign_communication"]
    assert customers.available_bulk_actions("support_agent") == []


@pytest.mark.parametrize("selection, message", [
    ([], "at least one"), ("1,2", "list of ids"), ([1, "2"], "whole numbers"), ([True], "whole numbers"),
    (customers.CustomerQuery(countries=("JP",)), "matches no customers"),
])
def test_bad_selections_are_refused(session, crowd, selection, message):
    with pytest.raises(platform.ValidationError, match=message):
        customers.bulk_change_status(session, crowd["admin"], selection, "closed")


def test_run_dispatches_and_checks_parameters(session, crowd):
    result = customers.run_bulk_action(session, crowd["admin"], "change_status", [crowd["active"][1].id], {"status": "closed"})
    assert result.ok == 1
    with pytest.raises(platform.ValidationError, match="takes no colour"):
        customers.run_bulk_action(session, crowd["admin"], "change_status", [crowd["active"][1].id],
                                  {"status": "closed", "colour": "red"})
    with pytest.raises(platform.ValidationError, match="“Add to a static segment” needs a segment"):
        customers.run_bulk_action(session, crowd["admin"], "add_to_segment", [crowd["active"][1].id], {})
    with pytest.raises(platform.ValidationError, match="Unknown bulk action"):
        customers.run_bulk_action(session, crowd["admin"], "delete_everyone", [1], {})


def test_a_failure_mid_action_rolls_back_every_chunk(engine, session, crowd, monkeypatch):
    session.commit()
    ids = [c.id for c in crowd["active"]]
    monkeypatch.setattr(bulk_actions, "CHUNK", 2)
    calls = {"n": 0}

    def failing_progress(done, total):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("connection lost")

    factory = session_factory(engine)
    with pytest.raises(RuntimeError), platform.unit_of_work(factory) as s:
        customers.bulk_change_status(s, s.get(type(crowd["admin"]), crowd["admin"].id), ids, "closed",
                                   progress=failing_progress)
    with factory() as check:
        assert check.scalar(select(func.count()).select_from(Customer).where(Customer.status == "closed")) == 0
        assert check.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action.like("bulk.%"))) == 0


def test_chunks_and_progress_cover_a_larger_selection(session, crowd, monkeypatch):
    monkeypatch.setattr(bulk_actions, "CHUNK", 2)
    extra = [make_customer(session, SIGNUP, country_code="AT").id for _ in range(5)]
    steps = []
    result = customers.bulk_add_to_segment(session, crowd["admin"], customers.CustomerQuery(countries=("AT",)),
                                         crowd["static"].id, progress=lambda d, t: steps.append((d, t)))
    assert steps == [(2, 5), (4, 5), (5, 5)]
    assert sorted(i for i, outcome, _ in result.records if outcome == "ok") == sorted(extra)
