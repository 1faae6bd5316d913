"""Fault switches: arm a stand-in to fail its next N calls of a route, as if X-Mock-Error were sent.

A service that calls the stand-ins itself (the booking API) cannot be made to add the
``X-Mock-Error`` header to its own upstream calls, so its tests arm the fault on the
stand-in instead. The control surface exists only when ``SandboxConfig.fault_control`` is
on (tests and the demo turn it on); the reference services have nothing like it.

    POST   /_sandbox/faults  {"route": "deduct", "fault": "insufficient-balance",
                              "times": 1, "stall_seconds": null}     -> 201 the armed fault
    GET    /_sandbox/faults                                          -> 200 what is still armed
    DELETE /_sandbox/faults                                          -> 204 all disarmed

A call "matches" when its method and path are the route's, whatever its credentials: the
fault is taken by that call and applied exactly as the header would be (so an armed fault
on a call refused for its credentials is spent, as a header would be). Faults armed for
one route are taken in the order they were armed; ``route: "*"`` matches every route.
"""

from __future__ import annotations

import re
import threading
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL_PATH = "/_sandbox/faults"
ANY_ROUTE = "*"
MAX_TIMES = 10_000
MOCK_HEADER = b"x-mock-error"
STALL_STATE = "sandbox_stall_seconds"  # scope["state"] key: a per-fault stall override

# The X-Mock-Error values every loyalty route honours, and those only one route honours.
LOYALTY_GENERIC = ("true", "auth-failed", "api-timeout")
LOYALTY_SPECIFIC: dict[str, str | tuple[str, ...]] = {
    "insufficient-balance": "deduct",
    "approval-required": "approval_check",
    "invalid-member": "session",
    # Our additions (not in the reference): the money moves, THEN the answer is lost, so
    # the caller cannot tell whether it happened (what a repeated call must never assume).
    "500-after-acting": ("deduct", "refund"),
    "timeout-after-acting": ("deduct", "refund"),
}
# The faults that act first and fail afterwards (the route's own handler applies them).
AFTER_ACTING = ("500-after-acting", "timeout-after-acting")
DUFFEL_GENERIC = ("true", "bad-gateway", "unavailable", "api-timeout")
DUFFEL_SPECIFIC = {
    "offer_no_longer_available": "order_create",
    "500_after_create": "order_create",
    "timeout": "order_create",
}


@dataclass(frozen=True)
class FaultRoute:
    """A named route a fault can be armed on: an HTTP method and a path template."""

    name: str
    method: str
    template: str  # e.g. "/api/v1/members/{member_id}/deduct"

    def pattern(self) -> re.Pattern[str]:
        return re.compile("^" + re.sub(r"\{[^/}]+\}", "[^/]+", self.template) + "$")


@dataclass(frozen=True)
class FaultCatalogue:
    """What a service can fail: its routes and which faults apply where."""

    routes: tuple[FaultRoute, ...]
    generic: tuple[str, ...]  # faults any route honours
    specific: Mapping[str, str | tuple[str, ...]]  # fault -> the route(s) that honour it

    def routes_of(self, fault: str) -> tuple[str, ...] | None:
        """The routes that honour ``fault``, or None when every route does."""
        only = self.specific.get(fault)
        return (only,) if isinstance(only, str) else only

    def route_names(self) -> list[str]:
        return [route.name for route in self.routes]

    def faults(self) -> list[str]:
        return [*self.generic, *self.specific]


@dataclass
class ArmedFault:
    """One armed fault and how many more matching calls it will fail."""

    route: str
    fault: str
    remaining: int
    stall_seconds: float | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "route": self.route,
            "fault": self.fault,
            "times": self.remaining,
            "stall_seconds": self.stall_seconds,
        }


class FaultRequestError(ValueError):
    """A fault request the control surface refuses; names the field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


class FaultBook:
    """The faults armed on one service; thread-safe (tests arm while the server answers)."""

    def __init__(self, catalogue: FaultCatalogue) -> None:
        self.catalogue = catalogue
        self._patterns = [(r.method, r.pattern(), r.name) for r in catalogue.routes]
        self._lock = threading.Lock()
        self._armed: deque[ArmedFault] = deque()

    def arm(
        self, route: str, fault: str, times: int = 1, stall_seconds: float | None = None
    ) -> ArmedFault:
        """Fail the next ``times`` calls of ``route`` with ``fault``; refuses combinations
        that would do nothing (a fault its route never honours), so a test cannot pass by
        arming a fault that never fires."""
        names = self.catalogue.route_names()
        if route != ANY_ROUTE and route not in names:
            raise FaultRequestError(
                "route", f"unknown route {route!r}; expected one of {', '.join(names)} or '*'"
            )
        if fault not in self.catalogue.faults():
            raise FaultRequestError(
                "fault",
                f"unknown fault {fault!r}; expected one of {', '.join(self.catalogue.faults())}",
            )
        only = self.catalogue.routes_of(fault)
        if only is not None and route not in only:
            where = " or ".join(repr(name) for name in only)
            raise FaultRequestError(
                "route", f"fault {fault!r} applies only to route {where}, not {route!r}"
            )
        if isinstance(times, bool) or not isinstance(times, int) or not 1 <= times <= MAX_TIMES:
            raise FaultRequestError("times", f"times must be an integer from 1 to {MAX_TIMES}")
        if stall_seconds is not None and (
            isinstance(stall_seconds, bool)
            or not isinstance(stall_seconds, int | float)
            or not 0 <= stall_seconds <= 3600
        ):
            raise FaultRequestError(
                "stall_seconds", "stall_seconds must be a number from 0 to 3600"
            )
        armed = ArmedFault(
            route, fault, times, None if stall_seconds is None else float(stall_seconds)
        )
        with self._lock:
            self._armed.append(armed)
        return armed

    def route_of(self, method: str, path: str) -> str | None:
        """The name of the route a call is, or None when no named route matches."""
        for route_method, pattern, name in self._patterns:
            if method == route_method and pattern.match(path):
                return name
        return None

    def take(self, route: str) -> ArmedFault | None:
        """Spend one call of the first fault armed for ``route`` (or ``*``); None if none is."""
        with self._lock:
            for armed in self._armed:
                if armed.route in (route, ANY_ROUTE):
                    armed.remaining -= 1
                    if armed.remaining == 0:
                        self._armed.remove(armed)
                    return ArmedFault(armed.route, armed.fault, 1, armed.stall_seconds)
        return None

    def armed(self) -> list[ArmedFault]:
        with self._lock:
            return [ArmedFault(a.route, a.fault, a.remaining, a.stall_seconds) for a in self._armed]

    def clear(self) -> None:
        with self._lock:
            self._armed.clear()


def stall_seconds(scope_state: Any, default: float) -> float:
    """How long an ``api-timeout`` (``timeout``, ``timeout-after-acting``) stalls: the armed fault's own, else ``default``."""
    value = getattr(scope_state, STALL_STATE, None)
    return default if value is None else float(value)


class FaultSwitch:
    """ASGI middleware: serves the control surface and turns an armed fault into the header."""

    def __init__(self, app: ASGIApp, book: FaultBook) -> None:
        self.app = app
        self.book = book

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["path"] == CONTROL_PATH:
            await self._control(scope, receive, send)
            return
        route = self.book.route_of(scope["method"], scope["path"])
        armed = self.book.take(route) if route is not None else None
        if armed is not None:
            headers = [(k, v) for k, v in scope["headers"] if k.lower() != MOCK_HEADER]
            headers.append((MOCK_HEADER, armed.fault.encode()))
            scope = {**scope, "headers": headers}
            if armed.stall_seconds is not None:
                scope.setdefault("state", {})[STALL_STATE] = armed.stall_seconds
        await self.app(scope, receive, send)

    async def _control(self, scope: Scope, receive: Receive, send: Send) -> None:
        method = scope["method"]
        if method == "GET":
            await _reply(send, 200, {"data": [a.as_json() for a in self.book.armed()]})
        elif method == "DELETE":
            self.book.clear()
            await _reply(send, 204, None)
        elif method == "POST":
            try:
                body = orjson.loads(await _read_body(receive))
                if not isinstance(body, dict):
                    raise FaultRequestError("body", "the body must be a JSON object")
                for name in ("route", "fault"):
                    if not isinstance(body.get(name), str):
                        raise FaultRequestError(name, f"{name} is required (a string)")
                armed = self.book.arm(
                    body["route"],
                    body["fault"],
                    body.get("times", 1),
                    body.get("stall_seconds"),
                )
            except orjson.JSONDecodeError:
                await _reply(send, 400, _problem("body", "the body must be JSON"))
            except FaultRequestError as exc:
                await _reply(send, 400, _problem(exc.field, exc.message))
            else:
                await _reply(send, 201, {"data": armed.as_json()})
        else:
            await _reply(send, 405, _problem("method", f"{method} is not allowed here"))


def _problem(field: str, message: str) -> dict[str, Any]:
    return {"error": "invalid_fault", "field": field, "message": message}


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def _reply(send: Send, status: int, body: object) -> None:
    content = b"" if body is None else orjson.dumps(body)
    headers = [(b"content-length", str(len(content)).encode())]
    if body is not None:
        headers.append((b"content-type", b"application/json"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": content})


def install_fault_control(app: Any, catalogue: FaultCatalogue) -> FaultBook:
    """Put the fault switch outermost on ``app`` (a Starlette/FastAPI app) and return its book."""
    book = FaultBook(catalogue)
    app.add_middleware(FaultSwitch, book=book)
    app.state.faults = book
    return book


def inject_fault(
    base_url: str,
    route: str,
    fault: str,
    times: int = 1,
    *,
    stall_seconds: float | None = None,
    timeout: float = 5.0,
) -> dict[str, Any]:
    """Arm a fault on the stand-in at ``base_url`` over HTTP; raises ``ValueError`` if refused."""
    body: dict[str, Any] = {"route": route, "fault": fault, "times": times}
    if stall_seconds is not None:
        body["stall_seconds"] = stall_seconds
    response = httpx.post(base_url.rstrip("/") + CONTROL_PATH, json=body, timeout=timeout)
    if response.status_code == 201:
        return response.json()["data"]
    if response.status_code == 400:
        raise ValueError(f"fault refused by {base_url}: {response.json()['message']}")
    raise _no_control(base_url, response)


def _no_control(base_url: str, response: httpx.Response) -> RuntimeError:
    return RuntimeError(
        f"{base_url} has no fault control (answered {response.status_code}); "
        "start the stand-ins with fault_control on (--fault-control)"
    )


def clear_faults(base_url: str, *, timeout: float = 5.0) -> None:
    """Disarm every fault on the stand-in at ``base_url``."""
    response = httpx.delete(base_url.rstrip("/") + CONTROL_PATH, timeout=timeout)
    if response.status_code != 204:
        raise _no_control(base_url, response)


def armed_faults(base_url: str, *, timeout: float = 5.0) -> list[dict[str, Any]]:
    """The faults still armed on the stand-in at ``base_url`` (to check they were all used)."""
    response = httpx.get(base_url.rstrip("/") + CONTROL_PATH, timeout=timeout)
    if response.status_code != 200:
        raise _no_control(base_url, response)
    return response.json()["data"]
