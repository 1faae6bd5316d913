"""The shared pricing rule: exact, rounded up to the minor unit, half-even cents."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from tenants.pricing import (
    PricingError,
    cashback_for,
    fare_to_usd,
    from_minor,
    loyalty_units_for_usd,
    to_minor,
    usd_for_units,
    usd_per_unit_of,
)
from tenants.settings import get_registry

TODAY = dt.date(2026, 12, 1)


@pytest.fixture(scope="module")
def tenants():
    return get_registry()


def test_stars_round_up_to_a_whole_star(tenants):
    units, rate = loyalty_units_for_usd(Decimal("412.345"), tenants["coffeechain"].currency, TODAY)
    assert (units, rate) == (Decimal("41235"), Decimal("0.01"))
    units, _ = loyalty_units_for_usd(Decimal("412.34"), tenants["coffeechain"].currency, TODAY)
    assert units == Decimal("41234")


def test_stars_use_the_rate_in_force_that_day(tenants):
    units, rate = loyalty_units_for_usd(
        Decimal("100.01"), tenants["coffeechain"].currency, dt.date(2026, 4, 30)
    )
    assert rate == Decimal("0.0125")
    assert units == Decimal("8001")  # 8000.8 rounded up


def test_coins_round_up_to_the_cent(tenants):
    units, rate = loyalty_units_for_usd(Decimal("99.991"), tenants["fintechapp"].currency, TODAY)
    assert (units, rate) == (Decimal("100.00"), Decimal("1"))
    assert str(units) == "100.00"


def test_points(tenants):
    units, _ = loyalty_units_for_usd(Decimal("0.01"), tenants["telcocorp"].currency, TODAY)
    assert units == Decimal(1)


def test_fx_conversion_half_even_and_missing_rate():
    usd, rate = fare_to_usd(Decimal("100.00"), "GBP", dt.date(2024, 1, 15))
    assert rate == Decimal("1.2700") and usd == Decimal("127.00")
    assert usd_per_unit_of("USD", TODAY) == 1
    with pytest.raises(PricingError, match="no FX rate for XYZ"):
        fare_to_usd(Decimal("1"), "XYZ", TODAY)


def test_cashback_and_usd_half_even():
    assert cashback_for(Decimal("100.25"), Decimal("0.02")) == Decimal("2.00")  # 2.005 -> even
    assert cashback_for(Decimal("100.75"), Decimal("0.02")) == Decimal("2.02")  # 2.015 -> even
    assert usd_for_units(Decimal("41235"), Decimal("0.01")) == Decimal("412.35")


def test_minor_units_round_trip_and_refuse_floats():
    assert to_minor(Decimal("12.34"), 2) == 1234
    assert from_minor(1234, 2) == Decimal("12.34")
    assert from_minor(41235, 0) == Decimal(41235)
    with pytest.raises(PricingError):
        to_minor(Decimal("1.234"), 2)
    with pytest.raises(TypeError):
        usd_for_units(1.5, Decimal(1))  # type: ignore[arg-type]
