"""One real pipeline run over a generated history, the dashboard serving it, and a browser.

The snapshot comes from the same path ``make pipeline`` takes (stand-ins -> Dagster ingestion
-> dbt -> publish), not from fixtures made for the dashboard. The dashboard runs as its own
process (``python -m dashboard``), as in production.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dashboard.auth import create_demo_users
from dashboard.data import OPERATIONS_TABLES
from sandbox.generator import generate
from tenants.settings import get_registry
from testing.browser import CHROMIUM, CHROMIUM_ARGS
from testing.platform import TENANTS, run_pipeline, serving_history
from warehouse.publish import connect, publish_snapshot

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
ANCHOR = dt.date(2026, 11, 1)
POLL_MS = 1000  # the tests wait for new snapshots; a short poll keeps that wait short
WAIT_MS = 20_000  # upper bound for anything the page should show; not a timing assertion


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding a real pipeline run over ~3,000 generated bookings."""
    history = tmp_path_factory.mktemp("dashboard-history")
    generate(3000, 11, history, anchor=ANCHOR, anomaly_rate=0.003)
    folder = tmp_path_factory.mktemp("dashboard-data")
    with serving_history(history, tmp_path_factory.mktemp("dashboard-platform")):
        run_pipeline(folder)
    return folder


@pytest.fixture(scope="session")
def serving(data_dir: Path) -> Path:
    """The serving folder the dashboard reads (manifest and table files)."""
    return data_dir / "serving"


@pytest.fixture
def snap_sql(serving: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The snapshot opened directly, to compute what the pages must show."""
    with connect(serving) as con:
        yield con


@pytest.fixture(scope="session")
def passwords(data_dir: Path) -> dict[str, str]:
    """Demo users (an operator and one staff user per tenant) and their passwords."""
    created = create_demo_users(data_dir / "dashboard_users.json", TENANTS)
    return {user.username: password for user, password in created}


@dataclass
class Server:
    """A running ``python -m dashboard`` process."""

    url: str
    process: subprocess.Popen
    log: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tenant_secret_names() -> set[str]:
    """Every environment variable the tenant registry names for a secret."""
    names = set()
    for tenant in get_registry().values():
        auth = tenant.auth.model_dump()
        names |= {value for key, value in auth.items() if key.endswith("_env")}
        names.add(tenant.duffel.token_env)
    return names


def start_dashboard(data_dir: Path, log: Path, env: dict[str, str] | None = None) -> Server:
    """Start the dashboard over ``data_dir`` and wait until it answers.

    The tenants' secrets are taken out of its environment: the dashboard needs none of them.
    """
    port = _free_port()
    env = {
        **{k: v for k, v in os.environ.items() if k not in tenant_secret_names()},
        "DATA_DIR": str(data_dir),
        "DASHBOARD_USERS_FILE": str(data_dir / "dashboard_users.json"),
        "DASHBOARD_POLL_MS": str(POLL_MS),
        **(env or {}),
    }
    if "DASHBOARD_SECRET_KEY" not in (env or {}):
        env.pop("DASHBOARD_SECRET_KEY", None)
    out = log.open("w")
    process = subprocess.Popen(
        [sys.executable, "-m", "dashboard", "--port", str(port)],
        cwd=REPO,
        env=env,
        stdout=out,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        try:
            if httpx.get(f"{url}/login", timeout=2).status_code == 200:
                return Server(url, process, log)
        except httpx.TransportError:
            time.sleep(0.2)
    process.kill()
    raise AssertionError(f"dashboard did not start: {log.read_text()}")


def stop_dashboard(server: Server) -> None:
    """Stop the process this fixture started."""
    server.process.terminate()
    server.process.wait(timeout=30)


def http_sign_in(
    client: httpx.Client,
    username: str,
    password: str,
    next_path: str | None = None,
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    """Sign in over plain HTTP as the form does: its CSRF token (if any) goes along.

    Afterwards the client sends the CSRF cookie back as a header, as the Dash front end does.
    """
    form = client.get("/login", headers=headers)
    data = {"username": username, "password": password}
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    if token:
        data["csrf_token"] = token.group(1)
    if next_path is not None:
        data["next"] = next_path
    answer = client.post("/login", data=data, headers=headers)
    if "_csrf_token" in client.cookies:
        client.headers["X-CSRFToken"] = client.cookies["_csrf_token"]
    return answer


def tenant_body(version: str | None, tenant_id: str = "telcocorp") -> dict:
    """The Dash callback request that renders a tenant's page, as the browser sends it."""
    return {
        "output": "tenant-body.children",
        "outputs": {"id": "tenant-body", "property": "children"},
        "inputs": [
            {"id": "snapshot-version", "property": "data", "value": version},
            {"id": "tenant-id", "property": "data", "value": tenant_id},
        ],
        "changedPropIds": ["tenant-id.data"],
        "state": [],
    }


@pytest.fixture(scope="session")
def server(
    data_dir: Path, passwords: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The dashboard serving the pipeline's snapshot."""
    running = start_dashboard(data_dir, tmp_path_factory.mktemp("logs") / "dashboard.log")
    yield running
    stop_dashboard(running)
    assert "Traceback" not in running.log.read_text(), running.log.read_text()


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    """Debian's Chromium, headless (never a downloaded browser)."""
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def sign_in(page: Page, server: Server, username: str, password: str, path: str = "/") -> None:
    """Fill the sign-in form and wait for the page behind it."""
    page.goto(f"{server.url}/login?next={path}")
    page.fill("#username", username)
    page.fill("#password", password)
    page.click("#sign-in")
    page.wait_for_selector("#sign-out", timeout=WAIT_MS)


@dataclass
class Session:
    """A signed-in browser page, plus the browser errors seen while it was open."""

    page: Page
    errors: list[str]


def _session(browser: Browser, server: Server, username: str, password: str) -> Iterator[Session]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    sign_in(page, server, username, password)
    yield Session(page, errors)
    context.close()


@pytest.fixture
def operator(browser: Browser, server: Server, passwords: dict[str, str]) -> Iterator[Session]:
    """A browser signed in as the operator."""
    yield from _session(browser, server, "operator", passwords["operator"])


@pytest.fixture
def telco_staff(browser: Browser, server: Server, passwords: dict[str, str]) -> Iterator[Session]:
    """A browser signed in as TelcoCorp's staff user."""
    yield from _session(browser, server, "staff-telcocorp", passwords["staff-telcocorp"])


def wait_until(page: Page, predicate: str) -> None:
    """Poll a JS function until it returns true.

    Playwright's wait_for_function compiles its predicate inside the page, which the
    dashboard's Content-Security-Policy (no eval) rightly forbids; evaluate does not.
    """
    deadline = time.monotonic() + WAIT_MS / 1000
    while not page.evaluate(predicate):
        assert time.monotonic() < deadline, f"timed out waiting for {predicate}"
        time.sleep(0.05)


def screenshot(page: Page, name: str) -> None:
    """Save the page at 1280 and 768 px wide; at 768 the page must not scroll sideways."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for width in (1280, 768):
        page.set_viewport_size({"width": width, "height": 900})
        # Plotly resizes its graphs after the window's resize event; wait until they fit.
        wait_until(
            page,
            f"() => window.innerWidth === {width} && [...document.querySelectorAll('.main-svg')]"
            ".every(svg => svg.getBoundingClientRect().right <= window.innerWidth)",
        )
        page.screenshot(path=str(ARTIFACTS / f"{name}-{width}.png"), full_page=True)
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"{name} overflows {width} px by {overflow} px"
    page.set_viewport_size({"width": 1280, "height": 900})


# ---------------------------------------------------------------- the operations marts

# The serving tables of the booking funnel, approvals, saga health, capabilities and checks,
# with the agreed columns and types (money as exact DECIMAL), and rows whose figures the
# tests work out by hand. FintechApp has no funnel or approval rows: its views are empty.
OPERATIONS_MARTS = """
create or replace table booking_funnel (
    tenant_id varchar not null, day date not null, searches bigint not null,
    searching_members bigint not null, bookings bigint not null, confirmed bigint not null,
    abandoned_searches bigint not null
);
insert into booking_funnel values
    ('coffeechain', '2026-10-30', 40, 12, 8, 6, 20),
    ('coffeechain', '2026-10-31', 60, 15, 10, 9, 25),
    ('telcocorp', '2026-10-31', 30, 9, 5, 4, 12);

create or replace table approvals (
    tenant_id varchar not null, booking_id varchar not null, member_id varchar not null,
    requested_at timestamptz not null, decided_at timestamptz, decision varchar,
    decided_by varchar, loyalty_amount decimal(18, 2) not null,
    loyalty_currency varchar not null, usd_amount decimal(18, 2) not null,
    wait_seconds bigint not null
);
insert into approvals values
    ('coffeechain', 'bkg_cc_a1', 'CC0000001', '2026-10-20 10:00:00+00', '2026-10-20 10:10:00+00',
        'approved', 'ops-anna', 60000.00, 'stars', 600.00, 600),
    ('coffeechain', 'bkg_cc_a2', 'CC0000002', '2026-10-21 10:00:00+00', '2026-10-21 10:20:00+00',
        'approved', 'ops-anna', 52000.00, 'stars', 520.00, 1200),
    ('coffeechain', 'bkg_cc_a3', 'CC0000003', '2026-10-22 10:00:00+00', '2026-10-22 10:30:00+00',
        'approved', 'ops-ben', 51000.00, 'stars', 510.00, 1800),
    ('coffeechain', 'bkg_cc_r1', 'CC0000004', '2026-10-23 10:00:00+00', '2026-10-23 11:00:00+00',
        'rejected', 'ops-ben', 90000.00, 'stars', 900.00, 3600),
    ('coffeechain', 'bkg_cc_a4', 'CC0000005', '2026-10-24 10:00:00+00', '2026-10-24 12:00:00+00',
        'approved', 'ops-anna', 70000.00, 'stars', 700.00, 7200),
    ('coffeechain', 'bkg_cc_p1', 'CC0000006', '2026-10-31 08:00:00+00', null, null, null,
        60000.00, 'stars', 600.00, 14400),
    ('coffeechain', 'bkg_cc_p2', 'CC0000007', '2026-10-31 10:00:00+00', null, null, null,
        75000.00, 'stars', 750.00, 7200),
    ('telcocorp', 'bkg_tc_a1', 'TC-00000001', '2026-10-25 09:00:00+00', '2026-10-25 09:05:00+00',
        'approved', 'ops-anna', 120000.00, 'points', 1200.00, 300),
    ('telcocorp', 'bkg_tc_r1', 'TC-00000002', '2026-10-26 09:00:00+00', '2026-10-26 09:15:00+00',
        'rejected', 'ops-ben', 150000.00, 'points', 1500.00, 900),
    ('telcocorp', 'bkg_tc_a2', 'TC-00000003', '2026-10-27 09:00:00+00', '2026-10-27 09:25:00+00',
        'approved', 'ops-ben', 130000.00, 'points', 1300.00, 1500),
    ('telcocorp', 'bkg_tc_p1', 'TC-00000004', '2026-10-31 11:00:00+00', null, null, null,
        125000.00, 'points', 1250.00, 3600);

create or replace table saga_health (
    tenant_id varchar not null, status varchar not null, bookings bigint not null,
    oldest_since timestamptz, oldest_age_hours bigint
);
insert into saga_health values
    ('coffeechain', 'needs_reconciliation', 2, '2026-10-30 06:00:00+00', 42),
    ('coffeechain', 'refund_pending', 0, null, null),
    ('fintechapp', 'needs_reconciliation', 0, null, null),
    ('fintechapp', 'refund_pending', 0, null, null),
    ('telcocorp', 'needs_reconciliation', 0, null, null),
    ('telcocorp', 'refund_pending', 1, '2026-10-31 22:30:00+00', 1);

create or replace table tenant_capabilities (
    tenant_id varchar not null, capability varchar not null, declared boolean not null,
    offered boolean, checked_at timestamptz, detail varchar
);
insert into tenant_capabilities values
    ('coffeechain', 'ledger_feed', true, false, '2026-11-01 00:05:00+00',
        'HTTP 404 on /api/v1/ledger/transactions'),
    ('coffeechain', 'member_list', true, false, '2026-11-01 00:05:00+00',
        'HTTP 404 on /api/v1/members'),
    ('coffeechain', 'refunds', true, true, '2026-11-01 00:05:00+00', 'refund endpoint answers'),
    ('coffeechain', 'partner_session', false, null, null, null),
    ('fintechapp', 'ledger_feed', true, false, '2026-11-01 00:06:00+00',
        'HTTP 404 on /api/v1/ledger/transactions'),
    ('fintechapp', 'partner_session', true, false, '2026-11-01 00:06:00+00',
        'HTTP 404 on /api/v1/partner/session'),
    ('telcocorp', 'ledger_feed', true, true, '2026-11-01 00:07:00+00', 'ledger feed answers'),
    ('telcocorp', 'member_list', true, true, '2026-11-01 00:07:00+00', 'member list answers'),
    ('telcocorp', 'refunds', true, false, '2026-11-01 00:07:00+00', 'HTTP 404 on refunds');

create or replace table reconciliation_checks (
    tenant_id varchar not null, check_name varchar not null, available boolean not null,
    reason varchar
);
insert into reconciliation_checks values
    ('coffeechain', 'member_liability', true,
        'from balance lookups of 120 members the platform knows'),
    ('coffeechain', 'ledger_vs_platform', false, 'CoffeeChain''s API offers no ledger feed'),
    ('coffeechain', 'duffel_vs_platform', true, null),
    ('fintechapp', 'ledger_vs_platform', false, 'FintechApp''s API offers no ledger feed'),
    ('fintechapp', 'duffel_vs_platform', true, null),
    ('fintechapp', 'member_liability', true,
        'from balance lookups of 80 members the platform knows'),
    ('telcocorp', 'ledger_vs_platform', true, 'from the ledger feed'),
    ('telcocorp', 'duffel_vs_platform', true, null),
    ('telcocorp', 'member_liability', true, 'from the member list');
"""


def copy_snapshot(source: Path, target: Path, sql: str) -> dict[str, str]:
    """Publish the pipeline's serving snapshot, changed with ``sql``, into ``target``; add users."""
    scratch = target / "changed.duckdb"
    with connect(source / "serving") as snap, duckdb.connect(str(scratch)) as con:
        names = [n for (n,) in snap.execute("show tables").fetchall() if n != "snapshot_info"]
        for name in names:
            con.register("source", snap.table(name).arrow())
            con.execute(f'create table "{name}" as select * from source')
            con.unregister("source")
        con.execute(sql)
        names = [n for (n,) in con.execute("show tables").fetchall()]
    publish_snapshot(scratch, target / "serving", tables=tuple(names), schema="main")
    created = create_demo_users(target / "dashboard_users.json", TENANTS)
    return {user.username: password for user, password in created}


@pytest.fixture(scope="session")
def ops_data(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The pipeline's snapshot with the operations marts put in, holding known rows."""
    folder = tmp_path_factory.mktemp("ops-data")
    return folder, copy_snapshot(data_dir, folder, OPERATIONS_MARTS)


@pytest.fixture(scope="session")
def old_data(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The pipeline's snapshot as published before the operations marts existed."""
    folder = tmp_path_factory.mktemp("old-data")
    drop = ";".join(f"drop table if exists {t}" for t in OPERATIONS_TABLES)
    return folder, copy_snapshot(data_dir, folder, drop)


@pytest.fixture(scope="session")
def ops_server(ops_data: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    """The dashboard serving the snapshot with the operations marts."""
    running = start_dashboard(ops_data[0], tmp_path_factory.mktemp("ops-logs") / "dashboard.log")
    yield running
    stop_dashboard(running)
    assert "Traceback" not in running.log.read_text(), running.log.read_text()


@pytest.fixture(scope="session")
def old_server(old_data: tuple[Path, dict], tmp_path_factory: pytest.TempPathFactory):
    """The dashboard serving a snapshot that lacks the operations marts."""
    running = start_dashboard(old_data[0], tmp_path_factory.mktemp("old-logs") / "dashboard.log")
    yield running
    stop_dashboard(running)
    assert "Traceback" not in running.log.read_text(), running.log.read_text()


def browser_session(
    browser: Browser, server: Server, username: str, password: str
) -> Iterator[Session]:
    """A signed-in browser page on ``server`` (for the servers tests start themselves)."""
    yield from _session(browser, server, username, password)
