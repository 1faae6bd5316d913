"""Publishing the serving snapshot after a small increment, and the dashboard's first request after it.

Target (issue 16): publish after an increment <= 1 s, independent of history size; the
dashboard's caches of unchanged data survive it. The warehouse is built once from the
generated history; then, ``--repeats`` times, 0.1 % more bookings land, dbt builds them as
the pipeline does, and the publish is timed, with the dashboard's first requests after it
(a Snapshot that stays open, as the dashboard's does, against a cold one). Every figure is
the median and the min over the repeats, printed with the load average.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from benchmarks.bench_standins import ensure_history
from benchmarks.bench_warehouse import _increment, _timed_build
from benchmarks.common import Figure, report
from dashboard import data
from dashboard.data import DEEP_ROWS, BookingFilters, Snapshot
from dashboard.scope import Scope
from testing.landing_from_history import write_landing
from warehouse.publish import publish_snapshot

OPERATOR = Scope("bench", "operator")


def _requests(snapshot: Snapshot) -> None:
    """A dashboard's first requests: KPIs, the explorer's first and a deep block, health."""
    data.tenant_kpis(snapshot, OPERATOR)
    data.bookings_page(snapshot, OPERATOR, BookingFilters())
    data.bookings_page(
        snapshot, OPERATOR, BookingFilters(), start=DEEP_ROWS * 5, end=DEEP_ROWS * 5 + 100
    )
    data.data_health(snapshot, OPERATOR)


def _seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def _spread(label: str, values: list[float], unit: str = "s", target: str = "") -> list[Figure]:
    return [
        Figure(
            "publish", f"{label} (median of {len(values)})", statistics.median(values), unit, target
        ),
        Figure("publish", f"{label} (min of {len(values)})", min(values), unit),
    ]


def run(
    size: int, repeats: int = 3, workdir: Path | None = None, history: Path | None = None
) -> list[Figure]:
    history = ensure_history(size, history or Path(f"data/sandbox/bench-{size}"))
    with tempfile.TemporaryDirectory() as tmp:
        work = workdir or Path(tmp)
        landing = work / "landing"
        warehouse, serving = work / "warehouse.duckdb", work / "serving"
        if not warehouse.exists():
            write_landing(history, landing)
            _timed_build(work, landing, "--exclude-resource-type", "unit_test")
        first = publish_snapshot(warehouse, serving)
        unchanged = [publish_snapshot(warehouse, serving).seconds for _ in range(repeats)]
        kept = Snapshot(work)
        _requests(kept)
        publishes, written, warm, cold = [], [], [], []
        anchor = dt.date.today() + dt.timedelta(days=1)
        try:
            for turn in range(repeats):
                _increment(
                    work,
                    landing,
                    max(size // 1000, 10),
                    anchor + dt.timedelta(days=20 * turn),
                    seed=30 + turn,
                )
                _timed_build(work, landing, "--exclude-resource-type", "unit_test")
                published = publish_snapshot(warehouse, serving)
                publishes.append(published.seconds)
                slowest = sorted(published.table_seconds.items(), key=lambda item: -item[1])[:4]
                print(
                    f"increment {turn + 1}: publish {published.seconds:.2f} s, wrote"
                    f" {', '.join(published.written)} (patched: {', '.join(published.patched)});"
                    f" slowest: {', '.join(f'{t} {s:.2f} s' for t, s in slowest)}",
                    flush=True,
                )
                written.append(len(published.written))
                warm.append(_seconds(lambda: _requests(kept)))
                fresh = Snapshot(work)
                try:
                    cold.append(_seconds(lambda: _requests(fresh)))  # noqa: B023 - called at once
                finally:
                    fresh.close()
        finally:
            kept.close()
        rows = published.rows["bookings"]
    return [
        Figure("publish", f"bookings in the snapshot (history {size:,})", rows, "rows"),
        Figure("publish", "first publish, every table written", first.seconds, "s"),
        *_spread("publish, nothing changed", unchanged),
        *_spread(
            f"publish after a 0.1% increment ({max(size // 1000, 10):,} bookings)",
            publishes,
            target="<= 1 s",
        ),
        Figure(
            "publish", "tables written per increment (median)", statistics.median(written), "tables"
        ),
        *_spread("dashboard's first requests after it, caches kept", warm),
        *_spread("the same requests, every cache cold", cold),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, help="keep (and reuse) the built warehouse here")
    parser.add_argument(
        "--history", type=Path, help="a generated history of --size bookings to reuse (read only)"
    )
    args = parser.parse_args()
    report(f"publish-{args.size}", run(args.size, args.repeats, args.workdir, args.history))


if __name__ == "__main__":
    main()
