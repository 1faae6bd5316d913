"""Capabilities are facts: the loyalty ingestion jobs against reference-only stand-ins (which
404 on every extension) and against the extended ones, materialized for real per tenant.

Against the reference services every job succeeds, each extension lands as "not offered" with
its 404, and the member snapshot comes from balance lookups of the members who booked through
the real booking API. Against the extended stand-ins the same jobs find the extensions and use
the member list. Lookups take at most their share of the tenant's rate limit per run, counted
at the stand-in, and a run reaches first the members the previous one did not.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import polars as pl
import pytest
import yaml

from clients.loyalty.client import build_loyalty_client
from ingestion.definitions import defs
from ingestion.duffel.assets import orders
from ingestion.landing.schemas import BOOKING_EVENTS
from ingestion.landing.zone import LandingZone, land
from ingestion.loyalty.assets import (
    CAPABILITIES_KEY,
    LEDGER_KEY,
    MEMBERS_KEY,
    ledger_transactions,
    members,
)
from ingestion.loyalty.assets import capabilities as capabilities_asset
from ingestion.resources import LandingResource, TenantApisResource
from sandbox.runner import Sandbox, start_sandbox
from settings import get_settings
from tenants.registry import REGISTRY_DIR, load_registry
from testing.standins import sandbox_config
from tests.booking.test_http import (
    OPERATOR_TOKEN,
    ApiServer,
    _env,
    book,
    coffeechain,
    fintechapp,
    search,
    telcocorp,
)
from tests.ingestion.test_booking_events import materialize as land_booking_events

TENANTS = ("coffeechain", "fintechapp", "telcocorp")
EXTENSIONS = ("ledger_feed", "member_list")
# Who books through the booking API, per tenant, oldest booking first.
BOOKERS = {
    "coffeechain": ("CC1234567", "CC3333333"),
    "telcocorp": ("TC-DEF456",),
    "fintechapp": ("FA_87654321",),
}


def _point_clients_at(running: Sandbox, patch: pytest.MonkeyPatch) -> None:
    for name, value in running.client_env().items():
        patch.setenv(name, value)
    get_settings.cache_clear()


@pytest.fixture(scope="module")
def reference() -> Iterator[Sandbox]:
    running = start_sandbox(sandbox_config(reference=True))
    with pytest.MonkeyPatch.context() as patch:
        _point_clients_at(running, patch)
        yield running
    running.stop()
    get_settings.cache_clear()


def _headers(tenant: str, member: str, stand_ins: Sandbox) -> dict[str, str]:
    if tenant == "coffeechain":
        return coffeechain(member)
    if tenant == "telcocorp":
        return telcocorp(stand_ins, member)
    return fintechapp(stand_ins, member)


@pytest.fixture(scope="module")
def booked_and_landed(
    reference: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Real bookings through the real booking API, then its event feed landed per tenant."""
    data_dir = tmp_path_factory.mktemp("data")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BOOKING_OPERATOR_TOKEN", OPERATOR_TOKEN)
        server = ApiServer(_env(reference, data_dir / "booking.sqlite3"), data_dir / "api.log")
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                for tenant, bookers in BOOKERS.items():
                    for days, member in enumerate(bookers, start=40):
                        headers = _headers(tenant, member, reference)
                        booked = book(client, headers, search(client, headers, days=days)[0])
                        assert booked.status_code == 201, booked.text
            for tenant in TENANTS:
                assert land_booking_events(server.url, data_dir, tenant).success, tenant
        finally:
            server.stop()
    yield data_dir


def _run(data_dir: Path, tenant: str, tenants_dir: Path | None = None) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [capabilities_asset, ledger_transactions, members, orders],
        partition_key=tenant,
        resources={
            "tenant_apis": TenantApisResource(
                tenants_dir=str(tenants_dir) if tenants_dir else None
            ),
            "landing": LandingResource(data_dir=str(data_dir)),
        },
        raise_on_error=False,
    )


def _metadata(result: dg.ExecuteInProcessResult, key: dg.AssetKey) -> dict[str, Any]:
    (event,) = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.materialization.metadata.items()}


def _landed(data_dir: Path, entity: str, tenant: str) -> pl.DataFrame:
    frame = LandingZone.under(data_dir).scan("loyalty", entity, tenant)
    assert frame is not None, f"nothing landed in {entity} for {tenant}"
    return frame.collect()


def test_against_reference_services_every_job_succeeds_and_records_what_is_missing(
    reference: Sandbox, booked_and_landed: Path
) -> None:
    data_dir = booked_and_landed
    for tenant in TENANTS:
        result = _run(data_dir, tenant)
        assert result.success, tenant

        # Dagster shows the facts: the feed is not offered, the members came from lookups.
        ledger = _metadata(result, LEDGER_KEY)
        assert ledger["outcome"] == "not offered", tenant
        assert "404" in ledger["detail"], tenant
        found = _metadata(result, CAPABILITIES_KEY)
        assert found["ledger_feed"].startswith("not offered: "), tenant
        snapshot = _metadata(result, MEMBERS_KEY)
        assert snapshot["source"] == "balance_lookup", tenant
        assert snapshot["member_list"].startswith("not offered: "), tenant

        # One record per probe: the capabilities asset's, then the ledger's and the members'.
        probes = _landed(data_dir, "capabilities", tenant)
        latest = probes.sort("checked_at").group_by("capability").last()
        offered = dict(zip(latest["capability"], latest["offered"], strict=True))
        declared = {"ledger_feed", "member_list", "refunds"} | (
            {"partner_session"} if tenant == "fintechapp" else set()
        )
        assert set(offered) == declared, tenant
        # CoffeeChain's refunds are reference behaviour; every extension is missing.
        assert offered == {c: tenant == "coffeechain" and c == "refunds" for c in declared}
        missing = latest.filter(~pl.col("offered"))
        assert missing["status_code"].to_list() == [404] * missing.height, tenant
        assert all("404" in detail for detail in missing["detail"]), tenant
        assert probes.filter(pl.col("capability") == "ledger_feed").height == 2, tenant
        if tenant == "fintechapp":
            # The feed and the list need the partner session the reference API does not give.
            feed = latest.filter(pl.col("capability") == "ledger_feed")["detail"].item()
            assert "partner session" in feed and "user_not_found" in feed

        # The snapshot: the members who booked, as their balance answers now.
        landed = _landed(data_dir, "members", tenant)
        assert set(landed["source"]) == {"balance_lookup"}, tenant
        assert sorted(landed["member_id"]) == sorted(BOOKERS[tenant]), tenant
        with build_loyalty_client(load_registry()[tenant]) as client:
            for row in landed.iter_rows(named=True):
                now = client.balance(row["member_id"])
                assert (row["balance"], row["tier"], row["status"]) == (
                    now.balance,
                    now.tier,
                    now.status,
                ), row["member_id"]
        assert LandingZone.under(data_dir).scan("loyalty", "ledger_transactions", tenant) is None
        # Duffel is the same in both modes: the orders the bookings made land as usual.
        landed_orders = LandingZone.under(data_dir).scan("duffel", "orders", tenant).collect()
        assert landed_orders.height >= len(BOOKERS[tenant]), tenant


def test_against_extended_stand_ins_the_extensions_are_found_and_the_list_is_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extended = start_sandbox(sandbox_config())
    try:
        _point_clients_at(extended, monkeypatch)
        for tenant in TENANTS:
            result = _run(tmp_path, tenant)
            assert result.success, tenant
            latest = _landed(tmp_path, "capabilities", tenant).group_by("capability").last()
            assert latest["offered"].all(), (tenant, latest.to_dicts())
            assert _metadata(result, MEMBERS_KEY)["source"] == "member_list"
            landed = _landed(tmp_path, "members", tenant)
            assert set(landed["source"]) == {"member_list"}
            with build_loyalty_client(load_registry()[tenant]) as client:
                listed = {m.member_id for page in client.iter_members() for m in page}
            assert set(landed["member_id"]) == listed, tenant
    finally:
        extended.stop()
        get_settings.cache_clear()


def _events(tenant: str, members_by_age: list[str]) -> pl.DataFrame:
    """One booking event per member, the last in the list the most recently active."""
    start = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    rows = [
        {
            "tenant_id": tenant,
            "event_id": index + 1,
            "booking_id": f"bkg_lookup_{index}",
            "member_id": member,
            "type": "booking.charging",
            "from_state": None,
            "to_state": "charging",
            "occurred_at": start + dt.timedelta(hours=index),
            "_loaded_at": start,
            "_batch_id": "events-lookup",
        }
        for index, member in enumerate(members_by_age)
    ]
    return pl.DataFrame(rows, schema=BOOKING_EVENTS)


class _BalanceCalls(logging.Handler):
    """Counts the balance calls the CoffeeChain stand-in answers (its own request log)."""

    def __init__(self) -> None:
        super().__init__()
        self.members: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        service, method, path = record.args[:3]  # type: ignore[index]
        if service == "coffeechain" and method == "GET" and path.endswith("/balance"):
            self.members.append(path.split("/")[-2])


def test_lookups_take_their_share_of_the_rate_limit_and_reach_the_rest_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # CoffeeChain at 6 requests a minute: lookups may take 3 per run.
    tenants_dir = tmp_path / "tenants"
    tenants_dir.mkdir()
    for path in REGISTRY_DIR.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        if data["id"] == "coffeechain":
            data["rate_limit"] = {"requests": 6, "window_seconds": 60}
        (tenants_dir / path.name).write_text(yaml.safe_dump(data))
    stand_ins = start_sandbox(
        dataclasses.replace(sandbox_config(reference=True), log_requests=True)
    )
    calls = _BalanceCalls()
    stand_in_log = logging.getLogger("sandbox.loyalty")
    stand_in_log.addHandler(calls)
    level = stand_in_log.level
    stand_in_log.setLevel(logging.INFO)
    try:
        _point_clients_at(stand_ins, monkeypatch)
        data_dir = tmp_path / "data"
        by_age = ["CC0000000", "CC2222222", "CC3333333", "CC1234567"]  # last: most recent
        zone = LandingZone.under(data_dir)
        land(zone, "platform", "booking_events", "coffeechain", _events("coffeechain", by_age), "e")
        runs = []
        for run in range(2):
            # Each run in a fresh shared limiter folder: the tenant's own quota of 6 would
            # otherwise make the second run wait for the first one's window to pass.
            monkeypatch.setenv("RATE_LIMIT_STATE_DIR", str(tmp_path / f"limits-{run}"))
            before = len(calls.members)
            result = dg.materialize(
                [members],
                partition_key="coffeechain",
                resources={
                    "tenant_apis": TenantApisResource(tenants_dir=str(tenants_dir)),
                    "landing": LandingResource(data_dir=str(data_dir)),
                },
            )
            assert result.success
            runs.append((calls.members[before:], _metadata(result, MEMBERS_KEY)))
    finally:
        stand_in_log.setLevel(level)
        stand_in_log.removeHandler(calls)
        stand_ins.stop()
        get_settings.cache_clear()

    (first, first_meta), (second, second_meta) = runs
    # Three lookups a run (half of 6), most recently active first...
    assert first == ["CC1234567", "CC3333333", "CC2222222"]
    assert (first_meta["known_members"], first_meta["looked_up"]) == (4, 3)
    assert first_meta["not_reached_this_run"] == 1
    # ...and the member the first run did not reach comes first in the next, then those
    # looked up longest ago.
    assert second == ["CC0000000", "CC1234567", "CC2222222"]
    assert (second_meta["looked_up"], second_meta["not_reached_this_run"]) == (3, 1)
    landed = zone.scan("loyalty", "members", "coffeechain").collect()
    assert sorted(set(landed["member_id"])) == sorted(by_age)
    assert landed.height == 6


def test_the_capabilities_asset_is_in_the_members_job() -> None:
    job = defs.resolve_job_def("ingest_members_job")
    assert {CAPABILITIES_KEY, MEMBERS_KEY} <= set(job.asset_layer.executable_asset_keys)
