"""A broken serving snapshot: the last good one keeps being served, or a clear "data unavailable".

A publish writes a file per changed table and swaps ``serving.json``, the manifest naming
them; these tests publish a manifest naming a corrupt table file (or put corrupt JSON in its
place), as a failed disk or a bad copy would, and check what the pages, the callbacks and
the CSV export answer.
"""

from __future__ import annotations

import csv
import io
import json
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, expect

from dashboard.auth import create_demo_users
from tests.dashboard.conftest import (
    TENANTS,
    WAIT_MS,
    Server,
    http_sign_in,
    screenshot,
    sign_in,
    start_dashboard,
    stop_dashboard,
    tenant_body,
)
from warehouse.publish import connect


def _copy_data(source: Path, target: Path) -> dict[str, str]:
    target.mkdir(parents=True)
    shutil.copytree(source / "serving", target / "serving")
    created = create_demo_users(target / "dashboard_users.json", TENANTS)
    return {user.username: password for user, password in created}


def _damage(path: Path) -> None:
    """Overwrite the middle of the file at ``path`` where it lies."""
    size = path.stat().st_size
    with path.open("r+b") as out:
        out.seek(size // 8)
        out.write(os.urandom(size - size // 4))


def _bump_version(serving: Path, **tables: str) -> None:
    """Swap in a manifest naming ``tables``' new files (table name -> file), with a new version."""
    payload = json.loads((serving / "serving.json").read_text())
    payload["version"] = time.time_ns()
    for name, file in tables.items():
        payload["tables"][name]["file"] = file
    tmp = serving / ".serving.json.tmp"
    tmp.write_text(json.dumps(payload))
    os.replace(tmp, serving / "serving.json")


def _publish_corrupt_bookings(serving: Path) -> None:
    """Publish, as a failed disk would, a manifest whose bookings file is a corrupt copy."""
    good = (
        serving / json.loads((serving / "serving.json").read_text())["tables"]["bookings"]["file"]
    )
    broken = good.with_name("bookings-broken.duckdb")
    shutil.copyfile(good, broken)
    _damage(broken)
    _bump_version(serving, bookings=f"tables/{broken.name}")


def _poll(known: str | None) -> dict:
    return {
        "output": "..snapshot-version.data...freshness.children...freshness.title..",
        "outputs": [
            {"id": "snapshot-version", "property": "data"},
            {"id": "freshness", "property": "children"},
            {"id": "freshness", "property": "title"},
        ],
        "inputs": [{"id": "version-poll", "property": "n_intervals", "value": 1}],
        "changedPropIds": ["version-poll.n_intervals"],
        "state": [{"id": "snapshot-version", "property": "data", "value": known}],
    }


def _csv(client: httpx.Client) -> tuple[int, list[dict[str, str]] | None]:
    """Status and parsed rows of the export; a cut-off body raises, as it would in a download."""
    answer = client.get("/export/bookings.csv", params={"tenant": "telcocorp"})
    if answer.status_code != 200:
        return answer.status_code, None
    assert int(answer.headers["content-length"]) == len(answer.content)
    return 200, list(csv.DictReader(io.StringIO(answer.text)))


@pytest.fixture
def own_data(data_dir: Path, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the pipeline's snapshot, to break at will."""
    folder = tmp_path / "data"
    return folder, _copy_data(data_dir, folder)


@pytest.fixture
def own_server(own_data: tuple[Path, dict[str, str]], tmp_path: Path) -> Iterator[Server]:
    running = start_dashboard(own_data[0], tmp_path / "dashboard.log")
    yield running
    stop_dashboard(running)


def test_a_corrupt_publish_keeps_the_last_good_snapshot(
    own_server: Server, own_data: tuple[Path, dict[str, str]], data_dir: Path
) -> None:
    folder, passwords = own_data
    serving = folder / "serving"
    with connect(serving) as con:
        telco = con.execute(
            "select count(*) from bookings where tenant_id = 'telcocorp'"
        ).fetchone()[0]
    client = httpx.Client(base_url=own_server.url, timeout=60)
    http_sign_in(client, "operator", passwords["operator"])
    version = client.get("/_dash-layout").json()["props"]["children"][1]["props"]["data"]
    good = client.post("/_dash-update-component", json=tenant_body(version))
    assert good.status_code == 200 and "TelcoCorp" in good.text

    _publish_corrupt_bookings(serving)
    polled = client.post("/_dash-update-component", json=_poll(version))
    body = client.post("/_dash-update-component", json=tenant_body(version))
    exported = _csv(client)
    print(
        f"corrupt bookings file: poll {polled.status_code}, callback {body.status_code},"
        f" export {exported[0]} with {len(exported[1] or [])} rows"
    )
    assert polled.status_code == 200, polled.text
    assert "unreadable" in polled.text  # the frame says the newest data could not be read
    assert body.status_code == 200 and "TelcoCorp" in body.text
    assert exported[0] == 200 and exported[1] is not None and len(exported[1]) == telco

    (serving / "serving.json").write_text('{"version": 12, "publ')
    page = client.get("/")
    layout = client.get("/_dash-layout")
    polled = client.post("/_dash-update-component", json=_poll(version))
    print(f"corrupt serving.json: page {page.status_code}, layout {layout.status_code}")
    assert page.status_code == 200 and layout.status_code == 200
    assert polled.status_code == 200 and "unreadable" in polled.text
    body = client.post("/_dash-update-component", json=tenant_body(version))
    assert body.status_code == 200 and "TelcoCorp" in body.text
    client.close()


def test_a_corrupt_snapshot_with_nothing_good_says_data_unavailable(
    browser: Browser, own_data: tuple[Path, dict[str, str]], data_dir: Path, tmp_path: Path
) -> None:
    folder, passwords = own_data
    serving = folder / "serving"
    _publish_corrupt_bookings(serving)
    server = start_dashboard(folder, tmp_path / "fresh.log")
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            http_sign_in(client, "operator", passwords["operator"])
            status, _ = _csv(client)
            body = client.post("/_dash-update-component", json=tenant_body("1"))
        print(f"no good snapshot: export {status}, callback {body.status_code}")
        assert status == 503
        assert body.status_code == 503 and "Data unavailable" in body.text
        assert "Traceback" not in body.text

        context = browser.new_context(viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        page = context.new_page()
        sign_in(page, server, "operator", passwords["operator"])
        expect(page.locator("#data-unavailable")).to_contain_text("Data unavailable")
        expect(page.locator("#freshness")).to_have_text("data unavailable")
        screenshot(page, "data-unavailable")
        page.goto(f"{server.url}/bookings")
        expect(page.locator("#data-unavailable")).to_be_visible()

        (serving / "serving.json").write_text("not json")
        page.goto(f"{server.url}/t/telcocorp")
        expect(page.locator("#data-unavailable")).to_be_visible()

        # A good publish brings the data back by itself.
        shutil.copyfile(data_dir / "serving" / "serving.json", serving / "serving.json")
        _bump_version(serving)
        expect(page.locator("#tenant-name")).to_have_text("TelcoCorp")
        context.close()
    finally:
        stop_dashboard(server)


def test_a_snapshot_damaged_in_place_is_never_exported_cut_short(
    own_server: Server, own_data: tuple[Path, dict[str, str]]
) -> None:
    folder, passwords = own_data
    serving = folder / "serving"
    with connect(serving) as con:
        telco = con.execute(
            "select count(*) from bookings where tenant_id = 'telcocorp'"
        ).fetchone()[0]
    client = httpx.Client(base_url=own_server.url, timeout=60)
    http_sign_in(client, "operator", passwords["operator"])
    assert _csv(client)[0] == 200
    # The file being served is overwritten where it lies: there is no new file to refuse.
    # Blocks the server still holds may answer; anything else must fail as a whole.
    _damage(
        serving / json.loads((serving / "serving.json").read_text())["tables"]["bookings"]["file"]
    )
    for _ in range(3):
        status, rows = _csv(client)
        print(f"damaged in place: export {status} with {len(rows or [])} rows")
        assert status in (200, 503)
        if status == 200:
            assert rows is not None and len(rows) == telco
        body = client.post("/_dash-update-component", json=tenant_body("1"))
        assert body.status_code in (200, 503) and "Traceback" not in body.text
    client.close()
