"""The warehouse built by dbt over a generated history: tests pass, money is exact, the
reconciliation mart finds exactly the planted anomalies, and every row is tenant-scoped."""

from __future__ import annotations

import json
import re
from collections import Counter
from decimal import Decimal

import duckdb
import polars as pl
import pytest

from tenants.registry import load_registry
from testing.dbt_build import DbtBuild, dbt_build

CENT = Decimal("0.01")
MONEY_COLUMN = re.compile(r"amount|usd|balance|volume|expected|actual|rate")
ASSET_KEYS = {
    ("loyalty", "ledger_transactions"): ["raw", "loyalty", "ledger_transactions"],
    ("loyalty", "members"): ["raw", "loyalty", "members"],
    ("loyalty", "capabilities"): ["raw", "loyalty", "capabilities"],
    ("duffel", "orders"): ["raw", "duffel", "orders"],
    ("duffel", "order_segments"): ["raw", "duffel", "order_segments"],
    ("duffel", "airlines"): ["raw", "duffel", "airlines"],
    ("duffel", "airports"): ["raw", "duffel", "airports"],
    ("platform", "booking_events"): ["raw", "platform", "booking_events"],
    ("platform", "flight_searches"): ["raw", "platform", "flight_searches"],
    # An entity's quarantine is written by the asset that lands it.
    **{
        ("quarantine", f"{source}__{entity}{kind}"): ["raw", source, entity]
        for source, entity in (
            ("loyalty", "ledger_transactions"),
            ("loyalty", "members"),
            ("duffel", "orders"),
        )
        for kind in ("", "__resolved")
    },
}


def test_dbt_build_passes_models_data_tests_and_unit_tests(built: DbtBuild) -> None:
    assert built.returncode == 0, built.output[-5000:]
    results = built.run_results()
    statuses = Counter(r["status"] for r in results)
    assert set(statuses) <= {"success", "pass"}, statuses
    kinds = Counter(r["unique_id"].split(".")[0] for r in results)
    assert kinds["model"] == 31
    assert kinds["unit_test"] >= 10
    assert kinds["test"] >= 100


def test_sources_carry_the_ingestion_asset_keys(built: DbtBuild) -> None:
    sources = json.loads((built.target / "manifest.json").read_text())["sources"].values()
    keys = {
        (s["source_name"], s["name"]): s["config"]["meta"]["dagster"]["asset_key"] for s in sources
    }
    assert keys == ASSET_KEYS


LEDGER_KINDS = {
    "ledger_missing_deduction",
    "ledger_amount_mismatch",
    "ledger_unknown_deduction",
    "ledger_missing_refund",
}
ORDER_KINDS = {"order_missing", "order_not_cancelled", "order_without_booking"}


def _issue_key(kind: str, tenant_id: str, booking_id: str | None, transaction_id, order_id):
    """What identifies a disagreement: its booking and the ledger record or order in question."""
    assert kind in LEDGER_KINDS | ORDER_KINDS, kind
    return (kind, tenant_id, booking_id, transaction_id if kind in LEDGER_KINDS else order_id)


def test_reconciliation_lists_exactly_the_planted_anomalies(
    warehouse: duckdb.DuckDBPyConnection, manifest: dict
) -> None:
    """Every planted disagreement between the platform's history, the ledgers and Duffel is
    listed once, and nothing else is (0 false positives)."""
    planted = [a for a in manifest["anomalies"] if a["expected_in"] == "reconciliation"]
    assert {a["kind"] for a in planted} == LEDGER_KINDS | ORDER_KINDS
    issues = warehouse.execute(
        "select kind, tenant_id, booking_id, transaction_id, order_id, expected, actual"
        " from marts.reconciliation_issues"
    ).fetchall()
    assert len(issues) == len(planted)
    assert Counter(_issue_key(*i[:5]) for i in issues) == Counter(
        _issue_key(
            a["kind"], a["tenant_id"], a["booking_id"], a.get("transaction_id"), a.get("order_id")
        )
        for a in planted
    )
    by_key = {_issue_key(*i[:5]): i for i in issues}
    for anomaly in planted:
        if anomaly["kind"] != "ledger_amount_mismatch" or "expected_amount" not in anomaly:
            continue
        issue = by_key[
            _issue_key(
                anomaly["kind"],
                anomaly["tenant_id"],
                anomaly["booking_id"],
                anomaly["transaction_id"],
                None,
            )
        ]
        # The mart speaks in units charged (positive), whatever the ledger's sign.
        assert (issue[5], issue[6]) == (
            abs(Decimal(str(anomaly["expected_amount"]))),
            abs(Decimal(str(anomaly["actual_amount"]))),
        )


def test_duplicate_deliveries_collapse_in_staging(
    warehouse: duckdb.DuckDBPyConnection, manifest: dict, built: DbtBuild
) -> None:
    landed = warehouse.execute(
        f"select count(*) from read_parquet('{built.landing_root}/loyalty/ledger_transactions/*/*.parquet')"
    ).fetchone()[0]
    staged = warehouse.execute(
        "select count(*), count(distinct (tenant_id, transaction_id))"
        " from staging.stg_loyalty__ledger_transactions"
    ).fetchone()
    assert staged[0] == staged[1] < landed
    duplicated = [
        a["transaction_id"] for a in manifest["anomalies"] if a["kind"] == "duplicate_delivery"
    ]
    assert duplicated
    counts = warehouse.execute(
        "select count(*) from staging.stg_loyalty__ledger_transactions"
        " where list_contains(?, transaction_id)",
        [duplicated],
    ).fetchone()[0]
    assert counts == len(duplicated)


def test_booking_statuses_match_the_generator(
    warehouse: duckdb.DuckDBPyConnection, manifest: dict
) -> None:
    rows = warehouse.execute(
        "select tenant_id, status, count(*) from marts.bookings group by all"
    ).fetchall()
    derived = {(tenant, status): n for tenant, status, n in rows}
    for tenant, counts in manifest["counts"].items():
        for status, n in counts["bookings_by_status"].items():
            assert derived.get((tenant, status), 0) == n, (tenant, status)


def test_usd_amounts_are_the_booking_apis_to_the_cent(
    warehouse: duckdb.DuckDBPyConnection, history
) -> None:
    """Each charged booking's USD is the one the booking API recorded in its latest event, and
    that amount is the fare priced at the API's rate: the units charged cover it and one minor
    unit less would not. The per-tenant totals are those amounts summed, to the cent."""
    events = pl.read_parquet(history / "events.parquet")
    latest = events.sort("event_id").group_by("tenant_id", "booking_id").last()
    charged = latest.filter(pl.col("loyalty_transaction_id").is_not_null())
    registry = load_registry()
    expected: Counter[str] = Counter()
    for tenant_id, loyalty, usd, rate in charged.select(
        "tenant_id", "loyalty_amount", "usd_amount", "usd_per_unit"
    ).iter_rows():
        minor = Decimal(1).scaleb(-registry[tenant_id].currency.decimals)
        assert loyalty * rate >= usd > (loyalty - minor) * rate, (tenant_id, loyalty, usd, rate)
        assert usd == usd.quantize(CENT)
        expected[tenant_id] += usd
    actual = dict(
        warehouse.execute(
            "select tenant_id, sum(usd_amount) from marts.bookings group by 1"
        ).fetchall()
    )
    assert actual == dict(expected)
    per_booking = dict(
        warehouse.execute(
            "select tenant_id || '/' || booking_id, usd_amount from marts.bookings"
            " where deduction_transaction_id is not null"
        ).fetchall()
    )
    assert per_booking == {
        f"{t}/{b}": usd
        for t, b, usd in charged.select("tenant_id", "booking_id", "usd_amount").iter_rows()
    }


def test_no_money_passes_through_a_float(warehouse: duckdb.DuckDBPyConnection) -> None:
    columns = warehouse.execute(
        "select table_schema, table_name, column_name, data_type from information_schema.columns"
        " where table_schema in ('staging', 'intermediate', 'marts', 'seeds')"
    ).fetchall()
    floats_in_marts = [
        c for c in columns if c[0] == "marts" and c[3] in ("DOUBLE", "FLOAT", "REAL")
    ]
    assert floats_in_marts == []
    money = [c for c in columns if MONEY_COLUMN.search(c[2]) and not c[2].startswith("is_")]
    assert len(money) > 40
    assert [c for c in money if not c[3].startswith("DECIMAL")] == []


def test_every_mart_row_has_a_tenant(warehouse: duckdb.DuckDBPyConnection) -> None:
    tables = [
        name
        for (name,) in warehouse.execute(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
    ]
    assert sorted(tables) == [
        "approvals",
        "booking_failures",
        "booking_funnel",
        "booking_segments",
        "bookings",
        "daily_tenant_metrics",
        "daily_usd_rates",
        "landing_health",
        "ledger_transactions",
        "members",
        "reconciliation_checks",
        "reconciliation_issues",
        "saga_health",
        "tenant_capabilities",
        "tenants",
    ]
    for table in tables:
        total, missing = warehouse.execute(
            f"select count(*), count(*) - count(tenant_id) from marts.{table}"
        ).fetchone()
        assert total > 0 and missing == 0, table


def test_unconvertible_fares_are_flagged_not_dropped(warehouse: duckdb.DuckDBPyConnection) -> None:
    fares = warehouse.execute(
        "select count(*) filter (where fare_amount is not null),"
        " count(*) filter (where fare_usd is not null),"
        " count(*) filter (where is_fare_unconvertible),"
        " count(distinct fare_currency)"
        " from marts.bookings"
    ).fetchone()
    # The generated fares are USD, GBP and EUR within the FX seed: all convert.
    assert fares == (fares[0], fares[0], 0, 3)


@pytest.fixture(scope="module")
def built_on_empty_landing(tmp_path_factory: pytest.TempPathFactory) -> DbtBuild:
    workdir = tmp_path_factory.mktemp("empty")
    return dbt_build(workdir, workdir / "landing-never-written")


def test_build_succeeds_before_anything_has_landed(built_on_empty_landing: DbtBuild) -> None:
    assert built_on_empty_landing.returncode == 0, built_on_empty_landing.output[-5000:]
    with built_on_empty_landing.connect() as con:
        assert con.execute("select count(*) from marts.bookings").fetchone() == (0,)
        assert con.execute("select count(*) from marts.tenants").fetchone() == (3,)
