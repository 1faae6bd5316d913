"""Loyalty ledger transactions and member snapshots, one partition per tenant, with their checks."""

import datetime as dt

import dagster as dg

from ingestion import checks
from ingestion.partitions import tenant_partitions
from ingestion.resources import LandingResource, TenantApisResource
from ingestion.sync import RequestCounter, SyncStats, snapshot_members, sync_ledger

GROUP = "loyalty"
LEDGER_KEY = dg.AssetKey(["raw", "loyalty", "ledger_transactions"])
MEMBERS_KEY = dg.AssetKey(["raw", "loyalty", "members"])


def _not_offered(context: dg.AssetExecutionContext, capability: str) -> dg.MaterializeResult:
    message = f"{context.partition_key} offers no {capability}; nothing to land (not a failure)"
    context.log.info(message)
    return dg.MaterializeResult(metadata={"outcome": "not offered", "detail": message, "landed": 0})


def _result(context: dg.AssetExecutionContext, what: str, stats: SyncStats) -> dg.MaterializeResult:
    context.log.info(
        f"{context.partition_key} {what}: fetched {stats.fetched:,}, landed {stats.landed:,}, "
        f"quarantined {stats.quarantined:,}, already landed {stats.already_landed:,} "
        f"in {stats.requests:,} requests, {stats.seconds:.1f} s"
    )
    return dg.MaterializeResult(metadata=stats.metadata())


@dg.asset(
    key=LEDGER_KEY,
    group_name=GROUP,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=1)),
    partitions_def=tenant_partitions,
    kinds={"python", "parquet"},
    description="One row per version of a loyalty ledger transaction (deduction, refund, cashback, "
    "approval request or decision) from the tenant's ledger feed, with the tenant's own auth.",
)
def ledger_transactions(
    context: dg.AssetExecutionContext, tenant_apis: TenantApisResource, landing: LandingResource
) -> dg.MaterializeResult:
    tenant = tenant_apis.tenant(context.partition_key)
    if tenant.capabilities.ledger_feed is None:
        return _not_offered(context, "ledger feed")
    requests = RequestCounter()
    with tenant_apis.loyalty(tenant.id, requests) as client:
        stats = sync_ledger(client, landing.zone(), tenant.id, requests=requests)
    return _result(context, "ledger", stats)


@dg.asset(
    key=MEMBERS_KEY,
    group_name=GROUP,
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=2)),
    partitions_def=tenant_partitions,
    kinds={"python", "parquet"},
    description="One row per member per snapshot: tier, status and balance in loyalty units "
    "(the tenant's loyalty liability at snapshot time). No names or emails.",
)
def members(
    context: dg.AssetExecutionContext, tenant_apis: TenantApisResource, landing: LandingResource
) -> dg.MaterializeResult:
    tenant = tenant_apis.tenant(context.partition_key)
    if tenant.capabilities.member_list is None:
        return _not_offered(context, "member list")
    requests = RequestCounter()
    with tenant_apis.loyalty(tenant.id, requests) as client:
        stats = snapshot_members(client, landing.zone(), tenant.id, requests=requests)
    return _result(context, "members", stats)


@dg.asset_check(
    asset=LEDGER_KEY, description="No transaction version landed twice within a tenant."
)
def ledger_no_duplicate_ids(landing: LandingResource) -> dg.AssetCheckResult:
    return checks.duplicate_ids(
        landing.zone(), "loyalty", "ledger_transactions", ["transaction_id", "updated_at"]
    )


@dg.asset_check(
    asset=LEDGER_KEY, description="Quarantined ledger records stay under 1% of deliveries."
)
def ledger_quarantine_share(landing: LandingResource) -> dg.AssetCheckResult:
    return checks.quarantine_share(landing.zone(), "loyalty", "ledger_transactions")


@dg.asset_check(asset=MEMBERS_KEY, description="No member landed twice in one snapshot.")
def members_no_duplicate_ids(landing: LandingResource) -> dg.AssetCheckResult:
    return checks.duplicate_ids(landing.zone(), "loyalty", "members", ["member_id", "snapshot_at"])
