"""Whether the service can take bookings: the store, Duffel and each tenant's API."""

from __future__ import annotations

import threading
import time
from typing import Any

from booking.store.uow import Store
from clients.health import probe_duffel, probe_loyalty
from tenants.registry import TenantConfig

# Probes are cached this long so health checks cannot flood the upstreams.
CACHE_SECONDS = 10.0


class HealthChecker:
    """Probes with a short cache; ``can_book`` needs the store and Duffel."""

    def __init__(self, store: Store, registry: dict[str, TenantConfig]) -> None:
        self.store = store
        self.registry = registry
        self._cached: tuple[float, dict[str, Any]] | None = None
        self._lock = threading.Lock()

    def check(self) -> dict[str, Any]:
        with self._lock:
            if self._cached and time.monotonic() - self._cached[0] < CACHE_SECONDS:
                return self._cached[1]
        try:
            self.store.ping()
            store = {"status": "up", "backend": self.store.dialect}
        except Exception as exc:  # any store failure means "down"; the type is enough to say
            store = {"status": "down", "detail": type(exc).__name__}
        tenants = {}
        duffel_up = False
        duffel_detail = "no tenants"
        for tenant in self.registry.values():
            up, detail = probe_loyalty(tenant)
            tenants[tenant.id] = {"status": "up" if up else "down", "detail": detail}
            if not duffel_up:
                duffel_up, duffel_detail = probe_duffel(tenant)
        can_book = (
            store["status"] == "up"
            and duffel_up
            and any(t["status"] == "up" for t in tenants.values())
        )
        report = {
            "status": "healthy"
            if can_book and all(t["status"] == "up" for t in tenants.values())
            else ("degraded" if can_book else "unhealthy"),
            "can_book": can_book,
            "store": store,
            "duffel": {"status": "up" if duffel_up else "down", "detail": duffel_detail},
            "tenants": tenants,
        }
        with self._lock:
            self._cached = (time.monotonic(), report)
        return report
