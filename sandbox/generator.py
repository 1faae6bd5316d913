"""Deterministic history for the stand-ins: members, Duffel orders and loyalty ledgers.

Every booking is made as our platform would make it: the member's loyalty currency is
debited (at the rate in force that day, rounded up so the member never pays less than
the fare), a Duffel order is created in the tenant's own organisation with metadata
naming tenant, member, booking and ledger transaction, and the tenant's rules apply
(CoffeeChain approvals above its threshold, TelcoCorp economy only, FintechApp
cashback). A small share of deliberate anomalies is written to ``manifest.json`` so
later stages can prove they find exactly these.

All arithmetic on money is on integers (cents, minor units); the same seed, size and
anchor give byte-identical tables.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import time
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import numpy as np
import polars as pl

from sandbox.ids import duffel_ids, hex_ids, pnrs
from sandbox.reference import AIRLINE_REGIONS, HUBS, airports
from sandbox.schema import LEDGER, MEMBERS, ORDERS
from sandbox.seed import REFERENCE_MEMBERS, reference_members_frame
from tenants.registry import TenantConfig, load_registry

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
}
TXN_PREFIX = {
    "coffeechain": {
        "deduction": "txn_",
        "refund": "ref_",
        "approval": "appr_",
        "decision": "aprd_",
    },
    "telcocorp": {"deduction": "tctxn_", "refund": "tcref_"},
    "fintechapp": {"deduction": "fatxn_", "refund": "faref_", "cashback": "facb_"},
}
ANOMALY_KINDS = (
    "deduction_without_order",
    "cancelled_without_refund",
    "amount_mismatch",
    "duplicate_delivery",
    "malformed_ledger_record",
    "malformed_order",
)


@dataclass(frozen=True)
class GenerationResult:
    out_dir: Path
    manifest: dict
    seconds: float


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


def _load_fx() -> dict[str, list[tuple[int, int, int]]]:
    """currency -> [(valid_from_us, valid_to_us, usd per unit in 1/10000)]."""
    table: dict[str, list[tuple[int, int, int]]] = {}
    with FX_SEED.open() as handle:
        for row in csv.DictReader(handle):
            rate = Fraction(row["usd_per_unit"]) * 10_000
            if rate.denominator != 1:
                raise ValueError(f"fx_rates.csv: {row} has more than 4 decimals")
            table.setdefault(row["currency"], []).append(
                (
                    _utc_us(dt.date.fromisoformat(row["valid_from"])),
                    _utc_us(dt.date.fromisoformat(row["valid_to"])),
                    int(rate),
                )
            )
    return table


def _lookup_periods(periods: list[tuple[int, int, int]], at_us: np.ndarray) -> np.ndarray:
    starts = np.array([p[0] for p in periods])
    values = np.array([p[2] for p in periods])
    index = np.searchsorted(starts, at_us, side="right") - 1
    if (index < 0).any() or (at_us >= periods[-1][1]).any():
        raise ValueError(
            "a booking falls outside the FX table; extend dbt_project/seeds/fx_rates.csv"
        )
    return values[index]


def _rate_fraction(tenant: TenantConfig, at_us: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """USD per loyalty unit in force at each instant, as numerator/denominator arrays."""
    periods = tenant.currency.rate_history
    if not periods:
        rate = Fraction(tenant.currency.usd_per_unit)
        return np.full(at_us.shape, rate.numerator), np.full(at_us.shape, rate.denominator)
    starts = np.array([_utc_us(p.valid_from) for p in periods])
    index = np.clip(np.searchsorted(starts, at_us, side="right") - 1, 0, None)
    fractions = [Fraction(p.usd_per_unit) for p in periods]
    nums = np.array([f.numerator for f in fractions])[index]
    dens = np.array([f.denominator for f in fractions])[index]
    return nums, dens


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

    def __init__(self, registry: dict[str, TenantConfig], members: pl.DataFrame) -> None:
        self.registry = registry
        self.tenant_ids = [t for t in BOOKING_SHARE if t in registry]
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

    def member_weights(self, tenant: str) -> np.ndarray:
        # Zipf-like activity: a few members book far more than the rest.
        n = self.members[tenant].height
        w = 1.0 / np.arange(1, n + 1) ** 0.85
        return w / w.sum()


def _members(
    rng: np.random.Generator, registry: dict[str, TenantConfig], size: int, anchor_us: int
) -> pl.DataFrame:
    frames = []
    seeded = [m for m in REFERENCE_MEMBERS if m.tenant_id in registry]
    for tenant_id, share in BOOKING_SHARE.items():
        if tenant_id not in registry:
            continue
        tenant = registry[tenant_id]
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
        decimals = tenant.currency.decimals
        median_usd = {"coffeechain": 250, "telcocorp": 180, "fintechapp": 450}[tenant_id]
        usd_cents = (rng.lognormal(np.log(median_usd), 0.9, n) * 100).astype(np.int64)
        rate = Fraction(tenant.currency.usd_per_unit)
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
    seeded_frame = reference_members_frame(set(registry))
    # Reference members first so they are among the active bookers.
    return pl.concat([seeded_frame, *frames]).sort("tenant_id", maintain_order=True)


def _booking_times(rng: np.random.Generator, n: int, start_us: int, end_us: int) -> np.ndarray:
    """Booking instants with seasonality: summer and December peaks, busier weekdays, daytime."""
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
    day = rng.choice(days, n, p=weight / weight.sum())
    hour_w = np.array(
        [1, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 8, 8, 8, 8, 8, 8, 8, 7, 7, 6, 5, 3, 2], float
    )
    hour = rng.choice(24, n, p=hour_w / hour_w.sum())
    at = day_start[day] + hour * HOUR + rng.integers(0, HOUR, n)
    return np.minimum(at, end_us - 1)


def plan_bookings(
    rng: np.random.Generator,
    world: World,
    n: int,
    start_us: int,
    end_us: int,
    resolve_until_us: int,
) -> dict[str, np.ndarray]:
    """Draw ``n`` bookings made in [start, end) and what happened to them until ``resolve_until``."""
    tenant_ids = world.tenant_ids
    share = np.array([BOOKING_SHARE[t] for t in tenant_ids])
    tenant_idx = rng.choice(len(tenant_ids), n, p=share / share.sum())
    created = np.sort(_booking_times(rng, n, start_us, end_us))
    member_idx = np.zeros(n, dtype=np.int64)
    for k, tenant in enumerate(tenant_ids):
        mask = tenant_idx == k
        member_idx[mask] = rng.choice(
            world.members[tenant].height, mask.sum(), p=world.member_weights(tenant)
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
    economy_only = np.array(
        [world.registry[t].rules.allowed_cabins == ("economy",) for t in tenant_ids]
    )
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
            fx_e4[mask] = _lookup_periods(world.fx[code], created[mask])
    total_cents = np.maximum(
        (usd_guess * 100 * 10_000 / fx_e4).astype(np.int64), 1_000
    )  # local cents
    usd_cents = _div_half_even(total_cents * fx_e4, 10_000)
    tax_cents = _div_half_even(total_cents * 18, 100)
    # Loyalty charge at the rate in force when booked.
    amount_minor = np.zeros(n, dtype=np.int64)
    threshold = np.full(n, np.iinfo(np.int64).max)
    for k, tenant_id in enumerate(tenant_ids):
        tenant = world.registry[tenant_id]
        mask = tenant_idx == k
        num, den = _rate_fraction(tenant, created[mask])
        amount_minor[mask] = loyalty_minor_units(
            usd_cents[mask], tenant.currency.decimals, num, den
        )
        if tenant.rules.approval_threshold:
            threshold[mask] = tenant.rules.approval_threshold * 10**tenant.currency.decimals
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
        "usd_cents": usd_cents,
        "amount_minor": amount_minor,
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
    }


def booking_status(plan: dict[str, np.ndarray]) -> np.ndarray:
    """The platform's status of each booking, as the warehouse should derive it."""
    status = np.full(plan["created"].shape, "confirmed", dtype=object)
    status[plan["cancelled"]] = "cancelled"
    status[plan["pending"]] = "pending_approval"
    status[plan["rejected"]] = "rejected"
    status[plan["failed"]] = "failed"
    return status


def build_tables(
    world: World,
    plan: dict[str, np.ndarray],
    first_counter: int,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, np.ndarray]]:
    """Turn planned bookings into ledger rows and Duffel order rows (unsorted)."""
    n = plan["created"].shape[0]
    counter = np.arange(first_counter, first_counter + n, dtype=np.int64)
    salt = seed * 1_000
    tenant_arr = np.array(world.tenant_ids, dtype=object)[plan["tenant_idx"]]
    member_id = np.empty(n, dtype=object)
    given = np.empty(n, dtype=object)
    family = np.empty(n, dtype=object)
    for k, tenant in enumerate(world.tenant_ids):
        mask = plan["tenant_idx"] == k
        members = world.members[tenant]
        idx = plan["member_idx"][mask]
        member_id[mask] = members["member_id"].to_numpy()[idx]
        given[mask] = members["given_name"].to_numpy()[idx]
        family[mask] = members["family_name"].to_numpy()[idx]
    booking_id = np.array(hex_ids("bkg_", counter, salt + SALT["booking"]), dtype=object)
    codes = world.codes
    route = np.char.add(np.char.add(codes[plan["origin"]], "-"), codes[plan["destination"]]).astype(
        object
    )
    ids = {
        kind: np.empty(n, dtype=object)
        for kind in ("deduction", "refund", "cashback", "approval", "decision")
    }
    for tenant in world.tenant_ids:
        mask = tenant_arr == tenant
        for kind, prefix in TXN_PREFIX[tenant].items():
            ids[kind][mask] = hex_ids(prefix, counter[mask], salt + SALT[kind])
    # Decimal(18, 2) holds every amount; whole-unit currencies scale by 100.
    scale = np.array(
        [100 if world.registry[t].currency.decimals == 0 else 1 for t in world.tenant_ids]
    )[plan["tenant_idx"]]
    amount = plan["amount_minor"] * scale
    currency_code = np.array(
        [world.registry[t].currency.code for t in world.tenant_ids], dtype=object
    )[plan["tenant_idx"]]
    cashback_rate = {t: Fraction(world.registry[t].rules.cashback_rate) for t in world.tenant_ids}
    cashback = np.zeros(n, dtype=np.int64)
    for k, tenant in enumerate(world.tenant_ids):
        if cashback_rate[tenant]:
            mask = plan["tenant_idx"] == k
            cashback[mask] = cashback_minor(amount[mask], cashback_rate[tenant])
    charged = plan["confirmed"]
    parts = []

    def ledger_part(mask, kind, txn_id, amount_minor, status, at, related, description):
        if not mask.any():
            return
        parts.append(
            _frame(
                {
                    "tenant_id": tenant_arr[mask],
                    "transaction_id": txn_id[mask],
                    "member_id": member_id[mask],
                    "type": kind,
                    "amount": _money(amount_minor[mask]),
                    "status": status,
                    "reference_id": booking_id[mask],
                    "related_transaction_id": related[mask] if related is not None else None,
                    "approval_id": ids["approval"][mask] if kind.startswith("approval") else None,
                    "description": description[mask],
                    "created_at": _ts(at[mask]),
                    "updated_at": _ts(at[mask]),
                    "raw_override": None,
                },
                schema=LEDGER,
            )
        )

    none = np.full(n, None, dtype=object)
    zeros = np.zeros(n, dtype=np.int64)
    booking_text = np.char.add("Flight booking ", route.astype(str)).astype(object)
    ledger_part(
        plan["needs_approval"],
        "approval_request",
        ids["approval"],
        zeros,
        "requested",
        plan["created"],
        none,
        np.char.add("Approval requested for ", route.astype(str)).astype(object),
    )
    decision_status = np.where(plan["approved"], "approved", "rejected").astype(object)
    decided = plan["approved"] | plan["rejected"]
    if decided.any():
        ledger_part(
            decided,
            "approval_decision",
            ids["decision"],
            zeros,
            decision_status[decided],
            plan["decided_at"],
            ids["approval"],
            np.char.add("Approval decision for ", route.astype(str)).astype(object),
        )
    ledger_part(
        charged,
        "deduction",
        ids["deduction"],
        -amount,
        "posted",
        plan["charged_at"],
        none,
        booking_text,
    )
    ledger_part(
        charged & (cashback > 0),
        "cashback",
        ids["cashback"],
        cashback,
        "posted",
        plan["charged_at"],
        ids["deduction"],
        np.char.add("Cashback on ", route.astype(str)).astype(object),
    )
    ledger_part(
        plan["cancelled"],
        "refund",
        ids["refund"],
        amount,
        "posted",
        plan["cancel_at"],
        ids["deduction"],
        np.char.add("Refund for cancelled ", route.astype(str)).astype(object),
    )
    ledger = pl.concat(parts) if parts else LEDGER.to_frame()

    hold = plan["needs_approval"] | plan["failed"]
    paid_at = np.where(charged, plan["charged_at"] + 3 * US, 0)
    cancelled_at = np.where(plan["cancelled"], plan["cancel_at"] + 2 * US, 0)
    cancelled_at = np.where(plan["rejected"], plan["decided_at"] + 2 * US, cancelled_at)
    cancelled_at = np.where(plan["failed"], plan["created"] + 40 * US, cancelled_at)
    order_created = np.where(hold, plan["created"], plan["charged_at"] + 2 * US)
    any_cancel = cancelled_at > 0
    order_id = duffel_ids("ord_", counter, salt + SALT["order"])
    cancellation_id = np.array(
        duffel_ids("ore_", counter, salt + SALT["cancellation"]), dtype=object
    )
    orders = _frame(
        {
            "tenant_id": tenant_arr,
            "order_id": order_id,
            "booking_reference": pnrs(counter, salt + SALT["pnr"]),
            "created_at": _ts(order_created),
            "order_type": np.where(hold, "hold", "instant"),
            "owner_iata": _airline(world, plan),
            "cabin_class": CABINS[plan["cabin"]],
            "passenger_count": plan["pax"].astype(np.int8),
            "origin": codes[plan["origin"]],
            "destination": codes[plan["destination"]],
            "via": np.where(plan["via"] >= 0, codes[np.maximum(plan["via"], 0)], None),
            "outbound_departure": _ts(plan["outbound"]),
            "return_departure": _ts(plan["return"]).set(pl.Series(plan["return"] == 0), None),
            "total_amount": _money(plan["total_cents"]),
            "base_amount": _money(plan["total_cents"] - plan["tax_cents"]),
            "tax_amount": _money(plan["tax_cents"]),
            "total_currency": plan["currency"].astype(str),
            "paid_at": _ts(paid_at).set(pl.Series(paid_at == 0), None),
            "payment_required_by": _ts(plan["created"] + 72 * HOUR).set(pl.Series(~hold), None),
            "cancelled_at": _ts(cancelled_at).set(pl.Series(~any_cancel), None),
            "cancellation_id": np.where(any_cancel, cancellation_id, None),
            "refund_amount": _money(np.where(plan["cancelled"], plan["total_cents"], 0)).set(
                pl.Series(~any_cancel), None
            ),
            "refund_to": np.where(
                plan["cancelled"], "balance", np.where(any_cancel, "awaiting_payment", None)
            ),
            "booking_id": booking_id,
            "member_id": member_id,
            "member_given_name": given,
            "member_family_name": family,
            "loyalty_transaction_id": np.where(charged, ids["deduction"], None),
            "raw_override": None,
        },
        schema=ORDERS,
    )
    extra = {
        "booking_id": booking_id,
        "member_id": member_id,
        "tenant": tenant_arr,
        "deduction_id": ids["deduction"],
        "refund_id": ids["refund"],
        "amount": amount,
        "cashback": cashback,
        "cashback_rate": np.array([cashback_rate[t] for t in world.tenant_ids], dtype=object)[
            plan["tenant_idx"]
        ],
        "currency": currency_code,
    }
    return ledger, orders, extra


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


def _inject_anomalies(
    rng: np.random.Generator,
    ledger: pl.DataFrame,
    orders: pl.DataFrame,
    plan: dict[str, np.ndarray],
    extra: dict[str, np.ndarray],
    rate: float,
    seed: int,
) -> tuple[pl.DataFrame, pl.DataFrame, list[dict]]:
    """Plant a few deliberate faults and describe each in the manifest."""
    n = plan["created"].shape[0]
    per_kind = max(1, round(n * rate)) if n >= 200 else 0
    manifest: list[dict] = []
    if not per_kind:
        return ledger, orders, manifest
    plain = np.where(plan["confirmed"] & ~plan["cancelled"] & ~plan["needs_approval"])[0]
    cancelled = np.where(plan["cancelled"])[0]
    chosen = rng.choice(plain, min(len(plain), 3 * per_kind), replace=False)
    no_order, mismatch, duplicate = np.array_split(chosen, 3)
    no_refund = (
        rng.choice(cancelled, min(len(cancelled), per_kind), replace=False)
        if len(cancelled)
        else np.array([], int)
    )

    def entry(kind: str, i: int, expected_in: str, **detail: object) -> dict:
        return {
            "kind": kind,
            "tenant_id": str(extra["tenant"][i]),
            "booking_id": str(extra["booking_id"][i]),
            "member_id": str(extra["member_id"][i]),
            "expected_in": expected_in,
            **detail,
        }

    drop_orders = set(extra["booking_id"][no_order].tolist())
    for i in no_order:
        manifest.append(
            entry(
                "deduction_without_order",
                i,
                "reconciliation",
                transaction_id=str(extra["deduction_id"][i]),
            )
        )
    drop_refunds = set(extra["refund_id"][no_refund].tolist())
    for i in no_refund:
        manifest.append(
            entry(
                "cancelled_without_refund",
                i,
                "reconciliation",
                transaction_id=str(extra["deduction_id"][i]),
                order_id=None,
                missing_transaction_id=str(extra["refund_id"][i]),
            )
        )
    # A deduction that disagrees with the fare at the rate in force: charged a few units off.
    bump = {}
    for i in mismatch:
        delta = int(rng.integers(1, 50)) * (100 if extra["currency"][i] != "coins" else 1)
        bump[str(extra["deduction_id"][i])] = delta
        manifest.append(
            entry(
                "amount_mismatch",
                i,
                "reconciliation",
                transaction_id=str(extra["deduction_id"][i]),
                expected_amount=str(Decimal(-int(extra["amount"][i])).scaleb(-2)),
                actual_amount=str(Decimal(-int(extra["amount"][i] + delta)).scaleb(-2)),
            )
        )
    orders = orders.filter(~pl.col("booking_id").is_in(list(drop_orders)))
    order_ids = dict(zip(orders["booking_id"].to_list(), orders["order_id"].to_list(), strict=True))
    for item in manifest:
        if item["kind"] == "cancelled_without_refund":
            item["order_id"] = order_ids[item["booking_id"]]
    ledger = ledger.filter(~pl.col("transaction_id").is_in(list(drop_refunds)))
    if bump:
        # The tenant overcharged; its cashback follows what it actually charged.
        cashback_of = {}
        for i in mismatch:
            charged = extra["amount"][i] + bump[str(extra["deduction_id"][i])]
            rate = extra["cashback_rate"][i]
            if rate:
                cashback_of[str(extra["deduction_id"][i])] = int(
                    cashback_minor(np.array([charged]), rate)[0]
                )
        delta = pl.col("transaction_id").replace_strict(bump, default=0, return_dtype=pl.Int64)
        cashback = pl.col("related_transaction_id").replace_strict(
            cashback_of, default=0, return_dtype=pl.Int64
        )
        ledger = ledger.with_columns(
            pl.when(pl.col("transaction_id").is_in(list(bump)))
            .then((pl.col("amount") - _scaled(delta)).cast(pl.Decimal(18, 2)))
            .when(
                (pl.col("type") == "cashback")
                & pl.col("related_transaction_id").is_in(list(cashback_of))
            )
            .then(_scaled(cashback).cast(pl.Decimal(18, 2)))
            .otherwise(pl.col("amount"))
            .alias("amount")
        )
    # Duplicate deliveries: the same record twice, adjacent in the feed.
    dup_ids = extra["deduction_id"][duplicate].tolist()
    dups = ledger.filter(pl.col("transaction_id").is_in(dup_ids))
    for i in duplicate:
        manifest.append(
            entry(
                "duplicate_delivery",
                i,
                "deduplication",
                transaction_id=str(extra["deduction_id"][i]),
            )
        )
    ledger = pl.concat([ledger, dups])
    # Malformed deliveries, additional to the real history, each with what is wrong.
    bad_ledger, bad_orders = [], []
    shapes = [
        ("amount", lambda r: {**r, "amount": "12,50 stars"}),
        ("member_id", lambda r: {k: v for k, v in r.items() if k != "member_id"}),
        ("created_at", lambda r: {**r, "created_at": "yesterday", "updated_at": "yesterday"}),
    ]
    victims = rng.choice(ledger.height, per_kind, replace=False)
    for j, row_index in enumerate(victims.tolist()):
        row = ledger.row(row_index, named=True)
        field, mangle = shapes[j % len(shapes)]
        txn = f"bad_{hex_ids('', np.array([j]), seed * 1000 + SALT['malformed'])[0]}"
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
        bad_ledger.append(
            {
                **row,
                "transaction_id": txn,
                "raw_override": json.dumps(record, separators=(",", ":")),
            }
        )
        manifest.append(
            {
                "kind": "malformed_ledger_record",
                "tenant_id": row["tenant_id"],
                "transaction_id": txn,
                "expected_in": "quarantine",
                "field": field,
            }
        )
    order_victims = rng.choice(orders.height, per_kind, replace=False)
    for j, row_index in enumerate(order_victims.tolist()):
        row = orders.row(row_index, named=True)
        bad_id = duffel_ids("ord_", np.array([j]), seed * 1000 + SALT["malformed"])[0]
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
        bad_orders.append(
            {
                **row,
                "order_id": bad_id,
                "booking_id": None,
                "raw_override": json.dumps(record, separators=(",", ":")),
            }
        )
        manifest.append(
            {
                "kind": "malformed_order",
                "tenant_id": row["tenant_id"],
                "order_id": bad_id,
                "expected_in": "quarantine",
                "field": "total_amount",
            }
        )
    ledger = pl.concat([ledger, pl.DataFrame(bad_ledger, schema=LEDGER)])
    orders = pl.concat([orders, pl.DataFrame(bad_orders, schema=ORDERS)])
    return ledger, orders, manifest


def _scaled(minor: pl.Expr) -> pl.Expr:
    return minor.cast(pl.Decimal(18, 2)) * pl.lit(Decimal("0.01"), dtype=pl.Decimal(18, 4))


def generate(
    size: int,
    seed: int,
    out_dir: Path,
    anchor: dt.date | None = None,
    months: int = 12,
    anomaly_rate: float = 0.001,
    registry: dict[str, TenantConfig] | None = None,
) -> GenerationResult:
    """Write members, ledger and orders Parquet files plus ``manifest.json`` into ``out_dir``."""
    started = time.perf_counter()
    registry = registry or load_registry()
    anchor = anchor or dt.datetime.now(dt.UTC).date()
    end_us = _utc_us(anchor)
    start_us = end_us - months * 30 * DAY - 5 * DAY
    rng = np.random.default_rng(seed)
    members = _members(rng, registry, size, end_us)
    world = World(registry, members)
    plan = plan_bookings(rng, world, size, start_us, end_us, resolve_until_us=end_us)
    ledger, orders, extra = build_tables(world, plan, first_counter=0, seed=seed)
    ledger, orders, anomalies = _inject_anomalies(
        rng, ledger, orders, plan, extra, anomaly_rate, seed
    )
    ledger = ledger.sort(["tenant_id", "updated_at", "transaction_id"], maintain_order=True)
    orders = orders.sort(["tenant_id", "created_at", "order_id"])
    status = booking_status(plan)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, frame in (("members", members), ("ledger", ledger), ("orders", orders)):
        tmp = out_dir / f".{name}.parquet.tmp"
        frame.write_parquet(tmp, compression="zstd", statistics=True)
        tmp.replace(out_dir / f"{name}.parquet")
    counts = {}
    for tenant in world.tenant_ids:
        t_ledger = ledger.filter(pl.col("tenant_id") == tenant)
        t_orders = orders.filter(pl.col("tenant_id") == tenant)
        kinds = [a for a in anomalies if a["tenant_id"] == tenant]
        t_status = status[extra["tenant"] == tenant]
        counts[tenant] = {
            "members": members.filter(pl.col("tenant_id") == tenant).height,
            "ledger_delivered": t_ledger.height,
            "ledger_malformed": sum(a["kind"] == "malformed_ledger_record" for a in kinds),
            "ledger_duplicates": sum(a["kind"] == "duplicate_delivery" for a in kinds),
            "ledger_transactions": t_ledger.filter(pl.col("raw_override").is_null())[
                "transaction_id"
            ].n_unique(),
            "orders_delivered": t_orders.height,
            "orders_malformed": sum(a["kind"] == "malformed_order" for a in kinds),
            "orders": t_orders.filter(pl.col("raw_override").is_null()).height,
            "bookings": int(t_status.shape[0]),
            "bookings_by_status": {
                s: int((t_status == s).sum())
                for s in ("confirmed", "pending_approval", "rejected", "cancelled", "failed")
            },
        }
    manifest = {
        "seed": seed,
        "size": size,
        "anchor": anchor.isoformat(),
        "months": months,
        "anomaly_rate": anomaly_rate,
        "next_counter": size,
        "history_start": dt.datetime.fromtimestamp(start_us / US, dt.UTC).isoformat(),
        "history_end": dt.datetime.fromtimestamp(end_us / US, dt.UTC).isoformat(),
        "counts": counts,
        "anomalies": anomalies,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return GenerationResult(
        out_dir=out_dir, manifest=manifest, seconds=time.perf_counter() - started
    )
