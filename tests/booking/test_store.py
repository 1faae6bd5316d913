"""The store on SQLite and PostgreSQL: migrations, the outbox, the cursor, keys and counters."""

from __future__ import annotations

import datetime as dt
import threading
from decimal import Decimal

import pytest
import sqlalchemy as sa

from booking.domain import InvalidTransition, Status
from booking.store.db import create_store_engine, migrate
from booking.store.repository import utcnow
from booking.store.tables import BookingRow, IdempotencyRow
from booking.store.uow import Store


def new_booking(booking_id: str, member: str = "CC1234567", **overrides) -> BookingRow:
    now = utcnow()
    values = dict(
        id=booking_id,
        tenant_id="coffeechain",
        member_id=member,
        status=Status.CHARGING.value,
        offer_id="off_1",
        cabin_class="economy",
        flight={"id": "off_1"},
        passengers=[{"first_name": "John", "last_name": "Doe"}],
        contact=None,
        departure_date="2027-01-10",
        flight_number="BA117",
        route="LHR-JFK",
        fare_amount="412.34",
        fare_currency="USD",
        fx_rate="1",
        usd_cents=41234,
        usd_per_unit="0.01",
        loyalty_minor=41234,
        loyalty_currency="stars",
        loyalty_decimals=0,
        created_at=now,
        updated_at=now,
    )
    values.update(overrides)
    return BookingRow(**values)


def test_migrations_are_idempotent_and_money_is_exact(store: Store):
    migrate(store.engine)  # a second run on start changes nothing
    big = 123456789012345678  # beyond a double's exact range
    with store.uow() as uow:
        uow.bookings.add(
            new_booking("bkg_big", loyalty_minor=big, fare_amount="1234567890123456.78")
        )
        uow.commit()
    with store.uow() as uow:
        row = uow.bookings.get("bkg_big")
        assert row.loyalty_minor == big
        assert Decimal(row.fare_amount) == Decimal("1234567890123456.78")
        assert row.created_at.tzinfo is not None


def test_state_change_and_event_commit_together(store: Store):
    with store.uow() as uow:
        uow.bookings.add(new_booking("bkg_1"))
        uow.commit()
    with store.uow() as uow:
        booking = uow.bookings.get("bkg_1")
        uow.bookings.transition(booking, Status.ORDERING, loyalty_transaction_id="txn_1")
        # not committed: rolled back on exit
    with store.uow() as uow:
        assert uow.bookings.get("bkg_1").status == "charging"
        assert [e.to_state for e in uow.events.for_booking("bkg_1")] == ["charging"]
        booking = uow.bookings.get("bkg_1")
        uow.bookings.transition(booking, Status.ORDERING, loyalty_transaction_id="txn_1")
        uow.commit()
    with store.uow() as uow:
        events = uow.events.for_booking("bkg_1")
        assert [(e.from_state, e.to_state, e.type) for e in events] == [
            (None, "charging", "booking.charging"),
            ("charging", "ordering", "booking.ordering"),
        ]
        assert events[1].loyalty_transaction_id == "txn_1"
        assert events[1].loyalty_minor == 41234 and events[1].usd_per_unit == "0.01"
        with pytest.raises(InvalidTransition):
            uow.bookings.transition(uow.bookings.get("bkg_1"), Status.CANCELLED)


def test_event_cursor_is_exact_under_concurrent_writers(store: Store):
    with store.uow() as uow:
        for n in range(8):
            uow.bookings.add(new_booking(f"bkg_c{n}"))
        uow.commit()

    def drive(n: int) -> None:
        for target in (Status.ORDERING, Status.CONFIRMED):
            with store.uow() as uow:
                uow.bookings.transition(uow.bookings.get(f"bkg_c{n}"), target)
                uow.commit()

    threads = [threading.Thread(target=drive, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seen: list[int] = []
    cursor = 0
    with store.uow() as uow:
        while page := uow.events.read(after=cursor, limit=5):
            seen.extend(e.id for e in page)
            cursor = page[-1].id
    assert seen == list(range(1, 8 * 3 + 1))


def test_member_listing_filters_and_pages(store: Store):
    with store.uow() as uow:
        for n in range(5):
            uow.bookings.add(new_booking(f"bkg_m{n}", departure_date=f"2027-01-1{n}"))
        uow.bookings.add(new_booking("bkg_other", member="CC2222222"))
        uow.commit()
    with store.uow() as uow:
        rows, total = uow.bookings.list_for_member("coffeechain", "CC1234567", limit=2, offset=0)
        assert total == 5 and len(rows) == 2
        rows, total = uow.bookings.list_for_member(
            "coffeechain",
            "CC1234567",
            from_date=dt.date(2027, 1, 11),
            to_date=dt.date(2027, 1, 13),
        )
        assert total == 3
        assert uow.bookings.get_for_member("coffeechain", "CC1234567", "bkg_other") is None
        assert uow.bookings.get_for_member("telcocorp", "CC2222222", "bkg_other") is None


def test_lease_is_exclusive_until_it_lapses(store: Store):
    with store.uow() as uow:
        uow.bookings.add(new_booking("bkg_l"))
        uow.commit()
    now = utcnow()
    with store.uow() as uow:
        assert uow.bookings.claim("bkg_l", "a", now + dt.timedelta(seconds=60), now)
        uow.commit()
    with store.uow() as uow:
        assert not uow.bookings.claim("bkg_l", "b", now + dt.timedelta(seconds=60), now)
        assert uow.bookings.due_for_driving(["charging"], now) == []
        later = now + dt.timedelta(seconds=61)
        assert uow.bookings.due_for_driving(["charging"], later) == ["bkg_l"]
        assert uow.bookings.claim("bkg_l", "b", later + dt.timedelta(seconds=60), later)
        uow.commit()


def test_idempotency_key_is_unique_per_member(store: Store):
    now = utcnow()

    def record(member: str) -> IdempotencyRow:
        return IdempotencyRow(
            tenant_id="coffeechain",
            member_id=member,
            key="k1",
            method="POST",
            path="/api/v1/bookings",
            request_hash="h",
            created_at=now,
            updated_at=now,
        )

    with store.uow() as uow:
        uow.idempotency.add(record("CC1234567"))
        uow.idempotency.add(record("CC2222222"))
        uow.commit()
    with store.uow() as uow, pytest.raises(sa.exc.IntegrityError):
        uow.idempotency.add(record("CC1234567"))
        uow.commit()
    with store.uow() as uow:
        found = uow.idempotency.find("coffeechain", "CC1234567", "k1")
        assert uow.idempotency.lock(found.id, now + dt.timedelta(seconds=30), now)
        assert not uow.idempotency.lock(found.id, now + dt.timedelta(seconds=30), now)
        uow.idempotency.respond(found.id, 201, '{"data": {}}', "bkg_1")
        uow.commit()
    with store.uow() as uow:
        found = uow.idempotency.find("coffeechain", "CC1234567", "k1")
        assert (found.response_status, found.booking_id) == (201, "bkg_1")


def test_rate_counter_is_shared_across_engines(store: Store, store_url: str):
    other = Store(store_url, run_migrations=False)  # a second worker process's engine
    try:
        counts = [store.hit("coffeechain", 60, now=120.5)[0] for _ in range(3)]
        counts.append(other.hit("coffeechain", 60, now=150.0)[0])
        assert counts == [1, 2, 3, 4]
        assert store.hit("coffeechain", 60, now=180.0) == (1, 240)  # next window
        assert store.hit("telcocorp", 60, now=180.0) == (1, 240)
    finally:
        other.dispose()


def test_default_sqlite_engine_takes_the_write_lock_at_begin(tmp_path):
    engine = create_store_engine(f"sqlite:///{tmp_path / 'x.sqlite3'}")
    with engine.begin() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    engine.dispose()
