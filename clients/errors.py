"""Typed failures of tenant and Duffel calls, each naming who failed where, renderable as RFC 7807."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar

import httpx

from clients.ratelimit import parse_retry_after
from clients.redact import redact

PROBLEM_BASE = "urn:loyalty-flights:problem:"


class UpstreamError(Exception):
    """A call to a tenant's loyalty API or to Duffel did not give a usable answer."""

    slug: ClassVar[str] = "upstream-error"
    title: ClassVar[str] = "Upstream service error"
    default_status: ClassVar[int] = 502
    upstream: ClassVar[str] = "loyalty API"
    # What the failure means and what to do about it, for a one-line report. Templates
    # filled from ``facts`` (tenant, upstream, credentials, base_url, base_url_env, ...).
    meaning: ClassVar[str] = "{service} gave no usable answer"
    action: ClassVar[str] = "see the message above; rerun once {service} is fixed"

    def __init__(
        self,
        message: str,
        *,
        tenant: str,
        endpoint: str,
        status: int | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
    ) -> None:
        self.tenant = tenant
        self.endpoint = endpoint
        self.status = status
        self.code = code
        self.details = details or {}
        self.request_id = request_id
        # The call itself never left this process (no connection, or its token/session
        # request failed first): the upstream cannot have acted on it.
        self.not_sent = False
        self.message = " ".join(redact(message).split())  # one line, whatever the upstream sent
        self.facts: dict[str, str] = {}
        super().__init__(self._render())

    def add_facts(self, **facts: str | None) -> None:
        """Where the call went and which settings it used, for the advice (never secrets)."""
        self.facts.update({k: v for k, v in facts.items() if v})

    def advice(self) -> str:
        """What the failure means and what to do, in words for whoever runs the pipeline."""
        facts = {
            "tenant": self.tenant,
            "upstream": self.upstream,
            "service": "Duffel"
            if self.upstream == "Duffel"
            else f"the {self.tenant} {self.upstream}",
            "credentials": "its credentials",
            "base_url": "its base URL",
            "base_url_env": "its base URL variable",
            **self.facts,
        }
        retry_after = getattr(self, "retry_after", None)
        facts["retry"] = f"{retry_after:.0f} s" if retry_after else "a minute"
        return f"{self.meaning.format(**facts)}; {self.action.format(**facts)}"

    def _render(self) -> str:
        where = f"{self.tenant} {self.upstream} {self.endpoint}"
        status = f" -> {self.status}" if self.status is not None else ""
        code = f" [{self.code}]" if self.code else ""
        request = f" (request id {self.request_id})" if self.request_id else ""
        return f"{where}{status}{code}: {self.message}{request} — {self.advice()}"

    def __str__(self) -> str:
        return self._render()

    def to_problem(self) -> dict[str, Any]:
        """RFC 7807 problem details; extensions carry the upstream's own status and code."""
        problem: dict[str, Any] = {
            "type": PROBLEM_BASE + self.slug,
            "title": self.title,
            "status": self.default_status,
            "detail": self.message,
            "instance": self.endpoint.split(" ", 1)[-1],
            "tenant": self.tenant,
            "upstream": self.upstream,
            "endpoint": self.endpoint,
            "upstream_status": self.status,
            "upstream_code": self.code,
        }
        if self.request_id:
            problem["request_id"] = self.request_id
        if self.details:
            problem["upstream_details"] = _jsonable(self.details)
        return problem


def _jsonable(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, str):
        return redact(value)
    return value


class AuthError(UpstreamError):
    """Our credentials were refused (after one refresh where the scheme allows one)."""

    meaning = "our credentials were refused"
    action = "check {credentials} (set in .env or the environment) and rerun"

    slug = "upstream-auth"
    title = "Upstream rejected our credentials"
    default_status = 502


class Forbidden(UpstreamError):
    """The upstream understood who we are but refused this operation (403)."""

    meaning = "{service} refused this operation to our credentials"
    action = "ask {tenant} to grant it, or check the scope in tenants/{tenant}.yaml"

    slug = "upstream-forbidden"
    title = "Upstream refused the operation"
    default_status = 403


class NotFound(UpstreamError):
    """The member, transaction or resource does not exist upstream."""

    meaning = "it does not exist at {service}"
    action = "check the id; it may be another tenant's or deleted"

    slug = "not-found"
    title = "Not found upstream"
    default_status = 404


class RateLimited(UpstreamError):
    """The upstream kept answering 429 until the retry budget ran out."""

    meaning = "{service}'s rate limit held past the call's time budget"
    action = "rerun in {retry}; if it recurs, stop other clients of the same quota or lower rate_limit in the tenant file"

    slug = "rate-limited"
    title = "Upstream rate limit exceeded"
    default_status = 429

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kwargs)

    def to_problem(self) -> dict[str, Any]:
        problem = super().to_problem()
        problem["retry_after_seconds"] = self.retry_after
        return problem


class BusinessRuleError(UpstreamError):
    """The upstream refused the request on its merits (400/422): retrying cannot help."""

    meaning = "{service} refused the request on its merits; a retry cannot help"
    action = "correct the request as the message says"

    slug = "business-rule"
    title = "Upstream business rule violated"
    default_status = 422


class InsufficientFunds(BusinessRuleError):
    """The member's loyalty balance does not cover the amount."""

    meaning = "the member's balance does not cover the amount"
    action = "book a cheaper offer or let the member top up"

    slug = "insufficient-funds"
    title = "Insufficient loyalty balance"


class UpstreamUnavailable(UpstreamError):
    """The upstream failed (5xx, connection error) and the retry budget ran out."""

    meaning = "{service} failed or could not be reached on every attempt"
    action = "check that it is up at {base_url} (set by {base_url_env}) and rerun"

    slug = "upstream-unavailable"
    title = "Upstream unavailable"
    default_status = 503


class UpstreamTimeout(UpstreamUnavailable, TimeoutError):
    """The upstream did not answer within our read timeout, on every attempt allowed."""

    meaning = "{service} did not answer within the call's time budget"
    action = "check that it responds at {base_url} (set by {base_url_env}); rerun later"

    slug = "upstream-timeout"
    title = "Upstream timed out"
    default_status = 504


class NotSupported(UpstreamError):
    """The tenant does not offer this capability (no call was made)."""

    meaning = "{tenant} does not offer this"
    action = "nothing to retry; enable it in tenants/{tenant}.yaml once {tenant} offers it"

    slug = "not-supported"
    title = "Capability not offered by this tenant"
    default_status = 501


class DuffelError(UpstreamError):
    """An error answered by Duffel (or its edge), with Duffel's error type and request id."""

    slug = "duffel-error"
    title = "Duffel error"
    upstream = "Duffel"

    def __init__(self, message: str, *, error_type: str | None = None, **kwargs: Any) -> None:
        self.type = error_type
        super().__init__(message, **kwargs)

    def to_problem(self) -> dict[str, Any]:
        problem = super().to_problem()
        problem["duffel_type"] = self.type
        return problem


class DuffelAuthError(DuffelError, AuthError):
    """Duffel refused the tenant's Duffel token."""


class DuffelNotFound(DuffelError, NotFound):
    """Duffel has no such resource."""


class DuffelRateLimited(DuffelError, RateLimited):
    """Duffel kept answering 429."""


class DuffelRejected(DuffelError, BusinessRuleError):
    """Duffel refused the request (validation, expired offer, price change, ...)."""


class DuffelUnavailable(DuffelError, UpstreamUnavailable):
    """Duffel failed with 5xx (or a non-JSON edge page) until the budget ran out."""


class DuffelTimeout(DuffelUnavailable, UpstreamTimeout):
    """Duffel did not answer within our read timeout, on every attempt allowed."""

    slug = "duffel-timeout"
    title = "Duffel timed out"


class OrderNotCreated(DuffelUnavailable):
    """Duffel guarantees nothing was booked (502 order_not_created): safe to search again."""

    meaning = "Duffel guarantees nothing was booked"
    action = "search again and book a fresh offer"

    slug = "duffel-order-not-created"
    title = "Duffel order not created"


class OrderOutcomeUnknown(DuffelUnavailable):
    """Order creation failed with 500/502 or a timeout: it may or may not exist; never retried."""

    meaning = "the order may or may not exist at Duffel"
    action = "look it up (by its metadata) before booking again; never simply repeat it"

    slug = "duffel-order-outcome-unknown"
    title = "Duffel order outcome unknown"


@dataclass(frozen=True)
class ErrorFamily:
    """The error types of one upstream, for failures that come with no answer to map."""

    upstream: str
    unavailable: type[UpstreamUnavailable]
    timeout: type[UpstreamTimeout]
    rate_limited: type[RateLimited]


LOYALTY_ERRORS = ErrorFamily("loyalty API", UpstreamUnavailable, UpstreamTimeout, RateLimited)
DUFFEL_ERRORS = ErrorFamily("Duffel", DuffelUnavailable, DuffelTimeout, DuffelRateLimited)


def decode_body(response: httpx.Response) -> Any:
    """The JSON body with numbers kept exact, or None when the body is not JSON (e.g. an HTML 502)."""
    try:
        return json.loads(response.text, parse_float=Decimal)
    except ValueError:
        return None


def _snippet(response: httpx.Response) -> str:
    text = " ".join(response.text.split())
    return text[:200] or response.reason_phrase or "empty body"


_TENANT_BY_STATUS: dict[int, type[UpstreamError]] = {
    400: BusinessRuleError,
    401: AuthError,
    403: Forbidden,
    404: NotFound,
    409: BusinessRuleError,
    422: BusinessRuleError,
    429: RateLimited,
}
_INSUFFICIENT = {"insufficient_balance", "insufficient_points", "insufficient_coins"}


def tenant_error(response: httpx.Response, *, tenant: str, endpoint: str) -> UpstreamError:
    """Map a FastAPI-style tenant error (``{"detail": {"error", "message", ...}}``) to a type."""
    body = decode_body(response)
    detail = body.get("detail") if isinstance(body, dict) else None
    code: str | None = None
    extra: dict[str, Any] = {}
    if isinstance(detail, dict):
        code = detail.get("error")
        message = str(detail.get("message") or code or response.reason_phrase)
        extra = {k: v for k, v in detail.items() if k not in ("error", "message")}
    elif isinstance(detail, str):
        message = detail
    else:
        message = _snippet(response)
    status = response.status_code
    if code in _INSUFFICIENT:
        cls: type[UpstreamError] = InsufficientFunds
    elif status >= 500:
        cls = UpstreamUnavailable
    else:
        cls = _TENANT_BY_STATUS.get(status, UpstreamError)
    kwargs: dict[str, Any] = {
        "tenant": tenant,
        "endpoint": endpoint,
        "status": status,
        "code": code,
        "details": extra,
    }
    if cls is RateLimited:
        kwargs["retry_after"] = _retry_after(response)
    return cls(message, **kwargs)


_DUFFEL_BY_STATUS: dict[int, type[DuffelError]] = {
    400: DuffelRejected,
    401: DuffelAuthError,
    403: DuffelAuthError,
    404: DuffelNotFound,
    409: DuffelRejected,
    422: DuffelRejected,
    429: DuffelRateLimited,
}


def duffel_error(
    response: httpx.Response, *, tenant: str, endpoint: str, creates_order: bool = False
) -> DuffelError:
    """Map Duffel's ``{"errors": [...], "meta": {...}}`` envelope (or a non-JSON page) to a type."""
    body = decode_body(response)
    errors = body.get("errors") if isinstance(body, dict) else None
    meta = body.get("meta") if isinstance(body, dict) else None
    first = errors[0] if isinstance(errors, list) and errors and isinstance(errors[0], dict) else {}
    code = first.get("code")
    error_type = first.get("type")
    if first:
        message = "; ".join(
            str(e.get("message") or e.get("title") or e.get("code"))
            for e in errors
            if isinstance(e, dict)
        )
    else:
        message = f"non-JSON error body: {_snippet(response)}"
    request_id = (meta or {}).get("request_id") if isinstance(meta, dict) else None
    request_id = request_id or response.headers.get("x-request-id")
    status = response.status_code
    if creates_order and status == 502 and code == "order_not_created":
        cls: type[DuffelError] = OrderNotCreated
    elif creates_order and status in (500, 502):
        cls = OrderOutcomeUnknown
    elif status >= 500:
        cls = DuffelUnavailable
    else:
        cls = _DUFFEL_BY_STATUS.get(status, DuffelError)
    kwargs: dict[str, Any] = {
        "tenant": tenant,
        "endpoint": endpoint,
        "status": status,
        "code": code,
        "error_type": error_type,
        "request_id": request_id,
        "details": {"errors": errors} if isinstance(errors, list) and len(errors) > 1 else {},
    }
    if issubclass(cls, RateLimited):
        kwargs["retry_after"] = _retry_after(response)
    return cls(message, **kwargs)


def _retry_after(response: httpx.Response) -> float | None:
    return parse_retry_after(response.headers)
