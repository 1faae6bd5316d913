"""Two processes hammering one tenant API and one Duffel token share one budget: zero 429s.

Each process runs its own tenants/ clients, as each worker of the booking API does; both name
the same shared limiter state, so together they stay within what the stand-ins allow and still
use nearly all of it.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from sandbox.config import Limit
from sandbox.ratelimit import Decision, FixedWindowLimiter
from sandbox.runner import Sandbox

from .conftest import LIVE_RETRY

WINDOW_SECONDS = 2.0
WINDOWS = 3  # whole server windows of load
LOYALTY = Limit(10, WINDOW_SECONDS)
DUFFEL = Limit(12, WINDOW_SECONDS)  # differs, so a hit names its service
PROCESSES = 2
THREADS_PER_QUOTA = 3


def _hammer(env: dict[str, str], conn: Connection) -> None:
    """Child process: tenants/ clients for one tenant, calling as fast as the limiter lets."""
    os.environ.update(env)
    from clients.duffel import build_duffel_client
    from clients.errors import UpstreamError
    from clients.loyalty.client import build_loyalty_client
    from tenants.registry import RateLimit, load_registry

    tenant = load_registry()["coffeechain"]
    tenant = tenant.model_copy(
        update={
            "rate_limit": RateLimit(requests=LOYALTY.requests, window_seconds=WINDOW_SECONDS),
            "duffel": tenant.duffel.model_copy(
                update={
                    "rate_limit": RateLimit(requests=DUFFEL.requests, window_seconds=WINDOW_SECONDS)
                }
            ),
        }
    )
    loyalty = build_loyalty_client(tenant, retry=LIVE_RETRY)
    duffel = build_duffel_client(tenant, retry=LIVE_RETRY)
    calls: list[Callable[[], Any]] = [
        lambda: loyalty.balance("CC1234567"),
        lambda: next(duffel.list_airlines(limit=5)),
    ]
    conn.send("ready")
    start, end = conn.recv()
    failures: list[str] = []
    lock = threading.Lock()

    def run(call: Callable[[], Any]) -> None:
        time.sleep(max(start - time.time(), 0.0))
        while time.time() < end:
            try:
                call()
            except UpstreamError as exc:  # reported to the test, which fails on any
                with lock:
                    failures.append(type(exc).__name__)

    threads = [
        threading.Thread(target=run, args=(call,))
        for call in calls
        for _ in range(THREADS_PER_QUOTA)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    loyalty.close()
    duffel.close()
    conn.send(failures)


def _run_pair(sandbox: Sandbox, state_dir: Path) -> tuple[float, float]:
    """Run the hammering processes over whole server windows; when the load started and ended."""
    context = multiprocessing.get_context("spawn")
    env = {**sandbox.client_env(), "RATE_LIMIT_STATE_DIR": str(state_dir)}
    pipes, children = [], []
    for _ in range(PROCESSES):
        parent, child = context.Pipe()
        process = context.Process(target=_hammer, args=(env, child), daemon=True)
        process.start()
        pipes.append(parent)
        children.append(process)
    try:
        for pipe in pipes:
            assert pipe.poll(120), "a hammering process did not start"
            assert pipe.recv() == "ready"
        # Start on a server window's edge, so WINDOWS whole windows allow exactly WINDOWS x limit.
        start = math.ceil((time.time() + 0.5) / WINDOW_SECONDS) * WINDOW_SECONDS
        end = start + WINDOWS * WINDOW_SECONDS
        for pipe in pipes:
            pipe.send((start, end))
        for pipe in pipes:
            assert pipe.poll(120), "a hammering process did not finish"
            assert pipe.recv() == []  # no call failed for good
    finally:
        for process in children:
            process.join(10)
            if process.is_alive():
                process.kill()
    return start, end


def test_two_processes_share_one_budget_and_never_earn_a_429(
    sandbox_factory: Callable[..., Sandbox],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    hits: list[tuple[int, float, bool]] = []  # (limit of the service, when, allowed)
    lock = threading.Lock()
    original = FixedWindowLimiter.hit

    def counting_hit(self: FixedWindowLimiter, key: str = "") -> Decision:
        decision = original(self, key)
        with lock:
            hits.append((self.limit.requests, time.time(), decision.allowed))
        return decision

    monkeypatch.setattr(FixedWindowLimiter, "hit", counting_hit)
    roomy = Limit(100_000, WINDOW_SECONDS)
    sandbox = sandbox_factory(
        limits={"coffeechain": LOYALTY, "telcocorp": roomy, "fintechapp": roomy, "duffel": DUFFEL}
    )
    start, end = _run_pair(sandbox, tmp_path / "ratelimit")

    refused = {
        name: sum(1 for requests, _, allowed in hits if requests == limit.requests and not allowed)
        for name, limit in (("loyalty", LOYALTY), ("duffel", DUFFEL))
    }
    used = {
        name: sum(
            1
            for requests, when, allowed in hits
            if requests == limit.requests and allowed and start <= when < end
        )
        / (WINDOWS * limit.requests)
        for name, limit in (("loyalty", LOYALTY), ("duffel", DUFFEL))
    }
    print(f"429s at the stand-ins: {refused}; share of the budget used: {used}")
    assert refused == {"loyalty": 0, "duffel": 0}
    assert min(used.values()) >= 0.9, used
