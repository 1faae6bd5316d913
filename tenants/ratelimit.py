"""Client-side rate limiting shared by every thread of a process, so we never earn a 429 ourselves.

One limiter per upstream quota (a tenant's API, or one Duffel token) lives in a process-wide
registry. It admits a request only while fewer than ``requests`` requests are in flight or
finished within the last ``window_seconds``; counting a request until its answer arrives
(not from when it was sent) keeps every window the SERVER can draw, fixed or sliding, within
the limit. On top of that it obeys the server's own headers: it slows down when the remaining
quota runs low, stops until the reset when it is gone, and waits out a 429's ``Retry-After``.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import httpx

from tenants.redact import get_logger
from tenants.registry import RateLimit

log = get_logger("tenants.ratelimit")

# A request's deadline (time.monotonic()) travels to the transport in the request extensions.
DEADLINE_EXTENSION = "tenants.deadline"
# Tolerance for timer granularity at the server's window edges.
_EDGE_SECONDS = 0.02
# Below this share of the quota left, spread the remaining requests until the reset.
_LOW_WATER_FRACTION = 0.1


@dataclass(frozen=True)
class Refusal:
    """The upstream's last 429 for a quota: what it said, so a later wait can cite it."""

    status: int
    code: str | None
    request_id: str | None


class RateLimitWait(Exception):
    """Waiting for quota would overrun the caller's deadline."""

    def __init__(self, wait_seconds: float, refusal: Refusal | None = None) -> None:
        self.wait_seconds = wait_seconds
        self.refusal = refusal
        super().__init__(f"rate limit quota frees up in {wait_seconds:.2f} s, after the deadline")


def read_refusal(response: httpx.Response) -> Refusal:
    """Code and request id of a 429, from Duffel's envelope or a tenant's ``detail`` body."""
    try:
        body = json.loads(response.read() or b"null")
    except ValueError:
        body = None
    code = request_id = None
    if isinstance(body, dict):
        errors, detail, meta = body.get("errors"), body.get("detail"), body.get("meta")
        if isinstance(errors, list) and errors and isinstance(errors[0], dict):
            code = errors[0].get("code")
        elif isinstance(detail, dict):
            code = detail.get("error")
        if isinstance(meta, dict):
            request_id = meta.get("request_id")
    request_id = request_id or response.headers.get("x-request-id")
    return Refusal(response.status_code, code, request_id)


def _header(headers: Mapping[str, str], *names: str) -> str | None:
    for name in names:
        value = headers.get(name)
        if value is not None:
            return value.strip()
    return None


def _seconds_until(value: str, headers: Mapping[str, str], now: float) -> float | None:
    """Seconds from now until a reset given as unix seconds, delta seconds or an HTTP-date."""
    try:
        number = float(value)
    except ValueError:
        number = None
    if number is not None:
        if not math.isfinite(number):
            return None
        # Unix timestamps are ~1.7e9; anything small is a delta (some APIs send those).
        return number - now if number > 1e9 else number
    try:
        moment = email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None
    # Measure against the server's own Date header when present: immune to clock skew.
    server_now = _header(headers, "date")
    if server_now:
        try:
            return moment - email.utils.parsedate_to_datetime(server_now).timestamp()
        except (TypeError, ValueError, IndexError):
            pass
    return moment - now


def parse_reset(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds until the server's rate-limit window resets (tenant or Duffel header style)."""
    value = _header(headers, "x-ratelimit-reset", "ratelimit-reset")
    if value is None:
        return None
    return _seconds_until(value, headers, time.time() if now is None else now)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds a 429/503 asks us to wait (``Retry-After`` as seconds or HTTP-date)."""
    value = _header(headers, "retry-after")
    if value is None:
        return None
    seconds = _seconds_until(value, headers, time.time() if now is None else now)
    return None if seconds is None else max(seconds, 0.0)


def _parse_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


class ClientRateLimiter:
    """Admits requests for one upstream quota; thread-safe, shared by all clients of the quota."""

    def __init__(
        self, limit: RateLimit, name: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.limit = limit
        self.name = name
        self._clock = clock
        self._cond = threading.Condition()
        self._finished: deque[float] = deque()
        self._in_flight = 0
        self._blocked_until = 0.0  # server said stop (429, or no quota left) until then
        self._next_start = 0.0  # pacing while the server's remaining quota is low
        self.refusal: Refusal | None = None  # the 429 behind the current block, if any

    def reconfigure(self, limit: RateLimit) -> None:
        with self._cond:
            self.limit = limit
            self._cond.notify_all()

    def _wait_needed(self, now: float) -> float | None:
        """Seconds to wait before the next start, 0 to go now, None to wait for a release."""
        horizon = now - self.limit.window_seconds - _EDGE_SECONDS
        while self._finished and self._finished[0] <= horizon:
            self._finished.popleft()
        gate = max(self._blocked_until, self._next_start) - now
        if self._in_flight + len(self._finished) < self.limit.requests:
            return max(gate, 0.0)
        if self._finished:
            return max(gate, self._finished[0] - horizon)
        return None

    def acquire(self, deadline: float | None = None) -> None:
        """Block until a request may start; ``RateLimitWait`` if that is after ``deadline``."""
        with self._cond:
            while True:
                now = self._clock()
                wait = self._wait_needed(now)
                if wait == 0.0:
                    self._in_flight += 1
                    return
                refusal = self.refusal if now < self._blocked_until else None
                if deadline is not None and wait is not None and now + wait > deadline:
                    raise RateLimitWait(wait, refusal)
                if deadline is not None and wait is None and now >= deadline:
                    raise RateLimitWait(self.limit.window_seconds, refusal)
                timeout = wait if wait is not None else None
                if deadline is not None:
                    timeout = min(timeout if timeout is not None else math.inf, deadline - now)
                self._cond.wait(timeout)

    def release(
        self,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
        refusal: Refusal | None = None,
    ) -> None:
        """Record that a request finished (answered or failed) and learn from the answer."""
        with self._cond:
            now = self._clock()
            self._in_flight -= 1
            self._finished.append(now)
            if refusal is not None:
                self.refusal = refusal
            if headers is not None:
                self._observe(now, status, headers)
            self._cond.notify_all()

    def _observe(self, now: float, status: int | None, headers: Mapping[str, str]) -> None:
        reset_in = parse_reset(headers)
        if status == 429:
            wait = parse_retry_after(headers)
            if wait is None:
                wait = reset_in if reset_in is not None else self.limit.window_seconds
            self._blocked_until = max(self._blocked_until, now + max(wait, 0.0))
            log.warning(
                "%s: upstream answered 429; holding all requests for %.2f s", self.name, wait
            )
            return
        remaining = _parse_int(_header(headers, "x-ratelimit-remaining", "ratelimit-remaining"))
        if remaining is None or reset_in is None or reset_in <= 0:
            return
        limit = _parse_int(_header(headers, "x-ratelimit-limit", "ratelimit-limit"))
        limit = limit or self.limit.requests
        if remaining <= 0:
            self._blocked_until = max(self._blocked_until, now + reset_in + _EDGE_SECONDS)
        elif remaining <= max(1, int(limit * _LOW_WATER_FRACTION)):
            # Another client may share this quota: spread what is left over the window.
            self._next_start = max(self._next_start, now + reset_in / (remaining + 1))


_registry: dict[str, ClientRateLimiter] = {}
_registry_lock = threading.Lock()


def credential_fingerprint(value: str) -> str:
    """A short, one-way name for a credential, safe to log and to use as a key."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def quota_key(kind: str, base_url: str, fingerprint: str | None = None) -> str:
    """Registry key for one upstream quota: a service, and the credential it is counted by."""
    key = f"{kind}@{base_url.rstrip('/')}"
    return f"{key}#{fingerprint}" if fingerprint else key


def limiter_for(key: str, limit: RateLimit) -> ClientRateLimiter:
    """The process-wide limiter for ``key``, created on first use; a changed limit applies."""
    with _registry_lock:
        limiter = _registry.get(key)
        if limiter is None:
            limiter = _registry[key] = ClientRateLimiter(limit, name=key.split("#", 1)[0])
        elif limiter.limit != limit:
            limiter.reconfigure(limit)
        return limiter


def fit_to_deadline(request: httpx.Request) -> None:
    """Cut every timeout of ``request`` to what is left of its call's deadline.

    Token and session requests are made inside the auth flow, where httpx applies no
    timeout of its own; they carry the deadline of the call that needed them, so no request
    of a call (the first, a retry, a token fetch, a replay after a refresh) outlives it.
    """
    deadline = request.extensions.get(DEADLINE_EXTENSION)
    if deadline is None:
        return
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise httpx.PoolTimeout(
            "the call's time budget was spent before this request could start", request=request
        )
    timeout = dict(request.extensions.get("timeout") or {})
    for part in ("connect", "read", "write", "pool"):
        value = timeout.get(part)
        timeout[part] = remaining if value is None else min(value, remaining)
    request.extensions["timeout"] = timeout


class RateLimitedTransport(httpx.BaseTransport):
    """Wraps a transport so every request, token requests included, passes the limiter
    and ends by its call's deadline."""

    def __init__(self, inner: httpx.BaseTransport, limiter: ClientRateLimiter) -> None:
        self.inner = inner
        self.limiter = limiter

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.limiter.acquire(request.extensions.get(DEADLINE_EXTENSION))
        try:
            fit_to_deadline(request)
            response = self.inner.handle_request(request)
        except BaseException:
            self.limiter.release()
            raise
        # A 429's body is small; its code and request id explain every wait it causes.
        refusal = read_refusal(response) if response.status_code == 429 else None
        self.limiter.release(response.status_code, response.headers, refusal)
        return response

    def close(self) -> None:
        self.inner.close()
