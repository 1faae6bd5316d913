"""Replay quarantined records after a fix: what now validates lands, what still fails stays.

Quarantine is a dead-letter store. Once the cause of a rejection is fixed (in this code, or
in how a tenant's records are read), an operator replays the tenant's open entries:

    python -m ingestion replay-quarantine --tenant coffeechain [--source loyalty] [--entity members]

or runs the Dagster job ``quarantine_replay_job``. Each open entry's payload goes through
today's validation. A record that now validates lands (once: a version already landed is
recognised, a conflicting one stays quarantined as a conflict); one that still fails stays
quarantined, under today's reason. Every outcome is recorded beside the entry
(``ingestion.landing.quarantine``), so a replay can be repeated or resumed after a crash and neither
loses nor duplicates a record.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from clients.loyalty.models import Member
from ingestion import validation
from ingestion.duffel import orders as duffel_orders
from ingestion.landing import quarantine as dead_letters
from ingestion.landing.batches import SyncStats
from ingestion.landing.schemas import ENTITIES
from ingestion.landing.zone import REPLAY_PREFIX, LandingZone, Rejected, batch_id, land
from ingestion.loyalty import ledger as loyalty_ledger
from ingestion.sync import (
    LEDGER_ENTITY,
    LEDGER_SAME,
    MEMBERS_ENTITY,
    ORDER_SAME,
    ORDERS_ENTITY,
    SEGMENTS_ENTITY,
    _landed_versions,
    _unseen,
    _unseen_orders,
)
from tenants.registry import TenantConfig

REPLAYABLE = (LEDGER_ENTITY, MEMBERS_ENTITY, ORDERS_ENTITY)


@dataclass
class ReplayStats:
    """What one replay did for one entity of one tenant."""

    source: str
    entity: str
    tenant_id: str
    open_before: int = 0
    superseded: int = 0  # a newer valid version had landed since (resolved, not replayed)
    landed: int = 0
    already_landed: int = 0  # validated, and the same version had landed: resolved
    still_failing: int = 0  # stays quarantined under the same reason
    requarantined: int = 0  # stays quarantined, under today's (different) reason
    open_after: int = 0
    batch: str | None = None

    def line(self) -> str:
        return (
            f"{self.source}/{self.entity} for {self.tenant_id}: {self.open_before:,} open; "
            f"landed {self.landed:,}, already landed {self.already_landed:,}, "
            f"superseded {self.superseded:,}, still failing {self.still_failing:,}, "
            f"re-quarantined with a new reason {self.requarantined:,}; "
            f"{self.open_after:,} open now"
        )

    def metadata(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if v is not None}


def replay_quarantine(
    zone: LandingZone,
    tenant: TenantConfig,
    *,
    source: str | None = None,
    entity: str | None = None,
    now: dt.datetime | None = None,
    progress: Callable[[str], None] = lambda _line: None,
) -> list[ReplayStats]:
    """Replay the tenant's open quarantine entries (of one source / entity, or all)."""
    chosen = [
        e
        for e in REPLAYABLE
        if (source is None or e[0] == source) and (entity is None or e[1] == entity)
    ]
    if not chosen:
        names = ", ".join(f"{s}/{e}" for s, e in REPLAYABLE)
        raise ValueError(f"nothing to replay for source={source!r} entity={entity!r} ({names})")
    results = []
    for which in chosen:
        progress(f"replaying {which[0]}/{which[1]} for {tenant.id} ...")
        stats = _replay(zone, tenant, which, now or dt.datetime.now(dt.UTC))
        progress(stats.line())
        results.append(stats)
    return results


def _replay(
    zone: LandingZone, tenant: TenantConfig, which: tuple[str, str], now: dt.datetime
) -> ReplayStats:
    stats = ReplayStats(which[0], which[1], tenant.id)
    open_ = dead_letters.entries(zone, *which, tenant.id).filter(pl.col("open"))
    stats.open_before = open_.height
    if open_.is_empty():
        return stats
    open_ = _close_superseded(zone, which, tenant.id, open_, now, stats)
    if open_.is_empty():
        stats.open_after = 0
        return stats
    # One replay per distinct payload; every entry holding it gets the same outcome.
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in open_.iter_rows(named=True):
        groups.setdefault(row["payload_digest"], []).append(row)
    entries = [same[0] for same in groups.values()]
    raws = [dead_letters.parse_payload(e["raw_payload"]) for e in entries]
    if which == LEDGER_ENTITY:
        outcome = _ledger(zone, tenant, raws)
    elif which == MEMBERS_ENTITY:
        outcome = _members(tenant, raws, entries)
    else:
        outcome = _orders(zone, tenant, raws)
    _settle(zone, which, tenant.id, entries, groups, outcome, now, stats)
    stats.open_after = dead_letters.entries(zone, *which, tenant.id).filter(pl.col("open")).height
    return stats


def _close_superseded(
    zone: LandingZone,
    which: tuple[str, str],
    tenant_id: str,
    open_: pl.DataFrame,
    now: dt.datetime,
    stats: ReplayStats,
) -> pl.DataFrame:
    """Entries a valid version of which landed after them (a pull that stopped before it
    could record so): closed as superseded, not replayed."""
    key = {LEDGER_ENTITY: "transaction_id", MEMBERS_ENTITY: "member_id", ORDERS_ENTITY: "order_id"}[
        which
    ]
    with zone.reading():
        landed = zone.scan(*which, tenant_id)
        if landed is None:
            return open_
        latest = (
            landed.filter(pl.col(key).is_in(open_["record_key"].drop_nulls().implode()))
            .group_by(key)
            .agg(pl.col("_loaded_at").max().alias("_landed_at"))
            .collect()
        )
    joined = open_.join(latest, left_on="record_key", right_on=key, how="left")
    done = joined.filter(pl.col("_landed_at") > pl.col("_loaded_at"))
    dead_letters.resolve(
        zone,
        *which,
        tenant_id,
        [
            (
                r["_batch_id"],
                r["record_key"],
                r["payload_digest"],
                "superseded",
                "a valid version landed later",
            )
            for r in done.iter_rows(named=True)
        ],
        now,
    )
    stats.superseded += done.height
    return joined.filter(~(pl.col("_landed_at") > pl.col("_loaded_at")).fill_null(False)).drop(
        "_landed_at"
    )


@dataclass
class _Outcome:
    """Per replayed entry (by position): landed, already landed, or today's reason."""

    landed: dict[int, None]
    already: set[int]
    failing: dict[int, str]
    frames: dict[tuple[str, str], pl.DataFrame]  # what to land, per entity (children first)


def _ledger(zone: LandingZone, tenant: TenantConfig, raws: list[Any]) -> _Outcome:
    page = loyalty_ledger.ledger_page(
        raws, tenant.id, tenant.currency.code, places=tenant.currency.decimals
    )
    failing = _failing(raws, page.rejected, "transaction_id")
    seen = _landed_versions(
        zone,
        LEDGER_ENTITY,
        tenant.id,
        "transaction_id",
        "updated_at",
        "updated_at",
        None,
        LEDGER_SAME,
    )
    counted = SyncStats()
    before = set(page.rows["_idx"].to_list())
    rows, conflicts = _unseen(page.rows, seen, "transaction_id", "updated_at", counted, page.raw)
    for conflict in conflicts:
        failing[_position(raws, conflict.raw)] = conflict.reason
    kept = set(rows["_idx"].to_list())
    already = before - kept - set(failing)
    return _Outcome(dict.fromkeys(kept), already, failing, {LEDGER_ENTITY: rows.drop("_idx")})


def _members(tenant: TenantConfig, raws: list[Any], entries: list[dict[str, Any]]) -> _Outcome:
    check = loyalty_ledger.member_problem(tenant.id, tenant.currency.code, tenant.currency.decimals)
    failing: dict[int, str] = {}
    rows = []
    landed: dict[int, None] = {}
    for i, (raw, entry) in enumerate(zip(raws, entries, strict=True)):
        one = validation.validate_page(Member, [raw], "member_id", check)
        if one.rejected:
            failing[i] = one.rejected[0].reason
            continue
        member = one.good[0][0]
        # The member's balance as of the snapshot it was delivered in.
        rows.append(loyalty_ledger.member_row(tenant.id, member, entry["_loaded_at"]))
        landed[i] = None
    schema = {k: v for k, v in ENTITIES[MEMBERS_ENTITY].items() if not k.startswith("_")}
    return _Outcome(landed, set(), failing, {MEMBERS_ENTITY: pl.DataFrame(rows, schema=schema)})


def _orders(zone: LandingZone, tenant: TenantConfig, raws: list[Any]) -> _Outcome:
    body = ('{"data":[' + ",".join(dead_letters.payload_text(r) for r in raws) + "]}").encode()
    page = duffel_orders.order_page(body, tenant.id)
    failing = _failing(raws, page.rejected, "id")
    seen = _landed_versions(
        zone, ORDERS_ENTITY, tenant.id, "order_id", "version_at", "created_at", None, ORDER_SAME
    )
    counted = SyncStats()
    before = {row[-1] for row in page.orders}
    orders, segments, conflicts = _unseen_orders(page, seen, counted, body)
    for conflict in conflicts:
        failing[_position(raws, conflict.raw)] = conflict.reason
    kept = {row[-1] for row in orders}
    frames = {
        SEGMENTS_ENTITY: duffel_orders.segments_frame(segments).drop("_idx"),
        ORDERS_ENTITY: duffel_orders.orders_frame(orders).drop("_idx"),
    }
    return _Outcome(dict.fromkeys(kept), before - kept - set(failing), failing, frames)


def _failing(raws: list[Any], rejected: list[Rejected], key: str) -> dict[int, str]:
    return {_position(raws, r.raw): r.reason for r in rejected}


def _position(raws: list[Any], raw: object) -> int:
    """Which replayed payload a rejected record is (the decoders hand back equal copies)."""
    for i, candidate in enumerate(raws):
        if candidate is raw:
            return i
    text = dead_letters.payload_text(raw)
    return next(i for i, c in enumerate(raws) if dead_letters.payload_text(c) == text)


def _settle(
    zone: LandingZone,
    which: tuple[str, str],
    tenant_id: str,
    entries: list[dict[str, Any]],
    groups: dict[str, list[dict[str, Any]]],
    outcome: _Outcome,
    now: dt.datetime,
    stats: ReplayStats,
) -> None:
    """Land what validates, re-quarantine what fails for a new reason, then record each
    entry's outcome (last, so a crash before it only makes the next replay redo the work)."""
    resolved = []
    main = outcome.frames[which]
    if main.height:
        name = batch_id(
            f"{REPLAY_PREFIX}{which[1]}",
            sorted(dead_letters.digest(entries[i]["raw_payload"]) for i in outcome.landed),
        )
        for target, frame in outcome.frames.items():  # children before their parent
            schema = ENTITIES[target]
            land(
                zone,
                *target,
                tenant_id,
                frame.with_columns(
                    pl.lit(now, dtype=schema["_loaded_at"]).alias("_loaded_at"),
                    pl.lit(name).alias("_batch_id"),
                ),
                name,
            )
        stats.landed, stats.batch = main.height, name

    def close(i: int, what: str, detail: str) -> None:
        for entry in groups[entries[i]["payload_digest"]]:
            resolved.append(_entry(entry, what, detail))

    for i in outcome.landed:
        close(i, "replayed", f"landed in batch {stats.batch}")
    for i in outcome.already:
        close(i, "replayed", "the same version had already landed")
    stats.already_landed = len(outcome.already)
    moved = {i: reason for i, reason in outcome.failing.items() if reason != entries[i]["reason"]}
    stats.still_failing = len(outcome.failing) - len(moved)
    if moved:
        rejected = [
            Rejected(
                entries[i]["record_key"],
                reason,
                dead_letters.parse_payload(entries[i]["raw_payload"]),
            )
            for i, reason in moved.items()
        ]
        batch = dead_letters.write(zone, *which, tenant_id, rejected, now)
        for i, reason in moved.items():
            close(i, "requarantined", f"in batch {batch}: {reason}")
        stats.requarantined = len(moved)
    dead_letters.resolve(zone, *which, tenant_id, resolved, now)


def _entry(entry: dict[str, Any], outcome: str, detail: str) -> tuple[str, str, str, str, str]:
    return (entry["_batch_id"], entry["record_key"], entry["payload_digest"], outcome, detail)
