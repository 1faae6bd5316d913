"""raw/platform/flight_searches: a searches-feed record lands typed, a bad one is quarantined
with a reason naming the search and the field, and each record lands exactly once.

The feed itself over the real booking API is tested with live traffic
(tests/sandbox/test_traffic.py); here the corner cases, served by an ``httpx.MockTransport``.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
from pydantic import SecretStr

from clients.http import RetryPolicy
from clients.platform import PlatformSettings, build_booking_events_client
from ingestion.landing.zone import LandingZone
from ingestion.platform.feed import RecordProblem, landed_feed_cursor, sync_feed
from ingestion.platform.searches import SEARCHES_FEED, search_row


def _search(feed_id: int, tenant: str = "telcocorp", **fields: Any) -> dict[str, Any]:
    return {
        "id": str(feed_id),
        "search_id": f"orq_{feed_id}",
        "tenant_id": tenant,
        "member_id": "TC-DEF456",
        "origin": "LHR",
        "destination": "JFK",
        "departure_date": "2027-01-10",
        "return_date": None,
        "cabin_class": "economy",
        "passengers": {"adults": 2, "children": 1, "infants": 0},
        "result_count": 12,
        "occurred_at": "2026-12-01T10:00:00.123456Z",
        **fields,
    }


def test_a_search_lands_typed() -> None:
    row = search_row("telcocorp", _search(7, return_date="2027-01-20"), 0)
    assert row == {
        "tenant_id": "telcocorp",
        "feed_id": 7,
        "search_id": "orq_7",
        "member_id": "TC-DEF456",
        "origin": "LHR",
        "destination": "JFK",
        "departure_date": dt.date(2027, 1, 10),
        "return_date": dt.date(2027, 1, 20),
        "cabin_class": "economy",
        "adults": 2,
        "children": 1,
        "infants": 0,
        "result_count": 12,
        "occurred_at": dt.datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=dt.UTC),
    }


@pytest.mark.parametrize(
    ("record", "reason"),
    [
        ("not a record", "search at position 3 of its page: not an object"),
        (_search(0, id="x"), "search at position 3 of its page: field 'id' is 'x', not an id"),
        (_search(8, tenant="coffeechain"), "search 8: field 'tenant_id' is 'coffeechain'"),
        (_search(8, member_id=None), "search 8: field 'member_id' is missing"),
        (_search(8, departure_date="10/01/2027"), "search 8: field 'departure_date' is"),
        (_search(8, passengers=[1]), "search 8: field 'passengers' is [1], not an object"),
        (
            _search(8, passengers={"adults": True, "children": 0, "infants": 0}),
            "search 8: field 'passengers.adults' is True, not a count",
        ),
        (_search(8, result_count=-1), "search 8: field 'result_count' is -1, not a count"),
        (_search(8, occurred_at="2026-12-01T10:00:00"), "search 8: field 'occurred_at'"),
    ],
)
def test_a_bad_search_names_itself_and_the_field(record: object, reason: str) -> None:
    with pytest.raises(RecordProblem) as problem:
        search_row("telcocorp", record, 3)
    assert str(problem.value).startswith(reason)


def _feed(records: list[Any]) -> httpx.MockTransport:
    """The searches feed over ``records``, paged by cursor as the booking API pages it."""

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/api/v1/admin/searches"
        assert request.headers["Authorization"] == "Bearer operator-token"
        after = int(request.url.params.get("cursor", "0"))
        limit = int(request.url.params["limit"])
        rest = [r for r in records if int(r["id"]) > after]
        page = rest[:limit]
        cursor = page[-1]["id"] if page else str(after)
        body = {"searches": page, "next_cursor": cursor, "has_more": len(rest) > limit}
        return httpx.Response(200, json={"data": body})

    return httpx.MockTransport(handler)


def _sync(records: list[Any], zone: LandingZone) -> Any:
    settings = PlatformSettings(
        booking_api_url="http://booking.invalid",
        booking_operator_token=SecretStr("operator-token"),
    )
    client = build_booking_events_client(
        settings, retry=RetryPolicy(max_attempts=1), transport=_feed(records)
    )
    with client:
        return sync_feed(SEARCHES_FEED, client, zone, "telcocorp", page_size=2, batch_size=3)


def test_searches_land_once_and_a_bad_one_is_quarantined(tmp_path: Path) -> None:
    zone = LandingZone.under(tmp_path)
    records = [_search(n) for n in range(1, 6)]
    records[2] = _search(3, result_count="twelve")
    first = _sync(records, zone)
    assert (first.fetched, first.landed, first.quarantined) == (5, 4, 1)
    assert landed_feed_cursor(zone, SEARCHES_FEED, "telcocorp") == 5
    folder = zone.quarantine_folder("platform", "flight_searches", "telcocorp")
    quarantined = pl.concat([pl.read_parquet(p) for p in sorted(folder.glob("*.parquet"))])
    assert quarantined["record_key"].to_list() == ["3"]
    assert quarantined["reason"][0] == "search 3: field 'result_count' is 'twelve', not a count"

    again = _sync([*records, _search(6)], zone)
    assert (again.fetched, again.landed, again.quarantined) == (1, 1, 0)
    landed = zone.scan("platform", "flight_searches", "telcocorp")
    assert landed is not None
    assert sorted(landed.collect()["feed_id"].to_list()) == [1, 2, 4, 5, 6]
