"""The loyalty stand-ins answer exactly as tenant-apis.md documents the reference services.

Every test runs twice: against the stand-ins with their extensions (the default) and in
reference mode, which must keep the reference behaviour unchanged.
"""

from __future__ import annotations

import dataclasses
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime
from decimal import Decimal

import httpx
import jwt
import pytest

from sandbox.config import SERVICES, Limit, SandboxConfig
from sandbox.loyalty import LoyaltyStore, create_apps
from sandbox.schema import LEDGER, MEMBERS
from sandbox.servers import serve_in_background

SECRET = "contract-test-signing-key-32-bytes-long"
CONFIG = SandboxConfig(
    ports=dict.fromkeys(SERVICES, 0),
    limits={name: Limit(100_000) for name in SERVICES},  # the limits have their own test
    timeout_stall_seconds=0.3,
    fintechapp_jwt_secret=SECRET,
    log_requests=False,
)
CC_KEY = {"X-CC-API-Key": "test_cc_api_key_12345"}
TC_CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "telcocorp_client_id",
    "client_secret": "telcocorp_client_secret",
}
RATE_LIMIT_HEADERS = {"x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"}


def _rate_limit_headers(response: httpx.Response) -> None:
    missing = RATE_LIMIT_HEADERS - set(response.headers)
    assert not missing, f"{response.request.method} {response.request.url} lacks {missing}"


def body(response: httpx.Response) -> dict:
    """The JSON body with fractional numbers as Decimal, parsed from their text."""
    return json.loads(response.text, parse_float=Decimal)


def detail(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    return body(response)["detail"]


def hex_id(prefix: str, digits: int = 12) -> re.Pattern[str]:
    return re.compile(rf"{prefix}[0-9a-f]{{{digits}}}")


def is_timestamp(value: object) -> bool:
    return isinstance(value, str) and isinstance(datetime.fromisoformat(value), datetime)


@pytest.fixture(scope="module", params=[False, True], ids=["extended", "reference"])
def config(request: pytest.FixtureRequest) -> SandboxConfig:
    return dataclasses.replace(CONFIG, reference=request.param)


@pytest.fixture(scope="module")
def store(config: SandboxConfig) -> LoyaltyStore:
    return LoyaltyStore(MEMBERS.to_frame(), LEDGER.to_frame(), config)


@pytest.fixture(scope="module")
def urls(store: LoyaltyStore, config: SandboxConfig) -> Iterator[dict[str, str]]:
    servers = serve_in_background(create_apps(store, config))
    yield servers.urls
    servers.stop()


@pytest.fixture(autouse=True)
def seeded(store: LoyaltyStore) -> None:
    """Every test starts from the seeded state, as after the upstream's hourly reset."""
    store.reset()


def _client(url: str, headers: dict[str, str] | None = None) -> httpx.Client:
    return httpx.Client(
        base_url=url,
        headers=headers,
        timeout=10,
        event_hooks={"response": [_rate_limit_headers]},
    )


@pytest.fixture
def anonymous(urls: dict[str, str]) -> Iterator[dict[str, httpx.Client]]:
    clients = {name: _client(url) for name, url in urls.items()}
    yield clients
    for client in clients.values():
        client.close()


@pytest.fixture
def coffeechain(urls: dict[str, str]) -> Iterator[httpx.Client]:
    with _client(urls["coffeechain"], CC_KEY) as client:
        yield client


def telcocorp_token(client: httpx.Client) -> str:
    response = client.post("/oauth/token", json=TC_CREDENTIALS)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


@pytest.fixture
def telcocorp(urls: dict[str, str], anonymous: dict[str, httpx.Client]) -> Iterator[httpx.Client]:
    token = telcocorp_token(anonymous["telcocorp"])
    with _client(urls["telcocorp"], {"Authorization": f"Bearer {token}"}) as client:
        yield client


def fintechapp_session(client: httpx.Client, user_id: str) -> dict:
    response = client.post(
        "/api/v1/sessions/validate", json={"user_id": user_id, "device_id": "d1"}
    )
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def fintechapp(urls: dict[str, str], anonymous: dict[str, httpx.Client]) -> Iterator[httpx.Client]:
    """A client holding Sarah Connor's session."""
    token = fintechapp_session(anonymous["fintechapp"], "FA_12345678")["jwt_token"]
    with _client(urls["fintechapp"], {"Authorization": f"Bearer {token}"}) as client:
        yield client


# --- common -------------------------------------------------------------------------------


@pytest.mark.parametrize("service", ["coffeechain", "telcocorp", "fintechapp"])
def test_health_needs_no_auth(anonymous: dict[str, httpx.Client], service: str) -> None:
    response = anonymous[service].get("/health")
    assert response.status_code == 200
    health = response.json()
    assert set(health) == {"status", "service", "timestamp"}
    assert health["status"] == "healthy"
    assert health["service"] == f"{service}-mock"
    assert is_timestamp(health["timestamp"])


# What the reference services send on every answer: (limit, remaining), fixed.
REFERENCE_RATE_HEADERS = {"coffeechain": (100, 95), "telcocorp": (50, 45), "fintechapp": (200, 195)}


@pytest.mark.parametrize("service", ["coffeechain", "telcocorp", "fintechapp"])
def test_rate_limit_headers_carry_the_configured_limit(
    anonymous: dict[str, httpx.Client], service: str, config: SandboxConfig
) -> None:
    response = anonymous[service].get("/health")
    if config.reference:
        limit, remaining = REFERENCE_RATE_HEADERS[service]
        assert int(response.headers["x-ratelimit-limit"]) == limit
        assert int(response.headers["x-ratelimit-remaining"]) == remaining
        reset = int(response.headers["x-ratelimit-reset"])
        assert 55 <= reset - time.time() <= 61  # a minute from now, as the reference says
    else:
        assert int(response.headers["x-ratelimit-limit"]) == 100_000
        assert 0 <= int(response.headers["x-ratelimit-remaining"]) <= 100_000
        assert int(response.headers["x-ratelimit-reset"]) > 1_700_000_000


@pytest.fixture
def authorized(
    coffeechain: httpx.Client, telcocorp: httpx.Client, fintechapp: httpx.Client
) -> dict[str, httpx.Client]:
    return {"coffeechain": coffeechain, "telcocorp": telcocorp, "fintechapp": fintechapp}


READS = {
    "coffeechain": "/api/v1/members/CC1234567/balance",
    "telcocorp": "/api/v2/customers/TC-ABC123/points",
    "fintechapp": "/api/v1/users/FA_12345678/coins",
}


@pytest.mark.parametrize("service", sorted(READS))
def test_mock_error_true_is_an_internal_error(
    authorized: dict[str, httpx.Client], service: str
) -> None:
    response = authorized[service].get(READS[service], headers={"X-Mock-Error": "true"})
    assert detail(response, 500) == {
        "error": "internal_error",
        "message": "Simulated error for testing",
    }


@pytest.mark.parametrize("service", sorted(READS))
def test_mock_error_auth_failed(authorized: dict[str, httpx.Client], service: str) -> None:
    response = authorized[service].get(READS[service], headers={"X-Mock-Error": "auth-failed"})
    assert detail(response, 401) == {"error": "unauthorized", "message": "Authentication failed"}


@pytest.mark.parametrize("service", sorted(READS))
def test_mock_error_api_timeout_stalls_then_answers(
    authorized: dict[str, httpx.Client], service: str
) -> None:
    response = authorized[service].get(READS[service], headers={"X-Mock-Error": "api-timeout"})
    assert response.status_code == 200
    assert response.json()  # answered normally, only late


def test_mock_errors_apply_to_the_unauthenticated_entry_points(
    anonymous: dict[str, httpx.Client],
) -> None:
    token = anonymous["telcocorp"].post(
        "/oauth/token", json=TC_CREDENTIALS, headers={"X-Mock-Error": "true"}
    )
    assert detail(token, 500)["error"] == "internal_error"
    session = anonymous["fintechapp"].post(
        "/api/v1/sessions/validate",
        json={"user_id": "FA_12345678", "device_id": "d1"},
        headers={"X-Mock-Error": "auth-failed"},
    )
    assert detail(session, 401)["error"] == "unauthorized"


# --- CoffeeChain --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("member_id", "balance", "tier"),
    [
        ("CC1234567", 150_000, "gold"),
        ("CC2222222", 45_000, "silver"),
        ("CC3333333", 500_000, "platinum"),
        ("CC0000000", 1_000, "bronze"),
    ],
)
def test_coffeechain_seeded_balances(
    coffeechain: httpx.Client, member_id: str, balance: int, tier: str
) -> None:
    response = coffeechain.get(f"/api/v1/members/{member_id}/balance")
    assert response.status_code == 200
    assert response.json() == {
        "member_id": member_id,
        "balance": balance,
        "currency": "stars",
        "tier": tier,
        "status": "active",
    }


@pytest.mark.parametrize("headers", [{}, {"X-CC-API-Key": "wrong"}])
def test_coffeechain_rejects_a_missing_or_wrong_api_key(
    anonymous: dict[str, httpx.Client], headers: dict[str, str]
) -> None:
    response = anonymous["coffeechain"].get("/api/v1/members/CC1234567/balance", headers=headers)
    assert detail(response, 401) == {"error": "unauthorized", "message": "Invalid API key"}


def test_coffeechain_unknown_member(coffeechain: httpx.Client) -> None:
    response = coffeechain.get("/api/v1/members/CC9999999/balance")
    assert detail(response, 404) == {
        "error": "member_not_found",
        "message": "Member CC9999999 not found",
    }
    deduct = coffeechain.post(
        "/api/v1/members/CC9999999/deduct",
        json={"amount": 10, "reference_id": "bkg_1", "description": "x"},
    )
    assert detail(deduct, 404)["error"] == "member_not_found"


def _deduct(client: httpx.Client, member_id: str, amount: int, **headers: str) -> httpx.Response:
    return client.post(
        f"/api/v1/members/{member_id}/deduct",
        json={"amount": amount, "reference_id": "bkg_contract", "description": "Flight LHR-JFK"},
        headers=headers,
    )


def test_coffeechain_deduct(coffeechain: httpx.Client) -> None:
    response = _deduct(coffeechain, "CC1234567", 41_250)
    assert response.status_code == 200
    deducted = response.json()
    assert set(deducted) == {
        "transaction_id",
        "member_id",
        "amount_deducted",
        "remaining_balance",
        "timestamp",
    }
    assert hex_id("txn_").fullmatch(deducted["transaction_id"])
    assert deducted["member_id"] == "CC1234567"
    assert deducted["amount_deducted"] == 41_250
    assert deducted["remaining_balance"] == 108_750
    assert is_timestamp(deducted["timestamp"])
    balance = coffeechain.get("/api/v1/members/CC1234567/balance").json()["balance"]
    assert balance == 108_750


def test_coffeechain_insufficient_balance(coffeechain: httpx.Client) -> None:
    response = _deduct(coffeechain, "CC0000000", 5_000)
    assert detail(response, 400) == {
        "error": "insufficient_balance",
        "message": "Member has insufficient stars",
        "current_balance": 1_000,
        "requested_amount": 5_000,
    }


def test_coffeechain_mock_insufficient_balance(coffeechain: httpx.Client) -> None:
    response = _deduct(coffeechain, "CC3333333", 10, **{"X-Mock-Error": "insufficient-balance"})
    assert detail(response, 400) == {
        "error": "insufficient_balance",
        "message": "Member has insufficient stars",
        "current_balance": 1_000,
        "requested_amount": 10,
    }


def test_coffeechain_deduct_validates_its_body(coffeechain: httpx.Client) -> None:
    response = coffeechain.post("/api/v1/members/CC1234567/deduct", json={"amount": 10})
    assert response.status_code == 422
    assert {tuple(e["loc"]) for e in response.json()["detail"]} == {
        ("body", "reference_id"),
        ("body", "description"),
    }


def test_coffeechain_refund(coffeechain: httpx.Client) -> None:
    transaction_id = _deduct(coffeechain, "CC2222222", 5_000).json()["transaction_id"]
    response = coffeechain.post(
        "/api/v1/members/CC2222222/refund",
        json={"transaction_id": transaction_id, "reason": "flight cancelled"},
    )
    assert response.status_code == 200
    refunded = response.json()
    assert set(refunded) == {
        "refund_id",
        "transaction_id",
        "member_id",
        "amount_refunded",
        "new_balance",
        "timestamp",
    }
    assert hex_id("ref_").fullmatch(refunded["refund_id"])
    assert refunded["transaction_id"] == transaction_id
    assert refunded["member_id"] == "CC2222222"
    assert refunded["amount_refunded"] == 5_000
    assert refunded["new_balance"] == 45_000
    assert is_timestamp(refunded["timestamp"])


def test_coffeechain_refund_errors(coffeechain: httpx.Client, config: SandboxConfig) -> None:
    unknown = coffeechain.post(
        "/api/v1/members/CC1234567/refund",
        json={"transaction_id": "txn_000000000000", "reason": "x"},
    )
    assert detail(unknown, 404) == {
        "error": "transaction_not_found",
        "message": "Transaction txn_000000000000 not found",
    }
    transaction_id = _deduct(coffeechain, "CC1234567", 100).json()["transaction_id"]
    foreign = coffeechain.post(
        "/api/v1/members/CC3333333/refund", json={"transaction_id": transaction_id, "reason": "x"}
    )
    assert detail(foreign, 403) == {
        "error": "unauthorized",
        "message": "Transaction does not belong to this member",
    }
    refund = {"transaction_id": transaction_id, "reason": "x"}
    assert coffeechain.post("/api/v1/members/CC1234567/refund", json=refund).status_code == 200
    again = coffeechain.post("/api/v1/members/CC1234567/refund", json=refund)
    if config.reference:
        # The reference service keeps no record of refunds: it pays the same one again.
        assert again.status_code == 200, again.text
        assert again.json()["new_balance"] == 150_000 + 100
    else:
        assert detail(again, 400)["error"] == "already_refunded"


APPROVAL_KEYS = {"approval_required", "approval_id", "reason", "estimated_time"}


def _check_approval(client: httpx.Client, amount: int, **headers: str) -> dict:
    response = client.post(
        "/api/v1/approvals/check",
        json={"member_id": "CC3333333", "amount": amount, "booking_reference": "bkg_1"},
        headers=headers,
    )
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == APPROVAL_KEYS
    return answer


def test_coffeechain_approval_not_required_up_to_50000(coffeechain: httpx.Client) -> None:
    assert _check_approval(coffeechain, 50_000) == {
        "approval_required": False,
        "approval_id": None,
        "reason": None,
        "estimated_time": None,
    }


def test_coffeechain_approval_required_above_50000(coffeechain: httpx.Client) -> None:
    answer = _check_approval(coffeechain, 50_001)
    assert answer["approval_required"] is True
    assert hex_id("appr_").fullmatch(answer["approval_id"])
    assert isinstance(answer["reason"], str)
    assert answer["estimated_time"] == "PT24H"


def test_coffeechain_mock_approval_required(coffeechain: httpx.Client) -> None:
    answer = _check_approval(coffeechain, 100, **{"X-Mock-Error": "approval-required"})
    assert answer["approval_required"] is True
    assert hex_id("appr_").fullmatch(answer["approval_id"])
    assert answer["reason"] == "Forced approval for testing"
    assert answer["estimated_time"] == "PT24H"


# --- TelcoCorp ----------------------------------------------------------------------------


def test_telcocorp_token(anonymous: dict[str, httpx.Client]) -> None:
    response = anonymous["telcocorp"].post("/oauth/token", json=TC_CREDENTIALS)
    assert response.status_code == 200
    token = response.json()
    assert set(token) == {"access_token", "token_type", "expires_in", "scope"}
    assert token["access_token"].startswith("tc_token_")
    assert len(token["access_token"]) > len("tc_token_") + 16
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 3600
    assert token["scope"] == "points:read points:use"
    scoped = anonymous["telcocorp"].post(
        "/oauth/token", json={**TC_CREDENTIALS, "scope": "points:read"}
    )
    assert scoped.json()["scope"] == "points:read"


def test_telcocorp_token_errors(anonymous: dict[str, httpx.Client]) -> None:
    grant = anonymous["telcocorp"].post(
        "/oauth/token", json={**TC_CREDENTIALS, "grant_type": "password"}
    )
    assert detail(grant, 400) == {
        "error": "unsupported_grant_type",
        "message": "Only client_credentials grant type is supported",
    }
    secret = anonymous["telcocorp"].post(
        "/oauth/token", json={**TC_CREDENTIALS, "client_secret": "wrong"}
    )
    assert detail(secret, 401) == {
        "error": "invalid_client",
        "message": "Invalid client credentials",
    }


def test_telcocorp_bearer_errors(anonymous: dict[str, httpx.Client]) -> None:
    client = anonymous["telcocorp"]
    missing = client.get("/api/v2/customers/TC-ABC123/points")
    assert missing.status_code == 403
    assert missing.json() == {"detail": "Not authenticated"}
    basic = client.get(
        "/api/v2/customers/TC-ABC123/points", headers={"Authorization": "Basic eA=="}
    )
    assert basic.status_code == 403
    assert basic.json() == {"detail": "Invalid authentication credentials"}
    unknown = client.get(
        "/api/v2/customers/TC-ABC123/points", headers={"Authorization": "Bearer tc_token_nope"}
    )
    assert detail(unknown, 401) == {"error": "invalid_token", "message": "Invalid or expired token"}


@pytest.mark.parametrize(
    ("customer_id", "points", "tier"),
    [
        ("TC-ABC123", 25_000, "gold"),
        ("TC-DEF456", 150_000, "platinum"),
        ("TC-GHI789", 5_000, "silver"),
    ],
)
def test_telcocorp_seeded_points(
    telcocorp: httpx.Client, customer_id: str, points: int, tier: str
) -> None:
    response = telcocorp.get(f"/api/v2/customers/{customer_id}/points")
    assert response.status_code == 200
    assert response.json() == {
        "customer_id": customer_id,
        "points": points,
        "tier": tier,
        "status": "active",
    }
    eligibility = telcocorp.get(f"/api/v2/customers/{customer_id}/travel/eligibility")
    assert eligibility.status_code == 200
    answer = eligibility.json()
    assert set(answer) == {"customer_id", "eligible", "allowed_classes", "restrictions"}
    assert answer["customer_id"] == customer_id
    assert answer["eligible"] is True
    assert answer["allowed_classes"] == ["economy"]
    assert answer["restrictions"] and all(isinstance(r, str) for r in answer["restrictions"])


def test_telcocorp_unknown_customer(telcocorp: httpx.Client) -> None:
    for path in ("points", "travel/eligibility"):
        response = telcocorp.get(f"/api/v2/customers/TC-ZZZ999/{path}")
        assert detail(response, 404) == {
            "error": "customer_not_found",
            "message": "Customer TC-ZZZ999 not found",
        }


def _use(client: httpx.Client, customer_id: str, points: int, **extra: str) -> httpx.Response:
    headers = {"X-Mock-Error": extra.pop("mock")} if "mock" in extra else {}
    return client.post(
        f"/api/v2/customers/{customer_id}/points/use",
        json={"points": points, "reference_id": "bkg_contract", "description": "Flight", **extra},
        headers=headers,
    )


def test_telcocorp_use_points(telcocorp: httpx.Client) -> None:
    response = _use(telcocorp, "TC-DEF456", 12_000)
    assert response.status_code == 200
    used = response.json()
    assert set(used) == {
        "transaction_id",
        "customer_id",
        "points_used",
        "remaining_points",
        "timestamp",
    }
    assert hex_id("tctxn_").fullmatch(used["transaction_id"])
    assert used["customer_id"] == "TC-DEF456"
    assert used["points_used"] == 12_000
    assert used["remaining_points"] == 138_000
    assert is_timestamp(used["timestamp"])
    explicit = _use(telcocorp, "TC-DEF456", 1_000, travel_class="economy")
    assert explicit.json()["remaining_points"] == 137_000


@pytest.mark.parametrize("travel_class", ["business", "first", "premium_economy"])
def test_telcocorp_economy_only(telcocorp: httpx.Client, travel_class: str) -> None:
    response = _use(telcocorp, "TC-DEF456", 1_000, travel_class=travel_class)
    assert detail(response, 400) == {
        "error": "invalid_travel_class",
        "message": "TelcoCorp members can only book economy class",
        "allowed_classes": ["economy"],
    }


def test_telcocorp_insufficient_points(telcocorp: httpx.Client) -> None:
    response = _use(telcocorp, "TC-GHI789", 5_001)
    assert detail(response, 400) == {
        "error": "insufficient_points",
        "message": "Customer has insufficient points",
        "current_points": 5_000,
        "requested_points": 5_001,
    }
    mocked = _use(telcocorp, "TC-DEF456", 20, mock="insufficient-balance")
    assert detail(mocked, 400) == {
        "error": "insufficient_points",
        "message": "Customer has insufficient points",
        "current_points": 1_000,
        "requested_points": 20,
    }
    unknown = _use(telcocorp, "TC-ZZZ999", 20)
    assert detail(unknown, 404)["error"] == "customer_not_found"


# --- FintechApp ---------------------------------------------------------------------------


def test_fintechapp_session_validation(anonymous: dict[str, httpx.Client]) -> None:
    session = fintechapp_session(anonymous["fintechapp"], "FA_87654321")
    assert set(session) == {"session_id", "jwt_token", "expires_in", "user"}
    assert hex_id("sess_", 16).fullmatch(session["session_id"])
    assert session["expires_in"] == 86_400
    assert session["user"] == {
        "user_id": "FA_87654321",
        "name": "Michael Chen",
        "email": "michael.chen@example.com",
        "status": "active",
    }
    claims = jwt.decode(session["jwt_token"], SECRET, algorithms=["HS256"])
    assert set(claims) == {"sub", "session_id", "exp", "iat"}
    assert claims["sub"] == "FA_87654321"
    assert claims["session_id"] == session["session_id"]
    assert claims["exp"] - claims["iat"] == 86_400


def test_fintechapp_unknown_user(anonymous: dict[str, httpx.Client]) -> None:
    client = anonymous["fintechapp"]
    unknown = client.post(
        "/api/v1/sessions/validate", json={"user_id": "FA_00000000", "device_id": "d1"}
    )
    assert detail(unknown, 404) == {
        "error": "user_not_found",
        "message": "User FA_00000000 not found",
    }
    mocked = client.post(
        "/api/v1/sessions/validate",
        json={"user_id": "FA_12345678", "device_id": "d1"},
        headers={"X-Mock-Error": "invalid-member"},
    )
    assert detail(mocked, 404) == {
        "error": "user_not_found",
        "message": "User FA_12345678 not found",
    }


@pytest.mark.parametrize(
    ("user_id", "coins", "total_cashback"),
    [
        ("FA_12345678", "2500.00", "125.50"),
        ("FA_87654321", "10000.00", "450.00"),
        ("FA_11111111", "50.00", "0.00"),
    ],
)
def test_fintechapp_seeded_coins(
    anonymous: dict[str, httpx.Client], user_id: str, coins: str, total_cashback: str
) -> None:
    token = fintechapp_session(anonymous["fintechapp"], user_id)["jwt_token"]
    response = anonymous["fintechapp"].get(
        f"/api/v1/users/{user_id}/coins", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200
    assert body(response) == {
        "user_id": user_id,
        "coins": Decimal(coins),
        "cashback_rate": Decimal("0.02"),
        "total_cashback": Decimal(total_cashback),
        "currency": "USD",
    }
    assert f'"coins":{coins}' in response.text  # two decimals on the wire


def _spend(client: httpx.Client, user_id: str, amount: str, **headers: str) -> httpx.Response:
    payload = f'{{"amount": {amount}, "reference_id": "bkg_contract", "description": "Flight"}}'
    return client.post(
        f"/api/v1/users/{user_id}/coins/deduct",
        content=payload,
        headers={"Content-Type": "application/json", **headers},
    )


def test_fintechapp_deduct_credits_cashback_at_once(fintechapp: httpx.Client) -> None:
    response = _spend(fintechapp, "FA_12345678", "100.50")
    assert response.status_code == 200
    spent = body(response)
    assert set(spent) == {
        "transaction_id",
        "user_id",
        "amount_deducted",
        "cashback_earned",
        "remaining_coins",
        "timestamp",
    }
    assert hex_id("fatxn_").fullmatch(spent["transaction_id"])
    assert spent["user_id"] == "FA_12345678"
    assert spent["amount_deducted"] == Decimal("100.50")
    assert spent["cashback_earned"] == Decimal("2.01")
    assert spent["remaining_coins"] == Decimal("2401.51")  # 2500.00 - 100.50 + 2.01
    assert is_timestamp(spent["timestamp"])
    coins = body(fintechapp.get("/api/v1/users/FA_12345678/coins"))
    assert coins["coins"] == Decimal("2401.51")
    assert coins["total_cashback"] == Decimal("127.51")


def test_fintechapp_cashback_rounds_half_even(fintechapp: httpx.Client) -> None:
    # 2% of 12.25 is 0.245: half-even keeps 0.24 where half-up would give 0.25.
    spent = body(_spend(fintechapp, "FA_12345678", "12.25"))
    assert spent["cashback_earned"] == Decimal("0.24")
    assert spent["remaining_coins"] == Decimal("2487.99")


def test_fintechapp_insufficient_coins(anonymous: dict[str, httpx.Client]) -> None:
    client = anonymous["fintechapp"]
    token = fintechapp_session(client, "FA_11111111")["jwt_token"]
    auth = {"Authorization": f"Bearer {token}"}
    response = _spend(client, "FA_11111111", "60.00", **auth)
    assert detail(response, 400) == {
        "error": "insufficient_coins",
        "message": "User has insufficient coins",
        "current_coins": Decimal("50.00"),
        "requested_amount": Decimal("60.00"),
    }
    mocked = _spend(
        client, "FA_11111111", "1.00", **auth, **{"X-Mock-Error": "insufficient-balance"}
    )
    assert detail(mocked, 400) == {
        "error": "insufficient_coins",
        "message": "User has insufficient coins",
        "current_coins": Decimal("10.00"),
        "requested_amount": Decimal("1.00"),
    }


def test_fintechapp_token_for_another_user_is_forbidden(fintechapp: httpx.Client) -> None:
    forbidden = {"error": "forbidden", "message": "Cannot access other user's data"}
    assert detail(fintechapp.get("/api/v1/users/FA_87654321/coins"), 403) == forbidden
    assert detail(_spend(fintechapp, "FA_87654321", "1.00"), 403) == forbidden


def _forge(claims: dict, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm='HS256')}"}


def test_fintechapp_token_errors(anonymous: dict[str, httpx.Client]) -> None:
    client = anonymous["fintechapp"]
    path = "/api/v1/users/FA_12345678/coins"
    sarah = fintechapp_session(client, "FA_12345678")
    claims = jwt.decode(sarah["jwt_token"], SECRET, algorithms=["HS256"])

    missing = client.get(path)
    assert missing.status_code == 403
    assert missing.json() == {"detail": "Not authenticated"}

    garbage = client.get(path, headers={"Authorization": "Bearer not-a-jwt"})
    assert detail(garbage, 401) == {"error": "invalid_token", "message": "Could not validate token"}
    resigned = client.get(path, headers=_forge(claims, "another-signing-key-of-32-bytes-x"))
    assert detail(resigned, 401)["error"] == "invalid_token"
    no_session = client.get(
        path, headers=_forge({k: v for k, v in claims.items() if k != "session_id"})
    )
    assert detail(no_session, 401) == {
        "error": "invalid_token",
        "message": "Invalid token structure",
    }

    mismatch = client.get(path, headers=_forge({**claims, "sub": "FA_87654321"}))
    assert detail(mismatch, 401) == {
        "error": "session_mismatch",
        "message": "Session does not match token",
    }
    expired = {"error": "session_expired", "message": "Session has expired or is invalid"}
    vanished = client.get(path, headers=_forge({**claims, "session_id": "sess_0000000000000000"}))
    assert detail(vanished, 401) == expired
    stale = {**claims, "iat": claims["iat"] - 90_000, "exp": claims["iat"] - 3_600}
    assert detail(client.get(path, headers=_forge(stale)), 401) == expired


def test_fintechapp_webhook_validation(fintechapp: httpx.Client) -> None:
    response = fintechapp.post(
        "/api/v1/webhooks/validate",
        json={"webhook_url": "https://example.com/hook", "secret": "s3cret"},
    )
    assert response.status_code == 200
    answer = response.json()
    assert set(answer) == {"validated", "webhook_id"}
    assert answer["validated"] is True
    assert hex_id("whk_").fullmatch(answer["webhook_id"])
