"""``python -m booking import-history``: the generated history in the store, served by the API
exactly as events.parquet holds it, with the API's own events continuing after it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import polars as pl
import pytest
import sqlalchemy as sa

from booking.domain import Status
from booking.history import HistoryImportError, import_history
from booking.store.tables import BookingRow
from booking.store.uow import Store
from booking.views import event_view
from sandbox.generator import generate
from tenants.pricing import load_fx
from tenants.registry import load_registry
from testing.booking_api import ROOT
from tests.booking.test_http import ApiServer, _env, coffeechain, operator

ANCHOR = dt.date(2026, 11, 1)
MEMBER = "CC1234567"  # a reference member: the CoffeeChain stand-in authenticates them


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("history")
    generate(1500, 5, folder, anchor=ANCHOR, anomaly_rate=0.002)
    return folder


def _money(value: Decimal | None, places: int) -> str | None:
    return None if value is None else format(value.quantize(Decimal(1).scaleb(-places)), "f")


def expected_feed(history: Path) -> list[dict[str, Any]]:
    """events.parquet as ``/api/v1/admin/events`` renders each event (booking/views.py)."""
    decimals = {t.currency.code: t.currency.decimals for t in load_registry().values()}
    feed = []
    for row in pl.read_parquet(history / "events.parquet").iter_rows(named=True):
        places = decimals[row["loyalty_currency"]]
        event_id = row.pop("event_id")
        feed.append(
            {
                **row,
                "id": str(event_id),
                "loyalty_amount": _money(row["loyalty_amount"], places),
                "cashback_amount": _money(row["cashback_amount"], 2),
                "refund_amount": _money(row["refund_amount"], places),
                "usd_amount": _money(row["usd_amount"], 2),
                "fare_amount": _money(row["fare_amount"], 2),
                "occurred_at": row["occurred_at"].isoformat().replace("+00:00", "Z"),
            }
        )
    return feed


def comparable(record: dict[str, Any]) -> dict[str, Any]:
    """Rates compare as numbers (the store keeps the text the API priced with)."""
    return {
        **record,
        **{k: Decimal(record[k]) for k in ("usd_per_unit", "fx_rate")},
    }


def _import(history: Path, url: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BOOKING_")}
    env.update(BOOKING_DATABASE_URL=url, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "booking", "import-history", str(history)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def served(
    history: Path, stand_ins: Any, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ApiServer, Path]]:
    """The history imported by the command line into a fresh store, served by the real API."""
    folder = tmp_path_factory.mktemp("api")
    database = folder / "booking.sqlite3"
    done = _import(history, f"sqlite:///{database}")
    assert done.returncode == 0, done.stderr
    assert "imported 1,500 bookings" in done.stdout
    server = ApiServer(_env(stand_ins, database), folder / "api.log")
    yield server, database
    server.stop()


def test_the_api_serves_the_imported_feed_exactly(history: Path, served: Any) -> None:
    server, _ = served
    records, cursor = [], "0"
    with httpx.Client(base_url=server.url, headers=operator(), timeout=60) as client:
        while True:
            page = client.get("/api/v1/admin/events", params={"cursor": cursor, "limit": 1000})
            assert page.status_code == 200, page.text
            data = page.json()["data"]
            records += data["events"]
            cursor = data["next_cursor"]
            if not data["has_more"]:
                break
    expected = expected_feed(history)
    assert len(records) == len(expected)
    assert [comparable(r) for r in records] == [comparable(e) for e in expected]
    # The rates as the booking API writes them (format(Decimal, "f") of its sources).
    units = {
        format(rate, "f")
        for tenant in load_registry().values()
        for rate in (
            tenant.currency.usd_per_unit,
            *(p.usd_per_unit for p in tenant.currency.rate_history),
        )
    }
    assert {r["usd_per_unit"] for r in records} <= units
    assert {r["fx_rate"] for r in records} <= {"1"} | {
        format(p.usd_per_unit, "f") for p in load_fx()
    }


def test_the_api_serves_the_imported_bookings(history: Path, served: Any) -> None:
    server, _ = served
    bookings = pl.read_parquet(history / "bookings.parquet")
    events = expected_feed(history)
    cancelled = set(bookings.filter(pl.col("status") == "cancelled")["id"])
    assert cancelled
    with httpx.Client(base_url=server.url, timeout=60) as client:
        listed = client.get(
            "/api/v1/admin/bookings",
            params={"status": "cancelled", "limit": 500},
            headers=operator(),
        )
        assert listed.status_code == 200, listed.text
        assert {b["booking_id"] for b in listed.json()["data"]["bookings"]} == cancelled
        mine = (
            bookings.filter(pl.col("member_id") == MEMBER)
            .sort(pl.col("status") == "cancelled", "id", descending=[True, False])
            .row(0, named=True)
        )
        answer = client.get(f"/api/v1/bookings/{mine['id']}", headers=coffeechain(MEMBER))
        assert answer.status_code == 200, answer.text
        view = answer.json()["data"]
        own = client.get("/api/v1/bookings", headers=coffeechain(MEMBER), params={"limit": 100})
        assert own.status_code == 200, own.text
    assert (view["status"], view["duffel_order_id"], view["payment"]["loyalty_amount"]) == (
        mine["status"],
        mine["duffel_order_id"],
        str(mine["loyalty_minor"]),
    )
    if mine["status"] == "cancelled":
        assert view["refund"]["refund_transaction_id"] == mine["refund_transaction_id"]
        assert view["refund"]["status"] == "completed"
    assert [(s["from_status"], s["status"], s["detail"]) for s in view["status_history"]] == [
        (e["from_state"], e["to_state"], e["detail"])
        for e in events
        if e["booking_id"] == mine["id"]
    ]
    assert (
        own.json()["data"]["pagination"]["total"]
        == bookings.filter(pl.col("member_id") == MEMBER).height
    )


def test_a_second_import_leaves_the_store_and_another_history_is_refused(
    history: Path, served: Any, tmp_path: Path
) -> None:
    _, database = served
    again = _import(history, f"sqlite:///{database}")
    assert again.returncode == 0, again.stderr
    assert "already holds the history" in again.stdout
    other = tmp_path / "other"
    generate(300, 6, other, anchor=ANCHOR)
    refused = _import(other, f"sqlite:///{database}")
    assert refused.returncode == 1
    assert "already holds 1,500 bookings" in refused.stderr
    with pytest.raises(HistoryImportError, match=r"bookings\.parquet is missing"):
        import_history(f"sqlite:///{tmp_path / 'empty.sqlite3'}", tmp_path / "nothing")


def _continue_after_import(url: str, history: Path) -> None:
    """A booking's next step after the import gets the next event id of the feed."""
    last = pl.read_parquet(history / "events.parquet")["event_id"].max()
    confirmed = (
        pl.read_parquet(history / "bookings.parquet")
        .filter(pl.col("status") == "confirmed")["id"]
        .sort()[0]
    )
    store = Store(url)
    try:
        with store.uow() as uow:
            row = uow.bookings.get(confirmed, for_update=True)
            uow.bookings.transition(row, Status.CANCELLING, "plans changed")
            uow.commit()
        with store.uow() as uow:
            assert [e.id for e in uow.events.read(last, 10)] == [last + 1]
    finally:
        store.dispose()


def test_the_api_continues_the_feed_after_the_history(history: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'booking.sqlite3'}"
    result = import_history(url, history)
    assert (result.bookings, result.already) == (1500, False)
    _continue_after_import(url, history)
    # A booking made after the import (the demo's traffic) is the store's own: the next start
    # imports nothing and goes on.
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        row = dict(connection.execute(sa.select(BookingRow.__table__).limit(1)).mappings().one())
        connection.execute(sa.insert(BookingRow.__table__), [{**row, "id": "bkg_made_after"}])
    engine.dispose()
    again = import_history(url, history)
    assert (again.already, again.bookings) == (True, 1501)


def test_import_into_postgresql(history: Path, postgres_server: Any) -> None:
    url = postgres_server.create_database()
    result = import_history(url, history)
    assert result.events == pl.read_parquet(history / "events.parquet").height
    store = Store(url)
    try:
        with store.uow() as uow:
            rendered = [event_view(e) for e in uow.events.read(0, result.events + 1)]
    finally:
        store.dispose()
    assert [comparable(r) for r in rendered] == [comparable(e) for e in expected_feed(history)]
    assert import_history(url, history).already
    _continue_after_import(url, history)


def test_events_of_a_booking_the_history_lacks_are_refused(history: Path, tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    bookings = pl.read_parquet(history / "bookings.parquet")
    missing = bookings["id"][10]
    bookings.filter(pl.col("id") != missing).write_parquet(broken / "bookings.parquet")
    shutil.copy(history / "events.parquet", broken / "events.parquet")
    url = f"sqlite:///{tmp_path / 'booking.sqlite3'}"
    with pytest.raises(HistoryImportError, match=f"of booking {missing}, which bookings"):
        import_history(url, broken)
    store = Store(url)
    try:
        with store.uow() as uow:
            # All or nothing: the bookings that went in first were rolled back too.
            assert uow.events.read(0, 1) == []
            assert uow.bookings.list_by_status(["confirmed"], 1) == []
    finally:
        store.dispose()
