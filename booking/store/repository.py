"""Repositories over the store's tables; they query and add, the unit of work commits."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from booking.domain import Status, check_transition, event_type
from booking.store.tables import (
    BookingRow,
    EventRow,
    EventSequenceRow,
    FlightSearchRow,
    IdempotencyRow,
    OfferRow,
)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def next_feed_id(session: Session, feed: str) -> int:
    """The next id of a feed read by cursor ("events", "searches").

    The sequence row's lock is held until commit: writers queue here, so a reader that sees
    id n has already seen every id below n.
    """
    sequence = session.scalars(
        sa.select(EventSequenceRow).where(EventSequenceRow.name == feed).with_for_update()
    ).one()
    sequence.value += 1
    return sequence.value


class BookingRepository:
    """Bookings by id and by member; every state change goes through ``transition``."""

    def __init__(self, session: Session, events: EventLog) -> None:
        self.session = session
        self.events = events

    def add(self, booking: BookingRow, detail: str | None = None) -> None:
        """A new booking in one of its initial states, with its first event."""
        check_transition(None, Status(booking.status))
        self.session.add(booking)
        self.events.append(booking, None, detail)

    def get(self, booking_id: str, *, for_update: bool = False) -> BookingRow | None:
        query = sa.select(BookingRow).where(BookingRow.id == booking_id)
        if for_update:
            query = query.with_for_update()
        return self.session.scalars(query).one_or_none()

    def get_for_member(self, tenant_id: str, member_id: str, booking_id: str) -> BookingRow | None:
        """The booking only if it is this member's (another's is as good as missing)."""
        booking = self.get(booking_id)
        if booking is None or booking.tenant_id != tenant_id or booking.member_id != member_id:
            return None
        return booking

    def transition(
        self,
        booking: BookingRow,
        target: Status,
        detail: str | None = None,
        *,
        actor: str | None = None,
        **changes: Any,
    ) -> None:
        """Move the booking to ``target`` with ``changes``, appending the event in the same unit."""
        current = Status(booking.status)
        check_transition(current, target)
        for name, value in changes.items():
            setattr(booking, name, value)
        booking.status = target.value
        booking.updated_at = utcnow()
        self.events.append(booking, current, detail, actor=actor)

    def note(
        self,
        booking: BookingRow,
        type_: str,
        detail: str,
        *,
        actor: str | None = None,
        **changes: Any,
    ) -> None:
        """Something that happened to the booking without changing its state (e.g. the
        airline changed the flight): in the feed, with from and to state the same."""
        for name, value in changes.items():
            setattr(booking, name, value)
        booking.updated_at = utcnow()
        self.events.append(booking, Status(booking.status), detail, type_, actor=actor)

    def list_for_member(
        self,
        tenant_id: str,
        member_id: str,
        *,
        status: str | None = None,
        from_date: dt.date | None = None,
        to_date: dt.date | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> tuple[list[BookingRow], int]:
        """One page of the member's bookings (newest first) and how many match in all."""
        where = [BookingRow.tenant_id == tenant_id, BookingRow.member_id == member_id]
        if status:
            where.append(BookingRow.status == status)
        if from_date:
            where.append(BookingRow.departure_date >= from_date.isoformat())
        if to_date:
            where.append(BookingRow.departure_date <= to_date.isoformat())
        total = self.session.scalar(
            sa.select(sa.func.count()).select_from(BookingRow).where(*where)
        )
        rows = self.session.scalars(
            sa.select(BookingRow)
            .where(*where)
            .order_by(BookingRow.created_at.desc(), BookingRow.id.desc())
            .limit(limit)
            .offset(offset)
        ).all()
        return list(rows), int(total or 0)

    def list_by_status(self, statuses: Sequence[str], limit: int = 100) -> list[BookingRow]:
        return list(
            self.session.scalars(
                sa.select(BookingRow)
                .where(BookingRow.status.in_(list(statuses)))
                .order_by(BookingRow.updated_at)
                .limit(limit)
            ).all()
        )

    def due_for_driving(
        self, statuses: Sequence[str], now: dt.datetime, limit: int = 50
    ) -> list[str]:
        """Unfinished sagas whose driver's lease has lapsed (crashed, or never started)."""
        return list(
            self.session.scalars(
                sa.select(BookingRow.id)
                .where(
                    BookingRow.status.in_(list(statuses)),
                    sa.or_(BookingRow.lease_until.is_(None), BookingRow.lease_until < now),
                )
                .order_by(BookingRow.updated_at)
                .limit(limit)
            ).all()
        )

    def claim(self, booking_id: str, owner: str, until: dt.datetime, now: dt.datetime) -> bool:
        """Take the saga's lease unless another live driver holds it."""
        result = self.session.execute(
            sa.update(BookingRow)
            .where(
                BookingRow.id == booking_id,
                sa.or_(
                    BookingRow.lease_until.is_(None),
                    BookingRow.lease_until < now,
                    BookingRow.lease_owner == owner,
                ),
            )
            .values(lease_owner=owner, lease_until=until)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def release(self, booking_id: str, owner: str) -> None:
        self.session.execute(
            sa.update(BookingRow)
            .where(BookingRow.id == booking_id, BookingRow.lease_owner == owner)
            .values(lease_owner=None, lease_until=None)
            .execution_options(synchronize_session=False)
        )


class EventLog:
    """The append-only event feed; ids follow commit order so a cursor never skips one."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def _next_id(self) -> int:
        return next_feed_id(self.session, "events")

    def append(
        self,
        booking: BookingRow,
        from_state: Status | None,
        detail: str | None,
        type_: str | None = None,
        *,
        actor: str | None = None,
    ) -> EventRow:
        """The booking's current state as an event (``type_`` names a note without a change)."""
        event = EventRow(
            id=self._next_id(),
            booking_id=booking.id,
            tenant_id=booking.tenant_id,
            member_id=booking.member_id,
            type=type_ or event_type(Status(booking.status)),
            from_state=from_state.value if from_state else None,
            to_state=booking.status,
            loyalty_minor=booking.loyalty_minor,
            loyalty_currency=booking.loyalty_currency,
            loyalty_decimals=booking.loyalty_decimals,
            cashback_minor=booking.cashback_minor,
            refund_minor=booking.refund_minor,
            usd_cents=booking.usd_cents,
            usd_per_unit=booking.usd_per_unit,
            fare_amount=booking.fare_amount,
            fare_currency=booking.fare_currency,
            fx_rate=booking.fx_rate,
            loyalty_transaction_id=booking.loyalty_transaction_id,
            refund_transaction_id=booking.refund_transaction_id,
            duffel_order_id=booking.duffel_order_id,
            detail=detail,
            actor=actor,
            occurred_at=booking.updated_at,
        )
        self.session.add(event)
        return event

    def read(self, after: int, limit: int, tenant_id: str | None = None) -> list[EventRow]:
        """Events with id > ``after``, in id order."""
        query = sa.select(EventRow).where(EventRow.id > after)
        if tenant_id:
            query = query.where(EventRow.tenant_id == tenant_id)
        return list(self.session.scalars(query.order_by(EventRow.id).limit(limit)).all())

    def for_booking(self, booking_id: str) -> list[EventRow]:
        return list(
            self.session.scalars(
                sa.select(EventRow).where(EventRow.booking_id == booking_id).order_by(EventRow.id)
            ).all()
        )


class SearchLog:
    """The answered flight searches, appended in commit order and read by cursor."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def append(self, search: FlightSearchRow) -> FlightSearchRow:
        """Add the search with the next feed id (it commits with the caller's unit of work)."""
        search.id = next_feed_id(self.session, "searches")
        self.session.add(search)
        return search

    def read(self, after: int, limit: int, tenant_id: str | None = None) -> list[FlightSearchRow]:
        """Searches with id > ``after``, in id order."""
        query = sa.select(FlightSearchRow).where(FlightSearchRow.id > after)
        if tenant_id:
            query = query.where(FlightSearchRow.tenant_id == tenant_id)
        return list(self.session.scalars(query.order_by(FlightSearchRow.id).limit(limit)).all())


class IdempotencyRepository:
    """Idempotency keys: one per (tenant, member, key), holding the first request's answer."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def find(self, tenant_id: str, member_id: str, key: str) -> IdempotencyRow | None:
        return self.session.scalars(
            sa.select(IdempotencyRow).where(
                IdempotencyRow.tenant_id == tenant_id,
                IdempotencyRow.member_id == member_id,
                IdempotencyRow.key == key,
            )
        ).one_or_none()

    def get(self, record_id: int) -> IdempotencyRow | None:
        return self.session.get(IdempotencyRow, record_id)

    def add(self, record: IdempotencyRow) -> None:
        self.session.add(record)

    def lock(self, record_id: int, until: dt.datetime, now: dt.datetime) -> bool:
        """Take the key for one request unless another request holds it right now."""
        result = self.session.execute(
            sa.update(IdempotencyRow)
            .where(
                IdempotencyRow.id == record_id,
                IdempotencyRow.response_status.is_(None),
                sa.or_(IdempotencyRow.locked_until.is_(None), IdempotencyRow.locked_until < now),
            )
            .values(locked_until=until, updated_at=now)
            .execution_options(synchronize_session=False)
        )
        return result.rowcount == 1

    def unlock(self, record_id: int) -> None:
        self.session.execute(
            sa.update(IdempotencyRow)
            .where(IdempotencyRow.id == record_id)
            .values(locked_until=None)
            .execution_options(synchronize_session=False)
        )

    def respond(
        self,
        record_id: int,
        status: int,
        body: str,
        booking_id: str | None,
        *,
        keep_lock: bool = False,
    ) -> None:
        """Keep the answer; a replay of the same request gets exactly this.

        ``keep_lock``: the request is still running (it unlocks when it returns), so a
        concurrent retry waits instead of reading an answer that may still be refined.
        """
        values: dict[str, Any] = {
            "response_status": status,
            "response_body": body,
            "booking_id": booking_id,
            "updated_at": utcnow(),
        }
        if not keep_lock:
            values["locked_until"] = None
        self.session.execute(
            sa.update(IdempotencyRow)
            .where(IdempotencyRow.id == record_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )


class OfferRepository:
    """Offers shown by searches, per tenant."""

    def __init__(self, session: Session) -> None:
        self.session = session

    def add_all(self, offers: list[OfferRow]) -> None:
        for offer in offers:
            self.session.merge(offer)

    def get(self, tenant_id: str, offer_id: str) -> OfferRow | None:
        offer = self.session.get(OfferRow, offer_id)
        return offer if offer is not None and offer.tenant_id == tenant_id else None

    def forget_before(self, moment: dt.datetime) -> None:
        self.session.execute(sa.delete(OfferRow).where(OfferRow.created_at < moment))
