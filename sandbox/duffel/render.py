"""Duffel-shaped JSON for orders and their parts, built fast enough to page 15k+ orders/s.

Input is a *wire row*: an ORDERS row whose timestamps are integer microseconds since the
epoch (UTC) and whose money is a decimal string; ``wire_row`` converts a plain ORDERS
row and ``WIRE_COLUMNS`` does the same inside polars for the history. Everything is a
pure function of the row (child ids come from hashing the order id), so the same row
always renders to the same bytes.

Speed matters here (a 200-order page must render in a few milliseconds), hence: airports,
airlines, conditions and routes are serialised once and spliced into string templates;
local times come from cached per-day UTC offsets and cached date/time strings instead of
``datetime`` arithmetic.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import cache
from json.encoder import encode_basestring_ascii
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from sandbox.ids import BASE62
from sandbox.reference import AIRLINES, CITY_CODES, airports, flight_minutes, great_circle_km
from sandbox.schema import ORDERS, UTC_TS

Json = dict[str, Any]

# Optional keys an overlay row may carry beyond the ORDERS columns (orders booked through
# the API keep what the client sent; history rows derive all of it).
EXTRA_PASSENGERS = "extra_passengers"  # list of passenger dicts (id, given_name, ...)
EXTRA_METADATA = "extra_metadata"  # the metadata object exactly as the client sent it
CANCELLATION_CREATED_AT = "cancellation_created_at"  # µs; when the confirmed quote was made

MONEY_COLUMNS = ("total_amount", "base_amount", "tax_amount", "refund_amount")
TIME_COLUMNS = tuple(name for name, dtype in ORDERS.items() if dtype == UTC_TS)
# Polars expressions that turn ORDERS columns into wire-row values.
WIRE_COLUMNS = [pl.col(c).cast(pl.String) for c in MONEY_COLUMNS] + [
    pl.col(c).dt.epoch("us") for c in TIME_COLUMNS
]

US = 1_000_000
MINUTE_US = 60 * US
HOUR_US = 60 * MINUTE_US
_DAY_S = 86_400
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_CENT = Decimal("0.01")

_LOGO_SYMBOL = "https://assets.duffel.com/img/airlines/for-light-background/full-color-logo/{}.svg"
_LOGO_LOCKUP = (
    "https://assets.duffel.com/img/airlines/for-light-background/full-color-lockup/{}.svg"
)

# Metropolitan names for shared IATA city codes (the airport's own city can be a suburb).
_CITY_NAMES = {
    "LON": "London",
    "NYC": "New York",
    "CHI": "Chicago",
    "HOU": "Houston",
    "YTO": "Toronto",
    "SAO": "Sao Paulo",
    "BUE": "Buenos Aires",
    "ROM": "Rome",
    "STO": "Stockholm",
    "TYO": "Tokyo",
    "SEL": "Seoul",
    "BJS": "Beijing",
    "SHA": "Shanghai",
    "PAR": "Paris",
    "ORL": "Orlando",
}

# (IATA code, name, Duffel id); the A319/A320/777-300 ids are the recorded ones.
_SHORT_HAUL = (
    ("319", "Airbus A319", "arc_00009VMF8AgpV5sdO0xXAn"),
    ("320", "Airbus A320", "arc_00009VMF8AgpV5sdO0xXAr"),
    ("32N", "Airbus A320neo", "arc_00009VMF8AgpV5sdO0xXAv"),
    ("73H", "Boeing 737-800", "arc_00009VMF8AhBCDnFFRvW8g"),
)
_LONG_HAUL = (
    ("773", "Boeing 777-300", "arc_00009VMF8AhXSSRnQDI6HE"),
    ("77W", "Boeing 777-300ER", "arc_00009VMF8AhXSSRnQDI6HJ"),
    ("789", "Boeing 787-9", "arc_00009VMF8AhXSSRnQDI6Hb"),
    ("359", "Airbus A350-900", "arc_00009VMF8AgpV5sdO0xXBd"),
    ("388", "Airbus A380-800", "arc_00009VMF8AgpV5sdO0xXBn"),
)

CABIN_NAMES = {
    "economy": "Economy",
    "premium_economy": "Premium Economy",
    "business": "Business",
    "first": "First",
}
_FARE_LETTER = {"economy": "Y", "premium_economy": "W", "business": "J", "first": "F"}
_BAGGAGES = {
    "economy": [{"quantity": 1, "type": "checked"}, {"quantity": 1, "type": "carry_on"}],
    "premium_economy": [{"quantity": 2, "type": "checked"}, {"quantity": 1, "type": "carry_on"}],
    "business": [{"quantity": 2, "type": "checked"}, {"quantity": 1, "type": "carry_on"}],
    "first": [{"quantity": 3, "type": "checked"}, {"quantity": 1, "type": "carry_on"}],
}
# (refund allowed, refund penalty, change allowed, change penalty) per cabin.
_FARE_RULES = {
    "economy": (False, None, True, "75.00"),
    "premium_economy": (True, "150.00", True, "50.00"),
    "business": (True, "200.00", True, "0.00"),
    "first": (True, "0.00", True, "0.00"),
}

_GIVEN_NAMES = (
    ("Oliver", "m"),
    ("Amelia", "f"),
    ("Noah", "m"),
    ("Isla", "f"),
    ("Liam", "m"),
    ("Sofia", "f"),
    ("Mateo", "m"),
    ("Aisha", "f"),
    ("Kenji", "m"),
    ("Priya", "f"),
    ("Lucas", "m"),
    ("Chloe", "f"),
    ("Omar", "m"),
    ("Mia", "f"),
    ("Ethan", "m"),
    ("Hana", "f"),
)
_FAMILY_NAMES = (
    "Smith",
    "Garcia",
    "Müller",
    "Rossi",
    "Tanaka",
    "Kim",
    "Okafor",
    "Silva",
    "Dubois",
    "Novak",
    "Patel",
    "O'Brien",
    "Jensen",
    "Haddad",
    "Nguyen",
    "Walker",
)
_GENDER_BY_NAME = dict(_GIVEN_NAMES)
_BORN_FROM_DAY = date(1950, 1, 1).toordinal() - _EPOCH_ORDINAL

BASE62_BYTES = bytes(ord(BASE62[i % 62]) for i in range(256))  # byte -> base62 char


# --- ids and hashing -------------------------------------------------------------------


def id_seed(key: str) -> str:
    """48 base62 characters derived from ``key``; slices of it become child ids."""
    digest = hashlib.blake2b(key.encode(), digest_size=48).digest()
    return digest.translate(BASE62_BYTES).decode("ascii")


_SUFFIXES = [a + b for a in BASE62 for b in BASE62]  # two-character child indexes


def child_base(prefix: str, seed: str, part: int) -> str:
    """The shared start of a family of child ids; ``child_base(...) + _SUFFIXES[i]`` is one."""
    return f"{prefix}_0000{seed[part * 16 : part * 16 + 16]}"


def child_id(prefix: str, seed: str, part: int, index: int) -> str:
    """A Duffel-looking id (prefix + ``0000`` + 18 chars) unique per (seed, part, index)."""
    return child_base(prefix, seed, part) + _SUFFIXES[index]


def stable_int(text: str) -> int:
    """A process-independent hash (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode())


# --- times -----------------------------------------------------------------------------

_DAY_TEXT: dict[int, str] = {}
# Every time of day, built once (~5 MB): created_at seconds are spread over the whole day.
_TIME_TEXT = tuple(
    f"{h:02d}:{m:02d}:{sec:02d}" for h in range(24) for m in range(60) for sec in range(60)
)
_OFFSETS: dict[tuple[ZoneInfo, int], int | None] = {}


def _day_text(day: int) -> str:
    text = _DAY_TEXT.get(day)
    if text is None:
        text = _DAY_TEXT[day] = date.fromordinal(_EPOCH_ORDINAL + day).isoformat()
    return text


def to_us(moment: datetime) -> int:
    """Microseconds since the epoch of an aware datetime (exact, no float rounding)."""
    delta = moment - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * _DAY_S + delta.seconds) * US + delta.microseconds


def from_us(us: int) -> datetime:
    return datetime.fromtimestamp(us // US, UTC).replace(microsecond=us % US)


def utc_text(us: int) -> str:
    """``2022-07-01T14:59:40.165602Z``, as Duffel's ``created_at``."""
    seconds, fraction = divmod(us, US)
    day, second = divmod(seconds, _DAY_S)
    date_text = _DAY_TEXT.get(day) or _day_text(day)
    return f"{date_text}T{_TIME_TEXT[second]}.{fraction:06d}Z"


def utc_text_seconds(us: int) -> str:
    """``2022-07-22T14:45:14Z``, as Duffel's ``expires_at`` and ``payment_required_by``."""
    day, second = divmod(us // US, _DAY_S)
    return f"{_DAY_TEXT.get(day) or _day_text(day)}T{_TIME_TEXT[second]}Z"


def _offset_seconds(tz: ZoneInfo, seconds: int) -> int:
    # Offsets only change at DST transitions, so cache one per zone and UTC day; a day
    # with a transition in it (marked None) is resolved exactly every time.
    day = seconds // _DAY_S
    key = (tz, day)
    # (``tz.utcoffset(aware)`` would read the instant's wall time as local: the instant's
    # own offset is that of ``fromtimestamp(s, tz)``.)
    if key not in _OFFSETS:
        start = datetime.fromtimestamp(day * _DAY_S, tz).utcoffset()
        end = datetime.fromtimestamp(day * _DAY_S + _DAY_S - 1, tz).utcoffset()
        _OFFSETS[key] = int(start.total_seconds()) if start == end else None
    offset = _OFFSETS[key]
    if offset is None:
        offset = int(datetime.fromtimestamp(seconds, tz).utcoffset().total_seconds())
    return offset


def local_text(us: int, tz: ZoneInfo) -> str:
    """Airport-local wall time without offset (``2022-07-15T23:00:00``), as Duffel's segments."""
    seconds = us // US
    offset = _OFFSETS.get((tz, seconds // _DAY_S))  # the hot path of _offset_seconds, inlined
    if offset is None:
        offset = _offset_seconds(tz, seconds)
    day, second = divmod(seconds + offset, _DAY_S)
    return f"{_DAY_TEXT.get(day) or _day_text(day)}T{_TIME_TEXT[second]}"


def iso_duration(minutes: int) -> str:
    hours, rest = divmod(minutes, 60)
    if not hours:
        return f"PT{rest}M"
    return f"PT{hours}H{rest}M" if rest else f"PT{hours}H"


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


# --- rows ------------------------------------------------------------------------------


def wire_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ORDERS row (``datetime``/``Decimal`` values) in the form ``order_bytes`` reads.

    Raises ``ValueError`` for missing columns or naive datetimes.
    """
    missing = [name for name in ORDERS if name not in row]
    if missing:
        raise ValueError(f"ORDERS row lacks {', '.join(missing)}")
    result = dict(row)
    for name in TIME_COLUMNS:
        value = row[name]
        if isinstance(value, datetime):
            if value.tzinfo is None:
                raise ValueError(f"{name} must be timezone-aware")
            result[name] = to_us(value)
    for name in MONEY_COLUMNS:
        value = row[name]
        if value is not None and not isinstance(value, str):
            result[name] = str(Decimal(value).quantize(_CENT))
    if row["passenger_count"] is not None:
        result["passenger_count"] = int(row["passenger_count"])
    return result


# --- reference fragments ---------------------------------------------------------------


def ascii_json(value: Any) -> str:
    """Compact JSON with non-ASCII escaped: templates stay pure ASCII, so encoding is a copy."""
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


@cache
def airport_object(iata: str) -> Json:
    """The airport as Duffel nests it in slices and segments (``city`` set for metro codes)."""
    airport = airports()[iata]
    country = airport.country
    city_code = airport.city_code
    city_name = _CITY_NAMES.get(city_code, airport.city)
    city = None
    if iata in CITY_CODES:
        city = {
            "type": "city",
            "id": f"cit_{city_code.lower()}_{country.lower()}",
            "name": city_name,
            "iata_code": city_code,
            "iata_city_code": city_code,
            "iata_country_code": country,
            "city_name": None,
            "icao_code": None,
            "latitude": None,
            "longitude": None,
            "time_zone": None,
        }
    return {
        "type": "airport",
        "id": airport.duffel_id,
        "name": airport.name,
        "iata_code": iata,
        "icao_code": airport.icao,
        "iata_city_code": city_code,
        "city_name": city_name,
        "iata_country_code": country,
        "latitude": airport.lat,
        "longitude": airport.lon,
        "time_zone": airport.tz,
        "city": city,
    }


@cache
def _airport_json(iata: str) -> str:
    return ascii_json(airport_object(iata))


AIRLINE_OBJECTS: dict[str, Json] = {
    iata: {
        "id": duffel_id,
        "name": name,
        "iata_code": iata,
        "logo_symbol_url": _LOGO_SYMBOL.format(iata),
        # Duffel Airways has no lockup logo in the recorded payloads.
        "logo_lockup_url": None if iata == "ZZ" else _LOGO_LOCKUP.format(iata),
    }
    for iata, name, duffel_id in AIRLINES
}
_AIRLINE_JSON = {iata: ascii_json(airline) for iata, airline in AIRLINE_OBJECTS.items()}


def _condition(allowed: bool, penalty: str | None, currency: str) -> Json:
    return {
        "allowed": allowed,
        "penalty_amount": penalty,
        "penalty_currency": currency if penalty is not None else None,
    }


@cache
def order_conditions(cabin: str, currency: str) -> Json:
    refund_ok, refund_fee, change_ok, change_fee = _FARE_RULES.get(cabin, _FARE_RULES["economy"])
    return {
        "refund_before_departure": _condition(refund_ok, refund_fee, currency),
        "change_before_departure": _condition(change_ok, change_fee, currency),
    }


@cache
def _order_conditions_json(cabin: str, currency: str) -> str:
    return ascii_json(order_conditions(cabin, currency))


@cache
def _slice_head(cabin: str, currency: str) -> str:
    """The slice keys that depend only on cabin and currency, serialised."""
    change = order_conditions(cabin, currency)["change_before_departure"]
    brand = ascii_json(CABIN_NAMES.get(cabin, "Economy"))
    conditions = ascii_json({"change_before_departure": change})
    return f'"fare_brand_name":{brand},"changeable":true,"conditions":{conditions}'


@cache
def _segment_passenger_tail(cabin: str, owner: str) -> str:
    """A segment passenger's keys after ``passenger_id``, the same for every passenger."""
    fields = {
        "cabin_class": cabin,
        "cabin_class_marketing_name": CABIN_NAMES.get(cabin, "Economy"),
        "fare_basis_code": f"{_FARE_LETTER.get(cabin, 'Y')}{owner}FLX",
        "baggages": _BAGGAGES.get(cabin, _BAGGAGES["economy"]),
    }
    return ascii_json(fields)[1:-1]


class Route:
    """What never changes about flying an airport pair: times, zones, serialised places."""

    __slots__ = ("dest_zone", "json", "long_haul", "minutes", "origin_zone")

    def __init__(self, origin: str, destination: str) -> None:
        a, b = airports()[origin], airports()[destination]
        km = great_circle_km(a, b)
        self.minutes = flight_minutes(km)
        self.long_haul = km >= 3500
        self.origin_zone = zone(a.tz)
        self.dest_zone = zone(b.tz)
        self.json = (
            f'"origin":{_airport_json(origin)},"destination":{_airport_json(destination)},'
            f'"duration":"{iso_duration(self.minutes)}","distance":"{km:.1f}"'
        )


@cache
def route(origin: str, destination: str) -> Route:
    return Route(origin, destination)


_AIRCRAFT_JSON = {
    fleet: [ascii_json({"id": aid, "name": name, "iata_code": code}) for code, name, aid in fleet]
    for fleet in (_SHORT_HAUL, _LONG_HAUL)
}


# Per carrier and leg only small strings are cached (tens of thousands of legs in a large
# history); the big carrier and airport objects are shared, spliced in per segment.
@cache
def _flight(owner: str, origin: str, destination: str, long_haul: bool) -> tuple[str, str]:
    """(flight number, aircraft JSON) of the carrier's flight on this leg."""
    number = stable_int(f"{owner}{origin}{destination}")
    fleet = _LONG_HAUL if long_haul else _SHORT_HAUL
    return str(number % 9000 + 100), _AIRCRAFT_JSON[fleet][number % len(fleet)]


@cache
def _terminal(owner: str, iata: str) -> str:
    """The carrier's terminal at an airport as JSON (``null`` for single-terminal airports)."""
    value = stable_int(f"terminal{owner}{iata}") % 6
    return "null" if value == 0 else f'"{value}"'


def layover_minutes(owner: str, via: str) -> int:
    return 60 + stable_int(f"layover{owner}{via}") % 12 * 10


# --- slices ----------------------------------------------------------------------------
# Orders and slices are string templates rather than dicts for orjson: a 200-order page
# must render in a few milliseconds. Only values made here (ids, times, codes from the
# reference tables) are spliced in raw; anything else goes through ``_q`` (JSON-escaped).

_q = encode_basestring_ascii


def _slice_json(
    seed: str,
    index: int,
    owner: str,
    stops: tuple[str, ...],
    departure_us: int,
    head: str,
    passengers: str,
) -> str:
    segment_base = child_base("seg", seed, 2)
    carrier = _AIRLINE_JSON[owner]
    segments = []
    moment = departure_us
    for number in range(len(stops) - 1):
        start, end = stops[number], stops[number + 1]
        leg = route(start, end)
        flight, aircraft = _flight(owner, start, end, leg.long_haul)
        if number:
            moment += layover_minutes(owner, start) * MINUTE_US
        arrival = moment + leg.minutes * MINUTE_US
        segments.append(
            f'{{"id":"{segment_base}{_SUFFIXES[index * 8 + number]}",{leg.json},'
            f'"origin_terminal":{_terminal(owner, start)},'
            f'"destination_terminal":{_terminal(owner, end)},'
            f'"marketing_carrier":{carrier},"marketing_carrier_flight_number":"{flight}",'
            f'"operating_carrier":{carrier},"operating_carrier_flight_number":"{flight}",'
            f'"aircraft":{aircraft},"departing_at":"{local_text(moment, leg.origin_zone)}",'
            f'"arriving_at":"{local_text(arrival, leg.dest_zone)}","passengers":{passengers}}}'
        )
        moment = arrival
    duration = iso_duration((moment - departure_us) // MINUTE_US)
    return (
        f'{{"id":"{child_id("sli", seed, 1, index)}","origin":{_airport_json(stops[0])},'
        f'"origin_type":"airport","destination":{_airport_json(stops[-1])},'
        f'"destination_type":"airport","duration":"{duration}",{head},'
        f'"segments":[{",".join(segments)}]}}'
    )


def slices_json(
    seed: str,
    owner: str,
    origin: str,
    destination: str,
    via: str | None,
    outbound_us: int,
    inbound_us: int | None,
    cabin: str,
    currency: str,
    passenger_ids: tuple[str, ...],
) -> str:
    """The ``slices`` list: outbound and, for a return trip, inbound (same connection)."""
    head = _slice_head(cabin, currency)
    tail = _segment_passenger_tail(cabin, owner)
    passengers = ",".join(f'{{"passenger_id":"{pid}",{tail}}}' for pid in passenger_ids)
    passengers = f"[{passengers}]"
    there = (origin, via, destination) if via else (origin, destination)
    parts = [_slice_json(seed, 0, owner, there, outbound_us, head, passengers)]
    if inbound_us is not None:
        back = there[::-1]
        parts.append(_slice_json(seed, 1, owner, back, inbound_us, head, passengers))
    return f"[{','.join(parts)}]"


# --- orders ----------------------------------------------------------------------------


def _block(seed: str, start: int, length: int = 6) -> int:
    return int(seed[start : start + length], 36)


def _derived_passenger(
    seed: str, passenger_id: str, index: int, given: str | None, family: str | None
) -> str:
    """A passenger's JSON; names not given are chosen from the seed (so stable per order)."""
    pick = _block(seed, index * 3)
    if given is None:
        given, gender = _GIVEN_NAMES[pick % len(_GIVEN_NAMES)]
    else:
        gender = _GENDER_BY_NAME.get(given, "m" if pick % 2 else "f")
    if family is None:
        family = _FAMILY_NAMES[(pick // 16) % len(_FAMILY_NAMES)]
    handle = f"{given}.{family}".lower().replace(" ", "").replace("'", "")
    title = "mr" if gender == "m" else "ms"
    return (
        f'{{"id":"{passenger_id}","type":"adult","title":"{title}",'
        f'"gender":"{gender}","given_name":{_q(given)},"family_name":{_q(family)},'
        f'"born_on":"{_day_text(_BORN_FROM_DAY + pick % 20000)}",'
        f'"email":{_q(handle + "@example.com")},"phone_number":"+4420{pick % 100000000:08d}",'
        f'"infant_passenger_id":null,"loyalty_programme_accounts":[]}}'
    )


def _passengers(row: Mapping[str, Any], seed: str) -> tuple[tuple[str, ...], str]:
    """(passenger ids, passengers JSON) of an order."""
    given = row.get(EXTRA_PASSENGERS)
    if given:
        return tuple(p["id"] for p in given), ascii_json(given)
    base = child_base("pas", seed, 0)
    ids = tuple(base + _SUFFIXES[i] for i in range(max(row["passenger_count"] or 1, 1)))
    member = _derived_passenger(
        seed, ids[0], 0, row["member_given_name"], row["member_family_name"]
    )
    others = [_derived_passenger(seed, ids[i], i, None, None) for i in range(1, len(ids))]
    return ids, f"[{','.join([member, *others])}]"


def cancellation_object(
    cancellation_id: str,
    order_id: str,
    refund_amount: str | None,
    refund_currency: str | None,
    refund_to: str | None,
    created_us: int,
    confirmed_us: int | None,
) -> Json:
    """An order cancellation, pending (``confirmed_at`` null) or confirmed."""
    return {
        "id": cancellation_id,
        "order_id": order_id,
        "live_mode": False,
        "refund_amount": refund_amount,
        "refund_currency": refund_currency,
        "refund_to": refund_to,
        "expires_at": utc_text_seconds(created_us + HOUR_US),
        "created_at": utc_text(created_us),
        "confirmed_at": utc_text(confirmed_us) if confirmed_us is not None else None,
        "airline_credits": [],
    }


def refund_terms(row: Mapping[str, Any]) -> tuple[str, str]:
    """(refund_amount, refund_to) for cancelling the order now: all back if paid, else nothing."""
    if row["paid_at"] is None:
        return "0.00", "awaiting_payment"
    return row["total_amount"], "balance"


def awaiting_payment(row: Mapping[str, Any]) -> bool:
    """A hold order nobody has paid for, and which is still alive."""
    return row["order_type"] == "hold" and row["paid_at"] is None and row["cancelled_at"] is None


def _metadata_json(row: Mapping[str, Any]) -> str:
    if EXTRA_METADATA in row:
        return ascii_json(row[EXTRA_METADATA] or None)
    pairs = [
        f'"{key}":{_q(str(row[key]))}'
        for key in ("tenant_id", "member_id", "booking_id", "loyalty_transaction_id")
        if row[key] is not None
    ]
    return f"{{{','.join(pairs)}}}" if pairs else "null"


def _string(value: str | None) -> str:
    return "null" if value is None else _q(value)


def _time(us: int | None, text: Callable[[int], str]) -> str:
    return "null" if us is None else f'"{text(us)}"'


def _cancellation_json(row: Mapping[str, Any], seed: str) -> str:
    """``cancellation_object`` of a cancelled order, as a template (a third of the history)."""
    refund = row["refund_amount"]
    cancelled_at = row["cancelled_at"]
    quoted = row.get(CANCELLATION_CREATED_AT) or cancelled_at - MINUTE_US
    currency = _q(row["total_currency"]) if refund is not None else "null"
    return (
        f'{{"id":{_q(row["cancellation_id"] or child_id("ore", seed, 0, 0))},'
        f'"order_id":{_q(row["order_id"])},"live_mode":false,"refund_amount":{_string(refund)},'
        f'"refund_currency":{currency},"refund_to":{_string(row["refund_to"])},'
        f'"expires_at":"{utc_text_seconds(quoted + HOUR_US)}","created_at":"{utc_text(quoted)}",'
        f'"confirmed_at":"{utc_text(cancelled_at)}","airline_credits":[]}}'
    )


def order_json(row: Mapping[str, Any]) -> str:
    """The Duffel order object for one wire row, as compact (ASCII) JSON text."""
    seed = id_seed(row["order_id"])
    currency = _string(row["total_currency"])
    cabin = row["cabin_class"]
    created = row["created_at"]
    owner = row["owner_iata"]
    passenger_ids, passengers = _passengers(row, seed)
    waiting = awaiting_payment(row)
    required_by = _time(row["payment_required_by"], utc_text_seconds)
    documents = ""
    if row["paid_at"] is not None:
        ticket = _block(seed, 40, 8)
        documents = ",".join(
            f'{{"type":"electronic_ticket","unique_identifier":"125{(ticket + i) % 10**10:010d}",'
            f'"passenger_ids":["{pid}"]}}'
            for i, pid in enumerate(passenger_ids)
        )
    if row["cancelled_at"] is not None:
        cancellation, actions = _cancellation_json(row, seed), ""
    else:
        cancellation = "null"
        actions = '"cancel","update"' if waiting else '"cancel","change","update"'
    tax = row["tax_amount"]
    slices = slices_json(
        seed,
        owner,
        row["origin"],
        row["destination"],
        row["via"],
        row["outbound_departure"],
        row["return_departure"],
        cabin,
        row["total_currency"],
        passenger_ids,
    )
    return (
        f'{{"id":{_q(row["order_id"])},"live_mode":false,"type":{_string(row["order_type"])},'
        f'"created_at":"{utc_text(created)}","synced_at":"{utc_text_seconds(created)}",'
        f'"booking_reference":{_string(row["booking_reference"])},'
        f'"total_amount":{_string(row["total_amount"])},"total_currency":{currency},'
        f'"base_amount":{_string(row["base_amount"])},"base_currency":{currency},'
        f'"tax_amount":{_string(tax)},"tax_currency":{currency if tax is not None else "null"},'
        f'"owner":{_AIRLINE_JSON[owner]},"passengers":{passengers},"slices":{slices},'
        f'"services":[],"payment_status":{{"awaiting_payment":{"true" if waiting else "false"},'
        f'"payment_required_by":{required_by},'
        f'"price_guarantee_expires_at":{required_by if waiting else "null"},'
        f'"paid_at":{_time(row["paid_at"], utc_text)}}},'
        f'"documents":[{documents}],"conditions":{_order_conditions_json(cabin, row["total_currency"])},'
        f'"metadata":{_metadata_json(row)},"cancelled_at":{_time(row["cancelled_at"], utc_text)},'
        f'"cancellation":{cancellation},"available_actions":[{actions}],'
        f'"airline_initiated_changes":[],"changes":[]}}'
    )


def order_bytes(row: Mapping[str, Any]) -> bytes:
    """The order as it goes on the wire: rendered JSON, or ``raw_override`` verbatim."""
    raw = row["raw_override"]
    if raw is not None:
        return raw.encode()
    return order_json(row).encode()
