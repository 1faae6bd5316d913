"""Loading a generated history into the booking store (`python -m booking import-history`).

The import runs once at the demo's start, before the booking API serves: 1,000,000 bookings
(about 3.2 million events) into SQLite and into PostgreSQL, and a 100,000-booking history
into SQLite. Each SQLite import runs in a child process, so its peak RSS is the import's
alone; PostgreSQL runs in a throwaway server (tests/postgres.py) on loopback.
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_standins import ensure_history
from benchmarks.common import Figure, report
from booking.history import import_history
from sandbox.generator import generate
from settings import child_environment


def _sqlite(history: Path, label: str) -> list[Figure]:
    with tempfile.TemporaryDirectory() as tmp:
        env = child_environment(
            {"BOOKING_DATABASE_URL": f"sqlite:///{Path(tmp) / 'booking.sqlite3'}"},
            without=("BOOKING_",),
        )
        before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        started = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "booking", "import-history", str(history)], env=env, check=True
        )
        seconds = time.perf_counter() - started
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    figures = [Figure("history_import", f"SQLite, {label}: wall time", seconds, "s")]
    if peak > before:  # the largest child so far is this one
        figures.append(Figure("history_import", f"SQLite, {label}: peak RSS", peak / 1024, "MB"))
    return figures


def _postgres(history: Path, label: str) -> list[Figure]:
    from testing.postgres import PostgresServer

    with PostgresServer() as server:
        result = import_history(server.create_database(), history)
    return [Figure("history_import", f"PostgreSQL, {label}: wall time", result.seconds, "s")]


def run(size: int, small: int = 100_000) -> list[Figure]:
    history = ensure_history(size)
    figures: list[Figure] = []
    with tempfile.TemporaryDirectory() as tmp:
        little = Path(tmp) / "history"
        generate(small, 7, little)
        figures += _sqlite(little, f"{small:,} bookings")
    figures += _sqlite(history, f"{size:,} bookings")
    figures += _postgres(history, f"{size:,} bookings")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=100_000)
    args = parser.parse_args()
    report("history_import", run(args.size, args.small))


if __name__ == "__main__":
    main()
