"""The store's tables. Money is integer minor units (or exact text), never REAL or float."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UtcDateTime(sa.TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on every backend (SQLite keeps no time zone)."""

    impl = sa.DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the store takes timezone-aware datetimes")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(self, value: dt.datetime | None, dialect: Any) -> dt.datetime | None:
        return value.replace(tzinfo=dt.UTC) if value is not None else None


class Base(DeclarativeBase):
    pass


class BookingRow(Base):
    """One booking: what was booked, how it was priced, and how far its saga got."""

    __tablename__ = "bookings"

    id: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(32), index=True)
    member_id: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(32), index=True)
    offer_id: Mapped[str] = mapped_column(sa.String(64))
    cabin_class: Mapped[str] = mapped_column(sa.String(32))
    flight: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    passengers: Mapped[list[dict[str, Any]]] = mapped_column(sa.JSON)
    contact: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    departure_date: Mapped[str | None] = mapped_column(sa.String(10))
    flight_number: Mapped[str | None] = mapped_column(sa.String(16))
    route: Mapped[str | None] = mapped_column(sa.String(16))
    offer_expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # The price: the fare as Duffel quoted it, its USD value and the loyalty charge.
    fare_amount: Mapped[str] = mapped_column(sa.String(32))
    fare_currency: Mapped[str] = mapped_column(sa.String(3))
    fx_rate: Mapped[str] = mapped_column(sa.String(32))
    usd_cents: Mapped[int] = mapped_column(sa.BigInteger)
    usd_per_unit: Mapped[str] = mapped_column(sa.String(32))
    loyalty_minor: Mapped[int] = mapped_column(sa.BigInteger)
    loyalty_currency: Mapped[str] = mapped_column(sa.String(16))
    loyalty_decimals: Mapped[int] = mapped_column(sa.Integer)
    cashback_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    loyalty_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    approval_id: Mapped[str | None] = mapped_column(sa.String(64))
    approval_reason: Mapped[str | None] = mapped_column(sa.Text)
    estimated_approval_time: Mapped[str | None] = mapped_column(sa.String(32))
    approval_note: Mapped[str | None] = mapped_column(sa.Text)
    duffel_order_id: Mapped[str | None] = mapped_column(sa.String(64))
    booking_reference: Mapped[str | None] = mapped_column(sa.String(16))
    tickets: Mapped[list[dict[str, Any]] | None] = mapped_column(sa.JSON)
    duffel_cancellation_id: Mapped[str | None] = mapped_column(sa.String(64))
    duffel_cancelled_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    cancel_requested: Mapped[bool] = mapped_column(sa.Boolean, default=False)
    cancel_reason: Mapped[str | None] = mapped_column(sa.Text)
    refund_requested: Mapped[bool] = mapped_column(sa.Boolean, default=True)
    refund_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    refund_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    refunded_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # When the refund call was last sent: a refund whose outcome is unknown is looked up in
    # the tenant's ledger from there, never sent again blindly.
    refund_attempted_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    failure_code: Mapped[str | None] = mapped_column(sa.String(64))
    failure_reason: Mapped[str | None] = mapped_column(sa.Text)
    failure_details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON)
    # What an unknown outcome is about ("charge", "order" or "refund") and when silence means "never".
    reconcile_phase: Mapped[str | None] = mapped_column(sa.String(16))
    reconcile_deadline: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    # One driver at a time per saga, across processes; expires so a crashed driver's work resumes.
    lease_owner: Mapped[str | None] = mapped_column(sa.String(64))
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime, index=True)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (sa.Index("ix_bookings_member", "tenant_id", "member_id", "created_at"),)


class EventRow(Base):
    """One step of a booking's saga, appended with the state change (the outbox and the feed)."""

    __tablename__ = "booking_events"

    # Assigned from ``event_sequence`` under a row lock, so ids are in commit order.
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    booking_id: Mapped[str] = mapped_column(sa.String(40), index=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(32))
    member_id: Mapped[str] = mapped_column(sa.String(64))
    type: Mapped[str] = mapped_column(sa.String(48))
    from_state: Mapped[str | None] = mapped_column(sa.String(32))
    to_state: Mapped[str] = mapped_column(sa.String(32))
    loyalty_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    loyalty_currency: Mapped[str | None] = mapped_column(sa.String(16))
    loyalty_decimals: Mapped[int | None] = mapped_column(sa.Integer)
    cashback_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    refund_minor: Mapped[int | None] = mapped_column(sa.BigInteger)
    usd_cents: Mapped[int | None] = mapped_column(sa.BigInteger)
    usd_per_unit: Mapped[str | None] = mapped_column(sa.String(32))
    fare_amount: Mapped[str | None] = mapped_column(sa.String(32))
    fare_currency: Mapped[str | None] = mapped_column(sa.String(3))
    fx_rate: Mapped[str | None] = mapped_column(sa.String(32))
    loyalty_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    refund_transaction_id: Mapped[str | None] = mapped_column(sa.String(64))
    duffel_order_id: Mapped[str | None] = mapped_column(sa.String(64))
    detail: Mapped[str | None] = mapped_column(sa.Text)
    # Who made it happen when not the saga itself (e.g. "operator:alice"); None for the saga.
    actor: Mapped[str | None] = mapped_column(sa.String(80))
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class FlightSearchRow(Base):
    """One flight search a member made and was answered: the top of the booking funnel."""

    __tablename__ = "flight_searches"

    # Assigned from ``event_sequence`` (name "searches") under a row lock: commit order, so a
    # cursor over the feed never skips a search that commits later with a smaller id.
    id: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    search_id: Mapped[str] = mapped_column(sa.String(64))
    tenant_id: Mapped[str] = mapped_column(sa.String(32))
    member_id: Mapped[str] = mapped_column(sa.String(64))
    origin: Mapped[str] = mapped_column(sa.String(3))
    destination: Mapped[str] = mapped_column(sa.String(3))
    departure_date: Mapped[dt.date] = mapped_column(sa.Date)
    return_date: Mapped[dt.date | None] = mapped_column(sa.Date)
    cabin_class: Mapped[str] = mapped_column(sa.String(32))
    adults: Mapped[int] = mapped_column(sa.Integer)
    children: Mapped[int] = mapped_column(sa.Integer)
    infants: Mapped[int] = mapped_column(sa.Integer)
    result_count: Mapped[int] = mapped_column(sa.Integer)
    occurred_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (sa.Index("ix_flight_searches_tenant", "tenant_id", "id"),)


class EventSequenceRow(Base):
    """The last event id handed out; locked by each writer so feed ids follow commit order."""

    __tablename__ = "event_sequence"

    name: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    value: Mapped[int] = mapped_column(sa.BigInteger)


class IdempotencyRow(Base):
    """A client's ``Idempotency-Key``: its request's fingerprint, booking and final response."""

    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(32))
    member_id: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(255))
    method: Mapped[str] = mapped_column(sa.String(8))
    path: Mapped[str] = mapped_column(sa.String(255))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    booking_id: Mapped[str | None] = mapped_column(sa.String(40))
    response_status: Mapped[int | None] = mapped_column(sa.Integer)
    response_body: Mapped[str | None] = mapped_column(sa.Text)
    locked_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)

    __table_args__ = (sa.UniqueConstraint("tenant_id", "member_id", "key", name="uq_idem_key"),)


class OfferRow(Base):
    """An offer a search showed a tenant: lets booking check the cabin before any upstream call."""

    __tablename__ = "offers"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(32))
    search_id: Mapped[str] = mapped_column(sa.String(64))
    cabin_class: Mapped[str] = mapped_column(sa.String(32))
    expires_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime, index=True)


class RateLimitRow(Base):
    """Requests counted per key and fixed window; shared by every worker process."""

    __tablename__ = "rate_limit_counters"

    key: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    window_start: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True)
    count: Mapped[int] = mapped_column(sa.Integer)


class RequestStatsRow(Base):
    """One process's flushed count of one minute of one tenant's requests to one route."""

    __tablename__ = "request_stats"

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True
    )
    minute: Mapped[int] = mapped_column(sa.BigInteger)  # epoch seconds of the minute's start
    tenant_id: Mapped[str] = mapped_column(sa.String(32))  # "" when no tenant was named
    route: Mapped[str] = mapped_column(sa.String(200))  # "METHOD /route/{template}"
    requests: Mapped[int] = mapped_column(sa.Integer)
    client_errors: Mapped[int] = mapped_column(sa.Integer)
    server_errors: Mapped[int] = mapped_column(sa.Integer)
    throttled: Mapped[int] = mapped_column(sa.Integer)
    latency_ms_sum: Mapped[float] = mapped_column(sa.Float)  # a duration, not money
    latency_ms_max: Mapped[float] = mapped_column(sa.Float)
    histogram: Mapped[str] = mapped_column(sa.String(200))  # counts per latency bucket

    __table_args__ = (sa.Index("ix_request_stats_minute", "minute"),)


class DuffelEventRow(Base):
    """A Duffel webhook event already received: deliveries are at least once, acted on once."""

    __tablename__ = "duffel_webhook_events"

    id: Mapped[str] = mapped_column(sa.String(64), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(32))
    type: Mapped[str] = mapped_column(sa.String(64))
    booking_id: Mapped[str | None] = mapped_column(sa.String(40))
    received_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class WebhookSubscriptionRow(Base):
    """A tenant's webhook URL, its signing secret, and how far the outbox was fanned out to it."""

    __tablename__ = "webhook_subscriptions"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    tenant_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    url: Mapped[str] = mapped_column(sa.String(2000))
    secret: Mapped[str] = mapped_column(sa.String(128))
    # The last event id already turned into deliveries for this subscription.
    cursor: Mapped[int] = mapped_column(sa.BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)


class WebhookDeliveryRow(Base):
    """One event owed to one subscription, retried with backoff until delivered (at least once)."""

    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(sa.Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(sa.Integer)
    event_id: Mapped[int] = mapped_column(sa.BigInteger)
    event_type: Mapped[str] = mapped_column(sa.String(48))
    status: Mapped[str] = mapped_column(sa.String(16), index=True)
    attempts: Mapped[int] = mapped_column(sa.Integer)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UtcDateTime)
    lease_until: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    delivered_at: Mapped[dt.datetime | None] = mapped_column(UtcDateTime)

    __table_args__ = (sa.UniqueConstraint("subscription_id", "event_id", name="uq_delivery"),)
