"""The booking API's way to its upstreams: one loyalty and one Duffel client per tenant.

Everything goes through ``tenants/``; this only keeps the clients (and their shared,
per-process rate limiters) alive between requests, and times every call made through them
so a response can say how much of its latency was spent waiting on upstreams
(``Server-Timing``), which separates the API's own overhead from its upstreams'.
"""

from __future__ import annotations

import contextvars
import functools
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar, cast

from clients.duffel.client import DuffelClient, build_duffel_client
from clients.loyalty.client import LoyaltyClient, build_loyalty_client
from tenants.registry import TenantConfig

T = TypeVar("T")


class RequestTiming:
    """Upstream time of one request; shared by reference with the threads serving it."""

    __slots__ = ("_lock", "upstream_seconds")

    def __init__(self) -> None:
        self.upstream_seconds = 0.0
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self.upstream_seconds += seconds


# Set by the request middleware; a copied context (thread pool, task) sees the same object.
request_timing: contextvars.ContextVar[RequestTiming | None] = contextvars.ContextVar(
    "request_timing", default=None
)


def _charge(started: float) -> None:
    timing = request_timing.get()
    if timing is not None:
        timing.add(time.perf_counter() - started)


def timed(call: Callable[..., T]) -> Callable[..., T]:
    """``call`` with its duration (rate-limit waits and retries included) counted as upstream."""

    @functools.wraps(call)
    def run(*args: Any, **kwargs: Any) -> T:
        started = time.perf_counter()
        try:
            result = call(*args, **kwargs)
        finally:
            _charge(started)
        if isinstance(result, Iterator):
            return cast(T, _timed_pages(result))
        return result

    return run


def _timed_pages(pages: Iterator[Any]) -> Iterator[Any]:
    # Paged reads call the upstream lazily, page by page: time each page's fetch.
    while True:
        started = time.perf_counter()
        try:
            page = next(pages)
        except StopIteration:
            return
        finally:
            _charge(started)
        yield page


class _Timed:
    """A client whose public method calls are timed as upstream; all else passes through."""

    def __init__(self, client: object) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._client, name)
        if name.startswith("_") or not callable(value):
            return value
        return timed(value)


class Upstreams:
    """Lazily built, cached clients per tenant (thread-safe)."""

    def __init__(
        self,
        *,
        loyalty_factory: Callable[[TenantConfig], LoyaltyClient] = build_loyalty_client,
        duffel_factory: Callable[[TenantConfig], DuffelClient] = build_duffel_client,
    ) -> None:
        self._loyalty_factory = loyalty_factory
        self._duffel_factory = duffel_factory
        self._loyalty: dict[str, LoyaltyClient] = {}
        self._duffel: dict[str, DuffelClient] = {}
        self._lock = threading.Lock()

    def loyalty(self, tenant: TenantConfig) -> LoyaltyClient:
        with self._lock:
            client = self._loyalty.get(tenant.id)
            if client is None:
                client = self._loyalty[tenant.id] = self._loyalty_factory(tenant)
        return cast(LoyaltyClient, _Timed(client))

    def duffel(self, tenant: TenantConfig) -> DuffelClient:
        with self._lock:
            client = self._duffel.get(tenant.id)
            if client is None:
                client = self._duffel[tenant.id] = self._duffel_factory(tenant)
        return cast(DuffelClient, _Timed(client))

    def close(self) -> None:
        with self._lock:
            for client in [*self._loyalty.values(), *self._duffel.values()]:
                client.close()
            self._loyalty.clear()
            self._duffel.clear()
