"""Peer comparison: our ingestion vs a dlt ``rest_api`` pipeline into DuckDB, same endpoints.

Both pull, from the same stand-ins (their own process, limits lifted), CoffeeChain's ledger
feed (API key header, ``next_cursor`` pagination, pages of 1,000) and CoffeeChain's Duffel
orders (bearer token, ``Duffel-Version: v2``, ``meta.after`` pagination, pages of 200), from
scratch, until both are exhausted:

- ours: ``ingestion.sync.sync_ledger`` + ``sync_orders`` (validated, typed, Parquet);
- dlt: two ``rest_api_source`` s, ``pipeline.run`` into a DuckDB file with Parquet load files
  (otherwise dlt's defaults: schema inference, nested lists normalised into child tables).

Target: ours >= 3x faster. dlt is a benchmark-only dependency (``uv sync --group bench``).

    python -m benchmarks.bench_dlt                 # 100,000 bookings (~45k orders, ~104k ledger)
    python -m benchmarks.bench_dlt --size 50000 --repeats 1
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import bench_ingest
from benchmarks.bench_ingest import client_env, standins
from benchmarks.common import Figure, report

TENANT = "coffeechain"
TARGET_RATIO = 3.0
MEMORY_CAP_BYTES = 8 * 2**30
# dlt's default for DuckDB (insert_values) ran DuckDB out of memory loading the orders' nested
# segment table even for 20,000 bookings (and retried forever); Parquet load files do not.
FILE_FORMAT = "parquet"


def ensure_history(size: int, seed: int = 7) -> Path:
    """A generated history for this comparison, made once and reused."""
    path = Path(f"data/sandbox/bench-dlt-{size}")
    manifest = path / "manifest.json"
    if not manifest.exists() or json.loads(manifest.read_text())["size"] != size:
        from sandbox.generator import generate

        print(f"generating {size:,} bookings into {path} ...", flush=True)
        generate(size, seed, path)
    return path


def _ours(offset: int) -> dict[str, Any]:
    from benchmarks.bench_ingest import _quiet_quarantine, _tenant
    from clients.duffel.client import build_duffel_client
    from clients.loyalty.client import build_loyalty_client
    from ingestion.landing.zone import LandingZone
    from ingestion.sync import sync_ledger, sync_orders

    _quiet_quarantine()  # the clients: pointed at the stand-ins by ``_child``'s environment
    tenant = _tenant(TENANT, lifted=True)
    with tempfile.TemporaryDirectory(prefix="bench-ours-") as tmp:
        zone = LandingZone.under(Path(tmp))
        started = time.perf_counter()
        with build_loyalty_client(tenant) as client:
            ledger = sync_ledger(client, zone, TENANT)
        with build_duffel_client(tenant) as duffel:
            orders = sync_orders(duffel, zone, TENANT)
        seconds = time.perf_counter() - started
    return {
        "seconds": seconds,
        "ledger": ledger.fetched,
        "orders": orders.fetched,
        "ledger_seconds": ledger.seconds,
        "orders_seconds": orders.seconds,
    }


def _dlt(offset: int) -> dict[str, Any]:
    # Guard the machine: a first attempt left to DuckDB's defaults (memory_limit 80 % of RAM)
    # grew past 20 GB while loading. Cap the process and give DuckDB a bounded budget.
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP_BYTES, MEMORY_CAP_BYTES))
    import dlt
    import duckdb
    from dlt.sources.rest_api import rest_api_source

    env = client_env(offset)
    ledger = rest_api_source(
        {
            "client": {
                "base_url": env["COFFEECHAIN_API_URL"],
                "auth": {
                    "type": "api_key",
                    "name": "X-CC-API-Key",
                    "api_key": env["COFFEECHAIN_API_KEY"],
                    "location": "header",
                },
            },
            "resources": [
                {
                    "name": "ledger_transactions",
                    "endpoint": {
                        "path": "/api/v1/ledger/transactions",
                        "params": {"limit": 1000},
                        "data_selector": "data",
                        "paginator": {
                            "type": "cursor",
                            "cursor_path": "next_cursor",
                            "cursor_param": "cursor",
                        },
                    },
                }
            ],
        },
        name="coffeechain",
    )
    orders = rest_api_source(
        {
            "client": {
                "base_url": env["DUFFEL_BASE_URL"],
                "auth": {"type": "bearer", "token": env["COFFEECHAIN_DUFFEL_TOKEN"]},
                "headers": {"Duffel-Version": "v2", "Accept-Encoding": "gzip"},
            },
            "resources": [
                {
                    "name": "orders",
                    "endpoint": {
                        "path": "/air/orders",
                        "params": {"limit": 200},
                        "data_selector": "data",
                        "paginator": {
                            "type": "cursor",
                            "cursor_path": "meta.after",
                            "cursor_param": "after",
                        },
                    },
                }
            ],
        },
        name="duffel",
    )
    with tempfile.TemporaryDirectory(prefix="bench-dlt-") as tmp:
        pipeline = dlt.pipeline(
            pipeline_name="bench_dlt",
            pipelines_dir=str(Path(tmp) / "pipelines"),
            destination=dlt.destinations.duckdb(
                duckdb.connect(
                    str(Path(tmp) / "dlt.duckdb"),
                    config={"memory_limit": "2GB", "threads": 2},
                )
            ),
            dataset_name="raw",
        )
        started = time.perf_counter()
        pipeline.run(ledger, loader_file_format=FILE_FORMAT)
        ledger_seconds = time.perf_counter() - started
        pipeline.run(orders, loader_file_format=FILE_FORMAT)
        seconds = time.perf_counter() - started
        with pipeline.sql_client() as sql:
            counts = {
                table: sql.execute_sql(f"select count(*) from {table}")[0][0]
                for table in ("ledger_transactions", "orders")
            }
    return {
        "seconds": seconds,
        "ledger": counts["ledger_transactions"],
        "orders": counts["orders"],
        "ledger_seconds": ledger_seconds,
        "orders_seconds": seconds - ledger_seconds,
    }


def _child(mode: str, offset: int) -> dict[str, Any]:
    telemetry_off = {"RUNTIME__DLTHUB_TELEMETRY": "false"}
    return bench_ingest._child(mode, offset, [], module="benchmarks.bench_dlt", env=telemetry_off)


def run(size: int, repeats: int) -> list[Figure]:
    try:
        import dlt  # noqa: F401
    except ImportError:
        print("dlt is not installed: `uv sync --group bench` (benchmark-only dependency)")
        return [Figure("dlt", "dlt installed", 0, "", "uv sync --group bench")]
    history = ensure_history(size)
    ours, theirs = [], []
    with standins(history, unlimited=True, offset_hint=900) as offset:
        for attempt in range(repeats):
            print(f"run {attempt + 1}/{repeats}: ours ...", flush=True)
            ours.append(_child("_ours", offset))
            print(f"  {ours[-1]}")
            print(f"run {attempt + 1}/{repeats}: dlt ...", flush=True)
            theirs.append(_child("_dlt", offset))
            print(f"  {theirs[-1]}")
    label = f"CoffeeChain ledger + Duffel orders, {size:,} bookings"
    ours_best = min(r["seconds"] for r in ours)
    dlt_best = min(r["seconds"] for r in theirs)
    ours_median = statistics.median(r["seconds"] for r in ours)
    dlt_median = statistics.median(r["seconds"] for r in theirs)
    figures = [
        Figure("dlt", f"{label}: ours (best)", ours_best, "s"),
        Figure("dlt", f"{label}: ours (median)", ours_median, "s"),
        Figure("dlt", f"{label}: dlt rest_api -> duckdb (best)", dlt_best, "s"),
        Figure("dlt", f"{label}: dlt rest_api -> duckdb (median)", dlt_median, "s"),
        Figure("dlt", "ours faster than dlt (best vs best)", dlt_best / ours_best, "x", ">= 3x"),
        Figure(
            "dlt", "ours faster than dlt (median vs median)", dlt_median / ours_median, "x", ">= 3x"
        ),
        Figure(
            "dlt",
            "records pulled (ledger + orders)",
            ours[0]["ledger"] + ours[0]["orders"],
            "records",
        ),
    ]
    for entity in ("ledger", "orders"):
        best_ours = min(r[f"{entity}_seconds"] for r in ours)
        best_dlt = min(r[f"{entity}_seconds"] for r in theirs)
        figures.append(
            Figure(
                "dlt", f"{entity}: ours faster than dlt (best vs best)", best_dlt / best_ours, "x"
            )
        )
        if ours[0][entity] != theirs[0][entity]:
            print(
                f"note: {entity}: ours fetched {ours[0][entity]:,}, dlt loaded {theirs[0][entity]:,}"
            )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="run", choices=("run", "_ours", "_dlt"))
    parser.add_argument("--size", type=int, default=100_000, help="bookings in the history")
    parser.add_argument("--repeats", type=int, default=2, help="runs of each (best and median)")
    parser.add_argument("--port-offset", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "_ours":
        args.json.write_text(json.dumps(_ours(args.port_offset)))
    elif args.mode == "_dlt":
        args.json.write_text(json.dumps(_dlt(args.port_offset)))
    else:
        report("dlt", run(args.size, args.repeats))


if __name__ == "__main__":
    main()
