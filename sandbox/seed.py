"""The members every stand-in starts with, exactly as the reference services seed them."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from decimal import Decimal

import polars as pl

from sandbox.schema import MEMBERS


@dataclass(frozen=True)
class SeedMember:
    tenant_id: str
    member_id: str
    given_name: str
    family_name: str
    email: str
    tier: str
    balance: Decimal
    total_cashback: Decimal = Decimal("0.00")
    status: str = "active"


REFERENCE_MEMBERS: tuple[SeedMember, ...] = (
    SeedMember(
        "coffeechain", "CC1234567", "John", "Doe", "john.doe@example.com", "gold", Decimal(150000)
    ),
    SeedMember(
        "coffeechain",
        "CC2222222",
        "Jane",
        "Smith",
        "jane.smith@example.com",
        "silver",
        Decimal(45000),
    ),
    SeedMember(
        "coffeechain",
        "CC3333333",
        "Bob",
        "Johnson",
        "bob.johnson@example.com",
        "platinum",
        Decimal(500000),
    ),
    SeedMember(
        "coffeechain", "CC0000000", "Test", "User", "test.user@example.com", "bronze", Decimal(1000)
    ),
    SeedMember(
        "telcocorp",
        "TC-ABC123",
        "Alice",
        "Johnson",
        "alice.johnson@example.com",
        "gold",
        Decimal(25000),
    ),
    SeedMember(
        "telcocorp",
        "TC-DEF456",
        "David",
        "Brown",
        "david.brown@example.com",
        "platinum",
        Decimal(150000),
    ),
    SeedMember(
        "telcocorp",
        "TC-GHI789",
        "Emma",
        "Wilson",
        "emma.wilson@example.com",
        "silver",
        Decimal(5000),
    ),
    SeedMember(
        "fintechapp",
        "FA_12345678",
        "Sarah",
        "Connor",
        "sarah.connor@example.com",
        "gold",
        Decimal("2500.00"),
        Decimal("125.50"),
    ),
    SeedMember(
        "fintechapp",
        "FA_87654321",
        "Michael",
        "Chen",
        "michael.chen@example.com",
        "platinum",
        Decimal("10000.00"),
        Decimal("450.00"),
    ),
    SeedMember(
        "fintechapp",
        "FA_11111111",
        "Test",
        "User",
        "test.user@example.com",
        "basic",
        Decimal("50.00"),
        Decimal("0.00"),
    ),
)


def reference_members_frame(tenant_ids: set[str] | None = None) -> pl.DataFrame:
    """The reference members as rows of the generated members table."""
    joined = dt.datetime(2023, 1, 1, tzinfo=dt.UTC)
    rows = [
        {**asdict(m), "joined_at": joined}
        for m in REFERENCE_MEMBERS
        if tenant_ids is None or m.tenant_id in tenant_ids
    ]
    return pl.DataFrame(rows, schema=MEMBERS)
