"""Duffel orders and segments per tenant (its own token), airlines and airports, with their checks."""

import datetime as dt

import dagster as dg

from ingestion import checks
from ingestion.partitions import tenant_partitions
from ingestion.resources import LandingResource, TenantApisResource
from ingestion.sync import RequestCounter, snapshot_reference, sync_orders
from tenants.settings import get_registry

GROUP = "duffel"
ORDERS_KEY = dg.AssetKey(["raw", "duffel", "orders"])
SEGMENTS_KEY = dg.AssetKey(["raw", "duffel", "order_segments"])
AIRLINES_KEY = dg.AssetKey(["raw", "duffel", "airlines"])
AIRPORTS_KEY = dg.AssetKey(["raw", "duffel", "airports"])


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            ORDERS_KEY,
            freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=1)),
            group_name=GROUP,
            kinds={"python", "parquet"},
            description="One row per version of a Duffel order in the tenant's organisation: "
            "PNR, route, cabin, passenger count, totals, payment, cancellation and the "
            "booking metadata our platform attached.",
        ),
        dg.AssetSpec(
            SEGMENTS_KEY,
            group_name=GROUP,
            kinds={"python", "parquet"},
            description="One row per flight segment of a Duffel order version, with local "
            "and UTC departure and arrival times.",
        ),
    ],
    partitions_def=tenant_partitions,
    can_subset=False,
)
def orders(
    context: dg.AssetExecutionContext, tenant_apis: TenantApisResource, landing: LandingResource
):
    tenant_id = context.partition_key
    requests = RequestCounter()
    with tenant_apis.duffel(tenant_id, requests) as client:
        stats = sync_orders(client, landing.zone(), tenant_id, requests=requests)
    context.log.info(
        f"{tenant_id} orders: fetched {stats.fetched:,}, landed {stats.landed:,} new versions, "
        f"quarantined {stats.quarantined:,}, unchanged {stats.already_landed:,} "
        f"in {stats.requests:,} requests, {stats.seconds:.1f} s"
    )
    yield dg.MaterializeResult(asset_key=ORDERS_KEY, metadata=stats.metadata())
    yield dg.MaterializeResult(asset_key=SEGMENTS_KEY, metadata={"order_versions": stats.landed})


def _reference(entity: str, key: dg.AssetKey, grain: str):
    @dg.asset(
        key=key,
        freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(days=2)),
        group_name=GROUP,
        kinds={"python", "parquet"},
        description=f"One row per {grain} in Duffel's reference data (snapshot).",
    )
    def reference(
        context: dg.AssetExecutionContext, tenant_apis: TenantApisResource, landing: LandingResource
    ) -> dg.MaterializeResult:
        # Reference data is the same for every organisation: read it with the first tenant's token.
        tenant_id = sorted(get_registry())[0]
        requests = RequestCounter()
        with tenant_apis.duffel(tenant_id, requests) as client:
            stats = snapshot_reference(client, landing.zone(), entity, requests=requests)
        context.log.info(f"{entity}: landed {stats.landed:,} in {stats.requests} requests")
        return dg.MaterializeResult(metadata=stats.metadata())

    return reference


airlines = _reference("airlines", AIRLINES_KEY, "airline")
airports = _reference("airports", AIRPORTS_KEY, "airport")


@dg.asset_check(asset=ORDERS_KEY, description="No order version landed twice within a tenant.")
def orders_no_duplicate_ids(landing: LandingResource) -> dg.AssetCheckResult:
    return checks.duplicate_ids(landing.zone(), "duffel", "orders", ["order_id", "version_at"])


@dg.asset_check(asset=ORDERS_KEY, description="Quarantined orders stay under 1% of deliveries.")
def orders_quarantine_share(landing: LandingResource) -> dg.AssetCheckResult:
    return checks.quarantine_share(landing.zone(), "duffel", "orders")
