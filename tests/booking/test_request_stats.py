"""Requests, errors, 429s and latency per tenant and route, summed over worker processes.

The real API (``python -m booking`` with two workers) over HTTP: each worker keeps its own
counts in memory and flushes them to the store; the admin feed must show every request once,
under its tenant and its route's template (never a raw path with an id in it).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from booking.requeststats import Bucket, percentile_bound
from tests.booking.test_http import ApiServer, _env, coffeechain, operator

TELCO_LIMIT = 50  # TelcoCorp's inbound limit a minute (its YAML)


@pytest.fixture(scope="module")
def api(stand_ins: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("stats-api")
    server = ApiServer(_env(stand_ins, folder / "booking.sqlite3"), folder / "api.log", workers=2)
    yield server
    server.stop()


def _row(rows: list[dict[str, Any]], tenant: str | None, route: str) -> dict[str, Any]:
    found = [r for r in rows if r["tenant_id"] == tenant and r["route"] == route]
    assert len(found) == 1, (tenant, route, rows)
    return found[0]


def _stats(client: httpx.Client) -> list[dict[str, Any]]:
    answer = client.get("/api/v1/admin/request-stats", headers=operator(), params={"minutes": 5})
    assert answer.status_code == 200, answer.text
    return answer.json()["data"]["routes"]


def test_errors_and_429s_show_per_tenant_and_route(api: ApiServer) -> None:
    # Fresh connections each time, so both workers take requests.
    for _ in range(3):
        with httpx.Client(base_url=api.url) as one:
            assert one.get("/api/v1/bookings", headers=coffeechain()).status_code == 200
    # No credential: a 401 until the tenant's limit for the minute is spent, then 429s (a new
    # minute may start meanwhile: counted as it comes).
    statuses: list[int] = []
    while statuses.count(429) < 7:
        assert len(statuses) < 4 * TELCO_LIMIT
        with httpx.Client(base_url=api.url) as one:
            answer = one.get(
                f"/api/v1/bookings/bkg_{len(statuses)}", headers={"X-Tenant-ID": "telcocorp"}
            )
            statuses.append(answer.status_code)
    assert set(statuses) == {401, 429}
    with httpx.Client(base_url=api.url) as one:
        assert one.get("/api/v1/bookings/bkg_x").status_code == 401  # no tenant named

    # Both workers flush (every 0.5 s here, and the one answering flushes before reading); a
    # worker's flush may land after the other's, so wait until every request made is counted.
    made = 3 + len(statuses) + 1
    deadline_reads = 200
    with httpx.Client(base_url=api.url, timeout=30) as client:
        for _ in range(deadline_reads):
            rows = _stats(client)
            counted = sum(r["requests"] for r in rows if r["route"].startswith("GET /api/v1/book"))
            if counted >= made:
                break
            time.sleep(0.05)
        listed = _row(rows, "coffeechain", "GET /api/v1/bookings")
        by_id = _row(rows, "telcocorp", "GET /api/v1/bookings/{booking_id}")
        anonymous = _row(rows, None, "GET /api/v1/bookings/{booking_id}")
    assert (listed["requests"], listed["client_errors"], listed["throttled"]) == (3, 0, 0)
    assert by_id["requests"] == len(statuses)
    assert by_id["client_errors"] == statuses.count(401) and by_id["throttled"] == 7
    assert by_id["server_errors"] == 0
    assert by_id["latency_ms_max"] >= by_id["latency_ms_mean"] > 0
    assert anonymous["requests"] == 1 and anonymous["client_errors"] == 1
    # No raw path (with its id) ever became a route of its own.
    assert not [r for r in rows if "bkg_" in r["route"]]


def test_the_feed_is_for_operators_only(api: ApiServer) -> None:
    with httpx.Client(base_url=api.url) as client:
        refused = client.get("/api/v1/admin/request-stats", headers=coffeechain())
    assert refused.status_code == 401


def test_percentiles_are_bucket_bounds_by_nearest_rank() -> None:
    bucket = Bucket()
    for latency in (3, 3, 7, 40, 40, 40, 40, 40, 40, 900):
        bucket.add(200, latency)
    assert percentile_bound(bucket.histogram, 0.5) == 50  # the 5th of 10 is 40 ms
    assert percentile_bound(bucket.histogram, 0.2) == 5
    assert percentile_bound(bucket.histogram, 0.95) == 1000
    assert percentile_bound(Bucket().histogram, 0.5) is None
    bucket.add(200, 60_000)
    assert percentile_bound(bucket.histogram, 1.0) is None  # beyond the last bound
