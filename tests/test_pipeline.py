"""The whole pipeline on generated history: the booking API serving the platform's history,
stand-ins for the tenants and Duffel -> Dagster ingestion -> dbt -> serving snapshot."""

from __future__ import annotations

import datetime as dt
import json
import multiprocessing
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import polars as pl
import pytest

from ingestion.landing.zone import LandingZone
from ingestion.platform.assets import BookingApiResource
from ingestion.resources import LandingResource, TenantApisResource
from orchestration import live
from sandbox.generator import generate
from testing.platform import run_pipeline, serving_history
from tests.booking.test_http import book, coffeechain, search
from tests.helpers.asset_checks import (
    checks_of_latest_materialization,
    last_event_id,
    materialized_since,
)
from tests.helpers.snapshot_reader import read_until
from warehouse.dbt import WarehouseResource, warehouse_models
from warehouse.publish import TABLES, VERSION, connect, publish_snapshot

BOOKINGS_KEY = dg.AssetKey(["marts", "bookings"])

ANCHOR = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    generate(4000, 21, out, anchor=ANCHOR, anomaly_rate=0.002)
    return out


@pytest.fixture(scope="module", params=["extended", "reference"])
def mode(request: pytest.FixtureRequest) -> str:
    """The stand-ins with our extensions, or with the tenants' reference behaviour only."""
    return request.param


@pytest.fixture(scope="module")
def platform(history: Path, mode: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The stand-ins and the booking API serving the history; yields the API's URL."""
    folder = tmp_path_factory.mktemp(f"platform-{mode}")
    with serving_history(history, folder, reference=mode == "reference") as api_url:
        yield api_url


@pytest.fixture(scope="module")
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


@pytest.fixture(scope="module")
def pipeline_run(
    platform: str, instance: dg.DagsterInstance, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """One full run, exactly as `make pipeline` does it, into a temporary data folder."""
    data_dir = tmp_path_factory.mktemp("data")
    run_pipeline(data_dir, instance)
    return data_dir


def test_the_scheduled_build_shows_dbt_tests_as_checks_of_each_materialization(
    pipeline_run: Path, instance: dg.DagsterInstance
) -> None:
    """What the UI shows: every mart's dbt tests evaluated for its latest materialization."""
    marts = {check.asset_key for check in warehouse_models.check_keys}
    checked = {
        key: checks_of_latest_materialization(instance, key)
        for key in marts
        if key.path[0] == "marts"
    }
    assert all("ERROR" not in checks.values() for checks in checked.values()), checked
    assert "passed" in checked[BOOKINGS_KEY].values()


def _snapshot(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return connect(data_dir / "serving")


def test_reconciliation_lists_exactly_the_planted_anomalies(
    pipeline_run: Path, history: Path, mode: str
) -> None:
    """Every planted anomaly a check can see, and nothing else: against reference services
    the ledger checks cannot run (no ledger feed), so only the Duffel ones are listed."""
    manifest = json.loads((history / "manifest.json").read_text())
    checks = {"ledger_vs_platform", "duffel_vs_platform"}
    if mode == "reference":
        checks = {"duffel_vs_platform"}
    planted = {
        (a["kind"], a["tenant_id"], a["booking_id"])
        for a in manifest["anomalies"]
        if a["expected_in"] == "reconciliation" and a["check"] in checks
    }
    with _snapshot(pipeline_run) as con:
        unavailable = {
            (tenant, check)
            for tenant, check in con.execute(
                "select tenant_id, check_name from reconciliation_checks where not available"
            ).fetchall()
        }
    tenants = set(manifest["counts"])
    expected_unavailable = (
        {(t, "ledger_vs_platform") for t in tenants} if mode == "reference" else set()
    )
    assert unavailable == expected_unavailable
    with _snapshot(pipeline_run) as con:
        found = set(
            con.execute("select kind, tenant_id, booking_id from reconciliation_issues").fetchall()
        )
    assert planted  # the generator did plant some
    assert found == planted


def test_the_member_snapshot_follows_what_the_tenant_offers(pipeline_run: Path, mode: str) -> None:
    source = "balance lookups" if mode == "reference" else "from the member list"
    with _snapshot(pipeline_run) as con:
        reasons = dict(
            con.execute(
                "select tenant_id, reason from reconciliation_checks"
                " where check_name = 'member_liability' and available"
            ).fetchall()
        )
        members = dict(
            con.execute("select tenant_id, count(*) from members group by all").fetchall()
        )
    assert set(reasons) == set(members) == {"coffeechain", "fintechapp", "telcocorp"}
    assert all(source in reason for reason in reasons.values()), reasons
    assert all(n > 0 for n in members.values())


def test_bookings_match_the_generated_statuses(pipeline_run: Path, history: Path) -> None:
    manifest = json.loads((history / "manifest.json").read_text())
    with _snapshot(pipeline_run) as con:
        rows = con.execute(
            "select tenant_id, status, count(*) from bookings group by all"
        ).fetchall()
        assert (
            con.execute("select count(*) from bookings where tenant_id is null").fetchone()[0] == 0
        )
    counts = {(t, s): n for t, s, n in rows}
    for tenant, truth in manifest["counts"].items():
        for status, expected in truth["bookings_by_status"].items():
            assert counts.get((tenant, status), 0) == expected, (tenant, status)


def test_serving_money_is_decimal_and_sums_to_the_cent(pipeline_run: Path) -> None:
    with _snapshot(pipeline_run) as con:
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns where table_name = 'bookings'"
            ).fetchall()
        )
        usd = con.execute("select sum(usd_amount) from bookings").fetchone()[0]
        daily = con.execute("select sum(usd_volume) from daily_tenant_metrics").fetchone()[0]
    assert types["usd_amount"].startswith("DECIMAL") and types["net_usd"].startswith("DECIMAL")
    assert isinstance(usd, Decimal) and usd == daily


def test_publishing_while_a_reader_queries_never_shows_errors_or_half_state(
    pipeline_run: Path,
) -> None:
    serving = pipeline_run / "serving"
    spawn = multiprocessing.get_context("spawn")
    queue, ready, stop, done = spawn.Queue(), spawn.Event(), spawn.Event(), spawn.Value("i", 0)
    reader = spawn.Process(target=read_until, args=(str(serving), stop, ready, queue, done))
    reader.start()
    assert ready.wait(60)
    # Alternate two different but each self-consistent warehouses, so a read that mixed
    # two publishes would see counts that disagree.
    smaller = pipeline_run / "smaller.duckdb"
    shutil.copyfile(pipeline_run / "warehouse.duckdb", smaller)
    with duckdb.connect(str(smaller)) as con:
        con.execute("delete from marts.bookings where tenant_id = 'telcocorp'")
        con.execute("delete from marts.daily_tenant_metrics where tenant_id = 'telcocorp'")
    versions = []
    # However slow the machine: publish until the reader has read across several publishes.
    while reader.is_alive() and (len(versions) < 4 or done.value <= 10):
        source = (pipeline_run / "warehouse.duckdb") if len(versions) % 2 else smaller
        versions.append(publish_snapshot(source, serving).version)
    stop.set()
    reads, errors, torn = queue.get(timeout=60)
    reader.join()
    assert len(versions) >= 3 and reads > 10
    assert (errors, torn) == (0, 0)
    assert json.loads((serving / VERSION).read_text())["version"] == versions[-1]
    assert sorted(p.name for p in serving.iterdir()) == [VERSION, TABLES]
    assert not [p for p in (serving / TABLES).iterdir() if not p.name.endswith(".duckdb")]


def _book_five(platform: str, history: Path) -> None:
    """Five bookings through the booking API by the five richest active CoffeeChain members,
    a search each (booking an offer spends its request)."""
    richest = (
        pl.read_parquet(history / "members.parquet")
        .filter((pl.col("tenant_id") == "coffeechain") & (pl.col("status") == "active"))
        .sort("balance", descending=True)["member_id"]
        .head(5)
    )
    with httpx.Client(base_url=platform, timeout=30) as client:
        for days, member_id in enumerate(richest, start=40):
            member = coffeechain(member_id)
            booked = book(client, member, search(client, member, days=days)[0])
            assert booked.status_code == 201, booked.text


def test_live_service_brings_new_bookings_to_the_snapshot(
    platform: str, history: Path, tmp_path: Path
) -> None:
    """Live mode's micro-batch: a cycle lands, builds and publishes; the next takes exactly
    the bookings made in between, materializes only what they changed (CoffeeChain's
    partitions, the models they feed) and evaluates those models' dbt tests as asset checks
    of the new materializations; a cycle with nothing new materializes nothing."""
    data_dir = tmp_path / "data"

    def bookings() -> int:
        with connect(data_dir / "serving") as con:
            return con.execute("select count(*) from bookings").fetchone()[0]

    with dg.instance_for_test() as instance:
        service = live.LiveService(
            instance,
            TenantApisResource(),
            BookingApiResource(),
            LandingResource(data_dir=str(data_dir)),
            WarehouseResource(data_dir=str(data_dir)),
            whole_history_seconds=3600,
        )
        assert service.run(minutes=0) == 1
        zone = LandingZone.under(data_dir)
        last_order = zone.scan("duffel", "orders", "coffeechain").select(pl.max("created_at"))
        last_order_at = last_order.collect().item()
        checks = checks_of_latest_materialization(instance, BOOKINGS_KEY)
        assert "ERROR" not in checks.values() and "passed" in checks.values(), checks
        before, mark = bookings(), last_event_id(instance)
        _book_five(platform, history)

        cycle = service.cycle()
        service.reporter.flush()  # the instance is written on a thread of its own
        assert cycle is not None and bookings() == before + 5
        materialized = materialized_since(instance, mark)
        assert ("raw/platform/booking_events", "coffeechain") in materialized
        assert ("raw/duffel/orders", "coffeechain") in materialized
        assert ("marts/bookings", None) in materialized
        assert ("serving/snapshot", None) in materialized
        # Nothing landed for the other tenants, nor for members or reference data.
        assert {partition for _, partition in materialized} == {"coffeechain", None}
        assert not {key for key, _ in materialized} & {
            "staging/stg_loyalty__members",
            "staging/stg_duffel__airlines",
            "marts/members",
            # rebuilt from the whole history: not due for an hour after the first cycle
            "marts/reconciliation_issues",
        }
        # Between sweeps Duffel is asked only for the orders made since the last listing,
        # the first cycle's sweep for those of the whole refresh window.
        orders = instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=dg.AssetKey(["raw", "duffel", "orders"]), asset_partitions=["coffeechain"]
            ),
            limit=2,
        ).records
        this_cycle, first = (r.asset_materialization.metadata["cursor_since"].value for r in orders)
        assert first == "full history"  # nothing had landed: the first cycle listed all
        # not the refresh window (35 days) again: from the last order listed, less the overlap
        since = dt.datetime.fromisoformat(this_cycle)
        assert since >= last_order_at - dt.timedelta(minutes=10)
        # The new materialization's checks ran, against it.
        assert checks_of_latest_materialization(instance, BOOKINGS_KEY) == checks

        mark = last_event_id(instance)
        assert service.cycle() is None  # nothing new: nothing built, nothing reported
        assert materialized_since(instance, mark) == set()

        # Once due, the whole-history models left out since catch up, though nothing landed.
        service.whole_history_seconds = 0
        cycle = service.cycle()
        service.reporter.flush()
        assert cycle is not None and cycle.rows == 0
        assert materialized_since(instance, mark) == {
            ("marts/reconciliation_issues", None),
            ("serving/snapshot", None),
        }
        assert service.cycle() is None
