"""The loyalty client's capability probe in its corner cases, through httpx.MockTransport:
what counts as "not offered" (a bare 404 on a route declared ``probe``) and what stays a
failure (a 404 on a route declared ``true``, the tenant's own coded 404, any other status)."""

from __future__ import annotations

import httpx
import pytest

from clients.errors import AuthError, NotFound, UpstreamUnavailable
from tenants.registry import REGISTRY_DIR, RegistryError, TenantConfig, load_tenant_file

from .test_loyalty_mock import Script, _error

FEED = "/api/v1/ledger/transactions"
REFUND = "/api/v2/customers/capability-probe/points/refund"


def _bare_404() -> httpx.Response:
    return httpx.Response(404, json={"detail": "Not Found"})


def _declared_true(tenant: TenantConfig) -> TenantConfig:
    feed = tenant.capabilities.ledger_feed.model_copy(update={"offered": True})
    capabilities = tenant.capabilities.model_copy(update={"ledger_feed": feed})
    return tenant.model_copy(update={"capabilities": capabilities})


def test_a_bare_404_on_a_probed_route_is_not_offered(tenants, mock_loyalty) -> None:
    script = Script(**{FEED: [_bare_404()]})
    probe = mock_loyalty(tenants["coffeechain"], script).probe("ledger_feed")
    assert (probe.offered, probe.status_code) == (False, 404)
    assert "GET /api/v1/ledger/transactions answered 404" in probe.detail
    assert script.requests[0].url.params["limit"] == "1"


def test_a_404_on_a_route_declared_offered_is_an_error(tenants, mock_loyalty) -> None:
    script = Script(**{FEED: [_bare_404()]})
    with pytest.raises(NotFound):
        mock_loyalty(_declared_true(tenants["coffeechain"]), script).probe("ledger_feed")


def test_the_tenants_own_404_and_other_failures_stay_failures(tenants, mock_loyalty) -> None:
    coded = Script(**{FEED: [_error(404, "member_not_found")]})
    with pytest.raises(NotFound) as caught:
        mock_loyalty(tenants["coffeechain"], coded).probe("ledger_feed")
    assert caught.value.code == "member_not_found"
    for answer, error in (
        (_error(500, "internal_error"), UpstreamUnavailable),
        (_error(401, "invalid_api_key"), AuthError),
    ):
        with pytest.raises(error):
            mock_loyalty(tenants["coffeechain"], Script(**{FEED: [answer]})).probe("ledger_feed")


def test_refunds_are_probed_without_credentials_and_never_by_a_refund(
    tenants, mock_loyalty
) -> None:
    script = Script(**{REFUND: [httpx.Response(405, json={"detail": "Method Not Allowed"})]})
    probe = mock_loyalty(tenants["telcocorp"], script).probe("refunds")
    assert (probe.offered, probe.status_code) == (True, 405)
    (request,) = script.requests
    assert request.method == "GET"
    assert "Authorization" not in request.headers
    missing = mock_loyalty(tenants["telcocorp"], Script(**{REFUND: [_bare_404()]}))
    assert missing.probe("refunds").offered is False


def test_a_capability_the_file_does_not_declare_is_not_asked(tenants, mock_loyalty) -> None:
    script = Script()
    assert mock_loyalty(tenants["coffeechain"], script).probe("partner_session") is None
    assert not script.requests


def test_a_declaration_the_registry_cannot_honour_is_refused_naming_the_field(
    tmp_path,
) -> None:
    text = (REGISTRY_DIR / "coffeechain.yaml").read_text()
    session = tmp_path / "coffeechain.yaml"
    session.write_text(
        text.replace("  refunds: true\n", "  refunds: true\n  partner_session: probe\n")
    )
    with pytest.raises(RegistryError, match=r"coffeechain\.yaml.*partner_session"):
        load_tenant_file(session)
    offered = tmp_path / "other" / "coffeechain.yaml"
    offered.parent.mkdir()
    offered.write_text(text.replace("offered: probe}", "offered: maybe}", 1))
    with pytest.raises(RegistryError, match=r"capabilities\.ledger_feed\.offered"):
        load_tenant_file(offered)
