"""A property-based run over /openapi.json: no 5xx, no response that breaks the schema.

Bounded (few examples per operation) so the whole run stays well under a minute.
"""

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from tests.service.service_helpers import KEY_A

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 25


@pytest.fixture(scope="module")
def api_schema(shared_gateway):
    client, gateway_settings, _ = shared_gateway
    client.post("/v1/jobs", json={"base_model": {"name": "tiny"}, "concepts": ["cat"]}, headers=KEY_A)
    return schemathesis.openapi.from_asgi("/openapi.json", create_app(gateway_settings))


def operations(schema):
    return [result.ok() for result in schema.get_all_operations()]


def test_every_operation_is_covered(api_schema):
    assert len(operations(api_schema)) == 17


def test_no_server_error_and_no_schema_breaking_response(api_schema):
    for operation in operations(api_schema):

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True, database=None)
        def property_holds(case):
            headers = dict(case.headers or {}) | KEY_A  # a valid key, to reach past auth
            if case.path.endswith("/events"):
                headers["Accept"] = "application/json"  # a live stream only ends with its job
            case.call_and_validate(headers=headers, checks=CHECKS)

        property_holds()
