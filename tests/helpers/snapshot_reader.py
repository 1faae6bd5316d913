"""A separate process that queries the serving snapshot the way the dashboard does."""

from __future__ import annotations

import multiprocessing
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path

import duckdb

from warehouse.publish import connect


def read_until(
    serving: str,
    stop: multiprocessing.Event,
    ready: multiprocessing.Event,
    queue: multiprocessing.Queue,
    done: Synchronized,
) -> None:
    """Open, query, close per request until ``stop``; count reads in ``done`` as they finish;
    report (reads, errors, torn reads)."""
    errors = reads = torn = 0
    ready.set()
    while not stop.is_set():
        try:
            with connect(Path(serving)) as con:
                bookings, daily = con.execute(
                    "select (select count(*) from bookings), (select sum(bookings) from daily_tenant_metrics)"
                ).fetchone()
            torn += bookings != daily  # both tables come from one publish, or not at all
            reads += 1
            done.value = reads
        except duckdb.Error:  # counted and reported: the caller asserts there are none
            errors += 1
    queue.put((reads, errors, torn))
