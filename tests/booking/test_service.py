"""The service layer with the real store (SQLite and PostgreSQL) and the real stand-ins."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from booking.errors import Problem
from booking.schemas import ApprovalDecision, CancelRequest
from booking.service import Member
from booking.store.tables import OfferRow

from .conftest import MEMBERS
from .helpers import (
    balance,
    booking_request,
    ledger_for,
    make_service,
    orders_for,
    roomy_registry,
    search,
)

REGISTRY = roomy_registry()


@pytest.fixture(autouse=True)
def seeded(stand_ins):
    """Every test starts from the seeded balances (the stand-ins' hourly reset, on demand)."""
    stand_ins.reset()


def member(tenant_id: str, member_id: str | None = None) -> Member:
    return Member(REGISTRY[tenant_id], member_id or MEMBERS[tenant_id])


def deductions(tenant_id: str, booking_id: str) -> list:
    return [e for e in ledger_for(REGISTRY[tenant_id], booking_id) if e.type == "deduction"]


def test_coffeechain_book_then_cancel_charges_once_and_refunds(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)

    answer = service.book(who, booking_request(flight), "key-1", "hash-1")

    assert answer.status == 201
    booking = answer.data
    assert booking["status"] == "confirmed"
    charged = Decimal(booking["payment"]["loyalty_amount"])
    assert charged == Decimal(flight["price"]["loyalty_amount"])
    assert balance(who.tenant, who.member_id) == before - charged
    [deduction] = deductions("coffeechain", booking["booking_id"])
    assert deduction.amount == -charged
    [order] = orders_for(stand_ins, who.tenant, booking["booking_id"])
    assert order.metadata == {
        "booking_id": booking["booking_id"],
        "tenant_id": "coffeechain",
        "member_id": who.member_id,
        "loyalty_transaction_id": deduction.transaction_id,
    }
    assert booking["duffel_order_id"] == order.id

    cancelled = service.cancel(
        who, booking["booking_id"], CancelRequest(reason="plans changed"), "cancel-1", "c-1"
    )
    assert cancelled.data["status"] == "cancelled"
    refund = cancelled.data["refund"]
    assert (refund["status"], Decimal(refund["net_refund"])) == ("completed", charged)
    assert balance(who.tenant, who.member_id) == before
    assert orders_for(stand_ins, who.tenant, booking["booking_id"])[0].cancelled_at is not None
    history = [h["status"] for h in service.get(who, booking["booking_id"])["status_history"]]
    assert history == ["charging", "ordering", "confirmed", "cancelling", "cancelled"]


def test_same_key_replays_and_another_body_conflicts(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    first = service.book(who, booking_request(flight), "key-same", "body-a")
    again = service.book(who, booking_request(flight), "key-same", "body-a")
    assert again == first
    assert len(deductions("coffeechain", first.data["booking_id"])) == 1
    assert balance(who.tenant, who.member_id) == before - Decimal(
        first.data["payment"]["loyalty_amount"]
    )
    with pytest.raises(Problem) as conflict:
        service.book(who, booking_request(flight), "key-same", "body-b")
    assert (conflict.value.status, conflict.value.slug) == (422, "idempotency-conflict")


def test_price_is_the_offers_and_a_different_amount_is_refused(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    with pytest.raises(Problem) as changed:
        service.book(who, booking_request(flight, amount="1"), "key-price", "h")
    assert (changed.value.status, changed.value.slug) == (409, "price-changed")
    assert changed.value.extensions["price"]["loyalty_amount"] == flight["price"]["loyalty_amount"]
    assert balance(who.tenant, who.member_id) == before
    # The same key and body replay the same refusal; nothing is booked.
    with pytest.raises(Problem) as replayed:
        service.book(who, booking_request(flight, amount="1"), "key-price", "h")
    assert replayed.value.slug == "price-changed"


def test_unknown_or_expired_offer_is_410(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    with pytest.raises(Problem) as gone:
        service.book(
            who,
            booking_request({"id": "off_nonexistent", "price": {"loyalty_amount": "1"}}),
            "k",
            "h",
        )
    assert (gone.value.status, gone.value.slug) == (410, "offer-expired")
    flight = search(service, who)[0]
    later = make_service(
        store, stand_ins, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    )
    with pytest.raises(Problem) as expired:
        later.book(who, booking_request(flight), "k2", "h2")
    assert (expired.value.status, expired.value.slug) == (410, "offer-expired")


class _NoUpstream:
    """Stands in for the clients where a rule must refuse before any upstream call."""

    def __getattr__(self, name):
        raise AssertionError(f"an upstream was called: {name}")


def test_telcocorp_refuses_other_cabins_before_any_upstream_call(store, stand_ins):
    service = make_service(store, stand_ins)
    service.upstreams.duffel = lambda tenant: _NoUpstream()
    service.upstreams.loyalty = lambda tenant: _NoUpstream()
    who = member("telcocorp")
    from booking.schemas import SearchRequest

    with pytest.raises(Problem) as refused:
        service.search(
            who,
            SearchRequest(
                origin="LHR",
                destination="JFK",
                departure_date=dt.date(2027, 3, 1),
                cabin_class="business",
            ),
        )
    assert (refused.value.status, refused.value.slug) == (400, "invalid-cabin-class")
    now = dt.datetime.now(dt.UTC)
    with store.uow() as uow:
        uow.offers.add_all(
            [
                OfferRow(
                    id="off_telco_business",
                    tenant_id="telcocorp",
                    search_id="orq_x",
                    cabin_class="business",
                    expires_at=now + dt.timedelta(minutes=30),
                    created_at=now,
                )
            ]
        )
        uow.commit()
    flight = {"id": "off_telco_business", "price": {"loyalty_amount": "100"}}
    with pytest.raises(Problem) as booked:
        service.book(who, booking_request(flight), "k-cabin", "h")
    assert (booked.value.status, booked.value.slug) == (400, "invalid-cabin-class")


def test_telcocorp_economy_books(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("telcocorp")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    answer = service.book(who, booking_request(flight), "k-tc", "h")
    assert answer.data["status"] == "confirmed"
    assert answer.data["payment"]["loyalty_currency"] == "points"
    assert balance(who.tenant, who.member_id) == before - Decimal(
        answer.data["payment"]["loyalty_amount"]
    )


def test_fintechapp_records_the_cashback_the_tenant_reports(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("fintechapp")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    answer = service.book(who, booking_request(flight), "k-fa", "h")
    payment = answer.data["payment"]
    charged, cashback = Decimal(payment["loyalty_amount"]), Decimal(payment["cashback"])
    assert charged == Decimal(flight["price"]["loyalty_amount"])
    assert cashback == (charged * Decimal("0.02")).quantize(Decimal("0.01"))
    assert balance(who.tenant, who.member_id) == before - charged + cashback
    [event] = [
        e
        for e in service.events(0, 1000, "fintechapp")["events"]
        if e["booking_id"] == answer.data["booking_id"] and e["to_state"] == "confirmed"
    ]
    assert Decimal(event["cashback_amount"]) == cashback


def _expensive_flight(service, who):
    flights = search(service, who, destination="JFK", cabin="business")
    flight = min(flights, key=lambda f: Decimal(f["price"]["loyalty_amount"]))
    assert Decimal(flight["price"]["loyalty_amount"]) > 50_000, flight["price"]
    return flight


def test_coffeechain_over_50000_waits_for_approval_then_books(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain", "CC3333333")
    flight = _expensive_flight(service, who)
    before = balance(who.tenant, who.member_id)
    answer = service.book(who, booking_request(flight), "k-appr", "h")
    assert answer.status == 202
    assert answer.data["status"] == "pending_approval"
    assert answer.data["approval_required"] is True and answer.data["approval_reason"]
    assert balance(who.tenant, who.member_id) == before  # nothing charged while pending

    decided = service.decide(answer.data["booking_id"], ApprovalDecision(decision="approve"))
    assert decided["status"] == "confirmed", (decided.get("failure"), decided["status_history"])
    assert balance(who.tenant, who.member_id) == before - Decimal(
        decided["payment"]["loyalty_amount"]
    )
    with pytest.raises(Problem) as again:
        service.decide(answer.data["booking_id"], ApprovalDecision(decision="reject"))
    assert again.value.slug == "booking-not-pending"


def test_rejected_and_expired_approvals(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain", "CC3333333")
    flights = search(service, who, cabin="business", days=40)
    pricey = [f for f in flights if Decimal(f["price"]["loyalty_amount"]) > 50_000]
    assert len(pricey) >= 1
    first = service.book(who, booking_request(pricey[0]), "k-rej", "h")
    rejected = service.decide(
        first.data["booking_id"], ApprovalDecision(decision="reject", note="no")
    )
    assert rejected["status"] == "rejected"

    second_search = search(service, who, cabin="business", days=41)
    pending = service.book(
        who,
        booking_request(max(second_search, key=lambda f: Decimal(f["price"]["loyalty_amount"]))),
        "k-exp",
        "h",
    )
    assert pending.status == 202
    before = balance(who.tenant, who.member_id)
    later = make_service(
        store, stand_ins, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    )
    failed = later.decide(pending.data["booking_id"], ApprovalDecision(decision="approve"))
    assert failed["status"] == "failed"
    assert failed["failure"]["code"] == "offer_expired"
    assert balance(who.tenant, who.member_id) == before


def test_insufficient_balance_charges_nothing(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain", "CC0000000")  # 1,000 stars
    flight = search(service, who)[0]
    with pytest.raises(Problem) as short:
        service.book(who, booking_request(flight), "k-poor", "h")
    problem = short.value
    assert (problem.status, problem.slug) == (402, "insufficient-balance")
    assert problem.extensions["balance"] == {
        "current": "1000",
        "required": flight["price"]["loyalty_amount"],
        "currency": "stars",
    }
    assert balance(who.tenant, who.member_id) == Decimal(1000)


def test_definite_order_failure_refunds_the_charge(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flights = sorted(search(service, who), key=lambda f: Decimal(f["price"]["loyalty_amount"]))
    assert Decimal(flights[1]["price"]["loyalty_amount"]) <= 50_000  # no approval needed
    before = balance(who.tenant, who.member_id)
    service.book(who, booking_request(flights[0]), "k-f1", "h")
    charged_first = before - balance(who.tenant, who.member_id)
    # Duffel books one offer per search: the second order fails for certain (422).
    with pytest.raises(Problem) as failed:
        service.book(who, booking_request(flights[1]), "k-f2", "h")
    problem = failed.value
    assert problem.extensions.get("booking_status") == "failed", problem
    assert problem.extensions["refund"]["status"] == "completed"
    booking_id = problem.extensions["booking_id"]
    assert balance(who.tenant, who.member_id) == before - charged_first
    assert [e.type for e in ledger_for(who.tenant, booking_id) if e.type == "deduction"] == [
        "deduction"
    ]
    history = [h["status"] for h in service.get(who, booking_id)["status_history"]]
    assert history == ["charging", "ordering", "refund_pending", "failed"]


def test_tenant_without_refunds_leaves_refund_pending_for_operators(store, stand_ins):
    telco = REGISTRY["telcocorp"]
    no_refunds = telco.model_copy(
        update={"capabilities": telco.capabilities.model_copy(update={"refunds": False})}
    )
    registry = {**REGISTRY, "telcocorp": no_refunds}
    service = make_service(store, stand_ins, registry=registry)
    who = Member(no_refunds, MEMBERS["telcocorp"])
    booked = service.book(who, booking_request(search(service, who)[0]), "k-nr", "h")
    before = balance(telco, who.member_id)
    cancelled = service.cancel(who, booked.data["booking_id"], CancelRequest(), "c-nr", "h")
    assert cancelled.data["status"] == "refund_pending"
    assert cancelled.data["refund"]["status"] == "pending"
    assert balance(telco, who.member_id) == before  # nothing refunded, and none reported
    listed = service.operator_bookings("refund_pending", 100)["bookings"]
    assert booked.data["booking_id"] in [b["booking_id"] for b in listed]
    service.reconcile_once()  # the reconciler cannot refund either; it stays visible
    owed = service.get(who, booked.data["booking_id"])
    assert owed["status"] == "refund_pending"
    assert owed["failure"]["code"] == "refund_not_offered"
    assert "capabilities.refunds" in owed["failure"]["reason"]


def test_order_refused_by_duffel_refunds_the_charge(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    stand_ins.inject_fault("duffel", "order_create", "offer_no_longer_available")
    with pytest.raises(Problem) as gone:
        service.book(who, booking_request(flight), "k-gone", "h")
    assert (gone.value.status, gone.value.slug) == (410, "offer-expired")
    assert gone.value.extensions["refund"]["status"] == "completed"
    assert balance(who.tenant, who.member_id) == before
    assert orders_for(stand_ins, who.tenant, gone.value.extensions["booking_id"]) == []


def test_order_made_but_answer_lost_is_reconciled_from_duffel(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    stand_ins.inject_fault("duffel", "order_create", "500_after_create")
    answer = service.book(who, booking_request(flight), "k-lost", "h")
    assert answer.status == 202 and answer.data["status"] == "needs_reconciliation"
    booking_id = answer.data["booking_id"]
    assert service.reconcile_once() >= 1
    resolved = service.get(who, booking_id)
    assert resolved["status"] == "confirmed"
    [order] = orders_for(stand_ins, who.tenant, booking_id)
    assert resolved["duffel_order_id"] == order.id
    assert len(deductions("coffeechain", booking_id)) == 1


def test_order_timeout_is_reconciled_not_retried(store, stand_ins, monkeypatch):
    monkeypatch.setattr("clients.duffel.client.ORDER_TIMEOUT_SECONDS", 1.0)
    service = make_service(store, stand_ins)
    who = member("fintechapp")
    flight = search(service, who)[0]
    stand_ins.inject_fault("duffel", "order_create", "timeout", stall_seconds=3)
    answer = service.book(who, booking_request(flight), "k-slow", "h")
    assert answer.data["status"] == "needs_reconciliation"
    booking_id = answer.data["booking_id"]
    service.reconcile_once()
    assert service.get(who, booking_id)["status"] == "confirmed"
    assert len(orders_for(stand_ins, who.tenant, booking_id)) == 1


def test_order_never_made_is_refunded_after_the_deadline(store, stand_ins):
    service = make_service(store, stand_ins, reconcile_deadline_seconds=0)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    stand_ins.inject_fault("duffel", "order_create", "true")  # 500 before anything is made
    answer = service.book(who, booking_request(flight), "k-never", "h")
    assert answer.data["status"] == "needs_reconciliation"
    booking_id = answer.data["booking_id"]
    service.reconcile_once()
    resolved = service.get(who, booking_id)
    assert resolved["status"] == "failed"
    assert resolved["refund"]["status"] == "completed"
    assert orders_for(stand_ins, who.tenant, booking_id) == []
    assert balance(who.tenant, who.member_id) == before


def test_charge_with_unknown_outcome_is_settled_from_the_ledger(store, stand_ins):
    service = make_service(store, stand_ins, reconcile_deadline_seconds=0)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    stand_ins.inject_fault("coffeechain", "deduct", "true")
    answer = service.book(who, booking_request(flight), "k-charge", "h")
    assert answer.data["status"] == "needs_reconciliation"
    service.reconcile_once()
    resolved = service.get(who, answer.data["booking_id"])
    assert resolved["status"] == "failed"  # the ledger shows no charge: nothing to refund
    assert resolved["failure"]["code"] == "charge_not_made"
    assert balance(who.tenant, who.member_id) == before
    assert orders_for(stand_ins, who.tenant, answer.data["booking_id"]) == []


def test_refund_that_fails_is_retried_by_the_reconciler(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    booked = service.book(who, booking_request(search(service, who)[0]), "k-rf", "h")
    before = balance(who.tenant, who.member_id)
    # A definite refusal (nothing paid) is retried; an unknown outcome is not (see
    # test_refund_outcome.py).
    stand_ins.inject_fault("coffeechain", "refund", "auth-failed", times=3)
    cancelled = service.cancel(who, booked.data["booking_id"], CancelRequest(), "c-rf", "h")
    assert cancelled.data["status"] == "refund_pending"
    assert cancelled.data["refund"]["status"] == "pending"
    assert balance(who.tenant, who.member_id) == before
    stand_ins.clear_faults("coffeechain")
    service.reconcile_once()
    done = service.get(who, booked.data["booking_id"])
    assert done["status"] == "cancelled" and done["refund"]["status"] == "completed"
    assert balance(who.tenant, who.member_id) == before + Decimal(
        booked.data["payment"]["loyalty_amount"]
    )


def test_member_sees_only_their_bookings(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    booked = service.book(who, booking_request(search(service, who)[0]), "k-own", "h")
    booking_id = booked.data["booking_id"]
    for other in (member("coffeechain", "CC2222222"), member("telcocorp")):
        with pytest.raises(Problem) as hidden:
            service.get(other, booking_id)
        assert hidden.value.status == 404
        with pytest.raises(Problem) as hidden:
            service.cancel(other, booking_id, CancelRequest(), "c-own", "h")
        assert hidden.value.status == 404
    listing = service.list(
        who, status="confirmed", from_date=None, to_date=None, limit=100, offset=0
    )
    assert booking_id in [b["booking_id"] for b in listing["bookings"]]


def test_the_answer_is_kept_with_the_state_change_that_settles_it(store, stand_ins, monkeypatch):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)

    def die(*args, **kwargs):
        raise RuntimeError("the process died before answering")

    monkeypatch.setattr(type(service), "_finish", die)
    with pytest.raises(RuntimeError):
        service.book(who, booking_request(flight), "k-atomic", "h")
    monkeypatch.undo()
    with store.uow() as uow:
        kept = uow.idempotency.find("coffeechain", who.member_id, "k-atomic")
        booking = uow.bookings.get(kept.booking_id)
        assert (kept.response_status, booking.status) == (201, "confirmed")
    # Until the dead request's lock lapses, a retry is told to wait; then it gets the answer.
    with pytest.raises(Problem) as waiting:
        service.book(who, booking_request(flight), "k-atomic", "h")
    assert waiting.value.slug == "request-in-progress"
    later = make_service(
        store, stand_ins, clock=lambda: dt.datetime.now(dt.UTC) + dt.timedelta(minutes=5)
    )
    replay = later.book(who, booking_request(flight), "k-atomic", "h")
    assert replay.status == 201 and replay.data["status"] == "confirmed"
    assert len(deductions("coffeechain", replay.data["booking_id"])) == 1
    assert balance(who.tenant, who.member_id) == before - Decimal(
        replay.data["payment"]["loyalty_amount"]
    )


def test_cancellation_with_duffel_down_is_finished_by_the_reconciler(store, stand_ins):
    service = make_service(store, stand_ins)
    who = member("coffeechain")
    booked = service.book(who, booking_request(search(service, who)[0]), "k-cd", "h")
    stand_ins.inject_fault("duffel", "cancellation_create", "unavailable", times=10)
    accepted = service.cancel(who, booked.data["booking_id"], CancelRequest(), "c-cd", "h")
    assert (accepted.status, accepted.data["status"]) == (202, "cancelling")
    stand_ins.clear_faults("duffel")
    service.reconcile_once()
    done = service.get(who, booked.data["booking_id"])
    assert done["status"] == "cancelled" and done["refund"]["status"] == "completed"
    [order] = orders_for(stand_ins, who.tenant, booked.data["booking_id"])
    assert order.cancelled_at is not None


def test_concurrent_retries_of_one_key_charge_once(store, stand_ins):
    import threading

    service = make_service(store, stand_ins)
    who = member("coffeechain")
    flight = search(service, who)[0]
    before = balance(who.tenant, who.member_id)
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(service.book(who, booking_request(flight), "k-race", "h"))
        except Problem as problem:
            outcomes.append(problem.slug)

    threads = [threading.Thread(target=attempt) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    answers = [o for o in outcomes if not isinstance(o, str)]
    assert answers and all(a == answers[0] for a in answers)
    assert set(o for o in outcomes if isinstance(o, str)) <= {"request-in-progress"}
    booking_id = answers[0].data["booking_id"]
    assert len(deductions("coffeechain", booking_id)) == 1
    assert balance(who.tenant, who.member_id) == before - Decimal(
        answers[0].data["payment"]["loyalty_amount"]
    )
