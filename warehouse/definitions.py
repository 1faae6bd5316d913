"""The warehouse's Dagster definitions: dbt assets, the publish step, the job that runs them."""

import dagster as dg
from dagster_dbt import DbtCliResource

from settings import get_settings
from warehouse.dbt import (
    WarehouseResource,
    dbt_project,
    serving_snapshot,
    warehouse_models,
)
from warehouse.manifest import DBT_EXECUTABLE, DBT_PROJECT_DIR
from warehouse.pool import pool_holders, reap, waiting_message

SETTINGS = get_settings()

warehouse_job = dg.define_asset_job(
    "warehouse_job",
    selection=dg.AssetSelection.assets(warehouse_models, serving_snapshot),
    description="dbt build (models and tests), then publish the serving snapshot if it passed.",
    executor_def=dg.in_process_executor,
)

# Rebuilds the warehouse and republishes after ingestion lands new data (the dbt assets and
# the snapshot are eager). Running by default: freshness must not depend on a UI toggle.
warehouse_automation_sensor = dg.AutomationConditionSensorDefinition(
    "warehouse_automation_sensor",
    target=dg.AssetSelection.assets(warehouse_models, serving_snapshot),
    # In live mode (INGEST_LIVE=1) the live service builds and publishes after every batch.
    default_status=(
        dg.DefaultSensorStatus.STOPPED if SETTINGS.ingest_live else dg.DefaultSensorStatus.RUNNING
    ),
    minimum_interval_seconds=SETTINGS.warehouse_automation_interval_seconds,
)


@dg.sensor(
    name="warehouse_pool_sensor",
    minimum_interval_seconds=SETTINGS.warehouse_pool_sensor_interval_seconds,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails runs whose process is gone (killed outright) and frees the warehouse "
    "pool slots they and other ended runs still hold, so scheduled builds do not wait forever.",
)
def warehouse_pool_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    done = reap(context.instance)
    for line in done:
        context.log.warning(line)
    holders = [h for h in pool_holders(context.instance) if h.verdict != "running"]
    if holders:
        return dg.SkipReason(waiting_message(holders))
    return dg.SkipReason("; ".join(done) or "no run holds the warehouse pool without running")


defs = dg.Definitions(
    assets=[warehouse_models, serving_snapshot],
    # Runs the automation sensor launches execute in one process as well: a process per
    # step would import Dagster and dbt again for every step (seconds each) for no gain,
    # since the warehouse has a single writer anyway.
    executor=dg.in_process_executor,
    jobs=[warehouse_job],
    sensors=[warehouse_automation_sensor, warehouse_pool_sensor],
    resources={
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=DBT_EXECUTABLE,
        ),
        "warehouse": WarehouseResource(
            data_dir=str(SETTINGS.data_dir), engine=SETTINGS.warehouse_engine
        ),
    },
)
