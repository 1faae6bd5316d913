"""The client-side limiter's arithmetic, on a fake clock (no sleeping, no timing)."""

from __future__ import annotations

import email.utils
import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from clients.ratelimit import (
    STATE_DIR_ENV,
    ClientRateLimiter,
    RateLimitedTransport,
    RateLimitWait,
    SharedRateLimiter,
    limiter_for,
    parse_reset,
    parse_retry_after,
    quota_key,
)
from tenants.registry import RateLimit


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _http_date(unix: float) -> str:
    return email.utils.formatdate(unix, usegmt=True)


def test_reset_header_styles() -> None:
    now = 1_780_000_000.0
    assert parse_reset({"x-ratelimit-reset": str(int(now) + 30)}, now=now) == 30
    # Duffel: an HTTP-date, measured against the server's own Date header.
    headers = {"ratelimit-reset": _http_date(now + 42), "date": _http_date(now)}
    assert parse_reset(headers, now=now + 5) == 42
    assert parse_reset({"ratelimit-reset": _http_date(now + 10)}, now=now) == 10
    assert parse_reset({"ratelimit-reset": "Wed, 01 Jul 2026 10:00:30 GMT"}) is not None
    assert parse_reset({"ratelimit-reset": "not a date"}) is None
    assert parse_reset({}) is None


def test_retry_after_styles() -> None:
    now = 1_780_000_000.0
    assert parse_retry_after({"retry-after": "7"}, now=now) == 7
    assert parse_retry_after({"retry-after": _http_date(now + 3)}, now=now) == 3
    assert parse_retry_after({"retry-after": _http_date(now - 3)}, now=now) == 0
    assert parse_retry_after({}) is None


def test_never_more_than_the_limit_in_any_window() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(RateLimit(requests=3, window_seconds=10), "t", clock=clock)
    for _ in range(3):
        limiter.acquire(deadline=clock.now)
    # Full while all three are in flight: no answer has come back yet.
    with pytest.raises(RateLimitWait):
        limiter.acquire(deadline=clock.now)
    clock.now += 1
    limiter.release()
    with pytest.raises(RateLimitWait) as waited:
        limiter.acquire(deadline=clock.now + 1)
    # A slot frees up one window after the earliest answer arrived.
    assert waited.value.wait_seconds == pytest.approx(10, abs=0.05)
    clock.now += 10.1
    limiter.acquire(deadline=clock.now)


def test_429_holds_everyone_for_retry_after() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(RateLimit(requests=100, window_seconds=60), "t", clock=clock)
    limiter.acquire()
    limiter.release(429, httpx.Headers({"retry-after": "5"}))
    with pytest.raises(RateLimitWait) as waited:
        limiter.acquire(deadline=clock.now + 1)
    assert waited.value.wait_seconds == pytest.approx(5)
    clock.now += 5
    limiter.acquire(deadline=clock.now)


def test_slows_down_when_the_server_quota_runs_low(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = FakeClock()
    monkeypatch.setattr("clients.ratelimit.time.time", lambda: 1_780_000_000.0)
    limiter = ClientRateLimiter(RateLimit(requests=100, window_seconds=60), "t", clock=clock)
    limiter.acquire()
    low = {"x-ratelimit-limit": "100", "x-ratelimit-remaining": "3"}
    limiter.release(200, httpx.Headers({**low, "x-ratelimit-reset": str(1_780_000_000 + 20)}))
    with pytest.raises(RateLimitWait) as waited:
        limiter.acquire(deadline=clock.now + 1)
    assert waited.value.wait_seconds == pytest.approx(20 / 4)
    clock.now += 5
    limiter.acquire(deadline=clock.now)
    gone = {"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(1_780_000_000 + 12)}
    limiter.release(200, httpx.Headers(gone))
    with pytest.raises(RateLimitWait) as waited:
        limiter.acquire(deadline=clock.now + 1)
    assert waited.value.wait_seconds == pytest.approx(12, abs=0.05)


def test_registry_shares_one_limiter_per_quota_and_hides_credentials() -> None:
    limit = RateLimit(requests=5, window_seconds=1)
    key = quota_key("duffel", "http://duffel.test/", "fingerprint123")
    assert key == "duffel@http://duffel.test#fingerprint123"
    first = limiter_for(key, limit)
    assert limiter_for(key, limit) is first
    tighter = RateLimit(requests=2, window_seconds=1)
    assert limiter_for(key, tighter) is first and first.limit == tighter


def test_transport_counts_token_requests_and_releases_on_errors() -> None:
    clock = FakeClock()
    limiter = ClientRateLimiter(RateLimit(requests=1, window_seconds=10), "t", clock=clock)

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    transport = RateLimitedTransport(httpx.MockTransport(handler), limiter)
    with httpx.Client(transport=transport) as client, pytest.raises(httpx.ConnectError):
        client.get("http://tenant.test/x")
    # The failed request still counts against the window (it may have reached the server).
    with pytest.raises(RateLimitWait):
        limiter.acquire(deadline=clock.now + 1)


def _pair(tmp_path: Path, clock: FakeClock, requests: int = 3) -> list[SharedRateLimiter]:
    """Two limiters on one state file, as two processes of the machine would hold."""
    limit = RateLimit(requests=requests, window_seconds=10)
    path = tmp_path / "quota.json"
    return [SharedRateLimiter(limit, "t", path, clock=clock) for _ in range(2)]


def test_shared_limiters_draw_on_one_budget(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = _pair(tmp_path, clock)
    first.acquire(deadline=clock.now)
    first.acquire(deadline=clock.now)
    second.acquire(deadline=clock.now)
    for limiter in (first, second):
        with pytest.raises(RateLimitWait):
            limiter.acquire(deadline=clock.now)
    clock.now += 1
    second.release()
    with pytest.raises(RateLimitWait) as waited:
        first.acquire(deadline=clock.now + 1)
    # One window after the answer (counted from the end of its 0.1 s slice) a slot frees up.
    assert waited.value.wait_seconds == pytest.approx(10, abs=0.15)
    clock.now += 10.2
    first.acquire(deadline=clock.now)


def test_a_429_seen_by_one_process_holds_the_other(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = _pair(tmp_path, clock, requests=100)
    first.acquire()
    first.release(429, httpx.Headers({"retry-after": "5"}))
    with pytest.raises(RateLimitWait) as waited:
        second.acquire(deadline=clock.now + 1)
    assert waited.value.wait_seconds == pytest.approx(5)
    clock.now += 5
    second.acquire(deadline=clock.now)


def test_a_dead_process_requests_in_flight_count_as_answered(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = _pair(tmp_path, clock, requests=2)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    first.acquire()
    state = json.loads(first.path.read_text())
    # As if the request had been sent by a process that died before its answer came.
    state["in_flight"] = {str(gone.pid): 2}
    first.path.write_text(json.dumps(state))
    with pytest.raises(RateLimitWait) as waited:
        second.acquire(deadline=clock.now + 1)
    # Counted from when it was found gone, for a whole window: never earlier than the server.
    assert waited.value.wait_seconds == pytest.approx(10, abs=0.15)
    assert json.loads(first.path.read_text())["in_flight"] == {}


def test_unreadable_or_last_boot_state_starts_afresh(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = _pair(tmp_path, clock, requests=1)
    first.acquire()
    first.path.write_text('{"boot": ')  # a crash in mid-write
    second.acquire(deadline=clock.now)
    state = json.loads(first.path.read_text())
    state["boot"] = "an earlier boot"
    state["blocked_until"] = clock.now + 3600  # the monotonic clock restarted since
    first.path.write_text(json.dumps(state))
    first.acquire(deadline=clock.now)
    with pytest.raises(RateLimitWait):  # and the fresh state holds again
        second.acquire(deadline=clock.now)


def test_registry_shares_through_the_state_folder_when_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    limit = RateLimit(requests=5, window_seconds=1)
    key = quota_key("tenant", "http://shared.test")
    monkeypatch.delenv(STATE_DIR_ENV, raising=False)
    assert not isinstance(limiter_for(key, limit), SharedRateLimiter)
    monkeypatch.setenv(STATE_DIR_ENV, str(tmp_path))
    shared = limiter_for(key, limit)
    assert isinstance(shared, SharedRateLimiter) and shared.path.parent == tmp_path
    assert limiter_for(key, limit) is shared
    # The file is named by a one-way digest of the key, which holds the credential fingerprint.
    assert "shared.test" not in shared.path.name


def test_a_removed_state_file_is_replaced_for_everyone(tmp_path: Path) -> None:
    clock = FakeClock()
    first, second = _pair(tmp_path, clock, requests=2)
    first.acquire()
    first.release()
    first.path.unlink()  # e.g. the data folder was cleaned while the processes ran
    second.acquire(deadline=clock.now)
    first.acquire(deadline=clock.now)  # counted in the new file, next to second's request
    with pytest.raises(RateLimitWait):
        second.acquire(deadline=clock.now)
