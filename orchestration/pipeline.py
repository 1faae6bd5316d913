"""One full pipeline run from the command line (``make pipeline``), recorded in the Dagster instance.

Each tenant runs as its own partition run, so one tenant failing (bad credentials, an
upstream outage) is reported and the others still complete.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The console shows this script's progress lines; Dagster's event log stays in the instance (UI).
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def ensure_dagster_home() -> Path:
    """DAGSTER_HOME inside the data folder, with the project's instance settings."""
    home = Path(
        os.environ.setdefault("DAGSTER_HOME", str(ROOT / "data" / "dagster_home"))
    ).resolve()
    home.mkdir(parents=True, exist_ok=True)
    # The scaled-out shape names its own (deploy/dagster.scale.yaml: runs in containers).
    settings = Path(os.environ.get("DAGSTER_INSTANCE_YAML", ROOT / "deploy" / "dagster.yaml"))
    installed = home / "dagster.yaml"
    # The project's instance settings win: a home made by an older version is brought up to date.
    if not installed.exists() or installed.read_bytes() != settings.read_bytes():
        shutil.copyfile(settings, installed)
    os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
    return home


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str


def _run_job(instance, defs, job_name: str, partition_key: str | None) -> StepResult:
    from dagster import DagsterRunStatus
    from dagster._core.utils import make_new_run_id

    from warehouse.pool import host_tags
    from warehouse.publish import SERVING_SNAPSHOT_KEY

    label = f"{job_name}[{partition_key}]" if partition_key else job_name
    print(f"  … {label}", flush=True)
    started = time.perf_counter()
    job = defs.resolve_job_def(job_name)
    run_id = make_new_run_id()
    # A run killed outright earlier keeps its pool slot until someone notices it is gone.
    _report(_reap(instance, exclude=[run_id]))
    with _PoolWatch(instance, run_id):
        result = job.execute_in_process(
            run_config=QUIET,
            instance=instance,
            partition_key=partition_key,
            raise_on_error=False,
            run_id=run_id,
            tags=host_tags(),
        )
    seconds = time.perf_counter() - started
    if instance.get_run_by_id(run_id).status == DagsterRunStatus.CANCELED:
        # Stopped from outside (the demo's Ctrl-C marks the run canceling, then interrupts it).
        print(f"  ■ {label} canceled after {seconds:.1f} s", flush=True)
        raise KeyboardInterrupt
    if result.success:
        summary = []
        for event in result.get_asset_materialization_events():
            metadata = event.materialization.metadata
            outcome = metadata.get("outcome")
            landed = metadata.get("landed")
            if event.asset_key == SERVING_SNAPSHOT_KEY:
                summary.append(f"serving snapshot {metadata['version'].value} published")
            elif landed is not None:
                key = event.asset_key.to_user_string()
                note = "" if outcome is None or outcome.value == "ok" else f" ({outcome.value})"
                summary.append(f"{key}: {landed.value:,} landed{note}")
        detail = "; ".join(summary) or "done"
    else:
        failures = [e for e in result.all_events if e.is_step_failure]
        detail = _cause(failures[0].step_failure_data.error) if failures else "run failed"
    print(f"  {'✓' if result.success else '✗'} {label} in {seconds:.1f} s — {detail}", flush=True)
    return StepResult(label, result.success, seconds, detail)


def _cause(error) -> str:
    """What a failed step raised, in one line (Dagster's wrapper names only the op).

    Tenant and Duffel errors already read as "tenant, call, status: message — what it
    means; what to do"; anything else is shown as its type and first line.
    """
    # Skip Dagster's wrappers down to what the step itself raised (not that error's own cause).
    while error.cls_name and error.cls_name.startswith("Dagster") and error.cause is not None:
        error = error.cause
    text = error.message.strip().splitlines()[0] if error.message.strip() else ""
    prefix = f"{error.cls_name}: "
    # Dagster renders "module.Class: message"; the class name alone is enough.
    _, found, rest = text.partition(prefix)
    return f"{error.cls_name}: {rest if found else text}"


def _reap(instance, exclude: list[str]) -> list[str]:
    from warehouse.pool import reap

    return reap(instance, exclude=exclude)


def _report(lines: list[str]) -> None:
    for line in lines:
        print(f"  ! {line}", flush=True)


class _PoolWatch:
    """While a run executes: if it waits for the warehouse pool, say for whom and how to clear
    it, and free the pool as soon as its holder turns out to be gone."""

    POLL_SECONDS = 1.0
    REPEAT_SECONDS = 60.0

    def __init__(self, instance, run_id: str) -> None:
        self.instance = instance
        self.run_id = run_id
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="pool-watch", daemon=True)

    def __enter__(self) -> _PoolWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        from warehouse.pool import pool_holders, waiting_in_pool, waiting_message

        said, said_at = "", 0.0
        while not self._stop.wait(self.POLL_SECONDS):
            try:
                if not waiting_in_pool(self.instance, self.run_id):
                    continue
                _report(_reap(self.instance, exclude=[self.run_id]))
                holders = pool_holders(self.instance, exclude=[self.run_id])
                message = waiting_message(holders) if holders else ""
                now = time.monotonic()
                if message and (message != said or now - said_at > self.REPEAT_SECONDS):
                    print(f"  … {message}", flush=True)
                    said, said_at = message, now
            except Exception as error:  # a watcher must never break the run: say so, stop
                print(f"  ! could not inspect the warehouse pool: {error}", flush=True)
                return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tenant", action="append", help="only this tenant (repeatable)")
    parser.add_argument("--skip-warehouse", action="store_true", help="ingest only")
    parser.add_argument(
        "--skip-ingest",
        action="store_true",
        help="build the warehouse and publish from what has already landed",
    )
    args = parser.parse_args(argv)
    ensure_dagster_home()
    # SIGTERM stops the run as Ctrl-C does (during a job, Dagster handles both itself).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("pipeline: stopped; the remaining jobs did not run", flush=True)
        return 130


def _run(args: argparse.Namespace) -> int:
    import dagster as dg

    from warehouse.manifest import prepare_manifest

    prepare_manifest()  # the dbt assets load the manifest: parsed now if the project changed
    from definitions import defs
    from ingestion.partitions import tenant_partitions

    tenants = args.tenant or tenant_partitions.get_partition_keys()
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    results = []
    if args.skip_ingest:
        print("pipeline: ingestion skipped (--skip-ingest)", flush=True)
    else:
        print(f"pipeline: ingesting {len(tenants)} tenants ({', '.join(tenants)})", flush=True)
        results.append(_run_job(instance, defs, "ingest_reference_job", None))
        for tenant in tenants:
            # The platform's records first: they are the bookings, and a tenant without a
            # member list has its members looked up from them. Says "not offered" (and
            # succeeds) when the booking API is not running or no operator token is set.
            results.append(_run_job(instance, defs, "ingest_platform_job", tenant))
            results.append(_run_job(instance, defs, "ingest_activity_job", tenant))
            results.append(_run_job(instance, defs, "ingest_members_job", tenant))
    if args.skip_warehouse:
        print("pipeline: warehouse build and publish skipped (--skip-warehouse)", flush=True)
    else:
        print(
            "pipeline: building the warehouse (dbt build) and publishing the serving snapshot",
            flush=True,
        )
        results.append(_run_job(instance, defs, "warehouse_job", None))
    failed = [r for r in results if not r.ok]
    print(
        f"pipeline: {len(results) - len(failed)}/{len(results)} steps succeeded in "
        f"{time.perf_counter() - started:.1f} s",
        flush=True,
    )
    for result in failed:
        print(f"  failed: {result.name}: {result.detail}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
