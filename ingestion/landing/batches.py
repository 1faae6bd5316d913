"""Batches: how every source lands what it pulled, in bounded, content-named files.

A ``Batcher`` collects an entity's rows (and its children's) and its rejected records, and
writes them when ``batch_size`` records are collected: rejected records to quarantine first,
then the children's file, then the entity's file, which carries the cursor (the progress
the batch commits) in its footer. A batch is named by the sorted keys of its rows, so the
same records always make the same file. No Dagster here.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ingestion.landing import quarantine as dead_letters
from ingestion.landing.schemas import ENTITIES
from ingestion.landing.zone import LandingZone, Rejected, batch_id, land

log = logging.getLogger("ingestion")


@dataclass
class SyncStats:
    """What one pull did; shown as asset metadata and printed by the pipeline."""

    fetched: int = 0
    landed: int = 0
    quarantined: int = 0
    already_landed: int = 0
    conflicts: int = 0  # same id and version as one landed (or met) before, other content
    superseded: int = 0  # quarantined records a newer valid version has now replaced
    pages: int = 0
    batches: int = 0
    requests: int = 0
    since: dt.datetime | None = None
    seconds: float = 0.0
    outcome: str = "ok"
    files: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        rate = self.landed / self.seconds if self.seconds else 0.0
        return {
            "outcome": self.outcome,
            "fetched": self.fetched,
            "landed": self.landed,
            "quarantined": self.quarantined,
            "already_landed": self.already_landed,
            "conflicts": self.conflicts,
            "superseded": self.superseded,
            "requests": self.requests,
            "pages": self.pages,
            "batches": self.batches,
            "cursor_since": self.since.isoformat() if self.since else "full history",
            "seconds": round(self.seconds, 3),
            "records_per_second": round(rate, 1),
        }

    def finish(self, requests: RequestCounter | None, started: float) -> SyncStats:
        """Stamp the pull's requests and seconds (since ``started``, a perf_counter reading)."""
        self.requests = requests.count if requests else 0
        self.seconds = time.perf_counter() - started
        return self

    def summary(self) -> str:
        """One log line's worth: ``fetched 1,234, landed 1,200, quarantined 2, ...``."""
        return (
            f"fetched {self.fetched:,}, landed {self.landed:,}, quarantined {self.quarantined:,}, "
            f"already landed {self.already_landed:,} in {self.requests:,} requests, "
            f"{self.seconds:.1f} s"
        )


class RequestCounter:
    """An httpx response hook counting every request a client sends (retries included)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, response: object) -> None:
        self.count += 1


def _quarantine_rejected(
    zone: LandingZone,
    entity: tuple[str, str],
    tenant_id: str | None,
    rejected: list[Rejected],
    loaded_at: dt.datetime,
    stats: SyncStats,
) -> str | None:
    """Set a batch's rejected records aside, each with its reason, and say so in the log."""
    if not rejected:
        return None
    source, name = entity
    batch = dead_letters.write(zone, source, name, tenant_id, rejected, loaded_at)
    stats.quarantined += len(rejected)
    for item in rejected:
        log.warning("quarantined %s/%s record for %s: %s", source, name, tenant_id, item.reason)
    return batch


class DeadLetters:
    """A batcher's link to the quarantine: what it holds, and which landed column names the
    record a quarantined entry is about (a newer valid version of it supersedes the entry;
    None for a feed whose records come once each, where nothing supersedes an entry)."""

    def __init__(self, known: dead_letters.Known, key_column: str | None) -> None:
        self.known, self.key_column = known, key_column

    def after_flush(
        self,
        zone: LandingZone,
        entity: tuple[str, str],
        tenant_id: str | None,
        landed: tuple[list[str], str, dt.datetime] | None,
        quarantined: tuple[str | None, list[Rejected]],
        stats: SyncStats,
    ) -> None:
        if landed is not None:
            keys, batch, stamp = landed
            stats.superseded += dead_letters.supersede(
                zone, *entity, tenant_id, self.known, keys, batch, stamp
            )
        # Entries of this very batch are open from now on (a later batch may supersede them).
        dead_letters.note(self.known, *quarantined)


class BatchStamps:
    """Each batch's ``_loaded_at``: the sync's start plus the time elapsed, strictly increasing.

    The warehouse absorbs a tenant's landing incrementally by this stamp (see
    dbt_project/macros/incremental.sql): a batch file that appears later must never carry an
    earlier stamp than one already landed, so batches are stamped as they are written, not
    all with the sync's start.
    """

    def __init__(self, started: dt.datetime) -> None:
        self.started, self.clock = started, time.monotonic()
        self.last = started - dt.timedelta(microseconds=1)

    def next(self) -> dt.datetime:
        elapsed = dt.timedelta(seconds=time.monotonic() - self.clock)
        self.last = max(self.started + elapsed, self.last + dt.timedelta(microseconds=1))
        return self.last


def _iso_utc(column: str) -> pl.Expr:
    """``datetime.isoformat()`` of UTC instants, vectorised (the batch-name key format)."""
    moment = pl.col(column)
    return (
        pl.when(moment.dt.microsecond() == 0)
        .then(moment.dt.strftime("%Y-%m-%dT%H:%M:%S+00:00"))
        .otherwise(moment.dt.strftime("%Y-%m-%dT%H:%M:%S%.6f+00:00"))
    )


BatchKeys = Callable[[list[Any], pl.DataFrame], list[str]]


def version_keys(id_column: str, version_column: str) -> BatchKeys:
    """Batch-name keys ``<id>|<version, isoformat>`` read from a batch's frame."""

    def keys(parts: list[Any], frame: pl.DataFrame) -> list[str]:
        key = pl.concat_str(pl.col(id_column), pl.lit("|"), _iso_utc(version_column))
        return frame.select(key).to_series().to_list()

    return keys


def row_keys(key: Callable[[dict[str, Any]], str]) -> BatchKeys:
    """Batch-name keys computed from each row dict of a batch (parts are lists of row dicts)."""

    def keys(parts: list[Any], frame: pl.DataFrame) -> list[str]:
        return [key(row) for part in parts for row in part]

    return keys


def rows_frame(entity: tuple[str, str]) -> Callable[[list[Any]], pl.DataFrame]:
    """Parts that are lists of row dicts -> one frame in the entity's landing columns."""
    schema = {k: v for k, v in ENTITIES[entity].items() if k not in ("_loaded_at", "_batch_id")}

    def to_frame(parts: list[Any]) -> pl.DataFrame:
        return pl.DataFrame([row for part in parts for row in part], schema=schema)

    return to_frame


class Batcher:
    """Collects an entity's landed rows (and its children's) and rejected records, and writes
    them in batches of at most about ``batch_size`` records.

    Rows arrive in parts (a page's frame, its row tuples, or a list of row dicts); a whole
    batch is turned into one frame (``to_frame``) when it is written, and named by the sorted
    ``keys`` of its rows, so the same records always make the same file.
    """

    def __init__(
        self,
        zone: LandingZone,
        entity: tuple[str, str],
        tenant_id: str | None,
        keys: BatchKeys,
        batch_size: int,
        stats: SyncStats,
        loaded_at: dt.datetime,
        to_frame: Callable[[list[Any]], pl.DataFrame] = pl.concat,
        children: tuple[str, str] | None = None,
        to_child_frame: Callable[[list[Any]], pl.DataFrame] = pl.concat,
        cursor: Callable[[], dict[str, str] | None] | None = None,
        dead: DeadLetters | None = None,
    ) -> None:
        self.zone, self.entity, self.tenant_id = zone, entity, tenant_id
        self.cursor, self.dead = cursor, dead
        self.committed = cursor() if cursor else None  # the progress already on disk
        self.keys, self.batch_size, self.stats, self.loaded_at = keys, batch_size, stats, loaded_at
        self.stamps = BatchStamps(loaded_at)
        self.to_frame, self.children, self.to_child_frame = to_frame, children, to_child_frame
        self.parts: list[Any] = []
        self.child_parts: list[Any] = []
        self.rows = 0
        self.rejected: list[Rejected] = []

    def add(self, part: pl.DataFrame | list[Any], children: Any = None) -> None:
        """Add one part's rows (a frame, row tuples or row dicts) and its child rows."""
        if len(part):
            self.parts.append(part)
            self.rows += len(part)
        if children is not None and len(children):
            self.child_parts.append(children)
        if self.rows + len(self.rejected) >= self.batch_size:
            self.flush()

    def reject(self, rejected: list[Rejected]) -> None:
        """Set records aside for quarantine with the next batch (they count towards its size)."""
        self.rejected.extend(rejected)

    def flush(self) -> None:
        entity = self.entity[1]
        # Rejected records first: once the batch's rows land, a re-run will not fetch them again.
        quarantined = _quarantine_rejected(
            self.zone, self.entity, self.tenant_id, self.rejected, self.loaded_at, self.stats
        )
        landed = None
        if self.rows:
            frame = self.to_frame(self.parts).drop("_idx", strict=False)
            keys = sorted(self.keys(self.parts, frame))
            name, stamp = batch_id(entity, keys), self.stamps.next()
            # Children before their parent: the parent's file (with the cursor in its footer)
            # is the commit, so a parent never lands without its children.
            if self.children:
                children = self.to_child_frame(self.child_parts).drop("_idx", strict=False)
                self._land(self.children, children, name, stamp)
            cursor = self.cursor() if self.cursor else None
            self._land(self.entity, frame, name, stamp, cursor)
            self.committed = cursor or self.committed
            self.stats.landed += frame.height
            self.stats.batches += 1
            if self.dead and self.dead.key_column:
                landed = (frame[self.dead.key_column].to_list(), name, stamp)
        elif self.cursor and (cursor := self.cursor()) and cursor != self.committed:
            # Nothing new to land, but the listing got further than any batch says (e.g. all
            # of it had landed before): commit the progress in an empty batch of its own.
            name = batch_id(f"{entity}-cursor", [json.dumps(cursor, sort_keys=True)])
            empty = self.to_frame([]).drop("_idx", strict=False)
            self._land(self.entity, empty, name, self.stamps.next(), cursor)
            self.committed = cursor
        if self.dead:
            self.dead.after_flush(
                self.zone,
                self.entity,
                self.tenant_id,
                landed,
                (quarantined, self.rejected),
                self.stats,
            )
        self.parts, self.child_parts, self.rows, self.rejected = [], [], 0, []

    def _land(
        self,
        entity: tuple[str, str],
        frame: pl.DataFrame,
        name: str,
        stamp: dt.datetime,
        cursor: dict[str, str] | None = None,
    ) -> None:
        schema = ENTITIES[entity]
        frame = frame.with_columns(
            pl.lit(stamp, dtype=schema["_loaded_at"]).alias("_loaded_at"),
            pl.lit(name).alias("_batch_id"),
        )
        path = land(self.zone, *entity, self.tenant_id, frame, name, cursor=cursor)
        self.stats.files.append(str(path))
