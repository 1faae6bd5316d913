"""Land the booking API's event feed for one tenant, exactly once, by cursor.

The cursor is the id of the last event a batch covers, written into that batch file's footer
(``landing.CURSOR_KEY``), so it lands atomically with the events it speaks for: a run cut
short anywhere resumes after the last batch that completely landed, and a batch that landed
is never fetched again. Records that fail validation are quarantined (with a reason naming
the event and the field) before the batch that passes over them lands. No Dagster here: the
asset and the tests run the same code.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from decimal import Decimal, InvalidOperation
from typing import Any

import polars as pl

from ingestion import quarantine as dead_letters
from ingestion.landing import CURSOR_KEY, LandingZone, Rejected, batch_id, land
from ingestion.schemas import BOOKING_EVENTS
from ingestion.sync import RequestCounter, SyncStats, _BatchStamps
from tenants.platform import BookingEventsClient, FeedContractError

SOURCE, ENTITY = "platform", "booking_events"
CURSOR_FIELD = "last_event_id"

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


def landed_event_cursor(zone: LandingZone, tenant_id: str) -> int:
    """The last event id any landed batch committed with its rows (0 before the first)."""
    best = 0
    for path in zone.files(SOURCE, ENTITY, tenant_id):
        text = pl.read_parquet_metadata(path).get(CURSOR_KEY)
        if text:
            best = max(best, int(json.loads(text)[CURSOR_FIELD]))
    return best


class EventProblem(ValueError):
    """Why one feed record cannot land: names the record and the field."""


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


def _text(record: str, name: str, value: object, required: bool) -> str | None:
    if value is None:
        if required:
            raise EventProblem(f"{record}: field {name!r} is missing")
        return None
    if not isinstance(value, str) or (required and not value):
        raise EventProblem(f"{record}: field {name!r} is {value!r}, not a text")
    return value


def event_row(tenant_id: str, raw: object, position: int) -> dict[str, Any]:
    """One landed row from one feed record, or ``EventProblem`` naming the event and field."""
    if not isinstance(raw, dict):
        raise EventProblem(f"event at position {position} of its page: not an object")
    event_id = raw.get("id")
    if not isinstance(event_id, str | int) or not str(event_id).isdigit():
        raise EventProblem(
            f"event at position {position} of its page: field 'id' is {event_id!r}, not an id"
        )
    record = f"event {event_id}"
    row: dict[str, Any] = {"tenant_id": tenant_id, "event_id": int(event_id)}
    for name in _TEXT_REQUIRED:
        row[name] = _text(record, name, raw.get(name), required=True)
    for name in _TEXT_OPTIONAL:
        row[name] = _text(record, name, raw.get(name), required=False)
    if row["tenant_id"] != tenant_id:
        raise EventProblem(
            f"{record}: field 'tenant_id' is {row['tenant_id']!r}, not this partition's "
            f"{tenant_id!r}"
        )
    for name in _MONEY + _RATES:
        row[name] = _exact(record, name, raw.get(name))
    try:
        moment = dt.datetime.fromisoformat(row["occurred_at"])
    except ValueError:
        raise EventProblem(
            f"{record}: field 'occurred_at' is {row['occurred_at']!r}, not an ISO 8601 instant"
        ) from None
    if moment.tzinfo is None:
        raise EventProblem(f"{record}: field 'occurred_at' is {row['occurred_at']!r}, no offset")
    row["occurred_at"] = moment.astimezone(dt.UTC)
    return row


class _EventBatcher:
    """Collects a range of the feed and lands it as one file with its cursor in the footer."""

    def __init__(
        self,
        zone: LandingZone,
        tenant_id: str,
        batch_size: int,
        stats: SyncStats,
        loaded_at: dt.datetime,
        committed: int,
    ) -> None:
        self.zone, self.tenant_id, self.batch_size, self.stats = zone, tenant_id, batch_size, stats
        self.loaded_at, self.stamps = loaded_at, _BatchStamps(loaded_at)
        self.committed = committed  # the cursor already on disk
        self.cursor = committed  # how far the collected range reaches
        self.rows: list[dict[str, Any]] = []
        self.rejected: list[Rejected] = []
        self.known = dead_letters.known(zone, SOURCE, ENTITY, tenant_id)

    def add(self, rows: list[dict[str, Any]], rejected: list[Rejected], cursor: int) -> None:
        """Add one page's rows and rejects; the page reaches ``cursor`` (its last event id)."""
        self.rows.extend(rows)
        fresh = [r for r in rejected if not self.known.holds(r.record_key, r.raw)]
        self.stats.already_landed += len(rejected) - len(fresh)  # quarantined before, unchanged
        self.rejected.extend(fresh)
        self.cursor = cursor
        if len(self.rows) + len(self.rejected) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        """Quarantine first, then the landed file, whose footer is the commit of the range."""
        if self.cursor == self.committed and not self.rows and not self.rejected:
            return
        if self.rejected:
            quarantined = dead_letters.write(
                self.zone, SOURCE, ENTITY, self.tenant_id, self.rejected, self.loaded_at
            )
            dead_letters.note(self.known, quarantined, self.rejected)
            self.stats.quarantined += len(self.rejected)
        if self.rows:
            name = batch_id(ENTITY, [str(r["event_id"]) for r in self.rows])
        else:  # the whole range was quarantined: its cursor still has to land
            name = batch_id(f"{ENTITY}-cursor", [str(self.cursor)])
        schema = {k: v for k, v in BOOKING_EVENTS.items() if k not in ("_loaded_at", "_batch_id")}
        frame = pl.DataFrame(self.rows, schema=schema).with_columns(
            pl.lit(self.stamps.next(), dtype=BOOKING_EVENTS["_loaded_at"]).alias("_loaded_at"),
            pl.lit(name).alias("_batch_id"),
        )
        path = land(
            self.zone,
            SOURCE,
            ENTITY,
            self.tenant_id,
            frame,
            name,
            cursor={CURSOR_FIELD: str(self.cursor)},
        )
        self.stats.files.append(str(path))
        self.stats.landed += len(self.rows)
        self.stats.batches += 1
        self.committed = self.cursor
        self.rows, self.rejected = [], []


def sync_booking_events(
    client: BookingEventsClient,
    zone: LandingZone,
    tenant_id: str,
    *,
    page_size: int = 500,
    batch_size: int = 10_000,
    requests: RequestCounter | None = None,
    now: dt.datetime | None = None,
    stats: SyncStats | None = None,
) -> SyncStats:
    """Land the tenant's events after the landed cursor, each exactly once."""
    started = time.perf_counter()
    stats = stats if stats is not None else SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    committed = landed_event_cursor(zone, tenant_id)
    batcher = _EventBatcher(zone, tenant_id, batch_size, stats, loaded_at, committed)
    last = committed
    for page in client.iter_pages(committed, tenant_id=tenant_id, page_size=page_size):
        stats.pages += 1
        stats.fetched += len(page.records)
        rows: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        for position, raw in enumerate(page.records):
            try:
                row = event_row(tenant_id, raw, position)
            except EventProblem as problem:
                key = raw.get("id") if isinstance(raw, dict) else None
                rejected.append(Rejected(str(key) if key is not None else None, str(problem), raw))
                continue
            if row["event_id"] <= last:
                raise FeedContractError(
                    f"event {row['event_id']} came after event {last}: the feed is out of order",
                    tenant="platform",
                    endpoint="GET /api/v1/admin/events",
                    status=200,
                )
            last = row["event_id"]
            rows.append(row)
        batcher.add(rows, rejected, int(page.next_cursor))
    batcher.flush()
    stats.requests = requests.count if requests else 0
    stats.seconds = time.perf_counter() - started
    return stats
