"""Personal API tokens (stored hashed, expiry, last use, read-only, revocation at once), the `crm
tokens` commands, rate limits and Idempotency-Key replays."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import sys

import pytest
from sqlalchemy import func, select

from api.limits import MemoryLimiter
from crm_cli.main import main
from crm_core import platform
from db.engine import make_engine
from db.models import ROLES, ApiIdempotencyKey, ApiToken, AuditLog, Customer, utcnow

from .api_support import assert_error, make_api
from .factories import make_user


@pytest.fixture
def api(engine):
    return make_api(engine)


def test_a_token_is_stored_only_as_its_digest_and_acts_with_its_users_role(session):
    user = make_user(session, "analyst")
    row, token = platform.create_token(session, user, user.id, "laptop", expires_days=30)
    assert token.startswith("crm_") and len(token) > 40
    assert row.token_hash == hashlib.sha256(token.encode()).hexdigest() and token not in (row.prefix, row.name)
    actor = platform.authenticate_token(session, token)
    assert (actor.id, actor.role, actor.read_only) == (user.id, "analyst", False)
    assert row.last_used_at is not None
    with pytest.raises(platform.AuthenticationError, match="expired"):
        platform.authenticate_token(session, token, now=utcnow() + dt.timedelta(days=31))


def test_users_manage_their_own_tokens_and_admins_everyones(session):
    agent, other, admin = make_user(session, "support_agent"), make_user(session, "analyst"), make_user(session)
    mine, _ = platform.create_token(session, agent, agent.id, "mine")
    with pytest.raises(platform.PermissionDenied, match="only their own"):
        platform.create_token(session, agent, other.id, "not mine")
    theirs, _ = platform.create_token(session, other, other.id, "theirs")
    with pytest.raises(platform.PermissionDenied):
        platform.revoke_token(session, agent, theirs.id)
    assert [t["name"] for t in platform.list_tokens(session, agent)] == ["mine"]
    with pytest.raises(platform.PermissionDenied):
        platform.list_tokens(session, agent, everyone=True)
    assert {t["name"] for t in platform.list_tokens(session, admin, everyone=True)} == {"mine", "theirs"}
    platform.revoke_token(session, admin, theirs.id)
    assert [t["status"] for t in platform.list_tokens(session, other)] == ["revoked"]
    with pytest.raises(platform.ValidationError, match="1 to 3650"):
        platform.create_token(session, agent, agent.id, "forever", expires_days=0)


def test_revocation_and_deactivation_take_effect_on_the_next_request(api, engine):
    assert api.get("analyst", "/customers").status_code == 200
    with platform.unit_of_work(engine) as session:
        token_id = session.scalar(select(ApiToken.id).where(ApiToken.user_id == api.user_ids["analyst"]))
    assert api.delete("analyst", f"/tokens/{token_id}").status_code == 204
    assert "revoked" in assert_error(api.get("analyst", "/customers"), 401)["message"]
    with platform.unit_of_work(engine) as session:
        platform.set_active(session, platform.SYSTEM, api.user_ids["support_agent"], False)
    assert "deactivated" in assert_error(api.get("support_agent", "/customers"), 401)["message"]


def test_a_read_only_token_reads_but_cannot_change(api, engine):
    made = api.post("admin", "/tokens", json={"name": "reporting", "read_only": True, "expires_days": 7})
    assert made.status_code == 201 and made.json()["read_only"] and made.json()["token"].startswith("crm_")
    headers = {"Authorization": f"Bearer {made.json()['token']}"}
    assert api.client.get("/customers", headers=headers).status_code == 200
    assert api.client.post("/customers/search", json={}, headers=headers).status_code == 200
    refused = api.client.post("/customers", json={"first_name": "A"}, headers=headers)
    assert "read-only" in assert_error(refused, 403)["message"]
    listed = api.get("admin", "/tokens").json()
    assert [t["name"] for t in listed if t["read_only"]] == ["reporting"]
    assert all("token" not in t and "token_hash" not in t for t in listed)
    assert_error(api.get("analyst", "/tokens", params={"all": "true"}), 403)
    assert len(api.get("admin", "/tokens", params={"all": "true"}).json()) == len(ROLES) + 1  # one per role + reporting


def test_crm_tokens_create_prints_only_the_token_and_revoke_works(tmp_path, monkeypatch, capsys):
    url = f"sqlite:///{tmp_path / 'cli.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    monkeypatch.setattr(sys, "stdin", io.StringIO("a-long-password\n"))
    assert main(["users", "create", "maria", "--role", "analyst"]) == 0
    capsys.readouterr()
    assert main(["tokens", "create", "maria", "--read-only", "--expires-days", "30"]) == 0
    out = capsys.readouterr().out
    token = out.strip()
    assert out == token + "\n" and token.startswith("crm_")
    with platform.unit_of_work(make_engine(url)) as session:
        actor = platform.authenticate_token(session, token)
        assert actor.read_only and actor.username == "maria"
        token_id = actor.token_id
    assert main(["tokens", "revoke", str(token_id)]) == 0
    with platform.unit_of_work(make_engine(url)) as session, pytest.raises(platform.AuthenticationError):
        platform.authenticate_token(session, token)
    assert main(["tokens", "create", "nobody"]) == 2
    assert "No user named 'nobody'" in capsys.readouterr().err


def test_rate_limit_headers_and_429_with_retry_after(engine):
    clock = [1_000.0]
    api = make_api(engine, roles=("analyst", "executive"))
    api.client.app.state.limiter = MemoryLimiter(limit=3, window=60, clock=lambda: clock[0])
    seen = [api.get("analyst", "/customers") for _ in range(3)]
    assert [r.headers["RateLimit-Remaining"] for r in seen] == ["2", "1", "0"]
    assert all(r.headers["RateLimit-Limit"] == "3" and r.headers["RateLimit-Reset"] == "20" for r in seen)
    over = api.get("analyst", "/customers")
    assert_error(over, 429, "rate_limited")
    assert over.headers["Retry-After"] == "20" and over.headers["RateLimit-Remaining"] == "0"
    assert api.get("executive", "/overview").status_code != 429, "limits are per token"
    clock[0] += 20
    assert api.get("analyst", "/customers").headers["RateLimit-Remaining"] == "2"


def test_redis_limiter_shares_counts_between_workers():
    redis = pytest.importorskip("redis")
    try:
        redis.Redis.from_url("redis://127.0.0.1:6379/15", socket_timeout=1).ping()
    except Exception:  # noqa: BLE001 - no server: the in-process limiter is the default anyway
        pytest.skip("no Redis at 127.0.0.1:6379")
    from api.limits import RedisLimiter

    key = f"test-{dt.datetime.now().timestamp()}"
    first, second = RedisLimiter("redis://127.0.0.1:6379/15", 2, 60), RedisLimiter("redis://127.0.0.1:6379/15", 2, 60)
    assert [first.hit(key).remaining, second.hit(key).remaining, first.hit(key).exceeded] == [1, 0, True]


def test_idempotency_key_replays_the_first_response_and_refuses_other_parameters(api, engine):
    headers = {"Idempotency-Key": "order-7-customer"}
    first = api.post("admin", "/customers", json={"first_name": "Ida"}, headers=headers)
    again = api.post("admin", "/customers", json={"first_name": "Ida"}, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    other = api.post("admin", "/customers", json={"first_name": "Otto"}, headers=headers)
    assert "different request" in assert_error(other, 409, "conflict")["message"]
    other_user = api.post("success_manager", "/customers", json={"first_name": "Ida"}, headers=headers)
    assert other_user.status_code == 201 and other_user.json()["id"] != first.json()["id"], "keys are per user"
    with platform.unit_of_work(engine) as session:
        assert session.scalar(select(func.count()).select_from(Customer)) == 2
        assert session.scalar(select(func.count()).select_from(AuditLog)
                              .where(AuditLog.action == "customer.create")) == 2
        expires = session.scalar(select(ApiIdempotencyKey.expires_at))
        assert dt.timedelta(hours=23) < expires - utcnow() <= dt.timedelta(hours=24)


def test_a_replayed_token_creation_never_shows_the_token_again(api):
    headers = {"Idempotency-Key": "new-token-1"}
    first = api.post("analyst", "/tokens", json={"name": "ci"}, headers=headers)
    again = api.post("analyst", "/tokens", json={"name": "ci"}, headers=headers)
    assert first.json()["token"].startswith("crm_") and again.json()["token"] == ""
    assert again.json()["id"] == first.json()["id"]


def test_crm_webhooks_deliver_queues_and_tries_the_due_deliveries(tmp_path, monkeypatch, capsys):
    import json

    from crm_core import customers, webhooks
    from db import migrate

    url = f"sqlite:///{tmp_path / 'hooks.sqlite'}"
    monkeypatch.setenv("CRM_DATABASE_URL", url)
    migrate.upgrade(url)
    with platform.unit_of_work(make_engine(url)) as session:
        webhooks.create_subscription(session, platform.SYSTEM, "http://127.0.0.1:9/closed", ["customer.created"])
    with platform.unit_of_work(make_engine(url)) as session:
        customers.create_customer(session, platform.SYSTEM, {"first_name": "Hooked"})
    assert main(["webhooks", "deliver", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {"collected": 1, "delivered": 0, "retrying": 1, "failed": 0}
    assert main(["webhooks", "deliver"]) == 0
    assert "0 events queued; 0 delivered" in capsys.readouterr().out  # the retry is not due yet
