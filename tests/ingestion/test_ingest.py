"""Ingestion against running stand-ins seeded by the generator: exact counts, idempotent, incremental, isolated."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml

from ingestion.duffel.assets import orders
from ingestion.landing.zone import LandingZone
from ingestion.loyalty.assets import ledger_transactions, members
from ingestion.resources import LandingResource, TenantApisResource
from sandbox.generator import generate
from sandbox.runner import Sandbox
from tenants.registry import REGISTRY_DIR
from tests.helpers.history_bookings import HistoryBookings
from tests.ingestion.standins import serve_standins

TENANTS = ("coffeechain", "fintechapp", "telcocorp")
# Each run lands a new member snapshot and new capability probes: facts of their moment.
SNAPSHOTS = {"members", "capabilities"}
ANCHOR = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    generate(3000, 5, out, anchor=ANCHOR, anomaly_rate=0.002)
    return out


@pytest.fixture(scope="module")
def manifest(history: Path) -> dict:
    return json.loads((history / "manifest.json").read_text())


@pytest.fixture(scope="module")
def sandbox(history: Path) -> Iterator[Sandbox]:
    yield from serve_standins(history)


def ingest(
    data_dir: Path, tenant: str, tenants_dir: Path | None = None
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ledger_transactions, members, orders],
        partition_key=tenant,
        resources={
            "tenant_apis": TenantApisResource(
                tenants_dir=str(tenants_dir) if tenants_dir else None
            ),
            "landing": LandingResource(data_dir=str(data_dir)),
        },
        raise_on_error=False,
    )


def landed(data_dir: Path, source: str, entity: str, tenant: str) -> pl.DataFrame:
    frame = LandingZone.under(data_dir).scan(source, entity, tenant)
    return frame.collect() if frame is not None else pl.DataFrame()


def quarantined(data_dir: Path, source: str, entity: str, tenant: str) -> pl.DataFrame:
    files = sorted(
        LandingZone.under(data_dir).quarantine_folder(source, entity, tenant).glob("*.parquet")
    )
    return pl.read_parquet(files) if files else pl.DataFrame({"record_key": [], "reason": []})


def metadata(result: dg.ExecuteInProcessResult, key: str) -> dict:
    for event in result.get_asset_materialization_events():
        if event.asset_key.to_user_string() == key:
            return {k: v.value for k, v in event.materialization.metadata.items()}
    raise AssertionError(f"no materialization of {key}")


@pytest.fixture(scope="module")
def first_run(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    data_dir = tmp_path_factory.mktemp("data")
    for tenant in TENANTS:
        assert ingest(data_dir, tenant).success, tenant
    return data_dir


def test_landed_counts_equal_the_generated_truth(first_run: Path, manifest: dict) -> None:
    for tenant in TENANTS:
        truth = manifest["counts"][tenant]
        ledger = landed(first_run, "loyalty", "ledger_transactions", tenant)
        assert ledger.height == truth["ledger_transactions"], tenant
        assert ledger["transaction_id"].n_unique() == ledger.height
        assert landed(first_run, "duffel", "orders", tenant).height == truth["orders"], tenant
        assert landed(first_run, "loyalty", "members", tenant).height == truth["members"], tenant
        assert set(ledger["tenant_id"]) == {tenant}
        segments = landed(first_run, "duffel", "order_segments", tenant)
        assert set(segments["order_id"]) == set(
            landed(first_run, "duffel", "orders", tenant)["order_id"]
        )


def test_quarantine_holds_exactly_the_planted_malformed_records(
    first_run: Path, manifest: dict
) -> None:
    for tenant in TENANTS:
        planted = [a for a in manifest["anomalies"] if a["tenant_id"] == tenant]
        bad_ledger = quarantined(first_run, "loyalty", "ledger_transactions", tenant)
        assert set(bad_ledger["record_key"]) == {
            a["transaction_id"] for a in planted if a["kind"] == "malformed_ledger_record"
        }
        for row in bad_ledger.iter_rows(named=True):
            anomaly = next(a for a in planted if a.get("transaction_id") == row["record_key"])
            assert (
                f"field '{anomaly['field']}'" in row["reason"]
                and row["record_key"] in row["reason"]
            )
            assert json.loads(row["raw_payload"])["transaction_id"] == row["record_key"]
        bad_orders = quarantined(first_run, "duffel", "orders", tenant)
        assert set(bad_orders["record_key"]) == {
            a["order_id"] for a in planted if a["kind"] == "malformed_order"
        }
        assert all("field 'total_amount'" in reason for reason in bad_orders["reason"])


def test_money_and_time_are_typed_exactly(first_run: Path, manifest: dict) -> None:
    ledger = landed(first_run, "loyalty", "ledger_transactions", "fintechapp")
    assert ledger.schema["amount"] == pl.Decimal(18, 2)
    assert ledger.schema["updated_at"] == pl.Datetime("us", "UTC")
    assert {"_loaded_at", "_batch_id", "tenant_id"} <= set(ledger.columns)
    orders_frame = landed(first_run, "duffel", "orders", "coffeechain")
    assert orders_frame.schema["total_amount"] == pl.Decimal(18, 2)
    # Every order names its booking but those made outside the platform (planted).
    unbooked = orders_frame.filter(pl.col("meta_booking_id").is_null())["order_id"]
    assert set(unbooked) == {
        a["order_id"]
        for a in manifest["anomalies"]
        if a["kind"] == "order_without_booking" and a["tenant_id"] == "coffeechain"
    }


def test_rerun_is_idempotent(sandbox: Sandbox, first_run: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(first_run, data_dir)
    before = sorted(
        p.relative_to(data_dir) for p in data_dir.rglob("*.parquet") if not SNAPSHOTS & set(p.parts)
    )
    for tenant in TENANTS:
        result = ingest(data_dir, tenant)
        assert result.success
        assert metadata(result, "raw/loyalty/ledger_transactions")["landed"] == 0
        assert metadata(result, "raw/duffel/orders")["landed"] == 0
    after = sorted(
        p.relative_to(data_dir) for p in data_dir.rglob("*.parquet") if not SNAPSHOTS & set(p.parts)
    )
    assert after == before
    for tenant in TENANTS:
        assert (
            landed(data_dir, "loyalty", "ledger_transactions", tenant).height
            == landed(first_run, "loyalty", "ledger_transactions", tenant).height
        )


def test_incremental_run_lands_exactly_the_new_bookings_and_survives_a_reset(
    sandbox: Sandbox, first_run: Path, history: Path, manifest: dict, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    shutil.copytree(first_run, data_dir)
    traffic = HistoryBookings(
        sandbox.loyalty,
        sandbox.duffel,
        sandbox.config,
        pl.read_parquet(history / "members.parquet"),
        first_counter=manifest["next_counter"],
        seed=manifest["seed"],
    )
    ledger_before = {t: sandbox.loyalty.ledger_count(t) for t in TENANTS}
    orders_before = {t: sandbox.duffel.order_count(t) for t in TENANTS}
    statuses = [traffic.book_one() for _ in range(12)]
    for tenant in TENANTS:
        result = ingest(data_dir, tenant)
        assert result.success
        new_ledger = sandbox.loyalty.ledger_count(tenant) - ledger_before[tenant]
        new_orders = sandbox.duffel.order_count(tenant) - orders_before[tenant]
        assert metadata(result, "raw/loyalty/ledger_transactions")["landed"] == new_ledger, tenant
        assert metadata(result, "raw/duffel/orders")["landed"] == new_orders, tenant
    # Only a charged booking has a Duffel order (as the booking API orders after charging).
    ordered = statuses.count("confirmed")
    assert ordered > 0
    assert sum(sandbox.duffel.order_count(t) - orders_before[t] for t in TENANTS) == ordered
    counts = {t: landed(data_dir, "loyalty", "ledger_transactions", t).height for t in TENANTS}
    # The upstream resets to its seed: what landed stays landed, and nothing lands twice.
    sandbox.reset()
    for tenant in TENANTS:
        result = ingest(data_dir, tenant)
        assert result.success
        assert metadata(result, "raw/loyalty/ledger_transactions")["landed"] == 0
        assert landed(data_dir, "loyalty", "ledger_transactions", tenant).height == counts[tenant]


def test_a_failing_tenant_fails_only_its_partition(
    sandbox: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COFFEECHAIN_API_KEY", "wrong-key")
    results = {tenant: ingest(tmp_path, tenant) for tenant in TENANTS}
    assert not results["coffeechain"].success
    assert results["telcocorp"].success and results["fintechapp"].success
    assert landed(tmp_path, "loyalty", "ledger_transactions", "telcocorp").height > 0
    assert landed(tmp_path, "loyalty", "ledger_transactions", "coffeechain").height == 0
    failure = next(e for e in results["coffeechain"].all_events if e.is_step_failure)
    assert "wrong-key" not in str(failure.step_failure_data.error)


def test_a_tenant_without_a_ledger_feed_is_not_offered_not_failed(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    registry = tmp_path / "tenants"
    registry.mkdir()
    for path in REGISTRY_DIR.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if data["id"] == "telcocorp":
            data["capabilities"]["ledger_feed"] = None
        (registry / path.name).write_text(yaml.safe_dump(data))
    result = ingest(tmp_path / "data", "telcocorp", tenants_dir=registry)
    assert result.success
    ledger = metadata(result, "raw/loyalty/ledger_transactions")
    assert ledger["outcome"] == "not offered" and ledger["landed"] == 0
    assert metadata(result, "raw/duffel/orders")["landed"] > 0
