"""A full auth + request run over the three tenants and Duffel leaks no credential anywhere."""

from __future__ import annotations

import json
import logging

import pytest

from clients.errors import UpstreamError
from tenants.auth import JwtSession, OAuth2ClientCredentials

from .conftest import Wire


def test_no_secret_in_any_log_line_or_error(tenants, loyalty, duffel, standins, caplog) -> None:
    caplog.set_level(logging.DEBUG)  # root: ours, httpx's and httpcore's records alike
    env = standins.client_env()
    failures: list[UpstreamError] = []

    def expect_failure(call) -> None:
        with pytest.raises(UpstreamError) as caught:
            call()
        failures.append(caught.value)

    members = {"coffeechain": "CC1234567", "telcocorp": "TC-ABC123", "fintechapp": "FA_12345678"}
    issued: list[str] = []
    for tenant_id, member in members.items():
        client = loyalty(tenants[tenant_id])
        client.balance(member)
        next(client.iter_ledger_pages(page_size=5))
        refused = loyalty(tenants[tenant_id], Wire("auth-failed"))
        expect_failure(lambda refused=refused, member=member: refused.balance(member))
        auth = client.http.auth
        if isinstance(auth, OAuth2ClientCredentials | JwtSession):
            issued.append(auth._token or "")
        if isinstance(auth, JwtSession):
            issued.append(auth.for_member(member)._token or "")
    expect_failure(lambda: loyalty(tenants["fintechapp"]).balance("FA_00000000"))

    flights = duffel(tenants["coffeechain"])
    next(flights.list_orders())
    expect_failure(lambda: next(duffel(tenants["telcocorp"], Wire("true")).list_orders()))
    logging.getLogger("clients.http").exception("an operator logs a failure", exc_info=failures[0])

    secrets = [
        env["COFFEECHAIN_API_KEY"],
        env["TELCOCORP_CLIENT_SECRET"],
        env["FINTECHAPP_PARTNER_SECRET"],
        env["COFFEECHAIN_DUFFEL_TOKEN"],
        env["TELCOCORP_DUFFEL_TOKEN"],
        env["FINTECHAPP_DUFFEL_TOKEN"],
        *issued,
    ]
    assert all(secrets) and len(issued) == 3
    assert any(token.startswith("tc_token_") for token in issued)
    assert any(token.startswith("eyJ") for token in issued)
    error_text = "\n".join(
        f"{error}\n{error!r}\n{json.dumps(error.to_problem())}" for error in failures
    )
    assert "clients.http" in caplog.text and "tenants.auth" in caplog.text
    for secret in secrets:
        assert secret not in caplog.text
        assert secret not in error_text
