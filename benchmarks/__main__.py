"""Run every benchmark in turn (``make bench``); each prints its table and saves it under benchmarks/results/."""

from __future__ import annotations

import argparse

from benchmarks import (
    bench_booking,
    bench_dashboard,
    bench_dlt,
    bench_freshness,
    bench_generate,
    bench_history_import,
    bench_ingest,
    bench_standins,
    bench_warehouse,
)
from benchmarks.common import report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--size", type=int, default=1_000_000, help="bookings in the benchmark history"
    )
    parser.add_argument(
        "--dlt-size", type=int, default=100_000, help="bookings in the dlt comparison's history"
    )
    args = parser.parse_args()
    report("generate", bench_generate.run(args.size))
    report("history_import", bench_history_import.run(args.size))
    report("standins", bench_standins.run(args.size, max_pages=1_000))
    report("ingest", bench_ingest.run(args.size))
    report("dlt", bench_dlt.run(args.dlt_size, repeats=2))
    report("warehouse", bench_warehouse.run(args.size))
    report("dashboard", bench_dashboard.run(args.size))
    report("freshness", bench_freshness.run())
    bench_booking.report_all(bench_booking.run(bench_booking.parse([])))


if __name__ == "__main__":
    main()
