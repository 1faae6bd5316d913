"""Bookings written straight into the stand-ins' stores, as the generated history was booked.

A test shortcut for fresh upstream records (ledger entries, Duffel orders) without a booking
API in between. Live traffic goes through the booking API: ``sandbox.traffic``.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from decimal import Decimal

import numpy as np
import polars as pl

from sandbox.config import SandboxConfig
from sandbox.generator import US, World, booking_status, build_tables, plan_bookings
from sandbox.world import TENANTS

log = logging.getLogger("tests.history_bookings")


class HistoryBookings:
    """Books one new trip at a time exactly as the history was booked, but now."""

    def __init__(
        self,
        loyalty,
        duffel,
        config: SandboxConfig,
        members: pl.DataFrame,
        first_counter: int,
        seed: int,
    ) -> None:
        self.loyalty = loyalty
        self.duffel = duffel
        self.world = World(TENANTS, members)
        self._rng = np.random.default_rng([seed, first_counter])
        self._counter = first_counter
        self._seed = seed
        self._lock = threading.Lock()
        self.booked = 0

    def book_one(self) -> str:
        """Make one booking at the current instant; returns its status."""
        with self._lock:
            now_us = int(dt.datetime.now(dt.UTC).timestamp() * US)
            plan = plan_bookings(
                self._rng, self.world, 1, now_us, now_us + 1, resolve_until_us=now_us
            )
            ledger, orders, extra = build_tables(self.world, plan, self._counter, self._seed)
            self._counter += 1
        tenant = str(extra["tenant"][0])
        member_id = str(extra["member_id"][0])
        status = str(booking_status(plan)[0])
        charge = ledger.filter(pl.col("type") == "deduction")
        if charge.height:
            amount = charge["amount"][0]
            cashback = sum(
                ledger.filter(pl.col("type") == "cashback")["amount"].to_list(), Decimal(0)
            )
            member = self.loyalty.member(tenant, member_id)
            if member is None or _balance(member) + amount < 0:
                # The member cannot pay: the booking fails and nothing reaches the ledger.
                plan = {**plan, "confirmed": np.array([False]), "failed": np.array([True])}
                ledger, orders, _ = build_tables(self.world, plan, self._counter - 1, self._seed)
                ledger = ledger.head(0)
                status = "failed"
            else:
                self.loyalty.adjust_balance(tenant, member_id, amount + cashback, cashback=cashback)
        if ledger.height:
            self.loyalty.append_ledger(tenant, ledger.sort("updated_at").to_dicts())
        for row in orders.to_dicts():
            self.duffel.add_order(row)
        self.booked += 1
        log.info("booked %s for %s/%s: %s", extra["booking_id"][0], tenant, member_id, status)
        return status


def _balance(member: object) -> Decimal:
    value = member["balance"] if isinstance(member, dict) else member.balance
    return Decimal(value)
