"""The data-access module on a real snapshot: numbers, filters, paging, scope, snapshot swaps."""

from __future__ import annotations

import datetime as dt
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import pytest

from dashboard import data
from dashboard.data import BookingFilters, Snapshot, SnapshotMissing
from dashboard.scope import Scope, ScopeError
from warehouse.publish import publish_snapshot

OPERATOR = Scope("op", "operator")
TELCO = Scope("telco", "staff", "telcocorp")


@pytest.fixture(scope="module")
def snapshot(data_dir: Path) -> Iterator[Snapshot]:
    snap = Snapshot(data_dir)
    yield snap
    snap.close()


def test_kpis_match_the_bookings_and_members_tables(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    expected = {
        row[0]: row[1:]
        for row in snap_sql.execute(
            "select tenant_id, count(*), count(*) filter (where status = 'cancelled'),"
            " count(*) filter (where status = 'pending_approval'), sum(usd_amount),"
            " sum(refund_usd), sum(cashback_usd), sum(loyalty_amount) from bookings group by 1"
        ).fetchall()
    }
    liability = dict(
        snap_sql.execute("select tenant_id, sum(balance_usd) from members group by 1").fetchall()
    )
    found = data.tenant_kpis(snapshot, OPERATOR)
    assert {k.tenant.tenant_id for k in found} == set(expected)
    for k in found:
        assert (
            k.bookings,
            k.cancelled,
            k.pending_approval,
            k.usd_volume,
            k.refunds_usd,
            k.cashback_usd,
            k.loyalty_volume,
        ) == expected[k.tenant.tenant_id]
        assert k.liability_usd == liability[k.tenant.tenant_id]
        assert isinstance(k.usd_volume, Decimal)


def test_staff_scope_sees_its_tenant_only_and_is_refused_others(snapshot: Snapshot) -> None:
    assert [k.tenant.tenant_id for k in data.tenant_kpis(snapshot, TELCO)] == ["telcocorp"]
    span = data.activity_span(snapshot, TELCO)
    assert span is not None
    whole = data.Period(span[0], span[1], "month")
    assert {p.tenant_id for p in data.period_activity(snapshot, TELCO, whole)} == {"telcocorp"}
    assert set(data.usd_rates(snapshot, TELCO, None, None) or {}) == {"telcocorp"}
    page = data.bookings_page(snapshot, TELCO, BookingFilters(), end=1000)
    assert {r["tenant_id"] for r in page.rows} == {"telcocorp"}
    for call in (
        lambda: data.tenant_kpis(snapshot, TELCO, "coffeechain"),
        lambda: data.breakdowns(snapshot, TELCO, "coffeechain"),
        lambda: data.members_by_tier(snapshot, TELCO, "coffeechain"),
        lambda: data.period_activity(snapshot, TELCO, whole, "coffeechain"),
        lambda: data.usd_rates(snapshot, TELCO, None, None, "coffeechain"),
        lambda: data.failure_reason(snapshot, TELCO, "coffeechain", "bkg_x"),
        lambda: data.bookings_page(snapshot, TELCO, BookingFilters(tenant_id="coffeechain")),
        lambda: data.iter_bookings(snapshot, TELCO, BookingFilters(tenant_id="coffeechain")),
        lambda: data.booking_detail(snapshot, TELCO, "coffeechain", "bkg_x"),
    ):
        with pytest.raises(ScopeError):
            call()
    health = data.data_health(snapshot, TELCO)
    assert {r["tenant_id"] for r in health.landing or []} <= {"telcocorp"}
    assert {r["tenant_id"] for r in health.issues} <= {"telcocorp"}


def test_filters_search_sort_and_paging(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    cancelled = snap_sql.execute(
        "select count(*) from bookings where status = 'cancelled' and tenant_id = 'coffeechain'"
    ).fetchone()[0]
    filters = BookingFilters(tenant_id="coffeechain", statuses=("cancelled",))
    assert data.bookings_page(snapshot, OPERATOR, filters).total == cancelled

    day = dt.date(2026, 6, 1)
    in_june = snap_sql.execute(
        "select count(*) from bookings where departure_at >= ? and departure_at < ?",
        [dt.datetime(2026, 6, 1, tzinfo=dt.UTC), dt.datetime(2026, 7, 1, tzinfo=dt.UTC)],
    ).fetchone()[0]
    june = BookingFilters(date_field="departure_at", date_from=day, date_to=dt.date(2026, 6, 30))
    assert data.bookings_page(snapshot, OPERATOR, june).total == in_june

    pnr, booking_id = snap_sql.execute(
        "select pnr, booking_id from bookings where pnr is not null order by booking_id limit 1"
    ).fetchone()
    found = data.bookings_page(snapshot, OPERATOR, BookingFilters(search=pnr.lower()))
    assert booking_id in {r["booking_id"] for r in found.rows}

    ascending = data.bookings_page(snapshot, OPERATOR, BookingFilters(), (("usd_amount", False),))
    amounts = [r["usd_amount"] for r in ascending.rows]
    assert amounts == sorted(amounts)
    whole = data.bookings_page(snapshot, OPERATOR, BookingFilters(), start=0, end=100).rows
    halves = [
        *data.bookings_page(snapshot, OPERATOR, BookingFilters(), start=0, end=50).rows,
        *data.bookings_page(snapshot, OPERATOR, BookingFilters(), start=50, end=100).rows,
    ]
    assert whole == halves
    created = [r["created_at"] for r in whole]
    assert created == sorted(created, reverse=True)
    beyond = data.bookings_page(snapshot, OPERATOR, BookingFilters(), start=10**7, end=10**7 + 100)
    everything = snap_sql.execute("select count(*) from bookings").fetchone()[0]
    assert beyond.rows == [] and beyond.total == everything


def test_deep_blocks_come_from_the_memoised_order_and_agree_with_sql(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    start = data.DEEP_ROWS + 7
    for sort, order in (
        (data.DEFAULT_SORT, "created_at desc nulls last, rowid"),
        ((("usd_amount", False),), "usd_amount asc nulls last, rowid"),
    ):
        expected = [
            r[0]
            for r in snap_sql.execute(
                f"select booking_id from bookings order by {order} limit 50 offset ?", [start]
            ).fetchall()
        ]
        page = data.bookings_page(snapshot, OPERATOR, BookingFilters(), sort, start, start + 50)
        assert [r["booking_id"] for r in page.rows] == expected
        assert page.total == snap_sql.execute("select count(*) from bookings").fetchone()[0]


def test_untrusted_input_never_reaches_sql_text() -> None:
    parsed = BookingFilters.parse(
        tenant_id="",
        statuses=["cancelled", "x') or 1=1 --"],
        date_field="created_at; drop table bookings",
        date_from="not a date",
        date_to="2026-01-31",
        search="  BKG_" + "x" * 200,
    )
    assert parsed.tenant_id is None and parsed.statuses == ("cancelled",)
    assert parsed.date_field == "created_at" and parsed.date_from is None
    assert parsed.date_to == dt.date(2026, 1, 31) and len(parsed.search) == data.SEARCH_MAX
    sort = data.parse_sort([{"colId": "usd_amount; drop table bookings", "sort": "asc"}])
    assert sort == data.DEFAULT_SORT


def test_export_streams_every_filtered_row(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    expected = {
        row[0]
        for row in snap_sql.execute(
            "select booking_id from bookings where tenant_id = 'telcocorp' and status = 'confirmed'"
        ).fetchall()
    }
    filters = BookingFilters(statuses=("confirmed",))
    batches = list(data.iter_bookings(snapshot, TELCO, filters, batch_rows=100))
    assert len(batches) > 1 and batches[0].schema.names == list(data.EXPORT_COLUMNS)
    exported = [b for batch in batches for b in batch.column("booking_id").to_pylist()]
    assert set(exported) == expected and len(exported) == len(expected)


def test_booking_detail_has_segments_and_ledger(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    tenant, booking, segments, transactions = snap_sql.execute(
        "select b.tenant_id, b.booking_id,"
        " (select count(*) from booking_segments s where s.tenant_id = b.tenant_id and s.booking_id = b.booking_id),"
        " (select count(*) from ledger_transactions l where l.tenant_id = b.tenant_id and l.booking_id = b.booking_id)"
        " from bookings b where b.status = 'cancelled' and b.refund_transaction_id is not null"
        " order by b.booking_id limit 1"
    ).fetchone()
    found = data.booking_detail(snapshot, OPERATOR, tenant, booking)
    assert found is not None and found.booking["booking_id"] == booking
    assert len(found.segments) == segments > 0
    assert len(found.transactions) == transactions >= 2  # the deduction and its refund
    assert data.booking_detail(snapshot, OPERATOR, tenant, "bkg_missing") is None


def test_breakdowns_match_group_bys(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    found = data.breakdowns(snapshot, OPERATOR, "coffeechain", top=5)
    airlines = snap_sql.execute(
        "select coalesce(airline_name, airline_iata, 'unknown') as a, count(*) as n,"
        " sum(usd_amount) from bookings where tenant_id = 'coffeechain'"
        " group by a order by n desc, a limit 5"
    ).fetchall()
    assert [(b.label, b.bookings, b.usd_volume) for b in found.airlines] == airlines
    cabins = snap_sql.execute(
        "select count(*) from bookings where tenant_id = 'coffeechain'"
    ).fetchone()[0]
    assert sum(b.bookings for b in found.cabins) == cabins
    assert len(found.routes) == 5


def test_health_lists_landing_and_reconciliation(
    snapshot: Snapshot, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    health = data.data_health(snapshot, OPERATOR)
    issues = snap_sql.execute("select count(*) from reconciliation_issues").fetchone()[0]
    assert sum(r["issues"] for r in health.issue_counts) == issues
    assert health.landing and {r["tenant_id"] for r in health.landing} == {
        "coffeechain",
        "fintechapp",
        "telcocorp",
    }
    assert health.published_at is not None


def test_a_publish_is_seen_by_the_next_query_and_never_breaks_one_in_flight(
    data_dir: Path, tmp_path: Path
) -> None:
    serving = tmp_path / "serving"
    publish_snapshot(data_dir / "warehouse.duckdb", serving)
    smaller = tmp_path / "smaller.duckdb"
    shutil.copyfile(data_dir / "warehouse.duckdb", smaller)
    with duckdb.connect(str(smaller)) as con:
        con.execute("delete from marts.bookings where tenant_id = 'telcocorp'")
    snap = Snapshot(tmp_path)
    try:
        before = data.bookings_page(snap, OPERATOR, BookingFilters()).total
        with snap.cursor() as held:  # a request still reading the old file
            publish_snapshot(smaller, serving)
            after = data.bookings_page(snap, OPERATOR, BookingFilters()).total
            assert held.execute("select count(*) from bookings").fetchone()[0] == before
        assert after < before
        assert data.bookings_page(snap, TELCO, BookingFilters()).total == 0
    finally:
        snap.close()


def test_no_snapshot_is_reported_not_crashed(tmp_path: Path) -> None:
    snap = Snapshot(tmp_path)
    assert snap.version() is None
    with pytest.raises(SnapshotMissing):
        data.tenant_kpis(snap, OPERATOR)
