"""End-to-end freshness: a booking made at a stand-in -> visible in the serving snapshot.

Runs the demo's live set-up in a scratch folder, on ports of its own: the stand-ins with
traffic (members booking through the booking API, which runs beside them), one pipeline run,
then `dagster dev` (webserver and daemon) in live mode (INGEST_LIVE=1: the live job's
micro-batches, live.py). The stand-ins log each booking the traffic makes with the instant
the booking API answered it; the benchmark polls the serving snapshot and records when
each booking first appears in `bookings`. Target: p95 <= 60 s over >= 20 bookings.

    python -m benchmarks.bench_freshness --bookings 24
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb

import demo
from benchmarks.common import Figure, report
from sandbox.config import DEFAULT_PORTS, SandboxConfig
from sandbox.generator import generate

ROOT = Path(__file__).resolve().parents[1]
PORT_OFFSET = 600
DAGSTER_PORT = 3600
API_PORT = 8600
BOOKED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) sandbox\.traffic INFO traffic booked (\S+) for "
)


def _booked(log: Path) -> dict[str, float]:
    """booking id -> when the stand-ins made it (epoch seconds), from the stand-ins' log."""
    made = {}
    for line in log.read_text(errors="replace").splitlines():
        match = BOOKED.match(line)
        if match:
            at = dt.datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
            made[match.group(2)] = at.timestamp()  # the log's local time, this machine's clock
    return made


def _version(serving: Path) -> str | None:
    try:
        return json.loads((serving / "serving.json").read_text())["version"]
    except (FileNotFoundError, json.JSONDecodeError, KeyError):
        return None


def _visible(serving: Path, booking_ids: list[str]) -> set[str]:
    with duckdb.connect(str(serving / "serving.duckdb"), read_only=True) as con:
        rows = con.execute(
            "select booking_id from bookings where booking_id in (select unnest(?))", [booking_ids]
        ).fetchall()
    return {row[0] for row in rows}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run(
    bookings: int = 24, traffic: float = 30.0, history_size: int = 20_000, keep: bool = False
) -> list[Figure]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    if keep:
        print(f"freshness: keeping {scratch} (logs, data, Dagster instance)", flush=True)
    try:
        logs, data, serving = scratch / "logs", scratch / "data", scratch / "data" / "serving"
        logs.mkdir()
        history = scratch / "history"
        print(f"freshness: generating {history_size:,} bookings of history", flush=True)
        generate(history_size, 7, history)
        urls = {
            name: f"http://127.0.0.1:{port + PORT_OFFSET}" for name, port in DEFAULT_PORTS.items()
        }
        env = {
            **os.environ,
            "DATA_DIR": str(data),
            "DAGSTER_HOME": str(scratch / "dagster_home"),
            "DAGSTER_DISABLE_TELEMETRY": "1",
            "DO_NOT_TRACK": "1",
            "INGEST_LIVE": "1",
            "COFFEECHAIN_API_URL": urls["coffeechain"],
            "TELCOCORP_API_URL": urls["telcocorp"],
            "FINTECHAPP_API_URL": urls["fintechapp"],
            "DUFFEL_BASE_URL": urls["duffel"],
            **{
                name: value
                for name, value in demo.standin_env(SandboxConfig()).items()
                if not name.endswith("_URL")
            },
            # The traffic books through the API; the pipeline reads its feeds.
            "BOOKING_API_URL": f"http://127.0.0.1:{API_PORT}",
            "BOOKING_OPERATOR_TOKEN": secrets.token_urlsafe(32),
        }
        api_env = {**env, "BOOKING_DATABASE_URL": f"sqlite:///{scratch / 'booking.sqlite3'}"}
        (scratch / "dagster_home").mkdir()
        (scratch / "dagster_home" / "dagster.yaml").write_bytes(
            (ROOT / "deploy" / "dagster.yaml").read_bytes()
        )
        children: list[tuple[str, subprocess.Popen]] = []
        try:
            print(f"freshness: stand-ins with {traffic:g} bookings/min of traffic", flush=True)
            children.append(
                demo.start_child(
                    "sandbox",
                    [
                        sys.executable,
                        "-m",
                        "sandbox",
                        "serve",
                        "--history",
                        str(history),
                        "--traffic",
                        str(traffic),
                        "--port-offset",
                        str(PORT_OFFSET),
                    ],
                    env,
                    logs,
                )
            )
            for url in urls.values():
                demo.wait_healthy(f"{url}/health", 60, children[0][1])
            children.append(
                demo.start_child(
                    "booking-api",
                    [sys.executable, "-m", "booking", "--port", str(API_PORT)],
                    api_env,
                    logs,
                )
            )
            demo.wait_healthy(f"{env['BOOKING_API_URL']}/api/v1/health", 60, children[-1][1])
            print("freshness: first pipeline run", flush=True)
            subprocess.run(
                [sys.executable, "pipeline.py"], cwd=ROOT, env=env, check=True, capture_output=True
            )
            print("freshness: dagster dev in live mode (INGEST_LIVE=1)", flush=True)
            children.append(
                demo.start_child(
                    "dagster",
                    [
                        str(Path(sys.executable).parent / "dagster"),
                        "dev",
                        "-w",
                        "workspace.yaml",
                        "-p",
                        str(DAGSTER_PORT),
                    ],
                    env,
                    logs,
                )
            )
            demo.wait_healthy(f"http://127.0.0.1:{DAGSTER_PORT}/server_info", 120, children[-1][1])
            # Warm-up: measure from the first snapshot the running pipeline publishes.
            first = _version(serving)
            deadline = time.monotonic() + 300
            while _version(serving) == first:
                if time.monotonic() > deadline:
                    raise RuntimeError("the running pipeline published nothing in 5 minutes")
                time.sleep(0.5)
            started = time.time()
            publishes = 0
            print(f"freshness: measuring {bookings} bookings made from now on", flush=True)
            seen: dict[str, float] = {}
            version = _version(serving)
            while True:
                made = {
                    booking: at
                    for booking, at in _booked(logs / "sandbox.log").items()
                    if at >= started
                }
                measured = sorted(made, key=made.get)[:bookings]
                current = _version(serving)
                if current != version:
                    version, publishes = current, publishes + 1
                    pending = [booking for booking in measured if booking not in seen]
                    now = time.time()
                    for booking in _visible(serving, pending):
                        seen[booking] = now
                if len(measured) == bookings and all(booking in seen for booking in measured):
                    break
                last_made = max((made[b] for b in measured), default=started)
                if time.time() - last_made > 240:
                    break  # the rest never showed up: reported as missing
                time.sleep(0.25)
            window = time.time() - started
        finally:
            demo.stop_children(children)
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    latencies = [seen[b] - made[b] for b in measured if b in seen]
    missing = len(measured) - len(latencies)
    if not latencies:
        raise RuntimeError("no measured booking became visible")
    return [
        Figure("freshness", "bookings measured", len(measured), "bookings", ">= 20"),
        Figure("freshness", "bookings never visible (within 240 s)", missing, "bookings", "0"),
        Figure("freshness", "made -> visible, p50", statistics.median(latencies), "s"),
        Figure("freshness", "made -> visible, p95", _percentile(latencies, 0.95), "s", "<= 60 s"),
        Figure("freshness", "made -> visible, max", max(latencies), "s"),
        Figure("freshness", "snapshots published per minute", publishes * 60 / window, "/min"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, default=24)
    parser.add_argument("--traffic", type=float, default=30.0, help="bookings per minute")
    parser.add_argument("--history-size", type=int, default=20_000)
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder to inspect")
    args = parser.parse_args()
    report("freshness", run(args.bookings, args.traffic, args.history_size, args.keep))


if __name__ == "__main__":
    main()
