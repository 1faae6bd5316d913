"""Who is calling: a tenant's member (checked with the tenant itself) or an operator."""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
import time
from collections.abc import Callable, Mapping

from pydantic import SecretStr

from booking.errors import Problem
from booking.service import Member
from clients.errors import AuthError, Forbidden, NotFound, UpstreamError
from clients.loyalty.member_auth import (
    credential_header,
    member_header,
    presented_credential,
    verify_member_credential,
)
from tenants.registry import TenantConfig


class MemberAuthenticator:
    """Accepts a member when their tenant accepts the presented credential (cached briefly)."""

    MAX_ENTRIES = 10_000

    def __init__(
        self,
        ttl_seconds: float,
        verify: Callable[[TenantConfig, str, SecretStr], object] = verify_member_credential,
    ) -> None:
        self.ttl = ttl_seconds
        self._verify = verify
        self._accepted: dict[str, float] = {}
        self._lock = threading.Lock()

    def authenticate(self, tenant: TenantConfig, headers: Mapping[str, str]) -> Member:
        member_name = member_header(tenant)
        member_id = (headers.get(member_name) or "").strip()
        credential = presented_credential(tenant, headers)
        if not member_id or credential is None:
            wanted = credential_header(tenant)
            scheme = "" if wanted != "Authorization" else " (Bearer <token>)"
            raise Problem(
                401,
                "unauthorized",
                f"{tenant.name} requests need {wanted}{scheme} and {member_name} headers.",
            )
        if not re.fullmatch(tenant.member_id_pattern, member_id):
            raise Problem(401, "unauthorized", f"{member_name} is not a {tenant.name} member id.")
        key = hashlib.sha256(
            f"{tenant.id}\0{member_id}\0{credential.get_secret_value()}".encode()
        ).hexdigest()
        now = time.monotonic()
        with self._lock:
            if self._accepted.get(key, 0.0) > now:
                return Member(tenant, member_id)
        try:
            self._verify(tenant, member_id, credential)
        except (AuthError, Forbidden, NotFound) as exc:
            raise Problem(
                401,
                "unauthorized",
                f"{tenant.name} did not accept the credential for this member.",
            ) from exc
        except UpstreamError as exc:
            raise Problem(
                503,
                "upstream-unavailable",
                f"{tenant.name} could not check the credential right now; retry later.",
                retry_after=5,
            ) from exc
        with self._lock:
            if len(self._accepted) >= self.MAX_ENTRIES:
                self._accepted = {k: v for k, v in self._accepted.items() if v > now}
            self._accepted[key] = now + self.ttl
        return Member(tenant, member_id)


def check_operator(authorization: str | None, token: SecretStr | None) -> None:
    """Operators present ``Authorization: Bearer <BOOKING_OPERATOR_TOKEN>``."""
    if token is None or not token.get_secret_value().strip():
        raise Problem(401, "unauthorized", "Operator access is not configured on this server.")
    scheme, _, presented = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), token.get_secret_value().encode()
    ):
        raise Problem(401, "unauthorized", "An operator credential is required.")
