"""What the API answers: bookings, flights and events rendered from the store's rows.

Money is rendered as exact decimal strings ("41235", "412.35"), never as floats.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

from booking.domain import Status
from booking.store.tables import BookingRow, EventRow, FlightSearchRow
from clients.duffel.models import Offer, Segment
from tenants.pricing import from_minor

# Cashback is credited to the cent of the loyalty unit (half-even), whatever its decimals.
CASHBACK_DECIMALS = 2


def iso(moment: dt.datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(dt.UTC).isoformat().replace("+00:00", "Z")


def money(amount: Decimal | None) -> str | None:
    return None if amount is None else format(amount, "f")


def iso_duration(delta: dt.timedelta | None) -> str | None:
    if delta is None:
        return None
    minutes = int(delta.total_seconds() // 60)
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    text = "P" + (f"{days}D" if days else "") + "T"
    return text + f"{hours}H{minutes:02d}M"


def _point(segment: Segment, side: str) -> dict[str, Any]:
    place = segment.origin if side == "departure" else segment.destination
    at = segment.departing_at if side == "departure" else segment.arriving_at
    terminal = segment.origin_terminal if side == "departure" else segment.destination_terminal
    return {"airport": place.iata_code, "time": at.isoformat(), "terminal": terminal}


def offer_cabin(offer: Offer) -> str:
    """The cabin of an offer (its first segment's, as Duffel reports it per passenger)."""
    for item in offer.slices:
        for segment in item.segments:
            for passenger in segment.passengers:
                if passenger.cabin_class:
                    return passenger.cabin_class
    return "economy"


def flight_view(
    offer: Offer,
    *,
    loyalty_amount: Decimal,
    loyalty_currency: str,
    usd: Decimal,
) -> dict[str, Any]:
    """A Duffel offer as the API's flight: first departure, last arrival, fare and its price."""
    outbound = offer.slices[0]
    first, last = outbound.segments[0], outbound.segments[-1]
    carrier = first.marketing_carrier or offer.owner
    code = carrier.iata_code if carrier else None
    return {
        "id": offer.id,
        "airline": {"code": code, "name": carrier.name if carrier else None},
        "flight_number": f"{code or ''}{first.marketing_carrier_flight_number or ''}" or None,
        "departure": _point(first, "departure"),
        "arrival": _point(last, "arrival"),
        "duration": iso_duration(outbound.duration),
        "stops": len(outbound.segments) - 1,
        "return": _return_view(offer),
        "price": {
            "amount": money(offer.total_amount),
            "currency": offer.total_currency,
            "usd_equivalent": money(usd),
            "loyalty_amount": money(loyalty_amount),
            "loyalty_currency": loyalty_currency,
        },
        # Duffel does not publish seat counts per offer.
        "available_seats": None,
        "cabin_class": offer_cabin(offer),
        "expires_at": iso(offer.expires_at),
    }


def _return_view(offer: Offer) -> dict[str, Any] | None:
    if len(offer.slices) < 2:
        return None
    back = offer.slices[1]
    return {
        "departure": _point(back.segments[0], "departure"),
        "arrival": _point(back.segments[-1], "arrival"),
        "duration": iso_duration(back.duration),
    }


def loyalty_amount(row: BookingRow) -> Decimal:
    return from_minor(row.loyalty_minor, row.loyalty_decimals)


def _payment(row: BookingRow) -> dict[str, Any]:
    cashback = (
        from_minor(row.cashback_minor, CASHBACK_DECIMALS)
        if row.cashback_minor is not None
        else None
    )
    return {
        "method": "loyalty_points",
        "loyalty_amount": money(loyalty_amount(row)),
        "loyalty_currency": row.loyalty_currency,
        "usd_equivalent": money(from_minor(row.usd_cents, 2)),
        "usd_per_unit": row.usd_per_unit,
        "cashback": money(cashback),
        "loyalty_transaction_id": row.loyalty_transaction_id,
    }


def refund_view(row: BookingRow) -> dict[str, Any]:
    """What the member gets back: completed only when the tenant confirmed the refund."""
    charged = row.loyalty_transaction_id is not None
    if row.refunded_at is not None:
        status = "completed"
        amount = from_minor(row.refund_minor or 0, row.loyalty_decimals)
    elif row.status == Status.REFUND_PENDING.value:
        status, amount = "pending", loyalty_amount(row)
    elif not charged:
        status, amount = "not_applicable", Decimal(0)
    elif row.cancel_requested and not row.refund_requested:
        status, amount = "not_requested", Decimal(0)
    else:
        status, amount = "pending", loyalty_amount(row)
    amount = amount.quantize(Decimal(1).scaleb(-row.loyalty_decimals))
    return {
        "status": status,
        "loyalty_amount": money(amount),
        "loyalty_currency": row.loyalty_currency,
        "fee": money(Decimal(0).quantize(Decimal(1).scaleb(-row.loyalty_decimals))),
        "net_refund": money(amount),
        "processed_at": iso(row.refunded_at),
        "refund_transaction_id": row.refund_transaction_id,
    }


def _tickets(row: BookingRow) -> list[dict[str, Any]]:
    tickets = {t["passenger_index"]: t.get("ticket_number") for t in row.tickets or []}
    return [
        {
            "name": f"{p.get('first_name', '')} {p.get('last_name', '')}".strip(),
            "type": p.get("type"),
            "ticket_number": tickets.get(index),
        }
        for index, p in enumerate(row.passengers)
    ]


def booking_view(row: BookingRow, history: list[EventRow] | None = None) -> dict[str, Any]:
    """A booking as the member (or an operator) sees it."""
    body: dict[str, Any] = {
        "booking_id": row.id,
        "status": row.status,
        "tenant_id": row.tenant_id,
        "member_id": row.member_id,
        "flight": row.flight,
        "passengers": _tickets(row),
        "payment": _payment(row),
        "booking_reference": row.booking_reference,
        "duffel_order_id": row.duffel_order_id,
        "created_at": iso(row.created_at),
        "updated_at": iso(row.updated_at),
        "expires_at": iso(row.offer_expires_at),
    }
    if row.status == Status.PENDING_APPROVAL.value or row.approval_id:
        body["approval_required"] = True
        body["approval_id"] = row.approval_id
        body["approval_reason"] = row.approval_reason
        body["estimated_approval_time"] = row.estimated_approval_time
    if row.failure_code:
        body["failure"] = {"code": row.failure_code, "reason": row.failure_reason}
    if (
        row.cancel_requested
        or row.refund_transaction_id
        or row.status
        in (
            Status.REFUND_PENDING.value,
            Status.CANCELLED.value,
        )
    ):
        body["refund"] = refund_view(row)
    if history is not None:
        body["seats"] = []
        body["status_history"] = [
            {
                "status": e.to_state,
                "from_status": e.from_state,
                "at": iso(e.occurred_at),
                "detail": e.detail,
            }
            for e in history
        ]
    return body


def booking_summary(row: BookingRow) -> dict[str, Any]:
    return {
        "booking_id": row.id,
        "status": row.status,
        "flight_number": row.flight_number,
        "departure_date": row.departure_date,
        "route": row.route,
        "loyalty_amount": money(loyalty_amount(row)),
        "loyalty_currency": row.loyalty_currency,
        "created_at": iso(row.created_at),
    }


def cancel_view(row: BookingRow) -> dict[str, Any]:
    return {"booking_id": row.id, "status": row.status, "refund": refund_view(row)}


def _amount(minor: int | None, decimals: int | None) -> str | None:
    return None if minor is None else money(from_minor(minor, decimals or 0))


def event_view(event: EventRow) -> dict[str, Any]:
    """One feed record: everything analytics needs to rebuild the booking's money."""
    decimals = event.loyalty_decimals or 0
    return {
        "id": str(event.id),
        "booking_id": event.booking_id,
        "tenant_id": event.tenant_id,
        "member_id": event.member_id,
        "type": event.type,
        "from_state": event.from_state,
        "to_state": event.to_state,
        "loyalty_amount": _amount(event.loyalty_minor, decimals),
        "loyalty_currency": event.loyalty_currency,
        "cashback_amount": _amount(event.cashback_minor, CASHBACK_DECIMALS),
        "refund_amount": _amount(event.refund_minor, decimals),
        "usd_amount": _amount(event.usd_cents, 2),
        "usd_per_unit": event.usd_per_unit,
        "fare_amount": event.fare_amount,
        "fare_currency": event.fare_currency,
        "fx_rate": event.fx_rate,
        "loyalty_transaction_id": event.loyalty_transaction_id,
        "refund_transaction_id": event.refund_transaction_id,
        "duffel_order_id": event.duffel_order_id,
        "detail": event.detail,
        "actor": event.actor,
        "occurred_at": iso(event.occurred_at),
    }


def search_view(search: FlightSearchRow) -> dict[str, Any]:
    """One answered flight search as the searches feed gives it."""
    return {
        "id": str(search.id),
        "search_id": search.search_id,
        "tenant_id": search.tenant_id,
        "member_id": search.member_id,
        "origin": search.origin,
        "destination": search.destination,
        "departure_date": search.departure_date.isoformat(),
        "return_date": search.return_date.isoformat() if search.return_date else None,
        "cabin_class": search.cabin_class,
        "passengers": {
            "adults": search.adults,
            "children": search.children,
            "infants": search.infants,
        },
        "result_count": search.result_count,
        "occurred_at": iso(search.occurred_at),
    }
