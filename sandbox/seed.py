"""The members every stand-in starts with, exactly as the reference services seed them."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


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
