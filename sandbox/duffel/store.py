"""The Duffel stand-in's state: read-only generated history plus a resettable live overlay.

The history is one immutable DataFrame slice per organisation, sorted by
(created_at, order_id) and indexed with numpy for keyset paging. Everything that happens
while the server runs lives in the overlay: booked orders (as ORDERS rows), changes to
existing orders (payment, cancellation) as per-order overrides, and searches, quotes and
payments in plain dicts. ``reset()`` drops the overlay. One lock guards the overlay
because a traffic thread books orders while the server reads.
"""

from __future__ import annotations

import re
import secrets
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import numpy as np
import polars as pl

from sandbox.duffel import offers
from sandbox.duffel.errors import DuffelError, invalid_state, not_found, required, validation
from sandbox.duffel.offers import Fare
from sandbox.duffel.paging import PageRequest, encode_cursor, meta, page_of
from sandbox.duffel.render import (
    CANCELLATION_CREATED_AT,
    EXTRA_METADATA,
    EXTRA_PASSENGERS,
    HOUR_US,
    WIRE_COLUMNS,
    Json,
    awaiting_payment,
    cancellation_object,
    from_us,
    refund_terms,
    to_us,
    utc_text,
    wire_row,
)
from sandbox.ids import duffel_ids, pnrs
from sandbox.schema import ORDERS

ORDER_CURSOR = "ord"
OFFER_CURSOR = "off"
MAX_OFFER_REQUESTS = 2000  # oldest searches are forgotten beyond this, like expired ones
_METADATA_KEY = re.compile(r"^[A-Za-z0-9_-]{1,40}$")
_METADATA_COLUMNS = ("booking_id", "member_id", "loyalty_transaction_id")
_PAYMENT_TYPES = ("balance", "arc_bsp_cash")


def _utcnow() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class OrderQuery:
    """Filters of ``GET /air/orders`` (timestamps in µs; both bounds exclusive)."""

    created_after: int | None = None
    created_before: int | None = None
    booking_reference: str | None = None
    awaiting_payment: bool | None = None


@dataclass
class OrderPage:
    """One page of ``GET /air/orders``: the orders as wire rows and the ``meta`` block."""

    rows: list[dict[str, Any]]  # wire rows with overrides applied
    meta: dict[str, Any]


@dataclass
class _OfferRequest:
    """A search, remembered so that its offers can be listed and booked (once)."""

    body: Json  # without offers
    org: str
    offer_ids: list[str]
    booked: bool = False


@dataclass
class _Offer:
    """An offer as sent plus what booking it needs: the fare and the passengers."""

    body: Json
    org: str
    request_id: str
    fare: Fare
    passengers: list[Json]
    expires_us: int


@dataclass
class _Quote:
    """A pending or confirmed order cancellation made through the API."""

    id: str
    org: str
    order_id: str
    refund_amount: str
    refund_currency: str
    refund_to: str
    created_us: int
    confirmed_us: int | None = None

    def body(self) -> Json:
        return cancellation_object(
            self.id,
            self.order_id,
            self.refund_amount,
            self.refund_currency,
            self.refund_to,
            self.created_us,
            self.confirmed_us,
        )


class _Lookup:
    """Positions by exact value of a string column: a sorted copy searched by bisection.

    Far lighter than a dict per row for a history of millions of orders.
    """

    def __init__(self, column: pl.Series) -> None:
        table = (
            pl.DataFrame({"key": column, "position": np.arange(len(column), dtype=np.int64)})
            .drop_nulls("key")
            .sort("key")
        )
        self.keys = table["key"]
        self.positions = table["position"].to_numpy()

    def find(self, value: str) -> list[int]:
        low = int(self.keys.search_sorted(value, "left"))
        high = int(self.keys.search_sorted(value, "right"))
        return sorted(self.positions[low:high].tolist())


class _History:
    """One organisation's generated orders, sorted by (created_at, order_id) and indexed."""

    def __init__(self, frame: pl.DataFrame) -> None:
        # Converted to wire form once, so a page is a slice and ``to_dicts`` and nothing else.
        self.frame = frame.with_columns(WIRE_COLUMNS)
        self.created = self.frame["created_at"].to_numpy()
        self.by_id = _Lookup(frame["order_id"])
        self.by_reference = _Lookup(frame["booking_reference"])
        self.by_cancellation = _Lookup(frame["cancellation_id"])
        waiting = (
            (pl.col("order_type") == "hold")
            & pl.col("paid_at").is_null()
            & pl.col("cancelled_at").is_null()
        ).fill_null(False)
        self.awaiting = frame.select(waiting).to_series().to_numpy()

    def __len__(self) -> int:
        return self.frame.height

    def position(self, order_id: str) -> int | None:
        found = self.by_id.find(order_id)
        return found[0] if found else None

    def order_ids(self, positions: list[int]) -> list[str]:
        return self.frame["order_id"].gather(positions).to_list()

    def rows(self, positions: list[int]) -> list[dict[str, Any]]:
        if not positions:
            return []
        first = positions[0]
        if positions[-1] - first + 1 == len(positions):
            part = self.frame.slice(first, len(positions))  # the common, unfiltered case
        else:
            part = self.frame[positions]
        return part.to_dicts()


class _Candidates:
    """The history orders that pass a filter, in order: a contiguous run or explicit positions.

    The unfiltered case stays a (low, high) run so that paging a large history never
    copies arrays of its size.
    """

    def __init__(
        self, history: _History, low: int, high: int, positions: np.ndarray | None = None
    ) -> None:
        self.history = history
        self.low, self.high = low, high
        self.positions = positions

    def __len__(self) -> int:
        return self.high - self.low if self.positions is None else len(self.positions)

    def _position(self, k: int) -> int:
        return self.low + k if self.positions is None else int(self.positions[k])

    def count_before(self, key: tuple[int, str], inclusive: bool) -> int:
        """How many candidates sort before ``key`` (or at it, when ``inclusive``)."""
        created = self.history.created
        stamps = (
            created[self.low : self.high] if self.positions is None else created[self.positions]
        )
        at = int(np.searchsorted(stamps, key[0], "left"))
        end = int(np.searchsorted(stamps, key[0], "right"))
        # Equal timestamps are ordered by id; there are only ever a handful of them.
        tied = self.history.order_ids([self._position(k) for k in range(at, end)])
        for order_id in tied:
            if order_id > key[1] or (order_id == key[1] and not inclusive):
                break
            at += 1
        return at

    def items(self, start: int, stop: int) -> list[tuple[int, str, int]]:
        """(created, id, position) of candidates ``start`` to ``stop``."""
        if self.positions is None:
            positions = list(range(self.low + start, self.low + max(start, stop)))
        else:
            positions = self.positions[start:stop].tolist()
        if not positions:
            return []
        stamps = self.history.created[positions].tolist()
        ids = self.history.order_ids(positions)
        return list(zip(stamps, ids, positions, strict=True))


class DuffelStore:
    """Orders, searches, cancellations and payments of every Duffel organisation."""

    def __init__(
        self,
        orders: pl.DataFrame,
        organisations: tuple[str, ...],
        *,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        if set(orders.columns) != set(ORDERS):
            raise ValueError("orders must have exactly the sandbox.schema.ORDERS columns")
        self.organisations = organisations
        self._clock = clock
        # Live ids must not repeat across runs (a consumer may keep yesterday's orders).
        self._salt = secrets.randbits(40)
        self._counter = 0
        self._history = _split_history(orders, organisations)
        self._lock = threading.Lock()
        self._live_keys: dict[str, list[tuple[int, str]]] = {}
        self._live_rows: dict[str, dict[str, Any]] = {}
        self._overrides: dict[str, dict[str, Any]] = {}
        self._offer_requests: OrderedDict[str, _OfferRequest] = OrderedDict()
        self._offers: dict[str, _Offer] = {}
        self._quotes: dict[str, _Quote] = {}

    # --- overlay maintenance -----------------------------------------------------------

    def add_order(self, row: Mapping[str, Any]) -> None:
        """Book an order directly (a dict with every ORDERS column), e.g. from a traffic thread."""
        wire = wire_row(row)
        if wire["tenant_id"] not in self._history:
            raise ValueError(f"unknown organisation {wire['tenant_id']!r}")
        with self._lock:
            self._insert(wire)

    def reset(self) -> None:
        """Forget everything since start-up: back to the generated history."""
        with self._lock:
            self._live_keys.clear()
            self._live_rows.clear()
            self._overrides.clear()
            self._offer_requests.clear()
            self._offers.clear()
            self._quotes.clear()

    def order_count(self, org: str) -> int:
        history = self._history.get(org)
        with self._lock:
            live = len(self._live_keys.get(org, ()))
        return live + (len(history) if history else 0)

    def _insert(self, wire: dict[str, Any]) -> None:
        order_id = wire["order_id"]
        org = wire["tenant_id"]
        if order_id in self._live_rows or self._history[org].position(order_id) is not None:
            raise ValueError(f"order {order_id} already exists")
        keys = self._live_keys.setdefault(org, [])
        key = (wire["created_at"], order_id)
        if not keys or keys[-1] < key:
            keys.append(key)  # live orders nearly always arrive in time order
        else:
            keys.insert(bisect_left(keys, key), key)
        self._live_rows[order_id] = wire

    def _now(self) -> int:
        return to_us(self._clock())

    def _new_ids(self, prefix: str, count: int) -> list[str]:
        with self._lock:
            start = self._counter
            self._counter += count
        return duffel_ids(prefix, np.arange(start, start + count), self._salt)

    # --- orders --------------------------------------------------------------------------

    def _effective(self, row: dict[str, Any]) -> dict[str, Any]:
        change = self._overrides.get(row["order_id"])
        return {**row, **change} if change else row

    def _find_order(self, org: str, order_id: str) -> dict[str, Any]:
        """The order as it stands now (lock held); 404 if it is not this organisation's."""
        row = self._live_rows.get(order_id)
        if row is None or row["tenant_id"] != org:
            history = self._history.get(org)
            position = history.position(order_id) if history else None
            if position is None:
                raise not_found()
            row = history.rows([position])[0]
        return self._effective(row)

    def get_order(self, org: str, order_id: str) -> dict[str, Any]:
        """One order as a wire row; ``DuffelError`` 404 when ``org`` cannot see it."""
        with self._lock:
            return self._find_order(org, order_id)

    def list_orders(self, org: str, query: OrderQuery, page: PageRequest) -> OrderPage:
        """One page of ``org``'s orders, oldest first, history and overlay merged seamlessly."""
        history = self._history[org]
        with self._lock:
            candidates = self._history_candidates(history, query)
            live = self._live_candidates(org, query)
            limit = page.limit
            if page.before is not None:
                key = _order_key(page.before, "before")
                end = candidates.count_before(key, inclusive=False)
                live_end = bisect_left(live, key)
                chosen = sorted(
                    candidates.items(max(end - limit - 1, 0), end)
                    + live[max(live_end - limit - 1, 0) : live_end]
                )
                has_before = len(chosen) > limit
                chosen = chosen[-limit:]
                has_after = end < len(candidates) or live_end < len(live)
            else:
                start, live_start = 0, 0
                if page.after is not None:
                    key = _order_key(page.after, "after")
                    start = candidates.count_before(key, inclusive=True)
                    live_start = bisect_right(live, key)
                stop = min(start + limit + 1, len(candidates))
                chosen = sorted(
                    candidates.items(start, stop) + live[live_start : live_start + limit + 1]
                )
                has_after = len(chosen) > limit
                chosen = chosen[:limit]
                has_before = start > 0 or live_start > 0
            rows = self._materialise(history, chosen)
        after = encode_cursor(ORDER_CURSOR, *chosen[-1][:2]) if has_after and chosen else None
        before = encode_cursor(ORDER_CURSOR, *chosen[0][:2]) if has_before and chosen else None
        return OrderPage(rows, meta(limit, after, before))

    def _history_candidates(self, history: _History, query: OrderQuery) -> _Candidates:
        """Positions of history orders passing the filters, in order (lock held)."""
        low, high = 0, len(history)
        if query.created_after is not None:
            low = int(np.searchsorted(history.created, query.created_after, "right"))
        if query.created_before is not None:
            high = int(np.searchsorted(history.created, query.created_before, "left"))
        high = max(low, high)
        if query.booking_reference is not None:
            found = history.by_reference.find(query.booking_reference)
            chosen = np.array([p for p in found if low <= p < high], dtype=np.int64)
            return _Candidates(history, low, high, chosen)
        if query.awaiting_payment is None:
            return _Candidates(history, low, high)
        waiting = history.awaiting[low:high].copy()
        # Payments and cancellations made through the API change a few orders' state.
        for order_id, change in self._overrides.items():
            position = history.position(order_id)
            if position is not None and low <= position < high:
                waiting[position - low] = awaiting_payment(
                    {**history.rows([position])[0], **change}
                )
        return _Candidates(
            history, low, high, low + np.flatnonzero(waiting == query.awaiting_payment)
        )

    def _live_candidates(self, org: str, query: OrderQuery) -> list[tuple[int, str]]:
        keys = self._live_keys.get(org, [])
        low, high = 0, len(keys)
        if query.created_after is not None:
            low = bisect_left(keys, (query.created_after + 1, ""))
        if query.created_before is not None:
            high = max(low, bisect_left(keys, (query.created_before, "")))
        chosen = keys[low:high]
        if query.booking_reference is not None:
            chosen = [
                k
                for k in chosen
                if self._live_rows[k[1]]["booking_reference"] == query.booking_reference
            ]
        if query.awaiting_payment is not None:
            chosen = [
                k
                for k in chosen
                if awaiting_payment(self._effective(self._live_rows[k[1]]))
                == query.awaiting_payment
            ]
        return chosen

    def _materialise(self, history: _History, chosen: list[tuple]) -> list[dict[str, Any]]:
        # History items are (created, id, position); live ones just (created, id).
        positions = [item[2] for item in chosen if len(item) == 3]
        fetched = iter(history.rows(positions))
        rows = []
        for item in chosen:
            row = next(fetched) if len(item) == 3 else self._live_rows[item[1]]
            rows.append(self._effective(row))
        return rows

    # --- searches --------------------------------------------------------------------------

    def search(self, org: str, data: dict[str, Any], return_offers: bool) -> Json:
        """``POST /air/offer_requests``: validate, price, remember the offers for booking."""
        now = self._now()
        search = offers.parse_search(data, from_us(now).date())
        fares = offers.fares(search)
        (request_id,) = self._new_ids("orq_", 1)
        passenger_ids = self._new_ids("pas_", len(search.passengers))
        offer_ids = self._new_ids("off_", len(fares))
        passengers = [
            offers.offer_passenger(pid, p)
            for pid, p in zip(passenger_ids, search.passengers, strict=True)
        ]
        bodies = [
            offers.offer_body(fare, oid, passengers, now)
            for fare, oid in zip(fares, offer_ids, strict=True)
        ]
        body = offers.offer_request_body(request_id, search, passengers, now)
        with self._lock:
            self._offer_requests[request_id] = _OfferRequest(body, org, offer_ids)
            for fare, oid, offer in zip(fares, offer_ids, bodies, strict=True):
                self._offers[oid] = _Offer(
                    offer, org, request_id, fare, passengers, now + offers.OFFER_TTL_US
                )
            while len(self._offer_requests) > MAX_OFFER_REQUESTS:
                _, old = self._offer_requests.popitem(last=False)
                for oid in old.offer_ids:
                    self._offers.pop(oid, None)
        return {**body, "offers": bodies} if return_offers else body

    def get_offer_request(self, org: str, request_id: str) -> Json:
        with self._lock:
            request = self._offer_requests.get(request_id)
            if request is None or request.org != org:
                raise not_found()
            offers_now = [self._offers[oid].body for oid in request.offer_ids]
        return {**request.body, "offers": offers_now}

    def get_offer(self, org: str, offer_id: str) -> Json:
        with self._lock:
            offer = self._offers.get(offer_id)
        if offer is None or offer.org != org:
            raise not_found()
        return offer.body

    def list_offers(
        self, org: str, request_id: str, page: PageRequest, sort: str | None
    ) -> tuple[list[Json], dict[str, Any]]:
        """``GET /air/offers``: one page of a search's offers, optionally sorted."""
        with self._lock:
            request = self._offer_requests.get(request_id)
            if request is None or request.org != org:
                raise not_found()
            found = [self._offers[oid] for oid in request.offer_ids]
        if sort == "total_amount":
            found.sort(key=lambda o: o.fare.total)
        elif sort == "total_duration":
            found.sort(key=lambda o: (o.fare.via is not None, o.fare.total))  # direct is shorter
        elif sort is not None:
            raise validation("sort", "Field 'sort' must be total_amount or total_duration")
        items, page_meta = page_of(found, page, OFFER_CURSOR)
        return [o.body for o in items], page_meta

    # --- booking -----------------------------------------------------------------------

    def create_order(self, org: str, data: dict[str, Any]) -> dict[str, Any]:
        """``POST /air/orders``: book one offer; returns the new order as a wire row."""
        kind = data.get("type")
        if kind not in ("instant", "hold"):
            raise validation("type", "Field 'type' must be 'instant' or 'hold'")
        selected = data.get("selected_offers")
        if not selected:
            raise required("selected_offers")
        if not isinstance(selected, list) or len(selected) != 1 or not isinstance(selected[0], str):
            raise validation("selected_offers", "Select exactly one offer id")
        metadata = _checked_metadata(data.get("metadata"))
        now = self._now()
        with self._lock:
            offer = self._offers.get(selected[0])
            if offer is None or offer.org != org or now >= offer.expires_us:
                raise invalid_state(
                    "offer_no_longer_available",
                    "Offer no longer available",
                    "The selected offer is no longer available; please search again.",
                )
            if self._offer_requests[offer.request_id].booked:
                raise invalid_state(
                    "offer_request_already_booked",
                    "Offer request already booked",
                    "An offer from this offer request has already been booked.",
                )
        passengers = _checked_passengers(data.get("passengers"), offer.passengers)
        fare = offer.fare
        if kind == "hold":
            if fare.requires_instant_payment:
                raise invalid_state(
                    "unsupported_action",
                    "Hold not available",
                    "This offer requires instant payment and cannot be held.",
                )
            if data.get("payments"):
                raise validation("payments", "Hold orders are paid later; omit 'payments'")
        else:
            _check_payment(_single_payment(data.get("payments")), fare.total, fare.currency)
        order_id, reference = self._new_ids("ord_", 1)[0], self._reference()
        _, pay_by = offers.hold_deadlines(fare, now)
        wire = {
            "tenant_id": org,
            "order_id": order_id,
            "booking_reference": reference,
            "created_at": now,
            "order_type": kind,
            "owner_iata": fare.owner,
            "cabin_class": fare.cabin,
            "passenger_count": len(passengers),
            "origin": fare.origin,
            "destination": fare.destination,
            "via": fare.via,
            "outbound_departure": fare.outbound_us,
            "return_departure": fare.inbound_us,
            "total_amount": str(fare.total),
            "base_amount": str(fare.base),
            "tax_amount": str(fare.tax),
            "total_currency": fare.currency,
            "paid_at": now if kind == "instant" else None,
            "payment_required_by": pay_by if kind == "hold" else None,
            "cancelled_at": None,
            "cancellation_id": None,
            "refund_amount": None,
            "refund_to": None,
            **{name: metadata.get(name) for name in _METADATA_COLUMNS},
            "member_given_name": passengers[0]["given_name"],
            "member_family_name": passengers[0]["family_name"],
            "raw_override": None,
            EXTRA_PASSENGERS: passengers,
            EXTRA_METADATA: metadata,
        }
        with self._lock:
            request = self._offer_requests.get(offer.request_id)
            if request is None or request.booked:  # lost a race with another booking
                raise invalid_state(
                    "offer_request_already_booked",
                    "Offer request already booked",
                    "An offer from this offer request has already been booked.",
                )
            request.booked = True
            self._insert(wire)
        return wire

    def _reference(self) -> str:
        with self._lock:
            self._counter += 1
            number = self._counter
        return pnrs(np.array([number]), self._salt)[0]

    def pay(self, org: str, data: dict[str, Any]) -> Json:
        """``POST /air/payments``: pay a hold order in full; returns the payment object."""
        order_id = data.get("order_id")
        if not isinstance(order_id, str):
            raise required("order_id")
        payment = data.get("payment")
        if not isinstance(payment, dict):
            raise required("payment")
        now = self._now()
        (payment_id,) = self._new_ids("pay_", 1)
        with self._lock:
            order = self._find_order(org, order_id)
            if order["cancelled_at"] is not None:
                raise _already_cancelled()
            if not awaiting_payment(order):
                raise invalid_state(
                    "already_paid", "Order already paid", "This order does not await payment."
                )
            _check_payment(payment, Decimal(order["total_amount"]), order["total_currency"])
            self._overrides.setdefault(order_id, {})["paid_at"] = now
        return {
            "id": payment_id,
            "live_mode": False,
            "order_id": order_id,
            "type": payment["type"],
            "amount": order["total_amount"],
            "currency": order["total_currency"],
            "created_at": utc_text(now),
        }

    # --- cancellations -----------------------------------------------------------------

    def quote_cancellation(self, org: str, data: dict[str, Any]) -> Json:
        """``POST /air/order_cancellations``: a refund quote valid for an hour."""
        order_id = data.get("order_id")
        if not isinstance(order_id, str):
            raise required("order_id")
        now = self._now()
        (quote_id,) = self._new_ids("ore_", 1)
        with self._lock:
            order = self._find_order(org, order_id)
            if order["cancelled_at"] is not None:
                raise _already_cancelled()
            amount, refund_to = refund_terms(order)
            quote = _Quote(quote_id, org, order_id, amount, order["total_currency"], refund_to, now)
            self._quotes[quote_id] = quote
        return quote.body()

    def confirm_cancellation(self, org: str, quote_id: str) -> Json:
        """``.../actions/confirm``: cancel the order on the quoted terms."""
        now = self._now()
        with self._lock:
            quote = self._quotes.get(quote_id)
            if quote is None or quote.org != org:
                raise not_found()
            order = self._find_order(org, quote.order_id)
            if quote.confirmed_us is not None or order["cancelled_at"] is not None:
                raise _already_cancelled()
            if now >= quote.created_us + HOUR_US:
                raise invalid_state(
                    "order_cancellation_expired",
                    "Cancellation quote expired",
                    "This order cancellation has expired; request a new one.",
                )
            quote.confirmed_us = now
            self._overrides.setdefault(quote.order_id, {}).update(
                {
                    "cancelled_at": now,
                    "cancellation_id": quote.id,
                    "refund_amount": quote.refund_amount,
                    "refund_to": quote.refund_to,
                    CANCELLATION_CREATED_AT: quote.created_us,
                }
            )
        return quote.body()

    def get_cancellation(self, org: str, quote_id: str) -> Json:
        with self._lock:
            quote = self._quotes.get(quote_id)
            if quote is not None and quote.org == org:
                return quote.body()
            history = self._history.get(org)
            found = history.by_cancellation.find(quote_id) if history else []
            if not found:
                raise not_found()
            row = history.rows(found[:1])[0]
        return cancellation_object(
            quote_id,
            row["order_id"],
            row["refund_amount"],
            row["total_currency"] if row["refund_amount"] is not None else None,
            row["refund_to"],
            row["cancelled_at"] - 60_000_000,
            row["cancelled_at"],
        )


def _split_history(orders: pl.DataFrame, organisations: tuple[str, ...]) -> dict[str, _History]:
    """Per-organisation histories; zero-copy slices when ``orders`` is already in order."""
    order = orders.select(pl.arg_sort_by(["tenant_id", "created_at", "order_id"]))
    order = order.to_series().to_numpy()
    if not np.array_equal(order, np.arange(orders.height)):
        orders = orders[order]  # e.g. ties on created_at not ordered by id
    result = {org: _History(ORDERS.to_frame()) for org in organisations}
    runs = orders.group_by("tenant_id", maintain_order=True).len()
    offset = 0
    for org, count in runs.iter_rows():
        result[org] = _History(orders.slice(offset, count))
        offset += count
    return result


def _order_key(parts: list[Any], name: str) -> tuple[int, str]:
    if len(parts) != 2 or not isinstance(parts[0], int) or not isinstance(parts[1], str):
        raise validation(name, f"Field '{name}' is not a valid pagination cursor")
    return parts[0], parts[1]


def _already_cancelled() -> DuffelError:
    return invalid_state(
        "already_cancelled", "Order already cancelled", "This order has already been cancelled."
    )


def _checked_metadata(value: Any) -> dict[str, str]:
    """Duffel's metadata rules: ≤50 string pairs, keys ≤40 of [A-Za-z0-9_-], values ≤500."""
    if value is None:
        return {}
    if not isinstance(value, dict) or len(value) > 50:
        raise validation("metadata", "Field 'metadata' must be an object of at most 50 pairs")
    for key, item in value.items():
        if not _METADATA_KEY.match(key):
            raise validation("metadata", f"Metadata key {key!r} must be 1-40 of A-Z a-z 0-9 _ -")
        if not isinstance(item, str) or len(item) > 500:
            raise validation("metadata", f"Metadata value of {key!r} must be a string ≤500 chars")
    return value


def _checked_passengers(value: Any, offered: list[Json]) -> list[Json]:
    """The order's passengers: exactly the offer's ids, each with a given and family name."""
    if not value:
        raise required("passengers")
    if not isinstance(value, list) or not all(isinstance(p, dict) for p in value):
        raise validation("passengers", "Field 'passengers' must be a list of objects")
    by_id = {p["id"]: p for p in offered}
    if sorted(str(p.get("id")) for p in value) != sorted(by_id):
        raise validation("passengers", "Passenger ids must be exactly those of the offer")
    result = []
    for index, given in enumerate(value):
        for name in ("given_name", "family_name"):
            if not isinstance(given.get(name), str) or not given[name].strip():
                raise required(name, f"/passengers/{index}/{name}")
        result.append(
            {
                "id": given["id"],
                "type": by_id[given["id"]]["type"],
                "title": given.get("title"),
                "gender": given.get("gender"),
                "given_name": given["given_name"],
                "family_name": given["family_name"],
                "born_on": given.get("born_on"),
                "email": given.get("email"),
                "phone_number": given.get("phone_number"),
                "infant_passenger_id": given.get("infant_passenger_id"),
                "loyalty_programme_accounts": given.get("loyalty_programme_accounts") or [],
            }
        )
    return result


def _single_payment(value: Any) -> dict[str, Any]:
    if not value:
        raise required("payments")
    if not isinstance(value, list) or len(value) != 1 or not isinstance(value[0], dict):
        raise validation("payments", "Give exactly one payment")
    return value[0]


def _check_payment(payment: dict[str, Any], total: Decimal, currency: str) -> None:
    """Type known, amount and currency exactly the order's (Duffel's own error codes)."""
    if payment.get("type") not in _PAYMENT_TYPES:
        raise validation("type", f"Payment 'type' must be one of {', '.join(_PAYMENT_TYPES)}")
    try:
        amount = Decimal(str(payment.get("amount")))
    except InvalidOperation:
        raise validation("amount", "Payment 'amount' must be a decimal string") from None
    if payment.get("currency") != currency:
        raise validation(
            "currency",
            f"The payment currency must be the order's currency, {currency}",
            code="payment_currency_does_not_match_order_currency",
            title="Payment currency does not match order currency",
        )
    if amount != total:
        raise validation(
            "amount",
            f"The payment amount must equal the order's total, {total}",
            code="payment_amount_does_not_match_order_amount",
            title="Payment amount does not match order amount",
        )
