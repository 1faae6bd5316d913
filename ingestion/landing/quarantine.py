"""The quarantine as a dead-letter store: rejected records, and what became of each.

A quarantined record stays where it was written (``data/quarantine/<source>/<entity>/
tenant_id=<id>/<batch>.parquet``). What later became of it is recorded beside it, in
``resolved/<batch>.parquet``: a newer valid version landed ("superseded"), a replay landed it
("replayed"), or a replay found it still failing for another reason ("requarantined", the
current reason quarantined afresh). A record is open until it has a resolution; every file is
written atomically and never changed, so a crash at any point loses nothing.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

import polars as pl

from ingestion.landing.schemas import QUARANTINE, UTC_TS
from ingestion.landing.storage import Location, parquet_source
from ingestion.landing.zone import LandingZone, Rejected, batch_id, write_atomically

RESOLVED_FOLDER = "resolved"

# One row per resolved quarantine entry; an entry is (its quarantine batch, key, payload).
RESOLUTIONS = pl.Schema(
    {
        "_batch_id": pl.String,  # the quarantine batch the entry was written in
        "record_key": pl.String,
        "payload_digest": pl.String,
        "outcome": pl.String,  # superseded | replayed | requarantined
        "detail": pl.String,
        "resolved_at": UTC_TS,
    }
)
ENTRY = ["_batch_id", "record_key", "payload_digest"]


def payload_text(value: object) -> str:
    """A record as JSON exactly as received: Decimals and integers of any size as numbers.

    (``orjson`` refuses integers beyond 64 bits, and ``json`` writes Decimals as strings;
    either would lose or crash on the very records quarantine exists for.)
    """
    return "".join(_json_parts(value))


def _json_parts(value: object) -> Iterable[str]:
    if value is None or isinstance(value, bool | str | float):
        yield json.dumps(value)
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, Decimal):
        yield str(value) if value.is_finite() else json.dumps(str(value))
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + json.dumps(str(key)) + ":"
            yield from _json_parts(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            if i:
                yield ","
            yield from _json_parts(item)
        yield "]"
    else:
        yield json.dumps(str(value))


def digest(text: str) -> str:
    """The identity of a quarantined payload: the same bytes give the same digest."""
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def parse_payload(text: str) -> object:
    """A quarantined payload back as the client decoded it: numbers exact."""
    return json.loads(text, parse_float=Decimal)


def _read(files: list[Location], schema: pl.Schema) -> pl.DataFrame:
    if not files:
        return pl.DataFrame(schema=schema)
    return pl.read_parquet([parquet_source(path) for path in files])


def resolutions(zone: LandingZone, source: str, entity: str, tenant_id: str | None) -> pl.DataFrame:
    """Every resolution recorded for one entity and tenant."""
    folder = zone.quarantine_folder(source, entity, tenant_id) / RESOLVED_FOLDER
    return _read(sorted(folder.glob("*.parquet")), RESOLUTIONS)


def entries(zone: LandingZone, source: str, entity: str, tenant_id: str | None) -> pl.DataFrame:
    """Every quarantined record of one entity and tenant, with its outcome and whether it is
    still open (no resolution yet)."""
    files = sorted(zone.quarantine_folder(source, entity, tenant_id).glob("*.parquet"))
    frame = _read(files, QUARANTINE)
    frame = frame.with_columns(
        payload_digest=pl.col("raw_payload").map_elements(digest, return_dtype=pl.String)
    )
    done = (
        resolutions(zone, source, entity, tenant_id)
        .sort("resolved_at")
        .unique(ENTRY, keep="last")
        .select(*ENTRY, "outcome", "detail", "resolved_at")
    )
    joined = frame.join(done, on=ENTRY, how="left", nulls_equal=True)
    return joined.with_columns(open=pl.col("outcome").is_null()).sort(
        "_loaded_at", maintain_order=True
    )


@dataclass
class Known:
    """What quarantine holds for one entity and tenant, as the sync needs it."""

    payloads: dict[str, set[str]]  # record key -> digests of every payload ever quarantined
    open: dict[str, list[tuple[str, str]]]  # record key -> open entries (batch, digest)

    def holds(self, record_key: object, raw: object) -> bool:
        """This exact payload was quarantined before: a re-delivery of it changes nothing."""
        digests = self.payloads.get(record_key) if isinstance(record_key, str) else None
        return bool(digests) and digest(payload_text(raw)) in digests


def known(zone: LandingZone, source: str, entity: str, tenant_id: str | None) -> Known:
    """Quarantined payloads (to skip re-deliveries) and open entries (to supersede)."""
    frame = entries(zone, source, entity, tenant_id).filter(pl.col("record_key").is_not_null())
    payloads: dict[str, set[str]] = {}
    open_: dict[str, list[tuple[str, str]]] = {}
    for key, batch, sha, is_open in frame.select(
        "record_key", "_batch_id", "payload_digest", "open"
    ).iter_rows():
        payloads.setdefault(key, set()).add(sha)
        if is_open:
            open_.setdefault(key, []).append((batch, sha))
    return Known(payloads, open_)


def resolve(
    zone: LandingZone,
    source: str,
    entity: str,
    tenant_id: str | None,
    resolved: list[tuple[str, str, str, str, str]],  # (batch, key, digest, outcome, detail)
    at: dt.datetime,
) -> None:
    """Record what became of quarantined entries (one atomic file per call)."""
    if not resolved:
        return
    frame = pl.DataFrame(
        {
            "_batch_id": [r[0] for r in resolved],
            "record_key": [r[1] for r in resolved],
            "payload_digest": [r[2] for r in resolved],
            "outcome": [r[3] for r in resolved],
            "detail": [r[4] for r in resolved],
            "resolved_at": [at] * len(resolved),
        },
        schema=RESOLUTIONS,
    )
    name = batch_id("resolved", sorted("|".join(r[:4]) for r in resolved))
    folder = zone.quarantine_folder(source, entity, tenant_id) / RESOLVED_FOLDER
    write_atomically(frame, folder / f"{name}.parquet")


def supersede(
    zone: LandingZone,
    source: str,
    entity: str,
    tenant_id: str | None,
    known_: Known,
    landed_keys: Iterable[str],
    landed_batch: str,
    at: dt.datetime,
) -> int:
    """Close the open entries of records a newer valid version of which has just landed."""
    resolved = []
    for key in set(landed_keys) & known_.open.keys():
        for batch, sha in known_.open.pop(key):
            detail = f"a valid version landed in batch {landed_batch}"
            resolved.append((batch, key, sha, "superseded", detail))
    resolve(zone, source, entity, tenant_id, resolved, at)
    return len(resolved)


def write(
    zone: LandingZone,
    source: str,
    entity: str,
    tenant_id: str | None,
    rejected: list[Rejected],
    loaded_at: dt.datetime,
) -> str | None:
    """Keep rejected records, with why, beside (never inside) the landing zone; the batch id."""
    if not rejected:
        return None
    payloads = [payload_text(r.raw) for r in rejected]
    name = batch_id(
        f"{entity}-rejected",
        sorted(
            f"{r.record_key}|{r.reason}|{digest(p)}"
            for r, p in zip(rejected, payloads, strict=True)
        ),
    )
    frame = pl.DataFrame(
        {
            "tenant_id": [tenant_id] * len(rejected),
            "source": source,
            "entity": entity,
            "record_key": [r.record_key for r in rejected],
            "reason": [r.reason for r in rejected],
            "raw_payload": payloads,
            "_loaded_at": [loaded_at] * len(rejected),
            "_batch_id": name,
        },
        schema=QUARANTINE,
    )
    write_atomically(frame, zone.quarantine_folder(source, entity, tenant_id) / f"{name}.parquet")
    return name


def note(known_: Known, batch: str | None, rejected: list[Rejected]) -> None:
    """Add records just quarantined (in ``batch``) to what ``known_`` holds."""
    if batch is None:
        return
    for item in rejected:
        if item.record_key is None:
            continue
        sha = digest(payload_text(item.raw))
        known_.payloads.setdefault(item.record_key, set()).add(sha)
        known_.open.setdefault(item.record_key, []).append((batch, sha))
