"""Raw API records -> typed landing rows: what every source's decoding shares.

Validation goes through one wire schema per entity (the clients' pydantic models for the
loyalty APIs, the msgspec structs of ``ingestion.duffel.orders`` for Duffel orders), so the
landing zone holds exactly what the platform's code accepts: Decimal money, timezone-aware
instants. One bad record never stops a batch: it is set aside with its reason (naming the
record and the field) and the rest go through.

Fast paths (``ingestion.duffel.orders.order_page``, ``ingestion.loyalty.ledger.ledger_page``)
decode whole pages columnar; the helpers for that are here too. The fast path accepts only a
strict subset of what the schema accepts, in canonical form (UTC "...Z" instants, naive
"YYYY-MM-DDTHH:MM:SS" local times, money as plain decimal text with at most 2 places), and
computes exactly the values the one-by-one path would. Any record outside that subset --
malformed, or merely unusual -- takes the slow path: validated alone, it lands or is
quarantined with its reason.
"""

from __future__ import annotations

import datetime as dt
import re
import zoneinfo
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any, ClassVar, Protocol, TypeVar

import msgspec
import polars as pl
from pydantic import (
    BaseModel,
    TypeAdapter,
    ValidationError,
)

from ingestion.landing.schemas import ENTITIES, MONEY, UTC_TS
from ingestion.landing.zone import Rejected
from tenants.registry import describe_errors

M = TypeVar("M", bound=BaseModel)


def describe(error: ValidationError) -> str:
    """``field 'amount': Input should be a valid decimal`` (every failing field, joined)."""
    return describe_errors(error, "(record)")


_WIRE_ERROR = re.compile(r"(?P<what>.*?)(?: - at `\$(?P<path>[^`]*)`)?", re.DOTALL)


_MISSING = re.compile(r"Object missing required field `(?P<name>[^`]*)`")


def describe_wire(error: msgspec.ValidationError) -> str:
    """A msgspec wire-schema error in the same words: ``field 'slices.0.origin': Expected ...``
    (``metadata.*``: a value of the ``metadata`` object)."""
    match = _WIRE_ERROR.fullmatch(str(error))
    assert match is not None  # the pattern matches any text
    path = re.sub(r"\[(\d+)\]", r".\1", (match["path"] or "").replace("[...]", ".*"))
    what, path = match["what"], path.lstrip(".")
    missing = _MISSING.fullmatch(what)
    if missing:
        path, what = ".".join(p for p in (path, missing["name"]) if p), "Field required"
    return f"field '{path or '(record)'}': {what}"


@dataclass
class Sorted:
    """A page split into the records that validated and the ones that did not."""

    good: list[tuple[Any, dict[str, Any]]] = field(default_factory=list)  # (model, raw)
    rejected: list[Rejected] = field(default_factory=list)


def validate_page(
    model: type[M],
    records: Iterable[dict[str, Any]],
    key: str,
    extra_check: Callable[[M], str | None] | None = None,
) -> Sorted:
    """Validate records one by one so each failure is attributed to its own record."""
    result = Sorted()
    adapter = _adapter(model)
    for raw in records:
        record_key = raw.get(key) if isinstance(raw, dict) else None
        if not isinstance(raw, dict):
            result.rejected.append(Rejected(None, "record is not a JSON object", raw))
            continue
        try:
            parsed = adapter.validate_python(raw)
        except ValidationError as exc:
            result.rejected.append(
                Rejected(text_or_none(record_key), f"{key} {record_key!r}: {describe(exc)}", raw)
            )
            continue
        problem = extra_check(parsed) if extra_check else None
        if problem:
            result.rejected.append(
                Rejected(text_or_none(record_key), f"{key} {record_key!r}: {problem}", raw)
            )
            continue
        result.good.append((parsed, raw))
    return result


@cache
def _adapter(model: type[M]) -> TypeAdapter[M]:
    return TypeAdapter(model)


def text_or_none(value: object) -> str | None:
    return None if value is None else str(value)


def as_utc(value: dt.datetime | None) -> dt.datetime | None:
    return None if value is None else value.astimezone(dt.UTC)


@cache
def _zone(name: str) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(name)


def local_to_utc(local: dt.datetime, time_zone: str | None) -> dt.datetime | None:
    """Duffel's airport-local, offset-less times to UTC, using the airport's time zone."""
    if local.tzinfo is not None:
        return local.astimezone(dt.UTC)
    if not time_zone:
        return None
    return local.replace(tzinfo=_zone(time_zone)).astimezone(dt.UTC)


CENT = Decimal("0.01")


# The landing zone keeps money as Decimal(18, 2): 16 digits before the point, 2 after.
MONEY_LIMIT = Decimal(10) ** 16


MONEY_PLACES = 2


def money_problem(
    name: str, value: Decimal | int | None, places: int = MONEY_PLACES, unit: str | None = None
) -> str | None:
    """Why an amount cannot be landed exactly (as Decimal(18, 2), in a currency with ``places``
    decimal places), or None when it can. Money is never rounded on the way in."""
    if value is None:
        return None
    value = Decimal(value)
    if not value.is_finite() or abs(value) >= MONEY_LIMIT:
        return f"field '{name}': {value} is outside the range of Decimal(18, 2)"
    allowed = f"; {unit} allow {places}" if unit else ""
    if value != value.quantize(CENT):
        return (
            f"field '{name}': {value} has more than 2 decimal places{allowed} "
            "(money is never rounded on the way in)"
        )
    if places < MONEY_PLACES and value != value.quantize(Decimal(1).scaleb(-places)):
        what = unit or "the currency"
        return f"field '{name}': {value} is finer than {what} allow ({places} decimal places)"
    return None


def zone_problem(name: str, time_zone: str | None) -> str | None:
    if time_zone is None:
        return None
    try:
        _zone(time_zone)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return f"field '{name}': unknown time zone {time_zone!r}"
    return None


# Canonical UTC instant: what both the fast path and the pydantic model read identically.
_UTC_TEXT = r"[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?Z"


_UTC_RE = re.compile(_UTC_TEXT)


_UTC_FORMAT = "%Y-%m-%dT%H:%M:%S%.fZ"


# Plain decimal text that fits Decimal(18, 2) exactly.
_MONEY_TEXT = r"-?[0-9]{1,16}(\.[0-9]{1,2})?"


_MONEY_RE = re.compile(_MONEY_TEXT)


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


MICROSECOND = dt.timedelta(microseconds=1)


_LINEAGE_COLUMNS = ("_loaded_at", "_batch_id")


def landing_schema(entity: tuple[str, str]) -> dict[str, pl.DataType]:
    """An entity's landing columns (without the lineage ones), plus ``_idx``: the record's
    position in its page, which keeps rows in page order and ties segments to their order."""
    schema = {k: v for k, v in ENTITIES[entity].items() if k not in _LINEAGE_COLUMNS}
    return {**schema, "_idx": pl.Int32}


class Held(Protocol):
    """What quarantine already holds: an identical re-delivery is not quarantined again."""

    payloads: dict[str, set[str]]

    def holds(self, record_key: object, raw: object) -> bool: ...


class _Nothing:
    payloads: ClassVar[dict[str, set[str]]] = {}

    def holds(self, record_key: object, raw: object) -> bool:
        return False


NOTHING_HELD: Held = _Nothing()


class SlowPath(Exception):
    """This record is outside the fast path's subset: validate it one by one."""


def utc_us(text: str | None) -> int | None:
    """Microseconds since the epoch of a canonical UTC instant (``...Z``); else slow path."""
    if text is None:
        return None
    if _UTC_RE.fullmatch(text) is None:
        raise SlowPath
    return (dt.datetime.fromisoformat(text) - EPOCH) // MICROSECOND  # ValueError: not a real date


def money_text(text: str | None) -> str | None:
    """Plain decimal text that fits Decimal(18, 2); anything else (the model decides) is slow."""
    if text is not None and _MONEY_RE.fullmatch(text) is None:
        raise SlowPath
    return text


_LOCAL_TEXT = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}")


_NAIVE_EPOCH = dt.datetime(1970, 1, 1)


def local_us(text: str, time_zone: str | None) -> int | None:
    """Epoch microseconds (UTC) of an airport-local ``YYYY-MM-DDTHH:MM:SS`` in ``time_zone``,
    exactly as ``local_to_utc`` computes it (``fold=0``: the earlier of two readings of an
    ambiguous wall time); None without a time zone; any other form is slow path."""
    if _LOCAL_TEXT.fullmatch(text) is None:
        raise SlowPath
    local = dt.datetime.fromisoformat(text)  # ValueError: not a real date or time
    if time_zone is None:
        return None
    return (local - _NAIVE_EPOCH) // MICROSECOND - _zone(time_zone).utcoffset(local) // MICROSECOND


def utc_column(name: str) -> tuple[pl.Expr, pl.Expr]:
    """Vectorised ``utc_us``: (parsed instant, ok) for a column of optional UTC instant text."""
    text = pl.col(name)
    parsed = text.str.strptime(UTC_TS, _UTC_FORMAT, strict=False)
    ok = text.is_null() | (text.str.contains(f"^{_UTC_TEXT}$") & parsed.is_not_null())
    return parsed, ok


def money_column(name: str, places: int = 2) -> tuple[pl.Expr, pl.Expr]:
    """Vectorised ``money_text``: (Decimal(18, 2), ok) for a column of optional money text
    with at most ``places`` decimals (anything else goes to the model, which says why)."""
    text = pl.col(name)
    pattern = money_pattern(places)
    return text.cast(MONEY, strict=False), text.is_null() | text.str.contains(f"^{pattern}$")


def rows_frame(
    columns: Sequence[str], rows: list[tuple], schema: dict[str, pl.DataType]
) -> pl.DataFrame:
    """A frame from row tuples, transposed in C (``zip``) rather than built row by row."""
    if not rows:
        return pl.DataFrame(schema={c: schema[c] for c in columns})
    return pl.DataFrame(
        {name: list(values) for name, values in zip(columns, zip(*rows, strict=True), strict=True)},
        schema={c: schema[c] for c in columns},
    )


def dicts_frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def money_pattern(places: int) -> str:
    """Plain decimal text that fits Decimal(18, 2) with at most ``places`` decimals."""
    places = min(places, MONEY_PLACES)
    return r"-?[0-9]{1,16}" + (rf"(\.[0-9]{{1,{places}}})?" if places else "")
