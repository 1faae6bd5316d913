"""How fast ONE process pulls a tenant's ledger through ``LoyaltyClient``, in pages of 1,000.

Target: >= 50,000 validated records/s through ``iter_ledger`` (auth, rate limiter, retry
loop, exact-decimal JSON decoding and pydantic validation included). The raw-page and
bare-HTTP rows show where the time goes.

    python -m benchmarks.bench_client_ledger --size 300000
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import orjson
import polars as pl

from benchmarks.common import Figure, report
from clients.loyalty.client import build_loyalty_client
from sandbox.config import SERVICES, Limit, SandboxConfig
from sandbox.runner import start_sandbox
from tenants.registry import load_registry
from testing.standins import pointed_at

TENANT = "coffeechain"
PAGE_SIZE = 1_000
TARGET_RECORDS_PER_SECOND = 50_000


def ensure_history(size: int, seed: int = 7) -> Path:
    """A generated history without its planted malformed deliveries, made once and reused.

    ``iter_ledger`` validates strictly (a malformed record raises; ingestion quarantines
    from the raw pages instead), so the records/s figure needs a clean feed.
    """
    from sandbox.generator import generate

    path = Path(f"data/sandbox/bench-client-{size}")
    manifest = path / "manifest.json"
    if not manifest.exists() or orjson.loads(manifest.read_bytes())["size"] != size:
        print(f"generating {size:,} bookings into {path} ...", flush=True)
        generate(size, seed, path)
        ledger = pl.read_parquet(path / "ledger.parquet")
        ledger.filter(pl.col("raw_override").is_null()).write_parquet(path / "ledger.parquet")
    return path


def _timed(pages: Iterator[list]) -> tuple[int, int, float]:
    started = time.perf_counter()
    count = records = 0
    for page in pages:
        count += 1
        records += len(page)
    return count, records, time.perf_counter() - started


def _bare_pages(base_url: str, api_key: str, path: str) -> Iterator[list]:
    """The wire alone: plain httpx + orjson, no auth class, limiter, retries or models."""
    with httpx.Client(base_url=base_url, headers={"X-CC-API-Key": api_key}, timeout=30) as http:
        params: dict[str, object] = {"limit": PAGE_SIZE}
        while True:
            body = orjson.loads(http.get(path, params=params).content)
            yield body["data"]
            if not body.get("next_cursor"):
                return
            params = {"limit": PAGE_SIZE, "cursor": body["next_cursor"]}


def run(size: int, repeats: int) -> list[Figure]:
    history = ensure_history(size)
    config = dataclasses.replace(
        SandboxConfig(),
        history_dir=history,
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        limits={**SandboxConfig().limits, TENANT: Limit(1_000_000)},
    )
    tenant = load_registry()[TENANT]
    # Our client must not be the one slowing down: give it the stand-in's raised quota.
    tenant = tenant.model_copy(
        update={"rate_limit": tenant.rate_limit.model_copy(update={"requests": 1_000_000})}
    )
    with start_sandbox(config) as sandbox, pointed_at(sandbox.client_env()):
        feed = tenant.capabilities.ledger_feed
        assert feed is not None
        with build_loyalty_client(tenant) as client:
            runs: dict[str, Callable[[], Iterator[list]]] = {
                "iter_ledger (models)": lambda: client.iter_ledger(page_size=PAGE_SIZE),
                "iter_ledger_pages (raw)": lambda: (
                    page.records for page in client.iter_ledger_pages(page_size=PAGE_SIZE)
                ),
                "bare httpx + orjson": lambda: _bare_pages(
                    sandbox.urls[TENANT], sandbox.client_env()["COFFEECHAIN_API_KEY"], feed.path
                ),
            }
            # One untimed pass warms the stand-in's caches and the connection.
            _timed(runs["iter_ledger_pages (raw)"]())
            figures = []
            for label, pages in runs.items():
                best = None
                for _ in range(repeats):
                    count, records, seconds = _timed(pages())
                    if best is None or seconds < best[2]:
                        best = (count, records, seconds)
                assert best is not None
                count, records, seconds = best
                print(f"  {label}: {records:,} records in {count:,} pages, {seconds:.2f} s")
                figures.append(
                    Figure(
                        "client_ledger",
                        f"{label} records/s",
                        records / seconds,
                        "records/s",
                        f">= {TARGET_RECORDS_PER_SECOND:,}" if "models" in label else "",
                    )
                )
            figures.append(Figure("client_ledger", "ledger records pulled", records, "records"))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # ~375k bookings give CoffeeChain ~300k ledger records.
    parser.add_argument("--size", type=int, default=375_000, help="bookings in the history")
    parser.add_argument("--repeats", type=int, default=3, help="runs per variant (best kept)")
    args = parser.parse_args()
    report("client_ledger", run(args.size, args.repeats))


if __name__ == "__main__":
    main()
