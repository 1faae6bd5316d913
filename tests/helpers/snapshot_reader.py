"""A separate process that queries the serving snapshot the way the dashboard does."""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

import duckdb

from warehouse.publish import connect


def read_for(
    serving: str, seconds: float, ready: multiprocessing.Event, queue: multiprocessing.Queue
) -> None:
    """Open, query, close per request for ``seconds``; report (reads, errors, torn reads)."""
    errors = reads = torn = 0
    ready.set()
    stop_at = time.monotonic() + seconds
    while time.monotonic() < stop_at:
        try:
            with connect(Path(serving)) as con:
                bookings, daily = con.execute(
                    "select (select count(*) from bookings), (select sum(bookings) from daily_tenant_metrics)"
                ).fetchone()
            torn += bookings != daily  # both tables come from one publish, or not at all
            reads += 1
        except duckdb.Error:  # counted and reported: the caller asserts there are none
            errors += 1
    queue.put((reads, errors, torn))
