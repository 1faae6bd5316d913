"""The sandbox's own description of the world it simulates: each loyalty tenant's currency, rates and rules.

The stand-ins and the history generator read the tenants from here, never from the
platform's registry (tenants/*.yaml): the sandbox plays the tenants, and what a tenant's
API does is the tenant's business, not the platform's configuration. The registry and this
module are two independent witnesses of the same facts; tests/sandbox/test_world.py
compares them, so a wrong rate or rule on either side is caught rather than copied by
both. The members the sandbox knows for sure are in sandbox/seed.py (REFERENCE_MEMBERS);
the generator adds the rest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal

ALL_CABINS = ("economy", "premium_economy", "business", "first")


@dataclass(frozen=True)
class Currency:
    """A tenant's loyalty currency and how many decimals its amounts carry on the wire."""

    code: str
    places: int

    def quantum(self) -> Decimal:
        return Decimal(1).scaleb(-self.places)


@dataclass(frozen=True)
class RatePeriod:
    """The USD value of one loyalty unit during [valid_from, valid_to); no valid_to: open."""

    usd_per_unit: Decimal
    valid_from: dt.date
    valid_to: dt.date | None = None


@dataclass(frozen=True)
class LoyaltyTenant:
    """One tenant as its stand-in behaves and its generated history is priced."""

    id: str
    currency: Currency
    usd_per_unit: Decimal  # today's rate; also before the first period of rate_history
    rate_history: tuple[RatePeriod, ...] = ()
    approval_threshold: int | None = None  # units above which a booking needs approval
    cashback_rate: Decimal = Decimal(0)  # share of a deduction credited back
    allowed_cabins: tuple[str, ...] = ALL_CABINS


TENANTS: dict[str, LoyaltyTenant] = {
    tenant.id: tenant
    for tenant in (
        LoyaltyTenant(
            id="coffeechain",
            currency=Currency("stars", 0),
            usd_per_unit=Decimal("0.01"),
            # Stars were devalued on 2026-05-01.
            rate_history=(
                RatePeriod(Decimal("0.0125"), dt.date(2024, 1, 1), dt.date(2026, 5, 1)),
                RatePeriod(Decimal("0.01"), dt.date(2026, 5, 1)),
            ),
            approval_threshold=50_000,
        ),
        LoyaltyTenant(
            id="telcocorp",
            currency=Currency("points", 0),
            usd_per_unit=Decimal("0.01"),
            allowed_cabins=("economy",),
        ),
        LoyaltyTenant(
            id="fintechapp",
            currency=Currency("coins", 2),
            usd_per_unit=Decimal("1"),
            cashback_rate=Decimal("0.02"),
        ),
    )
}

CURRENCIES: dict[str, Currency] = {tenant.id: tenant.currency for tenant in TENANTS.values()}
