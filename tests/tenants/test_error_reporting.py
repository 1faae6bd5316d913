"""Errors say which upstream failed and keep what it said; tenant files fail loudly and safely."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import httpx
import pytest

from clients.duffel import build_duffel_client
from clients.errors import DuffelError, DuffelRateLimited, DuffelUnavailable, UpstreamError
from clients.http import RetryPolicy
from sandbox.config import SERVICES, Limit
from settings import get_settings
from tenants.registry import REGISTRY_DIR, RegistryError, load_tenant_file

QUICK = RetryPolicy(
    max_attempts=2, max_elapsed_seconds=1.5, base_delay_seconds=0.01, max_delay_seconds=0.05
)


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_duffel_transport_error_is_a_duffel_error(tenants, secrets_env, monkeypatch) -> None:
    monkeypatch.setenv("DUFFEL_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    get_settings.cache_clear()
    try:
        with (
            build_duffel_client(tenants["coffeechain"], retry=QUICK) as client,
            pytest.raises(UpstreamError) as caught,
        ):
            next(client.list_airlines())
    finally:
        get_settings.cache_clear()
    error = caught.value
    assert isinstance(error, DuffelUnavailable), f"{type(error).__name__}: {error}"
    assert str(error).startswith("coffeechain Duffel GET /air/airlines"), str(error)
    assert "loyalty API" not in str(error)
    assert error.to_problem()["upstream"] == "Duffel"


def test_duffel_timeout_is_a_duffel_timeout(tenants, secrets_env, monkeypatch) -> None:
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    monkeypatch.setenv("DUFFEL_BASE_URL", f"http://127.0.0.1:{listener.getsockname()[1]}")
    get_settings.cache_clear()
    try:
        with (
            build_duffel_client(tenants["telcocorp"], retry=QUICK) as client,
            pytest.raises(UpstreamError) as caught,
        ):
            client.get_order("ord_0000AAAA")
    finally:
        listener.close()
        get_settings.cache_clear()
    error = caught.value
    assert isinstance(error, DuffelError), f"{type(error).__name__}: {error}"
    assert isinstance(error, DuffelUnavailable) and isinstance(error, TimeoutError)
    assert "telcocorp Duffel GET /air/orders/{order_id}" in str(caught.value)


def test_duffel_429_keeps_duffels_code_and_request_id(
    tenants, secrets_env, sandbox_factory, monkeypatch
) -> None:
    """Another process spent the token's quota: our calls get (or foresee) Duffel's 429."""
    running = sandbox_factory(
        limits={**{s: Limit(100_000) for s in SERVICES}, "duffel": Limit(3, 3600)}
    )
    for name, value in running.client_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    token = secrets_env["TELCOCORP_DUFFEL_TOKEN"]
    other = httpx.Client(
        base_url=running.client_env()["DUFFEL_BASE_URL"],
        headers={"Authorization": f"Bearer {token}", "Duffel-Version": "v2"},
    )
    seen = None
    for _ in range(10):  # the other process spends the window's quota
        seen = other.get("/air/airlines", params={"limit": 1})
        if seen.status_code == 429:
            break
    other.close()
    assert seen is not None and seen.status_code == 429
    if seen.headers.get("ratelimit-reset") is None:
        pytest.fail("the stand-in sent no ratelimit-reset")
    errors = []
    try:
        with build_duffel_client(tenants["telcocorp"], retry=QUICK) as client:
            for _ in range(2):  # the second call is stopped by what the first one learned
                started = time.monotonic()
                with pytest.raises(UpstreamError) as caught:
                    client.get_order("ord_0000AAAA")
                assert time.monotonic() - started < 3
                errors.append(caught.value)
    finally:
        get_settings.cache_clear()
    for error in errors:
        assert isinstance(error, DuffelRateLimited), f"{type(error).__name__}: {error}"
        assert "telcocorp Duffel GET /air/orders/{order_id}" in str(error)
        assert error.code == "rate_limit_exceeded", str(error)
        assert error.request_id, str(error)
        assert error.retry_after is not None and error.retry_after > 0


def _tenant_file(tmp_path: Path, text: str, name: str = "coffeechain.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_duplicate_key_in_a_tenant_file_is_rejected_naming_file_key_and_line(
    tmp_path: Path,
) -> None:
    text = (REGISTRY_DIR / "coffeechain.yaml").read_text(encoding="utf-8")
    lines = text.splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("rate_limit:")) + 1
    doubled = text + "rate_limit: {requests: 1000000, window_seconds: 1}\n"
    second = len(lines) + 1
    path = _tenant_file(tmp_path, doubled)
    with pytest.raises(RegistryError) as caught:
        load_tenant_file(path)
    message = str(caught.value)
    assert "coffeechain.yaml" in message and "'rate_limit'" in message, message
    assert f"line {second}" in message and f"line {first}" in message, message


def test_nested_duplicate_key_is_rejected_too(tmp_path: Path) -> None:
    text = (REGISTRY_DIR / "coffeechain.yaml").read_text(encoding="utf-8")
    text = text.replace("  key_env: COFFEECHAIN_API_KEY\n", "  key_env: A_KEY\n  key_env: B_KEY\n")
    with pytest.raises(RegistryError, match=r"coffeechain\.yaml.*'auth\.key_env'.*line \d+"):
        load_tenant_file(_tenant_file(tmp_path, text))


def test_a_secret_pasted_into_an_env_field_is_not_echoed(tmp_path: Path) -> None:
    secret = "sk_live_9f8e7d6c5b4a39281706"
    text = (REGISTRY_DIR / "coffeechain.yaml").read_text(encoding="utf-8")
    text = text.replace("key_env: COFFEECHAIN_API_KEY", f"key_env: {secret}")
    with pytest.raises(RegistryError) as caught:
        load_tenant_file(_tenant_file(tmp_path, text))
    message = str(caught.value)
    assert "coffeechain.yaml" in message and "auth.api_key.key_env" in message, message
    assert secret not in message and secret[:8] not in message, message
    assert secret not in repr(caught.value.__cause__ or "")
