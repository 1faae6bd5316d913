"""The generated history: deterministic; the booking API's events, the tenants' ledgers and
Duffel's orders agree with each other; its anomalies are exactly as listed."""

from __future__ import annotations

import datetime as dt
import json
from decimal import ROUND_HALF_EVEN, Decimal
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest

from booking.domain import INITIAL, Status, can_transition, event_type
from ingestion.landing.schemas import BOOKING_EVENTS
from ingestion.landing.zone import LandingZone
from ingestion.platform.events import landed_event_cursor
from sandbox.duffel.render import order_json, wire_row
from sandbox.generator import ANOMALY_KINDS, RECONCILIATION_KINDS, generate
from sandbox.reference import AIRLINES, airports
from sandbox.seed import REFERENCE_MEMBERS
from tenants.pricing import fare_to_usd, loyalty_units_for_usd
from tenants.registry import load_registry
from testing.landing_from_history import write_landing

ANCHOR = dt.date(2026, 11, 1)
TABLES = ("members", "ledger", "orders", "bookings", "events")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("history")
    result = generate(6000, 11, out, anchor=ANCHOR, anomaly_rate=0.002)
    return {
        "dir": out,
        "manifest": result.manifest,
        **{name: pl.read_parquet(out / f"{name}.parquet") for name in TABLES},
    }


def _anomalies(history: dict, kind: str) -> list[dict]:
    return [a for a in history["manifest"]["anomalies"] if a["kind"] == kind]


def test_same_seed_gives_identical_history(history: dict, tmp_path: Path) -> None:
    again = generate(6000, 11, tmp_path, anchor=ANCHOR, anomaly_rate=0.002)
    assert again.manifest == history["manifest"]
    for name in TABLES:
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


def _last_events(history: dict) -> dict[str, dict]:
    """Each booking's latest event: the platform's record of where it stands."""
    events = history["events"].sort("event_id")
    return {
        r["booking_id"]: r for r in events.unique("booking_id", keep="last").iter_rows(named=True)
    }


def test_events_have_the_landed_feed_columns_in_commit_order(history: dict) -> None:
    events = history["events"]
    expected = {k: v for k, v in BOOKING_EVENTS.items() if not k.startswith("_")}
    assert dict(events.schema) == expected
    assert events["event_id"].to_list() == list(range(1, events.height + 1))
    assert events["occurred_at"].is_sorted()
    assert history["manifest"]["last_event_id"] == events.height
    assert events["booking_id"].str.contains(r"^bkg_[0-9a-f]{20}$").all()
    assert set(events["booking_id"]) == set(history["bookings"]["id"])
    assert history["bookings"]["id"].n_unique() == history["bookings"].height


def test_each_booking_follows_the_saga(history: dict) -> None:
    """Every booking's events are a path of booking/domain.py's transitions, typed as the
    repository types them; operators (and only they) decide approvals."""
    status = dict(history["bookings"].select("id", "status").iter_rows())
    paths: dict[str, list[dict]] = {}
    for event in history["events"].iter_rows(named=True):
        paths.setdefault(event["booking_id"], []).append(event)
    shapes = set()
    for booking_id, path in paths.items():
        previous = None
        for event in path:
            current = Status(event["to_state"])
            assert event["from_state"] == (previous.value if previous else None), path
            assert can_transition(previous, current), path
            assert event["type"] == event_type(current)
            decided = previous is Status.PENDING_APPROVAL
            assert (event["actor"] is not None) == decided, event
            if decided:
                assert event["actor"].startswith("operator:")
            previous = current
        assert Status(path[0]["to_state"]) in INITIAL
        assert path[-1]["to_state"] == status[booking_id]
        shapes.add(tuple(e["to_state"] for e in path))
    assert shapes == {
        ("charging", "ordering", "confirmed"),
        ("charging", "ordering", "confirmed", "cancelling", "cancelled"),
        ("charging", "failed"),
        ("pending_approval",),
        ("pending_approval", "rejected"),
        ("pending_approval", "charging", "ordering", "confirmed"),
        ("pending_approval", "charging", "ordering", "confirmed", "cancelling", "cancelled"),
    }


def test_prices_follow_the_booking_api_pricing(history: dict) -> None:
    """Every event's USD amount, FX rate, loyalty amount and rate are what tenants/pricing.py
    gives for its fare on the day it was priced: at creation, again when approved."""
    registry = load_registry()
    rates_seen = set()
    price: dict[str, tuple] = {}
    for event in history["events"].iter_rows(named=True):
        booking_id = event["booking_id"]
        if event["from_state"] in (None, "pending_approval") and event["to_state"] in (
            "charging",
            "pending_approval",
        ):
            day = event["occurred_at"].date()
            usd, fx = fare_to_usd(event["fare_amount"], event["fare_currency"], day)
            tenant = registry[event["tenant_id"]]
            units, rate = loyalty_units_for_usd(usd, tenant.currency, day)
            price[booking_id] = (usd, fx, units, rate)
            rates_seen.add((tenant.id, rate))
        usd, fx, units, rate = price[booking_id]
        assert (
            event["usd_amount"],
            event["fx_rate"],
            event["loyalty_amount"],
            event["usd_per_unit"],
        ) == (usd, fx, units, rate), event
    # The CoffeeChain devaluation on 2026-05-01 is exercised on both sides.
    assert {("coffeechain", Decimal("0.0125")), ("coffeechain", Decimal("0.01"))} <= rates_seen


def _kinds(history: dict, kind: str, key: str) -> set:
    return {a[key] for a in _anomalies(history, kind)}


def test_platform_ledger_and_duffel_agree_except_planted_anomalies(history: dict) -> None:
    """The platform's records are the truth: each disagreement of the ledger or Duffel with
    them is a planted anomaly of its kind, and every planted one is there to be found."""
    latest = _last_events(history)
    ledger = (
        history["ledger"]
        .filter(pl.col("raw_override").is_null())
        .unique("transaction_id", keep="first", maintain_order=True)
    )
    entries = {r["transaction_id"]: r for r in ledger.iter_rows(named=True)}
    orders = {
        r["order_id"]: r
        for r in history["orders"].filter(pl.col("raw_override").is_null()).iter_rows(named=True)
    }
    cashback_of = {
        r["related_transaction_id"]: r["amount"]
        for r in entries.values()
        if r["type"] == "cashback"
    }
    found = {kind: set() for kind in RECONCILIATION_KINDS}
    charged, refunded, ordered = set(), set(), set()
    for booking_id, last in latest.items():
        txn, refund, order_id = (
            last["loyalty_transaction_id"],
            last["refund_transaction_id"],
            last["duffel_order_id"],
        )
        if txn is None:
            # Never charged: no deduction and no order for it anywhere.
            assert last["to_state"] in ("pending_approval", "rejected", "failed")
            assert order_id is None and refund is None
            continue
        charged.add(txn)
        deduction = entries.get(txn)
        if deduction is None:
            found["ledger_missing_deduction"].add(txn)
        else:
            assert deduction["type"] == "deduction"
            assert (deduction["reference_id"], deduction["member_id"], deduction["tenant_id"]) == (
                booking_id,
                last["member_id"],
                last["tenant_id"],
            )
            if -deduction["amount"] != last["loyalty_amount"]:
                found["ledger_amount_mismatch"].add(txn)
            # The tenant's cashback is what the platform recorded from its answer.
            assert cashback_of.get(txn) == last["cashback_amount"], last
        if refund is not None:
            refunded.add(refund)
            assert last["to_state"] == "cancelled"
            entry = entries.get(refund)
            if entry is None:
                found["ledger_missing_refund"].add(refund)
            else:
                assert (entry["type"], entry["related_transaction_id"], entry["amount"]) == (
                    "refund",
                    txn,
                    last["refund_amount"],
                )
                assert last["refund_amount"] == last["loyalty_amount"]
        assert order_id is not None
        ordered.add(order_id)
        order = orders.get(order_id)
        if order is None:
            found["order_missing"].add(order_id)
            continue
        assert (
            order["booking_id"],
            order["tenant_id"],
            order["member_id"],
            order["loyalty_transaction_id"],
            order["total_amount"],
            order["total_currency"],
        ) == (
            booking_id,
            last["tenant_id"],
            last["member_id"],
            txn,
            last["fare_amount"],
            last["fare_currency"],
        )
        assert order["paid_at"] is not None and order["order_type"] == "instant"
        live = order["cancelled_at"] is None
        if last["to_state"] == "cancelled" and live:
            found["order_not_cancelled"].add(order_id)
        else:
            assert live == (last["to_state"] != "cancelled"), order
    # Records the platform never made.
    for txn, entry in entries.items():
        if entry["type"] == "deduction" and txn not in charged:
            assert entry["reference_id"] not in latest
            found["ledger_unknown_deduction"].add(txn)
        if entry["type"] == "refund":
            assert txn in refunded, entry
        if entry["type"] == "cashback":
            assert entry["related_transaction_id"] in entries
    for order_id, order in orders.items():
        if order_id not in ordered:
            assert order["booking_id"] not in latest
            found["order_without_booking"].add(order_id)
    expected_key = {
        "ledger_missing_deduction": "transaction_id",
        "ledger_amount_mismatch": "transaction_id",
        "ledger_unknown_deduction": "transaction_id",
        "ledger_missing_refund": "transaction_id",
        "order_missing": "order_id",
        "order_not_cancelled": "order_id",
        "order_without_booking": "order_id",
    }
    for kind, key in expected_key.items():
        assert found[kind] == _kinds(history, kind, key), kind
        assert found[kind], f"no {kind} planted"


def test_manifest_describes_each_reconciliation_anomaly(history: dict) -> None:
    latest = _last_events(history)
    planted = [a for a in history["manifest"]["anomalies"] if a["expected_in"] == "reconciliation"]
    assert {a["kind"] for a in planted} == set(RECONCILIATION_KINDS)
    targets = set()
    for anomaly in planted:
        assert anomaly["check"] == (
            "ledger_vs_platform" if anomaly["kind"].startswith("ledger_") else "duffel_vs_platform"
        )
        if anomaly["kind"] in ("ledger_unknown_deduction", "order_without_booking"):
            assert anomaly["booking_id"] is None
            continue
        last = latest[anomaly["booking_id"]]
        assert (anomaly["tenant_id"], anomaly["member_id"]) == (
            last["tenant_id"],
            last["member_id"],
        )
        assert anomaly["order_id"] == last["duffel_order_id"]
        # One anomaly per planted booking: nothing else about it disagrees.
        assert anomaly["booking_id"] not in targets
        targets.add(anomaly["booking_id"])
        if anomaly["kind"] == "ledger_amount_mismatch":
            assert -Decimal(anomaly["expected_amount"]) == last["loyalty_amount"]
            assert Decimal(anomaly["actual_amount"]) != Decimal(anomaly["expected_amount"])
        if anomaly["kind"] == "ledger_missing_refund":
            assert anomaly["transaction_id"] == last["refund_transaction_id"]
            assert anomaly["deduction_transaction_id"] == last["loyalty_transaction_id"]
        if anomaly["kind"] == "ledger_missing_deduction":
            assert anomaly["transaction_id"] == last["loyalty_transaction_id"]
    duplicated = {a["booking_id"] for a in _anomalies(history, "duplicate_delivery")}
    assert duplicated.isdisjoint(targets)


def test_duffel_orders_carry_the_booking_api_metadata(history: dict) -> None:
    """Rendered as the Duffel stand-in serves them: metadata as booking/service.py sets it."""
    orders = history["orders"].filter(
        pl.col("raw_override").is_null() & pl.col("booking_id").is_not_null()
    )
    row = orders.row(0, named=True)
    record = json.loads(order_json(wire_row(row)))
    assert record["metadata"] == {
        "booking_id": row["booking_id"],
        "tenant_id": row["tenant_id"],
        "member_id": row["member_id"],
        "loyalty_transaction_id": row["loyalty_transaction_id"],
    }
    assert record["type"] == "instant"
    assert record["payment_status"]["paid_at"] is not None


def test_tenant_rules_hold(history: dict) -> None:
    ledger = history["ledger"].filter(pl.col("raw_override").is_null())
    orders = history["orders"].filter(pl.col("raw_override").is_null())
    events = history["events"]
    assert set(orders.filter(pl.col("tenant_id") == "telcocorp")["cabin_class"]) == {"economy"}
    # CoffeeChain: bookings above its threshold wait for an operator; the tenant's approval
    # check leaves an approval request in its ledger; a rejected booking is never charged.
    coffee = ledger.filter(pl.col("tenant_id") == "coffeechain")
    requested = set(coffee.filter(pl.col("type") == "approval_request")["reference_id"])
    waited = set(events.filter(pl.col("to_state") == "pending_approval")["booking_id"])
    assert requested == waited
    first = events.filter(pl.col("from_state").is_null())
    big = first.filter((pl.col("tenant_id") == "coffeechain") & (pl.col("loyalty_amount") > 50000))
    assert set(big["booking_id"]) == waited
    rejected = set(events.filter(pl.col("to_state") == "rejected")["booking_id"])
    assert rejected and rejected.isdisjoint(
        set(coffee.filter(pl.col("type") == "deduction")["reference_id"])
    )
    assert "approval_decision" not in set(ledger["type"])  # operators decide in the platform
    # FintechApp: 2% cashback, half-even to the cent, on what the platform charged.
    charged = events.filter(
        (pl.col("to_state") == "ordering") & (pl.col("tenant_id") == "fintechapp")
    )
    assert charged.height
    for row in charged.iter_rows(named=True):
        expected = (row["loyalty_amount"] * Decimal("0.02")).quantize(
            Decimal("0.01"), ROUND_HALF_EVEN
        )
        assert row["cashback_amount"] == expected
    assert events.filter(pl.col("tenant_id") != "fintechapp")["cashback_amount"].null_count() == (
        events.filter(pl.col("tenant_id") != "fintechapp").height
    )
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


def test_the_landing_shortcut_lands_the_events_as_the_platform_asset_does(
    history: dict, tmp_path: Path
) -> None:
    landed = write_landing(history["dir"], tmp_path / "landing", batch_rows=1000)
    zone = LandingZone(root=tmp_path / "landing", quarantine_root=tmp_path / "quarantine")
    events = history["events"]
    assert landed["booking_events"] == events.height
    for tenant_id, feed in events.partition_by("tenant_id", as_dict=True).items():
        tenant = tenant_id[0]
        files = zone.files("platform", "booking_events", tenant)
        assert len(files) == -(-feed.height // 1000)
        # The cursor the asset resumes from: the tenant's last event id.
        assert landed_event_cursor(zone, tenant) == feed["event_id"].max()
        rows = zone.scan("platform", "booking_events", tenant).collect()
        assert dict(rows.schema) == dict(BOOKING_EVENTS)
        assert rows.drop("_loaded_at", "_batch_id").sort("event_id").equals(feed)


def test_a_history_written_in_chunks_equals_one_written_at_once(tmp_path: Path) -> None:
    """Each day draws from its own random stream and the tables are written in time order,
    so the chunk size changes how much is held at once, never what is written."""
    chunked = generate(4000, 5, tmp_path / "chunked", anchor=ANCHOR, chunk_size=300)
    whole = generate(4000, 5, tmp_path / "whole", anchor=ANCHOR, chunk_size=10**9)
    assert chunked.manifest == whole.manifest
    assert {a["kind"] for a in whole.manifest["anomalies"]} == set(ANOMALY_KINDS)
    assert chunked.peak_rows["bookings"] <= 300
    assert whole.peak_rows["bookings"] == 4000
    for name in TABLES:
        written = pl.read_parquet(tmp_path / "chunked" / f"{name}.parquet")
        assert written.equals(pl.read_parquet(tmp_path / "whole" / f"{name}.parquet")), name
        assert written.height > 0, name
    # Several row groups: the chunked tables really were written a part at a time.
    assert pq.ParquetFile(tmp_path / "chunked" / "bookings.parquet").num_row_groups > 1


def test_memory_holds_a_chunk_whatever_the_size(tmp_path: Path) -> None:
    """What the generator holds at once: the bookings of one chunk, and records held back
    for time order (the late steps of recent bookings, e.g. refunds), never the history."""
    peaks = {}
    for size in (3000, 12000):
        result = generate(size, 5, tmp_path / str(size), anchor=ANCHOR, chunk_size=400)
        peaks[size] = result.peak_rows
        written = pl.read_parquet(tmp_path / str(size) / "events.parquet").height
        assert result.peak_rows["bookings"] <= 400 < size
        assert result.peak_rows["pending"] < 400 < written
    # Four times the history, the same chunk: the bookings held at once do not grow.
    assert peaks[3000]["bookings"] == peaks[12000]["bookings"] == 400
