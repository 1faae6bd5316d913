"""The sandbox's world (sandbox/world.py) and the platform's registry (tenants/*.yaml) agree.

Both describe the same tenants, written down separately: the stand-ins and the generator
read only the world, the platform only the registry. This test is where the two witnesses
meet, so a wrong rate, rule or currency on either side fails here instead of being copied to
both sides and agreeing with itself downstream.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from decimal import Decimal

from sandbox.seed import REFERENCE_MEMBERS
from sandbox.world import TENANTS, LoyaltyTenant, RatePeriod
from tenants.registry import TenantConfig, load_registry


def disagreements(world: dict[str, LoyaltyTenant], registry: dict[str, TenantConfig]) -> list[str]:
    """Every fact the two describe differently, as ``tenant.field: world != registry``."""
    if set(world) != set(registry):
        return [f"tenants: {sorted(world)} != {sorted(registry)}"]
    found = []
    for tenant_id, ours in world.items():
        theirs = registry[tenant_id]
        pairs = {
            "currency.code": (ours.currency.code, theirs.currency.code),
            "currency.decimals": (ours.currency.places, theirs.currency.decimals),
            "usd_per_unit": (ours.usd_per_unit, theirs.currency.usd_per_unit),
            "rate_history": (
                [(p.usd_per_unit, p.valid_from, p.valid_to) for p in ours.rate_history],
                [(p.usd_per_unit, p.valid_from, p.valid_to) for p in theirs.currency.rate_history],
            ),
            "approval_threshold": (ours.approval_threshold, theirs.rules.approval_threshold),
            "cashback_rate": (ours.cashback_rate, theirs.rules.cashback_rate),
            "allowed_cabins": (tuple(ours.allowed_cabins), tuple(theirs.rules.allowed_cabins)),
        }
        found += [f"{tenant_id}.{name}: {a!r} != {b!r}" for name, (a, b) in pairs.items() if a != b]
        pattern = re.compile(theirs.member_id_pattern)
        found += [
            f"{tenant_id}.member {m.member_id} does not match {theirs.member_id_pattern}"
            for m in REFERENCE_MEMBERS
            if m.tenant_id == tenant_id and not pattern.fullmatch(m.member_id)
        ]
    return found


def test_the_sandbox_world_agrees_with_the_registry() -> None:
    assert disagreements(TENANTS, load_registry()) == []


def test_a_wrong_rate_on_either_side_is_caught() -> None:
    registry = load_registry()
    coffee = TENANTS["coffeechain"]
    devalued = dataclasses.replace(
        coffee,
        rate_history=(
            RatePeriod(Decimal("0.0125"), dt.date(2024, 1, 1), dt.date(2026, 6, 1)),
            *coffee.rate_history[1:],
        ),
    )
    assert disagreements({**TENANTS, "coffeechain": devalued}, registry) == [
        "coffeechain.rate_history: "
        "[(Decimal('0.0125'), datetime.date(2024, 1, 1), datetime.date(2026, 6, 1)), "
        "(Decimal('0.01'), datetime.date(2026, 5, 1), None)] != "
        "[(Decimal('0.0125'), datetime.date(2024, 1, 1), datetime.date(2026, 5, 1)), "
        "(Decimal('0.01'), datetime.date(2026, 5, 1), None)]"
    ]
    telco = registry["telcocorp"]
    wrong = telco.currency.model_copy(update={"usd_per_unit": Decimal("0.011")})
    registry["telcocorp"] = telco.model_copy(update={"currency": wrong})
    assert disagreements(TENANTS, registry) == [
        "telcocorp.usd_per_unit: Decimal('0.01') != Decimal('0.011')"
    ]


def test_a_wrong_rule_or_a_missing_tenant_is_caught() -> None:
    registry = load_registry()
    fintech = dataclasses.replace(TENANTS["fintechapp"], cashback_rate=Decimal("0.03"))
    assert disagreements({**TENANTS, "fintechapp": fintech}, registry) == [
        "fintechapp.cashback_rate: Decimal('0.03') != Decimal('0.02')"
    ]
    coffee = registry["coffeechain"]
    rules = coffee.rules.model_copy(update={"approval_threshold": 40_000})
    registry["coffeechain"] = coffee.model_copy(update={"rules": rules})
    assert disagreements(TENANTS, registry) == ["coffeechain.approval_threshold: 50000 != 40000"]
    del registry["fintechapp"]
    assert disagreements(TENANTS, registry) == [
        "tenants: ['coffeechain', 'fintechapp', 'telcocorp'] != ['coffeechain', 'telcocorp']"
    ]


def test_the_stand_ins_use_the_world() -> None:
    """The stand-ins' rules are the world's, not numbers of their own."""
    from sandbox.loyalty import coffeechain, fintechapp

    assert coffeechain.APPROVAL_THRESHOLD is TENANTS["coffeechain"].approval_threshold
    assert fintechapp.CASHBACK_RATE is TENANTS["fintechapp"].cashback_rate
