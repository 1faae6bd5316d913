"""Failures the service reports to callers, as RFC 9457 problem types.

Every error the booking API answers is one of these; the HTTP layer renders it with the
request's ``instance`` and ``trace_id``. Upstream errors are translated here and never
passed through raw (their text is redacted by ``clients.errors`` already).
"""

from __future__ import annotations

from typing import Any

from clients.errors import (
    AuthError,
    BusinessRuleError,
    Forbidden,
    NotFound,
    RateLimited,
    UpstreamError,
)

PROBLEM_BASE = "https://loyalty-flights.example/problems/"

TITLES: dict[str, str] = {
    "validation-error": "Request validation failed",
    "unauthorized": "Unauthorized",
    "forbidden": "Forbidden",
    "insufficient-balance": "Insufficient loyalty balance",
    "not-found": "Not found",
    "rate-limit": "Rate limit exceeded",
    "internal-error": "Internal error",
    "invalid-cabin-class": "Cabin class not allowed",
    "offer-expired": "Offer expired",
    "price-changed": "Price changed",
    "idempotency-conflict": "Idempotency key reused with another request",
    "idempotency-key-required": "Idempotency-Key header required",
    "request-in-progress": "A request with this idempotency key is in progress",
    "booking-not-cancellable": "Booking cannot be cancelled",
    "booking-not-pending": "Booking is not awaiting approval",
    "upstream-unavailable": "Upstream service unavailable",
    "upstream-rejected": "Upstream service refused the request",
    "unknown-tenant": "Unknown tenant",
    "booking-failed": "Booking failed",
}


class Problem(Exception):
    """An error answer: status, problem type slug, human detail and extension members."""

    def __init__(self, status: int, slug: str, detail: str, **extensions: Any) -> None:
        self.status = status
        self.slug = slug
        self.detail = detail
        self.extensions = extensions
        super().__init__(f"{status} {slug}: {detail}")

    @property
    def title(self) -> str:
        return TITLES.get(self.slug, self.slug.replace("-", " ").capitalize())

    def body(self, instance: str, trace_id: str) -> dict[str, Any]:
        """The problem document (top-level members, RFC 9457)."""
        return {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
            "trace_id": trace_id,
            **self.extensions,
        }


def validation(field: str, message: str) -> Problem:
    return Problem(
        422,
        "validation-error",
        f"{field}: {message}",
        errors=[{"field": field, "message": message}],
    )


def not_found(what: str = "booking") -> Problem:
    return Problem(404, "not-found", f"No such {what}.")


def from_upstream(exc: UpstreamError, doing: str, **extensions: Any) -> Problem:
    """An upstream failure as the caller should see it: what we were doing, not the raw body."""
    where = f"{exc.upstream} ({exc.tenant})"
    if isinstance(exc, RateLimited):
        retry = int(exc.retry_after or 1) + 1
        return Problem(
            503,
            "upstream-unavailable",
            f"{where} is rate-limiting us while {doing}; retry later.",
            retry_after=retry,
            **extensions,
        )
    if isinstance(exc, AuthError | Forbidden):
        return Problem(
            502,
            "upstream-unavailable",
            f"{where} refused the platform's credentials while {doing}.",
            **extensions,
        )
    if isinstance(exc, NotFound):
        return Problem(404, "not-found", f"{where}: not found while {doing}.", **extensions)
    if isinstance(exc, BusinessRuleError):
        return Problem(
            422,
            "upstream-rejected",
            f"{where} refused the request while {doing}: {exc.message}",
            upstream_code=exc.code,
            **extensions,
        )
    return Problem(
        503,
        "upstream-unavailable",
        f"{where} is unavailable while {doing}; retry later.",
        retry_after=5,
        **extensions,
    )
