"""One loyalty client for every tenant; a small dialect per API family maps paths and field names.

Operations a tenant does not offer (per its registry ``capabilities`` or its dialect) raise
``NotSupported`` before any request is made; a refund path the tenant's API turns out not to
have (a bare 404, no error code of the tenant's) raises ``NotSupported`` too.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NamedTuple

import httpx
from pydantic import TypeAdapter

from clients.errors import NotFound, NotSupported, UpstreamError, tenant_error
from clients.http import RequestRunner, RetryPolicy, Route, Safety, build_http_client
from clients.loyalty.models import (
    ApprovalCheck,
    Balance,
    Deduction,
    LedgerTransaction,
    Member,
    Refund,
    TravelEligibility,
    utc_text,
)
from clients.ratelimit import limiter_for, quota_key
from tenants.auth import TenantAuth, build_auth
from tenants.registry import CAPABILITY_NAMES, Endpoint, JwtSessionConfig, RateLimit, TenantConfig
from tenants.settings import tenant_base_url


@dataclass(frozen=True)
class Dialect:
    """How one tenant API family spells paths and fields (path templates use ``{member_id}``)."""

    name: str
    id_field: str
    balance_path: str
    balance_field: str
    deduct_path: str
    deduct_request_field: str
    deducted_field: str
    remaining_field: str
    refund_path: str | None = None
    refunded_field: str = "amount_refunded"
    approval_path: str | None = None
    eligibility_path: str | None = None
    sends_travel_class: bool = False


DIALECTS: dict[str, Dialect] = {
    "coffeechain_v1": Dialect(
        name="coffeechain_v1",
        id_field="member_id",
        balance_path="/api/v1/members/{member_id}/balance",
        balance_field="balance",
        deduct_path="/api/v1/members/{member_id}/deduct",
        deduct_request_field="amount",
        deducted_field="amount_deducted",
        remaining_field="remaining_balance",
        refund_path="/api/v1/members/{member_id}/refund",
        approval_path="/api/v1/approvals/check",
    ),
    "telcocorp_v2": Dialect(
        name="telcocorp_v2",
        id_field="customer_id",
        balance_path="/api/v2/customers/{member_id}/points",
        balance_field="points",
        deduct_path="/api/v2/customers/{member_id}/points/use",
        deduct_request_field="points",
        deducted_field="points_used",
        remaining_field="remaining_points",
        refund_path="/api/v2/customers/{member_id}/points/refund",
        refunded_field="points_refunded",
        eligibility_path="/api/v2/customers/{member_id}/travel/eligibility",
        sends_travel_class=True,
    ),
    "fintechapp_v1": Dialect(
        name="fintechapp_v1",
        id_field="user_id",
        balance_path="/api/v1/users/{member_id}/coins",
        balance_field="coins",
        deduct_path="/api/v1/users/{member_id}/coins/deduct",
        deduct_request_field="amount",
        deducted_field="amount_deducted",
        remaining_field="remaining_coins",
        refund_path="/api/v1/users/{member_id}/coins/refund",
    ),
}


def credential_names(tenant: TenantConfig) -> str:
    """The environment variables that hold the tenant's loyalty API credentials (names only)."""
    auth = tenant.auth
    names = [
        getattr(auth, field)
        for field in (
            "key_env",
            "client_id_env",
            "client_secret_env",
            "partner_id_env",
            "partner_secret_env",
        )
        if getattr(auth, field, None)
    ]
    return " and ".join(names) or "its credentials"


class RawPage(NamedTuple):
    """One page exactly as delivered, so ingestion can quarantine bad records itself."""

    records: list[dict[str, Any]]
    next_cursor: str | None


@dataclass(frozen=True)
class CapabilityProbe:
    """What asking the tenant's API for one capability found: a fact, not the registry's hope."""

    capability: str
    offered: bool
    status_code: int | None
    detail: str


# A member id no tenant issues: refund routes are probed by path only, never acted on.
_PROBE_MEMBER = "capability-probe"


_LEDGER_PAGE = TypeAdapter(list[LedgerTransaction])
_MEMBER_PAGE = TypeAdapter(list[Member])


class LoyaltyClient:
    """A tenant's loyalty API: balances, deductions, refunds, approvals, and the ledger feed."""

    def __init__(
        self, tenant: TenantConfig, http: httpx.Client, *, retry: RetryPolicy | None = None
    ) -> None:
        dialect = DIALECTS.get(tenant.api.dialect)
        if dialect is None:
            raise ValueError(
                f"tenant {tenant.id!r}: unknown API dialect {tenant.api.dialect!r} "
                f"(known: {', '.join(sorted(DIALECTS))})"
            )
        self.tenant = tenant
        self.dialect = dialect
        self.http = http
        self._runner = RequestRunner(
            http,
            tenant=tenant.id,
            upstream="loyalty API",
            error_mapper=tenant_error,
            policy=retry,
            facts={
                "base_url_env": tenant.api.base_url_env,
                "credentials": credential_names(tenant),
            },
        )
        # Set once the tenant's API answered that it has no refund path: asking again would
        # only spend its rate limit (a saga retries owed refunds on every reconciler pass).
        self._refunds_missing = False

    def __enter__(self) -> LoyaltyClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    @property
    def currency(self) -> str:
        return self.tenant.currency.code

    def _member_auth(self, member_id: str) -> httpx.Auth | None:
        # Member endpoints of session-based schemes want the member's own session.
        auth = self.http.auth
        return auth.for_member(member_id) if isinstance(auth, TenantAuth) else None

    def _not_supported(self, operation: str, why: str) -> NotSupported:
        return NotSupported(
            f"{self.tenant.name} does not offer {operation}: {why}",
            tenant=self.tenant.id,
            endpoint=operation,
        )

    def _amount(self, amount: Decimal | int) -> Decimal | int:
        if isinstance(amount, float) or not isinstance(amount, Decimal | int):
            raise TypeError("amounts are Decimal or int, never float")
        value = Decimal(amount)
        decimals = self.tenant.currency.decimals
        if value <= 0 or value != value.quantize(Decimal(1).scaleb(-decimals)):
            raise ValueError(
                f"{self.tenant.id}: amount {amount} must be positive with at most "
                f"{decimals} decimal places of {self.currency}"
            )
        return int(value) if decimals == 0 else value

    def balance(self, member_id: str) -> Balance:
        """The member's current balance."""
        route = Route("GET", self.dialect.balance_path, Safety.READ)
        body = self._runner.send_json(
            route, path_params={"member_id": member_id}, auth=self._member_auth(member_id)
        )
        with self._runner.reading(route):
            return Balance(
                tenant_id=self.tenant.id,
                member_id=body.get(self.dialect.id_field, member_id),
                balance=body[self.dialect.balance_field],
                currency=self.currency,
                tier=body.get("tier"),
                status=body.get("status"),
                total_cashback=body.get("total_cashback"),
            )

    def deduct(
        self,
        member_id: str,
        amount: Decimal | int,
        reference_id: str,
        description: str,
        travel_class: str = "economy",
    ) -> Deduction:
        """Take ``amount`` from the member; never retried once it may have reached the tenant."""
        body: dict[str, Any] = {
            self.dialect.deduct_request_field: self._amount(amount),
            "reference_id": reference_id,
            "description": description,
        }
        if self.dialect.sends_travel_class:
            body["travel_class"] = travel_class
        route = Route("POST", self.dialect.deduct_path, Safety.MONEY)
        data = self._runner.send_json(
            route,
            path_params={"member_id": member_id},
            json_body=body,
            auth=self._member_auth(member_id),
        )
        with self._runner.reading(route):
            return Deduction(
                tenant_id=self.tenant.id,
                transaction_id=data["transaction_id"],
                member_id=data.get(self.dialect.id_field, member_id),
                amount=data[self.dialect.deducted_field],
                remaining_balance=data[self.dialect.remaining_field],
                currency=self.currency,
                cashback_earned=data.get("cashback_earned") or Decimal(0),
                timestamp=data.get("timestamp"),
            )

    def refund(self, member_id: str, transaction_id: str, reason: str) -> Refund:
        """Give back a deduction (where the tenant offers refunds)."""
        path = self.dialect.refund_path
        if not self.tenant.capabilities.refunds or path is None:
            raise self._not_supported("refunds", "capabilities.refunds is not enabled")
        route = Route("POST", path, Safety.MONEY)
        if self._refunds_missing:
            raise self._no_refund_path(route, 404)
        try:
            data = self._runner.send_json(
                route,
                path_params={"member_id": member_id},
                json_body={"transaction_id": transaction_id, "reason": reason},
                auth=self._member_auth(member_id),
            )
        except NotFound as exc:
            if exc.code is not None:  # the tenant's own answer (transaction_not_found, ...)
                raise
            # No route at all (FastAPI's bare "Not Found"): refunds are declared but the
            # tenant's API lacks them, as the reference TelcoCorp and FintechApp do.
            self._refunds_missing = True
            raise self._no_refund_path(route, exc.status) from exc
        with self._runner.reading(route):
            return Refund(
                tenant_id=self.tenant.id,
                refund_id=data["refund_id"],
                transaction_id=data.get("transaction_id", transaction_id),
                member_id=data.get(self.dialect.id_field, member_id),
                amount=data[self.dialect.refunded_field],
                new_balance=data["new_balance"],
                currency=self.currency,
                timestamp=data.get("timestamp"),
            )

    def _no_refund_path(self, route: Route, status: int | None) -> NotSupported:
        return NotSupported(
            f"{self.tenant.name} does not offer refunds: its API has no {route.label}",
            tenant=self.tenant.id,
            endpoint=route.label,
            status=status,
        )

    def check_approval(
        self, member_id: str, amount: Decimal | int, booking_reference: str
    ) -> ApprovalCheck:
        """Whether booking ``amount`` needs manual approval (CoffeeChain's rule)."""
        path = self.dialect.approval_path
        if path is None:
            raise self._not_supported("approval checks", "its API has no approval endpoint")
        value = self._amount(amount)
        route = Route("POST", path, Safety.WRITE)
        data = self._runner.send_json(
            route,
            json_body={
                "member_id": member_id,
                "amount": value,
                "booking_reference": booking_reference,
            },
        )
        with self._runner.reading(route):
            return ApprovalCheck(
                tenant_id=self.tenant.id,
                member_id=member_id,
                amount=Decimal(value),
                booking_reference=booking_reference,
                approval_required=data["approval_required"],
                approval_id=data.get("approval_id"),
                reason=data.get("reason"),
                estimated_time=data.get("estimated_time"),
            )

    def travel_eligibility(self, member_id: str) -> TravelEligibility:
        """Which cabins the member may book (TelcoCorp's rule)."""
        path = self.dialect.eligibility_path
        if path is None:
            raise self._not_supported("travel eligibility", "its API has no eligibility endpoint")
        route = Route("GET", path, Safety.READ)
        data = self._runner.send_json(
            route,
            path_params={"member_id": member_id},
            auth=self._member_auth(member_id),
        )
        with self._runner.reading(route):
            return TravelEligibility(
                tenant_id=self.tenant.id,
                member_id=data.get(self.dialect.id_field, member_id),
                eligible=data["eligible"],
                allowed_classes=tuple(data.get("allowed_classes") or ()),
                restrictions=tuple(data.get("restrictions") or ()),
            )

    def _feed(self, endpoint: Endpoint | None, name: str, capability: str) -> Endpoint:
        if endpoint is None:
            raise self._not_supported(name, f"capabilities.{capability} is not configured")
        return endpoint

    def _pages(
        self, endpoint: Endpoint, params: dict[str, Any], cursor: str | None
    ) -> Iterator[RawPage]:
        route = Route("GET", endpoint.path, Safety.READ)
        seen: set[str] = set()
        while True:
            page_params = {**params, "cursor": cursor} if cursor else params
            body = self._runner.send_json(route, params=page_params)
            records = body.get("data") if isinstance(body, dict) else None
            if not isinstance(records, list):
                raise UpstreamError(
                    "page has no 'data' list",
                    tenant=self.tenant.id,
                    endpoint=route.label,
                    status=200,
                )
            next_cursor = body.get("next_cursor")
            yield RawPage(records, next_cursor)
            if not next_cursor or body.get("has_more") is False:
                return
            if next_cursor in seen:
                raise UpstreamError(
                    "the feed returned a cursor it had already returned; stopping to avoid a loop",
                    tenant=self.tenant.id,
                    endpoint=route.label,
                    status=200,
                )
            seen.add(next_cursor)
            cursor = next_cursor

    def probe(self, capability: str) -> CapabilityProbe | None:
        """Ask the tenant's API whether it offers ``capability``; None when it is not declared.

        A declared ``probe`` answered with a bare 404 (no error code of the tenant's: the
        route does not exist) is "not offered"; so is a feed or list that needs FintechApp's
        partner session when the session endpoint does not know the partner (404). Any other
        failure raises, as does a 404 on a capability declared ``true``. Refunds are probed
        without credentials by a GET of the refund path, which can never move money: 405
        (method not allowed) says the route exists, a bare 404 that it does not.
        """
        if capability not in CAPABILITY_NAMES:
            raise ValueError(f"unknown capability {capability!r} (known: {CAPABILITY_NAMES})")
        declared = self.tenant.capabilities.declared(capability)
        if declared is None:
            return None
        if capability == "refunds":
            return self._probe_refunds(declared)
        if capability == "partner_session":
            return self._probe_partner_session(declared)
        endpoint = getattr(self.tenant.capabilities, capability)
        route = Route("GET", endpoint.path, Safety.READ)
        try:
            self._runner.send(route, params={"limit": 1})
        except NotFound as exc:
            if exc.not_sent:
                if not self._session_auth():
                    raise  # the token endpoint's 404: a configuration fault, not a fact
                # The partner session was refused before the feed was even asked.
                missing = self._session_missing(exc, declared)
                return CapabilityProbe(
                    capability,
                    False,
                    exc.status,
                    f"needs {self.tenant.name}'s partner session, which it does not offer "
                    f"({missing.detail})",
                )
            return self._missing_route(capability, route.label, exc, declared)
        return CapabilityProbe(capability, True, 200, f"{route.label} answered 200")

    def _session_auth(self) -> bool:
        return isinstance(self.tenant.auth, JwtSessionConfig)

    def _missing_route(
        self, capability: str, label: str, exc: NotFound, declared: object
    ) -> CapabilityProbe:
        if exc.code is not None or declared != "probe":
            raise exc  # the tenant's own 404 (a coded error), or a promised route missing
        return CapabilityProbe(
            capability,
            False,
            exc.status,
            f"{label} answered {exc.status} Not Found: {self.tenant.name}'s API has no such route",
        )

    def _session_missing(self, exc: NotFound, declared: object) -> CapabilityProbe:
        if declared is True and self.tenant.capabilities.partner_session is True:
            raise exc
        code = f" {exc.code}" if exc.code else ""
        return CapabilityProbe(
            "partner_session",
            False,
            exc.status,
            f"{exc.endpoint} answered {exc.status}{code} for the partner principal",
        )

    def _probe_partner_session(self, declared: object) -> CapabilityProbe:
        if not self._session_auth():
            raise self._not_supported("a partner session", "its auth has no sessions")
        # /health needs no credentials, so any refusal is the session's own.
        route = Route("GET", "/health", Safety.READ)
        try:
            self._runner.send(route)
        except NotFound as exc:
            if not exc.not_sent:
                raise
            return self._session_missing(exc, declared)
        return CapabilityProbe(
            "partner_session", True, 200, "the session endpoint issued the partner a session"
        )

    def _probe_refunds(self, declared: object) -> CapabilityProbe:
        path = self.dialect.refund_path
        if declared is True:
            return CapabilityProbe(
                "refunds",
                path is not None,
                None,
                "declared offered in the tenant registry (refunds: true); not probed, "
                "a refund probe could move money",
            )
        if path is None:
            return CapabilityProbe("refunds", False, None, "its API family has no refund path")
        route = Route("GET", path, Safety.READ)
        try:
            self._runner.send(route, path_params={"member_id": _PROBE_MEMBER}, auth=httpx.Auth())
        except NotFound as exc:
            return self._missing_route("refunds", f"POST {path}", exc, declared)
        except UpstreamError as exc:
            if exc.status == 405:  # the route exists, for POST only
                return CapabilityProbe(
                    "refunds", True, 405, f"POST {path} exists (a GET of it answered 405)"
                )
            raise
        raise UpstreamError(
            "a GET of the refund path succeeded; cannot tell whether refunds are offered",
            tenant=self.tenant.id,
            endpoint=route.label,
            status=200,
        )

    def iter_ledger_pages(
        self,
        updated_since: dt.datetime | None = None,
        page_size: int | None = None,
        cursor: str | None = None,
    ) -> Iterator[RawPage]:
        """Raw ledger pages in ``updated_at`` order (``updated_since`` inclusive)."""
        feed = self._feed(self.tenant.capabilities.ledger_feed, "a ledger feed", "ledger_feed")
        params: dict[str, Any] = {"limit": page_size or feed.page_size}
        if updated_since is not None:
            params["updated_since"] = utc_text(updated_since)
        return self._pages(feed, params, cursor)

    def iter_ledger(
        self, updated_since: dt.datetime | None = None, page_size: int | None = None
    ) -> Iterator[list[LedgerTransaction]]:
        """Validated ledger pages; a malformed record raises (use the raw pages to quarantine)."""
        for page in self.iter_ledger_pages(updated_since, page_size):
            yield _LEDGER_PAGE.validate_python(page.records)

    def iter_member_pages(
        self, page_size: int | None = None, cursor: str | None = None
    ) -> Iterator[RawPage]:
        """Raw member-list pages."""
        listing = self._feed(self.tenant.capabilities.member_list, "a member list", "member_list")
        return self._pages(listing, {"limit": page_size or listing.page_size}, cursor)

    def iter_members(self, page_size: int | None = None) -> Iterator[list[Member]]:
        """Validated member-list pages."""
        for page in self.iter_member_pages(page_size):
            yield _MEMBER_PAGE.validate_python(page.records)


def build_loyalty_client(
    tenant: TenantConfig,
    *,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
    budget: RateLimit | None = None,
    budget_name: str = "",
) -> LoyaltyClient:
    """The tenant's loyalty client: its base URL, auth, read timeout and shared rate limiter.

    The base URL and secrets come from the environment variables its registry entry names.
    With ``budget``, its requests also pass a limiter of their own (``budget_name`` names
    it, shared like the tenant's), so one kind of work takes only that share of the quota.
    """
    base_url = tenant_base_url(tenant)
    http = build_http_client(
        base_url,
        auth=build_auth(tenant, base_url),
        limiter=limiter_for(quota_key(tenant.id, base_url), tenant.rate_limit),
        read_timeout=tenant.api.read_timeout_seconds,
        transport=transport,
        event_hooks=event_hooks,
        budget=(
            limiter_for(quota_key(f"{tenant.id}.{budget_name}", base_url), budget)
            if budget is not None
            else None
        ),
    )
    return LoyaltyClient(tenant, http, retry=retry)
