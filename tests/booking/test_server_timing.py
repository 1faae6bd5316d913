"""``Server-Timing`` splits a response's time into the API's own and its upstreams' share."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from booking.upstream import RequestTiming, request_timing, timed

from .test_http import ApiServer, _env, book, coffeechain, search

TIMING = re.compile(r"^app;dur=(?P<app>\d+\.\d), upstream;dur=(?P<upstream>\d+\.\d)$")


def _timing(response: httpx.Response) -> tuple[float, float]:
    match = TIMING.match(response.headers.get("Server-Timing", ""))
    assert match, response.headers.get("Server-Timing")
    return float(match["app"]), float(match["upstream"])


def test_server_timing_counts_upstream_calls_within_the_request(
    stand_ins: Any, tmp_path: Path
) -> None:
    server = ApiServer(_env(stand_ins, tmp_path / "t.sqlite3"), tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            headers = coffeechain("CC2222222")
            flight = search(client, headers, days=40)[0]
            booked = book(client, headers, flight)
            assert booked.status_code == 201, booked.text
            app, upstream = _timing(booked)
            # A booking fetches the offer, deducts and orders: measurable upstream time.
            assert 0 < upstream <= app
            # A request that reaches no upstream (credential cached, unknown booking) has none.
            missing = client.get("/api/v1/bookings/bkg_missing", headers=headers)
            assert missing.status_code == 404
            assert _timing(missing)[1] == 0.0
            # Errors the middleware answers itself carry the header too.
            _app, upstream = _timing(client.get("/api/v1/nowhere"))
            assert upstream == 0.0
    finally:
        server.stop()


def test_paged_reads_are_timed_page_by_page_and_only_inside_a_request() -> None:
    pause = 0.05

    def pages() -> Iterator[list[int]]:
        for page in ([1], [2], [3]):
            time.sleep(pause)  # each page is one upstream call, made as it is consumed
            yield page

    timing = RequestTiming()
    token = request_timing.set(timing)
    try:
        read = timed(pages)()
        assert timing.upstream_seconds < pause  # nothing fetched until the pages are read
        assert [n for page in read for n in page] == [1, 2, 3]
    finally:
        request_timing.reset(token)
    assert 3 * pause <= timing.upstream_seconds < 3 * pause + 0.5
    # Outside a request (the reconciler's thread) calls are not charged to anyone.
    assert list(timed(pages)()) == [[1], [2], [3]]
    assert 3 * pause <= timing.upstream_seconds < 3 * pause + 0.5
