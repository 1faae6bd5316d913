"""Dagster resources: where landing lives, and each tenant's API clients.

Tenant secrets are not resource fields: each tenant's YAML names the environment
variables that hold them, and the clients read them when built at run time. So they
never appear in run configuration or in the UI, and a new tenant needs no new field.
"""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from clients.duffel.client import DuffelClient, build_duffel_client
from clients.http import RetryPolicy
from clients.loyalty.client import LoyaltyClient, build_loyalty_client
from ingestion.landing.zone import LandingZone
from ingestion.sync import RequestCounter
from tenants.registry import RateLimit, TenantConfig, load_registry
from tenants.settings import get_registry


class LandingResource(dg.ConfigurableResource):
    """The landing zone and quarantine under the project's data folder."""

    data_dir: str = "data"

    def zone(self) -> LandingZone:
        return LandingZone.under(Path(self.data_dir))


class TenantApisResource(dg.ConfigurableResource):
    """Builds a tenant's loyalty and Duffel clients with that tenant's own credentials."""

    tenants_dir: str | None = None  # another registry folder (default: the deployment's)

    def tenant(self, tenant_id: str) -> TenantConfig:
        registry = load_registry(Path(self.tenants_dir)) if self.tenants_dir else get_registry()
        return registry[tenant_id]

    def loyalty(self, tenant_id: str, requests: RequestCounter) -> LoyaltyClient:
        tenant = self.tenant(tenant_id)
        return build_loyalty_client(
            tenant, retry=_patient(tenant.rate_limit), event_hooks={"response": [requests]}
        )

    def loyalty_lookups(
        self, tenant_id: str, requests: RequestCounter, budget: RateLimit
    ) -> LoyaltyClient:
        """A loyalty client whose requests take at most ``budget`` (a share of the tenant's
        limit, shared by every process like the tenant's own) of the tenant's quota."""
        tenant = self.tenant(tenant_id)
        return build_loyalty_client(
            tenant,
            retry=_patient(budget),
            event_hooks={"response": [requests]},
            budget=budget,
            budget_name="balance_lookups",
        )

    def duffel(self, tenant_id: str, requests: RequestCounter) -> DuffelClient:
        tenant = self.tenant(tenant_id)
        return build_duffel_client(
            tenant, retry=_patient(tenant.duffel.rate_limit), event_hooks={"response": [requests]}
        )


def _patient(limit: RateLimit) -> RetryPolicy:
    # A long pull at the real limit waits up to a whole window for its next slot; a call's
    # budget must outlast that wait, or a backfill fails on its own limiter.
    return RetryPolicy(max_elapsed_seconds=limit.window_seconds + 30)
