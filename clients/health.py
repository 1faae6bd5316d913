"""Quick, single-attempt probes of a tenant's loyalty API and of Duffel, for health checks."""

from __future__ import annotations

import httpx

from clients.duffel.client import build_duffel_client
from clients.errors import UpstreamError
from clients.http import RetryPolicy
from tenants.registry import TenantConfig
from tenants.settings import tenant_base_url

PROBE_RETRY = RetryPolicy(max_attempts=1, max_elapsed_seconds=3.0)


def probe_loyalty(tenant: TenantConfig, timeout: float = 3.0) -> tuple[bool, str]:
    """(up, detail) from the tenant's unauthenticated ``GET /health``."""
    try:
        response = httpx.get(tenant_base_url(tenant) + "/health", timeout=timeout)
    except httpx.HTTPError as exc:
        return False, type(exc).__name__
    return response.is_success, f"HTTP {response.status_code}"


def probe_duffel(tenant: TenantConfig) -> tuple[bool, str]:
    """(up, detail) from one page of one airline with the tenant's own Duffel token."""
    try:
        with build_duffel_client(tenant, retry=PROBE_RETRY) as client:
            next(client.iter_pages("/air/airlines", {"limit": 1}))
    except UpstreamError as exc:
        return False, f"{exc.slug} ({exc.status})"
    return True, "ok"
