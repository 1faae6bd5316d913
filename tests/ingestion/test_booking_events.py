"""raw/platform/booking_events end to end: the real booking API (a uvicorn subprocess) over the
real stand-ins, bookings made with each tenant's own credentials, the asset materialized per
tenant with ``dg.materialize``; what lands is the feed exactly, once, whatever stops a run."""

from __future__ import annotations

import dataclasses
import logging
import socket
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import polars as pl
import pytest

from ingestion.definitions import defs
from ingestion.landing import batches as landing_batches
from ingestion.landing.zone import CURSOR_KEY, LandingZone
from ingestion.platform import events as platform_events
from ingestion.platform.assets import EVENTS_KEY, SEARCHES_KEY, BookingApiResource, booking_events
from ingestion.platform.feed import sync_feed
from ingestion.resources import LandingResource
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

TENANTS = ("coffeechain", "telcocorp")
MONEY = ("loyalty_amount", "cashback_amount", "refund_amount", "usd_amount", "fare_amount")
RATES = ("usd_per_unit", "fx_rate")
TEXT = (
    "booking_id",
    "tenant_id",
    "member_id",
    "type",
    "from_state",
    "to_state",
    "loyalty_currency",
    "fare_currency",
    "loyalty_transaction_id",
    "refund_transaction_id",
    "duffel_order_id",
    "detail",
    "actor",
)


class Killed(BaseException):
    """The process dies here: nothing after this point runs, no handler sees it."""


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[Any]:
    from sandbox.config import SERVICES, Limit, SandboxConfig
    from sandbox.runner import start_sandbox

    config = SandboxConfig(
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        limits=dict.fromkeys(SERVICES, Limit(100_000)),
    )
    running = start_sandbox(dataclasses.replace(config))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in running.client_env().items():
            patch.setenv(name, value)
        yield running
    running.stop()


@pytest.fixture(scope="module")
def api(stand_ins: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("api")
    server = ApiServer(_env(stand_ins, folder / "booking.sqlite3"), folder / "api.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60) as http:
        yield http


@pytest.fixture(autouse=True)
def operator_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", OPERATOR_TOKEN)


def headers_of(tenant: str, stand_ins: Any) -> dict[str, str]:
    return coffeechain() if tenant == "coffeechain" else telcocorp(stand_ins)


def make_booking(client: httpx.Client, stand_ins: Any, tenant: str, cancel: bool = False) -> str:
    """Book the cheapest flight with the tenant's own member credentials (and cancel it)."""
    headers = headers_of(tenant, stand_ins)
    booked = book(client, headers, search(client, headers)[0])
    assert booked.status_code == 201, booked.text
    booking_id = booked.json()["data"]["booking_id"]
    if cancel:
        cancelled = client.post(
            f"/api/v1/bookings/{booking_id}/cancel",
            headers={**headers_of(tenant, stand_ins), "Idempotency-Key": uuid.uuid4().hex},
            json={"reason": "change of plans", "refund_requested": True},
        )
        assert cancelled.status_code == 200, cancelled.text
    return booking_id


def feed(client: httpx.Client, tenant: str) -> list[dict[str, Any]]:
    """The tenant's whole event feed, read directly from the API."""
    events: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        params = {"limit": 1000, "tenant_id": tenant, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/admin/events", headers=operator(), params=params)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        events.extend(data["events"])
        cursor = data["next_cursor"]
        if not data["has_more"]:
            return events


def landed(data_dir: Path, tenant: str) -> pl.DataFrame:
    frame = LandingZone.under(data_dir).scan("platform", "booking_events", tenant)
    assert frame is not None, "nothing landed"
    return frame.collect().sort("event_id")


def as_feed(rows: pl.DataFrame) -> list[dict[str, Any]]:
    """Landed rows in the feed's own terms: ids and texts as sent, amounts as exact Decimals."""
    out = []
    for row in rows.iter_rows(named=True):
        out.append(
            {"id": str(row["event_id"])}
            | {name: row[name] for name in TEXT}
            | {name: row[name] for name in MONEY + RATES}
            | {"occurred_at": row["occurred_at"]}
        )
    return out


def expected(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    import datetime as dt

    return [
        {"id": e["id"]}
        | {name: e[name] for name in TEXT}
        | {name: None if e[name] is None else Decimal(e[name]) for name in MONEY + RATES}
        | {"occurred_at": dt.datetime.fromisoformat(e["occurred_at"]).astimezone(dt.UTC)}
        for e in events
    ]


def materialize(
    api_url: str, data_dir: Path, tenant: str, *, page_size: int = 500, batch_size: int = 10_000
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [booking_events],
        partition_key=tenant,
        resources={
            "booking_api": BookingApiResource(
                base_url=api_url, page_size=page_size, batch_size=batch_size
            ),
            "landing": LandingResource(data_dir=str(data_dir)),
        },
        raise_on_error=False,
    )


def outcome(result: dg.ExecuteInProcessResult) -> dict[str, Any]:
    assert result.success
    (event,) = result.get_asset_materialization_events()
    return {k: v.value for k, v in event.materialization.metadata.items()}


@pytest.fixture(scope="module")
def booked(client: httpx.Client, stand_ins: Any) -> dict[str, list[str]]:
    """Two tenants' bookings: a confirmed and a cancelled (refunded) one each."""
    return {
        tenant: [
            make_booking(client, stand_ins, tenant),
            make_booking(client, stand_ins, tenant, cancel=True),
        ]
        for tenant in TENANTS
    }


def test_landed_events_equal_the_feed_then_reruns_land_only_new_events(
    api: ApiServer,
    client: httpx.Client,
    stand_ins: Any,
    booked: dict[str, list[str]],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    for tenant in TENANTS:
        events = feed(client, tenant)
        assert {e["booking_id"] for e in events} == set(booked[tenant])
        assert {"booking.confirmed", "booking.cancelled"} <= {e["type"] for e in events}
        first = outcome(materialize(api.url, tmp_path, tenant))
        assert (first["outcome"], first["landed"], first["quarantined"]) == ("ok", len(events), 0)
        rows = landed(tmp_path, tenant)
        assert as_feed(rows) == expected(events)
        assert rows["tenant_id"].unique().to_list() == [tenant]
        for name in MONEY:
            assert rows.schema[name] == pl.Decimal(18, 2), name
        confirmed = rows.filter(pl.col("type") == "booking.confirmed")
        assert confirmed.height == 2 and confirmed["usd_amount"].null_count() == 0

        files = sorted(
            p.name for p in LandingZone.under(tmp_path).files("platform", "booking_events", tenant)
        )
        again = outcome(materialize(api.url, tmp_path, tenant))
        assert (again["landed"], again["batches"], again["fetched"]) == (0, 0, 0)
        assert (
            sorted(
                p.name
                for p in LandingZone.under(tmp_path).files("platform", "booking_events", tenant)
            )
            == files
        )

    new_booking = make_booking(client, stand_ins, "coffeechain")
    before = landed(tmp_path, "coffeechain")["event_id"].max()
    new_events = [e for e in feed(client, "coffeechain") if int(e["id"]) > before]
    assert new_events and {e["booking_id"] for e in new_events} == {new_booking}
    more = outcome(materialize(api.url, tmp_path, "coffeechain"))
    assert (more["landed"], more["fetched"]) == (len(new_events), len(new_events))
    rows = landed(tmp_path, "coffeechain")
    assert rows["event_id"].is_duplicated().sum() == 0
    assert as_feed(rows) == expected(feed(client, "coffeechain"))
    # The other tenant's events never land in this partition, and its own stay as they were.
    assert as_feed(landed(tmp_path, "telcocorp")) == expected(feed(client, "telcocorp"))
    assert OPERATOR_TOKEN not in caplog.text


@pytest.mark.parametrize("after_batch", [1, 3])
def test_a_crash_between_batches_then_a_rerun_lands_exactly_a_clean_runs_set(
    api: ApiServer,
    client: httpx.Client,
    booked: dict[str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    after_batch: int,
) -> None:
    tenant = "telcocorp"
    clean_dir, crashed_dir = tmp_path / "clean", tmp_path / "crashed"
    clean = outcome(materialize(api.url, clean_dir, tenant, page_size=2, batch_size=2))
    assert clean["batches"] > after_batch, "the feed must span more batches than the crash point"

    real_land = landing_batches.land
    count = {"batches": 0}

    def land(*args: Any, **kwargs: Any) -> Path:
        path = real_land(*args, **kwargs)
        count["batches"] += 1
        if count["batches"] == after_batch:
            raise Killed
        return path

    with monkeypatch.context() as patch:
        patch.setattr(landing_batches, "land", land)
        crashed = materialize(api.url, crashed_dir, tenant, page_size=2, batch_size=2)
    assert not crashed.success
    (failure,) = [e for e in crashed.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "Killed" in str(failure.event_specific_data.error)
    partial = landed(crashed_dir, tenant)
    assert partial.height == 2 * after_batch  # exactly the committed batches, nothing more
    rerun = outcome(materialize(api.url, crashed_dir, tenant, page_size=2, batch_size=2))
    assert rerun["landed"] == clean["landed"] - partial.height

    after, reference = landed(crashed_dir, tenant), landed(clean_dir, tenant)
    assert after["event_id"].is_duplicated().sum() == 0
    assert as_feed(after) == as_feed(reference) == expected(feed(client, tenant))
    cursors = [
        pl.read_parquet_metadata(p)[CURSOR_KEY]
        for p in LandingZone.under(crashed_dir).files("platform", "booking_events", tenant)
    ]
    assert len(cursors) == clean["batches"]


def test_without_a_token_or_a_reachable_api_the_partition_says_not_offered(
    api: ApiServer, booked: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", "")
    no_token = outcome(materialize(api.url, tmp_path, "coffeechain"))
    assert (
        no_token["outcome"] == "not offered: no operator token (BOOKING_OPERATOR_TOKEN is not set)"
    )
    assert no_token["landed"] == 0

    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", OPERATOR_TOKEN)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        nowhere = f"http://127.0.0.1:{probe.getsockname()[1]}"
    gone = outcome(materialize(nowhere, tmp_path, "coffeechain"))
    assert gone["outcome"] == f"not offered: the booking API is not reachable at {nowhere}"
    assert LandingZone.under(tmp_path).files("platform", "booking_events", "coffeechain") == []


def test_a_refused_token_fails_only_that_partition_and_never_shows_the_token(
    api: ApiServer, booked: dict[str, list[str]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wrong = "not-the-operator-token-1234"
    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", wrong)
    result = materialize(api.url, tmp_path, "coffeechain")
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    message = str(failure.event_specific_data.error)
    assert "refused the operator token" in message and "401" in message
    assert wrong not in message and OPERATOR_TOKEN not in message


def test_the_code_location_has_the_asset_its_checks_and_job() -> None:
    graph = defs.get_repository_def().asset_graph
    node = graph.get(EVENTS_KEY)
    assert EVENTS_KEY.to_user_string() == "raw/platform/booking_events"
    assert node.group_name == "platform"
    assert (node.description or "").startswith("One row per booking event")
    assert set(node.partitions_def.get_partition_keys()) >= set(TENANTS)
    job = defs.resolve_job_def("ingest_platform_job")
    # The platform job lands both of the booking API's feeds (events and searches).
    assert job.asset_layer.executable_asset_keys == {EVENTS_KEY, SEARCHES_KEY}
    checks = {k.name for k in graph.asset_check_keys if k.asset_key == EVENTS_KEY}
    assert checks == {"booking_events_no_duplicate_ids", "booking_events_quarantine_share"}


def _event(event_id: int, tenant: str = "coffeechain", **fields: Any) -> dict[str, Any]:
    return {
        "id": str(event_id),
        "booking_id": f"bk_{event_id}",
        "tenant_id": tenant,
        "member_id": "CC1234567",
        "type": "booking.confirmed",
        "from_state": "ordering",
        "to_state": "confirmed",
        "loyalty_amount": "41235",
        "loyalty_currency": "stars",
        "cashback_amount": None,
        "refund_amount": None,
        "usd_amount": "412.35",
        "usd_per_unit": "0.01",
        "fare_amount": "324.69",
        "fare_currency": "GBP",
        "fx_rate": "1.2700",
        "loyalty_transaction_id": f"tx_{event_id}",
        "refund_transaction_id": None,
        "duffel_order_id": f"ord_{event_id}",
        "detail": None,
        "actor": None,
        "occurred_at": "2026-11-30T10:00:00.123456+00:00",
        **fields,
    }


def _served(events: list[dict[str, Any]]) -> httpx.MockTransport:
    """The feed's paging over a fixed list of records (a corner no real API run produces)."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {OPERATOR_TOKEN}"
        after = int(request.url.params.get("cursor") or 0)
        limit = int(request.url.params["limit"])
        rest = [e for e in events if int(e["id"]) > after]
        page = rest[:limit]
        cursor = page[-1]["id"] if page else str(after)
        body = {"data": {"events": page, "next_cursor": cursor, "has_more": len(rest) > limit}}
        return httpx.Response(200, json=body)

    return httpx.MockTransport(handler)


def _sync(events: list[dict[str, Any]], data_dir: Path) -> Any:
    from clients.platform import PlatformSettings, build_booking_events_client

    settings = PlatformSettings(
        booking_api_url="http://booking.test", booking_operator_token=OPERATOR_TOKEN
    )
    with build_booking_events_client(settings, transport=_served(events)) as client:
        return sync_feed(
            platform_events.EVENTS_FEED,
            client,
            LandingZone.under(data_dir),
            "coffeechain",
            page_size=2,
            batch_size=2,
        )


def test_bad_records_are_quarantined_naming_the_event_and_field_and_the_cursor_passes_them(
    tmp_path: Path,
) -> None:
    from ingestion.landing import quarantine

    events = [
        _event(1),
        _event(2, usd_amount="412.355"),  # a fraction of a cent: never rounded
        _event(3, tenant="telcocorp"),
        _event(4, usd_per_unit="0.0125x"),
        _event(5, occurred_at="yesterday"),
        _event(6, loyalty_amount="41235.00"),  # exact, trailing zeros only
    ]
    stats = _sync(events, tmp_path)
    assert (stats.landed, stats.quarantined) == (2, 4)
    rows = landed(tmp_path, "coffeechain")
    assert rows["event_id"].to_list() == [1, 6]
    assert rows["loyalty_amount"].to_list() == [Decimal("41235"), Decimal("41235")]
    assert rows["usd_per_unit"].to_list() == [Decimal("0.01")] * 2
    assert rows["fx_rate"].to_list() == [Decimal("1.27")] * 2
    held = quarantine.entries(
        LandingZone.under(tmp_path), "platform", "booking_events", "coffeechain"
    )
    reasons = dict(zip(held["record_key"].to_list(), held["reason"].to_list(), strict=True))
    assert reasons["2"].startswith("event 2: field 'usd_amount' is '412.355', more than 2")
    assert reasons["3"].startswith("event 3: field 'tenant_id' is 'telcocorp'")
    assert reasons["4"].startswith("event 4: field 'usd_per_unit' is '0.0125x', not a decimal")
    assert reasons["5"].startswith("event 5: field 'occurred_at' is 'yesterday'")
    # Batch 2 (events 3, 4) was all quarantined: its cursor still landed, in an empty file.
    zone = LandingZone.under(tmp_path)
    files = zone.files("platform", "booking_events", "coffeechain")
    assert len(files) == 3
    assert platform_events.landed_event_cursor(zone, "coffeechain") == 6

    again = _sync([*events, _event(7)], tmp_path)
    assert (again.fetched, again.landed, again.quarantined) == (1, 1, 0)
    held = quarantine.entries(zone, "platform", "booking_events", "coffeechain")
    assert held.height == 4


def test_a_feed_that_goes_backwards_is_refused_before_anything_lands(tmp_path: Path) -> None:
    from clients.platform import FeedContractError

    with pytest.raises(FeedContractError, match="out of order"):
        _sync([_event(2), _event(1)], tmp_path)
    assert LandingZone.under(tmp_path).files("platform", "booking_events", "coffeechain") == []


def test_the_pipeline_step_lands_events_when_the_api_answers_and_says_not_offered_when_not(
    api: ApiServer,
    client: httpx.Client,
    booked: dict[str, list[str]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``make pipeline`` runs ingest_platform_job per tenant; either way the step succeeds."""
    from definitions import defs as code_location
    from orchestration import pipeline

    landing = {"landing": {"config": {"data_dir": str(tmp_path)}}}
    monkeypatch.setattr(pipeline, "QUIET", {**pipeline.QUIET, "resources": landing})
    monkeypatch.setenv("BOOKING_API_URL", api.url)
    with dg.instance_for_test() as instance:
        ran = pipeline._run_job(instance, code_location, "ingest_platform_job", "telcocorp")
        assert ran.ok, ran.detail
        events = feed(client, "telcocorp")
        searches = client.get(
            "/api/v1/admin/searches",
            headers=operator(),
            params={"tenant_id": "telcocorp", "limit": 1000},
        ).json()["data"]["searches"]
        assert ran.detail == (
            f"raw/platform/booking_events: {len(events)} landed; "
            f"raw/platform/flight_searches: {len(searches)} landed"
        )
        assert as_feed(landed(tmp_path, "telcocorp")) == expected(events)

        monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", "")
        idle = pipeline._run_job(instance, code_location, "ingest_platform_job", "telcocorp")
    assert idle.ok, idle.detail
    assert idle.detail == (
        "raw/platform/booking_events: 0 landed "
        "(not offered: no operator token (BOOKING_OPERATOR_TOKEN is not set)); "
        "raw/platform/flight_searches: 0 landed "
        "(not offered: no operator token (BOOKING_OPERATOR_TOKEN is not set))"
    )
