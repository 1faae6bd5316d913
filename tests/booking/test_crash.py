"""Crash tests: the API is killed (SIGKILL) mid-saga and restarted on the same store.

Whatever the moment, the booking ends confirmed or failed (never stuck), the member is
charged at most once and the flight ordered at most once; a failed booking's charge is
given back. Deductions are counted in the tenant's ledger, orders at Duffel.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tenants.settings import get_registry

from .helpers import balance, ledger_for, orders_for
from .test_http import ApiServer, _env, book_body, coffeechain, search

TENANT = get_registry()["coffeechain"]
MEMBER = "CC1234567"


@pytest.fixture(autouse=True)
def seeded(stand_ins: Any) -> None:
    stand_ins.reset()
    stand_ins.clear_faults()


def _start(stand_ins: Any, folder: Path, name: str) -> ApiServer:
    env = _env(
        stand_ins,
        folder / "booking.sqlite3",
        BOOKING_SAGA_LEASE_SECONDS="2",
        BOOKING_RECONCILE_DEADLINE_SECONDS="20",
    )
    return ApiServer(env, folder / f"{name}.log")


def _book_in_background(server: ApiServer, flight: dict[str, Any]) -> threading.Thread:
    def call() -> None:
        # The server is killed under this request: that is the test.
        with contextlib.suppress(httpx.TransportError):
            httpx.post(
                server.url + "/api/v1/bookings",
                headers={**coffeechain(MEMBER), "Idempotency-Key": uuid.uuid4().hex},
                json=book_body(flight),
                timeout=60,
            )

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread


def _wait(condition, seconds: float, what: str) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def _settled(server: ApiServer) -> dict[str, Any]:
    """The member's one booking once it is final (confirmed or failed)."""

    def final() -> dict[str, Any] | None:
        time.sleep(0.5)  # stay well inside the tenant's inbound rate limit
        response = httpx.get(
            server.url + "/api/v1/bookings", headers=coffeechain(MEMBER), timeout=10
        )
        assert response.status_code == 200, response.text
        listed = response.json()["data"]["bookings"]
        assert len(listed) == 1, listed
        return listed[0] if listed[0]["status"] in ("confirmed", "failed") else None

    return _wait(final, 60, "the saga to finish after the restart")


def _crash_and_recover(stand_ins: Any, tmp_path: Path, arm, moment) -> dict[str, Any]:
    first = _start(stand_ins, tmp_path, "first")
    flight = search(httpx.Client(base_url=first.url, timeout=30), coffeechain(MEMBER))[0]
    before = balance(TENANT, MEMBER)
    arm()
    caller = _book_in_background(first, flight)
    try:
        _wait(moment, 30, "the moment to crash")
    finally:
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        first.stop()
    caller.join(10)
    stand_ins.clear_faults()
    second = _start(stand_ins, tmp_path, "second")
    try:
        summary = _settled(second)
        booking = httpx.get(
            second.url + f"/api/v1/bookings/{summary['booking_id']}", headers=coffeechain(MEMBER)
        ).json()["data"]
    finally:
        second.stop()
    booking_id = booking["booking_id"]
    charges = [e for e in ledger_for(TENANT, booking_id) if e.type == "deduction"]
    orders = orders_for(stand_ins, TENANT, booking_id)
    amount = Decimal(booking["payment"]["loyalty_amount"])
    if booking["status"] == "confirmed":
        assert len(charges) == 1 and len(orders) == 1
        assert booking["duffel_order_id"] == orders[0].id
        assert balance(TENANT, MEMBER) == before - amount
    else:
        assert orders == [] and len(charges) <= 1
        assert balance(TENANT, MEMBER) == before  # charged at most once, and given back
    return booking


def _deduction_made() -> bool:
    with_reference = [
        e
        for page in _ledger_pages()
        for e in page
        if e.member_id == MEMBER
        and e.type == "deduction"
        and (e.reference_id or "").startswith("bkg_")
    ]
    return bool(with_reference)


def _ledger_pages():
    from clients.loyalty.client import build_loyalty_client

    with build_loyalty_client(TENANT) as client:
        yield from client.iter_ledger()


def test_killed_between_deduction_and_order(stand_ins: Any, tmp_path: Path) -> None:
    # The order call stalls, then runs: the API dies while it waits, after the charge.
    def arm() -> None:
        stand_ins.inject_fault("duffel", "order_create", "api-timeout", stall_seconds=3)

    def moment() -> bool:
        return _deduction_made() and not stand_ins.armed_faults("duffel")

    booking = _crash_and_recover(stand_ins, tmp_path, arm, moment)
    assert booking["status"] in ("confirmed", "failed")


def test_killed_between_order_and_confirmation(stand_ins: Any, tmp_path: Path) -> None:
    # Duffel makes the order, then its answer stalls: the API dies before recording it.
    def arm() -> None:
        stand_ins.inject_fault("duffel", "order_create", "timeout", stall_seconds=30)

    def moment() -> bool:
        return stand_ins.duffel.order_count(TENANT.id) > 0 and not stand_ins.armed_faults("duffel")

    booking = _crash_and_recover(stand_ins, tmp_path, arm, moment)
    assert booking["status"] == "confirmed"  # the order exists: reconciled, not refunded


def test_killed_while_the_charge_is_in_flight(stand_ins: Any, tmp_path: Path) -> None:
    # The deduction stalls, then runs: the API dies not knowing whether it charged.
    def arm() -> None:
        stand_ins.inject_fault("coffeechain", "deduct", "api-timeout", stall_seconds=2)

    def moment() -> bool:
        return not stand_ins.armed_faults("coffeechain")

    booking = _crash_and_recover(stand_ins, tmp_path, arm, moment)
    assert booking["status"] in ("confirmed", "failed")
