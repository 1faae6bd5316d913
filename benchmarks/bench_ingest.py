"""Ingestion end to end: a full backfill of a generated history, and a run at the real limits.

Backfill (stand-ins' limits lifted): every tenant's ledger, member list and Duffel orders, plus
Duffel's airlines and airports, pulled through the platform's clients by the same functions the
Dagster assets call (``ingestion.sync``), validated, typed and landed as Parquet.
Targets: ledger >= 50,000 records/s, Duffel orders >= 10,000 orders/s, peak RSS <= 1 GB.

Real limits: each tenant's ledger feed and Duffel orders pulled concurrently for a fixed time
with the registry's rate limits (the stand-ins enforce the same ones). Target: in every complete
server window the achieved request rate is >= 95 % of the limit, with zero 429 responses.

The stand-ins run in their OWN process (``python -m sandbox serve``), so the figures are the
client's; the backfill runs in a child process, so its peak RSS is ingestion's alone.

    python -m benchmarks.bench_ingest                       # 1,000,000 bookings, 3 backfills
    python -m benchmarks.bench_ingest --history data/sandbox/test-1m --repeats 1
    python -m benchmarks.bench_ingest --skip-limits         # the backfill only
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

from benchmarks.common import Figure, report
from settings import STANDIN_PORTS, child_environment

TENANTS = ("coffeechain", "telcocorp", "fintechapp")
DEFAULT_PORTS = STANDIN_PORTS
LEDGER_TARGET = 50_000
ORDERS_TARGET = 10_000
RSS_TARGET_MB = 1024
RATE_TARGET = 0.95


# ---- stand-ins in their own process -------------------------------------------------


def _free_offset(start: int) -> int:
    """A port offset whose four stand-in ports are all free on loopback."""
    for offset in range(start, start + 2000, 10):
        try:
            for port in DEFAULT_PORTS.values():
                with socket.socket() as probe:
                    probe.bind(("127.0.0.1", port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free ports for the stand-ins")


def client_env(offset: int) -> dict[str, str]:
    """What ``Sandbox.client_env()`` gives, for stand-ins started by ``python -m sandbox serve``."""
    url = {name: f"http://127.0.0.1:{port + offset}" for name, port in DEFAULT_PORTS.items()}
    env = {
        "COFFEECHAIN_API_URL": url["coffeechain"],
        "TELCOCORP_API_URL": url["telcocorp"],
        "FINTECHAPP_API_URL": url["fintechapp"],
        "DUFFEL_BASE_URL": url["duffel"],
        "COFFEECHAIN_API_KEY": "test_cc_api_key_12345",
        "TELCOCORP_CLIENT_ID": "telcocorp_client_id",
        "TELCOCORP_CLIENT_SECRET": "telcocorp_client_secret",
        "FINTECHAPP_PARTNER_ID": "partner_analytics",
        "FINTECHAPP_PARTNER_SECRET": "fintechapp_partner_secret",
    }
    for tenant in TENANTS:
        env[f"{tenant.upper()}_DUFFEL_TOKEN"] = f"duffel_test_{tenant}_sandbox"
    return env


@contextlib.contextmanager
def standins(history: Path, *, unlimited: bool, offset_hint: int) -> Iterator[int]:
    """Run ``python -m sandbox serve`` in a process of its own; yields the port offset."""
    offset = _free_offset(offset_hint)
    command = [
        sys.executable,
        "-m",
        "sandbox",
        "serve",
        "--history",
        str(history),
        "--port-offset",
        str(offset),
    ]
    if unlimited:
        command.append("--unlimited")
    with tempfile.NamedTemporaryFile("w+", prefix="standins-", suffix=".log") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_healthy(server, offset, log.name)
            yield offset
        finally:
            server.send_signal(signal.SIGTERM)
            try:
                server.wait(timeout=30)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _wait_healthy(server: subprocess.Popen, offset: int, log: str) -> None:
    deadline = time.monotonic() + 180
    health = f"http://127.0.0.1:{DEFAULT_PORTS['duffel'] + offset}/health"
    while True:
        if server.poll() is not None:
            raise RuntimeError(f"the stand-ins exited: {Path(log).read_text()[-2000:]}")
        try:
            if httpx.get(health, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError("the stand-ins did not start within 180 s")
        time.sleep(0.5)


def _child(
    mode: str,
    offset: int,
    extra: list[str],
    module: str = "benchmarks.bench_ingest",
    env: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Run ``module``'s ``mode`` in a child process, its clients pointed at the stand-ins
    through its environment (plus ``env``), and read back its JSON result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        subprocess.run(
            [
                sys.executable,
                "-m",
                module,
                mode,
                "--port-offset",
                str(offset),
                "--json",
                out.name,
                *extra,
            ],
            env=child_environment(client_env(offset), env or {}),
            check=True,
        )
        return json.loads(Path(out.name).read_text())


def _quiet_quarantine() -> None:
    # Quarantined records are counted in the figures; one warning line each is noise here.
    logging.getLogger("ingestion").setLevel(logging.ERROR)


def _tenant(name: str, *, lifted: bool):
    """The registry entry; with ``lifted`` our own client-side quotas are raised too."""
    from tenants.registry import load_registry

    tenant = load_registry()[name]
    if not lifted:
        return tenant
    lifted_limit = {"requests": 10**9}
    return tenant.model_copy(
        update={
            "rate_limit": tenant.rate_limit.model_copy(update=lifted_limit),
            "duffel": tenant.duffel.model_copy(
                update={"rate_limit": tenant.duffel.rate_limit.model_copy(update=lifted_limit)}
            ),
        }
    )


# ---- child: one full backfill ---------------------------------------------------------


def _backfill(offset: int, streams: int) -> dict[str, Any]:
    from clients.duffel.client import build_duffel_client
    from clients.loyalty.client import build_loyalty_client
    from ingestion.landing.zone import LandingZone
    from ingestion.sync import snapshot_members, snapshot_reference, sync_ledger, sync_orders

    _quiet_quarantine()  # the clients: pointed at the stand-ins by ``_child``'s environment
    result: dict[str, Any] = {"steps": []}
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        zone = LandingZone.under(Path(tmp))
        started = time.perf_counter()
        for name in TENANTS:
            tenant = _tenant(name, lifted=True)
            with build_loyalty_client(tenant) as client:
                for entity, step in (("ledger", sync_ledger), ("members", snapshot_members)):
                    stats = step(client, zone, name)
                    result["steps"].append(_step(name, entity, stats))
            with build_duffel_client(tenant) as duffel:
                stats = sync_orders(duffel, zone, name, streams=streams)
                result["steps"].append(_step(name, "orders", stats))
        with build_duffel_client(_tenant(TENANTS[0], lifted=True)) as duffel:
            for entity in ("airlines", "airports"):
                stats = snapshot_reference(duffel, zone, entity)
                result["steps"].append(_step("duffel", entity, stats))
        result["wall_seconds"] = time.perf_counter() - started
        result["landed_mb"] = sum(p.stat().st_size for p in Path(tmp).rglob("*.parquet")) / 2**20
    result["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


def _step(tenant: str, entity: str, stats) -> dict[str, Any]:
    print(
        f"  {tenant:12} {entity:8} landed {stats.landed:>9,} quarantined {stats.quarantined:>4}"
        f" in {stats.seconds:6.1f} s  ({stats.fetched / stats.seconds if stats.seconds else 0:,.0f}"
        " fetched/s)",
        flush=True,
    )
    return {
        "tenant": tenant,
        "entity": entity,
        "fetched": stats.fetched,
        "landed": stats.landed,
        "quarantined": stats.quarantined,
        "seconds": stats.seconds,
    }


# ---- child: the real limits -----------------------------------------------------------


class _Recorder:
    """httpx event hooks recording when each request of one quota went out, and 429s."""

    def __init__(self) -> None:
        self.started: list[float] = []
        self.too_many = 0
        self.lock = threading.Lock()

    def request(self, request: httpx.Request) -> None:
        with self.lock:
            self.started.append(time.time())

    def response(self, response: httpx.Response) -> None:
        if response.status_code == 429:
            with self.lock:
                self.too_many += 1

    def hooks(self) -> dict[str, list[Callable]]:
        return {"request": [self.request], "response": [self.response]}


def _until(deadline: float, pages: Iterator) -> Iterator:
    for page in pages:
        yield page
        if time.monotonic() >= deadline:
            return


def _limits(offset: int, seconds: float) -> dict[str, Any]:
    """Pull every quota flat out for ``seconds`` at the registry's limits."""
    from clients.duffel.client import build_duffel_client
    from clients.http import RetryPolicy
    from clients.loyalty.client import build_loyalty_client
    from ingestion.landing.zone import LandingZone
    from ingestion.sync import sync_ledger, sync_orders

    _quiet_quarantine()  # the clients: pointed at the stand-ins by ``_child``'s environment
    deadline = time.monotonic() + seconds
    recorders: dict[str, _Recorder] = {}
    limits: dict[str, dict[str, float]] = {}
    errors: list[str] = []

    # The clients' default budget per call (30 s) is shorter than a wait for the next window
    # (up to 60 s), so a pull bigger than one window's quota fails with RateLimited; long
    # pulls at the real limits need a budget of at least a window.
    def patient(window: float) -> RetryPolicy:
        return RetryPolicy(max_elapsed_seconds=window + 30)

    def ledger(name: str) -> None:
        tenant = _tenant(name, lifted=False)
        with build_loyalty_client(
            tenant,
            event_hooks=recorders[name].hooks(),
            retry=patient(tenant.rate_limit.window_seconds),
        ) as client:
            pages = client.iter_ledger_pages
            client.iter_ledger_pages = lambda **kw: _until(deadline, pages(**kw))  # type: ignore[method-assign]
            while time.monotonic() < deadline:
                with tempfile.TemporaryDirectory() as tmp:
                    sync_ledger(client, LandingZone.under(Path(tmp)), name)

    def orders(name: str) -> None:
        tenant = _tenant(name, lifted=False)
        key = f"duffel/{name}"
        with build_duffel_client(
            tenant,
            event_hooks=recorders[key].hooks(),
            retry=patient(tenant.duffel.rate_limit.window_seconds),
        ) as client:
            pages = client.iter_order_pages_raw
            client.iter_order_pages_raw = lambda **kw: _until(deadline, pages(**kw))  # type: ignore[method-assign]
            while time.monotonic() < deadline:
                with tempfile.TemporaryDirectory() as tmp:
                    sync_orders(client, LandingZone.under(Path(tmp)), name)

    def guarded(work: Callable[[str], None], name: str) -> None:
        try:
            work(name)
        except Exception as exc:  # reported, and the figures then say what happened
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    workers = []
    for name in TENANTS:
        tenant = _tenant(name, lifted=False)
        recorders[name] = _Recorder()
        limits[name] = tenant.rate_limit.model_dump()
        recorders[f"duffel/{name}"] = _Recorder()
        limits[f"duffel/{name}"] = tenant.duffel.rate_limit.model_dump()
        workers += [
            threading.Thread(target=guarded, args=(ledger, name)),
            threading.Thread(target=guarded, args=(orders, name)),
        ]
    run_started = time.time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    run_ended = time.time()
    quotas = {}
    for key, recorder in recorders.items():
        window = limits[key]["window_seconds"]
        allowed = limits[key]["requests"]
        # The stand-ins count fixed windows aligned to the epoch: judge the complete ones.
        first = int(run_started // window) + 1
        last = int(run_ended // window)  # exclusive
        per_window = [0] * max(last - first, 0)
        for moment in recorder.started:
            index = int(moment // window) - first
            if 0 <= index < len(per_window):
                per_window[index] += 1
        quotas[key] = {
            "limit": allowed,
            "window_seconds": window,
            "requests": len(recorder.started),
            "per_window": per_window,
            "too_many": recorder.too_many,
        }
    return {"quotas": quotas, "errors": errors, "seconds": run_ended - run_started}


# ---- parent: figures --------------------------------------------------------------------


def ensure_history(size: int, history: Path | None) -> Path:
    if history is not None:
        return history
    from benchmarks.bench_standins import ensure_history as generated

    return generated(size)


def _best_median(values: list[float], higher_is_better: bool = True) -> tuple[float, float]:
    best = max(values) if higher_is_better else min(values)
    return best, statistics.median(values)


def _backfill_figures(
    history: Path, manifest: dict, repeats: int, streams: int, runs: list[dict[str, Any]]
) -> list[Figure]:
    figures: list[Figure] = []
    with standins(history, unlimited=True, offset_hint=500) as offset:
        for attempt in range(repeats):
            print(f"backfill {attempt + 1}/{repeats} of {manifest['size']:,} bookings ...")
            runs.append(_child("_backfill", offset, ["--streams", str(streams)]))
    for run_ in runs:
        _check_counts(run_, manifest)
    label = f"backfill {manifest['size']:,} bookings"

    def rate(run_: dict, entity: str) -> float:
        steps = [s for s in run_["steps"] if s["entity"] == entity]
        return sum(s["fetched"] for s in steps) / sum(s["seconds"] for s in steps)

    for entity, unit, target in (
        ("ledger", "records/s", f">= {LEDGER_TARGET:,}"),
        ("orders", "orders/s", f">= {ORDERS_TARGET:,}"),
    ):
        best, median = _best_median([rate(r, entity) for r in runs])
        figures += [
            Figure("ingest", f"{label}: {entity} {unit} (best)", best, unit, target),
            Figure("ingest", f"{label}: {entity} {unit} (median)", median, unit, target),
        ]
    best, median = _best_median([r["wall_seconds"] for r in runs], higher_is_better=False)
    figures += [
        Figure("ingest", f"{label}: wall time (best)", best, "s"),
        Figure("ingest", f"{label}: wall time (median)", median, "s"),
    ]
    best, median = _best_median([r["peak_rss_mb"] for r in runs], higher_is_better=False)
    figures += [
        Figure(
            "ingest",
            f"{label}: peak RSS (worst)",
            max(r["peak_rss_mb"] for r in runs),
            "MB",
            f"<= {RSS_TARGET_MB:,} MB",
        ),
        Figure("ingest", f"{label}: peak RSS (median)", median, "MB", f"<= {RSS_TARGET_MB:,} MB"),
    ]
    figures.append(
        Figure(
            "ingest", f"{label}: rows landed", sum(s["landed"] for s in runs[0]["steps"]), "rows"
        )
    )
    return figures


def run(
    size: int,
    history: Path | None = None,
    repeats: int = 3,
    streams: int = 3,
    limits_seconds: float = 200.0,
    skip_limits: bool = False,
) -> list[Figure]:
    history = ensure_history(size, history)
    manifest = json.loads((history / "manifest.json").read_text())
    figures: list[Figure] = []
    runs: list[dict[str, Any]] = []
    if repeats > 0:
        figures += _backfill_figures(history, manifest, repeats, streams, runs)
    if not skip_limits:
        with standins(history, unlimited=False, offset_hint=700) as offset:
            print(f"real limits: pulling every quota for {limits_seconds:.0f} s ...")
            limited = _child("_limits", offset, ["--seconds", str(limits_seconds)])
        for error in limited["errors"]:
            print(f"  ERROR {error}")
        for key, quota in limited["quotas"].items():
            windows = quota["per_window"]
            share = min(windows) / quota["limit"] if windows else 0.0
            print(
                f"  {key:20} limit {quota['limit']}/{quota['window_seconds']:g}s: "
                f"per complete window {windows}, 429s {quota['too_many']}"
            )
            figures += [
                Figure(
                    "ingest",
                    f"real limits {key}: worst complete window, share of limit",
                    100 * share,
                    "%",
                    f">= {100 * RATE_TARGET:.0f} %",
                ),
                Figure("ingest", f"real limits {key}: 429 responses", quota["too_many"], "", "0"),
            ]
    return figures


def _check_counts(run_: dict, manifest: dict) -> None:
    """A fast backfill that lands the wrong rows is worth nothing: compare with the truth."""
    for step in run_["steps"]:
        truth = manifest["counts"].get(step["tenant"], {})
        expected = {"ledger": "ledger_transactions", "orders": "orders", "members": "members"}
        if step["entity"] in expected:
            want = truth[expected[step["entity"]]]
            if step["landed"] != want:
                raise AssertionError(
                    f"{step['tenant']} {step['entity']}: landed {step['landed']}, truth {want}"
                )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("mode", nargs="?", default="run", choices=("run", "_backfill", "_limits"))
    parser.add_argument("--size", type=int, default=1_000_000, help="bookings in the history")
    parser.add_argument("--history", type=Path, help="use this generated history instead")
    parser.add_argument(
        "--repeats", type=int, default=3, help="backfills (best and median kept; 0: none)"
    )
    parser.add_argument("--streams", type=int, default=3, help="concurrent Duffel order windows")
    parser.add_argument(
        "--limits-seconds", type=float, default=200.0, help="real-limits run length"
    )
    parser.add_argument("--skip-limits", action="store_true", help="the backfill only")
    parser.add_argument("--port-offset", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--json", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=200.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode == "_backfill":
        args.json.write_text(json.dumps(_backfill(args.port_offset, args.streams)))
    elif args.mode == "_limits":
        args.json.write_text(json.dumps(_limits(args.port_offset, args.seconds)))
    else:
        # A partial run writes its own results file instead of replacing the full one.
        name = (
            "ingest_limits"
            if args.repeats == 0
            else "ingest_backfill"
            if args.skip_limits
            else "ingest"
        )
        report(
            name,
            run(
                args.size,
                args.history,
                args.repeats,
                args.streams,
                args.limits_seconds,
                args.skip_limits,
            ),
        )


if __name__ == "__main__":
    main()
