"""Duffel orders (and the reference airlines and airports) -> landing rows.

``LandedOrder`` is the part of a Duffel order the platform lands; ``order_page`` decodes a
whole raw ``GET /air/orders`` page into slim msgspec structs and columns (validating 200
orders one by one through pydantic, after decoding 1.5 MB of JSON into Python objects, costs
~100 us an order), and hands any record outside the fast subset to ``LandedOrder``.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import msgspec
import polars as pl
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
)

from clients.duffel.models import Airline, Airport
from ingestion.landing.schemas import MONEY, UTC_TS
from ingestion.landing.zone import Rejected
from ingestion.validation import (
    EPOCH,
    MICROSECOND,
    NOTHING_HELD,
    DecimalText,
    Held,
    SlowPath,
    as_utc,
    landing_schema,
    local_to_utc,
    local_us,
    money_problem,
    money_text,
    rows_frame,
    text_or_none,
    utc_us,
    validate_page,
    zone_problem,
)


class _Slim(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _PlaceRef(_Slim):
    iata_code: str
    time_zone: str | None = None


class _CarrierRef(_Slim):
    iata_code: str | None = None
    name: str | None = None


class _SeatRef(_Slim):
    cabin_class: str | None = None


class _SegmentRef(_Slim):
    id: str | None = None
    origin: _PlaceRef
    destination: _PlaceRef
    departing_at: dt.datetime
    arriving_at: dt.datetime
    marketing_carrier: _CarrierRef | None = None
    marketing_carrier_flight_number: str | None = None
    passengers: list[_SeatRef] = Field(default_factory=list)


class _SliceRef(_Slim):
    origin: _PlaceRef
    destination: _PlaceRef
    segments: list[_SegmentRef]


class _PaymentRef(_Slim):
    awaiting_payment: bool = False
    paid_at: AwareDatetime | None = None
    payment_required_by: AwareDatetime | None = None


class _CancellationRef(_Slim):
    id: str
    refund_amount: DecimalText | None = None
    refund_currency: str | None = None
    refund_to: str | None = None
    confirmed_at: AwareDatetime | None = None


class LandedOrder(_Slim):
    """The part of a Duffel order the platform lands; validating only it keeps ingestion fast."""

    id: str = Field(min_length=1)
    type: str | None = None
    created_at: AwareDatetime
    booking_reference: str | None = None
    total_amount: DecimalText
    total_currency: str = Field(min_length=3, max_length=3)
    base_amount: DecimalText | None = None
    tax_amount: DecimalText | None = None
    owner: _CarrierRef | None = None
    passengers: list[dict[str, Any]] = Field(default_factory=list)
    slices: list[_SliceRef]
    payment_status: _PaymentRef | None = None
    cancelled_at: AwareDatetime | None = None
    cancellation: _CancellationRef | None = None
    metadata: dict[str, str] | None = None


def order_problem(tenant_id: str) -> Callable[[LandedOrder], str | None]:
    """Checks beyond the wire format: the order must belong to the tenant that listed it,
    its amounts must fit Decimal(18, 2) exactly and its airports' time zones must exist."""

    def check(order: LandedOrder) -> str | None:
        if not order.slices or not order.slices[0].segments:
            return "field 'slices': an order without any flight segment"
        owner = (order.metadata or {}).get("tenant_id")
        if owner is not None and owner != tenant_id:
            return (
                f"field 'metadata.tenant_id': names {owner!r}, but {tenant_id!r}'s token listed it"
            )
        cancellation = order.cancellation
        for name, value in (
            ("total_amount", order.total_amount),
            ("base_amount", order.base_amount),
            ("tax_amount", order.tax_amount),
            ("cancellation.refund_amount", cancellation.refund_amount if cancellation else None),
        ):
            problem = money_problem(name, value)
            if problem:
                return problem
        for i, journey in enumerate(order.slices):
            for j, segment in enumerate(journey.segments):
                for end in ("origin", "destination"):
                    place = getattr(segment, end)
                    problem = zone_problem(
                        f"slices.{i}.segments.{j}.{end}.time_zone", place.time_zone
                    )
                    if problem:
                        return problem
        return None

    return check


def order_version(order: LandedOrder) -> dt.datetime:
    """The latest change we can see on an order; a newer version replaces an older one."""
    moments = [order.created_at, order.cancelled_at]
    if order.payment_status is not None:
        moments.append(order.payment_status.paid_at)
    if order.cancellation is not None:
        moments.append(order.cancellation.confirmed_at)
    return max(as_utc(m) for m in moments if m is not None)


def order_rows(tenant_id: str, order: LandedOrder) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """One order row and its segment rows."""
    version = order_version(order)
    first = order.slices[0].segments[0]
    cabin = first.passengers[0].cabin_class if first.passengers else None
    metadata = order.metadata or {}
    payment = order.payment_status
    cancellation = order.cancellation
    row = {
        "tenant_id": tenant_id,
        "order_id": order.id,
        "booking_reference": order.booking_reference,
        "order_type": order.type,
        "created_at": as_utc(order.created_at),
        "owner_iata": order.owner.iata_code if order.owner else None,
        "owner_name": order.owner.name if order.owner else None,
        "cabin_class": cabin,
        "passenger_count": len(order.passengers),
        "slice_count": len(order.slices),
        "segment_count": sum(len(s.segments) for s in order.slices),
        "origin": order.slices[0].origin.iata_code,
        "destination": order.slices[0].destination.iata_code,
        "departing_at": local_to_utc(first.departing_at, first.origin.time_zone),
        "departing_at_local": first.departing_at.isoformat(),
        "total_amount": order.total_amount,
        "base_amount": order.base_amount,
        "tax_amount": order.tax_amount,
        "total_currency": order.total_currency,
        "awaiting_payment": payment.awaiting_payment if payment else None,
        "paid_at": as_utc(payment.paid_at) if payment else None,
        "payment_required_by": as_utc(payment.payment_required_by) if payment else None,
        "cancelled_at": as_utc(order.cancelled_at),
        "cancellation_id": cancellation.id if cancellation else None,
        "refund_amount": cancellation.refund_amount if cancellation else None,
        "refund_currency": cancellation.refund_currency if cancellation else None,
        "refund_to": cancellation.refund_to if cancellation else None,
        "meta_tenant_id": text_or_none(metadata.get("tenant_id")),
        "meta_member_id": text_or_none(metadata.get("member_id")),
        "meta_booking_id": text_or_none(metadata.get("booking_id")),
        "meta_loyalty_transaction_id": text_or_none(metadata.get("loyalty_transaction_id")),
        "version_at": version,
    }
    segments = []
    for slice_index, journey in enumerate(order.slices):
        for segment_index, segment in enumerate(journey.segments):
            carrier = segment.marketing_carrier
            departing = local_to_utc(segment.departing_at, segment.origin.time_zone)
            arriving = local_to_utc(segment.arriving_at, segment.destination.time_zone)
            segments.append(
                {
                    "tenant_id": tenant_id,
                    "order_id": order.id,
                    "slice_index": slice_index,
                    "segment_index": segment_index,
                    "segment_id": segment.id,
                    "origin": segment.origin.iata_code,
                    "destination": segment.destination.iata_code,
                    "departing_at": departing,
                    "arriving_at": arriving,
                    "departing_at_local": segment.departing_at.isoformat(),
                    "arriving_at_local": segment.arriving_at.isoformat(),
                    "marketing_carrier": carrier.iata_code if carrier else None,
                    "flight_number": segment.marketing_carrier_flight_number,
                    "duration_minutes": _minutes_between(departing, arriving),
                    "version_at": version,
                }
            )
    return row, segments


def _minutes_between(start: dt.datetime | None, end: dt.datetime | None) -> int | None:
    return int((end - start).total_seconds() // 60) if start and end else None


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
    departing_at: str
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


class _WOrder(_Wire):
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
    data: list[_WOrder]


class _WRawPage(_Wire):
    data: list[msgspec.Raw]


class _WCreated(_Wire):
    created_at: str


class _WCreatedPage(_Wire):
    data: list[_WCreated]


_ORDER_PAGE = msgspec.json.Decoder(_WOrderPage)


_ORDER = msgspec.json.Decoder(_WOrder)


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


# Columns of the fast rows: instants as epoch microseconds, money as exact text.
_ORDER_WIRE_COLUMNS = tuple(ORDER_SCHEMA)


_ORDER_WIRE_SCHEMA: dict[str, pl.DataType] = {
    **ORDER_SCHEMA,
    **{c: pl.Int64 for c, t in ORDER_SCHEMA.items() if t == UTC_TS},
    **{c: pl.String for c, t in ORDER_SCHEMA.items() if t == MONEY},
}


_SEGMENT_WIRE_COLUMNS = tuple(SEGMENT_SCHEMA)


_SEGMENT_WIRE_SCHEMA: dict[str, pl.DataType] = {
    **SEGMENT_SCHEMA,
    **{c: pl.Int64 for c, t in SEGMENT_SCHEMA.items() if t == UTC_TS},
}


def _order_wire_rows(i: int, order: _WOrder, tenant_id: str) -> tuple[tuple, list[tuple]]:
    """One fast order row and its segment rows, in landing column order."""
    slices = order.slices
    if not slices or not slices[0].segments:
        raise SlowPath  # rejected; the model names the first thing wrong with it
    metadata = order.metadata or {}
    owner_tenant = metadata.get("tenant_id")
    if owner_tenant is not None and owner_tenant != tenant_id:
        raise SlowPath
    payment = order.payment_status
    cancellation = order.cancellation
    created_at = utc_us(order.created_at)
    cancelled_at = utc_us(order.cancelled_at)
    paid_at = utc_us(payment.paid_at) if payment else None
    required_by = utc_us(payment.payment_required_by) if payment else None
    confirmed_at = utc_us(cancellation.confirmed_at) if cancellation else None
    version = max(m for m in (created_at, cancelled_at, paid_at, confirmed_at) if m is not None)
    segments = []
    order_id = order.id
    for slice_index, journey in enumerate(slices):
        for segment_index, segment in enumerate(journey.segments):
            departing = local_us(segment.departing_at, segment.origin.time_zone)
            arriving = local_us(segment.arriving_at, segment.destination.time_zone)
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
                    segment.departing_at,
                    segment.arriving_at,
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
        first.departing_at,
        money_text(order.total_amount),
        money_text(order.base_amount),
        money_text(order.tax_amount),
        order.total_currency,
        payment.awaiting_payment if payment else None,
        paid_at,
        required_by,
        cancelled_at,
        cancellation.id if cancellation else None,
        money_text(cancellation.refund_amount) if cancellation else None,
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
    slow: int  # records that took the slow path (pydantic), landed or rejected


ORDER_COLUMNS = _ORDER_WIRE_COLUMNS


SEGMENT_COLUMNS = _SEGMENT_WIRE_COLUMNS


ORDER_KEY_AT = (ORDER_COLUMNS.index("order_id"), ORDER_COLUMNS.index("version_at"))


def order_page(body: bytes, tenant_id: str, skip: Held = NOTHING_HELD) -> OrderPage:
    """Decode and validate one raw ``GET /air/orders`` page into order and segment rows.

    Same outcome as ``validate_page(LandedOrder, ...)`` + ``order_problem`` + ``order_rows``
    on every record, at a fraction of the cost. A record whose exact payload quarantine
    already holds is skipped (``skip``); another version of it is validated as usual.
    """
    raw_records: list[msgspec.Raw] | None = None
    try:
        decoded: list[_WOrder | None] = list(_ORDER_PAGE.decode(body).data)
    except msgspec.ValidationError:
        # Some record is outside the fast subset: decode the others one by one.
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
            row, segments = _order_wire_rows(i, order, tenant_id)
        except (SlowPath, ValueError, LookupError, OverflowError, OSError):
            slow.append(i)
            continue
        rows.append(row)
        segment_rows.extend(segments)
    rejected: list[Rejected] = []
    if slow:
        if raw_records is None:
            raw_records = _RAW_PAGE.decode(body).data
        slow_orders, slow_segments, rejected, slow_skipped = _slow_orders(
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
    return _typed(rows_frame(_ORDER_WIRE_COLUMNS, rows, _ORDER_WIRE_SCHEMA), ORDER_SCHEMA)


def segments_frame(rows: list[tuple]) -> pl.DataFrame:
    """Segment rows (from ``order_page``) typed to the landing schema, ``_idx`` included."""
    return _typed(rows_frame(_SEGMENT_WIRE_COLUMNS, rows, _SEGMENT_WIRE_SCHEMA), SEGMENT_SCHEMA)


def _typed(wire: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Epoch microseconds -> UTC instants, exact money text -> Decimal(18, 2)."""
    return wire.select(pl.col(c).cast(t) for c, t in schema.items())


def _wire_value(value: Any) -> Any:
    """A slow-path row value in the fast rows' form (the same value, differently spelled)."""
    if isinstance(value, dt.datetime):
        return (value - EPOCH) // MICROSECOND
    if isinstance(value, Decimal):
        return format(value, "f")
    return value


def _slow_orders(
    tenant_id: str, indices: list[int], raw_records: list[msgspec.Raw], skip: Held
) -> tuple[list[tuple], list[tuple], list[Rejected], int]:
    """The pydantic path for the records the fast path left: land them or say why not."""
    rejected: list[Rejected] = []
    order_rows_: list[tuple] = []
    segment_rows: list[tuple] = []
    skipped = 0
    check = order_problem(tenant_id)
    for i in indices:
        # Exactly what the client's generic decoding gives: numbers as Decimal, never float.
        record = json.loads(bytes(raw_records[i]), parse_float=Decimal)
        if isinstance(record, dict) and skip.holds(record.get("id"), record):
            skipped += 1
            continue
        one = validate_page(LandedOrder, [record], "id", check)
        rejected.extend(one.rejected)
        for order, _raw in one.good:
            row, segments = order_rows(tenant_id, order)
            row["_idx"] = i
            order_rows_.append(tuple(_wire_value(row[c]) for c in _ORDER_WIRE_COLUMNS))
            for segment in segments:
                segment["_idx"] = i
                segment_rows.append(tuple(_wire_value(segment[c]) for c in _SEGMENT_WIRE_COLUMNS))
    return order_rows_, segment_rows, rejected, skipped
