"""The Duffel v2 flights API, spoken with one tenant's own access token and rate limiter."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Iterator, Mapping, Sequence
from decimal import Decimal
from functools import partial
from typing import Any, NamedTuple, TypeVar

import httpx
import msgspec
from pydantic import BaseModel, TypeAdapter

from clients.duffel.models import (
    Airline,
    Airport,
    DuffelOrder,
    DuffelWebhook,
    Offer,
    OfferRequest,
    OrderCancellation,
    Payment,
)
from clients.errors import (
    DUFFEL_ERRORS,
    DuffelError,
    OrderOutcomeUnknown,
    UpstreamTimeout,
    duffel_error,
)
from clients.http import RequestRunner, RetryPolicy, Route, Safety, build_http_client
from clients.loyalty.models import utc_text
from clients.ratelimit import limiter_for, quota_key
from settings import Settings, get_settings
from tenants.auth import build_duffel_auth
from tenants.registry import TenantConfig

DUFFEL_VERSION = "v2"
MAX_PAGE_SIZE = 200
# Bookings can take ~120 s; searches wait up to the supplier timeout (plus this margin).
ORDER_TIMEOUT_SECONDS = 130.0
SEARCH_MARGIN_SECONDS = 10.0

_ORDERS = Route("GET", "/air/orders", Safety.READ)
_ORDER = Route("GET", "/air/orders/{order_id}", Safety.READ)
_CREATE_ORDER = Route("POST", "/air/orders", Safety.MONEY)
_AIRLINES = Route("GET", "/air/airlines", Safety.READ)
_AIRPORTS = Route("GET", "/air/airports", Safety.READ)
_OFFER_REQUESTS = Route("POST", "/air/offer_requests", Safety.WRITE)
_OFFERS = Route("GET", "/air/offers", Safety.READ)
_OFFER = Route("GET", "/air/offers/{offer_id}", Safety.READ)
_CANCELLATIONS = Route("POST", "/air/order_cancellations", Safety.WRITE)
_CONFIRM_CANCELLATION = Route(
    "POST", "/air/order_cancellations/{cancellation_id}/actions/confirm", Safety.MONEY
)
_PAYMENTS = Route("POST", "/air/payments", Safety.MONEY)
_WEBHOOKS = Route("POST", "/air/webhooks", Safety.WRITE)

M = TypeVar("M", bound=BaseModel)


class RawListPage(NamedTuple):
    """One list response as received: the undecoded JSON body and the cursor of the next page."""

    body: bytes
    after: str | None


class _ListMeta(msgspec.Struct):
    after: str | None = None


class _ListEnvelope(msgspec.Struct):
    """Only what paging needs; ``data`` is skipped over, not decoded (that is the caller's job)."""

    data: msgspec.Raw
    meta: _ListMeta | None = None


_ENVELOPE = msgspec.json.Decoder(_ListEnvelope)


def _money(amount: Decimal) -> str:
    # Duffel takes amounts as decimal strings ("45.00").
    if not isinstance(amount, Decimal):
        raise TypeError("amounts are Decimal, never float")
    return format(amount, "f")


class DuffelClient:
    """Searches, books, cancels and lists Duffel resources page by page."""

    def __init__(
        self,
        http: httpx.Client,
        *,
        tenant_id: str = "duffel",
        retry: RetryPolicy | None = None,
        token_env: str | None = None,
    ) -> None:
        self.http = http
        self.tenant_id = tenant_id
        self._runner = RequestRunner(
            http,
            tenant=tenant_id,
            upstream="Duffel",
            error_mapper=duffel_error,
            policy=retry,
            shape_error=DuffelError,
            errors=DUFFEL_ERRORS,
            facts={
                "base_url_env": "DUFFEL_BASE_URL",
                "credentials": token_env or "the Duffel token",
            },
        )

    def __enter__(self) -> DuffelClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.http.close()

    def _resource(self, route: Route, model: type[M], **kwargs: Any) -> M:
        """One ``{"data": {...}}`` resource, validated into ``model``."""
        body = self._runner.send_json(route, **kwargs)
        with self._runner.reading(route):
            return model.model_validate(body["data"])

    def iter_pages(
        self, path: str | Route, params: Mapping[str, Any] | None = None
    ) -> Iterator[list[dict[str, Any]]]:
        """Pages of a list endpoint as decoded records (numbers exact), following ``meta.after``
        until it is null."""
        for page in self.iter_pages_raw(path, params):
            yield json.loads(page.body, parse_float=Decimal)["data"]

    def iter_pages_raw(
        self, path: str | Route, params: Mapping[str, Any] | None = None
    ) -> Iterator[RawListPage]:
        """Raw pages of a list endpoint, following ``meta.after`` until it is null; each page's
        body is handed back undecoded (bytes), with the cursor of the next page.

        Only the envelope is read here (is ``data`` an array, what is ``meta.after``), so a
        consumer can decode the records however suits it, e.g. columnar with a slim schema.
        """
        route = path if isinstance(path, Route) else Route("GET", path, Safety.READ)
        query = dict(params or {})
        seen: set[str] = set()
        while True:
            response = self._runner.send(route, params=query)
            body = response.content
            try:
                envelope = _ENVELOPE.decode(body)
            except (msgspec.DecodeError, msgspec.ValidationError) as exc:
                raise DuffelError(
                    f"list response is not a JSON object with a 'data' array: {exc}",
                    tenant=self.tenant_id,
                    endpoint=route.label,
                    status=response.status_code,
                ) from exc
            if memoryview(envelope.data)[:1] != b"[":
                raise DuffelError(
                    "list response has no 'data' array",
                    tenant=self.tenant_id,
                    endpoint=route.label,
                    status=response.status_code,
                )
            after = envelope.meta.after if envelope.meta is not None else None
            yield RawListPage(body, after or None)
            if not after:
                return
            if after in seen:
                raise DuffelError(
                    "Duffel returned a cursor it had already returned; stopping to avoid a loop",
                    tenant=self.tenant_id,
                    endpoint=route.label,
                    status=200,
                    code="repeated_cursor",
                )
            seen.add(after)
            query["after"] = after

    def iter_order_pages_raw(
        self,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Iterator[RawListPage]:
        """Order pages as raw JSON bytes (plus the next cursor), for fast columnar ingestion."""
        return self.iter_pages_raw(
            _ORDERS, self._order_params(created_after, created_before, limit)
        )

    @staticmethod
    def _order_params(
        created_after: dt.datetime | None, created_before: dt.datetime | None, limit: int
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": min(limit, MAX_PAGE_SIZE)}
        if created_after is not None:
            params["created_at[after]"] = utc_text(created_after)
        if created_before is not None:
            params["created_at[before]"] = utc_text(created_before)
        return params

    def iter_order_pages(
        self,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Iterator[list[dict[str, Any]]]:
        """Raw order pages, so ingestion can quarantine a malformed order itself."""
        return self.iter_pages(_ORDERS, self._order_params(created_after, created_before, limit))

    def list_orders(
        self,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> Iterator[list[DuffelOrder]]:
        """Order pages as models; a malformed order raises (use raw pages to quarantine)."""
        return self._parsed(
            self.iter_order_pages(created_after, created_before, limit), DuffelOrder
        )

    def list_airlines(self, limit: int = MAX_PAGE_SIZE) -> Iterator[list[Airline]]:
        return self._parsed(self.iter_pages(_AIRLINES, {"limit": limit}), Airline)

    def list_airports(self, limit: int = MAX_PAGE_SIZE) -> Iterator[list[Airport]]:
        return self._parsed(self.iter_pages(_AIRPORTS, {"limit": limit}), Airport)

    @staticmethod
    def _parsed(pages: Iterator[list[dict[str, Any]]], model: type[M]) -> Iterator[list[M]]:
        adapter = TypeAdapter(list[model])  # type: ignore[valid-type]
        for page in pages:
            yield adapter.validate_python(page)

    def create_offer_request(
        self,
        slices: Sequence[Mapping[str, Any]],
        passengers: Sequence[Mapping[str, Any]],
        *,
        cabin_class: str | None = None,
        max_connections: int | None = None,
        return_offers: bool = True,
        supplier_timeout_ms: int | None = None,
    ) -> OfferRequest:
        """Search for flights; with ``return_offers=False`` page the offers via ``list_offers``."""
        data: dict[str, Any] = {"slices": list(slices), "passengers": list(passengers)}
        if cabin_class:
            data["cabin_class"] = cabin_class
        if max_connections is not None:
            data["max_connections"] = max_connections
        params: dict[str, Any] = {"return_offers": "true" if return_offers else "false"}
        read_timeout = self.http.timeout.read
        if supplier_timeout_ms is not None:
            params["supplier_timeout"] = supplier_timeout_ms
            read_timeout = max(
                read_timeout or 0.0, supplier_timeout_ms / 1000 + SEARCH_MARGIN_SECONDS
            )
        return self._resource(
            _OFFER_REQUESTS,
            OfferRequest,
            params=params,
            json_body={"data": data},
            read_timeout=read_timeout,
        )

    def list_offers(
        self, offer_request_id: str, *, limit: int = 50, sort: str | None = None
    ) -> Iterator[list[Offer]]:
        params: dict[str, Any] = {"offer_request_id": offer_request_id, "limit": limit}
        if sort:
            params["sort"] = sort
        return self._parsed(self.iter_pages(_OFFERS, params), Offer)

    def get_offer(self, offer_id: str) -> Offer:
        return self._resource(_OFFER, Offer, path_params={"offer_id": offer_id})

    def create_order(
        self,
        offer_id: str,
        passengers: Sequence[Mapping[str, Any]],
        *,
        order_type: str = "instant",
        payments: Sequence[Mapping[str, Any]] | None = None,
        services: Sequence[Mapping[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> DuffelOrder:
        """Book an offer. Never retried once it may have reached Duffel (500/502/timeouts).

        ``OrderNotCreated`` means Duffel guarantees nothing was booked; ``OrderOutcomeUnknown``
        means the order may exist: look it up (e.g. by metadata) before booking again.
        """
        data: dict[str, Any] = {
            "type": order_type,
            "selected_offers": [offer_id],
            "passengers": list(passengers),
        }
        if payments:
            data["payments"] = [{**p, "amount": _money(p["amount"])} for p in payments]
        if services:
            data["services"] = list(services)
        if metadata:
            data["metadata"] = dict(metadata)
        policy = self._runner.policy
        try:
            return self._resource(
                _CREATE_ORDER,
                DuffelOrder,
                json_body={"data": data},
                read_timeout=ORDER_TIMEOUT_SECONDS,
                error_mapper=partial(duffel_error, creates_order=True),
                policy=dataclasses.replace(
                    policy,
                    max_elapsed_seconds=max(policy.max_elapsed_seconds, ORDER_TIMEOUT_SECONDS),
                ),
            )
        except UpstreamTimeout as exc:
            unknown = OrderOutcomeUnknown(
                exc.message, tenant=self.tenant_id, endpoint=_CREATE_ORDER.label
            )
            unknown.add_facts(**exc.facts)
            raise unknown from exc

    def get_order(self, order_id: str) -> DuffelOrder:
        return self._resource(_ORDER, DuffelOrder, path_params={"order_id": order_id})

    def create_cancellation(self, order_id: str) -> OrderCancellation:
        """A cancellation quote (nothing is cancelled until it is confirmed)."""
        return self._resource(
            _CANCELLATIONS, OrderCancellation, json_body={"data": {"order_id": order_id}}
        )

    def confirm_cancellation(self, cancellation_id: str) -> OrderCancellation:
        """Cancel the order for the quoted refund; never retried once it may have reached Duffel."""
        return self._resource(
            _CONFIRM_CANCELLATION,
            OrderCancellation,
            path_params={"cancellation_id": cancellation_id},
        )

    def create_payment(
        self, order_id: str, amount: Decimal, currency: str, payment_type: str = "balance"
    ) -> Payment:
        """Pay for a held order."""
        payment = {"type": payment_type, "amount": _money(amount), "currency": currency}
        return self._resource(
            _PAYMENTS, Payment, json_body={"data": {"order_id": order_id, "payment": payment}}
        )

    def find_orders(
        self,
        created_after: dt.datetime,
        metadata: Mapping[str, str],
        *,
        created_before: dt.datetime | None = None,
        limit: int = MAX_PAGE_SIZE,
    ) -> list[DuffelOrder]:
        """Orders created in the window whose ``metadata`` holds every pair of ``metadata``.

        Duffel cannot filter by metadata, so this pages through the window's orders (oldest
        first) and keeps the matches: how a reconciler finds the order of a booking whose
        creation answer was lost (e.g. ``{"booking_id": ...}``). Keep the window tight (from
        just before the booking's order attempt). Only matches are validated, so another
        order that is malformed cannot stop the search.
        """
        if not metadata:
            raise ValueError("metadata: give at least one key to match")
        wanted = dict(metadata)
        found = []
        for page in self.iter_order_pages(created_after, created_before, limit):
            for raw in page:
                held = raw.get("metadata") if isinstance(raw, dict) else None
                if isinstance(held, dict) and all(held.get(k) == v for k, v in wanted.items()):
                    with self._runner.reading(_ORDERS):
                        found.append(DuffelOrder.model_validate(raw))
        return found

    def create_webhook(self, url: str, events: Sequence[str]) -> DuffelWebhook:
        """Register ``url`` for ``events``; the answer's ``secret`` is shown only this once."""
        return self._resource(
            _WEBHOOKS, DuffelWebhook, json_body={"data": {"url": url, "events": list(events)}}
        )


def build_duffel_client(
    tenant: TenantConfig,
    settings: Settings | None = None,
    *,
    retry: RetryPolicy | None = None,
    transport: httpx.BaseTransport | None = None,
    event_hooks: dict[str, list[Any]] | None = None,
) -> DuffelClient:
    """A Duffel client with the tenant's own token and that token's shared rate limiter."""
    base_url = (settings or get_settings()).duffel_base_url.rstrip("/")
    auth = build_duffel_auth(tenant)
    http = build_http_client(
        base_url,
        auth=auth,
        limiter=limiter_for(
            quota_key("duffel", base_url, auth.fingerprint), tenant.duffel.rate_limit
        ),
        read_timeout=tenant.duffel.read_timeout_seconds,
        headers={"Duffel-Version": DUFFEL_VERSION, "Accept-Encoding": "gzip"},
        transport=transport,
        event_hooks=event_hooks,
    )
    return DuffelClient(http, tenant_id=tenant.id, retry=retry, token_env=tenant.duffel.token_env)
