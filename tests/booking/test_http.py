"""The booking API end to end: a real uvicorn server in a subprocess, the real stand-ins.

Each tenant books with its own credentials and rules; operators approve; every error is
problem+json; the rate limit holds across two worker processes; the logs carry no secret.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from booking.schemas import BookingList, BookingView, CancelResult, EventPage, SearchResult
from testing.booking_api import OPERATOR_TOKEN, ApiServer, book_body
from testing.booking_api import api_env as _env
from testing.booking_api import free_port as _free_port
from testing.postgres import PostgresServer

from .helpers import departure

CC_KEY = "test_cc_api_key_12345"


@pytest.fixture(scope="module")
def api(stand_ins: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("api")
    server = ApiServer(_env(stand_ins, folder / "booking.sqlite3"), folder / "api.log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(api: ApiServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=api.url, timeout=60) as http:
        yield http


def coffeechain(member: str = "CC1234567", key: str = CC_KEY) -> dict[str, str]:
    return {"X-Tenant-ID": "coffeechain", "X-CC-API-Key": key, "X-CC-Member-ID": member}


def telcocorp(stand_ins: Any, member: str = "TC-DEF456") -> dict[str, str]:
    token = httpx.post(
        stand_ins.urls["telcocorp"] + "/oauth/token",
        json={
            "grant_type": "client_credentials",
            "client_id": "telcocorp_client_id",
            "client_secret": "telcocorp_client_secret",
        },
    ).json()["access_token"]
    return {
        "X-Tenant-ID": "telcocorp",
        "Authorization": f"Bearer {token}",
        "X-TC-Customer-ID": member,
    }


def fintechapp(stand_ins: Any, member: str = "FA_87654321") -> dict[str, str]:
    jwt = httpx.post(
        stand_ins.urls["fintechapp"] + "/api/v1/sessions/validate",
        json={"user_id": member, "device_id": "phone-1"},
    ).json()["jwt_token"]
    return {"X-Tenant-ID": "fintechapp", "Authorization": f"Bearer {jwt}", "X-FA-User-ID": member}


def operator() -> dict[str, str]:
    return {"Authorization": f"Bearer {OPERATOR_TOKEN}"}


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["type"].endswith("/" + slug), body
    assert body["status"] == status
    for member in ("title", "detail", "instance", "trace_id"):
        assert body[member], member
    assert body["trace_id"] == response.headers["X-Trace-ID"]
    return body


def search(
    client: httpx.Client, headers: dict[str, str], cabin: str = "economy", days: int = 30
) -> list[dict[str, Any]]:
    response = client.post(
        "/api/v1/flights/search",
        headers=headers,
        json={
            "origin": "LHR",
            "destination": "JFK",
            "departure_date": departure(days).isoformat(),
            "passengers": {"adults": 1, "children": 0, "infants": 0},
            "cabin_class": cabin,
        },
    )
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    SearchResult.model_validate(data)  # the answer is what the OpenAPI document says
    assert data["search_id"] and data["metadata"]["total_results"] == len(data["flights"])
    return sorted(data["flights"], key=lambda f: Decimal(f["price"]["loyalty_amount"]))


def book(client, headers, flight, key=None, **kwargs) -> httpx.Response:
    return client.post(
        "/api/v1/bookings",
        headers={**headers, "Idempotency-Key": key or uuid.uuid4().hex},
        json=book_body(flight, **kwargs),
    )


def full_flow(client: httpx.Client, headers: dict[str, str], flight: dict[str, Any]) -> str:
    """Book → get → list → cancel with one member's credentials; returns the booking id."""
    key = uuid.uuid4().hex
    booked = book(client, headers, flight, key=key)
    assert booked.status_code == 201, booked.text
    booking = booked.json()["data"]
    BookingView.model_validate(booking)
    assert booking["status"] == "confirmed"
    assert booking["payment"]["loyalty_amount"] == flight["price"]["loyalty_amount"]
    assert booking["passengers"][0]["name"] == "Grace Hopper"
    assert booking["passengers"][0]["ticket_number"]
    booking_id = booking["booking_id"]
    replay = book(client, headers, flight, key=key)
    assert (replay.status_code, replay.json()) == (201, booked.json())

    got = client.get(f"/api/v1/bookings/{booking_id}", headers=headers)
    assert got.status_code == 200
    detail = got.json()["data"]
    BookingView.model_validate(detail)
    assert detail["updated_at"] and "seats" in detail
    assert [h["status"] for h in detail["status_history"]] == ["charging", "ordering", "confirmed"]

    listed = client.get("/api/v1/bookings", headers=headers, params={"limit": 100}).json()["data"]
    BookingList.model_validate(listed)
    assert booking_id in [b["booking_id"] for b in listed["bookings"]]
    summary = next(b for b in listed["bookings"] if b["booking_id"] == booking_id)
    assert set(summary) >= {
        "booking_id",
        "status",
        "flight_number",
        "departure_date",
        "route",
        "loyalty_amount",
        "created_at",
    }
    assert listed["pagination"]["limit"] == 100

    cancelled = client.post(
        f"/api/v1/bookings/{booking_id}/cancel",
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        json={"reason": "change of plans", "refund_requested": True},
    )
    assert cancelled.status_code == 200, cancelled.text
    result = cancelled.json()["data"]
    CancelResult.model_validate(result)
    assert result["status"] == "cancelled"
    refund = result["refund"]
    assert refund["status"] == "completed" and refund["processed_at"]
    assert refund["loyalty_amount"] == booking["payment"]["loyalty_amount"]
    assert set(refund) >= {"loyalty_currency", "fee", "net_refund"}
    return booking_id


def test_coffeechain_search_book_get_list_cancel(client: httpx.Client) -> None:
    headers = coffeechain()
    flight = search(client, headers)[0]
    booking_id = full_flow(client, headers, flight)
    # Another member, or another tenant's member, is told the booking does not exist.
    assert_problem(
        client.get(f"/api/v1/bookings/{booking_id}", headers=coffeechain("CC2222222")),
        404,
        "not-found",
    )


def test_credentials_the_tenant_refuses_are_401_before_any_charge(
    client: httpx.Client, stand_ins: Any
) -> None:
    assert_problem(
        client.get("/api/v1/bookings", headers=coffeechain(key="wrong-key")), 401, "unauthorized"
    )
    assert_problem(
        client.get("/api/v1/bookings", headers={"X-Tenant-ID": "coffeechain"}), 401, "unauthorized"
    )
    assert_problem(
        client.get("/api/v1/bookings", headers={"X-Tenant-ID": "nope"}), 401, "unknown-tenant"
    )
    # A FintechApp JWT of one user presented for another.
    stolen = fintechapp(stand_ins, "FA_11111111")
    stolen["X-FA-User-ID"] = "FA_87654321"
    refused = client.post(
        "/api/v1/bookings",
        headers={**stolen, "Idempotency-Key": "k"},
        json=book_body({"id": "off_x", "price": {"loyalty_amount": "1"}}),
    )
    body = assert_problem(refused, 401, "unauthorized")
    assert "FA_11111111" not in json.dumps(body) and "Bearer" not in json.dumps(body)
    # A tenant credential never opens operator routes.
    assert_problem(client.get("/api/v1/admin/events", headers=coffeechain()), 401, "unauthorized")


def test_coffeechain_approval_then_operator_decisions(client: httpx.Client) -> None:
    headers = coffeechain("CC3333333")
    flights = [
        f
        for f in search(client, headers, cabin="business", days=35)
        if Decimal(f["price"]["loyalty_amount"]) > 50_000
    ]
    pending = book(client, headers, flights[0])
    assert pending.status_code == 202, pending.text
    data = pending.json()["data"]
    assert data["status"] == "pending_approval"
    assert data["approval_required"] is True
    assert data["approval_reason"] and data["estimated_approval_time"]
    booking_id = data["booking_id"]

    assert_problem(
        client.post(f"/api/v1/admin/approvals/{booking_id}", json={"decision": "approve"}),
        401,
        "unauthorized",
    )
    approved = client.post(
        f"/api/v1/admin/approvals/{booking_id}",
        headers=operator(),
        json={"decision": "approve", "note": "ok"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["data"]["status"] == "confirmed"

    second = search(client, headers, cabin="business", days=36)
    other = book(
        client, headers, next(f for f in second if Decimal(f["price"]["loyalty_amount"]) > 50_000)
    )
    rejected = client.post(
        f"/api/v1/admin/approvals/{other.json()['data']['booking_id']}",
        headers=operator(),
        json={"decision": "reject", "operator": "alice", "note": "over budget"},
    )
    assert rejected.json()["data"]["status"] == "rejected"
    # Every decision is in the feed with who made it: named, or "operator" when unnamed.
    feed = client.get("/api/v1/admin/events", headers=operator(), params={"limit": 1000})
    actors = {
        (e["booking_id"], e["to_state"]): e["actor"]
        for e in feed.json()["data"]["events"]
        if e["from_state"] == "pending_approval"
        and e["booking_id"] in (booking_id, other.json()["data"]["booking_id"])
    }
    assert actors == {
        (booking_id, "charging"): "operator",
        (other.json()["data"]["booking_id"], "rejected"): "operator:alice",
    }
    assert_problem(
        client.post(
            f"/api/v1/admin/approvals/{booking_id}",
            headers=operator(),
            json={"decision": "maybe"},
        ),
        422,
        "validation-error",
    )


def test_telcocorp_economy_only(client: httpx.Client, stand_ins: Any) -> None:
    headers = telcocorp(stand_ins)
    refused = client.post(
        "/api/v1/flights/search",
        headers=headers,
        json={
            "origin": "LHR",
            "destination": "JFK",
            "departure_date": departure().isoformat(),
            "passengers": {"adults": 1},
            "cabin_class": "business",
        },
    )
    body = assert_problem(refused, 400, "invalid-cabin-class")
    assert body["errors"][0]["field"] == "cabin_class"
    flight = search(client, headers)[0]
    assert flight["price"]["loyalty_currency"] == "points"
    full_flow(client, headers, flight)


def test_fintechapp_cashback_as_the_tenant_reports_it(client: httpx.Client, stand_ins: Any) -> None:
    headers = fintechapp(stand_ins)
    flight = search(client, headers)[0]
    booked = book(client, headers, flight)
    assert booked.status_code == 201, booked.text
    payment = booked.json()["data"]["payment"]
    charged = Decimal(payment["loyalty_amount"])
    assert payment["loyalty_currency"] == "coins"
    assert Decimal(payment["cashback"]) == (charged * Decimal("0.02")).quantize(Decimal("0.01"))
    full_flow(client, headers, search(client, headers, days=31)[0])


def test_price_changed_idempotency_conflict_and_validation(client: httpx.Client) -> None:
    headers = coffeechain("CC2222222")
    flight = search(client, headers, days=33)[0]
    changed = book(client, headers, flight, amount="1")
    body = assert_problem(changed, 409, "price-changed")
    assert body["price"]["loyalty_amount"] == flight["price"]["loyalty_amount"]
    key = uuid.uuid4().hex
    first = book(client, headers, flight, key=key)
    conflict = client.post(
        "/api/v1/bookings",
        headers={**headers, "Idempotency-Key": key},
        json={**book_body(flight), "contact": {"email": "other@example.com"}},
    )
    assert first.status_code in (201, 402), first.text
    assert_problem(conflict, 422, "idempotency-conflict")
    missing_key = client.post("/api/v1/bookings", headers=headers, json=book_body(flight))
    assert_problem(missing_key, 400, "idempotency-key-required")
    invalid = client.post(
        "/api/v1/bookings",
        headers={**headers, "Idempotency-Key": "v"},
        json={"flight_id": "off_1", "passengers": [{"first_name": ""}]},
    )
    problem = assert_problem(invalid, 422, "validation-error")
    fields = {e["field"] for e in problem["errors"]}
    assert {"passengers[0].first_name", "passengers[0].last_name"} <= fields
    assert_problem(client.get("/api/v1/nowhere", headers=headers), 404, "not-found")


def test_insufficient_balance_is_402_with_the_balance(client: httpx.Client) -> None:
    headers = coffeechain("CC0000000")
    flight = search(client, headers, days=34)[0]
    body = assert_problem(book(client, headers, flight), 402, "insufficient-balance")
    assert body["balance"] == {
        "current": "1000",
        "required": flight["price"]["loyalty_amount"],
        "currency": "stars",
    }


def test_event_feed_reads_every_event_once_in_order(client: httpx.Client) -> None:
    seen: list[dict[str, Any]] = []
    cursor = None
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = client.get("/api/v1/admin/events", headers=operator(), params=params)
        assert page.status_code == 200, page.text
        data = page.json()["data"]
        seen.extend(data["events"])
        cursor = data["next_cursor"]
        if not data["has_more"]:
            break
    EventPage.model_validate({"events": seen, "next_cursor": cursor, "has_more": False})
    ids = [int(e["id"]) for e in seen]
    assert ids == list(range(1, len(ids) + 1))
    again = client.get(
        "/api/v1/admin/events", headers=operator(), params={"cursor": cursor}
    ).json()["data"]
    assert again["events"] == [] and again["next_cursor"] == cursor
    confirmed = [e for e in seen if e["type"] == "booking.confirmed"]
    assert confirmed and all(
        e["loyalty_transaction_id"] and e["duffel_order_id"] and e["usd_per_unit"]
        for e in confirmed
    )
    assert_problem(
        client.get("/api/v1/admin/events", headers=operator(), params={"cursor": "x"}),
        422,
        "validation-error",
    )


def test_health_and_openapi(client: httpx.Client) -> None:
    health = client.get("/api/v1/health")
    assert health.status_code == 200, health.text
    report = health.json()["data"]
    assert report["can_book"] is True
    assert report["store"]["status"] == "up" and report["duffel"]["status"] == "up"
    assert set(report["tenants"]) == {"coffeechain", "telcocorp", "fintechapp"}
    spec = client.get("/openapi.json").json()
    for path in (
        "/api/v1/flights/search",
        "/api/v1/bookings",
        "/api/v1/bookings/{booking_id}",
        "/api/v1/bookings/{booking_id}/cancel",
        "/api/v1/health",
        "/api/v1/admin/approvals/{booking_id}",
        "/api/v1/admin/events",
        "/api/v1/admin/bookings/{booking_id}/refund",
    ):
        assert path in spec["paths"], path
    assert (
        "application/problem+json"
        in spec["paths"]["/api/v1/bookings"]["post"]["responses"]["409"]["content"]
    )


def test_every_response_has_rate_limit_headers_and_logs_hold_no_secret(
    client: httpx.Client, api: ApiServer
) -> None:
    response = client.get("/api/v1/bookings", headers=coffeechain())
    assert response.headers["X-RateLimit-Limit"] == "100"
    assert int(response.headers["X-RateLimit-Remaining"]) < 100
    assert int(response.headers["X-RateLimit-Reset"]) > time.time() - 1
    trace_id = response.headers["X-Trace-ID"]
    time.sleep(0.2)
    lines = [
        json.loads(line) for line in api.log_path.read_text().splitlines() if line.startswith("{")
    ]
    mine = [line for line in lines if line.get("trace_id") == trace_id]
    assert len(mine) == 1
    assert mine[0]["tenant"] == "coffeechain" and mine[0]["status"] == 200
    assert mine[0]["route"] == "/api/v1/bookings" and "latency_ms" in mine[0]
    text = api.log_path.read_text()
    for secret in (CC_KEY, OPERATOR_TOKEN, "Bearer "):
        assert secret not in text


def test_rate_limit_holds_across_two_workers(
    stand_ins: Any, store_url: str, tmp_path: Path
) -> None:
    server = ApiServer(_env(stand_ins, store_url), tmp_path / "api.log", workers=2)
    try:
        if time.time() % 60 > 45:  # keep all requests inside one fixed window
            time.sleep(61 - time.time() % 60)
        statuses = []
        with httpx.Client(base_url=server.url, timeout=30) as http:
            for _ in range(55):
                response = http.get("/api/v1/bookings", headers={"X-Tenant-ID": "telcocorp"})
                statuses.append(response.status_code)
                assert response.headers["X-RateLimit-Limit"] == "50"
                if response.status_code == 429:
                    body = assert_problem(response, 429, "rate-limit")
                    assert int(response.headers["Retry-After"]) >= 1
                    assert body["retry_after"] >= 1
        assert statuses.count(401) == 50 and statuses.count(429) == 5
    finally:
        server.stop()


def test_duffel_webhook_resolves_an_unknown_order_outcome(stand_ins: Any, tmp_path: Path) -> None:
    from clients.duffel.client import build_duffel_client
    from clients.duffel.webhooks import sign_webhook
    from settings import Settings
    from tenants.settings import get_registry

    stand_ins.reset()  # the seeded balances: earlier tests spent this member's stars
    tenant = get_registry()["coffeechain"]
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}/api/v1/webhooks/duffel/coffeechain"
    with build_duffel_client(tenant, Settings(duffel_base_url=stand_ins.urls["duffel"])) as duffel:
        hook = duffel.create_webhook(endpoint, ["order.created", "order.creation_failed"])
    secret = hook.secret.get_secret_value()
    env = _env(
        stand_ins,
        tmp_path / "b.sqlite3",
        BOOKING_BACKGROUND_RECONCILER="false",  # only the webhook can settle the booking
        COFFEECHAIN_DUFFEL_WEBHOOK_SECRET=secret,
    )
    server = ApiServer(env, tmp_path / "api.log", port=port)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            headers = coffeechain("CC2222222")
            flight = search(http, headers, days=37)[0]
            stand_ins.inject_fault("duffel", "order_create", "500_after_create")
            booked = book(http, headers, flight)
            assert booked.status_code == 202, booked.text
            booking_id = booked.json()["data"]["booking_id"]
            assert booked.json()["data"]["status"] == "needs_reconciliation"
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                detail = http.get(f"/api/v1/bookings/{booking_id}", headers=headers).json()["data"]
                if detail["status"] == "confirmed":
                    break
                time.sleep(0.5)
            assert detail["status"] == "confirmed"
            assert detail["status_history"][-1]["detail"] == "order.created from Duffel"

            # A forged delivery is refused; a redelivered event is acknowledged, not acted on.
            event = json.dumps(
                {"id": "wev_test_1", "type": "order.created", "data": {"object": {}}}
            ).encode()
            forged = http.post(
                "/api/v1/webhooks/duffel/coffeechain",
                content=event,
                headers={"X-Duffel-Signature": sign_webhook("wrong", event, int(time.time()))},
            )
            assert_problem(forged, 401, "unauthorized")
            signed = {"X-Duffel-Signature": sign_webhook(secret, event, int(time.time()))}
            first = http.post("/api/v1/webhooks/duffel/coffeechain", content=event, headers=signed)
            again = http.post("/api/v1/webhooks/duffel/coffeechain", content=event, headers=signed)
            assert first.json()["data"]["duplicate"] is False
            assert again.json()["data"]["duplicate"] is True

            # The airline changed the flight: noted in the booking's history and the feed.
            change = json.dumps(
                {
                    "id": "wev_test_2",
                    "type": "order.airline_initiated_change_detected",
                    "data": {"object": {"metadata": {"booking_id": booking_id}}},
                }
            ).encode()
            noted = http.post(
                "/api/v1/webhooks/duffel/coffeechain",
                content=change,
                headers={"X-Duffel-Signature": sign_webhook(secret, change, int(time.time()))},
            )
            assert noted.status_code == 200, noted.text
            history = http.get(f"/api/v1/bookings/{booking_id}", headers=headers).json()["data"]
            assert history["status"] == "confirmed"
            assert "airline changed" in history["status_history"][-1]["detail"]
            feed = http.get(
                "/api/v1/admin/events", headers=operator(), params={"limit": 1000}
            ).json()["data"]["events"]
            assert feed[-1]["type"] == "booking.airline_change_detected"
            assert feed[-1]["from_state"] == feed[-1]["to_state"] == "confirmed"
    finally:
        stand_ins.clear_faults()
        server.stop()


def test_operators_register_a_tenants_webhook(client: httpx.Client) -> None:
    body = {"url": "https://hooks.example/bookings"}
    assert_problem(client.put("/api/v1/admin/webhooks/coffeechain", json=body), 401, "unauthorized")
    assert_problem(
        client.put("/api/v1/admin/webhooks/nobody", json=body, headers=operator()), 404, "not-found"
    )
    registered = client.put("/api/v1/admin/webhooks/telcocorp", json=body, headers=operator())
    assert registered.status_code == 200, registered.text
    data = registered.json()["data"]
    assert data["secret"] and data["events"] == [
        "booking.cancelled",
        "booking.confirmed",
        "booking.failed",
    ]
    listed = client.get("/api/v1/admin/webhooks/deliveries", headers=operator())
    assert listed.status_code == 200 and "deliveries" in listed.json()["data"]


def test_out_of_range_paging_is_a_validation_error_not_a_500(client: httpx.Client) -> None:
    headers = coffeechain()
    huge = str(22200650126482057723904)
    assert_problem(
        client.get("/api/v1/bookings", headers=headers, params={"offset": huge}),
        422,
        "validation-error",
    )
    assert_problem(
        client.get("/api/v1/admin/events", headers=operator(), params={"cursor": huge}),
        422,
        "validation-error",
    )


def test_full_flow_on_a_postgresql_store(
    stand_ins: Any, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    url = postgres_server.create_database()
    server = ApiServer(_env(stand_ins, url), tmp_path / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            headers = coffeechain("CC3333333")
            full_flow(http, headers, search(http, headers, days=38)[0])
            feed = http.get("/api/v1/admin/events", headers=operator()).json()["data"]
            assert [e["to_state"] for e in feed["events"]] == [
                "charging",
                "ordering",
                "confirmed",
                "cancelling",
                "cancelled",
            ]
            assert http.get("/api/v1/health").json()["data"]["store"]["backend"] == "postgresql"
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("service", "route", "fault", "status", "settles_as"),
    [
        ("duffel", "order_create", "offer_no_longer_available", 410, "failed"),
        ("duffel", "order_create", "500_after_create", 202, "confirmed"),
        ("coffeechain", "deduct", "insufficient-balance", 402, "failed"),
    ],
)
def test_fault_branches_end_to_end(
    client: httpx.Client,
    stand_ins: Any,
    service: str,
    route: str,
    fault: str,
    status: int,
    settles_as: str,
) -> None:
    stand_ins.reset()
    headers = coffeechain("CC1234567")
    flight = search(client, headers, days=39)[0]
    stand_ins.inject_fault(service, route, fault)
    try:
        answer = book(client, headers, flight)
    finally:
        stand_ins.clear_faults()
    assert answer.status_code == status, answer.text
    body = answer.json()
    booking_id = body["data"]["booking_id"] if status == 202 else body["booking_id"]
    deadline = time.monotonic() + 30
    while True:
        detail = client.get(f"/api/v1/bookings/{booking_id}", headers=headers).json()["data"]
        if detail["status"] == settles_as or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert detail["status"] == settles_as, detail["status_history"]
    if settles_as == "failed" and detail["payment"]["loyalty_transaction_id"]:
        assert detail["refund"]["status"] == "completed"
