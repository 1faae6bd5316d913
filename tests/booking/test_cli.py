"""``python -m booking migrate`` on both backends, and the health answer when Duffel is down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

from testing.booking_api import ROOT

from .test_http import ApiServer, _env

TABLES = {
    "bookings",
    "booking_events",
    "event_sequence",
    "flight_searches",
    "idempotency_keys",
    "offers",
    "rate_limit_counters",
    "duffel_webhook_events",
    "webhook_subscriptions",
    "webhook_deliveries",
    "alembic_version",
}


def _migrate(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "BOOKING_DATABASE_URL": url, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "booking", "migrate"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_migrate_by_hand_on_both_backends(store_url: str) -> None:
    for _ in range(2):  # a second run finds nothing to do
        done = _migrate(store_url)
        assert done.returncode == 0, done.stderr
        assert "up to date" in done.stdout
    engine = sa.create_engine(store_url)
    try:
        assert set(sa.inspect(engine).get_table_names()) >= TABLES
        with engine.connect() as connection:
            assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    finally:
        engine.dispose()


def test_health_is_503_when_duffel_is_unreachable(stand_ins: Any, tmp_path: Path) -> None:
    env = _env(stand_ins, tmp_path / "b.sqlite3", BOOKING_BACKGROUND_RECONCILER="false")
    env["DUFFEL_BASE_URL"] = "http://127.0.0.1:9"  # nothing listens on the discard port
    server = ApiServer(env, tmp_path / "api.log")
    try:
        answer = httpx.get(server.url + "/api/v1/health", timeout=30)
        assert answer.status_code == 503, answer.text
        report = answer.json()["data"]
        assert report["can_book"] is False and report["duffel"]["status"] == "down"
        assert report["store"]["status"] == "up"
        assert all(t["status"] == "up" for t in report["tenants"].values())
    finally:
        server.stop()


def test_workers_share_one_upstream_budget_under_the_data_folder(
    stand_ins: Any, tmp_path: Path
) -> None:
    from clients.ratelimit import STATE_DIR_ENV

    from .test_http import coffeechain, search

    env = _env(stand_ins, tmp_path / "b.sqlite3", BOOKING_BACKGROUND_RECONCILER="false")
    env.pop(STATE_DIR_ENV, None)
    env["DATA_DIR"] = str(tmp_path / "data")
    server = ApiServer(env, tmp_path / "api.log", workers=2)
    try:
        with httpx.Client(base_url=server.url, timeout=60) as http:
            for _ in range(4):  # both workers are likely to serve some
                assert search(http, coffeechain())
    finally:
        server.stop()
    # The loyalty API's and the Duffel token's answers were counted in the shared state.
    states = [
        json.loads(path.read_text())
        for path in (tmp_path / "data" / "booking" / "ratelimit").glob("*.json")
    ]
    assert len(states) >= 2
    assert all(sum(count for _, count in state["finished"]) >= 1 for state in states)
    assert all(not state["in_flight"] for state in states)
