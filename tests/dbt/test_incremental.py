"""Incremental builds: a warehouse built in two steps, the landing zone growing between them,
equals the warehouse built in one go over everything (the `built` fixture)."""

from __future__ import annotations

import re
import shutil
from decimal import Decimal
from pathlib import Path

import duckdb
import polars as pl
import pytest

from testing.dbt_build import DbtBuild, dbt_build
from testing.landing_from_history import write_landing

MARTS = [
    "bookings",
    "members",
    "daily_tenant_metrics",
    "reconciliation_issues",
    "tenants",
    "booking_segments",
    "ledger_transactions",
    "booking_funnel",
    "saga_health",
]
# Columns that depend on when a build ran, not on what it read.
BUILD_TIME_COLUMNS = ("built_at", "oldest_age_hours")


def _stamp(path: Path) -> object:
    return pl.scan_parquet(path).select(pl.col("_loaded_at").max()).collect().item()


def _landed_later(landing: Path) -> list[Path]:
    """The batches the second step lands: those stamped after the median stamp."""
    files = sorted(landing.rglob("*.parquet"))
    stamps = sorted({_stamp(path) for path in files})
    cutoff = stamps[len(stamps) // 2]
    return [path for path in files if _stamp(path) > cutoff]


@pytest.fixture(scope="module")
def two_step(history: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[DbtBuild, DbtBuild]:
    """Build over the batches landed first, then again after the later ones land."""
    workdir = tmp_path_factory.mktemp("incremental")
    landing, later = workdir / "landing", workdir / "later"
    write_landing(history, landing, batch_rows=2_000)
    for path in _landed_later(landing):
        target = later / path.relative_to(landing)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(path, target)
    first = dbt_build(workdir, landing)
    for path in sorted(later.rglob("*.parquet")):
        shutil.move(path, landing / path.relative_to(later))
    second = dbt_build(workdir, landing)
    return first, second


def test_both_steps_pass_their_tests(two_step: tuple[DbtBuild, DbtBuild]) -> None:
    for build in two_step:
        assert build.returncode == 0, build.output[-5000:]


def test_the_second_step_rebuilt_only_what_changed(two_step: tuple[DbtBuild, DbtBuild]) -> None:
    _, second = two_step
    with second.connect() as con:
        builds, touched, rows = con.execute(
            "select count(distinct built_at), count(*) filter (where built_at = max_built), count(*)"
            " from marts.bookings, (select max(built_at) as max_built from marts.bookings)"
        ).fetchone()
    # bookings the later batches did not touch keep the first step's built_at
    assert builds == 2
    assert 0 < touched < rows


@pytest.mark.parametrize(
    ("model", "entity"),
    [
        ("stg_platform__booking_events", "platform/booking_events"),
        ("stg_loyalty__ledger_transactions", "loyalty/ledger_transactions"),
        ("stg_duffel__orders", "duffel/orders"),
        ("stg_duffel__order_segments", "duffel/order_segments"),
    ],
)
def test_the_second_step_reads_only_the_files_landed_since_the_first(
    two_step: tuple[DbtBuild, DbtBuild], model: str, entity: str
) -> None:
    """Staging finds the files that can hold new rows from their footers (tenant, newest
    loaded_at) and scans only those: its cost follows what landed, not the history."""
    _, second = two_step
    landing = Path(second.landing_root)
    (code,) = (
        result["compiled_code"]
        for result in second.run_results()
        if result["unique_id"] == f"model.loyalty_flights.{model}"
    )
    later = {str(path) for path in _landed_later(landing) if entity in path.as_posix()}
    if not later:  # nothing of this entity landed in the second step: no file is read
        assert "where 1 = 0" in code, code[:2000]
        return
    assert "where filename in" in code, code[:2000]
    read = set(re.findall(r"'([^']+\.parquet)'", code.split("where filename in", 1)[1]))
    assert read == later


def test_incremental_marts_equal_a_full_build(
    two_step: tuple[DbtBuild, DbtBuild], built: DbtBuild
) -> None:
    _, second = two_step
    assert second.returncode == 0 and built.returncode == 0
    con = duckdb.connect()
    con.execute(f"attach '{second.warehouse}' as incremental (read_only)")
    con.execute(f"attach '{built.warehouse}' as full_build (read_only)")
    for mart in MARTS:
        columns = [
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns "
                "where table_catalog = 'full_build' and table_schema = 'marts' "
                "and table_name = ? and column_name not in (select unnest(?)) "
                "order by ordinal_position",
                [mart, list(BUILD_TIME_COLUMNS)],
            ).fetchall()
        ]
        assert columns, mart
        select = ", ".join(f'"{column}"' for column in columns)
        full_rows = con.execute(f"select count(*) from full_build.marts.{mart}").fetchone()[0]
        for a, b in (("incremental", "full_build"), ("full_build", "incremental")):
            missing = con.execute(
                f"select count(*) from (select {select} from {a}.marts.{mart} "
                f"except all select {select} from {b}.marts.{mart})"
            ).fetchone()[0]
            assert missing == 0, f"{mart}: {missing} rows of the {a} build are not in the {b} one"
        assert full_rows > 0 or mart == "reconciliation_issues", mart
    con.close()


def test_a_changed_model_or_seed_rebuilds_in_full(tmp_path: Path) -> None:
    from warehouse.dbt import WarehouseResource
    from warehouse.manifest import DBT_PROJECT_DIR, project_fingerprint

    project = tmp_path / "project"
    shutil.copytree(
        DBT_PROJECT_DIR, project, ignore=shutil.ignore_patterns("target", "logs", "dbt_packages")
    )
    resource = WarehouseResource(data_dir=str(tmp_path / "data"))
    before = project_fingerprint(project)
    assert resource.dbt_build_args(before) == ["build"], "no warehouse yet: a build is a full one"

    resource.warehouse.parent.mkdir(parents=True)
    resource.warehouse.touch()
    assert resource.dbt_build_args(before) == ["build", "--full-refresh"], "built from unknown code"
    resource.fingerprint_file.write_text(before)
    assert resource.dbt_build_args(before) == ["build"]

    rates = project / "seeds" / "fx_rates.csv"
    rates.write_text(rates.read_text() + "\n")
    after = project_fingerprint(project)
    assert after != before
    assert resource.dbt_build_args(after) == ["build", "--full-refresh"]


def test_a_changed_registry_seed_rebuilds_in_full(tmp_path: Path) -> None:
    """The registry's seeds live in the data folder, yet a changed rate still rebuilds."""
    from tenants.registry import load_registry
    from warehouse.dbt import WarehouseResource, project_fingerprint
    from warehouse.registry_seeds import write_seeds

    resource = WarehouseResource(data_dir=str(tmp_path / "data"))
    registry = load_registry()
    before = project_fingerprint(generated=write_seeds(resource.registry_seeds, registry))
    assert before == project_fingerprint(generated=write_seeds(resource.registry_seeds, registry))

    telco = registry["telcocorp"]
    devalued = telco.currency.model_copy(update={"usd_per_unit": Decimal("0.009")})
    registry["telcocorp"] = telco.model_copy(update={"currency": devalued})
    after = project_fingerprint(generated=write_seeds(resource.registry_seeds, registry))
    assert after != before


def test_data_tests_of_incremental_models_check_the_rows_the_build_rebuilt(
    two_step: tuple[DbtBuild, DbtBuild],
) -> None:
    _, second = two_step
    compiled = {
        result["unique_id"]: result.get("compiled_code") or ""
        for result in second.run_results()
        if result["unique_id"].startswith("test.")
    }

    def code(fragment: str) -> str:
        matches = [sql for unique_id, sql in compiled.items() if fragment in unique_id]
        assert matches, fragment
        return matches[0]

    # incremental model: only this build's rows; a table rebuilt in full: every row
    assert "built_at = cast(" in code("unique_combination_stg_loyalty__ledger_transactions")
    assert "built_at = cast(" in code("tenant_relationship_booking_segments_booking_id")
    assert "built_at" not in code("unique_combination_stg_loyalty__members")
    assert "built_at" not in code("unique_combination_daily_tenant_metrics")
