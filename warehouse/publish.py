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

import dagster as dg
import duckdb

from settings import SERVING_FILE, SERVING_VERSION_FILE

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
SNAPSHOT = SERVING_FILE
VERSION = SERVING_VERSION_FILE  # small file the dashboard polls to notice a new snapshot


@dataclass(frozen=True)
class Published:
    path: Path
    version: int
    rows: dict[str, int]
    seconds: float


def _quote(path: Path) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _snapshot_info(con: duckdb.DuckDBPyConnection, published_at: dt.datetime) -> None:
    """When this snapshot was published, for the dashboard's data-health page."""
    con.execute("create table snapshot_info (published_at timestamptz)")
    con.execute("insert into snapshot_info values (?)", [published_at])


def publish_snapshot(
    warehouse: Path,
    serving_dir: Path,
    *,
    tables: tuple[str, ...] = SERVING_TABLES,
    schema: str = "marts",
) -> Published:
    """Copy ``tables`` into a fresh file and swap it in as the serving snapshot."""
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
            _snapshot_info(con, published_at)
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
