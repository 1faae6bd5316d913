"""Duffel's webhooks in the stand-in: registered endpoints, signed events, retried deliveries.

As Duffel does it: ``POST /air/webhooks`` registers a URL for some event types and answers
the endpoint with its secret (shown once); each event is POSTed as JSON with
``X-Duffel-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the
secret>``; a delivery that does not get a 2xx is retried with exponential backoff. Unlike
Duffel (72 hours), retries stop after ``max_attempts``, and plain ``http://`` URLs are
accepted so loopback receivers can be used.

Deliveries run on background threads: publishing an event never waits for a receiver, so
the order answer is never held up by a slow or dead webhook.
"""

from __future__ import annotations

import base64
import hashlib
import heapq
import hmac
import itertools
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson

from sandbox.duffel.errors import not_found, required, validation
from sandbox.duffel.render import to_us, utc_text
from sandbox.ids import BASE62

log = logging.getLogger("sandbox.duffel.webhooks")

SIGNATURE_HEADER = "X-Duffel-Signature"
# Event types Duffel documents for v2; the stand-in emits the order ones and ping.
EVENT_TYPES = (
    "order.created",
    "order.creation_failed",
    "order.airline_initiated_change_detected",
    "air.order.changed",
    "order_cancellation.created",
    "order_cancellation.confirmed",
    "air.payment.succeeded",
    "air.payment.failed",
    "air.payment.pending",
    "air.payment.cancelled",
    "payment.created",
    "ping.triggered",
)
MAX_DELIVERY_LOG = 10_000


def duffel_id(prefix: str) -> str:
    """A random Duffel-style id: ``prefix`` + ``0000`` + 22 base62 characters."""
    return prefix + "0000" + "".join(secrets.choice(BASE62) for _ in range(22))


def organisation_id(org: str) -> str:
    """A stable ``org_...`` id for an organisation (``identity_organisation_id``)."""
    digest = int.from_bytes(hashlib.sha256(org.encode()).digest()[:16], "big")
    chars = []
    for _ in range(22):
        digest, digit = divmod(digest, 62)
        chars.append(BASE62[digit])
    return "org_0000" + "".join(chars)


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The ``X-Duffel-Signature`` value for ``body`` sent at ``timestamp`` (unix seconds)."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


@dataclass
class _Endpoint:
    id: str
    org: str
    url: str
    events: list[str]
    secret: str
    created_us: int
    updated_us: int
    active: bool = True

    def body(self, *, with_secret: bool = False) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "url": self.url,
            "events": list(self.events),
            "active": self.active,
            "live_mode": False,
            "created_at": utc_text(self.created_us),
            "updated_at": utc_text(self.updated_us),
        }
        if with_secret:
            body["secret"] = self.secret
        return body


@dataclass
class _Delivery:
    endpoint_id: str
    url: str
    secret: str
    event_id: str
    event_type: str
    body: bytes
    attempt: int = 0


@dataclass(frozen=True)
class DeliveryAttempt:
    """One POST of an event to an endpoint and what came of it (for tests and the log)."""

    id: str
    event_id: str
    event_type: str
    endpoint_id: str
    url: str
    attempt: int
    response_status_code: int | None  # None: no answer (refused, timed out)
    delivery_success: bool
    created_at: str


@dataclass
class WebhookHub:
    """Endpoints of every organisation and the deliveries due to them."""

    max_attempts: int = 6
    backoff_seconds: float = 0.5
    backoff_max_seconds: float = 30.0
    timeout_seconds: float = 5.0
    workers: int = 2
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    _endpoints: dict[str, _Endpoint] = field(default_factory=dict)
    _due: list[tuple[float, int, _Delivery]] = field(default_factory=list)
    _sequence: itertools.count = field(default_factory=itertools.count)
    _attempts: deque[DeliveryAttempt] = field(
        default_factory=lambda: deque(maxlen=MAX_DELIVERY_LOG)
    )
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _threads: list[threading.Thread] = field(default_factory=list)
    _stopped: bool = False

    # --- endpoints ------------------------------------------------------------------------

    def register(self, org: str, data: dict[str, Any]) -> dict[str, Any]:
        """``POST /air/webhooks``: a new endpoint, answered once with its secret."""
        url, events = data.get("url"), data.get("events")
        if not url:
            raise required("url")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise validation("url", "Field 'url' must be an http(s) URL")
        if not events:
            raise required("events")
        if not isinstance(events, list) or not all(isinstance(e, str) for e in events):
            raise validation("events", "Field 'events' must be a list of event types")
        unknown = sorted(set(events) - set(EVENT_TYPES))
        if unknown:
            raise validation("events", f"Field 'events' has unknown types: {', '.join(unknown)}")
        now = to_us(self.clock())
        secret = base64.b64encode(secrets.token_bytes(16)).decode()
        endpoint = _Endpoint(duffel_id("end_"), org, url, list(events), secret, now, now)
        with self._cond:
            self._endpoints[endpoint.id] = endpoint
        return endpoint.body(with_secret=True)

    def list_endpoints(self, org: str) -> list[dict[str, Any]]:
        with self._cond:
            return [e.body() for e in self._endpoints.values() if e.org == org]

    def delete(self, org: str, endpoint_id: str) -> None:
        with self._cond:
            endpoint = self._endpoints.get(endpoint_id)
            if endpoint is None or endpoint.org != org:
                raise not_found()
            del self._endpoints[endpoint_id]

    def ping(self, org: str, endpoint_id: str) -> str:
        """``.../actions/ping``: a ``ping.triggered`` event to that one endpoint."""
        with self._cond:
            endpoint = self._endpoints.get(endpoint_id)
            if endpoint is None or endpoint.org != org:
                raise not_found()
        return self._publish(org, "ping.triggered", {"id": endpoint_id}, endpoint_id, [endpoint])

    # --- events ---------------------------------------------------------------------------

    def publish(
        self, org: str, event_type: str, obj: dict[str, Any] | bytes, idempotency_key: str
    ) -> str | None:
        """Queue ``event_type`` about ``obj`` (a dict, or JSON bytes) for ``org``'s endpoints
        subscribed to it; returns the event id, or None when no endpoint wants it."""
        with self._cond:
            targets = [
                e
                for e in self._endpoints.values()
                if e.org == org and e.active and event_type in e.events
            ]
        if not targets:
            return None
        return self._publish(org, event_type, obj, idempotency_key, targets)

    def _publish(
        self,
        org: str,
        event_type: str,
        obj: dict[str, Any] | bytes,
        idempotency_key: str,
        targets: list[_Endpoint],
    ) -> str:
        event_id = duffel_id("wev_")
        body = orjson.dumps(
            {
                "id": event_id,
                "type": event_type,
                "api_version": "v2",
                "live_mode": False,
                "idempotency_key": idempotency_key,
                "created_at": utc_text(to_us(self.clock())),
                "identity_organisation_id": organisation_id(org),
                "data": {"object": orjson.Fragment(obj) if isinstance(obj, bytes) else obj},
            }
        )
        for endpoint in targets:
            self._schedule(
                _Delivery(endpoint.id, endpoint.url, endpoint.secret, event_id, event_type, body),
                time.monotonic(),
            )
        return event_id

    def attempts(self, event_id: str | None = None) -> list[DeliveryAttempt]:
        """Delivery attempts made so far (oldest first), of one event or of all."""
        with self._cond:
            return [a for a in self._attempts if event_id is None or a.event_id == event_id]

    def pending(self) -> int:
        """Deliveries still queued (including retries waiting for their backoff)."""
        with self._cond:
            return len(self._due)

    def stop(self) -> None:
        """Stop delivering; queued deliveries are dropped."""
        with self._cond:
            self._stopped = True
            self._cond.notify_all()
        for thread in self._threads:
            thread.join(self.timeout_seconds + 1)

    # --- delivery -------------------------------------------------------------------------

    def _schedule(self, delivery: _Delivery, due: float) -> None:
        with self._cond:
            if self._stopped:
                return
            heapq.heappush(self._due, (due, next(self._sequence), delivery))
            if not self._threads:
                for number in range(self.workers):
                    thread = threading.Thread(
                        target=self._work, name=f"duffel-webhooks-{number}", daemon=True
                    )
                    thread.start()
                    self._threads.append(thread)
            self._cond.notify()

    def _next(self) -> _Delivery | None:
        with self._cond:
            while not self._stopped:
                now = time.monotonic()
                if self._due and self._due[0][0] <= now:
                    return heapq.heappop(self._due)[2]
                self._cond.wait(self._due[0][0] - now if self._due else None)
        return None

    def _work(self) -> None:
        with httpx.Client(timeout=self.timeout_seconds, trust_env=False) as http:
            while (delivery := self._next()) is not None:
                delivery.attempt += 1
                status = self._send(http, delivery)
                ok = status is not None and 200 <= status < 300
                attempt = DeliveryAttempt(
                    duffel_id("del_"),
                    delivery.event_id,
                    delivery.event_type,
                    delivery.endpoint_id,
                    delivery.url,
                    delivery.attempt,
                    status,
                    ok,
                    utc_text(to_us(self.clock())),
                )
                with self._cond:
                    self._attempts.append(attempt)
                if not ok and delivery.attempt < self.max_attempts:
                    delay = min(
                        self.backoff_seconds * 2 ** (delivery.attempt - 1),
                        self.backoff_max_seconds,
                    )
                    self._schedule(delivery, time.monotonic() + delay)

    def _send(self, http: httpx.Client, delivery: _Delivery) -> int | None:
        signature = sign(delivery.secret, delivery.body, int(self.clock().timestamp()))
        try:
            response = http.post(
                delivery.url,
                content=delivery.body,
                headers={
                    "Content-Type": "application/json",
                    "User-Agent": "Duffel-Webhooks",
                    SIGNATURE_HEADER: signature,
                },
            )
        except httpx.HTTPError as exc:
            log.info("webhook %s to %s failed: %s", delivery.event_id, delivery.url, exc)
            return None
        return response.status_code
