"""The same models on Spark: every mart row for row and to the cent as on DuckDB.

The session's history (with the manifest's planted anomalies) is landed once; DuckDB builds
it (the ``built`` fixture), and dbt-spark builds the same landing in local mode (``spark``
target, `uv sync --group spark`, Java 17). Spark's tables are Parquet files under the data
folder, read here without a second JVM.
"""

from __future__ import annotations

import shutil
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import pytest
from dagster_dbt import DbtCliResource

from testing.dbt_build import DbtBuild, dbt_build
from warehouse.manifest import DBT_EXECUTABLE, DBT_PROJECT_DIR, dbt_vars

# A JVM, a Hive metastore and 31 models: a few minutes on two cores, more when they are shared.
pytestmark = pytest.mark.timeout(1200)

# What Spark builds here: seeds and models. The data tests and unit tests are the same SQL
# over the same rows and run on DuckDB (the `built` fixture); the Dagster build below runs
# the data tests on Spark as asset checks.
MODELS_ONLY = ("--exclude-resource-type", "unit_test", "--exclude-resource-type", "test")

# Columns that depend on when each build started, compared where they do not: a wait still
# running is measured to the start of the build that wrote the row.
BUILD_TIME = {
    "built_at": "null",
    "wait_seconds": "case when decided_at is null then null else wait_seconds end",
    "oldest_age_hours": "null",
}


@pytest.fixture(scope="module")
def spark_data(built: DbtBuild, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder with the DuckDB build's landing zone, for Spark."""
    data_dir = tmp_path_factory.mktemp("spark")
    shutil.copytree(built.landing_root, data_dir / "landing")
    return data_dir


@pytest.fixture(scope="module")
def spark_built(spark_data: Path) -> DbtBuild:
    return dbt_build(spark_data, spark_data / "landing", *MODELS_ONLY, engine="spark")


def _marts(warehouse: duckdb.DuckDBPyConnection) -> list[str]:
    rows = warehouse.execute(
        "select table_name from information_schema.tables where table_schema = 'marts' "
        "order by table_name"
    ).fetchall()
    return [name for (name,) in rows]


def _spark_table(data_dir: Path, schema: str, table: str) -> str:
    """The Parquet files of one of Spark's tables (under `spark.sql.warehouse.dir`)."""
    folder = Path(dbt_vars(data_dir)["spark_warehouse_dir"]) / f"{schema}.db" / table
    return f"read_parquet('{folder}/**/*.parquet')"


def _rows(con: duckdb.DuckDBPyConnection, relation: str, columns: list[str]) -> list[tuple]:
    select = ", ".join(f'{BUILD_TIME.get(column, column)} as "{column}"' for column in columns)
    return con.execute(f"select {select} from {relation} order by all").fetchall()


def test_every_mart_is_the_same_on_spark(
    warehouse: duckdb.DuckDBPyConnection, spark_built: DbtBuild, spark_data: Path
) -> None:
    assert spark_built.returncode == 0, spark_built.output[-5000:]
    marts = _marts(warehouse)
    assert len(marts) >= 15, marts
    spark = duckdb.connect()
    compared_amounts = 0
    for mart in marts:
        described = warehouse.execute(f"describe marts.{mart}").fetchall()
        columns = [name for name, *_ in described]
        duck_rows = _rows(warehouse, f"marts.{mart}", columns)
        spark_rows = _rows(spark, _spark_table(spark_data, "marts", mart), columns)
        assert len(spark_rows) == len(duck_rows), f"{mart}: {len(spark_rows)} != {len(duck_rows)}"
        for duck_row, spark_row in zip(duck_rows, spark_rows, strict=True):
            assert spark_row == duck_row, (
                f"{mart} differs:\n duckdb {duck_row}\n spark  {spark_row}"
            )
        for position, (name, data_type, *_) in enumerate(described):
            if data_type.startswith("DECIMAL"):
                # Decimal on both sides, equal to the cent (no float crept in on either).
                for duck_row, spark_row in zip(duck_rows, spark_rows, strict=True):
                    duck, spark_value = duck_row[position], spark_row[position]
                    assert duck is None or isinstance(duck, Decimal), (mart, name, duck)
                    assert spark_value is None or isinstance(spark_value, Decimal), (
                        mart,
                        name,
                        spark_value,
                    )
                    compared_amounts += duck is not None
    # Not vacuous: the marts hold the history's money and its planted anomalies.
    assert compared_amounts > 10_000, compared_amounts
    anomalies = warehouse.execute("select count(*) from marts.reconciliation_issues").fetchone()
    assert anomalies[0] > 0


def test_the_dagster_warehouse_assets_build_on_spark(
    spark_built: DbtBuild, spark_data: Path
) -> None:
    """The dbt assets, unchanged, with the engine switched: two marts rebuilt over the tables
    the first build left in the metastore, their data tests evaluated on Spark as checks."""
    from warehouse.dbt import WarehouseResource, dbt_project, warehouse_models

    assert spark_built.returncode == 0, spark_built.output[-5000:]
    selected = [dg.AssetKey(["marts", "bookings"]), dg.AssetKey(["marts", "daily_tenant_metrics"])]
    resources = {
        "dbt": DbtCliResource(
            project_dir=dbt_project,
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=DBT_EXECUTABLE,
        ),
        "warehouse": WarehouseResource(data_dir=str(spark_data), engine="spark"),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize(
            [warehouse_models], selection=selected, resources=resources, instance=instance
        )
    assert result.success
    materialized = {event.asset_key for event in result.get_asset_materialization_events()}
    assert materialized == set(selected)
    checks = list(result.get_asset_check_evaluations())
    expected = {key for key in warehouse_models.check_keys if key.asset_key in selected}
    assert {check.asset_check_key for check in checks} == expected
    failed = [check.check_name for check in checks if not check.passed]
    assert not failed, failed
