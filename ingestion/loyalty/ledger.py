"""Loyalty ledger transactions and members -> landing rows, ledger pages column by column."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import polars as pl

from clients.loyalty.models import LedgerTransaction, LedgerType, Member
from ingestion.landing.zone import Rejected
from ingestion.validation import (
    MONEY_PLACES,
    NOTHING_HELD,
    Held,
    as_utc,
    dicts_frame,
    landing_schema,
    money_column,
    money_problem,
    utc_column,
    validate_page,
)


def ledger_row(tenant_id: str, txn: LedgerTransaction) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "transaction_id": txn.transaction_id,
        "member_id": txn.member_id,
        "type": txn.type,
        "amount": txn.amount,
        "currency": txn.currency,
        "status": txn.status,
        "reference_id": txn.reference_id,
        "related_transaction_id": txn.related_transaction_id,
        "approval_id": txn.approval_id,
        "description": txn.description,
        "created_at": as_utc(txn.created_at),
        "updated_at": as_utc(txn.updated_at),
    }


def member_row(
    tenant_id: str, member: Member, snapshot_at: dt.datetime, source: str = "member_list"
) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "member_id": member.member_id,
        "tier": member.tier,
        "status": member.status,
        "balance": member.balance,
        "currency": member.currency,
        "snapshot_at": snapshot_at,
        "source": source,
    }


LEDGER_SCHEMA = landing_schema(("loyalty", "ledger_transactions"))


def _hashable(value: object) -> object:
    return value if isinstance(value, str | int | float | type(None)) else None


_LEDGER_TYPES = frozenset(LedgerType.__args__)  # type: ignore[attr-defined]


_STR = frozenset({str})


_OPTIONAL_STR = frozenset({str, type(None)})


_AMOUNT = frozenset({int, Decimal})


# Field -> the Python types (as the client's JSON decoding yields them) the fast path takes.
_LEDGER_FIELDS: dict[str, frozenset[type]] = {
    "transaction_id": _STR,
    "member_id": _STR,
    "type": _STR,
    "amount": _AMOUNT,
    "currency": _STR,
    "status": _STR,
    "reference_id": _OPTIONAL_STR,
    "related_transaction_id": _OPTIONAL_STR,
    "approval_id": _OPTIONAL_STR,
    "description": _OPTIONAL_STR,
    "created_at": _STR,
    "updated_at": _STR,
}


@dataclass
class LedgerPage:
    """One ledger feed page, validated: landing rows (with ``_idx``, a position in ``raw``)
    and the rejected records."""

    rows: pl.DataFrame
    rejected: list[Rejected]
    skipped: int
    slow: int
    raw: list[Any] = field(default_factory=list)


def ledger_problem(
    tenant_id: str, currency: str, places: int = MONEY_PLACES
) -> Callable[[LedgerTransaction], str | None]:
    """Checks beyond the wire format: the tenant's own currency, and an exact amount in it."""

    def check(txn: LedgerTransaction) -> str | None:
        if txn.currency != currency:
            return f"field 'currency': {txn.currency!r} is not {tenant_id}'s currency {currency!r}"
        return money_problem("amount", txn.amount, places, currency)

    return check


def member_problem(
    tenant_id: str, currency: str, places: int = MONEY_PLACES
) -> Callable[[Member], str | None]:
    """A member's balance must land exactly, in the tenant's currency."""

    def check(member: Member) -> str | None:
        if member.currency != currency:
            return (
                f"field 'currency': {member.currency!r} is not {tenant_id}'s currency {currency!r}"
            )
        return money_problem("balance", member.balance, places, currency)

    return check


def ledger_page(
    records: list[Any],
    tenant_id: str,
    currency: str,
    skip: Held = NOTHING_HELD,
    places: int = MONEY_PLACES,
) -> LedgerPage:
    """Validate one ledger feed page (records as the client decoded them) into typed rows.

    Same outcome as ``validate_page(LedgerTransaction, ...)`` + ``ledger_problem`` +
    ``ledger_row`` on every record; column by column instead of record by record. A record
    whose exact payload quarantine already holds is skipped (``skip``).
    """
    skipped = 0
    if skip.payloads:
        kept = [
            r
            for r in records
            if not (
                isinstance(r, dict)
                and _hashable(r.get("transaction_id")) in skip.payloads
                and skip.holds(r.get("transaction_id"), r)
            )
        ]
        skipped = len(records) - len(kept)
        records = kept
    slow: set[int] = set()
    if any(type(r) is not dict for r in records):
        slow.update(i for i, r in enumerate(records) if type(r) is not dict)
    fast = [r if i not in slow else {} for i, r in enumerate(records)] if slow else records
    columns: dict[str, list[Any]] = {}
    for name, allowed in _LEDGER_FIELDS.items():
        values = [r.get(name) for r in fast]
        if not set(map(type, values)) <= allowed:
            bad = [i for i, v in enumerate(values) if type(v) not in allowed]
            slow.update(bad)
            for i in bad:
                values[i] = None
        columns[name] = values
    types = columns["type"]
    if not set(types) <= _LEDGER_TYPES | {None}:
        slow.update(i for i, v in enumerate(types) if v not in _LEDGER_TYPES)
    # Money as its exact text (ints and Decimals alike); never through float.
    columns["amount"] = [None if a is None else str(a) for a in columns["amount"]]
    columns["_idx"] = list(range(len(fast)))
    wire = pl.DataFrame(
        columns,
        schema={**{name: pl.String for name in _LEDGER_FIELDS}, "_idx": pl.Int32},
    )
    created, created_ok = utc_column("created_at")
    updated, updated_ok = utc_column("updated_at")
    amount, amount_ok = money_column("amount", places)
    typed = wire.filter(
        ~pl.col("_idx").is_in(sorted(slow)),
        created_ok,
        updated_ok,
        amount_ok,
        pl.col("amount").is_not_null(),
        pl.col("transaction_id").str.len_bytes() > 0,
        pl.col("member_id").str.len_bytes() > 0,
        pl.col("currency") == currency,
    ).with_columns(
        pl.lit(tenant_id, dtype=pl.String).alias("tenant_id"),
        created_at=created,
        updated_at=updated,
        amount=amount,
    )
    rows = typed.select(pl.col(c).cast(t) for c, t in LEDGER_SCHEMA.items())
    if rows.height + len(slow) < len(fast):
        kept_idx = set(rows["_idx"].to_list())
        slow.update(i for i in range(len(fast)) if i not in kept_idx)
    rejected: list[Rejected] = []
    if slow:
        order = sorted(slow)
        checked = validate_page(
            LedgerTransaction,
            [records[i] for i in order],
            "transaction_id",
            ledger_problem(tenant_id, currency, places),
        )
        rejected = checked.rejected
        # validate_page keeps input order; map the good ones back to their positions.
        good_ids = {id(raw): txn for txn, raw in checked.good}
        slow_rows = [
            {**ledger_row(tenant_id, good_ids[id(records[i])]), "_idx": i}
            for i in order
            if id(records[i]) in good_ids
        ]
        rows = pl.concat([rows, dicts_frame(slow_rows, LEDGER_SCHEMA)]).sort("_idx")
    return LedgerPage(rows, rejected, skipped, len(slow), records)
