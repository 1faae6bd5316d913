"""The data-health tables of the serving snapshot count what quarantine still holds open."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import duckdb

from ingestion.landing import quarantine
from ingestion.landing.zone import LandingZone, Rejected
from warehouse.publish import SNAPSHOT, publish_snapshot

AT = dt.datetime(2026, 11, 30, 12, tzinfo=dt.UTC)


def _health(tmp_path: Path) -> dict[tuple[str, str], tuple[int, int]]:
    warehouse = tmp_path / "warehouse.duckdb"
    duckdb.connect(str(warehouse)).close()
    publish_snapshot(warehouse, tmp_path / "serving", landing_root=tmp_path / "landing", tables=())
    with duckdb.connect(str(tmp_path / "serving" / SNAPSHOT), read_only=True) as con:
        rows = con.execute(
            "select tenant_id, entity, rows_landed, quarantined from landing_health"
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
