"""The Dagster code location loads whole: assets, partitions, jobs, schedules and checks."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import yaml

from definitions import defs
from tenants.settings import get_registry

RAW = {
    "raw/loyalty/ledger_transactions": "loyalty",
    "raw/loyalty/members": "loyalty",
    "raw/duffel/orders": "duffel",
    "raw/duffel/order_segments": "duffel",
    "raw/duffel/airlines": "duffel",
    "raw/duffel/airports": "duffel",
}


def _repo() -> dg.RepositoryDefinition:
    return defs.get_repository_def()


def test_every_raw_asset_is_there_with_its_group_and_grain() -> None:
    graph = _repo().asset_graph
    keys = {key.to_user_string(): key for key in graph.get_all_asset_keys()}
    assert set(RAW) <= set(keys)
    for name, group in RAW.items():
        node = graph.get(keys[name])
        assert node.group_name == group, name
        assert (node.description or "").startswith("One row per"), name


def test_tenant_partitions_come_from_the_registry() -> None:
    graph = _repo().asset_graph
    for name in ("raw/loyalty/ledger_transactions", "raw/loyalty/members", "raw/duffel/orders"):
        partitions = graph.get(dg.AssetKey(name.split("/"))).partitions_def
        assert partitions is not None and set(partitions.get_partition_keys()) == set(
            get_registry()
        )
    assert graph.get(dg.AssetKey(["raw", "duffel", "airports"])).partitions_def is None


def test_jobs_and_schedules_follow_the_naming_and_cadence() -> None:
    repo = _repo()
    jobs = {job.name for job in repo.get_all_jobs()}
    assert {
        "ingest_activity_job",
        "ingest_members_job",
        "ingest_reference_job",
        "quarantine_replay_job",
        "compact_landing_job",
    } <= jobs
    schedules = {s.name: s for s in repo.schedule_defs}
    assert schedules["ingest_activity_schedule"].cron_schedule == "*/15 * * * *"
    assert schedules["ingest_members_schedule"].cron_schedule == "0 * * * *"
    assert schedules["ingest_platform_schedule"].cron_schedule == "*/5 * * * *"
    assert schedules["ingest_reference_schedule"].cron_schedule == "30 2 * * *"
    assert schedules["compact_landing_schedule"].job_name == "compact_landing_job"
    assert all(s.job_name.endswith("_job") for s in schedules.values())


def test_schedule_asks_for_one_run_per_tenant() -> None:
    schedule = {s.name: s for s in _repo().schedule_defs}["ingest_activity_schedule"]
    tick = dt.datetime(2026, 11, 24, 9, 15, tzinfo=dt.UTC)
    with dg.build_schedule_context(
        scheduled_execution_time=tick, repository_def=_repo()
    ) as context:
        requests = list(schedule.evaluate_tick(context).run_requests or [])
    assert sorted(r.partition_key for r in requests) == sorted(get_registry())
    assert len({r.run_key for r in requests}) == len(requests)


def test_checks_sit_beside_the_assets() -> None:
    checks = {
        key.name: key.asset_key.to_user_string() for key in _repo().asset_graph.asset_check_keys
    }
    assert checks["ledger_no_duplicate_ids"] == "raw/loyalty/ledger_transactions"
    assert checks["ledger_quarantine_share"] == "raw/loyalty/ledger_transactions"
    assert checks["orders_no_duplicate_ids"] == "raw/duffel/orders"
    assert checks["members_no_duplicate_ids"] == "raw/loyalty/members"
    graph = _repo().asset_graph
    assert (
        graph.get(dg.AssetKey(["raw", "loyalty", "ledger_transactions"])).freshness_policy
        is not None
    )


def test_workspace_loads_the_one_code_location() -> None:
    with open("workspace.yaml") as handle:
        workspace = yaml.safe_load(handle)
    assert workspace["load_from"] == [
        {"python_module": {"module_name": "definitions", "working_directory": "."}}
    ]


def test_dagster_itself_validates_the_workspace(tmp_path) -> None:
    """What `dagster dev -w workspace.yaml` loads must load (one Definitions at module scope)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    dagster = Path(sys.executable).parent / "dagster"
    done = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", "workspace.yaml"],
        capture_output=True,
        text=True,
        timeout=240,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "DAGSTER_DISABLE_TELEMETRY": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "All code locations passed validation" in done.stdout + done.stderr
