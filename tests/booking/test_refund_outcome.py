"""A refund whose outcome is unknown (timeout, 5xx after the tenant may have paid) is never
repeated blindly: the tenant's ledger settles it, or an operator does.

The reference CoffeeChain service pays a repeated refund of the same deduction again (no
``already_refunded``), so a blind retry would pay the member twice. The stand-ins' faults
``timeout-after-acting`` and ``500-after-acting`` make the refund, then lose its answer.
Refunds are counted in the stand-in's own store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest

from booking.errors import Problem
from booking.schemas import CancelRequest, RefundAction
from booking.service import BookingService, Member
from booking.store.uow import Store
from sandbox.runner import Sandbox
from tenants.registry import TenantConfig

from .conftest import MEMBERS
from .helpers import balance, booking_request, make_service, roomy_registry, search

# The loyalty client gives up after this long; the stalled answers take longer.
READ_TIMEOUT = 0.5
STALL = 1.5
PASSES = 3  # reconciler passes, each of which used to call the refund again


def quick_registry() -> dict[str, TenantConfig]:
    """Roomy limits and a short read timeout, so a stalled answer times out quickly."""
    return {
        tenant_id: tenant.model_copy(
            update={"api": tenant.api.model_copy(update={"read_timeout_seconds": READ_TIMEOUT})}
        )
        for tenant_id, tenant in roomy_registry().items()
    }


REGISTRY = quick_registry()


def coffeechain() -> Member:
    return Member(REGISTRY["coffeechain"], MEMBERS["coffeechain"])


def point_at(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """Point the tenant clients at ``sandbox`` for this test."""
    for name, value in sandbox.client_env().items():
        monkeypatch.setenv(name, value)
    return sandbox


def refunds_at_stand_in(
    sandbox: Sandbox, transaction_id: str, since: dt.datetime
) -> list[dict[str, Any]]:
    """Every refund the CoffeeChain stand-in posted for a deduction (its own store)."""
    store: Any = sandbox.loyalty
    found, cursor = [], None
    while True:
        page = json.loads(
            store.ledger_page("coffeechain", limit=1000, cursor=cursor, updated_since=since)
        )
        found += [
            r
            for r in page["data"]
            if r["type"] == "refund" and r["related_transaction_id"] == transaction_id
        ]
        cursor = page.get("next_cursor")
        if not cursor or not page["data"]:
            return found


def book_then_cancel_with_fault(
    service: BookingService, sandbox: Sandbox, fault: str, key: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A confirmed CoffeeChain booking, cancelled while the refund's answer is lost."""
    who = coffeechain()
    booked = service.book(who, booking_request(search(service, who)[0]), key, "h")
    assert booked.data["status"] == "confirmed", booked.data
    sandbox.inject_fault("coffeechain", "refund", fault, stall_seconds=STALL)
    cancelled = service.cancel(who, booked.data["booking_id"], CancelRequest(), "c-" + key, "h")
    assert sandbox.armed_faults("coffeechain") == []  # the fault was taken by the refund
    return booked.data, cancelled.data


def reconcile(service: BookingService, passes: int = PASSES) -> None:
    for _ in range(passes):
        service.reconcile_once()


@pytest.fixture
def reference(sandbox_factory: Callable[..., Sandbox], monkeypatch: pytest.MonkeyPatch) -> Sandbox:
    """Reference-only stand-ins (no ledger feed; a repeated refund is paid again)."""
    return point_at(sandbox_factory(reference=True), monkeypatch)


@pytest.mark.parametrize("fault", ["timeout-after-acting", "500-after-acting"])
def test_unknown_refund_is_not_paid_twice_by_the_reconciler(
    store: Store, reference: Sandbox, fault: str
) -> None:
    service = make_service(store, reference, registry=REGISTRY)
    who = coffeechain()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    before = balance(who.tenant, who.member_id)

    booked, cancelled = book_then_cancel_with_fault(service, reference, fault, "k-" + fault)
    assert cancelled["status"] == "refund_pending"
    assert cancelled["refund"]["status"] == "pending"  # never claimed without the tenant's word
    reconcile(service)

    transaction_id = booked["payment"]["loyalty_transaction_id"]
    refunds = refunds_at_stand_in(reference, transaction_id, start)
    assert len(refunds) == 1, f"{len(refunds)} refunds paid for one cancellation"
    assert balance(who.tenant, who.member_id) == before  # paid back once, not twice
    # Not reported either: the outcome is unknown to the platform, so an operator decides.
    owed = service.view(booked["booking_id"])
    assert owed["status"] == "refund_pending"
    assert owed["refund"]["status"] == "pending"
    assert owed["failure"]["code"] == "refund_outcome_unknown"
    assert "outcome is unknown" in owed["failure"]["reason"]
    listed = service.operator_bookings("refund_pending", 100)["bookings"]
    [mine] = [b for b in listed if b["booking_id"] == booked["booking_id"]]
    assert mine["failure"]["code"] == "refund_outcome_unknown"


def test_definite_refusal_is_still_retried(store: Store, reference: Sandbox) -> None:
    service = make_service(store, reference, registry=REGISTRY)
    who = coffeechain()
    booked = service.book(who, booking_request(search(service, who)[0]), "k-401", "h")
    before = balance(who.tenant, who.member_id)
    reference.inject_fault("coffeechain", "refund", "auth-failed")  # refused: nothing paid
    cancelled = service.cancel(who, booked.data["booking_id"], CancelRequest(), "c-401", "h")
    assert cancelled.data["status"] == "refund_pending"
    reconcile(service, 1)
    done = service.view(booked.data["booking_id"])
    assert done["status"] == "cancelled" and done["refund"]["status"] == "completed"
    charged = Decimal(booked.data["payment"]["loyalty_amount"])
    assert balance(who.tenant, who.member_id) == before + charged


def test_operator_marks_an_unknown_refund_refunded(store: Store, reference: Sandbox) -> None:
    service = make_service(store, reference, registry=REGISTRY)
    who = coffeechain()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    before = balance(who.tenant, who.member_id)
    booked, _ = book_then_cancel_with_fault(service, reference, "500-after-acting", "k-mark")
    reconcile(service)
    booking_id = booked["booking_id"]
    [paid] = refunds_at_stand_in(reference, booked["payment"]["loyalty_transaction_id"], start)

    settled = service.settle_refund(
        booking_id,
        RefundAction(
            action="mark_refunded",
            operator="ops.alice",
            note="seen in CoffeeChain's portal",
            refund_transaction_id=paid["transaction_id"],
        ),
    )
    assert settled["status"] == "cancelled"
    assert settled["refund"]["status"] == "completed"
    assert settled["refund"]["refund_transaction_id"] == paid["transaction_id"]
    assert "failure" not in settled  # the unknown outcome is settled; nothing failed
    reconcile(service)
    assert balance(who.tenant, who.member_id) == before  # still exactly one refund
    events = service.events(0, 1000, "coffeechain")["events"]
    last = [e for e in events if e["booking_id"] == booking_id][-1]
    assert (last["type"], last["from_state"], last["to_state"]) == (
        "booking.cancelled",
        "refund_pending",
        "cancelled",
    )
    assert last["actor"] == "operator:ops.alice"
    assert "seen in CoffeeChain's portal" in last["detail"]
    assert last["refund_transaction_id"] == paid["transaction_id"]


def test_operator_retries_an_unknown_refund_once(store: Store, reference: Sandbox) -> None:
    service = make_service(store, reference, registry=REGISTRY)
    who = coffeechain()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    before = balance(who.tenant, who.member_id)
    # A 500 before anything is paid: the platform cannot tell it from a 500 after paying.
    booked, _ = book_then_cancel_with_fault(service, reference, "true", "k-retry")
    reconcile(service)
    booking_id = booked["booking_id"]
    transaction_id = booked["payment"]["loyalty_transaction_id"]
    assert refunds_at_stand_in(reference, transaction_id, start) == []
    assert service.view(booking_id)["failure"]["code"] == "refund_outcome_unknown"

    settled = service.settle_refund(
        booking_id,
        RefundAction(action="retry", operator="ops.bob", note="portal shows no refund"),
    )
    assert settled["status"] == "cancelled" and settled["refund"]["status"] == "completed"
    reconcile(service)
    [paid] = refunds_at_stand_in(reference, transaction_id, start)
    assert settled["refund"]["refund_transaction_id"] == paid["transaction_id"]
    assert balance(who.tenant, who.member_id) == before
    events = [
        e for e in service.events(0, 1000, "coffeechain")["events"] if e["booking_id"] == booking_id
    ]
    retry = next(e for e in events if e["type"] == "booking.refund_retry_requested")
    assert retry["actor"] == "operator:ops.bob" and "portal shows no refund" in retry["detail"]
    assert events[-1]["to_state"] == "cancelled" and events[-1]["actor"] == "operator:ops.bob"


# --- with the tenant's ledger feed (default stand-ins) -----------------------------------


def test_unknown_refund_is_settled_from_the_ledger(
    store: Store, stand_ins: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins.reset()
    point_at(stand_ins, monkeypatch)
    service = make_service(store, stand_ins, registry=REGISTRY)
    who = coffeechain()
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    before = balance(who.tenant, who.member_id)
    booked, cancelled = book_then_cancel_with_fault(
        service, stand_ins, "timeout-after-acting", "k-ledger"
    )
    assert cancelled["status"] == "refund_pending"
    reconcile(service, 1)
    done = service.view(booked["booking_id"])
    [paid] = refunds_at_stand_in(stand_ins, booked["payment"]["loyalty_transaction_id"], start)
    assert done["status"] == "cancelled", done["status_history"]
    assert done["refund"]["status"] == "completed"
    assert done["refund"]["refund_transaction_id"] == paid["transaction_id"]
    assert done.get("failure") is None
    assert balance(who.tenant, who.member_id) == before


def test_no_refund_in_the_ledger_is_refunded_again_after_the_deadline(
    store: Store, stand_ins: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins.reset()
    point_at(stand_ins, monkeypatch)
    now = [dt.datetime.now(dt.UTC)]
    service = make_service(store, stand_ins, registry=REGISTRY, clock=lambda: now[0])
    who = coffeechain()
    start = now[0] - dt.timedelta(seconds=5)
    before = balance(who.tenant, who.member_id)
    booked, _ = book_then_cancel_with_fault(service, stand_ins, "true", "k-none")
    booking_id = booked["booking_id"]
    transaction_id = booked["payment"]["loyalty_transaction_id"]
    reconcile(service)  # within the deadline: the ledger's silence is not yet an answer
    assert service.view(booking_id)["status"] == "refund_pending"
    assert refunds_at_stand_in(stand_ins, transaction_id, start) == []

    now[0] += dt.timedelta(seconds=61)  # past the deadline (60 s in these tests)
    reconcile(service, 1)
    done = service.view(booking_id)
    assert done["status"] == "cancelled" and done["refund"]["status"] == "completed"
    assert len(refunds_at_stand_in(stand_ins, transaction_id, start)) == 1
    assert balance(who.tenant, who.member_id) == before


def test_failed_order_keeps_its_reason_once_the_unknown_refund_is_settled(
    store: Store, stand_ins: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    stand_ins.reset()
    point_at(stand_ins, monkeypatch)
    service = make_service(store, stand_ins, registry=REGISTRY)
    who = coffeechain()
    before = balance(who.tenant, who.member_id)
    flight = search(service, who, days=43)[0]
    stand_ins.inject_fault("duffel", "order_create", "offer_no_longer_available")
    stand_ins.inject_fault("coffeechain", "refund", "500-after-acting")
    with pytest.raises(Problem) as refused:
        service.book(who, booking_request(flight), "k-order-refund", "h")
    assert refused.value.extensions["booking_status"] == "refund_pending"
    assert refused.value.extensions["refund"]["status"] == "pending"
    booking_id = refused.value.extensions["booking_id"]
    owed = service.view(booking_id)
    assert owed["failure"]["code"] == "refund_outcome_unknown"
    reconcile(service, 1)
    done = service.view(booking_id)
    assert done["status"] == "failed" and done["refund"]["status"] == "completed"
    assert done["failure"]["code"] == "offer_expired"  # the order's failure is the reason again
    assert balance(who.tenant, who.member_id) == before
    types = [e["type"] for e in service.events(0, 1000, "coffeechain")["events"]]
    assert "booking.refund_outcome_unknown" in types
