"""The whole pipeline against tenants that offer nothing beyond their reference APIs.

Reference-mode stand-ins (no ledger feed, no member list, no TelcoCorp/FintechApp refunds, no
partner session), the real booking API, and members' traffic through it (searches, abandoned
searches, bookings, approvals decided by the operator, cancellations, failures); then every
ingestion job for every tenant, the warehouse build and the publish, exactly as `make pipeline`
runs them. Nothing may fail; what the tenants lack is recorded as not offered; the serving
snapshot's bookings are the API's, to the cent; reconciliation finds nothing, since nothing
disagrees; the checks that cannot run say so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from sandbox.config import SERVICES, Limit
from sandbox.runner import Sandbox, start_sandbox
from testing.platform import TENANTS, booking_feeds, run_pipeline
from testing.standins import pointed_at, sandbox_config
from tests.booking.test_http import OPERATOR_TOKEN, ApiServer, _env
from tests.sandbox.test_traffic import Clock, read_feed, reference_traffic
from warehouse.publish import connect

TICKS = 30  # three decks of traffic: approvals, cancellations and failures in each


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Traffic through the API against reference stand-ins, then one full pipeline run."""
    folder = tmp_path_factory.mktemp("reference")
    data_dir = folder / "data"
    sandbox: Sandbox = start_sandbox(
        sandbox_config(reference=True, limits=dict.fromkeys(SERVICES, Limit(100_000)))
    )
    api = None
    try:
        api = ApiServer(_env(sandbox, folder / "booking.sqlite3"), folder / "api.log")
        clock = Clock()
        with reference_traffic(sandbox, api.url, clock, seed=11) as traffic:
            for _ in range(TICKS):
                traffic.tick()
            clock.now += 301.0
            traffic.run_due()
        with pointed_at(sandbox.client_env(), booking_feeds(api.url)):
            outcomes = run_pipeline(data_dir)
        with httpx.Client(base_url=api.url, timeout=60) as client:
            client.headers["Authorization"] = f"Bearer {OPERATOR_TOKEN}"
            events = read_feed(client, "/api/v1/admin/events", "events")
            searches = read_feed(client, "/api/v1/admin/searches", "searches")
        yield {
            "serving": data_dir / "serving",
            "events": events,
            "searches": searches,
            "outcomes": outcomes,
        }
    finally:
        if api is not None:
            api.stop()
        sandbox.stop()


def _query(run: dict[str, Any], sql: str) -> list[tuple]:
    with connect(run["serving"]) as con:
        return con.execute(sql).fetchall()


def _latest(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each booking's latest state change (notes keep the state), as the API's feed says."""
    latest: dict[str, dict[str, Any]] = {}
    for event in sorted(events, key=lambda e: int(e["id"])):
        latest[event["booking_id"]] = event
    return latest


def test_what_the_tenants_lack_is_recorded_as_not_offered(run: dict[str, Any]) -> None:
    found = {
        (tenant, capability): offered
        for tenant, capability, offered in _query(
            run, "select tenant_id, capability, offered from tenant_capabilities"
        )
    }
    for tenant in TENANTS:
        assert found[(tenant, "ledger_feed")] is False, tenant
        assert found[(tenant, "member_list")] is False, tenant
    assert found[("coffeechain", "refunds")] is True  # reference behaviour
    assert found[("telcocorp", "refunds")] is False
    assert found[("fintechapp", "refunds")] is False
    assert found[("fintechapp", "partner_session")] is False
    # ... and visible in Dagster: the ledger asset says "not offered" instead of failing.
    for tenant in TENANTS:
        outcome = run["outcomes"][("raw/loyalty/ledger_transactions", tenant)]
        assert str(outcome.get("outcome", "")).startswith("not offered"), (tenant, outcome)


def test_the_checks_that_cannot_run_say_so(run: dict[str, Any]) -> None:
    checks = {
        (tenant, name): (available, reason)
        for tenant, name, available, reason in _query(
            run, "select tenant_id, check_name, available, reason from reconciliation_checks"
        )
    }
    for tenant in TENANTS:
        available, reason = checks[(tenant, "ledger_vs_platform")]
        assert available is False and "ledger feed" in reason, (tenant, reason)
        assert checks[(tenant, "duffel_vs_platform")][0] is True
        available, reason = checks[(tenant, "member_liability")]
        assert available is True and "balance lookups" in reason, (tenant, reason)


def test_the_bookings_are_the_apis_to_the_cent(run: dict[str, Any]) -> None:
    latest = _latest(run["events"])
    assert len(latest) >= 20
    api_status = Counter((e["tenant_id"], e["to_state"]) for e in latest.values())
    # the traffic reached every kind of outcome
    states = {state for _, state in api_status}
    assert {"confirmed", "cancelled", "failed"} <= states, states
    served = {
        (tenant, status): n
        for tenant, status, n in _query(
            run, "select tenant_id, status, count(*) from bookings group by all"
        )
    }
    assert served == dict(api_status)
    # USD charged, per tenant: the API's own figure for every booking it charged.
    charged: Counter = Counter()
    for event in latest.values():
        if event["loyalty_transaction_id"] and event["usd_amount"] is not None:
            charged[event["tenant_id"]] += Decimal(str(event["usd_amount"]))
    served_usd = dict(
        _query(
            run,
            "select tenant_id, sum(usd_amount) from bookings where deduction_transaction_id "
            "is not null group by all",
        )
    )
    assert served_usd == dict(charged)


def test_reconciliation_finds_nothing_when_nothing_disagrees(run: dict[str, Any]) -> None:
    assert _query(run, "select kind, tenant_id, booking_id from reconciliation_issues") == []


def test_members_come_from_balance_lookups_of_the_members_the_platform_knows(
    run: dict[str, Any],
) -> None:
    known = {(e["tenant_id"], e["member_id"]) for e in run["events"]}
    snapshot = {
        (tenant, member): balance
        for tenant, member, balance in _query(
            run, "select tenant_id, member_id, balance from members"
        )
    }
    assert set(snapshot) == known
    assert all(isinstance(balance, Decimal) for balance in snapshot.values())


def test_saga_health_counts_the_refunds_the_tenants_cannot_take(run: dict[str, Any]) -> None:
    # Without a refund endpoint (TelcoCorp, FintechApp) a cancellation's refund waits for an
    # operator: refund_pending, counted per tenant as the API's own latest states say.
    waiting = Counter(
        e["tenant_id"] for e in _latest(run["events"]).values() if e["to_state"] == "refund_pending"
    )
    served = {
        tenant: n
        for tenant, n in _query(
            run, "select tenant_id, bookings from saga_health where status = 'refund_pending'"
        )
        if n
    }
    assert served == dict(waiting)
    assert "coffeechain" not in waiting  # its refund is reference behaviour


def test_funnel_and_approvals_are_the_apis(run: dict[str, Any]) -> None:
    funnel = dict(_query(run, "select tenant_id, sum(searches) from booking_funnel group by all"))
    assert funnel == dict(Counter(s["tenant_id"] for s in run["searches"]))
    decided = {
        (e["booking_id"], e["actor"])
        for e in run["events"]
        if e["from_state"] == "pending_approval" and e["to_state"] in ("charging", "rejected")
    }
    assert decided
    served = set(
        _query(run, "select booking_id, decided_by from approvals where decision is not null")
    )
    assert served == decided


def test_the_snapshot_has_every_table_the_dashboard_reads(run: dict[str, Any]) -> None:
    tables = {name for (name,) in _query(run, "select table_name from information_schema.tables")}
    assert {
        "bookings",
        "members",
        "reconciliation_issues",
        "approvals",
        "booking_funnel",
        "saga_health",
        "tenant_capabilities",
        "reconciliation_checks",
        "daily_usd_rates",
        "booking_failures",
    } <= tables
