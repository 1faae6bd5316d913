"""Cursors for incremental pulls, derived from what has landed, never from a separate state file:
from the landed rows (``max_landed``), or from the progress a pull wrote into a batch file's
footer (``landed_cursor``), which lands atomically with the rows it speaks for.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass

import polars as pl

from ingestion.landing.storage import footer
from ingestion.landing.zone import CURSOR_KEY, REPLAY_PREFIX, LandingZone


@dataclass(frozen=True)
class LandedCursor:
    """What the landed batches' footers say about a pull's progress.

    ``complete_through``: every record created at or before it has landed (or been
    quarantined). ``files`` is how many batch files there are; files without a cursor (from
    before cursors were committed with the data) leave ``complete_through`` None.
    """

    complete_through: dt.datetime | None
    files: int


def landed_cursor(
    zone: LandingZone, source: str, entity: str, tenant_id: str | None
) -> LandedCursor:
    """The furthest progress any landed batch of this entity committed with its rows."""
    best: dt.datetime | None = None
    with zone.reading():
        files = zone.files(source, entity, tenant_id)
        footers = [footer(path).get(CURSOR_KEY) for path in files]
    for text in footers:
        if not text:
            continue
        value = json.loads(text).get("complete_through")
        if value:
            moment = dt.datetime.fromisoformat(value)
            best = moment if best is None or moment > best else best
    return LandedCursor(best, len(files))


def max_landed(
    zone: LandingZone, source: str, entity: str, tenant_id: str | None, column: str
) -> dt.datetime | None:
    """The latest value of ``column`` landed by a pull so far (the basis of incremental
    cursors; replayed batches do not count)."""
    with zone.reading():
        frame = zone.scan(source, entity, tenant_id)
        if frame is None:
            return None
        pulled = frame.filter(~pl.col("_batch_id").str.starts_with(REPLAY_PREFIX))
        return pulled.select(pl.col(column).max()).collect().item()
