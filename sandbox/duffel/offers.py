"""Flight search: deterministic offers for any pair of reference airports.

The same route, dates, cabin and passenger count always yield the same airlines, times
and prices (only ids and expiry differ), so searches are reproducible in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

import orjson

from sandbox.duffel.errors import required, validation
from sandbox.duffel.render import (
    AIRLINE_OBJECTS,
    CABIN_NAMES,
    HOUR_US,
    MINUTE_US,
    Json,
    airport_object,
    id_seed,
    order_conditions,
    slices_json,
    stable_int,
    to_us,
    utc_text,
    utc_text_seconds,
    zone,
)
from sandbox.reference import AIRLINE_REGIONS, airports, great_circle_km

CABINS = tuple(CABIN_NAMES)
OFFER_TTL_US = 30 * MINUTE_US
MAX_PASSENGERS = 9

# Where each carrier connects its passengers when it flies neither end of the trip.
AIRLINE_HUBS = {
    "BA": "LHR",
    "AA": "DFW",
    "DL": "ATL",
    "UA": "ORD",
    "LH": "FRA",
    "AF": "CDG",
    "KL": "AMS",
    "EK": "DXB",
    "QR": "DOH",
    "SQ": "SIN",
    "CX": "HKG",
    "NH": "HND",
    "QF": "SYD",
    "AC": "YYZ",
    "IB": "MAD",
    "TK": "IST",
    "EY": "AUH",
}
# Carriers whose offers can be held and paid later (Duffel Airways always can).
HOLD_ELIGIBLE = frozenset({"ZZ", "BA", "AF", "KL", "UA", "QF"})
EURO_AREA = frozenset({"AT", "BE", "DE", "ES", "FI", "FR", "GR", "IE", "IT", "NL", "PT"})
# Units of the currency per US dollar; fares are computed in dollars and converted.
_RATES = {"USD": Decimal("1"), "GBP": Decimal("0.79"), "EUR": Decimal("0.92")}
_CABIN_FACTOR = {
    "economy": Decimal("1"),
    "premium_economy": Decimal("1.7"),
    "business": Decimal("3.8"),
    "first": Decimal("6.5"),
}
_CENT = Decimal("0.01")
_DETOUR_LIMIT = 1.35  # a connection longer than this multiple of the direct distance is not sold
_MIN_LEG_KM = 400  # nor one whose hub is next door to either end (DXB for AUH)


@dataclass(frozen=True)
class SearchSlice:
    origin: str
    destination: str
    departure_date: date


@dataclass(frozen=True)
class SearchPassenger:
    type: str
    age: int | None
    given_name: str | None
    family_name: str | None


@dataclass(frozen=True)
class Search:
    """A validated ``POST /air/offer_requests`` body."""

    slices: tuple[SearchSlice, ...]
    passengers: tuple[SearchPassenger, ...]
    cabin_class: str | None
    max_connections: int


@dataclass(frozen=True)
class Fare:
    """One sellable itinerary and its price; an offer is a fare plus ids and expiry."""

    owner: str
    origin: str
    destination: str
    via: str | None
    cabin: str
    outbound_us: int
    inbound_us: int | None
    total: Decimal
    base: Decimal
    tax: Decimal
    currency: str
    emissions_kg: int
    requires_instant_payment: bool


def currency_for(origin: str) -> str:
    country = airports()[origin].country
    if country == "GB":
        return "GBP"
    return "EUR" if country in EURO_AREA else "USD"


def _airport_code(value: Any, index: int, name: str) -> str:
    pointer = f"/slices/{index}/{name}"
    if not isinstance(value, str) or not value:
        raise required(name, pointer)
    code = value.upper()
    if code not in airports():
        raise validation(
            name, f"Field '{name}' is not a known IATA airport code: {value}", pointer=pointer
        )
    return code


def _parse_slice(raw: Any, index: int, today: date) -> SearchSlice:
    if not isinstance(raw, dict):
        raise validation("slices", "Each slice must be an object", pointer=f"/slices/{index}")
    origin = _airport_code(raw.get("origin"), index, "origin")
    destination = _airport_code(raw.get("destination"), index, "destination")
    if origin == destination:
        raise validation(
            "destination", "Origin and destination must differ", pointer=f"/slices/{index}"
        )
    text = raw.get("departure_date")
    pointer = f"/slices/{index}/departure_date"
    if not isinstance(text, str):
        raise required("departure_date", pointer)
    try:
        day = date.fromisoformat(text)
    except ValueError:
        raise validation(
            "departure_date", "Field 'departure_date' must be YYYY-MM-DD", pointer=pointer
        ) from None
    if day < today:
        raise validation(
            "departure_date", "Field 'departure_date' must not be in the past", pointer=pointer
        )
    return SearchSlice(origin, destination, day)


def _parse_passenger(raw: Any, index: int) -> SearchPassenger:
    pointer = f"/passengers/{index}"
    if not isinstance(raw, dict):
        raise validation("passengers", "Each passenger must be an object", pointer=pointer)
    kind, age = raw.get("type"), raw.get("age")
    if kind is not None and age is not None:
        raise validation("passengers", "Give a passenger's type or age, not both", pointer=pointer)
    if age is not None:
        if not isinstance(age, int) or isinstance(age, bool) or not 0 <= age <= 130:
            raise validation("age", "Field 'age' must be a whole number of years", pointer=pointer)
        kind = "adult" if age >= 18 else "child" if age >= 2 else "infant_without_seat"
    elif kind is None:
        raise required("type", f"{pointer}/type")
    elif kind != "adult":
        raise validation("type", "Field 'type' must be 'adult' (give 'age' for under-18s)")
    names = [raw.get(k) for k in ("given_name", "family_name")]
    if any(n is not None and not isinstance(n, str) for n in names):
        raise validation("passengers", "Passenger names must be strings", pointer=pointer)
    return SearchPassenger(kind, age, names[0], names[1])


def parse_search(data: dict[str, Any], today: date) -> Search:
    """Validate the ``data`` of an offer request; raises ``DuffelError`` (422) when invalid."""
    raw_slices, raw_passengers = data.get("slices"), data.get("passengers")
    missing = [
        name
        for name, value in (("slices", raw_slices), ("passengers", raw_passengers))
        if not value
    ]
    if missing:
        raise required(missing[0])
    if not isinstance(raw_slices, list) or len(raw_slices) > 2:
        raise validation("slices", "Give one slice (one-way) or two (return)")
    if not isinstance(raw_passengers, list) or len(raw_passengers) > MAX_PASSENGERS:
        raise validation("passengers", f"Give between 1 and {MAX_PASSENGERS} passengers")
    slices = tuple(_parse_slice(raw, i, today) for i, raw in enumerate(raw_slices))
    if len(slices) == 2:
        there, back = slices
        if (back.origin, back.destination) != (there.destination, there.origin):
            raise validation("slices", "The second slice must return to the first's origin")
        if back.departure_date < there.departure_date:
            raise validation("slices", "The return must not depart before the outbound")
    passengers = tuple(_parse_passenger(raw, i) for i, raw in enumerate(raw_passengers))
    cabin = data.get("cabin_class")
    if cabin is not None and cabin not in CABINS:
        raise validation("cabin_class", f"Field 'cabin_class' must be one of {', '.join(CABINS)}")
    connections = data.get("max_connections", 1)
    if connections not in (0, 1, 2) or isinstance(connections, bool):
        raise validation("max_connections", "Field 'max_connections' must be 0, 1 or 2")
    return Search(slices, passengers, cabin, connections)


def carriers_for(origin: str, destination: str) -> tuple[str, ...]:
    """Up to four carriers from both ends' regions, in a route-stable order, plus Duffel Airways."""
    pool: list[str] = []
    for code in (origin, destination):
        for airline in AIRLINE_REGIONS[airports()[code].continent]:
            if airline not in pool:
                pool.append(airline)
    turn = stable_int(f"carriers{origin}{destination}") % len(pool)
    return (*(pool[turn:] + pool[:turn])[:4], "ZZ")


def connection_for(owner: str, origin: str, destination: str, max_connections: int) -> str | None:
    """The carrier's hub when it flies neither end and the detour is reasonable; else direct."""
    hub = AIRLINE_HUBS.get(owner)
    if hub is None or max_connections == 0 or hub in (origin, destination):
        return None
    places = airports()
    direct = great_circle_km(places[origin], places[destination])
    around = great_circle_km(places[origin], places[hub]) + great_circle_km(
        places[hub], places[destination]
    )
    near_end = min(
        great_circle_km(places[origin], places[hub]),
        great_circle_km(places[hub], places[destination]),
    )
    return hub if around <= direct * _DETOUR_LIMIT and near_end >= _MIN_LEG_KM else None


def departure_us(owner: str, origin: str, destination: str, day: date) -> int:
    """The carrier's daily departure on this route (a route-stable local time, 06:00-22:55)."""
    minutes = 360 + stable_int(f"departure{owner}{origin}{destination}") % 204 * 5
    local = datetime.combine(day, time(minutes // 60, minutes % 60), zone(airports()[origin].tz))
    return to_us(local)


def price(
    owner: str,
    origin: str,
    destination: str,
    via: str | None,
    cabin: str,
    passenger_count: int,
    round_trip: bool,
) -> tuple[Decimal, Decimal, Decimal, str]:
    """(total, base, tax, currency) by distance, cabin and carrier, in the departure's currency."""
    places = airports()
    km = Decimal(int(great_circle_km(places[origin], places[destination])))
    carrier_factor = Decimal(88 + stable_int(f"price{owner}{origin}{destination}") % 30) / 100
    one_way = (Decimal(45) + km * Decimal("0.075")) * _CABIN_FACTOR[cabin] * carrier_factor
    if via is not None:
        one_way *= Decimal("0.9")  # connections sell below the direct fare
    trip = one_way * Decimal("1.85") if round_trip else one_way
    currency = currency_for(origin)
    rate = _RATES[currency]
    base = (trip * passenger_count * rate).quantize(_CENT)
    tax = (
        (Decimal(25) * passenger_count + trip * passenger_count * Decimal("0.12")) * rate
    ).quantize(_CENT)
    return base + tax, base, tax, currency


def fares(search: Search) -> list[Fare]:
    """Every fare for a search: per carrier, per cabin (or only the requested cabin)."""
    there = search.slices[0]
    back = search.slices[1] if len(search.slices) == 2 else None
    places = airports()
    km = great_circle_km(places[there.origin], places[there.destination])
    seats = len(search.passengers)
    cabins = (search.cabin_class,) if search.cabin_class else CABINS
    result = []
    for owner in carriers_for(there.origin, there.destination):
        via = connection_for(owner, there.origin, there.destination, search.max_connections)
        outbound = departure_us(owner, there.origin, there.destination, there.departure_date)
        inbound = (
            departure_us(owner, there.destination, there.origin, back.departure_date)
            if back
            else None
        )
        for cabin in cabins:
            total, base, tax, currency = price(
                owner, there.origin, there.destination, via, cabin, seats, back is not None
            )
            legs = 2 if back else 1
            emissions = int(km * 0.09 * float(_CABIN_FACTOR[cabin]) * seats * legs)
            result.append(
                Fare(
                    owner=owner,
                    origin=there.origin,
                    destination=there.destination,
                    via=via,
                    cabin=cabin,
                    outbound_us=outbound,
                    inbound_us=inbound,
                    total=total,
                    base=base,
                    tax=tax,
                    currency=currency,
                    emissions_kg=emissions,
                    requires_instant_payment=owner not in HOLD_ELIGIBLE,
                )
            )
    return result


def hold_deadlines(fare: Fare, now_us: int) -> tuple[int | None, int | None]:
    """(price_guarantee_expires_at, payment_required_by) in µs for a holdable fare."""
    if fare.requires_instant_payment:
        return None, None
    pay_by = min(now_us + 72 * HOUR_US, fare.outbound_us - 2 * HOUR_US)
    return min(now_us + 48 * HOUR_US, pay_by), pay_by


def offer_passenger(passenger_id: str, passenger: SearchPassenger) -> Json:
    return {
        "id": passenger_id,
        "type": passenger.type,
        "age": passenger.age,
        "given_name": passenger.given_name,
        "family_name": passenger.family_name,
        "fare_type": None,
        "loyalty_programme_accounts": [],
    }


def offer_body(fare: Fare, offer_id: str, passengers: list[Json], created_us: int) -> Json:
    """The Duffel offer object for a fare, valid for 30 minutes from ``created_us``."""
    guarantee, pay_by = hold_deadlines(fare, created_us)
    slices = slices_json(
        id_seed(offer_id),
        fare.owner,
        fare.origin,
        fare.destination,
        fare.via,
        fare.outbound_us,
        fare.inbound_us,
        fare.cabin,
        fare.currency,
        tuple(p["id"] for p in passengers),
    )
    return {
        "id": offer_id,
        "live_mode": False,
        "created_at": utc_text(created_us),
        "updated_at": utc_text(created_us),
        "expires_at": utc_text(created_us + OFFER_TTL_US),
        "total_amount": str(fare.total),
        "total_currency": fare.currency,
        "base_amount": str(fare.base),
        "base_currency": fare.currency,
        "tax_amount": str(fare.tax),
        "tax_currency": fare.currency,
        "total_emissions_kg": str(fare.emissions_kg),
        "owner": AIRLINE_OBJECTS[fare.owner],
        "passengers": passengers,
        "payment_requirements": {
            "requires_instant_payment": fare.requires_instant_payment,
            "price_guarantee_expires_at": utc_text_seconds(guarantee) if guarantee else None,
            "payment_required_by": utc_text_seconds(pay_by) if pay_by else None,
        },
        "conditions": order_conditions(fare.cabin, fare.currency),
        "partial": False,
        "private_fares": [],
        "supported_loyalty_programmes": [],
        "supported_passenger_identity_document_types": ["passport"],
        "allowed_passenger_identity_document_types": [],
        "passenger_identity_documents_required": False,
        "slices": orjson.Fragment(slices),
    }


def offer_request_body(
    request_id: str, search: Search, passengers: list[Json], created_us: int
) -> Json:
    """The offer request object without its ``offers`` (the caller adds them when asked)."""
    return {
        "id": request_id,
        "live_mode": False,
        "created_at": utc_text(created_us),
        "cabin_class": search.cabin_class or "economy",
        "client_key": None,
        "slices": [
            {
                "origin": airport_object(s.origin),
                "origin_type": "airport",
                "destination": airport_object(s.destination),
                "destination_type": "airport",
                "departure_date": s.departure_date.isoformat(),
                "created_at": utc_text(created_us),
            }
            for s in search.slices
        ],
        "passengers": passengers,
    }
