"""A client for our own booking API's event feed (``GET /api/v1/admin/events``), for analytics,
and for its searches feed (``GET /api/v1/admin/searches``), which has the same shape.

The feed is read by cursor: each page's ``next_cursor`` is the id of the last event on it, and
events come in id order, which is their commit order. The operator token is a secret: it is
sent only in the ``Authorization`` header, registered with the redaction filter, and never
part of a log line, an error or a setting's repr.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
from pydantic import SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from clients.errors import (
    ErrorFamily,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
    tenant_error,
)
from clients.http import RequestRunner, RetryPolicy, Route, Safety, build_http_client
from clients.ratelimit import limiter_for, quota_key
from clients.redact import register_secret
from tenants.auth import BearerTokenAuth
from tenants.registry import RateLimit

FEED = Route("GET", "/api/v1/admin/events", Safety.READ)
SEARCHES = Route("GET", "/api/v1/admin/searches", Safety.READ)
# The feed's own ceiling on ``limit`` (the API refuses more).
MAX_PAGE_SIZE = 1000
# Admin routes are not rate limited by the API; this only keeps a backfill from hogging it.
FEED_RATE_LIMIT = RateLimit(requests=600, window_seconds=60)
READ_TIMEOUT_SECONDS = 30.0


class PlatformSettings(BaseSettings):
    """Where the booking API is and the operator token that opens its admin routes."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    booking_api_url: str = "http://127.0.0.1:8000"
    booking_operator_token: SecretStr | None = None

    @field_validator("booking_operator_token", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """An empty variable (as ``.env.example`` ships it) means no token, not "" as one."""
        if isinstance(value, str) and not value.strip():
            return None
        return value


class BookingApiError(UpstreamError):
    """The booking API's event feed gave no usable answer."""

    upstream = "booking API"
    meaning = "the booking API's event feed gave no usable answer"


class BookingApiAuthError(BookingApiError):
    """The booking API refused the operator token (401/403)."""

    meaning = "the booking API refused the operator token"
    action = "set BOOKING_OPERATOR_TOKEN to the token the booking API was started with"
    slug = "upstream-auth"
    title = "Upstream rejected our credentials"


class BookingApiUnavailable(BookingApiError, UpstreamUnavailable):
    """The booking API failed or could not be reached on every attempt."""

    meaning = "the booking API failed or could not be reached on every attempt"
    action = "check that it is up at {base_url} (set by BOOKING_API_URL) and rerun"


class BookingApiTimeout(BookingApiUnavailable, UpstreamTimeout):
    """The booking API did not answer within the call's time budget."""

    meaning = "the booking API did not answer within the call's time budget"
    action = "check that it responds at {base_url} (set by BOOKING_API_URL); rerun later"


class BookingApiRateLimited(BookingApiError, RateLimited):
    """The booking API kept answering 429."""


class FeedContractError(BookingApiError):
    """A page that breaks the feed's contract (shape, order, cursor); reading on could skip events."""

    meaning = "the booking API's event feed broke its contract (order or cursor)"
    action = "nothing landed past the last good page; fix the feed and rerun"


PLATFORM_ERRORS = ErrorFamily(
    "booking API", BookingApiUnavailable, BookingApiTimeout, BookingApiRateLimited
)


def platform_error(response: httpx.Response, *, tenant: str, endpoint: str) -> UpstreamError:
    """Map a booking API problem+json answer to a typed error (the token is never in it)."""
    status = response.status_code
    body: Any
    try:
        body = response.json()
    except ValueError:
        body = None
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, str) and detail:
        cls: type[BookingApiError] = BookingApiError
        if status in (401, 403):
            cls = BookingApiAuthError
        elif status == 429:
            return BookingApiRateLimited(
                detail, tenant=tenant, endpoint=endpoint, status=status, code=body.get("type")
            )
        elif status >= 500:
            cls = BookingApiUnavailable
        return cls(detail, tenant=tenant, endpoint=endpoint, status=status, code=body.get("type"))
    generic = tenant_error(response, tenant=tenant, endpoint=endpoint)
    cls = BookingApiUnavailable if status >= 500 else BookingApiError
    return cls(generic.message, tenant=tenant, endpoint=endpoint, status=status)


@dataclass(frozen=True)
class EventPage:
    """One page of the feed as received: raw records (validated by ingestion, which
    quarantines the bad ones) and the cursor that reads on after them."""

    records: list[Any]
    next_cursor: str
    has_more: bool


class BookingEventsClient:
    """Reads the booking event feed page by page, for one tenant or all of them."""

    def __init__(self, http: httpx.Client, *, retry: RetryPolicy | None = None) -> None:
        self._http = http
        self._runner = RequestRunner(
            http,
            tenant="platform",
            upstream="booking API",
            error_mapper=platform_error,
            policy=retry,
            shape_error=FeedContractError,
            errors=PLATFORM_ERRORS,
            facts={"base_url_env": "BOOKING_API_URL", "credentials": "BOOKING_OPERATOR_TOKEN"},
        )

    def __enter__(self) -> BookingEventsClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def iter_pages(
        self,
        after: int = 0,
        *,
        tenant_id: str | None = None,
        page_size: int = 500,
        route: Route = FEED,
        key: str = "events",
    ) -> Iterator[EventPage]:
        """Pages of records with ids after ``after``, in order, until the feed has no more.

        ``route`` and ``key`` name another feed of the same shape (the searches feed:
        ``SEARCHES``, ``"searches"``). A page whose cursor does not move forward, or that
        says there is more while empty, is a broken contract: raised, never looped on.
        """
        if not 1 <= page_size <= MAX_PAGE_SIZE:
            raise ValueError(f"page_size: {page_size} is outside 1..{MAX_PAGE_SIZE}")
        cursor = after
        while True:
            params: dict[str, Any] = {"limit": page_size}
            if cursor:
                params["cursor"] = str(cursor)
            if tenant_id is not None:
                params["tenant_id"] = tenant_id
            body = self._runner.send_json(route, params=params)
            with self._runner.reading(route):
                data = body["data"]
                records, next_cursor, has_more = (
                    data[key],
                    str(data["next_cursor"]),
                    bool(data["has_more"]),
                )
                if not isinstance(records, list):
                    raise TypeError(f"data.{key} is not a list")
            moved = next_cursor.isdigit() and int(next_cursor) > cursor
            if (records and not moved) or (not records and has_more):
                raise FeedContractError(
                    f"page after cursor {cursor} returned {len(records)} {key} with "
                    f"next_cursor {next_cursor!r} and has_more={has_more}",
                    tenant="platform",
                    endpoint=route.label,
                    status=200,
                )
            yield EventPage(records, next_cursor, has_more)
            if not has_more:
                return
            cursor = int(next_cursor)


def build_booking_events_client(
    settings: PlatformSettings,
    *,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
) -> BookingEventsClient:
    """The feed client for the configured booking API, with the operator token as its auth.

    Raises ``ValueError`` when no token is set: without one the feed cannot be read at all.
    """
    token = settings.booking_operator_token
    if token is None:
        raise ValueError("BOOKING_OPERATOR_TOKEN is not set")
    register_secret(token.get_secret_value())
    base_url = settings.booking_api_url.rstrip("/")
    http = build_http_client(
        base_url,
        auth=BearerTokenAuth(token),
        limiter=limiter_for(quota_key("booking-api", base_url), FEED_RATE_LIMIT),
        read_timeout=READ_TIMEOUT_SECONDS,
        transport=transport,
        event_hooks=event_hooks,
    )
    return BookingEventsClient(http, retry=retry)
