"""Client-side rate limiting shared by every thread (and, when asked, every process), so we never
earn a 429 ourselves.

One limiter per upstream quota (a tenant's API, or one Duffel token) lives in a process-wide
registry; with ``RATE_LIMIT_STATE_DIR`` set, its state lives in a locked file in that folder, so
every process of the machine naming the folder (the booking API's workers) shares one budget.

A limiter admits a request only while fewer than ``requests`` requests are in flight or
finished within the last ``window_seconds``; counting a request until its answer arrives
(not from when it was sent) keeps every window the SERVER can draw, fixed or sliding, within
the limit. On top of that it obeys the server's own headers: it slows down when the remaining
quota runs low, stops until the reset when it is gone, and waits out a 429's ``Retry-After``.

Why this is not the ``limits`` library: its
shared counters live in a server (Redis, Memcached, MongoDB), while the booking API's workers
share these limiters through a locked file with no server to run (the API's inbound limit
counts in its own store for the same reason); it counts a hit when it is taken, while here a
request counts until its answer arrives; and it neither waits for a slot nor reads the
server's remaining-quota, reset and Retry-After headers. What would be left of it here is the
window's deque.
"""

from __future__ import annotations

import email.utils
import fcntl
import hashlib
import json
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import httpx

from clients.redact import get_logger
from tenants.registry import RateLimit
from tenants.settings import env_value

log = get_logger("clients.ratelimit")

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
        # [when answered, how many]: answers counted until one window after they arrived.
        self._finished: deque[list[float]] = deque()
        self._finished_total = 0
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
        while self._finished and self._finished[0][0] <= horizon:
            self._finished_total -= int(self._finished.popleft()[1])
        gate = max(self._blocked_until, self._next_start) - now
        if self._in_flight + self._finished_total < self.limit.requests:
            return max(gate, 0.0)
        if self._finished:
            return max(gate, self._finished[0][0] - horizon)
        return None

    def _finish_time(self, now: float) -> float:
        """When an answer at ``now`` is counted from (exact here; shared state rounds up)."""
        return now

    def _record_finished(self, when: float, count: int = 1) -> None:
        """Count ``count`` answers from ``when``; a later last entry absorbs them (counts longer)."""
        if self._finished and self._finished[-1][0] >= when:
            self._finished[-1][1] += count
        else:
            self._finished.append([when, count])
        self._finished_total += count

    def acquire(self, deadline: float | None = None) -> None:
        """Block until a request may start; ``RateLimitWait`` if that is after ``deadline``."""
        with self._cond:
            while True:
                with self._state():
                    now = self._clock()
                    wait = self._wait_needed(now)
                    if wait == 0.0:
                        self._count_start()
                        return
                # The 429 behind a hold is known only to the process that got it.
                refusal = self.refusal if now < self._blocked_until else None
                if deadline is not None and wait is not None and now + wait > deadline:
                    raise RateLimitWait(wait, refusal)
                if deadline is not None and wait is None and now >= deadline:
                    raise RateLimitWait(self.limit.window_seconds, refusal)
                timeout = wait if wait is not None else self._idle_wait
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
            with self._state():
                now = self._clock()
                self._count_end()
                self._record_finished(self._finish_time(now))
                if refusal is not None:
                    self.refusal = refusal
                if headers is not None:
                    self._observe(now, status, headers)
            self._cond.notify_all()

    # How long to sleep when only another request's end frees a slot: this process is woken
    # by its own releases; a limiter shared across processes must poll (see the subclass).
    _idle_wait: float | None = None

    def _state(self) -> AbstractContextManager[None]:
        """Where the budget's state lives while it is read and changed (this object here)."""
        return nullcontext()

    def _count_start(self) -> None:
        self._in_flight += 1

    def _count_end(self) -> None:
        self._in_flight -= 1

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


# Why not the ``limits`` library here: its storages are in memory (per process) or servers
# (Redis, Memcached, MongoDB, etcd), none a local file, and it counts a request when it is sent,
# not until its answer arrives, and cannot hold everyone on a 429's ``Retry-After``. One small
# locked file per quota keeps this limiter's rules exactly and needs no server.

# Names the folder of shared limiter state; every process naming the same one shares one budget.
STATE_DIR_ENV = "RATE_LIMIT_STATE_DIR"
# Answers are counted in time slices this share of the window wide, rounded up (so a little
# longer, never shorter): the shared state stays a few hundred entries at any limit.
_SLICES_PER_WINDOW = 100
# How often a waiter looks again while every slot is taken by requests still in flight, which
# another process may answer at any moment.
_POLL_SECONDS = 0.02


def _boot_id() -> str:
    """Names this boot: ``time.monotonic()`` restarts at boot, so older state means nothing."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process, alive
        return True
    return True


class SharedRateLimiter(ClientRateLimiter):
    """A limiter whose budget is shared by every process naming the same state file.

    The state (answers in the window, requests in flight per process, the server's holds) lives
    in one small JSON file, read and rewritten under an exclusive ``fcntl.flock`` at every
    acquire and release, so it is never torn. The clock is ``time.monotonic()``, one clock for
    every process of the machine; the file must be on a local disk. A crashed process's
    requests in flight are counted as answered when it is found gone.
    """

    def __init__(
        self,
        limit: RateLimit,
        name: str,
        path: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(limit, name, clock)
        self.path = path
        self._boot = _boot_id()
        self._by_pid: dict[int, int] = {}
        self._fd: int | None = None
        self._fd_pid = 0
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _locked_fd(self) -> int:
        """The state file, open and exclusively locked by this process."""
        while True:
            # A forked child must not reuse its parent's descriptor: they would share the lock.
            if self._fd is None or self._fd_pid != os.getpid():
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
                self._fd_pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
            try:
                if os.stat(self.path).st_ino == os.fstat(self._fd).st_ino:
                    return self._fd
            except FileNotFoundError:
                pass
            # The file was removed or replaced since we opened it: everyone else uses the new one.
            os.close(self._fd)
            self._fd = None

    @contextmanager
    def _shared(self) -> Iterator[None]:
        """Load the shared state into this object, and write it back when the block ends."""
        fd = self._locked_fd()
        try:
            size = os.fstat(fd).st_size
            self._load(os.pread(fd, size, 0).decode("utf-8", "replace") if size else "")
            yield
            data = self._dump().encode()
            os.pwrite(fd, data, 0)
            os.ftruncate(fd, len(data))
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)

    def _load(self, text: str) -> None:
        now = self._clock()
        self._finished.clear()
        self._finished_total = 0
        self._by_pid = {}
        self._blocked_until = self._next_start = 0.0
        if not text:
            return
        try:
            state = json.loads(text)
            if state["boot"] != self._boot:
                return
            for when, count in state["finished"]:
                self._record_finished(float(when), int(count))
            by_pid = {int(pid): int(count) for pid, count in state["in_flight"].items()}
            self._blocked_until = float(state["blocked_until"])
            self._next_start = float(state["next_start"])
        except (ValueError, KeyError, TypeError) as exc:
            # Only a crash mid-write can leave this; an empty budget is the safe way on.
            log.warning(
                "%s: unreadable shared rate-limit state (%s); starting afresh", self.name, exc
            )
            return
        me = os.getpid()
        for pid, count in by_pid.items():
            if count <= 0:
                continue
            if pid == me or _alive(pid):
                self._by_pid[pid] = count
            else:  # its requests may have reached the server: count them as answered now
                self._record_finished(self._finish_time(now), count)
        self._in_flight = sum(self._by_pid.values())

    def _dump(self) -> str:
        return json.dumps(
            {
                "boot": self._boot,
                "finished": list(self._finished),
                "in_flight": {str(pid): count for pid, count in self._by_pid.items() if count},
                "blocked_until": self._blocked_until,
                "next_start": self._next_start,
            }
        )

    def _finish_time(self, now: float) -> float:
        slice_seconds = max(self.limit.window_seconds / _SLICES_PER_WINDOW, 0.001)
        return math.ceil(now / slice_seconds) * slice_seconds

    _idle_wait = _POLL_SECONDS

    def _state(self) -> AbstractContextManager[None]:
        return self._shared()

    def _count_start(self) -> None:
        pid = os.getpid()
        self._by_pid[pid] = self._by_pid.get(pid, 0) + 1

    def _count_end(self) -> None:
        pid = os.getpid()
        self._by_pid[pid] = max(self._by_pid.get(pid, 0) - 1, 0)


_registry: dict[tuple[str, str | None], ClientRateLimiter] = {}
_registry_lock = threading.Lock()


def credential_fingerprint(value: str) -> str:
    """A short, one-way name for a credential, safe to log and to use as a key."""
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def quota_key(kind: str, base_url: str, fingerprint: str | None = None) -> str:
    """Registry key for one upstream quota: a service, and the credential it is counted by."""
    key = f"{kind}@{base_url.rstrip('/')}"
    return f"{key}#{fingerprint}" if fingerprint else key


def limiter_for(key: str, limit: RateLimit) -> ClientRateLimiter:
    """The limiter for ``key``, created on first use; a changed limit applies.

    Process-wide by default; shared with every process of the machine when the setting
    ``RATE_LIMIT_STATE_DIR`` names a folder (the booking API's workers all name one).
    """
    state_dir = env_value(STATE_DIR_ENV) or None
    with _registry_lock:
        limiter = _registry.get((key, state_dir))
        if limiter is None:
            name = key.split("#", 1)[0]
            if state_dir:
                path = Path(state_dir) / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.json"
                limiter = SharedRateLimiter(limit, name, path)
            else:
                limiter = ClientRateLimiter(limit, name)
            _registry[(key, state_dir)] = limiter
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
