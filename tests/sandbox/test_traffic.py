"""Live traffic against the real stand-ins (reference mode) and the real booking API.

Members search, abandon, book, cancel and fail through the API with their own credentials;
the operator decides approvals after a delay. Outcomes are counted from the API's own feeds,
and those feeds, landed by the platform assets and built by dbt, give the booking funnel.
The traffic's clock is a counter the test moves, so no step waits for real time.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import httpx
import polars as pl
import pytest
from pydantic import SecretStr

from ingestion.landing.zone import LandingZone
from ingestion.platform.assets import BookingApiResource, booking_events, flight_searches
from ingestion.resources import LandingResource
from sandbox.config import SERVICES, Limit
from sandbox.runner import Sandbox, start_sandbox
from sandbox.seed import reference_members_frame
from sandbox.traffic import MemberApps, Traffic, members_from_frame
from tenants.settings import get_registry
from testing.booking_api import ROOT
from testing.dbt_build import dbt_build
from testing.standins import sandbox_config
from tests.booking.test_http import OPERATOR_TOKEN, ApiServer, _env, _free_port, operator
from tests.sandbox.test_cli import _free_offset

TICKS = 20  # two decks: each holds a booking that needs approval and one that overspends


class Clock:
    """The traffic's clock: moves only when the test says so."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def reference_traffic(stand_ins: Sandbox, api_url: str, clock: Clock, seed: int) -> Traffic:
    """Traffic by the reference members, through the API at ``api_url``, on the test's clock:
    approvals decided 30-90 s and cancellations 60-300 s after (so 301 s settles all)."""
    registry = get_registry()
    apps = MemberApps(
        registry,
        urls={t: u for t, u in stand_ins.urls.items() if t in registry},
        lookup=stand_ins.client_env().get,
    )
    return Traffic(
        api_url,
        SecretStr(OPERATOR_TOKEN),
        members_from_frame(reference_members_frame()),
        registry,
        apps=apps,
        seed=seed,
        approval_delay=(30.0, 90.0),
        cancel_delay=(60.0, 300.0),
        clock=clock,
    )


def read_feed(client: httpx.Client, path: str, key: str) -> list[dict[str, Any]]:
    """Every record of an admin feed, page by page by cursor."""
    records: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 50, **({"cursor": cursor} if cursor else {})}
        page = client.get(path, headers=operator(), params=params)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        records.extend(data[key])
        cursor = data["next_cursor"]
        if not data["has_more"]:
            return records


@pytest.fixture(scope="module")
def reference_stand_ins() -> Iterator[Sandbox]:
    running = start_sandbox(
        sandbox_config(reference=True, limits=dict.fromkeys(SERVICES, Limit(100_000)))
    )
    yield running
    running.stop()


@pytest.fixture(scope="module")
def api(
    reference_stand_ins: Sandbox, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("traffic-api")
    server = ApiServer(_env(reference_stand_ins, folder / "booking.sqlite3"), folder / "api.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def traffic_run(reference_stand_ins: Sandbox, api: ApiServer) -> Iterator[dict[str, Any]]:
    """Two decks of traffic through the API, follow-ups done; what the API recorded."""
    clock = Clock()
    with reference_traffic(reference_stand_ins, api.url, clock, seed=3) as traffic:
        for _ in range(TICKS):
            traffic.tick()
        waiting = traffic.pending()
        ran_early = traffic.run_due()
        clock.now += 301.0
        ran = traffic.run_due()
        with httpx.Client(base_url=api.url, timeout=60) as client:
            yield {
                "traffic": traffic,
                "waiting": waiting,
                "ran_early": ran_early,
                "ran": ran,
                "events": read_feed(client, "/api/v1/admin/events", "events"),
                "searches": read_feed(client, "/api/v1/admin/searches", "searches"),
            }


def test_traffic_outcomes_as_the_api_recorded_them(traffic_run: dict[str, Any]) -> None:
    traffic: Traffic = traffic_run["traffic"]
    events, searches = traffic_run["events"], traffic_run["searches"]
    assert traffic.ticks == TICKS
    # Follow-ups wait for their delay, then all of them happen.
    assert traffic_run["waiting"] >= 3 and traffic_run["ran_early"] == 0
    assert traffic_run["ran"] == traffic_run["waiting"] and traffic.pending() == 0

    # Every answered search is in the searches feed; abandoned ones too.
    assert len(searches) == traffic.searched
    assert traffic.outcomes["abandoned_search"] == 2 * 3
    # A cabin the tenant does not allow is refused before any search is made.
    assert traffic.outcomes["search_invalid-cabin-class"] == 2

    by_booking: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_booking.setdefault(event["booking_id"], []).append(event)
    created = [e for e in events if e["from_state"] is None]
    assert len(created) == len(by_booking) == traffic.booked
    assert len(searches) > len(by_booking)  # some searches led to no booking

    # Approvals: CoffeeChain bookings over the threshold wait, then the operator decides.
    pending = {e["booking_id"] for e in created if e["to_state"] == "pending_approval"}
    assert len(pending) == 2
    decided = [
        e for e in events if e["from_state"] == "pending_approval" and e["booking_id"] in pending
    ]
    assert {e["booking_id"] for e in decided} == pending
    assert {e["to_state"] for e in decided} <= {"charging", "rejected", "failed"}
    assert all(e["tenant_id"] == "coffeechain" for e in decided)
    assert {e["actor"] for e in decided} == {"operator:traffic"}

    # Failures: members who cannot pay.
    failed = [e for e in events if e["to_state"] == "failed"]
    assert any(e["detail"] == "insufficient balance" for e in failed)
    assert traffic.outcomes["insufficient-balance"] >= 2

    # Cancellations, at the members' request, after the delay.
    cancelling = {e["booking_id"] for e in events if e["to_state"] == "cancelling"}
    assert cancelling and traffic.outcomes["cancel_requested"] == len(cancelling)
    ends = Counter(by_booking[b][-1]["to_state"] for b in cancelling)
    # CoffeeChain refunds; the reference TelcoCorp and FintechApp offer no refund endpoint.
    assert set(ends) <= {"cancelled", "refund_pending"}
    confirmed = {e["booking_id"] for e in events if e["to_state"] == "confirmed"}
    assert confirmed >= cancelling


def test_serve_traffic_books_through_the_api_once_it_answers(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``serve --traffic`` in-process: the traffic waits for the API, then members book."""
    port = _free_port()
    monkeypatch.setenv("BOOKING_API_URL", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", OPERATOR_TOKEN)
    config = sandbox_config(
        reference=True, limits=dict.fromkeys(SERVICES, Limit(100_000)), traffic_per_minute=600
    )
    with start_sandbox(config) as stand_ins:
        assert stand_ins.traffic is not None
        server = ApiServer(_env(stand_ins, tmp_path / "b.sqlite3"), tmp_path / "api.log", port=port)
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                deadline = time.monotonic() + 120
                events: list[dict[str, Any]] = []
                while not events and time.monotonic() < deadline:
                    time.sleep(0.5)
                    events = read_feed(client, "/api/v1/admin/events", "events")
                searches = read_feed(client, "/api/v1/admin/searches", "searches")
        finally:
            server.stop()
    assert events, "no booking reached the API"
    assert searches and {s["tenant_id"] for s in searches} <= set(get_registry())


def test_traffic_without_an_operator_token_says_what_to_set(tmp_path: Path) -> None:
    env = {**os.environ, "BOOKING_OPERATOR_TOKEN": "", "PYTHONPATH": str(ROOT)}
    for args in (
        ["traffic", "--rate", "5", "--no-history"],
        ["serve", "--traffic", "5", "--no-history", "--port-offset", str(_free_offset())],
    ):
        done = subprocess.run(
            [sys.executable, "-m", "sandbox", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert "BOOKING_OPERATOR_TOKEN" in done.stderr


def expected_funnel(
    events: list[dict[str, Any]], searches: list[dict[str, Any]]
) -> dict[tuple[str, dt.date], dict[str, int]]:
    """The funnel as the booking API's own feeds tell it, per tenant and UTC day."""

    def day(moment: str) -> dt.date:
        return dt.datetime.fromisoformat(moment).astimezone(dt.UTC).date()

    first: dict[tuple[str, str], dict[str, Any]] = {}
    confirmed: set[tuple[str, str]] = set()
    for event in sorted(events, key=lambda e: int(e["id"])):
        key = (event["tenant_id"], event["booking_id"])
        first.setdefault(key, event)
        if event["to_state"] == "confirmed":
            confirmed.add(key)
    funnel: dict[tuple[str, dt.date], dict[str, Any]] = {}

    def row(tenant: str, on: dt.date) -> dict[str, Any]:
        empty = {"searches": 0, "members": set(), "bookings": 0, "confirmed": 0, "abandoned": 0}
        return funnel.setdefault((tenant, on), empty)

    bookers: set[tuple[str, dt.date, str]] = set()
    for key, event in first.items():
        on = day(event["occurred_at"])
        counts = row(key[0], on)
        counts["bookings"] += 1
        counts["confirmed"] += key in confirmed
        bookers.add((key[0], on, event["member_id"]))
    for found in searches:
        on = day(found["occurred_at"])
        counts = row(found["tenant_id"], on)
        counts["searches"] += 1
        counts["members"].add(found["member_id"])
        counts["abandoned"] += (found["tenant_id"], on, found["member_id"]) not in bookers
    return {
        key: {
            "searches": c["searches"],
            "searching_members": len(c["members"]),
            "bookings": c["bookings"],
            "confirmed": c["confirmed"],
            "abandoned_searches": c["abandoned"],
        }
        for key, c in funnel.items()
    }


def test_the_funnel_through_ingestion_and_dbt_is_what_the_api_recorded(
    traffic_run: dict[str, Any], api: ApiServer, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    resources = {
        "booking_api": BookingApiResource(base_url=api.url, page_size=7),
        "landing": LandingResource(data_dir=str(data_dir)),
    }
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("BOOKING_OPERATOR_TOKEN", OPERATOR_TOKEN)
        for tenant in sorted(get_registry()):
            for _ in range(2):  # the second run finds nothing new: each record lands once
                result = dg.materialize(
                    [booking_events, flight_searches], partition_key=tenant, resources=resources
                )
                assert result.success
    zone = LandingZone.under(data_dir)
    landed = pl.concat(
        [
            frame.collect()
            for t in get_registry()
            if (frame := zone.scan("platform", "flight_searches", t)) is not None
        ]
    )
    searches = traffic_run["searches"]
    assert sorted(landed["feed_id"].to_list()) == [int(s["id"]) for s in searches]

    built = dbt_build(tmp_path / "build", zone.root)
    assert built.returncode == 0, built.output[-5000:]
    with built.connect() as warehouse:
        rows = warehouse.execute(
            "select tenant_id, day, searches, searching_members, bookings, confirmed,"
            " abandoned_searches from marts.booking_funnel"
        ).fetchall()
    funnel = {
        (tenant, day): dict(
            zip(
                ("searches", "searching_members", "bookings", "confirmed", "abandoned_searches"),
                counts,
                strict=True,
            )
        )
        for tenant, day, *counts in rows
    }
    expected = expected_funnel(traffic_run["events"], searches)
    assert funnel == expected
    assert sum(c["abandoned_searches"] for c in funnel.values()) >= 1
    assert sum(c["confirmed"] for c in funnel.values()) >= 1


def test_the_traffic_command_books_until_interrupted(
    reference_stand_ins: Sandbox, tmp_path: Path
) -> None:
    """``python -m sandbox traffic`` against stand-ins in another process, its own API."""
    server = ApiServer(_env(reference_stand_ins, tmp_path / "b.sqlite3"), tmp_path / "api.log")
    env = {**_env(reference_stand_ins, tmp_path / "unused.sqlite3"), "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "sandbox", "traffic", "--rate", "600", "--no-history"]
    try:
        traffic = subprocess.Popen(
            [*command, "--api-url", server.url],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            with httpx.Client(base_url=server.url, timeout=60) as client:
                deadline = time.monotonic() + 120
                events: list[dict[str, Any]] = []
                while not events and time.monotonic() < deadline and traffic.poll() is None:
                    time.sleep(0.5)
                    events = read_feed(client, "/api/v1/admin/events", "events")
        finally:
            traffic.send_signal(signal.SIGINT)
            output, _ = traffic.communicate(timeout=180)
    finally:
        server.stop()
    assert events, output[-3000:]
    assert traffic.returncode == 0, output[-3000:]
    assert f"through {server.url}" in output and "traffic stopped after" in output
    assert OPERATOR_TOKEN not in output
