"""Capability facts through the warehouse: probes landed as ingestion lands them become
`tenant_capabilities` (declared vs found), `reconciliation_checks` (which checks each tenant's
data allows) and the `tenants` mart's has_* columns; member files landed before the `source`
column existed still build, as the member list's."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl

from clients.loyalty.client import CapabilityProbe
from ingestion.landing.schemas import MEMBERS
from ingestion.landing.zone import LandingZone, land
from ingestion.loyalty.capabilities import land_probes
from testing.dbt_build import DbtBuild, dbt_build

AT = dt.datetime(2026, 11, 20, 12, 0, tzinfo=dt.UTC)
NOT_FOUND = "GET /api/v1/ledger/transactions answered 404 Not Found: no such route"


def _old_member_file(zone: LandingZone, tenant_id: str, members: dict[str, int]) -> None:
    """A member-list snapshot as landed before the `source` column existed."""
    old_schema = {k: v for k, v in MEMBERS.items() if k != "source"}
    frame = pl.DataFrame(
        [
            {
                "tenant_id": tenant_id,
                "member_id": member_id,
                "tier": "gold",
                "status": "active",
                "balance": Decimal(balance),
                "currency": "points",
                "snapshot_at": AT,
                "_loaded_at": AT,
                "_batch_id": "members-old",
            }
            for member_id, balance in members.items()
        ],
        schema=old_schema,
    )
    folder = zone.folder("loyalty", "members", tenant_id)
    folder.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(folder / "members-old.parquet")


def _looked_up(zone: LandingZone, tenant_id: str, members: dict[str, int], at: dt.datetime) -> None:
    frame = pl.DataFrame(
        [
            {
                "tenant_id": tenant_id,
                "member_id": member_id,
                "tier": "silver",
                "status": "active",
                "balance": Decimal(balance),
                "currency": "stars",
                "snapshot_at": at,
                "source": "balance_lookup",
                "_loaded_at": at,
                "_batch_id": "members-lookup",
            }
            for member_id, balance in members.items()
        ],
        schema=MEMBERS,
    )
    land(zone, "loyalty", "members", tenant_id, frame, "members-lookup")


def _query(built: DbtBuild, sql: str) -> list[tuple]:
    with built.connect() as con:
        return con.execute(sql).fetchall()


def _assert_built(built: DbtBuild) -> None:
    assert built.returncode == 0, built.output[-5000:]
    assert {r["status"] for r in built.run_results()} <= {"success", "pass"}


def test_capability_facts_reach_the_marts(tmp_path: Path) -> None:
    zone = LandingZone.under(tmp_path)
    # Only member files from before the `source` column: no landed file has it at all.
    _old_member_file(zone, "telcocorp", {"TC-ABC123": 25000, "TC-DEF456": 150000})
    first = dbt_build(tmp_path / "build", zone.root)
    _assert_built(first)
    assert _query(
        first, "select member_id, snapshot_source from staging.stg_loyalty__members order by 1"
    ) == [("TC-ABC123", "member_list"), ("TC-DEF456", "member_list")]
    # Nothing probed yet: every declared capability is unknown, nothing is claimed.
    assert _query(first, "select count(*), count(offered) from marts.tenant_capabilities") == [
        (12, 0)
    ]
    assert (
        _query(first, "select has_ledger_feed, has_member_list, has_refunds from marts.tenants")
        == [(None, None, None)] * 3
    )

    # CoffeeChain answers like the reference API; TelcoCorp like our extended stand-in; an
    # older CoffeeChain probe said the feed was there (the latest answer wins).
    land_probes(
        zone,
        "coffeechain",
        [CapabilityProbe("ledger_feed", True, 200, "GET answered 200")],
        AT - dt.timedelta(days=1),
    )
    land_probes(
        zone,
        "coffeechain",
        [
            CapabilityProbe("ledger_feed", False, 404, NOT_FOUND),
            CapabilityProbe("member_list", False, 404, "GET /api/v1/members answered 404"),
            CapabilityProbe("refunds", True, None, "declared offered; not probed"),
        ],
        AT,
    )
    land_probes(
        zone,
        "telcocorp",
        [
            CapabilityProbe("ledger_feed", True, 200, "GET answered 200"),
            CapabilityProbe("member_list", True, 200, "GET answered 200"),
            CapabilityProbe("refunds", True, 405, "POST exists (a GET of it answered 405)"),
        ],
        AT,
    )
    _looked_up(zone, "coffeechain", {"CC1234567": 150000, "CC2222222": 45000}, AT)
    second = dbt_build(tmp_path / "build", zone.root)
    _assert_built(second)

    capabilities = {
        (tenant, capability): (declared, offered, detail)
        for tenant, capability, declared, offered, detail in _query(
            second,
            "select tenant_id, capability, declared, offered, detail"
            " from marts.tenant_capabilities",
        )
    }
    assert len(capabilities) == 12
    assert capabilities["coffeechain", "ledger_feed"] == (True, False, NOT_FOUND)
    assert capabilities["coffeechain", "refunds"][:2] == (True, True)
    assert capabilities["coffeechain", "partner_session"] == (
        False,
        None,
        "not declared in the tenant file; never asked for",
    )
    assert capabilities["telcocorp", "member_list"][:2] == (True, True)
    assert capabilities["fintechapp", "partner_session"] == (
        True,
        None,
        "declared in the tenant file; not probed yet",
    )

    checks = {
        (tenant, check): (available, reason)
        for tenant, check, available, reason in _query(
            second,
            "select tenant_id, check_name, available, reason from marts.reconciliation_checks",
        )
    }
    assert len(checks) == 9
    assert checks["coffeechain", "ledger_vs_platform"] == (
        False,
        f"the tenant offers no ledger feed: {NOT_FOUND}",
    )
    assert checks["telcocorp", "ledger_vs_platform"] == (True, "the tenant offers its ledger feed")
    assert checks["fintechapp", "ledger_vs_platform"][0] is False
    assert all(
        checks[t, "duffel_vs_platform"][0] for t in ("coffeechain", "telcocorp", "fintechapp")
    )
    assert checks["coffeechain", "member_liability"] == (
        True,
        "from balance lookups of 2 members the platform knows",
    )
    assert checks["telcocorp", "member_liability"] == (True, "from the member list")
    assert checks["fintechapp", "member_liability"] == (
        False,
        "from balance lookups of 0 members the platform knows",
    )

    # The tenants mart reports what was found, not what the files declare.
    profiles = {
        row[0]: row[1:]
        for row in _query(
            second,
            "select tenant_id, has_ledger_feed, has_member_list, has_refunds from marts.tenants",
        )
    }
    assert profiles == {
        "coffeechain": (False, False, True),
        "telcocorp": (True, True, True),
        "fintechapp": (None, None, None),
    }
    # Old and new member files side by side: each row says where it came from.
    assert _query(
        second,
        "select tenant_id, snapshot_source, count(*) from staging.stg_loyalty__members"
        " group by all order by 1",
    ) == [("coffeechain", "balance_lookup", 2), ("telcocorp", "member_list", 2)]
