"""The dashboard's only door to DuckDB: scoped, parameterised reads of the serving snapshot.

The pipeline publishes one DuckDB file per table and a manifest, ``serving.json``, naming
the file of each table (``warehouse.publish``); a publish writes files only for the tables
that changed and then swaps the manifest. The dashboard keeps one in-memory DuckDB instance
with each table file attached read-only under its own alias; a request resolves plain table
names through the manifest it started with (the cursor's ``search_path``), so queries that
join several tables see one consistent version while the next one is published. A file stays
attached, with its cached blocks and memoised results, as long as a manifest in service (or a
request still reading an older one) names it: a publish that changed one table costs the
dashboard that one table. Readers never block a publish: the pipeline only adds files.

A file named for the first time is read back in full before its manifest is served: a corrupt
publish leaves the last good manifest in service (``Snapshot.problem`` says why), and a file
that breaks while served makes reads fail as a whole (``SnapshotUnavailable``), never half-way.

Every public query takes the caller's ``Scope``; tenant ids arriving from the browser are
checked against it (``ScopeError``) before any SQL runs, and every SQL statement binds its
values as parameters.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from booking.domain import Status
from dashboard.scope import Scope
from settings import SERVING_VERSION_FILE, DataLayout

LOG = logging.getLogger(__name__)
VERSION_FILE = SERVING_VERSION_FILE
# The statuses the bookings filter and the charts offer, of the booking API's (booking.domain).
STATUSES = tuple(
    status.value
    for status in (
        Status.CONFIRMED,
        Status.PENDING_APPROVAL,
        Status.REJECTED,
        Status.CANCELLED,
        Status.FAILED,
    )
)
DateField = Literal["created_at", "departure_at"]
SEARCH_MAX = 64
# Grid blocks at or past this row are cut from a memoised sorted list of row ids: sorting a
# million keys for every deep block would cost ~0.1 s each, slicing a list costs nothing.
DEEP_ROWS = 2_000
MEMO_ENTRIES = 4  # sorted id lists kept per snapshot: 8 MB each at a million bookings

# Grid column -> SQL ordering expression; nothing from the browser reaches SQL text except
# through this table.
SORTABLE = {
    "booking_id": "booking_id",
    "tenant_id": "tenant_id",
    "created_at": "created_at",
    "departure_at": "departure_at",
    "status": "status",
    "route": "origin, destination",
    "airline_name": "airline_name",
    "cabin": "cabin",
    "passenger_count": "passenger_count",
    "loyalty_amount": "loyalty_amount",
    "usd_amount": "usd_amount",
    "member_id": "member_id",
    "pnr": "pnr",
}
DEFAULT_SORT: tuple[tuple[str, bool], ...] = (("created_at", True),)

GRID_COLUMNS = (
    "booking_id",
    "tenant_id",
    "member_id",
    "status",
    "created_at",
    "departure_at",
    "origin",
    "destination",
    "airline_name",
    "cabin",
    "passenger_count",
    "loyalty_amount",
    "loyalty_currency",
    "usd_amount",
    "pnr",
)
EXPORT_COLUMNS = (
    "booking_id",
    "tenant_id",
    "member_id",
    "status",
    "created_at",
    "refunded_at",
    "departure_at",
    "origin",
    "destination",
    "airline_iata",
    "airline_name",
    "cabin",
    "passenger_count",
    "loyalty_amount",
    "loyalty_currency",
    "usd_per_unit",
    "usd_amount",
    "fare_amount",
    "fare_currency",
    "fare_usd",
    "cashback_amount",
    "cashback_usd",
    "refund_amount",
    "refund_usd",
    "net_usd",
    "duffel_order_id",
    "pnr",
)


class SnapshotMissing(RuntimeError):
    """No serving snapshot has been published into the data folder yet."""


class SnapshotUnavailable(RuntimeError):
    """The serving snapshot cannot be read, and there is no good one to serve in its place."""


# Table the dashboard cannot do without: a snapshot lacking one is not a snapshot.
_REQUIRED_TABLES = frozenset({"bookings", "members", "tenants", "daily_tenant_metrics"})


def _is_damage(error: Exception) -> bool:
    """Whether a DuckDB error means the file is unreadable (rather than a mistake in our SQL)."""
    damage = (
        duckdb.IOException,
        duckdb.InternalException,
        duckdb.SerializationException,
        duckdb.FatalException,
    )
    return isinstance(error, damage) or type(error) is duckdb.Error  # checksum mismatches


@dataclass(frozen=True)
class SnapshotVersion:
    """What ``serving.json`` says about the snapshot currently in place."""

    version: int
    published_at: dt.datetime
    rows: dict[str, int]


class Memo:
    """Results worth keeping (sorted row ids), least recently used out, with hit counts.

    Callers key their entries by the attached table files they were computed from (see
    ``SessionMemo``), so an entry can never outlive its data and survives a publish that
    left its tables alone.
    """

    def __init__(self, entries: int) -> None:
        self._entries = entries
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, Any] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        """The value under ``key``, computed (outside the lock) if it is not there."""
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                self.hits += 1
                return self._values[key]
            self.misses += 1
        value = compute()
        with self._lock:
            self._values[key] = value
            while len(self._values) > self._entries:
                self._values.popitem(last=False)
        return value


@dataclass
class _File:
    """One table file attached to the dashboard's DuckDB instance, shared by manifests."""

    alias: str
    manifests: int = 0  # manifests in service (or still read) that name it


@dataclass
class _Instance:
    """One manifest in service: its table files, and the requests still reading them."""

    key: tuple[int, int, int, int]  # identity of serving.json when it was read
    version: SnapshotVersion
    files: dict[str, _File]  # table name -> attached file
    users: int = 0

    @property
    def search_path(self) -> str:
        return ",".join(f"{file.alias}.main" for file in self.files.values())


@dataclass(frozen=True)
class SessionMemo:
    """The memo as one session sees it: entries keyed by the files of the tables they read."""

    memo: Memo
    instance: _Instance

    def get(
        self, key: Hashable, compute: Callable[[], Any], tables: Sequence[str] | None = None
    ) -> Any:
        """The value computed from ``tables`` (every table when None) under ``key``."""
        files = self.instance.files
        names = sorted(files) if tables is None else sorted(tables)
        return self.memo.get((tuple(files[n].alias for n in names if n in files), key), compute)


class Snapshot:
    """The serving snapshot of one data folder, read through one long-lived DuckDB instance.

    ``serving.json`` names one file per table (see ``warehouse.publish``). Each table file
    is attached once, read back in full when first named, and stays attached (its cached
    blocks and memoised results with it) for as long as a manifest in service names it, so
    a publish that changed one table costs the dashboard that table only. A request reads
    through the manifest it started with: a consistent set of tables, whatever is published
    meanwhile.
    """

    def __init__(self, data_dir: Path, *, memory_limit: str = "160MB", threads: int = 2) -> None:
        self.serving_dir = DataLayout(Path(data_dir)).serving
        self.path = self.serving_dir / VERSION_FILE
        # Bounded so the dashboard stays a small process; a query that needs more spills to
        # the system temp folder (never next to the snapshot, where publishes swap files).
        self._config = {
            "memory_limit": memory_limit,
            "threads": threads,
            "temp_directory": str(Path(tempfile.gettempdir()) / "dashboard-duckdb-spill"),
        }
        self._lock = threading.Lock()
        self._opening = threading.Lock()  # held while a new manifest's files are read back
        self._con: duckdb.DuckDBPyConnection | None = None
        self._files: dict[str, _File] = {}  # attached table files by manifest path
        self._attached = 0  # attachments made so far (aliases are numbered from it)
        self.read_backs = 0  # table files read back in full (once per file, not per publish)
        self.memo = Memo(MEMO_ENTRIES)
        self._current: _Instance | None = None
        self._refused: tuple[int, int, int, int] | None = None  # a manifest that did not read back
        self._problems: dict[str, str] = {}

    @property
    def problem(self) -> str | None:
        """Why the newest published data cannot be shown, if it cannot."""
        with self._lock:
            return " ".join(self._problems.values()) or None

    def version(self) -> SnapshotVersion | None:
        """The version being served (cheap), or None when there is nothing to serve.

        While the newest manifest or one of its files cannot be read, that is the last good one.
        """
        try:
            self._refresh()
        except (SnapshotMissing, SnapshotUnavailable):
            return None
        with self._lock:
            return None if self._current is None else self._current.version

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A cursor on the snapshot as it is now; its tables stay consistent while held."""
        with self.session() as (cursor, _):
            yield cursor

    @contextmanager
    def session(self) -> Iterator[tuple[duckdb.DuckDBPyConnection, SessionMemo]]:
        """A cursor plus the memo, both on the same manifest (memoised ids match the data)."""
        instance, cursor = self._acquire()
        try:
            cursor.execute(f"set search_path = '{instance.search_path}'")
            yield cursor, SessionMemo(self.memo, instance)
        except duckdb.Error as error:
            if not _is_damage(error):
                raise
            # A file broke while served (overwritten where it lies): stop serving the manifest,
            # and read its files back afresh should a later manifest name them again.
            LOG.warning("serving snapshot unreadable, taken out of service: %s", error)
            with self._lock:
                if self._current is instance:
                    self._current, self._refused = None, instance.key
                for name, file in list(self._files.items()):
                    if file in instance.files.values():
                        del self._files[name]
                self._problems["tables"] = "The serving snapshot is damaged."
            raise SnapshotUnavailable(str(self.path)) from error
        finally:
            cursor.close()
            self._release(instance)

    def close(self) -> None:
        """Stop serving and close the DuckDB instance once no request reads it (shutdown, tests)."""
        with self._lock:
            current, self._current = self._current, None
            if current is not None and current.users == 0:
                self._retire(current)
            if self._con is not None and not self._files:
                self._con.close()
                self._con = None

    def _refresh(self) -> None:
        """Serve the manifest in place if it is new and its files read back; else keep the current."""
        try:
            stat = os.stat(self.path)
        except FileNotFoundError as missing:
            raise SnapshotMissing(str(self.path)) from missing
        key = (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)

        def settled() -> bool:
            with self._lock:
                return key == self._refused or (
                    self._current is not None and self._current.key == key
                )

        if settled():
            return
        # One request reads the new manifest's new files back; meanwhile the others keep the
        # current one (or, before there is one, wait for it).
        if not self._opening.acquire(blocking=self._current is None):
            return
        try:
            if settled():
                return
            try:
                version, tables = self._read_manifest()
            except FileNotFoundError as missing:
                raise SnapshotMissing(str(self.path)) from missing
            except (ValueError, KeyError, TypeError, AttributeError) as bad:
                LOG.warning("%s is unreadable: %s", VERSION_FILE, type(bad).__name__)
                with self._lock:
                    self._refused = key
                    self._problems[VERSION_FILE] = f"{VERSION_FILE} is unreadable."
                return
            try:
                files = self._attach(tables)
            except duckdb.Error as bad:
                LOG.warning("new serving snapshot refused, it does not read back: %s", bad)
                with self._lock:
                    self._refused = key
                    self._problems.pop(VERSION_FILE, None)
                    self._problems["tables"] = "The newest serving snapshot is unreadable."
                return
            with self._lock:
                old, self._current = self._current, _Instance(key, version, files)
                self._problems.pop("tables", None)
                self._problems.pop(VERSION_FILE, None)
                if old is not None and old.users == 0:
                    self._retire(old)
        finally:
            self._opening.release()

    def _read_manifest(self) -> tuple[SnapshotVersion, dict[str, str]]:
        payload = json.loads(self.path.read_text())
        version = SnapshotVersion(
            version=int(payload["version"]),
            published_at=dt.datetime.fromisoformat(payload["published_at"]),
            rows={str(k): int(v) for k, v in payload.get("rows", {}).items()},
        )
        tables = {str(name): str(entry["file"]) for name, entry in payload["tables"].items()}
        return version, tables

    def _attach(self, tables: dict[str, str]) -> dict[str, _File]:
        """The manifest's table files, attaching (and reading back) those not attached yet."""
        if not tables.keys() >= _REQUIRED_TABLES:
            raise duckdb.CatalogException(f"missing {sorted(_REQUIRED_TABLES - tables.keys())}")
        with self._lock:
            if self._con is None:
                self._con = duckdb.connect(":memory:", config=self._config)
                self._con.execute("set TimeZone = 'UTC'")
            # Files already attached are pinned at once: no retiring manifest may detach them.
            known = {
                name: self._files[file] for name, file in tables.items() if file in self._files
            }
            for file in known.values():
                file.manifests += 1
            admin = self._con.cursor()
        new: dict[str, _File] = {}
        try:
            for name, file in tables.items():
                if name in known:
                    continue
                self._attached += 1
                alias = f"t{self._attached}"
                quoted = str(self.serving_dir / file).replace("'", "''")
                admin.execute(f"attach '{quoted}' as {alias} (read_only)")
                new[name] = _File(alias, manifests=1)
                # Every block read once (checksums verified): ~0.1 s per million bookings.
                admin.execute(f'select max(hash(columns(*))) from {alias}.main."{name}"').fetchall()
                self.read_backs += 1
        except BaseException:
            with self._lock:
                self._unpin([*known.values(), *new.values()])
            raise
        finally:
            admin.close()
        with self._lock:
            self._files.update({tables[name]: file for name, file in new.items()})
        LOG.info(
            "serving snapshot tables read back: %s; kept attached: %s",
            ", ".join(sorted(new)) or "none",
            ", ".join(sorted(known)) or "none",
        )
        return {name: known.get(name) or new[name] for name in tables}

    def _unpin(self, files: Iterable[_File]) -> None:
        """Count one manifest less naming ``files``; detach those none names (lock held)."""
        assert self._con is not None
        for file in files:
            file.manifests -= 1
            if file.manifests == 0:
                self._con.execute(f"detach {file.alias}")
                for name in [n for n, f in self._files.items() if f is file]:
                    del self._files[name]

    def _retire(self, instance: _Instance) -> None:
        """Drop a manifest no request reads any more (lock held)."""
        self._unpin(instance.files.values())

    def _acquire(self) -> tuple[_Instance, duckdb.DuckDBPyConnection]:
        self._refresh()
        # Cursors are created under the lock: a DuckDB connection is not thread-safe, its
        # cursors (one per request) are.
        with self._lock:
            if self._current is None or self._con is None:
                raise SnapshotUnavailable(str(self.path))
            self._current.users += 1
            return self._current, self._con.cursor()

    def _release(self, instance: _Instance) -> None:
        with self._lock:
            instance.users -= 1
            if instance is not self._current and instance.users == 0:
                self._retire(instance)


# ---------------------------------------------------------------- scoping and filters


def _tenant_clause(
    scope: Scope, tenant_id: str | None = None, column: str = "tenant_id"
) -> tuple[str, list[Any]]:
    """SQL restricting ``column`` to the scope (and to ``tenant_id`` when one is asked for)."""
    if tenant_id is not None:
        return f"{column} = ?", [scope.check(tenant_id)]
    if scope.is_operator:
        return "true", []
    return f"{column} = ?", [scope.tenant_id]


@dataclass(frozen=True)
class BookingFilters:
    """The explorer's filters, validated: what the browser sends never reaches SQL text."""

    tenant_id: str | None = None
    statuses: tuple[str, ...] = ()
    date_field: DateField = "created_at"
    date_from: dt.date | None = None
    date_to: dt.date | None = None
    search: str = ""

    @classmethod
    def parse(
        cls,
        *,
        tenant_id: object = None,
        statuses: object = None,
        date_field: object = None,
        date_from: object = None,
        date_to: object = None,
        search: object = None,
    ) -> BookingFilters:
        """Build filters from untrusted input, dropping values that are not what they claim."""
        tenant = tenant_id if isinstance(tenant_id, str) and tenant_id else None
        picked = statuses if isinstance(statuses, list | tuple) else [statuses]
        return cls(
            tenant_id=tenant,
            statuses=tuple(s for s in STATUSES if s in picked),
            date_field="departure_at" if date_field == "departure_at" else "created_at",
            date_from=_date(date_from),
            date_to=_date(date_to),
            search=(search.strip()[:SEARCH_MAX] if isinstance(search, str) else ""),
        )

    def where(self, scope: Scope) -> tuple[str, list[Any]]:
        """The WHERE clause and its parameters, scope first."""
        clause, params = _tenant_clause(scope, self.tenant_id)
        parts = [clause]
        if self.statuses:
            parts.append(f"status in ({', '.join('?' * len(self.statuses))})")
            params.extend(self.statuses)
        if self.date_from is not None:
            parts.append(f"{self.date_field} >= ?")
            params.append(_utc_midnight(self.date_from))
        if self.date_to is not None:
            parts.append(f"{self.date_field} < ?")
            params.append(_utc_midnight(self.date_to + dt.timedelta(days=1)))
        if self.search:
            # The term takes each id's own case (booking ids lower, member ids and PNRs upper)
            # so no per-row lower() is needed: a million-row scan stays one cheap pass.
            parts.append(
                "(starts_with(booking_id, ?) or starts_with(member_id, ?)"
                " or starts_with(member_id, ?) or starts_with(pnr, ?))"
            )
            term = self.search
            params.extend([term.lower(), term, term.upper(), term.upper()])
        return " and ".join(parts), params


def _date(value: object) -> dt.date | None:
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str) and value:
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None  # a malformed date from the browser is no filter, not an error
    return None


def _utc_midnight(day: dt.date) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(), tzinfo=dt.UTC)


def parse_sort(sort_model: object) -> tuple[tuple[str, bool], ...]:
    """Grid sort model -> ((column, descending), ...), keeping only sortable columns."""
    if not isinstance(sort_model, list):
        return DEFAULT_SORT
    parsed = tuple(
        (item["colId"], item.get("sort") == "desc")
        for item in sort_model
        if isinstance(item, dict) and item.get("colId") in SORTABLE
    )
    return parsed or DEFAULT_SORT


def _order_by(sort: Sequence[tuple[str, bool]], tiebreak: str) -> str:
    terms = []
    for column, descending in sort:
        direction = "desc" if descending else "asc"
        terms.extend(
            f"{part.strip()} {direction} nulls last" for part in SORTABLE[column].split(",")
        )
    # The row id breaks ties: unique and stable within one table file, and a grid never
    # pages across two files (the memo is keyed by the attached file, see ``SessionMemo``).
    return ", ".join([*terms, tiebreak])


def _dicts(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def _has_table(cursor: duckdb.DuckDBPyConnection, table: str) -> bool:
    # Snapshots published before a table was added to the serving set lack it.
    return bool(
        cursor.execute(
            "select count(*) from duckdb_tables() where table_name = ? and list_contains("
            "string_split(current_setting('search_path'), ','), database_name || '.main')",
            [table],
        ).fetchone()[0]
    )


# ---------------------------------------------------------------- tenants and KPIs


@dataclass(frozen=True)
class Tenant:
    """A tenant as the snapshot describes it: name, loyalty currency and its precision."""

    tenant_id: str
    name: str
    currency: str
    decimals: int
    usd_per_unit: Decimal


@dataclass(frozen=True)
class TenantKpis:
    """The headline numbers of one tenant, in its loyalty currency and in USD."""

    tenant: Tenant
    bookings: int
    cancelled: int
    pending_approval: int
    loyalty_volume: Decimal
    usd_volume: Decimal
    refunds: Decimal
    refunds_usd: Decimal
    cashback: Decimal
    cashback_usd: Decimal
    net_usd: Decimal
    members: int
    liability: Decimal
    liability_usd: Decimal
    statuses: dict[str, int] = field(default_factory=dict)


def tenants(snapshot: Snapshot, scope: Scope) -> list[Tenant]:
    """The tenants in scope, for labels and currency formatting."""
    clause, params = _tenant_clause(scope)
    with snapshot.cursor() as cur:
        cur.execute(
            "select tenant_id, tenant_name, currency, currency_decimals, usd_per_unit"
            f" from tenants where {clause} order by tenant_name",
            params,
        )
        return [Tenant(*row) for row in cur.fetchall()]


_KPIS = """
with b as (
    select
        tenant_id,
        count(*) as bookings,
        count(*) filter (where status = 'confirmed') as confirmed,
        count(*) filter (where status = 'pending_approval') as pending_approval,
        count(*) filter (where status = 'rejected') as rejected,
        count(*) filter (where status = 'cancelled') as cancelled,
        count(*) filter (where status = 'failed') as failed,
        sum(loyalty_amount) as loyalty_volume,
        sum(usd_amount) as usd_volume,
        sum(refund_amount) as refunds,
        sum(refund_usd) as refunds_usd,
        sum(cashback_amount) as cashback,
        sum(cashback_usd) as cashback_usd,
        sum(net_usd) as net_usd
    from bookings where {clause} group by tenant_id
),
m as (
    select tenant_id, count(*) as members, sum(balance) as liability,
        sum(balance_usd) as liability_usd
    from members where {clause} group by tenant_id
)
select
    t.tenant_id, t.tenant_name, t.currency, t.currency_decimals, t.usd_per_unit,
    coalesce(b.bookings, 0), coalesce(b.confirmed, 0), coalesce(b.pending_approval, 0),
    coalesce(b.rejected, 0), coalesce(b.cancelled, 0), coalesce(b.failed, 0),
    coalesce(b.loyalty_volume, 0), coalesce(b.usd_volume, 0), coalesce(b.refunds, 0),
    coalesce(b.refunds_usd, 0), coalesce(b.cashback, 0), coalesce(b.cashback_usd, 0),
    coalesce(b.net_usd, 0), coalesce(m.members, 0), coalesce(m.liability, 0),
    coalesce(m.liability_usd, 0)
from tenants t
left join b on b.tenant_id = t.tenant_id
left join m on m.tenant_id = t.tenant_id
where {t_clause}
order by t.tenant_name
"""


def tenant_kpis(snapshot: Snapshot, scope: Scope, tenant_id: str | None = None) -> list[TenantKpis]:
    """Bookings, volume, cancellations, refunds, cashback, approvals and liability per tenant."""
    clause, params = _tenant_clause(scope, tenant_id)
    t_clause, t_params = _tenant_clause(scope, tenant_id, column="t.tenant_id")
    sql = _KPIS.format(clause=clause, t_clause=t_clause)
    with snapshot.cursor() as cur:
        rows = cur.execute(sql, [*params, *params, *t_params]).fetchall()
    result = []
    for row in rows:
        tenant = Tenant(*row[:5])
        counts = dict(zip(STATUSES, row[6:11], strict=True))
        (volume, usd, refunds, refunds_usd, cashback, cashback_usd, net) = row[11:18]
        result.append(
            TenantKpis(
                tenant=tenant,
                bookings=row[5],
                cancelled=counts["cancelled"],
                pending_approval=counts["pending_approval"],
                loyalty_volume=volume,
                usd_volume=usd,
                refunds=refunds,
                refunds_usd=refunds_usd,
                cashback=cashback,
                cashback_usd=cashback_usd,
                net_usd=net,
                members=row[18],
                liability=row[19],
                liability_usd=row[20],
                statuses=counts,
            )
        )
    return result


@dataclass(frozen=True)
class Breakdown:
    """One slice of a tenant's bookings (a route, an airline, a cabin) with its USD volume."""

    label: str
    bookings: int
    usd_volume: Decimal


@dataclass(frozen=True)
class Breakdowns:
    """A tenant's bookings by route (top N), by airline (top N) and by cabin (all)."""

    routes: list[Breakdown]
    airlines: list[Breakdown]
    cabins: list[Breakdown]


def breakdowns(snapshot: Snapshot, scope: Scope, tenant_id: str, top: int = 10) -> Breakdowns:
    """Routes, airlines and cabins of one tenant's bookings, from a single scan (grouping sets)."""
    clause, params = _tenant_clause(scope, tenant_id)
    # Grouping on the raw columns and labelling the few groups afterwards is cheaper than
    # building a label string for each of a million rows.
    with snapshot.cursor() as cur:
        cur.execute(
            "select grouping(origin, destination), grouping(airline_name, airline_iata),"
            " origin, destination, airline_name, airline_iata, cabin,"
            " count(*) as n, sum(usd_amount) as usd"
            f" from bookings where {clause}"
            " group by grouping sets ((origin, destination), (airline_name, airline_iata), (cabin))",
            params,
        )
        rows = cur.fetchall()
    routes: dict[str, Breakdown] = {}
    airlines: dict[str, Breakdown] = {}
    cabins: dict[str, Breakdown] = {}
    for by_route, by_airline, origin, destination, name, iata, cabin, n, usd in rows:
        if by_route == 0:
            label = (
                "(no flight)"
                if origin is None and destination is None
                else f"{origin or '?'} → {destination or '?'}"
            )
            target = routes
        elif by_airline == 0:
            label, target = name or iata or "unknown", airlines
        else:
            label, target = cabin or "unknown", cabins
        known = target.get(label)  # two raw groups can share a label (name known or not)
        target[label] = (
            Breakdown(label, n, usd)
            if known is None
            else Breakdown(label, known.bookings + n, known.usd_volume + usd)
        )

    def ranked(items: dict[str, Breakdown]) -> list[Breakdown]:
        return sorted(items.values(), key=lambda b: (-b.bookings, b.label))

    return Breakdowns(ranked(routes)[:top], ranked(airlines)[:top], ranked(cabins))


@dataclass(frozen=True)
class TierSummary:
    """Members of one tier and the balance (liability) they hold."""

    tier: str
    members: int
    balance: Decimal
    balance_usd: Decimal


TIER_RANKS = ("bronze", "silver", "gold", "platinum")  # lowest to highest


def tier_rank(tier: str) -> tuple[int, str]:
    """Tiers in rank order (bronze up to platinum), any other after them by name."""
    known = tier.lower()
    return (TIER_RANKS.index(known) if known in TIER_RANKS else len(TIER_RANKS), known)


def members_by_tier(snapshot: Snapshot, scope: Scope, tenant_id: str) -> list[TierSummary]:
    """Members and balances per loyalty tier, in rank order."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        cur.execute(
            "select coalesce(tier, 'none') as tier, count(*), sum(balance), sum(balance_usd)"
            f" from members where {clause} group by 1",
            params,
        )
        return sorted(
            (TierSummary(*row) for row in cur.fetchall()), key=lambda t: tier_rank(t.tier)
        )


# ---------------------------------------------------------------- bookings explorer


@dataclass(frozen=True)
class BookingsPage:
    """One block of the explorer's rows and how many bookings match in all."""

    rows: list[dict[str, Any]]
    total: int


def bookings_page(
    snapshot: Snapshot,
    scope: Scope,
    filters: BookingFilters,
    sort: Sequence[tuple[str, bool]] = DEFAULT_SORT,
    start: int = 0,
    end: int = 100,
) -> BookingsPage:
    """Rows ``start``..``end`` of the filtered, sorted bookings (the grid's infinite model)."""
    start = max(0, int(start))
    size = max(0, min(int(end) - start, 1000))
    where, params = filters.where(scope)
    with snapshot.session() as (cur, memo):
        if start >= DEEP_ROWS:
            return _deep_page(cur, memo, where, params, sort, start, size)
        keys = sorted({part.strip() for column, _ in sort for part in SORTABLE[column].split(",")})
        # One scan finds the matching rows (row id and sort keys only); the count and the page
        # both come from it, and only the page's rows are read in full (late materialisation).
        cur.execute(
            f"with matched as materialized (select rowid as match_rowid, {', '.join(keys)}"
            f" from bookings where {where}),"
            f" page as (select match_rowid from matched order by {_order_by(sort, 'match_rowid')}"
            " limit ? offset ?)"
            f" select (select count(*) from matched) as matched_total, {', '.join(GRID_COLUMNS)}"
            " from bookings semi join page on bookings.rowid = page.match_rowid"
            f" order by {_order_by(sort, 'rowid')}",
            [*params, size, start],
        )
        rows = _dicts(cur)
        if rows or start == 0:
            total = rows[0]["matched_total"] if rows else 0
        else:  # a block past the end: the count alone
            total = cur.execute(f"select count(*) from bookings where {where}", params).fetchone()[
                0
            ]
    for row in rows:
        del row["matched_total"]
    return BookingsPage(rows, total)


def _deep_page(
    cur: duckdb.DuckDBPyConnection,
    memo: SessionMemo,
    where: str,
    params: list[Any],
    sort: Sequence[tuple[str, bool]],
    start: int,
    size: int,
) -> BookingsPage:
    sql = f"select rowid as match_rowid from bookings where {where} order by {_order_by(sort, 'rowid')}"
    ordered: np.ndarray = memo.get(
        ("sorted_rowids", sql, tuple(params)),
        lambda: cur.execute(sql, params).fetchnumpy()["match_rowid"],
        tables=("bookings",),
    )
    wanted = ordered[start : start + size].tolist()
    if not wanted:
        return BookingsPage([], len(ordered))
    cur.execute(
        f"select rowid as match_rowid, {', '.join(GRID_COLUMNS)} from bookings"
        " where rowid = any(?)",
        [wanted],
    )
    position = {rowid: index for index, rowid in enumerate(wanted)}
    rows = sorted(_dicts(cur), key=lambda row: position[row["match_rowid"]])
    for row in rows:
        del row["match_rowid"]
    return BookingsPage(rows, len(ordered))


def iter_bookings(
    snapshot: Snapshot, scope: Scope, filters: BookingFilters, batch_rows: int = 10_000
) -> Iterator[pa.RecordBatch]:
    """Every filtered booking in export columns as Arrow batches: a download never sits in memory.

    The scope is checked here, before the first batch is asked for, so a refusal can still be
    an HTTP status rather than a broken stream. Rows come in the snapshot's own order: sorting a
    million wide rows would hold them all in memory at once.
    """
    where, params = filters.where(scope)
    sql = f"select {', '.join(EXPORT_COLUMNS)} from bookings where {where}"
    return _stream(snapshot, sql, params, batch_rows)


def _stream(
    snapshot: Snapshot, sql: str, params: list[Any], batch_rows: int
) -> Iterator[pa.RecordBatch]:
    with snapshot.cursor() as cur:
        yield from cur.sql(sql, params=params).to_arrow_reader(batch_rows)


# ---------------------------------------------------------------- booking detail


@dataclass(frozen=True)
class BookingDetail:
    """A booking with its flight segments and its ledger transactions."""

    booking: dict[str, Any]
    segments: list[dict[str, Any]]
    transactions: list[dict[str, Any]]


def booking_detail(
    snapshot: Snapshot, scope: Scope, tenant_id: str, booking_id: str
) -> BookingDetail | None:
    """Everything the detail page shows about one booking, or None if there is no such booking."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        cur.execute(
            f"select * from bookings where {clause} and booking_id = ?", [*params, booking_id]
        )
        found = _dicts(cur)
        if not found:
            return None
        segments: list[dict[str, Any]] = []
        if _has_table(cur, "booking_segments"):
            cur.execute(
                "select slice_index, segment_index, origin, destination, departing_at,"
                " arriving_at, marketing_carrier, flight_number, duration_minutes"
                f" from booking_segments where {clause} and booking_id = ?"
                " order by slice_index, segment_index",
                [*params, booking_id],
            )
            segments = _dicts(cur)
        transactions: list[dict[str, Any]] = []
        if _has_table(cur, "ledger_transactions"):
            cur.execute(
                "select transaction_id, type, status, amount, currency, related_transaction_id,"
                f" created_at, updated_at from ledger_transactions where {clause}"
                " and booking_id = ? order by created_at, transaction_id",
                [*params, booking_id],
            )
            transactions = _dicts(cur)
    return BookingDetail(found[0], segments, transactions)


# ---------------------------------------------------------------- data health


@dataclass(frozen=True)
class Health:
    """Freshness of what landed and was published, quarantines and open reconciliation issues."""

    published_at: dt.datetime | None
    landing: list[dict[str, Any]] | None  # None: this snapshot predates landing health
    issue_counts: list[dict[str, Any]]
    issues: list[dict[str, Any]]


def data_health(snapshot: Snapshot, scope: Scope, issue_limit: int = 200) -> Health:
    """Per tenant and source: last landed, quarantined, last published; reconciliation issues."""
    clause, params = _tenant_clause(scope)
    with snapshot.cursor() as cur:
        published_at = None
        if _has_table(cur, "snapshot_info"):
            published_at = cur.execute("select max(published_at) from snapshot_info").fetchone()[0]
        landing = None
        if _has_table(cur, "landing_health"):
            cur.execute(
                "select tenant_id, source, entity, rows_landed, last_loaded_at, quarantined,"
                f" last_quarantined_at from landing_health where {clause}"
                " order by tenant_id, source, entity",
                params,
            )
            landing = _dicts(cur)
        cur.execute(
            "select tenant_id, kind, count(*) as issues from reconciliation_issues"
            f" where {clause} group by all order by tenant_id, kind",
            params,
        )
        counts = _dicts(cur)
        cur.execute(
            "select tenant_id, kind, booking_id, member_id, transaction_id, order_id, currency,"
            f" expected, actual, explanation, booked_at from reconciliation_issues where {clause}"
            " order by booked_at desc nulls last, issue_id limit ?",
            [*params, issue_limit],
        )
        issues = _dicts(cur)
    return Health(published_at, landing, counts, issues)


# ---------------------------------------------------------------- operations

# The marts behind the operations views. A snapshot published before one of them joined the
# serving set lacks it: its view then says "not available yet" (the field is None).
OPERATIONS_TABLES = (
    "booking_funnel",
    "approvals",
    "saga_health",
    "tenant_capabilities",
    "reconciliation_checks",
)
CHECK_NAMES = ("ledger_vs_platform", "duffel_vs_platform", "member_liability")
CAPABILITIES = ("ledger_feed", "member_list", "refunds", "partner_session")


@dataclass(frozen=True)
class FunnelDay:
    """One tenant's searches, and the bookings that followed, on one UTC day."""

    tenant_id: str
    day: dt.date
    searches: int
    searching_members: int
    bookings: int
    confirmed: int
    abandoned_searches: int


@dataclass(frozen=True)
class FunnelTotals:
    """One tenant's funnel summed over the days the snapshot holds."""

    tenant_id: str
    first_day: dt.date | None
    last_day: dt.date | None
    searches: int
    bookings: int
    confirmed: int
    abandoned_searches: int


@dataclass(frozen=True)
class ApprovalSummary:
    """One tenant's approvals: what waits, how long decisions took, how they came out.

    Median and p90 are observed waits (nearest rank: p90 is the longest wait of the fastest
    90 % of decisions), whole seconds, so nothing is interpolated.
    """

    tenant_id: str
    pending: int
    oldest_pending_since: dt.datetime | None
    decided: int
    approved: int
    rejected: int
    median_decision_seconds: int | None
    p90_decision_seconds: int | None


@dataclass(frozen=True)
class SagaWait:
    """Bookings of one tenant waiting in one saga status, and since when the oldest waits."""

    tenant_id: str
    status: str
    bookings: int
    oldest_since: dt.datetime | None
    oldest_age_hours: int | None


@dataclass(frozen=True)
class Capability:
    """What the capability probe found about one optional tenant API feature."""

    tenant_id: str
    capability: str
    declared: bool
    offered: bool | None  # None: never probed
    checked_at: dt.datetime | None
    detail: str | None


@dataclass(frozen=True)
class ReconciliationCheck:
    """Whether one reconciliation check can run for a tenant, and why (or why not)."""

    tenant_id: str
    check_name: str
    available: bool
    reason: str | None


@dataclass(frozen=True)
class Operations:
    """Funnel, approvals, saga health, checks and capabilities, read from one snapshot file.

    A field is None when the snapshot lacks its table (published before it existed).
    """

    funnel: list[FunnelDay] | None
    funnel_totals: list[FunnelTotals] | None
    approvals: list[ApprovalSummary] | None
    pending: list[dict[str, Any]] | None
    saga: list[SagaWait] | None
    capabilities: list[Capability] | None
    checks: list[ReconciliationCheck] | None


_APPROVALS = """
select
    tenant_id,
    count(*) filter (where decided_at is null),
    min(requested_at) filter (where decided_at is null),
    count(*) filter (where decided_at is not null),
    count(*) filter (where decision = 'approved'),
    count(*) filter (where decision = 'rejected'),
    quantile_disc(wait_seconds, 0.5) filter (where decided_at is not null),
    quantile_disc(wait_seconds, 0.9) filter (where decided_at is not null)
from approvals where {clause} group by tenant_id
"""


def operations(
    snapshot: Snapshot, scope: Scope, tenant_id: str | None = None, pending_limit: int = 20
) -> Operations:
    """Everything the operations views show, for the tenants in scope (or the one asked for)."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        present = {table for table in OPERATIONS_TABLES if _has_table(cur, table)}
        in_view = [
            row[0]
            for row in cur.execute(
                f"select tenant_id from tenants where {clause} order by tenant_name", params
            ).fetchall()
        ]
        funnel = totals = None
        if "booking_funnel" in present:
            cur.execute(
                "select tenant_id, day, searches, searching_members, bookings, confirmed,"
                f" abandoned_searches from booking_funnel where {clause} order by day, tenant_id",
                params,
            )
            funnel = [FunnelDay(*row) for row in cur.fetchall()]
            totals = _funnel_totals(funnel, in_view)
        approvals = pending = None
        if "approvals" in present:
            found = {
                row[0]: ApprovalSummary(*row)
                for row in cur.execute(_APPROVALS.format(clause=clause), params).fetchall()
            }
            approvals = [
                found.get(t) or ApprovalSummary(t, 0, None, 0, 0, 0, None, None) for t in in_view
            ]
            cur.execute(
                "select tenant_id, booking_id, member_id, requested_at, loyalty_amount,"
                " loyalty_currency, usd_amount from approvals"
                f" where {clause} and decided_at is null"
                " order by requested_at, tenant_id, booking_id limit ?",
                [*params, pending_limit],
            )
            pending = _dicts(cur)
        saga = None
        if "saga_health" in present:
            cur.execute(
                "select tenant_id, status, bookings, oldest_since, oldest_age_hours"
                f" from saga_health where {clause} order by tenant_id, status",
                params,
            )
            saga = [SagaWait(*row) for row in cur.fetchall()]
        capabilities = (
            _capabilities(cur, clause, params) if "tenant_capabilities" in present else None
        )
        checks = _checks(cur, clause, params) if "reconciliation_checks" in present else None
    return Operations(funnel, totals, approvals, pending, saga, capabilities, checks)


def _rank(order: Sequence[str], name: str) -> tuple[int, str]:
    """Known names in their agreed order, unknown ones after them by name."""
    return (order.index(name) if name in order else len(order), name)


def _checks(
    cur: duckdb.DuckDBPyConnection, clause: str, params: list[Any]
) -> list[ReconciliationCheck]:
    cur.execute(
        "select tenant_id, check_name, available, reason from reconciliation_checks"
        f" where {clause}",
        params,
    )
    found = [ReconciliationCheck(*row) for row in cur.fetchall()]
    return sorted(found, key=lambda c: (c.tenant_id, _rank(CHECK_NAMES, c.check_name)))


def _capabilities(
    cur: duckdb.DuckDBPyConnection, clause: str, params: list[Any]
) -> list[Capability]:
    cur.execute(
        "select tenant_id, capability, declared, offered, checked_at, detail"
        f" from tenant_capabilities where {clause}",
        params,
    )
    found = [Capability(*row) for row in cur.fetchall()]
    return sorted(found, key=lambda c: (c.tenant_id, _rank(CAPABILITIES, c.capability)))


def _funnel_totals(days: Sequence[FunnelDay], in_view: Sequence[str]) -> list[FunnelTotals]:
    """Every tenant in view, zero included, summed over its days."""
    totals = []
    for tenant_id in in_view:
        own = [d for d in days if d.tenant_id == tenant_id]
        totals.append(
            FunnelTotals(
                tenant_id,
                min((d.day for d in own), default=None),
                max((d.day for d in own), default=None),
                sum(d.searches for d in own),
                sum(d.bookings for d in own),
                sum(d.confirmed for d in own),
                sum(d.abandoned_searches for d in own),
            )
        )
    return totals


def checks_and_capabilities(
    snapshot: Snapshot, scope: Scope
) -> tuple[list[ReconciliationCheck] | None, list[Capability] | None]:
    """Which reconciliation checks run and which capabilities were found, for the tenants in
    scope; either is None when the snapshot lacks its table."""
    clause, params = _tenant_clause(scope)
    with snapshot.cursor() as cur:
        checks = _checks(cur, clause, params) if _has_table(cur, "reconciliation_checks") else None
        capabilities = (
            _capabilities(cur, clause, params) if _has_table(cur, "tenant_capabilities") else None
        )
    return checks, capabilities


# ---------------------------------------------------------------- time controls (periods)

Grain = Literal["day", "week", "month"]
GRAINS: tuple[Grain, ...] = ("day", "week", "month")


def bucket_start(day: dt.date, grain: Grain) -> dt.date:
    """The first day of the day, ISO week (Monday) or month holding ``day``."""
    if grain == "week":
        return day - dt.timedelta(days=day.weekday())
    if grain == "month":
        return day.replace(day=1)
    return day


def bucket_end(start: dt.date, grain: Grain) -> dt.date:
    """The last day of the bucket that starts on ``start``."""
    if grain == "week":
        return start + dt.timedelta(days=6)
    if grain == "month":
        following = (start.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
        return following - dt.timedelta(days=1)
    return start


@dataclass(frozen=True)
class Period:
    """A range of whole UTC days, shown per day, week or month."""

    start: dt.date
    end: dt.date
    grain: Grain = "day"

    @classmethod
    def parse(
        cls, start: object, end: object, grain: object, span: tuple[dt.date, dt.date] | None
    ) -> Period | None:
        """From untrusted input: a missing bound is the data's own (``span``), a bad grain is
        "day", bounds given the wrong way round are swapped. None when there is no data."""
        first, last = _date(start), _date(end)
        if span is None and (first is None or last is None):
            return None
        first = first or span[0]  # type: ignore[index]
        last = last or span[1]  # type: ignore[index]
        if first > last:
            first, last = last, first
        picked: Grain = grain if grain in GRAINS else "day"  # type: ignore[assignment]
        return cls(first, last, picked)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def previous(self) -> Period:
        """The period of the same length just before this one."""
        return Period(
            self.start - dt.timedelta(days=self.days),
            self.start - dt.timedelta(days=1),
            self.grain,
        )

    def buckets(self) -> list[dt.date]:
        """The starts of the day, week or month buckets the period touches, in order."""
        starts, current = [], bucket_start(self.start, self.grain)
        while current <= self.end:
            starts.append(current)
            current = bucket_end(current, self.grain) + dt.timedelta(days=1)
        return starts

    def partial(self, bucket: dt.date, today: dt.date) -> bool:
        """A bucket the period cuts, or one that has not ended yet (it holds today)."""
        end = bucket_end(bucket, self.grain)
        return bucket < self.start or end > self.end or end >= today


@dataclass(frozen=True)
class PeriodPoint:
    """One tenant's bookings and USD volume in one bucket of a period."""

    tenant_id: str
    bucket: dt.date
    bookings: int
    usd_volume: Decimal


def activity_span(
    snapshot: Snapshot, scope: Scope, tenant_id: str | None = None
) -> tuple[dt.date, dt.date] | None:
    """The first and last UTC day with activity in scope (the default period)."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        first, last = cur.execute(
            f"select min(metric_date), max(metric_date) from daily_tenant_metrics where {clause}",
            params,
        ).fetchone()
    return None if first is None else (first, last)


def period_activity(
    snapshot: Snapshot, scope: Scope, period: Period, tenant_id: str | None = None
) -> list[PeriodPoint]:
    """Bookings and USD volume per tenant and bucket, summed from the daily mart."""
    clause, params = _tenant_clause(scope, tenant_id)
    grain = period.grain if period.grain in GRAINS else "day"  # only these reach SQL text
    with snapshot.cursor() as cur:
        cur.execute(
            f"select tenant_id, cast(date_trunc('{grain}', metric_date) as date) as bucket,"
            " sum(bookings), sum(usd_volume) from daily_tenant_metrics"
            f" where {clause} and metric_date between ? and ?"
            " group by 1, 2 order by 1, 2",
            [*params, period.start, period.end],
        )
        return [PeriodPoint(t, b, int(n), usd) for t, b, n, usd in cur.fetchall()]


@dataclass(frozen=True)
class RateRange:
    """The loyalty-to-USD rates one tenant's bookings of a period were converted at."""

    tenant_id: str
    currency: str
    low: Decimal
    high: Decimal


def usd_rates(
    snapshot: Snapshot,
    scope: Scope,
    start: dt.date | None,
    end: dt.date | None,
    tenant_id: str | None = None,
) -> dict[str, RateRange] | None:
    """Per tenant, the lowest and highest rate among the bookings made between ``start`` and
    ``end`` (all time when None). None for a snapshot published before the rates mart."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        if not _has_table(cur, "daily_usd_rates"):
            return None
        cur.execute(
            "select tenant_id, max(loyalty_currency), min(min_usd_per_unit),"
            f" max(max_usd_per_unit) from daily_usd_rates where {clause}"
            " and metric_date between coalesce(?, metric_date) and coalesce(?, metric_date)"
            " group by tenant_id",
            [*params, start, end],
        )
        return {row[0]: RateRange(*row) for row in cur.fetchall()}


def failure_reason(
    snapshot: Snapshot, scope: Scope, tenant_id: str, booking_id: str
) -> dict[str, Any] | None:
    """Why a failed booking failed (the booking API's words), or None if nothing says."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        if not _has_table(cur, "booking_failures"):
            return None
        cur.execute(
            "select reason, failed_from, failed_at from booking_failures"
            f" where {clause} and booking_id = ?",
            [*params, booking_id],
        )
        found = _dicts(cur)
    return found[0] if found else None


# ---------------------------------------------------------------- work items (operations)

# Reconciliation issues come from the snapshot; quarantined records from the quarantine store
# itself (the snapshot holds only their counts, and a replay must show its outcome at once).
# What operators did about either lives in the dashboard's own state file (``opsstate``).
WORK_PAGE_SIZE = 20
WORK_STATES = ("open", "acknowledged", "resolved")


@dataclass(frozen=True)
class WorkItem:
    """A reconciliation issue or a quarantined record, as the operations page lists it."""

    kind: Literal["issue", "quarantine"]
    item_id: str
    tenant_id: str
    category: str  # the issue's kind, or the record's "source/entity"
    summary: str  # what disagrees, or why the record was refused
    reference: str | None  # the booking, or the record's key
    seen_at: dt.datetime | None  # booked (issue) or quarantined (record)
    outcome: str | None = None  # quarantine's own resolution (replayed, superseded, ...)


@dataclass(frozen=True)
class WorkFilters:
    """The list's filters and page, as they arrive from the browser (checked here)."""

    tenant_id: str | None = None
    category: str | None = None
    state: str | None = None
    page: int = 1

    @classmethod
    def parse(cls, tenant_id: Any, category: Any, state: Any, page: Any) -> WorkFilters:
        """Blank means "any"; a state outside the known ones is refused, naming the field."""
        state = state or None
        if state is not None and state not in WORK_STATES:
            raise ValueError(f"state: {state!r} is not one of {', '.join(WORK_STATES)}")
        try:
            number = max(1, int(page or 1))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"page: {page!r} is not a page number") from exc
        return cls(tenant_id or None, category or None, state, number)


@dataclass(frozen=True)
class WorkPage:
    """One page of work items with the operators' state of each."""

    items: list[tuple[WorkItem, Any]]  # (item, its latest ItemAction or None)
    total: int
    page: int
    pages: int
    categories: list[str]


def reconciliation_items(
    snapshot: Snapshot, scope: Scope, tenant_id: str | None = None
) -> list[WorkItem]:
    """Every reconciliation issue in scope (of one tenant when asked: checked against the scope)."""
    clause, params = _tenant_clause(scope, tenant_id)
    with snapshot.cursor() as cur:
        cur.execute(
            "select issue_id, tenant_id, kind, explanation, booking_id, order_id,"
            f" transaction_id, booked_at from reconciliation_issues where {clause}"
            " order by booked_at desc nulls last, issue_id",
            params,
        )
        rows = cur.fetchall()
    return [
        WorkItem(
            "issue",
            str(issue_id),
            tenant,
            kind,
            explanation or "",
            booking_id or order_id or transaction_id,
            booked_at,
        )
        for issue_id, tenant, kind, explanation, booking_id, order_id, transaction_id, booked_at in rows
    ]


QUARANTINE_ID_SEP = "|"


def quarantine_item_id(source: str, entity: str, tenant_id: str, batch: str, digest: str) -> str:
    """A quarantined record's id: where it lies and which payload it is."""
    return QUARANTINE_ID_SEP.join((source, entity, tenant_id, batch, digest))


def quarantine_items(data_dir: Path, scope: Scope, tenant_id: str | None = None) -> list[WorkItem]:
    """Every quarantined record in scope, newest first, with quarantine's own outcome."""
    from ingestion.landing import quarantine as dead_letters
    from ingestion.landing.zone import TENANT_LEVEL, LandingZone

    if tenant_id is not None:
        scope.check(tenant_id)
    zone = LandingZone.under(data_dir)
    items = []
    for folder in sorted(zone.quarantine_root.glob(f"*/*/{TENANT_LEVEL}*")):
        tenant = folder.name.removeprefix(TENANT_LEVEL)
        source, entity = folder.parent.parent.name, folder.parent.name
        if not scope.allows(tenant) or (tenant_id is not None and tenant != tenant_id):
            continue
        frame = dead_letters.entries(zone, source, entity, tenant)
        for row in frame.iter_rows(named=True):
            items.append(
                WorkItem(
                    "quarantine",
                    quarantine_item_id(
                        source, entity, tenant, row["_batch_id"], row["payload_digest"]
                    ),
                    tenant,
                    f"{source}/{entity}",
                    row["reason"] or "",
                    row["record_key"],
                    row["_loaded_at"],
                    row["outcome"],
                )
            )
    items.sort(key=lambda i: i.seen_at or dt.datetime.min.replace(tzinfo=dt.UTC), reverse=True)
    return items


def work_item_state(item: WorkItem, action: Any) -> str:
    """open / acknowledged / resolved: the operators' latest action, else quarantine's own
    outcome (a record replayed, superseded or quarantined afresh under a new reason is resolved)."""
    if item.outcome in ("replayed", "superseded", "requarantined"):
        return "resolved"
    return action.state if action is not None else "open"


def work_page(items: Sequence[WorkItem], actions: dict[str, Any], filters: WorkFilters) -> WorkPage:
    """Filter by category and state (the tenant was applied by the reader), then page."""
    categories = sorted({i.category for i in items})
    chosen = [
        (i, actions.get(i.item_id))
        for i in items
        if (filters.category is None or i.category == filters.category)
        and (filters.state is None or work_item_state(i, actions.get(i.item_id)) == filters.state)
    ]
    pages = max(1, -(-len(chosen) // WORK_PAGE_SIZE))
    page = min(filters.page, pages)
    start = (page - 1) * WORK_PAGE_SIZE
    return WorkPage(chosen[start : start + WORK_PAGE_SIZE], len(chosen), page, pages, categories)
