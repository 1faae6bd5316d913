"""The Duffel stand-in's HTTP face: Duffel's routes, headers, errors and rate limits on loopback."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response
from isal import isal_zlib
from starlette.exceptions import HTTPException
from starlette.middleware.gzip import GZipMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from sandbox.config import SandboxConfig
from sandbox.duffel.errors import DuffelError, invalid_state, not_found, required, validation
from sandbox.duffel.paging import page_of, parse_page
from sandbox.duffel.render import (
    AIRLINE_OBJECTS,
    BASE62_BYTES,
    airport_object,
    order_bytes,
    to_us,
)
from sandbox.duffel.store import ORDER_CURSOR, DuffelStore, OrderQuery
from sandbox.duffel.webhooks import WebhookHub
from sandbox.faults import (
    DUFFEL_GENERIC,
    DUFFEL_SPECIFIC,
    FaultCatalogue,
    FaultRoute,
    install_fault_control,
    stall_seconds,
)
from sandbox.ratelimit import FixedWindowLimiter
from sandbox.reference import airports

JSON = "application/json"
# Level 1 compresses JSON ~9x at several hundred MB/s; higher levels cost the page rate.
GZIP_LEVEL = 1
GZIP_MINIMUM_BYTES = 1024
_BAD_GATEWAY_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n</body>\r\n</html>\r\n"
)


# Routes the fault switches know by name (sandbox.faults).
FAULT_CATALOGUE = FaultCatalogue(
    tuple(
        FaultRoute(name, method, path)
        for name, method, path in (
            ("offer_request", "POST", "/air/offer_requests"),
            ("offer_request_get", "GET", "/air/offer_requests/{id}"),
            ("offers", "GET", "/air/offers"),
            ("offer", "GET", "/air/offers/{id}"),
            ("order_create", "POST", "/air/orders"),
            ("orders", "GET", "/air/orders"),
            ("order", "GET", "/air/orders/{id}"),
            ("cancellation_create", "POST", "/air/order_cancellations"),
            ("cancellation_confirm", "POST", "/air/order_cancellations/{id}/actions/confirm"),
            ("cancellation", "GET", "/air/order_cancellations/{id}"),
            ("payment", "POST", "/air/payments"),
            ("webhook_create", "POST", "/air/webhooks"),
            ("airlines", "GET", "/air/airlines"),
            ("airports", "GET", "/air/airports"),
        )
    ),
    DUFFEL_GENERIC,
    DUFFEL_SPECIFIC,
)


def _request_id() -> str:
    return os.urandom(20).translate(BASE62_BYTES).decode()


def _json(body: bytes, status: int = 200) -> Response:
    return Response(content=body, status_code=status, media_type=JSON)


def _data_envelope(body: Any, status: int = 200) -> Response:
    return _json(orjson.dumps({"data": body}), status)


class DuffelEdge:
    """What Duffel's edge does before a route runs: request ids, auth, version, limits, mocks.

    Pure ASGI (not ``BaseHTTPMiddleware``) so it adds almost nothing per request.
    """

    def __init__(
        self,
        app: ASGIApp,
        tokens: dict[str, str],
        limiter: FixedWindowLimiter,
        stall_seconds: float,
    ) -> None:
        self.app = app
        self.tokens = tokens
        self.limiter = limiter
        self.stall_seconds = stall_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _request_id()
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        extra = [(b"x-request-id", request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        if scope["path"] == "/health":
            await self.app(scope, receive, send_with_headers)
            return
        headers = dict(scope["headers"])
        token, error = self._authenticate(headers.get(b"authorization"))
        if error is None:
            error = self._check_version(headers.get(b"duffel-version"))
        if error is not None:
            await _send(send_with_headers, error.status, error.body(request_id))
            return
        decision = self.limiter.hit(token)
        extra += [
            (b"ratelimit-limit", str(decision.limit).encode()),
            (b"ratelimit-remaining", str(decision.remaining).encode()),
            (b"ratelimit-reset", formatdate(decision.reset_at, usegmt=True).encode()),
        ]
        if not decision.allowed:
            extra.append((b"retry-after", str(decision.retry_after).encode()))
            error = DuffelError(
                429,
                "rate_limit_error",
                "rate_limit_exceeded",
                "Rate limit exceeded",
                "Too many requests hit the API too quickly. Please retry your request after "
                "the time specified in the `ratelimit-reset` header.",
            )
            await _send(send_with_headers, 429, error.body(request_id))
            return
        mock = headers.get(b"x-mock-error", b"").decode("latin-1").lower()
        if mock == "true":
            await _send(send_with_headers, 500, _internal_error().body(request_id))
            return
        if mock == "bad-gateway":
            await _send(send_with_headers, 502, _BAD_GATEWAY_HTML, b"text/html")
            return
        if mock == "unavailable":
            error = DuffelError(
                503,
                "api_error",
                "service_unavailable",
                "Service unavailable",
                "The service is temporarily unavailable. Please try again later.",
            )
            await _send(send_with_headers, 503, error.body(request_id))
            return
        if mock == "api-timeout":
            await asyncio.sleep(stall_seconds(_State(state), self.stall_seconds))
        state["mock_error"] = mock  # the order-creation modes act inside the route
        state["organisation"] = self.tokens[token]
        await self.app(scope, receive, send_with_headers)

    def _authenticate(self, header: bytes | None) -> tuple[str, DuffelError | None]:
        if header is None:
            return "", _auth_error(
                "missing_authorization_header",
                "Missing authorization header",
                "The 'Authorization' header needs to be set and contain a valid API token.",
            )
        scheme, _, token = header.decode("latin-1").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return "", _auth_error(
                "invalid_authorization_header",
                "Invalid authorization header",
                "The 'Authorization' header must be 'Bearer <your access token>'.",
            )
        token = token.strip()
        if token not in self.tokens:
            return "", _auth_error(
                "access_token_not_found",
                "Access token not found",
                "The access token used is not recognised by our system.",
            )
        return token, None

    @staticmethod
    def _check_version(header: bytes | None) -> DuffelError | None:
        if header is None:
            return DuffelError(
                400,
                "invalid_request_error",
                "missing_version_header",
                "Missing version header",
                "The 'Duffel-Version' header needs to be set to a supported API version (v2).",
            )
        if header != b"v2":
            return DuffelError(
                400,
                "invalid_request_error",
                "unsupported_version",
                "Unsupported version",
                f"Duffel-Version {header.decode('latin-1')!r} is not supported; use v2.",
            )
        return None


class _State:
    """Attribute access to the scope's state dict (what ``request.state`` gives a route)."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)


def _auth_error(code: str, title: str, message: str) -> DuffelError:
    return DuffelError(401, "authentication_error", code, title, message)


def _creation_failed(hub: WebhookHub, org: str, data: dict[str, Any]) -> None:
    """``order.creation_failed`` for an order that was refused, naming what was asked for.

    Duffel does not document this event's object; it carries the selected offers, the
    metadata (so a receiver can find its booking) and the error.
    """
    offers = data.get("selected_offers")
    metadata = data.get("metadata")
    error = _offer_gone()
    obj = {
        "selected_offers": offers if isinstance(offers, list) else [],
        "metadata": metadata if isinstance(metadata, dict) else None,
        "error": {"type": error.type, "code": error.code, "title": error.title},
    }
    key = base64.b64encode(f"failed-{_request_id()}".encode()).decode()
    hub.publish(org, "order.creation_failed", obj, key)


def _offer_gone() -> DuffelError:
    return invalid_state(
        "offer_no_longer_available",
        "Offer no longer available",
        "The selected offer is no longer available; please search again.",
    )


def _internal_error() -> DuffelError:
    return DuffelError(
        500,
        "api_error",
        "internal_server_error",
        "Internal server error",
        "An internal server error occurred. Please try again later.",
    )


async def _send(send: Send, status: int, body: bytes, media_type: bytes = JSON.encode()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", media_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _org(request: Request) -> str:
    return request.state.organisation


async def _body_data(request: Request) -> dict[str, Any]:
    """The ``data`` object of a JSON request body (400 when the envelope is wrong)."""
    try:
        body = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise DuffelError(
            400,
            "invalid_request_error",
            "malformed_data_param",
            "Malformed data",
            "The request body must be valid JSON.",
        ) from None
    data = body.get("data") if isinstance(body, dict) else None
    if not isinstance(data, dict):
        raise DuffelError(
            400,
            "invalid_request_error",
            "missing_data_param",
            "Missing data",
            "The request body must be a JSON object with a 'data' object.",
        )
    return data


def _time_param(params: Any, name: str) -> int | None:
    text = params.get(name)
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise validation(name, f"Field '{name}' must be an ISO 8601 datetime") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return to_us(moment)


def _bool_param(params: Any, name: str, default: bool | None) -> bool | None:
    text = params.get(name)
    if text is None:
        return default
    if text.lower() not in ("true", "false"):
        raise validation(name, f"Field '{name}' must be true or false")
    return text.lower() == "true"


def _list_body(items: list[bytes], meta: dict[str, Any]) -> bytes:
    """``{"data": [...], "meta": ...}`` with one copy of the items (pages run to megabytes)."""
    head, tail = b'{"data":[', b'],"meta":' + orjson.dumps(meta) + b"}"
    if not items:
        return head + tail
    items[0] = head + items[0]
    items[-1] += tail
    return b",".join(items)


def _gzipped_json(body: bytes) -> Response:
    """Gzip with ISA-L: a 1.7 MB orders page takes ~1.4 ms instead of zlib's ~7 ms, which
    is what keeps gzip from halving the orders page rate. (The generic middleware, which
    uses zlib, then leaves the response alone because it is already encoded.)"""
    compressor = isal_zlib.compressobj(GZIP_LEVEL, isal_zlib.DEFLATED, 16 + isal_zlib.MAX_WBITS)
    response = _json(compressor.compress(body) + compressor.flush())
    response.headers["content-encoding"] = "gzip"
    response.headers["vary"] = "Accept-Encoding"
    return response


def create_app(
    store: DuffelStore, config: SandboxConfig, webhooks: WebhookHub | None = None
) -> FastAPI:
    """The Duffel stand-in over ``store``, with ``config``'s tokens, limits and stall time.

    ``webhooks`` delivers the webhook events (one is made from ``config`` when not given;
    whoever owns the app stops it: ``app.state.webhooks.stop()``).
    """
    app = FastAPI(title="Duffel stand-in", docs_url=None, redoc_url=None, openapi_url=None)
    hub = webhooks or WebhookHub(
        max_attempts=config.webhook_max_attempts, backoff_seconds=config.webhook_backoff_seconds
    )
    app.state.webhooks = hub
    airlines = sorted(AIRLINE_OBJECTS.values(), key=lambda a: a["name"])
    airlines_by_id = {a["id"]: a for a in airlines}
    places = sorted((airport_object(code) for code in airports()), key=lambda a: a["name"])
    places_by_id = {a["id"]: a for a in places}

    @app.get("/health")
    async def health() -> Response:
        return _json(b'{"status":"ok"}')

    @app.get("/air/orders")
    async def list_orders(request: Request) -> Response:
        params = request.query_params
        page = parse_page(params, ORDER_CURSOR)
        query = OrderQuery(
            created_after=_time_param(params, "created_at[after]"),
            created_before=_time_param(params, "created_at[before]"),
            booking_reference=params.get("booking_reference"),
            awaiting_payment=_bool_param(params, "awaiting_payment", None),
        )
        result = store.list_orders(_org(request), query, page)
        body = _list_body([order_bytes(row) for row in result.rows], result.meta)
        if "gzip" in request.headers.get("accept-encoding", "") and len(body) >= GZIP_MINIMUM_BYTES:
            return _gzipped_json(body)
        return _json(body)

    @app.get("/air/orders/{order_id}")
    async def get_order(request: Request, order_id: str) -> Response:
        row = store.get_order(_org(request), order_id)
        return _json(b'{"data":' + order_bytes(row) + b"}")

    @app.post("/air/orders")
    async def create_order(request: Request) -> Response:
        mock = getattr(request.state, "mock_error", "")
        org = _org(request)
        data = await _body_data(request)
        if mock == "offer_no_longer_available":
            # A definite failure: Duffel refuses the offer and books nothing.
            _creation_failed(hub, org, data)
            raise _offer_gone()
        row = store.create_order(org, data)
        order = order_bytes(row)
        hub.publish(org, "order.created", order, row["order_id"])
        body = b'{"data":' + order + b"}"
        if mock == "500_after_create":
            # The order exists, but the answer is lost: the caller cannot know the outcome.
            return _json(_internal_error().body(request.state.request_id), 500)
        if mock == "timeout":
            await asyncio.sleep(stall_seconds(request.state, config.order_timeout_stall_seconds))
        return _json(body, 201)

    @app.post("/air/webhooks")
    async def create_webhook(request: Request) -> Response:
        return _data_envelope(hub.register(_org(request), await _body_data(request)), 201)

    @app.get("/air/webhooks")
    async def list_webhooks(request: Request) -> Response:
        found = hub.list_endpoints(_org(request))
        meta = {"limit": len(found), "after": None, "before": None}
        return _json(orjson.dumps({"data": found, "meta": meta}))

    @app.delete("/air/webhooks/{webhook_id}")
    async def delete_webhook(request: Request, webhook_id: str) -> Response:
        hub.delete(_org(request), webhook_id)
        return Response(status_code=204)

    @app.post("/air/webhooks/{webhook_id}/actions/ping")
    async def ping_webhook(request: Request, webhook_id: str) -> Response:
        hub.ping(_org(request), webhook_id)
        return Response(status_code=204)

    @app.post("/air/offer_requests")
    async def create_offer_request(request: Request) -> Response:
        return_offers = _bool_param(request.query_params, "return_offers", True)
        body = store.search(_org(request), await _body_data(request), bool(return_offers))
        return _data_envelope(body, 201)

    @app.get("/air/offer_requests/{request_id}")
    async def get_offer_request(request: Request, request_id: str) -> Response:
        return _data_envelope(store.get_offer_request(_org(request), request_id))

    @app.get("/air/offers")
    async def list_offers(request: Request) -> Response:
        params = request.query_params
        request_id = params.get("offer_request_id")
        if not request_id:
            raise required("offer_request_id")
        page = parse_page(params, "off")
        found, meta = store.list_offers(_org(request), request_id, page, params.get("sort"))
        return _json(_list_body([orjson.dumps(o) for o in found], meta))

    @app.get("/air/offers/{offer_id}")
    async def get_offer(request: Request, offer_id: str) -> Response:
        return _data_envelope(store.get_offer(_org(request), offer_id))

    @app.post("/air/order_cancellations")
    async def create_cancellation(request: Request) -> Response:
        quote = store.quote_cancellation(_org(request), await _body_data(request))
        return _data_envelope(quote, 201)

    @app.post("/air/order_cancellations/{quote_id}/actions/confirm")
    async def confirm_cancellation(request: Request, quote_id: str) -> Response:
        return _data_envelope(store.confirm_cancellation(_org(request), quote_id))

    @app.get("/air/order_cancellations/{quote_id}")
    async def get_cancellation(request: Request, quote_id: str) -> Response:
        return _data_envelope(store.get_cancellation(_org(request), quote_id))

    @app.post("/air/payments")
    async def create_payment(request: Request) -> Response:
        payment = store.pay(_org(request), await _body_data(request))
        return _data_envelope(payment, 201)

    @app.get("/air/airlines")
    async def list_airlines(request: Request) -> Response:
        items, meta = page_of(airlines, parse_page(request.query_params, "arl"), "arl")
        return _json(orjson.dumps({"data": items, "meta": meta}))

    @app.get("/air/airlines/{airline_id}")
    async def get_airline(airline_id: str) -> Response:
        if airline_id not in airlines_by_id:
            raise not_found()
        return _data_envelope(airlines_by_id[airline_id])

    @app.get("/air/airports")
    async def list_airports(request: Request) -> Response:
        items, meta = page_of(places, parse_page(request.query_params, "arp"), "arp")
        return _json(orjson.dumps({"data": items, "meta": meta}))

    @app.get("/air/airports/{airport_id}")
    async def get_airport(airport_id: str) -> Response:
        if airport_id not in places_by_id:
            raise not_found()
        return _data_envelope(places_by_id[airport_id])

    def request_id(request: Request) -> str:
        return getattr(request.state, "request_id", None) or _request_id()

    async def duffel_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, DuffelError)
        return _json(exc.body(request_id(request)), exc.status)

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            error = not_found()
        else:
            error = DuffelError(
                exc.status_code, "invalid_request_error", "bad_request", "Bad request", exc.detail
            )
        return _json(error.body(request_id(request)), error.status)

    async def crash(request: Request, exc: Exception) -> Response:
        # Outside the edge middleware, so the request id header is added here.
        rid = request_id(request)
        response = _json(_internal_error().body(rid), 500)
        response.headers["x-request-id"] = rid
        return response

    handlers: dict[Any, Callable[[Request, Exception], Awaitable[Response]]] = {
        DuffelError: duffel_error,
        HTTPException: http_error,
        Exception: crash,
    }
    for kind, handler in handlers.items():
        app.add_exception_handler(kind, handler)
    tokens = config.duffel_tokens(store.organisations)
    limiter = FixedWindowLimiter(config.limits["duffel"])
    app.add_middleware(
        DuffelEdge, tokens=tokens, limiter=limiter, stall_seconds=config.timeout_stall_seconds
    )
    app.add_middleware(GZipMiddleware, minimum_size=GZIP_MINIMUM_BYTES, compresslevel=GZIP_LEVEL)
    if config.fault_control:
        install_fault_control(app, FAULT_CATALOGUE)
    return app
