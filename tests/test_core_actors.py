"""Every writer checks its actor in the core, not only behind a page: the batch and its steps, loyalty
earning, reversal and expiry, SLA checks, churn training, the access export, the failed-import record,
health scoring and lifecycle evaluation, CLV and forecast training, risk scoring, success CTAs, journeys,
campaign results and the model registry refuse an actor whose role may not do them."""

from __future__ import annotations

import datetime as dt

import pytest

import batch
from crm_core import campaigns, customers, imports, journeys, loyalty, platform, segmentation, service, success
from ml import churn, clv, forecast, registry
from ml import risk as risk_model
from ml.health import scoring
from tests.factories import make_customer, make_user

AS_OF = dt.date(2026, 3, 31)
NOW = dt.datetime(2026, 3, 31, 23, 0)


def _refused(engine, session, role: str):
    outsider = make_user(session, role)
    session.commit()
    person = make_customer(session, dt.datetime(2025, 1, 1))
    session.commit()
    calls = {
        "run_refresh": lambda: batch.run_refresh(engine, AS_OF, actor=outsider),
        "backfill": lambda: batch.backfill(engine, AS_OF, 1, actor=outsider),
        "earn_for_orders": lambda: loyalty.earn_for_orders(engine, AS_OF, actor=outsider),
        "reverse_for_orders": lambda: loyalty.reverse_for_orders(engine, AS_OF, actor=outsider),
        "expire_points": lambda: loyalty.expire_points(engine, AS_OF, actor=outsider),
        "run_sla_checks": lambda: service.run_sla_checks(engine, actor=outsider),
        "refresh_churn": lambda: churn.refresh_churn(engine, AS_OF, actor=outsider),
        "train_and_register": lambda: churn.train_and_register(engine, AS_OF, actor=outsider),
        "score_health": lambda: scoring.score_health(engine, AS_OF, actor=outsider),
        "evaluate_lifecycle": lambda: segmentation.evaluate_lifecycle(session, AS_OF, actor=outsider),
        "export_subject_data": lambda: customers.export_subject_data(session, outsider, person.id),
        "record_failed_run": lambda: imports.record_failed_run(session, outsider, "customers", "x.csv", "csv", None,
                                                               "it broke"),
        "refresh_lifetime_value": lambda: clv.refresh_lifetime_value(engine, AS_OF, actor=outsider),
        "refresh_forecasts": lambda: forecast.refresh_forecasts(engine, AS_OF, actor=outsider),
        "refresh_risk": lambda: risk_model.refresh_risk(engine, AS_OF, NOW, actor=outsider),
        "refresh_success": lambda: success.refresh_success(engine, AS_OF, NOW, actor=outsider),
        "refresh_journeys": lambda: journeys.refresh_journeys(session, AS_OF, NOW, actor=outsider),
        "store_campaign_results": lambda: campaigns.store_results(session, NOW, actor=outsider),
        "register_model": lambda: registry.register(session, "audit", "none", {}, actor=outsider),
    }
    refused = []
    for name, call in calls.items():
        try:
            call()
        except platform.PermissionDenied:
            refused.append(name)
        session.rollback()
    return sorted(refused), sorted(calls)


@pytest.mark.parametrize("role", ["analyst", "support_agent", "executive"])
def test_writers_refuse_an_actor_without_the_permission(engine, session, role):
    refused, every = _refused(engine, session, role)
    assert refused == every


def test_the_batch_runs_as_the_system_actor(engine):
    report = batch.run_refresh(engine, AS_OF, actor=platform.SYSTEM)
    assert report.run_id
