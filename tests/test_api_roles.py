"""Every endpoint for every role: allowed exactly when the role's permission (the one table in
crm_core/platform/permissions.py) allows it, as on the pages; refused with 403 in the error shape
otherwise. Run over a small simulated shop, refreshed, so the reads have data."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest
from sqlalchemy import select

import batch
import demo
from crm_core import platform, segmentation, service
from db import migrate
from db.engine import make_engine
from db.models import (
    ROLES,
    Complaint,
    Customer,
    CustomerMerge,
    CustomerSegment,
    DataSubjectRequest,
    LoyaltyAccount,
    SupportTicket,
)

from .api_support import assert_error, make_api

# A segment's member list shows names and e-mails: the permissions it needs are the ones its core
# function checks (segments.view, and customers.view where the core asks for it too).
MEMBERS_PERMISSIONS = tuple(p for p in ("segments.view", "customers.view")
                            if f'"{p}"' in inspect.getsource(segmentation.segment_members))
# (method, path, json body, permission or permissions that must all hold); {customer} and friends are
# filled in from the shop.
ENDPOINTS = [
    ("GET", "/customers", None, "customers.view"),
    ("POST", "/customers/search", {"filter": {"all": [{"field": "order_count", "op": "ge", "value": 1}]}},
     "customers.view"),
    ("POST", "/customers", {"first_name": "Role", "last_name": "Matrix"}, "customers.edit"),
    ("GET", "/customers/{customer}", None, "customers.view"),
    ("PATCH", "/customers/{customer}", {"notes": "seen by the API"}, "customers.edit"),
    ("DELETE", "/customers/{erasable}", None, "privacy.manage"),
    ("GET", "/customers/{customer}/orders", None, "customers.view"),
    ("POST", "/customers/{customer}/orders", {"total": "25.00", "channel": "phone"}, "customers.edit"),
    ("GET", "/customers/{customer}/vouchers", None, "customers.view"),
    ("POST", "/customers/{customer}/vouchers", {"kind": "amount", "value": 5, "reason": "API goodwill"},
     "vouchers.manage"),
    ("POST", "/vouchers/999999/void", {"reason": "API test"}, "vouchers.manage"),
    ("GET", "/overview", None, "overview.view"),
    ("GET", "/segments", None, "segments.view"),
    ("POST", "/segments", {"name": "API {role}", "rules": {"all": [{"field": "order_count", "op": "ge",
                                                                    "value": 2}]}}, "segments.manage"),
    ("POST", "/segments/preview", {"rules": {"all": [{"field": "order_count", "op": "ge", "value": 2}]}},
     "segments.view"),
    ("GET", "/segments/{segment}", None, "segments.view"),
    ("PATCH", "/segments/{segment}", {"description": "edited over the API"}, "segments.manage"),
    ("GET", "/segments/{segment}/members", None, MEMBERS_PERMISSIONS),
    ("DELETE", "/segments/999999", None, "segments.manage"),
    ("POST", "/segments/{static_segment}/members", {"customer_ids": ["{customer}"]}, "segments.manage"),
    ("GET", "/lifecycle/stages", None, "lifecycle.view"),
    ("GET", "/lifecycle/history", None, "lifecycle.view"),
    ("POST", "/customers/{customer}/lifecycle", {"stage": "loyal", "reason": "API test"}, "lifecycle.edit"),
    ("GET", "/churn/predictions", None, "churn.view"),
    ("GET", "/customers/{customer}/churn", None, "churn.view"),
    ("GET", "/customers/{customer}/health", None, "health.view"),
    ("GET", "/health-scores/overview", None, "health.view"),
    ("GET", "/lifetime-values", None, "value.view"),
    ("GET", "/lifetime-values/overview", None, "value.view"),
    ("GET", "/tickets", None, "tickets.view"),
    ("POST", "/tickets", {"customer_id": "{customer}", "subject": "Where is my parcel?",
                          "description": "Ordered last week."}, "tickets.manage"),
    ("GET", "/tickets/{ticket}", None, "tickets.view"),
    ("PATCH", "/tickets/{ticket}", {"priority": "high"}, "tickets.manage"),
    ("POST", "/tickets/{ticket}/responses", {"body": "We are on it.", "internal": True}, "tickets.manage"),
    ("GET", "/complaints", None, "complaints.view"),
    ("POST", "/complaints", {"customer_id": "{customer}", "category": "delivery", "severity": "low",
                             "description": "Late parcel."}, "complaints.manage"),
    ("GET", "/complaints/{complaint}", None, "complaints.view"),
    ("POST", "/complaints/{complaint}/resolution", {"resolution": "Apologised."}, "complaints.manage"),
    ("GET", "/customers/{member}/loyalty", None, "loyalty.view"),
    ("GET", "/customers/{member}/loyalty/ledger", None, "loyalty.view"),
    ("POST", "/customers/{member}/loyalty/adjustments", {"points": 5, "reason": "API goodwill"}, "loyalty.adjust"),
    ("GET", "/loyalty/adjustments/pending", None, "loyalty.view"),
    ("POST", "/loyalty/adjustments/999999/decision", {"approve": False}, "loyalty.approve"),
    ("GET", "/customers/{customer}/preferences", None, "privacy.manage"),
    ("PUT", "/customers/{customer}/preferences", {"channels": ["email"], "frequency": "weekly"}, "privacy.manage"),
    ("GET", "/customers/{customer}/consents", None, "privacy.manage"),
    ("POST", "/customers/{customer}/consents", {"purpose": "analytics", "granted": True}, "privacy.manage"),
    ("GET", "/privacy/requests", None, "privacy.manage"),
    ("POST", "/privacy/requests", {"customer_id": "{customer}", "request_type": "access"}, "privacy.manage"),
    ("GET", "/privacy/requests/{privacy_request}", None, "privacy.manage"),
    ("POST", "/privacy/requests/{privacy_request}/status", {"status": "in_progress"}, "privacy.manage"),
    ("POST", "/privacy/requests/999999/erasure", None, "privacy.manage"),
    ("POST", "/merges", {"survivor_id": "{customer}", "other_id": "{other}"}, "customers.merge"),
    ("POST", "/merges/{merge}/undo", None, "customers.merge"),
    ("GET", "/customers/{customer}/splittable", None, "customers.merge"),
    ("POST", "/customers/{customer}/split", {"moves": {"orders": [999999]}, "new_customer": {"first_name": "S"}},
     "customers.merge"),
    ("GET", "/exports/customers.csv", None, "customers.export"),
    ("GET", "/exports/customers.jsonl", None, "customers.export"),
    ("GET", "/jobs", None, "tokens.own"),
    ("POST", "/jobs/bulk-actions", {"action": "change_status", "customer_ids": ["{customer}"],
                                    "params": {"status": "active", "reason": "API"}}, "customers.bulk"),
    ("POST", "/jobs/imports/customers", {"csv": "first_name,last_name,email\nImp,Orted,imp@example.com\n"},
     "customers.import"),
    ("POST", "/jobs/imports/orders", {"csv": "customer,date,amount\nC1,2026-01-02,10.50\n", "customer_col": "customer",
                                      "date_col": "date", "amount_col": "amount"}, "customers.import"),
    ("GET", "/webhooks", None, "webhooks.manage"),
    ("POST", "/webhooks", {"url": "http://127.0.0.1:9/hook", "events": ["customer.created"]}, "webhooks.manage"),
    ("GET", "/webhooks/{subscription}", None, "webhooks.manage"),
    ("PATCH", "/webhooks/{subscription}", {"is_active": True}, "webhooks.manage"),
    ("GET", "/webhooks/{subscription}/deliveries", None, "webhooks.manage"),
    ("DELETE", "/webhooks/999999", None, "webhooks.manage"),
    ("GET", "/tokens", None, "tokens.own"),
    ("POST", "/tokens", {"name": "second"}, "tokens.own"),
    ("DELETE", "/tokens/999999", None, "tokens.own"),
]
# Every list again in keyset mode (limit, after): the same permissions as its numbered pages.
KEYSET_LISTS = [(method, f"{path}?limit=3", body, permission) for method, path, body, permission in ENDPOINTS
                if method == "GET" and path in (
                    "/tickets", "/complaints", "/segments/{segment}/members", "/lifecycle/history",
                    "/churn/predictions", "/lifetime-values", "/customers/{member}/loyalty/ledger",
                    "/loyalty/adjustments/pending", "/privacy/requests", "/webhooks/{subscription}/deliveries",
                    "/tokens", "/jobs")]
ENDPOINTS += KEYSET_LISTS
# Not role-checked: the load balancer's probe and the documentation.
OPEN = {("GET", "/health"), ("GET", "/docs"), ("GET", "/openapi.json"), ("GET", "/docs/oauth2-redirect"),
        ("GET", "/redoc"), ("GET", "/jobs/{job_id}"), ("GET", "/jobs/{job_id}/results")}


@pytest.fixture(scope="module")
def shop(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('api_roles') / 'shop.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    demo.seed_database(engine, 150, seed=3, end=dt.datetime.now().replace(microsecond=0))
    batch.run_refresh(engine, dt.date.today(), include_clusters=False)
    api = make_api(engine, roles=ROLES)
    with platform.unit_of_work(engine) as s:
        ids = list(s.scalars(select(Customer.id).where(Customer.status == "active").order_by(Customer.id).limit(40)))
        static = platform.SYSTEM
        segment = segmentation.create_segment(s, static, "API static", "custom", "static")
        made = {"customer": ids[0], "other": ids[1], "erasable": ids[2],
                "segment": s.scalar(select(CustomerSegment.id).where(CustomerSegment.kind == "dynamic").limit(1)),
                "static_segment": segment.id,
                "ticket": s.scalar(select(SupportTicket.id).limit(1)),
                # a small simulated shop may have no complaint on some days: make one for the matrix
                "complaint": s.scalar(select(Complaint.id).where(Complaint.status == "open").limit(1))
                or service.create_complaint(s, static, ids[6], "delivery", "low", "Late parcel.").id,
                "member": s.scalar(select(LoyaltyAccount.customer_id).limit(1))}
        from crm_core import customers, webhooks

        # likewise open tickets: the queue lists open ones, and a small shop seeded up to now may have none
        for n in range(3):
            service.create_ticket(s, static, ids[7 + n], f"API test ticket {n}", "Where is my parcel?")
        made["privacy_request"] = customers.create_privacy_request(s, static, ids[3], "access").id
        made["merge"] = customers.merge_customers(s, static, ids[4], ids[5])
        made["subscription"] = webhooks.create_subscription(s, static, "http://127.0.0.1:9/x", ["ticket.created"])[0]["id"]
        assert s.get(CustomerMerge, made["merge"]) is not None and s.get(DataSubjectRequest, made["privacy_request"])
    return api, made


def _fill(value, ids, role):
    if isinstance(value, str):
        for name, found in ids.items():
            if value == f"{{{name}}}":
                return found
            value = value.replace(f"{{{name}}}", str(found))
        return value.replace("{role}", role)
    if isinstance(value, list):
        return [_fill(v, ids, role) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids, role) for k, v in value.items()}
    return value


def test_the_matrix_covers_every_route(shop):
    api, _ = shop
    routes = {(method, route.path) for route in api.client.app.routes for method in getattr(route, "methods", ())
              if method != "HEAD"}
    listed = {(method, path.replace("{customer}", "{customer_id}")) for method, path, _, _ in ENDPOINTS}
    normalized = set()
    for method, path in routes:
        normalized.add((method, path))
    templates = {(m, p) for m, p, _, _ in ENDPOINTS}
    uncovered = []
    for method, path in normalized - OPEN:
        pattern = path.split("/")
        if not any(m == method and len(t.split("/")) == len(pattern) and all(
                a == b or (a.startswith("{") and (b.startswith("{") or b.isdigit()))
                for a, b in zip(pattern, t.split("/"), strict=True)) for m, t in templates):
            uncovered.append(f"{method} {path}")
    assert not uncovered, f"routes without a role check in ENDPOINTS: {uncovered}"
    assert listed


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_allows_or_refuses_the_role_as_the_permission_table_says(shop, role):
    api, ids = shop
    wrong = []
    for method, path, body, permission in ENDPOINTS:
        url = _fill(path, ids, role)
        headers = {"If-Match": '"999"'} if method in ("PATCH", "PUT") or url.endswith(("/resolution", "/void")) else {}
        response = api.client.request(method, url, json=_fill(body, ids, role), headers=api.headers(role, **headers))
        needed = (permission,) if isinstance(permission, str) else permission
        allowed = all(platform.allowed(role, p) for p in needed)
        if response.status_code >= 500:
            wrong.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        elif allowed and response.status_code in (401, 403):
            wrong.append(f"{method} {path}: {role} refused ({response.text[:200]})")
        elif not allowed:
            if response.status_code != 403:
                wrong.append(f"{method} {path}: {role} got {response.status_code}, expected 403")
            else:
                assert_error(response, 403, "forbidden")
    assert not wrong, "\n".join(wrong)


@pytest.mark.parametrize("path", ["/churn/predictions", "/lifetime-values", "/lifecycle/history",
                                  "/segments/{segment}/members", "/tickets", "/complaints"])
def test_keyset_pages_over_the_refreshed_shop_match_the_numbered_order(shop, path):
    api, ids = shop
    url = _fill(path, ids, "admin")
    numbered = api.get("admin", url, params={"page_size": 100}).json()
    assert numbered["data"], numbered
    rows, after = [], None
    while True:
        body = api.get("admin", url, params={"limit": 7, **({"after": after} if after else {})}).json()
        assert set(body) == {"data", "next_after"}, body
        rows += body["data"]
        after = body["next_after"]
        if after is None or len(rows) >= len(numbered["data"]):
            break
    assert rows[:len(numbered["data"])] == numbered["data"]
