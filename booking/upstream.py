"""The booking API's way to its upstreams: one loyalty and one Duffel client per tenant.

Everything goes through ``tenants/``; this only keeps the clients (and their shared,
per-process rate limiters) alive between requests.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from tenants.duffel.client import DuffelClient, build_duffel_client
from tenants.loyalty import LoyaltyClient, build_loyalty_client
from tenants.registry import TenantConfig


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
            return client

    def duffel(self, tenant: TenantConfig) -> DuffelClient:
        with self._lock:
            client = self._duffel.get(tenant.id)
            if client is None:
                client = self._duffel[tenant.id] = self._duffel_factory(tenant)
            return client

    def close(self) -> None:
        with self._lock:
            for client in [*self._loyalty.values(), *self._duffel.values()]:
                client.close()
            self._loyalty.clear()
            self._duffel.clear()
