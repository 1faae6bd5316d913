"""Shared helpers of the booking tests: services over the stand-ins, and upstream views."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from booking.config import BookingSettings
from booking.schemas import BookingRequest, Passenger, Payment, SearchRequest
from booking.service import BookingService, Member
from booking.store.repository import utcnow
from booking.store.uow import Store
from booking.upstream import Upstreams
from clients.duffel.client import DuffelClient, build_duffel_client
from clients.http import RetryPolicy
from clients.loyalty.client import build_loyalty_client
from settings import Settings
from tenants.registry import RateLimit, TenantConfig
from tenants.settings import get_registry

FAST = RetryPolicy(max_attempts=2, max_elapsed_seconds=5, base_delay_seconds=0.01)


def upstreams_for(sandbox: Any, duffel_transport: httpx.BaseTransport | None = None) -> Upstreams:
    settings = Settings(duffel_base_url=sandbox.urls["duffel"])
    return Upstreams(
        loyalty_factory=lambda t: build_loyalty_client(t, retry=FAST),
        duffel_factory=lambda t: build_duffel_client(
            t, settings, retry=FAST, transport=duffel_transport
        ),
    )


def roomy_registry() -> dict[str, TenantConfig]:
    """The registry with client-side limits raised, so many tests in a row never wait."""
    roomy = RateLimit(requests=100_000, window_seconds=60)
    return {
        tenant_id: tenant.model_copy(
            update={
                "rate_limit": roomy,
                "duffel": tenant.duffel.model_copy(update={"rate_limit": roomy}),
            }
        )
        for tenant_id, tenant in get_registry().items()
    }


def make_service(
    store: Store,
    sandbox: Any,
    *,
    registry: dict[str, TenantConfig] | None = None,
    clock: Callable[[], dt.datetime] = utcnow,
    duffel_transport: httpx.BaseTransport | None = None,
    **settings: Any,
) -> BookingService:
    values = {"database_url": "unused", "reconcile_deadline_seconds": 60.0, **settings}
    return BookingService(
        store,
        upstreams_for(sandbox, duffel_transport),
        registry or roomy_registry(),
        BookingSettings(**values),
        clock=clock,
    )


def departure(days: int = 30) -> dt.date:
    return dt.date.today() + dt.timedelta(days=days)


def search(
    service: BookingService,
    member: Member,
    *,
    origin: str = "LHR",
    destination: str = "JFK",
    cabin: str = "economy",
    days: int = 30,
) -> list[dict[str, Any]]:
    found = service.search(
        member,
        SearchRequest(
            origin=origin,
            destination=destination,
            departure_date=departure(days),
            cabin_class=cabin,
        ),
    )
    assert found["flights"], "the stand-in offered no flights"
    # Cheapest first: the plain tests stay under CoffeeChain's approval threshold.
    return sorted(found["flights"], key=lambda f: Decimal(f["price"]["loyalty_amount"]))


def booking_request(flight: dict[str, Any], amount: str | None = "same") -> BookingRequest:
    paid = flight["price"]["loyalty_amount"] if amount == "same" else amount
    return BookingRequest(
        flight_id=flight["id"],
        passengers=[Passenger(first_name="Ada", last_name="Lovelace", email="ada@example.com")],
        payment=Payment(amount=Decimal(paid) if paid is not None else None),
    )


def balance(tenant: TenantConfig, member_id: str) -> Decimal:
    with build_loyalty_client(tenant) as client:
        return client.balance(member_id).balance


def ledger_for(tenant: TenantConfig, booking_id: str) -> list[Any]:
    """Every ledger record the tenant holds for a booking (the stand-in's own view)."""
    with build_loyalty_client(tenant) as client:
        return [e for page in client.iter_ledger() for e in page if e.reference_id == booking_id]


def orders_for(sandbox: Any, tenant: TenantConfig, booking_id: str) -> list[Any]:
    """Duffel orders carrying this booking id in their metadata."""
    settings = Settings(duffel_base_url=sandbox.urls["duffel"])
    client: DuffelClient = build_duffel_client(tenant, settings)
    with client:
        return [
            o
            for page in client.list_orders()
            for o in page
            if (o.metadata or {}).get("booking_id") == booking_id
        ]
