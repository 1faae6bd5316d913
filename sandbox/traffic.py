"""Live traffic: simulated members searching and booking through the booking API over HTTP.

Each member calls the API as their tenant's app would, with their own credentials in the
tenant's scheme (CoffeeChain's API key, a TelcoCorp OAuth token, the member's own FintechApp
session JWT), obtained from the tenant's API like any app does. Every tick is one member
booking a flight; around them, other members search and leave (abandoned searches), some
ask for a cabin their tenant does not allow, some cannot pay, some cancel later, and
bookings over a tenant's approval threshold wait for an operator, who approves or rejects
them after a delay through the admin route with the operator token. Nothing is written into
the stand-ins' stores: every record comes from the booking API's own calls.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import heapq
import itertools
import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal
from typing import Any

import httpx
import numpy as np
import polars as pl
from pydantic import SecretStr

from clients.errors import UpstreamError
from clients.loyalty.member_auth import member_header
from sandbox.world import TENANTS
from tenants.auth import ApiKeyAuth, JwtSession, OAuth2ClientCredentials
from tenants.registry import (
    ApiKeyConfig,
    JwtSessionConfig,
    OAuthClientCredentialsConfig,
    TenantConfig,
)
from tenants.settings import env_value, tenant_base_url

log = logging.getLogger("sandbox.traffic")

# Routes the members search; the Duffel stand-in prices any pair of airports.
ROUTES = (
    ("LHR", "JFK"),
    ("JFK", "LAX"),
    ("SFO", "NRT"),
    ("CDG", "DXB"),
    ("SIN", "SYD"),
    ("FRA", "ORD"),
    ("MAD", "MEX"),
    ("AMS", "BCN"),
)
# One deck of ten ticks, shuffled each time: what the booking member of each tick does.
DECK = ("book",) * 6 + ("book_then_cancel",) * 2 + ("needs_approval", "overspend")
# Of those ten ticks, how many also see another member search and leave, and how many see a
# member ask for a cabin their tenant does not allow.
ABANDONED_PER_DECK = 3
CABIN_REFUSED_PER_DECK = 1
APPROVE_SHARE = 0.75
RETRY_FOLLOW_UP_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class TrafficMember:
    """A member the traffic may act for, with the balance they were seeded with."""

    tenant_id: str
    member_id: str
    balance: Decimal


def members_from_frame(frame: pl.DataFrame) -> list[TrafficMember]:
    """The active members of a members table (the generated history's or the seeded ones)."""
    rows = frame.filter(pl.col("status") == "active").select("tenant_id", "member_id", "balance")
    return [TrafficMember(t, m, Decimal(b)) for t, m, b in rows.iter_rows()]


class MemberApps:
    """What each tenant's app presents to the booking API on a member's behalf.

    ``lookup`` reads the tenant's app credentials (the variables its YAML names; by default
    the environment and ``.env``); ``urls`` overrides where each tenant's API answers.
    """

    MAX_SESSIONS = 1024

    def __init__(
        self,
        registry: Mapping[str, TenantConfig],
        *,
        urls: Mapping[str, str] | None = None,
        lookup: Callable[[str], str | None] = env_value,
    ) -> None:
        self.registry = registry
        self._urls = dict(urls or {})
        self._lookup = lookup
        self._shared: dict[str, httpx.Auth] = {}
        self._sessions: dict[tuple[str, str], httpx.Auth] = {}
        self._lock = threading.Lock()

    def _secret(self, name: str, tenant: TenantConfig) -> SecretStr:
        value = self._lookup(name)
        if not value:
            raise RuntimeError(
                f"tenant {tenant.id!r}: {name} is not set; the app has no credential"
            )
        return SecretStr(value)

    def _base_url(self, tenant: TenantConfig) -> str:
        return (self._urls.get(tenant.id) or tenant_base_url(tenant)).rstrip("/")

    def auth(self, tenant: TenantConfig, member_id: str) -> httpx.Auth:
        """The member's credential as an httpx auth (tokens fetched from the tenant, cached)."""
        config = tenant.auth
        with self._lock:
            if isinstance(config, JwtSessionConfig):
                # A FintechApp session belongs to one member on one device.
                key = (tenant.id, member_id)
                if key not in self._sessions:
                    if len(self._sessions) >= self.MAX_SESSIONS:
                        self._sessions.pop(next(iter(self._sessions)))
                    self._sessions[key] = JwtSession(
                        tenant_id=tenant.id,
                        token_url=self._base_url(tenant) + config.session_path,
                        principal_id=member_id,
                        device_id=f"app-{member_id}",
                    )
                return self._sessions[key]
            if tenant.id not in self._shared:
                self._shared[tenant.id] = self._app_auth(tenant)
            return self._shared[tenant.id]

    def _app_auth(self, tenant: TenantConfig) -> httpx.Auth:
        config = tenant.auth
        if isinstance(config, ApiKeyConfig):
            return ApiKeyAuth(config.header, self._secret(config.key_env, tenant))
        if isinstance(config, OAuthClientCredentialsConfig):
            return OAuth2ClientCredentials(
                tenant_id=tenant.id,
                token_url=self._base_url(tenant) + config.token_path,
                client_id=self._secret(config.client_id_env, tenant).get_secret_value(),
                client_secret=self._secret(config.client_secret_env, tenant),
            )
        raise ValueError(f"tenant {tenant.id!r}: no member app for auth kind {config.kind!r}")

    def headers(self, tenant: TenantConfig, member_id: str) -> dict[str, str]:
        return {"X-Tenant-ID": tenant.id, member_header(tenant): member_id}


@dataclasses.dataclass(order=True)
class _FollowUp:
    due: float
    order: int
    action: Callable[[], str] = dataclasses.field(compare=False)


class Traffic:
    """Simulated members using the booking API; ``tick`` is one member's booking.

    ``clock`` and the delays are injectable: follow-ups (an operator's decision, a
    cancellation) are due ``delay`` seconds of ``clock`` after the booking they follow, and
    ``run_due`` performs those whose time has come.
    """

    def __init__(
        self,
        api_url: str,
        operator_token: SecretStr,
        members: Iterable[TrafficMember],
        registry: Mapping[str, TenantConfig],
        *,
        apps: MemberApps | None = None,
        seed: int = 0,
        approval_delay: tuple[float, float] = (20.0, 120.0),
        cancel_delay: tuple[float, float] = (30.0, 600.0),
        clock: Callable[[], float] = time.monotonic,
        today: Callable[[], dt.date] = lambda: dt.datetime.now(dt.UTC).date(),
        operator: str = "traffic",
        timeout: float = 150.0,
    ) -> None:
        self.registry = registry
        self.apps = apps or MemberApps(registry)
        by_tenant: dict[str, list[TrafficMember]] = {}
        for member in members:
            if member.tenant_id in registry:
                by_tenant.setdefault(member.tenant_id, []).append(member)
        if not by_tenant:
            raise ValueError("no members of any registered tenant to act for")
        self.members = by_tenant
        self.tenants = sorted(by_tenant)
        self._rng = np.random.default_rng(seed)
        self.approval_delay = approval_delay
        self.cancel_delay = cancel_delay
        self.clock = clock
        self.today = today
        self.operator = operator
        self._operator_headers = {"Authorization": f"Bearer {operator_token.get_secret_value()}"}
        # The API's own 150 s budget covers an order that times out upstream and is reconciled.
        self.http = httpx.Client(base_url=api_url.rstrip("/"), timeout=timeout)
        self.api_url = api_url
        self.outcomes: Counter[str] = Counter()
        self.ticks = 0
        self.searched = 0  # searches the API answered
        self.booked = 0  # booking requests that made a booking (confirmed, pending or failed)
        self._deck: list[tuple[str, bool, bool]] = []
        self._due: list[_FollowUp] = []
        self._order = itertools.count()
        self._lock = threading.Lock()

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Traffic:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the plan ------------------------------------------------------------------------

    def _next_in_deck(self) -> tuple[str, bool, bool]:
        if not self._deck:
            intents = list(DECK)
            self._rng.shuffle(intents)
            size = len(intents)
            abandoned = set(self._rng.choice(size, ABANDONED_PER_DECK, replace=False).tolist())
            refused = set(self._rng.choice(size, CABIN_REFUSED_PER_DECK, replace=False).tolist())
            self._deck = [
                (intent, i in abandoned, i in refused) for i, intent in enumerate(intents)
            ]
        return self._deck.pop(0)

    def _pick(self, tenants: list[str] | None = None) -> tuple[TenantConfig, TrafficMember]:
        choices = tenants or self.tenants
        tenant_id = choices[int(self._rng.integers(len(choices)))]
        members = self.members[tenant_id]
        return self.registry[tenant_id], members[int(self._rng.integers(len(members)))]

    def _search_body(self, cabin: str = "economy") -> dict[str, Any]:
        origin, destination = ROUTES[int(self._rng.integers(len(ROUTES)))]
        day = self.today() + dt.timedelta(days=int(self._rng.integers(7, 180)))
        return {
            "origin": origin,
            "destination": destination,
            "departure_date": day.isoformat(),
            "passengers": {"adults": 1, "children": 0, "infants": 0},
            "cabin_class": cabin,
        }

    # --- calls as the member's app makes them --------------------------------------------

    def _call(
        self, method: str, path: str, tenant: TenantConfig, member: TrafficMember, **kwargs: Any
    ) -> httpx.Response:
        headers = {**self.apps.headers(tenant, member.member_id), **kwargs.pop("headers", {})}
        return self.http.request(
            method,
            path,
            headers=headers,
            auth=self.apps.auth(tenant, member.member_id),
            **kwargs,
        )

    def _search(
        self, tenant: TenantConfig, member: TrafficMember, cabin: str = "economy"
    ) -> tuple[httpx.Response, list[dict[str, Any]]]:
        response = self._call(
            "POST", "/api/v1/flights/search", tenant, member, json=self._search_body(cabin)
        )
        if response.status_code != 200:
            return response, []
        self.searched += 1
        return response, response.json()["data"]["flights"]

    def _book(
        self, tenant: TenantConfig, member: TrafficMember, flight: dict[str, Any]
    ) -> httpx.Response:
        body = {
            "flight_id": flight["id"],
            "passengers": [
                {
                    "type": "adult",
                    "first_name": "Member",
                    "last_name": member.member_id.replace("_", "").replace("-", ""),
                    "email": f"{member.member_id.lower()}@members.example",
                }
            ],
            "payment": {"method": "loyalty_points", "amount": flight["price"]["loyalty_amount"]},
        }
        return self._call(
            "POST",
            "/api/v1/bookings",
            tenant,
            member,
            json=body,
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )

    # --- a tick ------------------------------------------------------------------------------

    def tick(self) -> str:
        """One member books (as the deck says), with the searches around it; the outcome."""
        with self._lock:
            intent, abandoned, refused = self._next_in_deck()
            self.ticks += 1
            if abandoned:
                self._abandon()
            if refused:
                self._refused_cabin()
            outcome = self._session(intent)
            self.outcomes[outcome] += 1
            return outcome

    def _abandon(self) -> None:
        tenant, member = self._pick()
        response, flights = self._search(tenant, member)
        outcome = "abandoned_search" if response.status_code == 200 else _slug(response)
        self.outcomes[outcome] += 1
        log.info(
            "traffic %s/%s searched (%d flights) and left",
            tenant.id,
            member.member_id,
            len(flights),
        )

    def _refused_cabin(self) -> None:
        strict = [t for t in self.tenants if len(TENANTS[t].allowed_cabins) < 2]
        if not strict:
            return
        tenant, member = self._pick(strict)
        cabin = next(
            c
            for c in ("business", "first", "premium_economy")
            if c not in TENANTS[tenant.id].allowed_cabins
        )
        response, _ = self._search(tenant, member, cabin)
        outcome = _slug(response) if response.status_code != 200 else "searched"
        self.outcomes[f"search_{outcome}"] += 1
        log.info("traffic %s/%s asked for %s: %s", tenant.id, member.member_id, cabin, outcome)

    def _session(self, intent: str) -> str:
        approving = [t for t in self.tenants if TENANTS[t].approval_threshold]
        if intent == "needs_approval" and approving:
            tenant, member = self._pick(approving)
            member = max(self.members[tenant.id], key=lambda m: m.balance)
            cabin = "first"
        elif intent == "overspend":
            tenant, _ = self._pick()
            member = min(self.members[tenant.id], key=lambda m: m.balance)
            cabin = "economy"
        else:
            tenant, member = self._pick()
            cabin = "economy"
        response, flights = self._search(tenant, member, cabin)
        if response.status_code != 200:
            return self._report(tenant, member, f"search {_slug(response)}")
        flight = self._choose(tenant, intent, flights)
        if flight is None:
            return self._report(tenant, member, "no flight to book")
        booked = self._book(tenant, member, flight)
        named = _body(booked).get("booking_id") or _body(booked).get("data", {}).get("booking_id")
        if named:
            self.booked += 1  # a booking exists, whatever became of it
        if booked.status_code not in (200, 201, 202):
            what = f"booking {named} {_slug(booked)}" if named else f"refused {_slug(booked)}"
            return self._report(tenant, member, what, _slug(booked))
        booking = booked.json()["data"]
        status, booking_id = booking["status"], booking["booking_id"]
        log.info("traffic booked %s for %s/%s: %s", booking_id, tenant.id, member.member_id, status)
        if status == "pending_approval":
            self._later(self.approval_delay, lambda: self._decide(booking_id))
        elif status == "confirmed" and intent == "book_then_cancel":
            self._later(self.cancel_delay, lambda: self._cancel(tenant, member, booking_id))
        return status

    def _choose(
        self, tenant: TenantConfig, intent: str, flights: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        if not flights:
            return None
        priced = sorted(flights, key=lambda f: Decimal(f["price"]["loyalty_amount"]))
        threshold = TENANTS[tenant.id].approval_threshold
        if intent == "needs_approval":
            return priced[-1]
        if threshold is not None:
            # Everyday bookings stay under the threshold; only the planned one waits for approval.
            priced = [f for f in priced if Decimal(f["price"]["loyalty_amount"]) <= threshold]
            if not priced:
                return None
        if intent == "overspend":
            return priced[-1]
        # Members mostly take one of the cheapest fares.
        return priced[int(self._rng.integers(min(3, len(priced))))]

    def _report(
        self, tenant: TenantConfig, member: TrafficMember, what: str, outcome: str | None = None
    ) -> str:
        log.info("traffic %s/%s: %s", tenant.id, member.member_id, what)
        return outcome or what.replace(" ", "_")

    # --- follow-ups: the operator's decisions, the members' cancellations ----------------------

    def _later(self, delay: tuple[float, float], action: Callable[[], str]) -> None:
        wait = float(self._rng.uniform(*delay)) if delay[1] > delay[0] else delay[0]
        heapq.heappush(self._due, _FollowUp(self.clock() + wait, next(self._order), action))

    def pending(self) -> int:
        """Follow-ups not yet done."""
        return len(self._due)

    def run_due(self) -> int:
        """Perform the follow-ups whose time has come; how many ran."""
        ran = 0
        while True:
            with self._lock:
                if not self._due or self._due[0].due > self.clock():
                    return ran
                follow_up = heapq.heappop(self._due)
                try:
                    outcome = follow_up.action()
                except httpx.TransportError:
                    # The API is away: the operator or member tries again a little later.
                    follow_up.due = self.clock() + RETRY_FOLLOW_UP_SECONDS
                    heapq.heappush(self._due, follow_up)
                    raise
                self.outcomes[outcome] += 1
                ran += 1

    def _decide(self, booking_id: str) -> str:
        decision = "approve" if self._rng.random() < APPROVE_SHARE else "reject"
        response = self.http.post(
            f"/api/v1/admin/approvals/{booking_id}",
            headers=self._operator_headers,
            json={"decision": decision, "operator": self.operator, "note": "traffic operator"},
        )
        if response.status_code != 200:
            log.info("traffic operator could not decide %s: %s", booking_id, _slug(response))
            return f"decision_{_slug(response)}"
        status = response.json()["data"]["status"]
        outcome = "approved" if decision == "approve" else "rejected"
        log.info("traffic operator %s %s: %s", outcome, booking_id, status)
        return outcome

    def _cancel(self, tenant: TenantConfig, member: TrafficMember, booking_id: str) -> str:
        response = self._call(
            "POST",
            f"/api/v1/bookings/{booking_id}/cancel",
            tenant,
            member,
            json={"reason": "change of plans", "refund_requested": True},
            headers={"Idempotency-Key": uuid.uuid4().hex},
        )
        if response.status_code not in (200, 202):
            log.info("traffic cancel of %s refused: %s", booking_id, _slug(response))
            return f"cancel_{_slug(response)}"
        status = response.json()["data"]["status"]
        log.info("traffic %s/%s cancelled %s: %s", tenant.id, member.member_id, booking_id, status)
        return "cancel_requested"

    # --- running --------------------------------------------------------------------------------

    def run(self, per_minute: float, stop: threading.Event) -> None:
        """Tick ``per_minute`` times a minute until ``stop``; follow-ups in between.

        An API that does not answer (not started yet, restarting) is waited for: the tick is
        skipped with one log line per outage, never a crash.
        """
        interval = 60.0 / per_minute
        down = False
        next_tick = self.clock()
        while not stop.is_set():
            try:
                if self.clock() >= next_tick:
                    # After a slow tick, carry on from now rather than burst to catch up.
                    next_tick = max(next_tick + interval, self.clock())
                    self.tick()
                self.run_due()
                if down:
                    log.info("traffic: the booking API at %s answers again", self.api_url)
                    down = False
            except UpstreamError as error:
                # A tenant refused a member's app its token (or its token endpoint failed):
                # that member's session ends here; the traffic goes on.
                log.warning("traffic: %s", error)
            except httpx.TransportError as error:
                if not down:
                    log.warning(
                        "traffic: the booking API at %s does not answer (%s); waiting",
                        self.api_url,
                        type(error).__name__,
                    )
                    down = True
            stop.wait(max(0.05, min(1.0, next_tick - self.clock())))


def _body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _slug(response: httpx.Response) -> str:
    """The problem type's last segment (``insufficient-balance``), else the status code."""
    try:
        body = response.json()
    except ValueError:
        return str(response.status_code)
    kind = body.get("type") if isinstance(body, dict) else None
    return kind.rsplit("/", 1)[-1] if isinstance(kind, str) else str(response.status_code)
