"""Publish the marts the dashboard reads as a read-only serving snapshot, swapped in atomically.

DuckDB lets one process write a file and blocks every reader meanwhile, so the dashboard
never opens the warehouse: it reads ``serving.duckdb``, a copy built under a new name,
checkpointed, closed and renamed over the old one. A reader that has the old file open
keeps its consistent old snapshot; the next open sees the new one.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb

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
    "daily_usd_rates",
    "booking_failures",
)
SNAPSHOT = "serving.duckdb"
VERSION = "serving.json"  # small file the dashboard polls to notice a new snapshot
HEALTH_ENTITIES = (("loyalty", "ledger_transactions"), ("loyalty", "members"), ("duffel", "orders"))
_PER_TENANT = "select tenant_id, count(*) as n, max(_loaded_at) as at from read_parquet(?, hive_partitioning = true) group by tenant_id"
_NOTHING = "select null::varchar as tenant_id, 0 as n, null::timestamptz as at where false"
# Quarantine is a dead-letter store: an entry stays open until a newer valid version, or a
# replay, resolves it (a file in `resolved/` beside it, keyed by batch, record and payload digest).
_OPEN_PER_TENANT = (
    "select q.tenant_id, count(*) as n, max(q._loaded_at) as at"
    " from read_parquet(?, hive_partitioning = true) q"
    " anti join read_parquet(?, hive_partitioning = true) r on r.tenant_id = q.tenant_id"
    " and r._batch_id = q._batch_id and r.record_key is not distinct from q.record_key"
    " and r.payload_digest = left(sha256(q.raw_payload), 24)"
    " group by q.tenant_id"
)


@dataclass(frozen=True)
class Published:
    path: Path
    version: int
    rows: dict[str, int]
    seconds: float


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _health(
    con: duckdb.DuckDBPyConnection, landing_root: Path | None, published_at: dt.datetime
) -> None:
    """Tables for the dashboard's data-health page: what landed when, what was quarantined."""
    con.execute(
        "create table landing_health (tenant_id varchar, source varchar, entity varchar, rows_landed bigint, "
        "last_loaded_at timestamptz, quarantined bigint, last_quarantined_at timestamptz)"
    )
    con.execute("create table snapshot_info (published_at timestamptz)")
    con.execute("insert into snapshot_info values (?)", [published_at])
    if landing_root is None:
        return
    quarantine_root = landing_root.parent / "quarantine"
    for source, entity in HEALTH_ENTITIES:
        landed = [
            str(p) for p in sorted((landing_root / source / entity).glob("tenant_id=*/*.parquet"))
        ]
        folder = quarantine_root / source / entity
        rejected = [str(p) for p in sorted(folder.glob("tenant_id=*/*.parquet"))]
        resolved = [str(p) for p in sorted(folder.glob("tenant_id=*/resolved/*.parquet"))]
        if not landed and not rejected:
            continue
        landed_sql, landed_args = (_PER_TENANT, [landed]) if landed else (_NOTHING, [])
        if not rejected:
            open_sql, open_args = _NOTHING, []
        elif resolved:
            open_sql, open_args = _OPEN_PER_TENANT, [rejected, resolved]
        else:
            open_sql, open_args = _PER_TENANT, [rejected]
        con.execute(
            f"insert into landing_health select coalesce(l.tenant_id, q.tenant_id), ?, ?, coalesce(l.n, 0), "
            f"l.at, coalesce(q.n, 0), q.at from ({landed_sql}) l "
            f"full outer join ({open_sql}) q on l.tenant_id = q.tenant_id",
            [source, entity, *landed_args, *open_args],
        )


def publish_snapshot(
    warehouse: Path,
    serving_dir: Path,
    *,
    landing_root: Path | None = None,
    tables: tuple[str, ...] = SERVING_TABLES,
    schema: str = "marts",
) -> Published:
    """Copy ``tables`` (and landing health) into a fresh file and swap it in as the serving snapshot."""
    started = time.perf_counter()
    serving_dir.mkdir(parents=True, exist_ok=True)
    version = time.time_ns()
    published_at = dt.datetime.now(dt.UTC)
    building = serving_dir / f"serving-{version}.duckdb"
    rows = {}
    try:
        with duckdb.connect(str(building)) as con:
            con.execute(f"attach {_quote(warehouse)} as warehouse (read_only)")
            for table in tables:
                con.execute(
                    f'create table main."{table}" as select * from warehouse.{schema}."{table}"'
                )
                rows[table] = con.execute(f'select count(*) from main."{table}"').fetchone()[0]
            con.execute("detach warehouse")
            _health(con, landing_root, published_at)
            con.execute("checkpoint")
        wal = building.with_name(building.name + ".wal")
        if wal.exists():
            raise RuntimeError(
                f"{wal.name} left after checkpoint; not publishing a half-written snapshot"
            )
        os.replace(building, serving_dir / SNAPSHOT)
    finally:
        building.unlink(missing_ok=True)
    _write_json(
        serving_dir / VERSION,
        {"version": version, "published_at": published_at.isoformat(), "rows": rows},
    )
    return Published(serving_dir / SNAPSHOT, version, rows, time.perf_counter() - started)


def _write_json(path: Path, payload: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    os.replace(tmp, path)
