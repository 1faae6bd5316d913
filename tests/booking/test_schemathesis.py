"""The OpenAPI document against the running API: generated requests, every answer checked.

Schemathesis builds requests from the document (valid and invalid ones) and sends them with
a member's real credentials (and the operator's on admin routes); every answer must be no
5xx and exactly what the document declares: status, content type and body.
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from .test_http import OPERATOR_TOKEN, ApiServer, _env

# Booking requests reach Duffel; a handful of examples per operation keeps this quick.
EXAMPLES = 12
HEADERS = {
    "X-Tenant-ID": "coffeechain",
    "X-CC-API-Key": "test_cc_api_key_12345",
    "X-CC-Member-ID": "CC3333333",
}


def test_every_operation_answers_as_documented(stand_ins: Any, tmp_path: Any) -> None:
    server = ApiServer(
        _env(stand_ins, tmp_path / "b.sqlite3", BOOKING_BACKGROUND_RECONCILER="false"),
        tmp_path / "api.log",
    )
    try:
        schema = schemathesis.openapi.from_url(server.url + "/openapi.json")
        operations = [result.ok() for result in schema.get_all_operations()]
        assert len(operations) >= 11
        for operation in operations:

            @given(case=operation.as_strategy())
            @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
            def check(case: Any) -> None:
                headers = dict(HEADERS)
                if case.path.startswith("/api/v1/admin"):
                    headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
                case.call_and_validate(
                    base_url=server.url,
                    headers=headers,
                    # Schema-valid is not always meaningful (unknown airports, past dates):
                    # the API may refuse such data, with a documented 422.
                    excluded_checks=[schemathesis.checks.positive_data_acceptance],
                )

            try:
                check()
            except Exception as exc:
                pytest.fail(f"{operation.method.upper()} {operation.path}: {exc}")
    finally:
        server.stop()
