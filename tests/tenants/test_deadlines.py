"""Every request of a call, token and session requests included, ends within the call's budget.

The upstream here is real: a loopback socket that accepts connections and never answers,
and the stand-ins stalling a token/session request on ``X-Mock-Error: api-timeout``.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from booking.service import outcome_unknown
from clients.errors import UpstreamTimeout, UpstreamUnavailable
from clients.http import RetryPolicy
from clients.loyalty.client import build_loyalty_client
from settings import get_settings

from .conftest import Wire

BUDGET = 2.0
# Scheduling slack on a shared machine; a hang is many times this.
SLACK = 1.5
MEMBERS = {"coffeechain": "CC1234567", "telcocorp": "TC-ABC123", "fintechapp": "FA_12345678"}
AUTH_PATH = {"telcocorp": "/oauth/token", "fintechapp": "/api/v1/sessions/validate"}
CALL_PATH = {
    ("telcocorp", "balance"): "/points",
    ("fintechapp", "balance"): "/coins",
    ("fintechapp", "deduct"): "/coins/deduct",
}
POLICY = RetryPolicy(
    max_attempts=4, max_elapsed_seconds=BUDGET, base_delay_seconds=0.05, max_delay_seconds=0.2
)


class SilentListener:
    """A TCP listener on loopback that accepts every connection and never sends a byte."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted.append(conn)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def close(self) -> None:
        self.sock.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def silent() -> Iterator[SilentListener]:
    listener = SilentListener()
    yield listener
    listener.close()


def timed(call: Callable[[], Any], limit: float) -> tuple[float, BaseException | None, bool]:
    """Run ``call`` in a thread; (seconds taken or waited, what it raised, still running?)."""
    outcome: dict[str, BaseException | None] = {"error": None}

    def run() -> None:
        try:
            call()
        except BaseException as exc:  # handed to the test, which inspects it
            outcome["error"] = exc

    worker = threading.Thread(target=run, daemon=True)
    started = time.monotonic()
    worker.start()
    worker.join(limit)
    return time.monotonic() - started, outcome["error"], worker.is_alive()


@pytest.mark.parametrize(
    ("tenant_id", "operation"),
    [
        ("coffeechain", "balance"),
        ("telcocorp", "balance"),
        ("fintechapp", "balance"),
        ("fintechapp", "deduct"),
    ],
)
def test_call_against_a_silent_token_endpoint_ends_within_its_budget(
    tenants, secrets_env, silent, monkeypatch, tenant_id, operation
) -> None:
    tenant = tenants[tenant_id]
    monkeypatch.setenv(tenant.api.base_url_env, silent.url)
    client = build_loyalty_client(tenant, retry=POLICY)
    member = MEMBERS[tenant_id]
    if operation == "balance":
        call = lambda: client.balance(member)  # noqa: E731
    else:
        call = lambda: client.deduct(member, Decimal("1.00"), "ref-deadline-1", "test")  # noqa: E731
    seconds, error, hung = timed(call, BUDGET * 6)
    try:
        assert not hung, f"{tenant_id} {operation} still blocked after {seconds:.1f} s"
        print(f"{tenant_id} {operation}: ended in {seconds:.2f} s (budget {BUDGET} s)")
        assert seconds <= BUDGET + SLACK, f"took {seconds:.2f} s with a {BUDGET} s budget"
        # Named for what timed out: the token/session request, before the call was sent.
        assert isinstance(error, UpstreamTimeout), repr(error)
        if tenant_id in AUTH_PATH:  # a token/session scheme: that request is what timed out
            assert AUTH_PATH[tenant_id] in str(error), str(error)
            assert "may have acted" not in str(error)
    finally:
        client.close()


@pytest.mark.parametrize(
    ("tenant_id", "operation"),
    [("telcocorp", "balance"), ("fintechapp", "balance"), ("fintechapp", "deduct")],
)
def test_stalled_token_request_on_the_stand_in_ends_within_the_budget(
    tenants, secrets_env, sandbox_factory, monkeypatch, tenant_id, operation
) -> None:
    running = sandbox_factory(timeout_stall_seconds=BUDGET * 5)
    for name, value in running.client_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    wire = Wire("api-timeout", on_auth=True)
    client = build_loyalty_client(tenants[tenant_id], retry=POLICY, event_hooks=wire.hooks)
    member = MEMBERS[tenant_id]
    if operation == "balance":
        call = lambda: client.balance(member)  # noqa: E731
    else:
        call = lambda: client.deduct(member, Decimal("1.00"), "ref-deadline-2", "test")  # noqa: E731
    seconds, error, hung = timed(call, BUDGET * 8)
    try:
        assert not hung, f"still blocked after {seconds:.1f} s"
        print(
            f"{tenant_id} {operation}, stalled token request: {seconds:.2f} s (budget {BUDGET} s)"
        )
        assert seconds <= BUDGET + SLACK, (
            f"took {seconds:.2f} s with a {BUDGET} s budget: {error!r}"
        )
        assert isinstance(error, UpstreamTimeout) and AUTH_PATH[tenant_id] in str(error), repr(
            error
        )
        assert "the call itself was not sent" in str(error)
        assert wire.sends(AUTH_PATH[tenant_id]) >= 1
        assert wire.sends(CALL_PATH[tenant_id, operation]) == 0  # the call was never sent
    finally:
        client.close()
        get_settings.cache_clear()


@pytest.mark.parametrize(
    ("mock", "expected"), [("api-timeout", UpstreamTimeout), ("true", UpstreamUnavailable)]
)
def test_a_deduction_whose_session_request_failed_is_known_not_sent(
    tenants, secrets_env, sandbox_factory, monkeypatch, mock, expected
) -> None:
    """A failed session request means no deduction: the saga must not hold it as unknown."""
    running = sandbox_factory(timeout_stall_seconds=BUDGET * 5)
    for name, value in running.client_env().items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    wire = Wire(mock, on_auth=True)
    client = build_loyalty_client(tenants["fintechapp"], retry=POLICY, event_hooks=wire.hooks)
    try:
        with pytest.raises(expected) as caught:
            client.deduct(MEMBERS["fintechapp"], Decimal("1.00"), "ref-deadline-3", "test")
    finally:
        client.close()
        get_settings.cache_clear()
    assert wire.sends(AUTH_PATH["fintechapp"]) >= 1
    assert wire.sends(CALL_PATH["fintechapp", "deduct"]) == 0  # the call was never sent
    assert caught.value.not_sent, repr(caught.value)
    assert not outcome_unknown(caught.value), repr(caught.value)
