"""Outgoing webhooks from the outbox: signed, retried with backoff, fanned out exactly once."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient

from booking.api import create_app
from booking.config import BookingSettings
from booking.schemas import CancelRequest
from booking.service import BookingService, Member
from booking.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookDispatcher

from .helpers import booking_request, make_service, roomy_registry, search, upstreams_for


class Receiver:
    """A tenant's webhook endpoint on loopback: answers 500 to the first ``failures`` posts."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.received: list[tuple[dict[str, str], bytes]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.received.append((dict(self.headers), body))
                failing = receiver.failures > 0
                receiver.failures -= 1
                self.send_response(500 if failing else 204)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hooks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    running = Receiver(failures=2)
    yield running
    running.stop()


def _verify(secret: str, headers: dict[str, str], body: bytes) -> None:
    parts = dict(p.split("=", 1) for p in headers[SIGNATURE_HEADER].split(","))
    expected = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256)
    assert hmac.compare_digest(parts["v1"], expected.hexdigest())


def test_booking_events_are_delivered_signed_and_retried(store, stand_ins, receiver):
    stand_ins.reset()
    service = make_service(store, stand_ins)
    dispatcher = WebhookDispatcher(store, backoff_seconds=0.01)
    try:
        subscription = dispatcher.register("coffeechain", receiver.url)
        who = Member(roomy_registry()["coffeechain"], "CC1234567")
        booked = service.book(who, booking_request(search(service, who)[0]), "k-wh", "h")
        service.cancel(who, booked.data["booking_id"], CancelRequest(), "c-wh", "h")
        for _ in range(50):
            dispatcher.run_once()
            if len({h[EVENT_ID_HEADER] for h, _ in receiver.received}) == 2 and (
                receiver.failures < 0
            ):
                break
            threading.Event().wait(0.02)
        delivered = {}
        for headers, body in receiver.received:
            _verify(subscription["secret"], headers, body)
            payload = json.loads(body)
            assert payload["id"] == headers[EVENT_ID_HEADER]
            delivered.setdefault(payload["type"], []).append(payload)
        assert set(delivered) == {"booking.confirmed", "booking.cancelled"}
        assert len(receiver.received) == 4  # two refused with 500, each retried once
        confirmed = delivered["booking.confirmed"][-1]["data"]
        assert confirmed["booking_id"] == booked.data["booking_id"]
        assert confirmed["loyalty_amount"] == booked.data["payment"]["loyalty_amount"]
        states = {d["type"]: d["status"] for d in dispatcher.deliveries(None, 100)}
        assert states == {"booking.confirmed": "delivered", "booking.cancelled": "delivered"}
    finally:
        dispatcher.close()


def test_fan_out_is_exactly_once_with_concurrent_dispatchers(store, stand_ins, receiver):
    stand_ins.reset()
    service = make_service(store, stand_ins)
    dispatchers = [WebhookDispatcher(store, backoff_seconds=0.01) for _ in range(3)]
    try:
        dispatchers[0].register("coffeechain", receiver.url)
        who = Member(roomy_registry()["coffeechain"], "CC3333333")
        flights = search(service, who)
        service.book(who, booking_request(flights[0]), "k-a", "h")
        threads = [threading.Thread(target=d.enqueue) for d in dispatchers]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        owed = dispatchers[0].deliveries(None, 100)
        assert [d["type"] for d in owed] == ["booking.confirmed"]
    finally:
        for dispatcher in dispatchers:
            dispatcher.close()


def test_a_hanging_webhook_receiver_does_not_hold_up_the_reconciler(store, stand_ins, monkeypatch):
    """A delivery may wait seconds on a tenant's endpoint; sagas to resume must not wait with it."""
    stand_ins.reset()
    listener = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    held: list[socket.socket] = []
    reached = threading.Event()

    def accept() -> None:
        while True:
            try:
                held.append(listener.accept()[0])
            except OSError:
                return
            reached.set()

    threading.Thread(target=accept, daemon=True).start()
    service = make_service(store, stand_ins)
    registering = WebhookDispatcher(store)
    registering.register("coffeechain", f"http://127.0.0.1:{listener.getsockname()[1]}/hooks")
    registering.close()
    who = Member(roomy_registry()["coffeechain"], "CC1234567")
    service.book(who, booking_request(search(service, who)[0]), "k-hang", "h")

    passes: list[float] = []
    reconcile_once = BookingService.reconcile_once

    def counted(self: BookingService) -> int:
        passes.append(time.monotonic())
        return reconcile_once(self)

    monkeypatch.setattr(BookingService, "reconcile_once", counted)
    settings = BookingSettings(database_url="unused", reconcile_interval_seconds=0.1)
    app = create_app(
        settings, store=store, upstreams=upstreams_for(stand_ins), registry=roomy_registry()
    )
    with TestClient(app):
        try:
            assert reached.wait(30), "the booking's event was never delivered"
            seen = len(passes)
            # The delivery hangs for its whole 10 s timeout; look well within it.
            deadline = time.monotonic() + 8
            while len(passes) < seen + 2 and time.monotonic() < deadline:
                time.sleep(0.05)
            assert len(passes) >= seen + 2, "the reconciler waited on a webhook delivery"
        finally:
            listener.close()
            for connection in held:
                connection.close()
