"""The request loop's retry rules and the per-dialect mapping, through httpx.MockTransport."""

from __future__ import annotations

import datetime as dt
import json
import logging
from collections import Counter
from decimal import Decimal

import httpx
import pytest

from clients.errors import (
    BusinessRuleError,
    NotFound,
    NotSupported,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    tenant_error,
)
from clients.http import RequestRunner, RetryPolicy, Route, Safety, encode_json
from clients.ratelimit import ClientRateLimiter, RateLimitedTransport
from tenants.registry import Capabilities, RateLimit

from .conftest import FAST_RETRY

BALANCE = "/api/v1/members/CC1234567/balance"
DEDUCT = "/api/v1/members/CC1234567/deduct"


def _error(status: int, code: str) -> httpx.Response:
    return httpx.Response(status, json={"detail": {"error": code, "message": code}})


class Script:
    """Answers each path from a list of scripted responses (or exceptions), repeating the last."""

    def __init__(self, **by_path: list) -> None:
        self.by_path = {k.replace("__", "/"): v for k, v in by_path.items()}
        self.hits: Counter[str] = Counter()
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.hits[request.url.path] += 1
        self.requests.append(request)
        script = self.by_path[request.url.path]
        answer = script[min(self.hits[request.url.path], len(script)) - 1]
        if isinstance(answer, type) and issubclass(answer, Exception):
            raise answer("scripted", request=request)
        return answer


def _balance_ok() -> httpx.Response:
    return httpx.Response(
        200,
        json={"member_id": "CC1234567", "balance": 150000, "tier": "gold", "status": "active"},
    )


def test_get_is_retried_on_500_then_succeeds(tenants, mock_loyalty) -> None:
    script = Script(**{BALANCE: [_error(500, "internal_error"), _balance_ok()]})
    balance = mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
    assert balance.balance == Decimal(150000) and balance.currency == "stars"
    assert script.hits[BALANCE] == 2
    assert script.requests[0].headers["X-CC-API-Key"] == "test_cc_api_key_12345"


def test_get_500_until_the_budget_runs_out(tenants, mock_loyalty) -> None:
    script = Script(**{BALANCE: [_error(500, "internal_error")]})
    with pytest.raises(UpstreamUnavailable) as caught:
        mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
    assert script.hits[BALANCE] == FAST_RETRY.max_attempts
    assert caught.value.status == 500 and caught.value.code == "internal_error"
    assert caught.value.endpoint == "GET /api/v1/members/{member_id}/balance"


@pytest.mark.parametrize(
    ("answer", "error", "attempts"),
    [
        (_error(500, "internal_error"), UpstreamUnavailable, 1),
        (_error(502, "bad_gateway"), UpstreamUnavailable, 1),
        (_error(504, "gateway_timeout"), UpstreamUnavailable, 1),
        (httpx.ReadTimeout, UpstreamTimeout, 1),
        (httpx.RemoteProtocolError, UpstreamUnavailable, 1),
        (_error(503, "unavailable"), UpstreamUnavailable, 3),
        (httpx.ConnectError, UpstreamUnavailable, 3),
        (_error(400, "insufficient_balance"), BusinessRuleError, 1),
    ],
)
def test_money_movements_are_only_retried_when_surely_not_acted_on(
    tenants, mock_loyalty, answer, error, attempts
) -> None:
    script = Script(**{DEDUCT: [answer]})
    client = mock_loyalty(tenants["coffeechain"], script)
    with pytest.raises(error):
        client.deduct("CC1234567", 1000, "bkg_1", "Flight")
    assert script.hits[DEDUCT] == attempts


def test_read_timeouts_are_retried_for_reads(tenants, mock_loyalty) -> None:
    script = Script(**{BALANCE: [httpx.ReadTimeout, httpx.ReadTimeout, _balance_ok()]})
    assert mock_loyalty(tenants["coffeechain"], script).balance("CC1234567").tier == "gold"
    script = Script(**{BALANCE: [httpx.ReadTimeout]})
    with pytest.raises(UpstreamTimeout):
        mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
    assert script.hits[BALANCE] == 3


@pytest.mark.parametrize(("status", "error"), [(404, NotFound), (403, UpstreamError)])
def test_client_errors_are_not_retried(tenants, mock_loyalty, status, error) -> None:
    script = Script(**{BALANCE: [_error(status, "member_not_found")]})
    with pytest.raises(error):
        mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
    assert script.hits[BALANCE] == 1


def test_retry_after_is_honoured() -> None:
    waits: list[float] = []
    limited = httpx.Response(
        429,
        headers={"Retry-After": "2"},
        json={"detail": {"error": "rate_limit_exceeded", "message": "slow down"}},
    )
    script = Script(**{"/x": [limited, httpx.Response(200, json={})]})
    runner = RequestRunner(
        httpx.Client(base_url="http://tenant.test", transport=httpx.MockTransport(script)),
        tenant="coffeechain",
        upstream="loyalty API",
        error_mapper=tenant_error,
        policy=RetryPolicy(max_attempts=3, base_delay_seconds=0.01),
        sleep=waits.append,
    )
    runner.send(Route("POST", "/x", Safety.MONEY))
    assert waits == [2.0]
    assert script.hits["/x"] == 2


def test_retry_after_beyond_the_budget_gives_up_with_rate_limited() -> None:
    limited = httpx.Response(
        429,
        headers={"Retry-After": "60"},
        json={"detail": {"error": "rate_limit_exceeded", "message": "slow down"}},
    )
    runner = RequestRunner(
        httpx.Client(
            base_url="http://tenant.test",
            transport=httpx.MockTransport(Script(**{"/x": [limited]})),
        ),
        tenant="coffeechain",
        upstream="loyalty API",
        error_mapper=tenant_error,
        policy=RetryPolicy(max_elapsed_seconds=5),
        sleep=pytest.fail,
    )
    with pytest.raises(RateLimited) as caught:
        runner.send(Route("GET", "/x", Safety.READ))
    assert caught.value.retry_after == 60


def test_one_structured_log_line_per_attempt(tenants, mock_loyalty, caplog) -> None:
    script = Script(**{BALANCE: [_error(503, "unavailable"), _balance_ok()]})
    with caplog.at_level(logging.INFO, logger="clients.http"):
        mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
    records = [r for r in caplog.records if r.name == "clients.http"]
    assert [(r.status, r.attempt) for r in records] == [(503, 1), (200, 2)]
    first = records[0]
    assert (first.tenant, first.method, first.path) == (
        "coffeechain",
        "GET",
        "/api/v1/members/{member_id}/balance",
    )
    assert isinstance(first.latency_ms, float)
    assert "CC1234567" not in caplog.text  # the template, not the member's id


def test_fintechapp_coins_stay_exact_and_use_the_members_session(tenants, mock_loyalty) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/sessions/validate":
            user = json.loads(request.content)["user_id"]
            return httpx.Response(200, json={"jwt_token": f"eyJx.{user}.sig", "expires_in": 60})
        assert request.headers["authorization"] == "Bearer eyJx.FA_12345678.sig"
        if request.url.path.endswith("/coins"):
            return httpx.Response(
                200,
                content=b'{"user_id":"FA_12345678","coins":2500.10,"cashback_rate":0.02,'
                b'"total_cashback":125.50,"currency":"USD"}',
            )
        assert request.content == (b'{"amount":0.30,"reference_id":"bkg_1","description":"Flight"}')
        return httpx.Response(
            200,
            content=b'{"transaction_id":"fatxn_0123456789ab","user_id":"FA_12345678",'
            b'"amount_deducted":0.30,"cashback_earned":0.01,"remaining_coins":2499.81,'
            b'"timestamp":"2026-03-01T10:15:02.123456"}',
        )

    client = mock_loyalty(tenants["fintechapp"], handler)
    balance = client.balance("FA_12345678")
    assert balance.balance == Decimal("2500.10") and str(balance.balance) == "2500.10"
    assert balance.total_cashback == Decimal("125.50")
    deduction = client.deduct("FA_12345678", Decimal("0.30"), "bkg_1", "Flight")
    assert deduction.amount == Decimal("0.30")
    assert deduction.remaining_balance == Decimal("2499.81")
    assert deduction.cashback_earned == Decimal("0.01")
    assert deduction.timestamp == dt.datetime(2026, 3, 1, 10, 15, 2, 123456, tzinfo=dt.UTC)
    with pytest.raises(TypeError):
        client.deduct("FA_12345678", 0.3, "bkg_2", "Flight")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="decimal places"):
        client.deduct("FA_12345678", Decimal("0.305"), "bkg_3", "Flight")


def test_telcocorp_dialect_names(tenants, mock_loyalty) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/oauth/token":
            return httpx.Response(200, json={"access_token": "tc_token_x", "expires_in": 3600})
        if request.url.path.endswith("/points/use"):
            assert json.loads(request.content) == {
                "points": 5000,
                "reference_id": "bkg_1",
                "description": "Flight",
                "travel_class": "economy",
            }
            return httpx.Response(
                200,
                json={
                    "transaction_id": "tctxn_0123456789ab",
                    "customer_id": "TC-ABC123",
                    "points_used": 5000,
                    "remaining_points": 20000,
                    "timestamp": "2026-03-01T10:15:02",
                },
            )
        return httpx.Response(
            200,
            json={
                "customer_id": "TC-ABC123",
                "eligible": True,
                "allowed_classes": ["economy"],
                "restrictions": ["Economy class only"],
            },
        )

    client = mock_loyalty(tenants["telcocorp"], handler)
    used = client.deduct("TC-ABC123", 5000, "bkg_1", "Flight")
    assert (used.amount, used.remaining_balance, used.member_id) == (5000, 20000, "TC-ABC123")
    eligibility = client.travel_eligibility("TC-ABC123")
    assert eligibility.allowed_classes == ("economy",) and eligibility.eligible


def test_missing_capabilities_raise_not_supported_without_calling(tenants, mock_loyalty) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        pytest.fail(f"no request expected, got {request.url}")

    telco = mock_loyalty(tenants["telcocorp"], handler)
    with pytest.raises(NotSupported, match="approval"):
        telco.check_approval("TC-ABC123", 100, "bkg_1")
    coffee = mock_loyalty(tenants["coffeechain"], handler)
    with pytest.raises(NotSupported, match="eligibility"):
        coffee.travel_eligibility("CC1234567")
    bare = tenants["fintechapp"].model_copy(update={"capabilities": Capabilities()})
    fintech = mock_loyalty(bare, handler)
    with pytest.raises(NotSupported, match="refunds") as caught:
        fintech.refund("FA_12345678", "fatxn_1", "cancelled")
    assert caught.value.to_problem()["status"] == 501
    with pytest.raises(NotSupported, match="ledger"):
        next(fintech.iter_ledger_pages())
    with pytest.raises(NotSupported, match="member list"):
        next(fintech.iter_members())


def _ledger_record(n: int) -> dict:
    return {
        "transaction_id": f"txn_{n:012x}",
        "member_id": "CC1234567",
        "type": "deduction",
        "amount": -41250,
        "currency": "stars",
        "status": "posted",
        "reference_id": f"bkg_{n}",
        "related_transaction_id": None,
        "approval_id": None,
        "description": "Flight booking LHR-JFK",
        "created_at": "2026-03-01T10:15:02.123456Z",
        "updated_at": "2026-03-01T10:15:02.123456Z",
    }


def test_ledger_pages_follow_the_cursor_and_keep_raw_records(tenants, mock_loyalty) -> None:
    seen: list[dict] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(dict(request.url.params))
        cursor = request.url.params.get("cursor")
        if cursor is None:
            body = {"data": [_ledger_record(1), {"bad": "record"}], "next_cursor": "c2"}
        else:
            body = {"data": [_ledger_record(2)], "next_cursor": None, "has_more": False}
        return httpx.Response(200, json=body)

    client = mock_loyalty(tenants["coffeechain"], handler)
    since = dt.datetime(2026, 3, 1, 11, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))
    pages = list(client.iter_ledger_pages(updated_since=since, page_size=2))
    assert [len(p.records) for p in pages] == [2, 1]
    assert pages[0].next_cursor == "c2" and pages[1].next_cursor is None
    assert pages[0].records[1] == {"bad": "record"}  # ingestion quarantines it, not us
    assert seen[0] == {"limit": "2", "updated_since": "2026-03-01T10:00:00Z"}
    assert seen[1]["cursor"] == "c2"


def test_ledger_models_and_repeated_cursor_guard(tenants, mock_loyalty) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [_ledger_record(1)], "next_cursor": "same"})

    client = mock_loyalty(tenants["coffeechain"], handler)
    pages = client.iter_ledger()
    (record,) = next(pages)
    assert record.amount == Decimal(-41250) and record.created_at.tzinfo is not None
    next(pages)
    with pytest.raises(UpstreamError, match="already returned"):
        next(pages)


def test_encode_json_writes_decimals_exactly() -> None:
    body = {"a": Decimal("0.10"), "b": [Decimal("1E+2"), {"c": None}], "d": "x"}
    assert encode_json(body) == b'{"a":0.10,"b":[100,{"c":null}],"d":"x"}'
    with pytest.raises(ValueError):
        encode_json({"a": Decimal("NaN")})


def test_quota_wait_beyond_the_budget_fails_fast_without_sending() -> None:
    sent: list[httpx.Request] = []
    limiter = ClientRateLimiter(RateLimit(requests=1, window_seconds=60), "coffeechain")
    limiter.acquire()
    limiter.release()  # the only slot of this minute is used
    http = httpx.Client(
        base_url="http://tenant.test",
        transport=RateLimitedTransport(
            httpx.MockTransport(lambda r: sent.append(r) or httpx.Response(200)), limiter
        ),
    )
    runner = RequestRunner(
        http,
        tenant="coffeechain",
        upstream="loyalty API",
        error_mapper=tenant_error,
        policy=RetryPolicy(max_elapsed_seconds=0.5),
    )
    with pytest.raises(RateLimited) as caught:
        runner.send(Route("GET", "/x", Safety.READ))
    assert sent == [] and caught.value.retry_after is not None


def test_success_body_of_the_wrong_shape_is_a_typed_error(tenants, mock_loyalty) -> None:
    script = Script(**{BALANCE: [httpx.Response(200, json={"member_id": "CC1234567"})]})
    with pytest.raises(UpstreamError, match="unexpected response body"):
        mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
    script = Script(**{BALANCE: [httpx.Response(200, content=b"<html>maintenance</html>")]})
    with pytest.raises(UpstreamError, match="expected a JSON body"):
        mock_loyalty(tenants["coffeechain"], script).balance("CC1234567")
