"""Live mode: a service beside Dagster that keeps the serving snapshot seconds behind the platform.

The scheduled path (ingestion per tenant every 15 minutes, then the warehouse automation)
launches a process per run, and each process spends seconds importing Dagster and dbt before
any work; for the demo's promise (a new booking on the dashboard within a minute) that is
most of the budget. So live mode is one long-lived process (``python -m orchestration.live``, started by
the demo beside ``dagster dev``) that loops in micro-batches:

    land what is new (booking events and searches, ledger, Duffel orders)
        ->  dbt build of what the new rows feed, with those models' data tests
        ->  publish

using the same sync functions as the ingestion assets and dagster-dbt's own translation of
dbt's results, with dbt invoked in-process (its start-up is paid once). It holds no run: it
reports to the Dagster instance as runless asset events what it did, and only that: a
materialization for each tenant partition that landed rows, for each dbt model it built and
for the snapshot, and an asset check evaluation for every data test it ran, aimed at the
materialization it checked. So the UI's asset graph and its checks stay true in live mode.

The warehouse has one writer at a time: live mode is on when ``INGEST_LIVE=1`` (the demo sets
it), and then the per-tenant activity schedule and the warehouse automation stand down; a
build launched by hand still runs in a Dagster run holding the ``warehouse`` pool, and the
service waits for the pool to be free before each build of its own.
"""

from __future__ import annotations

import argparse
import datetime as dt
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster_shared.record import replace

from clients.errors import UpstreamError
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
from settings import SERVING_VERSION_FILE, get_settings
from warehouse.manifest import prepare_manifest, project_fingerprint
from warehouse.pool import pool_holders, reap
from warehouse.publish import SERVING_SNAPSHOT_KEY, publish_snapshot
from warehouse.registry_seeds import write_seeds

if TYPE_CHECKING:
    from warehouse.dbt import WarehouseResource


@dataclass
class Cycle:
    """What one micro-batch did: rows landed per asset, and the seconds of each step."""

    landed: dict[dg.AssetKey, int] = field(default_factory=dict)
    sweep: bool = False  # orders listed over the refresh window, and every model built
    built: list[dg.AssetKey] = field(default_factory=list)
    checks: int = 0
    version: str | None = None
    ingest: float = 0.0
    build: float = 0.0
    publish: float = 0.0

    @property
    def rows(self) -> int:
        return sum(self.landed.values())

    def describe(self, number: int) -> str:
        # bench_freshness reads this line from the service's log
        return (
            f"live: cycle {number} landed {self.rows:,} rows and published snapshot "
            f"{self.version} in {self.ingest + self.build + self.publish:.1f} s "
            f"(ingest {self.ingest:.1f} s, dbt build {self.build:.1f} s, "
            f"publish {self.publish:.1f} s; {len(self.built)} models built, "
            f"{self.checks} checks{', a sweep' if self.sweep else ''})"
        )


class LiveService:
    """The micro-batch loop; each cycle reports its events to ``instance``."""

    def __init__(
        self,
        instance: dg.DagsterInstance,
        tenant_apis: TenantApisResource,
        booking_api: BookingApiResource,
        landing: LandingResource,
        warehouse: WarehouseResource,
        *,
        sweep_seconds: float = 300.0,
        whole_history_seconds: float = 60.0,
    ) -> None:
        self.instance = instance
        self.tenant_apis, self.booking_api = tenant_apis, booking_api
        self.landing, self.warehouse = landing, warehouse
        # Orders change after they are made (paid, cancelled), and Duffel lists them by
        # creation time only: each cycle lists the orders made since the last, and every
        # ``sweep_seconds`` the recent ones again for later payments and cancellations. A
        # sweep also builds every model, so what the schedules land meanwhile (member
        # snapshots, capabilities, reference data) reaches the snapshot too.
        self.sweep_seconds = sweep_seconds
        self._swept_at: float | None = None
        # The models dbt tags `whole_history` are recomputed from the whole history on every
        # build (reconciliation: seconds at a million bookings); between full builds they are
        # built at most every ``whole_history_seconds``, so a new booking's snapshot does not
        # wait for them. Stale: a build since they were last built left them out.
        self.whole_history_seconds = whole_history_seconds
        self._whole_history_at: float | None = None
        self._whole_history_stale = False
        self._feeds: dict[str, bool] = {}  # tenant -> offers a ledger feed (probed once)
        self._built_once = False
        self.reporter = Reporter(instance)
        # Imported here: the warehouse's assets need the manifest main() prepares first.
        from warehouse.dbt import InProcessDbt

        self.dbt = InProcessDbt(warehouse)

    # -- ingest ---------------------------------------------------------------------------

    def _feed_offered(self, tenant_id: str) -> bool:
        """Whether the tenant's API offers its ledger feed: probed (and the answer landed) once,
        so a tenant without one costs no request per cycle and no failed cycle."""
        if tenant_id not in self._feeds:
            with self.tenant_apis.loyalty(tenant_id, RequestCounter()) as client:
                probe = client.probe("ledger_feed")
            if probe is not None:
                land_probes(self.landing.zone(), tenant_id, [probe])
            self._feeds[tenant_id] = probe is not None and probe.offered
        return self._feeds[tenant_id]

    def _land_tenant(self, tenant_id: str, sweep: bool) -> Iterator[tuple[dg.AssetKey, SyncStats]]:
        # The platform's own records first: they are the bookings (and the funnel's searches);
        # the tenant's ledger and Duffel's orders are the checks.
        zone = self.landing.zone()
        settings = self.booking_api.settings()
        if settings.booking_operator_token is not None:
            for key, feed in ((EVENTS_KEY, EVENTS_FEED), (SEARCHES_KEY, SEARCHES_FEED)):
                requests = RequestCounter()
                with self.booking_api.client(settings, requests) as client:
                    stats = sync_feed(
                        feed,
                        client,
                        zone,
                        tenant_id,
                        page_size=self.booking_api.page_size,
                        batch_size=self.booking_api.batch_size,
                        requests=requests,
                    )
                yield key, stats
        if self._feed_offered(tenant_id):
            requests = RequestCounter()
            with self.tenant_apis.loyalty(tenant_id, requests) as client:
                yield LEDGER_KEY, sync_ledger(client, zone, tenant_id, requests=requests)
        requests = RequestCounter()
        # Between sweeps only the orders made since the last listing (Duffel's
        # ``created_at[after]``); a sweep lists the refresh window again.
        window = {} if sweep else {"refresh_window": dt.timedelta(0)}
        with self.tenant_apis.duffel(tenant_id, requests) as client:
            stats = sync_orders(client, zone, tenant_id, requests=requests, **window)
        yield ORDERS_KEY, stats

    def ingest(self, cycle: Cycle) -> None:
        """Land every tenant's new activity; report each partition that landed rows."""
        now = time.monotonic()
        sweep = self._swept_at is None or now - self._swept_at >= self.sweep_seconds
        cycle.sweep = sweep
        for tenant_id in tenant_partitions.get_partition_keys():
            try:
                for key, stats in self._land_tenant(tenant_id, sweep):
                    if not stats.landed:
                        continue  # nothing new: no materialization (the UI shows real change)
                    cycle.landed[key] = cycle.landed.get(key, 0) + stats.landed
                    self._report(
                        dg.AssetMaterialization(key, partition=tenant_id, metadata=stats.metadata())
                    )
                    if key == ORDERS_KEY:  # their segments land with them
                        cycle.landed[SEGMENTS_KEY] = stats.landed
                        self._report(
                            dg.AssetMaterialization(
                                SEGMENTS_KEY,
                                partition=tenant_id,
                                metadata={"order_versions": stats.landed},
                            )
                        )
            except UpstreamError as error:
                # One tenant's outage must not stop the others' data: retried next cycle.
                print(f"live: {tenant_id} not ingested this cycle: {error}", flush=True)
        if sweep:
            self._swept_at = now

    # -- build and publish ----------------------------------------------------------------

    def _wait_for_pool(self) -> None:
        """Wait while a run (a build launched by hand) holds the warehouse pool."""
        said = False
        while True:
            for line in reap(self.instance):
                print(f"live: {line}", flush=True)
            holders = [h for h in pool_holders(self.instance) if h.verdict != "ended"]
            if not holders:
                return
            if not said:
                print(f"live: waiting for {holders[0].describe()} to free the pool", flush=True)
                said = True
            time.sleep(1.0)

    def _whole_history_due(self) -> bool:
        return (
            self._whole_history_at is None
            or time.monotonic() - self._whole_history_at >= self.whole_history_seconds
        )

    def build(self, cycle: Cycle) -> None:
        """dbt build of the models the landed rows feed (all of them on the first cycle, on a
        sweep, or after the project changed), with their data tests; report what ran."""
        fingerprint = project_fingerprint(generated=write_seeds(self.warehouse.registry_seeds))
        args = self.warehouse.dbt_build_args(fingerprint)
        whole_history = True  # this build brings the whole-history models up to date
        if self._built_once and not cycle.sweep and len(args) == 1:
            # Only what the new rows feed: the sources that landed, and everything downstream.
            selected = [f"{s}+" for s in self.dbt.source_selectors(cycle.landed)]
            if not self._whole_history_due():
                whole_history = False
                args += ["--select", *selected, "--exclude", "tag:whole_history"]
            else:  # due: those the new rows feed, and any a build left out
                catch_up = ["tag:whole_history"] if self._whole_history_stale else []
                args += ["--select", *selected, *catch_up]
        self._wait_for_pool()
        started = time.monotonic()
        # A failed build is reported as far as it went (failed checks included); the next
        # cycle builds everything again, so what it left unbuilt is not forgotten.
        self._built_once = False
        try:
            self.dbt.build([*args, "--exclude-resource-type", "unit_test"])
        finally:
            events = list(self.dbt.asset_events())
            cycle.built = [e.asset_key for e in events if isinstance(e, dg.AssetMaterialization)]
            cycle.checks = len(events) - len(cycle.built)
            self.reporter.put(events)
        self._built_once = True
        if whole_history:
            self._whole_history_at, self._whole_history_stale = started, False
        else:
            self._whole_history_stale = True
        self.warehouse.fingerprint_file.write_text(fingerprint)

    def publish(self, cycle: Cycle) -> None:
        published = publish_snapshot(
            self.warehouse.warehouse,
            self.warehouse.serving_dir,
        )
        cycle.version = str(published.version)
        self._report(dg.AssetMaterialization(SERVING_SNAPSHOT_KEY, metadata=published.metadata()))

    def cycle(self) -> Cycle | None:
        """One micro-batch; None when nothing landed (and a snapshot exists already)."""
        self.reporter.raise_if_failed()
        cycle = Cycle()
        started = time.monotonic()
        self.ingest(cycle)
        cycle.ingest = time.monotonic() - started
        published = self.warehouse.serving_dir.joinpath(SERVING_VERSION_FILE).exists()
        behind = self._whole_history_stale and self._whole_history_due()
        if self._built_once and not cycle.rows and not cycle.sweep and published and not behind:
            return None
        started = time.monotonic()
        self.build(cycle)
        cycle.build = time.monotonic() - started
        started = time.monotonic()
        self.publish(cycle)
        cycle.publish = time.monotonic() - started
        return cycle

    def run(self, minutes: float | None = None, idle_seconds: float = 2.0) -> int:
        """Cycle until ``minutes`` are up (forever when None); returns the cycles published."""
        write_seeds(
            self.warehouse.registry_seeds
        )  # the registry's seeds, rewritten once: a new tenant file reaches dbt
        deadline = None if minutes is None else time.monotonic() + minutes * 60
        published = 0
        while deadline is None or time.monotonic() < deadline or published == 0:
            try:
                cycle = self.cycle()
            except (RuntimeError, UpstreamError) as error:
                # A failed build or an outage: logged here, in the instance (its checks) and
                # retried next cycle; a service that stopped would leave the snapshot stale.
                print(f"live: cycle failed: {error}", flush=True)
                if minutes is not None and deadline is not None and time.monotonic() > deadline:
                    raise
                time.sleep(idle_seconds)
                continue
            if cycle is None:
                time.sleep(idle_seconds)
                continue
            published += 1
            print(cycle.describe(published), flush=True)
        self.reporter.flush()
        return published

    def _report(self, event: dg.AssetMaterialization | dg.AssetCheckEvaluation) -> None:
        self.reporter.put([event])


AssetEvent = dg.AssetMaterialization | dg.AssetCheckEvaluation


class Reporter:
    """Writes a cycle's asset events to the instance on a thread of its own, in order.

    Each event is a write to the instance's storage (plus a read per built model, to aim its
    checks at it); a build's ~150 of them took seconds on a busy machine, which the next
    snapshot need not wait for. An error is raised in the cycle loop (``raise_if_failed``).
    """

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance
        self._queue: queue.Queue[list[AssetEvent]] = queue.Queue()
        self._failed: BaseException | None = None
        threading.Thread(target=self._work, name="live-reporter", daemon=True).start()

    def put(self, events: list[AssetEvent]) -> None:
        self._queue.put(events)

    def flush(self) -> None:
        """Wait until everything put so far is in the instance."""
        self._queue.join()
        self.raise_if_failed()

    def raise_if_failed(self) -> None:
        if self._failed is not None:
            raise RuntimeError(f"reporting to the Dagster instance failed: {self._failed}")

    def _work(self) -> None:
        while True:
            events = self._queue.get()
            try:
                if self._failed is None:
                    self._write(events)
            except Exception as error:  # raised in the cycle loop by raise_if_failed
                self._failed = error
            finally:
                self._queue.task_done()

    def _write(self, events: list[AssetEvent]) -> None:
        materialized: dict[dg.AssetKey, dg.EventLogRecord] = {}
        for event in events:
            if isinstance(event, dg.AssetMaterialization):
                self.instance.report_runless_asset_event(event)
                records = self.instance.fetch_materializations(event.asset_key, limit=1).records
                materialized[event.asset_key] = records[0]
            else:
                self.instance.report_runless_asset_event(
                    _aimed(event, materialized.get(event.asset_key))
                )


def _aimed(
    evaluation: dg.AssetCheckEvaluation, target: dg.EventLogRecord | None
) -> dg.AssetCheckEvaluation:
    """The check evaluation, aimed at the materialization of this build that it checked
    (the UI shows a check's result against the asset's latest materialization)."""
    if target is None:
        return evaluation
    return replace(
        evaluation,
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=target.storage_id, run_id=target.run_id, timestamp=target.timestamp
        ),
    )


def service_from_environment(instance: dg.DagsterInstance) -> LiveService:
    """The service with the resources the Dagster definitions give the scheduled path."""
    from warehouse.dbt import WarehouseResource

    settings = get_settings()
    data_dir = str(settings.data_dir)
    return LiveService(
        instance,
        TenantApisResource(),
        BookingApiResource(),
        LandingResource(data_dir=data_dir),
        WarehouseResource(data_dir=data_dir, engine=settings.warehouse_engine),
        sweep_seconds=settings.live_order_sweep_seconds,
        whole_history_seconds=settings.live_whole_history_seconds,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--minutes", type=float, help="stop after this long (default: never)")
    parser.add_argument("--idle-seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    prepare_manifest()
    with dg.DagsterInstance.get() as instance:
        service = service_from_environment(instance)
        service.run(args.minutes, args.idle_seconds)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
