"""Fault switches: a test arms a stand-in's route and the next calls fail as X-Mock-Error would."""

from __future__ import annotations

import json
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from sandbox.faults import CONTROL_PATH, inject_fault
from sandbox.runner import Sandbox

FIXTURES = Path(__file__).parents[1] / "fixtures" / "duffel"
CC_KEY = {"X-CC-API-Key": "test_cc_api_key_12345"}


def _deduct(url: str, amount: int = 10, member: str = "CC3333333") -> httpx.Response:
    return httpx.post(
        f"{url}/api/v1/members/{member}/deduct",
        json={"amount": amount, "reference_id": "bkg_fault_test", "description": "fault test"},
        headers=CC_KEY,
        timeout=10,
    )


def _duffel(url: str, org: str = "fintechapp") -> httpx.Client:
    headers = {"Authorization": f"Bearer duffel_test_{org}_sandbox", "Duffel-Version": "v2"}
    return httpx.Client(base_url=url, headers=headers, timeout=10)


def _offer(api: httpx.Client) -> dict[str, Any]:
    day = (date.today() + timedelta(days=40)).isoformat()
    body = {
        "data": {
            "slices": [{"origin": "LHR", "destination": "JFK", "departure_date": day}],
            "passengers": [{"type": "adult"}],
        }
    }
    response = api.post("/air/offer_requests", json=body)
    assert response.status_code == 201, response.text
    return response.json()["data"]["offers"][0]


def _order_body(offer: dict[str, Any], booking_id: str) -> dict[str, Any]:
    return {
        "data": {
            "type": "instant",
            "selected_offers": [offer["id"]],
            "passengers": [
                {"id": p["id"], "given_name": "Ada", "family_name": "Lovelace", "title": "ms"}
                for p in offer["passengers"]
            ],
            "payments": [
                {
                    "type": "balance",
                    "amount": offer["total_amount"],
                    "currency": offer["total_currency"],
                }
            ],
            "metadata": {"booking_id": booking_id, "tenant_id": "fintechapp"},
        }
    }


def _orders_with(api: httpx.Client, booking_id: str) -> list[dict[str, Any]]:
    response = api.get("/air/orders", params={"limit": 200})
    assert response.status_code == 200
    return [
        o for o in response.json()["data"] if (o["metadata"] or {}).get("booking_id") == booking_id
    ]


# --- loyalty stand-ins ----------------------------------------------------------------------


def test_armed_deduction_fails_the_next_calls_then_recovers(sandbox_faults: Sandbox) -> None:
    url = sandbox_faults.urls["coffeechain"]
    armed = sandbox_faults.inject_fault("coffeechain", "deduct", "insufficient-balance", times=2)
    assert armed == {
        "route": "deduct",
        "fault": "insufficient-balance",
        "times": 2,
        "stall_seconds": None,
    }
    # A call of another route does not spend it.
    balance = httpx.get(f"{url}/api/v1/members/CC3333333/balance", headers=CC_KEY)
    assert balance.status_code == 200
    for left in (1, 0):
        refused = _deduct(url)
        assert refused.status_code == 400
        assert refused.json()["detail"] == {
            "error": "insufficient_balance",
            "message": "Member has insufficient stars",
            "current_balance": 1000,
            "requested_amount": 10,
        }
        assert [f["times"] for f in sandbox_faults.armed_faults("coffeechain")] == (
            [left] if left else []
        )
    assert _deduct(url).status_code == 200


def test_each_tenant_specific_fault_acts_as_its_header(sandbox_faults: Sandbox) -> None:
    urls = sandbox_faults.urls
    sandbox_faults.inject_fault("coffeechain", "approval_check", "approval-required")
    approval = httpx.post(
        f"{urls['coffeechain']}/api/v1/approvals/check",
        json={"member_id": "CC1234567", "amount": 100, "booking_reference": "bkg_small"},
        headers=CC_KEY,
    )
    assert approval.json()["approval_required"] is True
    assert approval.json()["reason"] == "Forced approval for testing"

    sandbox_faults.inject_fault("telcocorp", "token", "auth-failed")
    token_body = {
        "grant_type": "client_credentials",
        "client_id": "telcocorp_client_id",
        "client_secret": "telcocorp_client_secret",
    }
    refused = httpx.post(f"{urls['telcocorp']}/oauth/token", json=token_body)
    assert refused.status_code == 401 and refused.json()["detail"]["error"] == "unauthorized"
    assert httpx.post(f"{urls['telcocorp']}/oauth/token", json=token_body).status_code == 200

    sandbox_faults.inject_fault("fintechapp", "session", "invalid-member")
    session = httpx.post(
        f"{urls['fintechapp']}/api/v1/sessions/validate",
        json={"user_id": "FA1234567", "device_id": "d1"},
    )
    assert session.status_code == 404
    assert session.json()["detail"]["error"] == "user_not_found"


def test_generic_faults_internal_error_and_stall(sandbox_faults: Sandbox) -> None:
    url = sandbox_faults.urls["coffeechain"]
    sandbox_faults.inject_fault("coffeechain", "refund", "true")
    refund = httpx.post(
        f"{url}/api/v1/members/CC3333333/refund",
        json={"transaction_id": "txn_nothing", "reason": "x"},
        headers=CC_KEY,
    )
    assert refund.status_code == 500
    assert refund.json()["detail"]["error"] == "internal_error"

    balance = f"{url}/api/v1/members/CC3333333/balance"
    sandbox_faults.inject_fault("coffeechain", "balance", "api-timeout", stall_seconds=1.2)
    started = time.monotonic()
    assert httpx.get(balance, headers=CC_KEY, timeout=10).status_code == 200
    assert time.monotonic() - started >= 1.2
    # Without its own stall the configured one (0.5 s in the tests) applies.
    sandbox_faults.inject_fault("coffeechain", "balance", "api-timeout")
    with pytest.raises(httpx.ReadTimeout):
        httpx.get(balance, headers=CC_KEY, timeout=0.2)


def _balance(url: str, member: str = "CC3333333") -> int:
    response = httpx.get(f"{url}/api/v1/members/{member}/balance", headers=CC_KEY, timeout=10)
    return response.json()["balance"]


def test_after_acting_faults_move_the_money_then_lose_the_answer(sandbox_faults: Sandbox) -> None:
    url = sandbox_faults.urls["coffeechain"]
    start = _balance(url)
    sandbox_faults.inject_fault("coffeechain", "deduct", "500-after-acting")
    lost = _deduct(url, amount=7)
    assert lost.status_code == 500 and lost.json()["detail"]["error"] == "internal_error"
    assert _balance(url) == start - 7  # deducted although the answer says otherwise

    taken = _deduct(url, amount=5).json()["transaction_id"]
    refund = f"{url}/api/v1/members/CC3333333/refund"
    sandbox_faults.inject_fault("coffeechain", "refund", "timeout-after-acting", stall_seconds=1)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(
            refund, json={"transaction_id": taken, "reason": "x"}, headers=CC_KEY, timeout=0.3
        )
    assert _balance(url) == start - 7  # refunded before the answer stalled
    with pytest.raises(ValueError, match="'deduct' or 'refund'"):
        sandbox_faults.inject_fault("coffeechain", "balance", "500-after-acting")


def test_any_route_and_fifo_order(sandbox_faults: Sandbox) -> None:
    url = sandbox_faults.urls["coffeechain"]
    sandbox_faults.inject_fault("coffeechain", "*", "auth-failed")
    sandbox_faults.inject_fault("coffeechain", "deduct", "insufficient-balance")
    first = httpx.get(f"{url}/api/v1/members/CC3333333/balance", headers=CC_KEY)
    assert first.status_code == 401
    assert _deduct(url).json()["detail"]["error"] == "insufficient_balance"
    assert sandbox_faults.armed_faults("coffeechain") == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"route": "withdraw", "fault": "true"}, "route"),
        ({"route": "deduct", "fault": "meltdown"}, "fault"),
        ({"route": "deduct", "fault": "approval-required"}, "route"),
        ({"route": "deduct", "fault": "true", "times": 0}, "times"),
        ({"route": "deduct", "fault": "true", "times": "2"}, "times"),
        ({"route": "deduct", "fault": "true", "stall_seconds": -1}, "stall_seconds"),
        ({"fault": "true"}, "route"),
        ([1, 2], "body"),
    ],
)
def test_refused_fault_requests_name_the_field(
    sandbox_faults: Sandbox, body: object, field: str
) -> None:
    response = httpx.post(sandbox_faults.urls["coffeechain"] + CONTROL_PATH, json=body)
    assert response.status_code == 400
    assert response.json()["field"] == field
    assert sandbox_faults.armed_faults("coffeechain") == []


def test_tenant_specific_fault_is_refused_on_another_tenant(sandbox_faults: Sandbox) -> None:
    with pytest.raises(ValueError, match="invalid-member"):
        sandbox_faults.inject_fault("coffeechain", "deduct", "invalid-member")
    with pytest.raises(ValueError, match="order_create"):
        sandbox_faults.inject_fault("duffel", "orders", "500_after_create")


def test_fault_control_is_off_unless_enabled(sandbox_factory) -> None:
    plain = sandbox_factory(fault_control=False)
    for service, url in plain.urls.items():
        assert httpx.get(url + CONTROL_PATH).status_code in (401, 404), service
        with pytest.raises(RuntimeError, match="no fault control"):
            inject_fault(url, "deduct", "true")
        with pytest.raises(RuntimeError, match="no fault control"):
            plain.clear_faults(service)


# --- Duffel stand-in ------------------------------------------------------------------------


def test_order_definitely_refused_books_nothing(sandbox_faults: Sandbox) -> None:
    with _duffel(sandbox_faults.urls["duffel"]) as api:
        offer = _offer(api)
        sandbox_faults.inject_fault("duffel", "order_create", "offer_no_longer_available")
        refused = api.post("/air/orders", json=_order_body(offer, "bkg_refused"))
        assert refused.status_code == 422
        body = refused.json()
        # Duffel's envelope, as in its recorded 422.
        recorded = json.loads((FIXTURES / "422_validation_error.json").read_text())
        assert set(body) == set(recorded)
        assert set(body["errors"][0]) == set(recorded["errors"][0]) - {"source"}
        assert set(body["meta"]) == set(recorded["meta"])
        assert body["errors"][0]["type"] == "invalid_state_error"
        assert body["errors"][0]["code"] == "offer_no_longer_available"
        assert body["meta"]["request_id"] == refused.headers["x-request-id"]
        assert _orders_with(api, "bkg_refused") == []


def test_order_created_then_500_is_listed_with_its_metadata(sandbox_faults: Sandbox) -> None:
    with _duffel(sandbox_faults.urls["duffel"]) as api:
        offer = _offer(api)
        sandbox_faults.inject_fault("duffel", "order_create", "500_after_create")
        failed = api.post("/air/orders", json=_order_body(offer, "bkg_lost_answer"))
        assert failed.status_code == 500
        assert failed.json()["errors"][0]["code"] == "internal_server_error"
        (order,) = _orders_with(api, "bkg_lost_answer")
        assert order["metadata"] == {"booking_id": "bkg_lost_answer", "tenant_id": "fintechapp"}
        assert order["total_amount"] == offer["total_amount"]


def test_order_created_then_stalls_past_the_callers_timeout(sandbox_faults: Sandbox) -> None:
    with _duffel(sandbox_faults.urls["duffel"]) as api:
        offer = _offer(api)
        sandbox_faults.inject_fault("duffel", "order_create", "timeout", stall_seconds=3)
        with pytest.raises(httpx.ReadTimeout):
            api.post("/air/orders", json=_order_body(offer, "bkg_stalled"), timeout=0.5)
        (order,) = _orders_with(api, "bkg_stalled")
        assert order["metadata"]["booking_id"] == "bkg_stalled"


def test_the_header_drives_the_order_faults_too(sandbox_faults: Sandbox) -> None:
    with _duffel(sandbox_faults.urls["duffel"]) as api:
        offer = _offer(api)
        failed = api.post(
            "/air/orders",
            json=_order_body(offer, "bkg_header"),
            headers={"X-Mock-Error": "500_after_create"},
        )
        assert failed.status_code == 500
        assert len(_orders_with(api, "bkg_header")) == 1


def test_duffel_generic_fault_and_control_needs_no_token(sandbox_faults: Sandbox) -> None:
    url = sandbox_faults.urls["duffel"]
    sandbox_faults.inject_fault("duffel", "orders", "unavailable")
    with _duffel(url) as api:
        unavailable = api.get("/air/orders")
        assert unavailable.status_code == 503
        assert unavailable.json()["errors"][0]["code"] == "service_unavailable"
        assert api.get("/air/orders").status_code == 200
