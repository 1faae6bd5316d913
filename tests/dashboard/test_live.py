"""Live behaviour: a publish while someone browses, and the state before any publish."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, expect

from dashboard.auth import create_demo_users
from tests.dashboard.conftest import (
    TENANTS,
    Server,
    Session,
    http_sign_in,
    screenshot,
    sign_in,
    start_dashboard,
    stop_dashboard,
)
from warehouse.publish import publish_snapshot


@pytest.fixture
def restored_snapshot(data_dir: Path) -> Iterator[Path]:
    """Whatever a test publishes, the pipeline's own snapshot is back in place afterwards."""
    yield data_dir / "serving"
    publish_snapshot(data_dir / "warehouse.duckdb", data_dir / "serving")


def test_a_publish_during_browsing_shows_the_new_data(
    operator: Session,
    server: Server,
    data_dir: Path,
    restored_snapshot: Path,
    snap_sql: duckdb.DuckDBPyConnection,
    tmp_path: Path,
) -> None:
    page = operator.page
    page.goto(f"{server.url}/")
    telco = snap_sql.execute(
        "select count(*), count(*) filter (where status = 'cancelled') from bookings"
        " where tenant_id = 'telcocorp'"
    ).fetchone()
    expect(page.locator('[data-kpi="telcocorp:bookings"]')).to_have_text(f"{telco[0]:,}")
    changed = tmp_path / "warehouse.duckdb"
    shutil.copyfile(data_dir / "warehouse.duckdb", changed)
    with duckdb.connect(str(changed)) as con:
        con.execute(
            "delete from marts.bookings where tenant_id = 'telcocorp' and status = 'cancelled'"
        )
    publish_snapshot(changed, restored_snapshot)
    # The page polls serving.json and re-renders by itself: no reload here.
    expect(page.locator('[data-kpi="telcocorp:bookings"]')).to_have_text(f"{telco[0] - telco[1]:,}")
    expect(page.locator('[data-kpi="telcocorp:cancellation_rate"]')).to_have_text("0.0 %")
    page.goto(f"{server.url}/bookings")
    page.locator("#bookings-tenant").click()
    page.get_by_role("option", name="TelcoCorp").click()
    expect(page.locator("#bookings-total")).to_have_text(f"{telco[0] - telco[1]:,}")
    assert operator.errors == []


def test_before_the_first_publish_pages_say_how_to_get_data(
    browser: Browser, data_dir: Path, tmp_path: Path
) -> None:
    empty = tmp_path / "data"
    empty.mkdir()
    password = {
        u.username: p for u, p in create_demo_users(empty / "dashboard_users.json", TENANTS)
    }
    server = start_dashboard(empty, tmp_path / "dashboard.log")
    try:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        sign_in(page, server, "operator", password["operator"])
        expect(page.locator("#no-snapshot")).to_contain_text("make pipeline")
        expect(page.locator("#freshness")).to_have_text("no data yet")
        screenshot(page, "no-snapshot")
        page.goto(f"{server.url}/bookings")
        expect(page.locator("#no-snapshot")).to_be_visible()
        page.goto(f"{server.url}/")
        publish_snapshot(data_dir / "warehouse.duckdb", empty / "serving")
        expect(page.locator('[data-kpi="all:bookings"]')).to_be_visible()
        assert errors == []
        context.close()
        with httpx.Client(base_url=server.url, timeout=30) as client:
            http_sign_in(client, "operator", password["operator"])
            broken = client.post("/_dash-update-component", json={"output": "no-such.children"})
        assert broken.status_code == 500
        assert "Traceback" not in broken.text and "File " not in broken.text
    finally:
        stop_dashboard(server)
    # The error is logged with its trace on the server, not swallowed.
    assert "Traceback" in (tmp_path / "dashboard.log").read_text()
