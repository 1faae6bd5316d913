"""The Duffel client against the running Duffel stand-in: booking flow, paging, faults."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from clients.duffel import DuffelClient, Offer, OfferRequest
from clients.errors import (
    DuffelAuthError,
    DuffelNotFound,
    DuffelUnavailable,
    OrderOutcomeUnknown,
    UpstreamTimeout,
)
from clients.http import RetryPolicy

from .conftest import LIVE_RETRY, Wire

DEPARTURE = (dt.date.today() + dt.timedelta(days=60)).isoformat()


def _search(client: DuffelClient, origin: str = "LHR", destination: str = "JFK") -> OfferRequest:
    return client.create_offer_request(
        [{"origin": origin, "destination": destination, "departure_date": DEPARTURE}],
        [{"type": "adult"}],
        cabin_class="economy",
    )


def _passengers(search: OfferRequest) -> list[dict]:
    return [
        {
            "id": search.passengers[0].id,
            "title": "ms",
            "gender": "f",
            "given_name": "Ada",
            "family_name": "Lovelace",
            "born_on": "1985-12-10",
            "email": "ada@example.com",
            "phone_number": "+442080160508",
        }
    ]


def _book(
    client: DuffelClient,
    booking_id: str,
    *,
    hold: bool = False,
    metadata: dict[str, str] | None = None,
):
    """An order for the first offer that fits; its metadata names the booking (and ``metadata``)."""
    search = _search(client)
    offer: Offer = next(
        o
        for o in search.offers
        if o.payment_requirements is not None
        and o.payment_requirements.requires_instant_payment is not hold
    )
    return client.create_order(
        offer.id,
        _passengers(search),
        order_type="hold" if hold else "instant",
        payments=None
        if hold
        else [{"type": "balance", "amount": offer.total_amount, "currency": offer.total_currency}],
        metadata={"booking_id": booking_id, **(metadata or {"member_id": "CC1234567"})},
    ), offer


def test_booking_flow_and_pagination_over_three_pages(tenants, duffel) -> None:
    wire = Wire()
    client = duffel(tenants["fintechapp"], wire)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=5)
    booked = []
    for n in range(5):
        order, offer = _book(client, f"bkg_{n:04d}")
        assert order.total_amount == offer.total_amount and isinstance(order.total_amount, Decimal)
        assert order.metadata == {"booking_id": f"bkg_{n:04d}", "member_id": "CC1234567"}
        assert order.booking_reference and order.passenger_count == 1
        booked.append(order.id)
    pages = list(client.list_orders(created_after=before, limit=2))
    assert len(pages) >= 3 and all(len(page) <= 2 for page in pages)
    listed = [o.id for page in pages for o in page]
    assert set(booked) <= set(listed) and len(listed) == len(set(listed))
    fetched = client.get_order(booked[0])
    assert fetched.slices[0].origin.iata_code == "LHR"
    assert fetched.slices[0].destination.iata_code == "JFK"
    assert fetched.slices[0].segments
    assert wire.count(status=429) == 0


def test_hold_payment_and_cancellation(tenants, duffel) -> None:
    client = duffel(tenants["coffeechain"])
    order, offer = _book(client, "bkg_hold", hold=True)
    assert order.payment_status is not None and order.payment_status.awaiting_payment
    payment = client.create_payment(order.id, offer.total_amount, offer.total_currency)
    assert payment.amount == offer.total_amount
    quote = client.create_cancellation(order.id)
    assert quote.order_id == order.id and quote.confirmed_at is None
    confirmed = client.confirm_cancellation(quote.id)
    assert confirmed.confirmed_at is not None
    cancelled = client.get_order(order.id)
    assert cancelled.cancelled_at is not None
    assert cancelled.cancellation is not None and cancelled.cancellation.id == quote.id


def test_reference_data_pages(tenants, duffel) -> None:
    client = duffel(tenants["telcocorp"])
    airlines = [a for page in client.list_airlines(limit=5) for a in page]
    assert any(a.iata_code == "ZZ" for a in airlines)
    airports = [a for page in client.list_airports(limit=20) for a in page]
    assert any(a.iata_code == "LHR" and a.time_zone == "Europe/London" for a in airports)


def test_orders_are_per_tenant_organisation(tenants, duffel) -> None:
    mine, _ = _book(duffel(tenants["telcocorp"]), "bkg_tc_only")
    with pytest.raises(DuffelNotFound):
        duffel(tenants["coffeechain"]).get_order(mine.id)


@pytest.mark.parametrize(
    ("mode", "status"), [("true", 500), ("bad-gateway", 502), ("unavailable", 503)]
)
def test_reads_are_retried_then_unavailable(tenants, duffel, mode, status) -> None:
    wire = Wire(mode)
    with pytest.raises(DuffelUnavailable) as caught:
        next(duffel(tenants["coffeechain"], wire).list_orders())
    assert caught.value.status == status
    assert wire.count(path="/air/orders", status=status) == LIVE_RETRY.max_attempts


@pytest.mark.parametrize("mode", ["true", "bad-gateway"])
def test_order_creation_is_not_retried(tenants, duffel, mode) -> None:
    client = duffel(tenants["coffeechain"])
    search = _search(client)
    offer = next(o for o in search.offers if o.payment_requirements.requires_instant_payment)
    wire = Wire(mode)
    faulty = duffel(tenants["coffeechain"], wire)
    with pytest.raises(OrderOutcomeUnknown):
        faulty.create_order(
            offer.id,
            _passengers(search),
            payments=[
                {"type": "balance", "amount": offer.total_amount, "currency": offer.total_currency}
            ],
        )
    assert wire.sends("/air/orders") == 1


def test_stall_is_cut_short_retried_then_times_out(tenants, duffel) -> None:
    tenant = tenants["coffeechain"]
    quick = tenant.model_copy(
        update={"duffel": tenant.duffel.model_copy(update={"read_timeout_seconds": 0.5})}
    )
    wire = Wire("api-timeout")
    client = duffel(quick, wire, retry=RetryPolicy(max_attempts=2, base_delay_seconds=0.05))
    with pytest.raises(UpstreamTimeout):
        client.get_order("ord_0000000000000000000000")
    assert wire.sends("/air/orders/ord_0000000000000000000000") == 2


def test_wrong_token_is_auth_error(tenants, duffel, monkeypatch) -> None:
    monkeypatch.setenv("TELCOCORP_DUFFEL_TOKEN", "duffel_test_not_a_real_token")
    with pytest.raises(DuffelAuthError) as caught:
        next(duffel(tenants["telcocorp"]).list_orders())
    assert caught.value.code == "access_token_not_found" and caught.value.request_id
    assert "duffel_test_not_a_real_token" not in str(caught.value)
