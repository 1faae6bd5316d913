"""Compaction of the landing zone: a partition's small batch files merged into one file.

Ingestion lands many small batches (live mode: one every few seconds per entity and
tenant), and every reader pays for each file it opens. ``compact`` merges the small files
of one folder (``<source>/<entity>/tenant_id=<id>/``) into one ``compacted-<hash>.parquet``:

- nothing lost, duplicated or reordered: the merged file holds every row of the files it
  replaces, sorted by the landing order (``_loaded_at``, then the order within each batch),
  with their lineage columns (``_batch_id``, ``_loaded_at``) as they were;
- the pulls' progress survives: the merged file's footer carries, for each cursor field,
  the furthest value any merged file committed (what ``landed_cursor`` and the feeds read),
  and the names of the batches it holds, so a batch fetched again is not landed twice
  (``landing.land``);
- atomic for readers: the merged file is written under a hidden name no reader's glob
  matches (``.compacted-….tmp``), then, holding the landing lock exclusively (readers and
  writers hold it shared), the merged-away files are checked untouched, the merged file is
  renamed into place and they are deleted: a reader sees the files before or after, never
  both or neither. Batches landed meanwhile are left for the next compaction. On an object
  store the rename is a server-side copy (the merged object appears whole) and the lock is
  local (``ingestion.landing.zone``): readers on other machines may list a merged file beside
  its inputs for a moment, rows the staging models de-duplicate by key.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import uuid
from dataclasses import dataclass, field

import polars as pl

from ingestion.landing.schemas import ENTITIES
from ingestion.landing.storage import Location, footer, is_local, parquet_source, write_parquet
from ingestion.landing.zone import (
    COMPACTED_PREFIX,
    CURSOR_KEY,
    MERGED_KEY,
    TENANT_LEVEL,
    LandingZone,
)

# Files at least this big are left as they are; the small ones are merged.
SMALL_BYTES = 8 * 1024 * 1024
# How long a swap waits for readers (a dbt build holds the lock for its whole run).
WAIT_SECONDS = 600.0


@dataclass
class Compacted:
    """What one folder's compaction did."""

    folder: Location
    merged_files: int = 0
    rows: int = 0
    into: Location | None = None
    skipped: str = ""  # why nothing was merged, if so

    def line(self) -> str:
        if self.into is None:
            return f"{self.folder}: {self.skipped}"
        return f"{self.folder}: {self.merged_files} files ({self.rows:,} rows) -> {self.into.name}"


@dataclass
class _Input:
    path: Location
    identity: tuple[int, int, int, str] | None  # (inode, size, mtime, ETag): unchanged since read
    frame: pl.DataFrame
    metadata: dict[str, str] = field(default_factory=dict)


def folders(zone: LandingZone, tenant_id: str | None = None) -> list[tuple[str, str, str | None]]:
    """Every (source, entity, tenant) folder that holds landed files (only ``tenant_id``'s)."""
    found = []
    for source, entity in ENTITIES:
        base = zone.root / source / entity
        tenants = sorted(p.name.removeprefix(TENANT_LEVEL) for p in base.glob(f"{TENANT_LEVEL}*"))
        for tenant in tenants if tenants else [None]:
            if tenant_id is None or tenant == tenant_id:
                found.append((source, entity, tenant))
    return found


def compact_all(
    zone: LandingZone,
    tenant_id: str | None = None,
    small_bytes: int = SMALL_BYTES,
    wait_seconds: float = WAIT_SECONDS,
) -> list[Compacted]:
    return [
        compact(zone, *where, small_bytes=small_bytes, wait_seconds=wait_seconds)
        for where in folders(zone, tenant_id)
    ]


def compact(
    zone: LandingZone,
    source: str,
    entity: str,
    tenant_id: str | None,
    small_bytes: int = SMALL_BYTES,
    wait_seconds: float = WAIT_SECONDS,
) -> Compacted:
    """Merge the small files of one folder into one (see the module's description)."""
    folder = zone.folder(source, entity, tenant_id)
    result = Compacted(folder)
    _finish_interrupted(zone, folder)
    with zone.reading():
        small = [p for p in zone.files(source, entity, tenant_id) if p.stat().st_size < small_bytes]
        if len(small) < 2:
            result.skipped = f"{len(small)} small file(s): nothing to merge"
            return result
        inputs = [_read(path) for path in small]
    merged = _merge(inputs, ENTITIES[(source, entity)])
    names = sorted({name for i in inputs for name in _batches(i)})
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:20]
    target = folder / f"{COMPACTED_PREFIX}{digest}.parquet"
    tmp = folder / f".{target.name}.{uuid.uuid4().hex}.tmp"
    metadata = {MERGED_KEY: json.dumps(names)}
    if cursor := _furthest_cursor(inputs):
        metadata[CURSOR_KEY] = json.dumps(cursor, sort_keys=True)
    try:
        write_parquet(merged, tmp, metadata)
        with zone.swapping(wait_seconds):
            changed = [i.path.name for i in inputs if _identity(i.path) != i.identity]
            if changed:  # a batch was landed again meanwhile: merge it next time
                result.skipped = f"changed while merging: {', '.join(changed)}"
                return result
            tmp.rename(target)  # on POSIX and a store alike, over any file of that name
            for item in inputs:
                if item.path != target:
                    item.path.unlink()
            if is_local(folder):
                _sync_folder(folder)
    finally:
        tmp.unlink(missing_ok=True)
    result.merged_files, result.rows, result.into = len(inputs), merged.height, target
    return result


def _identity(path: Location) -> tuple[int, int, int, str] | None:
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    # An object store has no inode and mtimes in whole seconds, but an ETag per upload.
    etag = str(getattr(stat, "info", {}).get("ETag", ""))
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns, etag)


def _read(path: Location) -> _Input:
    identity = _identity(path)
    return _Input(path, identity, pl.read_parquet(parquet_source(path)), footer(path))


def _batches(item: _Input) -> list[str]:
    """The files a merged file replaces: a batch, or a merged file and what it replaced
    (so that either, left behind by a crash, is recognised as merged)."""
    return [item.path.stem, *json.loads(item.metadata.get(MERGED_KEY, "[]"))]


def _merge(inputs: list[_Input], schema: pl.Schema) -> pl.DataFrame:
    """All rows in landing order: by ``_loaded_at``, rows of one batch in their order.

    Columns are the entity's (a column added later is null in older batches, as readers see
    it through their union by name); a column the files have beyond it is kept after them.
    """
    frames = [i.frame for i in inputs]
    merged = pl.concat(frames, how="diagonal_relaxed")
    extra = [c for c in merged.columns if c not in schema]
    merged = merged.with_columns(
        [
            pl.lit(None, dtype=dtype).alias(name)
            for name, dtype in schema.items()
            if name not in merged.columns
        ]
    )
    merged = merged.select([*schema.names(), *extra]).cast(dict(schema))  # type: ignore[arg-type]
    return merged.sort("_loaded_at", maintain_order=True)


def _furthest_cursor(inputs: list[_Input]) -> dict[str, str]:
    """For each cursor field, the furthest value any input committed (ids as numbers,
    instants as instants)."""
    furthest: dict[str, str] = {}
    for item in inputs:
        text = item.metadata.get(CURSOR_KEY)
        for name, value in (json.loads(text) if text else {}).items():
            if name not in furthest or _order(value) > _order(furthest[name]):
                furthest[name] = value
    return furthest


def _order(value: str) -> object:
    text = str(value)
    if text.isdigit():
        return int(text)
    return dt.datetime.fromisoformat(text)


def _finish_interrupted(zone: LandingZone, folder: Location) -> None:
    """A compaction stopped between renaming its merged file into place and deleting the
    merged-away files (a crash): delete those now, so their rows are not read twice."""
    merged = zone.merged_batches(folder) if folder.exists() else set()
    leftovers = [p for p in folder.glob("*.parquet") if p.stem in merged]
    if leftovers:
        with zone.swapping(WAIT_SECONDS):
            for path in leftovers:
                path.unlink(missing_ok=True)


def _sync_folder(folder: Location) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)
