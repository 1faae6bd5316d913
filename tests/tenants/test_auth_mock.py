"""Auth corner cases through httpx.MockTransport: caching, refresh once, replay, thread safety."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import httpx
import pytest
from pydantic import SecretStr

from clients.errors import AuthError, NotFound
from tenants.auth import (
    AUTH_SCHEMES,
    ApiKeyAuth,
    JwtSession,
    OAuth2ClientCredentials,
    build_auth,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class OAuthServer:
    """A token endpoint and one protected endpoint, with knobs for failures."""

    def __init__(self, *, token_delay: float = 0.0, always_401: bool = False) -> None:
        self.hits: Counter[str] = Counter()
        self.token_bodies: list[dict] = []
        self.valid: set[str] = set()
        self.token_delay = token_delay
        self.always_401 = always_401
        self._lock = threading.Lock()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.hits[request.url.path] += 1
            count = self.hits[request.url.path]
        if request.url.path == "/oauth/token":
            assert request.headers["content-type"] == "application/json"
            self.token_bodies.append(json.loads(request.content))
            time.sleep(self.token_delay)
            token = f"tc_token_{count}"
            self.valid = {token}
            return httpx.Response(
                200, json={"access_token": token, "token_type": "Bearer", "expires_in": 100}
            )
        token = request.headers.get("authorization", "").removeprefix("Bearer ")
        if self.always_401 or token not in self.valid:
            return httpx.Response(
                401, json={"detail": {"error": "invalid_token", "message": "Invalid token"}}
            )
        return httpx.Response(200, json={"ok": token})


def _oauth(clock: FakeClock | None = None) -> OAuth2ClientCredentials:
    return OAuth2ClientCredentials(
        tenant_id="telcocorp",
        token_url="http://tenant.test/oauth/token",
        client_id="telcocorp_client_id",
        client_secret=SecretStr("telcocorp_client_secret"),
        clock=clock or time.monotonic,
    )


def test_factory_picks_the_class_from_the_registry_kind(tenants, secrets_env) -> None:
    assert set(AUTH_SCHEMES) == {"api_key", "oauth2_client_credentials", "jwt_session"}
    assert isinstance(build_auth(tenants["coffeechain"], "http://x"), ApiKeyAuth)
    assert isinstance(build_auth(tenants["telcocorp"], "http://x"), OAuth2ClientCredentials)
    assert isinstance(build_auth(tenants["fintechapp"], "http://x"), JwtSession)


def test_oauth_json_token_request_cached_and_refreshed_ahead_of_expiry() -> None:
    clock = FakeClock()
    server = OAuthServer()
    auth = _oauth(clock)
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as client:
        assert client.get("http://tenant.test/api").status_code == 200
        assert client.get("http://tenant.test/api").status_code == 200
        assert server.hits["/oauth/token"] == 1
        assert server.token_bodies[0] == {
            "grant_type": "client_credentials",
            "client_id": "telcocorp_client_id",
            "client_secret": "telcocorp_client_secret",
        }
        clock.now = 89.0  # 100 s token, refreshed 10 s (a tenth) before it expires
        client.get("http://tenant.test/api")
        assert server.hits["/oauth/token"] == 1
        clock.now = 91.0
        client.get("http://tenant.test/api")
        assert server.hits["/oauth/token"] == 2


def test_revoked_token_is_refreshed_once_and_the_request_replayed() -> None:
    server = OAuthServer()
    auth = _oauth()
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as client:
        client.get("http://tenant.test/api")
        server.valid = set()  # the upstream forgot every token (hourly reset)
        response = client.get("http://tenant.test/api")
    assert response.status_code == 200
    assert server.hits == Counter({"/oauth/token": 2, "/api": 3})


def test_refresh_happens_once_not_in_a_loop() -> None:
    server = OAuthServer(always_401=True)
    auth = _oauth()
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as client:
        response = client.get("http://tenant.test/api")
    assert response.status_code == 401
    assert server.hits == Counter({"/oauth/token": 2, "/api": 2})
    assert auth.refresh_count == 2


def test_concurrent_threads_share_one_token_fetch() -> None:
    server = OAuthServer(token_delay=0.2)
    auth = _oauth()
    start = threading.Barrier(8)
    statuses: list[int] = []
    with httpx.Client(transport=httpx.MockTransport(server), auth=auth) as client:

        def call() -> None:
            start.wait()
            statuses.append(client.get("http://tenant.test/api").status_code)

        threads = [threading.Thread(target=call) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert statuses == [200] * 8
    assert server.hits["/oauth/token"] == 1


def test_bad_client_credentials_raise_auth_error_naming_the_endpoint() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401, json={"detail": {"error": "invalid_client", "message": "Invalid client"}}
        )

    with (
        httpx.Client(transport=httpx.MockTransport(handler), auth=_oauth()) as client,
        pytest.raises(AuthError) as caught,
    ):
        client.get("http://tenant.test/api")
    assert caught.value.code == "invalid_client"
    assert caught.value.endpoint == "POST /oauth/token"
    assert "telcocorp_client_secret" not in str(caught.value)


class SessionServer:
    """FintechApp-like session validation; sessions can be dropped to simulate the reset."""

    def __init__(self) -> None:
        self.sessions: dict[str, str] = {}
        self.validations: list[dict] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.url.path == "/api/v1/sessions/validate":
            body = json.loads(request.content)
            self.validations.append(body)
            if body["user_id"] == "FA_00000000":
                return httpx.Response(
                    404, json={"detail": {"error": "user_not_found", "message": "User not found"}}
                )
            token = f"eyJfake.{body['user_id']}.{len(self.validations)}"
            self.sessions[token] = body["user_id"]
            return httpx.Response(200, json={"jwt_token": token, "expires_in": 86400})
        token = request.headers["authorization"].removeprefix("Bearer ")
        if token not in self.sessions:
            return httpx.Response(
                401, json={"detail": {"error": "session_expired", "message": "gone"}}
            )
        return httpx.Response(200, json={"principal": self.sessions[token]})


def _partner() -> JwtSession:
    return JwtSession(
        tenant_id="fintechapp",
        token_url="http://tenant.test/api/v1/sessions/validate",
        principal_id="partner_analytics",
        device_id="analytics-platform",
        partner_secret=SecretStr("fintechapp_partner_secret"),
    )


def test_partner_and_member_sessions_and_revalidation_after_reset() -> None:
    server = SessionServer()
    partner = _partner()
    with httpx.Client(transport=httpx.MockTransport(server), auth=partner) as client:
        feed = client.get("http://tenant.test/api/v1/ledger/transactions").json()
        member = partner.for_member("FA_12345678")
        assert partner.for_member("FA_12345678") is member
        coins = client.get("http://tenant.test/api/v1/users/FA_12345678/coins", auth=member)
        server.sessions.clear()  # the upstream's hourly reset
        again = client.get("http://tenant.test/api/v1/users/FA_12345678/coins", auth=member)
    assert feed == {"principal": "partner_analytics"}
    assert coins.json() == again.json() == {"principal": "FA_12345678"}
    assert server.validations[0] == {
        "user_id": "partner_analytics",
        "device_id": "analytics-platform",
        "partner_secret": "fintechapp_partner_secret",
    }
    assert server.validations[1] == {"user_id": "FA_12345678", "device_id": "analytics-platform"}
    assert len(server.validations) == 3


def test_unknown_member_session_is_not_found() -> None:
    server = SessionServer()
    partner = _partner()
    with (
        httpx.Client(transport=httpx.MockTransport(server)) as client,
        pytest.raises(NotFound) as caught,
    ):
        client.get(
            "http://tenant.test/api/v1/users/FA_00000000/coins",
            auth=partner.for_member("FA_00000000"),
        )
    assert caught.value.code == "user_not_found"
    assert caught.value.endpoint == "POST /api/v1/sessions/validate"
