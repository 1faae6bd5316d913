"""How a sandbox run behaves: ports, enforced rate limits, token lifetimes, reset, traffic."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from settings import STANDIN_PORTS

TENANT_SERVICES = ("coffeechain", "telcocorp", "fintechapp")
SERVICES = (*TENANT_SERVICES, "duffel")
DEFAULT_PORTS = STANDIN_PORTS
# Bookings the history generator draws and writes at a time (whole days); its memory grows
# with this, not with the history's size.
DEFAULT_CHUNK_SIZE = 100_000


@dataclass(frozen=True)
class Limit:
    """At most ``requests`` per fixed window of ``window_seconds`` (windows align to the epoch)."""

    requests: int
    window_seconds: float = 60.0


# The rate-limit headers the reference tenant services send on every answer, whatever the
# traffic: (X-RateLimit-Limit, X-RateLimit-Remaining); X-RateLimit-Reset is a minute from now.
REFERENCE_RATE_HEADERS = {"coffeechain": (100, 95), "telcocorp": (50, 45), "fintechapp": (200, 195)}

# The real services' limits; Duffel's own is undocumented, 60/min per token is assumed.
DEFAULT_LIMITS = {
    "coffeechain": Limit(100),
    "telcocorp": Limit(50),
    "fintechapp": Limit(200),
    "duffel": Limit(60),
}


@dataclass(frozen=True)
class SandboxConfig:
    host: str = "127.0.0.1"
    ports: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_PORTS))  # 0 = any free
    limits: dict[str, Limit] = field(default_factory=lambda: dict(DEFAULT_LIMITS))
    history_dir: Path | None = None  # generated history; None = reference members only
    telcocorp_token_ttl_seconds: int = 3600
    fintechapp_session_ttl_seconds: int = 86400
    reset_interval_seconds: float | None = None  # the real services reset hourly
    # Bookings per minute by members through the booking API (BOOKING_API_URL, its operator
    # token in BOOKING_OPERATOR_TOKEN) while running; sandbox/traffic.py.
    traffic_per_minute: float = 0.0
    timeout_stall_seconds: float = 35.0  # X-Mock-Error: api-timeout
    # Duffel order creation with the `timeout` fault: past the Duffel client's 130 s.
    order_timeout_stall_seconds: float = 135.0
    webhook_max_attempts: int = 6  # Duffel webhook deliveries, first try included
    webhook_backoff_seconds: float = 0.5  # before the first retry; doubles, at most 30 s
    fault_control: bool = False  # serve /_sandbox/faults (tests, demo); never the reference
    # Tenant stand-ins serve the reference behaviour only: no ledger feed, member list,
    # TelcoCorp/FintechApp refunds or partner session; fixed rate-limit headers, no 429.
    reference: bool = False
    fintechapp_jwt_secret: str = "fintechapp-sandbox-hs256-signing-key-0001"
    fintechapp_partner_id: str = "partner_analytics"
    fintechapp_partner_secret: str = "fintechapp_partner_secret"
    log_requests: bool = True

    def duffel_tokens(self, tenant_ids: tuple[str, ...]) -> dict[str, str]:
        """Bearer token -> Duffel organisation (one per tenant)."""
        return {f"duffel_test_{tenant}_sandbox": tenant for tenant in tenant_ids}
