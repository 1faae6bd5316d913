"""Raw API records -> typed landing rows, and the rejected ones with a reason that names the field.

Validation goes through the clients' pydantic models, so the landing zone holds exactly
what the platform's code accepts: Decimal money, timezone-aware instants. One bad record
never stops a batch: it is set aside with its reason and the rest go through.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, ClassVar, Protocol, TypeVar

import msgspec
import polars as pl
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
)

from clients.duffel.models import Airline, Airport
from clients.loyalty.models import LedgerTransaction, LedgerType, Member
from ingestion.landing.schemas import ENTITIES
from ingestion.landing.zone import Rejected

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """``field 'amount': Input should be a valid decimal`` (every failing field, joined)."""
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(record)"
        parts.append(f"field '{where}': {item['msg']}")
    return "; ".join(parts)


@dataclass
class Sorted:
    """A page split into the records that validated and the ones that did not."""

    good: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)  # (model, raw)
    rejected: list[Rejected] = field(default_factory=list)


def validate_page(
    model: type[M],
    records: Iterable[dict[str, Any]],
    key: str,
    extra_check: Callable[[M], str | None] | None = None,
) -> Sorted:
    """Validate records one by one so each failure is attributed to its own record."""
    result = Sorted()
    adapter = _adapter(model)
    for raw in records:
        record_key = raw.get(key) if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            result.rejected.append(Rejected(None, "record is not a JSON object", raw))
            continue
        try:
            parsed = adapter.validate_python(raw)
        except ValidationError as exc:
            result.rejected.append(
                Rejected(_text(record_key), f"{key} {record_key!r}: {describe(exc)}", raw)
            )
            continue
        problem = extra_check(parsed) if extra_check else None
        if problem:
            result.rejected.append(
                Rejected(_text(record_key), f"{key} {record_key!r}: {problem}", raw)
            )
            continue
        result.good.append((parsed, raw))
    return result


@cache
def _adapter(model: type[M]) -> TypeAdapter[M]:
    return TypeAdapter(model)


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC)


def ledger_row(tenant_id: str, txn: LedgerTransaction) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "transaction_id": txn.transaction_id,
        "member_id": txn.member_id,
        "type": txn.type,
        "amount": txn.amount,
        "currency": txn.currency,
        "status": txn.status,
        "reference_id": txn.reference_id,
        "related_transaction_id": txn.related_transaction_id,
        "approval_id": txn.approval_id,
        "description": txn.description,
        "created_at": _utc(txn.created_at),
        "updated_at": _utc(txn.updated_at),
    }


def member_row(
    tenant_id: str, member: Member, snapshot_at: dt.datetime, source: str = "member_list"
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "member_id": member.member_id,
        "tier": member.tier,
        "status": member.status,
        "balance": member.balance,
        "currency": member.currency,
        "snapshot_at": snapshot_at,
        "source": source,
    }


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_to_utc(local: dt.datetime, time_zone: str | None) -> dt.datetime | None:
    """Duffel's airport-local, offset-less times to UTC, using the airport's time zone."""
    if local.tzinfo is not None:
        return local.astimezone(dt.UTC)
    if not time_zone:
        return None
    return local.replace(tzinfo=_zone(time_zone)).astimezone(dt.UTC)


# Duffel sends money as decimal strings; a number there is malformed, never read through float.
DecimalText = Annotated[
    str, StringConstraints(pattern=r"^-?[0-9]+(\.[0-9]+)?$"), AfterValidator(Decimal)
]


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


CENT = Decimal("0.01")
# The landing zone keeps money as Decimal(18, 2): 16 digits before the point, 2 after.
MONEY_LIMIT = Decimal(10) ** 16
MONEY_PLACES = 2


def money_problem(
    name: str, value: Decimal | int | None, places: int = MONEY_PLACES, unit: str | None = None
) -> str | None:
    """Why an amount cannot be landed exactly (as Decimal(18, 2), in a currency with ``places``
    decimal places), or None when it can. Money is never rounded on the way in."""
    if value is None:
        return None
    value = Decimal(value)
    if not value.is_finite() or abs(value) >= MONEY_LIMIT:
        return f"field '{name}': {value} is outside the range of Decimal(18, 2)"
    allowed = f"; {unit} allow {places}" if unit else ""
    if value != value.quantize(CENT):
        return (
            f"field '{name}': {value} has more than 2 decimal places{allowed} "
            "(money is never rounded on the way in)"
        )
    if places < MONEY_PLACES and value != value.quantize(Decimal(1).scaleb(-places)):
        what = unit or "the currency"
        return f"field '{name}': {value} is finer than {what} allow ({places} decimal places)"
    return None


def _zone_problem(name: str, time_zone: str | None) -> str | None:
    if time_zone is None:
        return None
    try:
        _zone(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"field '{name}': unknown time zone {time_zone!r}"
    return None


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
                    problem = _zone_problem(
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
    return max(_utc(m) for m in moments if m is not None)


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
        "created_at": _utc(order.created_at),
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
        "paid_at": _utc(payment.paid_at) if payment else None,
        "payment_required_by": _utc(payment.payment_required_by) if payment else None,
        "cancelled_at": _utc(order.cancelled_at),
        "cancellation_id": cancellation.id if cancellation else None,
        "refund_amount": cancellation.refund_amount if cancellation else None,
        "refund_currency": cancellation.refund_currency if cancellation else None,
        "refund_to": cancellation.refund_to if cancellation else None,
        "meta_tenant_id": _text(metadata.get("tenant_id")),
        "meta_member_id": _text(metadata.get("member_id")),
        "meta_booking_id": _text(metadata.get("booking_id")),
        "meta_loyalty_transaction_id": _text(metadata.get("loyalty_transaction_id")),
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


# --------------------------------------------------------------------------------------
# Fast paths: whole pages, columnar.
#
# The pydantic models above define what is valid. Validating 200 Duffel orders one by one
# through them (after decoding 1.5 MB of JSON into Python objects) costs ~100 us an order,
# so pages are instead decoded straight into slim msgspec structs (unknown fields are skipped
# without being built) and turned into columns; timestamps and money are parsed vectorised by
# polars. The fast path accepts only a strict subset of what the models accept, in canonical
# form (UTC "...Z" instants, naive "YYYY-MM-DDTHH:MM:SS" local times, money as plain decimal
# text with at most 2 places), and computes exactly the values ``order_rows`` / ``ledger_row``
# would. Any record outside that subset -- malformed, or merely unusual -- takes the slow path:
# the pydantic model on that raw record, which lands it or quarantines it with its reason.
# --------------------------------------------------------------------------------------

# Canonical UTC instant: what both the fast path and the pydantic model read identically.
_UTC_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z"
_UTC_RE = re.compile(_UTC_TEXT)
_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"
# Plain decimal text that fits Decimal(18, 2) exactly.
_MONEY_TEXT = r"-?[0-9]{1,16}(\.[0-9]{1,2})?"
_MONEY_RE = re.compile(_MONEY_TEXT)
_UTC_TS = pl.Datetime("us", "UTC")
_MONEY = pl.Decimal(18, 2)
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_US = dt.timedelta(microseconds=1)
_LINEAGE_COLUMNS = ("_loaded_at", "_batch_id")


def _landing_schema(entity: tuple[str, str]) -> dict[str, pl.DataType]:
    """An entity's landing columns (without the lineage ones), plus ``_idx``: the record's
    position in its page, which keeps rows in page order and ties segments to their order."""
    schema = {k: v for k, v in ENTITIES[entity].items() if k not in _LINEAGE_COLUMNS}
    return {**schema, "_idx": pl.Int32}


ORDER_SCHEMA = _landing_schema(("duffel", "orders"))
SEGMENT_SCHEMA = _landing_schema(("duffel", "order_segments"))
LEDGER_SCHEMA = _landing_schema(("loyalty", "ledger_transactions"))


class Held(Protocol):
    """What quarantine already holds: an identical re-delivery is not quarantined again."""

    payloads: dict[str, set[str]]

    def holds(self, record_key: object, raw: object) -> bool: ...


class _Nothing:
    payloads: ClassVar[dict[str, set[str]]] = {}

    def holds(self, record_key: object, raw: object) -> bool:
        return False


NOTHING_HELD: Held = _Nothing()


class _SlowPath(Exception):
    """This record is outside the fast path's subset: validate it with the pydantic model."""


def _utc_us(text: str | None) -> int | None:
    """Microseconds since the epoch of a canonical UTC instant (``...Z``); else slow path."""
    if text is None:
        return None
    if _UTC_RE.fullmatch(text) is None:
        raise _SlowPath
    return (dt.datetime.fromisoformat(text) - _EPOCH) // _US  # ValueError: not a real date


def _money_text(text: str | None) -> str | None:
    """Plain decimal text that fits Decimal(18, 2); anything else (the model decides) is slow."""
    if text is not None and _MONEY_RE.fullmatch(text) is None:
        raise _SlowPath
    return text


_LOCAL_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")
_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def _local_us(text: str, time_zone: str | None) -> int | None:
    """Epoch microseconds (UTC) of an airport-local ``YYYY-MM-DDTHH:MM:SS`` in ``time_zone``,
    exactly as ``local_to_utc`` computes it (``fold=0``: the earlier of two readings of an
    ambiguous wall time); None without a time zone; any other form is slow path."""
    if _LOCAL_TEXT.fullmatch(text) is None:
        raise _SlowPath
    local = dt.datetime.fromisoformat(text)  # ValueError: not a real date or time
    if time_zone is None:
        return None
    return (local - _NAIVE_EPOCH) // _US - _zone(time_zone).utcoffset(local) // _US


def _utc_column(name: str) -> tuple[pl.Expr, pl.Expr]:
    """Vectorised ``_utc_us``: (parsed instant, ok) for a column of optional UTC instant text."""
    text = pl.col(name)
    parsed = text.str.strptime(_UTC_TS, _UTC_FORMAT, strict=False)
    ok = text.is_null() | (text.str.contains(f"^{_UTC_TEXT}$") & parsed.is_not_null())
    return parsed, ok


def _money_column(name: str, places: int = 2) -> tuple[pl.Expr, pl.Expr]:
    """Vectorised ``_money_text``: (Decimal(18, 2), ok) for a column of optional money text
    with at most ``places`` decimals (anything else goes to the model, which says why)."""
    text = pl.col(name)
    pattern = _money_pattern(places)
    return text.cast(_MONEY, strict=False), text.is_null() | text.str.contains(f"^{pattern}$")


def _frame(
    columns: Sequence[str], rows: list[tuple], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """A frame from row tuples, transposed in C (``zip``) rather than built row by row."""
    if not rows:
        return pl.DataFrame(schema={c: schema[c] for c in columns})
    return pl.DataFrame(
        {name: list(values) for name, values in zip(columns, zip(*rows, strict=True), strict=True)},
        schema={c: schema[c] for c in columns},
    )


def _slow_frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


# ---- Duffel orders -------------------------------------------------------------------


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


_ORDER_PAGE = msgspec.json.Decoder(_WOrderPage)
_ORDER = msgspec.json.Decoder(_WOrder)
_RAW_PAGE = msgspec.json.Decoder(_WRawPage)

# Columns of the fast rows: instants as epoch microseconds, money as exact text.
_ORDER_WIRE_COLUMNS = tuple(ORDER_SCHEMA)
_ORDER_WIRE_SCHEMA: dict[str, pl.DataType] = {
    **ORDER_SCHEMA,
    **{c: pl.Int64 for c, t in ORDER_SCHEMA.items() if t == _UTC_TS},
    **{c: pl.String for c, t in ORDER_SCHEMA.items() if t == _MONEY},
}
_SEGMENT_WIRE_COLUMNS = tuple(SEGMENT_SCHEMA)
_SEGMENT_WIRE_SCHEMA: dict[str, pl.DataType] = {
    **SEGMENT_SCHEMA,
    **{c: pl.Int64 for c, t in SEGMENT_SCHEMA.items() if t == _UTC_TS},
}


def _order_wire_rows(i: int, order: _WOrder, tenant_id: str) -> tuple[tuple, list[tuple]]:
    """One fast order row and its segment rows, in landing column order."""
    slices = order.slices
    if not slices or not slices[0].segments:
        raise _SlowPath  # rejected; the model names the first thing wrong with it
    metadata = order.metadata or {}
    owner_tenant = metadata.get("tenant_id")
    if owner_tenant is not None and owner_tenant != tenant_id:
        raise _SlowPath
    payment = order.payment_status
    cancellation = order.cancellation
    created_at = _utc_us(order.created_at)
    cancelled_at = _utc_us(order.cancelled_at)
    paid_at = _utc_us(payment.paid_at) if payment else None
    required_by = _utc_us(payment.payment_required_by) if payment else None
    confirmed_at = _utc_us(cancellation.confirmed_at) if cancellation else None
    version = max(m for m in (created_at, cancelled_at, paid_at, confirmed_at) if m is not None)
    segments = []
    order_id = order.id
    for slice_index, journey in enumerate(slices):
        for segment_index, segment in enumerate(journey.segments):
            departing = _local_us(segment.departing_at, segment.origin.time_zone)
            arriving = _local_us(segment.arriving_at, segment.destination.time_zone)
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
        _money_text(order.total_amount),
        _money_text(order.base_amount),
        _money_text(order.tax_amount),
        order.total_currency,
        payment.awaiting_payment if payment else None,
        paid_at,
        required_by,
        cancelled_at,
        cancellation.id if cancellation else None,
        _money_text(cancellation.refund_amount) if cancellation else None,
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
ORDER_KEY = (ORDER_COLUMNS.index("order_id"), ORDER_COLUMNS.index("version_at"))
SEGMENT_KEY = (SEGMENT_COLUMNS.index("order_id"), SEGMENT_COLUMNS.index("version_at"))


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
        except (_SlowPath, ValueError, LookupError, OverflowError, OSError):
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
    return _typed(_frame(_ORDER_WIRE_COLUMNS, rows, _ORDER_WIRE_SCHEMA), ORDER_SCHEMA)


def segments_frame(rows: list[tuple]) -> pl.DataFrame:
    """Segment rows (from ``order_page``) typed to the landing schema, ``_idx`` included."""
    return _typed(_frame(_SEGMENT_WIRE_COLUMNS, rows, _SEGMENT_WIRE_SCHEMA), SEGMENT_SCHEMA)


def _typed(wire: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """Epoch microseconds -> UTC instants, exact money text -> Decimal(18, 2)."""
    return wire.select(pl.col(c).cast(t) for c, t in schema.items())


def _wire_value(value: Any) -> Any:
    """A slow-path row value in the fast rows' form (the same value, differently spelled)."""
    if isinstance(value, dt.datetime):
        return (value - _EPOCH) // _US
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


def _hashable(value: object) -> object:
    return value if isinstance(value, str | int | float | type(None)) else None


# ---- Loyalty ledger ------------------------------------------------------------------

_LEDGER_TYPES = frozenset(LedgerType.__args__)  # type: ignore[attr-defined]
_STR = frozenset({str})
_OPTIONAL_STR = frozenset({str, type(None)})
_AMOUNT = frozenset({int, Decimal})
# Field -> the Python types (as the client's JSON decoding yields them) the fast path takes.
_LEDGER_FIELDS: dict[str, frozenset[type]] = {
    "transaction_id": _STR,
    "member_id": _STR,
    "type": _STR,
    "amount": _AMOUNT,
    "currency": _STR,
    "status": _STR,
    "reference_id": _OPTIONAL_STR,
    "related_transaction_id": _OPTIONAL_STR,
    "approval_id": _OPTIONAL_STR,
    "description": _OPTIONAL_STR,
    "created_at": _STR,
    "updated_at": _STR,
}


@dataclass
class LedgerPage:
    """One ledger feed page, validated: landing rows (with ``_idx``, a position in ``raw``)
    and the rejected records."""

    rows: pl.DataFrame
    rejected: list[Rejected]
    skipped: int
    slow: int
    raw: list[Any] = field(default_factory=list)


def _money_pattern(places: int) -> str:
    """Plain decimal text that fits Decimal(18, 2) with at most ``places`` decimals."""
    places = min(places, MONEY_PLACES)
    return r"-?[0-9]{1,16}" + (rf"(\.[0-9]{{1,{places}}})?" if places else "")


def ledger_problem(
    tenant_id: str, currency: str, places: int = MONEY_PLACES
) -> Callable[[LedgerTransaction], str | None]:
    """Checks beyond the wire format: the tenant's own currency, and an exact amount in it."""

    def check(txn: LedgerTransaction) -> str | None:
        if txn.currency != currency:
            return f"field 'currency': {txn.currency!r} is not {tenant_id}'s currency {currency!r}"
        return money_problem("amount", txn.amount, places, currency)

    return check


def member_problem(
    tenant_id: str, currency: str, places: int = MONEY_PLACES
) -> Callable[[Member], str | None]:
    """A member's balance must land exactly, in the tenant's currency."""

    def check(member: Member) -> str | None:
        if member.currency != currency:
            return (
                f"field 'currency': {member.currency!r} is not {tenant_id}'s currency {currency!r}"
            )
        return money_problem("balance", member.balance, places, currency)

    return check


def ledger_page(
    records: list[Any],
    tenant_id: str,
    currency: str,
    skip: Held = NOTHING_HELD,
    places: int = MONEY_PLACES,
) -> LedgerPage:
    """Validate one ledger feed page (records as the client decoded them) into typed rows.

    Same outcome as ``validate_page(LedgerTransaction, ...)`` + ``ledger_problem`` +
    ``ledger_row`` on every record; column by column instead of record by record. A record
    whose exact payload quarantine already holds is skipped (``skip``).
    """
    skipped = 0
    if skip.payloads:
        kept = [
            r
            for r in records
            if not (
                isinstance(r, dict)
                and _hashable(r.get("transaction_id")) in skip.payloads
                and skip.holds(r.get("transaction_id"), r)
            )
        ]
        skipped = len(records) - len(kept)
        records = kept
    slow: set[int] = set()
    if any(type(r) is not dict for r in records):
        slow.update(i for i, r in enumerate(records) if type(r) is not dict)
    fast = [r if i not in slow else {} for i, r in enumerate(records)] if slow else records
    columns: dict[str, list[Any]] = {}
    for name, allowed in _LEDGER_FIELDS.items():
        values = [r.get(name) for r in fast]
        if not set(map(type, values)) <= allowed:
            bad = [i for i, v in enumerate(values) if type(v) not in allowed]
            slow.update(bad)
            for i in bad:
                values[i] = None
        columns[name] = values
    types = columns["type"]
    if not set(types) <= _LEDGER_TYPES | {None}:
        slow.update(i for i, v in enumerate(types) if v not in _LEDGER_TYPES)
    # Money as its exact text (ints and Decimals alike); never through float.
    columns["amount"] = [None if a is None else str(a) for a in columns["amount"]]
    columns["_idx"] = list(range(len(fast)))
    wire = pl.DataFrame(
        columns,
        schema={**{name: pl.String for name in _LEDGER_FIELDS}, "_idx": pl.Int32},
    )
    created, created_ok = _utc_column("created_at")
    updated, updated_ok = _utc_column("updated_at")
    amount, amount_ok = _money_column("amount", places)
    typed = wire.filter(
        ~pl.col("_idx").is_in(sorted(slow)),
        created_ok,
        updated_ok,
        amount_ok,
        pl.col("amount").is_not_null(),
        pl.col("transaction_id").str.len_bytes() > 0,
        pl.col("member_id").str.len_bytes() > 0,
        pl.col("currency") == currency,
    ).with_columns(
        pl.lit(tenant_id, dtype=pl.String).alias("tenant_id"),
        created_at=created,
        updated_at=updated,
        amount=amount,
    )
    rows = typed.select(pl.col(c).cast(t) for c, t in LEDGER_SCHEMA.items())
    if rows.height + len(slow) < len(fast):
        kept_idx = set(rows["_idx"].to_list())
        slow.update(i for i in range(len(fast)) if i not in kept_idx)
    rejected: list[Rejected] = []
    if slow:
        order = sorted(slow)
        checked = validate_page(
            LedgerTransaction,
            [records[i] for i in order],
            "transaction_id",
            ledger_problem(tenant_id, currency, places),
        )
        rejected = checked.rejected
        # validate_page keeps input order; map the good ones back to their positions.
        good_ids = {id(raw): txn for txn, raw in checked.good}
        slow_rows = [
            {**ledger_row(tenant_id, good_ids[id(records[i])]), "_idx": i}
            for i in order
            if id(records[i]) in good_ids
        ]
        rows = pl.concat([rows, _slow_frame(slow_rows, LEDGER_SCHEMA)]).sort("_idx")
    return LedgerPage(rows, rejected, skipped, len(slow), records)
