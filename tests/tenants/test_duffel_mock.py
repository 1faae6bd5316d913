"""Duffel client corner cases through httpx.MockTransport: headers, paging, order safety."""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from clients.duffel import build_duffel_client
from clients.errors import (
    DuffelError,
    DuffelRejected,
    DuffelUnavailable,
    OrderNotCreated,
    OrderOutcomeUnknown,
)
from settings import Settings

from .conftest import FAST_RETRY

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "duffel"
HTML_502 = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"


@pytest.fixture
def duffel(tenants, secrets_env):
    clients = []

    def build(handler):
        client = build_duffel_client(
            tenants["telcocorp"],
            Settings(duffel_base_url="http://duffel.mock"),
            retry=FAST_RETRY,
            transport=httpx.MockTransport(handler),
        )
        clients.append(client)
        return client

    yield build
    for client in clients:
        client.close()


def _order(n: int) -> dict:
    order = json.loads((FIXTURES / "order.json").read_text())["data"]
    return {**order, "id": f"ord_{n:04d}", "booking_reference": f"REF{n:03d}"}


def test_headers_and_pagination_across_pages(duffel) -> None:
    requests: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        after = request.url.params.get("after")
        start = int(after) if after else 0
        page = [_order(n) for n in range(start, min(start + 2, 5))]
        more = str(start + 2) if start + 2 < 5 else None
        return httpx.Response(200, json={"data": page, "meta": {"limit": 2, "after": more}})

    client = duffel(handler)
    created_after = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    pages = list(client.list_orders(created_after=created_after, limit=2))
    assert [[o.booking_reference for o in p] for p in pages] == [
        ["REF000", "REF001"],
        ["REF002", "REF003"],
        ["REF004"],
    ]
    first = requests[0]
    assert first.headers["Duffel-Version"] == "v2"
    assert first.headers["Accept"] == "application/json"
    assert "gzip" in first.headers["Accept-Encoding"]
    assert first.headers["Authorization"] == "Bearer duffel_test_telcocorp_sandbox"
    assert first.url.params["created_at[after]"] == "2026-01-01T00:00:00Z"
    assert [r.url.params.get("after") for r in requests] == [None, "2", "4"]


def test_repeated_cursor_stops_the_loop(duffel) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"data": [], "meta": {"after": "same"}})

    pages = duffel(handler).iter_pages("/air/airlines")
    next(pages)
    next(pages)
    with pytest.raises(DuffelError) as caught:
        next(pages)
    assert caught.value.code == "repeated_cursor"


def test_html_502_on_a_read_is_retried_then_reported(duffel) -> None:
    hits = Counter()

    def handler(request: httpx.Request) -> httpx.Response:
        hits[request.url.path] += 1
        return httpx.Response(502, content=HTML_502, headers={"content-type": "text/html"})

    with pytest.raises(DuffelUnavailable) as caught:
        duffel(handler).get_order("ord_1")
    assert hits["/air/orders/ord_1"] == FAST_RETRY.max_attempts
    assert "502 Bad Gateway" in caught.value.message and caught.value.tenant == "telcocorp"


def _create(client):
    return client.create_order(
        "off_1",
        [{"id": "pas_1", "given_name": "A", "family_name": "B"}],
        payments=[{"type": "balance", "amount": Decimal("45.00"), "currency": "GBP"}],
        metadata={"booking_id": "bkg_1"},
    )


def test_order_creation_is_never_retried_on_500_or_502(duffel) -> None:
    hits = Counter()

    def not_created(request: httpx.Request) -> httpx.Response:
        hits["not_created"] += 1
        body = json.loads(request.content)["data"]
        assert body["payments"][0]["amount"] == "45.00"
        assert body["selected_offers"] == ["off_1"]
        return httpx.Response(
            502,
            json={
                "errors": [{"type": "api_error", "code": "order_not_created", "message": "no"}],
                "meta": {"status": 502, "request_id": "r1"},
            },
        )

    with pytest.raises(OrderNotCreated):
        _create(duffel(not_created))

    def html(request: httpx.Request) -> httpx.Response:
        hits["html"] += 1
        return httpx.Response(502, content=HTML_502)

    with pytest.raises(OrderOutcomeUnknown):
        _create(duffel(html))

    def timeout(request: httpx.Request) -> httpx.Response:
        hits["timeout"] += 1
        raise httpx.ReadTimeout("slow", request=request)

    with pytest.raises(OrderOutcomeUnknown):
        _create(duffel(timeout))
    assert hits == Counter({"not_created": 1, "html": 1, "timeout": 1})


def test_order_creation_is_retried_when_duffel_surely_did_not_act(duffel) -> None:
    order = _order(7)
    answers = iter(
        [
            httpx.Response(429, headers={"retry-after": "0"}, json={"errors": []}),
            httpx.Response(201, json={"data": order}),
        ]
    )
    created = _create(duffel(lambda request: next(answers)))
    assert created.booking_reference == "REF007"


def test_offer_expired_is_a_rejection(duffel) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            422,
            json={
                "errors": [
                    {
                        "type": "invalid_state_error",
                        "code": "offer_no_longer_available",
                        "message": "gone",
                    }
                ],
                "meta": {"status": 422, "request_id": "r2"},
            },
        )

    with pytest.raises(DuffelRejected) as caught:
        _create(duffel(handler))
    assert caught.value.type == "invalid_state_error"
    assert caught.value.to_problem()["duffel_type"] == "invalid_state_error"
