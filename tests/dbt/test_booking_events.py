"""The booking API's event feed through the warehouse: real bookings made over the real booking
API against reference-mode stand-ins, landed by the ingestion asset, built by `dbt build`; the
staged events are the feed exactly and saga_health counts what the API itself lists."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import httpx
import polars as pl
import pytest

from ingestion.landing.schemas import BOOKING_EVENTS
from ingestion.landing.zone import LandingZone, land
from ingestion.platform.events import CURSOR_FIELD
from sandbox.runner import Sandbox
from testing.dbt_build import DbtBuild, dbt_build
from tests.booking.test_http import (
    OPERATOR_TOKEN,
    ApiServer,
    _env,
    book,
    coffeechain,
    operator,
    search,
    telcocorp,
)
from tests.ingestion.test_booking_events import MONEY, RATES, feed, materialize, outcome

TENANTS = ("coffeechain", "telcocorp", "fintechapp")
WAITING = ("needs_reconciliation", "refund_pending")
# The feed's fields as staging names them (type -> event_type); the landing columns aside.
STAGED = {name: name for name in BOOKING_EVENTS.names() if not name.startswith("_")} | {
    "type": "event_type"
}
KEYS = ("tenant_id", "event_id")
LANDED_COLUMNS = [*KEYS, *[name for name in STAGED if name not in KEYS]]
STAGED_COLUMNS = [STAGED[name] for name in LANDED_COLUMNS]


def cancel(client: httpx.Client, headers: dict[str, str], booking_id: str) -> str:
    """Cancel with a refund asked for; returns the status the booking is left in."""
    cancelled = client.post(
        f"/api/v1/bookings/{booking_id}/cancel",
        headers={**headers, "Idempotency-Key": f"cancel-{booking_id}"},
        json={"reason": "change of plans", "refund_requested": True},
    )
    assert cancelled.status_code == 200, cancelled.text
    return cancelled.json()["data"]["status"]


def confirmed_booking(client: httpx.Client, headers: dict[str, str], days: int) -> str:
    booked = book(client, headers, search(client, headers, days=days)[0])
    assert booked.status_code == 201, booked.text
    assert booked.json()["data"]["status"] == "confirmed"
    return booked.json()["data"]["booking_id"]


def first_bookings(client: httpx.Client, stand_ins: Sandbox) -> str:
    """A confirmed and a refunded booking at CoffeeChain; at TelcoCorp, whose reference service
    offers no refund, a charge owed back for an order Duffel refused, and a confirmed booking
    (returned, to cancel later)."""
    cc = coffeechain()
    confirmed_booking(client, cc, days=31)
    assert cancel(client, cc, confirmed_booking(client, cc, days=32)) == "cancelled"

    tc = telcocorp(stand_ins)
    flight = search(client, tc, days=33)[0]
    stand_ins.inject_fault("duffel", "order_create", "offer_no_longer_available")
    try:
        refused = book(client, tc, flight)
    finally:
        stand_ins.clear_faults()
    assert refused.status_code == 410, refused.text
    assert refused.json()["booking_status"] == "refund_pending"
    return confirmed_booking(client, tc, days=34)


def operator_counts(client: httpx.Client) -> dict[tuple[str, str], int]:
    """Bookings per (tenant, status) in the waiting statuses, as the booking API lists them."""
    counts: Counter[tuple[str, str]] = Counter()
    for status in WAITING:
        listed = client.get(
            "/api/v1/admin/bookings", headers=operator(), params={"status": status, "limit": 500}
        )
        assert listed.status_code == 200, listed.text
        bookings = listed.json()["data"]["bookings"]
        assert len(bookings) < 500, "the list must not be cut at its limit"
        counts.update((b["tenant_id"], status) for b in bookings)
    return counts


def land_extra_batches(data_dir: Path, cursor: int) -> None:
    """What a long-running feed also leaves behind: a batch with no rows (only its cursor: the
    feed reached ``cursor`` with nothing for the tenant), and a copy of already-landed events
    in a later batch (a re-run that overlapped)."""
    zone = LandingZone.under(data_dir)
    cursor_only = pl.DataFrame(schema=BOOKING_EVENTS)
    at = {CURSOR_FIELD: str(cursor)}
    land(zone, "platform", "booking_events", "fintechapp", cursor_only, "cursor-only", at)
    first = pl.read_parquet(zone.files("platform", "booking_events", "coffeechain")[0])
    # stamped after everything the tenant landed, as a later batch would be
    newest = zone.scan("platform", "booking_events", "coffeechain").select(pl.col("_loaded_at"))
    later = newest.collect()["_loaded_at"].max() + dt.timedelta(seconds=1)
    copy = first.with_columns(
        pl.lit(later, dtype=BOOKING_EVENTS["_loaded_at"]).alias("_loaded_at"),
        pl.lit("overlapping-copy").alias("_batch_id"),
    )
    land(zone, "platform", "booking_events", "coffeechain", copy, "overlapping-copy")


def landed_events(data_dir: Path) -> pl.DataFrame:
    zone = LandingZone.under(data_dir)
    frames = [zone.scan("platform", "booking_events", t) for t in TENANTS]
    return pl.concat([f.collect() for f in frames if f is not None])


def as_rows(frame: pl.DataFrame, columns: list[str]) -> list[tuple[Any, ...]]:
    """Rows in ``columns`` order, sorted by their first two (tenant_id, event_id)."""
    return sorted(frame.select(columns).rows(), key=lambda row: (row[0], row[1]))


def seen_in(built: DbtBuild, data_dir: Path) -> dict[str, Any]:
    """What one build made of what had landed by then (the next build overwrites it)."""
    landed = landed_events(data_dir)
    distinct = landed.unique(subset=["tenant_id", "event_id"], keep="first")
    if built.returncode != 0:
        return {}
    with built.connect() as con:
        staged = con.execute(
            f"select {', '.join(STAGED_COLUMNS)} from staging.stg_platform__booking_events"
            " order by tenant_id, event_id"
        ).fetchall()
        types = dict(
            con.execute(
                "select column_name, data_type from information_schema.columns"
                " where table_name = 'stg_platform__booking_events'"
            ).fetchall()
        )
        health = con.execute(
            "select tenant_id, status, bookings, oldest_since, oldest_age_hours"
            " from marts.saga_health"
        ).fetchall()
        statuses = con.execute(
            "select tenant_id, status, count(*) from marts.bookings group by all"
        ).fetchall()
        (builds, kept_copies) = con.execute(
            "select count(distinct built_at), count(*) filter (where batch_id = 'overlapping-copy')"
            " from staging.stg_platform__booking_events"
        ).fetchone()
    return {
        "staged": staged,
        "landed": as_rows(distinct, LANDED_COLUMNS),
        "landed_rows": landed.height,
        "types": types,
        "health": health,
        "statuses": {(tenant, status): n for tenant, status, n in statuses},
        "builds": builds,
        "kept_copies": kept_copies,
    }


@pytest.fixture
def landed_and_built(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    """Two rounds of bookings, each landed and built (the second build is incremental), then
    the extra batches a long-running feed leaves and a third build."""
    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", OPERATOR_TOKEN)
    stand_ins = sandbox_factory(reference=True)
    server = ApiServer(_env(stand_ins, tmp_path / "booking.sqlite3"), tmp_path / "api.log")
    landing, workdir = LandingZone.under(tmp_path).root, tmp_path / "build"
    rounds: list[dict[str, Any]] = []
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            for step in ("first", "second"):
                if step == "first":
                    to_cancel = first_bookings(client, stand_ins)
                else:
                    assert cancel(client, telcocorp(stand_ins), to_cancel) == "refund_pending"
                for tenant in TENANTS:
                    assert outcome(materialize(server.url, tmp_path, tenant))["outcome"] == "ok"
                # Read right after landing: the API's own view of the same moment.
                waiting = operator_counts(client)
                feeds = {tenant: feed(client, tenant) for tenant in TENANTS}
                built = dbt_build(workdir, landing)
                seen = seen_in(built, tmp_path)
                rounds.append({"built": built, "waiting": waiting, "feeds": feeds, "seen": seen})
    finally:
        server.stop()
    last = max(int(e["id"]) for events in feeds.values() for e in events)
    land_extra_batches(tmp_path, last)
    built = dbt_build(workdir, landing)
    seen = seen_in(built, tmp_path)
    rounds.append({"built": built, "waiting": waiting, "feeds": feeds, "seen": seen})
    # the same landing zone built in one go, to compare the incremental builds with
    full = dbt_build(tmp_path / "full-build", landing)
    return {"rounds": rounds, "data_dir": tmp_path, "full": full}


# Models rebuilt incrementally from the events; saga_health and approvals measure waits up to
# each build's start, so two builds differ there by design.
FOLDED = (
    ("intermediate", "int_booking_events_pivoted_to_bookings"),
    ("intermediate", "int_bookings_assembled"),
    ("marts", "bookings"),
    ("marts", "reconciliation_issues"),
)


def rows_only_in_one(incremental: DbtBuild, full: DbtBuild, schema: str, table: str) -> int:
    """Rows (built_at aside) of one build that the other lacks, both ways."""
    con = duckdb.connect()
    try:
        con.execute(f"attach '{incremental.warehouse}' as incremental (read_only)")
        con.execute(f"attach '{full.warehouse}' as full_build (read_only)")
        columns = [
            row[0]
            for row in con.execute(
                "select column_name from information_schema.columns"
                " where table_catalog = 'full_build' and table_schema = ? and table_name = ?"
                " and column_name <> 'built_at' order by ordinal_position",
                [schema, table],
            ).fetchall()
        ]
        assert columns, table
        select = ", ".join(f'"{c}"' for c in columns)
        differing = 0
        for a, b in (("incremental", "full_build"), ("full_build", "incremental")):
            differing += con.execute(
                f"select count(*) from (select {select} from {a}.{schema}.{table}"
                f" except all select {select} from {b}.{schema}.{table})"
            ).fetchone()[0]
        return differing
    finally:
        con.close()


def test_staged_events_are_the_landed_feed_and_saga_health_counts_what_the_api_lists(
    landed_and_built: dict[str, Any],
) -> None:
    rounds = landed_and_built["rounds"]
    for number, state in enumerate(rounds, start=1):
        built, waiting, seen = state["built"], state["waiting"], state["seen"]
        assert built.returncode == 0, (number, built.output[-5000:])
        results = built.run_results()
        assert {r["status"] for r in results} <= {"success", "pass", "warn"}, number
        # the one warn-level check on data this test does not land: the reference services
        # offer no member list
        assert {r["unique_id"].split(".")[2] for r in results if r["status"] == "warn"} <= {
            "tenant_relationship_bookings_member_id__member_id__ref_members_"
        }, number

        # Staging holds each landed event once, column for column, and they are the feed's.
        assert seen["staged"] == seen["landed"], number
        assert seen["staged"], number
        for tenant, events in state["feeds"].items():
            # the feed was read after landing: it may have grown since, never changed
            staged_ids = [row[1] for row in seen["staged"] if row[0] == tenant]
            assert [int(e["id"]) for e in events][: len(staged_ids)] == staged_ids, number
        for name in MONEY:
            assert seen["types"][name] == "DECIMAL(18,2)", name
        for name in RATES:
            assert seen["types"][name] == "DECIMAL(18,8)", name
        usd = STAGED_COLUMNS.index("usd_amount")
        assert {type(row[usd]) for row in seen["staged"] if row[usd] is not None} == {Decimal}

        # The bookings mart (rebuilt incrementally from the second build on) leaves each
        # booking in its latest event's status: the waiting ones are those the API lists.
        assert {key: n for key, n in seen["statuses"].items() if key[1] in WAITING} == {
            key: n for key, n in waiting.items() if n
        }, number
        # saga_health counts what the booking API itself lists, tenant by tenant.
        assert {(t, s): n for t, s, n, _, _ in seen["health"]} == {
            (tenant, status): waiting[(tenant, status)] for tenant in TENANTS for status in WAITING
        }, number
        for tenant, status, bookings, oldest_since, age in seen["health"]:
            if bookings:
                assert oldest_since is not None and age == 0, (number, tenant, status)
            else:
                assert (oldest_since, age) == (None, None), (number, tenant, status)

    first, second, third = (state["seen"] for state in rounds)
    # The TelcoCorp booking confirmed in the first round was cancelled in the second: its
    # latest event moved it into refund_pending, beside the order Duffel refused.
    assert rounds[0]["waiting"][("telcocorp", "refund_pending")] == 1
    assert rounds[1]["waiting"][("telcocorp", "refund_pending")] == 2
    # The second and third builds were incremental: the first round's events kept their stamp,
    # except those a later batch landed again (they compete with the stored copy).
    assert (first["builds"], second["builds"], third["builds"]) == (1, 2, 3)
    # The copy landed after them changes nothing: the first landing of an event is kept.
    assert third["landed_rows"] > len(third["landed"])
    assert third["staged"] == second["staged"]
    assert third["kept_copies"] == 0

    # Three incremental builds leave the bookings exactly as one build over everything.
    full = landed_and_built["full"]
    assert full.returncode == 0, full.output[-5000:]
    for schema, table in FOLDED:
        assert rows_only_in_one(rounds[-1]["built"], full, schema, table) == 0, table


def test_the_dbt_assets_read_the_ingestion_asset() -> None:
    """The staging model's upstream in the one Dagster graph is raw/platform/booking_events."""
    import dagster as dg

    from definitions import defs

    graph = defs.get_repository_def().asset_graph
    staged = graph.get(dg.AssetKey(["staging", "stg_platform__booking_events"]))
    assert dg.AssetKey(["raw", "platform", "booking_events"]) in staged.parent_keys
    # saga health counts the bookings folded from the staged events
    folded = graph.get(dg.AssetKey(["intermediate", "int_booking_events_pivoted_to_bookings"]))
    assert staged.key in folded.parent_keys
    health = graph.get(dg.AssetKey(["marts", "saga_health"]))
    assert folded.key in health.parent_keys
