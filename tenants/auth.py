"""One ``httpx.Auth`` per tenant auth scheme, picked from ``tenant.auth.kind``.

A new scheme is one new class here plus one entry in ``AUTH_SCHEMES``. Schemes that obtain
a token (OAuth2 client credentials, JWT session) cache it, refresh it ahead of expiry and,
on a 401, refresh once and replay the request. Retries for 429/5xx/timeouts are not done
here: they belong to the request loop in ``clients.http``. These auths drive a threading
lock from inside the auth flow, so they are for synchronous ``httpx.Client`` use.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Generator
from typing import Any, ClassVar

import httpx
from pydantic import SecretStr

from clients.errors import UpstreamError, decode_body, tenant_error
from clients.ratelimit import DEADLINE_EXTENSION, credential_fingerprint
from clients.redact import get_logger, register_secret
from tenants import registry
from tenants.settings import secret, tenant_base_url

log = get_logger("tenants.auth")

# Refresh a token this long before it expires (capped at a tenth of its lifetime).
REFRESH_AHEAD_SECONDS = 60.0


class TenantAuth(httpx.Auth):
    """Base of every scheme: credentials for the tenant, and (optionally) for one member."""

    def for_member(self, member_id: str) -> httpx.Auth:
        """The auth for calls made on behalf of ``member_id``; service credentials by default."""
        return self


class ApiKeyAuth(TenantAuth):
    """A static API key sent in a named header on every request (CoffeeChain)."""

    def __init__(self, header: str, key: SecretStr) -> None:
        self.header = header
        self._key = key

    @classmethod
    def from_config(cls, tenant: registry.TenantConfig, base_url: str) -> ApiKeyAuth:
        config = tenant.auth
        assert isinstance(config, registry.ApiKeyConfig)
        key = secret(config.key_env, tenant=tenant.id)
        register_secret(key.get_secret_value())
        return cls(config.header, key)

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers[self.header] = self._key.get_secret_value()
        yield request


class BearerTokenAuth(TenantAuth):
    """A static bearer token (a Duffel access token)."""

    def __init__(self, token: SecretStr) -> None:
        self._token = token
        # Identifies the token (e.g. to key its rate limiter) without revealing it.
        self.fingerprint = credential_fingerprint(token.get_secret_value())

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        request.headers["Authorization"] = f"Bearer {self._token.get_secret_value()}"
        yield request


class _IssuedTokenAuth(TenantAuth):
    """Shared machinery for schemes whose bearer token is issued by a token endpoint."""

    requires_response_body = True
    endpoint_label: ClassVar[str] = "POST token"

    def __init__(
        self, *, tenant_id: str, token_url: str, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.tenant_id = tenant_id
        self.token_url = token_url
        self._clock = clock
        self._lock = threading.Lock()
        self._token: str | None = None
        self._refresh_at = 0.0
        self.refresh_count = 0  # tokens fetched so far; lets tests prove there is no loop

    def _token_request(self) -> httpx.Request:
        raise NotImplementedError

    def _read_token(self, body: dict[str, Any]) -> tuple[str, float]:
        raise NotImplementedError

    def _fresh_token(self) -> str | None:
        token = self._token
        return token if token is not None and self._clock() < self._refresh_at else None

    def _refresh(
        self, stale: str | None, call: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, str]:
        """Fetch a token unless another thread already replaced ``stale`` meanwhile.

        The token request inherits the timeouts and deadline of ``call``, the request that
        needs the token: httpx gives requests made inside an auth flow no timeout at all.
        """
        self._acquire(call)
        try:
            current = self._fresh_token()
            if current is not None and current != stale:
                return current
            token_request = self._token_request()
            token_request.extensions = {**call.extensions, **token_request.extensions}
            response = yield token_request
            path = httpx.URL(self.token_url).path
            if response.status_code != 200:
                raise tenant_error(response, tenant=self.tenant_id, endpoint=f"POST {path}")
            body = decode_body(response)
            try:
                token, ttl = self._read_token(body)
            except (KeyError, TypeError, ValueError) as exc:
                raise UpstreamError(
                    f"token response lacks a usable token: {exc!r}",
                    tenant=self.tenant_id,
                    endpoint=f"POST {path}",
                    status=response.status_code,
                ) from exc
            self._token = token
            self._refresh_at = self._clock() + ttl - min(REFRESH_AHEAD_SECONDS, ttl / 10)
            self.refresh_count += 1
            log.info("%s: obtained a token valid for %.0f s", self._describe(), ttl)
            return token
        finally:
            self._lock.release()

    def _acquire(self, call: httpx.Request) -> None:
        # Another thread may be fetching the token; wait for it no longer than this call may.
        deadline = call.extensions.get(DEADLINE_EXTENSION)
        wait = -1.0 if deadline is None else max(deadline - time.monotonic(), 0.0)
        if not self._lock.acquire(timeout=wait):
            raise httpx.PoolTimeout(
                "the call's time budget ran out waiting for another thread's token request",
                request=call,
            )

    def _describe(self) -> str:
        return self.tenant_id

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = self._fresh_token()
        if token is None:
            token = yield from self._refresh(stale=None, call=request)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            # Expired, revoked, or forgotten by an upstream reset: refresh once and replay.
            code = _error_code(response)
            log.info("%s: 401 %s; refreshing the token once", self._describe(), code)
            token = yield from self._refresh(stale=token, call=request)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request


def _error_code(response: httpx.Response) -> str | None:
    body = decode_body(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    return detail.get("error") if isinstance(detail, dict) else None


class OAuth2ClientCredentials(_IssuedTokenAuth):
    """OAuth 2.0 client credentials with a JSON token request (TelcoCorp)."""

    def __init__(
        self,
        *,
        tenant_id: str,
        token_url: str,
        client_id: str,
        client_secret: SecretStr,
        scope: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(tenant_id=tenant_id, token_url=token_url, clock=clock)
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope

    @classmethod
    def from_config(cls, tenant: registry.TenantConfig, base_url: str) -> OAuth2ClientCredentials:
        config = tenant.auth
        assert isinstance(config, registry.OAuthClientCredentialsConfig)
        client_secret = secret(config.client_secret_env, tenant=tenant.id)
        register_secret(client_secret.get_secret_value())
        return cls(
            tenant_id=tenant.id,
            token_url=base_url + config.token_path,
            client_id=secret(config.client_id_env, tenant=tenant.id).get_secret_value(),
            client_secret=client_secret,
            scope=config.scope,
        )

    def _token_request(self) -> httpx.Request:
        body = {
            "grant_type": "client_credentials",
            "client_id": self.client_id,
            "client_secret": self._client_secret.get_secret_value(),
        }
        if self.scope:
            body["scope"] = self.scope
        return httpx.Request("POST", self.token_url, json=body)

    def _read_token(self, body: dict[str, Any]) -> tuple[str, float]:
        token = str(body["access_token"])
        register_secret(token)
        return token, float(body.get("expires_in") or 3600)


class JwtSession(_IssuedTokenAuth):
    """A session-bound JWT from session validation of a principal + device (FintechApp).

    The configured partner principal's session serves the tenant-wide endpoints (ledger
    feed, member list); ``for_member`` gives the member's own session for user endpoints.
    """

    # Members' sessions kept per process; the least recently used are dropped beyond this.
    MEMBER_SESSIONS = 1024

    def __init__(
        self,
        *,
        tenant_id: str,
        token_url: str,
        principal_id: str,
        device_id: str,
        partner_secret: SecretStr | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(tenant_id=tenant_id, token_url=token_url, clock=clock)
        self.principal_id = principal_id
        self.device_id = device_id
        self._partner_secret = partner_secret
        self._members: OrderedDict[str, JwtSession] = OrderedDict()
        self._members_lock = threading.Lock()

    @classmethod
    def from_config(cls, tenant: registry.TenantConfig, base_url: str) -> JwtSession:
        config = tenant.auth
        assert isinstance(config, registry.JwtSessionConfig)
        partner_secret = secret(config.partner_secret_env, tenant=tenant.id)
        register_secret(partner_secret.get_secret_value())
        return cls(
            tenant_id=tenant.id,
            token_url=base_url + config.session_path,
            principal_id=secret(config.partner_id_env, tenant=tenant.id).get_secret_value(),
            device_id=config.device_id,
            partner_secret=partner_secret,
        )

    def for_member(self, member_id: str) -> JwtSession:
        if member_id == self.principal_id:
            return self
        with self._members_lock:
            session = self._members.get(member_id)
            if session is None:
                session = JwtSession(
                    tenant_id=self.tenant_id,
                    token_url=self.token_url,
                    principal_id=member_id,
                    device_id=self.device_id,
                    clock=self._clock,
                )
                self._members[member_id] = session
                if len(self._members) > self.MEMBER_SESSIONS:
                    self._members.popitem(last=False)
            else:
                self._members.move_to_end(member_id)
            return session

    def _describe(self) -> str:
        role = "partner" if self._partner_secret is not None else "member"
        return f"{self.tenant_id} ({role} session)"

    def _token_request(self) -> httpx.Request:
        body = {"user_id": self.principal_id, "device_id": self.device_id}
        if self._partner_secret is not None:
            body["partner_secret"] = self._partner_secret.get_secret_value()
        return httpx.Request("POST", self.token_url, json=body)

    def _read_token(self, body: dict[str, Any]) -> tuple[str, float]:
        return str(body["jwt_token"]), float(body.get("expires_in") or 86400)


AUTH_SCHEMES: dict[str, type[ApiKeyAuth | OAuth2ClientCredentials | JwtSession]] = {
    "api_key": ApiKeyAuth,
    "oauth2_client_credentials": OAuth2ClientCredentials,
    "jwt_session": JwtSession,
}


def build_auth(tenant: registry.TenantConfig, base_url: str | None = None) -> TenantAuth:
    """The auth for ``tenant``'s loyalty API, chosen by ``tenant.auth.kind``."""
    scheme = AUTH_SCHEMES.get(tenant.auth.kind)
    if scheme is None:
        raise ValueError(f"tenant {tenant.id!r}: no auth scheme for kind {tenant.auth.kind!r}")
    return scheme.from_config(tenant, (base_url or tenant_base_url(tenant)).rstrip("/"))


def build_duffel_auth(tenant: registry.TenantConfig) -> BearerTokenAuth:
    """The tenant's own Duffel access token as a bearer auth."""
    token = secret(tenant.duffel.token_env, tenant=tenant.id)
    register_secret(token.get_secret_value())
    return BearerTokenAuth(token)
