"""Duffel v2 resources as typed values, lenient where Duffel's payloads vary.

Unknown fields are ignored, most fields may be null or absent, durations accept every
ISO-8601 spelling seen in the wild (``PT1H43M``, ``PT02H26M``, ``P1DT2H``), money is
Decimal from Duffel's decimal strings. ``departing_at``/``arriving_at`` stay naive: they
are airport-local times (use the airport's ``time_zone``).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, SecretStr

from clients.loyalty.models import UtcDatetime

_DURATION = re.compile(
    r"^P(?:(?P<weeks>\d+)W)?(?:(?P<days>\d+)D)?"
    r"(?:T(?:(?P<hours>\d+)H)?(?:(?P<minutes>\d+)M)?(?:(?P<seconds>\d+(?:\.\d+)?)S)?)?$"
)


def parse_duration(value: Any) -> dt.timedelta | None:
    """An ISO-8601 duration such as ``PT1H43M``, ``PT02H26M`` or ``P1DT2H``."""
    if value is None or isinstance(value, dt.timedelta):
        return value
    match = _DURATION.match(str(value).strip().upper())
    if not match or str(value).strip().upper() in ("P", "PT"):
        raise ValueError(f"not an ISO-8601 duration: {value!r}")
    parts = {k: float(v) for k, v in match.groupdict().items() if v}
    return dt.timedelta(**parts)


Duration = Annotated[dt.timedelta | None, BeforeValidator(parse_duration)]


class _Lenient(BaseModel):
    """Base of every Duffel model: unknown fields ignored, values immutable."""

    model_config = ConfigDict(extra="ignore", frozen=True)


class Airline(_Lenient):
    """An airline (an offer or order owner, a marketing or operating carrier)."""

    id: str
    name: str
    iata_code: str | None = None
    logo_symbol_url: str | None = None
    logo_lockup_url: str | None = None
    conditions_of_carriage_url: str | None = None


class City(_Lenient):
    """A city place (a metropolitan area code such as LON)."""

    id: str
    name: str | None = None
    iata_code: str | None = None
    iata_country_code: str | None = None


class Place(_Lenient):
    """An airport or a city as an origin or destination."""

    id: str
    type: str | None = None
    name: str | None = None
    iata_code: str | None = None
    icao_code: str | None = None
    iata_city_code: str | None = None
    iata_country_code: str | None = None
    city_name: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    time_zone: str | None = None
    city: City | None = None


class Airport(Place):
    """An airport of Duffel's reference data."""


class Aircraft(_Lenient):
    """The aircraft type flying a segment."""

    id: str | None = None
    name: str | None = None
    iata_code: str | None = None


class Baggage(_Lenient):
    """Bags included for a passenger on a segment."""

    type: str
    quantity: int = 0


class SegmentPassenger(_Lenient):
    """One passenger's cabin and baggage on one segment."""

    passenger_id: str
    cabin_class: str | None = None
    cabin_class_marketing_name: str | None = None
    fare_basis_code: str | None = None
    baggages: list[Baggage] = Field(default_factory=list)


class Segment(_Lenient):
    """One flight (a takeoff and a landing)."""

    id: str | None = None
    origin: Place
    destination: Place
    origin_terminal: str | None = None
    destination_terminal: str | None = None
    departing_at: dt.datetime
    arriving_at: dt.datetime
    duration: Duration = None
    distance: Decimal | None = None
    marketing_carrier: Airline | None = None
    marketing_carrier_flight_number: str | None = None
    operating_carrier: Airline | None = None
    operating_carrier_flight_number: str | None = None
    aircraft: Aircraft | None = None
    stops: list[dict[str, Any]] = Field(default_factory=list)
    passengers: list[SegmentPassenger] = Field(default_factory=list)


class Condition(_Lenient):
    """Whether a change or refund is allowed, and at what penalty."""

    allowed: bool | None = None
    penalty_amount: Decimal | None = None
    penalty_currency: str | None = None


class Conditions(_Lenient):
    """Refund and change conditions of an offer, order or slice."""

    refund_before_departure: Condition | None = None
    change_before_departure: Condition | None = None


class Slice(_Lenient):
    """One journey of a trip (outbound or return), made of segments."""

    id: str | None = None
    origin: Place
    destination: Place
    origin_type: str | None = None
    destination_type: str | None = None
    duration: Duration = None
    fare_brand_name: str | None = None
    conditions: Conditions | None = None
    segments: list[Segment] = Field(default_factory=list)


class OrderPassenger(_Lenient):
    """A passenger as booked on an order."""

    id: str
    type: str | None = None
    title: str | None = None
    gender: str | None = None
    given_name: str | None = None
    family_name: str | None = None
    born_on: dt.date | None = None
    email: str | None = None
    phone_number: str | None = None
    infant_passenger_id: str | None = None


class Service(_Lenient):
    """An extra sold with an order (baggage, seat)."""

    id: str
    type: str
    quantity: int = 1
    total_amount: Decimal | None = None
    total_currency: str | None = None
    passenger_ids: list[str] = Field(default_factory=list)
    segment_ids: list[str] = Field(default_factory=list)
    metadata: dict[str, Any] | None = None


class PaymentStatus(_Lenient):
    """Whether an order is paid, or by when a held order must be."""

    awaiting_payment: bool = False
    payment_required_by: UtcDatetime | None = None
    price_guarantee_expires_at: UtcDatetime | None = None
    paid_at: UtcDatetime | None = None


class Document(_Lenient):
    """A ticket or EMD issued for passengers of an order."""

    type: str
    unique_identifier: str | None = None
    passenger_ids: list[str] = Field(default_factory=list)


class OrderCancellation(_Lenient):
    """A cancellation quote for an order; confirmed once ``confirmed_at`` is set."""

    id: str
    order_id: str
    live_mode: bool | None = None
    refund_amount: Decimal | None = None
    refund_currency: str | None = None
    refund_to: str | None = None
    expires_at: UtcDatetime | None = None
    created_at: UtcDatetime | None = None
    confirmed_at: UtcDatetime | None = None
    airline_credits: list[dict[str, Any]] = Field(default_factory=list)


class DuffelOrder(_Lenient):
    """A booked (or held) order: the flight side of one of our bookings."""

    id: str
    live_mode: bool | None = None
    type: str | None = None
    created_at: UtcDatetime
    synced_at: UtcDatetime | None = None
    booking_reference: str | None = None
    total_amount: Decimal
    total_currency: str
    base_amount: Decimal | None = None
    base_currency: str | None = None
    tax_amount: Decimal | None = None
    tax_currency: str | None = None
    owner: Airline | None = None
    passengers: list[OrderPassenger] = Field(default_factory=list)
    slices: list[Slice] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    payment_status: PaymentStatus | None = None
    documents: list[Document] = Field(default_factory=list)
    conditions: Conditions | None = None
    metadata: dict[str, Any] | None = None
    cancelled_at: UtcDatetime | None = None
    cancellation: OrderCancellation | None = None
    available_actions: list[str] = Field(default_factory=list)

    @property
    def passenger_count(self) -> int:
        return len(self.passengers)


class OfferPassenger(_Lenient):
    """A passenger of a search, with the id the order must reuse."""

    id: str
    type: str | None = None
    age: int | None = None
    fare_type: str | None = None
    given_name: str | None = None
    family_name: str | None = None


class PaymentRequirements(_Lenient):
    """Whether an offer must be paid at once or can be held."""

    requires_instant_payment: bool = True
    price_guarantee_expires_at: UtcDatetime | None = None
    payment_required_by: UtcDatetime | None = None


class Offer(_Lenient):
    """A priced itinerary that can be booked until ``expires_at``."""

    id: str
    live_mode: bool | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
    expires_at: UtcDatetime | None = None
    total_amount: Decimal
    total_currency: str
    base_amount: Decimal | None = None
    base_currency: str | None = None
    tax_amount: Decimal | None = None
    tax_currency: str | None = None
    total_emissions_kg: Decimal | None = None
    owner: Airline | None = None
    passengers: list[OfferPassenger] = Field(default_factory=list)
    slices: list[Slice] = Field(default_factory=list)
    payment_requirements: PaymentRequirements | None = None
    conditions: Conditions | None = None
    partial: bool | None = None


class OfferRequestSlice(_Lenient):
    """One requested journey of a search."""

    origin: Place
    destination: Place
    origin_type: str | None = None
    destination_type: str | None = None
    departure_date: dt.date


class OfferRequest(_Lenient):
    """A flight search and (unless ``return_offers=false``) the offers it found."""

    id: str
    live_mode: bool | None = None
    created_at: UtcDatetime | None = None
    cabin_class: str | None = None
    slices: list[OfferRequestSlice] = Field(default_factory=list)
    passengers: list[OfferPassenger] = Field(default_factory=list)
    offers: list[Offer] = Field(default_factory=list)


class Payment(_Lenient):
    """A payment made for a held order."""

    id: str
    type: str | None = None
    amount: Decimal
    currency: str
    created_at: UtcDatetime | None = None
    live_mode: bool | None = None


class DuffelWebhook(_Lenient):
    """A registered webhook endpoint; ``secret`` is present only in the creation answer
    (a ``SecretStr``, so it never shows in a repr or a log line)."""

    id: str
    url: str
    events: list[str]
    active: bool = True
    live_mode: bool | None = None
    secret: SecretStr | None = None
    created_at: UtcDatetime | None = None
    updated_at: UtcDatetime | None = None
