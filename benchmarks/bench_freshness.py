"""End-to-end freshness: a booking made at a stand-in -> visible in the serving snapshot.

Runs the demo's live set-up in a scratch folder, on ports of its own, on top of a generated
history: the history's platform side imported into the booking API's store (its bookings and
events, as a year of the API would have left them), the stand-ins over the history's ledgers
and orders with traffic (members booking through the booking API, which runs beside them),
one pipeline run (the backfill: every event over the API's feed pages, the ledgers, the
orders, a full dbt build), then `dagster dev` (webserver and daemon) in live mode
(INGEST_LIVE=1) and beside it the live service's micro-batches (`python -m orchestration.live`). The
stand-ins log each booking the traffic makes with the instant the booking API answered it
(201 confirmed, or 202 pending an operator's approval: either way the booking is in the
store and its feed); the benchmark polls the serving snapshot and records when each booking first appears in `bookings`.
Target: p95 <= 30 s over >= 50 bookings, on top of a 1,000,000-booking history.

Each set-up step's wall time is reported, and so is each live cycle's (ingest, dbt build,
publish, from the live service's log), so a miss says where the time went.

    python -m benchmarks.bench_freshness --history-size 1000000 \
        --history data/sandbox/bench-1m --unlimited

``--history DIR`` keeps the generated history there and reuses it on later runs of the same
size; without it the history is generated into the scratch folder and removed with it.
``--unlimited`` lifts every rate limit for the backfill's sake: under the real ones Duffel's
60 requests a minute per token alone makes listing a million orders take over 80 minutes.
The booking API's own feed quota (600 requests a minute) stays: at 1000 events a page the
backfill of ~3.2 million events takes about 5.5 minutes of it.
"""

from __future__ import annotations

import argparse
import contextlib
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
from collections.abc import Iterator
from pathlib import Path

from benchmarks.bench_booking import lifted_tenants
from benchmarks.bench_standins import ensure_history
from benchmarks.common import Figure, report
from booking.history import describe, import_history
from orchestration import demo
from sandbox.config import DEFAULT_PORTS, SandboxConfig
from settings import STANDIN_PORT_RANGE, child_environment
from warehouse.publish import connect

ROOT = Path(__file__).resolve().parents[1]
# Ports of its own (the stand-ins' default ports + the offset), settable so runs beside others do not
# collide: --port-offset, --dagster-port, --api-port.
PORT_OFFSET = 600
DAGSTER_PORT = 3600
API_PORT = 8600
BOOKED = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) sandbox\.traffic INFO traffic booked (\S+) for "
)
CYCLE = re.compile(
    r"^live: cycle \d+ landed ([\d,]+) rows .* in ([\d.]+) s"
    r"(?: \(ingest ([\d.]+) s, dbt build ([\d.]+) s, publish ([\d.]+) s)?"
)
# A booking not visible this long after the last measured one was made is reported missing.
MISSING_AFTER = 240


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
    with connect(serving) as con:
        rows = con.execute(
            "select booking_id from bookings where booking_id in (select unnest(?))", [booking_ids]
        ).fetchall()
    return {row[0] for row in rows}


def _percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


LoggedCycle = tuple[int, float, float | None, float | None, float | None, bool]


def _cycles(log: Path) -> list[LoggedCycle]:
    """The live service's cycles from its log: (rows landed, seconds, ingest, dbt build,
    publish, whether it was a sweep), oldest first."""
    found = []
    for line in log.read_text(errors="replace").splitlines():
        match = CYCLE.match(line)
        if match:
            rows, seconds, *parts = match.groups()
            found.append(
                (
                    int(rows.replace(",", "")),
                    float(seconds),
                    *(float(part) if part else None for part in parts),
                    line.endswith(", a sweep)"),
                )
            )
    return found


def _dagster_dev(scratch: Path, env: dict[str, str], logs: Path, port: int) -> subprocess.Popen:
    """`dagster dev` started in the scratch folder, not the project's: it loads the ``.env`` of
    the folder it starts in OVER the environment (an empty ``BOOKING_OPERATOR_TOKEN=`` there
    would blank the benchmark's token, and the live job would read no booking events)."""
    workspace = scratch / "workspace.yaml"
    workspace.write_text(
        "load_from:\n"
        "  - python_module:\n"
        "      module_name: definitions\n"
        f"      working_directory: {json.dumps(str(ROOT))}\n"
    )
    command = [
        str(Path(sys.executable).parent / "dagster"),
        *("dev", "-w", str(workspace), "-p", str(port)),
    ]
    log = open(logs / "dagster.log", "ab")  # noqa: SIM115 - the child process owns it
    print(f"  starting dagster (log: {log.name})", flush=True)
    process = subprocess.Popen(
        command, cwd=scratch, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    return process


class _Steps:
    """Wall time of each set-up step, printed as it ends and reported with the figures."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []

    @contextlib.contextmanager
    def timed(self, label: str) -> Iterator[None]:
        print(f"freshness: {label} ...", flush=True)
        started = time.perf_counter()
        yield
        seconds = time.perf_counter() - started
        print(f"freshness: {label}: {seconds:.1f} s", flush=True)
        self.figures.append(Figure("freshness", f"set-up: {label}", seconds, "s"))


def run(
    bookings: int = 50,
    traffic: float = 30.0,
    history_size: int = 20_000,
    keep: bool = False,
    history_dir: Path | None = None,
    unlimited: bool = False,
    port_offset: int = PORT_OFFSET,
    dagster_port: int = DAGSTER_PORT,
    api_port: int = API_PORT,
) -> list[Figure]:
    scratch = Path(tempfile.mkdtemp(prefix="bench-freshness-"))
    if keep:
        print(f"freshness: keeping {scratch} (logs, data, Dagster instance)", flush=True)
    steps = _Steps()
    try:
        logs, data, serving = scratch / "logs", scratch / "data", scratch / "data" / "serving"
        logs.mkdir()
        history = history_dir or scratch / "history"
        with steps.timed(f"history of {history_size:,} bookings (generated or reused)"):
            ensure_history(history_size, history)
        store = f"sqlite:///{scratch / 'booking.sqlite3'}"
        with steps.timed("import of the history into the booking store (SQLite)"):
            print(describe(import_history(store, history), history), flush=True)
        urls = {
            name: f"http://127.0.0.1:{port + port_offset}" for name, port in DEFAULT_PORTS.items()
        }
        env = child_environment(
            {
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
                "BOOKING_API_URL": f"http://127.0.0.1:{api_port}",
                "BOOKING_OPERATOR_TOKEN": secrets.token_urlsafe(32),
            }
        )
        if unlimited:  # the clients pace themselves by the tenant files' limits: lifted too
            env["TENANTS_DIR"] = str(lifted_tenants(scratch / "tenants"))
        api_env = {**env, "BOOKING_DATABASE_URL": store}
        (scratch / "dagster_home").mkdir()
        (scratch / "dagster_home" / "dagster.yaml").write_bytes(
            (ROOT / "deploy" / "dagster.yaml").read_bytes()
        )
        children: dict[str, subprocess.Popen] = {}
        try:
            limits = "rate limits lifted" if unlimited else "the real rate limits"
            with steps.timed(f"stand-ins up ({limits}), {traffic:g} bookings/min of traffic"):
                children["sandbox"] = demo.start_child(
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
                        str(port_offset),
                        *(["--unlimited"] if unlimited else []),
                    ],
                    env,
                    logs,
                )
                for url in urls.values():
                    demo.wait_healthy(f"{url}/health", 1800, children["sandbox"], "sandbox")
            # The API after the stand-ins: it is healthy once it reaches them.
            with steps.timed("booking API up"):
                children["booking-api"] = demo.start_child(
                    "booking-api",
                    [sys.executable, "-m", "booking", "--port", str(api_port)],
                    api_env,
                    logs,
                )
                demo.wait_healthy(
                    f"{env['BOOKING_API_URL']}/api/v1/health",
                    300,
                    children["booking-api"],
                    "booking-api",
                )
            with (
                steps.timed("first pipeline run (backfill: ingest all, full dbt build, publish)"),
                open(logs / "pipeline.log", "wb") as out,
            ):
                subprocess.run(
                    [sys.executable, "-m", "orchestration.pipeline"],
                    cwd=ROOT,
                    env=env,
                    check=True,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                )
            for line in (logs / "pipeline.log").read_text(errors="replace").splitlines():
                if line.lstrip().startswith(("✓", "✗", "!")):
                    print(f"  pipeline:{line}", flush=True)
            first = _version(serving)
            with steps.timed("dagster dev up in live mode (INGEST_LIVE=1)"):
                children["dagster"] = _dagster_dev(scratch, env, logs, dagster_port)
                demo.wait_healthy(
                    f"http://127.0.0.1:{dagster_port}/server_info",
                    300,
                    children["dagster"],
                    "dagster",
                )
                children["live"] = demo.start_child(
                    "live", [sys.executable, "-m", "orchestration.live"], env, logs
                )
            # Warm-up: measure from the first snapshot the running pipeline publishes.
            with steps.timed("first live publish (warm-up)"):
                deadline = time.monotonic() + 1800
                while _version(serving) == first:
                    if time.monotonic() > deadline:
                        raise RuntimeError("the running pipeline published nothing in 30 minutes")
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
                if time.time() - last_made > MISSING_AFTER:
                    break  # the rest never showed up: reported as missing
                time.sleep(0.25)
            window = time.time() - started
            load = os.getloadavg()
        finally:
            demo.stop_children(children, None)
        cycles = _cycles(logs / "live.log")
    finally:
        if not keep:
            shutil.rmtree(scratch, ignore_errors=True)
    latencies = [seen[b] - made[b] for b in measured if b in seen]
    missing = len(measured) - len(latencies)
    if not latencies:
        raise RuntimeError("no measured booking became visible")
    figures = [
        Figure("freshness", "history", history_size, "bookings", ">= 1,000,000"),
        *steps.figures,
        Figure("freshness", "bookings measured", len(measured), "bookings", ">= 50"),
        Figure(
            "freshness",
            f"bookings never visible (within {MISSING_AFTER} s)",
            missing,
            "bookings",
            "0",
        ),
        Figure("freshness", "201 -> visible, p50", statistics.median(latencies), "s"),
        Figure("freshness", "201 -> visible, p95", _percentile(latencies, 0.95), "s", "<= 30 s"),
        Figure("freshness", "201 -> visible, max", max(latencies), "s"),
        Figure("freshness", "snapshots published per minute", publishes * 60 / window, "/min"),
        Figure("freshness", "load average (1 min) at the end of the window", load[0], ""),
    ]
    # The live cycles of the measuring window (the first one, the warm-up, is left out).
    window_cycles = cycles[1:] or cycles
    if window_cycles:
        figures.append(Figure("freshness", "live cycles", len(window_cycles), "cycles"))
        sweeps = [c[1] for c in window_cycles if c[5]]
        figures.append(Figure("freshness", "live cycles that were sweeps", len(sweeps), "cycles"))
        if sweeps:
            figures.append(Figure("freshness", "live sweep cycle, max", max(sweeps), "s"))
        for index, label in ((1, "total"), (2, "ingest"), (3, "dbt build"), (4, "publish")):
            values = [c[index] for c in window_cycles if c[index] is not None]
            if values:
                figures.append(
                    Figure(
                        "freshness", f"live cycle {label}, median", statistics.median(values), "s"
                    )
                )
                figures.append(Figure("freshness", f"live cycle {label}, max", max(values), "s"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bookings", type=int, default=50)
    parser.add_argument("--traffic", type=float, default=30.0, help="bookings per minute")
    parser.add_argument("--history-size", type=int, default=20_000)
    parser.add_argument(
        "--history", type=Path, help="generate the history here once and reuse it on later runs"
    )
    parser.add_argument(
        "--unlimited",
        action="store_true",
        help="lift every rate limit: the stand-ins' and the clients' own (tenant files with "
        "lifted limits in TENANTS_DIR); Duffel's 60 requests/min makes the backfill of a "
        "million orders take 1M / 200 a page / 60 a minute = 83 min on its own",
    )
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder to inspect")
    parser.add_argument(
        "--port-offset",
        type=int,
        default=PORT_OFFSET,
        help=f"added to the stand-ins' {STANDIN_PORT_RANGE}",
    )
    parser.add_argument("--dagster-port", type=int, default=DAGSTER_PORT)
    parser.add_argument("--api-port", type=int, default=API_PORT)
    args = parser.parse_args()
    report(
        "freshness",
        run(
            args.bookings,
            args.traffic,
            args.history_size,
            args.keep,
            args.history,
            args.unlimited,
            args.port_offset,
            args.dagster_port,
            args.api_port,
        ),
    )


if __name__ == "__main__":
    main()
