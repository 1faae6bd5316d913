"""The one pricing rule of the platform: a USD fare in loyalty units, USD of units, cashback.

- A fare in another currency converts to USD at the FX rate in force that day (the
  warehouse's ``fx_rates`` seed), half-even to the cent; USD is 1.
- USD → loyalty units rounds UP to the currency's minor unit (a whole star or point, a
  cent of a coin): the member never pays less than the fare.
- Loyalty units → USD and cashback round half-even to the cent.

The rate in force is the tenant registry's ``rate_history`` on the booking's UTC day.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from functools import cache
from pathlib import Path

from tenants.registry import Currency

CENT = Decimal("0.01")
FX_SEED = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds" / "fx_rates.csv"


class PricingError(ValueError):
    """A fare that cannot be priced (e.g. no FX rate for its currency that day)."""


@dataclass(frozen=True)
class FxPeriod:
    currency: str
    usd_per_unit: Decimal
    valid_from: dt.date
    valid_to: dt.date | None


@cache
def load_fx(path: Path = FX_SEED) -> tuple[FxPeriod, ...]:
    """The FX table (currency, usd_per_unit, valid_from, valid_to), read exactly from its text."""
    periods = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, row in enumerate(csv.DictReader(handle), start=2):
            try:
                periods.append(
                    FxPeriod(
                        currency=row["currency"].strip().upper(),
                        usd_per_unit=Decimal(row["usd_per_unit"]),
                        valid_from=dt.date.fromisoformat(row["valid_from"]),
                        valid_to=dt.date.fromisoformat(row["valid_to"])
                        if row.get("valid_to")
                        else None,
                    )
                )
            except (KeyError, ValueError, ArithmeticError) as exc:
                raise PricingError(f"{path.name} line {line}: {exc}") from exc
    return tuple(periods)


def usd_per_unit_of(currency: str, day: dt.date, fx: tuple[FxPeriod, ...] | None = None) -> Decimal:
    """USD per unit of a fare currency on ``day``; a clear error when the table lacks it."""
    code = currency.upper()
    if code == "USD":
        return Decimal(1)
    for period in fx if fx is not None else load_fx():
        if (
            period.currency == code
            and period.valid_from <= day
            and (period.valid_to is None or day < period.valid_to)
        ):
            return period.usd_per_unit
    raise PricingError(f"no FX rate for {code} on {day.isoformat()}")


def round_cents(amount: Decimal) -> Decimal:
    """Half-even to the cent (conversions, cashback)."""
    return amount.quantize(CENT, rounding=ROUND_HALF_EVEN)


def fare_to_usd(amount: Decimal, currency: str, day: dt.date) -> tuple[Decimal, Decimal]:
    """(USD amount half-even to the cent, FX rate used) of a fare."""
    _exact(amount)
    rate = usd_per_unit_of(currency, day)
    return round_cents(amount * rate), rate


def minor_unit(currency: Currency) -> Decimal:
    """The smallest step of an amount: 1 for stars and points, 0.01 for coins."""
    return Decimal(1).scaleb(-currency.decimals)


def loyalty_units_for_usd(
    usd: Decimal, currency: Currency, day: dt.date
) -> tuple[Decimal, Decimal]:
    """(loyalty units rounded UP to the minor unit, usd_per_unit used) for a USD amount."""
    _exact(usd)
    rate = currency.usd_per_unit_on(day)
    step = minor_unit(currency)
    units = (usd / rate / step).to_integral_value(rounding=ROUND_CEILING) * step
    # Division is exact enough at these sizes, but prove the rule rather than trust it.
    if units * rate < usd or (units - step) * rate >= usd > 0:
        raise PricingError(f"rounding check failed for {usd} USD at {rate}")
    return units.quantize(step), rate


def usd_for_units(units: Decimal, usd_per_unit: Decimal) -> Decimal:
    """USD value of loyalty units at a rate, half-even to the cent."""
    _exact(units)
    return round_cents(units * usd_per_unit)


def cashback_for(units: Decimal, cashback_rate: Decimal) -> Decimal:
    """Cashback on a charge: rate x units, half-even to the cent."""
    _exact(units)
    return round_cents(units * cashback_rate)


def to_minor(amount: Decimal, decimals: int) -> int:
    """An exact amount as an integer count of minor units (stored without REAL)."""
    scaled = Decimal(amount).scaleb(decimals)
    if scaled != scaled.to_integral_value():
        raise PricingError(f"{amount} has more than {decimals} decimal places")
    return int(scaled)


def from_minor(minor: int, decimals: int) -> Decimal:
    """An integer count of minor units back to an exact amount."""
    return Decimal(minor).scaleb(-decimals).quantize(Decimal(1).scaleb(-decimals))


def _exact(value: Decimal) -> None:
    if not isinstance(value, Decimal) or not value.is_finite():
        raise TypeError("amounts are finite Decimals, never float")
