"""Generation of the sandbox history: 1,000,000 bookings in <= 60 s with <= 4 GB RAM."""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import Figure, report


def run(size: int) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        # A child process, so its peak RSS is the generator's alone.
        subprocess.run(
            [
                sys.executable,
                "-m",
                "sandbox",
                "generate",
                "--size",
                str(size),
                "--out",
                tmp,
                "--anchor",
                "2026-11-01",
            ],
            check=True,
        )
        seconds = time.perf_counter() - started
        peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        files_mb = sum(p.stat().st_size for p in Path(tmp).glob("*.parquet")) / 2**20
    return [
        Figure("generate", f"wall time, {size:,} bookings", seconds, "s", "<= 60 s at 1,000,000"),
        Figure("generate", "bookings per second", size / seconds, "bookings/s"),
        Figure("generate", "peak RSS", peak_mb, "MB", "<= 4096 MB"),
        Figure("generate", "Parquet written", files_mb, "MB"),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    args = parser.parse_args()
    report("generate", run(args.size))


if __name__ == "__main__":
    main()
