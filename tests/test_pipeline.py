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

from definitions import defs
from sandbox.generator import generate
from testing.platform import QUIET, run_pipeline, serving_history
from tests.booking.test_http import book, coffeechain, search
from tests.helpers.snapshot_reader import read_for
from warehouse.publish import SNAPSHOT, VERSION, publish_snapshot

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
def pipeline_run(platform: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full run, exactly as `make pipeline` does it, into a temporary data folder."""
    data_dir = tmp_path_factory.mktemp("data")
    run_pipeline(data_dir)
    return data_dir


def _snapshot(data_dir: Path) -> duckdb.DuckDBPyConnection:
    return duckdb.connect(str(data_dir / "serving" / SNAPSHOT), read_only=True)


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
    queue, ready = spawn.Queue(), spawn.Event()
    reader = spawn.Process(target=read_for, args=(str(serving / SNAPSHOT), 5.0, ready, queue))
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
    while reader.is_alive():
        source = (pipeline_run / "warehouse.duckdb") if len(versions) % 2 else smaller
        versions.append(publish_snapshot(source, serving).version)
    reader.join()
    reads, errors, torn = queue.get(timeout=5)
    assert len(versions) >= 3 and reads > 10
    assert (errors, torn) == (0, 0)
    assert json.loads((serving / VERSION).read_text())["version"] == versions[-1]
    assert sorted(p.name for p in serving.iterdir()) == [SNAPSHOT, VERSION]


def test_live_job_brings_new_bookings_to_the_snapshot(
    platform: str, history: Path, tmp_path: Path
) -> None:
    """Live mode's micro-batch: one cycle lands, builds and publishes; the next cycle takes
    exactly the bookings made in between through the booking API, and records its steps as
    asset materializations."""
    data_dir = tmp_path / "data"
    one_cycle = {
        **QUIET,
        "ops": {"live_cycles": {"config": {"minutes": 0.001}}},
        "resources": {
            "landing": {"config": {"data_dir": str(data_dir)}},
            "warehouse": {"config": {"data_dir": str(data_dir)}},
        },
    }

    def bookings() -> int:
        with duckdb.connect(str(data_dir / "serving" / SNAPSHOT), read_only=True) as con:
            return con.execute("select count(*) from bookings").fetchone()[0]

    with dg.instance_for_test() as instance:
        live_job = defs.resolve_job_def("live_job")
        assert live_job.execute_in_process(run_config=one_cycle, instance=instance).success
        before = bookings()
        with httpx.Client(base_url=platform, timeout=30) as client:
            # the five richest active CoffeeChain members, a search each (booking an offer
            # spends its request)
            richest = (
                pl.read_parquet(history / "members.parquet")
                .filter((pl.col("tenant_id") == "coffeechain") & (pl.col("status") == "active"))
                .sort("balance", descending=True)["member_id"]
                .head(5)
            )
            for days, member_id in enumerate(richest, start=40):
                member = coffeechain(member_id)
                booked = book(client, member, search(client, member, days=days)[0])
                assert booked.status_code == 201, booked.text
        result = live_job.execute_in_process(run_config=one_cycle, instance=instance)
        assert result.success
        assert bookings() == before + 5
        materialized = {
            (event.asset_key.to_user_string(), event.partition)
            for event in result.get_asset_materialization_events()
            for event in [event.materialization]
        }
        for tenant in ("coffeechain", "fintechapp", "telcocorp"):
            assert ("raw/platform/booking_events", tenant) in materialized
            assert ("raw/duffel/orders", tenant) in materialized
        assert ("marts/bookings", None) in materialized
        assert ("serving/snapshot", None) in materialized
