"""The API's customers: create, read with ETag and expand, update with If-Match, delete as an
erasure request, search with filter groups and keyset pages; errors in one shape; every change
audited as the token's user."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import select

from crm_core import platform
from db.models import AuditLog, DataSubjectRequest

from .api_support import assert_error, make_api
from .factories import make_customer


@pytest.fixture
def api(engine):
    return make_api(engine)


def _customer(engine, **fields) -> int:
    with platform.unit_of_work(engine) as session:
        return make_customer(session, dt.datetime(2026, 1, 5), **fields).id


def test_health_and_docs_need_no_token(api):
    assert api.client.get("/health").json() == {"status": "ok", "database": "ok"}
    assert api.client.get("/docs").status_code == 200
    schema = api.client.get("/openapi.json").json()
    assert "/customers/{customer_id}" in schema["paths"]


def test_without_or_with_a_bad_token_is_401_in_the_error_shape(api):
    assert_error(api.client.get("/customers"), 401, "unauthenticated")
    assert_error(api.client.get("/customers", headers={"Authorization": "Bearer crm_nope"}), 401)
    assert_error(api.client.get("/customers", headers={"Authorization": "Basic abc"}), 401)


def test_create_read_update_with_etag_and_audit_as_the_token_user(api, engine):
    made = api.post("support_agent", "/customers", json={"first_name": "Ana", "last_name": "Lima",
                                                          "email": "Ana.Lima@Example.com", "country_code": "pt"})
    assert made.status_code == 201, made.text
    customer_id = made.json()["id"]
    assert made.headers["Location"] == f"/customers/{customer_id}"
    assert made.json()["facts"]["email"] == "Ana.Lima@example.com" and made.json()["facts"]["country_code"] == "PT"
    read = api.get("analyst", f"/customers/{customer_id}")
    assert read.status_code == 200 and read.headers["ETag"] == '"1"'

    assert_error(api.patch("support_agent", f"/customers/{customer_id}", json={"city": "Porto"}), 428,
                 "precondition_required")
    updated = api.patch("support_agent", f"/customers/{customer_id}", json={"city": "Porto"},
                        headers={"If-Match": read.headers["ETag"]})
    assert updated.status_code == 200 and updated.json()["facts"]["city"] == "Porto"
    assert updated.headers["ETag"] == '"2"'
    stale = api.patch("support_agent", f"/customers/{customer_id}", json={"city": "Faro"},
                      headers={"If-Match": read.headers["ETag"]})
    assert_error(stale, 412, "precondition_failed")
    assert api.get("analyst", f"/customers/{customer_id}").json()["facts"]["city"] == "Porto"

    with platform.unit_of_work(engine) as session:
        actions = session.execute(select(AuditLog.action, AuditLog.actor_username, AuditLog.actor_id)
                                  .where(AuditLog.entity_type == "customer").order_by(AuditLog.id)).all()
    agent = api.user_ids["support_agent"]
    assert [tuple(a) for a in actions] == [("customer.create", "api-support-agent", agent),
                                           ("customer.update", "api-support-agent", agent)]


def test_bad_input_is_a_400_with_the_domain_message_and_nothing_saved(api, engine):
    bad = api.post("admin", "/customers", json={"first_name": "X", "email": "not-an-email"})
    error = assert_error(bad, 400, "invalid")
    assert "mail" in error["message"].lower()
    assert_error(api.post("admin", "/customers", json={"first_name": "X", "shoe_size": 44}), 422, "unprocessable")
    assert_error(api.post("admin", "/customers", content=b"{not json", headers={"Content-Type": "application/json"}),
                 422)
    assert api.get("admin", "/customers").json()["data"] == []


def test_roles_without_the_permission_are_refused(api):
    customer_id = _customer(api.engine)
    assert_error(api.get("executive", f"/customers/{customer_id}"), 403, "forbidden")
    assert_error(api.post("analyst", "/customers", json={"first_name": "A"}), 403)
    assert_error(api.patch("analyst", f"/customers/{customer_id}", json={"city": "X"}, headers={"If-Match": '"1"'}),
                 403)
    assert_error(api.delete("support_agent", f"/customers/{customer_id}"), 403)
    assert_error(api.get("admin", "/customers/999999"), 404, "not_found")


def test_delete_opens_an_erasure_request(api, engine):
    customer_id = _customer(engine)
    response = api.delete("admin", f"/customers/{customer_id}")
    assert response.status_code == 202 and response.json()["request_type"] == "erasure"
    with platform.unit_of_work(engine) as session:
        request = session.get(DataSubjectRequest, response.json()["id"])
        assert request.customer_id == customer_id and request.status == "received"


def test_expand_adds_the_named_parts_and_refuses_unknown_ones(api, engine):
    customer_id = _customer(engine)
    body = api.get("admin", f"/customers/{customer_id}", params={"expand": "orders,tickets,segments,loyalty"}).json()
    assert body["orders"] == [] and body["tickets"] == [] and body["segments"] == []
    assert body["loyalty"]["member"] is False
    assert_error(api.get("admin", f"/customers/{customer_id}", params={"expand": "secrets"}), 400)
    # loyalty needs loyalty.view, which every role with customers.view has; an analyst may expand it too
    assert api.get("analyst", f"/customers/{customer_id}", params={"expand": "loyalty"}).status_code == 200


def test_search_with_filter_groups_pages_by_keyset_without_a_cap(api, engine):
    ids = [_customer(engine, country_code=c, city=city) for c, city in
           [("DE", "Berlin"), ("FR", "Paris"), ("DE", "Munich"), ("IT", "Rome"), ("DE", "Berlin"), ("FR", "Lyon")]]
    groups = {"any": [{"all": [{"field": "country", "op": "eq", "value": "DE"},
                               {"field": "city", "op": "eq", "value": "Berlin"}]},
                      {"all": [{"field": "country", "op": "eq", "value": "FR"}]}]}
    expected = [ids[0], ids[1], ids[4], ids[5]]
    seen, after, pages = [], None, 0
    while True:
        body = {"filter": groups, "limit": 1, **({"after": after} if after else {})}
        page = api.post("analyst", "/customers/search", json=body).json()
        seen += [row["id"] for row in page["data"]]
        pages += 1
        after = page["next_after"]
        if after is None:
            break
    assert seen == expected and pages == 4
    everyone = api.get("analyst", "/customers", params={"limit": 4}).json()
    assert [r["id"] for r in everyone["data"]] == ids[:4] and everyone["next_after"] == str(ids[3])
    rest = api.get("analyst", "/customers", params={"limit": 4, "after": everyone["next_after"]}).json()
    assert [r["id"] for r in rest["data"]] == ids[4:] and rest["next_after"] is None
    bad = api.post("analyst", "/customers/search", json={"filter": {"all": [{"field": "password", "op": "eq",
                                                                                "value": "x"}]}})
    assert "unknown field" in assert_error(bad, 400)["message"]


def test_a_database_that_drops_its_connections_costs_one_503_then_recovers(postgres_server):
    """The API's engine does not ping before each request: a connection the server dropped fails that
    one request with the error shape (no trace), and the next request runs on a new connection."""
    from sqlalchemy import text as sql

    from api.app import ENGINE_OPTIONS
    from db import migrate
    from db.engine import make_engine

    from .api_support import assert_error, make_api

    url = postgres_server.create()
    try:
        migrate.upgrade(url)
        engine = make_engine(url, **ENGINE_OPTIONS)
        api = make_api(engine, roles=("admin",))
        assert api.get("admin", "/customers", params={"limit": 5}).status_code == 200
        with make_engine(url).connect() as killer:  # the server drops every other connection to the database
            killer.execute(sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        assert_error(api.get("admin", "/customers", params={"limit": 5}), 503)
        assert api.get("admin", "/customers", params={"limit": 5}).status_code == 200
        engine.dispose()
    finally:
        postgres_server.drop(url)
