"""Raw API records -> typed landing rows, and the rejected ones with a reason that names the field.

Validation goes through the clients' pydantic models, so the landing zone holds exactly
what the platform's code accepts: Decimal money, timezone-aware instants. One bad record
never stops a batch: it is set aside with its reason and the rest go through.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Annotated, Any, TypeVar

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

from ingestion.landing import Rejected
from tenants.duffel.models import Airline, Airport
from tenants.models import LedgerTransaction, Member

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


def member_row(tenant_id: str, member: Member, snapshot_at: dt.datetime) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "member_id": member.member_id,
        "tier": member.tier,
        "status": member.status,
        "balance": member.balance,
        "currency": member.currency,
        "snapshot_at": snapshot_at,
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


def order_problem(tenant_id: str) -> Callable[[LandedOrder], str | None]:
    """Checks beyond the wire format: the order must belong to the tenant that listed it."""

    def check(order: LandedOrder) -> str | None:
        if not order.slices or not order.slices[0].segments:
            return "field 'slices': an order without any flight segment"
        owner = (order.metadata or {}).get("tenant_id")
        if owner is not None and owner != tenant_id:
            return (
                f"field 'metadata.tenant_id': names {owner!r}, but {tenant_id!r}'s token listed it"
            )
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
