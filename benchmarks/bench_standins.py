"""Stand-in serving speed: the ledger feed (pages of 1,000) and Duffel's orders list (pages of 200).

Targets: >= 100 feed pages/s and >= 75 order pages/s to one client, so the stand-ins are
never the bottleneck of ingestion measurements. The stand-ins run in their own process
(as in the demo) and the client reads only each page's cursor, so the figure is the
servers' own speed, not the client's JSON decoding.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import httpx
import orjson

from benchmarks.common import Figure, report
from sandbox.config import DEFAULT_PORTS
from settings import child_environment

HISTORY = Path("data/sandbox/bench-1m")
PORT_OFFSET = 500


def ensure_history(size: int, path: Path = HISTORY) -> Path:
    """Generate the benchmark history once; later runs reuse it."""
    from sandbox.generator import generate

    manifest = path / "manifest.json"
    stale = not (path / "events.parquet").exists()  # written before the platform's feed was
    if stale or not manifest.exists() or orjson.loads(manifest.read_bytes())["size"] != size:
        print(f"generating {size:,} bookings into {path} ...", flush=True)
        generate(size, 7, path)
    return path


def serve_unlimited(
    history: Path, offset: int = PORT_OFFSET
) -> tuple[subprocess.Popen, dict[str, str]]:
    """The stand-ins over ``history`` in a child process with every rate limit lifted."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "serve",
            "--history",
            str(history),
            "--unlimited",
            "--port-offset",
            str(offset),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=child_environment({"PYTHONUNBUFFERED": "1"}),
    )
    urls = {name: f"http://127.0.0.1:{port + offset}" for name, port in DEFAULT_PORTS.items()}
    deadline = time.monotonic() + 120
    while True:
        try:
            if all(
                httpx.get(f"{url}/health", timeout=1).status_code == 200 for url in urls.values()
            ):
                return process, urls
        except httpx.HTTPError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the stand-ins did not start") from None
        time.sleep(0.3)


def _tail(content: bytes, key: bytes) -> dict:
    # The cursor sits after the data array; decode just that tail, not the page.
    start = content.rindex(key)
    return orjson.loads(b"{" + content[start:])


def _drain(
    client: httpx.Client, path: str, params: dict, cursor_of, max_pages: int
) -> tuple[int, int, float]:
    pages = size = 0
    started = time.perf_counter()
    while pages < max_pages:
        response = client.get(path, params=params)
        response.raise_for_status()
        pages += 1
        size += len(response.content)
        cursor = cursor_of(response.content)
        if not cursor:
            break
        params = {**params, **cursor}
    return pages, size, time.perf_counter() - started


def run(size: int, max_pages: int) -> list[Figure]:
    history = ensure_history(size)
    process, urls = serve_unlimited(history)
    try:
        with httpx.Client(
            base_url=urls["coffeechain"],
            headers={"X-CC-API-Key": "test_cc_api_key_12345"},
            timeout=30,
        ) as client:
            feed = _drain(
                client,
                "/api/v1/ledger/transactions",
                {"limit": 1000},
                lambda c: (
                    (t := _tail(c, b'"next_cursor"')).get("next_cursor")
                    and {"cursor": t["next_cursor"]}
                ),
                max_pages,
            )
        with httpx.Client(
            base_url=urls["duffel"],
            timeout=30,
            headers={
                "Authorization": "Bearer duffel_test_coffeechain_sandbox",
                "Duffel-Version": "v2",
                "Accept": "application/json",
                "Accept-Encoding": "gzip",
            },
        ) as client:
            orders = _drain(
                client,
                "/air/orders",
                {"limit": 200},
                lambda c: (m := _tail(c, b'"meta"')["meta"]).get("after") and {"after": m["after"]},
                max_pages,
            )
    finally:
        process.terminate()
        process.wait(15)
    figures = []
    for label, (pages, size_bytes, seconds), per_page, target in (
        ("ledger feed, 1,000/page", feed, 1000, ">= 100 pages/s"),
        ("Duffel orders, 200/page", orders, 200, ">= 75 pages/s"),
    ):
        figures += [
            Figure("standins", f"{label}: pages/s", pages / seconds, "pages/s", target),
            Figure("standins", f"{label}: records/s", pages * per_page / seconds, "records/s"),
            Figure("standins", f"{label}: MB/s decoded", size_bytes / seconds / 2**20, "MB/s"),
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
