"""The per-request rate-limit count must stay cheap: off the event loop, and not flushed to disk.

Every request (reads included) counts itself against its tenant's limit in the store. Done on
the event loop it stalls every other request for the length of a write transaction; flushed
to disk like a booking it costs an fsync per request. A lost count after a power cut is
harmless (the window is a minute); a lost booking step is not, so only the counter relaxes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import sqlalchemy as sa

from booking.api import create_app
from booking.config import BookingSettings
from booking.store.uow import Store
from booking.upstream import Upstreams
from tenants.settings import get_registry

STALL = 0.3


class SlowCounterStore(Store):
    """A store whose rate-limit count takes ``STALL`` seconds (a slow disk, a busy lock)."""

    def hit(self, key: str, window_seconds: float, now: float | None = None) -> tuple[int, int]:
        time.sleep(STALL)
        return super().hit(key, window_seconds, now)


def test_a_slow_rate_limit_count_does_not_hold_up_other_requests(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'api.sqlite3'}"
    store = SlowCounterStore(url)
    settings = BookingSettings(database_url=url, background_reconciler=False)
    app = create_app(settings, store=store, upstreams=Upstreams(), registry=get_registry())

    async def concurrently(requests: int) -> tuple[float, list[int]]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
            started = time.perf_counter()
            answers = await asyncio.gather(
                *(client.get(f"/api/v1/bookings/bkg_{n}") for n in range(requests))
            )
            return time.perf_counter() - started, [a.status_code for a in answers]

    try:
        elapsed, statuses = asyncio.run(concurrently(4))
    finally:
        store.dispose()
    assert statuses == [401] * 4  # no tenant named: refused, but counted first
    # Four counts one after another on the event loop would take 4 x STALL.
    assert elapsed < 2.5 * STALL, f"4 requests took {elapsed:.2f} s"


def test_counts_skip_the_disk_flush_that_booking_steps_keep(tmp_path: Path) -> None:
    store = Store(f"sqlite:///{tmp_path / 'flush.sqlite3'}")
    try:
        with store.engine.connect() as connection:
            bookings = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
        with store.counter_engine.connect() as connection:
            counters = connection.exec_driver_sql("PRAGMA synchronous").scalar_one()
        assert (bookings, counters) == (2, 1)  # FULL for booking steps, NORMAL for counts
        assert store.hit("coffeechain", 60, now=60.0) == (1, 120)
        assert store.hit("coffeechain", 60, now=61.0) == (2, 120)
        # The count is in the same file every worker process reads.
        with store.engine.connect() as connection:
            total = connection.exec_driver_sql(
                "SELECT sum(count) FROM rate_limit_counters"
            ).scalar_one()
        assert total == 2
    finally:
        store.dispose()


def test_sqlite_transactions_of_one_process_queue_for_one_connection(tmp_path: Path) -> None:
    """Every SQLite transaction takes the file's write lock at BEGIN, so only one can run
    at a time anyway; waiting in SQLite's busy handler (sleeps of up to 100 ms between
    tries) left the lock idle while 10 clients queued. Queued in-process for the one
    connection, the next transaction starts as soon as the last one ends."""
    store = Store(f"sqlite:///{tmp_path / 'queue.sqlite3'}")
    try:
        for engine in (store.engine, store.counter_engine):
            assert (engine.pool.size(), engine.pool._max_overflow) == (1, 0)  # type: ignore[attr-defined]
        holding = threading.Event()
        release = threading.Event()
        waited: list[float] = []

        def hold() -> None:
            with store.uow() as uow:
                uow.session.execute(sa.text("SELECT 1"))
                holding.set()
                release.wait(5)

        def second() -> None:
            started = time.perf_counter()
            with store.uow() as uow:
                uow.session.execute(sa.text("SELECT 1"))
            waited.append(time.perf_counter() - started)

        first = threading.Thread(target=hold)
        first.start()
        assert holding.wait(5)
        other = threading.Thread(target=second)
        other.start()
        time.sleep(0.2)
        assert waited == []  # it waits for the connection...
        released = time.perf_counter()
        release.set()
        other.join(5)
        first.join(5)
        # ...and gets it at once, not at the end of a busy-handler sleep.
        assert waited and time.perf_counter() - released < 0.1
    finally:
        store.dispose()
