"""The wire contract: request bodies, and the shapes of the answers for the OpenAPI document."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

T = TypeVar("T")

Cabin = Literal["economy", "premium_economy", "business", "first"]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PassengerCounts(_Body):
    adults: int = Field(default=1, ge=0, le=9)
    children: int = Field(default=0, ge=0, le=9)
    infants: int = Field(default=0, ge=0, le=9)


class SearchRequest(_Body):
    origin: str = Field(pattern=r"^[A-Za-z]{3}$", description="IATA airport or city code")
    destination: str = Field(pattern=r"^[A-Za-z]{3}$")
    departure_date: dt.date
    return_date: dt.date | None = None
    passengers: PassengerCounts = PassengerCounts()
    cabin_class: Cabin = "economy"
    currency: str | None = Field(default=None, pattern=r"^[A-Za-z]{3,16}$")

    @field_validator("return_date")
    @classmethod
    def _return_after_departure(cls, value: dt.date | None, info: Any) -> dt.date | None:
        departure = info.data.get("departure_date")
        if value is not None and departure is not None and value < departure:
            raise ValueError("must not be before departure_date")
        return value


class Passenger(_Body):
    type: Literal["adult", "child", "infant"] = "adult"
    title: str | None = Field(default=None, max_length=10)
    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    date_of_birth: dt.date | None = None
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


class Payment(_Body):
    method: Literal["loyalty_points"] = "loyalty_points"
    amount: Decimal | None = Field(
        default=None, gt=0, allow_inf_nan=False, description="the price the member was shown"
    )
    currency: str | None = None


class Contact(_Body):
    email: str | None = Field(default=None, max_length=254)
    phone: str | None = Field(default=None, max_length=32)


class BookingRequest(_Body):
    flight_id: str = Field(min_length=1, max_length=64, description="an offer id from a search")
    passengers: list[Passenger] = Field(min_length=1, max_length=9)
    payment: Payment = Payment()
    contact: Contact | None = None


class CancelRequest(_Body):
    reason: str | None = Field(default=None, max_length=500)
    refund_requested: bool = True


class WebhookRegistration(_Body):
    url: str = Field(pattern=r"^https?://", max_length=2000)


class ApprovalDecision(_Body):
    decision: Literal["approve", "reject"]
    operator: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.@-]+$",
        description="who decides; recorded as the event's actor (operator:<name>)",
    )
    note: str | None = Field(default=None, max_length=1000)

    @property
    def actor(self) -> str:
        return f"operator:{self.operator}" if self.operator else "operator"


class RefundAction(_Body):
    """An operator settles an owed refund: send it once more, or record it as already made."""

    action: Literal["retry", "mark_refunded"] = Field(
        description="retry: send the refund to the tenant once now; mark_refunded: the "
        "operator confirmed with the tenant that it was paid (nothing is sent)"
    )
    operator: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9_.@-]+$",
        description="who acts; recorded as the event's actor",
    )
    note: str | None = Field(default=None, max_length=1000)
    refund_transaction_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=64,
        description="mark_refunded only: the tenant's refund id, when the operator has it",
    )

    @field_validator("refund_transaction_id")
    @classmethod
    def _only_when_marking(cls, value: str | None, info: Any) -> str | None:
        if value is not None and info.data.get("action") != "mark_refunded":
            raise ValueError("only with action mark_refunded")
        return value


# --- answers (documented in the OpenAPI document; money is exact decimal text) -----------

Money = Annotated[str, Field(pattern=r"^-?\d+(\.\d+)?$", examples=["41235", "412.35"])]


class _Doc(BaseModel):
    model_config = ConfigDict(extra="allow")


class Data(_Doc, Generic[T]):
    """Every successful body: ``{"data": ...}``."""

    data: T


class Airline(_Doc):
    code: str | None
    name: str | None


class FlightPoint(_Doc):
    airport: str | None
    time: str = Field(description="airport-local time, ISO 8601")
    terminal: str | None


class FlightPrice(_Doc):
    amount: Money = Field(description="the fare as Duffel quotes it")
    currency: str
    usd_equivalent: Money
    loyalty_amount: Money = Field(description="rounded up to the loyalty currency's minor unit")
    loyalty_currency: str


class ReturnLeg(_Doc):
    departure: FlightPoint
    arrival: FlightPoint
    duration: str | None


class Flight(_Doc):
    id: str = Field(description="the offer id to book with (flight_id)")
    airline: Airline
    flight_number: str | None
    departure: FlightPoint
    arrival: FlightPoint
    duration: str | None = Field(description="ISO 8601 duration")
    stops: int
    # "return" is a Python keyword: the wire name is kept by the alias.
    return_leg: ReturnLeg | None = Field(alias="return")
    price: FlightPrice
    available_seats: int | None = Field(description="Duffel publishes no seat counts: null")
    cabin_class: str
    expires_at: str | None


class SearchMetadata(_Doc):
    total_results: int
    search_time_ms: int
    currency: str | None


class SearchResult(_Doc):
    search_id: str
    flights: list[Flight]
    metadata: SearchMetadata


class Ticket(_Doc):
    name: str
    type: str | None
    ticket_number: str | None


class PaymentView(_Doc):
    method: str
    loyalty_amount: Money
    loyalty_currency: str
    usd_equivalent: Money
    usd_per_unit: str
    cashback: Money | None = Field(description="as the tenant reported it (FintechApp)")
    loyalty_transaction_id: str | None


class RefundView(_Doc):
    status: Literal["completed", "pending", "not_requested", "not_applicable"]
    loyalty_amount: Money
    loyalty_currency: str
    fee: Money
    net_refund: Money
    processed_at: str | None
    refund_transaction_id: str | None


class FailureView(_Doc):
    code: str
    reason: str | None


class StatusChange(_Doc):
    status: str
    from_status: str | None
    at: str
    detail: str | None


class BookingView(_Doc):
    booking_id: str
    status: str
    tenant_id: str
    member_id: str
    flight: Flight
    passengers: list[Ticket]
    payment: PaymentView
    booking_reference: str | None
    duffel_order_id: str | None
    created_at: str
    updated_at: str
    expires_at: str | None
    approval_required: bool | None = None
    approval_id: str | None = None
    approval_reason: str | None = None
    estimated_approval_time: str | None = None
    failure: FailureView | None = None
    refund: RefundView | None = None
    seats: list[Any] | None = Field(default=None, description="seat assignments (none yet)")
    status_history: list[StatusChange] | None = None


class BookingSummary(_Doc):
    booking_id: str
    status: str
    flight_number: str | None
    departure_date: str | None
    route: str | None
    loyalty_amount: Money
    loyalty_currency: str
    created_at: str


class Pagination(_Doc):
    total: int
    limit: int
    offset: int
    has_more: bool


class BookingList(_Doc):
    bookings: list[BookingSummary]
    pagination: Pagination


class CancelResult(_Doc):
    booking_id: str
    status: str
    refund: RefundView


class BookingEvent(_Doc):
    id: str = Field(description="also the cursor: the feed is ordered by it")
    booking_id: str
    tenant_id: str
    member_id: str
    type: str
    from_state: str | None
    to_state: str
    loyalty_amount: Money | None
    loyalty_currency: str | None
    cashback_amount: Money | None
    refund_amount: Money | None
    usd_amount: Money | None
    usd_per_unit: str | None
    fare_amount: str | None
    fare_currency: str | None
    fx_rate: str | None
    loyalty_transaction_id: str | None
    refund_transaction_id: str | None
    duffel_order_id: str | None
    detail: str | None
    actor: str | None = Field(
        default=None, description="who made it happen (e.g. operator:alice); null for the saga"
    )
    occurred_at: str


class EventPage(_Doc):
    events: list[BookingEvent]
    next_cursor: str = Field(description="pass as ?cursor= to read on; stable when empty")
    has_more: bool


class FlightSearchRecord(_Doc):
    id: str = Field(description="also the cursor: the feed is ordered by it")
    search_id: str = Field(description="the search's id as its answer gave it")
    tenant_id: str
    member_id: str
    origin: str
    destination: str
    departure_date: str
    return_date: str | None
    cabin_class: str
    passengers: PassengerCounts
    result_count: int = Field(description="flights the member was shown")
    occurred_at: str


class SearchPage(_Doc):
    searches: list[FlightSearchRecord]
    next_cursor: str = Field(description="pass as ?cursor= to read on; stable when empty")
    has_more: bool


class OperatorBookings(_Doc):
    bookings: list[BookingView]


class Health(_Doc):
    status: Literal["healthy", "degraded", "unhealthy"]
    can_book: bool
    store: dict[str, Any]
    duffel: dict[str, Any]
    tenants: dict[str, dict[str, Any]]


class WebhookAck(_Doc):
    event_id: str
    duplicate: bool
    booking_id: str | None


class WebhookSubscription(_Doc):
    tenant_id: str
    url: str
    secret: str = Field(description="shown only in this answer; signs every delivery")
    events: list[str]
    signature_header: str


class WebhookDelivery(_Doc):
    event_id: str
    tenant_id: str
    type: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: str | None
    last_error: str | None
    delivered_at: str | None


class WebhookDeliveries(_Doc):
    deliveries: list[WebhookDelivery]


class RouteStats(_Doc):
    tenant_id: str | None = Field(description="null: requests that named no tenant")
    route: str = Field(description="method and route template, e.g. POST /api/v1/bookings")
    requests: int
    client_errors: int = Field(description="4xx answers other than 429")
    server_errors: int = Field(description="5xx answers")
    throttled: int = Field(description="429 answers (the tenant's rate limit)")
    latency_ms_mean: float | None
    latency_ms_p50_at_most: int | None = Field(
        description="upper bound of the latency bucket holding the median; null above the last"
    )
    latency_ms_p95_at_most: int | None
    latency_ms_max: float


class RequestStatsPage(_Doc):
    since: str = Field(description="start of the window (UTC minute)")
    bucket_bounds_ms: list[int]
    routes: list[RouteStats]
