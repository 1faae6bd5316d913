"""Outgoing webhooks from the outbox: signed, retried with backoff, fanned out exactly once."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from booking.schemas import CancelRequest
from booking.service import Member
from booking.webhooks import EVENT_ID_HEADER, SIGNATURE_HEADER, WebhookDispatcher

from .helpers import booking_request, make_service, roomy_registry, search


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
