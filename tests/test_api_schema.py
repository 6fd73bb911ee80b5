"""Schemathesis generates requests from the OpenAPI schema (valid and invalid ones) and sends them as an
admin: no response is a 5xx, and every response matches the schema (status codes, content types,
bodies, the error shape). Kept to about a minute: a few examples per operation, SQLite only."""

from __future__ import annotations

import datetime as dt

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import checks

from crm_core import loyalty, platform
from db import migrate
from db.engine import make_engine

from .api_support import make_api
from .factories import make_customer, make_order

EXAMPLES = 6
# Schema-valid input the domain refuses (an e-mail address that does not parse, a stage that does
# not exist) is a 400 with a message, so "positive data acceptance" is not one of the checks.
CHECKS = [checks.not_a_server_error, checks.status_code_conformance, checks.content_type_conformance,
          checks.response_schema_conformance, checks.response_headers_conformance, checks.negative_data_rejection]


@pytest.fixture(scope="module")
def api_state(tmp_path_factory):
    url = f"sqlite:///{tmp_path_factory.mktemp('schema') / 'schema.sqlite'}"
    migrate.upgrade(url)
    engine = make_engine(url)
    with platform.unit_of_work(engine) as session:
        for n in range(12):
            customer = make_customer(session, dt.datetime(2026, 1, 1) + dt.timedelta(days=n), country_code="DE")
            make_order(session, customer, dt.datetime(2026, 3, 1) + dt.timedelta(days=n), 20 + n)
            if n % 3 == 0:
                loyalty.enroll(session, platform.SYSTEM, customer.id)
    return make_api(engine, roles=("admin",), limit=10**9)


def test_no_server_error_and_every_response_matches_the_schema(api_state):
    schema = schemathesis.openapi.from_asgi("/openapi.json", api_state.client.app)
    headers = api_state.headers("admin")
    failures, operations = [], 0
    for result in schema.get_all_operations():
        operation = result.ok()
        # Revoking the caller's own token would turn every later case into a 401.
        if operation.method.upper() == "DELETE" and operation.path == "/tokens/{token_id}":
            continue
        operations += 1

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck),
                  derandomize=True, database=None, phases=[Phase.explicit, Phase.generate])
        def check(case):
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            check()
        except Exception as exc:  # noqa: BLE001 - collect every operation's failure, then report them all
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:600]}")
    assert operations > 50
    assert not failures, "\n\n".join(failures)
