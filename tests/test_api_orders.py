"""Order intake and vouchers over the API: the core's checks in the one error shape, safe retries
with Idempotency-Key, and the codes a role may see (which role may call what: test_api_roles)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import platform, risk, vouchers
from db.models import Order, Voucher

from .api_support import assert_error, make_api
from .factories import make_customer, make_user


@pytest.fixture
def api(engine):
    return make_api(engine)


def _customer(engine) -> int:
    with platform.unit_of_work(engine) as session:
        return make_customer(session, dt.datetime(2026, 1, 5)).id


def _count(engine, customer_id: int) -> int:
    with platform.unit_of_work(engine) as session:
        return session.scalar(select(func.count()).select_from(Order).where(Order.customer_id == customer_id))


def test_an_order_is_recorded_once_per_idempotency_key_and_listed(api, engine):
    customer_id = _customer(engine)
    headers = {"Idempotency-Key": "checkout-41"}
    made = api.post("support_agent", f"/customers/{customer_id}/orders", headers=headers,
                    json={"total": "49.90", "shipping": 4.5, "channel": "phone"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert body["total"] == 54.4 and body["channel"] == "phone" and body["order_number"].startswith("CRM-")
    again = api.post("support_agent", f"/customers/{customer_id}/orders", headers=headers,
                     json={"total": "49.90", "shipping": 4.5, "channel": "phone"})
    assert again.status_code == 201 and again.headers["Idempotent-Replayed"] == "true" and again.json() == body
    assert _count(engine, customer_id) == 1
    assert_error(api.post("support_agent", f"/customers/{customer_id}/orders", headers=headers, json={"total": 1}),
                 409)
    listed = api.get("analyst", f"/customers/{customer_id}/orders").json()
    assert listed["total"] == 1 and listed["data"][0]["order_number"] == body["order_number"]


def test_refusals_come_in_the_one_error_shape_with_the_reason(api, engine):
    customer_id = _customer(engine)
    url = f"/customers/{customer_id}/orders"
    error = assert_error(api.post("admin", url, json={"total": "1.234"}), 400, "invalid")
    assert "more than two decimals" in error["message"]
    assert_error(api.post("admin", url, json={"total": 5, "colour": "red"}), 422)
    assert_error(api.post("admin", "/customers/999999/orders", json={"total": 5}), 404, "not_found")
    with platform.unit_of_work(engine) as session:
        risk.restrict_customer(session, make_user(session, "risk_analyst"), customer_id, "restrict", "Card testing",
                               order_limit=50)
    error = assert_error(api.post("admin", url, json={"total": "80"}), 400, "refused")
    assert "restricted until" in error["message"] and "(Card testing): orders over 50.00 are refused" in error["message"]
    assert api.post("admin", url, json={"total": "50"}).status_code == 201
    assert _count(engine, customer_id) == 1


def test_a_voucher_is_redeemed_over_the_api_and_its_code_shown_by_role(api, engine):
    customer_id = _customer(engine)
    with platform.unit_of_work(engine) as session:
        code = vouchers.issue_vouchers(session, platform.SYSTEM, [customer_id], "percent", Decimal(20),
                                       source="manual", source_id=None, authorised_by="vouchers.manage",
                                       expires_at=dt.datetime.now() + dt.timedelta(days=5))[customer_id]
    listed = api.get("support_agent", f"/customers/{customer_id}/vouchers").json()["data"]
    assert [(v["code"], v["status"]) for v in listed] == [(code, "issued")]
    masked = api.get("analyst", f"/customers/{customer_id}/vouchers").json()["data"]
    assert masked[0]["code"] == "•" * 8 + code[-4:]
    made = api.post("success_manager", f"/customers/{customer_id}/orders", json={"total": "60", "voucher_code": code})
    assert made.status_code == 201 and made.json()["discount"] == 12 and made.json()["total"] == 48
    error = assert_error(api.post("success_manager", f"/customers/{customer_id}/orders",
                                  json={"total": "60", "voucher_code": code}), 400, "invalid")
    assert "already used" in error["message"]
    with platform.unit_of_work(engine) as session:
        assert session.scalars(select(Voucher.status).where(Voucher.code == code)).one() == "redeemed"
    assert_error(api.get("executive", f"/customers/{customer_id}/vouchers"), 403, "forbidden")


def test_a_customers_orders_and_vouchers_page_by_keyset_as_every_list(api, engine):
    customer_id = _customer(engine)
    for n in range(5):
        assert api.post("admin", f"/customers/{customer_id}/orders", json={"total": 10 + n}).status_code == 201
    with platform.unit_of_work(engine) as session:
        for _ in range(3):
            vouchers.issue_vouchers(session, platform.SYSTEM, [customer_id], "amount", Decimal(5), source="manual",
                                    source_id=None, authorised_by="vouchers.manage", expires_at=None)
    for url, count in ((f"/customers/{customer_id}/orders", 5), (f"/customers/{customer_id}/vouchers", 3)):
        numbered = api.get("admin", url, params={"page_size": 100}).json()
        assert numbered["total"] == count and numbered["next_after"] is None
        walked, after = [], None
        while True:
            body = api.get("admin", url, params={"limit": 2, **({"after": after} if after else {})}).json()
            assert set(body) == {"data", "next_after"} and len(body["data"]) <= 2
            walked += body["data"]
            if (after := body["next_after"]) is None:
                break
        assert walked == numbered["data"]
        assert_error(api.get("admin", url, params={"limit": 2, "after": "bm90LW1pbmU"}), 400)
