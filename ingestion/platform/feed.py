"""Land one of the booking API's feeds (events, searches) for one tenant, exactly once, by cursor.

Both feeds have one shape: records in id order (commit order), ``next_cursor`` = the last id.
A ``PlatformFeed`` says which route, how a record becomes a landed row, and what the cursor
is called; the landing below is the same for every feed.

The cursor is the id of the last record a batch covers, written into that batch file's footer
(``landing.CURSOR_KEY``), so it lands atomically with the records it speaks for: a run cut
short anywhere resumes after the last batch that completely landed, and a batch that landed
is never fetched again. Records that fail validation are quarantined (with a reason naming
the record and the field) before the batch that passes over them lands. No Dagster here: the
asset and the tests run the same code.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from clients.http import Route
from clients.platform import BookingEventsClient, FeedContractError
from ingestion.landing import quarantine as dead_letters
from ingestion.landing.batches import (
    Batcher,
    DeadLetters,
    RequestCounter,
    SyncStats,
    row_keys,
    rows_frame,
)
from ingestion.landing.storage import footer
from ingestion.landing.zone import CURSOR_KEY, LandingZone, Rejected

SOURCE = "platform"


class RecordProblem(ValueError):
    """Why one feed record cannot land: names the record and the field."""


@dataclass(frozen=True)
class PlatformFeed:
    """One of the booking API's cursor feeds and how its records land."""

    entity: str  # raw/platform/<entity>
    route: Route
    key: str  # the list's name in the page: data.<key>
    id_column: str  # the landed column holding the feed's id (the cursor)
    cursor_field: str  # the cursor's name in a batch file's footer
    schema: pl.Schema  # the landed schema, lineage columns included
    # (tenant_id, raw record, position in its page) -> landed row, or RecordProblem
    row: Callable[[str, object, int], dict[str, Any]]
    noun: str  # what one record is, for messages ("event", "search")


def landed_feed_cursor(zone: LandingZone, feed: PlatformFeed, tenant_id: str) -> int:
    """The last id any landed batch of ``feed`` committed with its rows (0 before the first)."""
    best = 0
    with zone.reading():
        files = zone.files(SOURCE, feed.entity, tenant_id)
        footers = [footer(path).get(CURSOR_KEY) for path in files]
    for text in footers:
        if text:
            best = max(best, int(json.loads(text)[feed.cursor_field]))
    return best


def record_id(noun: str, raw: object, position: int) -> tuple[int, dict[str, Any]]:
    """A record's feed id and the record, or ``RecordProblem`` naming its position."""
    if not isinstance(raw, dict):
        raise RecordProblem(f"{noun} at position {position} of its page: not an object")
    value = raw.get("id")
    if not isinstance(value, str | int) or not str(value).isdigit():
        raise RecordProblem(
            f"{noun} at position {position} of its page: field 'id' is {value!r}, not an id"
        )
    return int(value), raw


def text(record: str, name: str, value: object, required: bool) -> str | None:
    """A text field; a missing required one or one of another type is a ``RecordProblem``."""
    if value is None:
        if required:
            raise RecordProblem(f"{record}: field {name!r} is missing")
        return None
    if not isinstance(value, str) or (required and not value):
        raise RecordProblem(f"{record}: field {name!r} is {value!r}, not a text")
    return value


def instant(record: str, name: str, value: str) -> dt.datetime:
    """An ISO 8601 instant with an offset, in UTC."""
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise RecordProblem(
            f"{record}: field {name!r} is {value!r}, not an ISO 8601 instant"
        ) from None
    if moment.tzinfo is None:
        raise RecordProblem(f"{record}: field {name!r} is {value!r}, no offset")
    return moment.astimezone(dt.UTC)


def same_tenant(record: str, row: dict[str, Any], tenant_id: str) -> None:
    if row["tenant_id"] != tenant_id:
        raise RecordProblem(
            f"{record}: field 'tenant_id' is {row['tenant_id']!r}, not this partition's "
            f"{tenant_id!r}"
        )


def sync_feed(
    feed: PlatformFeed,
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
    """Land the tenant's records of ``feed`` after the landed cursor, each exactly once."""
    started = time.perf_counter()
    stats = stats if stats is not None else SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    committed = landed_feed_cursor(zone, feed, tenant_id)
    known = dead_letters.known(zone, SOURCE, feed.entity, tenant_id)
    last = reached = committed  # the last id seen; how far the pages read reach
    batcher = Batcher(
        zone,
        (SOURCE, feed.entity),
        tenant_id,
        row_keys(lambda row: str(row[feed.id_column])),
        batch_size,
        stats,
        loaded_at,
        to_frame=rows_frame((SOURCE, feed.entity)),
        # The cursor lands in each batch file's footer: the commit of the range it covers.
        cursor=lambda: {feed.cursor_field: str(reached)},
        dead=DeadLetters(known, None),
    )
    pages = client.iter_pages(
        committed, tenant_id=tenant_id, page_size=page_size, route=feed.route, key=feed.key
    )
    for page in pages:
        stats.pages += 1
        stats.fetched += len(page.records)
        rows: list[dict[str, Any]] = []
        rejected: list[Rejected] = []
        for position, raw in enumerate(page.records):
            try:
                row = feed.row(tenant_id, raw, position)
            except RecordProblem as problem:
                key = raw.get("id") if isinstance(raw, dict) else None
                rejected.append(Rejected(str(key) if key is not None else None, str(problem), raw))
                continue
            if row[feed.id_column] <= last:
                raise FeedContractError(
                    f"{feed.noun} {row[feed.id_column]} came after {feed.noun} {last}: the feed "
                    "is out of order",
                    tenant="platform",
                    endpoint=feed.route.label,
                    status=200,
                )
            last = row[feed.id_column]
            rows.append(row)
        fresh = [r for r in rejected if not known.holds(r.record_key, r.raw)]
        stats.already_landed += len(rejected) - len(fresh)  # quarantined before, unchanged
        reached = int(page.next_cursor)
        batcher.reject(fresh)
        batcher.add(rows)
    batcher.flush()
    return stats.finish(requests, started)
