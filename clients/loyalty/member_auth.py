"""Credentials a member's app presents on the member's behalf, checked with the tenant itself.

The booking API accepts each tenant's own scheme (CoffeeChain's API key, a TelcoCorp OAuth
token, a FintechApp session JWT). The only judge of such a credential is the tenant: it is
verified by using it for the member's balance call, exactly as the tenant would see it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping

import httpx
from pydantic import SecretStr

from clients.http import RetryPolicy, build_http_client
from clients.loyalty.client import LoyaltyClient
from clients.loyalty.models import Balance
from clients.ratelimit import limiter_for, quota_key
from tenants.auth import TenantAuth
from tenants.registry import ApiKeyConfig, TenantConfig
from tenants.settings import tenant_base_url

# The header naming the member, per API family (the tenants' own conventions).
MEMBER_HEADERS: dict[str, str] = {
    "coffeechain_v1": "X-CC-Member-ID",
    "telcocorp_v2": "X-TC-Customer-ID",
    "fintechapp_v1": "X-FA-User-ID",
}

# A presented credential is checked with one quick call; it is not worth a long retry.
VERIFY_RETRY = RetryPolicy(max_attempts=2, max_elapsed_seconds=8.0)


class PresentedAuth(TenantAuth):
    """Sends exactly the credential the member's app presented, in the tenant's header."""

    def __init__(self, header: str, value: SecretStr) -> None:
        self.header = header
        self._value = value

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self._value.get_secret_value()
        yield request


def member_header(tenant: TenantConfig) -> str:
    """The request header that names the member for ``tenant``."""
    return MEMBER_HEADERS.get(tenant.api.dialect, "X-Member-ID")


def credential_header(tenant: TenantConfig) -> str:
    """The request header that carries the tenant's credential."""
    return tenant.auth.header if isinstance(tenant.auth, ApiKeyConfig) else "Authorization"


def presented_credential(tenant: TenantConfig, headers: Mapping[str, str]) -> SecretStr | None:
    """The credential in the tenant's scheme from request headers, or None when absent.

    For bearer schemes the whole ``Authorization`` value must be ``Bearer <token>``.
    """
    header = credential_header(tenant)
    value = headers.get(header)
    if not value or not value.strip():
        return None
    if header == "Authorization":
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
    return SecretStr(value.strip())


def verify_member_credential(
    tenant: TenantConfig,
    member_id: str,
    credential: SecretStr,
    *,
    transport: httpx.BaseTransport | None = None,
) -> Balance:
    """The member's balance fetched WITH the presented credential; the tenant's refusal raises.

    Raises ``AuthError`` (401), ``Forbidden`` (403) or ``NotFound`` (404) as the tenant answers.
    """
    base_url = tenant_base_url(tenant)
    http = build_http_client(
        base_url,
        auth=PresentedAuth(credential_header(tenant), credential),
        limiter=limiter_for(quota_key(tenant.id, base_url), tenant.rate_limit),
        read_timeout=tenant.api.read_timeout_seconds,
        transport=transport,
    )
    with LoyaltyClient(tenant, http, retry=VERIFY_RETRY) as client:
        return client.balance(member_id)
