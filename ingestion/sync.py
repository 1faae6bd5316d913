"""Pull one source for one tenant into the landing zone: incremental, idempotent, streaming.

These functions know nothing of Dagster, so the assets, the tests and the benchmarks all
run the same code. Pages are streamed and written in bounded batches; memory stays flat
however long the history is.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from ingestion import records
from ingestion.landing import (
    LandingZone,
    Rejected,
    batch_id,
    land,
    landed_keys,
    max_landed,
    quarantine,
)
from ingestion.schemas import ENTITIES
from tenants.duffel.client import DuffelClient
from tenants.duffel.models import Airline, Airport
from tenants.loyalty import LoyaltyClient
from tenants.models import LedgerTransaction, Member

log = logging.getLogger("ingestion")

LEDGER = ("loyalty", "ledger_transactions")
MEMBERS = ("loyalty", "members")
ORDERS = ("duffel", "orders")
SEGMENTS = ("duffel", "order_segments")
AIRLINES = ("duffel", "airlines")
AIRPORTS = ("duffel", "airports")


@dataclass
class SyncStats:
    """What one pull did; shown as asset metadata and printed by the pipeline."""

    fetched: int = 0
    landed: int = 0
    quarantined: int = 0
    already_landed: int = 0
    pages: int = 0
    batches: int = 0
    requests: int = 0
    since: dt.datetime | None = None
    seconds: float = 0.0
    outcome: str = "ok"
    files: list[str] = field(default_factory=list)

    def metadata(self) -> dict[str, Any]:
        rate = self.landed / self.seconds if self.seconds else 0.0
        return {
            "outcome": self.outcome,
            "fetched": self.fetched,
            "landed": self.landed,
            "quarantined": self.quarantined,
            "already_landed": self.already_landed,
            "requests": self.requests,
            "pages": self.pages,
            "batches": self.batches,
            "cursor_since": self.since.isoformat() if self.since else "full history",
            "seconds": round(self.seconds, 3),
            "records_per_second": round(rate, 1),
        }


class RequestCounter:
    """An httpx response hook counting every request a client sends (retries included)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, response: object) -> None:
        self.count += 1


class _Batcher:
    """Collects landed rows and rejected records and writes them in bounded batches."""

    def __init__(
        self,
        zone: LandingZone,
        entity: tuple[str, str],
        tenant_id: str | None,
        key: Callable[[dict[str, Any]], str],
        batch_size: int,
        stats: SyncStats,
        loaded_at: dt.datetime,
        children: tuple[str, str] | None = None,
    ) -> None:
        self.zone, self.entity, self.tenant_id = zone, entity, tenant_id
        self.key, self.batch_size, self.stats, self.loaded_at = key, batch_size, stats, loaded_at
        self.children = children
        self.rows: list[dict[str, Any]] = []
        self.child_rows: list[dict[str, Any]] = []
        self.rejected: list[Rejected] = []

    def add(self, row: dict[str, Any], children: Iterable[dict[str, Any]] = ()) -> None:
        self.rows.append(row)
        self.child_rows.extend(children)
        if len(self.rows) >= self.batch_size:
            self.flush()

    def reject(self, rejected: list[Rejected]) -> None:
        self.rejected.extend(rejected)

    def flush(self) -> None:
        source, entity = self.entity
        keys = sorted(self.key(row) for row in self.rows)
        if self.rows:
            name = batch_id(entity, keys)
            self._land(self.entity, self.rows, name)
            if self.children:
                self._land(self.children, self.child_rows, name)
            self.stats.landed += len(self.rows)
            self.stats.batches += 1
        if self.rejected:
            name = batch_id(
                f"{entity}-rejected", sorted(f"{r.record_key}|{r.reason}" for r in self.rejected)
            )
            quarantine(
                self.zone, source, entity, self.tenant_id, self.rejected, name, self.loaded_at
            )
            self.stats.quarantined += len(self.rejected)
            for item in self.rejected:
                log.warning(
                    "quarantined %s/%s record for %s: %s",
                    source,
                    entity,
                    self.tenant_id,
                    item.reason,
                )
        self.rows, self.child_rows, self.rejected = [], [], []

    def _land(self, entity: tuple[str, str], rows: list[dict[str, Any]], name: str) -> None:
        schema = ENTITIES[entity]
        frame = pl.DataFrame(
            rows, schema={k: v for k, v in schema.items() if k not in ("_loaded_at", "_batch_id")}
        )
        frame = frame.with_columns(
            pl.lit(self.loaded_at, dtype=schema["_loaded_at"]).alias("_loaded_at"),
            pl.lit(name).alias("_batch_id"),
        )
        path = land(self.zone, *entity, self.tenant_id, frame, name)
        self.stats.files.append(str(path))


def _quarantined_keys(
    zone: LandingZone, entity: tuple[str, str], tenant_id: str | None
) -> set[str]:
    folder = zone.quarantine_folder(*entity, tenant_id)
    files = sorted(folder.glob("*.parquet"))
    if not files:
        return set()
    return set(pl.read_parquet(files, columns=["record_key"])["record_key"].drop_nulls())


def sync_ledger(
    client: LoyaltyClient,
    zone: LandingZone,
    tenant_id: str,
    *,
    overlap: dt.timedelta = dt.timedelta(minutes=10),
    batch_size: int = 50_000,
    requests: RequestCounter | None = None,
    now: dt.datetime | None = None,
) -> SyncStats:
    """Land ledger records updated since what has landed (minus an overlap), each once."""
    started = time.perf_counter()
    stats = SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    latest = max_landed(zone, *LEDGER, tenant_id, "updated_at")
    stats.since = latest - overlap if latest else None
    seen = (
        landed_keys(
            zone, *LEDGER, tenant_id, ["transaction_id", "updated_at"], "updated_at", stats.since
        )
        if stats.since
        else set()
    )
    skip = _quarantined_keys(zone, LEDGER, tenant_id)
    currency = client.currency
    batcher = _Batcher(
        zone,
        LEDGER,
        tenant_id,
        lambda r: f"{r['transaction_id']}|{r['updated_at'].isoformat()}",
        batch_size,
        stats,
        loaded_at,
    )

    def check(txn: LedgerTransaction) -> str | None:
        if txn.currency != currency:
            return f"field 'currency': {txn.currency!r} is not {tenant_id}'s currency {currency!r}"
        return None

    for page in client.iter_ledger_pages(updated_since=stats.since):
        stats.pages += 1
        stats.fetched += len(page.records)
        fresh = [
            r for r in page.records if not (isinstance(r, dict) and r.get("transaction_id") in skip)
        ]
        sorted_page = records.validate_page(LedgerTransaction, fresh, "transaction_id", check)
        batcher.reject(sorted_page.rejected)
        for txn, _raw in sorted_page.good:
            row = records.ledger_row(tenant_id, txn)
            key = (row["transaction_id"], row["updated_at"])
            if key in seen:
                stats.already_landed += 1
                continue
            seen.add(key)
            batcher.add(row)
        stats.already_landed += len(page.records) - len(fresh)
    batcher.flush()
    stats.requests = requests.count if requests else 0
    stats.seconds = time.perf_counter() - started
    return stats


def snapshot_members(
    client: LoyaltyClient,
    zone: LandingZone,
    tenant_id: str,
    *,
    batch_size: int = 50_000,
    requests: RequestCounter | None = None,
    now: dt.datetime | None = None,
) -> SyncStats:
    """Land the whole member list as one snapshot (balances are the loyalty liability now)."""
    started = time.perf_counter()
    stats = SyncStats()
    snapshot_at = now or dt.datetime.now(dt.UTC)
    batcher = _Batcher(
        zone,
        MEMBERS,
        tenant_id,
        lambda r: f"{r['member_id']}|{r['snapshot_at'].isoformat()}",
        batch_size,
        stats,
        snapshot_at,
    )
    for page in client.iter_member_pages():
        stats.pages += 1
        stats.fetched += len(page.records)
        sorted_page = records.validate_page(Member, page.records, "member_id")
        batcher.reject(sorted_page.rejected)
        for member, _raw in sorted_page.good:
            batcher.add(records.member_row(tenant_id, member, snapshot_at))
    batcher.flush()
    stats.requests = requests.count if requests else 0
    stats.seconds = time.perf_counter() - started
    return stats


def sync_orders(
    client: DuffelClient,
    zone: LandingZone,
    tenant_id: str,
    *,
    overlap: dt.timedelta = dt.timedelta(minutes=10),
    refresh_window: dt.timedelta = dt.timedelta(days=35),
    batch_size: int = 20_000,
    requests: RequestCounter | None = None,
    now: dt.datetime | None = None,
) -> SyncStats:
    """Land new orders and new versions of recent ones (paid, cancelled) in the tenant's organisation.

    Duffel lists orders by creation time only, so orders created within ``refresh_window``
    are listed again to catch later payments and cancellations; an unchanged order is
    recognised by its version and not landed twice.
    """
    started = time.perf_counter()
    stats = SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    latest = max_landed(zone, *ORDERS, tenant_id, "created_at")
    if latest is not None:
        stats.since = min(latest - overlap, loaded_at - refresh_window)
    seen = (
        landed_keys(zone, *ORDERS, tenant_id, ["order_id", "version_at"], "created_at", stats.since)
        if stats.since
        else set()
    )
    skip = _quarantined_keys(zone, ORDERS, tenant_id)
    batcher = _Batcher(
        zone,
        ORDERS,
        tenant_id,
        lambda r: f"{r['order_id']}|{r['version_at'].isoformat()}",
        batch_size,
        stats,
        loaded_at,
        children=SEGMENTS,
    )
    check = records.order_problem(tenant_id)
    for page in client.iter_order_pages(created_after=stats.since):
        stats.pages += 1
        stats.fetched += len(page)
        fresh = [r for r in page if not (isinstance(r, dict) and r.get("id") in skip)]
        stats.already_landed += len(page) - len(fresh)
        sorted_page = records.validate_page(records.LandedOrder, fresh, "id", check)
        batcher.reject(sorted_page.rejected)
        for order, _raw in sorted_page.good:
            row, segments = records.order_rows(tenant_id, order)
            key = (row["order_id"], row["version_at"])
            if key in seen:
                stats.already_landed += 1
                continue
            seen.add(key)
            batcher.add(row, segments)
    batcher.flush()
    stats.requests = requests.count if requests else 0
    stats.seconds = time.perf_counter() - started
    return stats


def snapshot_reference(
    client: DuffelClient,
    zone: LandingZone,
    entity: str,
    *,
    requests: RequestCounter | None = None,
    now: dt.datetime | None = None,
) -> SyncStats:
    """Land Duffel's airlines or airports; an unchanged snapshot rewrites the same file."""
    started = time.perf_counter()
    stats = SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    model, to_row, pages = {
        "airlines": (
            Airline,
            records.airline_row,
            client.iter_pages("/air/airlines", {"limit": 200}),
        ),
        "airports": (
            Airport,
            records.airport_row,
            client.iter_pages("/air/airports", {"limit": 200}),
        ),
    }[entity]
    batcher = _Batcher(
        zone,
        ("duffel", entity),
        None,
        lambda r: "|".join(str(v) for v in r.values()),
        10**9,
        stats,
        loaded_at,
    )
    for page in pages:
        stats.pages += 1
        stats.fetched += len(page)
        sorted_page = records.validate_page(model, page, "id")
        batcher.reject(sorted_page.rejected)
        for item, _raw in sorted_page.good:
            batcher.add(to_row(item))
    batcher.flush()
    stats.requests = requests.count if requests else 0
    stats.seconds = time.perf_counter() - started
    return stats
