"""The request loop every client shares: bounded retries with jittered backoff (tenacity), typed errors, one log line per attempt.

What is retried depends on what a repeat could do: a read is retried on any transient
failure; a write that moves money (a deduction, a refund, a Duffel order or payment) only
when the upstream certainly did not act on it (connection refused, 429, 503).
"""

from __future__ import annotations

import enum
import json
import random
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx
import tenacity

from clients.errors import (
    LOYALTY_ERRORS,
    ErrorFamily,
    RateLimited,
    UpstreamError,
    decode_body,
)
from clients.ratelimit import (
    DEADLINE_EXTENSION,
    ClientRateLimiter,
    RateLimitedTransport,
    RateLimitWait,
    parse_retry_after,
)
from clients.redact import get_logger

log = get_logger("clients.http")

# A request under this much remaining budget is not worth starting.
_MIN_ATTEMPT_SECONDS = 0.05
CONNECT_TIMEOUT_SECONDS = 5.0


class Safety(enum.Enum):
    """What repeating a request could do upstream, which decides what may be retried."""

    READ = "read"  # no effect: retry every transient failure, 500/502 included
    WRITE = "write"  # an effect without money (approval check, offer search): not on 500/502
    MONEY = "money"  # moves money or books: only when the upstream surely did not act


@dataclass(frozen=True)
class Route:
    """One upstream operation: method, path template (what we log) and its retry safety."""

    method: str
    template: str
    safety: Safety

    def path(self, params: Mapping[str, str] | None = None) -> str:
        if not params:
            return self.template
        return self.template.format(**{k: quote(str(v), safe="") for k, v in params.items()})

    @property
    def label(self) -> str:
        return f"{self.method} {self.template}"


@dataclass(frozen=True)
class RetryPolicy:
    """The budget of one logical call: attempts, total seconds, and the backoff curve."""

    max_attempts: int = 4
    max_elapsed_seconds: float = 30.0
    base_delay_seconds: float = 0.25
    max_delay_seconds: float = 8.0

    def backoff(self, attempt: int) -> float:
        """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
        ceiling = min(self.max_delay_seconds, self.base_delay_seconds * 2 ** (attempt - 1))
        return random.uniform(0.0, ceiling)


class _Retry(Exception):
    """A failed attempt worth repeating: the typed failure, and the upstream's Retry-After."""

    def __init__(self, failure: UpstreamError, retry_after: float | None) -> None:
        super().__init__(str(failure))
        self.failure, self.retry_after = failure, retry_after


ErrorMapper = Callable[..., UpstreamError]

_RETRY_ALWAYS = {429, 503}
_RETRY_UNLESS_MONEY = {504}
_RETRY_READS_ONLY = {500, 502}
# Failures before a byte of the request reached the upstream: always safe to repeat.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


def _failed_before(exc: httpx.TransportError, call: httpx.Request) -> httpx.Request | None:
    """The token/session request that failed on the way to ``call``, if that is what failed."""
    try:
        failed = exc.request
    except RuntimeError:  # httpx attaches the request only where it sent one
        return None
    return failed if failed is not call else None


def _retryable_status(status: int, safety: Safety) -> bool:
    if status in _RETRY_ALWAYS:
        return True
    if status in _RETRY_UNLESS_MONEY:
        return safety is not Safety.MONEY
    if status in _RETRY_READS_ONLY:
        return safety is Safety.READ
    return False


def encode_json(value: Any) -> bytes:
    """JSON with Decimals written as numbers from their exact text, never via float."""
    return _encode(value).encode()


def _encode(value: Any) -> str:
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"{value} is not a finite amount")
        return format(value, "f")
    if isinstance(value, Mapping):
        return "{" + ",".join(f"{json.dumps(str(k))}:{_encode(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(map(_encode, value)) + "]"
    return json.dumps(value)


class RequestRunner:
    """Sends one logical call through an ``httpx.Client`` within a retry budget."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        tenant: str,
        upstream: str,
        error_mapper: ErrorMapper,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        shape_error: type[UpstreamError] = UpstreamError,
        errors: ErrorFamily = LOYALTY_ERRORS,
        facts: Mapping[str, str] | None = None,
    ) -> None:
        self.http = http
        # Where calls go and which settings they use (names, never values), for advice.
        self.facts = {"base_url": str(http.base_url).rstrip("/"), **(facts or {})}
        # Failures with no answer to map (timeouts, refused connections, a spent quota) are
        # typed by the upstream they concern, so a Duffel outage reads as Duffel's.
        self.errors = errors
        self.tenant = tenant
        self.upstream = upstream
        self.error_mapper = error_mapper
        self.shape_error = shape_error
        self.policy = policy or RetryPolicy()
        self._sleep = sleep

    def send(self, route: Route, **kwargs: Any) -> httpx.Response:
        """The first successful response, or a typed ``UpstreamError`` once the budget is spent."""
        try:
            return self._send(route, **kwargs)
        except UpstreamError as error:
            error.add_facts(**self.facts)
            raise

    def _send(
        self,
        route: Route,
        *,
        path_params: Mapping[str, str] | None = None,
        params: Mapping[str, Any] | None = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
        auth: httpx.Auth | None = None,
        read_timeout: float | None = None,
        error_mapper: ErrorMapper | None = None,
        policy: RetryPolicy | None = None,
    ) -> httpx.Response:
        mapper = error_mapper or self.error_mapper
        policy = policy or self.policy
        deadline = time.monotonic() + policy.max_elapsed_seconds
        path = route.path(path_params)
        content = encode_json(json_body) if json_body is not None else None
        send_headers = dict(headers or {})
        if content is not None:
            send_headers["Content-Type"] = "application/json"
        retried: list[UpstreamError] = []  # failures retried so far, latest last

        def attempt(number: int) -> httpx.Response:
            remaining = deadline - time.monotonic()
            request = self.http.build_request(
                route.method,
                path,
                params=params,
                content=content,
                headers=send_headers,
                timeout=self._timeout(read_timeout, remaining),
                extensions={DEADLINE_EXTENSION: deadline},
            )
            t0 = time.monotonic()
            failure: UpstreamError
            retry_after: float | None = None
            try:
                response = self.http.send(request, auth=auth or httpx.USE_CLIENT_DEFAULT)
            except RateLimitWait as exc:
                self._log(route, "rate-limit-wait", t0, number)
                if retried and isinstance(retried[-1], RateLimited):
                    # This call's own 429 said it all (code, request id); it stands.
                    raise retried[-1] from exc
                raise self._quota_spent(exc, route) from exc
            except UpstreamError as exc:
                # Raised by the auth flow (token/session endpoint); the call itself was not sent.
                exc.not_sent = True
                self._log(route, f"auth-{exc.status}", t0, number)
                if exc.status is None or not _retryable_status(exc.status, Safety.READ):
                    raise
                failure = exc
                retry_after = exc.retry_after if isinstance(exc, RateLimited) else None
            except httpx.TransportError as exc:
                before_call = _failed_before(exc, request)
                self._log(route, type(exc).__name__, t0, number)
                failure = self._transport_failure(exc, route, before_call)
                if (
                    route.safety is Safety.MONEY
                    and before_call is None
                    and not isinstance(exc, _NOT_SENT)
                ):
                    raise failure from exc
            else:
                self._log(route, response.status_code, t0, number)
                if response.is_success:
                    return response
                failure = mapper(response, tenant=self.tenant, endpoint=route.label)
                if not _retryable_status(response.status_code, route.safety):
                    raise failure
                retry_after = parse_retry_after(response.headers)
            retried.append(failure)
            raise _Retry(failure, retry_after)

        def wait(state: tenacity.RetryCallState) -> float:
            # Jittered backoff, but never sooner than the upstream's Retry-After.
            outcome = state.outcome.exception() if state.outcome else None
            retry_after = outcome.retry_after if isinstance(outcome, _Retry) else None
            return max(policy.backoff(state.attempt_number), retry_after or 0.0)

        def stop(state: tenacity.RetryCallState) -> bool:
            # Attempts spent, or the wait would end past the call's deadline.
            return (
                state.attempt_number >= policy.max_attempts
                or time.monotonic() + (state.upcoming_sleep or 0.0) > deadline
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Retry),
            wait=wait,
            stop=stop,
            sleep=self._sleep,
            reraise=True,
        )
        try:
            for trial in retrying:
                with trial:
                    return attempt(trial.retry_state.attempt_number)
        except _Retry as spent:
            raise spent.failure from spent.failure.__cause__
        raise AssertionError("unreachable: tenacity either returns or raises")  # pragma: no cover

    def send_json(self, route: Route, **kwargs: Any) -> Any:
        """Like ``send``, decoding the body with exact decimals."""
        response = self.send(route, **kwargs)
        body = decode_body(response)
        if body is None:
            raise self._with_facts(
                self.shape_error(
                    f"expected a JSON body, got {response.headers.get('content-type', 'no type')}",
                    tenant=self.tenant,
                    endpoint=route.label,
                    status=response.status_code,
                )
            )
        return body

    @contextmanager
    def reading(self, route: Route) -> Iterator[None]:
        """Turn a success body of an unexpected shape into an ``UpstreamError`` naming the call."""
        try:
            yield
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise self._with_facts(
                self.shape_error(
                    f"unexpected response body: {exc!r}",
                    tenant=self.tenant,
                    endpoint=route.label,
                    status=200,
                )
            ) from exc

    def _with_facts(self, error: UpstreamError) -> UpstreamError:
        error.add_facts(**self.facts)
        return error

    def _timeout(self, read_timeout: float | None, remaining: float) -> httpx.Timeout:
        # Never let one attempt outlive the whole call's budget.
        base = self.http.timeout
        read = read_timeout if read_timeout is not None else base.read
        read = min(read if read is not None else remaining, remaining)
        return httpx.Timeout(
            connect=base.connect,
            read=max(read, _MIN_ATTEMPT_SECONDS),
            write=base.write,
            pool=base.pool,
        )

    def _transport_failure(
        self, exc: httpx.TransportError, route: Route, before_call: httpx.Request | None
    ) -> UpstreamError:
        """The typed error for a request that got no answer (timeout or transport error)."""
        text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        if before_call is not None:
            # The token/session request failed: the call itself never left this process.
            text = (
                f"{text} on {before_call.method} {before_call.url.path}, the request for the "
                "credentials this call needs (the call itself was not sent)"
            )
        elif route.safety is Safety.MONEY and not isinstance(exc, _NOT_SENT):
            text += " (the upstream may have acted on it; not retried)"
        timed_out = isinstance(exc, httpx.TimeoutException)
        cls = self.errors.timeout if timed_out else self.errors.unavailable
        error = cls(text, tenant=self.tenant, endpoint=route.label)
        error.not_sent = before_call is not None or isinstance(exc, _NOT_SENT)
        error.__cause__ = exc  # kept when the budget runs out
        return error

    def _quota_spent(self, wait: RateLimitWait, route: Route) -> RateLimited:
        """No request sent: the quota frees up after the deadline (cites the 429 that said so)."""
        refusal = wait.refusal
        text = f"not sent: {wait}"
        if refusal is not None:
            text += f" (the upstream answered {refusal.status} to an earlier request)"
        error = self.errors.rate_limited(
            text,
            tenant=self.tenant,
            endpoint=route.label,
            retry_after=wait.wait_seconds,
            status=refusal.status if refusal else None,
            code=refusal.code if refusal else None,
            request_id=refusal.request_id if refusal else None,
        )
        error.not_sent = True
        return error

    def _log(self, route: Route, status: int | str, t0: float, attempt: int) -> None:
        latency_ms = (time.monotonic() - t0) * 1000
        log.info(
            "%s %s %s %s -> %s in %.1f ms (attempt %d)",
            self.tenant,
            self.upstream,
            route.method,
            route.template,
            status,
            latency_ms,
            attempt,
            extra={
                "tenant": self.tenant,
                "upstream": self.upstream,
                "method": route.method,
                "path": route.template,
                "status": status,
                "latency_ms": round(latency_ms, 1),
                "attempt": attempt,
            },
        )


def build_http_client(
    base_url: str,
    *,
    auth: httpx.Auth,
    limiter: ClientRateLimiter,
    read_timeout: float,
    headers: dict[str, str] | None = None,
    transport: httpx.BaseTransport | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
    budget: ClientRateLimiter | None = None,
) -> httpx.Client:
    """An ``httpx.Client`` whose every request (token requests too) passes ``limiter``.

    With ``budget``, a request first passes that limiter too (a share of the quota for one
    kind of work): outside ``limiter``, so waiting for the share holds no slot of the quota.
    """
    limited: httpx.BaseTransport = RateLimitedTransport(transport or httpx.HTTPTransport(), limiter)
    if budget is not None:
        limited = RateLimitedTransport(limited, budget)
    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers={"Accept": "application/json", **(headers or {})},
        timeout=httpx.Timeout(read_timeout, connect=CONNECT_TIMEOUT_SECONDS),
        transport=limited,
        event_hooks=event_hooks,
    )
