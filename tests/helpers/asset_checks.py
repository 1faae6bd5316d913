"""What the Dagster instance (the UI's source) says about an asset's checks after a build."""

from __future__ import annotations

import dagster as dg

from warehouse.dbt import warehouse_models


def checks_of_latest_materialization(
    instance: dg.DagsterInstance, key: dg.AssetKey
) -> dict[str, str]:
    """Each dbt test of asset ``key`` -> "passed", or the severity of its failure ("WARN",
    "ERROR"), from its latest evaluation; raises
    if a test has none, or its latest one is not aimed at the asset's latest materialization
    (the UI would show it as not evaluated for that materialization)."""
    latest = instance.fetch_materializations(key, limit=1).records
    if not latest:
        raise AssertionError(f"{key.to_user_string()} was never materialized")
    check_keys = [check for check in warehouse_models.check_keys if check.asset_key == key]
    if not check_keys:
        raise AssertionError(f"{key.to_user_string()} has no asset checks")
    found = instance.event_log_storage.get_latest_asset_check_execution_by_key(check_keys)
    passed = {}
    for check in check_keys:
        record = found.get(check)
        if record is None or record.event is None:
            raise AssertionError(f"{check.to_user_string()} was never evaluated")
        evaluation = record.event.dagster_event.asset_check_evaluation_data
        target = evaluation.target_materialization_data
        # Aimed at the latest materialization (live mode's runless events say so), or run in
        # the run that made it (in a dbt step Dagster may aim at the one it saw first).
        aimed = target is not None and target.storage_id == latest[0].storage_id
        same_run = bool(latest[0].run_id) and record.run_id == latest[0].run_id
        if not (aimed or same_run):
            raise AssertionError(
                f"{check.to_user_string()}: latest evaluation ({record.run_id or 'runless'}, "
                f"aimed at {target}) is not of the latest materialization "
                f"({latest[0].run_id or 'runless'}, {latest[0].storage_id})"
            )
        passed[check.name] = "passed" if evaluation.passed else evaluation.severity.value
    return passed


def materialized_since(
    instance: dg.DagsterInstance, storage_id: int
) -> set[tuple[str, str | None]]:
    """(asset key, partition) of every runless materialization after event ``storage_id``."""
    records = instance.event_log_storage.get_records_for_run(
        "", of_type=dg.DagsterEventType.ASSET_MATERIALIZATION, limit=100_000
    ).records
    return {
        (event.asset_key.to_user_string(), event.partition)
        for record in records
        if record.storage_id > storage_id
        for event in [
            record.event_log_entry.dagster_event.step_materialization_data.materialization
        ]
    }


def last_event_id(instance: dg.DagsterInstance) -> int:
    """The storage id of the latest event in the instance (0 when none)."""
    return instance.event_log_storage.get_maximum_record_id() or 0
