"""The HTTP API: thin routes (parse, call the service, render), problem details for every error.

A middleware gives every request a trace id, counts it against its tenant's inbound rate
limit (in the store, so every worker process shares the count), adds the rate-limit
headers and logs one structured line. No credential is ever logged or echoed.

Annotations here are evaluated eagerly (no ``from __future__ import annotations``): FastAPI
must see the dependency aliases defined inside ``create_app``.
"""

import contextlib
import datetime as dt
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Annotated, Any

import structlog
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import SecretStr
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from booking.auth import MemberAuthenticator, check_operator
from booking.config import BookingSettings, get_booking_settings
from booking.domain import Status
from booking.errors import Problem, validation
from booking.health import HealthChecker
from booking.logs import configure_logging
from booking.requeststats import BUCKET_SECONDS, RequestStats, summary
from booking.schemas import (
    ApprovalDecision,
    BookingList,
    BookingRequest,
    BookingView,
    CancelRequest,
    CancelResult,
    Data,
    EventPage,
    Health,
    OperatorBookings,
    RefundAction,
    RequestStatsPage,
    SearchPage,
    SearchRequest,
    SearchResult,
    WebhookAck,
    WebhookDeliveries,
    WebhookRegistration,
    WebhookSubscription,
)
from booking.service import BookingService, Member, request_hash
from booking.store.uow import Store
from booking.upstream import RequestTiming, Upstreams, request_timing, timed
from booking.webhooks import WebhookDispatcher
from clients.duffel.webhooks import (
    SIGNATURE_HEADER,
    WebhookSignatureError,
    parse_webhook_event,
    verify_webhook_signature,
)
from clients.loyalty.member_auth import verify_member_credential
from tenants.registry import TenantConfig
from tenants.settings import env_value, get_registry

log = structlog.get_logger("booking.api")

PROBLEM_JSON = "application/problem+json"
# Requests that name no tenant (health, operators) share one generous limit.
OPERATOR_LIMIT = 600
SKIP_MIGRATIONS_ENV = "BOOKING_SKIP_MIGRATIONS"
# Bounds that keep query values inside the store's 64-bit integers.
MAX_OFFSET = 1_000_000_000
MAX_EVENT_ID = 2**63 - 1


PROBLEM_SCHEMA: dict[str, Any] = {
    "content": {
        PROBLEM_JSON: {
            "schema": {
                "type": "object",
                "required": ["type", "title", "status", "detail", "instance", "trace_id"],
                "properties": {
                    "type": {"type": "string", "format": "uri"},
                    "title": {"type": "string"},
                    "status": {"type": "integer"},
                    "detail": {"type": "string"},
                    "instance": {"type": "string"},
                    "trace_id": {"type": "string"},
                    "errors": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "field": {"type": "string"},
                                "message": {"type": "string"},
                            },
                        },
                    },
                    "balance": {
                        "type": "object",
                        "properties": {
                            "current": {"type": "string", "nullable": True},
                            "required": {"type": "string"},
                            "currency": {"type": "string"},
                        },
                    },
                    "retry_after": {"type": "integer"},
                    "booking_id": {"type": "string"},
                    "booking_status": {"type": "string"},
                },
            }
        }
    },
    "description": "Problem details (RFC 9457)",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: PROBLEM_SCHEMA for code in codes}


def _problem_response(request: Request, problem: Problem) -> JSONResponse:
    trace_id = getattr(request.state, "trace_id", uuid.uuid4().hex)
    headers = {}
    if problem.status == 429 or "retry_after" in problem.extensions:
        headers["Retry-After"] = str(problem.extensions.get("retry_after", 1))
    return JSONResponse(
        problem.body(request.url.path, trace_id),
        status_code=problem.status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


def duffel_webhook_secret(tenant: TenantConfig) -> SecretStr | None:
    """The secret of the tenant's Duffel webhook, from ``<TENANT>_DUFFEL_WEBHOOK_SECRET``."""
    value = env_value(f"{tenant.id.upper()}_DUFFEL_WEBHOOK_SECRET")
    return SecretStr(value) if value else None


def _after(cursor: str | None) -> int:
    """The id a feed's ``cursor`` stands for (0 = from the start); 422 for one it never issued."""
    if not cursor:
        return 0
    if not cursor.isdigit() or int(cursor) > MAX_EVENT_ID:
        raise Problem(
            422,
            "validation-error",
            "cursor: not a cursor this feed issued",
            errors=[{"field": "cursor", "message": "not a cursor this feed issued"}],
        )
    return int(cursor)


def _field(location: tuple[Any, ...]) -> str:
    parts = [str(p) for p in location if p not in ("body", "query", "path", "header")]
    text = ""
    for part in parts:
        text += f"[{part}]" if part.isdigit() else (f".{part}" if text else part)
    return text or "body"


def _route_template(app: FastAPI, request: Request) -> str:
    """The route's template, never the raw path (ids in paths would make a bucket each); a
    request refused before routing (a 429) is matched here."""
    route = request.scope.get("route")
    if route is None:
        route = next(
            (r for r in app.router.routes if r.matches(request.scope)[0] == Match.FULL), None
        )
    return getattr(route, "path", None) or "(no route)"


def create_app(
    settings: BookingSettings | None = None,
    *,
    store: Store | None = None,
    upstreams: Upstreams | None = None,
    registry: dict[str, TenantConfig] | None = None,
) -> FastAPI:
    """The booking API over one store; migrations run on start unless the parent ran them."""
    settings = settings or get_booking_settings()
    configure_logging()
    store = store or Store(settings.url(), run_migrations=not os.environ.get(SKIP_MIGRATIONS_ENV))
    upstreams = upstreams or Upstreams()
    registry = registry if registry is not None else get_registry()
    service = BookingService(store, upstreams, registry, settings)
    # The tenant's check of a member credential is an upstream call like any other.
    authenticator = MemberAuthenticator(
        settings.credential_cache_seconds, verify=timed(verify_member_credential)
    )
    health = HealthChecker(store, registry)
    dispatcher = WebhookDispatcher(store, backoff_seconds=settings.webhook_backoff_seconds)
    stats = RequestStats()
    stop = threading.Event()

    def flush_stats() -> None:
        store.save_request_stats(stats.drain())

    def every_interval(name: str, action: Callable[[], object]) -> None:
        # Until stopped; a pass that fails (a store or upstream outage) is logged, and the
        # loop goes on: unfinished sagas stay owed, and so do webhook deliveries.
        while True:
            try:
                action()
            except Exception:
                log.exception(f"{name} pass failed")
            if stop.wait(settings.reconcile_interval_seconds):
                return

    # Two loops: a delivery can wait many seconds on a tenant's endpoint, and sagas to resume
    # (a crash, an unknown outcome) must not wait behind it.
    loops = {
        "reconciler": service.reconcile_once,
        "webhook": dispatcher.run_once,
        "request-stats": flush_stats,
    }

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        threads = []
        if settings.background_reconciler:
            threads = [
                threading.Thread(
                    target=every_interval, args=loop, name=f"booking-{loop[0]}", daemon=True
                )
                for loop in loops.items()
            ]
            for thread in threads:
                thread.start()
        yield
        stop.set()
        for thread in threads:
            thread.join(10)
        try:
            flush_stats()
        except Exception:  # a store gone at shutdown loses only these counts
            log.exception("request stats not flushed at shutdown")
        upstreams.close()
        dispatcher.close()

    app = FastAPI(
        title="Loyalty flights booking API",
        version="1.0.0",
        description=(
            "Search and book flights with loyalty currency on behalf of a tenant's members. "
            "Name the tenant with X-Tenant-ID and present the member's credential in the "
            "tenant's own scheme: CoffeeChain X-CC-API-Key + X-CC-Member-ID; TelcoCorp "
            "Authorization: Bearer <OAuth token> + X-TC-Customer-ID; FintechApp "
            "Authorization: Bearer <session JWT> + X-FA-User-ID. Money amounts are exact "
            "decimal strings. Every error is application/problem+json (RFC 9457)."
        ),
        lifespan=lifespan,
    )
    app.state.service = service
    app.state.store = store

    @app.middleware("http")
    async def frame(request: Request, call_next: Any) -> Any:
        request.state.trace_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
        started = time.monotonic()
        timing = RequestTiming()
        timing_token = request_timing.set(timing)
        tenant_id = request.headers.get("X-Tenant-ID")
        tenant = registry.get(tenant_id or "")
        if tenant is not None and not request.url.path.startswith("/api/v1/admin"):
            key, limit, window = (
                f"tenant:{tenant.id}",
                tenant.rate_limit.requests,
                tenant.rate_limit.window_seconds,
            )
        else:
            key, limit, window = "operator", OPERATOR_LIMIT, 60.0
        try:
            # In a thread: a write transaction on the event loop would stall every request.
            count, reset = await run_in_threadpool(store.hit, key, window)
        except Exception:  # the store is down: answer, but say so in the log and the body
            log.exception("rate-limit counter unavailable", trace_id=request.state.trace_id)
            count, reset = 0, int(time.time() + window)
        remaining = max(0, limit - count)
        try:
            if count > limit:
                retry = max(1, int(reset - time.time()))
                response = _problem_response(
                    request,
                    Problem(
                        429,
                        "rate-limit",
                        f"More than {limit} requests in {window:g} s; retry after {retry} s.",
                        retry_after=retry,
                    ),
                )
            else:
                response = await call_next(request)
        except Exception:  # never a stack trace to the caller; the log has it, by trace id
            log.exception("unhandled error", trace_id=request.state.trace_id)
            response = _problem_response(
                request,
                Problem(500, "internal-error", "An internal error occurred; quote the trace_id."),
            )
        response.headers["X-RateLimit-Limit"] = str(limit)
        response.headers["X-RateLimit-Remaining"] = str(remaining)
        response.headers["X-RateLimit-Reset"] = str(reset)
        response.headers["X-Trace-ID"] = request.state.trace_id
        request_timing.reset(timing_token)
        elapsed_ms = (time.monotonic() - started) * 1000
        # How much of this request was the API itself, and how much its upstreams.
        response.headers["Server-Timing"] = (
            f"app;dur={elapsed_ms:.1f}, upstream;dur={timing.upstream_seconds * 1000:.1f}"
        )
        template = _route_template(app, request)
        stats.record(
            tenant.id if tenant else None,
            f"{request.method} {template}",
            response.status_code,
            elapsed_ms,
            time.time(),
        )
        log.info(
            "request",
            method=request.method,
            route=template,
            status=response.status_code,
            latency_ms=round(elapsed_ms, 1),
            upstream_ms=round(timing.upstream_seconds * 1000, 1),
            tenant=tenant.id if tenant else None,
            trace_id=request.state.trace_id,
        )
        return response

    @app.exception_handler(Problem)
    async def on_problem(request: Request, problem: Problem) -> JSONResponse:
        return _problem_response(request, problem)

    @app.exception_handler(RequestValidationError)
    async def on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"field": _field(tuple(e["loc"])), "message": e["msg"]} for e in exc.errors()]
        detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return _problem_response(request, Problem(422, "validation-error", detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = {404: "not-found", 405: "method-not-allowed", 401: "unauthorized"}.get(
            exc.status_code, "http-error"
        )
        return _problem_response(request, Problem(exc.status_code, slug, str(exc.detail)))

    def member(
        request: Request,
        x_tenant_id: Annotated[str | None, Header(description="the tenant's id")] = None,
    ) -> Member:
        if not x_tenant_id:
            raise Problem(401, "unauthorized", "Name the tenant with the X-Tenant-ID header.")
        tenant = service.tenant(x_tenant_id)
        return authenticator.authenticate(tenant, request.headers)

    def operator(
        authorization: Annotated[str | None, Header(description="Bearer <operator token>")] = None,
    ) -> None:
        check_operator(authorization, settings.operator_token)

    MemberDep = Annotated[Member, Depends(member)]
    IdempotencyKey = Annotated[
        str | None,
        Header(alias="Idempotency-Key", description="repeat the same key to retry safely"),
    ]
    member_errors = _errors(400, 401, 404, 409, 410, 422, 429, 500, 502, 503)

    @app.post(
        "/api/v1/flights/search",
        responses={200: {"model": Data[SearchResult]}, **member_errors},
    )
    def search(body: SearchRequest, who: MemberDep) -> dict[str, Any]:
        """Offers from Duffel, priced in the tenant's loyalty currency."""
        return {"data": service.search(who, body)}

    @app.post(
        "/api/v1/bookings",
        status_code=201,
        responses={
            201: {"model": Data[BookingView], "description": "booked and confirmed"},
            202: {
                "model": Data[BookingView],
                "description": "pending_approval, or accepted while its outcome settles",
            },
            **member_errors,
            402: PROBLEM_SCHEMA,
        },
    )
    def book(
        body: BookingRequest, who: MemberDep, idempotency_key: IdempotencyKey = None
    ) -> JSONResponse:
        """Book a searched flight with loyalty currency (charge, then order)."""
        fingerprint = request_hash("POST", "/api/v1/bookings", body.model_dump(mode="json"))
        answer = service.book(who, body, idempotency_key or "", fingerprint)
        return JSONResponse({"data": answer.data}, status_code=answer.status)

    @app.get(
        "/api/v1/bookings/{booking_id}",
        responses={200: {"model": Data[BookingView]}, **member_errors},
    )
    def get_booking(booking_id: str, who: MemberDep) -> dict[str, Any]:
        """One of the member's bookings, with its status history."""
        return {"data": service.get(who, booking_id)}

    @app.get("/api/v1/bookings", responses={200: {"model": Data[BookingList]}, **member_errors})
    def list_bookings(
        who: MemberDep,
        status: Annotated[Status | None, Query()] = None,
        from_date: Annotated[dt.date | None, Query()] = None,
        to_date: Annotated[dt.date | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=100)] = 20,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> dict[str, Any]:
        """The member's bookings, newest first."""
        return {
            "data": service.list(
                who,
                status=status.value if status else None,
                from_date=from_date,
                to_date=to_date,
                limit=limit,
                offset=offset,
            )
        }

    @app.post(
        "/api/v1/bookings/{booking_id}/cancel",
        responses={200: {"model": Data[CancelResult]}, **member_errors},
    )
    def cancel(
        booking_id: str,
        body: CancelRequest,
        who: MemberDep,
        idempotency_key: IdempotencyKey = None,
    ) -> JSONResponse:
        """Cancel at Duffel, then refund the loyalty charge."""
        path = f"/api/v1/bookings/{booking_id}/cancel"
        fingerprint = request_hash("POST", path, body.model_dump(mode="json"))
        answer = service.cancel(who, booking_id, body, idempotency_key or "", fingerprint)
        return JSONResponse({"data": answer.data}, status_code=answer.status)

    @app.get(
        "/api/v1/health",
        responses={200: {"model": Data[Health]}, 503: {"model": Data[Health]}},
    )
    def get_health() -> JSONResponse:
        """Store, Duffel and each tenant API; 503 when bookings cannot be taken."""
        report = health.check()
        return JSONResponse({"data": report}, status_code=200 if report["can_book"] else 503)

    @app.post(
        "/api/v1/webhooks/duffel/{tenant_id}",
        responses={200: {"model": Data[WebhookAck]}, **_errors(401, 404, 422, 429, 500, 503)},
        openapi_extra={"requestBody": {"content": {"application/json": {"schema": {}}}}},
    )
    async def duffel_webhook(tenant_id: str, request: Request) -> dict[str, Any]:
        """Duffel's signed events (order.created, order.creation_failed, ...), acted on once."""
        tenant = registry.get(tenant_id)
        secret = duffel_webhook_secret(tenant) if tenant is not None else None
        if tenant is None or secret is None:
            raise Problem(404, "not-found", "No Duffel webhook endpoint for this tenant.")
        body = await request.body()
        try:
            verify_webhook_signature(
                secret.get_secret_value(), request.headers.get(SIGNATURE_HEADER), body
            )
        except WebhookSignatureError as exc:
            raise Problem(401, "unauthorized", f"Webhook signature refused: {exc}") from exc
        try:
            event = parse_webhook_event(body)
        except ValueError as exc:
            raise validation("body", "not a Duffel webhook event") from exc
        result = await run_in_threadpool(service.duffel_event, tenant, event)
        return {"data": result}

    admin_errors = _errors(401, 404, 409, 422, 429, 500, 502, 503)

    @app.post(
        "/api/v1/admin/approvals/{booking_id}",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[BookingView]}, **admin_errors},
    )
    def decide(booking_id: str, body: ApprovalDecision) -> dict[str, Any]:
        """An operator approves (re-priced, then charged and ordered) or rejects a booking."""
        return {"data": service.decide(booking_id, body)}

    @app.get(
        "/api/v1/admin/events",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[EventPage]}, **admin_errors},
    )
    def events(
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        tenant_id: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        """Booking events after ``cursor``, in order (ids follow commit order)."""
        return {"data": service.events(_after(cursor), limit, tenant_id)}

    @app.get(
        "/api/v1/admin/searches",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[SearchPage]}, **admin_errors},
    )
    def searches(
        cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        tenant_id: Annotated[str | None, Query()] = None,
    ) -> dict[str, Any]:
        """Answered flight searches after ``cursor``, in order (ids follow commit order)."""
        return {"data": service.searches(_after(cursor), limit, tenant_id)}

    @app.get(
        "/api/v1/admin/bookings",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[OperatorBookings]}, **admin_errors},
    )
    def operator_bookings(
        status: Annotated[Status, Query()] = Status.REFUND_PENDING,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        """Bookings in one state (e.g. refunds owed, unresolved reconciliations) for operators."""
        return {"data": service.operator_bookings(status.value, limit)}

    @app.post(
        "/api/v1/admin/bookings/{booking_id}/refund",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[BookingView]}, **admin_errors},
    )
    def settle_refund(booking_id: str, body: RefundAction) -> dict[str, Any]:
        """An operator settles an owed refund (e.g. one whose outcome is unknown): ``retry``
        sends it to the tenant once now; ``mark_refunded`` records that the tenant paid it
        (nothing is sent). Either is an event in the feed with the operator as its actor."""
        return {"data": service.settle_refund(booking_id, body)}

    @app.put(
        "/api/v1/admin/webhooks/{tenant_id}",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[WebhookSubscription]}, **admin_errors},
    )
    def register_webhook(tenant_id: str, body: WebhookRegistration) -> dict[str, Any]:
        """Register the URL a tenant receives booking.confirmed/cancelled/failed at."""
        if tenant_id not in registry:
            raise Problem(404, "not-found", "No such tenant.")
        return {"data": dispatcher.register(tenant_id, body.url)}

    @app.get(
        "/api/v1/admin/webhooks/deliveries",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[WebhookDeliveries]}, **admin_errors},
    )
    def webhook_deliveries(
        status: Annotated[str | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> dict[str, Any]:
        """Webhook deliveries (e.g. ``failed`` ones) for operators."""
        return {"data": {"deliveries": dispatcher.deliveries(status, limit)}}

    @app.get(
        "/api/v1/admin/request-stats",
        dependencies=[Depends(operator)],
        responses={200: {"model": Data[RequestStatsPage]}, **admin_errors},
    )
    def request_stats(
        minutes: Annotated[int, Query(ge=1, le=7 * 24 * 60, description="window length")] = 60,
    ) -> dict[str, Any]:
        """Requests, 4xx, 5xx, 429s and latency per tenant and route over the last minutes
        (every worker's figures up to its last flush, this one's up to now)."""
        flush_stats()
        start = int(time.time() // BUCKET_SECONDS * BUCKET_SECONDS) - (minutes - 1) * 60
        since = dt.datetime.fromtimestamp(start, dt.UTC)
        return {"data": summary(store.request_stats(start), since)}

    return app
