"""The booking API under load, over loopback against the stand-ins.

Five measurements, each printed with the machine's load average (the machine is shared):

1. throughput and latency: with every rate limit lifted (stand-ins and tenant YAML), bookings
   per second end to end and p50/p95 of search, book, get and list at 1, 10 and 50 clients;
2. the API's own overhead: latency minus the time its upstreams took (the ``Server-Timing``
   header the API sends), p95 per route; targets <= 10 ms for get and list, <= 25 ms for book;
3. RSS of each worker of ``--workers 2`` after the load (target <= 250 MB);
4. with the real limits: sustained bookings per minute per tenant as a share of what its
   upstream budget allows (target >= 90 %), and the 429s any upstream answered (target 0);
5. the floor: the same latency figures for bare FastAPI endpoints under uvicorn.

Run by hand: ``python -m benchmarks.bench_booking`` (about 8 minutes; ``--parts`` picks some).
Every load loop is bounded in requests and seconds, and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import multiprocessing
import os
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import yaml

from benchmarks.common import Figure, report
from settings import child_environment
from tenants.registry import TenantConfig, load_registry
from testing.booking_api import book_body

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
ROUTES = ("search", "book", "get", "list")
LEVELS = (1, 10, 50)
OVERHEAD_TARGET_MS = {"get": 10.0, "list": 10.0, "book": 25.0}
RSS_TARGET_MB = 250.0
SHARE_TARGET = 90.0
LIFTED = 1_000_000_000
# Calls one booking costs each upstream (booking/service.py): Duffel searches, re-reads the
# offer and orders (an offer request can be ordered from once, so every booking searches);
# the tenant deducts. Credential checks (one balance call per member a minute) and the bench
# keeping CoffeeChain bookings under the approval threshold make the tenant side ~1.
DUFFEL_CALLS_PER_BOOKING = 3
TENANT_CALLS_PER_BOOKING = 1
# The API requests a booking costs a client (search, book) against the inbound limit.
API_CALLS_PER_BOOKING = 2
TIMING = re.compile(r"app;dur=([\d.]+), upstream;dur=([\d.]+)")


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def percentile(values: list[float], share: float) -> float:
    """Nearest-rank percentile (0 when there is nothing to rank)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, round(share / 100 * len(ordered) + 0.4999))
    return ordered[min(rank, len(ordered)) - 1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


# --- the stand-ins, in their own process, counting every request their limiters see ------


def _bench_members(per_tenant: int) -> list[tuple[str, str]]:
    """(tenant, member id) of rich members that the id patterns of each tenant accept."""
    members = []
    for i in range(per_tenant):
        members += [
            ("coffeechain", f"CC9{i:06d}"),
            ("telcocorp", f"TC-BN{i:04d}"),
            ("fintechapp", f"FA_9{i:07d}"),
        ]
    return members


def _write_history(folder: Path, members: list[tuple[str, str]]) -> None:
    """Members with balances no benchmark run can spend, and no past bookings."""
    import polars as pl

    from sandbox.schema import LEDGER, MEMBERS, ORDERS

    joined = dt.datetime(2024, 1, 1, tzinfo=dt.UTC)
    rows = [
        {
            "tenant_id": tenant,
            "member_id": member,
            "given_name": "Bench",
            "family_name": f"Member{n}",
            "email": f"bench{n}@example.com",
            "tier": "gold",
            "status": "active",
            "balance": Decimal("1000000000"),
            "total_cashback": Decimal("0"),
            "joined_at": joined,
        }
        for n, (tenant, member) in enumerate(members)
    ]
    folder.mkdir(parents=True, exist_ok=True)
    pl.DataFrame(rows, schema=MEMBERS).write_parquet(folder / "members.parquet")
    LEDGER.to_frame().write_parquet(folder / "ledger.parquet")
    ORDERS.to_frame().write_parquet(folder / "orders.parquet")


def _serve_stand_ins(lifted: bool, history: str, conn: Connection) -> None:
    """Child process: the four stand-ins until told to stop, then their request counts."""
    from sandbox.config import DEFAULT_LIMITS, SERVICES, TENANT_SERVICES, Limit, SandboxConfig
    from sandbox.ratelimit import FixedWindowLimiter
    from sandbox.runner import start_sandbox

    # Lifted limits differ by one so that each limiter still names its service.
    limits = (
        {name: Limit(LIFTED + i) for i, name in enumerate(SERVICES)}
        if lifted
        else dict(DEFAULT_LIMITS)
    )
    service_of = {limit.requests: name for name, limit in limits.items()}
    counts: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    lock = threading.Lock()
    original = FixedWindowLimiter.hit

    def counting_hit(self: FixedWindowLimiter, key: str = "") -> Any:
        decision = original(self, key)
        with lock:
            entry = counts[(service_of.get(self.limit.requests, "?"), key)]
            entry[0] += 1
            entry[1] += not decision.allowed
        return decision

    FixedWindowLimiter.hit = counting_hit  # type: ignore[method-assign]
    config = SandboxConfig(
        host=HOST,
        ports=dict.fromkeys(SERVICES, 0),
        limits=limits,
        history_dir=Path(history),
        log_requests=False,
    )
    sandbox = start_sandbox(config)
    tokens = config.duffel_tokens(TENANT_SERVICES)
    conn.send({"urls": sandbox.urls, "env": sandbox.client_env()})
    while True:
        command = conn.recv()
        with lock:
            # Duffel counts per token: name the tenant, never the token.
            table = {
                f"{service}:{tokens.get(key, key)}" if service == "duffel" else service: list(value)
                for (service, key), value in counts.items()
            }
        conn.send(table)
        if command == "stop":
            break
    sandbox.stop()


class StandIns:
    """The stand-ins in a child process (so the load client does not share their GIL)."""

    def __init__(self, *, lifted: bool, history: Path) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self.process = context.Process(
            target=_serve_stand_ins, args=(lifted, str(history), child), daemon=True
        )
        self.process.start()
        if not self._conn.poll(120):
            raise RuntimeError("the stand-ins did not start within 120 s")
        started = self._conn.recv()
        self.urls: dict[str, str] = started["urls"]
        self.env: dict[str, str] = started["env"]

    def counts(self) -> dict[str, list[int]]:
        """[requests, refused with 429] so far per service (Duffel per tenant token)."""
        self._conn.send("counts")
        return self._conn.recv()

    def stop(self) -> dict[str, list[int]]:
        """Stop them; the final ``counts``."""
        self._conn.send("stop")
        counts = self._conn.recv() if self._conn.poll(30) else {}
        self.process.join(15)
        if self.process.is_alive():
            self.process.kill()
        return counts


# --- the booking API (or the bare floor) under uvicorn, in a child process ------------------


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            stat = (entry / "stat").read_text()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU the process has used so far, from /proc/<pid>/stat."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak resident) in MB, from /proc/<pid>/status."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0]) / 1024
    return fields["VmRSS"], fields["VmHWM"]


class Server:
    """A uvicorn server on a free loopback port, its output kept in a log file."""

    def __init__(self, command: list[str], env: dict[str, str], log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, *command, "--host", HOST, "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 90
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"the server exited: {log_path.read_text()[-2000:]}")
            try:
                httpx.get(self.url + "/openapi.json", timeout=2)
                return
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("the server did not start within 90 s") from None
                time.sleep(0.2)

    def workers(self) -> list[int]:
        """The worker processes: uvicorn's children bar multiprocessing's helpers."""
        pids = []
        for pid in _children(self.process.pid):
            with contextlib.suppress(OSError):
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
                if b"resource_tracker" not in cmdline:
                    pids.append(pid)
        return pids or [self.process.pid]

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self._log.close()


def lifted_tenants(folder: Path) -> Path:
    """The tenant YAML with every rate limit (inbound, tenant API, Duffel) lifted."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted((ROOT / "tenants").glob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        raw["rate_limit"] = {"requests": LIFTED, "window_seconds": 60}
        raw["duffel"]["rate_limit"] = {"requests": LIFTED, "window_seconds": 60}
        (folder / path.name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder


def booking_api(
    stand_ins: StandIns,
    folder: Path,
    *,
    workers: int,
    tenants_dir: Path | None,
    database_url: str | None = None,
) -> Server:
    folder.mkdir(parents=True, exist_ok=True)
    env = child_environment(
        stand_ins.env,
        {
            "BOOKING_DATABASE_URL": database_url or f"sqlite:///{folder / 'booking.sqlite3'}",
            "BOOKING_OPERATOR_TOKEN": uuid.uuid4().hex,
            "PYTHONPATH": str(ROOT),
        },
        without=("BOOKING_", "TENANTS_DIR"),
    )
    if tenants_dir is not None:
        env["TENANTS_DIR"] = str(tenants_dir)
    command = ["-m", "booking", "--workers", str(workers)]
    return Server(command, env, folder / f"api-{workers}w.log")


def bare_api(folder: Path) -> Server:
    env = child_environment({"PYTHONPATH": str(ROOT)})
    command = ["-m", "uvicorn", "benchmarks.bare_api:app", "--log-level", "warning"]
    return Server(command, env, folder / "bare.log")


# --- the load client -------------------------------------------------------------------


@dataclasses.dataclass
class Sample:
    route: str
    status: int
    latency_ms: float
    app_ms: float | None
    upstream_ms: float | None
    tenant: str
    finished: float


@dataclasses.dataclass
class Run:
    samples: list[Sample]
    bookings: int
    seconds: float

    def of(self, route: str, ok: bool = True) -> list[Sample]:
        return [s for s in self.samples if s.route == route and (s.status < 400) == ok]


def member_headers(urls: dict[str, str], members: list[tuple[str, str]]) -> list[dict[str, str]]:
    """Each member's credential in its tenant's scheme, obtained from the tenant stand-in."""
    telco = httpx.post(
        urls["telcocorp"] + "/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "telcocorp_client_id",
            "client_secret": "telcocorp_client_secret",
        },
    ).json()["access_token"]
    headers = []
    for tenant, member in members:
        if tenant == "coffeechain":
            headers.append(
                {
                    "X-Tenant-ID": tenant,
                    "X-CC-API-Key": "test_cc_api_key_12345",
                    "X-CC-Member-ID": member,
                }
            )
        elif tenant == "telcocorp":
            headers.append(
                {
                    "X-Tenant-ID": tenant,
                    "Authorization": f"Bearer {telco}",
                    "X-TC-Customer-ID": member,
                }
            )
        else:
            jwt = httpx.post(
                urls["fintechapp"] + "/api/v1/sessions/validate",
                json={"user_id": member, "device_id": "bench"},
            ).json()["jwt_token"]
            headers.append(
                {"X-Tenant-ID": tenant, "Authorization": f"Bearer {jwt}", "X-FA-User-ID": member}
            )
    return headers


def _search_body(day: int) -> dict[str, Any]:
    return {
        "origin": "LHR",
        "destination": "CDG",
        "departure_date": (dt.date.today() + dt.timedelta(days=20 + day % 60)).isoformat(),
        "passengers": {"adults": 1, "children": 0, "infants": 0},
        "cabin_class": "economy",
    }


class Load:
    """Clients that search, book, get and list in a loop, each as one member."""

    def __init__(
        self,
        url: str,
        headers: list[dict[str, str]],
        thresholds: dict[str, int | None],
        *,
        routes: tuple[str, ...] = ROUTES,
    ) -> None:
        self.url = url
        self.headers = headers
        self.thresholds = thresholds
        self.routes = routes
        self.samples: list[Sample] = []
        self.bookings = 0
        self.deadline = 0.0

    async def _call(
        self,
        client: httpx.AsyncClient,
        route: str,
        who: dict[str, str],
        method: str,
        path: str,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response | None:
        started = time.perf_counter()
        try:
            response = await client.request(method, path, headers=headers or who, **kwargs)
        except httpx.HTTPError:
            self.samples.append(Sample(route, 599, 0.0, None, None, who["X-Tenant-ID"], 0.0))
            return None
        latency = (time.perf_counter() - started) * 1000
        app = upstream = None
        match = TIMING.search(response.headers.get("Server-Timing", ""))
        if match:
            app, upstream = float(match[1]), float(match[2])
        self.samples.append(
            Sample(
                route,
                response.status_code,
                latency,
                app,
                upstream,
                who["X-Tenant-ID"],
                time.monotonic(),
            )
        )
        return response

    async def flow(self, client: httpx.AsyncClient, who: dict[str, str], n: int) -> float:
        """One booking end to end; seconds to wait before the next (an API's Retry-After)."""
        found = await self._call(
            client, "search", who, "POST", "/api/v1/flights/search", json=_search_body(n)
        )
        if found is None or found.status_code != 200:
            return _retry_after(found)
        flights = found.json()["data"]["flights"]
        if not flights:
            return 0.0
        limit = self.thresholds.get(who["X-Tenant-ID"])
        cheap = sorted(flights, key=lambda f: Decimal(f["price"]["loyalty_amount"]))
        under = [
            f for f in cheap if limit is None or Decimal(f["price"]["loyalty_amount"]) <= limit
        ]
        body = book_body((under or cheap)[0])
        key = uuid.uuid4().hex
        while True:
            booked = await self._call(
                client,
                "book",
                who,
                "POST",
                "/api/v1/bookings",
                json=body,
                headers={**who, "Idempotency-Key": key},
            )
            wait = _retry_after(booked)
            # As a member's app would: the same booking again, same key, when told to wait
            # (the offer stays bookable; searching again would spend upstream budget twice).
            if not wait or time.monotonic() + wait >= self.deadline:
                break
            await asyncio.sleep(wait)
        if booked is None or booked.status_code not in (200, 201):
            return wait
        self.bookings += 1
        if "get" in self.routes:
            booking_id = booked.json()["data"]["booking_id"]
            await self._call(client, "get", who, "GET", f"/api/v1/bookings/{booking_id}")
        if "list" in self.routes:
            await self._call(client, "list", who, "GET", "/api/v1/bookings", params={"limit": 20})
        return 0.0

    async def run(
        self, clients: int, max_bookings: int, max_seconds: float, first_member: int = 0
    ) -> Run:
        self.samples, self.bookings = [], 0
        started = time.monotonic()
        deadline = self.deadline = started + max_seconds
        limits = httpx.Limits(max_connections=clients + 4, max_keepalive_connections=clients + 4)
        async with httpx.AsyncClient(base_url=self.url, timeout=120, limits=limits) as client:

            async def one(index: int) -> None:
                who = self.headers[(first_member + index) % len(self.headers)]
                n = index
                while time.monotonic() < deadline and self.bookings < max_bookings:
                    wait = await self.flow(client, who, n)
                    n += clients
                    if wait:
                        await asyncio.sleep(min(wait, max(0.0, deadline - time.monotonic())))

            await asyncio.gather(*(one(i) for i in range(clients)))
        return Run(self.samples, self.bookings, time.monotonic() - started)


def _retry_after(response: httpx.Response | None) -> float:
    if response is None or response.status_code not in (429, 503):
        return 0.0
    return float(response.headers.get("Retry-After", "1"))


# --- the measurements ------------------------------------------------------------------


def _latency_figures(name: str, run: Run, clients: int, floor: bool = False) -> list[Figure]:
    bench = f"booking-{name}"
    figures = [
        Figure(bench, f"c={clients} bookings per second", run.bookings / run.seconds, "/s"),
    ]
    for route in ROUTES:
        ok = [s.latency_ms for s in run.of(route)]
        if not ok:
            continue
        figures += [
            Figure(bench, f"c={clients} {route} p50", percentile(ok, 50), "ms"),
            Figure(bench, f"c={clients} {route} p95", percentile(ok, 95), "ms"),
        ]
        failed = run.of(route, ok=False)
        if failed:
            statuses = sorted({s.status for s in failed})
            figures.append(
                Figure(bench, f"c={clients} {route} failed ({statuses})", len(failed), "requests")
            )
    if not floor:
        for route in ROUTES:
            timed = [s for s in run.of(route) if s.app_ms is not None]
            if not timed:
                continue
            target = OVERHEAD_TARGET_MS.get(route)
            own = [s.latency_ms - s.upstream_ms for s in timed]  # type: ignore[operator]
            inside = [s.app_ms - s.upstream_ms for s in timed]  # type: ignore[operator]
            upstream = [s.upstream_ms for s in timed]
            figures += [
                Figure(
                    bench,
                    f"c={clients} {route} overhead p95 (latency - upstream)",
                    percentile(own, 95),
                    "ms",
                    f"<= {target:g} ms" if target else "",
                ),
                Figure(
                    bench,
                    f"c={clients} {route} overhead p95 in the API (app - upstream)",
                    percentile(inside, 95),
                    "ms",
                ),
                Figure(bench, f"c={clients} {route} upstream p50", percentile(upstream, 50), "ms"),
            ]
    return figures


def _print_progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')} load {load_average()}] {text}", flush=True)


def measure_latency(
    work: Path,
    history: Path,
    members: list[tuple[str, str]],
    thresholds: dict[str, int | None],
    args: argparse.Namespace,
) -> list[Figure]:
    """Parts 1 and 2 (one worker) and 3 (two workers), all limits lifted."""
    figures: list[Figure] = []
    stand_ins = StandIns(lifted=True, history=history)
    try:
        headers = member_headers(stand_ins.urls, members)
        tenants_dir = lifted_tenants(work / "tenants-lifted")
        if "latency" in args.parts:
            api = booking_api(
                stand_ins,
                work / "one",
                workers=1,
                tenants_dir=tenants_dir,
                database_url=args.database(),
            )
            try:
                load = Load(api.url, headers, thresholds)
                asyncio.run(load.run(3, 9, 60))  # warm up: imports, first connections
                for clients in args.levels:
                    before = load_average()
                    cpu = cpu_seconds(api.process.pid)
                    with profiling(api, args.profile, work / f"profile-c{clients}.txt"):
                        run = asyncio.run(load.run(clients, args.bookings, args.seconds))
                    cpu = cpu_seconds(api.process.pid) - cpu
                    _print_progress(
                        f"booking API, {clients} clients: {run.bookings} bookings in "
                        f"{run.seconds:.1f} s (load before {before})"
                    )
                    figures += _latency_figures("latency", run, clients)
                    # CPU per booking barely depends on the machine's other load; latency does.
                    figures.append(
                        Figure(
                            "booking-latency",
                            f"c={clients} API CPU per booking (search+book+get+list)",
                            1000 * cpu / max(run.bookings, 1),
                            "ms",
                        )
                    )
                    figures.append(_load_figure("booking-latency", f"c={clients}"))
                rss, peak = rss_mb(api.process.pid)
                figures.append(Figure("booking-latency", "one worker RSS after load", rss, "MB"))
            finally:
                api.stop()
        if "rss" in args.parts:
            api = booking_api(
                stand_ins,
                work / "two",
                workers=2,
                tenants_dir=tenants_dir,
                database_url=args.database(),
            )
            try:
                load = Load(api.url, headers, thresholds)
                run = asyncio.run(load.run(50, args.bookings, args.seconds))
                _print_progress(
                    f"booking API, 2 workers, 50 clients: {run.bookings} bookings in "
                    f"{run.seconds:.1f} s"
                )
                figures.append(
                    Figure(
                        "booking-rss",
                        "2 workers c=50 bookings per second",
                        run.bookings / run.seconds,
                        "/s",
                    )
                )
                for n, pid in enumerate(sorted(api.workers()), 1):
                    rss, peak = rss_mb(pid)
                    target = f"<= {RSS_TARGET_MB:g} MB"
                    figures += [
                        Figure("booking-rss", f"worker {n} RSS after load", rss, "MB", target),
                        Figure("booking-rss", f"worker {n} peak RSS", peak, "MB", target),
                    ]
                figures.append(_load_figure("booking-rss", "after load"))
            finally:
                api.stop()
    finally:
        stand_ins.stop()
    return figures


def _load_figure(bench: str, when: str) -> Figure:
    return Figure(bench, f"load average (1 min) {when}", os.getloadavg()[0], "")


def upstream_budget(tenant: TenantConfig) -> tuple[float, str]:
    """Bookings a minute the tenant's upstream quotas allow, and which quota binds."""
    per_minute = {
        "duffel": tenant.duffel.rate_limit.requests
        * 60
        / tenant.duffel.rate_limit.window_seconds
        / DUFFEL_CALLS_PER_BOOKING,
        "tenant API": tenant.rate_limit.requests
        * 60
        / tenant.rate_limit.window_seconds
        / TENANT_CALLS_PER_BOOKING,
    }
    binding = min(per_minute, key=per_minute.__getitem__)
    return per_minute[binding], binding


def _calls(after: dict[str, list[int]], before: dict[str, list[int]], name: str) -> int:
    return after.get(name, [0, 0])[0] - before.get(name, [0, 0])[0]


def measure_limits(
    work: Path,
    history: Path,
    members: list[tuple[str, str]],
    thresholds: dict[str, int | None],
    args: argparse.Namespace,
) -> list[Figure]:
    """Part 4: the real limits, every tenant booking at once for whole minutes."""
    bench = "booking-limits"
    registry = load_registry(ROOT / "tenants")
    stand_ins = StandIns(lifted=False, history=history)
    folder = work / "limits"
    window = 60.0 * args.limit_minutes
    try:
        # One member per client: the credentials fetched count against the tenants' limits.
        chosen = [
            member
            for tenant in ("coffeechain", "telcocorp", "fintechapp")
            for member in [m for m in members if m[0] == tenant][: args.limit_clients]
        ]
        headers = member_headers(stand_ins.urls, chosen)
        api = booking_api(
            stand_ins,
            folder,
            workers=args.limit_workers,
            tenants_dir=None,
            database_url=args.database(),
        )
        try:
            by_tenant: dict[str, list[dict[str, str]]] = defaultdict(list)
            for who in headers:
                by_tenant[who["X-Tenant-ID"]].append(who)

            async def all_tenants() -> dict[str, Run]:
                loads = {
                    t: Load(api.url, who, thresholds, routes=("search", "book"))
                    for t, who in by_tenant.items()
                }
                runs = await asyncio.gather(
                    *(load.run(args.limit_clients, 10_000, window) for load in loads.values())
                )
                return dict(zip(loads, runs, strict=True))

            # The stand-ins count in fixed windows aligned to the minute: measured over whole
            # aligned minutes the budget is exact (unaligned, two windows' worth can fall in
            # one minute of measurement and flatter the rate).
            wait = 60 - time.time() % 60
            _print_progress(f"real limits: waiting {wait:.0f} s for the next minute")
            time.sleep(wait)
            before = stand_ins.counts()
            started = time.monotonic()
            runs = asyncio.run(all_tenants())
            during = stand_ins.counts()
        finally:
            api.stop()
        api_log = api.log_path.read_text(errors="replace")
    finally:
        counts = stand_ins.stop()
    figures = []
    for tenant_id, run in sorted(runs.items()):
        tenant = registry[tenant_id]
        # Only bookings answered inside the whole minutes count (a sliding quota refills
        # continuously, so a partial minute would flatter the rate).
        done = [
            s for s in run.of("book") if s.status in (200, 201) and s.finished - started <= window
        ]
        rate = len(done) / (window / 60)
        budget, binding = upstream_budget(tenant)
        inbound = tenant.rate_limit.requests / API_CALLS_PER_BOOKING
        duffel_calls = _calls(during, before, f"duffel:{tenant_id}")
        tenant_calls = _calls(during, before, tenant_id)
        figures += [
            Figure(bench, f"{tenant_id} bookings per minute", rate, "/min"),
            Figure(bench, f"{tenant_id} upstream budget ({binding} binds)", budget, "/min"),
            Figure(bench, f"{tenant_id} inbound limit allows", inbound, "/min"),
            Figure(
                bench,
                f"{tenant_id} share of budget",
                100 * rate / budget,
                "%",
                f">= {SHARE_TARGET:g} %",
            ),
            Figure(
                bench,
                f"{tenant_id} Duffel calls per booking",
                duffel_calls / max(run.bookings, 1),
                "",
            ),
            Figure(
                bench,
                f"{tenant_id} tenant API calls per booking",
                tenant_calls / max(run.bookings, 1),
                "",
            ),
        ]
        refused = [s for s in run.samples if s.status >= 400]
        if refused:
            statuses = sorted({s.status for s in refused})
            figures.append(
                Figure(bench, f"{tenant_id} API answers not 2xx ({statuses})", len(refused), "")
            )
    upstream_429 = sum(refused for _, refused in counts.values())
    logged_429 = api_log.count("upstream answered 429")
    figures += [
        Figure(bench, "429s answered by any upstream (stand-ins' counters)", upstream_429, "", "0"),
        Figure(bench, "429s seen by the API (its log)", logged_429, "", "0"),
        _load_figure(bench, "after load"),
    ]
    return figures


def measure_floor(args: argparse.Namespace, work: Path) -> list[Figure]:
    """Part 5: the same client against bare FastAPI endpoints."""
    figures: list[Figure] = []
    folder = work / "bare"
    folder.mkdir(parents=True, exist_ok=True)
    server = bare_api(folder)
    try:
        headers = [{"X-Tenant-ID": "bare"}]
        load = Load(server.url, headers, {})
        asyncio.run(load.run(3, 30, 30))
        for clients in args.levels:
            run = asyncio.run(load.run(clients, args.bookings, args.seconds))
            _print_progress(f"bare FastAPI, {clients} clients: {run.bookings} flows")
            figures += _latency_figures("floor", run, clients, floor=True)
            figures.append(_load_figure("booking-floor", f"c={clients}"))
    finally:
        server.stop()
    return figures


@contextlib.contextmanager
def profiling(server: Server, kind: str | None, output: Path) -> Iterator[None]:
    """py-spy samples the API while the block runs, as collapsed stacks: ``cpu`` only where
    it computes, ``wall`` also where it waits (locks, disk, upstreams)."""
    if kind is None:
        yield
        return
    spy = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("py-spy")),
            "record",
            "--pid",
            str(server.process.pid),
            "--subprocesses",
            *(["--idle"] if kind == "wall" else []),
            "--threads",
            "--format",
            "raw",
            "--rate",
            "200",
            "--output",
            str(output),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        yield
    finally:
        spy.send_signal(2)  # SIGINT: py-spy writes what it sampled and exits
        spy.wait(30)
        print(f"profile written to {output}", flush=True)


class DurablePostgres:
    """PostgreSQL on loopback as production runs it (fsync and synchronous commits on)."""

    def __init__(self) -> None:
        from testing.postgres import PostgresServer

        class Durable(PostgresServer):
            def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
                if args[0] == "pg_ctl" and "start" in args:
                    # The test server turns durability off; a benchmark must not.
                    args = tuple(
                        a.replace(" -c fsync=off -c synchronous_commit=off", "").replace(
                            " -c full_page_writes=off", ""
                        )
                        for a in args
                    )
                return super()._run(*args)

        self.server = Durable()

    def __enter__(self) -> DurablePostgres:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()


@contextlib.contextmanager
def store(args: argparse.Namespace) -> Iterator[None]:
    """``args.database()``: a fresh store URL for each API started (None = SQLite in its folder)."""
    if args.store == "sqlite":
        args.database = lambda: None
        yield
        return
    with DurablePostgres() as postgres:
        args.database = postgres.server.create_database
        yield


@contextlib.contextmanager
def workspace(keep: Path | None) -> Iterator[Path]:
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    with tempfile.TemporaryDirectory(prefix="bench-booking-") as folder:
        yield Path(folder)


def run(args: argparse.Namespace) -> list[Figure]:
    """Every part asked for, in order; the figures of all of them."""
    figures = [Figure("booking", "load average (1 min) at start", os.getloadavg()[0], "")]
    _print_progress(f"starting; parts {', '.join(args.parts)}")
    members = _bench_members(args.members)
    thresholds = {
        t.id: t.rules.approval_threshold for t in load_registry(ROOT / "tenants").values()
    }
    with workspace(args.keep) as work, store(args):
        history = work / "history"
        _write_history(history, members)
        if "floor" in args.parts:
            figures += measure_floor(args, work)
        if {"latency", "rss"} & set(args.parts):
            figures += measure_latency(work, history, members, thresholds, args)
        if "limits" in args.parts:
            figures += measure_limits(work, history, members, thresholds, args)
    return figures


def report_all(figures: list[Figure]) -> None:
    """One table (and results file) per part: booking-floor, booking-latency, ..."""
    figures = [*figures, Figure("booking", "load average (1 min) at end", os.getloadavg()[0], "")]
    for name in dict.fromkeys(f.benchmark for f in figures):
        report(name, [f for f in figures if f.benchmark == name])


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.bench_booking",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--parts",
        default="floor,latency,rss,limits",
        type=lambda text: text.split(","),
        help="any of floor, latency, rss, limits (comma-separated)",
    )
    parser.add_argument(
        "--levels",
        default=LEVELS,
        type=lambda text: tuple(int(n) for n in text.split(",")),
        help="concurrent clients of each latency run (comma-separated)",
    )
    parser.add_argument(
        "--bookings", type=int, default=300, help="at most this many bookings per concurrency level"
    )
    parser.add_argument(
        "--seconds", type=float, default=40.0, help="at most this long per concurrency level"
    )
    parser.add_argument("--members", type=int, default=20, help="bench members per tenant")
    parser.add_argument(
        "--limit-minutes", type=int, default=2, help="whole minutes of load under the real limits"
    )
    parser.add_argument(
        "--limit-clients",
        type=int,
        default=4,
        help="concurrent clients per tenant under the real limits",
    )
    parser.add_argument(
        "--limit-workers", type=int, default=1, help="API workers under the real limits"
    )
    parser.add_argument(
        "--store",
        choices=("sqlite", "postgresql"),
        default="sqlite",
        help="the API's store: the embedded SQLite file, or a local PostgreSQL (Debian's)",
    )
    parser.add_argument(
        "--profile",
        choices=("cpu", "wall"),
        default=None,
        help="sample the API with py-spy during the latency part (into the --keep folder)",
    )
    parser.add_argument(
        "--keep", type=Path, default=None, help="keep servers' logs and stores in this folder"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    unknown = set(args.parts) - {"floor", "latency", "rss", "limits"}
    if unknown:
        raise SystemExit(f"--parts: unknown part(s) {', '.join(sorted(unknown))}")
    report_all(run(args))
    print(f"load average at end: {load_average()}")


if __name__ == "__main__":
    main()
