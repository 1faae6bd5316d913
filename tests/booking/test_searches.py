"""The searches feed: every answered flight search, on the store of both backends and over HTTP."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from booking.schemas import SearchPage
from booking.store.repository import utcnow
from booking.store.tables import FlightSearchRow
from booking.store.uow import Store

from .test_http import (
    ApiServer,
    _env,
    assert_problem,
    coffeechain,
    fintechapp,
    operator,
    search,
    telcocorp,
)


@pytest.fixture(scope="module")
def client(stand_ins: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """The API over a fresh SQLite store: the searches feed starts empty."""
    folder = tmp_path_factory.mktemp("searches")
    server = ApiServer(_env(stand_ins, folder / "booking.sqlite3"), folder / "api.log")
    with httpx.Client(base_url=server.url, timeout=60) as http:
        yield http
    server.stop()


def _row(tenant: str = "coffeechain", member: str = "CC1234567") -> FlightSearchRow:
    return FlightSearchRow(
        search_id="orq_1",
        tenant_id=tenant,
        member_id=member,
        origin="LHR",
        destination="JFK",
        departure_date=dt.date(2027, 1, 10),
        return_date=None,
        cabin_class="economy",
        adults=1,
        children=0,
        infants=0,
        result_count=3,
        occurred_at=utcnow(),
    )


def test_search_ids_follow_commit_order_on_both_backends(store: Store) -> None:
    def write(count: int) -> None:
        for _ in range(count):
            with store.uow() as uow:
                uow.searches.append(_row())
                uow.commit()

    writers = [threading.Thread(target=write, args=(10,)) for _ in range(4)]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    with store.uow() as uow:
        uow.searches.append(_row("telcocorp", "TC-DEF456"))
        uow.commit()
        ids = [s.id for s in uow.searches.read(0, 1000)]
        telco = uow.searches.read(0, 1000, "telcocorp")
        later = uow.searches.read(40, 1000)
    assert ids == list(range(1, 42))
    assert [s.id for s in telco] == [41] and telco[0].member_id == "TC-DEF456"
    assert [s.id for s in later] == [41]
    # A search rolled back takes its id with it; the feed never shows a gap it could skip.
    with store.uow() as uow:
        uow.searches.append(_row())
    with store.uow() as uow:
        assert [s.id for s in uow.searches.read(41, 10)] == []


def _read_all(client: httpx.Client, **params: Any) -> tuple[list[dict[str, Any]], str]:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = {"limit": 2, **params, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/admin/searches", headers=operator(), params=query)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        SearchPage.model_validate(data)
        seen.extend(data["searches"])
        cursor = data["next_cursor"]
        if not data["has_more"]:
            return seen, cursor


def test_searches_feed_over_http(client: httpx.Client, stand_ins: Any) -> None:
    cc = coffeechain("CC2222222")
    found = search(client, cc, days=41)
    search(client, telcocorp(stand_ins, "TC-ABC123"), days=42)
    search(client, fintechapp(stand_ins, "FA_12345678"), days=43)
    # Refused before any upstream call: not a search that happened, so not in the feed.
    refused = client.post(
        "/api/v1/flights/search",
        headers=telcocorp(stand_ins, "TC-ABC123"),
        json={
            "origin": "LHR",
            "destination": "JFK",
            "departure_date": "2030-01-01",
            "cabin_class": "business",
        },
    )
    assert_problem(refused, 400, "invalid-cabin-class")

    assert_problem(client.get("/api/v1/admin/searches", headers=cc), 401, "unauthorized")
    fresh, cursor = _read_all(client)
    assert [(s["tenant_id"], s["member_id"]) for s in fresh] == [
        ("coffeechain", "CC2222222"),
        ("telcocorp", "TC-ABC123"),
        ("fintechapp", "FA_12345678"),
    ]
    assert [int(s["id"]) for s in fresh] == [1, 2, 3] and cursor == "3"
    first = fresh[0]
    assert first["origin"] == "LHR" and first["destination"] == "JFK"
    assert first["cabin_class"] == "economy" and first["return_date"] is None
    assert first["passengers"] == {"adults": 1, "children": 0, "infants": 0}
    assert first["result_count"] == len(found) > 0
    assert first["search_id"].startswith("orq_") and first["occurred_at"].endswith("Z")

    only_telco, _ = _read_all(client, tenant_id="telcocorp")
    assert {s["tenant_id"] for s in only_telco} == {"telcocorp"}
    assert fresh[1] in only_telco

    # An empty page keeps the cursor; a cursor it never issued, or no operator token, is refused.
    again = client.get("/api/v1/admin/searches", headers=operator(), params={"cursor": cursor})
    assert again.json()["data"] == {"searches": [], "next_cursor": cursor, "has_more": False}
    assert_problem(
        client.get("/api/v1/admin/searches", headers=operator(), params={"cursor": "-1"}),
        422,
        "validation-error",
    )
