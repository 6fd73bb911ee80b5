"""Keyset pages (`limit`, `after`) on every list: the walk visits each row once in the list's order,
with no cap; rows added meanwhile neither repeat nor push rows out; a cursor that is not one this list
gave is a 400 (422 when it is not even cursor-shaped) with param "after"; numbered pages still work
and carry next_after."""

from __future__ import annotations

import datetime as dt

import pytest

from crm_core import customers, loyalty, platform, segmentation, service

from .api_support import assert_error, make_api
from .factories import make_customer


@pytest.fixture
def shop(engine):
    api = make_api(engine)
    start = dt.datetime(2026, 3, 1, 9, 0)
    with platform.unit_of_work(engine) as session:
        people = [make_customer(session, start - dt.timedelta(days=i), first_name=f"P{i}") for i in range(9)]
        ids = [p.id for p in people]
        for i, customer_id in enumerate(ids):
            # equal creation times in pairs, so the id decides ties
            service.create_complaint(session, platform.SYSTEM, customer_id, "delivery", "low", f"Late {i}",
                                     now=start + dt.timedelta(hours=i // 2))
            ticket = service.create_ticket(session, platform.SYSTEM, customer_id, f"Ticket {i}", "Help.",
                                           now=start + dt.timedelta(hours=i // 2))
            if i % 3 == 0:  # closed: no SLA clock runs, so its due time is NULL and it sorts last
                service.update_ticket(session, platform.SYSTEM, ticket.id, ticket.version, status="closed")
        loyalty.enroll(session, platform.SYSTEM, ids[0])
        for n in range(11):
            loyalty.adjust(session, platform.SYSTEM, ids[0], n + 1, f"goodwill {n}")
        for customer_id in ids[:7]:
            customers.create_privacy_request(session, platform.SYSTEM, customer_id, "access")
        static = segmentation.create_segment(session, platform.SYSTEM, "Paged", "custom", "static")
        segmentation.add_members(session, platform.SYSTEM, static.id, ids)  # no analytics: revenue NULL
    return api, ids, static.id


def _walk(api, url: str, limit: int, role: str = "admin", **params) -> list[dict]:
    rows, after, pages = [], None, 0
    while True:
        query = {**params, "limit": limit, **({"after": after} if after else {})}
        response = api.get(role, url, params=query)
        assert response.status_code == 200, response.text
        body = response.json()
        assert set(body) == {"data", "next_after"}, body
        assert len(body["data"]) <= limit
        rows += body["data"]
        pages += 1
        after = body["next_after"]
        if after is None:
            return rows
        assert pages < 100


LISTS = [  # url, numbered-page params, the row's id
    ("/complaints", {"page_size": 200}, "id"),
    ("/tickets", {"page_size": 200, "open_only": "false"}, "id"),
    ("/privacy/requests", {"page_size": 200}, "request_id"),
    ("/customers/{member}/loyalty/ledger", {"page_size": 500}, "entry"),
    ("/segments/{segment}/members", {"page_size": 500}, "id"),
]


@pytest.mark.parametrize(("url", "numbered", "key"), LISTS)
def test_a_keyset_walk_matches_the_numbered_order_row_for_row(shop, url, numbered, key):
    api, ids, segment = shop
    url = url.format(member=ids[0], segment=segment)
    extra = {k: v for k, v in numbered.items() if k != "page_size"}
    everything = api.get("admin", url, params=numbered).json()
    assert everything["next_after"] is None and everything["total"] == len(everything["data"]) >= 7
    walked = _walk(api, url, 2, **extra)
    assert [r[key] for r in walked] == [r[key] for r in everything["data"]]


def test_numbered_pages_keep_their_keys_and_their_next_after_continues_them(shop):
    api, _, _ = shop
    first = api.get("admin", "/complaints", params={"page_size": 4}).json()
    assert set(first) == {"data", "total", "page", "page_size", "next_after"} and first["total"] == 9
    second = api.get("admin", "/complaints", params={"page_number": 2, "page_size": 4}).json()
    by_cursor = api.get("admin", "/complaints", params={"limit": 4, "after": first["next_after"]}).json()
    assert [r["id"] for r in by_cursor["data"]] == [r["id"] for r in second["data"]]
    last = api.get("admin", "/complaints", params={"page_number": 3, "page_size": 4}).json()
    assert len(last["data"]) == 1 and last["next_after"] is None


def test_rows_added_during_a_walk_neither_repeat_nor_push_rows_out(shop, engine):
    api, ids, _ = shop
    first = api.get("admin", "/complaints", params={"limit": 3}).json()
    with platform.unit_of_work(engine) as session:  # newer than every row: it belongs before the cursor
        service.create_complaint(session, platform.SYSTEM, ids[1], "delivery", "high", "Newest",
                                 now=dt.datetime(2026, 3, 2))
    rest, after = [], first["next_after"]
    while after:
        body = api.get("admin", "/complaints", params={"limit": 3, "after": after}).json()
        rest += body["data"]
        after = body["next_after"]
    seen = [r["id"] for r in first["data"] + rest]
    assert len(seen) == len(set(seen)) == 9  # the nine that were there, each once; the new one is before the cursor


def test_a_cursor_that_is_not_this_lists_is_refused_with_param_after(shop):
    api, ids, _ = shop
    tickets_cursor = api.get("admin", "/tickets", params={"limit": 1, "open_only": "false"}).json()["next_after"]
    for bad in ("bm9wZQ", "x" * 40, tickets_cursor):
        error = assert_error(api.get("admin", "/complaints", params={"after": bad}), 400, "invalid")
        assert error["param"] == "after" and "next_after" in error["message"]
    assert assert_error(api.get("admin", "/complaints", params={"after": "not/base64!"}), 422)["param"] == "after"
    both = api.get("admin", "/complaints", params={"page_number": 2, "after": tickets_cursor})
    assert assert_error(both, 400)["param"] == "after"
    ledger_cursor = api.get("admin", f"/customers/{ids[0]}/loyalty/ledger", params={"limit": 1}).json()["next_after"]
    assert assert_error(api.get("admin", f"/customers/{ids[0]}/loyalty/ledger",
                                params={"after": ledger_cursor[:-3]}), 400)["param"] == "after"


def test_tokens_and_webhook_deliveries_page_by_keyset_and_the_plain_list_is_unchanged(shop, engine):
    api, _, _ = shop
    for n in range(4):
        assert api.post("admin", "/tokens", json={"name": f"extra {n}"}).status_code == 201
    plain = api.get("admin", "/tokens").json()
    assert isinstance(plain, list) and len(plain) == 5
    assert [t["id"] for t in _walk(api, "/tokens", 2)] == [t["id"] for t in plain]
    hook = api.post("admin", "/webhooks", json={"url": "http://127.0.0.1:9/h", "events": ["customer.created"]}).json()
    deliveries = api.get("admin", f"/webhooks/{hook['id']}/deliveries").json()
    assert deliveries == {"data": [], "next_after": None}


def test_a_jobs_results_page_by_position_and_the_jobs_list(shop):
    api, _, _ = shop
    text = "first_name,last_name,email\n" + "".join(f"N{i},L,bad-{i}\n" for i in range(7))
    job = api.post("admin", "/jobs/imports/customers", json={"csv": text}).json()
    numbered = api.get("admin", f"{job['url']}/results").json()
    assert numbered["total"] == 7 and numbered["next_after"] is None
    walked = _walk(api, f"{job['url']}/results", 3)
    assert walked == numbered["data"]
    listed = _walk(api, "/jobs", 1)
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["status"] == "succeeded"
    other = api.post("admin", "/jobs/imports/customers", json={"csv": text}).json()
    cursor = api.get("admin", f"{job['url']}/results", params={"limit": 3}).json()["next_after"]
    assert_error(api.get("admin", f"{other['url']}/results", params={"after": cursor}), 400)
