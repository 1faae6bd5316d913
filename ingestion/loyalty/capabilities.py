"""What each tenant's API actually offers, asked on every run and landed as facts.

The registry says what to ask for (``capabilities`` in the tenant file); the answers land in
``raw/loyalty/capabilities``, one row per probe, so the warehouse can say which checks a
tenant's data allows, and a missing extension is a recorded fact rather than a failed run.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

import polars as pl

from clients.loyalty.client import CapabilityProbe, LoyaltyClient
from ingestion.landing.schemas import CAPABILITIES
from ingestion.landing.zone import LandingZone, batch_id, land
from tenants.registry import CAPABILITY_NAMES

ENTITY = ("loyalty", "capabilities")


def probe_all(client: LoyaltyClient) -> list[CapabilityProbe]:
    """Every capability the tenant's file declares, asked once (undeclared ones are skipped)."""
    found = (client.probe(name) for name in CAPABILITY_NAMES)
    return [probe for probe in found if probe is not None]


def land_probes(
    zone: LandingZone,
    tenant_id: str,
    probes: Iterable[CapabilityProbe],
    checked_at: dt.datetime | None = None,
) -> str | None:
    """Land one row per probe in one batch; returns the batch id (None when nothing to land)."""
    at = checked_at or dt.datetime.now(dt.UTC)
    rows = [
        {
            "tenant_id": tenant_id,
            "capability": probe.capability,
            "offered": probe.offered,
            "status_code": probe.status_code,
            "detail": probe.detail,
            "checked_at": at,
            "_loaded_at": at,
        }
        for probe in probes
    ]
    if not rows:
        return None
    keys = sorted(f"{row['capability']}|{at.isoformat()}" for row in rows)
    name = batch_id("capabilities", keys)
    frame = pl.DataFrame(rows).with_columns(pl.lit(name).alias("_batch_id"))
    frame = frame.cast({k: v for k, v in CAPABILITIES.items() if k in frame.columns})
    land(zone, *ENTITY, tenant_id, frame, name)
    return name


def metadata(probes: Iterable[CapabilityProbe]) -> dict[str, str]:
    """Asset metadata: one entry per capability, "offered" or "not offered: <why>"."""
    return {
        probe.capability: "offered" if probe.offered else f"not offered: {probe.detail}"
        for probe in probes
    }
