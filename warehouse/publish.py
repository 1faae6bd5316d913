"""Publish the marts the dashboard reads as a read-only serving snapshot, one file per table.

DuckDB lets one process write a file and blocks every reader meanwhile, so the dashboard
never opens the warehouse: it reads the serving folder, where every table lives in its own
DuckDB file named after its content (``tables/<table>-<fingerprint>.duckdb``) and
``serving.json``, the manifest, names the file of each table of the current version.

A publish fingerprints every table where it lies and writes a file only for a table whose
fingerprint is new. An incremental mart (dbt stamps each row a build rewrote with
``built_at``) is fingerprinted by its row count and newest stamp, and its new file is the
previous one, copied by the file system, with the rewritten rows replaced by key: the cost
follows the rows that changed, not the history (if the counts do not add up, e.g. rows were
deleted, the table is copied whole). Any other table is fingerprinted from the hashes of all
its rows; those are the small, fully rebuilt marts. The new manifest is then renamed over
``serving.json``: that is the swap. A reader that holds the old manifest keeps its files (an
open file outlives its name, and files stay ``RETAIN_SECONDS`` after the last manifest
naming them), the next read of the manifest sees the new set whole. A table file is written
under a temporary name, checkpointed, closed and renamed, so a name in a manifest is always
a finished file; the dashboard reads a new file back before serving a manifest naming it,
and refuses the manifest (keeping the last good one) if it does not read back.

Why this design rather than a new copy of every mart per publish: at a million bookings
that copy cost 4.5-6.8 s and emptied every dashboard cache. Per-table files alone would not
do: every increment touches the big marts (bookings, segments, ledger), so they would still
be copied whole each time; patching them by ``built_at`` makes their cost the increment's,
and the dashboard keeps its attached files and memos of every table that did not change
(``benchmarks/bench_publish.py``). What still grows with history: the file-system copy of a
changed mart's file (no decoding; on a file system with reflinks it is free), and the
dashboard's read-back of that file.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import duckdb

from settings import SERVING_FILE, SERVING_TABLES_DIR, SERVING_VERSION_FILE
from warehouse.manifest import MANIFEST_PATH

SERVING_TABLES = (
    "bookings",
    "members",
    "daily_tenant_metrics",
    "reconciliation_issues",
    "tenants",
    "booking_segments",
    "ledger_transactions",
    "saga_health",
    "approvals",
    "booking_funnel",
    "tenant_capabilities",
    "reconciliation_checks",
    "landing_health",
    "daily_usd_rates",
    "booking_failures",
)
# The serving snapshot as one Dagster asset, whoever publishes it (the warehouse job or live mode).
SERVING_SNAPSHOT_KEY = dg.AssetKey(["serving", "snapshot"])
VERSION = SERVING_VERSION_FILE  # the manifest; the dashboard polls it to notice a new snapshot
TABLES = SERVING_TABLES_DIR  # folder of the table files, beside the manifest
LEGACY_SNAPSHOT = SERVING_FILE  # the single-file snapshot of earlier releases
STAMP = "built_at"  # the column incremental models stamp the rows a build (re)wrote with
_KEYS: dict[Path, tuple[int, dict[str, tuple[str, ...]]]] = {}  # manifest -> (mtime, keys)
RETAIN_SECONDS = 120.0  # how long a file no manifest names any more is kept for slow readers


@dataclass(frozen=True)
class Published:
    path: Path  # the manifest
    version: int
    rows: dict[str, int]
    seconds: float
    written: tuple[str, ...] = ()  # tables whose file this publish wrote (the others were kept)
    patched: tuple[str, ...] = ()  # of those, the ones written as the previous file plus changes
    table_seconds: dict[str, float] = field(default_factory=dict)  # fingerprint (+ write) each

    def metadata(self) -> dict[str, str | float | int]:
        """What the serving snapshot's materialization records, whoever published it."""
        return {
            "version": str(self.version),
            "seconds": round(self.seconds, 3),
            "written": ", ".join(self.written) or "nothing",
            "patched": ", ".join(self.patched) or "nothing",
            **{f"rows_{name}": count for name, count in self.rows.items()},
        }


@dataclass(frozen=True)
class TableFile:
    """One table of a manifest: its file (relative to the serving folder) and content."""

    name: str
    file: str
    fingerprint: str
    rows: int
    watermark: str | None = None  # newest built_at of an incremental mart


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _snapshot_info(con: duckdb.DuckDBPyConnection, published_at: dt.datetime) -> None:
    """When this snapshot was published, for the dashboard's data-health page."""
    con.execute("create table snapshot_info (published_at timestamptz)")
    con.execute("insert into snapshot_info values (?)", [published_at])


def incremental_keys(manifest: Path = MANIFEST_PATH) -> dict[str, tuple[str, ...]]:
    """The unique key of every incremental dbt model, by table name, from dbt's manifest.

    Empty when there is no manifest: every table is then fingerprinted by its rows' hashes.
    """
    try:
        stamp = manifest.stat().st_mtime_ns
    except FileNotFoundError:
        return {}
    known = _KEYS.get(manifest)
    if known is not None and known[0] == stamp:
        return known[1]  # parsing dbt's manifest costs ~0.1 s, a publish should not pay it
    keys = {}
    for node in json.loads(manifest.read_text())["nodes"].values():
        config = node.get("config", {})
        key = config.get("unique_key")
        if node["resource_type"] == "model" and config.get("materialized") == "incremental" and key:
            keys[node.get("alias") or node["name"]] = (key,) if isinstance(key, str) else tuple(key)
    _KEYS[manifest] = (stamp, keys)
    return keys


def _columns(con: duckdb.DuckDBPyConnection, source: str) -> list[tuple[str, str]]:
    """Names and types (a copy drops NOT NULL constraints, so those are left out)."""
    return [(name, kind) for name, kind, *_ in con.execute(f"describe {source}").fetchall()]


def _fingerprint(
    con: duckdb.DuckDBPyConnection, source: str, key: tuple[str, ...]
) -> tuple[str, int, str | None]:
    """A digest of the table's columns and content, its row count, and its newest ``built_at``.

    An incremental mart (a ``key`` and a ``built_at`` column) stamps every row a build
    (re)writes with the build's start (``macros/incremental.sql``), so its row count and
    newest stamp tell whether it changed without reading more than that column. Any other
    table is digested from the hashes of all its rows (order aside).
    """
    columns = _columns(con, source)
    if key and any(column[0] == STAMP for column in columns):
        count, watermark = con.execute(
            f"select count(*), max({STAMP})::varchar from {source}"
        ).fetchone()
        content: object = watermark
    else:
        count, content = con.execute(
            f"select count(*), sum(hash(t)::hugeint) from {source} t"
        ).fetchone()
        watermark = None
    digest = hashlib.sha256(repr((columns, count, content)).encode()).hexdigest()[:20]
    return digest, count, watermark


def _place(
    con: duckdb.DuckDBPyConnection,
    source: str,
    table: str,
    serving_dir: Path,
    previous: TableFile | None,
    key: tuple[str, ...],
) -> tuple[TableFile, str | None]:
    """The file holding ``source`` as ``table``: the existing one if the content is known, else
    (an incremental mart) the previous file's copy with the rebuilt rows replaced, else a copy."""
    fingerprint, rows, watermark = _fingerprint(con, source, key)
    relative = f"{TABLES}/{table}-{fingerprint}.duckdb"
    target = serving_dir / relative
    entry = TableFile(table, relative, fingerprint, rows, watermark)
    if target.exists():
        return entry, None
    building = target.with_name(f".{target.name}.{os.getpid()}.building")
    base = None
    if previous is not None and previous.watermark and watermark:
        base = serving_dir / previous.file
    try:
        if base is not None and base.exists():
            shutil.copyfile(base, building)  # the file system's copy: no decoding, no encoding
        con.execute(f"attach {_quote(building)} as building")
        try:
            how = "patched"
            if not (
                base is not None and base.exists() and _patch(con, source, entry, previous, key)
            ):
                how = "copied"
                con.execute(
                    f'create or replace table building.main."{table}" as select * from {source}'
                )
            con.execute("checkpoint building")
        finally:
            con.execute("detach building")
        wal = building.with_name(building.name + ".wal")
        if wal.exists():
            raise RuntimeError(
                f"{wal.name} left after checkpoint; not publishing a half-written table"
            )
        os.replace(building, target)
    finally:
        building.unlink(missing_ok=True)
    return entry, how


def _patch(
    con: duckdb.DuckDBPyConnection,
    source: str,
    entry: TableFile,
    previous: TableFile,
    key: tuple[str, ...],
) -> bool:
    """Bring the previous file's table (attached as ``building``) up to ``source``: replace the
    rows rebuilt since the previous publish, by key. False when the result would not be
    ``source`` (another schema, rows deleted), and the caller copies the table whole instead.
    """
    target = f'building.main."{entry.name}"'
    columns = _columns(con, source)
    if _columns(con, target) != columns:
        return False
    stamp_type = next(column[1] for column in columns if column[0] == STAMP)
    con.execute(
        f"create or replace temp table rebuilt as select * from {source}"
        f" where {STAMP} > cast(? as {stamp_type})",
        [previous.watermark],
    )
    matches = " and ".join(f'old."{column}" = rebuilt."{column}"' for column in key)
    con.execute(f"delete from {target} old using rebuilt where {matches}")
    con.execute(f"insert into {target} select * from rebuilt")
    check = f"select count(*), max({STAMP})::varchar from {target}"
    return con.execute(check).fetchone() == (entry.rows, entry.watermark)


def read_manifest(serving_dir: Path) -> dict:
    """The manifest in place (``serving.json``); raises FileNotFoundError before a publish."""
    return json.loads((serving_dir / VERSION).read_text())


def manifest_tables(manifest: dict) -> dict[str, TableFile]:
    """The manifest's tables by name (ValueError/KeyError/TypeError when it is malformed)."""
    return {
        name: TableFile(
            name,
            str(entry["file"]),
            str(entry["fingerprint"]),
            int(entry["rows"]),
            entry.get("watermark"),
        )
        for name, entry in manifest["tables"].items()
    }


def publish_snapshot(
    warehouse: Path,
    serving_dir: Path,
    *,
    tables: tuple[str, ...] = SERVING_TABLES,
    schema: str = "marts",
    keys: Mapping[str, tuple[str, ...]] | None = None,
) -> Published:
    """Publish ``tables`` (and when): write the changed ones, then swap the manifest.

    ``keys``: the unique key of each incremental mart (default: from dbt's manifest).
    """
    started = time.perf_counter()
    keys = incremental_keys() if keys is None else keys
    (serving_dir / TABLES).mkdir(parents=True, exist_ok=True)
    version = time.time_ns()
    published_at = dt.datetime.now(dt.UTC)
    try:
        previous = read_manifest(serving_dir)
        previous_tables = manifest_tables(previous)
    except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
        # the first publish, or the first after single-file snapshots: nothing to keep
        previous, previous_tables = {}, {}
    entries: dict[str, TableFile] = {}
    written: dict[str, str] = {}  # table -> how
    table_seconds: dict[str, float] = {}
    with duckdb.connect(":memory:") as con:
        con.execute(f"attach {_quote(warehouse)} as warehouse (read_only)")
        _snapshot_info(con, published_at)
        local = con.execute("select table_name from duckdb_tables() where database_name = 'memory'")
        sources = [(table, f'warehouse.{schema}."{table}"') for table in tables]
        sources += [(name, f'memory.main."{name}"') for (name,) in local.fetchall()]
        for table, source in sources:
            table_started = time.perf_counter()
            entries[table], how = _place(
                con, source, table, serving_dir, previous_tables.get(table), keys.get(table, ())
            )
            if how is not None:
                written[table] = how
            table_seconds[table] = time.perf_counter() - table_started
    rows = {name: entry.rows for name, entry in entries.items() if name in tables}
    current = {entry.file for entry in entries.values()}
    retired = _retire(serving_dir, previous, current, time.time())
    _write_json(
        serving_dir / VERSION,
        {
            "version": version,
            "published_at": published_at.isoformat(),
            "rows": rows,
            "tables": {
                name: {
                    "file": e.file,
                    "fingerprint": e.fingerprint,
                    "rows": e.rows,
                    "watermark": e.watermark,
                }
                for name, e in entries.items()
            },
            "retired": retired,
        },
    )
    _collect(serving_dir, keep=current | retired.keys())
    return Published(
        serving_dir / VERSION,
        version,
        rows,
        time.perf_counter() - started,
        tuple(written),
        tuple(table for table, how in written.items() if how == "patched"),
        table_seconds,
    )


def _retire(serving_dir: Path, previous: dict, current: set[str], now: float) -> dict[str, float]:
    """Files no longer named, with when they stopped being named, kept for ``RETAIN_SECONDS``.

    A reader that read an older manifest a moment ago may still be opening its files.
    """
    retired = {
        str(file): float(at)
        for file, at in previous.get("retired", {}).items()
        if now - float(at) < RETAIN_SECONDS
    }
    for entry in previous.get("tables", {}).values():
        retired.setdefault(str(entry["file"]), now)
    return {file: at for file, at in retired.items() if file not in current}


def _collect(serving_dir: Path, keep: set[str]) -> None:
    """Remove the table files no manifest needs any more (and the old single-file snapshot).

    A reader still on an older manifest has its files open, and an open file outlives its name;
    a file being written has a name no manifest holds yet and is left alone unless it is stale.
    """
    for path in (serving_dir / TABLES).iterdir():
        if f"{TABLES}/{path.name}" in keep:
            continue
        if path.name.endswith(".building") and time.time() - path.stat().st_mtime < 3600:
            continue
        path.unlink(missing_ok=True)
    (serving_dir / LEGACY_SNAPSHOT).unlink(missing_ok=True)


def connect(serving_dir: Path) -> duckdb.DuckDBPyConnection:
    """The snapshot in place as one read-only connection (every table by its plain name).

    For tools and tests; the dashboard keeps its own connection (``dashboard.data.Snapshot``).
    """
    con = duckdb.connect(":memory:")
    try:
        con.execute("set TimeZone = 'UTC'")
        aliases = []
        for index, entry in enumerate(manifest_tables(read_manifest(serving_dir)).values()):
            con.execute(f"attach {_quote(serving_dir / entry.file)} as t{index} (read_only)")
            aliases.append(f"t{index}.main")
        con.execute(f"set search_path = '{','.join(aliases)}'")
    except BaseException:
        con.close()
        raise
    return con


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
