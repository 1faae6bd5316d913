"""Reference mode: the stand-ins serve what the real tenant services offer and nothing more.

Each extension (ledger feed, member list, TelcoCorp/FintechApp refunds, FintechApp's partner
session, enforced rate limits) is checked both ways: absent in reference mode, as FastAPI
answers an unknown path, and working in the default mode. The reference endpoints themselves
run through the contract tests in both modes (tests/sandbox/test_loyalty_contract.py).
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

from sandbox.config import DEFAULT_PORTS, SERVICES, Limit
from sandbox.runner import Sandbox, start_sandbox
from testing.standins import sandbox_config

from .test_cli import _free_offset, serve_cli

CC_KEY = {"X-CC-API-Key": "test_cc_api_key_12345"}
TC_CREDENTIALS = {
    "grant_type": "client_credentials",
    "client_id": "telcocorp_client_id",
    "client_secret": "telcocorp_client_secret",
}
PARTNER = {
    "user_id": "partner_analytics",
    "device_id": "analytics",
    "partner_secret": "fintechapp_partner_secret",
}
# FastAPI's answer to a path no route matches.
UNKNOWN_PATH = {"detail": "Not Found"}
LISTINGS = [
    ("coffeechain", "/api/v1/ledger/transactions"),
    ("coffeechain", "/api/v1/members"),
    ("telcocorp", "/api/v2/ledger/transactions"),
    ("telcocorp", "/api/v2/customers"),
    ("fintechapp", "/api/v1/ledger/transactions"),
    ("fintechapp", "/api/v1/users"),
]
# Members with room for a small deduction, and where each tenant's refund is.
MEMBERS = {"coffeechain": "CC3333333", "telcocorp": "TC-DEF456", "fintechapp": "FA_87654321"}
DEDUCT = {
    "coffeechain": ("/api/v1/members/{m}/deduct", {"amount": 100}),
    "telcocorp": ("/api/v2/customers/{m}/points/use", {"points": 100}),
    "fintechapp": ("/api/v1/users/{m}/coins/deduct", {"amount": "1.00"}),
}
REFUND = {
    "coffeechain": "/api/v1/members/{m}/refund",
    "telcocorp": "/api/v2/customers/{m}/points/refund",
    "fintechapp": "/api/v1/users/{m}/coins/refund",
}


@pytest.fixture(scope="module")
def reference() -> Iterator[Sandbox]:
    """Reference-mode stand-ins for this module (fault control on, as the tests need it)."""
    running = start_sandbox(sandbox_config(reference=True))
    yield running
    running.stop()


def _session(url: str, payload: dict[str, str]) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/sessions/validate", json=payload, timeout=10)


def member_headers(stand_ins: Sandbox, tenant: str, member: str | None = None) -> dict[str, str]:
    """The credentials a member's calls carry at ``tenant``."""
    if tenant == "coffeechain":
        return dict(CC_KEY)
    if tenant == "telcocorp":
        token = httpx.post(f"{stand_ins.urls[tenant]}/oauth/token", json=TC_CREDENTIALS)
        return {"Authorization": f"Bearer {token.json()['access_token']}"}
    session = _session(
        stand_ins.urls[tenant], {"user_id": member or MEMBERS[tenant], "device_id": "d"}
    )
    return {"Authorization": f"Bearer {session.json()['jwt_token']}"}


def listing_headers(stand_ins: Sandbox, tenant: str) -> dict[str, str]:
    """The credentials the tenant's listings want (FintechApp: a partner session)."""
    if tenant != "fintechapp":
        return member_headers(stand_ins, tenant)
    session = _session(stand_ins.urls[tenant], PARTNER)
    assert session.status_code == 200, session.text
    return {"Authorization": f"Bearer {session.json()['jwt_token']}"}


def _deduct(stand_ins: Sandbox, tenant: str, headers: dict[str, str]) -> str:
    member = MEMBERS[tenant]
    path, amount = DEDUCT[tenant]
    response = httpx.post(
        stand_ins.urls[tenant] + path.format(m=member),
        json={**amount, "reference_id": "bkg_reference_mode", "description": "test"},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    return response.json()["transaction_id"]


# --- listings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("tenant", "path"), LISTINGS)
def test_listings_are_unknown_paths_in_reference_mode(
    reference: Sandbox, tenant: str, path: str
) -> None:
    # With the tenant's own valid member credentials, and with none: the path does not exist.
    for headers in (member_headers(reference, tenant), {}):
        response = httpx.get(reference.urls[tenant] + path, headers=headers, timeout=10)
        assert (response.status_code, response.json()) == (404, UNKNOWN_PATH)
        assert "x-ratelimit-limit" in response.headers  # the reference stamps every answer


@pytest.mark.parametrize(("tenant", "path"), LISTINGS)
def test_listings_work_in_the_default_mode(sandbox: Sandbox, tenant: str, path: str) -> None:
    response = httpx.get(
        sandbox.urls[tenant] + path,
        params={"limit": 5},
        headers=listing_headers(sandbox, tenant),
        timeout=10,
    )
    assert response.status_code == 200, response.text
    page = response.json()
    assert set(page) == {"data", "next_cursor", "has_more"}


# --- refunds ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tenant", ["telcocorp", "fintechapp"])
def test_refunds_are_unknown_paths_in_reference_mode(reference: Sandbox, tenant: str) -> None:
    headers = member_headers(reference, tenant)
    transaction_id = _deduct(reference, tenant, headers)
    response = httpx.post(
        reference.urls[tenant] + REFUND[tenant].format(m=MEMBERS[tenant]),
        json={"transaction_id": transaction_id, "reason": "cancelled"},
        headers=headers,
        timeout=10,
    )
    assert (response.status_code, response.json()) == (404, UNKNOWN_PATH)


@pytest.mark.parametrize("tenant", ["coffeechain", "telcocorp", "fintechapp"])
def test_refunds_work_in_the_default_mode(sandbox: Sandbox, tenant: str) -> None:
    headers = member_headers(sandbox, tenant)
    transaction_id = _deduct(sandbox, tenant, headers)
    response = httpx.post(
        sandbox.urls[tenant] + REFUND[tenant].format(m=MEMBERS[tenant]),
        json={"transaction_id": transaction_id, "reason": "cancelled"},
        headers=headers,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["transaction_id"] == transaction_id


def test_coffeechain_refund_stays_in_reference_mode(reference: Sandbox) -> None:
    transaction_id = _deduct(reference, "coffeechain", CC_KEY)
    response = httpx.post(
        reference.urls["coffeechain"] + REFUND["coffeechain"].format(m=MEMBERS["coffeechain"]),
        json={"transaction_id": transaction_id, "reason": "cancelled"},
        headers=CC_KEY,
        timeout=10,
    )
    assert response.status_code == 200, response.text
    assert response.json()["amount_refunded"] == 100


# --- FintechApp partner session ---------------------------------------------------------------


def test_partner_session_is_an_unknown_user_in_reference_mode(reference: Sandbox) -> None:
    response = _session(reference.urls["fintechapp"], PARTNER)
    assert response.status_code == 404
    assert response.json() == {
        "detail": {"error": "user_not_found", "message": "User partner_analytics not found"}
    }


def test_partner_session_works_in_the_default_mode(sandbox: Sandbox) -> None:
    response = _session(sandbox.urls["fintechapp"], PARTNER)
    assert response.status_code == 200, response.text
    assert response.json()["user"]["name"] == "Partner service"


# --- rate limits ------------------------------------------------------------------------------


REFERENCE_HEADERS = {
    "coffeechain": ("100", "95"),
    "telcocorp": ("50", "45"),
    "fintechapp": ("200", "195"),
}


@pytest.mark.parametrize("tenant", ["coffeechain", "telcocorp", "fintechapp"])
def test_reference_rate_limit_headers_are_fixed_and_never_enforced(
    sandbox_factory: Callable[..., Sandbox], tenant: str
) -> None:
    # A limit of 2 a minute configured: the reference mode ignores it, as the reference does.
    stand_ins = sandbox_factory(reference=True, limits=dict.fromkeys(SERVICES, Limit(2)))
    url = stand_ins.urls[tenant]
    answers = [httpx.get(url + "/api/v1/nothing-here", timeout=10) for _ in range(6)]
    answers += [httpx.get(url + "/health", timeout=10)]
    assert [a.status_code for a in answers] == [404] * 6 + [200]
    for answer in answers:
        limit, remaining = REFERENCE_HEADERS[tenant]
        assert answer.headers["x-ratelimit-limit"] == limit
        assert answer.headers["x-ratelimit-remaining"] == remaining
        assert 55 <= int(answer.headers["x-ratelimit-reset"]) - time.time() <= 61
        assert "retry-after" not in answer.headers


@pytest.mark.parametrize("tenant", ["coffeechain", "telcocorp", "fintechapp"])
def test_default_mode_enforces_the_limit(
    sandbox_factory: Callable[..., Sandbox], tenant: str
) -> None:
    stand_ins = sandbox_factory(limits=dict.fromkeys(SERVICES, Limit(2, 3600)))
    url = stand_ins.urls[tenant]
    answers = [httpx.get(url + "/api/v1/nothing-here", timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [404, 404, 429]
    assert answers[-1].json()["detail"]["error"] == "rate_limit_exceeded"
    assert int(answers[-1].headers["retry-after"]) >= 1


# --- fault switches ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tenant", "route"),
    [
        ("coffeechain", "ledger"),
        ("coffeechain", "members"),
        ("telcocorp", "refund"),
        ("telcocorp", "ledger"),
        ("fintechapp", "refund"),
        ("fintechapp", "members"),
    ],
)
def test_no_fault_can_be_armed_on_an_absent_extension(
    reference: Sandbox, sandbox_faults: Sandbox, tenant: str, route: str
) -> None:
    with pytest.raises(ValueError, match="unknown route"):
        reference.inject_fault(tenant, route, "true")
    # The default mode has the route, so the same fault is accepted there.
    assert sandbox_faults.inject_fault(tenant, route, "true")["route"] == route


def test_faults_still_reach_the_reference_routes(reference: Sandbox) -> None:
    reference.inject_fault("coffeechain", "deduct", "insufficient-balance")
    try:
        response = httpx.post(
            reference.urls["coffeechain"] + "/api/v1/members/CC3333333/deduct",
            json={"amount": 10, "reference_id": "bkg_x", "description": "x"},
            headers=CC_KEY,
            timeout=10,
        )
    finally:
        reference.clear_faults()
    assert response.status_code == 400
    assert response.json()["detail"]["error"] == "insufficient_balance"


# --- the command line -------------------------------------------------------------------------


def test_serve_reference_from_the_command_line() -> None:
    offset = _free_offset()
    proc, lines = serve_cli("--reference", "--port-offset", str(offset))
    try:
        assert any("reference behaviour only" in line for line in lines), "".join(lines)
        base = {name: f"http://127.0.0.1:{port + offset}" for name, port in DEFAULT_PORTS.items()}
        feed = httpx.get(base["coffeechain"] + "/api/v1/ledger/transactions", headers=CC_KEY)
        assert (feed.status_code, feed.json()) == (404, UNKNOWN_PATH)
        balance = httpx.get(
            base["coffeechain"] + "/api/v1/members/CC1234567/balance", headers=CC_KEY
        )
        assert balance.status_code == 200 and balance.json()["balance"] == 150_000
        assert balance.headers["x-ratelimit-remaining"] == "95"
        # Without --fault-control there is no control surface, as at the reference.
        assert httpx.get(base["telcocorp"] + "/_sandbox/faults").status_code == 404
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
