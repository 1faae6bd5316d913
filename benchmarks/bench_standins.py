"""Stand-in serving speed: the ledger feed (pages of 1,000) and Duffel's orders list (pages of 200).

Targets: >= 100 feed pages/s and >= 75 order pages/s to one client, so the stand-ins are
never the bottleneck of ingestion measurements.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import httpx
import orjson

from benchmarks.common import Figure, report
from sandbox.config import SERVICES, Limit, SandboxConfig
from sandbox.runner import start_sandbox

HISTORY = Path("data/sandbox/bench-1m")


def ensure_history(size: int, path: Path = HISTORY) -> Path:
    """Generate the benchmark history once; later runs reuse it."""
    from sandbox.generator import generate

    manifest = path / "manifest.json"
    if not manifest.exists() or orjson.loads(manifest.read_bytes())["size"] != size:
        print(f"generating {size:,} bookings into {path} ...", flush=True)
        generate(size, 7, path)
    return path


def _drain(
    client: httpx.Client, path: str, params: dict, next_of, max_pages: int
) -> tuple[int, int, float]:
    pages = records = 0
    started = time.perf_counter()
    while pages < max_pages:
        response = client.get(path, params=params)
        response.raise_for_status()
        body = orjson.loads(response.content)
        pages += 1
        records += len(body["data"])
        cursor = next_of(body)
        if not cursor:
            break
        params = {**params, **cursor}
    return pages, records, time.perf_counter() - started


def run(size: int, max_pages: int) -> list[Figure]:
    history = ensure_history(size)
    config = dataclasses.replace(
        SandboxConfig(),
        history_dir=history,
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        limits={name: Limit(10**9) for name in SERVICES},
    )
    with start_sandbox(config) as sandbox:
        env = sandbox.client_env()
        with httpx.Client(
            base_url=sandbox.urls["coffeechain"],
            headers={"X-CC-API-Key": env["COFFEECHAIN_API_KEY"]},
            timeout=30,
        ) as client:
            feed = _drain(
                client,
                "/api/v1/ledger/transactions",
                {"limit": 1000},
                lambda b: b.get("next_cursor") and {"cursor": b["next_cursor"]},
                max_pages,
            )
        with httpx.Client(
            base_url=sandbox.urls["duffel"],
            timeout=30,
            headers={
                "Authorization": f"Bearer {env['COFFEECHAIN_DUFFEL_TOKEN']}",
                "Duffel-Version": "v2",
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
            },
        ) as client:
            orders = _drain(
                client,
                "/air/orders",
                {"limit": 200},
                lambda b: b["meta"].get("after") and {"after": b["meta"]["after"]},
                max_pages,
            )
    figures = []
    for label, (pages, records, seconds), target_pages, unit in (
        ("ledger feed (1,000/page)", feed, ">= 100 pages/s", "records"),
        ("Duffel orders (200/page)", orders, ">= 75 pages/s", "orders"),
    ):
        figures += [
            Figure("standins", f"{label}: pages/s", pages / seconds, "pages/s", target_pages),
            Figure("standins", f"{label}: {unit}/s", records / seconds, f"{unit}/s"),
            Figure("standins", f"{label}: pages read", pages, "pages"),
        ]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000, help="bookings in the history")
    parser.add_argument("--max-pages", type=int, default=1_000, help="pages read per endpoint")
    args = parser.parse_args()
    report("standins", run(args.size, args.max_pages))


if __name__ == "__main__":
    main()
