"""The Duffel stand-in answers in the shapes of Duffel's recorded responses (tests/fixtures/duffel)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.config import Limit, SandboxConfig
from sandbox.duffel.app import create_app
from sandbox.duffel.render import local_text, to_us
from sandbox.duffel.render import zone as zone_info
from sandbox.duffel.sample import sample_orders
from sandbox.duffel.store import DuffelStore
from sandbox.servers import serve_in_background

FIXTURES = Path(__file__).parents[1] / "fixtures" / "duffel"
ORGS = ("coffeechain", "telcocorp", "fintechapp")

# Fixture keys we deliberately do not send, with the reason. Paths use ``[]`` for any
# list element; a key listed here is skipped wherever it appears under that path.
OMITTED = {
    # We never sell ancillaries, so ``services`` is always [] and has no element shape.
    "data.services[]": "no ancillary services are sold",
    "data[].services[]": "no ancillary services are sold",
    # Seat selection is an ancillary too.
    "data.slices[].segments[].passengers[].seat": "no seat selection",
    # v1-era duplicates of departing_at/arriving_at/origin_terminal/destination_terminal
    # in the 2022 recordings; Duffel's v2 segment has only the latter names.
    "data.slices[].segments[].arrival_datetime": "v1 duplicate of arriving_at",
    "data.slices[].segments[].departure_datetime": "v1 duplicate of departing_at",
    "data.slices[].segments[].arrival_terminal": "v1 duplicate of destination_terminal",
    "data.slices[].segments[].departure_terminal": "v1 duplicate of origin_terminal",
    "data[].slices[].segments[].arrival_datetime": "v1 duplicate of arriving_at",
    "data[].slices[].segments[].departure_datetime": "v1 duplicate of departing_at",
    "data[].slices[].segments[].arrival_terminal": "v1 duplicate of destination_terminal",
    "data[].slices[].segments[].departure_terminal": "v1 duplicate of origin_terminal",
    # Only city places list their airports (null on an airport); we only send airports.
    "data.slices[].origin.airports": "always null on an airport place",
    "data.slices[].destination.airports": "always null on an airport place",
    "data.offers[].slices[].origin.airports": "always null on an airport place",
    "data.offers[].slices[].destination.airports": "always null on an airport place",
    "data.offers[].slices[].segments[].origin.airports": "always null on an airport place",
    "data.offers[].slices[].segments[].destination.airports": "always null on an airport place",
}
# Keys some recording (or duffel.md) shows as null, so ours may be null where a given
# fixture happens to have a value (e.g. ``city`` is null for airports of one-airport cities).
NULLABLE = {
    "city",
    "origin_terminal",
    "destination_terminal",
    "aircraft",
    "distance",
    "logo_lockup_url",
    "change_before_departure",
    "refund_before_departure",
    "penalty_amount",
    "penalty_currency",
    "payment_required_by",
    "price_guarantee_expires_at",
    "tax_amount",
    "tax_currency",
    "refund_amount",
    "refund_currency",
    "metadata",
    "cancelled_at",
    "confirmed_at",
    "after",
    "before",
    "iata_code",
}
MONEY_KEYS = re.compile(r"(_amount|^distance|^total_emissions_kg)$")
ID_PREFIX = re.compile(r"^(arc|arl|arp|cit|off|ord|ore|orq|pas|pay|seg|sli)_")


class Nullable:
    """A fixture value seen as null in some recorded elements and as ``value`` in others."""

    def __init__(self, value: Any) -> None:
        self.value = value


def merge(a: Any, b: Any) -> Any:
    """One shape for two recorded elements of a list: keys both have, nullability noted."""
    if a is None or b is None:
        other = b if a is None else a
        if other is None:
            return None
        return other if isinstance(other, Nullable) else Nullable(other)
    if isinstance(a, Nullable) or isinstance(b, Nullable):
        inner = merge(getattr(a, "value", a), getattr(b, "value", b))
        return inner if isinstance(inner, Nullable) else Nullable(inner)
    if isinstance(a, dict) and isinstance(b, dict):
        return {key: merge(a[key], b[key]) for key in a if key in b}
    if isinstance(a, list) and isinstance(b, list):
        return a + b
    return a


def shape_problems(fixture: Any, ours: Any, path: str = "") -> list[str]:
    """Where ``ours`` lacks a key the fixture has, or has a different JSON type or format."""
    if fixture is None:
        return []  # Duffel sends null here: any value of ours is acceptable
    if isinstance(fixture, Nullable):
        return [] if ours is None else shape_problems(fixture.value, ours, path)
    if ours is None:
        if path.rsplit(".", 1)[-1] in NULLABLE:
            return []
        return [f"{path}: null where the fixture has {type(fixture).__name__}"]
    if isinstance(fixture, dict):
        if not isinstance(ours, dict):
            return [f"{path}: {type(ours).__name__} where the fixture has an object"]
        problems = []
        for key, value in fixture.items():
            child = f"{path}.{key}" if path else key
            if child in OMITTED:
                continue
            if key not in ours:
                problems.append(f"{child}: missing")
            else:
                problems += shape_problems(value, ours[key], child)
        return problems
    if isinstance(fixture, list):
        if not isinstance(ours, list):
            return [f"{path}: {type(ours).__name__} where the fixture has a list"]
        if not fixture or f"{path}[]" in OMITTED:
            return []
        if not ours:
            return [f"{path}: empty where the fixture has elements"]
        element = fixture[0]
        for other in fixture[1:]:
            element = merge(element, other)
        return [p for item in ours for p in shape_problems(element, item, f"{path}[]")]
    return _scalar_problems(fixture, ours, path)


def _scalar_problems(fixture: Any, ours: Any, path: str) -> list[str]:
    if type(fixture) is not type(ours) and not (
        isinstance(fixture, float) and isinstance(ours, int | float) and not isinstance(ours, bool)
    ):
        return [f"{path}: {type(ours).__name__} {ours!r} where the fixture has {fixture!r}"]
    if not isinstance(fixture, str):
        return []
    key = path.rsplit(".", 1)[-1]
    if MONEY_KEYS.search(key):
        try:
            Decimal(ours)
        except InvalidOperation:
            return [f"{path}: {ours!r} is not a decimal string"]
    prefix = ID_PREFIX.match(fixture)
    if prefix and not ours.startswith(prefix.group(0)):
        return [f"{path}: {ours!r} lacks the id prefix {prefix.group(0)}"]
    if key.endswith("_at") or key == "synced_at":
        return _timestamp_problems(fixture, ours, path)
    return []


def _timestamp_problems(fixture: str, ours: str, path: str) -> list[str]:
    try:
        parsed = datetime.fromisoformat(ours)
    except ValueError:
        return [f"{path}: {ours!r} is not an ISO 8601 timestamp"]
    if fixture.endswith("Z") and not ours.endswith("Z"):
        return [f"{path}: {ours!r} is not UTC with Z like {fixture!r}"]
    if not fixture.endswith("Z") and parsed.tzinfo is not None:
        return [f"{path}: {ours!r} has an offset; Duffel sends local times without one"]
    return []


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text())


def assert_shape(name: str, ours: Any) -> None:
    problems = shape_problems(fixture(name), ours)
    assert not problems, "\n".join(problems)


@pytest.fixture(scope="module")
def frame():
    return sample_orders(300, ORGS, seed=3)


@pytest.fixture(scope="module")
def urls(frame) -> Iterator[dict[str, str]]:
    open_config = SandboxConfig(limits={"duffel": Limit(10**6)})
    strict_config = SandboxConfig(limits={"duffel": Limit(1, 3600.0)})
    apps = {
        "duffel": create_app(DuffelStore(frame, ORGS), open_config),
        "strict": create_app(DuffelStore(frame, ORGS), strict_config),
    }
    servers = serve_in_background(apps)
    yield servers.urls
    servers.stop()


def client(url: str, org: str = "coffeechain", **headers: str) -> httpx.Client:
    base = {"Authorization": f"Bearer duffel_test_{org}_sandbox", "Duffel-Version": "v2"}
    return httpx.Client(base_url=url, headers={**base, **headers}, timeout=10)


def search(api: httpx.Client, origin: str = "LHR", destination: str = "FRA") -> dict[str, Any]:
    day = date.today() + timedelta(days=40)
    body = {
        "data": {
            "slices": [
                {"origin": origin, "destination": destination, "departure_date": day.isoformat()}
            ],
            "passengers": [{"type": "adult", "given_name": "Test", "family_name": "User"}],
            "cabin_class": "economy",
        }
    }
    response = api.post("/air/offer_requests", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def test_checker_flags_missing_keys_types_and_prefixes() -> None:
    recorded = {"id": "ord_1", "total_amount": "1.00", "items": [{"a": 1}, {"a": 2, "b": None}]}
    assert shape_problems(recorded, recorded) == []
    assert shape_problems(recorded, {**recorded, "id": "off_1"}) == [
        "id: 'off_1' lacks the id prefix ord_"
    ]
    assert shape_problems(recorded, {**recorded, "total_amount": 1.0})
    assert shape_problems(recorded, {**recorded, "total_amount": "cheap"})
    assert shape_problems(recorded, {"id": "ord_2", "total_amount": "2", "items": [{}]}) == [
        "items[].a: missing"
    ]


def test_order_matches_recorded_order(urls, frame) -> None:
    paid = frame.filter(frame["paid_at"].is_not_null() & (frame["tenant_id"] == "coffeechain"))
    with client(urls["duffel"]) as api:
        response = api.get(f"/air/orders/{paid['order_id'][0]}")
    assert response.status_code == 200
    assert_shape("order.json", response.json())


def test_orders_page_matches_recorded_filtered_page(urls, frame) -> None:
    first = frame.filter(frame["tenant_id"] == "coffeechain")["created_at"].min()
    after = (first - timedelta(seconds=1)).isoformat()
    with client(urls["duffel"]) as api:
        response = api.get("/air/orders", params={"limit": 15, "created_at[after]": after})
    assert response.status_code == 200
    body = response.json()
    assert_shape("order_page_filtered.json", body)
    assert len(body["data"]) == 15


def test_offer_request_matches_recorded_search(urls) -> None:
    with client(urls["duffel"]) as api:
        assert_shape("offer_request.json", search(api))


def test_cancellation_quote_matches_recorded_quote(urls, frame) -> None:
    unpaid = frame.filter(
        (frame["tenant_id"] == "coffeechain")
        & (frame["order_type"] == "hold")
        & frame["paid_at"].is_null()
        & frame["cancelled_at"].is_null()
    )
    with client(urls["duffel"]) as api:
        response = api.post(
            "/air/order_cancellations", json={"data": {"order_id": unpaid["order_id"][0]}}
        )
    assert response.status_code == 201
    body = response.json()
    assert_shape("order_cancellation.json", body)
    assert body["data"]["refund_to"] == "awaiting_payment"
    assert body["data"]["refund_amount"] == "0.00"


def test_airlines_page_matches_recorded_page(urls) -> None:
    with client(urls["duffel"]) as api:
        first = api.get("/air/airlines", params={"limit": 5}).json()
        second = api.get("/air/airlines", params={"limit": 5, "after": first["meta"]["after"]})
    assert second.status_code == 200
    assert_shape("airlines.json", second.json())


def test_airports_page_matches_recorded_page(urls) -> None:
    with client(urls["duffel"]) as api:
        response = api.get("/air/airports")
    assert response.status_code == 200
    assert_shape("airports.json", response.json())


def _assert_error(response: httpx.Response, name: str, status: int) -> None:
    assert response.status_code == status
    body = response.json()
    assert_shape(name, body)
    assert body["meta"]["status"] == status
    assert body["meta"]["request_id"] == response.headers["x-request-id"]
    recorded = fixture(name)["errors"][0]
    assert (body["errors"][0]["type"], body["errors"][0]["code"]) == (
        recorded["type"],
        recorded["code"],
    )


def test_error_bodies_match_recorded_errors(urls) -> None:
    with httpx.Client(base_url=urls["duffel"], headers={"Duffel-Version": "v2"}) as anonymous:
        _assert_error(anonymous.get("/air/orders"), "401_authorization.json", 401)
    with client(urls["duffel"]) as api:
        _assert_error(api.get("/air/orders/ord_0000AL3E9lRtT7XMqrEHp8"), "404_not_found.json", 404)
        invalid = api.post("/air/offer_requests", json={"data": {}})
        _assert_error(invalid, "422_validation_error.json", 422)
        assert invalid.json()["errors"][0]["source"] == {"field": "slices", "pointer": "/slices"}
    with client(urls["strict"]) as api:
        assert api.get("/air/airlines").status_code == 200
        _assert_error(api.get("/air/airlines"), "429_rate_limit.json", 429)


@pytest.mark.parametrize(
    ("zone", "day"),
    [
        ("America/Denver", date(2026, 3, 8)),  # spring forward, west of UTC
        ("America/Denver", date(2026, 11, 1)),  # fall back
        ("Europe/London", date(2026, 10, 25)),
        (
            "Pacific/Chatham",
            date(2026, 9, 26),
        ),  # east of UTC: the change falls on the UTC day before
        ("Australia/Lord_Howe", date(2026, 4, 4)),  # a half-hour change
    ],
)
def test_segment_local_times_are_exact_through_a_time_zone_change(zone: str, day: date) -> None:
    """Airport-local wall times of the instants around a change match the zone's own reading."""
    tz = zone_info(zone)
    start = datetime(day.year, day.month, day.day, tzinfo=UTC) - timedelta(days=1)
    for quarter in range(3 * 24 * 4):
        moment = start + timedelta(minutes=15 * quarter)
        expected = moment.astimezone(tz).replace(tzinfo=None).isoformat()
        assert local_text(to_us(moment), tz) == expected, moment
