"""What the three loyalty stand-ins share: errors, JSON, rate limits, mock errors, logging, listings.

The tenant modules hold only what differs between the tenants (auth, paths, field names,
business rules). Route handlers here are defined inside functions and FastAPI reads their
annotations at runtime, so this module does not postpone annotation evaluation.
"""

import asyncio
import dataclasses
import json
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, TypeVar

import orjson
from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic import BaseModel, ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.config import REFERENCE_RATE_HEADERS, SandboxConfig
from sandbox.faults import (
    LOYALTY_GENERIC,
    LOYALTY_SPECIFIC,
    FaultCatalogue,
    FaultRoute,
    install_fault_control,
    stall_seconds,
)
from sandbox.loyalty.render import InvalidCursor
from sandbox.loyalty.store import (
    InsufficientFunds,
    LoyaltyStore,
    Member,
    Posting,
    RefundRefused,
    UnknownMember,
)
from sandbox.ratelimit import Decision, FixedWindowLimiter
from sandbox.world import CURRENCIES, Currency

log = logging.getLogger("sandbox.loyalty")

Model = TypeVar("Model", bound=BaseModel)
Auth = Callable[[Request], Awaitable[Any]]


class ApiError(Exception):
    """An error answer in the FastAPI shape ``{"detail": ...}``, raised anywhere in a request."""

    def __init__(self, status: int, detail: object) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail


def error(status: int, code: str, message: str, **extra: object) -> ApiError:
    """The reference services' error body: ``{"detail": {"error", "message", ...extra}}``."""
    return ApiError(status, {"error": code, "message": message, **extra})


def json_response(content: object, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status, media_type="application/json")


def money(value: Decimal, currency: Currency) -> int | orjson.Fragment:
    """A wire amount: an integer for stars and points, a 2-decimal JSON number for coins."""
    if currency.places == 0:
        return int(value)
    return orjson.Fragment(format(value.quantize(currency.quantum()), "f"))


def wire_timestamp(moment: datetime) -> str:
    """The reference services' timestamps: naive UTC ISO-8601, e.g. ``2026-03-01T10:15:02.123456``."""
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat()


def new_id(prefix: str, hex_digits: int = 12) -> str:
    return prefix + secrets.token_hex(hex_digits // 2)


@dataclass(frozen=True)
class TenantSpec:
    """The words a tenant's API uses where the three otherwise behave alike."""

    service: str  # tenant id
    title: str
    member_noun: str  # Member | Customer | User: in error codes and messages
    id_field: str  # member_id | customer_id | user_id
    refunded_field: str  # amount_refunded | points_refunded
    refund_prefix: str
    insufficient_code: str
    insufficient_message: str
    current_field: str
    requested_field: str
    simulated_current: Decimal  # the balance X-Mock-Error: insufficient-balance reports

    @property
    def currency(self) -> Currency:
        return CURRENCIES[self.service]

    def not_found(self, member_id: str) -> ApiError:
        noun = self.member_noun
        return error(404, f"{noun.lower()}_not_found", f"{noun} {member_id} not found")

    def insufficient(self, current: Decimal, requested: Decimal) -> ApiError:
        return error(
            400,
            self.insufficient_code,
            self.insufficient_message,
            **{
                self.current_field: money(current, self.currency),
                self.requested_field: money(requested, self.currency),
            },
        )


# --- requests -----------------------------------------------------------------------------


async def read_body(request: Request, model: type[Model]) -> Model:
    """Validate a JSON body, numbers with a fraction parsed as Decimal from their text."""
    try:
        # orjson would turn 12.30 into a float first; the stdlib parser hands over the text.
        data = json.loads(await request.body(), parse_float=Decimal)
    except ValueError as exc:
        raise RequestValidationError(
            [{"type": "json_invalid", "loc": ("body", 0), "msg": "JSON decode error", "input": {}}]
        ) from exc
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False)
        raise RequestValidationError([{**e, "loc": ("body", *e["loc"])} for e in errors]) from exc


def bearer_token(request: Request) -> str:
    """The Bearer credentials, or FastAPI HTTPBearer's 403 answers as the reference gives them."""
    authorization = request.headers.get("authorization")
    if not authorization:
        raise ApiError(403, "Not authenticated")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise ApiError(403, "Invalid authentication credentials")
    return token


def mock_mode(request: Request) -> str | None:
    return request.headers.get("x-mock-error")


async def after_acting(request: Request, config: SandboxConfig, response: Response) -> Response:
    """A money route's answer once it has acted, lost as ``500-after-acting`` (a 500 although
    the money moved) or ``timeout-after-acting`` (the answer stalls past the caller's
    timeout) ask; otherwise the answer itself."""
    mode = mock_mode(request)
    if mode == "500-after-acting":
        raise error(500, "internal_error", "Simulated error for testing")
    if mode == "timeout-after-acting":
        await asyncio.sleep(stall_seconds(request.state, config.timeout_stall_seconds))
    return response


async def simulate_failures(request: Request, config: SandboxConfig) -> None:
    """The X-Mock-Error modes every endpoint honours (the others belong to single endpoints)."""
    mode = mock_mode(request)
    if mode == "true":
        raise error(500, "internal_error", "Simulated error for testing")
    if mode == "auth-failed":
        raise error(401, "unauthorized", "Authentication failed")
    if mode == "api-timeout":
        await asyncio.sleep(stall_seconds(request.state, config.timeout_stall_seconds))


def guarded(auth: Auth, config: SandboxConfig) -> Auth:
    """A dependency: the tenant's auth first, then the simulated failures, like the reference."""

    async def dependency(request: Request) -> Any:
        principal = await auth(request)
        await simulate_failures(request, config)
        return principal

    return dependency


# --- operations ---------------------------------------------------------------------------


def member_or_404(store: LoyaltyStore, spec: TenantSpec, member_id: str) -> Member:
    member = store.member(spec.service, member_id)
    if member is None:
        raise spec.not_found(member_id)
    return member


def debit(
    store: LoyaltyStore,
    spec: TenantSpec,
    member_id: str,
    amount: Decimal,
    **posting: Any,
) -> Posting:
    """Deduct through the store, answering the tenant's 404 and 400 errors."""
    try:
        return store.debit(spec.service, member_id, amount, **posting)
    except UnknownMember:
        raise spec.not_found(member_id) from None
    except InsufficientFunds as exc:
        raise spec.insufficient(exc.balance, amount) from None


class RefundRequest(BaseModel):
    transaction_id: str
    reason: str


async def refund(
    store: LoyaltyStore,
    spec: TenantSpec,
    member_id: str,
    request: Request,
    config: SandboxConfig,
) -> Response:
    """A refund endpoint's whole answer; CoffeeChain's shape with the tenant's field names."""
    body = await read_body(request, RefundRequest)
    refund_id = new_id(spec.refund_prefix)
    try:
        posting = store.refund(
            spec.service, member_id, body.transaction_id, refund_id=refund_id, reason=body.reason
        )
    except UnknownMember:
        raise spec.not_found(member_id) from None
    except RefundRefused as exc:
        status = {"transaction_not_found": 404, "unauthorized": 403}.get(exc.reason, 400)
        raise error(status, exc.reason, exc.message) from None
    answer = json_response(
        {
            "refund_id": refund_id,
            "transaction_id": body.transaction_id,
            spec.id_field: member_id,
            spec.refunded_field: money(posting.amount, spec.currency),
            "new_balance": money(posting.balance, spec.currency),
            "timestamp": wire_timestamp(posting.at),
        }
    )
    return await after_acting(request, config, answer)


# --- the app ------------------------------------------------------------------------------


class ServiceMiddleware:
    """Enforces the service's rate limit, stamps X-RateLimit-* on every answer, logs requests.

    With ``fixed`` (reference mode) nothing is enforced: every answer carries the fixed
    (limit, remaining) the reference service sends, and a reset a minute from now.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        service: str,
        limiter: FixedWindowLimiter,
        log_requests: bool,
        fixed: tuple[int, int] | None = None,
    ) -> None:
        self.app = app
        self.service = service
        self.limiter = limiter
        self.log_requests = log_requests
        self.fixed = fixed
        self._last: Decision | None = None

    def _peek(self) -> Decision:
        """The current window's state without counting a request (for /health)."""
        now = time.time()
        last = self._last
        if last is not None and now < last.reset_at:
            return dataclasses.replace(last, allowed=True)
        limit = self.limiter.limit
        reset_at = (now // limit.window_seconds + 1) * limit.window_seconds
        return Decision(True, limit.requests, limit.requests, reset_at, 0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        if self.fixed is not None:
            limit, remaining = self.fixed
            decision = Decision(True, limit, remaining, math.floor(time.time()) + 60, 0)
        elif scope["path"] == "/health":
            decision = self._peek()
        else:
            decision = self._last = self.limiter.hit()
        headers = [
            (b"x-ratelimit-limit", str(decision.limit).encode()),
            (b"x-ratelimit-remaining", str(decision.remaining).encode()),
            (b"x-ratelimit-reset", str(math.ceil(decision.reset_at)).encode()),
        ]
        status = 500
        try:
            if decision.allowed:

                async def stamped(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message = {**message, "headers": [*message.get("headers", ()), *headers]}
                    await send(message)

                await self.app(scope, receive, stamped)
            else:
                status = 429
                await self._refuse(send, headers, decision)
        finally:
            if self.log_requests:
                log.info(
                    "%s %s %s %s %.1fms",
                    self.service,
                    scope["method"],
                    scope["path"],
                    status,
                    (time.perf_counter() - started) * 1000,
                )

    async def _refuse(
        self, send: Send, headers: list[tuple[bytes, bytes]], decision: Decision
    ) -> None:
        limit = self.limiter.limit
        body = orjson.dumps(
            {
                "detail": {
                    "error": "rate_limit_exceeded",
                    "message": f"Rate limit of {limit.requests} requests per "
                    f"{limit.window_seconds:g} s exceeded",
                    "retry_after": decision.retry_after,
                }
            }
        )
        await send(
            {
                "type": "http.response.start",
                "status": 429,
                "headers": [
                    *headers,
                    (b"retry-after", str(decision.retry_after).encode()),
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _api_error(_: Request, exc: ApiError) -> Response:
    return json_response({"detail": exc.detail}, exc.status)


# Fault routes that name extension endpoints, absent in reference mode.
EXTENSION_ROUTES = frozenset({"ledger", "members"})


def add_fault_control(
    app: FastAPI,
    config: SandboxConfig,
    routes: dict[str, tuple[str, str]],
    extensions: frozenset[str] = EXTENSION_ROUTES,
) -> None:
    """The fault switches (``sandbox.faults``) over ``routes`` (name -> method, path), if enabled.

    In reference mode the ``extensions`` routes do not exist, so no fault can be armed on them.
    """
    if not config.fault_control:
        return
    if config.reference:
        routes = {name: route for name, route in routes.items() if name not in extensions}
    catalogue = FaultCatalogue(
        tuple(FaultRoute(name, method, path) for name, (method, path) in routes.items()),
        LOYALTY_GENERIC,
        _specific_within(routes),
    )
    install_fault_control(app, catalogue)


def _specific_within(routes: dict[str, tuple[str, str]]) -> dict[str, str | tuple[str, ...]]:
    """The route-specific faults restricted to the routes this service has."""
    kept: dict[str, str | tuple[str, ...]] = {}
    for fault, only in LOYALTY_SPECIFIC.items():
        names = (only,) if isinstance(only, str) else only
        present = tuple(name for name in names if name in routes)
        if present:
            kept[fault] = only if isinstance(only, str) else present
    return kept


def create_service_app(spec: TenantSpec, config: SandboxConfig) -> FastAPI:
    """A FastAPI app with the shared error handling, rate limiting, logging and /health."""
    app = FastAPI(title=spec.title, version="1.0.0")
    app.add_exception_handler(ApiError, _api_error)
    app.add_middleware(
        ServiceMiddleware,
        service=spec.service,
        limiter=FixedWindowLimiter(config.limits[spec.service]),
        log_requests=config.log_requests,
        fixed=REFERENCE_RATE_HEADERS[spec.service] if config.reference else None,
    )

    @app.get("/health")
    async def health() -> Response:
        return json_response(
            {
                "status": "healthy",
                "service": f"{spec.service}-mock",
                "timestamp": wire_timestamp(datetime.now(UTC)),
            }
        )

    return app


def _invalid_cursor() -> ApiError:
    return error(400, "invalid_cursor", "Cursor not recognised; page again from the start")


def add_listings(
    app: FastAPI,
    spec: TenantSpec,
    store: LoyaltyStore,
    config: SandboxConfig,
    *,
    feed_path: str,
    members_path: str,
    caller: Auth,
) -> None:
    """The ledger feed and member list extensions, behind the tenant's own auth (not in
    reference mode, where these paths answer FastAPI's 404 like any unknown path)."""
    if config.reference:
        return

    @app.get(feed_path)
    async def ledger_feed(
        _: Annotated[Any, Depends(caller)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        updated_since: datetime | None = None,
        cursor: str | None = None,
    ) -> Response:
        try:
            page = store.ledger_page(
                spec.service, limit=limit, cursor=cursor, updated_since=updated_since
            )
        except InvalidCursor:
            raise _invalid_cursor() from None
        return Response(page, media_type="application/json")

    @app.get(members_path)
    async def member_list(
        _: Annotated[Any, Depends(caller)],
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        cursor: str | None = None,
    ) -> Response:
        try:
            page = store.member_page(spec.service, limit=limit, cursor=cursor)
        except InvalidCursor:
            raise _invalid_cursor() from None
        return Response(page, media_type="application/json")
