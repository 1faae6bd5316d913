"""Load a generated history into the store, as if the booking API had made those bookings.

``python -m sandbox generate`` writes ``bookings.parquet`` (the store's rows) and
``events.parquet`` (the event feed, ids from 1 in commit order) next to the tenants' ledgers
and Duffel's orders. This module bulk-inserts both into an empty store in ONE transaction
(SQLite: ``executemany`` on the driver's cursor; PostgreSQL: ``COPY``), then moves the event
sequence past the last imported id, so the API serves the history from
``/api/v1/admin/events`` and its booking routes and its own events continue after it.

A store that already holds this very history is left as it is (the import is idempotent); a
store holding anything else is refused with a clear error, never merged into.
"""

from __future__ import annotations

import dataclasses
import io
import time
from decimal import Decimal
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from booking.minor_units import minor_text
from booking.store.db import create_store_engine, migrate
from booking.store.tables import BookingRow, EventRow, EventSequenceRow
from tenants.pricing import load_fx
from tenants.registry import load_registry

# How SQLAlchemy's SQLite DateTime stores an instant (naive UTC), and PostgreSQL reads it.
STORE_TIME = "%Y-%m-%d %H:%M:%S%.6f"
CHUNK = 50_000  # rows per executemany / COPY write
SLICE = 200_000  # rows turned into the store's form at a time
# Companions of the member on a booking with several passengers.
COMPANIONS = ("Alex", "Sam", "Robin", "Kim", "Jordan", "Charlie")
OFFER_LIFETIME_MINUTES = 30
MAX_PASSENGERS = 9  # Duffel's limit per order


class HistoryImportError(RuntimeError):
    """The history cannot be imported (missing files, or a store holding other bookings)."""


@dataclasses.dataclass(frozen=True)
class ImportResult:
    bookings: int
    events: int
    last_event_id: int
    seconds: float
    already: bool = False  # the store held this history already: nothing was written


def _read(history_dir: Path) -> tuple[pl.DataFrame, pl.LazyFrame]:
    """The bookings (read whole: a million are a few hundred MB) and the events (scanned: read
    a slice at a time while they go into the store)."""
    paths = {name: history_dir / f"{name}.parquet" for name in ("bookings", "events")}
    for name, path in paths.items():
        if not path.exists():
            raise HistoryImportError(
                f"{path} is missing: generate the history with `python -m sandbox generate "
                f"--out {history_dir}` (it writes the platform's {name} too)"
            )
    return pl.read_parquet(paths["bookings"]), pl.scan_parquet(paths["events"])


def _rate_texts() -> tuple[dict[Decimal, str], dict[Decimal, str]]:
    """Exact rate texts as the booking API writes them: (FX rates of fares, from the FX seed;
    loyalty currencies' USD per unit, from the tenants)."""
    fx = {Decimal(1): "1"}  # USD fares
    for period in load_fx():
        fx[period.usd_per_unit] = format(period.usd_per_unit, "f")
    units: dict[Decimal, str] = {}
    for tenant in load_registry().values():
        for rate in (
            tenant.currency.usd_per_unit,
            *(p.usd_per_unit for p in tenant.currency.rate_history),
        ):
            units[rate] = format(rate, "f")
    return fx, units


def _rate_text(column: str, values: pl.Series, texts: dict[Decimal, str]) -> pl.Expr:
    """Rates as the text the booking API stored (``values``: the column, to map its few
    distinct rates once)."""
    mapping = {
        str(value): texts.get(value, format(value.normalize(), "f"))
        for value in values.drop_nulls().unique().to_list()
    }
    return pl.col(column).cast(pl.String).replace_strict(mapping, default=None)


def _iso(column: str) -> pl.Expr:
    return pl.col(column).dt.strftime("%Y-%m-%dT%H:%M:%S%.6fZ")


def _store_time(column: str) -> pl.Expr:
    return pl.col(column).dt.replace_time_zone(None).dt.strftime(STORE_TIME)


def _json_text(column: str) -> pl.Expr:
    """A string column as a JSON string literal (null as JSON null)."""
    escaped = pl.col(column).str.replace_all("\\", "\\\\", literal=True)
    escaped = escaped.str.replace_all('"', '\\"', literal=True)
    return (pl.lit('"') + escaped + pl.lit('"')).fill_null("null")


def _fill(template: str, *values: pl.Expr) -> pl.Expr:
    """``template`` with each ``%s`` replaced by the next expression's text (JSON templates:
    ``pl.format`` takes no literal braces)."""
    pieces = template.split("%s")
    if len(pieces) != len(values) + 1:
        raise ValueError(f"{template!r} takes {len(pieces) - 1} values, {len(values)} given")
    parts: list[pl.Expr] = []
    for piece, value in zip(pieces, [*values, None], strict=True):
        if piece:
            parts.append(pl.lit(piece))
        if value is not None:
            parts.append(value)
    return pl.concat_str(parts)


def booking_rows(bookings: pl.DataFrame) -> pl.DataFrame:
    """The store's ``bookings`` columns, with the flight and passengers as the API keeps them."""
    money = _fill(
        '{"amount":%s,"currency":%s,"usd_equivalent":%s,"loyalty_amount":%s,"loyalty_currency":%s}',
        _json_text("fare_amount"),
        _json_text("fare_currency"),
        _json_text("usd_text"),
        _json_text("loyalty_text"),
        _json_text("loyalty_currency"),
    )
    frame = bookings.with_columns(
        (
            (pl.col("usd_cents") // 100).cast(pl.String)
            + "."
            + (pl.col("usd_cents") % 100).cast(pl.String).str.zfill(2)
        ).alias("usd_text"),
        minor_text(pl.col("loyalty_minor"), pl.col("loyalty_decimals")).alias("loyalty_text"),
    )
    ret = pl.when(pl.col("return_departure").is_null()).then(pl.lit("null"))
    ret = ret.otherwise(
        _fill(
            '{"departure":{"airport":%s,"time":%s,"terminal":null},'
            '"arrival":{"airport":%s,"time":null,"terminal":null},"duration":null}',
            _json_text("destination"),
            _json_text("return_text"),
            _json_text("origin"),
        )
    )
    frame = frame.with_columns(
        _iso("outbound_departure").alias("outbound_text"),
        _iso("return_departure").alias("return_text"),
        (pl.col("created_at") + pl.duration(minutes=OFFER_LIFETIME_MINUTES)).alias(
            "offer_expires_at"
        ),
    )
    frame = frame.with_columns(_iso("offer_expires_at").alias("expires_text"))
    flight = _fill(
        '{"id":%s,"airline":{"code":%s,"name":null},"flight_number":%s,'
        '"departure":{"airport":%s,"time":%s,"terminal":null},'
        '"arrival":{"airport":%s,"time":null,"terminal":null},"duration":null,"stops":%s,'
        '"return":%s,"price":%s,"available_seats":null,"cabin_class":%s,"expires_at":%s}',
        _json_text("offer_id"),
        _json_text("owner_iata"),
        _json_text("flight_number"),
        _json_text("origin"),
        _json_text("outbound_text"),
        _json_text("destination"),
        pl.when(pl.col("via").is_null()).then(pl.lit("0")).otherwise(pl.lit("1")),
        ret,
        money,
        _json_text("cabin_class"),
        _json_text("expires_text"),
    )

    def passenger(k: int) -> pl.Expr:
        name = _json_text("given_name") if k == 0 else pl.lit(f'"{COMPANIONS[(k - 1) % 6]}"')
        return _fill(
            '{"type":"adult","first_name":%s,"last_name":%s,"duffel_passenger_id":"pas_%s_'
            + str(k)
            + '"}',
            name,
            _json_text("family_name"),
            pl.col("offer_id").str.slice(4),
        )

    people = [passenger(0)] + [
        pl.when(pl.col("passenger_count") > k)
        .then(pl.lit(",") + passenger(k))
        .otherwise(pl.lit(""))
        for k in range(1, MAX_PASSENGERS)
    ]
    passengers = pl.concat_str([pl.lit("["), *people, pl.lit("]")])
    return frame.select(
        "id",
        "tenant_id",
        "member_id",
        "status",
        "offer_id",
        "cabin_class",
        flight.alias("flight"),
        passengers.alias("passengers"),
        pl.lit(None, dtype=pl.String).alias("contact"),
        pl.col("outbound_departure").dt.strftime("%Y-%m-%d").alias("departure_date"),
        "flight_number",
        (pl.col("origin") + "-" + pl.col("destination")).alias("route"),
        _store_time("offer_expires_at").alias("offer_expires_at"),
        "fare_amount",
        "fare_currency",
        "fx_rate",
        "usd_cents",
        "usd_per_unit",
        "loyalty_minor",
        "loyalty_currency",
        "loyalty_decimals",
        "cashback_minor",
        "loyalty_transaction_id",
        "approval_id",
        pl.when(pl.col("approval_id").is_not_null())
        .then(
            pl.format(
                "Booking exceeds the approval threshold ({} {})",
                pl.col("loyalty_text"),
                pl.col("loyalty_currency"),
            )
        )
        .alias("approval_reason"),
        pl.lit(None, dtype=pl.String).alias("estimated_approval_time"),
        pl.lit(None, dtype=pl.String).alias("approval_note"),
        "duffel_order_id",
        "booking_reference",
        pl.lit(None, dtype=pl.String).alias("tickets"),
        "duffel_cancellation_id",
        _store_time("duffel_cancelled_at").alias("duffel_cancelled_at"),
        pl.col("cancel_requested").cast(pl.Int8),
        "cancel_reason",
        pl.lit(1, dtype=pl.Int8).alias("refund_requested"),
        "refund_transaction_id",
        "refund_minor",
        _store_time("refunded_at").alias("refunded_at"),
        _store_time("refunded_at").alias("refund_attempted_at"),
        "failure_code",
        "failure_reason",
        pl.lit(None, dtype=pl.String).alias("failure_details"),
        pl.lit(None, dtype=pl.String).alias("reconcile_phase"),
        pl.lit(None, dtype=pl.String).alias("reconcile_deadline"),
        pl.lit(None, dtype=pl.String).alias("lease_owner"),
        pl.lit(None, dtype=pl.String).alias("lease_until"),
        _store_time("created_at").alias("created_at"),
        _store_time("updated_at").alias("updated_at"),
    )


def with_decimals(events: pl.DataFrame, bookings: pl.DataFrame) -> pl.DataFrame:
    """The events with their loyalty currency's decimals (the feed renders amounts by them),
    each checked to be of a booking of the history."""
    unknown = events.filter(~pl.col("booking_id").is_in(bookings["id"].implode()))
    if unknown.height:
        raise HistoryImportError(
            f"events.parquet: event {unknown['event_id'][0]} is of booking "
            f"{unknown['booking_id'][0]}, which bookings.parquet lacks"
        )
    decimals = bookings.select("loyalty_currency", "loyalty_decimals").unique()
    return events.join(decimals, on="loyalty_currency", how="left", maintain_order="left")


def event_rows(events: pl.DataFrame, bookings: pl.DataFrame) -> pl.DataFrame:
    """The store's ``booking_events`` columns: amounts back to integer minor units."""
    fx_texts, unit_texts = _rate_texts()
    frame = events if "loyalty_decimals" in events.columns else with_decimals(events, bookings)

    def minor(column: str, places: pl.Expr | int) -> pl.Expr:
        scale = (
            pl.lit(10, dtype=pl.Int64).pow(places) if not isinstance(places, int) else 10**places
        )
        return (pl.col(column) * scale).cast(pl.Int64)

    places = pl.col("loyalty_decimals")
    return frame.select(
        pl.col("event_id").alias("id"),
        "booking_id",
        "tenant_id",
        "member_id",
        "type",
        "from_state",
        "to_state",
        minor("loyalty_amount", places).alias("loyalty_minor"),
        "loyalty_currency",
        "loyalty_decimals",
        minor("cashback_amount", 2).alias("cashback_minor"),
        minor("refund_amount", places).alias("refund_minor"),
        minor("usd_amount", 2).alias("usd_cents"),
        _rate_text("usd_per_unit", events["usd_per_unit"], unit_texts).alias("usd_per_unit"),
        pl.col("fare_amount").cast(pl.String),
        "fare_currency",
        _rate_text("fx_rate", events["fx_rate"], fx_texts).alias("fx_rate"),
        "loyalty_transaction_id",
        "refund_transaction_id",
        "duffel_order_id",
        "detail",
        "actor",
        _store_time("occurred_at").alias("occurred_at"),
    )


def _check_columns(frame: pl.DataFrame, table: sa.Table) -> None:
    expected = [c.name for c in table.columns]
    if sorted(frame.columns) != sorted(expected):
        raise HistoryImportError(
            f"{table.name}: the import writes {sorted(frame.columns)}, the store has {expected}"
        )


def _without_empty_columns(frame: pl.DataFrame) -> pl.DataFrame:
    """Columns that are NULL in every row are left out of the insert (they default to NULL)."""
    return frame.select(c for c in frame.columns if frame[c].null_count() < frame.height)


def _insert_sqlite(connection: sa.Connection, table: str, frame: pl.DataFrame) -> None:
    frame = _without_empty_columns(frame)
    cursor = connection.connection.driver_connection.cursor()
    columns = ", ".join(frame.columns)
    marks = ", ".join("?" for _ in frame.columns)
    sql = f"INSERT INTO {table} ({columns}) VALUES ({marks})"
    for offset in range(0, frame.height, CHUNK):
        cursor.executemany(sql, frame.slice(offset, CHUNK).iter_rows())
    cursor.close()


def _copy_postgres(connection: sa.Connection, table: str, frame: pl.DataFrame) -> None:
    frame = _without_empty_columns(frame)
    cursor = connection.connection.driver_connection.cursor()
    columns = ", ".join(frame.columns)
    # Booleans travel as 0/1 in the frame (SQLite's form); PostgreSQL wants true/false.
    frame = frame.with_columns(
        pl.col(name).cast(pl.Boolean)
        for name in ("cancel_requested", "refund_requested")
        if name in frame.columns
    )
    with cursor.copy(f"COPY {table} ({columns}) FROM STDIN (FORMAT csv)") as copy:
        for offset in range(0, frame.height, CHUNK):
            buffer = io.BytesIO()
            frame.slice(offset, CHUNK).write_csv(buffer, include_header=False)
            copy.write(buffer.getvalue())
    cursor.close()


def _secondary_indexes(
    connection: sa.Connection, tables: tuple[str, ...], postgres: bool
) -> list[tuple[str, str]]:
    """(name, exact CREATE statement) of every index on ``tables`` but the primary keys."""
    if postgres:
        query = sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
            "AND tablename IN :tables AND indexname NOT IN (SELECT conname FROM pg_constraint)"
        ).bindparams(sa.bindparam("tables", expanding=True))
    else:
        # Indexes without SQL are the automatic ones of primary keys and unique constraints.
        query = sa.text(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
            "AND tbl_name IN :tables AND sql IS NOT NULL"
        ).bindparams(sa.bindparam("tables", expanding=True))
    return [(name, sql) for name, sql in connection.execute(query, {"tables": list(tables)})]


def import_history(url: str, history_dir: Path) -> ImportResult:
    """Bulk-insert the history's bookings and events into the store at ``url`` (migrated
    first); a store already holding this history is left alone, any other is refused."""
    started = time.perf_counter()
    bookings, events = _read(history_dir)
    count, last = events.select(pl.len(), pl.col("event_id").max()).collect().row(0)
    last_event_id = int(last or 0)
    engine = create_store_engine(url)
    try:
        migrate(engine)
        with engine.connect() as connection:
            held = connection.scalar(sa.select(sa.func.count()).select_from(BookingRow))
            held_events = connection.scalar(sa.select(sa.func.count()).select_from(EventRow))
            if held or held_events:
                if bookings.height:
                    ends = [bookings["id"][0], bookings["id"][-1]]
                    found = connection.scalar(
                        sa.select(sa.func.count())
                        .select_from(BookingRow)
                        .where(BookingRow.id.in_(ends))
                    )
                    # Bookings made since (the demo's traffic, say) are the store's own.
                    if found == len(set(ends)) and held >= bookings.height:
                        return ImportResult(
                            held, held_events, last_event_id, time.perf_counter() - started, True
                        )
                raise HistoryImportError(
                    f"the booking store already holds {held:,} bookings and {held_events:,} "
                    f"events that are not the history in {history_dir}; import into an empty "
                    "store (a new SQLite file or database)"
                )
        _check_columns(booking_rows(bookings.head(1)), BookingRow.__table__)
        _check_columns(
            event_rows(with_decimals(events.head(1).collect(), bookings), bookings),
            EventRow.__table__,
        )
        bookings = bookings.sort("id")  # the primary key's index grows at its end
        postgres = engine.dialect.name == "postgresql"
        insert = _copy_postgres if postgres else _insert_sqlite
        with engine.begin() as connection:
            if not postgres:
                # Room for the indexes being built (KiB; the connection's own setting).
                connection.exec_driver_sql("PRAGMA cache_size=-262144")
            tables = (BookingRow.__tablename__, EventRow.__tablename__)
            # Secondary indexes are built once after the rows are in, not row by row.
            indexes = _secondary_indexes(connection, tables, postgres)
            for name, _ in indexes:
                connection.exec_driver_sql(f"DROP INDEX {name}")
            # A slice at a time, so the rows as the store takes them never all sit in memory.
            for offset in range(0, bookings.height, SLICE):
                rows = booking_rows(bookings.slice(offset, SLICE))
                insert(connection, BookingRow.__tablename__, rows)
            for offset in range(0, count, SLICE):
                chunk = with_decimals(events.slice(offset, SLICE).collect(), bookings)
                insert(connection, EventRow.__tablename__, event_rows(chunk, bookings))
            for _, definition in indexes:
                connection.exec_driver_sql(definition)
            connection.execute(
                sa.update(EventSequenceRow)
                .where(EventSequenceRow.name == "events", EventSequenceRow.value < last_event_id)
                .values(value=last_event_id)
            )
    finally:
        engine.dispose()
    return ImportResult(bookings.height, count, last_event_id, time.perf_counter() - started)


def describe(result: ImportResult, history_dir: Path) -> str:
    if result.already:
        return (
            f"booking store: already holds the history of {history_dir} "
            f"({result.bookings:,} bookings, {result.events:,} events); nothing imported"
        )
    return (
        f"booking store: imported {result.bookings:,} bookings and {result.events:,} events "
        f"from {history_dir} in {result.seconds:.1f} s; event ids continue after "
        f"{result.last_event_id:,}"
    )
