"""Poison records: each is quarantined with a reason naming the record and the field, the good
records of the same page land, and the other tenants are untouched. Quarantine is a dead-letter
store: a newer valid version supersedes a quarantined one, and a replay lands what now validates."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from clients.loyalty.client import build_loyalty_client
from ingestion import validation
from ingestion.landing import quarantine as dead_letters
from ingestion.landing.zone import LandingZone
from ingestion.loyalty.assets import ledger_transactions
from ingestion.quarantine_job import quarantine_replay_job
from ingestion.replay import replay_quarantine
from ingestion.resources import LandingResource, TenantApisResource
from ingestion.sync import RequestCounter, SyncStats, snapshot_members, sync_orders
from sandbox.duffel.render import order_bytes
from sandbox.runner import Sandbox
from tenants.registry import load_registry
from tests.ingestion.standins import (
    MemberBalances,
    ledger_json,
    ledger_row,
    lifted_registry,
    serve_history,
)

TENANTS = ("coffeechain", "fintechapp", "telcocorp")
FIXTURES = Path(__file__).parents[1] / "fixtures" / "duffel"
CURRENCY = {"coffeechain": "stars", "telcocorp": "points", "fintechapp": "coins"}


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lifted_registry(tmp_path_factory.mktemp("tenants"))


@pytest.fixture(scope="module")
def stand_ins(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    yield from serve_history(tmp_path_factory.mktemp("history"), 300, 3, 0.0)


@pytest.fixture
def sandbox(stand_ins: Sandbox) -> Iterator[Sandbox]:
    """The stand-ins as generated: what a test plants is gone afterwards."""
    stand_ins.reset()
    yield stand_ins
    stand_ins.reset()


def later(sandbox: Sandbox, tenant: str, seconds: int) -> dt.datetime:
    """A moment after everything in the tenant's feed so far."""
    return dt.datetime(2026, 11, 2, tzinfo=dt.UTC) + dt.timedelta(seconds=seconds)


def plant(sandbox: Sandbox, tenant: str, raws: list[str]) -> None:
    sandbox.loyalty.append_ledger(tenant, [ledger_row(raw) for raw in raws])


def good(tenant: str, count: int, start: int) -> list[str]:
    at = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    return [
        ledger_json(
            f"txn_good_{tenant}_{start + i:04d}",
            "7",
            at + dt.timedelta(seconds=start + i),
            currency=CURRENCY[tenant],
        )
        for i in range(count)
    ]


def ingest_ledger(data_dir: Path, tenant: str, registry: Path) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [ledger_transactions],
        partition_key=tenant,
        resources={
            "tenant_apis": TenantApisResource(tenants_dir=str(registry)),
            "landing": LandingResource(data_dir=str(data_dir)),
        },
        raise_on_error=False,
    )


def landed_ids(data_dir: Path, entity: str, tenant: str, column: str) -> list[str]:
    source = "duffel" if entity == "orders" else "loyalty"
    frame = LandingZone.under(data_dir).scan(source, entity, tenant)
    return frame.collect()[column].to_list() if frame is not None else []


def quarantined(data_dir: Path, entity: str, tenant: str) -> pl.DataFrame:
    return dead_letters.entries(LandingZone.under(data_dir), "loyalty", entity, tenant)


def open_entries(data_dir: Path, entity: str, tenant: str) -> pl.DataFrame:
    """Open quarantine entries of what the tests planted (the history has its own bad ones)."""
    planted = ~pl.col("record_key").str.starts_with("bad_")
    return quarantined(data_dir, entity, tenant).filter(pl.col("open"), planted)


# ---- ledger amount beyond 64 bits ----------------------------------------------------


def test_a_ledger_amount_beyond_64_bits_is_quarantined_and_the_page_lands(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    huge = str(2**70)
    poison = ledger_json(
        "txn_huge", huge, dt.datetime(2026, 11, 2, 0, 0, 25, tzinfo=dt.UTC), currency="stars"
    )
    goods = good("coffeechain", 50, 0)
    plant(sandbox, "coffeechain", [*goods[:25], poison, *goods[25:]])
    for attempt in range(2):  # a re-run neither fails nor quarantines it twice
        results = {t: ingest_ledger(tmp_path, t, registry) for t in TENANTS}
        assert all(r.success for r in results.values()), attempt
    ids = landed_ids(tmp_path, "ledger_transactions", "coffeechain", "transaction_id")
    assert {f"txn_good_coffeechain_{i:04d}" for i in range(50)} <= set(ids)
    assert "txn_huge" not in ids
    bad = open_entries(tmp_path, "ledger_transactions", "coffeechain")
    assert bad["record_key"].to_list() == ["txn_huge"]
    reason = bad["reason"][0]
    assert "txn_huge" in reason and "field 'amount'" in reason
    assert json.loads(bad["raw_payload"][0])["amount"] == 2**70  # kept exactly
    for other in ("fintechapp", "telcocorp"):
        assert landed_ids(tmp_path, "ledger_transactions", other, "transaction_id")


# ---- money never rounded on the way in -------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "amount"),
    [("fintechapp", "12.345"), ("coffeechain", "-100.5"), ("telcocorp", "0.5")],
)
def test_a_ledger_amount_finer_than_the_currency_is_quarantined_not_rounded(
    sandbox: Sandbox, registry: Path, tmp_path: Path, tenant: str, amount: str
) -> None:
    poison = ledger_json(
        "txn_fine",
        amount,
        dt.datetime(2026, 11, 2, 0, 0, 5, tzinfo=dt.UTC),
        currency=CURRENCY[tenant],
    )
    goods = good(tenant, 10, 0)
    plant(sandbox, tenant, [*goods[:5], poison, *goods[5:]])
    assert ingest_ledger(tmp_path, tenant, registry).success
    ids = landed_ids(tmp_path, "ledger_transactions", tenant, "transaction_id")
    assert "txn_fine" not in ids
    assert {f"txn_good_{tenant}_{i:04d}" for i in range(10)} <= set(ids)
    bad = open_entries(tmp_path, "ledger_transactions", tenant)
    assert bad["record_key"].to_list() == ["txn_fine"]
    assert "field 'amount'" in bad["reason"][0] and "txn_fine" in bad["reason"][0]
    assert CURRENCY[tenant] in bad["reason"][0]


# ---- member balances -----------------------------------------------------------------


def snapshot(
    data_dir: Path, tenant: str, registry: Path, balances: dict[str, str]
) -> validation.Sorted | object:
    config = load_registry(registry)[tenant]
    requests = RequestCounter()
    client = build_loyalty_client(config, transport=MemberBalances(balances))
    with client:
        return snapshot_members(client, LandingZone.under(data_dir), tenant, requests=requests)


def member_ids(stand_ins: Sandbox, tenant: str, count: int) -> list[str]:
    history = pl.read_parquet(stand_ins.config.history_dir / "members.parquet")
    return history.filter(pl.col("tenant_id") == tenant)["member_id"].head(count).to_list()


@pytest.mark.parametrize(
    ("tenant", "balance"),
    [
        ("coffeechain", "1e400"),
        ("coffeechain", "1e17"),
        ("coffeechain", "-100.5"),
        ("fintechapp", "12.345"),
    ],
)
def test_a_member_balance_that_cannot_land_exactly_is_quarantined(
    sandbox: Sandbox, registry: Path, tmp_path: Path, tenant: str, balance: str
) -> None:
    poisoned = member_ids(sandbox, tenant, 3)[1]
    stats = snapshot(tmp_path, tenant, registry, {poisoned: balance})
    landed = LandingZone.under(tmp_path).scan("loyalty", "members", tenant).collect()
    assert poisoned not in landed["member_id"].to_list()
    assert landed["balance"].null_count() == 0
    assert landed.height == stats.fetched - 1
    bad = open_entries(tmp_path, "members", tenant)
    assert bad["record_key"].to_list() == [poisoned]
    assert poisoned in bad["reason"][0] and "field 'balance'" in bad["reason"][0]
    assert json.loads(bad["raw_payload"][0], parse_float=Decimal)["balance"] == Decimal(balance)


# ---- conflicting duplicates ------------------------------------------------------------


def test_a_conflicting_duplicate_in_one_page_is_quarantined_as_a_conflict(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    at = dt.datetime(2026, 11, 2, 0, 1, tzinfo=dt.UTC)
    first = ledger_json("txn_twice", "100", at, currency="points")
    second = ledger_json("txn_twice", "200", at, currency="points")
    plant(sandbox, "telcocorp", [first, second])
    assert ingest_ledger(tmp_path, "telcocorp", registry).success
    ledger = LandingZone.under(tmp_path).scan("loyalty", "ledger_transactions", "telcocorp")
    twice = ledger.filter(pl.col("transaction_id") == "txn_twice").collect()
    assert twice["amount"].to_list() == [Decimal("100.00")]
    bad = open_entries(tmp_path, "ledger_transactions", "telcocorp")
    assert bad["record_key"].to_list() == ["txn_twice"]
    reason = bad["reason"][0]
    assert "conflict" in reason and "field 'amount'" in reason and "txn_twice" in reason
    assert json.loads(bad["raw_payload"][0])["amount"] == 200


def test_a_conflicting_redelivery_of_a_landed_version_is_quarantined_as_a_conflict(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    at = dt.datetime(2026, 11, 2, 0, 1, tzinfo=dt.UTC)
    plant(sandbox, "telcocorp", [ledger_json("txn_again", "100", at, currency="points")])
    assert ingest_ledger(tmp_path, "telcocorp", registry).success
    # The same version again (same id and updated_at), with another amount.
    plant(sandbox, "telcocorp", [ledger_json("txn_again", "300", at, currency="points")])
    result = ingest_ledger(tmp_path, "telcocorp", registry)
    assert result.success
    ids = landed_ids(tmp_path, "ledger_transactions", "telcocorp", "transaction_id")
    assert ids.count("txn_again") == 1
    bad = open_entries(tmp_path, "ledger_transactions", "telcocorp")
    assert bad["record_key"].to_list() == ["txn_again"]
    assert "conflict" in bad["reason"][0] and "field 'amount'" in bad["reason"][0]


# ---- quarantine is a dead-letter store -------------------------------------------------


def test_a_corrected_redelivery_supersedes_the_quarantined_version(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    base = dt.datetime(2026, 11, 2, 0, 2, tzinfo=dt.UTC)
    broken = [
        ledger_json(f"txn_fix_{i}", '"N/A"', base + dt.timedelta(seconds=i), currency="coins")
        for i in range(5)
    ]
    plant(sandbox, "fintechapp", broken)
    assert ingest_ledger(tmp_path, "fintechapp", registry).success
    assert open_entries(tmp_path, "ledger_transactions", "fintechapp").height == 5
    fixed = [
        ledger_json(
            f"txn_fix_{i}", "12.50", base + dt.timedelta(minutes=1, seconds=i), currency="coins"
        )
        for i in range(5)
    ]
    plant(sandbox, "fintechapp", fixed)
    result = ingest_ledger(tmp_path, "fintechapp", registry)
    assert result.success
    ids = landed_ids(tmp_path, "ledger_transactions", "fintechapp", "transaction_id")
    assert sorted(i for i in ids if i.startswith("txn_fix_")) == [f"txn_fix_{i}" for i in range(5)]
    # The planted records only: the history's own bad records may share the window.
    entries = quarantined(tmp_path, "ledger_transactions", "fintechapp").filter(
        pl.col("record_key").str.starts_with("txn_fix_")
    )
    assert entries.height == 5 and entries.filter(pl.col("open")).height == 0
    assert set(entries["outcome"]) == {"superseded"}


# ---- replaying quarantined records after a fix -----------------------------------------


def plant_old_entries(
    data_dir: Path, tenant: str, items: list[tuple[str, str, str]], at: dt.datetime
) -> None:
    """Quarantine entries as an earlier version of the checks wrote them: (key, reason, raw)."""
    zone = LandingZone.under(data_dir)
    rejected = [
        dead_letters.Rejected(key, reason, dead_letters.parse_payload(raw))
        for key, reason, raw in items
    ]
    dead_letters.write(zone, "loyalty", "ledger_transactions", tenant, rejected, at)


def replay(data_dir: Path, registry: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "ingestion",
            "replay-quarantine",
            "--data-dir",
            str(data_dir),
            "--tenants-dir",
            str(registry),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=Path(__file__).parents[2],
    )


def test_the_replay_command_lands_what_now_validates_and_keeps_what_still_fails(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    base = dt.datetime(2026, 11, 2, 0, 3, tzinfo=dt.UTC)
    landed_one = ledger_json("txn_landed", "5.25", base, currency="coins")
    plant(sandbox, "fintechapp", [landed_one])
    assert ingest_ledger(tmp_path, "fintechapp", registry).success
    before = landed_ids(tmp_path, "ledger_transactions", "fintechapp", "transaction_id")
    valid = [
        ledger_json(f"txn_ok_{i}", "1.50", base + dt.timedelta(seconds=i + 1), currency="coins")
        for i in range(3)
    ]
    broken = ledger_json("txn_broken", '"N/A"', base + dt.timedelta(seconds=9), currency="coins")
    old_rule = "field 'amount': over the (mistaken) limit of 1.00 coins"
    plant_old_entries(
        tmp_path,
        "fintechapp",
        [(f"txn_ok_{i}", old_rule, raw) for i, raw in enumerate(valid)]
        + [("txn_broken", old_rule, broken)],
        dt.datetime(2026, 11, 2, 1, tzinfo=dt.UTC),
    )
    # An entry of a version that had landed just before (the same version, quarantined by the
    # old rule on a later delivery): replayed, it is recognised, not landed twice.
    plant_old_entries(
        tmp_path,
        "fintechapp",
        [("txn_landed", old_rule, landed_one)],
        dt.datetime.now(dt.UTC) + dt.timedelta(hours=1),
    )
    assert open_entries(tmp_path, "ledger_transactions", "fintechapp").height == 5
    # The history's own bad records in the same window are replayed too, and still fail.
    own = (
        quarantined(tmp_path, "ledger_transactions", "fintechapp")
        .filter(pl.col("open"), pl.col("record_key").str.starts_with("bad_"))
        .height
    )

    done = replay(tmp_path, registry, "--tenant", "fintechapp", "--source", "loyalty")
    assert done.returncode == 0, done.stderr
    assert (
        f"loyalty/ledger_transactions for fintechapp: {5 + own} open; landed 3, already landed 1, "
        f"superseded 0, still failing {own}, re-quarantined with a new reason 1; "
        f"{1 + own} open now"
    ) in done.stdout
    assert "loyalty/members for fintechapp: 0 open" in done.stdout
    ledger = LandingZone.under(tmp_path).scan("loyalty", "ledger_transactions", "fintechapp")
    after = ledger.collect()
    replayed = after.filter(pl.col("transaction_id").str.starts_with("txn_ok_"))
    assert sorted(replayed["transaction_id"]) == ["txn_ok_0", "txn_ok_1", "txn_ok_2"]
    assert set(replayed["amount"]) == {Decimal("1.50")}
    assert after.height == len(before) + 3  # txn_landed not landed twice
    still = open_entries(tmp_path, "ledger_transactions", "fintechapp")
    assert still["record_key"].to_list() == ["txn_broken"]
    assert "field 'amount'" in still["reason"][0] and old_rule not in still["reason"][0]

    again = replay(tmp_path, registry, "--tenant", "fintechapp")
    assert again.returncode == 0, again.stderr
    assert (
        f"{1 + own} open; landed 0, already landed 0, superseded 0, still failing {1 + own}"
        in again.stdout
    )
    assert ledger.collect().height == after.height
    # The next pull neither re-lands nor re-quarantines anything.
    result = ingest_ledger(tmp_path, "fintechapp", registry)
    assert metadata_of(result)["landed"] == 0
    assert ledger.collect().height == after.height


def test_the_replay_command_names_an_unknown_tenant(registry: Path, tmp_path: Path) -> None:
    done = replay(tmp_path, registry, "--tenant", "nosuchtenant")
    assert done.returncode == 2 and "unknown tenant 'nosuchtenant'" in done.stderr


def test_quarantine_replay_job_lands_a_replayed_member_and_records_it(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    ids = member_ids(sandbox, "coffeechain", 1)
    snapshot(tmp_path, "coffeechain", registry, {ids[0]: "1e17"})
    zone = LandingZone.under(tmp_path)
    landed = zone.scan("loyalty", "members", "coffeechain").collect()
    # A member a rule since fixed rejected from an earlier snapshot: its entry is replayable.
    good_raw = {
        "member_id": "CC9999999",
        "tier": "gold",
        "status": "active",
        "balance": 250,
        "currency": "stars",
    }
    earlier = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    dead_letters.write(
        zone,
        "loyalty",
        "members",
        "coffeechain",
        [dead_letters.Rejected("CC9999999", "field 'tier': (a rule since fixed)", good_raw)],
        earlier,
    )
    result = quarantine_replay_job.execute_in_process(
        run_config={
            "ops": {
                "replay_quarantined": {"config": {"tenant": "coffeechain", "entity": "members"}}
            }
        },
        resources={
            "landing": LandingResource(data_dir=str(tmp_path)),
            "tenant_apis": TenantApisResource(tenants_dir=str(registry)),
        },
    )
    assert result.success
    materialized = result.get_asset_materialization_events()
    assert [e.asset_key.to_user_string() for e in materialized] == ["raw/loyalty/members"]
    assert materialized[0].partition == "coffeechain"
    after = zone.scan("loyalty", "members", "coffeechain").collect()
    assert after.height == landed.height + 1
    replayed = after.filter(pl.col("member_id") == "CC9999999")
    assert replayed.select("balance", "snapshot_at").rows() == [(Decimal("250.00"), earlier)]
    still = open_entries(tmp_path, "members", "coffeechain")
    assert still["record_key"].to_list() == [ids[0]]
    assert "field 'balance'" in still["reason"][0]


def metadata_of(result: dg.ExecuteInProcessResult) -> dict:
    event = result.get_asset_materialization_events()[0]
    return {k: v.value for k, v in event.materialization.metadata.items()}


# ---- orders: conflicts and replay --------------------------------------------------------


def pull_orders(data_dir: Path, registry: Path) -> SyncStats:
    requests = RequestCounter()
    with TenantApisResource(tenants_dir=str(registry)).duffel("coffeechain", requests) as client:
        return sync_orders(client, LandingZone.under(data_dir), "coffeechain", requests=requests)


def latest_order(sandbox: Sandbox) -> dict:
    """The stand-in's latest coffeechain order as a wire row, and as its JSON body."""
    history = pl.read_parquet(sandbox.config.history_dir / "orders.parquet")
    order_id = history.filter(pl.col("tenant_id") == "coffeechain")["order_id"][-1]
    return sandbox.duffel.get_order("coffeechain", order_id)


def test_a_conflicting_duplicate_order_is_quarantined_as_a_conflict(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    wire = latest_order(sandbox)
    body = json.loads(order_bytes(wire), parse_float=Decimal)
    twin = {**body, "total_amount": str(Decimal(body["total_amount"]) + 1)}
    # Listed right after the original: the same id and version, another total.
    sandbox.duffel.add_order(
        {
            **wire,
            "order_id": f"{wire['order_id']}z",
            "raw_override": dead_letters.payload_text(twin),
        }
    )
    stats = pull_orders(tmp_path, registry)
    assert stats.conflicts == 1
    orders = LandingZone.under(tmp_path).scan("duffel", "orders", "coffeechain").collect()
    mine = orders.filter(pl.col("order_id") == body["id"])
    assert mine["total_amount"].to_list() == [Decimal(body["total_amount"])]
    entries = dead_letters.entries(LandingZone.under(tmp_path), "duffel", "orders", "coffeechain")
    bad = entries.filter(pl.col("record_key") == body["id"])
    assert bad.height == 1
    reason = bad["reason"][0]
    assert "conflict" in reason and "field 'total_amount'" in reason and body["id"] in reason
    # The next pull recognises the quarantined payload: nothing new, nothing twice.
    again = pull_orders(tmp_path, registry)
    assert again.quarantined == 0 and again.landed == 0


def test_replaying_a_quarantined_order_lands_it_and_its_segments_once(
    sandbox: Sandbox, registry: Path, tmp_path: Path
) -> None:
    pull_orders(tmp_path, registry)
    zone = LandingZone.under(tmp_path)
    fresh = json.loads((FIXTURES / "order.json").read_text(), parse_float=Decimal)["data"]
    fresh = {**fresh, "id": "ord_replayed_0001", "metadata": {"tenant_id": "coffeechain"}}
    dead_letters.write(
        zone,
        "duffel",
        "orders",
        "coffeechain",
        [dead_letters.Rejected(fresh["id"], "field 'owner': (a rule since fixed)", fresh)],
        dt.datetime(2026, 11, 2, tzinfo=dt.UTC),
    )
    tenant = load_registry(registry)["coffeechain"]
    for attempt in range(2):
        results = replay_quarantine(zone, tenant, source="duffel")
        assert [r.landed for r in results] == [1 - attempt], attempt
    orders = zone.scan("duffel", "orders", "coffeechain").collect()
    segments = zone.scan("duffel", "order_segments", "coffeechain").collect()
    assert orders.filter(pl.col("order_id") == fresh["id"]).height == 1
    expected = sum(len(s["segments"]) for s in fresh["slices"])
    assert segments.filter(pl.col("order_id") == fresh["id"]).height == expected
    entries = dead_letters.entries(zone, "duffel", "orders", "coffeechain")
    replayed = entries.filter(pl.col("record_key") == fresh["id"])
    assert replayed["outcome"].to_list() == ["replayed"]
    # A later pull does not take the replayed batch for progress of its own.
    assert pull_orders(tmp_path, registry).landed == 0
