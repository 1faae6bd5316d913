"""Reconciliation: after an order's answer is lost, the client finds the order by its metadata."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

import clients.duffel.client as duffel_client
from clients.duffel import DuffelClient, DuffelOrder
from clients.errors import DuffelRejected, OrderOutcomeUnknown
from sandbox.runner import Sandbox, start_sandbox

from .conftest import standin_config
from .test_duffel_live import _book


@pytest.fixture(scope="module")
def standins() -> Iterator[Sandbox]:
    running = start_sandbox(standin_config(fault_control=True))
    yield running
    running.stop()


@pytest.fixture(autouse=True)
def no_faults(standins: Sandbox) -> Iterator[None]:
    standins.clear_faults()
    yield
    standins.clear_faults()


def _order(client: DuffelClient, booking_id: str) -> DuffelOrder:
    metadata = {
        "tenant_id": "coffeechain",
        "member_id": "CC1234567",
        "loyalty_transaction_id": "txn_0123456789ab",
    }
    return _book(client, booking_id, metadata=metadata)[0]


def _window_start() -> dt.datetime:
    return dt.datetime.now(dt.UTC) - dt.timedelta(seconds=2)


def test_order_whose_answer_was_a_500_is_found_by_booking_id(tenants, duffel, standins) -> None:
    client = duffel(tenants["coffeechain"])
    since = _window_start()
    _order(client, "bkg_rec_other")  # a neighbour in the window that must not match
    standins.inject_fault("duffel", "order_create", "500_after_create")
    with pytest.raises(OrderOutcomeUnknown):
        _order(client, "bkg_rec_500")
    (found,) = client.find_orders(since, {"booking_id": "bkg_rec_500"}, limit=1)
    assert found.metadata == {
        "booking_id": "bkg_rec_500",
        "tenant_id": "coffeechain",
        "member_id": "CC1234567",
        "loyalty_transaction_id": "txn_0123456789ab",
    }
    assert found.created_at is not None and found.created_at >= since
    # The plain listing shows it too, with its metadata, among the recent orders.
    recent = {o.id: o.metadata for page in client.list_orders(created_after=since) for o in page}
    assert recent[found.id]["booking_id"] == "bkg_rec_500"
    assert client.find_orders(since, {"booking_id": "bkg_rec_500", "member_id": "CC0000000"}) == []


def test_order_whose_answer_timed_out_is_found(tenants, duffel, standins, monkeypatch) -> None:
    monkeypatch.setattr(duffel_client, "ORDER_TIMEOUT_SECONDS", 1.0)
    client = duffel(tenants["coffeechain"])
    since = _window_start()
    standins.inject_fault("duffel", "order_create", "timeout", stall_seconds=4)
    with pytest.raises(OrderOutcomeUnknown):
        _order(client, "bkg_rec_timeout")
    (found,) = client.find_orders(since, {"booking_id": "bkg_rec_timeout"})
    assert found.metadata is not None and found.metadata["tenant_id"] == "coffeechain"
    assert found.payment_status is not None and found.payment_status.paid_at is not None


def test_definitely_refused_order_is_not_found(tenants, duffel, standins) -> None:
    client = duffel(tenants["coffeechain"])
    since = _window_start()
    standins.inject_fault("duffel", "order_create", "offer_no_longer_available")
    with pytest.raises(DuffelRejected):
        _order(client, "bkg_rec_refused")
    assert client.find_orders(since, {"booking_id": "bkg_rec_refused"}) == []


def test_window_bounds_and_an_empty_match_are_honoured(tenants, duffel) -> None:
    client = duffel(tenants["coffeechain"])
    since = _window_start()
    booked = _order(client, "bkg_rec_window")
    after = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=1)
    assert client.find_orders(after, {"booking_id": "bkg_rec_window"}) == []
    assert client.find_orders(since, {"booking_id": "bkg_rec_window"}, created_before=since) == []
    assert [o.id for o in client.find_orders(since, {"booking_id": "bkg_rec_window"})] == [
        booked.id
    ]
    with pytest.raises(ValueError, match="metadata"):
        client.find_orders(since, {})
