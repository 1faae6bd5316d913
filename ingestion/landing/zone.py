"""The landing zone: immutable Parquet batches written atomically, and what has landed so far
(cursors derived from it: ``ingestion.landing.cursors``).

A batch file is named by a hash of the records it holds, so fetching the same records
again rewrites the same file instead of adding a copy. Cursors for incremental pulls
are derived from what has landed, never from a separate state file: from the landed rows,
or from the progress a pull wrote into a batch file's footer (``landed_cursor``), which
lands atomically with the rows it speaks for.

Compaction (``ingestion/compaction.py``) merges a partition's small files into one. Readers
and writers of the landing zone hold its lock shared (``LandingZone.reading``) while they
list and read files; compaction swaps files only while holding it exclusively, so nobody
ever sees both a merged file and the files merged into it, or neither.

The zone lives in a local folder (``data/landing`` by default) or on an S3-compatible object
store (``LANDING_URI=s3://bucket/prefix``, ``ingestion.landing.storage``). The lock is always a
local file: on an object store it is kept in the data folder, and guards the processes of one
machine only.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from ingestion.landing.schemas import ENTITIES
from ingestion.landing.storage import (
    Location,
    footer,
    is_local,
    location,
    parquet_source,
    write_parquet,
)
from settings import DataLayout, Settings, current_settings

TENANT_LEVEL = "tenant_id="
# Batches landed by a quarantine replay are named so: they are no evidence of how far a
# pull got, so no cursor is derived from them.
REPLAY_PREFIX = "replay-"
# The footer of a merged file lists the batches merged into it (JSON list of names).
MERGED_KEY = "ingest.merged"
COMPACTED_PREFIX = "compacted-"
LOCK_FILE = ".lock"
# The lock of a landing zone on an object store, in the data folder.
STORE_LOCK_FILE = "landing.lock"


class LockTimeout(TimeoutError):
    """The landing zone stayed in use longer than a compaction would wait for it."""


@dataclass(frozen=True)
class LandingZone:
    """Where landed and quarantined files live (``data/landing`` and ``data/quarantine``, or
    the object store ``LANDING_URI`` names), and the local file the zone's lock is held on
    (``<root>/.lock`` when the root is a local folder)."""

    root: Location
    quarantine_root: Location
    lock_file: Path | None = None

    @classmethod
    def under(cls, data_dir: Path, settings: Settings | None = None) -> LandingZone:
        """The zone of a data folder: in it, unless the settings put it elsewhere."""
        settings = settings or current_settings()
        layout = DataLayout(data_dir)
        root = location(settings.landing_uri, settings) if settings.landing_uri else layout.landing
        if settings.quarantine_uri:
            quarantine_root = location(settings.quarantine_uri, settings)
        else:
            quarantine_root = root.parent / layout.quarantine.name
        lock_file = None if is_local(root) else data_dir / STORE_LOCK_FILE
        return cls(root=root, quarantine_root=quarantine_root, lock_file=lock_file)

    @property
    def lock_path(self) -> Path:
        if self.lock_file is not None:
            return self.lock_file
        if not is_local(self.root):
            raise ValueError(f"the landing zone {self.root} is not local: give it a lock_file")
        return self.root / LOCK_FILE

    def folder(self, source: str, entity: str, tenant_id: str | None) -> Location:
        base = self.root / source / entity
        return base / f"{TENANT_LEVEL}{tenant_id}" if tenant_id else base

    def quarantine_folder(self, source: str, entity: str, tenant_id: str | None) -> Location:
        base = self.quarantine_root / source / entity
        return base / f"{TENANT_LEVEL}{tenant_id}" if tenant_id else base

    def files(self, source: str, entity: str, tenant_id: str | None) -> list[Location]:
        return sorted(self.folder(source, entity, tenant_id).glob("*.parquet"))

    @contextlib.contextmanager
    def reading(self) -> Iterator[None]:
        """Hold the landing zone's lock shared: no compaction swaps files meanwhile.

        Anyone listing files and reading them later (a lazy scan, a dbt build) holds it
        until done; writers hold it while a batch lands.
        """
        with self._lock(fcntl.LOCK_SH):
            yield

    @contextlib.contextmanager
    def swapping(self, wait_seconds: float) -> Iterator[None]:
        """Hold the lock exclusively (compaction's swap), waiting at most ``wait_seconds``
        for readers to finish; ``LockTimeout`` if they do not."""
        with self._lock(fcntl.LOCK_EX, wait_seconds):
            yield

    @contextlib.contextmanager
    def _lock(self, kind: int, wait_seconds: float | None = None) -> Iterator[None]:
        lock_path = self.lock_path
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if wait_seconds is None:
                fcntl.flock(descriptor, kind)
            else:  # polled: Linux lets new shared holders in ahead of a waiting exclusive one
                deadline = time.monotonic() + wait_seconds
                while True:
                    try:
                        fcntl.flock(descriptor, kind | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        if time.monotonic() > deadline:
                            raise LockTimeout(
                                f"the landing zone {self.root} stayed in use for {wait_seconds:g} s"
                            ) from None
                        time.sleep(0.05)
            yield
        finally:
            os.close(descriptor)  # closing releases the lock

    def merged_batches(self, folder: Location) -> set[str]:
        """Names of the batches merged into the compacted files of ``folder``."""
        merged: set[str] = set()
        for path in folder.glob(f"{COMPACTED_PREFIX}*.parquet"):
            merged.update(json.loads(footer(path).get(MERGED_KEY, "[]")))
        return merged

    def scan(self, source: str, entity: str, tenant_id: str | None) -> pl.LazyFrame | None:
        """Everything landed for one entity (and tenant), or None before the first batch."""
        files = self.files(source, entity, tenant_id)
        if not files:
            return None
        # A column added to an entity later reads as null in the files landed before it.
        return pl.scan_parquet(
            [parquet_source(path) for path in files],
            schema=ENTITIES[(source, entity)],
            missing_columns="insert",
        )


def batch_id(prefix: str, keys: Iterable[str]) -> str:
    """A stable name for a batch: the same records give the same id."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode())
        digest.update(b"\n")
    return f"{prefix}-{digest.hexdigest()[:20]}"


def write_atomically(
    frame: pl.DataFrame, path: Location, metadata: dict[str, str] | None = None
) -> Location:
    """Write Parquet so that no reader ever sees part of it under its name: locally to a
    temporary name in the same folder, then renamed over the target; on an object store as
    one upload of the finished file.

    ``metadata`` goes into the file's footer, so it lands (or not) together with the rows.
    """
    if not is_local(path):
        write_parquet(frame, path, metadata)
        return path
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write_parquet(frame, tmp, metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def land(
    zone: LandingZone,
    source: str,
    entity: str,
    tenant_id: str | None,
    frame: pl.DataFrame,
    batch: str,
    cursor: dict[str, str] | None = None,
) -> Location:
    """Land one validated batch with the entity's explicit schema.

    ``cursor`` is the pull's progress as of this batch (see ``landed_cursor``); it is written
    into the same file's footer, so the cursor can never claim more than what has landed.
    """
    schema = ENTITIES[(source, entity)]
    frame = frame.select(schema.names()).cast(dict(schema))  # type: ignore[arg-type]
    metadata = {CURSOR_KEY: json.dumps(cursor, sort_keys=True)} if cursor else None
    folder = zone.folder(source, entity, tenant_id)
    with zone.reading():
        if batch in zone.merged_batches(folder):
            # The same records landed before and were compacted since: landing them again
            # would copy them. Only the pull's progress is new, in an empty batch of its own.
            frame = frame.clear()
            if cursor is None:
                return folder / f"{batch}.parquet"
            batch = batch_id(f"{batch}-cursor", [metadata[CURSOR_KEY]])
        return write_atomically(frame, folder / f"{batch}.parquet", metadata)


CURSOR_KEY = "ingest.cursor"


@dataclass(frozen=True)
class Rejected:
    """A record that failed validation, with a reason naming the record and the field."""

    record_key: str | None
    reason: str
    raw: object
