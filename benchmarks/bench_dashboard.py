"""The dashboard over a 1,000,000-booking snapshot: callback latency, first render, memory.

Targets: p95 server-side callback latency <= 150 ms for filter, sort, page and chart updates;
first render of a page in headless Chromium <= 2 s; dashboard process RSS <= 400 MB.

The snapshot is built the warehouse tests' quick way (generated history -> landing Parquet
-> `dbt build` -> publish) once and kept under ``data/bench/dashboard-<size>``. The dashboard
runs as its own process (``python -m dashboard``); callbacks are timed as HTTP round trips
to ``/_dash-update-component`` over loopback (an upper bound of the server-side time), and
first render as the time from navigation to the page's data being on screen.
"""

from __future__ import annotations

import argparse
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from benchmarks.bench_standins import ensure_history
from benchmarks.common import Figure, report
from dashboard.auth import create_demo_users
from settings import child_environment
from testing.browser import CHROMIUM, CHROMIUM_ARGS
from testing.dbt_build import dbt_build
from testing.landing_from_history import write_landing
from warehouse.publish import connect, publish_snapshot

ROOT = Path("data/bench")
REPEATS = 15


def ensure_snapshot(size: int) -> Path:
    """A data folder whose serving snapshot holds ``size`` bookings; built once, then reused."""
    data_dir = ROOT / f"dashboard-{size}"
    version = data_dir / "serving" / "serving.json"
    if (
        version.exists()
        and json.loads(version.read_text())["rows"].get("bookings", 0) >= size * 0.9
    ):
        return data_dir
    history = ensure_history(size)
    landing = data_dir / "landing"
    print(f"landing and building a {size:,}-booking warehouse in {data_dir} ...", flush=True)
    write_landing(history, landing)
    build = dbt_build(data_dir, landing)
    if build.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{build.output[-3000:]}")
    publish_snapshot(data_dir / "warehouse.duckdb", data_dir / "serving")
    return data_dir


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(data_dir: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", str(port)],
        env=child_environment({"DATA_DIR": str(data_dir)}),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/login", timeout=1).status_code == 200:
                return process, url
        except httpx.TransportError:
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the dashboard did not start") from None
            time.sleep(0.2)


def _rss_mb(pid: int) -> tuple[float, float]:
    """(current, peak) resident memory of ``pid`` in MB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        fields[key] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def _callback(
    output: str | list[tuple[str, str]],
    inputs: list[tuple[str, str, Any]],
    state: list[tuple[str, str, Any]] = (),
) -> dict:
    if isinstance(output, str):
        component, prop = output.split(".")
        spec: Any = {"id": component, "property": prop}
        name = output
    else:
        spec = [{"id": c, "property": p} for c, p in output]
        name = ".." + "...".join(f"{c}.{p}" for c, p in output) + ".."
    return {
        "output": name,
        "outputs": spec,
        "inputs": [{"id": i, "property": p, "value": v} for i, p, v in inputs],
        "changedPropIds": [f"{inputs[0][0]}.{inputs[0][1]}"],
        "state": [{"id": i, "property": p, "value": v} for i, p, v in state],
    }


def _rows(version: str, start: int = 0, sort: list | None = None, **filters: Any) -> dict:
    return _callback(
        [
            ("bookings-grid", "getRowsResponse"),
            ("bookings-count", "children"),
            ("bookings-state", "children"),
        ],
        [
            (
                "bookings-grid",
                "getRowsRequest",
                {
                    "startRow": start,
                    "endRow": start + 100,
                    "sortModel": sort or [],
                    "filterModel": {},
                },
            )
        ],
        [
            ("snapshot-version", "data", version),
            ("bookings-tenant", "value", filters.get("tenant")),
            ("bookings-status", "value", filters.get("status")),
            ("bookings-date-field", "value", filters.get("date_field", "created_at")),
            ("bookings-dates", "start_date", filters.get("date_from")),
            ("bookings-dates", "end_date", filters.get("date_to")),
            ("bookings-search", "value", filters.get("search")),
        ],
    )


def _scenarios(version: str, booking: tuple[str, str, str]) -> dict[str, list[dict]]:
    tenant, booking_id, pnr = booking
    return {
        "filter": [
            _rows(version),
            _rows(version, tenant="coffeechain"),
            _rows(version, status=["cancelled", "failed"]),
            _rows(version, tenant="telcocorp", status=["confirmed"]),
            _rows(version, date_from="2026-03-01", date_to="2026-03-31"),
            _rows(version, date_field="departure_at", date_from="2026-06-01", date_to="2026-08-31"),
            _rows(version, search=pnr),
            _rows(version, search=booking_id[:8]),
        ],
        "sort": [
            _rows(version, sort=[{"colId": column, "sort": direction}])
            for column in ("usd_amount", "departure_at", "airline_name", "member_id")
            for direction in ("asc", "desc")
        ],
        "page": [
            _rows(version, start=start) for start in (100, 1_000, 10_000, 100_000, 500_000, 900_000)
        ],
        "chart": [
            _callback("overview-body.children", [("snapshot-version", "data", version)]),
            *(
                _callback(
                    "tenant-body.children",
                    [("snapshot-version", "data", version), ("tenant-id", "data", t)],
                )
                for t in ("coffeechain", "fintechapp", "telcocorp")
            ),
            _callback("health-body.children", [("snapshot-version", "data", version)]),
            _callback(
                "booking-body.children",
                [
                    ("snapshot-version", "data", version),
                    ("booking-key", "data", {"tenant_id": tenant, "booking_id": booking_id}),
                ],
            ),
        ],
    }


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


def _time_callbacks(client: httpx.Client, payloads: list[dict]) -> list[float]:
    samples = []
    for _ in range(REPEATS):
        for payload in payloads:
            started = time.perf_counter()
            answer = client.post("/_dash-update-component", json=payload)
            samples.append((time.perf_counter() - started) * 1000)
            if answer.status_code != 200:
                raise RuntimeError(f"callback failed: {answer.status_code} {answer.text[:300]}")
    return samples


def _first_renders(
    url: str, cookies: dict[str, str], booking: tuple[str, str, str]
) -> dict[str, float]:
    from playwright.sync_api import sync_playwright

    pages: dict[str, tuple[str, Callable[[Any], None]]] = {
        "overview": ("/", lambda p: p.wait_for_selector("#overview-bookings .main-svg")),
        "tenant": (
            "/t/coffeechain",
            lambda p: p.wait_for_selector("#tenant-routes .main-svg"),
        ),
        "bookings": ("/bookings", lambda p: p.wait_for_selector(".ag-row .ag-cell")),
        "booking": (
            f"/booking/{booking[0]}/{booking[1]}",
            lambda p: p.wait_for_selector("#ledger-table"),
        ),
    }
    results: dict[str, float] = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.add_cookies([{"name": k, "value": v, "url": url} for k, v in cookies.items()])
        page = context.new_page()
        page.set_default_timeout(30_000)
        for name, (path, ready) in pages.items():
            samples = []
            for _ in range(5):
                page.goto("about:blank")
                started = time.perf_counter()
                page.goto(f"{url}{path}", wait_until="commit")
                ready(page)
                samples.append(time.perf_counter() - started)
            results[name] = statistics.median(samples)
        browser.close()
    return results


def run(size: int) -> list[Figure]:
    data_dir = ensure_snapshot(size)
    users = data_dir / "dashboard_users.json"
    created = create_demo_users(users, ["coffeechain", "fintechapp", "telcocorp"])
    password = {user.username: secret for user, secret in created}
    process, url = _start(data_dir)
    try:
        client = httpx.Client(base_url=url, timeout=60)
        client.post("/login", data={"username": "operator", "password": password["operator"]})
        version = client.get("/_dash-layout").json()["props"]["children"][1]["props"]["data"]
        with connect(data_dir / "serving") as con:
            booking = con.execute(
                "select tenant_id, booking_id, pnr from bookings where pnr is not null"
                " and duffel_order_id is not null order by booking_id limit 1"
            ).fetchone()
            bookings = con.execute("select count(*) from bookings").fetchone()[0]
        scenarios = _scenarios(version, booking)
        _time_callbacks(client, [p for ps in scenarios.values() for p in ps][:1])  # warm the cache
        figures: list[Figure] = []
        for name, payloads in scenarios.items():
            samples = _time_callbacks(client, payloads)
            figures.append(
                Figure("dashboard", f"{name} callback p95", _p95(samples), "ms", "<= 150 ms")
            )
            figures.append(
                Figure("dashboard", f"{name} callback median", statistics.median(samples), "ms")
            )
        renders = _first_renders(url, dict(client.cookies), booking)
        for name, seconds in renders.items():
            figures.append(Figure("dashboard", f"first render: {name}", seconds, "s", "<= 2 s"))
        started = time.perf_counter()
        with client.stream("GET", "/export/bookings.csv") as exported:
            lines = sum(chunk.count(b"\n") for chunk in exported.iter_bytes())
        export_seconds = time.perf_counter() - started
        if lines != bookings + 1:
            raise RuntimeError(f"export streamed {lines - 1} rows of {bookings}")
        figures.append(Figure("dashboard", f"CSV export, {bookings:,} rows", export_seconds, "s"))
        current, peak = _rss_mb(process.pid)
        figures.append(Figure("dashboard", "process RSS after the run", current, "MB", "<= 400 MB"))
        figures.append(Figure("dashboard", "process peak RSS", peak, "MB", "<= 400 MB"))
        client.close()
    finally:
        process.terminate()
        process.wait(timeout=10)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    report("dashboard", run(args.size))


if __name__ == "__main__":
    main()
