"""JSON rendering of ledger records, member rows and pages, built in polars so feed pages stay fast."""

from __future__ import annotations

import base64
import hashlib

import polars as pl

from sandbox.world import Currency

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S%.6fZ"


class InvalidCursor(ValueError):
    """A cursor that this store did not issue (or issued for another listing or history)."""


def _number(column: str, currency: Currency) -> pl.Expr:
    # A Decimal json-encodes as a string, so the number's text is spliced in by hand.
    if currency.places == 0:
        return pl.col(column).cast(pl.Int64).cast(pl.String)
    return pl.col(column).cast(pl.Decimal(18, currency.places)).cast(pl.String)


def _splice(head: pl.Expr, name: str, number: pl.Expr, tail: pl.Expr) -> pl.Expr:
    """``{head..., "name": number, tail...}`` from two encoded objects and a number's text."""
    return pl.concat_str(
        head.struct.json_encode().str.head(-1),
        pl.lit(f',"{name}":'),
        number,
        pl.lit(","),
        tail.struct.json_encode().str.tail(-1),
    )


def ledger_record_json(currency: Currency) -> pl.Expr:
    """One feed record's JSON text per LEDGER row; ``raw_override`` wins when set."""
    head = pl.struct("transaction_id", "member_id", "type")
    tail = pl.struct(
        pl.lit(currency.code).alias("currency"),
        "status",
        "reference_id",
        "related_transaction_id",
        "approval_id",
        "description",
        pl.col("created_at").dt.strftime(TIMESTAMP_FORMAT),
        pl.col("updated_at").dt.strftime(TIMESTAMP_FORMAT),
    )
    rendered = _splice(head, "amount", _number("amount", currency), tail)
    return (
        pl.when(pl.col("raw_override").is_not_null())
        .then(pl.col("raw_override"))
        .otherwise(rendered)
        .alias("json")
    )


def member_row_json(currency: Currency) -> pl.Expr:
    """One member-list entry's JSON text per MEMBERS row: no names, no emails."""
    head = pl.struct("member_id", "tier", "status")
    tail = pl.struct(pl.lit(currency.code).alias("currency"))
    return _splice(head, "balance", _number("balance", currency), tail).alias("json")


def render(frame: pl.DataFrame, expression: pl.Expr) -> list[str]:
    return frame.select(expression).to_series().to_list()


def page_json(records: list[str], next_cursor: str | None) -> bytes:
    """A ``{"data", "next_cursor", "has_more"}`` page around already-rendered records."""
    cursor = "null" if next_cursor is None else f'"{next_cursor}"'
    more = "false" if next_cursor is None else "true"
    return f'{{"data":[{",".join(records)}],"next_cursor":{cursor},"has_more":{more}}}'.encode()


def _check(scope: str, body: str) -> str:
    return hashlib.blake2b(f"{scope}|{body}".encode(), digest_size=6).hexdigest()


def encode_cursor(scope: str, position: int, generation: int) -> str:
    """An opaque cursor: the next position, the overlay generation and a check value."""
    body = f"{position}.{generation}"
    text = f"{body}.{_check(scope, body)}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(scope: str, cursor: str) -> tuple[int, int]:
    """``(position, generation)`` of a cursor issued for ``scope``, or InvalidCursor."""
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        position, generation, check = text.split(".")
        if check != _check(scope, f"{position}.{generation}") or int(position) < 0:
            raise ValueError(check)
        return int(position), int(generation)
    except ValueError as exc:  # binascii.Error and UnicodeDecodeError are ValueErrors too
        raise InvalidCursor(cursor) from exc
