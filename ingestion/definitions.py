"""Ingestion's jobs, schedules and resources, gathered into one Definitions object."""

import dagster as dg

from ingestion.compaction_job import compact_landing_job
from ingestion.duffel import assets as duffel
from ingestion.loyalty import assets as loyalty
from ingestion.partitions import tenant_partitions
from ingestion.platform import assets as platform
from ingestion.quarantine_job import quarantine_replay_job
from ingestion.resources import LandingResource, TenantApisResource
from settings import get_settings

SETTINGS = get_settings()

# Live mode (the demo): orchestration/live.py's service keeps every tenant's activity flowing, so
# the per-tenant activity schedule stands down and no tenant is synced twice at once.
LIVE = SETTINGS.ingest_live

# Ingestion is I/O-bound and each tenant's rate limiter lives in the process: running a
# run's assets in one process keeps the tenant's limit true across them.
_in_process = dg.in_process_executor

ingest_activity_job = dg.define_asset_job(
    "ingest_activity_job",
    selection=dg.AssetSelection.assets(loyalty.LEDGER_KEY, duffel.ORDERS_KEY, duffel.SEGMENTS_KEY),
    executor_def=_in_process,
    description="Ledger transactions and Duffel orders of one tenant (incremental).",
)
ingest_members_job = dg.define_asset_job(
    "ingest_members_job",
    selection=dg.AssetSelection.assets(loyalty.CAPABILITIES_KEY, loyalty.MEMBERS_KEY),
    executor_def=_in_process,
    description="What one tenant's API offers (capability probes), and a snapshot of its "
    "member balances (from its member list, or balance lookups where it offers none).",
)
ingest_reference_job = dg.define_asset_job(
    "ingest_reference_job",
    selection=dg.AssetSelection.assets(duffel.AIRLINES_KEY, duffel.AIRPORTS_KEY),
    executor_def=_in_process,
    description="Duffel airlines and airports.",
)
ingest_platform_job = dg.define_asset_job(
    "ingest_platform_job",
    selection=dg.AssetSelection.assets(platform.EVENTS_KEY, platform.SEARCHES_KEY),
    executor_def=_in_process,
    description="One tenant's booking events and flight searches from the booking API's "
    "feeds (by cursor).",
)


def _per_tenant_schedule(
    name: str, job, cron: str, *, running: bool = True
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if running else dg.DefaultScheduleStatus.STOPPED
        ),
        description=f"Runs {job.name} for every tenant ({cron}).",
    )
    def per_tenant(context: dg.ScheduleEvaluationContext):
        tick = context.scheduled_execution_time.isoformat()
        for tenant_id in tenant_partitions.get_partition_keys():
            yield dg.RunRequest(run_key=f"{tenant_id}:{tick}", partition_key=tenant_id)

    return per_tenant


ingest_activity_schedule = _per_tenant_schedule(
    "ingest_activity_schedule",
    ingest_activity_job,
    SETTINGS.ingest_activity_cron,
    running=not LIVE,
)
ingest_members_schedule = _per_tenant_schedule(
    "ingest_members_schedule",
    ingest_members_job,
    SETTINGS.ingest_members_cron,
)
# The platform's own records: cheap to read by cursor, so more often than the tenants' APIs.
ingest_platform_schedule = _per_tenant_schedule(
    "ingest_platform_schedule",
    ingest_platform_job,
    SETTINGS.ingest_platform_cron,
    running=not LIVE,
)
# Live mode lands a batch every few seconds: merge them before they pile up.
compact_landing_schedule = _per_tenant_schedule(
    "compact_landing_schedule",
    compact_landing_job,
    SETTINGS.compaction_cron,
)
ingest_reference_schedule = dg.ScheduleDefinition(
    name="ingest_reference_schedule",
    job=ingest_reference_job,
    cron_schedule=SETTINGS.ingest_reference_cron,
    execution_timezone="UTC",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)

defs = dg.Definitions(
    assets=[
        loyalty.capabilities,
        loyalty.ledger_transactions,
        loyalty.members,
        duffel.orders,
        duffel.airlines,
        duffel.airports,
        platform.booking_events,
        platform.flight_searches,
    ],
    asset_checks=[
        loyalty.ledger_no_duplicate_ids,
        loyalty.ledger_quarantine_share,
        loyalty.members_no_duplicate_ids,
        duffel.orders_no_duplicate_ids,
        duffel.orders_quarantine_share,
        platform.booking_events_no_duplicate_ids,
        platform.booking_events_quarantine_share,
        platform.flight_searches_no_duplicate_ids,
        platform.flight_searches_quarantine_share,
    ],
    jobs=[
        ingest_activity_job,
        ingest_members_job,
        ingest_reference_job,
        ingest_platform_job,
        quarantine_replay_job,
        compact_landing_job,
    ],
    schedules=[
        ingest_activity_schedule,
        ingest_members_schedule,
        ingest_platform_schedule,
        ingest_reference_schedule,
        compact_landing_schedule,
    ],
    resources={
        "tenant_apis": TenantApisResource(),
        "booking_api": platform.BookingApiResource(),
        "landing": LandingResource(data_dir=str(SETTINGS.data_dir)),
    },
)
