"""Loyalty ledger transactions, member snapshots and the tenant's capabilities, one partition
per tenant, with their checks."""

import datetime as dt

import dagster as dg

from clients.loyalty.client import CapabilityProbe
from ingestion import checks
from ingestion.loyalty import capabilities as facts
from ingestion.loyalty.lookups import lookup_limit, members_to_look_up, snapshot_balances
from ingestion.partitions import tenant_partitions
from ingestion.platform.assets import EVENTS_KEY
from ingestion.resources import LandingResource, TenantApisResource
from ingestion.sync import RequestCounter, SyncStats, snapshot_members, sync_ledger

GROUP = "loyalty"
LEDGER_KEY = dg.AssetKey(["raw", "loyalty", "ledger_transactions"])
MEMBERS_KEY = dg.AssetKey(["raw", "loyalty", "members"])
CAPABILITIES_KEY = dg.AssetKey(["raw", "loyalty", "capabilities"])


def _not_offered(
    context: dg.AssetExecutionContext, capability: str, why: str = "not declared in its file"
) -> dg.MaterializeResult:
    message = f"{context.partition_key} offers no {capability} ({why}); nothing to land"
    context.log.info(message)
    return dg.MaterializeResult(metadata={"outcome": "not offered", "detail": message, "landed": 0})


def _probed(
    context: dg.AssetExecutionContext,
    tenant_apis: TenantApisResource,
    landing: LandingResource,
    capability: str,
) -> CapabilityProbe | None:
    """Ask the tenant's API for one capability and land the answer (None: not declared)."""
    tenant_id = context.partition_key
    with tenant_apis.loyalty(tenant_id, RequestCounter()) as client:
        probe = client.probe(capability)
    if probe is not None:
        facts.land_probes(landing.zone(), tenant_id, [probe])
        context.log.info(f"{tenant_id} {capability}: {facts.metadata([probe])[capability]}")
    return probe


def _result(context: dg.AssetExecutionContext, what: str, stats: SyncStats) -> dg.MaterializeResult:
    context.log.info(f"{context.partition_key} {what}: {stats.summary()}")
    return dg.MaterializeResult(metadata=stats.metadata())


@dg.asset(
    key=CAPABILITIES_KEY,
    group_name=GROUP,
    partitions_def=tenant_partitions,
    kinds={"python", "parquet"},
    description="One row per probe of a capability the tenant's file declares (ledger feed, "
    "member list, refunds, partner session): offered or not, as the tenant's API answered.",
)
def capabilities(
    context: dg.AssetExecutionContext, tenant_apis: TenantApisResource, landing: LandingResource
) -> dg.MaterializeResult:
    tenant_id = context.partition_key
    requests = RequestCounter()
    with tenant_apis.loyalty(tenant_id, requests) as client:
        probes = facts.probe_all(client)
    facts.land_probes(landing.zone(), tenant_id, probes)
    found = facts.metadata(probes)
    for capability, answer in found.items():
        context.log.info(f"{tenant_id} {capability}: {answer}")
    return dg.MaterializeResult(
        metadata={
            **found,
            "offered": ", ".join(p.capability for p in probes if p.offered) or "none",
            "not_offered": ", ".join(p.capability for p in probes if not p.offered) or "none",
            "requests": requests.count,
        }
    )


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
    probe = _probed(context, tenant_apis, landing, "ledger_feed")
    if probe is None:
        return _not_offered(context, "ledger feed")
    if not probe.offered:
        return _not_offered(context, "ledger feed", probe.detail)
    requests = RequestCounter()
    with tenant_apis.loyalty(tenant.id, requests) as client:
        stats = sync_ledger(client, landing.zone(), tenant.id, requests=requests)
    return _result(context, "ledger", stats)


@dg.asset(
    key=MEMBERS_KEY,
    group_name=GROUP,
    deps=[EVENTS_KEY],
    freshness_policy=dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=2)),
    partitions_def=tenant_partitions,
    kinds={"python", "parquet"},
    description="One row per member per snapshot: tier, status and balance in loyalty units "
    "(the tenant's loyalty liability at snapshot time), from the tenant's member list or, where "
    "it offers none, from balance lookups of the members the booking events name (source "
    "says which). No names or emails.",
)
def members(
    context: dg.AssetExecutionContext, tenant_apis: TenantApisResource, landing: LandingResource
) -> dg.MaterializeResult:
    tenant = tenant_apis.tenant(context.partition_key)
    probe = _probed(context, tenant_apis, landing, "member_list")
    requests = RequestCounter()
    if probe is not None and probe.offered:
        with tenant_apis.loyalty(tenant.id, requests) as client:
            stats = snapshot_members(client, landing.zone(), tenant.id, requests=requests)
        result = _result(context, "members from the member list", stats)
        return dg.MaterializeResult(metadata={**result.metadata, "source": "member_list"})
    zone = landing.zone()
    known = members_to_look_up(zone, tenant.id)
    budget = lookup_limit(tenant)
    with tenant_apis.loyalty_lookups(tenant.id, requests, budget) as client:
        stats = snapshot_balances(
            client, zone, tenant.id, known, max_requests=budget.requests, requests=requests
        )
    result = _result(context, "members from balance lookups", stats)
    why = "not declared in its file" if probe is None else probe.detail
    return dg.MaterializeResult(
        metadata={
            **result.metadata,
            "source": "balance_lookup",
            "member_list": f"not offered: {why}",
            "known_members": len(known),
            "looked_up": stats.fetched,
            "not_reached_this_run": len(known) - stats.fetched,
            "request_budget": f"{budget.requests} per {budget.window_seconds:g} s",
        }
    )


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
