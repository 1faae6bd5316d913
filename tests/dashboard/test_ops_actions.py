"""Operations that act: the approvals queue deciding through the real booking API, issues and
quarantined records acknowledged, resolved and replayed (state kept across restarts), and the
booking API's request figures per tenant and route. Real stand-ins, the real booking API over
HTTP, the dashboard as its own process, Debian's Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard.data import WORK_PAGE_SIZE
from ingestion.landing import quarantine as dead_letters
from ingestion.landing.zone import LandingZone
from sandbox.config import SERVICES, Limit
from sandbox.runner import start_sandbox
from testing.standins import sandbox_config
from tests.booking.test_http import (
    OPERATOR_TOKEN,
    ApiServer,
    _env,
    book,
    coffeechain,
    operator,
    search,
)
from tests.dashboard.conftest import (
    WAIT_MS,
    Server,
    browser_session,
    copy_snapshot,
    http_sign_in,
    screenshot,
    start_dashboard,
    stop_dashboard,
    wait_until,
)
from warehouse.publish import connect

# The first test also waits for the session's pipeline run (several minutes on a busy machine).
pytestmark = pytest.mark.timeout(900)
expect.set_options(timeout=WAIT_MS)  # an upper bound for what the page shows, not a timing check
TELCO_LIMIT = 50
GOOD_MEMBER = {
    "member_id": "CC9999999",
    "tier": "gold",
    "status": "active",
    "balance": 250,
    "currency": "stars",
}


@pytest.fixture(scope="module")
def booking_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """Stand-ins and the booking API, with room in the stand-ins' limits."""
    stand_ins = start_sandbox(sandbox_config(limits=dict.fromkeys(SERVICES, Limit(100_000))))
    folder = tmp_path_factory.mktemp("ops-api")
    api = ApiServer(_env(stand_ins, folder / "booking.sqlite3"), folder / "api.log")
    yield api
    api.stop()
    stand_ins.stop()


def _pending(client: httpx.Client, member: str, days: int) -> str:
    """A CoffeeChain booking above the approval threshold: pending, nothing charged."""
    flights = [
        f
        for f in search(client, coffeechain(member), cabin="business", days=days)
        if Decimal(f["price"]["loyalty_amount"]) > 50_000
    ]
    answer = book(client, coffeechain(member), flights[0])
    assert answer.status_code == 202, answer.text
    return answer.json()["data"]["booking_id"]


@pytest.fixture(scope="module")
def pending(booking_api: ApiServer) -> dict[str, str]:
    with httpx.Client(base_url=booking_api.url, timeout=60) as client:
        return {
            "approve": _pending(client, "CC3333333", 40),
            "reject": _pending(client, "CC1234567", 41),
            "forged": _pending(client, "CC3333333", 42),
        }


@pytest.fixture(scope="module")
def ops_folder(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The pipeline's snapshot, plus quarantined records of two tenants (one replayable)."""
    folder = tmp_path_factory.mktemp("ops-actions")
    passwords = copy_snapshot(data_dir, folder, "select 1")
    zone = LandingZone.under(folder)
    at = dt.datetime(2026, 11, 2, tzinfo=dt.UTC)
    dead_letters.write(
        zone,
        "loyalty",
        "members",
        "coffeechain",
        [dead_letters.Rejected("CC9999999", "field 'tier': (a rule since fixed)", GOOD_MEMBER)],
        at,
    )
    bad = [
        dead_letters.Rejected(
            f"TC-BAD{n:05d}", "field 'balance': not a number", {"member_id": f"TC-BAD{n:05d}"}
        )
        for n in range(WORK_PAGE_SIZE + 3)
    ]
    dead_letters.write(zone, "loyalty", "members", "telcocorp", bad, at)
    return folder, passwords


@pytest.fixture(scope="module")
def ops_dashboard(
    ops_folder: tuple[Path, dict], booking_api: ApiServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    running = start_dashboard(
        ops_folder[0],
        tmp_path_factory.mktemp("ops-actions-logs") / "dashboard.log",
        {"BOOKING_API_URL": booking_api.url, "BOOKING_OPERATOR_TOKEN": OPERATOR_TOKEN},
    )
    yield running
    stop_dashboard(running)
    log = running.log.read_text()
    assert "Traceback" not in log, log
    assert OPERATOR_TOKEN not in log


def _signed_in(browser: Browser, server: Server, username: str, password: str) -> Iterator[Page]:
    for session in browser_session(browser, server, username, password):
        yield session.page
        assert not [e for e in session.errors if "403" not in e], session.errors


@pytest.fixture
def op_page(
    browser: Browser, ops_dashboard: Server, ops_folder: tuple[Path, dict]
) -> Iterator[Page]:
    yield from _signed_in(browser, ops_dashboard, "operator", ops_folder[1]["operator"])


def _events(api: ApiServer, booking_id: str) -> list[dict[str, Any]]:
    answer = httpx.get(
        f"{api.url}/api/v1/admin/events", headers=operator(), params={"limit": 1000}, timeout=30
    )
    return [e for e in answer.json()["data"]["events"] if e["booking_id"] == booking_id]


def _status(api: ApiServer, booking_id: str) -> str:
    return _events(api, booking_id)[-1]["to_state"]


def _row(page: Page, table: str, text: str) -> Any:
    return page.locator(f"#{table} tbody tr").filter(has_text=text)


# ---------------------------------------------------------------- approvals queue


def test_operator_approves_and_rejects_from_the_queue(
    op_page: Page, ops_dashboard: Server, booking_api: ApiServer, pending: dict[str, str]
) -> None:
    page = op_page
    page.goto(f"{ops_dashboard.url}/operations")
    for booking_id in pending.values():
        expect(_row(page, "approvals-queue-table", booking_id)).to_have_count(1)
    row = _row(page, "approvals-queue-table", pending["approve"])
    expect(row.locator('[data-col="member_id"]')).to_have_text("CC3333333")
    expect(row.locator('[data-col="amount"]')).to_contain_text("stars ($")
    expect(row.locator('[data-col="age"]')).not_to_be_empty()
    screenshot(page, "operations-approvals-queue")

    page.fill("#approval-note", "fare checked")
    row.get_by_role("button", name="Approve").click()
    expect(page.locator("#approval-result-alert")).to_contain_text(f"Approved {pending['approve']}")
    expect(page.locator("#approval-result-alert")).to_contain_text("operator:operator")
    expect(_row(page, "approvals-queue-table", pending["approve"])).to_have_count(0)
    _row(page, "approvals-queue-table", pending["reject"]).get_by_role(
        "button", name="Reject"
    ).click()
    expect(page.locator("#approval-result-alert")).to_contain_text(f"Rejected {pending['reject']}")
    expect(_row(page, "approvals-queue-table", pending["reject"])).to_have_count(0)

    # The booking API's event feed is the record: who decided, and when.
    decided = {
        e["to_state"]: e
        for key in ("approve", "reject")
        for e in _events(booking_api, pending[key])
        if e["from_state"] == "pending_approval"
    }
    assert decided["charging"]["actor"] == "operator:operator"
    assert decided["rejected"]["actor"] == "operator:operator"
    assert decided["charging"]["occurred_at"] and decided["rejected"]["occurred_at"]
    assert _status(booking_api, pending["approve"]) == "confirmed"
    # The token went to the server only.
    assert OPERATOR_TOKEN not in page.content()


def _output_key(client: httpx.Client, first_output: str) -> str:
    """The callback's output key as Dash registered it (a duplicate output carries a hash)."""
    for dependency in client.get("/_dash-dependencies").json():
        if dependency["output"].startswith(f"..{first_output}."):
            return dependency["output"]
    raise AssertionError(f"no callback writes {first_output}")


def _decide_body(client: httpx.Client, booking_id: str, decision: str) -> dict[str, Any]:
    """The Dash callback request an Approve/Reject click sends."""
    button = {"type": "approval-decide", "decision": decision, "booking": booking_id}
    return {
        "output": _output_key(client, "approvals-result"),
        "outputs": [
            {"id": "approvals-result", "property": "children"},
            {"id": "approvals-queue", "property": "children"},
        ],
        "inputs": [
            [{"id": button, "property": "n_clicks", "value": 1}],
        ],
        "changedPropIds": [json.dumps(button, separators=(",", ":"), sort_keys=True) + ".n_clicks"],
        "state": [{"id": "approval-note", "property": "value", "value": "forged"}],
    }


def test_staff_and_other_sites_cannot_decide(
    ops_dashboard: Server,
    ops_folder: tuple[Path, dict],
    booking_api: ApiServer,
    pending: dict[str, str],
) -> None:
    # Tenant staff, even CoffeeChain's own, with a valid session and CSRF token: refused.
    with httpx.Client(base_url=ops_dashboard.url, timeout=60) as staff:
        http_sign_in(staff, "staff-coffeechain", ops_folder[1]["staff-coffeechain"])
        body = _decide_body(staff, pending["forged"], "approve")
        refused = staff.post("/_dash-update-component", json=body)
        assert refused.status_code == 403, refused.text
    with httpx.Client(base_url=ops_dashboard.url, timeout=60) as op:
        http_sign_in(op, "operator", ops_folder[1]["operator"])
        # A cross-site POST carries the session cookie at most, never this site's CSRF token.
        forged = op.post(
            "/_dash-update-component",
            json=body,
            headers={"X-CSRFToken": "", "Origin": "https://evil.example"},
        )
        assert forged.status_code == 400, forged.text
        del op.headers["X-CSRFToken"]
        assert op.post("/_dash-update-component", json=body).status_code == 400
    assert _status(booking_api, pending["forged"]) == "pending_approval"


# ---------------------------------------------------------------- issues and quarantine


def _first_issue_tenant(ops_folder: tuple[Path, dict]) -> tuple[str, int]:
    with connect(ops_folder[0] / "serving") as con:
        return con.execute(
            "select tenant_id, count(*) from reconciliation_issues group by 1 order by 2 desc limit 1"
        ).fetchone()


def _item_row(page: Page, item_id: str) -> Any:
    return page.locator("#work-table tbody tr").filter(has=page.locator(f'[data-item="{item_id}"]'))


def test_issues_filtered_acknowledged_resolved_and_kept_across_restarts(
    browser: Browser,
    ops_dashboard: Server,
    ops_folder: tuple[Path, dict],
    booking_api: ApiServer,
    tmp_path: Path,
) -> None:
    tenant, count = _first_issue_tenant(ops_folder)
    passwords = ops_folder[1]
    for page in _signed_in(browser, ops_dashboard, "operator", passwords["operator"]):
        page.goto(f"{ops_dashboard.url}/operations?work-tenant={tenant}&work-state=open")
        expect(page.locator("#work-count")).to_contain_text(f"{count:,} matching")
        first = page.locator("#work-table tbody tr").first
        item_id = first.locator("[data-item]").get_attribute("data-item")
        assert item_id
        page.fill("#work-note", "looking into it with the tenant")
        first.get_by_role("button", name="Acknowledge").click()
        expect(page.locator("#work-result-alert")).to_contain_text("Acknowledged")
        # It left the "open" list.
        expect(page.locator("#work-count")).to_contain_text(f"{count - 1:,} matching")
        page.goto(f"{ops_dashboard.url}/operations?work-tenant={tenant}&work-state=acknowledged")
        row = _item_row(page, item_id)
        expect(row.locator('[data-state="acknowledged"]')).to_have_count(1)
        expect(row).to_contain_text("acknowledged by operator")
        expect(row).to_contain_text("looking into it with the tenant")
        screenshot(page, "operations-issues")
    # A restart (and any publish: the state is not in the snapshot) keeps it.
    stop_dashboard(ops_dashboard)
    restarted = start_dashboard(
        ops_folder[0],
        tmp_path / "restarted.log",
        {"BOOKING_API_URL": booking_api.url, "BOOKING_OPERATOR_TOKEN": OPERATOR_TOKEN},
    )
    ops_dashboard.process, ops_dashboard.url = restarted.process, restarted.url
    ops_dashboard.log = restarted.log
    for page in _signed_in(browser, restarted, "operator", passwords["operator"]):
        page.goto(f"{restarted.url}/operations?work-tenant={tenant}&work-state=acknowledged")
        row = _item_row(page, item_id)
        expect(row).to_contain_text("acknowledged by operator")
        row.get_by_role("button", name="Resolve").click()
        expect(page.locator("#work-result-alert")).to_contain_text("Resolved")
        page.goto(f"{restarted.url}/operations?work-tenant={tenant}&work-state=resolved")
        expect(_item_row(page, item_id).locator('[data-state="resolved"]')).to_have_count(1)


def test_staff_see_and_act_on_their_own_tenant_only(
    browser: Browser, ops_dashboard: Server, ops_folder: tuple[Path, dict]
) -> None:
    with connect(ops_folder[0] / "serving") as con:
        other = con.execute(
            "select issue_id from reconciliation_issues where tenant_id <> 'telcocorp' limit 1"
        ).fetchone()[0]
    button = {"type": "work-action", "action": "resolved", "kind": "issue", "item": other}
    body = {
        "output": "",
        "outputs": [
            {"id": "work-result", "property": "children"},
            {"id": "work-changed", "property": "data"},
        ],
        "inputs": [[{"id": button, "property": "n_clicks", "value": 1}]],
        "changedPropIds": [json.dumps(button, separators=(",", ":"), sort_keys=True) + ".n_clicks"],
        "state": [{"id": "work-note", "property": "value", "value": None}],
    }
    with httpx.Client(base_url=ops_dashboard.url, timeout=60) as staff:
        http_sign_in(staff, "staff-telcocorp", ops_folder[1]["staff-telcocorp"])
        body["output"] = _output_key(staff, "work-result")
        assert staff.post("/_dash-update-component", json=body).status_code == 403
        # Asking the list for another tenant is refused too.
        listing = {
            "output": _output_key(staff, "work-body"),
            "outputs": [
                {"id": "work-body", "property": "children"},
                {"id": "work-category", "property": "options"},
                {"id": "work-page", "property": "max_value"},
            ],
            "inputs": [
                {"id": "work-list", "property": "value", "value": "issue"},
                {"id": "work-tenant", "property": "value", "value": "coffeechain"},
                {"id": "work-category", "property": "value", "value": None},
                {"id": "work-state", "property": "value", "value": None},
                {"id": "work-page", "property": "active_page", "value": 1},
                {"id": "work-changed", "property": "data", "value": None},
                {"id": "snapshot-version", "property": "data", "value": "1"},
            ],
            "changedPropIds": ["work-tenant.value"],
            "state": [],
        }
        assert staff.post("/_dash-update-component", json=listing).status_code == 403
        own = staff.post(
            "/_dash-update-component",
            json={
                **listing,
                "inputs": [
                    {**i, "value": "quarantine"}
                    if i["id"] == "work-list"
                    else {**i, "value": None}
                    if i["id"] == "work-tenant"
                    else i
                    for i in listing["inputs"]
                ],
            },
        )
        assert own.status_code == 200, own.text
        assert "TC-BAD" in own.text and "CC9999999" not in own.text
    password = ops_folder[1]["staff-telcocorp"]
    for page in _signed_in(browser, ops_dashboard, "staff-telcocorp", password):
        page.goto(f"{ops_dashboard.url}/operations?work-list=quarantine")
        expect(page.locator("#work-count")).to_contain_text(f"{WORK_PAGE_SIZE + 3} matching")
        expect(page.locator("#work-table")).not_to_contain_text("CC9999999")
        expect(page.get_by_role("button", name="Replay")).to_have_count(0)  # operators only
        expect(page.locator("#approvals-queue-card")).to_have_count(0)
        expect(page.locator("#api-glance-card")).to_have_count(0)


def test_quarantine_paginated_and_replayed(
    op_page: Page, ops_dashboard: Server, ops_folder: tuple[Path, dict]
) -> None:
    page = op_page
    page.goto(f"{ops_dashboard.url}/operations?work-list=quarantine&work-tenant=telcocorp")
    expect(page.locator("#work-count")).to_contain_text(
        f"{WORK_PAGE_SIZE + 3} matching · page 1 of 2"
    )
    expect(page.locator("#work-table tbody tr")).to_have_count(WORK_PAGE_SIZE)
    page.locator("#work-page").get_by_text("2", exact=True).click()
    expect(page.locator("#work-table tbody tr")).to_have_count(3)
    wait_until(page, "() => location.search.includes('work-page=2')")
    page.reload()
    expect(page.locator("#work-count")).to_contain_text("page 2 of 2")

    page.goto(f"{ops_dashboard.url}/operations?work-list=quarantine&work-tenant=coffeechain")
    row = _row(page, "work-table", "CC9999999")
    expect(row.locator('[data-state="open"]')).to_have_count(1)
    screenshot(page, "operations-quarantine")
    row.get_by_role("button", name="Replay").click()
    expect(page.locator("#work-result-alert")).to_contain_text("landed 1")
    row = _row(page, "work-table", "CC9999999")
    expect(row.locator('[data-state="resolved"]')).to_have_count(1)
    landed = LandingZone.under(ops_folder[0]).scan("loyalty", "members", "coffeechain")
    assert landed is not None
    assert "CC9999999" in landed.collect()["member_id"].to_list()


# ---------------------------------------------------------------- the booking API at a glance


def test_api_glance_shows_errors_and_429s_per_tenant_and_route(
    op_page: Page, ops_dashboard: Server, booking_api: ApiServer, pending: dict[str, str]
) -> None:
    # No credential: 401s until TelcoCorp's limit for the minute is spent, then 429s.
    statuses: list[int] = []
    while statuses.count(429) < 4:
        assert len(statuses) < 4 * TELCO_LIMIT
        statuses.append(
            httpx.get(
                f"{booking_api.url}/api/v1/bookings/bkg_{len(statuses)}",
                headers={"X-Tenant-ID": "telcocorp"},
            ).status_code
        )
    page = op_page
    page.goto(f"{ops_dashboard.url}/operations?api-window=15")
    row = page.locator("#api-glance-table tbody tr").filter(
        has=page.locator('[data-api-row="telcocorp GET /api/v1/bookings/{booking_id}"]')
    )
    expect(row).to_have_count(1)
    expect(row.locator('[data-col="throttled"]')).to_contain_text(f"{statuses.count(429)} (")
    expect(row.locator('[data-col="client_errors"]')).to_contain_text(f"{statuses.count(401)} (")
    expect(row.locator('[data-col="requests"]')).to_have_text(f"{len(statuses)}")
    expect(row.locator(".text-danger")).to_have_count(1)  # a failing integration stands out
    coffee = page.locator("#api-glance-table tbody tr").filter(
        has=page.locator('[data-api-row="coffeechain POST /api/v1/bookings"]')
    )
    expect(coffee).to_have_count(1)
    screenshot(page, "operations-api-glance")
