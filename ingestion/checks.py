"""Asset checks shared by the landing assets: duplicate ids and the quarantined share."""

from __future__ import annotations

import dagster as dg
import polars as pl

from ingestion.landing import quarantine as dead_letters
from ingestion.landing.storage import Location, parquet_source
from ingestion.landing.zone import LandingZone

QUARANTINE_SHARE_LIMIT = 0.01  # more than 1% rejected records means something upstream broke


def duplicate_ids(
    zone: LandingZone, source: str, entity: str, key: list[str]
) -> dg.AssetCheckResult:
    """No record version landed twice within a tenant (re-runs must not duplicate)."""
    with zone.reading():
        frames = [zone.scan(source, entity, t) for t in _tenants(zone, source, entity)]
        frames = [f for f in frames if f is not None]
        if not frames:
            return dg.AssetCheckResult(passed=True, metadata={"rows": 0})
        landed = pl.concat(frames).select(["tenant_id", *key])
        dupes = landed.group_by(["tenant_id", *key]).len().filter(pl.col("len") > 1).collect()
    return dg.AssetCheckResult(
        passed=dupes.height == 0,
        metadata={"duplicated_keys": dupes.height, "examples": str(dupes.head(5).to_dicts())},
    )


def quarantine_share(zone: LandingZone, source: str, entity: str) -> dg.AssetCheckResult:
    """Open (unresolved) rejected records stay a small share of what was delivered."""
    with zone.reading():
        landed = sum(_count(zone.folder(source, entity, t)) for t in _tenants(zone, source, entity))
    rejected = sum(
        dead_letters.entries(zone, source, entity, t)["open"].sum()
        for t in _tenants(zone, source, entity, quarantine=True)
    )
    share = rejected / (landed + rejected) if landed + rejected else 0.0
    return dg.AssetCheckResult(
        passed=share <= QUARANTINE_SHARE_LIMIT,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={
            "landed": landed,
            "quarantined": rejected,
            "share": round(share, 6),
            "limit": QUARANTINE_SHARE_LIMIT,
        },
    )


def _tenants(zone: LandingZone, source: str, entity: str, quarantine: bool = False) -> list[str]:
    base = (zone.quarantine_root if quarantine else zone.root) / source / entity
    return (
        sorted(p.name.split("=", 1)[1] for p in base.glob("tenant_id=*")) if base.exists() else []
    )


def _count(folder: Location) -> int:
    files = [parquet_source(path) for path in sorted(folder.glob("*.parquet"))]
    return pl.scan_parquet(files).select(pl.len()).collect().item() if files else 0
