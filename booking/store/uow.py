"""The unit of work: one transaction per saga phase, committed explicitly or rolled back."""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session, sessionmaker

from booking.requeststats import Bucket, Key, histogram_text, parse_histogram
from booking.store.db import create_store_engine, migrate
from booking.store.repository import (
    BookingRepository,
    EventLog,
    IdempotencyRepository,
    OfferRepository,
    SearchLog,
)
from booking.store.tables import RateLimitRow, RequestStatsRow

REQUEST_STATS_KEPT_SECONDS = 7 * 86400


class UnitOfWork:
    """Repositories over one session; nothing is kept unless ``commit`` is called."""

    def __init__(self, factory: sessionmaker[Session]) -> None:
        self._factory = factory

    def __enter__(self) -> UnitOfWork:
        self.session = self._factory()
        self.events = EventLog(self.session)
        self.bookings = BookingRepository(self.session, self.events)
        self.idempotency = IdempotencyRepository(self.session)
        self.offers = OfferRepository(self.session)
        self.searches = SearchLog(self.session)
        return self

    def __exit__(self, *exc: object) -> None:
        # Closing rolls back whatever was not committed, and leaves loaded rows readable.
        self.session.close()

    def commit(self) -> None:
        self.session.commit()


class Store:
    """The store of one deployment: its engine, units of work and shared counters."""

    def __init__(self, url: str, *, run_migrations: bool = True) -> None:
        self.engine = create_store_engine(url)
        # Every request counts itself; a count need not wait for the disk like a booking step.
        self.counter_engine = (
            create_store_engine(url, durable=False) if url.startswith("sqlite") else self.engine
        )
        if run_migrations:
            migrate(self.engine)
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    def uow(self) -> UnitOfWork:
        return UnitOfWork(self._factory)

    def ping(self) -> None:
        """Raise unless the store answers a query."""
        with self.engine.connect() as connection:
            connection.execute(sa.text("SELECT 1"))

    def hit(self, key: str, window_seconds: float, now: float | None = None) -> tuple[int, int]:
        """Count one request against ``key``'s current fixed window: (count so far, window end).

        An atomic upsert, so worker processes sharing the store share the count.
        """
        moment = time.time() if now is None else now
        start = int(moment // window_seconds * window_seconds)
        insert = (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(
            RateLimitRow
        )
        statement = insert.values(key=key, window_start=start, count=1)
        statement = statement.on_conflict_do_update(
            index_elements=["key", "window_start"],
            set_={"count": RateLimitRow.count + 1},
        ).returning(RateLimitRow.count)
        with self.counter_engine.begin() as connection:
            if self.dialect == "postgresql":
                # The count need not wait for the WAL flush; a crash may lose the last ones.
                connection.exec_driver_sql("SET LOCAL synchronous_commit TO OFF")
            count = connection.execute(statement).scalar_one()
            if count == 1:
                # First hit of a window: drop windows long gone so the table stays small.
                connection.execute(
                    sa.delete(RateLimitRow).where(
                        RateLimitRow.window_start < start - 10 * window_seconds
                    )
                )
        return int(count), int(start + window_seconds)

    def save_request_stats(self, buckets: dict[Key, Bucket]) -> None:
        """Add one process's drained buckets (a lost flush after a crash loses only counts)."""
        if not buckets:
            return
        rows = [
            {
                "minute": minute,
                "tenant_id": tenant_id,
                "route": route[:200],
                "requests": b.requests,
                "client_errors": b.client_errors,
                "server_errors": b.server_errors,
                "throttled": b.throttled,
                "latency_ms_sum": b.latency_ms_sum,
                "latency_ms_max": b.latency_ms_max,
                "histogram": histogram_text(b.histogram),
            }
            for (minute, tenant_id, route), b in buckets.items()
        ]
        oldest = min(minute for minute, _, _ in buckets) - REQUEST_STATS_KEPT_SECONDS
        with self.counter_engine.begin() as connection:
            connection.execute(sa.insert(RequestStatsRow), rows)
            connection.execute(sa.delete(RequestStatsRow).where(RequestStatsRow.minute < oldest))

    def request_stats(self, since_minute: int) -> list[tuple[str, str, Bucket]]:
        """Every flushed bucket from ``since_minute`` (epoch seconds) on."""
        query = sa.select(RequestStatsRow).where(RequestStatsRow.minute >= since_minute)
        with self.counter_engine.connect() as connection:
            return [
                (
                    row.tenant_id,
                    row.route,
                    Bucket(
                        row.requests,
                        row.client_errors,
                        row.server_errors,
                        row.throttled,
                        row.latency_ms_sum,
                        row.latency_ms_max,
                        parse_histogram(row.histogram),
                    ),
                )
                for row in connection.execute(query)
            ]

    def dispose(self) -> None:
        self.engine.dispose()
        self.counter_engine.dispose()
