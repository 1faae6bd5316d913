"""Working in the dashboard, in headless Chromium: filters and sorts in the URL (reload, share,
Back), the bookings grid at 1280 px, time controls, the rates behind USD figures, readable
charts, and why a failed booking failed; all checked against queries on the snapshot."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import duckdb
import httpx
from playwright.sync_api import Browser, Page, expect

from tests.dashboard.conftest import (
    WAIT_MS,
    Server,
    Session,
    http_sign_in,
    screenshot,
    sign_in,
    wait_until,
)

MAIN_HEADERS = ["Booking", "Tenant", "Member", "Status", "Route", "Departs (UTC)", "Paid", "USD"]


def rate_line(tenant: str, today: str, used: str, over: str) -> str:
    """The sentence a page writes about the rates behind a tenant's USD figures."""
    return (
        f"{tenant}: USD converted at the rate in force on each booking's day; today {today};"
        f" {used} {over}."
    )


def query(page: Page) -> dict[str, list[str]]:
    return parse_qs(urlsplit(page.url).query, keep_blank_values=True)


def pick_status(page: Page, status: str) -> None:
    page.locator("#bookings-status").click()
    page.get_by_role("option", name=status.replace("_", " ")).click()
    page.keyboard.press("Escape")


def search(page: Page, term: str) -> None:
    page.fill("#bookings-search", term)
    page.press("#bookings-search", "Enter")


def test_a_failed_booking_says_why_it_failed(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    tenant, booking_id, reason = snap_sql.execute(
        "select tenant_id, booking_id, reason from booking_failures"
        " join bookings using (tenant_id, booking_id) where status = 'failed'"
        " order by booking_id limit 1"
    ).fetchone()
    assert reason != "no reason recorded"
    page.goto(f"{server.url}/booking/{tenant}/{booking_id}")
    expect(page.locator("#booking-status")).to_have_text("failed", timeout=WAIT_MS)
    expect(page.locator("#failure-reason-text")).to_have_text(reason)
    screenshot(page, "booking-failed")
    assert operator.errors == []


def test_explorer_filters_and_sort_live_in_the_url(
    operator: Session,
    browser: Browser,
    server: Server,
    passwords: dict[str, str],
    snap_sql: duckdb.DuckDBPyConnection,
) -> None:
    page = operator.page
    page.goto(f"{server.url}/bookings")
    total = snap_sql.execute("select count(*) from bookings").fetchone()[0]
    expect(page.locator("#bookings-total")).to_have_text(f"{total:,}", timeout=WAIT_MS)
    assert query(page) == {}  # a page opened without filters pushes nothing

    failed = snap_sql.execute("select count(*) from bookings where status = 'failed'").fetchone()[0]
    pick_status(page, "failed")
    expect(page.locator("#bookings-total")).to_have_text(f"{failed:,}")
    expect(page).to_have_url(re.compile(r"bookings-status=failed"))

    coffee_failed = snap_sql.execute(
        "select count(*) from bookings where status = 'failed' and tenant_id = 'coffeechain'"
    ).fetchone()[0]
    page.locator("#bookings-tenant").click()
    page.get_by_role("option", name="CoffeeChain").click()
    expect(page.locator("#bookings-total")).to_have_text(f"{coffee_failed:,}")
    page.get_by_role("columnheader", name="Booking").click()  # sort by booking id, ascending
    expect(page).to_have_url(re.compile(r"bookings-sort=booking_id%3Aasc"))
    assert query(page) == {
        "bookings-status": ["failed"],
        "bookings-tenant": ["coffeechain"],
        "bookings-sort": ["booking_id:asc"],
    }
    lowest = snap_sql.execute(
        "select min(booking_id) from bookings where status = 'failed' and tenant_id = 'coffeechain'"
    ).fetchone()[0]
    expect(page.locator('.ag-pinned-left-cols-container .ag-row[row-index="0"]')).to_have_text(
        lowest
    )

    # Reload: the same filters and sort, from the URL alone.
    shared = page.url
    page.reload()
    expect(page.locator("#bookings-total")).to_have_text(f"{coffee_failed:,}")
    expect(page.locator("#bookings-status")).to_contain_text("failed")
    expect(page.locator(".ag-header-cell[col-id='booking_id']")).to_have_attribute(
        "aria-sort", "ascending"
    )

    # Back: one step undoes the sort, the next the tenant.
    page.go_back()
    expect(page).not_to_have_url(re.compile("bookings-sort"))
    expect(page.locator(".ag-header-cell[col-id='booking_id']")).to_have_attribute(
        "aria-sort", "none"
    )
    page.go_back()
    expect(page).not_to_have_url(re.compile("bookings-tenant"))
    expect(page.locator("#bookings-total")).to_have_text(f"{failed:,}")
    page.go_forward()
    expect(page.locator("#bookings-total")).to_have_text(f"{coffee_failed:,}")

    # Shared: another operator opening the link sees the same view.
    other = browser.new_context(viewport={"width": 1280, "height": 900})
    other.set_default_timeout(WAIT_MS)
    colleague = other.new_page()
    sign_in(colleague, server, "operator", passwords["operator"], "/")
    colleague.goto(shared)
    expect(colleague.locator("#bookings-total")).to_have_text(f"{coffee_failed:,}")
    expect(colleague.locator('.ag-pinned-left-cols-container .ag-row[row-index="0"]')).to_have_text(
        lowest
    )
    other.close()
    assert operator.errors == []


def test_grid_at_1280_shows_the_main_columns_uncut_and_a_column_chooser(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/bookings")
    expect(page.locator(".ag-center-cols-container .ag-row").first).to_be_visible(timeout=WAIT_MS)
    headers = page.locator(".ag-header-cell:not(.ag-hidden) .ag-header-cell-text")
    expect(headers).to_have_text(MAIN_HEADERS)
    # Every column of the main set is on screen and no value is cut (no ellipsis).
    fits = page.evaluate(
        """() => {
        const viewport = document.querySelector('.ag-center-cols-viewport');
        const cut = [...document.querySelectorAll('.ag-row .ag-cell')].filter(
            c => c.scrollWidth > c.clientWidth).map(c => c.getAttribute('col-id') + ': ' + c.innerText);
        return {cut, scroll: viewport.scrollWidth - viewport.clientWidth};
    }"""
    )
    assert fits == {"cut": [], "scroll": 0}, fits
    page.click("#bookings-column-chooser")
    page.get_by_label("Airline").check()
    expect(page.locator(".ag-header-cell[col-id='airline_name']")).to_be_visible()
    expect(page).to_have_url(re.compile(r"bookings-columns=airline_name"))
    page.keyboard.press("Escape")
    screenshot(page, "bookings-columns")
    page.reload()
    expect(page.locator(".ag-header-cell[col-id='airline_name']")).to_be_visible()

    # Nothing matches: one message, not the grid's own overlay as well, and no count of 0.
    search(page, "no-such-booking")
    expect(page.locator("#bookings-state")).to_have_text("No bookings match these filters.")
    expect(page.get_by_text("No Rows To Show")).to_have_count(0)
    expect(page.locator(".ag-overlay-no-rows-wrapper")).to_have_count(0)
    expect(page.locator("#bookings-count")).to_have_text("")
    screenshot(page, "bookings-empty")
    assert operator.errors == []


def test_staff_cannot_reach_another_tenant_through_the_query_string(
    telco_staff: Session,
    server: Server,
    passwords: dict[str, str],
    snap_sql: duckdb.DuckDBPyConnection,
) -> None:
    page = telco_staff.page
    coffee = {
        r[0]
        for r in snap_sql.execute(
            "select booking_id from bookings where tenant_id = 'coffeechain'"
        ).fetchall()
    }
    page.goto(f"{server.url}/bookings?bookings-tenant=coffeechain&bookings-status=failed")
    # The forged tenant is refused on the server: no row of it ever reaches the page.
    expect(page.locator(".ag-center-cols-container .ag-row")).to_have_count(0)
    shown = page.locator(".ag-pinned-left-cols-container .ag-row").all_inner_texts()
    assert not coffee & set(shown)
    assert "stars" not in page.content()
    # The time controls carry no tenant: another tenant's page stays refused with any query.
    page.goto(f"{server.url}/t/coffeechain?tenant-grain=month&tenant-compare=true")
    expect(page.locator("#refused")).to_be_visible()
    expect(page.locator("[data-period]")).to_have_count(0)
    # And a forged activity request (the callback the time controls drive) gets a 403.
    with httpx.Client(base_url=server.url, timeout=30) as client:
        assert (
            http_sign_in(client, "staff-telcocorp", passwords["staff-telcocorp"]).status_code == 302
        )
        version = client.get("/_dash-layout").json()["props"]["children"][1]["props"]["data"]
        for tenant, status in (("telcocorp", 200), ("coffeechain", 403)):
            answer = client.post("/_dash-update-component", json=_activity(version, tenant))
            assert answer.status_code == status, answer.text
            if status == 403:
                assert "stars" not in answer.text and "CoffeeChain" not in answer.text


def _activity(version: str, tenant_id: str) -> dict:
    inputs = [
        {"id": "snapshot-version", "property": "data", "value": version},
        {"id": "tenant-id", "property": "data", "value": tenant_id},
        {"id": "tenant-range", "property": "start_date", "value": None},
        {"id": "tenant-range", "property": "end_date", "value": None},
        {"id": "tenant-grain", "property": "value", "value": "month"},
        {"id": "tenant-compare", "property": "value", "value": True},
    ]
    return {
        "output": "tenant-activity.children",
        "outputs": {"id": "tenant-activity", "property": "children"},
        "inputs": inputs,
        "changedPropIds": ["tenant-id.data"],
        "state": [],
    }


def _figure(page: Page, graph_id: str) -> dict:
    return page.evaluate(
        f"""() => {{
        const div = document.querySelector('#{graph_id} .js-plotly-plot');
        return {{data: div.data.map(t => ({{name: t.name, x: t.x, y: t.y,
                 dash: t.line && t.line.dash}})),
                 notes: (div.layout.annotations || []).map(a => ({{x: a.x, text: a.text}}))}};
    }}"""
    )


def test_time_controls_granularity_comparison_and_the_partial_period(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    last = snap_sql.execute(
        "select max(metric_date) from daily_tenant_metrics where tenant_id = 'coffeechain'"
    ).fetchone()[0]
    # A period that ends in the middle of a month: its last month is partial.
    end = last.replace(day=15) if last.day > 15 else last
    start = (end.replace(day=1) - dt.timedelta(days=1)).replace(day=1) - dt.timedelta(days=31)
    start = start.replace(day=1)
    page.goto(
        f"{server.url}/t/coffeechain?tenant-range.start_date={start}"
        f"&tenant-range.end_date={end}&tenant-grain=month"
    )
    expect(page.locator("#tenant-name")).to_have_text("CoffeeChain", timeout=WAIT_MS)
    expect(page.locator("#tenant-grain input[value='month']")).to_be_checked()
    bookings, usd = snap_sql.execute(
        "select sum(bookings), sum(usd_volume) from daily_tenant_metrics"
        " where tenant_id = 'coffeechain' and metric_date between ? and ?",
        [start, end],
    ).fetchone()
    expect(page.locator('[data-period="bookings"]')).to_have_text(f"{bookings:,}")
    expect(page.locator('[data-period="usd_volume"]')).to_have_text(f"${usd:,.2f}")
    wait_until(page, "() => !!document.querySelector('#tenant-bookings .js-plotly-plot')")
    figure = _figure(page, "tenant-bookings")
    whole, dashed = figure["data"][0], figure["data"][1]
    months = [m.isoformat() for m in _month_starts(start, end)]
    assert whole["x"] == months
    per_month = dict(
        snap_sql.execute(
            "select cast(date_trunc('month', metric_date) as date), sum(bookings)"
            " from daily_tenant_metrics where tenant_id = 'coffeechain'"
            " and metric_date between ? and ? group by 1",
            [start, end],
        ).fetchall()
    )
    # The cut month is drawn dashed and labelled partial, not as part of the solid line.
    assert whole["y"][:-1] == [per_month.get(dt.date.fromisoformat(m), 0) for m in months[:-1]]
    assert whole["y"][-1] is None
    assert dashed["dash"] == "dash" and dashed["y"][-1] == per_month[_month_starts(end, end)[0]]
    assert [n["text"] for n in figure["notes"]] == ["partial"]

    # Compare: the period before, dotted; the totals say by how much they changed.
    page.locator("#tenant-compare").check()
    expect(page).to_have_url(re.compile(r"tenant-compare=true"))
    before_start = start - (end - start + dt.timedelta(days=1))
    before = snap_sql.execute(
        "select sum(bookings) from daily_tenant_metrics where tenant_id = 'coffeechain'"
        " and metric_date between ? and ?",
        [before_start, start - dt.timedelta(days=1)],
    ).fetchone()[0]
    change = (Decimal(bookings) - before) * 100 / before
    expect(page.locator('[data-period="bookings:change"]')).to_have_text(
        f"{'+' if change > 0 else ''}{change.quantize(Decimal('0.1'))} % on the previous period"
    )
    wait_until(
        page,
        "() => document.querySelector('#tenant-bookings .js-plotly-plot').data"
        ".some(t => t.name.endsWith('previous period'))",
    )
    screenshot(page, "tenant-period")

    # Per day and per week from the controls; each step is a history entry.
    page.locator("#tenant-grain").get_by_text("week").click()
    expect(page).to_have_url(re.compile(r"tenant-grain=week"))
    page.go_back()
    expect(page.locator("#tenant-grain input[value='month']")).to_be_checked()
    assert operator.errors == []


def _month_starts(start: dt.date, end: dt.date) -> list[dt.date]:
    months, current = [], start.replace(day=1)
    while current <= end:
        months.append(current)
        current = (current.replace(day=28) + dt.timedelta(days=4)).replace(day=1)
    return months


def test_overview_time_controls_and_rates_behind_usd(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/?overview-grain=week")
    expect(page.locator("#overview-grain input[value='week']")).to_be_checked(timeout=WAIT_MS)
    bookings = snap_sql.execute("select sum(bookings) from daily_tenant_metrics").fetchone()[0]
    expect(page.locator('[data-period="bookings"]')).to_have_text(f"{bookings:,}")
    low, high, today = snap_sql.execute(
        "select min(b.usd_per_unit), max(b.usd_per_unit), any_value(t.usd_per_unit)"
        " from bookings b join tenants t using (tenant_id) where tenant_id = 'coffeechain'"
    ).fetchone()
    assert low != high  # the history spans CoffeeChain's rate change
    note = page.locator('#overview-activity [data-rate="coffeechain"]')
    expect(note).to_have_text(
        rate_line(
            "CoffeeChain",
            f"${today.normalize():f} per star",
            f"ranging ${low.normalize():f} to ${high.normalize():f} per star",
            "over this period",
        )
    )
    screenshot(page, "overview-period")
    assert operator.errors == []


def test_tenant_page_says_which_rates_stand_behind_its_usd(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    # The day after the last booking at an earlier rate: a booking made the day before a
    # change but approved after it is charged at the new rate, so the first booking at
    # today's rate may be older than the change.
    change = snap_sql.execute(
        "select max(created_at)::date + 1 from bookings where tenant_id = 'coffeechain'"
        " and usd_per_unit <> (select usd_per_unit from tenants where tenant_id = 'coffeechain')"
    ).fetchone()[0]
    page.goto(f"{server.url}/t/coffeechain?tenant-range.start_date={change}")
    expect(page.locator("#tenant-name")).to_have_text("CoffeeChain", timeout=WAIT_MS)
    low, high = snap_sql.execute(
        "select min(usd_per_unit), max(usd_per_unit) from bookings where tenant_id = 'coffeechain'"
    ).fetchone()
    expect(page.locator('#tenant-rate [data-rate="coffeechain"]')).to_have_text(
        rate_line(
            "CoffeeChain",
            "$0.01 per star",
            f"ranging ${low.normalize():f} to ${high.normalize():f} per star",
            "over all its bookings",
        )
    )
    # Since the change, every booking was converted at today's rate, and the page says so.
    expect(page.locator('#tenant-activity [data-rate="coffeechain"]')).to_have_text(
        rate_line("CoffeeChain", "$0.01 per star", "all at $0.01 per star", "over this period")
    )
    assert operator.errors == []


def test_charts_are_readable_tiers_ranked_statuses_explained(
    operator: Session, server: Server, snap_sql: duckdb.DuckDBPyConnection
) -> None:
    page = operator.page
    page.goto(f"{server.url}/t/telcocorp")
    expect(page.locator("#tenant-name")).to_have_text("TelcoCorp", timeout=WAIT_MS)
    tiers = [
        r[0]
        for r in snap_sql.execute(
            "select distinct tier from members where tenant_id = 'telcocorp'"
        ).fetchall()
    ]
    ranked = [t for t in ("bronze", "silver", "gold", "platinum") if t in tiers]
    expect(page.locator("#tiers-table tbody tr td:first-child")).to_have_text(ranked)
    for graph in ("tenant-bookings", "tenant-usd", "tenant-routes", "tenant-airlines"):
        page.locator(f"#{graph} .main-svg").first.wait_for()
        overlaps = page.evaluate(
            f"""() => {{
            const boxes = sel => [...document.querySelectorAll('#{graph} ' + sel)]
                .map(t => t.getBoundingClientRect()).filter(b => b.width > 0);
            const clash = bs => bs.some((a, i) => bs.slice(i + 1).some(b =>
                a.left < b.right - 1 && b.left < a.right - 1 &&
                a.top < b.bottom - 1 && b.top < a.bottom - 1));
            const svg = document.querySelector('#{graph} .main-svg').getBoundingClientRect();
            const outside = [...boxes('.xtick text'), ...boxes('.ytick text')]
                .some(b => b.left < svg.left - 1 || b.right > svg.right + 1);
            const both = clash([...boxes('.xtick text'), ...boxes('.ytick text')]);
            return {{x: clash(boxes('.xtick text')), y: clash(boxes('.ytick text')), both, outside}};
        }}"""
        )
        assert overlaps == {"x": False, "y": False, "both": False, "outside": False}, (
            graph,
            overlaps,
        )
    page.locator("#status-legend summary").click()
    expect(page.locator('#status-legend [data-status="failed"]')).to_contain_text(
        "could not be completed"
    )
    screenshot(page, "tenant-legend")
    assert operator.errors == []
