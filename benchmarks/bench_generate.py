"""Generation of the sandbox history: 10,000,000 bookings in <= 5 min with <= 4 GB RAM.

Each run is a child process of its own, so its peak RSS is the generator's alone; the
figures are the median and the best (wall) or worst (RSS) of ``--repeats`` runs, each run's
line with the load average when it started (the machine may be shared).

    python -m benchmarks.bench_generate --size 10000000 --repeats 3 --out data/bench-10m
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, report
from sandbox.config import DEFAULT_CHUNK_SIZE


def run_once(size: int, out: Path, chunk_size: int) -> dict[str, float]:
    """One generation into ``out``: wall seconds, peak RSS (MB), Parquet written (MB)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "generate",
            "--size",
            str(size),
            "--out",
            str(out),
            "--anchor",
            "2026-11-01",
            "--chunk-size",
            str(chunk_size),
        ]
    )
    # wait4: this child's own resource usage, not the maximum over every child so far.
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode:
        raise subprocess.CalledProcessError(child.returncode, child.args)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_mb": usage.ru_maxrss / 1024,
        "files_mb": sum(p.stat().st_size for p in out.glob("*.parquet")) / 2**20,
    }


def run(
    size: int, repeats: int = 3, out: Path | None = None, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> list[Figure]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        target = out or Path(tmp) / "history"
        for attempt in range(repeats):
            load = " ".join(f"{x:.2f}" for x in os.getloadavg())
            shutil.rmtree(target, ignore_errors=True)
            result = run_once(size, target, chunk_size)
            runs.append(result)
            print(
                f"run {attempt + 1}/{repeats}: {result['seconds']:.1f} s wall, "
                f"{result['cpu_seconds']:.1f} CPU-s, peak RSS {result['peak_mb']:,.0f} MB "
                f"(load average at start {load})",
                flush=True,
            )
    seconds = [r["seconds"] for r in runs]
    peak = [r["peak_mb"] for r in runs]
    label = f"{size:,} bookings, {repeats} runs"
    return [
        Figure(
            "generate",
            f"wall time, {label}, median",
            statistics.median(seconds),
            "s",
            "<= 300 s at 10,000,000",
        ),
        Figure("generate", f"wall time, {label}, min", min(seconds), "s"),
        Figure(
            "generate",
            "CPU time (user + system), median",
            statistics.median(r["cpu_seconds"] for r in runs),
            "s",
        ),
        Figure(
            "generate",
            "bookings per second (median run)",
            size / statistics.median(seconds),
            "bookings/s",
        ),
        Figure("generate", "peak RSS, median", statistics.median(peak), "MB", "<= 4096 MB"),
        Figure("generate", "peak RSS, max", max(peak), "MB", "<= 4096 MB"),
        Figure("generate", "Parquet written", runs[-1]["files_mb"], "MB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE)
    parser.add_argument(
        "--out", type=Path, help="keep the history here (default: a temporary folder, deleted)"
    )
    args = parser.parse_args()
    report("generate", run(args.size, args.repeats, args.out, args.chunk_size))


if __name__ == "__main__":
    main()
