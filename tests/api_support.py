"""An API client per role over a test database: one user and one personal token per role."""

from __future__ import annotations

from dataclasses import dataclass, field

from fastapi.testclient import TestClient
from sqlalchemy import Engine

from api.app import create_app
from api.limits import MemoryLimiter
from crm_core import platform
from db.models import ROLES

from .factories import make_user


@dataclass
class Api:
    client: TestClient
    engine: Engine
    tokens: dict[str, str] = field(default_factory=dict)
    user_ids: dict[str, int] = field(default_factory=dict)

    def headers(self, role: str, **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}", **extra}

    def get(self, role: str, url: str, **kwargs):
        return self.client.get(url, headers=self.headers(role, **kwargs.pop("headers", {})), **kwargs)

    def post(self, role: str, url: str, **kwargs):
        return self.client.post(url, headers=self.headers(role, **kwargs.pop("headers", {})), **kwargs)

    def patch(self, role: str, url: str, **kwargs):
        return self.client.patch(url, headers=self.headers(role, **kwargs.pop("headers", {})), **kwargs)

    def put(self, role: str, url: str, **kwargs):
        return self.client.put(url, headers=self.headers(role, **kwargs.pop("headers", {})), **kwargs)

    def delete(self, role: str, url: str, **kwargs):
        return self.client.delete(url, headers=self.headers(role, **kwargs.pop("headers", {})), **kwargs)


def make_api(engine: Engine, limit: int = 10_000, roles=ROLES) -> Api:
    """A client with a user and a token for each role (the token's name is the role)."""
    # Jobs run at once, after the response's transaction, so a test reads their outcome next.
    app = create_app(engine, limiter=MemoryLimiter(limit=limit, window=60), job_runner=lambda work: work())
    api = Api(TestClient(app, raise_server_exceptions=False), engine)
    with platform.unit_of_work(engine) as session:
        for role in roles:
            user = make_user(session, role, username=f"api-{role.replace('_', '-')}")
            _row, token = platform.create_token(session, platform.SYSTEM, user.id, role)
            api.tokens[role], api.user_ids[role] = token, user.id
    return api


def assert_error(response, status: int, code: str | None = None) -> dict:
    """The one error shape, and nothing that looks like a trace or SQL."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "code", "message", "param"}, body
    assert body["error"]["message"]
    for leak in ("Traceback", "SELECT ", "sqlalchemy", "psycopg2", "File \""):
        assert leak not in response.text
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]
