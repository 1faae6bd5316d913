"""Booking funnel, approvals, saga health, checks and capabilities: read, shown, scoped.

The marts come from the snapshot fixture with known rows (``OPERATIONS_MARTS``), and an
older snapshot without them must say "not available yet" everywhere, never fail.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from dashboard import data
from dashboard.data import Snapshot
from dashboard.scope import Scope, ScopeError
from tests.dashboard.conftest import (
    Server,
    Session,
    browser_session,
    http_sign_in,
    screenshot,
    tenant_body,
)

OPERATOR = Scope("op", "operator")
TELCO = Scope("telco", "staff", "telcocorp")
# What must never reach TelcoCorp's staff: other tenants' names, ids and reasons.
OTHER_TENANTS = ("CoffeeChain", "coffeechain", "FintechApp", "fintechapp", "bkg_cc_", "stars")


def _body_request(output: str, version: str | None) -> dict:
    """A Dash callback request for a page body that listens to the snapshot version only."""
    return {
        "output": f"{output}.children",
        "outputs": {"id": output, "property": "children"},
        "inputs": [{"id": "snapshot-version", "property": "data", "value": version}],
        "changedPropIds": ["snapshot-version.data"],
        "state": [],
    }


def operations_body(version: str | None) -> dict:
    """The request that renders the operations page."""
    return _body_request("operations-body", version)


def health_body(version: str | None) -> dict:
    """The request that renders the data health page."""
    return _body_request("health-body", version)


def _version(client: httpx.Client) -> str:
    store = client.get("/_dash-layout").json()["props"]["children"][1]
    assert store["props"]["id"] == "snapshot-version"
    return store["props"]["data"]


def _cells(page: Page, table: str, **match: str) -> dict[str, str]:
    """The cells, by column key, of the one row of ``table`` whose columns hold ``match``."""
    rows = page.locator(f"#{table} tbody tr")
    for column, text in match.items():
        rows = rows.filter(has=page.locator(f'[data-col="{column}"]', has_text=text))
    expect(rows).to_have_count(1)
    cells = rows.locator("td")
    return {
        cells.nth(i).get_attribute("data-col") or "": cells.nth(i).inner_text()
        for i in range(cells.count())
    }


@pytest.fixture(scope="module")
def ops_snapshot(ops_data: tuple[Path, dict]) -> Iterator[Snapshot]:
    snap = Snapshot(ops_data[0])
    yield snap
    snap.close()


@pytest.fixture(scope="module")
def old_snapshot(old_data: tuple[Path, dict]) -> Iterator[Snapshot]:
    snap = Snapshot(old_data[0])
    yield snap
    snap.close()


# ---------------------------------------------------------------- the data layer


def test_the_data_layer_reads_the_marts_exactly(ops_snapshot: Snapshot) -> None:
    ops = data.operations(ops_snapshot, OPERATOR)
    assert ops.funnel_totals is not None and ops.funnel is not None
    totals = {t.tenant_id: t for t in ops.funnel_totals}
    assert set(totals) == {"coffeechain", "fintechapp", "telcocorp"}
    coffee = totals["coffeechain"]
    assert (coffee.searches, coffee.bookings, coffee.confirmed, coffee.abandoned_searches) == (
        100,
        18,
        15,
        45,
    )
    assert (coffee.first_day, coffee.last_day) == (dt.date(2026, 10, 30), dt.date(2026, 10, 31))
    assert totals["fintechapp"].searches == 0 and totals["fintechapp"].first_day is None

    assert ops.approvals is not None
    approvals = {a.tenant_id: a for a in ops.approvals}
    assert approvals["coffeechain"] == data.ApprovalSummary(
        "coffeechain",
        pending=2,
        oldest_pending_since=dt.datetime(2026, 10, 31, 8, tzinfo=dt.UTC),
        decided=5,
        approved=4,
        rejected=1,
        median_decision_seconds=1800,  # waits 600, 1200, 1800, 3600, 7200
        p90_decision_seconds=7200,  # nearest rank: 90 % of 5 is 4.5, so the 5th
    )
    assert (
        approvals["telcocorp"].median_decision_seconds,
        approvals["telcocorp"].p90_decision_seconds,
    ) == (900, 1500)
    assert approvals["fintechapp"] == data.ApprovalSummary(
        "fintechapp", 0, None, 0, 0, 0, None, None
    )
    assert ops.pending is not None
    assert [p["booking_id"] for p in ops.pending] == ["bkg_cc_p1", "bkg_cc_p2", "bkg_tc_p1"]
    assert ops.pending[0]["loyalty_amount"] == Decimal("60000.00")
    assert isinstance(ops.pending[0]["usd_amount"], Decimal)

    assert ops.saga is not None and len(ops.saga) == 6
    waiting = {(s.tenant_id, s.status): s.bookings for s in ops.saga}
    assert waiting[("coffeechain", "needs_reconciliation")] == 2
    assert ops.checks is not None
    # The agreed order, whatever order the mart holds them in.
    assert [c.check_name for c in ops.checks if c.tenant_id == "coffeechain"] == list(
        data.CHECK_NAMES
    )
    assert ops.capabilities is not None
    assert [c.capability for c in ops.capabilities if c.tenant_id == "coffeechain"] == list(
        data.CAPABILITIES
    )


def test_staff_read_their_own_tenant_only(ops_snapshot: Snapshot) -> None:
    ops = data.operations(ops_snapshot, TELCO)
    rows = [
        *(ops.funnel or []),
        *(ops.funnel_totals or []),
        *(ops.approvals or []),
        *(ops.saga or []),
        *(ops.capabilities or []),
        *(ops.checks or []),
    ]
    assert rows and {r.tenant_id for r in rows} == {"telcocorp"}
    assert {p["tenant_id"] for p in ops.pending or []} == {"telcocorp"}
    checks, capabilities = data.checks_and_capabilities(ops_snapshot, TELCO)
    assert {c.tenant_id for c in [*(checks or []), *(capabilities or [])]} == {"telcocorp"}
    with pytest.raises(ScopeError):
        data.operations(ops_snapshot, TELCO, "coffeechain")
    one = data.operations(ops_snapshot, OPERATOR, "coffeechain")
    assert {t.tenant_id for t in one.funnel_totals or []} == {"coffeechain"}


def test_an_older_snapshot_without_the_marts_reads_as_not_available(
    old_snapshot: Snapshot,
) -> None:
    ops = data.operations(old_snapshot, OPERATOR)
    assert ops == data.Operations(None, None, None, None, None, None, None)
    assert data.checks_and_capabilities(old_snapshot, TELCO) == (None, None)
    assert data.tenant_kpis(old_snapshot, OPERATOR)  # the rest of the snapshot still serves


# ---------------------------------------------------------------- pages in Chromium


@pytest.fixture
def ops_operator(
    browser: Browser, ops_server: Server, ops_data: tuple[Path, dict]
) -> Iterator[Session]:
    yield from browser_session(browser, ops_server, "operator", ops_data[1]["operator"])


@pytest.fixture
def ops_telco(
    browser: Browser, ops_server: Server, ops_data: tuple[Path, dict]
) -> Iterator[Session]:
    yield from browser_session(
        browser, ops_server, "staff-telcocorp", ops_data[1]["staff-telcocorp"]
    )


def test_operators_see_every_tenants_funnel_approvals_saga_and_checks(
    ops_operator: Session, ops_server: Server
) -> None:
    page = ops_operator.page
    page.goto(f"{ops_server.url}/operations")
    expect(page.locator("#funnel-table tbody tr")).to_have_count(3)
    coffee = _cells(page, "funnel-table", tenant="CoffeeChain")
    assert coffee["searches"] == "100" and coffee["bookings"] == "18"
    assert coffee["confirmed"] == "15" and coffee["abandoned"] == "45"
    assert coffee["search_to_booking"] == "18.0 %" and coffee["booking_to_confirmed"] == "83.3 %"
    assert coffee["days"] == "2026-10-30 to 2026-10-31"
    expect(page.locator("#funnel-daily .main-svg").first).to_be_visible()

    approvals = _cells(page, "approvals-table", tenant="CoffeeChain")
    assert approvals["pending"] == "2" and approvals["approved"] == "4"
    assert approvals["rejected"] == "1" and approvals["decided"] == "5"
    assert approvals["median"] == "30 min" and approvals["p90"] == "2 h 00 min"
    assert approvals["oldest_pending"].startswith("2026-10-31 08:00 UTC (")
    telco = _cells(page, "approvals-table", tenant="TelcoCorp")
    assert (telco["median"], telco["p90"]) == ("15 min", "25 min")
    pending = page.locator("#pending-table tbody tr")
    expect(pending).to_have_count(3)
    expect(pending.first.locator('[data-col="booking_id"]')).to_have_text("bkg_cc_p1")
    expect(pending.first.locator('[data-col="amount"]')).to_have_text("60,000 stars ($600.00)")

    expect(page.locator("#saga-table tbody tr")).to_have_count(6)
    saga = _cells(page, "saga-table", tenant="CoffeeChain", status="Needs reconciliation")
    assert saga["tenant"] == "CoffeeChain" and saga["oldest_since"] == "2026-10-30 06:00 UTC"
    assert saga["oldest_age_hours"] == "42 h"

    expect(page.locator('[data-check="coffeechain:ledger_vs_platform"]')).to_have_text(
        "Ledger reconciliation unavailable for CoffeeChain: CoffeeChain's API offers no ledger feed"
    )
    expect(page.locator('[data-check="coffeechain:member_liability"]')).to_have_text(
        "Member liability runs: from balance lookups of 120 members the platform knows"
    )
    expect(page.locator('[data-check="telcocorp:ledger_vs_platform"]')).to_have_attribute(
        "data-available", "yes"
    )
    refunds = _cells(page, "capabilities-telcocorp", capability="Refunds")
    assert refunds["found"] == "not offered" and refunds["detail"] == "HTTP 404 on refunds"
    never = _cells(page, "capabilities-coffeechain", capability="Partner session")
    assert never["found"] == "not probed yet" and never["declared"] == "no"
    screenshot(page, "operations")
    assert ops_operator.errors == []


def test_the_tenant_page_says_which_checks_are_unavailable_and_shows_empty_views(
    ops_operator: Session, ops_server: Server
) -> None:
    page = ops_operator.page
    page.goto(f"{ops_server.url}/t/fintechapp")
    expect(page.locator("#tenant-name")).to_have_text("FintechApp")
    expect(page.locator('[data-check="fintechapp:ledger_vs_platform"]')).to_have_text(
        "Ledger reconciliation unavailable for FintechApp: FintechApp's API offers no ledger feed"
    )
    expect(page.locator("#funnel")).to_contain_text("No searches or bookings recorded yet.")
    expect(page.locator("#approvals")).to_contain_text("No approval requests yet.")
    expect(page.locator("#saga")).to_contain_text("Nothing waits.")
    assert "CoffeeChain" not in page.locator("#checks").inner_text()
    expect(page.locator("#tenant-routes .main-svg").first).to_be_visible()
    screenshot(page, "tenant-operations")

    page.goto(f"{ops_server.url}/health")
    unavailable = page.locator("#unavailable-checks [data-unavailable]")
    expect(unavailable).to_have_count(2)
    expect(page.locator('[data-unavailable="coffeechain:ledger_vs_platform"]')).to_contain_text(
        "CoffeeChain's API offers no ledger feed"
    )
    expect(page.locator('[data-capability="coffeechain:ledger_feed"]')).to_be_visible()
    screenshot(page, "health-checks")
    assert ops_operator.errors == []


def test_staff_see_their_tenant_only_on_every_new_view(
    ops_telco: Session, ops_server: Server
) -> None:
    page = ops_telco.page
    page.goto(f"{ops_server.url}/t/telcocorp")
    expect(page.locator("#funnel-table tbody tr")).to_have_count(1)
    assert _cells(page, "funnel-table", tenant="TelcoCorp")["searches"] == "30"
    expect(page.locator('[data-check="telcocorp:member_liability"]')).to_have_text(
        "Member liability runs: from the member list"
    )
    page.get_by_role("link", name="Operations").click()
    expect(page).to_have_url(f"{ops_server.url}/operations")
    expect(page.locator("#approvals-table tbody tr")).to_have_count(1)
    expect(page.locator("#pending-table tbody tr")).to_have_count(1)
    expect(page.locator("#saga-table tbody tr")).to_have_count(2)
    expect(page.locator("[data-tenant-checks]")).to_have_count(1)
    text = page.locator("body").inner_text()
    assert not any(marker in text for marker in OTHER_TENANTS), text
    page.goto(f"{ops_server.url}/health")
    expect(page.locator("#all-checks-ran")).to_be_visible()
    assert "CoffeeChain" not in page.locator("body").inner_text()
    assert ops_telco.errors == []


def test_callback_payloads_never_carry_another_tenants_figures(
    ops_server: Server, ops_data: tuple[Path, dict]
) -> None:
    with httpx.Client(base_url=ops_server.url, timeout=30) as client:
        signed = http_sign_in(client, "staff-telcocorp", ops_data[1]["staff-telcocorp"])
        assert signed.status_code == 302
        version = _version(client)
        for request in (operations_body(version), health_body(version)):
            answer = client.post("/_dash-update-component", json=request)
            assert answer.status_code == 200, answer.text
            assert "telcocorp:" in answer.text
            assert not any(marker in answer.text for marker in OTHER_TENANTS), answer.text
        own = client.post("/_dash-update-component", json=tenant_body(version, "telcocorp"))
        assert own.status_code == 200 and "bkg_tc_p1" in own.text
        assert not any(marker in own.text for marker in OTHER_TENANTS)
        forged = client.post("/_dash-update-component", json=tenant_body(version, "coffeechain"))
        assert forged.status_code == 403
        assert not any(marker in forged.text for marker in OTHER_TENANTS)
        assert "ledger feed" not in forged.text and "bkg_" not in forged.text


def test_an_older_snapshot_says_not_available_yet_and_serves_the_rest(
    browser: Browser, old_server: Server, old_data: tuple[Path, dict]
) -> None:
    passwords = old_data[1]
    for session in browser_session(browser, old_server, "operator", passwords["operator"]):
        page = session.page
        page.goto(f"{old_server.url}/operations")
        missing = page.locator("[data-missing]")
        expect(missing).to_have_count(4)  # funnel, approvals, saga health, checks
        expect(missing.first).to_contain_text("not available yet")
        page.goto(f"{old_server.url}/t/coffeechain")
        expect(page.locator("#tenant-name")).to_have_text("CoffeeChain")
        expect(page.locator('[data-kpi="coffeechain:bookings"]')).to_be_visible()
        expect(page.locator("#funnel [data-missing]")).to_contain_text("Booking funnel")
        expect(page.locator("#approvals [data-missing]")).to_be_visible()
        page.goto(f"{old_server.url}/health")
        expect(page.locator("#open-issues")).to_be_visible()
        expect(page.locator("#checks [data-missing]")).to_be_visible()
        screenshot(page, "operations-not-available")
        assert session.errors == []
    with httpx.Client(base_url=old_server.url, timeout=30) as client:
        http_sign_in(client, "staff-telcocorp", passwords["staff-telcocorp"])
        answer = client.post("/_dash-update-component", json=operations_body(_version(client)))
        assert answer.status_code == 200 and "not available yet" in answer.text


def test_the_pipelines_own_snapshot_shows_its_saga_health(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    rows = snap_sql.execute(
        "select tenant_id, status, bookings from saga_health order by tenant_id, status"
    ).fetchall()
    assert {r[0] for r in rows} == {"coffeechain", "fintechapp", "telcocorp"}
    page = operator.page
    page.goto(f"{server.url}/operations")
    expect(page.locator("#saga-table tbody tr")).to_have_count(len(rows))
    shown = page.locator('#saga-table [data-col="bookings"]').all_inner_texts()
    assert shown == [f"{n:,}" for _, _, n in rows]
    assert operator.errors == []
