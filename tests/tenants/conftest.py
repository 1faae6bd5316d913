"""Fixtures for the tenant client tests: registry entries, test secrets, mock clients."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable, Iterator

import httpx
import pytest

from clients.duffel import DuffelClient, build_duffel_client
from clients.http import RetryPolicy
from clients.loyalty.client import LoyaltyClient, build_loyalty_client
from sandbox.config import SERVICES, Limit, SandboxConfig
from sandbox.runner import Sandbox, start_sandbox
from settings import get_settings
from tenants.auth import build_auth
from tenants.registry import TenantConfig, load_registry

# Quick budgets so failure paths finish in milliseconds.
FAST_RETRY = RetryPolicy(
    max_attempts=3, max_elapsed_seconds=5.0, base_delay_seconds=0.01, max_delay_seconds=0.05
)

TEST_SECRETS = {
    "COFFEECHAIN_API_KEY": "test_cc_api_key_12345",
    "TELCOCORP_CLIENT_ID": "telcocorp_client_id",
    "TELCOCORP_CLIENT_SECRET": "telcocorp_client_secret",
    "FINTECHAPP_PARTNER_ID": "partner_analytics",
    "FINTECHAPP_PARTNER_SECRET": "fintechapp_partner_secret",
    "COFFEECHAIN_DUFFEL_TOKEN": "duffel_test_coffeechain_sandbox",
    "TELCOCORP_DUFFEL_TOKEN": "duffel_test_telcocorp_sandbox",
    "FINTECHAPP_DUFFEL_TOKEN": "duffel_test_fintechapp_sandbox",
}


@pytest.fixture(scope="session")
def tenants() -> dict[str, TenantConfig]:
    return load_registry()


@pytest.fixture
def secrets_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in TEST_SECRETS.items():
        monkeypatch.setenv(name, value)
    return TEST_SECRETS


Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def mock_loyalty(
    secrets_env: dict[str, str],
) -> Iterator[Callable[[TenantConfig, Handler], LoyaltyClient]]:
    """A loyalty client over ``httpx.MockTransport`` (no rate limiter, fast retries)."""
    clients: list[LoyaltyClient] = []

    def build(tenant: TenantConfig, handler: Handler) -> LoyaltyClient:
        base_url = "http://tenant.test"
        http = httpx.Client(
            base_url=base_url,
            auth=build_auth(tenant, base_url),
            transport=httpx.MockTransport(handler),
            timeout=2.0,
        )
        client = LoyaltyClient(tenant, http, retry=FAST_RETRY)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


AUTH_PATHS = frozenset({"/oauth/token", "/api/v1/sessions/validate"})


class Wire:
    """Event hooks that see every request a client sends (token requests too).

    It records each answer's status, and can add an ``X-Mock-Error`` header either to the
    API calls or to the token/session requests only.
    """

    def __init__(self, mock: str | None = None, *, on_auth: bool = False) -> None:
        self.mock = mock
        self.on_auth = on_auth
        self.sent: list[str] = []
        self.answers: list[tuple[str, int]] = []
        self._lock = threading.Lock()

    @property
    def hooks(self) -> dict[str, list[Callable]]:
        return {"request": [self._request], "response": [self._response]}

    def _request(self, request: httpx.Request) -> None:
        if self.mock and (request.url.path in AUTH_PATHS) == self.on_auth:
            request.headers["X-Mock-Error"] = self.mock
        with self._lock:
            self.sent.append(request.url.path)

    def _response(self, response: httpx.Response) -> None:
        with self._lock:
            self.answers.append((response.request.url.path, response.status_code))

    def count(self, *, path: str | None = None, status: int | None = None) -> int:
        return sum(
            1
            for p, s in self.answers
            if (path is None or p.endswith(path)) and (status is None or s == status)
        )

    def sends(self, path: str) -> int:
        return sum(1 for p in self.sent if p.endswith(path))


# Integration budget: quick, but with room for a few real retries.
LIVE_RETRY = RetryPolicy(
    max_attempts=3, max_elapsed_seconds=15.0, base_delay_seconds=0.05, max_delay_seconds=0.2
)
STALL_SECONDS = 3.0


def standin_config(**overrides: object) -> SandboxConfig:
    """Stand-ins on free ports, quiet, limits generous unless a test sets them."""
    base = SandboxConfig(
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        timeout_stall_seconds=STALL_SECONDS,
        limits={service: Limit(100_000) for service in SERVICES},
    )
    return dataclasses.replace(base, **overrides)


@pytest.fixture(scope="module")
def standins() -> Iterator[Sandbox]:
    """Stand-ins for this module's integration tests, with generous limits."""
    running = start_sandbox(standin_config())
    yield running
    running.stop()


@pytest.fixture
def point_at(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Sandbox], Sandbox]]:
    """Point the platform's clients (env + cached settings) at a running sandbox."""

    def point(running: Sandbox) -> Sandbox:
        for name, value in running.client_env().items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return running

    yield point
    get_settings.cache_clear()


@pytest.fixture
def loyalty(
    standins: Sandbox, point_at: Callable[[Sandbox], Sandbox]
) -> Iterator[Callable[..., LoyaltyClient]]:
    """Build real loyalty clients against this module's stand-ins."""
    point_at(standins)
    clients: list[LoyaltyClient] = []

    def build(
        tenant: TenantConfig, wire: Wire | None = None, retry: RetryPolicy = LIVE_RETRY
    ) -> LoyaltyClient:
        client = build_loyalty_client(tenant, retry=retry, event_hooks=wire.hooks if wire else None)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


@pytest.fixture
def duffel(
    standins: Sandbox, point_at: Callable[[Sandbox], Sandbox]
) -> Iterator[Callable[..., DuffelClient]]:
    """Build real Duffel clients against this module's stand-ins."""
    point_at(standins)
    clients: list[DuffelClient] = []

    def build(
        tenant: TenantConfig, wire: Wire | None = None, retry: RetryPolicy = LIVE_RETRY
    ) -> DuffelClient:
        client = build_duffel_client(tenant, retry=retry, event_hooks=wire.hooks if wire else None)
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def with_read_timeout(tenant: TenantConfig, seconds: float) -> TenantConfig:
    return tenant.model_copy(
        update={"api": tenant.api.model_copy(update={"read_timeout_seconds": seconds})}
    )
