"""Duffel orders (and the reference airlines and airports) -> landing rows.

The msgspec structs below are the one wire schema of a Duffel order: the part of it the
platform lands, anything else in the JSON skipped. ``order_page`` decodes a whole raw
``GET /air/orders`` page into them at once (validating 200 orders one by one through a
pydantic model, after decoding 1.5 MB of JSON into Python objects, costs ~100 us an order),
and ``order_rows`` is the one flattener of an order into its landing row and segment rows.

Records in canonical form (UTC "...Z" instants, naive local times, plain money text) are
flattened directly. Any other record is checked field by field (``order_problem``: its
reason names the record and the field) and, if sound, flattened the same way with lenient
readers of its instants and amounts, which give the same values in the same form.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec
import polars as pl

from clients.duffel.models import Airline, Airport
from ingestion.landing.schemas import MONEY, UTC_TS
from ingestion.landing.zone import Rejected
from ingestion.validation import (
    EPOCH,
    MICROSECOND,
    NOTHING_HELD,
    Held,
    SlowPath,
    describe_wire,
    landing_schema,
    local_to_utc,
    local_us,
    money_problem,
    money_text,
    rows_frame,
    text_or_none,
    utc_us,
    zone_problem,
)


def airline_row(airline: Airline) -> dict[str, Any]:
    return {"airline_id": airline.id, "iata_code": airline.iata_code, "name": airline.name}


def airport_row(airport: Airport) -> dict[str, Any]:
    return {
        "airport_id": airport.id,
        "iata_code": airport.iata_code,
        "icao_code": airport.icao_code,
        "name": airport.name,
        "city_name": airport.city_name or (airport.city.name if airport.city else None),
        "iata_city_code": airport.iata_city_code,
        "iata_country_code": airport.iata_country_code,
        "latitude": airport.latitude,
        "longitude": airport.longitude,
        "time_zone": airport.time_zone,
    }


ORDER_SCHEMA = landing_schema(("duffel", "orders"))


SEGMENT_SCHEMA = landing_schema(("duffel", "order_segments"))


class _Wire(msgspec.Struct, gc=False):
    """Slim wire structs: only the fields landed; anything else in the JSON is skipped.
    (Untracked by the garbage collector: they hold no cycles, and there are many.)"""


class _WPlace(_Wire):
    iata_code: str
    time_zone: str | None = None


class _WCarrier(_Wire):
    iata_code: str | None = None
    name: str | None = None


class _WSeat(_Wire):
    cabin_class: str | None = None


class _WObject(_Wire):
    """Any JSON object (an order's passengers are only counted)."""


class _WSegment(_Wire):
    origin: _WPlace
    destination: _WPlace
    departing_at: str  # airport-local, offset-less
    arriving_at: str
    id: str | None = None
    marketing_carrier: _WCarrier | None = None
    marketing_carrier_flight_number: str | None = None
    passengers: list[_WSeat] = []


class _WSlice(_Wire):
    origin: _WPlace
    destination: _WPlace
    segments: list[_WSegment]


class _WPayment(_Wire):
    awaiting_payment: bool = False
    paid_at: str | None = None
    payment_required_by: str | None = None


class _WCancellation(_Wire):
    id: str
    refund_amount: str | None = None
    refund_currency: str | None = None
    refund_to: str | None = None
    confirmed_at: str | None = None


class WireOrder(_Wire):
    """A Duffel order on the wire, as far as the platform lands it."""

    id: Annotated[str, msgspec.Meta(min_length=1)]
    created_at: str
    total_amount: str
    total_currency: Annotated[str, msgspec.Meta(min_length=3, max_length=3)]
    slices: list[_WSlice]
    type: str | None = None
    booking_reference: str | None = None
    base_amount: str | None = None
    tax_amount: str | None = None
    owner: _WCarrier | None = None
    passengers: list[_WObject] = []
    payment_status: _WPayment | None = None
    cancelled_at: str | None = None
    cancellation: _WCancellation | None = None
    metadata: dict[str, str] | None = None


class _WOrderPage(_Wire):
    data: list[WireOrder]


class _WRawPage(_Wire):
    data: list[msgspec.Raw]


class _WCreated(_Wire):
    created_at: str


class _WCreatedPage(_Wire):
    data: list[_WCreated]


# Lax: JSON text for a boolean ("true") is read as Duffel meant it; a number is never text.
_ORDER_PAGE = msgspec.json.Decoder(_WOrderPage, strict=False)


_ORDER = msgspec.json.Decoder(WireOrder, strict=False)


_RAW_PAGE = msgspec.json.Decoder(_WRawPage)
_CREATED_PAGE = msgspec.json.Decoder(_WCreatedPage)


def first_created_at(body: bytes) -> dt.datetime | None:
    """When the first order of a raw orders page was created; None when the page holds no
    order or its ``created_at`` is not a timezone-aware instant."""
    try:
        orders = _CREATED_PAGE.decode(body).data
        start = dt.datetime.fromisoformat(orders[0].created_at) if orders else None
    except (msgspec.DecodeError, msgspec.ValidationError, ValueError):
        return None
    return start if start is not None and start.tzinfo is not None else None


class _Canonical:
    """Readers of canonical text only (anything else raises ``SlowPath``): the fast path."""

    utc = staticmethod(utc_us)
    local = staticmethod(local_us)
    money = staticmethod(money_text)

    @staticmethod
    def local_text(text: str) -> str:
        return text


class _Lenient:
    """Readers of every form ``order_problem`` lets through, giving the canonical readers'
    values: instants as UTC epoch microseconds, local times as ISO text, money as exact text."""

    @staticmethod
    def utc(text: str | None) -> int | None:
        if text is None:
            return None
        return (dt.datetime.fromisoformat(text) - EPOCH) // MICROSECOND

    @staticmethod
    def local(text: str, time_zone: str | None) -> int | None:
        instant = local_to_utc(dt.datetime.fromisoformat(text), time_zone)
        return None if instant is None else (instant - EPOCH) // MICROSECOND

    @staticmethod
    def money(text: str | None) -> str | None:
        return None if text is None else format(Decimal(text), "f")

    @staticmethod
    def local_text(text: str) -> str:
        return dt.datetime.fromisoformat(text).isoformat()


_DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?")


def _instant_problem(name: str, text: str | None, aware: bool = True) -> str | None:
    if text is None:
        return None
    try:
        value = dt.datetime.fromisoformat(text)
    except ValueError:
        return f"field '{name}': {text!r} is not an ISO-8601 date and time"
    if aware and value.tzinfo is None:
        return f"field '{name}': {text!r} has no time zone offset"
    return None


def _amount_problem(name: str, text: str | None) -> str | None:
    if text is None:
        return None
    if _DECIMAL_TEXT.fullmatch(text) is None:
        return f"field '{name}': {text!r} is not a decimal number as text"
    try:
        return money_problem(name, Decimal(text))
    except InvalidOperation:
        return f"field '{name}': {text!r} is not a decimal number as text"


def order_problem(order: WireOrder, tenant_id: str) -> str | None:
    """What is wrong with a decoded order beyond the wire format, naming the field, or None
    (the first thing found): its instants must be real and timezone-aware, its amounts
    decimal text that fits Decimal(18, 2) exactly; it must have a flight segment and belong
    to the tenant that listed it, and its airports' time zones and local times be real."""
    payment = order.payment_status
    cancellation = order.cancellation
    instants = (
        ("created_at", order.created_at),
        ("cancelled_at", order.cancelled_at),
        ("payment_status.paid_at", payment.paid_at if payment else None),
        ("payment_status.payment_required_by", payment.payment_required_by if payment else None),
        ("cancellation.confirmed_at", cancellation.confirmed_at if cancellation else None),
    )
    amounts = (
        ("total_amount", order.total_amount),
        ("base_amount", order.base_amount),
        ("tax_amount", order.tax_amount),
        ("cancellation.refund_amount", cancellation.refund_amount if cancellation else None),
    )
    for name, text in instants:
        problem = _instant_problem(name, text)
        if problem:
            return problem
    for name, text in amounts:
        problem = _amount_problem(name, text)
        if problem:
            return problem
    if not order.slices or not order.slices[0].segments:
        return "field 'slices': an order without any flight segment"
    owner = (order.metadata or {}).get("tenant_id")
    if owner is not None and owner != tenant_id:
        return f"field 'metadata.tenant_id': names {owner!r}, but {tenant_id!r}'s token listed it"
    for i, journey in enumerate(order.slices):
        for j, segment in enumerate(journey.segments):
            at = f"slices.{i}.segments.{j}"
            for end in ("origin", "destination"):
                place = getattr(segment, end)
                problem = zone_problem(f"{at}.{end}.time_zone", place.time_zone)
                if problem:
                    return problem
            for name in ("departing_at", "arriving_at"):
                problem = _instant_problem(f"{at}.{name}", getattr(segment, name), aware=False)
                if problem:
                    return problem
    return None


def order_rows(
    i: int, order: WireOrder, tenant_id: str, read: type = _Canonical
) -> tuple[tuple, list[tuple]]:
    """THE flattening of a Duffel order: its landing row and segment rows, in ``ORDER_COLUMNS``
    / ``SEGMENT_COLUMNS`` order, ``i`` (its place in the page) last. The fast path reads
    canonical text only (anything else raises ``SlowPath``); ``_Lenient`` reads any order
    ``order_problem`` passed."""
    slices = order.slices
    if not slices or not slices[0].segments:
        raise SlowPath  # rejected; order_problem names the first thing wrong with it
    metadata = order.metadata or {}
    owner_tenant = metadata.get("tenant_id")
    if owner_tenant is not None and owner_tenant != tenant_id:
        raise SlowPath
    payment = order.payment_status
    cancellation = order.cancellation
    utc = read.utc
    created_at = utc(order.created_at)
    cancelled_at = utc(order.cancelled_at)
    paid_at = utc(payment.paid_at) if payment else None
    required_by = utc(payment.payment_required_by) if payment else None
    confirmed_at = utc(cancellation.confirmed_at) if cancellation else None
    version = max(m for m in (created_at, cancelled_at, paid_at, confirmed_at) if m is not None)
    segments = []
    order_id = order.id
    local, local_text = read.local, read.local_text
    for slice_index, journey in enumerate(slices):
        for segment_index, segment in enumerate(journey.segments):
            departing = local(segment.departing_at, segment.origin.time_zone)
            arriving = local(segment.arriving_at, segment.destination.time_zone)
            carrier = segment.marketing_carrier
            segments.append(
                (
                    tenant_id,
                    order_id,
                    slice_index,
                    segment_index,
                    segment.id,
                    segment.origin.iata_code,
                    segment.destination.iata_code,
                    departing,
                    arriving,
                    local_text(segment.departing_at),
                    local_text(segment.arriving_at),
                    carrier.iata_code if carrier else None,
                    segment.marketing_carrier_flight_number,
                    None
                    if departing is None or arriving is None
                    else (arriving - departing) // 60_000_000,
                    version,
                    i,
                )
            )
    first = slices[0].segments[0]
    owner = order.owner
    money = read.money
    row = (
        tenant_id,
        order_id,
        order.booking_reference,
        order.type,
        created_at,
        owner.iata_code if owner else None,
        owner.name if owner else None,
        first.passengers[0].cabin_class if first.passengers else None,
        len(order.passengers),
        len(slices),
        len(segments),
        slices[0].origin.iata_code,
        slices[0].destination.iata_code,
        segments[0][7],
        segments[0][9],
        money(order.total_amount),
        money(order.base_amount),
        money(order.tax_amount),
        order.total_currency,
        payment.awaiting_payment if payment else None,
        paid_at,
        required_by,
        cancelled_at,
        cancellation.id if cancellation else None,
        money(cancellation.refund_amount) if cancellation else None,
        cancellation.refund_currency if cancellation else None,
        cancellation.refund_to if cancellation else None,
        owner_tenant,
        metadata.get("member_id"),
        metadata.get("booking_id"),
        metadata.get("loyalty_transaction_id"),
        version,
        i,
    )
    return row, segments


@dataclass
class OrderPage:
    """One Duffel orders page, validated: landing rows and the rejected records.

    Rows are tuples in ``ORDER_COLUMNS`` / ``SEGMENT_COLUMNS`` order, instants as epoch
    microseconds and money as exact text, so that many pages can be typed at once by
    ``orders_frame`` / ``segments_frame`` (polars' fixed cost per frame is paid per batch).
    """

    orders: list[tuple]
    segments: list[tuple]
    rejected: list[Rejected]
    fetched: int
    skipped: int  # records quarantined by an earlier run (their id is in ``skip``)
    slow: int  # records outside the canonical form, landed or rejected


ORDER_COLUMNS = tuple(ORDER_SCHEMA)


SEGMENT_COLUMNS = tuple(SEGMENT_SCHEMA)


# Columns of the rows: instants as epoch microseconds, money as exact text.
_ORDER_WIRE_SCHEMA: dict[str, pl.DataType] = {
    **ORDER_SCHEMA,
    **{c: pl.Int64 for c, t in ORDER_SCHEMA.items() if t == UTC_TS},
    **{c: pl.String for c, t in ORDER_SCHEMA.items() if t == MONEY},
}


_SEGMENT_WIRE_SCHEMA: dict[str, pl.DataType] = {
    **SEGMENT_SCHEMA,
    **{c: pl.Int64 for c, t in SEGMENT_SCHEMA.items() if t == UTC_TS},
}


ORDER_KEY_AT = (ORDER_COLUMNS.index("order_id"), ORDER_COLUMNS.index("version_at"))


def order_page(body: bytes, tenant_id: str, skip: Held = NOTHING_HELD) -> OrderPage:
    """Decode and validate one raw ``GET /air/orders`` page into order and segment rows.

    Records in canonical form are flattened straight from the page; the others one by one
    (``orders_one_by_one``). A record whose exact payload quarantine already holds is skipped
    (``skip``); another version of it is validated as usual.
    """
    raw_records: list[msgspec.Raw] | None = None
    try:
        decoded: list[WireOrder | None] = list(_ORDER_PAGE.decode(body).data)
    except msgspec.ValidationError:
        # Some record does not fit the wire schema: decode the others one by one.
        raw_records = _RAW_PAGE.decode(body).data
        decoded = []
        for raw in raw_records:
            try:
                decoded.append(_ORDER.decode(raw))
            except msgspec.ValidationError:
                decoded.append(None)
    slow: list[int] = []
    rows: list[tuple] = []
    segment_rows: list[tuple] = []
    skipped = 0
    for i, order in enumerate(decoded):
        if order is None:
            slow.append(i)
            continue
        if order.id in skip.payloads:
            slow.append(i)  # the slow path compares the payload with the quarantined ones
            continue
        try:
            row, segments = order_rows(i, order, tenant_id)
        except (SlowPath, ValueError, LookupError, OverflowError, OSError):
            slow.append(i)
            continue
        rows.append(row)
        segment_rows.extend(segments)
    rejected: list[Rejected] = []
    if slow:
        if raw_records is None:
            raw_records = _RAW_PAGE.decode(body).data
        slow_orders, slow_segments, rejected, slow_skipped = orders_one_by_one(
            tenant_id, slow, raw_records, skip
        )
        skipped += slow_skipped
        if slow_orders:  # keep page order (``_idx`` is each row's last item)
            rows = sorted(rows + slow_orders, key=_last)
            segment_rows = sorted(segment_rows + slow_segments, key=_last)
    return OrderPage(rows, segment_rows, rejected, len(decoded), skipped, len(slow))


def raw_order(body: bytes, index: int) -> object:
    """The ``index``-th record of a raw orders page, as the client's generic decoding gives it."""
    return json.loads(bytes(_RAW_PAGE.decode(body).data[index]), parse_float=Decimal)


def _last(row: tuple) -> int:
    return row[-1]


def orders_frame(rows: list[tuple]) -> pl.DataFrame:
    """Order rows (from ``order_page``) typed to the landing schema, ``_idx`` included."""
    return _typed(rows_frame(ORDER_COLUMNS, rows, _ORDER_WIRE_SCHEMA), ORDER_SCHEMA)


def segments_frame(rows: list[tuple]) -> pl.DataFrame:
    """Segment rows (from ``order_page``) typed to the landing schema, ``_idx`` included."""
    return _typed(rows_frame(SEGMENT_COLUMNS, rows, _SEGMENT_WIRE_SCHEMA), SEGMENT_SCHEMA)


def _typed(wire: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Epoch microseconds -> UTC instants, exact money text -> Decimal(18, 2)."""
    return wire.select(pl.col(c).cast(t) for c, t in schema.items())


def orders_one_by_one(
    tenant_id: str, indices: list[int], raw_records: list[msgspec.Raw], skip: Held
) -> tuple[list[tuple], list[tuple], list[Rejected], int]:
    """The records the fast path left, one by one: land them or say why not."""
    rejected: list[Rejected] = []
    order_rows_: list[tuple] = []
    segment_rows: list[tuple] = []
    skipped = 0
    for i in indices:
        # Exactly what the client's generic decoding gives: numbers as Decimal, never float.
        record = json.loads(bytes(raw_records[i]), parse_float=Decimal)
        if not isinstance(record, dict):
            rejected.append(Rejected(None, "record is not a JSON object", record))
            continue
        key = record.get("id")
        if skip.holds(key, record):
            skipped += 1
            continue
        try:
            order = _ORDER.decode(raw_records[i])
        except msgspec.ValidationError as exc:
            problem: str | None = describe_wire(exc)
        else:
            problem = order_problem(order, tenant_id)
        if problem:
            rejected.append(Rejected(text_or_none(key), f"id {key!r}: {problem}", record))
            continue
        row, segments = order_rows(i, order, tenant_id, _Lenient)
        order_rows_.append(row)
        segment_rows.extend(segments)
    return order_rows_, segment_rows, rejected, skipped
