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

import httpx
import polars as pl
import pytest

from ingestion.landing import LandingZone, land
from ingestion.platform.events import CURSOR_FIELD
from ingestion.schemas import BOOKING_EVENTS
from sandbox.runner import Sandbox
from tests.booking.test_http import ApiServer, _env, book, coffeechain, operator, search, telcocorp
from tests.dbt.build import dbt_build
from tests.ingestion.test_booking_events import MONEY, RATES, feed, materialize, outcome

TENANTS = ("coffeechain", "telcocorp", "fintechapp")
WAITING = ("needs_reconciliation", "refund_pending")
# The feed's fields as staging names them (type -> event_type); the landing columns aside.
STAGED = {name: name for name in BOOKING_EVENTS.names() if not name.startswith("_")} | {
    "type": "event_type"
}


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


def make_bookings(client: httpx.Client, stand_ins: Sandbox) -> None:
    """A confirmed and a refunded booking at CoffeeChain; two owed refunds at TelcoCorp, whose
    reference service offers no refund: an order Duffel refused, and a cancellation."""
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
    assert cancel(client, tc, confirmed_booking(client, tc, days=34)) == "refund_pending"


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
    later = first["_loaded_at"].max() + dt.timedelta(seconds=1)
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


@pytest.fixture
def landed_and_built(
    sandbox_factory: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> dict[str, Any]:
    stand_ins = sandbox_factory(reference=True)
    server = ApiServer(_env(stand_ins, tmp_path / "booking.sqlite3"), tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            make_bookings(client, stand_ins)
            monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", operator()["Authorization"].split()[1])
            for tenant in TENANTS:
                assert outcome(materialize(server.url, tmp_path, tenant))["outcome"] == "ok"
            # Read right after landing: the API's own view of the same moment.
            waiting = operator_counts(client)
            feeds = {tenant: feed(client, tenant) for tenant in TENANTS}
    finally:
        server.stop()
    last = max(int(e["id"]) for events in feeds.values() for e in events)
    land_extra_batches(tmp_path, last)
    built = dbt_build(tmp_path / "build", LandingZone.under(tmp_path).root)
    return {"built": built, "waiting": waiting, "feeds": feeds, "data_dir": tmp_path}


def test_staged_events_are_the_landed_feed_and_saga_health_counts_what_the_api_lists(
    landed_and_built: dict[str, Any],
) -> None:
    built, waiting = landed_and_built["built"], landed_and_built["waiting"]
    assert built.returncode == 0, built.output[-5000:]
    assert {r["status"] for r in built.run_results()} <= {"success", "pass"}

    landed = landed_events(landed_and_built["data_dir"])
    distinct = landed.unique(subset=["tenant_id", "event_id"], keep="first")
    assert landed.height > distinct.height  # the overlapping copy is there, to collapse
    feed_ids = sorted(int(e["id"]) for events in landed_and_built["feeds"].values() for e in events)
    assert sorted(distinct["event_id"].to_list()) == feed_ids

    keys = ("tenant_id", "event_id")
    staged_columns = [*keys, *[c for c in STAGED.values() if c not in keys]]
    with built.connect() as con:
        staged = con.execute(
            f"select {', '.join(staged_columns)} from staging.stg_platform__booking_events"
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
        kept = con.execute(
            "select count(*) from staging.stg_platform__booking_events"
            " where batch_id = 'overlapping-copy'"
        ).fetchone()
    landed_columns = [*keys, *[k for k in STAGED if k not in keys]]
    assert staged == as_rows(distinct, landed_columns)
    assert kept == (0,)  # an event is kept as first landed
    for name in MONEY:
        assert types[name] == "DECIMAL(18,2)", name
    for name in RATES:
        assert types[name] == "DECIMAL(18,8)", name
    usd = staged_columns.index("usd_amount")
    assert {type(row[usd]) for row in staged if row[usd] is not None} == {Decimal}

    assert waiting[("telcocorp", "refund_pending")] == 2  # the fault and the cancellation
    assert {(t, s): n for t, s, n, _, _ in health} == {
        (tenant, status): waiting[(tenant, status)] for tenant in TENANTS for status in WAITING
    }
    for tenant, status, bookings, oldest_since, age in health:
        if bookings:
            assert oldest_since is not None and age == 0, (tenant, status)
        else:
            assert (oldest_since, age) == (None, None), (tenant, status)
