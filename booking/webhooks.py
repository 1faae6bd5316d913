"""Outgoing webhooks: booking.confirmed / cancelled / failed to the URL a tenant registers.

The event feed is the outbox: a dispatcher fans new events out into delivery rows (the
subscription's cursor moves in the same commit), then posts each delivery, signed, until
the receiver answers 2xx, backing off between attempts: at least once, never lost.

Signature: ``X-Booking-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``,
with the event id in ``X-Booking-Event-Id`` (receivers de-duplicate by it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any

import httpx
import sqlalchemy as sa

from booking.store.repository import utcnow
from booking.store.tables import EventRow, WebhookDeliveryRow, WebhookSubscriptionRow
from booking.store.uow import Store
from booking.views import event_view, iso

log = logging.getLogger("booking.webhooks")

DELIVERED_TYPES = frozenset({"booking.confirmed", "booking.cancelled", "booking.failed"})
SIGNATURE_HEADER = "X-Booking-Signature"
EVENT_ID_HEADER = "X-Booking-Event-Id"
MAX_ATTEMPTS = 12
LEASE = dt.timedelta(seconds=30)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


class WebhookDispatcher:
    """Fans the outbox out to subscriptions and delivers what is due."""

    def __init__(
        self,
        store: Store,
        *,
        backoff_seconds: float = 2.0,
        timeout_seconds: float = 10.0,
        clock: Callable[[], dt.datetime] = utcnow,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.store = store
        self.backoff = backoff_seconds
        self.clock = clock
        self.http = httpx.Client(timeout=timeout_seconds, transport=transport)

    def close(self) -> None:
        self.http.close()

    def register(self, tenant_id: str, url: str) -> dict[str, Any]:
        """Set the tenant's URL and a new secret (shown only in this answer); events from now on."""
        secret = secrets.token_urlsafe(32)
        with self.store.uow() as uow:
            last = uow.session.scalar(sa.select(sa.func.max(EventRow.id))) or 0
            row = uow.session.scalars(
                sa.select(WebhookSubscriptionRow).where(
                    WebhookSubscriptionRow.tenant_id == tenant_id
                )
            ).one_or_none()
            if row is None:
                row = WebhookSubscriptionRow(
                    tenant_id=tenant_id,
                    url=url,
                    secret=secret,
                    cursor=last,
                    created_at=self.clock(),
                )
                uow.session.add(row)
            else:
                row.url, row.secret = url, secret
            uow.commit()
        return {
            "tenant_id": tenant_id,
            "url": url,
            "secret": secret,
            "events": sorted(DELIVERED_TYPES),
            "signature_header": SIGNATURE_HEADER,
        }

    def enqueue(self) -> int:
        """Turn new events into deliveries; the cursor moves in the same commit."""
        made = 0
        with self.store.uow() as uow:
            ids = list(uow.session.scalars(sa.select(WebhookSubscriptionRow.id)))
        for subscription_id in ids:
            with self.store.uow() as uow:
                subscription = uow.session.scalars(
                    sa.select(WebhookSubscriptionRow)
                    .where(WebhookSubscriptionRow.id == subscription_id)
                    .with_for_update()
                ).one()
                events = uow.events.read(subscription.cursor, 500, subscription.tenant_id)
                if not events:
                    continue
                for event in events:
                    if event.type in DELIVERED_TYPES:
                        uow.session.add(
                            WebhookDeliveryRow(
                                subscription_id=subscription.id,
                                event_id=event.id,
                                event_type=event.type,
                                status="pending",
                                attempts=0,
                                next_attempt_at=self.clock(),
                            )
                        )
                        made += 1
                subscription.cursor = events[-1].id
                uow.commit()
        return made

    def deliver_due(self, limit: int = 50) -> int:
        """Post every delivery that is due; returns how many were delivered now."""
        now = self.clock()
        with self.store.uow() as uow:
            due = list(
                uow.session.scalars(
                    sa.select(WebhookDeliveryRow.id)
                    .where(
                        WebhookDeliveryRow.status == "pending",
                        WebhookDeliveryRow.next_attempt_at <= now,
                        sa.or_(
                            WebhookDeliveryRow.lease_until.is_(None),
                            WebhookDeliveryRow.lease_until < now,
                        ),
                    )
                    .order_by(WebhookDeliveryRow.event_id)
                    .limit(limit)
                )
            )
        return sum(self._deliver(delivery_id) for delivery_id in due)

    def _deliver(self, delivery_id: int) -> bool:
        now = self.clock()
        with self.store.uow() as uow:
            claimed = uow.session.execute(
                sa.update(WebhookDeliveryRow)
                .where(
                    WebhookDeliveryRow.id == delivery_id,
                    WebhookDeliveryRow.status == "pending",
                    sa.or_(
                        WebhookDeliveryRow.lease_until.is_(None),
                        WebhookDeliveryRow.lease_until < now,
                    ),
                )
                .values(lease_until=now + LEASE)
                .execution_options(synchronize_session=False)
            )
            if claimed.rowcount != 1:
                return False  # another worker has it
            uow.commit()
            delivery = uow.session.get(WebhookDeliveryRow, delivery_id)
            subscription = uow.session.get(WebhookSubscriptionRow, delivery.subscription_id)
            event = uow.session.get(EventRow, delivery.event_id)
        body = json.dumps(
            {
                "id": str(event.id),
                "type": event.type,
                "created_at": iso(event.occurred_at),
                "data": event_view(event),
            },
            sort_keys=True,
        ).encode()
        timestamp = int(time.time())
        error: str | None = None
        try:
            response = self.http.post(
                subscription.url,
                content=body,
                headers={
                    "Content-Type": "application/json",
                    EVENT_ID_HEADER: str(event.id),
                    SIGNATURE_HEADER: sign(subscription.secret, body, timestamp),
                },
            )
            if not response.is_success:
                error = f"HTTP {response.status_code}"
        except httpx.HTTPError as exc:
            error = type(exc).__name__
        with self.store.uow() as uow:
            delivery = uow.session.get(WebhookDeliveryRow, delivery_id)
            delivery.attempts += 1
            delivery.lease_until = None
            if error is None:
                delivery.status, delivery.delivered_at, delivery.last_error = "delivered", now, None
            else:
                delivery.last_error = error
                if delivery.attempts >= MAX_ATTEMPTS:
                    delivery.status = "failed"  # listed for operators; never silently dropped
                delivery.next_attempt_at = self.clock() + dt.timedelta(
                    seconds=min(self.backoff * 2 ** (delivery.attempts - 1), 3600.0)
                )
            uow.commit()
        if error is not None:
            log.warning("webhook %s to tenant %s: %s", event.id, subscription.tenant_id, error)
        return error is None

    def run_once(self) -> int:
        self.enqueue()
        return self.deliver_due()

    def deliveries(self, status: str | None, limit: int) -> list[dict[str, Any]]:
        with self.store.uow() as uow:
            query = sa.select(WebhookDeliveryRow, WebhookSubscriptionRow.tenant_id).join(
                WebhookSubscriptionRow,
                WebhookSubscriptionRow.id == WebhookDeliveryRow.subscription_id,
            )
            if status:
                query = query.where(WebhookDeliveryRow.status == status)
            rows = uow.session.execute(query.order_by(WebhookDeliveryRow.id).limit(limit)).all()
        return [
            {
                "event_id": str(d.event_id),
                "tenant_id": tenant_id,
                "type": d.event_type,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": iso(d.next_attempt_at),
                "last_error": d.last_error,
                "delivered_at": iso(d.delivered_at),
            }
            for d, tenant_id in rows
        ]
