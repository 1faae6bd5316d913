"""The generated history: deterministic, consistent across ledger and Duffel, and its anomalies exactly as listed."""

from __future__ import annotations

import csv
import datetime as dt
import json
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl
import pytest

from sandbox.generator import FX_SEED, generate
from sandbox.reference import AIRLINES, airports
from sandbox.seed import REFERENCE_MEMBERS
from tenants.registry import load_registry

ANCHOR = dt.date(2026, 11, 1)


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("history")
    result = generate(6000, 11, out, anchor=ANCHOR, anomaly_rate=0.002)
    return {
        "dir": out,
        "manifest": result.manifest,
        **{
            name: pl.read_parquet(out / f"{name}.parquet")
            for name in ("members", "ledger", "orders")
        },
    }


def _anomalies(history: dict, kind: str) -> list[dict]:
    return [a for a in history["manifest"]["anomalies"] if a["kind"] == kind]


def test_same_seed_gives_identical_history(history: dict, tmp_path: Path) -> None:
    again = generate(6000, 11, tmp_path, anchor=ANCHOR, anomaly_rate=0.002)
    assert again.manifest == history["manifest"]
    for name in ("members", "ledger", "orders"):
        assert pl.read_parquet(tmp_path / f"{name}.parquet").equals(history[name]), name


def test_another_seed_gives_another_history(history: dict, tmp_path: Path) -> None:
    other = generate(6000, 12, tmp_path, anchor=ANCHOR, anomaly_rate=0.002)
    orders = pl.read_parquet(tmp_path / "orders.parquet")
    assert other.manifest["counts"] != history["manifest"]["counts"] or not orders.equals(
        history["orders"]
    )
    assert orders["total_amount"].to_list() != history["orders"]["total_amount"].to_list()


def test_reference_members_are_seeded_exactly(history: dict) -> None:
    members = {r["member_id"]: r for r in history["members"].iter_rows(named=True)}
    for seeded in REFERENCE_MEMBERS:
        row = members[seeded.member_id]
        assert (row["tenant_id"], row["balance"], row["tier"]) == (
            seeded.tenant_id,
            seeded.balance,
            seeded.tier,
        )


def test_member_ids_follow_each_tenant_format(history: dict) -> None:
    registry = load_registry()
    for tenant_id, frame in history["members"].group_by("tenant_id"):
        pattern = registry[tenant_id[0]].member_id_pattern
        assert frame["member_id"].str.contains(pattern).all(), tenant_id
        assert frame["member_id"].n_unique() == frame.height


def test_history_spans_twelve_months_of_real_airports_and_airlines(history: dict) -> None:
    orders = history["orders"].filter(pl.col("raw_override").is_null())
    span = orders["created_at"].max() - orders["created_at"].min()
    assert span >= dt.timedelta(days=360)
    assert set(orders["origin"]) | set(orders["destination"]) <= set(airports())
    assert set(orders["owner_iata"]) <= {code for code, _, _ in AIRLINES}
    assert {"GBP", "EUR", "USD"} <= set(orders["total_currency"])
    # Seasonality: the busiest month carries clearly more bookings than the quietest.
    monthly = orders.group_by(pl.col("created_at").dt.month()).len()["len"]
    assert monthly.max() > 1.3 * monthly.min()
    # Skewed activity: the top 5% of members make far more than 5% of the bookings.
    per_member = orders.group_by("member_id").len().sort("len", descending=True)["len"]
    assert per_member.head(max(1, per_member.len() // 20)).sum() > 0.2 * per_member.sum()


def test_orders_and_ledger_agree_except_planted_anomalies(history: dict) -> None:
    ledger = history["ledger"].filter(pl.col("raw_override").is_null()).unique("transaction_id")
    orders = history["orders"].filter(pl.col("raw_override").is_null())
    deductions = {
        r["transaction_id"]: r
        for r in ledger.filter(pl.col("type") == "deduction").iter_rows(named=True)
    }
    refunds = {
        r["related_transaction_id"]
        for r in ledger.filter(pl.col("type") == "refund").iter_rows(named=True)
    }
    # Every order that names a ledger transaction names a real deduction for the same member and booking.
    for order in orders.filter(pl.col("loyalty_transaction_id").is_not_null()).iter_rows(
        named=True
    ):
        deduction = deductions[order["loyalty_transaction_id"]]
        assert (deduction["member_id"], deduction["reference_id"], deduction["tenant_id"]) == (
            order["member_id"],
            order["booking_id"],
            order["tenant_id"],
        )
    # Every deduction has its order, except the planted ones.
    ordered = set(orders["loyalty_transaction_id"].drop_nulls())
    orphans = {t for t in deductions if t not in ordered}
    assert orphans == {a["transaction_id"] for a in _anomalies(history, "deduction_without_order")}
    # Every paid order that was cancelled has its refund, except the planted ones.
    paid_cancelled = orders.filter(
        pl.col("cancelled_at").is_not_null() & pl.col("paid_at").is_not_null()
    )
    unrefunded = {
        r["loyalty_transaction_id"] for r in paid_cancelled.iter_rows(named=True)
    } - refunds
    assert unrefunded == {
        a["transaction_id"] for a in _anomalies(history, "cancelled_without_refund")
    }
    assert all(
        _anomalies(history, kind)
        for kind in (
            "deduction_without_order",
            "cancelled_without_refund",
            "amount_mismatch",
            "duplicate_delivery",
            "malformed_ledger_record",
            "malformed_order",
        )
    )


def _fx() -> list[tuple[str, dt.date, dt.date, Decimal]]:
    with FX_SEED.open() as handle:
        return [
            (
                r["currency"],
                dt.date.fromisoformat(r["valid_from"]),
                dt.date.fromisoformat(r["valid_to"]),
                Decimal(r["usd_per_unit"]),
            )
            for r in csv.DictReader(handle)
        ]


def test_charges_follow_the_rate_in_force_rounded_up(history: dict) -> None:
    """Re-derive every deduction with Decimal arithmetic, independently of the generator."""
    registry = load_registry()
    fx = _fx()
    deductions = {
        r["transaction_id"]: r
        for r in history["ledger"]
        .filter((pl.col("type") == "deduction") & pl.col("raw_override").is_null())
        .iter_rows(named=True)
    }
    mismatched = {a["transaction_id"] for a in _anomalies(history, "amount_mismatch")}
    found_mismatch, rates_seen = set(), set()
    orders = history["orders"].filter(pl.col("loyalty_transaction_id").is_not_null())
    for order in orders.iter_rows(named=True):
        tenant = registry[order["tenant_id"]]
        deduction = deductions[order["loyalty_transaction_id"]]
        total = order["total_amount"]
        if order["total_currency"] != "USD":
            day = order["created_at"].date()
            rate = next(
                r for c, start, end, r in fx if c == order["total_currency"] and start <= day < end
            )
            usd = (total * rate).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        else:
            usd = total
        usd_per_unit = tenant.currency.usd_per_unit_on(deduction["created_at"].date())
        rates_seen.add((tenant.id, usd_per_unit))
        step = Decimal(1).scaleb(-tenant.currency.decimals)
        expected = (usd / usd_per_unit).quantize(step, ROUND_CEILING)
        assert expected * usd_per_unit >= usd  # the member never pays less than the fare
        if -deduction["amount"] != expected:
            found_mismatch.add(deduction["transaction_id"])
    assert found_mismatch == mismatched
    # The CoffeeChain devaluation on 2026-05-01 is exercised on both sides.
    assert {("coffeechain", Decimal("0.0125")), ("coffeechain", Decimal("0.01"))} <= rates_seen


def test_tenant_rules_hold(history: dict) -> None:
    ledger = history["ledger"].filter(pl.col("raw_override").is_null())
    orders = history["orders"].filter(pl.col("raw_override").is_null())
    assert set(orders.filter(pl.col("tenant_id") == "telcocorp")["cabin_class"]) == {"economy"}
    coffee = ledger.filter(pl.col("tenant_id") == "coffeechain")
    requested = set(coffee.filter(pl.col("type") == "approval_request")["reference_id"])
    big = coffee.filter((pl.col("type") == "deduction") & (pl.col("amount") < -50000))
    assert set(big["reference_id"]) <= requested
    decisions = coffee.filter(pl.col("type") == "approval_decision")
    assert set(decisions["status"]) == {"approved", "rejected"}
    rejected = set(decisions.filter(pl.col("status") == "rejected")["reference_id"])
    assert rejected.isdisjoint(set(coffee.filter(pl.col("type") == "deduction")["reference_id"]))
    fintech = ledger.filter(pl.col("tenant_id") == "fintechapp").unique("transaction_id")
    amounts = {
        r["transaction_id"]: -r["amount"]
        for r in fintech.filter(pl.col("type") == "deduction").iter_rows(named=True)
    }
    cashbacks = fintech.filter(pl.col("type") == "cashback")
    assert cashbacks.height == len(amounts)
    for row in cashbacks.iter_rows(named=True):
        expected = (amounts[row["related_transaction_id"]] * Decimal("0.02")).quantize(
            Decimal("0.01"), ROUND_HALF_EVEN
        )
        assert row["amount"] == expected
    statuses = {
        s
        for c in history["manifest"]["counts"].values()
        for s, n in c["bookings_by_status"].items()
        if n
    }
    assert statuses == {"confirmed", "pending_approval", "rejected", "cancelled", "failed"}


def test_malformed_and_duplicate_deliveries_match_the_manifest(history: dict) -> None:
    ledger, orders = history["ledger"], history["orders"]
    bad_ledger = ledger.filter(pl.col("raw_override").is_not_null())
    assert set(bad_ledger["transaction_id"]) == {
        a["transaction_id"] for a in _anomalies(history, "malformed_ledger_record")
    }
    raw_by_id = dict(zip(bad_ledger["transaction_id"], bad_ledger["raw_override"], strict=True))
    for anomaly in _anomalies(history, "malformed_ledger_record"):
        record = json.loads(raw_by_id[anomaly["transaction_id"]])
        field = anomaly["field"]
        assert field not in record or not _valid(field, record[field]), (field, record)
    bad_orders = orders.filter(pl.col("raw_override").is_not_null())
    assert set(bad_orders["order_id"]) == {
        a["order_id"] for a in _anomalies(history, "malformed_order")
    }
    duplicated = (
        ledger.filter(pl.col("raw_override").is_null())
        .group_by("transaction_id")
        .len()
        .filter(pl.col("len") > 1)
    )
    assert set(duplicated["transaction_id"]) == {
        a["transaction_id"] for a in _anomalies(history, "duplicate_delivery")
    }
    counts = history["manifest"]["counts"]
    assert sum(c["ledger_delivered"] for c in counts.values()) == ledger.height
    assert sum(c["orders_delivered"] for c in counts.values()) == orders.height


def _valid(field: str, value: object) -> bool:
    if field == "amount":
        return isinstance(value, int | float)
    if field == "created_at":
        try:
            dt.datetime.fromisoformat(str(value))
        except ValueError:
            return False
        return True
    return value is not None


def test_feed_order_is_by_update_time(history: dict) -> None:
    for _, frame in history["ledger"].group_by("tenant_id"):
        assert frame["updated_at"].is_sorted()
    for _, frame in history["orders"].group_by("tenant_id"):
        assert frame["created_at"].is_sorted()
