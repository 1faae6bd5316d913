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

import dagster as dg
import duckdb
import httpx
import pytest
from playwright.sync_api import Browser, Page, sync_playwright

from dashboard.auth import create_demo_users
from definitions import defs
from sandbox.generator import generate
from sandbox.runner import start_sandbox
from tenants.registry import get_registry
from tenants.settings import get_settings
from tests.helpers.standins import history_config

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "dashboard"
ANCHOR = dt.date(2026, 11, 1)
TENANTS = ("coffeechain", "fintechapp", "telcocorp")
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]
POLL_MS = 1000  # the tests wait for new snapshots; a short poll keeps that wait short
WAIT_MS = 20_000  # upper bound for anything the page should show; not a timing assertion


def run_pipeline(history: Path, data_dir: Path) -> None:
    """Ingest every tenant from the stand-ins, build the warehouse and publish, as `make pipeline`."""
    config = history_config(history)
    saved = dict(os.environ)
    sandbox = start_sandbox(config)
    try:
        os.environ.update(sandbox.client_env())
        get_settings.cache_clear()
        with dg.instance_for_test() as instance:
            for tenant in TENANTS:
                for job in ("ingest_activity_job", "ingest_members_job"):
                    result = defs.resolve_job_def(job).execute_in_process(
                        run_config={
                            **QUIET,
                            "resources": {"landing": {"config": {"data_dir": str(data_dir)}}},
                        },
                        instance=instance,
                        partition_key=tenant,
                    )
                    assert result.success, (job, tenant)
            result = defs.resolve_job_def("warehouse_job").execute_in_process(
                run_config={
                    **QUIET,
                    "resources": {"warehouse": {"config": {"data_dir": str(data_dir)}}},
                },
                instance=instance,
            )
            assert result.success
    finally:
        sandbox.stop()
        os.environ.clear()
        os.environ.update(saved)
        get_settings.cache_clear()


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data folder holding a real pipeline run over ~3,000 generated bookings."""
    history = tmp_path_factory.mktemp("dashboard-history")
    generate(3000, 11, history, anchor=ANCHOR, anomaly_rate=0.003)
    folder = tmp_path_factory.mktemp("dashboard-data")
    run_pipeline(history, folder)
    return folder


@pytest.fixture(scope="session")
def serving(data_dir: Path) -> Path:
    """The snapshot file the dashboard reads."""
    return data_dir / "serving" / "serving.duckdb"


@pytest.fixture
def snap_sql(serving: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """The snapshot opened directly, to compute what the pages must show."""
    with duckdb.connect(str(serving), read_only=True) as con:
        con.execute("set TimeZone = 'UTC'")
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
