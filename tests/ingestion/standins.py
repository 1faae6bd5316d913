"""Stand-ins for the ingestion tests: a small generated history served on free ports, the
tenant registry with limits the stand-ins' lifted ones match, and records planted in the feeds."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import yaml

from sandbox.generator import generate
from sandbox.runner import Sandbox, start_sandbox
from tenants.registry import REGISTRY_DIR
from testing.standins import history_config, pointed_at

ANCHOR = dt.date(2026, 11, 1)


def lifted_registry(folder: Path) -> Path:
    """A copy of the tenant registry whose client-side limits do not slow the tests."""
    folder.mkdir(parents=True, exist_ok=True)
    for path in REGISTRY_DIR.glob("*.yaml"):
        data = yaml.safe_load(path.read_text())
        data["rate_limit"] = {"requests": 100_000, "window_seconds": 60}
        data["duffel"]["rate_limit"] = {"requests": 100_000, "window_seconds": 60}
        (folder / path.name).write_text(yaml.safe_dump(data))
    return folder


def serve_history(folder: Path, size: int, seed: int, anomaly_rate: float) -> Iterator[Sandbox]:
    """Generate a history, serve it with lifted limits and point the clients at it."""
    generate(size, seed, folder, anchor=ANCHOR, anomaly_rate=anomaly_rate)
    yield from serve_standins(folder)


def serve_standins(history: Path) -> Iterator[Sandbox]:
    """Serve a generated history with lifted limits and point the clients at it meanwhile."""
    running = start_sandbox(history_config(history))
    try:
        with pointed_at(running.client_env()):
            yield running
    finally:
        running.stop()


def ledger_json(
    transaction_id: str,
    amount: str,
    at: dt.datetime,
    *,
    currency: str,
    member_id: str = "M0000001",
) -> str:
    """A feed record's JSON with ``amount`` spliced in as written (a number's own text)."""
    stamp = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    head = json.dumps(
        {"transaction_id": transaction_id, "member_id": member_id, "type": "cashback"}
    )
    tail = json.dumps(
        {
            "currency": currency,
            "status": "posted",
            "reference_id": None,
            "related_transaction_id": None,
            "approval_id": None,
            "description": "planted",
            "created_at": stamp,
            "updated_at": stamp,
        }
    )
    return f'{head[:-1]}, "amount": {amount}, {tail[1:]}'


def ledger_row(raw: str) -> dict[str, Any]:
    """A stand-in ledger row serving ``raw`` verbatim (its typed columns only index it)."""
    record = json.loads(raw.replace('"amount": ', '"amount_text": ', 1), parse_float=Decimal)
    at = dt.datetime.fromisoformat(record["updated_at"])
    return {
        "transaction_id": record["transaction_id"],
        "member_id": record["member_id"],
        "type": "cashback",
        "amount": Decimal(0),
        "status": "posted",
        "reference_id": None,
        "related_transaction_id": None,
        "approval_id": None,
        "description": "planted",
        "created_at": at,
        "updated_at": at,
        "raw_override": raw,
    }


class MemberBalances(httpx.BaseTransport):
    """Forwards to the real stand-in and writes chosen members' balances as raw number text.

    The stand-in keeps balances as Decimal(18, 2), so it cannot serve 1e400 or 12.345 itself.
    """

    def __init__(self, balances: dict[str, str]) -> None:
        self.balances = balances
        self.inner = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        member_list = request.url.path.endswith(("/members", "/users"))
        if not member_list or response.status_code != 200:
            return response
        body = json.loads(response.read(), parse_float=Decimal)
        marks = {}
        for record in body.get("data", []):
            member_id = record.get("member_id")
            if member_id in self.balances:
                mark = f"@@{member_id}@@"
                record["balance"] = mark
                marks[f'"{mark}"'] = self.balances[member_id]
        text = json.dumps(body, default=str)
        for mark, number in marks.items():
            text = text.replace(mark, number)
        return httpx.Response(200, headers={"content-type": "application/json"}, content=text)
