"""Order intake and vouchers over the API: the core's checks in the one error shape, safe retries
with Idempotency-Key, and the codes a role may see (which role may call what: test_api_roles)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from crm_core import platform, risk, vouchers
from db.models import AuditLog, Order, Voucher

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


def test_a_voucher_issued_by_hand_shows_its_code_to_the_issuer_and_is_listed_by_role(api, engine):
    customer_id = _customer(engine)
    url = f"/customers/{customer_id}/vouchers"
    made = api.post("support_agent", url, headers={"Idempotency-Key": "goodwill-7"},
                    json={"kind": "percent", "value": "12.5", "days": 14, "min_order": 30,
                          "reason": "Parcel arrived late"})
    assert made.status_code == 201, made.text
    body = made.json()
    assert (body["customer_id"], body["kind"], body["value"], body["min_order"], body["source"], body["status"],
            body["version"]) == (customer_id, "percent", 12.5, 30, "manual", "issued", 1)
    assert len(body["code"]) == 12 and made.headers["ETag"] == '"1"'
    issued, expires = (dt.datetime.fromisoformat(body[k].replace("Z", "+00:00")) for k in ("issued_at", "expires_at"))
    assert (expires - issued).days == 14
    again = api.post("support_agent", url, headers={"Idempotency-Key": "goodwill-7"},
                     json={"kind": "percent", "value": "12.5", "days": 14, "min_order": 30,
                           "reason": "Parcel arrived late"})
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == body
    with platform.unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(Voucher).where(Voucher.customer_id == customer_id)) == 1
        audit = session.scalars(select(AuditLog).where(AuditLog.action == "voucher.issue")).one()
        assert audit.actor_username == "api-support-agent" and audit.after["reason"] == "Parcel arrived late"
    # Roles that record orders see the whole code and the version to void it with; the others the last four.
    listed = api.get("success_manager", url).json()
    assert listed["total"] == 1 and (listed["data"][0]["code"], listed["data"][0]["version"]) == (body["code"], 1)
    assert api.get("risk_analyst", url).json()["data"][0]["code"] == "•" * 8 + body["code"][-4:]


def test_issuing_refuses_bad_input_unknown_customers_and_roles_without_the_permission(api, engine):
    customer_id = _customer(engine)
    url = f"/customers/{customer_id}/vouchers"
    for payload, message in (({"kind": "percent", "value": 95, "reason": "Goodwill"}, "at most 90% off"),
                             ({"kind": "amount", "value": 0, "reason": "Goodwill"}, "above 0"),
                             ({"kind": "cash", "value": 5, "reason": "Goodwill"}, "A voucher is one of percent, amount"),
                             ({"kind": "amount", "value": "lots", "reason": "Goodwill"}, "is not a number"),
                             ({"kind": "amount", "value": 5, "reason": "  "}, "Give a reason")):
        assert message in assert_error(api.post("admin", url, json=payload), 400, "invalid")["message"]
    for payload, param in (({"kind": "amount", "value": 5}, "reason"),
                           ({"kind": "amount", "value": 5, "reason": "x", "days": "soon"}, "days"),
                           ({"kind": "amount", "value": 5, "reason": "x", "days": 731}, "days"),
                           ({"kind": 3, "value": 5, "reason": "x"}, "kind"),
                           ({"kind": "amount", "value": [5], "reason": "x"}, "value"),
                           ({"kind": "amount", "value": 5, "reason": "x", "colour": "red"}, "colour")):
        assert assert_error(api.post("admin", url, json=payload), 422, "unprocessable")["param"].startswith(param)
    assert_error(api.post("admin", "/customers/999999/vouchers", json={"kind": "amount", "value": 5,
                                                                      "reason": "Goodwill"}), 404, "not_found")
    for role in ("analyst", "executive", "risk_analyst"):
        assert_error(api.post(role, url, json={"kind": "amount", "value": 5, "reason": "Goodwill"}), 403, "forbidden")
    with platform.unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(Voucher).where(Voucher.customer_id == customer_id)) == 0


def test_a_voucher_is_voided_against_its_version_and_a_stale_void_is_refused(api, engine):
    customer_id = _customer(engine)
    url = f"/customers/{customer_id}/vouchers"
    issued = [api.post("admin", url, json={"kind": "amount", "value": 5, "reason": "Goodwill"}).json()
              for _ in range(2)]
    kept, used = issued
    void_url = f"/vouchers/{kept['id']}/void"
    assert_error(api.post("success_manager", void_url, json={"reason": "Issued twice"}), 428, "precondition_required")
    assert_error(api.post("analyst", void_url, json={"reason": "Issued twice"}, headers={"If-Match": '"1"'}), 403)
    assert_error(api.post("success_manager", "/vouchers/999999/void", json={"reason": "Issued twice"},
                          headers={"If-Match": '"1"'}), 404, "not_found")
    assert "Give a reason" in assert_error(api.post("success_manager", void_url, json={"reason": ""},
                                                    headers={"If-Match": '"1"'}), 400, "invalid")["message"]
    assert_error(api.post("success_manager", void_url, json={"reason": 5}, headers={"If-Match": '"1"'}), 422)
    # A version the voucher never had (made up, from the future) is said to be so, not blamed on an edit.
    future = assert_error(api.post("success_manager", void_url, json={"reason": "Issued twice"},
                                   headers={"If-Match": '"9"'}), 412, "precondition_failed")
    assert future["param"] == "If-Match" and "changed by someone else" not in future["message"]
    assert future["message"].startswith(f"Voucher {kept['id']} (…{kept['code'][-4:]}) has no version 9; "
                                        "its current version is 1.")
    voided = api.post("success_manager", void_url, json={"reason": "Issued twice"}, headers={"If-Match": '"1"'})
    assert voided.status_code == 200, voided.text
    assert voided.json() == {"id": kept["id"], "outcome": "void"}
    listed = {v["id"]: v for v in api.get("success_manager", url).json()["data"]}
    assert (listed[kept["id"]]["status"], listed[kept["id"]]["void_reason"], listed[kept["id"]]["version"]) == (
        "void", "Issued twice", 2)
    # Voiding again with the version read before is stale: refused, nothing changed.
    stale = assert_error(api.post("success_manager", void_url, json={"reason": "Again"}, headers={"If-Match": '"1"'}),
                         412, "precondition_failed")
    assert "changed by someone else" in stale["message"] and stale["param"] == "If-Match"
    # The other one is used at the till after the client listed it: its void is refused, not clawed back.
    assert api.post("admin", f"/customers/{customer_id}/orders",
                    json={"total": "20", "voucher_code": used["code"]}).status_code == 201
    assert_error(api.post("admin", f"/vouchers/{used['id']}/void", json={"reason": "Goodwill withdrawn"},
                          headers={"If-Match": f'"{used["version"]}"'}), 412, "precondition_failed")
    with platform.unit_of_work(engine) as session:
        row = session.get(Voucher, used["id"])
        assert (row.status, row.clawed_back_at, row.void_reason) == ("redeemed", None, None)
        assert session.scalar(select(func.count()).select_from(AuditLog).where(AuditLog.action == "voucher.void")) == 1
