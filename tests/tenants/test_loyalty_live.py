"""Each auth scheme and every X-Mock-Error mode against the running loyalty stand-ins."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from pydantic import SecretStr

from clients.errors import (
    AuthError,
    BusinessRuleError,
    InsufficientFunds,
    NotFound,
    NotSupported,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from clients.http import RetryPolicy, build_http_client
from clients.loyalty.client import LoyaltyClient, build_loyalty_client
from clients.ratelimit import ClientRateLimiter
from tenants.auth import OAuth2ClientCredentials
from tenants.registry import RateLimit
from tenants.settings import tenant_base_url

from .conftest import LIVE_RETRY, STALL_SECONDS, Wire, with_read_timeout

MEMBERS = {"coffeechain": "CC1234567", "telcocorp": "TC-ABC123", "fintechapp": "FA_12345678"}
BALANCE_PATHS = {"coffeechain": "/balance", "telcocorp": "/points", "fintechapp": "/coins"}
AUTH_PATH = {"telcocorp": "/oauth/token", "fintechapp": "/api/v1/sessions/validate"}


def _all_ledger_ids(client: LoyaltyClient) -> set[str]:
    return {record.transaction_id for page in client.iter_ledger() for record in page}


def test_api_key_happy_path(tenants, loyalty) -> None:
    client = loyalty(tenants["coffeechain"])
    balance = client.balance("CC1234567")
    assert (balance.balance, balance.currency, balance.tier) == (Decimal(150000), "stars", "gold")
    assert client.check_approval("CC1234567", 1000, "bkg_small").approval_required is False
    large = client.check_approval("CC1234567", 60000, "bkg_large")
    assert large.approval_required and large.approval_id and large.approval_id.startswith("appr_")
    deduction = client.deduct("CC3333333", 1000, "bkg_cc_1", "Flight LHR-JFK")
    assert deduction.transaction_id.startswith("txn_") and deduction.amount == 1000
    refund = client.refund("CC3333333", deduction.transaction_id, "cancelled")
    assert refund.new_balance == deduction.remaining_balance + 1000
    assert {deduction.transaction_id, refund.refund_id} <= _all_ledger_ids(client)
    members = {m.member_id: m for page in client.iter_members() for m in page}
    assert members["CC0000000"].balance == Decimal(1000)


def test_oauth_happy_path_fetches_one_token(tenants, loyalty) -> None:
    wire = Wire()
    client = loyalty(tenants["telcocorp"], wire)
    assert client.balance("TC-ABC123").balance == Decimal(25000)
    eligibility = client.travel_eligibility("TC-ABC123")
    assert eligibility.eligible and eligibility.allowed_classes == ("economy",)
    used = client.deduct("TC-DEF456", 500, "bkg_tc_1", "Flight")
    assert used.transaction_id.startswith("tctxn_")
    refund = client.refund("TC-DEF456", used.transaction_id, "cancelled")
    assert refund.refund_id.startswith("tcref_") and refund.amount == 500
    assert used.transaction_id in _all_ledger_ids(client)
    assert wire.sends("/oauth/token") == 1
    assert wire.count(status=401) == 0


def test_jwt_happy_path_member_and_partner_sessions(tenants, loyalty) -> None:
    wire = Wire()
    client = loyalty(tenants["fintechapp"], wire)
    balance = client.balance("FA_12345678")
    assert balance.balance == Decimal("2500.00") and balance.total_cashback == Decimal("125.50")
    deduction = client.deduct("FA_87654321", Decimal("10.55"), "bkg_fa_1", "Flight")
    assert deduction.cashback_earned == Decimal("0.21")
    refund = client.refund("FA_87654321", deduction.transaction_id, "cancelled")
    assert refund.amount == Decimal("10.55")
    ledger = {r.transaction_id: r for page in client.iter_ledger() for r in page}
    assert ledger[deduction.transaction_id].amount == Decimal("-10.55")
    # One session per member, one partner session for the feed; each reused.
    assert wire.sends("/api/v1/sessions/validate") == 3
    client.balance("FA_12345678")
    assert wire.sends("/api/v1/sessions/validate") == 3


def test_token_is_refreshed_ahead_of_expiry(tenants, sandbox_factory, point_at) -> None:
    point_at(sandbox_factory(telcocorp_token_ttl_seconds=1))
    wire = Wire()
    with build_loyalty_client(tenants["telcocorp"], retry=LIVE_RETRY, event_hooks=wire.hooks) as c:
        c.balance("TC-ABC123")
        time.sleep(1.1)
        c.balance("TC-ABC123")
    assert wire.sends("/oauth/token") == 2
    assert wire.count(status=401) == 0


def test_expired_token_is_refreshed_once_and_replayed(tenants, sandbox_factory, point_at) -> None:
    # Our clock stands still, so only the server knows the token expired: the 401 path.
    env = point_at(sandbox_factory(telcocorp_token_ttl_seconds=1)).client_env()
    tenant = tenants["telcocorp"]
    base_url = tenant_base_url(tenant)
    auth = OAuth2ClientCredentials(
        tenant_id=tenant.id,
        token_url=base_url + "/oauth/token",
        client_id=env["TELCOCORP_CLIENT_ID"],
        client_secret=SecretStr(env["TELCOCORP_CLIENT_SECRET"]),
        clock=lambda: 0.0,
    )
    wire = Wire()
    http = build_http_client(
        base_url,
        auth=auth,
        limiter=ClientRateLimiter(RateLimit(requests=1000), "test"),
        read_timeout=2.0,
        event_hooks=wire.hooks,
    )
    with LoyaltyClient(tenant, http, retry=LIVE_RETRY) as client:
        client.balance("TC-ABC123")
        time.sleep(1.1)
        assert client.balance("TC-ABC123").balance == Decimal(25000)
    assert wire.count(path="/points", status=401) == 1
    assert wire.sends("/oauth/token") == 2 and auth.refresh_count == 2


def test_upstream_reset_is_recovered_transparently(tenants, sandbox_factory, point_at) -> None:
    running = point_at(sandbox_factory())
    wire = Wire()
    clients = {
        tid: build_loyalty_client(tenants[tid], retry=LIVE_RETRY, event_hooks=wire.hooks)
        for tid in MEMBERS
    }

    def use_all() -> None:
        for tid, client in clients.items():
            client.balance(MEMBERS[tid])
            next(client.iter_ledger_pages(page_size=10))

    use_all()
    running.reset()  # tokens and sessions are gone, like the real services' hourly reset
    use_all()
    for client in clients.values():
        client.close()
    assert wire.sends("/oauth/token") == 2
    # FintechApp: the member's session and the partner session were both re-validated.
    assert wire.sends("/api/v1/sessions/validate") == 4
    assert wire.count(status=401) == 3


@pytest.mark.parametrize("tenant_id", list(MEMBERS))
def test_mock_internal_error_is_retried_then_unavailable(tenants, loyalty, tenant_id) -> None:
    wire = Wire("true")
    with pytest.raises(UpstreamUnavailable) as caught:
        loyalty(tenants[tenant_id], wire).balance(MEMBERS[tenant_id])
    assert caught.value.status == 500 and caught.value.code == "internal_error"
    assert wire.count(path=BALANCE_PATHS[tenant_id], status=500) == LIVE_RETRY.max_attempts


@pytest.mark.parametrize(
    ("tenant_id", "token_fetches", "attempts"),
    [("coffeechain", 0, 1), ("telcocorp", 2, 2), ("fintechapp", 2, 2)],
)
def test_mock_auth_failure_is_auth_error_after_one_refresh(
    tenants, loyalty, tenant_id, token_fetches, attempts
) -> None:
    wire = Wire("auth-failed")
    with pytest.raises(AuthError) as caught:
        loyalty(tenants[tenant_id], wire).balance(MEMBERS[tenant_id])
    assert caught.value.status == 401 and caught.value.code == "unauthorized"
    assert wire.count(path=BALANCE_PATHS[tenant_id], status=401) == attempts
    if tenant_id in AUTH_PATH:
        assert wire.sends(AUTH_PATH[tenant_id]) == token_fetches


@pytest.mark.parametrize("tenant_id", ["coffeechain", "telcocorp"])
def test_mock_stall_is_cut_short_retried_then_times_out(tenants, loyalty, tenant_id) -> None:
    read_timeout = 0.5
    assert read_timeout < STALL_SECONDS
    wire = Wire("api-timeout")
    policy = RetryPolicy(max_attempts=2, base_delay_seconds=0.05, max_delay_seconds=0.1)
    client = loyalty(with_read_timeout(tenants[tenant_id], read_timeout), wire, retry=policy)
    with pytest.raises(UpstreamTimeout) as caught:
        client.balance(MEMBERS[tenant_id])
    assert isinstance(caught.value, TimeoutError)
    assert wire.sends(BALANCE_PATHS[tenant_id]) == 2
    assert wire.count(path=BALANCE_PATHS[tenant_id]) == 0  # no answer ever arrived


@pytest.mark.parametrize(
    ("tenant_id", "member", "amount", "code"),
    [
        ("coffeechain", "CC1234567", 1000, "insufficient_balance"),
        ("telcocorp", "TC-ABC123", 1000, "insufficient_points"),
        ("fintechapp", "FA_12345678", Decimal("12.50"), "insufficient_coins"),
    ],
)
def test_mock_insufficient_balance(tenants, loyalty, tenant_id, member, amount, code) -> None:
    wire = Wire("insufficient-balance")
    with pytest.raises(InsufficientFunds) as caught:
        loyalty(tenants[tenant_id], wire).deduct(member, amount, "bkg_x", "Flight")
    assert caught.value.code == code and caught.value.status == 400
    assert caught.value.details  # current and requested amounts, as the tenant sent them
    assert wire.count(status=400) == 1


def test_mock_approval_required(tenants, loyalty) -> None:
    check = loyalty(tenants["coffeechain"], Wire("approval-required")).check_approval(
        "CC1234567", 100, "bkg_forced"
    )
    assert check.approval_required and check.approval_id


def test_mock_invalid_member_at_session_validation(tenants, loyalty) -> None:
    wire = Wire("invalid-member", on_auth=True)
    with pytest.raises(NotFound) as caught:
        loyalty(tenants["fintechapp"], wire).balance("FA_12345678")
    assert caught.value.code == "user_not_found"
    assert caught.value.endpoint == "POST /api/v1/sessions/validate"
    assert wire.sends("/api/v1/sessions/validate") == 1


def test_unknown_member_is_not_found(tenants, loyalty) -> None:
    with pytest.raises(NotFound) as caught:
        loyalty(tenants["telcocorp"]).balance("TC-ZZZ999")
    assert caught.value.code == "customer_not_found"


def test_wrong_api_key_is_auth_error(tenants, loyalty, monkeypatch) -> None:
    monkeypatch.setenv("COFFEECHAIN_API_KEY", "wrong_key_value")
    with pytest.raises(AuthError):
        loyalty(tenants["coffeechain"]).balance("CC1234567")


def test_telcocorp_refuses_business_class(tenants, loyalty) -> None:
    with pytest.raises(BusinessRuleError) as caught:
        loyalty(tenants["telcocorp"]).deduct(
            "TC-ABC123", 100, "bkg_biz", "Flight", travel_class="business"
        )
    assert caught.value.code == "invalid_travel_class"
    assert caught.value.details["allowed_classes"] == ["economy"]


@pytest.mark.parametrize("tenant_id", ["telcocorp", "fintechapp"])
def test_refund_path_missing_at_a_reference_service_is_not_supported(
    tenants, sandbox_factory, point_at, tenant_id
) -> None:
    # The registry declares refunds, but a reference service has no such path (a bare 404).
    point_at(sandbox_factory(reference=True))
    member = {"telcocorp": "TC-DEF456", "fintechapp": "FA_87654321"}[tenant_id]
    wire = Wire()
    refund_path = "/refund"
    client = build_loyalty_client(tenants[tenant_id], retry=LIVE_RETRY, event_hooks=wire.hooks)
    with client:
        deduction = client.deduct(member, 100, "bkg_ref_1", "Flight")
        with pytest.raises(NotSupported) as caught:
            client.refund(member, deduction.transaction_id, "cancelled")
        assert "does not offer refunds" in caught.value.message
        assert caught.value.status == 404
        assert client.balance(member).balance == deduction.remaining_balance  # nothing paid
        # Known now: later refunds are refused without spending the tenant's rate limit.
        with pytest.raises(NotSupported):
            client.refund(member, deduction.transaction_id, "cancelled again")
    assert wire.sends(refund_path) == 1


def test_a_tenants_own_404_at_the_refund_path_stays_not_found(
    tenants, sandbox_factory, point_at
) -> None:
    point_at(sandbox_factory(reference=True))
    client = build_loyalty_client(tenants["coffeechain"], retry=LIVE_RETRY)
    with client, pytest.raises(NotFound) as caught:
        client.refund("CC1234567", "txn_000000000000", "cancelled")
    assert not isinstance(caught.value, NotSupported)
    assert caught.value.code == "transaction_not_found"
