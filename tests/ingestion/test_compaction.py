"""Landing compaction: the landed set is identical before and after, even with writers and
readers at work meanwhile, and dbt builds the same marts over it."""

from __future__ import annotations

import datetime as dt
import shutil
import threading
from pathlib import Path

import dagster as dg
import duckdb
import polars as pl
import pytest

from ingestion import compaction
from ingestion.__main__ import main as ingestion_cli
from ingestion.compaction import compact, compact_all, folders
from ingestion.compaction_job import compact_landing_job
from ingestion.landing.cursors import landed_cursor
from ingestion.landing.schemas import ENTITIES
from ingestion.landing.zone import (
    COMPACTED_PREFIX,
    LandingZone,
    LockTimeout,
    batch_id,
    land,
)
from ingestion.platform.events import EVENTS_FEED
from ingestion.platform.feed import landed_feed_cursor
from ingestion.resources import LandingResource
from sandbox.generator import generate
from testing.dbt_build import dbt_build
from testing.landing_from_history import write_landing

LEDGER = ("loyalty", "ledger_transactions")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("history")
    generate(400, 11, out, anchor=dt.date(2026, 11, 1), months=3)
    return out


@pytest.fixture
def zone(history: Path, tmp_path: Path) -> LandingZone:
    """A landing zone of many small batches (ledger batches overlap, as re-fetches do)."""
    write_landing(history, tmp_path / "landing", batch_rows=15)
    return LandingZone.under(tmp_path)


def landed(zone: LandingZone) -> dict[tuple, pl.DataFrame]:
    """Every folder's rows as readers see them (DuckDB's glob, as the dbt sources read), in
    landing order: by ``_loaded_at``, then batch, then the row's place within its batch."""
    found = {}
    with zone.reading():
        for where in folders(zone):
            folder = zone.folder(*where)
            if not list(folder.glob("*.parquet")):
                continue
            frame = (
                duckdb.sql(
                    f"select * from read_parquet('{folder}/*.parquet', "
                    "union_by_name = true, filename = true)"
                )
                .pl()
                .with_row_index("_row")
            )
            found[where] = (
                frame.with_columns(
                    _place=pl.col("_row").rank("ordinal").over("filename", "_batch_id")
                )
                .sort("_loaded_at", "_batch_id", "_place")
                .drop("_row", "filename")
            )
    return found


def cursors(zone: LandingZone) -> dict:
    tenants = sorted(
        p.name.split("=")[1] for p in (zone.root / "loyalty" / "ledger_transactions").iterdir()
    )
    return {
        tenant: (
            landed_cursor(zone, *LEDGER, tenant).complete_through,
            landed_feed_cursor(zone, EVENTS_FEED, tenant),
        )
        for tenant in tenants
    }


def parquet_files(zone: LandingZone) -> list[Path]:
    return sorted(zone.root.rglob("*.parquet"))


def add_cursor(zone: LandingZone, tenant: str, through: dt.datetime) -> None:
    """A cursor-only batch, as a pull that found nothing new commits its progress."""
    schema = ENTITIES[LEDGER]
    land(
        zone,
        *LEDGER,
        tenant,
        pl.DataFrame(schema=schema),
        batch_id("c", [str(through)]),
        cursor={"complete_through": through.isoformat()},
    )


def new_batch(tenant: str, number: int) -> tuple[str, pl.DataFrame]:
    schema = ENTITIES[LEDGER]
    at = dt.datetime(2030, 1, 1, tzinfo=dt.UTC) + dt.timedelta(seconds=number)
    name = batch_id("ledger_transactions", [f"new-{tenant}-{number}"])
    rows = [
        {
            "tenant_id": tenant,
            "transaction_id": f"txn-new-{number}-{i}",
            "member_id": "m1",
            "type": "deduction",
            "amount": "-10.00",
            "currency": "stars",
            "status": "completed",
            "created_at": at,
            "updated_at": at,
            "_loaded_at": at,
            "_batch_id": name,
        }
        for i in range(3)
    ]
    frame = pl.DataFrame(rows, schema={k: schema[k] for k in rows[0]} | {"amount": pl.String})
    for column, dtype in schema.items():
        frame = frame.with_columns(
            (pl.col(column) if column in frame.columns else pl.lit(None)).cast(dtype).alias(column)
        )
    return name, frame.select(schema.names())


def test_compaction_keeps_every_record_in_order_with_its_lineage_and_cursors(
    zone: LandingZone,
) -> None:
    tenant = "coffeechain"
    add_cursor(zone, tenant, dt.datetime(2031, 5, 1, tzinfo=dt.UTC))
    before, cursors_before = landed(zone), cursors(zone)
    files_before = parquet_files(zone)
    assert len(files_before) > 60  # many small batches: something to compact

    results = compact_all(zone)

    assert landed(zone).keys() == before.keys()
    for where, frame in landed(zone).items():
        assert frame.equals(before[where]), where
    assert cursors(zone) == cursors_before
    assert cursors_before[tenant][0] == dt.datetime(2031, 5, 1, tzinfo=dt.UTC)
    assert cursors_before[tenant][1] > 0
    # One file per folder now, named as a compacted file; no temporary file left behind.
    merged = [r for r in results if r.into is not None]
    assert merged and all(r.into.name.startswith(COMPACTED_PREFIX) for r in merged)
    for where in folders(zone):
        assert len(zone.files(*where)) <= 1, where
    assert not [p for p in zone.root.rglob("*") if p.name.endswith(".tmp")]
    assert sum(r.merged_files for r in merged) + (len(parquet_files(zone)) - len(merged)) == len(
        files_before
    )
    # Compacting again, with new batches beside a compacted file, merges them in order too.
    name, frame = new_batch(tenant, 1)
    land(zone, *LEDGER, tenant, frame, name)
    again = landed(zone)
    compact(zone, *LEDGER, tenant)
    assert landed(zone)[(*LEDGER, tenant)].equals(again[(*LEDGER, tenant)])
    assert len(zone.files(*LEDGER, tenant)) == 1


def test_a_batch_fetched_again_after_compaction_is_not_landed_twice(zone: LandingZone) -> None:
    tenant = "telcocorp"
    name, frame = new_batch(tenant, 2)
    land(zone, *LEDGER, tenant, frame, name)
    compact(zone, *LEDGER, tenant)
    before = landed(zone)[(*LEDGER, tenant)]
    later = dt.datetime(2032, 1, 1, tzinfo=dt.UTC)
    # The same records again (the same batch name), with the pull's newer progress.
    land(zone, *LEDGER, tenant, frame, name, cursor={"complete_through": later.isoformat()})
    land(zone, *LEDGER, tenant, frame, name)
    assert landed(zone)[(*LEDGER, tenant)].equals(before)
    assert landed_cursor(zone, *LEDGER, tenant).complete_through == later


def test_batches_landed_during_a_compaction_stay_and_readers_see_no_half_swap(
    zone: LandingZone, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant = "fintechapp"
    where = (*LEDGER, tenant)
    expected = landed(zone)[where]
    merge = compaction._merge
    written: list[pl.DataFrame] = []

    def merge_while_a_writer_lands(inputs, schema):
        # Another process lands two batches after the compaction read its inputs.
        for number in (3, 4):
            name, frame = new_batch(tenant, number)
            thread = threading.Thread(target=land, args=(zone, *where, frame, name))
            thread.start()
            thread.join()
            written.append(frame)
        return merge(inputs, schema)

    monkeypatch.setattr(compaction, "_merge", merge_while_a_writer_lands)
    result = compact(zone, *where)
    assert result.into is not None and len(written) == 2
    after = landed(zone)[where]
    assert after.height == expected.height + 6
    assert after.head(expected.height).equals(expected)  # the new batches landed last
    # They were not merged away: they are files of their own beside the merged one.
    assert len(zone.files(*where)) == 3

    # A reader holding the landing zone (a dbt build, a lazy scan) holds the swap off: the
    # compaction gives up, and nothing changed.
    monkeypatch.setattr(compaction, "_merge", merge)
    files = zone.files(*where)
    reading = threading.Event()
    done = threading.Event()

    def reader() -> None:
        with zone.reading():
            reading.set()
            done.wait()

    thread = threading.Thread(target=reader)
    thread.start()
    reading.wait()
    try:
        with pytest.raises(LockTimeout):
            compact(zone, *where, wait_seconds=0.3)
        assert zone.files(*where) == files
        assert not [p for p in zone.folder(*where).iterdir() if p.name.endswith(".tmp")]
    finally:
        done.set()
        thread.join()
    assert landed(zone)[where].equals(after)


def test_writers_readers_and_compactions_together_lose_and_copy_nothing(
    zone: LandingZone,
) -> None:
    tenant = "coffeechain"
    where = (*LEDGER, tenant)
    initial = landed(zone)[where]
    problems: list[str] = []
    written: list[int] = []
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        # Lands batches until the compactions below have merged five times meanwhile.
        while writing.is_set():
            name, frame = new_batch(tenant, 100 + len(written))
            land(zone, *where, frame, name)
            written.append(frame.height)

    def reader() -> None:
        seen = initial.height
        while writing.is_set():
            try:
                rows = landed(zone)[where]
            except duckdb.IOException as error:  # a file gone between its glob and its read
                problems.append(f"a reader failed: {error}")
                return
            keys = rows.select("_batch_id", "_place", "transaction_id")
            if keys.is_duplicated().any():
                problems.append("a reader saw a record twice")
            if rows.height < seen or (rows.height - initial.height) % 3:
                problems.append(f"a reader saw {rows.height} rows after {seen}")
            seen = rows.height

    threads = [threading.Thread(target=writer), threading.Thread(target=reader)]
    for thread in threads:
        thread.start()
    merges = 0
    try:
        while merges < 5:
            merges += compact(zone, *where).into is not None
    finally:
        writing.clear()
        for thread in threads:
            thread.join()
    compact(zone, *where)
    assert problems == []
    final = landed(zone)[where]
    assert final.height == initial.height + sum(written)
    assert final.head(initial.height).equals(initial)
    assert len(zone.files(*where)) == 1


def test_a_compaction_cut_short_before_deleting_is_finished_next_time(
    zone: LandingZone, tmp_path: Path
) -> None:
    where = (*LEDGER, "coffeechain")
    before = landed(zone)[where]
    kept = tmp_path / "kept"
    kept.mkdir()
    for path in zone.files(*where):
        shutil.copy2(path, kept / path.name)
    compact(zone, *where)
    # As if it had stopped right after the rename: the merged-away files are back.
    for path in kept.iterdir():
        shutil.copy2(path, zone.folder(*where) / path.name)
    compact(zone, *where)
    assert landed(zone)[where].equals(before)


def test_the_compact_command(zone: LandingZone, capsys: pytest.CaptureFixture[str]) -> None:
    before = landed(zone)
    assert ingestion_cli(["compact", "--data-dir", str(zone.root.parent)]) == 0
    out = capsys.readouterr().out
    assert "compaction done:" in out and "files merged into" in out
    after = landed(zone)
    assert after.keys() == before.keys()
    assert all(after[where].equals(before[where]) for where in before)


def test_the_scheduled_job_compacts_one_tenants_folders(zone: LandingZone) -> None:
    before = landed(zone)
    counts = {where: len(zone.files(*where)) for where in folders(zone)}
    with dg.DagsterInstance.ephemeral() as instance:
        result = compact_landing_job.execute_in_process(
            partition_key="telcocorp",
            resources={"landing": LandingResource(data_dir=str(zone.root.parent))},
            instance=instance,
        )
    assert result.success
    for where in folders(zone):
        if where[2] == "telcocorp":
            assert len(zone.files(*where)) == 1, where
        else:  # other tenants' folders (and the reference ones) are another run's
            assert len(zone.files(*where)) == counts[where], where
    assert sum(counts[w] for w in counts if w[2] == "telcocorp") > len(
        [w for w in counts if w[2] == "telcocorp"]
    )
    after = landed(zone)
    assert all(after[where].equals(before[where]) for where in before)


def test_dbt_builds_the_same_marts_over_the_compacted_landing(
    history: Path, tmp_path: Path
) -> None:
    original = tmp_path / "original"
    write_landing(history, original / "landing", batch_rows=15)
    compacted = tmp_path / "compacted"
    shutil.copytree(original, compacted)
    compact_all(LandingZone.under(compacted))
    assert len(list((compacted / "landing").rglob("*.parquet"))) < len(
        list((original / "landing").rglob("*.parquet"))
    )
    builds = [dbt_build(folder, folder / "landing") for folder in (original, compacted)]
    for build in builds:
        assert build.returncode == 0, build.output[-3000:]
    with builds[0].connect() as first, builds[1].connect() as second:
        marts = [
            name
            for (name,) in first.sql(
                "select table_name from information_schema.tables where table_schema = 'marts'"
            ).fetchall()
        ]
        assert len(marts) > 10
        for mart in marts:
            # Every column but the build's own time, and the wait of an approval still
            # pending (counted up to the build's start).
            columns = first.sql(f"select * from marts.{mart} limit 0").columns
            kept = ", ".join(
                "if(decided_at is null, null, wait_seconds)"
                if (mart, c) == ("approvals", "wait_seconds")
                else f'"{c}"'
                for c in columns
                if c != "built_at"
            )
            query = f"select {kept} from marts.{mart} order by all"
            assert first.sql(query).fetchall() == second.sql(query).fetchall(), mart
