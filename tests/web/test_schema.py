"""The API against its own OpenAPI schema (schemathesis): generated requests, with the token and the CSRF header, over
a DB real paper agents wrote. No answer is a server error, every answer has a documented status and matches the
response schema, and invalid input is refused. A few examples per operation keep it short."""
from __future__ import annotations

import shutil

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from cockpit_env import TOKEN, web_settings
from tracer.web.auth import csrf_value

HEADERS = {"Authorization": f"Bearer {TOKEN}", "X-CSRF-Token": csrf_value(TOKEN)}


@pytest.fixture(scope="module")
def api_schema(seeded, tmp_path_factory):
    from tracer.web.app import create_app
    tmp = tmp_path_factory.mktemp("schema")
    shutil.copytree(seeded / "state", tmp / "state")
    shutil.copytree(seeded / "backtests", tmp / "backtests")
    app = create_app(web_settings(tmp), TOKEN)
    return schemathesis.openapi.from_asgi("/api/v1/openapi.json", app, headers=HEADERS)


def test_the_api_keeps_its_schema(api_schema):
    from hypothesis import given
    from schemathesis import checks

    ops = [r.ok() for r in api_schema.get_all_operations()]
    assert len(ops) >= 20
    calls: list[int] = []
    for op in ops:
        @given(case=op.as_strategy())
        @settings(max_examples=5, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
                  database=None)
        def run(case):
            calls.append(1)
            case.call_and_validate(headers=HEADERS, checks=[checks.not_a_server_error, checks.status_code_conformance,
                                                            checks.content_type_conformance,
                                                            checks.response_schema_conformance])
        run()
    assert len(calls) >= 3 * len(ops)
