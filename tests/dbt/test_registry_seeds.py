"""The registry seeds are exactly what the tenant YAML files say, written under the data folder."""

from __future__ import annotations

import shutil
from decimal import Decimal

import duckdb
import pytest

from tenants.registry import load_registry
from testing.dbt_build import PROJECT, DbtBuild
from warehouse.registry_seeds import loyalty_rate_rows, seed_files, write_seeds


def test_no_generated_seed_in_the_source_tree() -> None:
    generated = set(seed_files(load_registry()))
    committed = {path.name for path in (PROJECT / "seeds").iterdir()}
    assert not generated & committed, "registry seeds are written to the data folder only"


def test_the_build_loads_the_seeds_from_the_data_folder(
    built: DbtBuild, warehouse: duckdb.DuckDBPyConnection
) -> None:
    registry_seeds = built.warehouse.parent / "registry"
    texts = seed_files(load_registry())
    for name, text in texts.items():
        assert (registry_seeds / name).read_text(encoding="utf-8") == text
    rates = warehouse.execute(
        "select usd_per_unit from staging.stg_registry__loyalty_rates"
        " where tenant_id = 'coffeechain' and valid_from = date '2024-01-01'"
    ).fetchall()
    assert rates == [(Decimal("0.0125"),)]


def test_rate_history_and_open_period() -> None:
    rows = {(r["tenant_id"], r["valid_from"]): r for r in loyalty_rate_rows(load_registry())}
    assert rows["coffeechain", "2024-01-01"]["usd_per_unit"] == "0.0125"
    assert rows["coffeechain", "2024-01-01"]["valid_to"] == "2026-05-01"
    assert rows["coffeechain", "2026-05-01"] == {
        "tenant_id": "coffeechain",
        "currency": "stars",
        "usd_per_unit": "0.01",
        "valid_from": "2026-05-01",
        "valid_to": "",
    }
    # No history: one open period at today's rate.
    assert rows["telcocorp", "2000-01-01"]["usd_per_unit"] == "0.01"
    assert rows["fintechapp", "2000-01-01"]["valid_to"] == ""


def test_a_new_tenant_yaml_reaches_the_seeds(tmp_path) -> None:
    registry = load_registry()
    extra = registry["telcocorp"].model_copy(update={"id": "airmiles", "name": "AirMiles"})
    written = write_seeds(tmp_path, {**registry, "airmiles": extra})
    tenants_csv = (tmp_path / "tenants.csv").read_text()
    assert [p.name for p in written] == [
        "loyalty_rates.csv",
        "tenants.csv",
        "capability_declarations.csv",
        "booking_statuses.csv",
    ]
    assert "\nairmiles,AirMiles,points,0.01,0,,0,economy,true,true,true\n" in tenants_csv
    declarations = (tmp_path / "capability_declarations.csv").read_text()
    assert "\nairmiles,refunds,true,probe\n" in declarations
    assert "\nairmiles,partner_session,false,\n" in declarations


def test_a_rate_the_seed_type_cannot_hold_is_refused() -> None:
    registry = load_registry()
    tenant = registry["telcocorp"]
    currency = tenant.currency.model_copy(update={"usd_per_unit": Decimal("0.000000001")})
    with pytest.raises(ValueError, match="decimal places"):
        loyalty_rate_rows({"telcocorp": tenant.model_copy(update={"currency": currency})})


def test_seeds_come_from_the_deployments_tenants_dir(tmp_path, monkeypatch) -> None:
    """With TENANTS_DIR set, the seeds describe that registry, not the repository's."""
    from settings import get_settings
    from tenants.registry import REGISTRY_DIR

    tenants_dir = tmp_path / "tenants"
    tenants_dir.mkdir()
    for name in ("coffeechain", "telcocorp"):
        shutil.copyfile(REGISTRY_DIR / f"{name}.yaml", tenants_dir / f"{name}.yaml")
    text = (REGISTRY_DIR / "telcocorp.yaml").read_text(encoding="utf-8")
    (tenants_dir / "airmiles.yaml").write_text(
        text.replace("id: telcocorp", "id: airmiles").replace("name: TelcoCorp", "name: AirMiles"),
        encoding="utf-8",
    )
    monkeypatch.setenv("TENANTS_DIR", str(tenants_dir))
    get_settings.cache_clear()
    try:
        write_seeds(tmp_path)
    finally:
        get_settings.cache_clear()
    tenants_csv = (tmp_path / "tenants.csv").read_text()
    ids = [line.split(",")[0] for line in tenants_csv.splitlines()[1:]]
    assert ids == ["airmiles", "coffeechain", "telcocorp"], tenants_csv


def test_booking_statuses_are_the_booking_apis(
    built: DbtBuild, warehouse: duckdb.DuckDBPyConnection
) -> None:
    """One list of statuses: the enum's, written for dbt; every status column is tested on it."""
    from booking.domain import Status

    loaded = warehouse.execute(
        "select status from staging.stg_registry__booking_statuses"
    ).fetchall()
    assert sorted(s for (s,) in loaded) == sorted(s.value for s in Status)
    tested = {
        (r["unique_id"].split(".")[2], r["status"])
        for r in built.run_results()
        if r["unique_id"].startswith("test.")
        and "ref_stg_registry__booking_statuses_" in r["unique_id"]
    }
    assert {name.split("__status__ref_")[0] for name, _ in tested} == {
        "relationships_stg_platform__booking_events_to_state",
        "relationships_int_booking_events_pivoted_to_bookings_status",
        "relationships_int_bookings_assembled_status",
        "relationships_bookings_status",
    }
    assert {status for _, status in tested} == {"pass"}
