"""A publish costs what changed: only changed tables are written, only their caches are lost.

Each test publishes from its own copy of the pipeline's warehouse into its own serving
folder, changes one mart in the copy, publishes again, and looks at what the publish wrote
and what the dashboard's ``Snapshot`` had to read again.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest

from dashboard import data
from dashboard.auth import create_demo_users
from dashboard.data import DEEP_ROWS, BookingFilters, Snapshot
from dashboard.scope import Scope
from tests.dashboard.conftest import (
    TENANTS,
    http_sign_in,
    start_dashboard,
    stop_dashboard,
    tenant_body,
)
from warehouse import publish
from warehouse.publish import TABLES, VERSION, publish_snapshot

OPERATOR = Scope("op", "operator")
TESTED_TIER = "select count(*) from members where tier = 'zz-test'"
DEEP = {"start": DEEP_ROWS, "end": DEEP_ROWS + 50}  # a grid block served from the memo


@pytest.fixture
def warehouse(data_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "warehouse.duckdb"
    shutil.copyfile(data_dir / "warehouse.duckdb", copy)
    return copy


@pytest.fixture
def snapshot(tmp_path: Path) -> Iterator[Snapshot]:
    snap = Snapshot(tmp_path)
    yield snap
    snap.close()


def _change(warehouse: Path, sql: str) -> None:
    with duckdb.connect(str(warehouse)) as con:
        con.execute(sql)


def _manifest(serving: Path) -> dict:
    return json.loads((serving / VERSION).read_text())["tables"]


def _identity(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_ino, stat.st_mtime_ns


def test_a_publish_writes_only_the_tables_that_changed(warehouse: Path, tmp_path: Path) -> None:
    serving = tmp_path / "serving"
    first = publish_snapshot(warehouse, serving)
    assert set(first.written) == set(_manifest(serving))  # the first publish writes them all
    before = _manifest(serving)
    files = {name: _identity(serving / entry["file"]) for name, entry in before.items()}

    again = publish_snapshot(warehouse, serving)
    assert again.written == ("snapshot_info",)  # nothing changed but the publish time

    _change(warehouse, "update marts.members set tier = 'zz-test' where rowid = 0")
    changed = publish_snapshot(warehouse, serving)
    after = _manifest(serving)
    assert changed.written == ("members", "snapshot_info")
    assert changed.version > again.version > first.version
    for name in set(before) - {"members", "snapshot_info"}:
        assert after[name] == before[name], name
        assert _identity(serving / after[name]["file"]) == files[name], name
    assert after["members"]["fingerprint"] != before["members"]["fingerprint"]
    assert after["members"]["rows"] == before["members"]["rows"]
    with publish.connect(serving) as con:
        assert con.execute(TESTED_TIER).fetchone() == (1,)


def _same(warehouse: Path, serving: Path, table: str) -> None:
    sql = f"select count(*), sum(hash(t)::hugeint) from {{}}{table} t"
    with publish.connect(serving) as snap, duckdb.connect(str(warehouse), read_only=True) as con:
        assert (
            snap.execute(sql.format("")).fetchone() == con.execute(sql.format("marts.")).fetchone()
        )


def test_an_incremental_mart_takes_only_the_rows_its_build_rewrote(
    warehouse: Path, tmp_path: Path
) -> None:
    serving = tmp_path / "serving"
    publish_snapshot(warehouse, serving)
    # What an incremental build does: rows rebuilt (one changed, three new) stamped built_at.
    _change(
        warehouse,
        "update marts.bookings set status = 'cancelled', built_at = now() where rowid = 0;"
        " insert into marts.bookings select * replace (booking_id || '-new' as booking_id,"
        " now() as built_at) from marts.bookings limit 3",
    )
    published = publish_snapshot(warehouse, serving)
    assert published.written == ("bookings", "snapshot_info")
    assert "bookings" in published.patched
    _same(warehouse, serving, "bookings")

    # Rows deleted, which no incremental build does: the table is copied whole, still right.
    _change(warehouse, "delete from marts.bookings where rowid = 1")
    published = publish_snapshot(warehouse, serving)
    assert published.written == ("bookings", "snapshot_info")
    assert "bookings" not in published.patched
    _same(warehouse, serving, "bookings")


def test_files_no_manifest_names_are_kept_a_while_then_removed(
    warehouse: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    serving = tmp_path / "serving"
    publish_snapshot(warehouse, serving)
    old_members = serving / _manifest(serving)["members"]["file"]
    _change(warehouse, "delete from marts.members where rowid = 0")
    publish_snapshot(warehouse, serving)
    publish_snapshot(warehouse, serving)
    assert old_members.exists()  # a reader that read an older manifest may still open it
    monkeypatch.setattr(publish, "RETAIN_SECONDS", 0.0)
    publish_snapshot(warehouse, serving)
    assert not old_members.exists()
    manifest = json.loads((serving / VERSION).read_text())
    named = {entry["file"] for entry in manifest["tables"].values()}
    on_disk = {f"{TABLES}/{p.name}" for p in (serving / TABLES).iterdir()}
    assert on_disk == named | manifest["retired"].keys()
    # what is left beside the manifest: the previous publish's time, kept until the next one
    assert [file.split("-")[0] for file in manifest["retired"]] == [f"{TABLES}/snapshot_info"]


def test_the_dashboard_keeps_what_it_read_of_unchanged_tables(
    warehouse: Path, tmp_path: Path, snapshot: Snapshot
) -> None:
    serving = tmp_path / "serving"
    publish_snapshot(warehouse, serving)
    page = data.bookings_page(snapshot, OPERATOR, BookingFilters(), **DEEP)
    assert page.total > DEEP["end"] and (snapshot.memo.hits, snapshot.memo.misses) == (0, 1)
    read_backs = snapshot.read_backs
    assert read_backs == len(_manifest(serving))

    _change(warehouse, "update marts.members set tier = 'zz-test' where rowid = 0")
    publish_snapshot(warehouse, serving)
    assert data.bookings_page(snapshot, OPERATOR, BookingFilters(), **DEEP) == page
    assert (snapshot.memo.hits, snapshot.memo.misses) == (1, 1)  # the sorted ids survived
    assert snapshot.read_backs == read_backs + 2  # members and snapshot_info, nothing else

    _change(warehouse, "delete from marts.bookings where rowid = 0")
    publish_snapshot(warehouse, serving)
    shorter = data.bookings_page(snapshot, OPERATOR, BookingFilters(), **DEEP)
    assert shorter.total == page.total - 1
    assert (snapshot.memo.hits, snapshot.memo.misses) == (1, 2)  # bookings changed: computed anew
    assert snapshot.read_backs == read_backs + 4


def test_the_running_dashboard_reads_back_only_the_tables_a_publish_changed(
    warehouse: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "data"
    publish_snapshot(warehouse, folder / "serving")
    passwords = {
        u.username: p for u, p in create_demo_users(folder / "dashboard_users.json", TENANTS)
    }
    with publish.connect(folder / "serving") as con:
        (members,) = con.execute(
            "select count(*) from members where tenant_id = 'telcocorp'"
        ).fetchone()
    server = start_dashboard(folder, tmp_path / "dashboard.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            http_sign_in(client, "operator", passwords["operator"])
            before = client.post("/_dash-update-component", json=tenant_body("1"))
            assert before.status_code == 200 and f"{members:,}" in before.text
            _change(
                warehouse,
                "delete from marts.members where rowid ="
                " (select min(rowid) from marts.members where tenant_id = 'telcocorp')",
            )
            changed = publish_snapshot(warehouse, folder / "serving")
            assert changed.written == ("members", "snapshot_info")
            after = client.post("/_dash-update-component", json=tenant_body("2"))
            assert after.status_code == 200 and f"{members - 1:,}" in after.text
    finally:
        stop_dashboard(server)
    log = server.log.read_text()
    read_back = re.findall(r"serving snapshot tables read back: (.*); kept attached: (.*)", log)
    assert len(read_back) == 2, log
    assert set(read_back[0][0].split(", ")) == set(_manifest(folder / "serving"))
    assert read_back[1][0] == "members, snapshot_info"  # every other table stayed attached
    assert "bookings" in read_back[1][1].split(", ")
    assert "Traceback" not in log, log


def test_a_request_keeps_its_version_of_every_table_while_others_are_published(
    warehouse: Path, tmp_path: Path, snapshot: Snapshot
) -> None:
    serving = tmp_path / "serving"
    publish_snapshot(warehouse, serving)
    # Two tables that must agree: bookings and the daily metrics counted from them.
    sql = (
        "select (select count(*) from bookings where tenant_id = 'telcocorp'),"
        " (select sum(bookings) from daily_tenant_metrics where tenant_id = 'telcocorp')"
    )
    smaller = tmp_path / "smaller.duckdb"
    shutil.copyfile(warehouse, smaller)
    _change(smaller, "delete from marts.bookings where tenant_id = 'telcocorp'")
    _change(smaller, "delete from marts.daily_tenant_metrics where tenant_id = 'telcocorp'")
    with snapshot.cursor() as held:
        whole = held.execute(sql).fetchone()
        assert whole[0] > 0 and whole[0] == whole[1]
        publish_snapshot(smaller, serving)
        assert held.execute(sql).fetchone() == whole  # still the version it started with
        with snapshot.cursor() as fresh:
            assert fresh.execute(sql).fetchone() == (0, None)

    stop, seen, failures = threading.Event(), [], []

    def read() -> None:
        while not stop.is_set():
            try:
                with snapshot.cursor() as cur:
                    seen.append(cur.execute(sql).fetchone())
            except Exception as error:  # reported below: the test asserts there are none
                failures.append(error)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for reader in readers:
        reader.start()
    try:
        for turn in range(6):
            publish_snapshot(warehouse if turn % 2 == 0 else smaller, serving)
    finally:
        stop.set()
        for reader in readers:
            reader.join()
    assert failures == []
    assert seen and set(seen) <= {whole, (0, None)}  # never one table of each version
    assert len(snapshot._files) == len(_manifest(serving))  # old files detached once unread


def test_a_broken_table_file_is_refused_and_the_last_good_snapshot_served(
    warehouse: Path, tmp_path: Path, snapshot: Snapshot
) -> None:
    serving = tmp_path / "serving"
    publish_snapshot(warehouse, serving)
    good = snapshot.version()
    page = data.bookings_page(snapshot, OPERATOR, BookingFilters(), **DEEP)

    _change(warehouse, "update marts.members set tier = 'zz-test' where rowid = 0")
    publish_snapshot(warehouse, serving)
    members = serving / _manifest(serving)["members"]["file"]
    size = members.stat().st_size
    with members.open("r+b") as out:  # the new file, broken before the dashboard read it
        out.seek(size // 8)
        out.write(os.urandom(size - size // 4))

    assert snapshot.version() == good
    assert snapshot.problem is not None and "unreadable" in snapshot.problem
    assert data.bookings_page(snapshot, OPERATOR, BookingFilters(), **DEEP) == page
    with snapshot.cursor() as cur:
        assert cur.execute(TESTED_TIER).fetchone() == (0,)  # the last good members

    _change(warehouse, "update marts.members set tier = 'zz-test' where rowid = 1")
    publish_snapshot(warehouse, serving)
    assert snapshot.version() != good and snapshot.problem is None
    with snapshot.cursor() as cur:
        assert cur.execute(TESTED_TIER).fetchone() == (2,)
