"""Every page in headless Chromium, checked against queries on the snapshot."""

from __future__ import annotations

import csv
import io
import re
from decimal import Decimal

import duckdb
import httpx
from playwright.sync_api import Page, expect

from tests.dashboard.conftest import Server, Session, screenshot, sign_in


def usd(amount: Decimal) -> str:
    return f"${amount:,.2f}"


def kpi(page: Page, key: str) -> str:
    return page.locator(f'[data-kpi="{key}"]').inner_text()


def test_sign_in_refuses_a_wrong_password_then_signs_in_and_out(
    browser, server: Server, passwords: dict[str, str]
) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(f"{server.url}/bookings")
    expect(page).to_have_url(re.compile(r"/login\?next=%2Fbookings"))
    page.fill("#username", "operator")
    page.fill("#password", "not the password")
    page.click("#sign-in")
    expect(page.locator("#login-error")).to_have_text("Wrong username or password.")
    sign_in(page, server, "operator", passwords["operator"], "/bookings")
    expect(page).to_have_url(f"{server.url}/bookings")
    cookie = next(c for c in context.cookies() if c["name"] == "session")
    page.click("#sign-out")
    expect(page).to_have_url(re.compile(r"/login$"))
    # A copy of the signed-out session's cookie opens nothing either.
    replayed = httpx.get(f"{server.url}/_dash-layout", cookies={"session": cookie["value"]})
    assert replayed.status_code == 401
    page.goto(f"{server.url}/")
    expect(page).to_have_url(re.compile(r"/login\?next=%2F$"))
    assert httpx.get(f"{server.url}/_dash-layout").status_code == 401
    context.close()


def test_overview_shows_each_tenants_kpis(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/")
    rows = snap_sql.execute(
        "select tenant_id, count(*), sum(usd_amount), sum(refund_usd), sum(cashback_usd),"
        " count(*) filter (where status = 'pending_approval'),"
        " count(*) filter (where status = 'cancelled') from bookings group by 1"
    ).fetchall()
    liability = dict(
        snap_sql.execute("select tenant_id, sum(balance_usd) from members group by 1").fetchall()
    )
    expect(page.locator('[data-kpi="all:bookings"]')).to_have_text(f"{sum(r[1] for r in rows):,}")
    for tenant, bookings, volume, refunds, cashback, pending, cancelled in rows:
        assert kpi(page, f"{tenant}:bookings") == f"{bookings:,}"
        assert kpi(page, f"{tenant}:usd_volume") == usd(volume)
        assert kpi(page, f"{tenant}:refunds_usd") == usd(refunds)
        assert kpi(page, f"{tenant}:cashback_usd") == usd(cashback)
        assert kpi(page, f"{tenant}:pending_approval") == f"{pending:,}"
        assert kpi(page, f"{tenant}:liability_usd") == usd(liability[tenant])
        rate = (Decimal(cancelled) * 100 / bookings).quantize(Decimal("0.1"))
        assert kpi(page, f"{tenant}:cancellation_rate") == f"{rate} %"
    expect(page.locator("#overview-bookings .main-svg").first).to_be_visible()
    expect(page.locator("#overview-status .main-svg").first).to_be_visible()
    expect(page.locator("#freshness")).to_contain_text("updated")
    screenshot(page, "overview")
    assert operator.errors == []


def test_tenant_view_in_its_own_currency_and_usd(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/t/fintechapp")
    volume, volume_usd, cashback = snap_sql.execute(
        "select sum(loyalty_amount), sum(usd_amount), sum(cashback_amount) from bookings"
        " where tenant_id = 'fintechapp'"
    ).fetchone()
    balance, members = snap_sql.execute(
        "select sum(balance), count(*) from members where tenant_id = 'fintechapp'"
    ).fetchone()
    expect(page.locator("#tenant-name")).to_have_text("FintechApp")
    assert kpi(page, "fintechapp:loyalty_volume") == f"{volume:,.2f} coins"
    assert kpi(page, "fintechapp:loyalty_volume:usd") == usd(volume_usd)
    assert kpi(page, "fintechapp:cashback") == f"{cashback:,.2f} coins"
    assert kpi(page, "fintechapp:liability") == f"{balance:,.2f} coins"
    assert kpi(page, "fintechapp:members") == f"{members:,}"
    tiers = snap_sql.execute(
        "select count(distinct coalesce(tier, 'none')) from members where tenant_id = 'fintechapp'"
    ).fetchone()[0]
    expect(page.locator("#tiers-table tbody tr")).to_have_count(tiers)
    for graph in ("tenant-routes", "tenant-airlines", "tenant-cabins", "tenant-bookings"):
        expect(page.locator(f"#{graph} .main-svg").first).to_be_visible()
    screenshot(page, "tenant")
    assert operator.errors == []


def test_staff_land_on_their_tenant_and_see_no_overview(
    telco_staff: Session, server: Server
) -> None:
    page = telco_staff.page
    page.goto(f"{server.url}/")
    expect(page).to_have_url(f"{server.url}/t/telcocorp")
    expect(page.locator("#tenant-name")).to_have_text("TelcoCorp")
    expect(page.get_by_role("link", name="Overview")).to_have_count(0)


def _pick_status(page: Page, status: str) -> None:
    page.click("#bookings-status")
    page.get_by_role("option", name=status.replace("_", " ")).click()
    page.keyboard.press("Escape")


def test_explorer_filters_search_export_and_opens_a_booking(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/bookings")
    total = snap_sql.execute("select count(*) from bookings").fetchone()[0]
    expect(page.locator("#bookings-total")).to_have_text(f"{total:,}")
    screenshot(page, "bookings")

    cancelled = snap_sql.execute(
        "select count(*) from bookings where status = 'cancelled'"
    ).fetchone()[0]
    _pick_status(page, "cancelled")
    expect(page.locator("#bookings-total")).to_have_text(f"{cancelled:,}")
    first_status = page.locator('.ag-center-cols-container [col-id="status"]').first
    expect(first_status).to_have_text("cancelled")

    href = page.locator("#bookings-export").get_attribute("href")
    assert href is not None and "status=cancelled" in href
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    exported = httpx.get(f"{server.url}{href}", cookies=cookies, timeout=30)
    assert exported.status_code == 200
    rows = list(csv.DictReader(io.StringIO(exported.text)))
    expected = {
        r[0]
        for r in snap_sql.execute(
            "select booking_id from bookings where status = 'cancelled'"
        ).fetchall()
    }
    assert {r["booking_id"] for r in rows} == expected and len(rows) == len(expected)

    booking_id, pnr, tenant = snap_sql.execute(
        "select booking_id, pnr, tenant_id from bookings where status = 'cancelled'"
        " and pnr is not null order by booking_id limit 1"
    ).fetchone()
    page.fill("#bookings-search", pnr)
    page.press("#bookings-search", "Enter")
    expect(page.locator("#bookings-total")).to_have_text("1")
    page.fill("#bookings-search", "no-such-booking")
    page.press("#bookings-search", "Enter")
    expect(page.locator("#bookings-state")).to_have_text("No bookings match these filters.")
    page.fill("#bookings-search", pnr)
    page.press("#bookings-search", "Enter")
    expect(page.locator("#bookings-total")).to_have_text("1")

    page.locator('.ag-row [col-id="booking_id"]', has_text=booking_id).first.click()
    expect(page).to_have_url(f"{server.url}/booking/{tenant}/{booking_id}")
    _check_detail(page, snap_sql, tenant, booking_id)
    screenshot(page, "booking")
    assert operator.errors == []


def _check_detail(
    page: Page, snap_sql: duckdb.DuckDBPyConnection, tenant: str, booking_id: str
) -> None:
    order, pnr, pax, amount, currency, places, amount_usd, segments, ledger = snap_sql.execute(
        "select duffel_order_id, pnr, passenger_count, loyalty_amount, loyalty_currency,"
        " (select currency_decimals from tenants t where t.tenant_id = b.tenant_id), usd_amount,"
        " (select count(*) from booking_segments s where s.tenant_id = b.tenant_id and s.booking_id = b.booking_id),"
        " (select count(*) from ledger_transactions l where l.tenant_id = b.tenant_id and l.booking_id = b.booking_id)"
        " from bookings b where tenant_id = ? and booking_id = ?",
        [tenant, booking_id],
    ).fetchone()
    expect(page.locator('[data-field="pnr"]')).to_have_text(pnr)
    expect(page.locator('[data-field="duffel_order_id"]')).to_have_text(order)
    expect(page.locator('[data-field="passenger_count"]')).to_have_text(str(pax))
    expect(page.locator('[data-field="usd_amount"]')).to_have_text(usd(amount_usd))
    expect(page.locator('[data-field="loyalty_amount"]')).to_have_text(
        f"{amount:,.{places}f} {currency}"
    )
    expect(page.locator("#booking-status")).to_have_text("cancelled")
    expect(page.locator("#segments-table tbody tr")).to_have_count(segments)
    expect(page.locator("#ledger-table tbody tr")).to_have_count(ledger)


def test_data_health_shows_landing_publish_and_issues(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/health")
    issues = snap_sql.execute("select count(*) from reconciliation_issues").fetchone()[0]
    landing = snap_sql.execute("select count(*) from landing_health").fetchone()[0]
    published = snap_sql.execute(
        "select strftime(max(published_at), '%Y-%m-%d %H:%M:%S') from snapshot_info"
    ).fetchone()[0]
    expect(page.locator("#open-issues")).to_have_text(f"{issues:,}")
    expect(page.locator("#landing-table tbody tr")).to_have_count(landing)
    expect(page.locator("#published-at")).to_have_text(f"{published} UTC")
    screenshot(page, "health")
    assert operator.errors == []
