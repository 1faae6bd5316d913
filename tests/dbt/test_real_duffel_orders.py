"""Real recorded Duffel orders (tests/fixtures/duffel/) through ingestion's own listing and
flattening (``sync_orders``) and `dbt build`: they have no metadata.booking_id, no `type`, no
payment_status.paid_at and no `cancellation` object, yet every one lands, stages, and shows in
the warehouse: joined to the platform booking whose event names its id, the others listed in
reconciliation as order_without_booking. Nothing is dropped."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest

from clients.duffel.client import DuffelClient
from ingestion.landing.schemas import BOOKING_EVENTS
from ingestion.landing.zone import LandingZone, land
from ingestion.sync import sync_orders
from testing.dbt_build import DbtBuild, dbt_build

FIXTURES = Path(__file__).parents[1] / "fixtures" / "duffel"
TENANT = "coffeechain"
BOOKED_ORDER = "ord_0000AL3E9lRtT7XMqrEHp8"  # order.json; a platform event names it


def recorded_orders() -> list[dict[str, Any]]:
    single = json.loads((FIXTURES / "order.json").read_text())["data"]
    page = json.loads((FIXTURES / "order_page_filtered.json").read_text())["data"]
    return [single, *page]


def recorded_duffel(orders: list[dict[str, Any]]) -> DuffelClient:
    """Duffel's order listing over the recorded payloads, byte for byte: filtered by creation
    time as Duffel filters (``created_at[after]``/``[before]``, exclusive), one page."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/air/orders", request.url
        after = request.url.params.get("created_at[after]")
        before = request.url.params.get("created_at[before]")
        limit = int(request.url.params.get("limit", "50"))

        def created(order: dict[str, Any]) -> dt.datetime:
            return dt.datetime.fromisoformat(order["created_at"])

        listed = [
            o
            for o in orders
            if (after is None or created(o) > dt.datetime.fromisoformat(after))
            and (before is None or created(o) < dt.datetime.fromisoformat(before))
        ][:limit]
        body = {"data": listed, "meta": {"after": None, "before": None, "limit": limit}}
        return httpx.Response(200, json=body)

    http = httpx.Client(base_url="https://api.duffel.test", transport=httpx.MockTransport(handler))
    return DuffelClient(http, tenant_id=TENANT)


def platform_events(loaded_at: dt.datetime) -> pl.DataFrame:
    """The booking API's events of one booking whose order is the recorded order.json."""
    common = {
        "tenant_id": TENANT,
        "booking_id": "bkg_real_order",
        "member_id": "CC1234567",
        "loyalty_amount": Decimal("24567"),
        "loyalty_currency": "stars",
        "usd_amount": Decimal("245.67"),
        "usd_per_unit": Decimal("0.01"),
        "fare_amount": Decimal("193.06"),
        "fare_currency": "GBP",
        "fx_rate": Decimal("1.2725"),
        "_loaded_at": loaded_at,
        "_batch_id": "events-0001",
    }
    steps = [
        (1, "booking.charging", None, "charging", None, None),
        (2, "booking.ordering", "charging", "ordering", "txn_real_1", None),
        (3, "booking.confirmed", "ordering", "confirmed", "txn_real_1", BOOKED_ORDER),
    ]
    rows = [
        {
            **common,
            "event_id": event_id,
            "type": event_type,
            "from_state": from_state,
            "to_state": to_state,
            "loyalty_transaction_id": charge,
            "duffel_order_id": order_id,
            "occurred_at": dt.datetime(2022, 7, 1, 14, 59, 38 + event_id, tzinfo=dt.UTC),
        }
        for event_id, event_type, from_state, to_state, charge, order_id in steps
    ]
    return pl.DataFrame(rows, schema=BOOKING_EVENTS, strict=False)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    data_dir = tmp_path_factory.mktemp("real-orders")
    zone = LandingZone.under(data_dir)
    orders = recorded_orders()
    with recorded_duffel(orders) as client:
        stats = sync_orders(client, zone, TENANT, streams=1)
    land(
        zone,
        "platform",
        "booking_events",
        TENANT,
        platform_events(dt.datetime.now(dt.UTC)),
        "events-0001",
    )
    build = dbt_build(data_dir / "build", zone.root)
    return {"orders": orders, "stats": stats, "zone": zone, "build": build}


def _rows(build: DbtBuild, sql: str) -> list[tuple[Any, ...]]:
    with build.connect() as con:
        return con.execute(sql).fetchall()


def test_the_recorded_orders_lack_every_stand_in_only_field(built: dict[str, Any]) -> None:
    """The premise: what the stand-in emits and real Duffel does not."""
    for order in built["orders"]:
        assert not (order.get("metadata") or {}).get("booking_id"), order["id"]
        assert "type" not in order and "cancellation" not in order, order["id"]
        assert "paid_at" not in order["payment_status"], order["id"]


def test_every_recorded_order_lands_and_stages(built: dict[str, Any]) -> None:
    stats, build = built["stats"], built["build"]
    ids = sorted(o["id"] for o in built["orders"])
    assert (stats.fetched, stats.landed, stats.quarantined) == (3, 3, 0)
    landed = built["zone"].scan("duffel", "orders", TENANT).collect()
    assert sorted(landed["order_id"]) == ids
    assert build.returncode == 0, build.output[-5000:]
    staged = _rows(
        build,
        "select order_id, pnr, total_amount, total_currency, order_type, paid_at,"
        " is_awaiting_payment, cancelled_at, booking_id from staging.stg_duffel__orders"
        " order by order_id",
    )
    assert [row[0] for row in staged] == ids
    recorded = {o["id"]: o for o in built["orders"]}
    for order_id, pnr, total, currency, kind, paid_at, awaiting, cancelled, meta in staged:
        order = recorded[order_id]
        assert (pnr, total, currency) == (
            order["booking_reference"],
            Decimal(order["total_amount"]),
            order["total_currency"],
        )
        assert (kind, paid_at, awaiting, cancelled, meta) == (None, None, False, None, None)
    segments = _rows(build, "select count(*) from staging.stg_duffel__order_segments")[0][0]
    assert segments == sum(len(s["segments"]) for o in built["orders"] for s in o["slices"])


def test_an_order_a_platform_event_names_joins_its_booking(built: dict[str, Any]) -> None:
    order = next(o for o in built["orders"] if o["id"] == BOOKED_ORDER)
    (row,) = _rows(
        built["build"],
        "select booking_id, status, duffel_order_id, pnr, origin, destination, airline_iata,"
        " cabin, passenger_count, fare_amount, fare_currency, fare_usd, usd_amount"
        " from marts.bookings",
    )
    first = order["slices"][0]
    assert row == (
        "bkg_real_order",
        "confirmed",
        BOOKED_ORDER,
        order["booking_reference"],
        first["origin"]["iata_code"],
        first["destination"]["iata_code"],
        order["owner"]["iata_code"],
        first["segments"][0]["passengers"][0]["cabin_class"],
        len(order["passengers"]),
        Decimal("193.06"),
        "GBP",
        Decimal("245.67"),  # 193.06 GBP at the 1.2725 the booking API used: 245.670850
        Decimal("245.67"),
    )
    (paid,) = _rows(
        built["build"], "select is_order_paid from intermediate.int_bookings_assembled"
    )[0]
    assert paid is True  # awaiting_payment false: a real order's way of saying it is paid


def test_the_orders_the_platform_did_not_make_are_listed_not_dropped(
    built: dict[str, Any],
) -> None:
    issues = _rows(
        built["build"],
        "select kind, tenant_id, booking_id, order_id, booked_at"
        " from marts.reconciliation_issues order by order_id",
    )
    others = sorted((o for o in built["orders"] if o["id"] != BOOKED_ORDER), key=lambda o: o["id"])
    assert issues == [
        (
            "order_without_booking",
            TENANT,
            None,
            o["id"],
            dt.datetime.fromisoformat(o["created_at"]),
        )
        for o in others
    ]


def test_a_new_order_version_reassembles_its_booking_incrementally(
    built: dict[str, Any], tmp_path: Path
) -> None:
    """Duffel cancels the booked order (a real order says so only by cancelled_at): the next
    pull lands the new version, and the next, incremental, build re-assembles the booking
    from it, exactly as a full build does; nothing else is listed for it."""
    data_dir = tmp_path / "data"
    zone = LandingZone.under(data_dir)
    shutil.copytree(built["zone"].root, zone.root)
    shutil.copytree(built["build"].warehouse.parent, tmp_path / "build")
    cancelled_at = "2022-07-02T09:00:00.000000Z"
    orders = [
        {**o, "cancelled_at": cancelled_at} if o["id"] == BOOKED_ORDER else o
        for o in built["orders"]
    ]
    with recorded_duffel(orders) as client:
        stats = sync_orders(client, zone, TENANT, streams=1)
    assert stats.landed == 1  # only the new version of the cancelled order

    incremental = dbt_build(tmp_path / "build", zone.root)
    full = dbt_build(tmp_path / "full", zone.root)
    query = (
        "select * exclude (built_at) from intermediate.int_bookings_assembled"
        " order by tenant_id, booking_id"
    )
    rows = {}
    for name, build in (("incremental", incremental), ("full", full)):
        assert build.returncode == 0, (name, build.output[-5000:])
        with build.connect() as con:
            rows[name] = con.execute(query).fetchall()
            columns = [d[0] for d in con.execute(query).description]
    assert rows["incremental"] == rows["full"]
    (booking,) = [dict(zip(columns, row, strict=True)) for row in rows["full"]]
    assert booking["order_cancelled_at"] == dt.datetime.fromisoformat(cancelled_at)
    stamp = "select built_at from intermediate.int_bookings_assembled"
    with built["build"].connect() as con:
        (first,) = con.execute(stamp).fetchone()
    with incremental.connect() as con:
        (second,) = con.execute(stamp).fetchone()
        (folded,) = con.execute(
            "select built_at from intermediate.int_booking_events_pivoted_to_bookings"
        ).fetchone()
        kinds = con.execute("select kind from marts.reconciliation_issues").fetchall()
    # re-assembled by the second build for its order alone: its events were not re-folded
    assert second > first == folded
    assert kinds == [("order_without_booking",)] * 2
