"""Typed errors render as RFC 7807 problems; secrets never reach a message or a log line."""

from __future__ import annotations

import logging

import httpx
import pytest

from clients.errors import (
    AuthError,
    DuffelUnavailable,
    InsufficientFunds,
    NotFound,
    NotSupported,
    OrderNotCreated,
    OrderOutcomeUnknown,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    duffel_error,
    tenant_error,
)
from clients.redact import MASK, RedactingFilter, redact, register_secret

HTML_502 = b"""<html>
<head><title>502 Bad Gateway</title></head>
<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center></body>
</html>"""


def test_tenant_error_body_maps_to_typed_error_with_extras() -> None:
    response = httpx.Response(
        400,
        json={
            "detail": {
                "error": "insufficient_points",
                "message": "Customer has insufficient points",
                "current_points": 1000,
                "requested_points": 5000,
            }
        },
    )
    error = tenant_error(
        response, tenant="telcocorp", endpoint="POST /api/v2/customers/{member_id}/points/use"
    )
    assert isinstance(error, InsufficientFunds)
    assert (error.tenant, error.status, error.code) == ("telcocorp", 400, "insufficient_points")
    assert error.details == {"current_points": 1000, "requested_points": 5000}
    assert "telcocorp" in str(error) and "/points/use" in str(error)
    problem = error.to_problem()
    assert problem["type"].endswith("insufficient-funds")
    assert problem["status"] == 422 and problem["upstream_status"] == 400
    assert problem["instance"] == "/api/v2/customers/{member_id}/points/use"
    assert problem["upstream_details"]["requested_points"] == 5000
    assert {"title", "detail"} <= problem.keys()


@pytest.mark.parametrize(
    ("status", "body", "cls"),
    [
        (401, {"detail": {"error": "invalid_token", "message": "x"}}, AuthError),
        (404, {"detail": {"error": "member_not_found", "message": "x"}}, NotFound),
        (429, {"detail": {"error": "rate_limit_exceeded", "message": "x"}}, RateLimited),
        (503, None, UpstreamError),
    ],
)
def test_tenant_status_mapping(status: int, body: dict | None, cls: type) -> None:
    response = (
        httpx.Response(status, json=body) if body else httpx.Response(status, content=b"oops")
    )
    assert isinstance(tenant_error(response, tenant="t", endpoint="GET /x"), cls)


def test_fastapi_string_detail_is_kept() -> None:
    response = httpx.Response(403, json={"detail": "Not authenticated"})
    error = tenant_error(response, tenant="telcocorp", endpoint="GET /x")
    assert error.status == 403 and error.message == "Not authenticated" and error.code is None


def test_duffel_html_502_is_tolerated() -> None:
    response = httpx.Response(502, content=HTML_502, headers={"content-type": "text/html"})
    error = duffel_error(response, tenant="fintechapp", endpoint="GET /air/orders")
    assert type(error) is DuffelUnavailable
    assert error.code is None and error.type is None and error.status == 502
    assert "502 Bad Gateway" in error.message
    assert error.to_problem()["status"] == 503


def test_duffel_order_creation_failures_say_what_happened() -> None:
    not_created = httpx.Response(
        502,
        json={
            "errors": [
                {"type": "api_error", "code": "order_not_created", "message": "Not created"}
            ],
            "meta": {"status": 502, "request_id": "req123"},
        },
    )
    error = duffel_error(not_created, tenant="t", endpoint="POST /air/orders", creates_order=True)
    assert type(error) is OrderNotCreated and error.request_id == "req123"
    unknown = httpx.Response(500, content=b"boom")
    assert type(
        duffel_error(unknown, tenant="t", endpoint="POST /air/orders", creates_order=True)
    ) is (OrderOutcomeUnknown)


def test_timeout_error_is_a_timeout_and_not_supported_renders() -> None:
    timeout = UpstreamTimeout("ReadTimeout", tenant="coffeechain", endpoint="GET /x")
    assert isinstance(timeout, TimeoutError) and timeout.to_problem()["status"] == 504
    missing = NotSupported("no refunds", tenant="telcocorp", endpoint="refunds")
    problem = missing.to_problem()
    assert problem["status"] == 501 and problem["upstream_status"] is None


def test_redact_masks_known_shapes_and_registered_values() -> None:
    jwt = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJGQV8xMjM0NTY3OCJ9.c2lnbmF0dXJl"
    text = (
        f"Authorization: Bearer {jwt} tc_token_abc123XYZ duffel_test_telcocorp_sandbox "
        "duffel_live_ABCdef123 test_cc_api_key_12345 "
        '{"client_secret": "s3cr3t-value", "partner_secret": "p4rtner"}'
    )
    cleaned = redact(text)
    for secret in (
        jwt,
        "tc_token_abc123XYZ",
        "duffel_test_telcocorp_sandbox",
        "duffel_live_ABCdef123",
        "test_cc_api_key_12345",
        "s3cr3t-value",
        "p4rtner",
    ):
        assert secret not in cleaned
    assert MASK in cleaned
    register_secret("an-unusual-runtime-key-42")
    assert redact("key an-unusual-runtime-key-42 used") == f"key {MASK} used"


def test_error_messages_are_redacted() -> None:
    error = UpstreamError(
        "upstream echoed X-CC-API-Key: test_cc_api_key_12345",
        tenant="coffeechain",
        endpoint="GET /x",
    )
    assert "test_cc_api_key_12345" not in str(error)
    assert "test_cc_api_key_12345" not in str(error.to_problem())


def test_logging_filter_masks_arguments_and_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("tests.tenants.redaction")
    logger.addFilter(RedactingFilter())
    with caplog.at_level(logging.DEBUG, logger="tests.tenants.redaction"):
        logger.info("token %s issued", "tc_token_supersecret")
        try:
            raise RuntimeError("Bearer duffel_test_coffeechain_sandbox rejected")
        except RuntimeError:
            logger.exception("call failed")
    handler_text = "\n".join(logging.Formatter().format(record) for record in caplog.records)
    assert "tc_token_supersecret" not in handler_text
    assert "duffel_test_coffeechain_sandbox" not in handler_text
    assert "call failed" in handler_text
