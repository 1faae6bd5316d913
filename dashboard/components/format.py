"""Text for money, counts, rates and instants: exact Decimal formatting, times in UTC."""

from __future__ import annotations

import datetime as dt
from decimal import ROUND_HALF_EVEN, Decimal

DASH = "—"


def _places(amount: Decimal, decimals: int) -> int:
    # Never hide a fraction the data carries: show at least its own precision.
    exponent = amount.normalize().as_tuple().exponent
    own = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return max(decimals, own)


def usd(amount: Decimal | None) -> str:
    """US dollars to the cent: ``$1,234.50``, ``-$3.00``."""
    if amount is None:
        return DASH
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.{_places(amount, 2)}f}"


def units(amount: Decimal | None, currency: str | None, decimals: int = 0) -> str:
    """Loyalty units with their currency: ``12,345 stars``, ``335.92 coins``."""
    if amount is None:
        return DASH
    if currency and currency.upper() == "USD":
        return usd(amount)
    sign = "-" if amount < 0 else ""
    text = f"{sign}{abs(amount):,.{_places(amount, decimals)}f}"
    return f"{text} {currency}" if currency else text


def money(amount: Decimal | None, currency: str | None, decimals: int = 2) -> str:
    """An amount in any currency: USD as dollars, ISO codes after the number, loyalty as units."""
    if currency and currency.upper() == "USD":
        return usd(amount)
    if amount is not None and currency and currency.isupper():
        return f"{amount:,.{_places(amount, decimals)}f} {currency}"
    return units(amount, currency, decimals)


def rate(usd_per_unit: Decimal | None, currency: str) -> str:
    """A conversion rate: ``$0.01 per star``."""
    if usd_per_unit is None:
        return DASH
    return f"{rate_value(usd_per_unit)} per {currency.removesuffix('s')}"


def rate_value(usd_per_unit: Decimal) -> str:
    """A rate's dollars alone, all its significant digits: ``$0.0125``."""
    return f"${usd_per_unit.normalize():f}"


def count(value: int | None) -> str:
    """A whole number with thousands separators."""
    return DASH if value is None else f"{value:,}"


def percent(part: int, whole: int) -> str:
    """``part`` of ``whole`` as a percentage to one decimal, computed in Decimal."""
    if not whole:
        return DASH
    share = (Decimal(part) * 100 / Decimal(whole)).quantize(Decimal("0.1"), ROUND_HALF_EVEN)
    return f"{share} %"


def utc(moment: dt.datetime | None) -> str:
    """An instant in UTC, labelled: ``2026-11-24 09:14 UTC``."""
    if moment is None:
        return DASH
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def utc_minutes(moment: dt.datetime | None) -> str:
    """An instant in UTC where the column header already says UTC: ``2026-11-24 09:14``."""
    if moment is None:
        return DASH
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M")


def utc_seconds(moment: dt.datetime | None) -> str:
    """An instant in UTC to the second, for audit trails."""
    if moment is None:
        return DASH
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def age(moment: dt.datetime | None, now: dt.datetime) -> str:
    """How long ago ``moment`` was, in the largest sensible unit."""
    if moment is None:
        return DASH
    seconds = max(0, int((now - moment).total_seconds()))
    if seconds < 120:
        return f"{seconds} s ago"
    if seconds < 7200:
        return f"{seconds // 60} min ago"
    if seconds < 172_800:
        return f"{seconds // 3600} h ago"
    return f"{seconds // 86_400} d ago"


# What each booking status means, for the legends, tooltips and the booking page.
STATUS_MEANINGS = {
    "pending_approval": "waiting for the tenant's operator to approve (above its threshold); "
    "nothing charged yet",
    "charging": "being charged in the tenant's loyalty ledger",
    "ordering": "charged; the airline order is being made",
    "confirmed": "charged and ticketed: the airline order exists",
    "rejected": "the tenant's operator refused it; nothing was charged",
    "failed": "it could not be completed (for example an insufficient balance, a refused "
    "charge, or an order that failed and was refunded); its page says why",
    "cancelling": "a cancellation is under way at the airline",
    "cancelled": "cancelled at the airline; the charge is refunded",
    "refund_pending": "a refund is owed and not yet made",
    "needs_reconciliation": "an outcome only the ledger, Duffel or an operator can settle",
}


def status_meaning(status: str | None) -> str:
    """What a status means, in a sentence fragment (empty for an unknown one)."""
    return STATUS_MEANINGS.get(status or "", "")


def status_label(status: str | None) -> str:
    """A booking status for people: ``pending_approval`` -> ``pending approval``."""
    return DASH if status is None else status.replace("_", " ")


def duration(seconds: int | None) -> str:
    """A span of time to the unit that matters: ``45 s``, ``12 min``, ``3 h 05 min``, ``2 d 4 h``."""
    if seconds is None:
        return DASH
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours = minutes // 60
    if hours < 48:
        return f"{hours} h {minutes % 60:02d} min"
    return f"{hours // 24} d {hours % 24} h"
