"""The booking API's event feed as landed rows: raw/platform/booking_events, exactly once.

The landing itself (cursor in each batch's footer, quarantine first, order checked) is the
shared machinery of ``ingestion.platform.feed``; this module says how one event lands.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

from clients.platform import FEED
from ingestion.landing.schemas import BOOKING_EVENTS
from ingestion.landing.zone import LandingZone
from ingestion.platform.feed import (
    SOURCE,
    PlatformFeed,
    RecordProblem,
    instant,
    landed_feed_cursor,
    record_id,
    same_tenant,
    text,
)

__all__ = ["CURSOR_FIELD", "ENTITY", "EVENTS_FEED", "SOURCE", "EventProblem", "event_row"]

ENTITY = "booking_events"
CURSOR_FIELD = "last_event_id"
# The name this module's callers know a bad event by.
EventProblem = RecordProblem

_TEXT_REQUIRED = ("booking_id", "tenant_id", "member_id", "type", "to_state", "occurred_at")
_TEXT_OPTIONAL = (
    "from_state",
    "loyalty_currency",
    "fare_currency",
    "loyalty_transaction_id",
    "refund_transaction_id",
    "duffel_order_id",
    "detail",
    "actor",
)
_MONEY = ("loyalty_amount", "cashback_amount", "refund_amount", "usd_amount", "fare_amount")
_RATES = ("usd_per_unit", "fx_rate")
_SCALE = {
    name: (dtype.precision, dtype.scale)  # type: ignore[attr-defined]
    for name, dtype in BOOKING_EVENTS.items()
    if name in _MONEY + _RATES
}


def _exact(record: str, name: str, value: object) -> Decimal | None:
    """A money or rate field as an exact Decimal that fits its column, never via float."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise EventProblem(
            f"{record}: field {name!r} is {type(value).__name__} {value!r}, not a decimal text"
        )
    try:
        amount = Decimal(value) if not isinstance(value, Decimal) else value
    except InvalidOperation:
        raise EventProblem(f"{record}: field {name!r} is {value!r}, not a decimal") from None
    if not amount.is_finite():
        raise EventProblem(f"{record}: field {name!r} is {value!r}, not a finite amount")
    precision, scale = _SCALE[name]
    if abs(amount) >= Decimal(10) ** (precision - scale):
        raise EventProblem(f"{record}: field {name!r} is {value!r}, too large for its column")
    step = Decimal(1).scaleb(-scale)
    if amount % step:
        raise EventProblem(
            f"{record}: field {name!r} is {value!r}, more than {scale} decimal places "
            "(it would have to be rounded)"
        )
    return amount.quantize(step)  # exact: only trailing zeros can go


def event_row(tenant_id: str, raw: object, position: int) -> dict[str, Any]:
    """One landed row from one feed record, or ``EventProblem`` naming the event and field."""
    event_id, raw = record_id("event", raw, position)
    record = f"event {event_id}"
    row: dict[str, Any] = {"tenant_id": tenant_id, "event_id": event_id}
    for name in _TEXT_REQUIRED:
        row[name] = text(record, name, raw.get(name), required=True)
    for name in _TEXT_OPTIONAL:
        row[name] = text(record, name, raw.get(name), required=False)
    same_tenant(record, row, tenant_id)
    for name in _MONEY + _RATES:
        row[name] = _exact(record, name, raw.get(name))
    row["occurred_at"] = instant(record, "occurred_at", row["occurred_at"])
    return row


EVENTS_FEED = PlatformFeed(
    entity=ENTITY,
    route=FEED,
    key="events",
    id_column="event_id",
    cursor_field=CURSOR_FIELD,
    schema=BOOKING_EVENTS,
    row=event_row,
    noun="event",
)


def landed_event_cursor(zone: LandingZone, tenant_id: str) -> int:
    """The last event id any landed batch committed with its rows (0 before the first)."""
    return landed_feed_cursor(zone, EVENTS_FEED, tenant_id)
