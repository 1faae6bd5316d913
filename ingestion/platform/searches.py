"""The booking API's searches feed as landed rows: raw/platform/flight_searches, exactly once.

Read by cursor from ``/api/v1/admin/searches`` and landed by the same machinery as the
event feed (``ingestion.platform.feed``): the top of the booking funnel.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from clients.platform import SEARCHES
from ingestion.landing.schemas import FLIGHT_SEARCHES
from ingestion.platform.feed import (
    PlatformFeed,
    RecordProblem,
    instant,
    record_id,
    same_tenant,
    text,
)

ENTITY = "flight_searches"
CURSOR_FIELD = "last_search_id"
_TEXT = ("search_id", "tenant_id", "member_id", "origin", "destination", "cabin_class")
_COUNTS = ("adults", "children", "infants")
# Far above any answer: a larger number is a broken record, not a big search.
_MAX_COUNT = 100_000


def _date(record: str, name: str, value: object, required: bool) -> dt.date | None:
    day = text(record, name, value, required)
    if day is None:
        return None
    try:
        return dt.date.fromisoformat(day)
    except ValueError:
        raise RecordProblem(f"{record}: field {name!r} is {day!r}, not a date") from None


def _count(record: str, name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_COUNT:
        raise RecordProblem(f"{record}: field {name!r} is {value!r}, not a count")
    return value


def search_row(tenant_id: str, raw: object, position: int) -> dict[str, Any]:
    """One landed row from one searches-feed record, or ``RecordProblem`` naming it and the
    field."""
    feed_id, raw = record_id("search", raw, position)
    record = f"search {feed_id}"
    row: dict[str, Any] = {"tenant_id": tenant_id, "feed_id": feed_id}
    for name in _TEXT:
        row[name] = text(record, name, raw.get(name), required=True)
    same_tenant(record, row, tenant_id)
    row["departure_date"] = _date(record, "departure_date", raw.get("departure_date"), True)
    row["return_date"] = _date(record, "return_date", raw.get("return_date"), False)
    passengers = raw.get("passengers")
    if not isinstance(passengers, dict):
        raise RecordProblem(f"{record}: field 'passengers' is {passengers!r}, not an object")
    for name in _COUNTS:
        row[name] = _count(record, f"passengers.{name}", passengers.get(name))
    row["result_count"] = _count(record, "result_count", raw.get("result_count"))
    occurred = text(record, "occurred_at", raw.get("occurred_at"), required=True)
    row["occurred_at"] = instant(record, "occurred_at", occurred or "")
    return row


SEARCHES_FEED = PlatformFeed(
    entity=ENTITY,
    route=SEARCHES,
    key="searches",
    id_column="feed_id",
    cursor_field=CURSOR_FIELD,
    schema=FLIGHT_SEARCHES,
    row=search_row,
    noun="search",
)
