"""Live mode: one Dagster run that keeps the serving snapshot within seconds of the tenants.

The scheduled path (ingestion per tenant every 15 minutes, then the warehouse automation)
launches a process per run, and each process spends seconds importing Dagster and dbt before
any work. For the demo's promise (a new booking on the dashboard within a minute) this job
instead loops in one run, in micro-batches:

    every tenant's booking events and searches, ledger and orders
        ->  dbt build (incremental)  ->  publish

using the same sync functions as the ingestion assets and the same dbt build and publish as
the warehouse assets (dbt invoked in-process, so its start-up is paid once per run), and
recording each step as a materialization of those assets (tenant partitions included), so
the asset graph in the UI stays true. A run ends after
``LIVE_RUN_MINUTES`` and the live sensor starts the next, so new code is picked up.

Live mode is on when ``INGEST_LIVE=1`` (the demo sets it): the live sensor starts running
and the per-tenant activity schedule and the warehouse automation stand down, so no two
processes sync the same tenant or write the warehouse at once.
"""

import os
import time
from collections.abc import Iterator

import dagster as dg

from clients.errors import UpstreamError
from ingestion.definitions import LIVE
from ingestion.duffel.assets import ORDERS_KEY, SEGMENTS_KEY
from ingestion.loyalty.assets import LEDGER_KEY
from ingestion.loyalty.capabilities import land_probes
from ingestion.partitions import tenant_partitions
from ingestion.platform.assets import EVENTS_KEY, SEARCHES_KEY, BookingApiResource
from ingestion.platform.events import EVENTS_FEED
from ingestion.platform.feed import sync_feed
from ingestion.platform.searches import SEARCHES_FEED
from ingestion.resources import LandingResource, TenantApisResource
from ingestion.sync import RequestCounter, SyncStats, sync_ledger, sync_orders
from warehouse.dbt import (
    SERVING_SNAPSHOT_KEY,
    WAREHOUSE_POOL,
    InProcessDbt,
    LayerTranslator,
    WarehouseResource,
    dbt_project,
    project_fingerprint,
    tag_host,
)
from warehouse.pool import host_tags, reap
from warehouse.publish import publish_snapshot
from warehouse.registry_seeds import write_seeds

SNAPSHOT_KEY = SERVING_SNAPSHOT_KEY


class LiveConfig(dg.Config):
    minutes: float = float(os.environ.get("LIVE_RUN_MINUTES", "10"))
    idle_seconds: float = 2.0  # pause after a cycle that landed nothing new


def _feed_offered(
    tenant_apis: TenantApisResource, landing: LandingResource, tenant_id: str, found: dict
) -> bool:
    """Whether the tenant's API offers its ledger feed: probed (and the answer landed) once
    per run, so a tenant without one costs no request per cycle and no failed cycle."""
    if tenant_id not in found:
        with tenant_apis.loyalty(tenant_id, RequestCounter()) as client:
            probe = client.probe("ledger_feed")
        if probe is not None:
            land_probes(landing.zone(), tenant_id, [probe])
        found[tenant_id] = probe is not None and probe.offered
    return found[tenant_id]


def _land_tenant(
    tenant_apis: TenantApisResource,
    booking_api: BookingApiResource,
    landing: LandingResource,
    tenant_id: str,
    feeds: dict,
) -> Iterator[tuple[dg.AssetKey, SyncStats]]:
    # The platform's own records first: they are the bookings (and the funnel's searches); the
    # tenant's ledger and Duffel's orders are the checks.
    settings = booking_api.settings()
    if settings.booking_operator_token is not None:
        for key, feed in ((EVENTS_KEY, EVENTS_FEED), (SEARCHES_KEY, SEARCHES_FEED)):
            requests = RequestCounter()
            with booking_api.client(settings, requests) as client:
                yield (
                    key,
                    sync_feed(
                        feed,
                        client,
                        landing.zone(),
                        tenant_id,
                        page_size=booking_api.page_size,
                        batch_size=booking_api.batch_size,
                        requests=requests,
                    ),
                )
    if _feed_offered(tenant_apis, landing, tenant_id, feeds):
        requests = RequestCounter()
        with tenant_apis.loyalty(tenant_id, requests) as client:
            yield LEDGER_KEY, sync_ledger(client, landing.zone(), tenant_id, requests=requests)
    requests = RequestCounter()
    with tenant_apis.duffel(tenant_id, requests) as client:
        yield ORDERS_KEY, sync_orders(client, landing.zone(), tenant_id, requests=requests)


def _ingest(
    context: dg.OpExecutionContext,
    tenant_apis: TenantApisResource,
    booking_api: BookingApiResource,
    landing: LandingResource,
    feeds: dict,
) -> tuple[list[dg.AssetMaterialization], int]:
    """Land every tenant's new activity; returns its materializations and the rows landed."""
    events, landed = [], 0
    for tenant_id in tenant_partitions.get_partition_keys():
        try:
            for key, stats in _land_tenant(tenant_apis, booking_api, landing, tenant_id, feeds):
                landed += stats.landed
                events.append(
                    dg.AssetMaterialization(key, partition=tenant_id, metadata=stats.metadata())
                )
                if key == ORDERS_KEY:
                    events.append(
                        dg.AssetMaterialization(
                            SEGMENTS_KEY,
                            partition=tenant_id,
                            metadata={"order_versions": stats.landed},
                        )
                    )
        except UpstreamError as error:
            # One tenant's outage must not stop the others' data: reported, retried next cycle.
            context.log.error(f"live: {tenant_id} not ingested this cycle: {error}")
    return events, landed


@dg.op(
    pool=WAREHOUSE_POOL,
    out={},  # its results are the materializations it records
    description="Ingest every tenant's new activity, build the warehouse and publish, in a "
    "loop of micro-batches until the run's time is up.",
)
def live_cycles(
    context: dg.OpExecutionContext,
    config: LiveConfig,
    tenant_apis: TenantApisResource,
    booking_api: BookingApiResource,
    landing: LandingResource,
    warehouse: WarehouseResource,
):
    tag_host(context)
    os.environ.update(warehouse.dbt_env())
    # dbt runs in this process: its start-up is paid once per run, not once per cycle.
    dbt, translator, cycles, rounds = InProcessDbt(warehouse), LayerTranslator(), 0, 0
    feeds: dict[str, bool] = {}  # tenant -> offers a ledger feed (probed once per run)
    deadline = time.monotonic() + config.minutes * 60
    while rounds == 0 or time.monotonic() < deadline:  # at least one round per run
        rounds += 1
        started = time.monotonic()
        events, landed = _ingest(context, tenant_apis, booking_api, landing, feeds)
        yield from events
        ingested = time.monotonic()
        if landed == 0 and warehouse.layout.serving_version_file.exists():
            time.sleep(config.idle_seconds)
            continue
        fingerprint = project_fingerprint(generated=write_seeds(warehouse.registry_seeds))
        args = [*warehouse.dbt_build_args(fingerprint), "--exclude-resource-type", "unit_test"]
        for node in dbt.build(args):
            if node.node.resource_type in ("model", "seed"):
                spec = translator.get_asset_spec(dbt.manifest, node.node.unique_id, dbt_project)
                yield dg.AssetMaterialization(
                    spec.key,
                    metadata={"dbt_status": str(node.status), "seconds": node.execution_time},
                )
        warehouse.fingerprint_file.write_text(fingerprint)
        built = time.monotonic()
        published = publish_snapshot(warehouse.warehouse, warehouse.serving_dir)
        yield dg.AssetMaterialization(
            SNAPSHOT_KEY,
            metadata={"version": str(published.version), "seconds": round(published.seconds, 3)},
        )
        cycles += 1
        done = time.monotonic()
        context.log.info(
            f"live: cycle {cycles} landed {landed:,} rows and published snapshot "
            f"{published.version} in {done - started:.1f} s (ingest {ingested - started:.1f} s, "
            f"dbt build {built - ingested:.1f} s, publish {done - built:.1f} s)"
        )


@dg.job(
    executor_def=dg.in_process_executor,
    description="Live mode: micro-batches of ingest -> dbt build -> publish in one run.",
)
def live_job():
    live_cycles()


_UNFINISHED = [
    dg.DagsterRunStatus.QUEUED,
    dg.DagsterRunStatus.NOT_STARTED,
    dg.DagsterRunStatus.STARTING,
    dg.DagsterRunStatus.STARTED,
]


@dg.sensor(
    name="live_sensor",
    job=live_job,
    minimum_interval_seconds=10,
    default_status=dg.DefaultSensorStatus.RUNNING if LIVE else dg.DefaultSensorStatus.STOPPED,
    description="Live mode (INGEST_LIVE=1): keeps one live_job run going, starting the next "
    "as soon as the last one ends.",
)
def live_sensor(context: dg.SensorEvaluationContext):
    # A run killed outright stays "started" forever; one whose process is gone is failed here.
    for line in reap(context.instance):
        context.log.warning(f"live: {line}")
    unfinished = context.instance.get_run_records(
        filters=dg.RunsFilter(statuses=_UNFINISHED), limit=50
    )
    busy = [
        record.dagster_run.job_name
        for record in unfinished
        if record.dagster_run.job_name
        in (live_job.name, "ingest_activity_job", "ingest_platform_job", "warehouse_job")
    ]
    if busy:
        return dg.SkipReason(f"waiting for {', '.join(sorted(set(busy)))} to finish")
    return dg.RunRequest(tags=host_tags())


defs = dg.Definitions(jobs=[live_job], sensors=[live_sensor])
