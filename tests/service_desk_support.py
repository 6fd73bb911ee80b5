"""Builders shared by the service-desk tests (tickets, SLA, surveys)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy.orm import Session

from crm_core import platform, service
from db.models import ServiceLevelAgreement

from .factories import make_customer, make_user

# Friday 27 Nov 2026 17:00 in Berlin (CET, UTC+1): one business hour before the weekend.
FRIDAY_5PM = dt.datetime(2026, 11, 27, 16, 0)

TARGETS = {  # priority: (first response, next response, resolution) in business minutes
    "low": (480, 480, 2400), "normal": (60, 120, 600), "high": (45, 90, 480),
    "urgent": (30, 60, 240), "critical": (15, 30, 120),
}


def make_policies(session: Session) -> dict[str, ServiceLevelAgreement]:
    policies = {}
    for priority, (first, nxt, resolution) in TARGETS.items():
        policies[priority] = service.create_sla_policy(
            session, platform.SYSTEM, name=f"Standard {priority}", priority=priority, first_response_minutes=first,
            next_response_minutes=nxt, resolution_minutes=resolution)
    assert policies["normal"].calendar == {**service.DEFAULT_CALENDAR, "holidays": []}
    return policies


def desk(session: Session) -> dict:
    """Policies, an admin, two agents, an analyst and a customer."""
    return {
        "policies": make_policies(session),
        "admin": make_user(session, "admin"),
        "agent": make_user(session, "support_agent"),
        "agent2": make_user(session, "support_agent"),
        "analyst": make_user(session, "analyst"),
        "customer": make_customer(session, dt.datetime(2025, 1, 1), first_name="Greta", last_name="Lindqvist",
                                  email="greta@example.com"),
    }
