"""Synthetic ORDERS rows for the Duffel stand-in's own tests and benchmarks.

The real history comes from the sandbox generator; this is a small, dependency-free
stand-in for it with the same columns and plausible values (routes, fares and times
come from the same functions the offers use).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import numpy as np
import polars as pl

from sandbox.duffel.offers import CABINS, carriers_for, connection_for, departure_us, price
from sandbox.duffel.render import from_us
from sandbox.ids import duffel_ids, hex_ids, pnrs
from sandbox.reference import HUBS
from sandbox.schema import ORDERS

_START = datetime(2025, 1, 1, tzinfo=UTC)


def sample_orders(
    count: int,
    organisations: tuple[str, ...],
    seed: int = 0,
    start: datetime = _START,
    spacing: timedelta = timedelta(minutes=7),
) -> pl.DataFrame:
    """``count`` orders spread round-robin over ``organisations``, sorted like the history.

    Every 40th order of an organisation shares its predecessor's ``created_at`` so that
    ordering ties (broken by id) are exercised.
    """
    rng = random.Random(seed)
    counter = np.arange(count)
    order_ids = duffel_ids("ord_", counter, seed * 7 + 1)
    references = pnrs(counter, seed * 7 + 2)
    cancellation_ids = duffel_ids("ore_", counter, seed * 7 + 3)
    bookings = hex_ids("bkg_", counter, seed * 7 + 4)
    transactions = hex_ids("txn_", counter, seed * 7 + 5)
    codes = [code for code, _ in HUBS]
    weights = [weight for _, weight in HUBS]
    rows = []
    for i in range(count):
        org = organisations[i % len(organisations)]
        position = i // len(organisations)
        if position % 40 == 39:
            position -= 1
        created = start + spacing * position + timedelta(microseconds=position * 1013 % 999983)
        origin, destination = rng.choices(codes, weights, k=2)
        while destination == origin:
            destination = rng.choices(codes, weights)[0]
        owner = rng.choice(carriers_for(origin, destination))
        via = connection_for(owner, origin, destination, 1)
        cabin = rng.choices(CABINS, (70, 12, 15, 3))[0]
        passengers = rng.choices((1, 2, 3, 4), (55, 30, 10, 5))[0]
        outbound_day = (created + timedelta(days=rng.randint(3, 120))).date()
        outbound = from_us(departure_us(owner, origin, destination, outbound_day))
        inbound = None
        if rng.random() < 0.6:
            back_day = outbound_day + timedelta(days=rng.randint(2, 21))
            inbound = from_us(departure_us(owner, destination, origin, back_day))
        total, base, tax, currency = price(
            owner, origin, destination, via, cabin, passengers, inbound is not None
        )
        hold = rng.random() < 0.15
        pay_by = created + timedelta(days=3) if hold else None
        paid_at = None if hold and rng.random() < 0.5 else created + timedelta(seconds=3)
        cancelled_at = refund = refund_to = cancellation_id = None
        if rng.random() < 0.08:
            cancelled_at = created + timedelta(hours=rng.randint(1, 48))
            cancellation_id = cancellation_ids[i]
            refund = total if paid_at else Decimal("0.00")
            refund_to = "balance" if paid_at else "awaiting_payment"
        member = f"M{i % 97:05d}"
        rows.append(
            {
                "tenant_id": org,
                "order_id": order_ids[i],
                "booking_reference": references[i],
                "created_at": created,
                "order_type": "hold" if hold else "instant",
                "owner_iata": owner,
                "cabin_class": cabin,
                "passenger_count": passengers,
                "origin": origin,
                "destination": destination,
                "via": via,
                "outbound_departure": outbound,
                "return_departure": inbound,
                "total_amount": total,
                "base_amount": base,
                "tax_amount": tax,
                "total_currency": currency,
                "paid_at": paid_at,
                "payment_required_by": pay_by,
                "cancelled_at": cancelled_at,
                "cancellation_id": cancellation_id,
                "refund_amount": refund,
                "refund_to": refund_to,
                "booking_id": bookings[i],
                "member_id": member,
                "member_given_name": "Member",
                "member_family_name": member,
                "loyalty_transaction_id": transactions[i],
                "raw_override": None,
            }
        )
    frame = pl.DataFrame(rows, schema=ORDERS)
    return frame.sort(["tenant_id", "created_at"])
