"""The warehouse at 1,000,000 bookings: `dbt build` (models + tests), 1% increments, and publish.

Targets: full build <= 30 s, a 1% increment <= 10 s, publish <= 1 s (after an increment:
`bench_publish.py`). The landing zone is
written straight from the generated history (the warehouse tests' shortcut), so this
measures dbt and the publish step alone; ingestion has its own benchmark.

Two increments of 1% each land after the full build: the first is built with every test
(data and unit tests, as `make test` builds), the second as the pipeline builds it (data
tests, no unit tests: `--exclude-resource-type unit_test`), each in a new dbt process. A
third increment is built as the live loop builds it: by dbt already loaded in the process.
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

from benchmarks.bench_standins import ensure_history
from benchmarks.common import Figure, report
from sandbox.generator import generate
from testing.dbt_build import dbt_build
from testing.landing_from_history import write_landing
from warehouse.dbt import InProcessDbt, WarehouseResource
from warehouse.publish import publish_snapshot


def _increment(workdir: Path, landing: Path, size: int, anchor: dt.date, seed: int) -> None:
    """Land ``size`` bookings more (another seed, later history) beside the existing batches."""
    extra_history = workdir / f"increment-{seed}-history"
    generate(size, seed, extra_history, anchor=anchor, months=1)
    extra_landing = workdir / f"increment-{seed}-landing"
    write_landing(extra_history, extra_landing)
    for path in extra_landing.rglob("*.parquet"):
        target = landing / path.relative_to(extra_landing)
        target = target.with_name(f"increment-{seed}-{target.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)


def _timed_build(workdir: Path, landing: Path, *args: str) -> float:
    started = time.perf_counter()
    build = dbt_build(workdir, landing, *args)
    seconds = time.perf_counter() - started
    if build.returncode != 0:
        raise RuntimeError(f"dbt build failed:\n{build.output[-3000:]}")
    return seconds


def run(size: int) -> list[Figure]:
    history = ensure_history(size)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        landing = workdir / "landing"
        write_landing(history, landing)
        full = _timed_build(workdir, landing)
        again = _timed_build(workdir, landing)
        tomorrow = dt.date.today() + dt.timedelta(days=1)
        _increment(workdir, landing, size // 100, tomorrow, seed=8)
        increment = _timed_build(workdir, landing)
        _increment(workdir, landing, size // 100, tomorrow + dt.timedelta(days=40), seed=9)
        pipeline_increment = _timed_build(workdir, landing, "--exclude-resource-type", "unit_test")
        # The live loop's build: dbt already loaded in the process (one warm-up build, as
        # a live run's first cycle), then a third 1% increment.
        live_warehouse = WarehouseResource(data_dir=str(workdir))
        in_process = InProcessDbt(live_warehouse)
        in_process.build(["build", "--exclude-resource-type", "unit_test"])
        _increment(workdir, landing, size // 100, tomorrow + dt.timedelta(days=80), seed=10)
        started = time.perf_counter()
        in_process.build(["build", "--exclude-resource-type", "unit_test"])
        live_increment = time.perf_counter() - started
        published = [
            publish_snapshot(workdir / "warehouse.duckdb", workdir / "serving") for _ in range(3)
        ]
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return [
        Figure("warehouse", f"dbt build, {size:,} bookings (first)", full, "s", "<= 30 s"),
        Figure("warehouse", "dbt build, nothing new landed", again, "s"),
        Figure(
            "warehouse",
            f"dbt build after a 1% increment ({size // 100:,}), all tests",
            increment,
            "s",
            "<= 10 s",
        ),
        Figure(
            "warehouse",
            f"dbt build after a 1% increment ({size // 100:,}), as the pipeline runs it",
            pipeline_increment,
            "s",
            "<= 10 s",
        ),
        Figure(
            "warehouse",
            f"dbt build after a 1% increment ({size // 100:,}), in the live loop (in-process)",
            live_increment,
            "s",
            "<= 10 s",
        ),
        Figure(
            "warehouse",
            "publish serving snapshot, nothing changed (median of 3)",
            statistics.median(p.seconds for p in published),
            "s",
            "<= 1 s",
        ),
        Figure(
            "warehouse",
            "publish serving snapshot, nothing changed (min of 3)",
            min(p.seconds for p in published),
            "s",
        ),
        Figure("warehouse", "bookings in the snapshot", published[-1].rows["bookings"], "rows"),
        Figure("warehouse", "dbt peak RSS", peak_mb, "MB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    report("warehouse", run(args.size))


if __name__ == "__main__":
    main()
