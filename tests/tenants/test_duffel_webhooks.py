"""Duffel webhooks end to end: the client registers, the stand-in delivers signed events to a
real loopback receiver, and the signature check accepts them and refuses tampering."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from clients.duffel import (
    DuffelClient,
    DuffelOrder,
    DuffelWebhook,
    WebhookSignatureError,
    parse_webhook_event,
    verify_webhook_signature,
)
from clients.duffel.webhooks import sign_webhook
from clients.errors import DuffelRejected
from sandbox.duffel.webhooks import sign
from sandbox.runner import Sandbox, start_sandbox
from tests.sandbox.test_duffel_contract import assert_shape

from .conftest import standin_config
from .test_duffel_live import _book as book

MAX_ATTEMPTS = 4


@pytest.fixture(scope="module")
def standins() -> Iterator[Sandbox]:
    """Stand-ins whose webhook retries come quickly, with fault control on."""
    running = start_sandbox(
        standin_config(
            fault_control=True, webhook_backoff_seconds=0.05, webhook_max_attempts=MAX_ATTEMPTS
        )
    )
    yield running
    running.stop()


class Receiver:
    """A real HTTP server on loopback that records each delivery and answers as told."""

    def __init__(self, statuses: list[int] | None = None, delay: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay = delay
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                time.sleep(receiver.delay)
                with receiver.arrived:
                    receiver.received.append((dict(self.headers.items()), body))
                    status = receiver.statuses.pop(0) if receiver.statuses else 200
                    receiver.arrived.notify_all()
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/duffel/webhooks"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, count: int, timeout: float = 10.0) -> list[tuple[dict[str, str], bytes]]:
        with self.arrived:
            if not self.arrived.wait_for(lambda: len(self.received) >= count, timeout):
                raise AssertionError(f"{len(self.received)} deliveries, expected {count}")
            return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    made = Receiver()
    yield made
    made.close()


def _book(client: DuffelClient, booking_id: str) -> DuffelOrder:
    return book(client, booking_id, metadata={"tenant_id": "fintechapp"})[0]


def _register(client: DuffelClient, url: str, events: list[str]) -> tuple[DuffelWebhook, str]:
    webhook = client.create_webhook(url, events)
    assert webhook.secret is not None
    return webhook, webhook.secret.get_secret_value()


def test_registration_answers_the_endpoint_with_its_secret(tenants, duffel, receiver) -> None:
    client = duffel(tenants["fintechapp"])
    webhook, secret = _register(client, receiver.url, ["order.created", "order.creation_failed"])
    assert webhook.id.startswith("end_") and webhook.url == receiver.url
    assert webhook.events == ["order.created", "order.creation_failed"]
    assert webhook.active is True and webhook.live_mode is False
    assert webhook.created_at is not None and webhook.created_at.tzinfo is not None
    assert len(secret) >= 16 and secret not in repr(webhook)
    # Duffel's create answer (duffel-api-javascript's WebhooksCreateResponse): these keys only.
    raw = client.http.post(
        "/air/webhooks", json={"data": {"url": receiver.url, "events": ["order.created"]}}
    )
    assert raw.status_code == 201
    assert set(raw.json()["data"]) == {
        "id",
        "url",
        "events",
        "active",
        "live_mode",
        "created_at",
        "updated_at",
        "secret",
    }
    listed = client.http.get("/air/webhooks").json()["data"]
    assert all("secret" not in item for item in listed)


@pytest.mark.parametrize(
    ("url", "events", "field"),
    [
        ("ftp://example.com/x", ["order.created"], "url"),
        ("http://127.0.0.1:9/x", ["order.exploded"], "events"),
        ("http://127.0.0.1:9/x", [], "events"),
    ],
)
def test_bad_registration_is_refused_naming_the_field(tenants, duffel, url, events, field) -> None:
    with pytest.raises(DuffelRejected) as caught:
        duffel(tenants["fintechapp"]).create_webhook(url, events)
    assert caught.value.status == 422
    assert field in caught.value.message


def test_order_created_event_arrives_signed_and_verifies(tenants, duffel, receiver) -> None:
    client = duffel(tenants["fintechapp"])
    _, secret = _register(client, receiver.url, ["order.created"])
    order = _book(client, "bkg_webhook_1")
    ((headers, body),) = receiver.wait_for(1)
    assert headers["Content-Type"] == "application/json"
    timestamp = verify_webhook_signature(secret, headers["X-Duffel-Signature"], body)
    assert abs(timestamp - time.time()) < 30
    event = parse_webhook_event(body)
    assert event.id.startswith("wev_") and event.type == "order.created"
    assert event.api_version == "v2" and event.live_mode is False
    assert event.idempotency_key == order.id
    assert event.identity_organisation_id and event.identity_organisation_id.startswith("org_")
    # The event's object is an order in Duffel's recorded wire shape.
    assert_shape("order.json", {"data": event.object})
    delivered = DuffelOrder.model_validate(event.object)
    assert delivered.id == order.id and delivered.total_amount == order.total_amount
    assert delivered.metadata == {"booking_id": "bkg_webhook_1", "tenant_id": "fintechapp"}


def test_tampered_or_foreign_deliveries_fail_verification(tenants, duffel, receiver) -> None:
    client = duffel(tenants["fintechapp"])
    _, secret = _register(client, receiver.url, ["order.created"])
    _book(client, "bkg_webhook_2")
    ((headers, body),) = receiver.wait_for(1)
    header = headers["X-Duffel-Signature"]
    verify_webhook_signature(secret, header, body)
    tampered = body.replace(b"bkg_webhook_2", b"bkg_webhook_3")
    assert tampered != body
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(secret, header, tampered)
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(secret + "x", header, body)
    timestamp = header.split(",")[0].removeprefix("t=")
    moved = header.replace(f"t={timestamp}", f"t={int(timestamp) + 1}")
    with pytest.raises(WebhookSignatureError, match="does not match"):
        verify_webhook_signature(secret, moved, body)
    for broken in (None, "", "v1=abc", "t=abc,v1=abc", f"t={timestamp}", "nonsense"):
        with pytest.raises(WebhookSignatureError):
            verify_webhook_signature(secret, broken, body)


def test_signature_age_is_checked_against_the_tolerance() -> None:
    body = b'{"id":"wev_1"}'
    old = int(time.time()) - 3600
    header = sign_webhook("s3cret", body, old)
    with pytest.raises(WebhookSignatureError, match="tolerance"):
        verify_webhook_signature("s3cret", header, body, tolerance=300)
    assert verify_webhook_signature("s3cret", header, body, tolerance=None) == old
    assert verify_webhook_signature("s3cret", header, body, now=old + 10) == old
    # A rotation sends two v1 values; either one matching is enough.
    rotated = header + ",v1=" + "0" * 64
    assert verify_webhook_signature("s3cret", rotated, body, tolerance=None) == old


def test_failed_deliveries_are_retried_with_backoff_then_given_up(
    tenants, duffel, standins
) -> None:
    client = duffel(tenants["fintechapp"])
    flaky, dead = Receiver(statuses=[500, 503]), Receiver(statuses=[500] * 10)
    try:
        _, flaky_secret = _register(client, flaky.url, ["order.created"])
        _register(client, dead.url, ["order.created"])
        order = _book(client, "bkg_webhook_retry")
        deliveries = flaky.wait_for(3)
        assert len({parse_webhook_event(body).id for _, body in deliveries}) == 1
        for headers, body in deliveries:
            verify_webhook_signature(flaky_secret, headers["X-Duffel-Signature"], body)
        dead.wait_for(MAX_ATTEMPTS)
        time.sleep(0.2 * 2**MAX_ATTEMPTS)  # past every backoff a further retry would take
        assert len(dead.received) == MAX_ATTEMPTS
        hub = standins.duffel_webhooks
        event_id = parse_webhook_event(deliveries[0][1]).id
        attempts = hub.attempts(event_id)
        flaky_attempts = [a for a in attempts if a.url == flaky.url]
        assert [a.response_status_code for a in flaky_attempts] == [500, 503, 200]
        assert [a.delivery_success for a in flaky_attempts] == [False, False, True]
        dead_attempts = [a for a in attempts if a.url == dead.url]
        assert [a.attempt for a in dead_attempts] == list(range(1, MAX_ATTEMPTS + 1))
        assert not any(a.delivery_success for a in dead_attempts)
        assert parse_webhook_event(deliveries[0][1]).idempotency_key == order.id
    finally:
        flaky.close()
        dead.close()


def test_a_slow_receiver_never_holds_up_the_order_answer(tenants, duffel) -> None:
    client = duffel(tenants["fintechapp"])
    slow = Receiver(delay=2.0)
    try:
        _register(client, slow.url, ["order.created"])
        started = time.monotonic()
        _book(client, "bkg_webhook_slow")
        assert time.monotonic() - started < 1.5
        slow.wait_for(1)
    finally:
        slow.close()


def test_refused_order_sends_creation_failed_with_metadata(
    tenants, duffel, standins, receiver
) -> None:
    client = duffel(tenants["fintechapp"])
    _, secret = _register(client, receiver.url, ["order.creation_failed"])
    standins.inject_fault("duffel", "order_create", "offer_no_longer_available")
    with pytest.raises(DuffelRejected) as caught:
        _book(client, "bkg_webhook_refused")
    assert caught.value.code == "offer_no_longer_available"
    ((headers, body),) = receiver.wait_for(1)
    verify_webhook_signature(secret, headers["X-Duffel-Signature"], body)
    event = parse_webhook_event(body)
    assert event.type == "order.creation_failed"
    assert event.object["metadata"]["booking_id"] == "bkg_webhook_refused"
    assert event.object["error"]["code"] == "offer_no_longer_available"
    assert event.created_at is not None and event.created_at.tzinfo == dt.UTC


def test_events_go_only_to_their_subscribers_and_organisation(tenants, duffel) -> None:
    other_org, other_event = Receiver(), Receiver()
    try:
        _register(duffel(tenants["telcocorp"]), other_org.url, ["order.created"])
        mine = duffel(tenants["fintechapp"])
        _register(mine, other_event.url, ["order.airline_initiated_change_detected"])
        probe = Receiver()
        try:
            _register(mine, probe.url, ["order.created"])
            _book(mine, "bkg_webhook_scope")
            probe.wait_for(1)
        finally:
            probe.close()
        time.sleep(0.3)
        assert other_org.received == [] and other_event.received == []
    finally:
        other_org.close()
        other_event.close()


def test_stand_in_and_client_sign_as_duffel_documents() -> None:
    """Both sides follow Duffel's recipe, computed here independently of either."""
    secret, body, timestamp = "QKfUULLQh+8SegYmIsF6kA==", b'{"id":"wev_1","data":{}}', 1700000000
    digest = hmac.new(secret.encode("utf-8"), b"1700000000." + body, hashlib.sha256).hexdigest()
    expected = f"t=1700000000,v1={digest}"
    assert sign(secret, body, timestamp) == expected
    assert sign_webhook(secret, body, timestamp) == expected
