"""Tenant isolation: staff editing the URL, or POSTing to the callback endpoint, get no other tenant's data."""

from __future__ import annotations

import csv
import io

import duckdb
import httpx
import pytest
from playwright.sync_api import expect

from tests.dashboard.conftest import Server, Session, http_sign_in, tenant_body

OTHER_TENANT_MARKERS = ("CoffeeChain", "stars", "coffeechain:")


@pytest.fixture
def staff_client(server: Server, passwords: dict[str, str]) -> httpx.Client:
    """TelcoCorp staff signed in over plain HTTP (the session cookie only)."""
    client = httpx.Client(base_url=server.url, timeout=30)
    signed = http_sign_in(client, "staff-telcocorp", passwords["staff-telcocorp"])
    assert signed.status_code == 302 and "session" in client.cookies
    yield client
    client.close()


def _version(client: httpx.Client) -> str:
    layout = client.get("/_dash-layout").json()
    store = layout["props"]["children"][1]
    assert store["props"]["id"] == "snapshot-version"
    return store["props"]["data"]


def _grid_rows(version: str, tenant_id: str) -> dict:
    outputs = [
        {"id": "bookings-grid", "property": "getRowsResponse"},
        {"id": "bookings-count", "property": "children"},
        {"id": "bookings-state", "property": "children"},
    ]
    filters = [
        ("bookings-tenant", "value", tenant_id),
        ("bookings-status", "value", None),
        ("bookings-date-field", "value", "created_at"),
        ("bookings-dates", "start_date", None),
        ("bookings-dates", "end_date", None),
        ("bookings-search", "value", None),
    ]
    return {
        "output": "..bookings-grid.getRowsResponse...bookings-count.children...bookings-state.children..",
        "outputs": outputs,
        "inputs": [
            {
                "id": "bookings-grid",
                "property": "getRowsRequest",
                "value": {"startRow": 0, "endRow": 100, "sortModel": [], "filterModel": {}},
            }
        ],
        "changedPropIds": ["bookings-grid.getRowsRequest"],
        "state": [
            {"id": "snapshot-version", "property": "data", "value": version},
            *({"id": i, "property": p, "value": v} for i, p, v in filters),
        ],
    }


def _booking_body(version: str, tenant_id: str, booking_id: str) -> dict:
    return {
        "output": "booking-body.children",
        "outputs": {"id": "booking-body", "property": "children"},
        "inputs": [
            {"id": "snapshot-version", "property": "data", "value": version},
            {
                "id": "booking-key",
                "property": "data",
                "value": {"tenant_id": tenant_id, "booking_id": booking_id},
            },
        ],
        "changedPropIds": ["booking-key.data"],
        "state": [],
    }


def _route(pathname: str) -> dict:
    return {
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [
            {"id": "_pages_content", "property": "children"},
            {"id": "_pages_store", "property": "data"},
        ],
        "inputs": [
            {"id": "_pages_location", "property": "pathname", "value": pathname},
            {"id": "_pages_location", "property": "search", "value": ""},
        ],
        "changedPropIds": ["_pages_location.pathname"],
        "state": [],
    }


def test_callback_posts_for_another_tenant_are_refused(
    staff_client: httpx.Client, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    version = _version(staff_client)
    coffee_booking = snap_sql.execute(
        "select booking_id from bookings where tenant_id = 'coffeechain' limit 1"
    ).fetchone()[0]
    telco_booking = snap_sql.execute(
        "select booking_id from bookings where tenant_id = 'telcocorp' limit 1"
    ).fetchone()[0]
    # The same requests for the staff user's own tenant succeed: the payloads are real ones.
    for allowed in (
        tenant_body(version, "telcocorp"),
        _grid_rows(version, "telcocorp"),
        _booking_body(version, "telcocorp", telco_booking),
    ):
        answer = staff_client.post("/_dash-update-component", json=allowed)
        assert answer.status_code == 200, answer.text
        assert "TelcoCorp" in answer.text or telco_booking in answer.text
    for forged in (
        tenant_body(version, "coffeechain"),
        _grid_rows(version, "coffeechain"),
        _booking_body(version, "coffeechain", coffee_booking),
    ):
        answer = staff_client.post("/_dash-update-component", json=forged)
        assert answer.status_code == 403, answer.text
        assert coffee_booking not in answer.text
        assert not any(marker in answer.text for marker in OTHER_TENANT_MARKERS)
    routed = staff_client.post("/_dash-update-component", json=_route("/t/coffeechain"))
    assert routed.status_code == 200 and "Not available" in routed.text
    assert "tenant-body" not in routed.text and "stars" not in routed.text


def test_export_and_pages_refuse_another_tenant_over_http(
    staff_client: httpx.Client, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    refused = staff_client.get("/export/bookings.csv", params={"tenant": "coffeechain"})
    assert refused.status_code == 403 and "bkg_" not in refused.text
    own = staff_client.get("/export/bookings.csv")
    telco = snap_sql.execute(
        "select count(*) from bookings where tenant_id = 'telcocorp'"
    ).fetchone()[0]
    rows = list(csv.DictReader(io.StringIO(own.text)))
    assert own.status_code == 200 and len(rows) == telco
    assert {row["tenant_id"] for row in rows} == {"telcocorp"}


def test_staff_editing_the_url_get_a_refusal_and_no_data(
    telco_staff: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = telco_staff.page
    page.goto(f"{server.url}/t/coffeechain")
    expect(page.locator("#refused")).to_contain_text("Not available")
    expect(page.locator("[data-kpi]")).to_have_count(0)
    coffee_booking = snap_sql.execute(
        "select booking_id from bookings where tenant_id = 'coffeechain' limit 1"
    ).fetchone()[0]
    page.goto(f"{server.url}/booking/coffeechain/{coffee_booking}")
    expect(page.locator("#refused")).to_be_visible()
    assert coffee_booking not in page.locator("body").inner_text()
    telco = snap_sql.execute(
        "select count(*) from bookings where tenant_id = 'telcocorp'"
    ).fetchone()[0]
    page.goto(f"{server.url}/bookings")
    expect(page.locator("#bookings-total")).to_have_text(f"{telco:,}")
    assert "CoffeeChain" not in page.locator("#bookings-grid").inner_text()
