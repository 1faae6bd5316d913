"""The booking API's operator routes, as the dashboard calls them (on the server only).

``BOOKING_API_URL`` and ``BOOKING_OPERATOR_TOKEN`` configure it; the token goes in the
``Authorization`` header of these server-side calls and never into a page or a callback
answer. Pending approvals are read from the API itself, the system of record: a queue read
from the snapshot would be minutes old, and an operator would decide bookings already
decided (the API then answers 409) or miss the newest.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx

TIMEOUT_S = 30.0  # an approval re-prices, charges and orders before it answers


class BookingApiError(RuntimeError):
    """The booking API refused or could not be reached; the message is safe to show."""


@dataclass(frozen=True)
class PendingApproval:
    """A booking waiting for an operator's decision."""

    booking_id: str
    tenant_id: str
    member_id: str
    requested_at: dt.datetime
    loyalty_amount: Decimal | None
    loyalty_currency: str | None
    usd_amount: Decimal | None
    route: str | None


def _decimal(value: Any) -> Decimal | None:
    return None if value is None else Decimal(str(value))


def _pending(view: dict[str, Any]) -> PendingApproval:
    payment = view.get("payment") or {}
    flight = view.get("flight") or {}
    departure = (flight.get("departure") or {}).get("airport")
    arrival = (flight.get("arrival") or {}).get("airport")
    return PendingApproval(
        booking_id=view["booking_id"],
        tenant_id=view["tenant_id"],
        member_id=view["member_id"],
        requested_at=dt.datetime.fromisoformat(view["created_at"].replace("Z", "+00:00")),
        loyalty_amount=_decimal(payment.get("loyalty_amount")),
        loyalty_currency=payment.get("loyalty_currency"),
        usd_amount=_decimal(payment.get("usd_equivalent")),
        route=f"{departure}-{arrival}" if departure and arrival else None,
    )


class BookingAdmin:
    """Server-side client of ``/api/v1/admin/...`` with the operator token."""

    def __init__(self, url: str, token: str, transport: httpx.BaseTransport | None = None) -> None:
        self._client = httpx.Client(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=TIMEOUT_S,
            transport=transport,
        )

    @classmethod
    def from_env(cls) -> BookingAdmin | None:
        """None unless BOOKING_OPERATOR_TOKEN is set (the API at BOOKING_API_URL)."""
        from clients.platform import PlatformSettings

        settings = PlatformSettings()
        token = settings.booking_operator_token
        if token is None or not token.get_secret_value().strip():
            return None
        return cls(settings.booking_api_url, token.get_secret_value().strip())

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            answer = self._client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise BookingApiError(
                f"the booking API could not be reached ({type(exc).__name__})"
            ) from exc
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail") or answer.reason_phrase
            except ValueError:
                detail = answer.reason_phrase
            raise BookingApiError(f"the booking API answered {answer.status_code}: {detail}")
        return answer.json()["data"]

    def pending_approvals(self, limit: int = 500) -> list[PendingApproval]:
        """Bookings pending approval, oldest first."""
        data = self._call(
            "GET", "/api/v1/admin/bookings", params={"status": "pending_approval", "limit": limit}
        )
        pending = [_pending(view) for view in data["bookings"]]
        return sorted(pending, key=lambda p: (p.requested_at, p.booking_id))

    def decide(
        self, booking_id: str, decision: str, operator: str, note: str | None = None
    ) -> dict[str, Any]:
        """Approve or reject; the API records ``operator:<operator>`` as the event's actor."""
        body = {"decision": decision, "operator": operator, "note": note or None}
        return self._call("POST", f"/api/v1/admin/approvals/{booking_id}", json=body)

    def request_stats(self, minutes: int) -> dict[str, Any]:
        """Requests, errors, 429s and latency per tenant and route over the last minutes."""
        return self._call("GET", "/api/v1/admin/request-stats", params={"minutes": minutes})
