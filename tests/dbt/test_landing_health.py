"""The landing_health mart counts what landed and what quarantine still holds open."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from ingestion.landing import quarantine
from ingestion.landing.zone import LandingZone, Rejected
from testing.dbt_build import dbt_build

AT = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def _health(tmp_path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    build = dbt_build(tmp_path / "dbt", tmp_path / "landing", "--select", "landing_health")
    assert build.returncode == 0, build.output[-5000:]
    with build.connect() as con:
        rows = con.execute(
            "select tenant_id, entity, rows_landed, quarantined from marts.landing_health"
        ).fetchall()
    return {(tenant, entity): (landed, held) for tenant, entity, landed, held in rows}


def test_resolved_quarantine_entries_are_not_counted_as_held(tmp_path: Path) -> None:
    zone = LandingZone(tmp_path / "landing", tmp_path / "quarantine")
    bad = [
        Rejected("m1", "field 'balance' is 1e400", {"member_id": "m1", "balance": "1e400"}),
        Rejected("m2", "field 'balance' is 0.5", {"member_id": "m2", "balance": "0.5"}),
    ]
    batch = quarantine.write(zone, "loyalty", "members", "telcocorp", bad, AT)
    assert batch is not None
    quarantine.write(zone, "loyalty", "members", "fintechapp", bad[:1], AT)
    assert _health(tmp_path)[("telcocorp", "members")] == (0, 2)

    # A corrected version of m1 landed: its entry is closed, m2's stays open.
    sha = quarantine.digest(quarantine.payload_text(bad[0].raw))
    quarantine.resolve(
        zone,
        "loyalty",
        "members",
        "telcocorp",
        [(batch, "m1", sha, "superseded", "a valid version landed")],
        AT,
    )

    health = _health(tmp_path)
    assert health[("telcocorp", "members")] == (0, 1)
    assert health[("fintechapp", "members")] == (0, 1)


def test_every_landed_row_version_is_counted(built, warehouse: duckdb.DuckDBPyConnection) -> None:
    """Per tenant and entity, the mart counts the landed rows (every copy) and the newest stamp."""
    for source, entity in (
        ("loyalty", "ledger_transactions"),
        ("loyalty", "members"),
        ("duffel", "orders"),
    ):
        files = str(built.landing_root / source / entity / "*" / "*.parquet")
        expected = warehouse.execute(
            "select tenant_id, count(*), max(_loaded_at) from read_parquet(?, hive_partitioning = true)"
            " group by tenant_id order by tenant_id",
            [files],
        ).fetchall()
        assert expected, (source, entity)
        found = warehouse.execute(
            "select tenant_id, rows_landed, last_loaded_at from marts.landing_health"
            " where source = ? and entity = ? and quarantined = 0 order by tenant_id",
            [source, entity],
        ).fetchall()
        assert found == expected, (source, entity)
