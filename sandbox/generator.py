"""Deterministic history: a year of the platform as the booking API would have left it.

Every booking is made as the booking API makes it (booking/service.py): priced at the rate
in force that day (tenants/pricing.py: the fare to USD half-even to the cent, USD to loyalty
units rounded up), approved by an operator where the tenant wants approval (re-priced that
day), charged through the tenant's loyalty API, ordered at Duffel in the tenant's own
organisation with the API's metadata (booking, tenant, member, ledger transaction), and
maybe cancelled with a refund later. The history is written from all three sides, which
agree: the booking API's store rows and event feed, the tenants' ledgers, Duffel's orders.
A small share of deliberate anomalies (the ledger or Duffel disagreeing with the platform,
broken deliveries) is written to ``manifest.json`` so later stages can prove they find
exactly these.

All arithmetic on money is on integers (cents, minor units); the same seed, size and
anchor give byte-identical tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from booking.minor_units import minor_text
from sandbox.config import DEFAULT_CHUNK_SIZE
from sandbox.duffel.render import stable_int
from sandbox.ids import (
    as_series,
    ascii_bytes,
    duffel_ids,
    duffel_series,
    hex_ids,
    hex_matrix,
    hex_series,
    pnrs,
    scramble,
)
from sandbox.reference import AIRLINE_REGIONS, HUBS, airports
from sandbox.schema import EVENTS, LEDGER, MEMBERS, MONEY, ORDERS, PLATFORM_BOOKINGS, RATE
from sandbox.seed import REFERENCE_MEMBERS, reference_members_frame
from sandbox.world import TENANTS, LoyaltyTenant

US = 1_000_000
DAY = 86_400 * US
HOUR = 3_600 * US
FX_SEED = Path(__file__).resolve().parents[1] / "dbt_project" / "seeds" / "fx_rates.csv"

BOOKING_SHARE = {"coffeechain": 0.45, "telcocorp": 0.30, "fintechapp": 0.25}
CABINS = np.array(["economy", "premium_economy", "business", "first"])
CABIN_P = np.array([0.72, 0.10, 0.14, 0.04])
CABIN_PRICE = np.array([1.0, 1.6, 3.2, 5.5])
TIERS = np.array(["bronze", "silver", "gold", "platinum"])
GIVEN = [
    "Olivia",
    "Liam",
    "Emma",
    "Noah",
    "Ava",
    "Oliver",
    "Sophia",
    "Elijah",
    "Isabella",
    "James",
    "Mia",
    "William",
    "Amelia",
    "Benjamin",
    "Harper",
    "Lucas",
    "Evelyn",
    "Henry",
    "Abigail",
    "Theo",
    "Aisha",
    "Mateo",
    "Yuki",
    "Chen",
    "Priya",
    "Omar",
    "Fatima",
    "Lars",
    "Ingrid",
    "Pierre",
    "Camille",
    "Diego",
    "Lucia",
    "Kwame",
    "Amara",
    "Hiroshi",
    "Mei",
    "Arjun",
    "Zara",
    "Noor",
]
FAMILY = [
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Sanchez",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Nakamura",
    "Okafor",
    "Patel",
    "Kowalski",
    "Muller",
    "Rossi",
    "Dubois",
    "Silva",
    "Kim",
    "Haddad",
]
# Salts keep each id family's scramble distinct.
SALT = {
    "booking": 11,
    "order": 12,
    "deduction": 13,
    "refund": 14,
    "cashback": 15,
    "approval": 16,
    "decision": 17,
    "cancellation": 18,
    "pnr": 19,
    "malformed": 20,
    "booking_tail": 21,
    "offer": 22,
    "passenger": 23,
    "stray": 24,
}
TXN_PREFIX = {
    "coffeechain": {"deduction": "txn_", "refund": "ref_", "approval": "appr_"},
    "telcocorp": {"deduction": "tctxn_", "refund": "tcref_"},
    "fintechapp": {"deduction": "fatxn_", "refund": "faref_", "cashback": "facb_"},
}
# What members give as the reason of a cancellation (the booking API keeps it as the detail).
CANCEL_REASONS = ("plans changed", "found another flight", None, "illness", None)
# Who decides approvals in the booking API (the events' actor is "operator:<who>").
OPERATORS = ("alice", "bashir", "chen", "dana")
# Kinds of planted anomalies: where the tenant's ledger or Duffel disagrees with the
# platform's records (reconciliation), or how a delivery is broken (deduplication, quarantine).
RECONCILIATION_KINDS = (
    "ledger_missing_deduction",
    "ledger_amount_mismatch",
    "ledger_unknown_deduction",
    "ledger_missing_refund",
    "order_missing",
    "order_not_cancelled",
    "order_without_booking",
)
# The reconciliation check (C1's check_name) that can see each kind.
CHECK_OF_KIND = {
    kind: "ledger_vs_platform" if kind.startswith("ledger_") else "duffel_vs_platform"
    for kind in RECONCILIATION_KINDS
}
ANOMALY_KINDS = (
    *RECONCILIATION_KINDS,
    "duplicate_delivery",
    "malformed_ledger_record",
    "malformed_order",
)
BOOKING_STATUSES = ("confirmed", "pending_approval", "rejected", "cancelled", "failed")
# A saga's steps take this long after the step that starts them (microseconds).
CHECK_APPROVAL_US = 100_000  # the tenant's approval request, before the booking commits
DEDUCT_US = 200_000  # the tenant's deduction, after the charging commit
CHARGED_US = 400_000  # the "charged" commit (charging -> ordering)
ORDER_US = 800_000  # Duffel's order
CONFIRMED_US = 1_200_000  # the "ordered" commit (ordering -> confirmed)
FAILED_US = 400_000  # a refused charge's commit (charging -> failed)
DUFFEL_CANCEL_US = 500_000  # Duffel's cancellation, after the cancelling commit
REFUND_US = 1_000_000  # the tenant's refund
CANCELLED_US = 1_500_000  # the "refunded" commit (cancelling -> cancelled)


@dataclass(frozen=True)
class GenerationResult:
    out_dir: Path
    manifest: dict
    seconds: float
    # The most bookings drawn at once (one chunk) and the most rows held back for time
    # order after a chunk was written: what memory holds instead of the history.
    peak_rows: dict[str, int] = field(default_factory=dict)


def _utc_us(day: dt.date) -> int:
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()) * US


def _ts(values: np.ndarray) -> pl.Series:
    return pl.Series(values.astype(np.int64)).cast(pl.Datetime("us", "UTC"))


def _money(minor: np.ndarray, decimals: int = 2) -> pl.Series:
    """Integer minor units -> exact Decimal(18, 2), without passing through float."""
    scale = Decimal(1).scaleb(-decimals)
    frame = pl.DataFrame({"v": minor.astype(np.int64)})
    return frame.select(
        (pl.col("v").cast(pl.Decimal(18, 2)) * pl.lit(scale, dtype=pl.Decimal(18, 4))).cast(
            pl.Decimal(18, 2)
        )
    ).to_series()


def _frame(columns: dict[str, object], schema: pl.Schema) -> pl.DataFrame:
    """A DataFrame from numpy/polars columns; object arrays (strings with nulls) go as lists."""
    return pl.DataFrame(
        {
            k: v.tolist() if isinstance(v, np.ndarray) and v.dtype == object else v
            for k, v in columns.items()
        },
        schema=schema,
    )


def _div_half_even(numerator: np.ndarray, denominator: int) -> np.ndarray:
    q, r = np.divmod(numerator, denominator)
    twice = 2 * r
    return q + ((twice > denominator) | ((twice == denominator) & (q % 2 == 1)))


def _div_ceil(numerator: np.ndarray, denominator: np.ndarray | int) -> np.ndarray:
    return -((-numerator) // denominator)


def _load_fx() -> dict[str, list[tuple[int, int, int, str]]]:
    """currency -> [(valid_from_us, valid_to_us, usd per unit in 1/10000, rate as written)]."""
    table: dict[str, list[tuple[int, int, int, str]]] = {}
    with FX_SEED.open() as handle:
        for row in csv.DictReader(handle):
            rate = Fraction(row["usd_per_unit"]) * 10_000
            if rate.denominator != 1:
                raise ValueError(f"fx_rates.csv: {row} has more than 4 decimals")
            table.setdefault(row["currency"].strip().upper(), []).append(
                (
                    _utc_us(dt.date.fromisoformat(row["valid_from"])),
                    _utc_us(dt.date.fromisoformat(row["valid_to"])),
                    int(rate),
                    format(Decimal(row["usd_per_unit"]), "f"),
                )
            )
    return table


def _lookup_periods(
    periods: list[tuple[int, int, int, str]], at_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(rate in 1/10000, rate as written) of the period in force at each instant."""
    starts = np.array([p[0] for p in periods])
    values = np.array([p[2] for p in periods])
    texts = np.array([p[3] for p in periods], dtype=object)
    index = np.searchsorted(starts, at_us, side="right") - 1
    if (index < 0).any() or (at_us >= periods[-1][1]).any():
        raise ValueError(
            "a booking falls outside the FX table; extend dbt_project/seeds/fx_rates.csv"
        )
    return values[index], texts[index]


def _rate_fraction(
    tenant: LoyaltyTenant, at_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """USD per loyalty unit in force at each instant: numerator, denominator and its text,
    as ``Currency.usd_per_unit_on`` picks it (before the first period: today's rate)."""
    current = tenant.usd_per_unit
    periods = tenant.rate_history
    if not periods:
        rate = Fraction(current)
        return (
            np.full(at_us.shape, rate.numerator),
            np.full(at_us.shape, rate.denominator),
            np.full(at_us.shape, format(current, "f"), dtype=object),
        )
    starts = np.array([_utc_us(p.valid_from) for p in periods])
    index = np.searchsorted(starts, at_us, side="right") - 1
    rates = [*(p.usd_per_unit for p in periods), current]
    index = np.where(index < 0, len(periods), index)
    fractions = [Fraction(r) for r in rates]
    nums = np.array([f.numerator for f in fractions])[index]
    dens = np.array([f.denominator for f in fractions])[index]
    texts = np.array([format(r, "f") for r in rates], dtype=object)[index]
    return nums, dens, texts


def price_at(
    world: World,
    tenant_idx: np.ndarray,
    total_cents: np.ndarray,
    currency: np.ndarray,
    at_us: np.ndarray,
) -> dict[str, np.ndarray]:
    """Price fares as the booking API does on the UTC day of ``at_us`` (tenants/pricing.py):
    the fare to USD at the FX rate of the day, half-even to the cent; USD to loyalty minor
    units at the tenant's rate of the day, rounded up."""
    n = total_cents.shape[0]
    fx_e4 = np.full(n, 10_000, dtype=np.int64)
    fx_text = np.full(n, "1", dtype=object)
    for code in np.unique(currency).tolist():
        if code == "USD":
            continue
        mask = currency == code
        fx_e4[mask], fx_text[mask] = _lookup_periods(world.fx[code], at_us[mask])
    usd_cents = _div_half_even(total_cents * fx_e4, 10_000)
    amount_minor = np.zeros(n, dtype=np.int64)
    usd_per_unit = np.empty(n, dtype=object)
    for k, tenant_id in enumerate(world.tenant_ids):
        tenant = world.tenants[tenant_id]
        mask = tenant_idx == k
        if not mask.any():
            continue
        num, den, text = _rate_fraction(tenant, at_us[mask])
        amount_minor[mask] = loyalty_minor_units(usd_cents[mask], tenant.currency.places, num, den)
        usd_per_unit[mask] = text
    return {
        "fx_e4": fx_e4,
        "fx_text": fx_text,
        "usd_cents": usd_cents,
        "amount_minor": amount_minor,
        "usd_per_unit": usd_per_unit,
    }


def loyalty_minor_units(
    usd_cents: np.ndarray, decimals: int, num: np.ndarray, den: np.ndarray
) -> np.ndarray:
    """Price a USD amount in loyalty minor units, rounding UP (the member never pays less)."""
    return _div_ceil(usd_cents * (10**decimals) * den, 100 * num)


def cashback_minor(amount_minor: np.ndarray, rate: Fraction) -> np.ndarray:
    """Cashback on an amount in cents, rounded half-even to the cent."""
    return _div_half_even(amount_minor * rate.numerator, rate.denominator)


class World:
    """What stays fixed while bookings are drawn: tenants, members, airports, FX."""

    def __init__(self, tenants: dict[str, LoyaltyTenant], members: pl.DataFrame) -> None:
        self.tenants = tenants
        self.tenant_ids = [t for t in BOOKING_SHARE if t in tenants]
        self.members = {t: members.filter(pl.col("tenant_id") == t) for t in self.tenant_ids}
        ports = airports()
        self.codes = np.array([code for code, _ in HUBS])
        weights = np.array([w for _, w in HUBS], dtype=float)
        self.airport_p = weights / weights.sum()
        self.lat = np.radians([ports[c].lat for c in self.codes])
        self.lon = np.radians([ports[c].lon for c in self.codes])
        self.country = np.array([ports[c].country for c in self.codes])
        self.continent = np.array([ports[c].continent for c in self.codes])
        self.fx = _load_fx()
        self.connection_hubs = np.array(
            [np.where(self.codes == c)[0][0] for c in ("DXB", "DOH", "IST", "FRA", "AMS", "SIN")]
        )

        # Zipf-like activity: a few members book far more than the rest (cumulative shares,
        # drawn from by bisection as numpy's weighted choice does).
        self.member_cdf = {}
        for tenant in self.tenant_ids:
            cdf = np.cumsum(1.0 / np.arange(1, self.members[tenant].height + 1) ** 0.85)
            self.member_cdf[tenant] = cdf / cdf[-1]


def _members(
    rng: np.random.Generator, tenants: dict[str, LoyaltyTenant], size: int, anchor_us: int
) -> pl.DataFrame:
    frames = []
    seeded = [m for m in REFERENCE_MEMBERS if m.tenant_id in tenants]
    for tenant_id, share in BOOKING_SHARE.items():
        if tenant_id not in tenants:
            continue
        tenant = tenants[tenant_id]
        n = max(40, int(size * share / 12))
        reserved = {m.member_id for m in seeded if m.tenant_id == tenant_id}
        if tenant_id == "coffeechain":
            numbers = rng.choice(10**7, n + len(reserved), replace=False)
            ids = [f"CC{x:07d}" for x in numbers.tolist()]
        elif tenant_id == "telcocorp":
            numbers = rng.choice(36**6, n + len(reserved), replace=False)
            alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
            ids = []
            for x in numbers.tolist():
                chars = []
                for _ in range(6):
                    x, d = divmod(x, 36)
                    chars.append(alphabet[d])
                ids.append("TC-" + "".join(chars))
        else:
            numbers = rng.choice(10**8, n + len(reserved), replace=False)
            ids = [f"FA_{x:08d}" for x in numbers.tolist()]
        ids = [i for i in ids if i not in reserved][:n]
        given = np.array(GIVEN)[rng.integers(0, len(GIVEN), n)]
        family = np.array(FAMILY)[rng.integers(0, len(FAMILY), n)]
        decimals = tenant.currency.places
        median_usd = {"coffeechain": 250, "telcocorp": 180, "fintechapp": 450}[tenant_id]
        usd_cents = (rng.lognormal(np.log(median_usd), 0.9, n) * 100).astype(np.int64)
        rate = Fraction(tenant.usd_per_unit)
        balance = loyalty_minor_units(
            usd_cents, decimals, np.full(n, rate.numerator), np.full(n, rate.denominator)
        )
        if decimals == 0:
            balance = balance * 100  # Decimal(18, 2) holds whole units as x.00
        frame = pl.DataFrame(
            {
                "tenant_id": tenant_id,
                "member_id": ids,
                "given_name": given,
                "family_name": family,
                "email": [
                    f"{g.lower()}.{f.lower()}.{i[-4:].lower()}@example.com"
                    for g, f, i in zip(given, family, ids, strict=True)
                ],
                "tier": TIERS[rng.choice(4, n, p=[0.5, 0.3, 0.15, 0.05])],
                "status": np.where(rng.random(n) < 0.97, "active", "suspended"),
                "balance": _money(balance),
                "total_cashback": _money(np.zeros(n, dtype=np.int64)),
                "joined_at": _ts(anchor_us - rng.integers(30 * DAY, 3 * 365 * DAY, n)),
            },
            schema=MEMBERS,
        )
        frames.append(frame)
    seeded_frame = reference_members_frame(set(tenants))
    # Reference members first so they are among the active bookers.
    return pl.concat([seeded_frame, *frames]).sort("tenant_id", maintain_order=True)


def _day_weights(start_us: int, end_us: int) -> tuple[np.ndarray, np.ndarray]:
    """Each day's start and its share of the bookings: summer and December peaks, busier
    weekdays."""
    days = max(1, (end_us - start_us) // DAY)
    day_start = start_us + np.arange(days) * DAY
    doy = np.array(
        [dt.datetime.fromtimestamp(d / US, dt.UTC).timetuple().tm_yday for d in day_start]
    )
    weekday = np.array([dt.datetime.fromtimestamp(d / US, dt.UTC).weekday() for d in day_start])
    weight = (
        1
        + 0.3 * np.sin(2 * np.pi * (doy - 110) / 365)
        + 0.25 * (doy > 330)
        + np.where(weekday < 5, 0.1, -0.15)
    )
    return day_start, weight / weight.sum()


def _times_in_days(rng: np.random.Generator, day_start: np.ndarray, end_us: int) -> np.ndarray:
    """A booking instant in each given day, busier by daytime."""
    n = day_start.shape[0]
    hour_w = np.array(
        [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7, 7, 6, 5, 3, 2], float
    )
    hour = rng.choice(24, n, p=hour_w / hour_w.sum())
    at = day_start + hour * HOUR + rng.integers(0, HOUR, n)
    # A booking's saga takes a few seconds: the last ones still end inside the history.
    return np.minimum(at, end_us - 10 * US)


def _booking_times(rng: np.random.Generator, n: int, start_us: int, end_us: int) -> np.ndarray:
    """Booking instants with seasonality (``_day_weights``) and daytime hours."""
    day_start, p = _day_weights(start_us, end_us)
    return _times_in_days(rng, day_start[rng.choice(day_start.shape[0], n, p=p)], end_us)


def plan_bookings(
    rng: np.random.Generator,
    world: World,
    n: int,
    start_us: int,
    end_us: int,
    resolve_until_us: int,
) -> dict[str, np.ndarray]:
    """Draw ``n`` bookings made in [start, end) and what happened to them until ``resolve_until``."""
    created = np.sort(_booking_times(rng, n, start_us, end_us))
    return plan_made_at(rng, world, created, resolve_until_us)


def plan_made_at(
    rng: np.random.Generator, world: World, created: np.ndarray, resolve_until_us: int
) -> dict[str, np.ndarray]:
    """Draw bookings made at the (sorted) instants ``created`` and what happened to them
    until ``resolve_until``."""
    n = created.shape[0]
    tenant_ids = world.tenant_ids
    share = np.array([BOOKING_SHARE[t] for t in tenant_ids])
    tenant_idx = rng.choice(len(tenant_ids), n, p=share / share.sum())
    member_idx = np.zeros(n, dtype=np.int64)
    for k, tenant in enumerate(tenant_ids):
        mask = tenant_idx == k
        member_idx[mask] = world.member_cdf[tenant].searchsorted(
            rng.random(int(mask.sum())), side="right"
        )
    origin = rng.choice(len(world.codes), n, p=world.airport_p)
    destination = rng.choice(len(world.codes), n, p=world.airport_p)
    # Most trips stay within the origin's continent; the rest cross oceans.
    regional = rng.random(n) < 0.65
    for continent in np.unique(world.continent):
        members = np.where(world.continent == continent)[0]
        mask = regional & (world.continent[origin] == continent)
        if len(members) > 1 and mask.any():
            p = world.airport_p[members] / world.airport_p[members].sum()
            destination[mask] = members[rng.choice(len(members), mask.sum(), p=p)]
    clash = destination == origin
    destination[clash] = (
        destination[clash] + 1 + rng.integers(0, len(world.codes) - 1, clash.sum())
    ) % len(world.codes)
    lat1, lat2 = world.lat[origin], world.lat[destination]
    dlon = world.lon[destination] - world.lon[origin]
    h = np.sin((lat2 - lat1) / 2) ** 2 + np.cos(lat1) * np.cos(lat2) * np.sin(dlon / 2) ** 2
    km = 2 * 6371.0 * np.arcsin(np.sqrt(h))
    via = np.full(n, -1)
    connecting = (km > 7000) & (rng.random(n) < 0.35)
    candidates = world.connection_hubs[rng.integers(0, len(world.connection_hubs), n)]
    ok = connecting & (candidates != origin) & (candidates != destination)
    via[ok] = candidates[ok]
    cabin = rng.choice(4, n, p=CABIN_P)
    economy_only = np.array([world.tenants[t].allowed_cabins == ("economy",) for t in tenant_ids])
    cabin[economy_only[tenant_idx]] = 0
    pax = rng.choice([1, 2, 3, 4], n, p=[0.62, 0.25, 0.08, 0.05]).astype(np.int64)
    lead_days = np.clip(rng.exponential(35, n), 1, 300)
    outbound = created + (lead_days * DAY).astype(np.int64)
    outbound = outbound - outbound % (5 * 60 * US)
    round_trip = rng.random(n) < 0.55
    ret = np.where(
        round_trip, outbound + rng.integers(2, 22, n) * DAY + rng.integers(-6, 7, n) * HOUR, 0
    )
    # Fare: distance and cabin drive it, with noise; round trips cost a little under double.
    usd_guess = (
        (35 + 0.04 * km)
        * CABIN_PRICE[cabin]
        * rng.lognormal(0, 0.15, n)
        * np.where(round_trip, 1.85, 1.0)
        * pax
    )
    currency = np.full(n, "USD", dtype=object)
    gb = world.country[origin] == "GB"
    euro = np.isin(world.country[origin], ["FR", "DE", "NL", "ES", "IT", "IE", "PT", "AT"])
    currency[gb & (rng.random(n) < 0.7)] = "GBP"
    currency[euro & (rng.random(n) < 0.7)] = "EUR"
    fx_e4 = np.full(n, 10_000, dtype=np.int64)
    for code in ("GBP", "EUR"):
        mask = currency == code
        if mask.any():
            fx_e4[mask] = _lookup_periods(world.fx[code], created[mask])[0]
    total_cents = np.maximum(
        (usd_guess * 100 * 10_000 / fx_e4).astype(np.int64), 1_000
    )  # local cents
    tax_cents = _div_half_even(total_cents * 18, 100)
    # The price the booking API quoted when the booking was made.
    quoted = price_at(world, tenant_idx, total_cents, currency, created)
    amount_minor = quoted["amount_minor"]
    threshold = np.full(n, np.iinfo(np.int64).max)
    for k, tenant_id in enumerate(tenant_ids):
        tenant = world.tenants[tenant_id]
        if tenant.approval_threshold:
            threshold[tenant_idx == k] = tenant.approval_threshold * 10**tenant.currency.places
    # Outcomes.
    needs_approval = amount_minor > threshold
    decided_at = created + rng.integers(1 * HOUR, 30 * HOUR, n)
    decided = needs_approval & (decided_at < resolve_until_us)
    approved = decided & (rng.random(n) < 0.9)
    rejected = decided & ~approved
    pending = needs_approval & ~decided
    failed = ~needs_approval & (rng.random(n) < 0.015)
    charged_at = np.where(approved, decided_at, created)
    confirmed = (~needs_approval & ~failed) | approved
    cancel_at = charged_at + rng.integers(1 * DAY, 30 * DAY, n)
    cancelled = (
        confirmed & (rng.random(n) < 0.06) & (cancel_at < np.minimum(outbound, resolve_until_us))
    )
    # An approved booking is priced again on the day of the decision, then charged.
    charged_price = price_at(world, tenant_idx, total_cents, currency, charged_at)
    return {
        "tenant_idx": tenant_idx,
        "member_idx": member_idx,
        "created": created,
        "origin": origin,
        "destination": destination,
        "via": via,
        "cabin": cabin,
        "pax": pax,
        "outbound": outbound,
        "return": ret,
        "currency": currency,
        "total_cents": total_cents,
        "tax_cents": tax_cents,
        "usd_cents": quoted["usd_cents"],
        "amount_minor": amount_minor,
        "fx_text": quoted["fx_text"],
        "usd_per_unit": quoted["usd_per_unit"],
        "charge_usd_cents": charged_price["usd_cents"],
        "charge_minor": charged_price["amount_minor"],
        "charge_fx_text": charged_price["fx_text"],
        "charge_usd_per_unit": charged_price["usd_per_unit"],
        "needs_approval": needs_approval,
        "approved": approved,
        "rejected": rejected,
        "pending": pending,
        "failed": failed,
        "decided_at": decided_at,
        "charged_at": charged_at,
        "confirmed": confirmed,
        "cancelled": cancelled,
        "cancel_at": cancel_at,
        "cancel_reason": rng.integers(0, len(CANCEL_REASONS), n),
        "operator": rng.integers(0, len(OPERATORS), n),
    }


def booking_status(plan: dict[str, np.ndarray]) -> np.ndarray:
    """The platform's status of each booking, as the warehouse should derive it."""
    status = np.full(plan["created"].shape, "confirmed", dtype=object)
    status[plan["cancelled"]] = "cancelled"
    status[plan["pending"]] = "pending_approval"
    status[plan["rejected"]] = "rejected"
    status[plan["failed"]] = "failed"
    return status


def booking_ids(counter: np.ndarray, seed: int) -> pl.Series:
    """Booking ids in the booking API's format: ``bkg_`` + 20 lower-case hex digits."""
    salt = seed * 1_000
    head = hex_matrix(scramble(counter, salt + SALT["booking"]))
    tail = hex_matrix(scramble(counter, salt + SALT["booking_tail"]), digits=8)
    return as_series(ascii_bytes("bkg_", head, tail, n=counter.shape[0]))


def _flight_numbers(owner: np.ndarray, origin: np.ndarray, first_stop: np.ndarray) -> pl.Series:
    """Marketing flight numbers of the first leg, as the Duffel stand-in numbers them."""
    legs = pl.DataFrame({"owner": owner, "origin": origin, "to": first_stop})
    unique = legs.unique()
    numbers = unique.with_columns(
        pl.Series(
            "number",
            [
                f"{o}{stable_int(f'{o}{a}{b}') % 9000 + 100}"
                for o, a, b in unique.select("owner", "origin", "to").iter_rows()
            ],
            dtype=pl.String,
        )
    )
    return legs.join(numbers, on=["owner", "origin", "to"], how="left", maintain_order="left")[
        "number"
    ]


def _in_booking_order(parts: list[tuple[np.ndarray, pl.Series | None]]) -> pl.Series:
    """Per-tenant series (``None``: nulls for that tenant) put back in booking order."""
    order = np.concatenate([np.where(mask)[0] for mask, _ in parts])
    values = pl.concat(
        [
            part
            if part is not None
            else pl.repeat(None, int(mask.sum()), dtype=pl.String, eager=True)
            for mask, part in parts
        ]
    )
    return values.gather(np.argsort(order, kind="stable"))


def booking_facts(
    world: World, plan: dict[str, np.ndarray], first_counter: int, seed: int
) -> dict[str, np.ndarray | pl.Series]:
    """Everything each planned booking is called: ids (booking, ledger transactions, Duffel
    order), member, flight, amounts in loyalty minor units. Strings are polars series (a
    fraction of the memory and time of a million Python strings each)."""
    n = plan["created"].shape[0]
    counter = np.arange(first_counter, first_counter + n, dtype=np.int64)
    salt = seed * 1_000
    masks = [plan["tenant_idx"] == k for k in range(len(world.tenant_ids))]
    people = {
        column: _in_booking_order(
            [
                (mask, world.members[tenant][column].gather(plan["member_idx"][mask]))
                for tenant, mask in zip(world.tenant_ids, masks, strict=True)
            ]
        )
        for column in ("member_id", "given_name", "family_name")
    }
    ids = {
        kind: _in_booking_order(
            [
                (
                    mask,
                    hex_series(TXN_PREFIX[tenant][kind], counter[mask], salt + SALT[kind])
                    if kind in TXN_PREFIX[tenant]
                    else None,
                )
                for tenant, mask in zip(world.tenant_ids, masks, strict=True)
            ]
        )
        for kind in ("deduction", "refund", "cashback", "approval")
    }
    codes = pl.Series(world.codes)
    origin = codes.gather(plan["origin"])
    destination = codes.gather(plan["destination"])
    owner = _airline(world, plan)
    first_stop = np.where(
        plan["via"] >= 0, world.codes[np.maximum(plan["via"], 0)], world.codes[plan["destination"]]
    )
    # Decimal(18, 2) holds every amount; whole-unit currencies scale by 100.
    decimals = np.array([world.tenants[t].currency.places for t in world.tenant_ids])[
        plan["tenant_idx"]
    ]
    amount = plan["charge_minor"] * 10 ** (2 - decimals)
    cashback = np.zeros(n, dtype=np.int64)
    for k, tenant in enumerate(world.tenant_ids):
        rate = Fraction(world.tenants[tenant].cashback_rate)
        if rate:
            cashback[masks[k]] = cashback_minor(amount[masks[k]], rate)
    return {
        "counter": counter,
        "salt": np.array(salt),
        "booking_id": booking_ids(counter, seed),
        **people,
        "tenant": pl.Series(world.tenant_ids).gather(plan["tenant_idx"]),
        "deduction_id": ids["deduction"],
        "refund_id": ids["refund"],
        "cashback_id": ids["cashback"],
        "approval_id": ids["approval"],
        # Only a charged booking has an order.
        "order_id": duffel_series("ord_", counter, salt + SALT["order"]).set(
            pl.Series(~plan["confirmed"]), None
        ),
        "cancellation_id": duffel_series("ore_", counter, salt + SALT["cancellation"]),
        "booking_reference": _text(np.array(pnrs(counter, salt + SALT["pnr"]), dtype=object)),
        "owner": pl.Series(owner),
        "flight_number": _flight_numbers(owner, world.codes[plan["origin"]], first_stop),
        "origin": origin,
        "destination": destination,
        "route": pl.select(pl.lit(origin) + "-" + pl.lit(destination)).to_series(),
        "amount": amount,
        "cashback": cashback,
        "currency": pl.Series([world.tenants[t].currency.code for t in world.tenant_ids]).gather(
            plan["tenant_idx"]
        ),
        "decimals": decimals,
    }


def _only(values: np.ndarray | pl.Series, mask: np.ndarray) -> np.ndarray | pl.Series:
    if isinstance(values, pl.Series):
        return values.filter(pl.Series(mask))
    return values[mask]


def ledger_and_orders(
    world: World, plan: dict[str, np.ndarray], facts: dict[str, np.ndarray | pl.Series]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The tenants' ledger rows and Duffel's order rows (unsorted), as the booking API's
    calls left them: an approval request when the tenant wants one, the deduction (and
    cashback) when charged, an instant order once charged, and on cancellation Duffel's
    cancellation and the tenant's refund."""
    n = plan["created"].shape[0]
    amount, cashback = facts["amount"], facts["cashback"]
    charged = plan["confirmed"]
    deducted_at = plan["charged_at"] + DEDUCT_US
    parts = []
    texts = pl.DataFrame(
        {
            "booking": facts["booking_id"],
            "route": facts["route"],
            "flight": facts["flight_number"],
        }
    )

    def described(*pieces: str | pl.Expr) -> pl.Series:
        exprs = [pl.lit(p) if isinstance(p, str) else p for p in pieces]
        return texts.select(pl.concat_str(exprs).alias("d"))["d"]

    def ledger_part(mask, kind, txn_id, amount_minor, status, at, related, description):
        if not mask.any():
            return
        parts.append(
            _frame(
                {
                    "tenant_id": _only(facts["tenant"], mask),
                    "transaction_id": _only(txn_id, mask),
                    "member_id": _only(facts["member_id"], mask),
                    "type": kind,
                    "amount": _money(amount_minor[mask]),
                    "status": status,
                    "reference_id": _only(facts["booking_id"], mask),
                    "related_transaction_id": _only(related, mask) if related is not None else None,
                    "approval_id": _only(facts["approval_id"], mask)
                    if kind.startswith("approval")
                    else None,
                    "description": _only(description, mask),
                    "created_at": _ts(at[mask]),
                    "updated_at": _ts(at[mask]),
                    "raw_override": None,
                },
                schema=LEDGER,
            )
        )

    ledger_part(
        plan["needs_approval"],
        "approval_request",
        facts["approval_id"],
        np.zeros(n, dtype=np.int64),
        "requested",
        plan["created"] - CHECK_APPROVAL_US,
        None,
        described("Approval requested for ", pl.col("booking")),
    )
    ledger_part(
        charged,
        "deduction",
        facts["deduction_id"],
        -amount,
        "posted",
        deducted_at,
        None,
        described("Flight booking ", pl.col("route"), " ", pl.col("flight")),
    )
    ledger_part(
        charged & (cashback > 0),
        "cashback",
        facts["cashback_id"],
        cashback,
        "posted",
        deducted_at,
        facts["deduction_id"],
        described("Cashback on ", pl.col("booking")),
    )
    ledger_part(
        plan["cancelled"],
        "refund",
        facts["refund_id"],
        amount,
        "posted",
        plan["cancel_at"] + REFUND_US,
        facts["deduction_id"],
        described("Booking ", pl.col("booking"), " cancelled"),
    )
    ledger = pl.concat(parts) if parts else LEDGER.to_frame()

    # Only a charged booking has an order: an instant order, paid from the Duffel balance.
    o = charged
    ordered_at = plan["charged_at"][o] + ORDER_US
    cancelled = plan["cancelled"][o]
    via = plan["via"][o]
    orders = _frame(
        {
            "tenant_id": _only(facts["tenant"], o),
            "order_id": _only(facts["order_id"], o),
            "booking_reference": _only(facts["booking_reference"], o),
            "created_at": _ts(ordered_at),
            "order_type": "instant",
            "owner_iata": _only(facts["owner"], o),
            "cabin_class": CABINS[plan["cabin"][o]],
            "passenger_count": plan["pax"][o].astype(np.int8),
            "origin": _only(facts["origin"], o),
            "destination": _only(facts["destination"], o),
            "via": np.where(via >= 0, world.codes[np.maximum(via, 0)], None),
            "outbound_departure": _ts(plan["outbound"][o]),
            "return_departure": _ts(plan["return"][o]).set(pl.Series(plan["return"][o] == 0), None),
            "total_amount": _money(plan["total_cents"][o]),
            "base_amount": _money(plan["total_cents"][o] - plan["tax_cents"][o]),
            "tax_amount": _money(plan["tax_cents"][o]),
            "total_currency": plan["currency"][o].astype(str),
            "paid_at": _ts(ordered_at),
            "payment_required_by": None,
            "cancelled_at": _ts(plan["cancel_at"][o] + DUFFEL_CANCEL_US).set(
                pl.Series(~cancelled), None
            ),
            "cancellation_id": _only(facts["cancellation_id"], o).set(pl.Series(~cancelled), None),
            "refund_amount": _money(plan["total_cents"][o]).set(pl.Series(~cancelled), None),
            "refund_to": np.where(cancelled, "balance", None),
            "booking_id": _only(facts["booking_id"], o),
            "member_id": _only(facts["member_id"], o),
            "member_given_name": _only(facts["given_name"], o),
            "member_family_name": _only(facts["family_name"], o),
            "loyalty_transaction_id": _only(facts["deduction_id"], o),
            "raw_override": None,
        },
        schema=ORDERS,
    )
    return ledger, orders


def build_tables(
    world: World,
    plan: dict[str, np.ndarray],
    first_counter: int,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, np.ndarray | pl.Series]]:
    """Planned bookings as ledger rows and Duffel order rows (unsorted), with their facts."""
    facts = booking_facts(world, plan, first_counter, seed)
    ledger, orders = ledger_and_orders(world, plan, facts)
    return ledger, orders, facts


def _text(values: np.ndarray | pl.Series) -> pl.Series:
    """A numpy array of strings (object arrays may hold None) as a polars String series."""
    if isinstance(values, pl.Series):
        return values
    if values.dtype == object:
        return pl.Series(values.tolist(), dtype=pl.String)
    return pl.Series(values.astype(str), dtype=pl.String)


def build_platform(
    world: World, plan: dict[str, np.ndarray], extra: dict[str, np.ndarray]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The booking API's own records of the planned bookings: its store's rows and its event
    feed, as booking/service.py's saga writes them (events ordered by commit; ``event_id`` is
    0 until the feed is numbered, and ``_booking`` (the booking's counter) and ``_step`` (its
    saga step) break ties of commit time; see ``_EventFeed``).

    Each event carries the booking's values at that step, as ``EventLog.append`` does: the
    price (fare, FX rate, USD, loyalty amount and the rate used) from creation, re-priced
    when an operator approves; the ledger transaction and cashback from ``ordering``; the
    Duffel order from ``confirmed``; the refund from ``cancelled``.
    """
    n = plan["created"].shape[0]
    charged = plan["confirmed"]
    cancelled = plan["cancelled"]
    approval = plan["needs_approval"]
    cashback = np.where(charged & (extra["cashback"] > 0), extra["cashback"], -1)
    codes = world.codes
    base = pl.DataFrame(
        {
            "booking_idx": np.arange(n, dtype=np.int64),
            "tenant_id": _text(extra["tenant"]),
            "booking_id": _text(extra["booking_id"]),
            "member_id": _text(extra["member_id"]),
            "loyalty_currency": _text(extra["currency"]),
            "loyalty_decimals": extra["decimals"].astype(np.int32),
            "amount0": plan["amount_minor"],
            "usd0": plan["usd_cents"],
            "upu0": _text(plan["usd_per_unit"]),
            "fx0": _text(plan["fx_text"]),
            "amount1": plan["charge_minor"],
            "usd1": plan["charge_usd_cents"],
            "upu1": _text(plan["charge_usd_per_unit"]),
            "fx1": _text(plan["charge_fx_text"]),
            "fare_cents": plan["total_cents"],
            "fare_currency": _text(plan["currency"]),
            "cashback_minor": cashback,
            "deduction_id": _text(extra["deduction_id"]),
            "refund_id": _text(extra["refund_id"]),
            "order_id": _text(extra["order_id"]),
            "operator": pl.Series(np.array(OPERATORS)[plan["operator"]]),
            "reason": pl.Series(list(CANCEL_REASONS), dtype=pl.String).gather(
                plan["cancel_reason"]
            ),
            "needs_approval": approval,
            "created": plan["created"],
            "decided": plan["decided_at"],
            "charged": plan["charged_at"],
            "cancel": plan["cancel_at"],
        }
    ).with_columns(
        approved_text=pl.format(
            "approved at {} {}",
            minor_text(pl.col("amount1"), pl.col("loyalty_decimals")),
            pl.col("loyalty_currency"),
        )
    )
    # The saga's steps: (from, to, detail, priced at approval, charged, ordered, refunded).
    # Only the narrow keys are sorted into commit order; the wide columns are gathered after.
    saga = [
        (None, "charging", None, False, False, False, False),
        (None, "pending_approval", "approval required", False, False, False, False),
        ("pending_approval", "charging", "<approved>", True, False, False, False),
        ("pending_approval", "rejected", "rejected", False, False, False, False),
        ("charging", "failed", "insufficient balance", False, False, False, False),
        ("charging", "ordering", "charged", True, True, False, False),
        ("ordering", "confirmed", "ordered", True, True, True, False),
        ("confirmed", "cancelling", "<reason>", True, True, True, False),
        ("cancelling", "cancelled", "cancelled at Duffel; refunded", True, True, True, True),
    ]
    when_us = [
        (0, ~approval, plan["created"]),
        (1, approval, plan["created"]),
        (2, plan["approved"], plan["decided_at"]),
        (3, plan["rejected"], plan["decided_at"]),
        (4, plan["failed"], plan["created"] + FAILED_US),
        (5, charged, plan["charged_at"] + CHARGED_US),
        (6, charged, plan["charged_at"] + CONFIRMED_US),
        (7, cancelled, plan["cancel_at"]),
        (8, cancelled, plan["cancel_at"] + CANCELLED_US),
    ]
    order = pl.concat(
        [
            pl.DataFrame(
                {
                    "occurred_us": at[mask],
                    "booking_idx": np.where(mask)[0],
                    "step": np.full(int(mask.sum()), code, dtype=np.int8),
                }
            )
            for code, mask, at in when_us
        ]
    ).sort("occurred_us", "booking_idx", "step")
    last = order.group_by("booking_idx").agg(pl.col("occurred_us").max()).sort("booking_idx")
    steps = pl.DataFrame(
        {
            "step": np.arange(len(saga), dtype=np.int8),
            "from_state": [s[0] for s in saga],
            "to_state": [s[1] for s in saga],
            "fixed_detail": [s[2] for s in saga],
            "repriced": [s[3] for s in saga],
            "paid": [s[4] for s in saga],
            "ordered": [s[5] for s in saga],
            "refunded": [s[6] for s in saga],
        },
        schema_overrides={"from_state": pl.String, "fixed_detail": pl.String},
    )
    raw = order.with_columns(pl.lit(0, dtype=pl.Int64).alias("event_id")).join(
        steps, on="step", how="left", maintain_order="left"
    )
    del order

    def col(name: str) -> pl.Expr:
        """The booking's value for each event (gathered straight into the output column)."""
        return pl.lit(base[name]).gather(pl.col("booking_idx"))

    def pick(flag: str, column: str, dtype: pl.DataType = pl.String) -> pl.Expr:
        return pl.when(pl.col(flag)).then(col(column)).otherwise(pl.lit(None, dtype=dtype))

    def price(name: str) -> pl.Expr:
        return pl.when("repriced").then(col(f"{name}1")).otherwise(col(f"{name}0"))

    def money(minor: pl.Expr, places: pl.Expr | int) -> pl.Expr:
        """Minor units as Decimal(18, 2) (null stays null)."""
        if not isinstance(places, int):
            minor = minor * pl.lit(10, dtype=pl.Int64).pow(2 - places)
        return _scaled(minor.cast(pl.Int64)).cast(MONEY)

    places = col("loyalty_decimals").cast(pl.Int64)
    detail = (
        pl.when(pl.col("fixed_detail") == "<approved>")
        .then(col("approved_text"))
        .when(pl.col("fixed_detail") == "<reason>")
        .then(col("reason"))
        .otherwise(pl.col("fixed_detail"))
    )
    events = raw.select(
        col("tenant_id").alias("tenant_id"),
        "event_id",
        col("booking_id").alias("booking_id"),
        col("member_id").alias("member_id"),
        ("booking." + pl.col("to_state")).alias("type"),
        "from_state",
        "to_state",
        money(price("amount"), places).alias("loyalty_amount"),
        col("loyalty_currency").alias("loyalty_currency"),
        money(
            pl.when(pl.col("paid") & (col("cashback_minor") >= 0)).then(col("cashback_minor")),
            2,
        ).alias("cashback_amount"),
        money(pick("refunded", "amount1", pl.Int64), places).alias("refund_amount"),
        money(price("usd"), 2).alias("usd_amount"),
        price("upu").cast(RATE).alias("usd_per_unit"),
        money(col("fare_cents"), 2).alias("fare_amount"),
        col("fare_currency").alias("fare_currency"),
        price("fx").cast(RATE).alias("fx_rate"),
        pick("paid", "deduction_id").alias("loyalty_transaction_id"),
        pick("refunded", "refund_id").alias("refund_transaction_id"),
        pick("ordered", "order_id").alias("duffel_order_id"),
        detail.alias("detail"),
        pl.when(pl.col("from_state") == "pending_approval")
        .then("operator:" + col("operator"))
        .alias("actor"),
        pl.from_epoch(pl.col("occurred_us"), time_unit="us")
        .dt.replace_time_zone("UTC")
        .alias("occurred_at"),
        (pl.col("booking_idx") + int(extra["counter"][0]) if n else pl.col("booking_idx")).alias(
            "_booking"
        ),
        pl.col("step").alias("_step"),
    )
    del raw
    # Approval re-priced the booking on the day of the decision (the same, without approval).
    repriced = pl.Series(plan["approved"])
    flags = pl.DataFrame(
        {
            "charged_flag": charged,
            "cancelled_flag": cancelled,
            "approval_flag": approval,
            "failed_flag": plan["failed"],
        }
    )

    def when(flag: str, value: pl.Expr) -> pl.Expr:
        return pl.when(pl.col(flag)).then(value)

    def ts(expr: pl.Expr) -> pl.Expr:
        return pl.from_epoch(expr, time_unit="us").dt.replace_time_zone("UTC")

    bookings = pl.concat(
        [
            base,
            flags,
            pl.DataFrame(
                {
                    "status": _text(booking_status(plan)),
                    "offer_id": _text(
                        np.array(
                            duffel_ids("off_", extra["counter"], int(extra["salt"]) + SALT["offer"])
                        )
                    ),
                    "cabin_class": pl.Series(CABINS[plan["cabin"]]),
                    "passenger_count": plan["pax"].astype(np.int8),
                    "given_name": _text(extra["given_name"]),
                    "family_name": _text(extra["family_name"]),
                    "origin": pl.Series(codes[plan["origin"]]),
                    "destination": pl.Series(codes[plan["destination"]]),
                    "via_code": pl.Series(codes[np.maximum(plan["via"], 0)]),
                    "has_via": plan["via"] >= 0,
                    "owner_iata": _text(extra["owner"]),
                    "flight_number": _text(extra["flight_number"]),
                    "outbound": plan["outbound"],
                    "return": plan["return"],
                    "approval_id": _text(extra["approval_id"]),
                    "cancellation_id": _text(extra["cancellation_id"]),
                    "booking_reference": _text(extra["booking_reference"]),
                    "repriced": repriced,
                    "updated": last["occurred_us"],
                }
            ),
        ],
        how="horizontal",
    ).select(
        pl.col("booking_id").alias("id"),
        "tenant_id",
        "member_id",
        "status",
        "offer_id",
        "cabin_class",
        "passenger_count",
        "given_name",
        "family_name",
        "origin",
        "destination",
        when("has_via", pl.col("via_code")).alias("via"),
        "owner_iata",
        "flight_number",
        ts(pl.col("outbound")).alias("outbound_departure"),
        pl.when(pl.col("return") > 0).then(ts(pl.col("return"))).alias("return_departure"),
        minor_text(pl.col("fare_cents"), pl.lit(2)).alias("fare_amount"),
        "fare_currency",
        pl.when("repriced").then(pl.col("fx1")).otherwise(pl.col("fx0")).alias("fx_rate"),
        pl.when("repriced").then(pl.col("usd1")).otherwise(pl.col("usd0")).alias("usd_cents"),
        pl.when("repriced").then(pl.col("upu1")).otherwise(pl.col("upu0")).alias("usd_per_unit"),
        pl.when("repriced")
        .then(pl.col("amount1"))
        .otherwise(pl.col("amount0"))
        .alias("loyalty_minor"),
        "loyalty_currency",
        "loyalty_decimals",
        pl.when(pl.col("cashback_minor") >= 0)
        .then(pl.col("cashback_minor"))
        .alias("cashback_minor"),
        when("charged_flag", pl.col("deduction_id")).alias("loyalty_transaction_id"),
        when("approval_flag", pl.col("approval_id")).alias("approval_id"),
        when("charged_flag", pl.col("order_id")).alias("duffel_order_id"),
        when("charged_flag", pl.col("booking_reference")).alias("booking_reference"),
        when("cancelled_flag", pl.col("cancellation_id")).alias("duffel_cancellation_id"),
        when("cancelled_flag", ts(pl.col("cancel") + DUFFEL_CANCEL_US)).alias(
            "duffel_cancelled_at"
        ),
        pl.col("cancelled_flag").alias("cancel_requested"),
        when("cancelled_flag", pl.col("reason")).alias("cancel_reason"),
        when("cancelled_flag", pl.col("refund_id")).alias("refund_transaction_id"),
        when("cancelled_flag", pl.col("amount1")).alias("refund_minor"),
        when("cancelled_flag", ts(pl.col("cancel") + REFUND_US)).alias("refunded_at"),
        when("failed_flag", pl.lit("insufficient_balance")).alias("failure_code"),
        when("failed_flag", pl.lit("The member's balance does not cover the charge")).alias(
            "failure_reason"
        ),
        ts(pl.col("created")).alias("created_at"),
        ts(pl.col("updated")).alias("updated_at"),
    )
    return bookings.cast(dict(PLATFORM_BOOKINGS)).select(PLATFORM_BOOKINGS.names()), events


def _airline(world: World, plan: dict[str, np.ndarray]) -> np.ndarray:
    # A carrier from either end's region; deterministic given the plan's random draws.
    n = plan["origin"].shape[0]
    pick = (plan["created"] // US + plan["origin"] * 7 + plan["destination"] * 13) % 997
    result = np.empty(n, dtype=object)
    end = np.where(pick % 2 == 0, plan["origin"], plan["destination"])
    for region, carriers in AIRLINE_REGIONS.items():
        mask = world.continent[end] == region
        result[mask] = np.array(carriers)[pick[mask] % len(carriers)]
    return result.astype(str)


def _amount_text(minor: int) -> str:
    """A Decimal(18, 2) amount held as integer hundredths, as text ("-512.00")."""
    return str(Decimal(int(minor)).scaleb(-2).quantize(Decimal("0.01")))


# Kinds planted on a plain booking (charged, never cancelled, no approval), and on a
# cancelled one.
PLAIN_KINDS = (
    "ledger_missing_deduction",
    "ledger_amount_mismatch",
    "ledger_unknown_deduction",
    "order_missing",
    "order_without_booking",
    "duplicate_delivery",
    "malformed_ledger_record",
    "malformed_order",
)
CANCELLED_KINDS = ("ledger_missing_refund", "order_not_cancelled")


class Anomalies:
    """Plant a few deliberate faults and describe each in the manifest.

    The platform's records (events and store) are the truth and are never changed: a
    reconciliation anomaly is the tenant's ledger or Duffel disagreeing with them, or a
    record there that the platform never made. Each planted booking carries exactly one
    anomaly, and every other booking agrees across all three sources.

    About ``rate`` of the bookings per kind, decided day by day so that the history can be
    written in chunks of days with the same result: each day gets a share of the plantings
    in proportion to its bookings (a share a day cannot take moves to the next day), and the
    kinds come from one shuffled sequence.
    """

    def __init__(
        self, rng: np.random.Generator, day_counts: np.ndarray, rate: float, seed: int
    ) -> None:
        size = int(day_counts.sum())
        per_kind = max(1, round(size * rate)) if size >= 200 else 0
        self.seed = seed
        self.salt = seed * 1_000 + SALT["stray"]
        self.pools = {}
        for pool, kinds in (("plain", PLAIN_KINDS), ("cancelled", CANCELLED_KINDS)):
            total = min(len(kinds) * per_kind, size)
            labels = rng.permutation(np.repeat(np.arange(len(kinds)), per_kind))[:total]
            quota = rng.multivariate_hypergeometric(day_counts, total)
            self.pools[pool] = {"kinds": kinds, "labels": labels, "quota": quota, "next": 0}
        self.carry = dict.fromkeys(self.pools, 0)
        self.planted = dict.fromkeys(ANOMALY_KINDS, 0)
        self.entries: dict[str, list[dict]] = {kind: [] for kind in ANOMALY_KINDS}
        strays = int(
            (self.pools["plain"]["labels"] == PLAIN_KINDS.index("ledger_unknown_deduction")).sum()
        )
        counter = np.arange(strays, dtype=np.int64)
        self.stray_refs = [
            f"bkg_{a}{b[:8]}"
            for a, b in zip(
                hex_ids("", counter, self.salt), hex_ids("", counter, self.salt + 1), strict=True
            )
        ]

    def pick(
        self, rng: np.random.Generator, day: int, plan: dict[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The day's planted bookings (indices into its plan, in booking order), their kinds
        and the amount a mismatched deduction is off by."""
        eligible = {
            "plain": plan["confirmed"] & ~plan["cancelled"] & ~plan["needs_approval"],
            "cancelled": plan["cancelled"],
        }
        index, kinds = [], []
        for name, pool in self.pools.items():
            candidates = np.where(eligible[name])[0]
            wanted = int(pool["quota"][day]) + self.carry[name]
            take = min(wanted, candidates.shape[0], len(pool["labels"]) - pool["next"])
            self.carry[name] = wanted - take
            index.append(np.sort(rng.choice(candidates, take, replace=False)))
            labels = pool["labels"][pool["next"] : pool["next"] + take]
            pool["next"] += take
            kinds.append(np.array(pool["kinds"], dtype=object)[labels])
        index = np.concatenate(index)
        order = np.argsort(index, kind="stable")
        return {
            "index": index[order],
            "kind": np.concatenate(kinds)[order],
            "delta": rng.integers(1, 50, index.shape[0]),
        }

    def plant(
        self,
        ledger: pl.DataFrame,
        orders: pl.DataFrame,
        plan: dict[str, np.ndarray],
        extra: dict[str, np.ndarray | pl.Series],
        picked: dict[str, np.ndarray],
    ) -> tuple[pl.DataFrame, pl.DataFrame]:
        """A chunk's ledger and orders with the anomalies ``picked`` (indices into the
        chunk's bookings) planted; their manifest entries are kept in ``entries``."""
        of_kind: dict[str, list[tuple[int, int]]] = {kind: [] for kind in ANOMALY_KINDS}
        deltas = {}
        for i, kind, delta in zip(
            picked["index"].tolist(), picked["kind"].tolist(), picked["delta"].tolist(), strict=True
        ):
            of_kind[kind].append((i, self.planted[kind]))
            self.planted[kind] += 1
            deltas[i] = delta
        bad_refs = set(extra["booking_id"].filter(extra["booking_id"].is_in(self.stray_refs)))
        if bad_refs:
            raise ValueError(f"stray reference {sorted(bad_refs)[0]} collides with a booking id")

        def entry(kind: str, i: int, expected_in: str, **detail: object) -> None:
            item = {
                "kind": kind,
                "tenant_id": str(extra["tenant"][i]),
                "booking_id": str(extra["booking_id"][i]),
                "member_id": str(extra["member_id"][i]),
                "expected_in": expected_in,
            }
            if kind in CHECK_OF_KIND:
                item["check"] = CHECK_OF_KIND[kind]
            self.entries[kind].append({**item, **detail})

        def charge(i: int) -> dict:
            return {
                "transaction_id": str(extra["deduction_id"][i]),
                "order_id": str(extra["order_id"][i]),
                "currency": str(extra["currency"][i]),
            }

        def ids(column: str, kind: str) -> list[str]:
            return [str(extra[column][i]) for i, _ in of_kind[kind]]

        # Templates of the records added below: the planted booking's deduction and order,
        # taken before anything is dropped.
        template_ids = ids("deduction_id", "duplicate_delivery") + ids(
            "deduction_id", "malformed_ledger_record"
        )
        deductions = {
            r["transaction_id"]: r
            for r in ledger.filter(pl.col("transaction_id").is_in(template_ids)).iter_rows(
                named=True
            )
        }
        order_templates = {
            r["order_id"]: r
            for r in orders.filter(
                pl.col("order_id").is_in(
                    ids("order_id", "order_without_booking") + ids("order_id", "malformed_order")
                )
            ).iter_rows(named=True)
        }

        # The tenant has no record of a charge the platform made (nor of its cashback).
        drop_txns = set()
        for i, _ in of_kind["ledger_missing_deduction"]:
            drop_txns.add(str(extra["deduction_id"][i]))
            if extra["cashback_id"][i] is not None:
                drop_txns.add(str(extra["cashback_id"][i]))
            entry(
                "ledger_missing_deduction",
                i,
                "reconciliation",
                **charge(i),
                expected_amount=_amount_text(-extra["amount"][i]),
            )
        # The tenant deducted another amount than the platform charged (its cashback and
        # everything else agree with the platform).
        bump = {}
        for i, _ in of_kind["ledger_amount_mismatch"]:
            delta = deltas[i] * (100 if extra["decimals"][i] == 0 else 1)
            bump[str(extra["deduction_id"][i])] = delta
            entry(
                "ledger_amount_mismatch",
                i,
                "reconciliation",
                **charge(i),
                expected_amount=_amount_text(-extra["amount"][i]),
                actual_amount=_amount_text(-(extra["amount"][i] + delta)),
            )
        # The platform refunded a cancellation; the tenant's ledger has no refund.
        for i, _ in of_kind["ledger_missing_refund"]:
            drop_txns.add(str(extra["refund_id"][i]))
            entry(
                "ledger_missing_refund",
                i,
                "reconciliation",
                transaction_id=str(extra["refund_id"][i]),
                deduction_transaction_id=str(extra["deduction_id"][i]),
                order_id=str(extra["order_id"][i]),
                currency=str(extra["currency"][i]),
                expected_amount=_amount_text(extra["amount"][i]),
            )
        if drop_txns:
            ledger = ledger.filter(~pl.col("transaction_id").is_in(list(drop_txns)))
        if bump:
            delta = pl.col("transaction_id").replace_strict(bump, default=0, return_dtype=pl.Int64)
            ledger = ledger.with_columns(
                pl.when(pl.col("transaction_id").is_in(list(bump)))
                .then((pl.col("amount") - _scaled(delta)).cast(pl.Decimal(18, 2)))
                .otherwise(pl.col("amount"))
                .alias("amount")
            )
        added = [self._strays(of_kind["ledger_unknown_deduction"], plan, extra, entry)]
        # Duffel lost an order the platform recorded; Duffel kept a cancelled booking's order
        # live.
        for i, _ in of_kind["order_missing"]:
            entry("order_missing", i, "reconciliation", order_id=str(extra["order_id"][i]))
        for i, _ in of_kind["order_not_cancelled"]:
            entry("order_not_cancelled", i, "reconciliation", order_id=str(extra["order_id"][i]))
        if of_kind["order_missing"]:
            orders = orders.filter(~pl.col("order_id").is_in(ids("order_id", "order_missing")))
        if of_kind["order_not_cancelled"]:
            live = pl.col("order_id").is_in(ids("order_id", "order_not_cancelled"))
            orders = orders.with_columns(
                *(
                    pl.when(live).then(None).otherwise(pl.col(c)).alias(c)
                    for c in ("cancelled_at", "cancellation_id", "refund_amount", "refund_to")
                )
            )
        # Orders made in the tenant's Duffel organisation outside the platform: no platform
        # booking has their id and their metadata names none (only the organisation's tenant).
        made = []
        for i, j in of_kind["order_without_booking"]:
            row = order_templates[str(extra["order_id"][i])]
            order_id = duffel_ids("ord_", np.array([j]), self.salt + 4)[0]
            made.append(
                {
                    **row,
                    "order_id": order_id,
                    "booking_reference": pnrs(np.array([j]), self.salt + 5)[0],
                    "created_at": row["created_at"] + dt.timedelta(hours=3),
                    "paid_at": row["paid_at"] + dt.timedelta(hours=3),
                    "booking_id": None,
                    "member_id": None,
                    "member_given_name": None,
                    "member_family_name": None,
                    "loyalty_transaction_id": None,
                }
            )
            self.entries["order_without_booking"].append(
                {
                    "kind": "order_without_booking",
                    "tenant_id": row["tenant_id"],
                    "booking_id": None,
                    "member_id": None,
                    "expected_in": "reconciliation",
                    "check": CHECK_OF_KIND["order_without_booking"],
                    "order_id": order_id,
                }
            )
        # Duplicate deliveries: the same record twice, adjacent in the feed.
        dups = []
        for i, _ in of_kind["duplicate_delivery"]:
            dups.append(deductions[str(extra["deduction_id"][i])])
            entry(
                "duplicate_delivery",
                i,
                "deduplication",
                transaction_id=str(extra["deduction_id"][i]),
            )
        added.append(dups)
        added.append(
            self._malformed_ledger(
                [
                    deductions[str(extra["deduction_id"][i])]
                    for i, _ in of_kind["malformed_ledger_record"]
                ],
                [j for _, j in of_kind["malformed_ledger_record"]],
            )
        )
        made.extend(
            self._malformed_orders(
                [order_templates[str(extra["order_id"][i])] for i, _ in of_kind["malformed_order"]],
                [j for _, j in of_kind["malformed_order"]],
            )
        )
        ledger = pl.concat([ledger, *(pl.DataFrame(rows, schema=LEDGER) for rows in added if rows)])
        if made:
            orders = pl.concat([orders, pl.DataFrame(made, schema=ORDERS)])
        return ledger, orders

    def _strays(self, planted, plan, extra, entry) -> list[dict]:
        """Deductions the tenant posted with a reference that is no booking of the platform's
        (a member of a charged booking, an amount like a fare; FintechApp credits cashback)."""
        rows = []
        for i, j in planted:
            tenant = str(extra["tenant"][i])
            prefixes = TXN_PREFIX[tenant]
            txn = hex_ids(prefixes["deduction"], np.array([j]), self.salt + 2)[0]
            at = int(plan["charged_at"][i] + 2 * HOUR + j * US)
            base = {
                "tenant_id": tenant,
                "member_id": str(extra["member_id"][i]),
                "status": "posted",
                "reference_id": self.stray_refs[j],
                "approval_id": None,
                "created_at": _ts(np.array([at]))[0],
                "updated_at": _ts(np.array([at]))[0],
                "raw_override": None,
            }
            rows.append(
                {
                    **base,
                    "transaction_id": txn,
                    "type": "deduction",
                    "amount": Decimal(-int(extra["amount"][i])).scaleb(-2),
                    "related_transaction_id": None,
                    "description": f"Flight booking {extra['route'][i]}",
                }
            )
            if extra["cashback"][i] > 0:
                rows.append(
                    {
                        **base,
                        "transaction_id": hex_ids(
                            prefixes["cashback"], np.array([j]), self.salt + 3
                        )[0],
                        "type": "cashback",
                        "amount": Decimal(int(extra["cashback"][i])).scaleb(-2),
                        "related_transaction_id": txn,
                        "description": f"Cashback on {self.stray_refs[j]}",
                    }
                )
            entry(
                "ledger_unknown_deduction",
                i,
                "reconciliation",
                transaction_id=txn,
                reference_id=self.stray_refs[j],
                currency=str(extra["currency"][i]),
                actual_amount=_amount_text(-extra["amount"][i]),
            )
            self.entries["ledger_unknown_deduction"][-1]["booking_id"] = None
        return rows

    def _malformed_ledger(self, templates: list[dict], numbers: list[int]) -> list[dict]:
        """Malformed deliveries, additional to the real history, each with what is wrong."""
        shapes = [
            ("amount", lambda r: {**r, "amount": "12,50 stars"}),
            ("member_id", lambda r: {k: v for k, v in r.items() if k != "member_id"}),
            ("created_at", lambda r: {**r, "created_at": "yesterday", "updated_at": "yesterday"}),
        ]
        rows = []
        for row, j in zip(templates, numbers, strict=True):
            field, mangle = shapes[j % len(shapes)]
            txn = f"bad_{hex_ids('', np.array([j]), self.seed * 1000 + SALT['malformed'])[0]}"
            record = mangle(
                {
                    "transaction_id": txn,
                    "member_id": row["member_id"],
                    "type": "deduction",
                    "amount": -1,
                    "currency": "stars",
                    "status": "posted",
                    "reference_id": row["reference_id"],
                    "related_transaction_id": None,
                    "approval_id": None,
                    "description": "corrupted delivery",
                    "created_at": row["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                    "updated_at": row["updated_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                }
            )
            rows.append(
                self._malformed("malformed_ledger_record", row, "transaction_id", record, field)
            )
        return rows

    def _malformed_orders(self, templates: list[dict], numbers: list[int]) -> list[dict]:
        rows = []
        for row, j in zip(templates, numbers, strict=True):
            bad_id = duffel_ids("ord_", np.array([j]), self.seed * 1000 + SALT["malformed"])[0]
            record = {
                "id": bad_id,
                "live_mode": False,
                "created_at": row["created_at"].strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "booking_reference": None,
                "total_amount": "N/A",
                "total_currency": "USD",
                "slices": [],
                "passengers": [],
                "metadata": {"tenant_id": row["tenant_id"]},
            }
            rows.append(
                {
                    **self._malformed("malformed_order", row, "order_id", record, "total_amount"),
                    "booking_id": None,
                }
            )
        return rows

    def _malformed(self, kind: str, row: dict, key: str, record: dict, field: str) -> dict:
        """A copy of ``row`` that delivers ``record`` verbatim (what is wrong: ``field``),
        listed in the manifest under the record's id (``record[key]``, ``record["id"]``)."""
        bad_id = record.get(key, record.get("id"))
        self.entries[kind].append(
            {
                "kind": kind,
                "tenant_id": row["tenant_id"],
                key: bad_id,
                "expected_in": "quarantine",
                "field": field,
            }
        )
        return {**row, key: bad_id, "raw_override": json.dumps(record, separators=(",", ":"))}

    def manifest(self) -> list[dict]:
        return [item for kind in ANOMALY_KINDS for item in self.entries[kind]]


def _scaled(minor: pl.Expr) -> pl.Expr:
    return minor.cast(pl.Decimal(18, 2)) * pl.lit(Decimal("0.01"), dtype=pl.Decimal(18, 4))


def _write(frame: pl.DataFrame, out_dir: Path, name: str) -> None:
    tmp = out_dir / f".{name}.parquet.tmp"
    frame.write_parquet(tmp, compression="zstd", statistics=True)
    tmp.replace(out_dir / f"{name}.parquet")


# Columns with at most this many values in a table's first chunk are dictionary-encoded.
DICTIONARY_MAX = 4_096
# Columns whose min/max statistics are written: what readers filter or slice on (min/max of
# every id column would cost a fifth of the writing and serve no reader).
STATISTICS = {"tenant_id", "event_id", "occurred_at", "created_at", "updated_at"}


class _ParquetFile:
    """A Parquet file written a row group at a time, put in place when closed."""

    def __init__(self, path: Path, schema: pl.Schema) -> None:
        self.path = path
        self.tmp = path.with_name(f".{path.name}.tmp")
        self.schema = schema
        self.writer: pq.ParquetWriter | None = None
        self.rows = 0

    def write(self, frame: pl.DataFrame) -> None:
        if not frame.height:
            return
        table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
        if self.writer is None:
            # Dictionaries only where they pay (states, currencies, rates): building one for
            # a column of unique ids costs time and is dropped anyway.
            repeated = [c for c in frame.columns if frame[c].n_unique() <= DICTIONARY_MAX]
            self.writer = pq.ParquetWriter(
                self.tmp,
                table.schema,
                compression="zstd",
                use_dictionary=repeated,
                write_statistics=[c for c in frame.columns if c in STATISTICS],
            )
        self.writer.write_table(table)
        self.rows += frame.height

    def close(self) -> None:
        if self.writer is None:
            self.schema.to_frame().write_parquet(self.tmp, compression="zstd")
        else:
            self.writer.close()
        self.tmp.replace(self.path)


class _InTimeOrder:
    """Rows that arrive a chunk of bookings at a time (a later booking's ledger records,
    orders and events may come before an earlier one's refund), written in key order: a row
    is written once no later chunk can come before it, i.e. when it is older than the
    watermark (the first instant of the next chunk's days)."""

    def __init__(
        self, out: _ParquetFile, time: str, keys: list[str], held: pl.Schema | None = None
    ) -> None:
        self.out, self.time, self.keys = out, time, keys
        self.pending = (held or out.schema).to_frame()

    def add(self, frame: pl.DataFrame) -> None:
        self.pending = pl.concat([self.pending, frame], how="vertical_relaxed")

    def flush(self, watermark_us: int | None) -> None:
        if watermark_us is None:
            ready, self.pending = self.pending, self.pending.clear()
        else:
            early = pl.col(self.time).dt.epoch("us") < watermark_us
            ready, self.pending = self.pending.filter(early), self.pending.filter(~early)
        self.out.write(self._numbered(ready.sort(self.keys, maintain_order=True)))

    def _numbered(self, frame: pl.DataFrame) -> pl.DataFrame:
        return frame


class _EventFeed(_InTimeOrder):
    """The booking API's feed: events in commit order, numbered from 1 in that order."""

    def _numbered(self, frame: pl.DataFrame) -> pl.DataFrame:
        first = self.out.rows + 1
        return frame.with_columns(
            pl.int_range(first, first + frame.height, dtype=pl.Int64).alias("event_id")
        ).drop("_booking", "_step")


class _PerTenant:
    """A tenant-sorted table (ledger, orders): each tenant's rows in key order in a file of
    their own, joined into one file in tenant order at the end."""

    def __init__(self, path: Path, schema: pl.Schema, time: str, keys: list[str]) -> None:
        self.path, self.schema, self.time, self.keys = path, schema, time, keys
        self.tenants: dict[str, _InTimeOrder] = {}

    def add(self, frame: pl.DataFrame) -> None:
        for (tenant,), part in frame.partition_by("tenant_id", as_dict=True).items():
            if tenant not in self.tenants:
                out = _ParquetFile(
                    self.path.with_name(f".{self.path.stem}-{tenant}.parquet"), self.schema
                )
                self.tenants[tenant] = _InTimeOrder(out, self.time, self.keys)
            self.tenants[tenant].add(part)

    def flush(self, watermark_us: int | None) -> None:
        for tenant in self.tenants.values():
            tenant.flush(watermark_us)

    @property
    def pending(self) -> int:
        return sum(t.pending.height for t in self.tenants.values())

    def rows(self, tenant: str) -> int:
        return self.tenants[tenant].out.rows if tenant in self.tenants else 0

    def close(self) -> None:
        self.flush(None)
        parts = []
        for tenant in sorted(self.tenants):
            self.tenants[tenant].out.close()
            parts.append(self.tenants[tenant].out.path)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        if parts:
            pl.scan_parquet(parts).sink_parquet(tmp, compression="zstd", statistics=True)
        else:
            self.schema.to_frame().write_parquet(tmp, compression="zstd")
        tmp.replace(self.path)
        for part in parts:
            part.unlink()


class _HistoryFiles:
    """The history's tables being written, a chunk of bookings at a time, and their counts."""

    def __init__(self, out_dir: Path, tenant_ids: list[str]) -> None:
        self.bookings = _ParquetFile(out_dir / "bookings.parquet", PLATFORM_BOOKINGS)
        self.events = _EventFeed(
            _ParquetFile(out_dir / "events.parquet", EVENTS),
            "occurred_at",
            ["occurred_at", "_booking", "_step"],
            held=pl.Schema({**EVENTS, "_booking": pl.Int64, "_step": pl.Int8}),
        )
        self.ledger = _PerTenant(
            out_dir / "ledger.parquet", LEDGER, "updated_at", ["updated_at", "transaction_id"]
        )
        self.orders = _PerTenant(
            out_dir / "orders.parquet", ORDERS, "created_at", ["created_at", "order_id"]
        )
        self.counts = {
            tenant: {"events": 0, **dict.fromkeys(BOOKING_STATUSES, 0)} for tenant in tenant_ids
        }
        self.peak = {"bookings": 0, "pending": 0}

    def store(
        self,
        bookings: pl.DataFrame,
        ledger: pl.DataFrame,
        orders: pl.DataFrame,
        events: pl.DataFrame,
        watermark_us: int | None,
    ) -> None:
        """Write a chunk's bookings, and every record older than ``watermark_us``."""
        self.bookings.write(bookings)
        for tenant, status, count in bookings.group_by("tenant_id", "status").len().iter_rows():
            self.counts[tenant][status] += count
        for tenant, count in events.group_by("tenant_id").len().iter_rows():
            self.counts[tenant]["events"] += count
        self.ledger.add(ledger)
        self.orders.add(orders)
        self.events.add(events)
        for table in (self.ledger, self.orders, self.events):
            table.flush(watermark_us)
        self.peak["bookings"] = max(self.peak["bookings"], bookings.height)
        self.peak["pending"] = max(
            self.peak["pending"],
            self.ledger.pending + self.orders.pending + self.events.pending.height,
        )

    def close(self) -> None:
        self.events.flush(None)
        self.events.out.close()
        self.bookings.close()
        self.ledger.close()
        self.orders.close()


def _chunks(day_counts: np.ndarray, chunk_size: int) -> list[np.ndarray]:
    """Runs of whole days of about ``chunk_size`` bookings (at least one day each)."""
    chunks, days, rows = [], [], 0
    for day, count in enumerate(day_counts.tolist()):
        if days and rows + count > chunk_size:
            chunks.append(np.array(days))
            days, rows = [], 0
        days.append(day)
        rows += count
    return [*chunks, np.array(days)] if days else chunks


def _concat_plans(plans: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {key: np.concatenate([plan[key] for plan in plans]) for key in plans[0]}


def generate(
    size: int,
    seed: int,
    out_dir: Path,
    anchor: dt.date | None = None,
    months: int = 12,
    anomaly_rate: float = 0.001,
    tenants: dict[str, LoyaltyTenant] = TENANTS,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> GenerationResult:
    """Write the history into ``out_dir``: the tenants' members and ledgers, Duffel's orders,
    the booking API's bookings and event feed (Parquet), and ``manifest.json``.

    The bookings are drawn day by day (each day from its own random stream, so the history
    does not depend on ``chunk_size``) and written a chunk of days at a time: memory holds a
    chunk's bookings and the records of earlier chunks still to come in time order, not the
    history."""
    started = time.perf_counter()
    anchor = anchor or dt.datetime.now(dt.UTC).date()
    end_us = _utc_us(anchor)
    start_us = end_us - months * 30 * DAY - 5 * DAY
    rng = np.random.default_rng(seed)
    members = _members(rng, tenants, size, end_us)
    world = World(tenants, members)
    day_start, day_share = _day_weights(start_us, end_us)
    day_counts = rng.multinomial(size, day_share)
    anomalies = Anomalies(rng, day_counts, anomaly_rate, seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write(members, out_dir, "members")
    files = _HistoryFiles(out_dir, world.tenant_ids)
    first_counter = 0
    # Writing (compression, mostly outside the GIL) runs beside the drawing of the next
    # chunk: at most one chunk is being written while the next one is drawn.
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="history-writer") as writer:
        written = None
        for days in _chunks(day_counts, chunk_size):
            plans, picked = [], []
            for day in days.tolist():
                day_rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(day,)))
                created = np.sort(
                    _times_in_days(day_rng, np.full(day_counts[day], day_start[day]), end_us)
                )
                plan = plan_made_at(day_rng, world, created, resolve_until_us=end_us)
                pick = anomalies.pick(day_rng, day, plan)
                offset = sum(p["created"].shape[0] for p in plans)
                picked.append({**pick, "index": pick["index"] + offset})
                plans.append(plan)
            plan = _concat_plans(plans)
            n = plan["created"].shape[0]
            if not n:
                continue
            extra = booking_facts(world, plan, first_counter, seed)
            chunk_ledger, chunk_orders = ledger_and_orders(world, plan, extra)
            chunk_ledger, chunk_orders = anomalies.plant(
                chunk_ledger, chunk_orders, plan, extra, _concat_plans(picked)
            )
            chunk_bookings, chunk_events = build_platform(world, plan, extra)
            del extra, plan, plans
            # Every later booking is made on a later day; its first record (the approval
            # request) comes at most CHECK_APPROVAL_US before it.
            following = int(days[-1]) + 1
            watermark = (
                int(day_start[following]) - CHECK_APPROVAL_US
                if following < len(day_start)
                else None
            )
            if written is not None:
                written.result()
            written = writer.submit(
                files.store, chunk_bookings, chunk_ledger, chunk_orders, chunk_events, watermark
            )
            del chunk_bookings, chunk_ledger, chunk_orders, chunk_events
            first_counter += n
        if written is not None:
            written.result()
    files.close()
    ledger, orders, counts = files.ledger, files.orders, files.counts
    planted = anomalies.manifest()
    per_tenant = {}
    for tenant in world.tenant_ids:
        kinds = [a for a in planted if a["tenant_id"] == tenant]
        malformed = sum(a["kind"] == "malformed_ledger_record" for a in kinds)
        duplicates = sum(a["kind"] == "duplicate_delivery" for a in kinds)
        malformed_orders = sum(a["kind"] == "malformed_order" for a in kinds)
        by_status = {s: counts[tenant][s] for s in BOOKING_STATUSES}
        per_tenant[tenant] = {
            "members": members.filter(pl.col("tenant_id") == tenant).height,
            "ledger_delivered": ledger.rows(tenant),
            "ledger_malformed": malformed,
            "ledger_duplicates": duplicates,
            # Transaction ids are unique but for the duplicate deliveries.
            "ledger_transactions": ledger.rows(tenant) - malformed - duplicates,
            "orders_delivered": orders.rows(tenant),
            "orders_malformed": malformed_orders,
            "orders": orders.rows(tenant) - malformed_orders,
            "bookings": sum(by_status.values()),
            "events": counts[tenant]["events"],
            "bookings_by_status": by_status,
        }
    manifest = {
        "seed": seed,
        "size": size,
        "anchor": anchor.isoformat(),
        "months": months,
        "anomaly_rate": anomaly_rate,
        "next_counter": size,
        "last_event_id": files.events.out.rows,
        "history_start": dt.datetime.fromtimestamp(start_us / US, dt.UTC).isoformat(),
        "history_end": dt.datetime.fromtimestamp(end_us / US, dt.UTC).isoformat(),
        "counts": per_tenant,
        "anomalies": planted,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return GenerationResult(
        out_dir=out_dir,
        manifest=manifest,
        seconds=time.perf_counter() - started,
        peak_rows=files.peak,
    )
