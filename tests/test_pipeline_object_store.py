"""The whole pipeline with its landing zone on an S3-compatible store (moto's server on
loopback): real ingestion from the stand-ins and the booking API into ``s3://``, dbt building
the warehouse from there, and the same marts as dbt builds from a local copy of what landed."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import duckdb
import pytest

from ingestion.landing.storage import Location
from ingestion.landing.zone import STORE_LOCK_FILE, LandingZone
from sandbox.generator import generate
from testing.dbt_build import dbt_build
from testing.object_store import SECRET_ACCESS_KEY, object_store
from testing.platform import run_pipeline, serving_history
from testing.standins import pointed_at

BUCKET = "lake"


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    generate(600, 17, out, anchor=dt.date(2026, 11, 1), anomaly_rate=0.01)
    return out


def download(folder: Location, to: Path) -> int:
    """Copy every object under ``folder`` on the store to the local folder ``to``."""
    keys = folder.fs.find(folder.path)
    for key in keys:
        target = to / Path(key).relative_to(folder.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        folder.fs.get_file(key, str(target))
    return len(keys)


def marts(warehouse: Path) -> dict[str, list[tuple]]:
    """Every mart's rows in a stable order, but for when each was built."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        names = con.sql(
            "select table_name from information_schema.tables where table_schema = 'marts'"
        ).fetchall()
        return {
            name: con.sql(
                f"select columns(lambda c: c <> 'built_at') from marts.{name} order by all"
            ).fetchall()
            for (name,) in names
        }


# Nine ingestion runs and two full dbt builds: 9 min measured on a shared two-core machine,
# over 15 min when it was busier.
@pytest.mark.timeout(1800)
def test_the_pipeline_lands_on_the_store_and_builds_what_a_local_landing_builds(
    history: Path, tmp_path: Path
) -> None:
    data_dir, copy = tmp_path / "data", tmp_path / "copy"
    with object_store(tmp_path / "moto.log") as store:
        store.create_bucket(BUCKET)
        with (
            serving_history(history, tmp_path / "platform"),
            pointed_at(store.env(f"s3://{BUCKET}/analytics/landing")),
        ):
            run_pipeline(data_dir)
            zone = LandingZone.under(data_dir)
            landed = download(zone.root, copy / "landing")
            quarantined = download(zone.quarantine_root, copy / "quarantine")
        keys = store.keys(BUCKET)

    # Everything landed on the store, as finished objects only; only the lock stayed local.
    assert landed > 10 and quarantined > 0
    assert len(keys) == landed + quarantined
    assert all(key.endswith(".parquet") for key in keys), keys
    assert (data_dir / STORE_LOCK_FILE).exists()
    assert not (data_dir / "landing").exists() and not (data_dir / "quarantine").exists()

    local = dbt_build(tmp_path / "local-build", copy / "landing")
    assert local.returncode == 0, local.output[-3000:]
    from_store, from_copy = marts(data_dir / "warehouse.duckdb"), marts(local.warehouse)
    assert from_store.keys() == from_copy.keys() and "bookings" in from_store
    for name, rows in from_copy.items():
        assert from_store[name] == rows, name

    manifest = json.loads((history / "manifest.json").read_text())
    with duckdb.connect(str(data_dir / "warehouse.duckdb"), read_only=True) as con:
        bookings = con.execute("select count(*) from marts.bookings").fetchone()[0]
        found = set(
            con.execute(
                "select kind, tenant_id, booking_id from marts.reconciliation_issues"
            ).fetchall()
        )
    assert bookings == sum(c["bookings"] for c in manifest["counts"].values())
    planted = {
        (a["kind"], a["tenant_id"], a["booking_id"])
        for a in manifest["anomalies"]
        if a["expected_in"] == "reconciliation"
    }
    assert planted and found == planted
    # The store's secret key is in no file the pipeline wrote: logs, warehouse, snapshot.
    for path in [*data_dir.rglob("*"), *copy.rglob("*")]:
        assert not path.is_file() or SECRET_ACCESS_KEY.encode() not in path.read_bytes(), path
