"""The landing zone on an S3-compatible object store (moto's server on loopback): landing,
cursors, quarantine and compaction behave as they do in a local folder, and every object
appears whole under its final name (the whole pipeline on a store: tests/test_pipeline_object_store.py)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from ingestion.compaction import compact_all, folders
from ingestion.landing import quarantine
from ingestion.landing.cursors import landed_cursor
from ingestion.landing.storage import is_local
from ingestion.landing.zone import COMPACTED_PREFIX, LandingZone, Rejected
from ingestion.platform.events import EVENTS_FEED
from ingestion.platform.feed import landed_feed_cursor
from sandbox.generator import generate
from testing.landing_from_history import write_landing
from testing.object_store import ObjectStore, object_store
from testing.standins import pointed_at

# Every batch is an upload to the store: minutes on a busy machine.
pytestmark = pytest.mark.timeout(900)

BUCKET = "landing-tests"
LEDGER = ("loyalty", "ledger_transactions")
TENANTS = ("coffeechain", "fintechapp", "telcocorp")


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObjectStore]:
    with object_store(tmp_path_factory.mktemp("store") / "moto.log") as running:
        running.create_bucket(BUCKET)
        yield running


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    generate(400, 11, out, anchor=dt.date(2026, 11, 1), months=3, anomaly_rate=0.02)
    return out


@pytest.fixture
def zones(
    store: ObjectStore, history: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[LandingZone, LandingZone]]:
    """The same many small batches landed in a local folder and on the store (under a prefix
    of this test's own)."""
    local = LandingZone.under(tmp_path / "local")
    write_landing(history, local.root, batch_rows=60)
    with pointed_at(store.env(f"s3://{BUCKET}/{request.node.name}/landing")):
        remote = LandingZone.under(tmp_path / "remote")
        write_landing(history, remote.root, batch_rows=60, lock_file=remote.lock_file)
        yield local, remote


def everything(zone: LandingZone) -> dict[tuple, pl.DataFrame]:
    """Every folder's rows in a stable order."""
    found = {}
    for where in folders(zone):
        frame = zone.scan(*where)
        if frame is not None:
            found[where] = frame.collect().sort(pl.all())
    return found


def cursors(zone: LandingZone) -> dict[str, tuple]:
    return {
        tenant: (
            landed_cursor(zone, *LEDGER, tenant),
            landed_feed_cursor(zone, EVENTS_FEED, tenant),
        )
        for tenant in TENANTS
    }


def test_the_zone_on_a_store_reads_as_a_local_one_and_compacts_the_same(
    store: ObjectStore, zones: tuple[LandingZone, LandingZone]
) -> None:
    local, remote = zones
    assert is_local(local.root) and not is_local(remote.root)
    assert str(remote.root).startswith(f"s3://{BUCKET}/")
    assert remote.lock_file is not None and is_local(remote.lock_file)

    before = everything(local)
    assert before.keys() == everything(remote).keys()
    for where, frame in everything(remote).items():
        assert frame.equals(before[where]), where
    assert cursors(remote) == cursors(local)
    assert all(cursor.files > 1 for cursor, _ in cursors(remote).values())

    local_results, remote_results = compact_all(local), compact_all(remote)

    assert [(r.merged_files, r.rows) for r in remote_results] == [
        (r.merged_files, r.rows) for r in local_results
    ]
    assert any(r.merged_files > 1 for r in remote_results)
    assert all(r.into.name.startswith(COMPACTED_PREFIX) for r in remote_results if r.into)
    for where in folders(remote):
        assert len(remote.files(*where)) <= 1, where
    for where, frame in everything(remote).items():
        assert frame.equals(before[where]), where
    assert cursors(remote) == cursors(local)
    # Nothing but finished objects under their final names: no temporary object left behind.
    keys = store.keys(BUCKET)
    assert keys and all(key.endswith(".parquet") for key in keys)


def test_quarantine_on_a_store_keeps_entries_and_resolutions(
    zones: tuple[LandingZone, LandingZone],
) -> None:
    _, remote = zones
    at = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    rejected = [Rejected("txn-1", "amount: 'abc' is not a number", {"id": "txn-1"})]
    batch = quarantine.write(remote, *LEDGER, "coffeechain", rejected, at)
    known = quarantine.known(remote, *LEDGER, "coffeechain")
    assert known.holds("txn-1", {"id": "txn-1"})

    assert quarantine.supersede(remote, *LEDGER, "coffeechain", known, ["txn-1"], "b1", at) == 1

    entries = quarantine.entries(remote, *LEDGER, "coffeechain")
    assert entries.select("_batch_id", "record_key", "outcome", "open").rows() == [
        (batch, "txn-1", "superseded", False)
    ]
    assert str(remote.quarantine_folder(*LEDGER, "coffeechain")).startswith(f"s3://{BUCKET}/")
