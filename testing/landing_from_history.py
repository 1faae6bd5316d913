"""Write a generated sandbox history into the landing zone, laid out as ingestion lands it.

A TEST SHORTCUT for warehouse-level tests (dbt models, marts, reconciliation against the
manifest): it skips the stand-in APIs and the ingestion assets and writes directly the
Parquet files they would produce, in the layout and column types of ``ingestion/landing/schemas.py``.
It does not prove that ingestion lands what it should; the real pipeline test (stand-ins ->
ingestion -> landing -> dbt) comes from ingestion.

What it does as ingestion would:
- records with a ``raw_override`` are malformed on the wire: ingestion quarantines them, so
  they are not landed;
- a duplicate delivery (the same ledger record twice) IS landed twice, and consecutive
  ledger batches overlap by a few records (the re-fetch window of an incremental cursor);
- an order that changed after it was first seen (a paid hold order, a cancelled order) is
  also landed in its earlier version, in an earlier batch;
- the booking API's events land per tenant in batches named and footed as
  ``ingestion/platform/events.py`` lands them: the batch id hashes the sorted event ids, and the
  footer's cursor is the last event id the batch covers;
- orders are rendered to Duffel's JSON as the Duffel stand-in renders them and flattened
  by ingestion's own flattener (``ingestion.duffel.orders.order_page``).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from clients.loyalty.client import CapabilityProbe
from ingestion.duffel.orders import order_page, orders_frame, segments_frame
from ingestion.landing.schemas import (
    AIRLINES,
    AIRPORTS,
    BOOKING_EVENTS,
    LEDGER_TRANSACTIONS,
    MEMBERS,
    ORDER_SEGMENTS,
    ORDERS,
)
from ingestion.landing.zone import CURSOR_KEY, LandingZone, batch_id, write_atomically
from ingestion.loyalty.capabilities import land_probes
from ingestion.platform.events import CURSOR_FIELD
from ingestion.platform.events import ENTITY as EVENTS_ENTITY
from ingestion.platform.events import SOURCE as EVENTS_SOURCE
from sandbox.duffel.render import WIRE_COLUMNS, order_json
from sandbox.reference import AIRLINES as REFERENCE_AIRLINES
from sandbox.reference import airports
from tenants.registry import load_registry

MINUTE = dt.timedelta(minutes=1)


def _land(frame: pl.DataFrame, schema: pl.Schema, path: Path) -> int:
    """Write ``frame`` in exactly ``schema``'s columns and types, atomically."""
    write_atomically(
        frame.select([pl.col(name).cast(dtype) for name, dtype in schema.items()]), path
    )
    return frame.height


def _lineage(frame: pl.DataFrame, batch_id: str, loaded_at: dt.datetime) -> pl.DataFrame:
    return frame.with_columns(
        pl.lit(loaded_at, dtype=pl.Datetime("us", "UTC")).alias("_loaded_at"),
        pl.lit(batch_id).alias("_batch_id"),
    )


def _partition(landing_root: Path, source: str, entity: str, tenant_id: str) -> Path:
    return landing_root / source / entity / f"tenant_id={tenant_id}"


def _ledger(
    history_dir: Path, landing_root: Path, start: dt.datetime, batch_rows: int, overlap: int
) -> int:
    codes = {tenant_id: t.currency.code for tenant_id, t in load_registry().items()}
    ledger = (
        pl.read_parquet(history_dir / "ledger.parquet")
        .filter(pl.col("raw_override").is_null())
        .with_columns(pl.col("tenant_id").replace_strict(codes).alias("currency"))
    )
    landed = 0
    for (tenant_id,), feed in ledger.partition_by(
        "tenant_id", as_dict=True, maintain_order=True
    ).items():
        folder = _partition(landing_root, "loyalty", "ledger_transactions", tenant_id)
        for number, offset in enumerate(range(0, feed.height, batch_rows)):
            # Each fetch starts a little before the previous one ended (the cursor's overlap).
            first = max(0, offset - overlap)
            batch = feed.slice(first, offset + batch_rows - first)
            batch_id = f"ledger-{number:05d}"
            landed += _land(
                _lineage(batch, batch_id, start + number * MINUTE),
                LEDGER_TRANSACTIONS,
                folder / f"{batch_id}.parquet",
            )
    return landed


def _booking_events(
    history_dir: Path, landing_root: Path, start: dt.datetime, batch_rows: int
) -> int:
    """The booking API's feed per tenant, in id order, one batch file per ``batch_rows``."""
    events = pl.read_parquet(history_dir / "events.parquet")
    landed = 0
    for (tenant_id,), feed in events.partition_by(
        "tenant_id", as_dict=True, maintain_order=True
    ).items():
        folder = _partition(landing_root, EVENTS_SOURCE, EVENTS_ENTITY, tenant_id)
        for number, offset in enumerate(range(0, feed.height, batch_rows)):
            batch = feed.slice(offset, batch_rows)
            ids = batch["event_id"]
            name = batch_id(EVENTS_ENTITY, sorted(str(i) for i in ids.to_list()))
            frame = _lineage(batch, name, start + number * MINUTE).select(
                [pl.col(c).cast(t) for c, t in BOOKING_EVENTS.items()]
            )
            cursor = json.dumps({CURSOR_FIELD: str(ids.max())}, sort_keys=True)
            write_atomically(frame, folder / f"{name}.parquet", {CURSOR_KEY: cursor})
            landed += frame.height
    return landed


def _members(history_dir: Path, landing_root: Path, snapshot_at: dt.datetime) -> int:
    codes = {tenant_id: t.currency.code for tenant_id, t in load_registry().items()}
    members = pl.read_parquet(history_dir / "members.parquet").with_columns(
        pl.col("tenant_id").replace_strict(codes).alias("currency"),
        pl.lit(snapshot_at, dtype=pl.Datetime("us", "UTC")).alias("snapshot_at"),
        pl.lit("member_list").alias("source"),
    )
    landed = 0
    for (tenant_id,), snapshot in members.partition_by("tenant_id", as_dict=True).items():
        batch_id = "members-00000"
        landed += _land(
            _lineage(snapshot, batch_id, snapshot_at),
            MEMBERS,
            _partition(landing_root, "loyalty", "members", tenant_id) / f"{batch_id}.parquet",
        )
    return landed


def _earlier_versions(orders: pl.DataFrame) -> pl.DataFrame:
    """Orders as first seen, before a later payment (hold orders) or cancellation."""
    unsaid = [
        pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("cancelled_at"),
        pl.lit(None, dtype=pl.String).alias("cancellation_id"),
        pl.lit(None, dtype=pl.Decimal(18, 2)).alias("refund_amount"),
        pl.lit(None, dtype=pl.String).alias("refund_to"),
    ]
    before_cancel = orders.filter(
        pl.col("cancelled_at").is_not_null() & pl.col("paid_at").is_not_null()
    ).with_columns(unsaid)
    before_payment = orders.filter(
        (pl.col("order_type") == "hold") & pl.col("paid_at").is_not_null()
    ).with_columns(pl.lit(None, dtype=pl.Datetime("us", "UTC")).alias("paid_at"), *unsaid)
    return pl.concat([before_cancel, before_payment])


def _flattened(tenant_id: str, orders: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """History orders rendered as the Duffel stand-in serves them, then flattened by
    ingestion's own flattener: (order rows, segment rows) in landing columns."""
    rendered = [order_json(row) for row in orders.with_columns(WIRE_COLUMNS).iter_rows(named=True)]
    page = order_page(f'{{"data":[{",".join(rendered)}]}}'.encode(), tenant_id)
    if page.rejected:
        raise ValueError(f"history orders ingestion would not land: {page.rejected[:3]}")
    return orders_frame(page.orders).drop("_idx"), segments_frame(page.segments).drop("_idx")


def _orders(
    history_dir: Path, landing_root: Path, start: dt.datetime, batch_rows: int
) -> dict[str, int]:
    orders = pl.read_parquet(history_dir / "orders.parquet").filter(
        pl.col("raw_override").is_null()
    )
    counts = {"orders": 0, "order_segments": 0}
    for (tenant_id,), history in orders.partition_by(
        "tenant_id", as_dict=True, maintain_order=True
    ).items():
        order_folder = _partition(landing_root, "duffel", "orders", tenant_id)
        segment_folder = _partition(landing_root, "duffel", "order_segments", tenant_id)
        earlier, _ = _flattened(tenant_id, _earlier_versions(history))
        if earlier.height:
            counts["orders"] += _land(
                _lineage(earlier, "orders-00000", start),
                ORDERS,
                order_folder / "orders-00000.parquet",
            )
        for number, offset in enumerate(range(0, history.height, batch_rows), start=1):
            batch, segments = _flattened(tenant_id, history.slice(offset, batch_rows))
            loaded_at = start + number * MINUTE
            counts["orders"] += _land(
                _lineage(batch, f"orders-{number:05d}", loaded_at),
                ORDERS,
                order_folder / f"orders-{number:05d}.parquet",
            )
            counts["order_segments"] += _land(
                _lineage(segments, f"segments-{number:05d}", loaded_at),
                ORDER_SEGMENTS,
                segment_folder / f"segments-{number:05d}.parquet",
            )
    return counts


def _reference(landing_root: Path, loaded_at: dt.datetime) -> dict[str, int]:
    airlines = pl.DataFrame(
        {
            "airline_id": [duffel_id for _, _, duffel_id in REFERENCE_AIRLINES],
            "iata_code": [iata for iata, _, _ in REFERENCE_AIRLINES],
            "name": [name for _, name, _ in REFERENCE_AIRLINES],
        }
    )
    ports = list(airports().values())
    airport_rows = pl.DataFrame(
        {
            "airport_id": [p.duffel_id for p in ports],
            "iata_code": [p.iata for p in ports],
            "icao_code": [p.icao for p in ports],
            "name": [p.name for p in ports],
            "city_name": [p.city for p in ports],
            "iata_city_code": [p.city_code for p in ports],
            "iata_country_code": [p.country for p in ports],
            "latitude": [p.lat for p in ports],
            "longitude": [p.lon for p in ports],
            "time_zone": [p.tz for p in ports],
        }
    )
    return {
        "airlines": _land(
            _lineage(airlines, "airlines-00000", loaded_at),
            AIRLINES,
            landing_root / "duffel" / "airlines" / "airlines-00000.parquet",
        ),
        "airports": _land(
            _lineage(airport_rows, "airports-00000", loaded_at),
            AIRPORTS,
            landing_root / "duffel" / "airports" / "airports-00000.parquet",
        ),
    }


def _capabilities(history_dir: Path, zone: LandingZone, loaded_from: dt.datetime) -> int:
    """The probes of stand-ins serving this history: the ledger feed and member list found."""
    tenants = pl.read_parquet(history_dir / "members.parquet", columns=["tenant_id"])
    found = [
        CapabilityProbe(name, offered=True, status_code=200, detail=f"GET {name}: 200")
        for name in ("ledger_feed", "member_list")
    ]
    landed = 0
    for tenant_id in sorted(tenants["tenant_id"].unique()):
        land_probes(zone, tenant_id, found, checked_at=loaded_from)
        landed += len(found)
    return landed


def write_landing(
    history_dir: Path,
    landing_root: Path,
    *,
    batch_rows: int = 200_000,
    overlap_rows: int = 20,
    lock_file: Path | None = None,
) -> dict[str, int]:
    """Land the history in ``history_dir`` under ``landing_root``; returns rows landed per entity.

    Files are named per batch, so writing the same history again overwrites them with the
    same content (idempotent, like ingestion re-running a batch). ``landing_root`` may be on
    an object store (then the zone's lock is ``lock_file``, a local file).
    """
    zone = LandingZone(landing_root, landing_root.parent / "quarantine", lock_file)
    manifest = json.loads((history_dir / "manifest.json").read_text())
    loaded_from = dt.datetime.fromisoformat(manifest["history_end"])
    return {
        "ledger_transactions": _ledger(
            history_dir, landing_root, loaded_from, batch_rows, overlap_rows
        ),
        "members": _members(history_dir, landing_root, loaded_from),
        "booking_events": _booking_events(history_dir, landing_root, loaded_from, batch_rows),
        "capabilities": _capabilities(history_dir, zone, loaded_from),
        **_orders(history_dir, landing_root, loaded_from, batch_rows),
        **_reference(landing_root, loaded_from),
    }
