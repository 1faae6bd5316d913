"""Who may see which tenant: the scope resolved on the server and passed into every query."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Role = Literal["operator", "staff"]


class ScopeError(PermissionError):
    """A request for a tenant outside the caller's scope: refused, never answered with data."""


@dataclass(frozen=True)
class Scope:
    """The signed-in user's reach: an operator sees every tenant, staff see their own only."""

    username: str
    role: Role
    tenant_id: str | None = None

    def __post_init__(self) -> None:
        # A staff scope without a tenant would otherwise read as "no filter" somewhere.
        if self.role == "staff" and not self.tenant_id:
            raise ValueError(f"staff user {self.username!r} has no tenant")
        if self.role == "operator" and self.tenant_id is not None:
            raise ValueError(f"operator {self.username!r} must not be bound to a tenant")

    @property
    def is_operator(self) -> bool:
        """Whether the scope spans all tenants."""
        return self.role == "operator"

    def allows(self, tenant_id: str) -> bool:
        """Whether ``tenant_id`` lies inside the scope."""
        return self.is_operator or tenant_id == self.tenant_id

    def check(self, tenant_id: str) -> str:
        """Return ``tenant_id`` if the scope covers it; refuse otherwise."""
        if not self.allows(tenant_id):
            raise ScopeError(f"{self.username} may not see tenant {tenant_id!r}")
        return tenant_id

    def require_operator(self) -> None:
        """Refuse views that span tenants to anyone but an operator."""
        if not self.is_operator:
            raise ScopeError(f"{self.username} is not an operator")
