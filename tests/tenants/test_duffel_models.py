"""Recorded Duffel payloads parse into our models without losing what the platform uses."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from clients.duffel import (
    Airline,
    Airport,
    DuffelOrder,
    OfferRequest,
    OrderCancellation,
    parse_duration,
)
from clients.errors import (
    DuffelAuthError,
    DuffelNotFound,
    DuffelRateLimited,
    DuffelRejected,
    duffel_error,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "duffel"


def _load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text(), parse_float=Decimal)


def test_order_keeps_money_references_itinerary_and_passengers() -> None:
    order = DuffelOrder.model_validate(_load("order.json")["data"])
    assert order.id == "ord_0000AL3E9lRtT7XMqrEHp8"
    assert order.booking_reference == "IXK4SC"
    assert order.total_amount == Decimal("193.06") and isinstance(order.total_amount, Decimal)
    assert order.base_amount == Decimal("169.71")
    assert order.tax_amount == Decimal("23.35")
    assert order.total_currency == "GBP"
    assert order.created_at == dt.datetime(2022, 7, 1, 14, 59, 40, 165602, tzinfo=dt.UTC)
    assert order.owner is not None and order.owner.iata_code == "ZZ"
    assert order.passenger_count == 1
    assert order.passengers[0].given_name == "Test"
    (only_slice,) = order.slices
    assert only_slice.origin.iata_code == "STR"
    assert only_slice.destination.iata_code == "LHR"
    assert (
        only_slice.destination.city is not None and only_slice.destination.city.iata_code == "LON"
    )
    assert only_slice.duration == dt.timedelta(hours=1, minutes=43)
    (segment,) = only_slice.segments
    assert segment.origin.iata_code == "STR" and segment.destination.iata_code == "LHR"
    # Airport-local and naive by design: the airport's time zone says where.
    assert segment.departing_at == dt.datetime(2022, 7, 15, 23, 0)
    assert segment.departing_at.tzinfo is None
    assert segment.marketing_carrier is not None and segment.marketing_carrier.iata_code == "ZZ"
    assert segment.marketing_carrier_flight_number == "6720"
    assert segment.passengers[0].cabin_class == "economy"
    assert segment.distance == Decimal("855.1036664434637")
    assert [s.total_amount for s in order.services] == [Decimal("20.00"), Decimal("20.0")]
    assert order.conditions is not None
    refund = order.conditions.refund_before_departure
    assert refund is not None and refund.penalty_amount == Decimal("30.00")
    assert order.payment_status is not None and order.payment_status.awaiting_payment is False
    assert order.documents[0].type == "electronic_ticket"
    assert order.metadata is None
    assert order.cancellation is None and order.cancelled_at is None


def test_order_page_parses_and_carries_the_cursor() -> None:
    page = _load("order_page_filtered.json")
    orders = [DuffelOrder.model_validate(o) for o in page["data"]]
    assert [o.booking_reference for o in orders] == ["K3DZ9M6", "XNZWSC"]
    assert [o.total_amount for o in orders] == [Decimal("76.10"), Decimal("374.25")]
    assert all(o.slices[0].segments for o in orders)
    assert page["meta"]["after"] and page["meta"]["limit"] == 15


def test_order_with_metadata_and_cancellation() -> None:
    raw = _load("order.json")["data"]
    raw["metadata"] = {"booking_id": "bkg_00000000abcd", "member_id": "CC1234567"}
    raw["cancelled_at"] = "2022-07-22T14:00:00Z"
    raw["cancellation"] = _load("order_cancellation.json")["data"]
    raw["new_field_from_the_future"] = {"anything": 1}
    order = DuffelOrder.model_validate(raw)
    assert order.metadata == {"booking_id": "bkg_00000000abcd", "member_id": "CC1234567"}
    assert order.cancellation is not None
    assert order.cancellation.refund_amount == Decimal("0.00")
    assert order.cancellation.refund_to == "awaiting_payment"
    assert order.cancelled_at == dt.datetime(2022, 7, 22, 14, 0, tzinfo=dt.UTC)


def test_order_cancellation() -> None:
    cancellation = OrderCancellation.model_validate(_load("order_cancellation.json")["data"])
    assert cancellation.id == "ore_0000ALkeIxcuQPCDKjE1r7"
    assert cancellation.order_id == "ord_0000ALiAP5a6cdSZ7Z8Lev"
    assert cancellation.refund_amount == Decimal("0.00")
    assert cancellation.refund_currency == "GBP"
    assert cancellation.confirmed_at is None
    assert cancellation.expires_at == dt.datetime(2022, 7, 22, 14, 45, 14, tzinfo=dt.UTC)


def test_offer_request_with_offers() -> None:
    request = OfferRequest.model_validate(_load("offer_request.json")["data"])
    assert request.id.startswith("orq_")
    assert request.slices[0].origin.iata_code == "LHR"
    assert request.slices[0].destination.iata_code == "STR"
    assert request.slices[0].departure_date == dt.date(2022, 6, 15)
    assert request.passengers[0].id.startswith("pas_")
    assert len(request.offers) == 11
    offer = request.offers[0]
    assert isinstance(offer.total_amount, Decimal) and offer.total_currency
    assert offer.owner is not None
    assert offer.slices[0].segments[0].duration == dt.timedelta(hours=1, minutes=40)


def test_reference_data() -> None:
    airlines = [Airline.model_validate(a) for a in _load("airlines.json")["data"]]
    assert any(a.iata_code == "BA" and a.name == "British Airways" for a in airlines)
    airports = [Airport.model_validate(a) for a in _load("airports.json")["data"]]
    assert len(airports) == 50
    aachen = airports[0]
    assert (aachen.iata_code, aachen.time_zone, aachen.iata_country_code) == (
        "AAH",
        "Europe/Berlin",
        "DE",
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("PT1H43M", dt.timedelta(hours=1, minutes=43)),
        ("PT02H26M", dt.timedelta(hours=2, minutes=26)),
        ("P1DT2H", dt.timedelta(days=1, hours=2)),
        ("PT45M", dt.timedelta(minutes=45)),
        ("P1D", dt.timedelta(days=1)),
        (None, None),
    ],
)
def test_durations_parse_leniently(text: str | None, expected: dt.timedelta | None) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize("text", ["PT", "1H43M", "P1H"])
def test_nonsense_durations_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="ISO-8601"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("name", "status", "cls", "code"),
    [
        ("401_authorization.json", 401, DuffelAuthError, "missing_authorization_header"),
        ("404_not_found.json", 404, DuffelNotFound, "not_found"),
        ("422_validation_error.json", 422, DuffelRejected, "validation_required"),
        ("429_rate_limit.json", 429, DuffelRateLimited, "rate_limit_exceeded"),
    ],
)
def test_recorded_error_bodies_map_to_types(name: str, status: int, cls: type, code: str) -> None:
    response = httpx.Response(status, content=(FIXTURES / name).read_bytes())
    error = duffel_error(response, tenant="coffeechain", endpoint="GET /air/orders")
    assert type(error) is cls
    assert error.code == code and error.status == status
    assert error.request_id and error.request_id.startswith("F")
    problem = error.to_problem()
    assert problem["upstream_code"] == code and problem["request_id"] == error.request_id
    if name.startswith("422"):
        assert "slices" in error.message and "passengers" in error.message
