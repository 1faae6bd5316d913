"""Pull one source for one tenant into the landing zone: incremental, idempotent, streaming.

These functions know nothing of Dagster, so the assets, the tests and the benchmarks all
run the same code. Pages are streamed and written in bounded batches; memory stays flat
however long the history is.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import itertools
import logging
import queue
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any, TypeVar

import polars as pl

from clients.duffel.client import DuffelClient, RawListPage
from clients.duffel.models import Airline, Airport
from clients.loyalty.client import LoyaltyClient
from clients.loyalty.models import Member
from ingestion import validation
from ingestion.duffel import orders as duffel_orders
from ingestion.landing import quarantine as dead_letters
from ingestion.landing.batches import (
    Batcher,
    DeadLetters,
    RequestCounter,
    SyncStats,
    row_keys,
    rows_frame,
    version_keys,
)
from ingestion.landing.cursors import landed_cursor, max_landed
from ingestion.landing.zone import LandingZone, Rejected
from ingestion.loyalty import ledger as loyalty_ledger

log = logging.getLogger("ingestion")
T = TypeVar("T")

LEDGER_ENTITY = ("loyalty", "ledger_transactions")
MEMBERS_ENTITY = ("loyalty", "members")
ORDERS_ENTITY = ("duffel", "orders")
SEGMENTS_ENTITY = ("duffel", "order_segments")
AIRLINES_ENTITY = ("duffel", "airlines")
AIRPORTS_ENTITY = ("duffel", "airports")


def _prefetched(pages: Iterator[T], depth: int = 2) -> Iterator[T]:
    """Pull ``pages`` in a background thread, up to ``depth`` pages ahead of the consumer.

    The next request goes out while the current page is decoded and written, so the
    upstream's response time overlaps our own work. Order is kept; an error from the
    source is raised here, in the consumer, at the point the page would have been.
    """
    slots: queue.Queue[tuple[str, Any]] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                slots.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def pull() -> None:
        try:
            for page in pages:
                if not put(("page", page)):
                    return
            put(("end", None))
        except BaseException as exc:
            put(("error", exc))

    context = contextvars.copy_context()  # log context (tenant, run) follows the requests
    worker = threading.Thread(target=context.run, args=(pull,), name="page-prefetch", daemon=True)
    worker.start()
    try:
        while True:
            kind, item = slots.get()
            if kind == "page":
                yield item
            elif kind == "end":
                return
            else:
                raise item
    finally:
        stop.set()
        worker.join(timeout=5)


Versions = dict[tuple[str, int], tuple[tuple, str]]


def _landed_versions(
    zone: LandingZone,
    entity: tuple[str, str],
    tenant_id: str,
    id_column: str,
    version_column: str,
    since_column: str,
    since: dt.datetime | None,
    same: tuple[str, ...],
) -> Versions:
    """(id, version as epoch microseconds) of what landed at or after ``since`` (all of it
    when ``since`` is None) -> (its ``same`` columns, where it landed): a re-delivery of a
    version must carry the same values, or it is a conflict."""
    with zone.reading():
        frame = zone.scan(*entity, tenant_id)
        if frame is None:
            return {}
        if since is not None:
            frame = frame.filter(pl.col(since_column) >= since)
        rows = frame.select(
            pl.col(id_column), pl.col(version_column).cast(pl.Int64), "_batch_id", *same
        ).collect()
    return {(row[0], row[1]): (row[3:], f"landed in batch {row[2]}") for row in rows.iter_rows()}


def _conflict(
    id_column: str,
    record_id: str,
    version_column: str,
    version_us: int,
    same: tuple[str, ...],
    before: tuple[tuple, str],
    now: tuple,
) -> str:
    """Why a re-delivered version is quarantined: which fields differ from the first one."""
    values, where = before
    fields = "; ".join(
        f"field '{name}' is {_show(old)} there, {_show(new)} here"
        for name, old, new in zip(same, values, now, strict=True)
        if old != new
    )
    moment = (_EPOCH + dt.timedelta(microseconds=version_us)).isoformat()
    return (
        f"{id_column} {record_id!r}: conflicts with the version with the same {version_column} "
        f"({moment}) {where}: {fields}"
    )


def _show(value: object) -> str:
    return "null" if value is None else str(value)


LEDGER_SAME = (
    "member_id",
    "type",
    "amount",
    "currency",
    "status",
    "reference_id",
    "related_transaction_id",
    "approval_id",
)
ORDER_SAME = (
    "total_amount",
    "base_amount",
    "tax_amount",
    "total_currency",
    "refund_amount",
    "refund_currency",
)


def _unseen(
    rows: pl.DataFrame,
    seen: Versions,
    id_column: str,
    version_column: str,
    stats: SyncStats,
    raw: list[Any],
) -> tuple[pl.DataFrame, list[Rejected]]:
    """Drop versions already landed (or already met in this pull); a version met again with
    other values is a conflict, quarantined with the fields that differ."""
    keys = zip(
        rows[id_column].to_list(),
        rows[version_column].cast(pl.Int64).to_list(),
        rows.select(LEDGER_SAME).iter_rows(),
        rows["_idx"].to_list(),
        strict=True,
    )
    keep = []
    conflicts = []
    for record_id, version, values, idx in keys:
        before = seen.get((record_id, version))
        if before is None:
            seen[(record_id, version)] = (values, "met earlier in this pull")
        elif before[0] != values:
            reason = _conflict(
                id_column, record_id, version_column, version, LEDGER_SAME, before, values
            )
            conflicts.append(Rejected(record_id, reason, raw[idx]))
        else:
            stats.already_landed += 1
        keep.append(before is None)
    stats.conflicts += len(conflicts)
    if all(keep):
        return rows, conflicts
    return rows.filter(pl.Series(keep, dtype=pl.Boolean)), conflicts


# A member snapshot's batch is named by its members and the snapshot's instant.
MEMBER_KEYS = row_keys(lambda r: f"{r['member_id']}|{r['snapshot_at'].isoformat()}")


def member_snapshot_batcher(
    zone: LandingZone,
    tenant_id: str,
    stats: SyncStats,
    snapshot_at: dt.datetime,
    batch_size: int,
    dead: DeadLetters | None = None,
) -> Batcher:
    """The batcher of one member snapshot (from the member list or from balance lookups)."""
    return Batcher(
        zone,
        MEMBERS_ENTITY,
        tenant_id,
        MEMBER_KEYS,
        batch_size,
        stats,
        snapshot_at,
        to_frame=rows_frame(MEMBERS_ENTITY),
        dead=dead,
    )


_ORDER_SAME_AT = tuple(duffel_orders.ORDER_COLUMNS.index(c) for c in ORDER_SAME)
_ORDER_MONEY = frozenset(
    i for i, c in zip(_ORDER_SAME_AT, ORDER_SAME, strict=True) if c.endswith("_amount")
)


def _order_values(row: tuple) -> tuple:
    """An order row's ``ORDER_SAME`` values, money as Decimal (the landed rows' form)."""
    return tuple(
        Decimal(row[i]) if i in _ORDER_MONEY and row[i] is not None else row[i]
        for i in _ORDER_SAME_AT
    )


def _unseen_orders(
    page: duffel_orders.OrderPage, seen: Versions, stats: SyncStats, body: bytes
) -> tuple[list[tuple], list[tuple], list[Rejected]]:
    """Drop order versions already landed (or already met in this pull), and their segments;
    a version met again with other amounts is a conflict, quarantined."""
    id_at, version_at = duffel_orders.ORDER_KEY_AT
    rows = []
    dropped: set[int] = set()
    conflicts = []
    for row in page.orders:
        key = (row[id_at], row[version_at])
        values = _order_values(row)
        before = seen.get(key)
        if before is None:
            seen[key] = (values, "met earlier in this pull")
            rows.append(row)
            continue
        dropped.add(row[-1])  # its position in the page (``_idx``)
        if before[0] == values:
            stats.already_landed += 1
        else:
            reason = _conflict("id", key[0], "version_at", key[1], ORDER_SAME, before, values)
            conflicts.append(Rejected(key[0], reason, duffel_orders.raw_order(body, row[-1])))
    stats.conflicts += len(conflicts)
    if not dropped:
        return rows, page.segments, conflicts
    return rows, [s for s in page.segments if s[-1] not in dropped], conflicts


def _chained_orders(parts: list[list[tuple]]) -> pl.DataFrame:
    return duffel_orders.orders_frame(list(itertools.chain.from_iterable(parts)))


def _chained_segments(parts: list[list[tuple]]) -> pl.DataFrame:
    return duffel_orders.segments_frame(list(itertools.chain.from_iterable(parts)))


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
    """Land ledger records updated since what has landed (minus an overlap), each once.

    Pages are fetched one ahead in a background thread and validated column by column
    (``loyalty_ledger.ledger_page``); only unusual records go through the pydantic model one by one.
    """
    started = time.perf_counter()
    stats = SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    latest = max_landed(zone, *LEDGER_ENTITY, tenant_id, "updated_at")
    stats.since = latest - overlap if latest else None
    seen = _landed_versions(
        zone,
        LEDGER_ENTITY,
        tenant_id,
        "transaction_id",
        "updated_at",
        "updated_at",
        stats.since,
        LEDGER_SAME,
    )
    held = dead_letters.known(zone, *LEDGER_ENTITY, tenant_id)
    currency, places = client.currency, client.tenant.currency.decimals
    batcher = Batcher(
        zone,
        LEDGER_ENTITY,
        tenant_id,
        version_keys("transaction_id", "updated_at"),
        batch_size,
        stats,
        loaded_at,
        dead=DeadLetters(held, "transaction_id"),
    )
    for page in _prefetched(client.iter_ledger_pages(updated_since=stats.since)):
        stats.pages += 1
        stats.fetched += len(page.records)
        checked = loyalty_ledger.ledger_page(page.records, tenant_id, currency, held, places)
        stats.already_landed += checked.skipped
        batcher.reject(checked.rejected)
        rows, conflicts = _unseen(
            checked.rows, seen, "transaction_id", "updated_at", stats, checked.raw
        )
        batcher.reject(conflicts)
        batcher.add(rows)
    batcher.flush()
    return stats.finish(requests, started)


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
    held = dead_letters.known(zone, *MEMBERS_ENTITY, tenant_id)
    check = loyalty_ledger.member_problem(
        tenant_id, client.currency, client.tenant.currency.decimals
    )
    batcher = member_snapshot_batcher(
        zone, tenant_id, stats, snapshot_at, batch_size, DeadLetters(held, "member_id")
    )
    for page in client.iter_member_pages():
        stats.pages += 1
        stats.fetched += len(page.records)
        fresh = [
            r
            for r in page.records
            if not (isinstance(r, dict) and held.holds(r.get("member_id"), r))
        ]
        stats.already_landed += len(page.records) - len(fresh)  # quarantined before, unchanged
        sorted_page = validation.validate_page(Member, fresh, "member_id", check)
        batcher.reject(sorted_page.rejected)
        for member, _raw in sorted_page.good:
            batcher.add([loyalty_ledger.member_row(tenant_id, member, snapshot_at)])
    batcher.flush()
    return stats.finish(requests, started)


_MICROSECOND = dt.timedelta(microseconds=1)


def _order_windows(
    client: DuffelClient, since: dt.datetime | None, until: dt.datetime, streams: int
) -> list[tuple[dt.datetime | None, dt.datetime | None]]:
    """Split ``(since, forever)`` into ``streams`` creation-time windows that together cover
    it exactly: ``(since, b1], (b1, b2], ..., (bn, open)`` (Duffel's ``created_at[after]`` and
    ``[before]`` are exclusive). Duffel pages by cursor, one page after another; separate
    windows are separate cursor chains, so their pages can be in flight at the same time.

    The first window is open at its low end when ``since`` is None, so nothing is missed
    whatever order Duffel lists in; the boundaries (from one 1-order probe) only balance them.
    """
    if streams <= 1:
        return [(since, None)]
    start = since
    if start is None:
        probe = next(iter(client.iter_order_pages_raw(limit=1)), None)
        start = duffel_orders.first_created_at(probe.body) if probe else None
        if start is None:
            return [(since, None)]
    span = (until - start) / streams
    if span <= dt.timedelta(seconds=1):
        return [(since, None)]
    bounds = [start + span * k for k in range(1, streams)]
    lows = [since, *bounds]
    highs = [b + _MICROSECOND for b in bounds] + [None]
    return list(zip(lows, highs, strict=True))


def _order_pages(
    client: DuffelClient,
    windows: list[tuple[dt.datetime | None, dt.datetime | None]],
) -> Iterator[tuple[int, RawListPage | None]]:
    """Raw order pages of every window as ``(window, page)``, each window fetched ahead in its
    own thread, taken round-robin (a deterministic order for the same upstream data).
    ``(window, None)`` says that window's listing is complete: all its pages were yielded."""
    sources = {
        index: _prefetched(client.iter_order_pages_raw(created_after=low, created_before=high))
        for index, (low, high) in enumerate(windows)
    }
    try:
        while sources:
            for index, source in list(sources.items()):
                page = next(source, None)
                if page is None:
                    del sources[index]
                yield index, page
    finally:
        for source in sources.values():
            source.close()


class _WindowProgress:
    """Which creation-time range a pull has completely listed, to commit with each batch.

    Windows are listed concurrently and their pages interleave in a batch, so the latest
    ``created_at`` in a batch says nothing about the windows before it. The cursor moves
    only over the leading windows whose listing is complete; once every window is, it is
    the latest ``created_at`` listed (what the old single-stream cursor was).
    """

    def __init__(
        self,
        windows: list[tuple[dt.datetime | None, dt.datetime | None]],
        previous: dt.datetime | None,
    ) -> None:
        self.windows, self.previous = windows, previous
        self.done = [False] * len(windows)
        self.latest_us: int | None = None

    def listed(self, orders: list[tuple]) -> None:
        """Note the orders of a page (landed now or before) for the final position."""
        at = duffel_orders.ORDER_COLUMNS.index("created_at")
        if orders:
            latest = max(row[at] for row in orders)
            self.latest_us = latest if self.latest_us is None else max(self.latest_us, latest)

    def complete_through(self) -> dt.datetime | None:
        """Every order created at or before this has been listed (None: nothing yet)."""
        through = self.previous
        if all(self.done):
            # The whole listing: as far as the latest order listed (not "now", which would
            # make every idle re-run commit a new position).
            if self.latest_us is not None:
                through = _later(through, _EPOCH + dt.timedelta(microseconds=self.latest_us))
            return through
        for (_, high), done in zip(self.windows, self.done, strict=True):
            if not done or high is None:
                return through
            through = _later(through, high - _MICROSECOND)  # windows are (low, high - 1us]
        return through

    def cursor(self) -> dict[str, str] | None:
        through = self.complete_through()
        return {"complete_through": through.isoformat()} if through else None


_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _later(a: dt.datetime | None, b: dt.datetime) -> dt.datetime:
    return b if a is None or b > a else a


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
    streams: int = 3,
) -> SyncStats:
    """Land new orders and new versions of recent ones (paid, cancelled) in the tenant's organisation.

    Duffel lists orders by creation time only, so orders created within ``refresh_window``
    are listed again to catch later payments and cancellations; an unchanged order is
    recognised by its version and not landed twice.

    Pages arrive as raw bytes and are decoded columnar (``duffel_orders.order_page``); only
    unusual records are validated one by one. The listing is split into ``streams``
    creation-time windows fetched concurrently (one thread each, a page or two ahead), all
    through the token's one rate limiter.
    """
    started = time.perf_counter()
    stats = SyncStats()
    loaded_at = now or dt.datetime.now(dt.UTC)
    # The cursor is what the landed batches committed: a range of creation times that has
    # completely landed. Batches without one (landed before cursors were committed) prove
    # nothing about gaps, so the listing starts over; what landed is recognised, not re-landed.
    committed = landed_cursor(zone, *ORDERS_ENTITY, tenant_id)
    if committed.complete_through is not None:
        stats.since = min(committed.complete_through - overlap, loaded_at - refresh_window)
    seen = _landed_versions(
        zone,
        ORDERS_ENTITY,
        tenant_id,
        "order_id",
        "version_at",
        "created_at",
        stats.since,
        ORDER_SAME,
    )
    windows = _order_windows(client, stats.since, loaded_at, streams)
    progress = _WindowProgress(windows, committed.complete_through)
    held = dead_letters.known(zone, *ORDERS_ENTITY, tenant_id)
    batcher = Batcher(
        zone,
        ORDERS_ENTITY,
        tenant_id,
        version_keys("order_id", "version_at"),
        batch_size,
        stats,
        loaded_at,
        to_frame=_chained_orders,
        children=SEGMENTS_ENTITY,
        to_child_frame=_chained_segments,
        cursor=progress.cursor,
        dead=DeadLetters(held, "order_id"),
    )
    for window, page in _order_pages(client, windows):
        if page is None:
            progress.done[window] = True
            continue
        stats.pages += 1
        checked = duffel_orders.order_page(page.body, tenant_id, held)
        stats.fetched += checked.fetched
        stats.already_landed += checked.skipped
        progress.listed(checked.orders)
        batcher.reject(checked.rejected)
        orders, segments, conflicts = _unseen_orders(checked, seen, stats, page.body)
        batcher.reject(conflicts)
        batcher.add(orders, segments)
    batcher.flush()
    return stats.finish(requests, started)


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
            duffel_orders.airline_row,
            client.iter_pages("/air/airlines", {"limit": 200}),
        ),
        "airports": (
            Airport,
            duffel_orders.airport_row,
            client.iter_pages("/air/airports", {"limit": 200}),
        ),
    }[entity]
    batcher = Batcher(
        zone,
        ("duffel", entity),
        None,
        row_keys(lambda r: "|".join(str(v) for v in r.values())),
        10**9,
        stats,
        loaded_at,
        to_frame=rows_frame(("duffel", entity)),
    )
    for page in pages:
        stats.pages += 1
        stats.fetched += len(page)
        sorted_page = validation.validate_page(model, page, "id")
        batcher.reject(sorted_page.rejected)
        for item, _raw in sorted_page.good:
            batcher.add([to_row(item)])
    batcher.flush()
    return stats.finish(requests, started)
