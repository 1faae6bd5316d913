"""The booking API against tenant services that offer only the reference behaviour.

The stand-ins run in reference mode: no ledger feed, no member list, no partner session and
no refund endpoint at TelcoCorp or FintechApp. Each tenant still searches, books, reads,
lists and cancels with its own credentials and rules; where the tenant cannot refund, the
booking waits in ``refund_pending`` for an operator and no answer claims a refund happened.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from booking.schemas import BookingList, BookingView, CancelResult
from sandbox.runner import Sandbox, start_sandbox
from testing.standins import sandbox_config

from .test_http import (
    ApiServer,
    _env,
    assert_problem,
    book,
    coffeechain,
    fintechapp,
    operator,
    search,
    telcocorp,
)

# Seconds the reconciler needs to retry an owed refund at least once (lease 1 s, pass 0.5 s).
RETRY_WINDOW = 3.0


@pytest.fixture(scope="module")
def reference() -> Iterator[Sandbox]:
    """Reference-only stand-ins (fault control on: the tests arm Duffel's order failure)."""
    running = start_sandbox(sandbox_config(reference=True))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def client(reference: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    folder = tmp_path_factory.mktemp("reference-api")
    # A short lease: the reconciler retries owed refunds within a second or two.
    env = _env(reference, folder / "booking.sqlite3", BOOKING_SAGA_LEASE_SECONDS="1")
    server = ApiServer(env, folder / "api.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            yield http
    finally:
        server.stop()


def stand_in_balance(reference: Sandbox, headers: dict[str, str]) -> Decimal:
    """The member's balance as the tenant's own stand-in reports it, with the member's headers."""
    tenant = headers["X-Tenant-ID"]
    if tenant == "coffeechain":
        member = headers["X-CC-Member-ID"]
        path, field, auth = f"/api/v1/members/{member}/balance", "balance", "X-CC-API-Key"
    elif tenant == "telcocorp":
        member = headers["X-TC-Customer-ID"]
        path, field, auth = f"/api/v2/customers/{member}/points", "points", "Authorization"
    else:
        member = headers["X-FA-User-ID"]
        path, field, auth = f"/api/v1/users/{member}/coins", "coins", "Authorization"
    response = httpx.get(reference.urls[tenant] + path, headers={auth: headers[auth]}, timeout=10)
    assert response.status_code == 200, response.text
    return json.loads(response.text, parse_float=Decimal)[field]


def get(client: httpx.Client, headers: dict[str, str], booking_id: str) -> dict[str, Any]:
    response = client.get(f"/api/v1/bookings/{booking_id}", headers=headers)
    assert response.status_code == 200, response.text
    detail = response.json()["data"]
    BookingView.model_validate(detail)
    return detail


def listed(client: httpx.Client, headers: dict[str, str], booking_id: str) -> dict[str, Any]:
    response = client.get("/api/v1/bookings", headers=headers, params={"limit": 100})
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    BookingList.model_validate(data)
    return next(b for b in data["bookings"] if b["booking_id"] == booking_id)


def cancel(client: httpx.Client, headers: dict[str, str], booking_id: str) -> httpx.Response:
    return client.post(
        f"/api/v1/bookings/{booking_id}/cancel",
        headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        json={"reason": "change of plans", "refund_requested": True},
    )


def assert_refund_not_made(refund: dict[str, Any], charged: str) -> None:
    """The refund block of an answer says plainly that nothing has been given back yet."""
    assert refund["status"] == "pending", refund
    assert refund["processed_at"] is None
    assert refund["refund_transaction_id"] is None
    assert refund["loyalty_amount"] == charged  # what is owed, not what was paid


def booking_events(client: httpx.Client, booking_id: str) -> list[dict[str, Any]]:
    """Every event of one booking from the operators' event feed."""
    found, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        response = client.get("/api/v1/admin/events", headers=operator(), params=params)
        assert response.status_code == 200, response.text
        page = response.json()["data"]
        found += [e for e in page["events"] if e["booking_id"] == booking_id]
        if not page["has_more"]:
            return found
        cursor = page["next_cursor"]


def assert_still_owed(
    client: httpx.Client,
    reference: Sandbox,
    headers: dict[str, str],
    booking_id: str,
    charged_balance: Decimal,
) -> dict[str, Any]:
    """After the reconciler had time to retry: still owed, the member's balance untouched."""
    time.sleep(RETRY_WINDOW)
    detail = get(client, headers, booking_id)
    assert detail["status"] == "refund_pending", detail["status_history"]
    assert_refund_not_made(detail["refund"], detail["payment"]["loyalty_amount"])
    assert stand_in_balance(reference, headers) == charged_balance
    owed = client.get(
        "/api/v1/admin/bookings", headers=operator(), params={"status": "refund_pending"}
    )
    assert owed.status_code == 200, owed.text
    assert booking_id in json.dumps(owed.json()["data"])  # operators see the refund owed
    # Analytics is told no refund either: no refund amount, no refund id, no closing event.
    events = booking_events(client, booking_id)
    assert events[-1]["to_state"] == "refund_pending"
    assert all(e["refund_amount"] is None and e["refund_transaction_id"] is None for e in events)
    assert not {"cancelled", "failed"} & {e["to_state"] for e in events}
    return detail


def test_coffeechain_approval_then_book_get_list_cancel_with_refund(
    client: httpx.Client, reference: Sandbox
) -> None:
    headers = coffeechain("CC3333333")
    before = stand_in_balance(reference, headers)
    flight = next(
        f
        for f in search(client, headers, cabin="business", days=35)
        if Decimal(f["price"]["loyalty_amount"]) > 50_000
    )
    pending = book(client, headers, flight)
    assert pending.status_code == 202, pending.text
    booking = pending.json()["data"]
    assert booking["status"] == "pending_approval" and booking["approval_required"] is True
    booking_id = booking["booking_id"]
    assert stand_in_balance(reference, headers) == before  # nothing charged while pending

    approved = client.post(
        f"/api/v1/admin/approvals/{booking_id}",
        headers=operator(),
        json={"decision": "approve", "note": "ok"},
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["data"]["status"] == "confirmed"
    detail = get(client, headers, booking_id)
    charged = Decimal(detail["payment"]["loyalty_amount"])
    assert charged > 50_000
    assert stand_in_balance(reference, headers) == before - charged
    assert listed(client, headers, booking_id)["status"] == "confirmed"

    cancelled = cancel(client, headers, booking_id)
    assert cancelled.status_code == 200, cancelled.text
    result = cancelled.json()["data"]
    CancelResult.model_validate(result)
    # CoffeeChain's reference service refunds: the refund is real and shows at the tenant.
    assert result["status"] == "cancelled"
    assert result["refund"]["status"] == "completed" and result["refund"]["processed_at"]
    assert result["refund"]["refund_transaction_id"].startswith("ref_")
    assert stand_in_balance(reference, headers) == before
    assert listed(client, headers, booking_id)["status"] == "cancelled"


def test_telcocorp_economy_only_and_a_cancellation_leaves_the_refund_owed(
    client: httpx.Client, reference: Sandbox
) -> None:
    headers = telcocorp(reference, "TC-DEF456")
    refused = client.post(
        "/api/v1/flights/search",
        headers=headers,
        json={
            "origin": "LHR",
            "destination": "JFK",
            "departure_date": "2030-01-15",
            "passengers": {"adults": 1},
            "cabin_class": "business",
        },
    )
    assert_problem(refused, 400, "invalid-cabin-class")
    before = stand_in_balance(reference, headers)
    flight = search(client, headers)[0]
    booked = book(client, headers, flight)
    assert booked.status_code == 201, booked.text
    booking = booked.json()["data"]
    assert booking["status"] == "confirmed" and booking["flight"]["cabin_class"] == "economy"
    charged = Decimal(booking["payment"]["loyalty_amount"])
    assert booking["payment"]["loyalty_currency"] == "points"
    booking_id = booking["booking_id"]
    assert get(client, headers, booking_id)["status"] == "confirmed"
    assert listed(client, headers, booking_id)["status"] == "confirmed"
    assert stand_in_balance(reference, headers) == before - charged

    cancelled = cancel(client, headers, booking_id)
    assert cancelled.status_code == 200, cancelled.text
    result = cancelled.json()["data"]
    CancelResult.model_validate(result)
    assert result["status"] == "refund_pending"
    assert_refund_not_made(result["refund"], booking["payment"]["loyalty_amount"])
    detail = assert_still_owed(client, reference, headers, booking_id, before - charged)
    assert detail["failure"]["code"] == "refund_not_offered"
    assert "refund" in detail["failure"]["reason"]
    assert listed(client, headers, booking_id)["status"] == "refund_pending"


def test_fintechapp_cashback_as_reported_and_a_cancellation_leaves_the_refund_owed(
    client: httpx.Client, reference: Sandbox
) -> None:
    headers = fintechapp(reference, "FA_87654321")
    before = stand_in_balance(reference, headers)
    flight = search(client, headers)[0]
    booked = book(client, headers, flight)
    assert booked.status_code == 201, booked.text
    booking = booked.json()["data"]
    payment = booking["payment"]
    charged = Decimal(payment["loyalty_amount"])
    cashback = Decimal(payment["cashback"])
    assert payment["loyalty_currency"] == "coins"
    assert cashback == (charged * Decimal("0.02")).quantize(Decimal("0.01"))
    after_booking = before - charged + cashback  # the tenant credits the cashback at once
    assert stand_in_balance(reference, headers) == after_booking
    booking_id = booking["booking_id"]
    assert get(client, headers, booking_id)["payment"]["cashback"] == payment["cashback"]
    assert listed(client, headers, booking_id)["status"] == "confirmed"

    cancelled = cancel(client, headers, booking_id)
    assert cancelled.status_code == 200, cancelled.text
    result = cancelled.json()["data"]
    assert result["status"] == "refund_pending"
    assert_refund_not_made(result["refund"], payment["loyalty_amount"])
    detail = assert_still_owed(client, reference, headers, booking_id, after_booking)
    assert detail["failure"]["code"] == "refund_not_offered"


def test_telcocorp_definite_order_failure_leaves_the_charge_owed(
    client: httpx.Client, reference: Sandbox
) -> None:
    headers = telcocorp(reference, "TC-DEF456")
    before = stand_in_balance(reference, headers)
    flight = search(client, headers, days=37)[0]
    reference.inject_fault("duffel", "order_create", "offer_no_longer_available")
    try:
        answer = book(client, headers, flight)
    finally:
        reference.clear_faults()
    body = assert_problem(answer, 410, "offer-expired")
    assert body["booking_status"] == "refund_pending"
    assert_refund_not_made(body["refund"], flight["price"]["loyalty_amount"])
    assert "not refunded yet" in body["detail"]
    charged = Decimal(flight["price"]["loyalty_amount"])
    detail = assert_still_owed(client, reference, headers, body["booking_id"], before - charged)
    assert detail["failure"]["code"] == "offer_expired"  # the order's failure stays the reason


def settle(client: httpx.Client, booking_id: str, body: dict[str, Any], **headers: str):
    return client.post(
        f"/api/v1/admin/bookings/{booking_id}/refund",
        headers={**operator(), **headers},
        json=body,
    )


def cancel_with_lost_refund(
    client: httpx.Client, reference: Sandbox, headers: dict[str, str], fault: str, days: int
) -> tuple[dict[str, Any], Decimal]:
    """A confirmed CoffeeChain booking cancelled while its refund's answer is a 500."""
    flight = search(client, headers, days=days)[0]
    booked = book(client, headers, flight)
    assert booked.status_code == 201, booked.text
    booking = booked.json()["data"]
    reference.inject_fault("coffeechain", "refund", fault)
    try:
        cancelled = cancel(client, headers, booking["booking_id"])
    finally:
        reference.clear_faults()
    assert cancelled.status_code == 200, cancelled.text
    result = cancelled.json()["data"]
    assert result["status"] == "refund_pending"
    assert_refund_not_made(result["refund"], booking["payment"]["loyalty_amount"])
    return booking, Decimal(booking["payment"]["loyalty_amount"])


def test_coffeechain_refund_paid_but_answer_lost_waits_for_an_operator(
    client: httpx.Client, reference: Sandbox
) -> None:
    headers = coffeechain("CC1234567")
    before = stand_in_balance(reference, headers)
    booking, charged = cancel_with_lost_refund(client, reference, headers, "500-after-acting", 39)
    booking_id = booking["booking_id"]
    # The tenant paid once; the reconciler, given time to retry, pays nothing more.
    time.sleep(RETRY_WINDOW)
    assert stand_in_balance(reference, headers) == before
    owed = client.get(
        "/api/v1/admin/bookings", headers=operator(), params={"status": "refund_pending"}
    )
    assert owed.status_code == 200, owed.text
    [mine] = [b for b in owed.json()["data"]["bookings"] if b["booking_id"] == booking_id]
    assert mine["failure"]["code"] == "refund_outcome_unknown"
    assert "outcome is unknown" in mine["failure"]["reason"]

    assert_problem(
        client.post(f"/api/v1/admin/bookings/{booking_id}/refund", json={}), 401, "unauthorized"
    )
    missing = settle(client, "bkg_nosuchbooking", {"action": "retry", "operator": "ops.carol"})
    assert_problem(missing, 404, "not-found")
    invalid = assert_problem(
        settle(client, booking_id, {"action": "refund_twice", "operator": "ops.carol"}),
        422,
        "validation-error",
    )
    assert invalid["errors"][0]["field"] == "action"

    marked = settle(
        client,
        booking_id,
        {"action": "mark_refunded", "operator": "ops.carol", "note": "paid, per CoffeeChain"},
    )
    assert marked.status_code == 200, marked.text
    detail = marked.json()["data"]
    BookingView.model_validate(detail)
    assert detail["status"] == "cancelled" and detail["refund"]["status"] == "completed"
    again = settle(client, booking_id, {"action": "retry", "operator": "ops.carol"})
    assert_problem(again, 409, "booking-not-refund-pending")
    time.sleep(RETRY_WINDOW)
    assert stand_in_balance(reference, headers) == before  # still exactly one refund
    last = booking_events(client, booking_id)[-1]
    assert (last["from_state"], last["to_state"]) == ("refund_pending", "cancelled")
    assert last["actor"] == "operator:ops.carol" and "paid, per CoffeeChain" in last["detail"]
    assert Decimal(last["refund_amount"]) == charged


def test_coffeechain_refund_never_paid_is_retried_once_by_an_operator(
    client: httpx.Client, reference: Sandbox
) -> None:
    headers = coffeechain("CC1234567")
    before = stand_in_balance(reference, headers)
    booking, charged = cancel_with_lost_refund(client, reference, headers, "true", 41)
    booking_id = booking["booking_id"]
    time.sleep(RETRY_WINDOW)  # a 500 may hide a payment: the reconciler does not resend it
    assert stand_in_balance(reference, headers) == before - charged
    assert get(client, headers, booking_id)["failure"]["code"] == "refund_outcome_unknown"

    retried = settle(client, booking_id, {"action": "retry", "operator": "ops.dan"})
    assert retried.status_code == 200, retried.text
    detail = retried.json()["data"]
    assert detail["status"] == "cancelled" and detail["refund"]["status"] == "completed"
    assert detail["refund"]["refund_transaction_id"].startswith("ref_")
    assert stand_in_balance(reference, headers) == before
    events = booking_events(client, booking_id)
    asked = next(e for e in events if e["type"] == "booking.refund_retry_requested")
    assert asked["actor"] == "operator:ops.dan"
    assert (events[-1]["to_state"], events[-1]["actor"]) == ("cancelled", "operator:ops.dan")
    assert len([e for e in events if e["refund_transaction_id"]]) == 1
