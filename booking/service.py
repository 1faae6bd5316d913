"""The service layer: searches, the booking saga, cancellations, approvals and the reconciler.

Each saga phase is one unit of work (state change + event commit together); upstream calls
happen between commits, never inside an open transaction, each carrying the booking id as
its idempotent reference. Before a call whose outcome could be lost (a deduction, a Duffel
order), the phase is marked as attempted in its own commit: a driver that finds the mark
after a crash never repeats the call blindly, it reconciles (Brandur Leach's recovery
points). One driver at a time holds a booking's lease; a lapsed lease lets the reconciler
resume a crashed driver's saga.
"""

from __future__ import annotations

import contextvars
import dataclasses
import datetime as dt
import hashlib
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from booking.config import BookingSettings
from booking.domain import (
    UNFINISHED,
    Status,
    after_refund,
    cabin_allowed,
    needs_approval,
)
from booking.errors import Problem, from_upstream, not_found, validation
from booking.schemas import (
    ApprovalDecision,
    BookingRequest,
    CancelRequest,
    RefundAction,
    SearchRequest,
)
from booking.store.repository import utcnow
from booking.store.tables import (
    BookingRow,
    DuffelEventRow,
    FlightSearchRow,
    IdempotencyRow,
    OfferRow,
)
from booking.store.uow import Store
from booking.upstream import Upstreams
from booking.views import (
    CASHBACK_DECIMALS,
    booking_summary,
    booking_view,
    cancel_view,
    event_view,
    flight_view,
    loyalty_amount,
    money,
    offer_cabin,
    refund_view,
    search_view,
)
from clients.duffel.models import DuffelOrder, Offer
from clients.duffel.webhooks import DuffelWebhookEvent
from clients.errors import (
    BusinessRuleError,
    DuffelError,
    DuffelNotFound,
    InsufficientFunds,
    NotFound,
    NotSupported,
    OrderOutcomeUnknown,
    RateLimited,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from clients.loyalty.models import LedgerTransaction
from tenants.pricing import (
    PricingError,
    fare_to_usd,
    loyalty_units_for_usd,
    to_minor,
)
from tenants.registry import TenantConfig

log = logging.getLogger("booking.service")

# How far before a booking's creation the reconciler looks for its Duffel order or charge.
LOOKBACK = dt.timedelta(minutes=10)
BOOK_PATH = "/api/v1/bookings"


@dataclasses.dataclass(frozen=True)
class Member:
    """An authenticated member of a tenant (the tenant accepted their credential)."""

    tenant: TenantConfig
    member_id: str


@dataclasses.dataclass(frozen=True)
class Answer:
    """A successful answer: HTTP status and the ``data`` member of the body."""

    status: int
    data: dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Price:
    """An offer priced for a tenant at the rate in force today."""

    fare_amount: Decimal
    fare_currency: str
    fx_rate: Decimal
    usd: Decimal
    usd_per_unit: Decimal
    loyalty: Decimal


def request_hash(method: str, path: str, body: dict[str, Any]) -> str:
    """A fingerprint of a request: same key + same body replays, another body conflicts."""
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def outcome_unknown(exc: UpstreamError) -> bool:
    """Whether a failed money call may have been acted on upstream (never repeat it blindly)."""
    if isinstance(exc, OrderOutcomeUnknown):
        return True
    if exc.not_sent or isinstance(exc, RateLimited):
        return False  # never sent, or refused before processing
    if isinstance(exc, UpstreamTimeout) or (
        isinstance(exc, UpstreamUnavailable) and exc.status is None
    ):
        return True
    if isinstance(exc, UpstreamUnavailable):
        return exc.status in (500, 502, 504)
    return False


class BookingService:
    """Everything the API does, over the store and the tenants' and Duffel's clients."""

    def __init__(
        self,
        store: Store,
        upstreams: Upstreams,
        registry: dict[str, TenantConfig],
        settings: BookingSettings,
        *,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.store = store
        self.upstreams = upstreams
        self.registry = registry
        self.settings = settings
        self.clock = clock
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    # --- helpers -----------------------------------------------------------------------

    def tenant(self, tenant_id: str) -> TenantConfig:
        tenant = self.registry.get(tenant_id)
        if tenant is None:
            raise Problem(401, "unknown-tenant", "X-Tenant-ID names no tenant of this platform.")
        return tenant

    def _lease(self) -> dt.timedelta:
        return dt.timedelta(seconds=self.settings.saga_lease_seconds)

    def price(self, tenant: TenantConfig, offer: Offer, day: dt.date) -> Price:
        """The offer in USD (FX of the day) and in loyalty units (rounded up)."""
        try:
            usd, fx_rate = fare_to_usd(offer.total_amount, offer.total_currency, day)
            units, rate = loyalty_units_for_usd(usd, tenant.currency, day)
        except PricingError as exc:
            raise Problem(
                422, "upstream-rejected", f"The fare of {offer.id} cannot be priced: {exc}"
            ) from exc
        return Price(offer.total_amount, offer.total_currency, fx_rate, usd, rate, units)

    # --- search ------------------------------------------------------------------------

    def search(self, member: Member, request: SearchRequest) -> dict[str, Any]:
        """Offers from Duffel with the tenant's own token, priced in the tenant's currency."""
        tenant = member.tenant
        if not cabin_allowed(request.cabin_class, tenant.rules.allowed_cabins):
            raise _cabin_refused(tenant, request.cabin_class)
        slices = [
            {
                "origin": request.origin.upper(),
                "destination": request.destination.upper(),
                "departure_date": request.departure_date.isoformat(),
            }
        ]
        if request.return_date:
            slices.append(
                {
                    "origin": request.destination.upper(),
                    "destination": request.origin.upper(),
                    "departure_date": request.return_date.isoformat(),
                }
            )
        counts = request.passengers
        passengers: list[dict[str, Any]] = [{"type": "adult"}] * counts.adults
        passengers += [{"age": 10}] * counts.children + [{"age": 1}] * counts.infants
        if not passengers:
            raise validation("passengers", "at least one passenger is required")
        started = time.monotonic()
        try:
            found = self.upstreams.duffel(tenant).create_offer_request(
                slices, passengers, cabin_class=request.cabin_class
            )
        except DuffelError as exc:
            if exc.status == 422:
                raise validation("search", exc.message) from exc
            raise from_upstream(exc, "searching flights") from exc
        except UpstreamError as exc:
            raise from_upstream(exc, "searching flights") from exc
        now = self.clock()
        flights, rows = [], []
        for offer in found.offers:
            cabin = offer_cabin(offer)
            if not cabin_allowed(cabin, tenant.rules.allowed_cabins):
                continue
            try:
                price = self.price(tenant, offer, now.date())
            except Problem as problem:
                log.warning("offer %s skipped: %s", offer.id, problem.detail)
                continue
            flights.append(
                flight_view(
                    offer,
                    loyalty_amount=price.loyalty,
                    loyalty_currency=tenant.currency.code,
                    usd=price.usd,
                )
            )
            rows.append(
                OfferRow(
                    id=offer.id,
                    tenant_id=tenant.id,
                    search_id=found.id,
                    cabin_class=cabin,
                    expires_at=offer.expires_at,
                    created_at=now,
                )
            )
        with self.store.uow() as uow:
            uow.offers.add_all(rows)
            uow.offers.forget_before(now - dt.timedelta(days=1))
            # The answered search, in the same commit as its offers: the funnel's first step.
            uow.searches.append(
                FlightSearchRow(
                    search_id=found.id,
                    tenant_id=tenant.id,
                    member_id=member.member_id,
                    origin=request.origin.upper(),
                    destination=request.destination.upper(),
                    departure_date=request.departure_date,
                    return_date=request.return_date,
                    cabin_class=request.cabin_class,
                    adults=counts.adults,
                    children=counts.children,
                    infants=counts.infants,
                    result_count=len(flights),
                    occurred_at=now,
                )
            )
            uow.commit()
        return {
            "search_id": found.id,
            "flights": flights,
            "metadata": {
                "total_results": len(flights),
                "search_time_ms": round((time.monotonic() - started) * 1000),
                "currency": request.currency,
            },
        }

    # --- idempotency keys --------------------------------------------------------------

    def _open_key(
        self, member: Member, key: str, path: str, fingerprint: str
    ) -> tuple[int, str, Answer | None]:
        """(key record id, the booking id it is for, the stored answer to replay if any)."""
        if not key or len(key) > 255:
            raise Problem(
                400,
                "idempotency-key-required",
                "Send an Idempotency-Key header (1-255 characters) with this request.",
            )
        now = self.clock()
        for _ in range(2):
            with self.store.uow() as uow:
                record = uow.idempotency.find(member.tenant.id, member.member_id, key)
                if record is None:
                    booking_id = "bkg_" + uuid.uuid4().hex[:20]
                    record = IdempotencyRow(
                        tenant_id=member.tenant.id,
                        member_id=member.member_id,
                        key=key,
                        method="POST",
                        path=path,
                        request_hash=fingerprint,
                        booking_id=booking_id if path == BOOK_PATH else None,
                        locked_until=now + self._lease(),
                        created_at=now,
                        updated_at=now,
                    )
                    uow.idempotency.add(record)
                    try:
                        uow.commit()
                    except sa.exc.IntegrityError:
                        continue  # a concurrent first request won the insert: read its record
                    return record.id, record.booking_id or "", None
                if record.path != path or record.request_hash != fingerprint:
                    raise Problem(
                        422,
                        "idempotency-conflict",
                        "This Idempotency-Key was used with a different request; use a new key.",
                    )
                held = record.locked_until is not None and record.locked_until > now
                if record.response_status is not None and not held:
                    return record.id, record.booking_id or "", _replay(record)
                if not uow.idempotency.lock(record.id, now + self._lease(), now):
                    raise Problem(
                        409,
                        "request-in-progress",
                        "A request with this Idempotency-Key is still being processed.",
                        retry_after=5,
                    )
                uow.commit()
                return record.id, record.booking_id or "", None
        raise Problem(409, "request-in-progress", "Retry the request.", retry_after=1)

    def _close_key(self, record_id: int, answer: Answer | Problem, booking_id: str | None) -> None:
        with self.store.uow() as uow:
            uow.idempotency.respond(record_id, *_encode_answer(answer), booking_id)
            uow.commit()

    def _release_key(self, record_id: int) -> None:
        with self.store.uow() as uow:
            uow.idempotency.unlock(record_id)
            uow.commit()

    # --- book ----------------------------------------------------------------------------

    def book(self, member: Member, request: BookingRequest, key: str, fingerprint: str) -> Answer:
        """Price, (approve), charge, order: the booking saga, answered once per key."""
        record_id, booking_id, replay = self._open_key(member, key, BOOK_PATH, fingerprint)
        if replay is not None:
            return replay
        token = _REPLY.set(_Reply(record_id, booking_id, _settled_book_answer))
        try:
            with self.store.uow() as uow:
                existing = uow.bookings.get(booking_id)
            if existing is None:
                self._start_booking(member, request, booking_id)
            else:
                self.drive(booking_id)
        except Problem as problem:
            if problem.status >= 500 or problem.slug == "request-in-progress":
                self._release_key(record_id)  # nothing decided: the same request may retry
                raise
            return self._finish(record_id, booking_id, problem, _book_answer)
        except Exception:
            self._release_key(record_id)
            raise
        finally:
            _REPLY.reset(token)
        return self._finish(record_id, booking_id, None, _book_answer)

    def _finish(
        self,
        record_id: int,
        booking_id: str,
        problem: Problem | None,
        render: Callable[[BookingRow], Answer | Problem],
    ) -> Answer:
        """Answer the request exactly as its key will replay it."""
        with self.store.uow() as uow:
            record = uow.idempotency.get(record_id)
            stored = record is not None and record.response_status is not None
            if stored:
                uow.idempotency.unlock(record_id)
                uow.commit()
        if stored:
            return _replay(record)  # kept with the state change that settled the request
        answer: Answer | Problem
        if problem is not None:
            answer = problem  # refused before any state change: kept on its own
        else:
            with self.store.uow() as uow:
                row = uow.bookings.get(booking_id)
            answer = render(row)
            if isinstance(answer, Answer) and answer.data["status"] in _IN_PROGRESS:
                self._release_key(record_id)  # another driver holds the saga; retry later
                return answer
        self._close_key(record_id, answer, booking_id)
        if isinstance(answer, Problem):
            raise answer
        return answer

    def _keep_reply(self, uow: Any, row: BookingRow) -> None:
        """Store the request's answer in the same commit as the state change that settles it."""
        reply = _REPLY.get()
        if reply is None or reply.booking_id != row.id:
            return
        answer = reply.render(row)
        if answer is None:
            return
        uow.idempotency.respond(reply.record_id, *_encode_answer(answer), row.id, keep_lock=True)

    def _fresh_offer(self, tenant: TenantConfig, offer_id: str) -> Offer:
        """The offer as Duffel returns it now; gone or past its expiry is 410."""
        try:
            offer = self.upstreams.duffel(tenant).get_offer(offer_id)
        except DuffelNotFound as exc:
            raise _offer_expired(offer_id) from exc
        except UpstreamError as exc:
            raise from_upstream(exc, "fetching the offer") from exc
        if offer.expires_at is not None and offer.expires_at <= self.clock():
            raise _offer_expired(offer_id)
        return offer

    def _start_booking(self, member: Member, request: BookingRequest, booking_id: str) -> None:
        tenant = member.tenant
        with self.store.uow() as uow:
            known = uow.offers.get(tenant.id, request.flight_id)
        # The cabin rule is checked before any upstream call when the search was ours.
        if known is not None and not cabin_allowed(known.cabin_class, tenant.rules.allowed_cabins):
            raise _cabin_refused(tenant, known.cabin_class)
        offer = self._fresh_offer(tenant, request.flight_id)
        cabin = offer_cabin(offer)
        if not cabin_allowed(cabin, tenant.rules.allowed_cabins):
            raise _cabin_refused(tenant, cabin)
        passengers = _match_passengers(request, offer)
        now = self.clock()
        price = self.price(tenant, offer, now.date())
        if request.payment.currency and request.payment.currency != tenant.currency.code:
            raise validation(
                "payment.currency",
                f"{tenant.name} bookings are paid in {tenant.currency.code}",
            )
        if request.payment.amount is not None and request.payment.amount != price.loyalty:
            raise Problem(
                409,
                "price-changed",
                f"The price is now {money(price.loyalty)} {tenant.currency.code}, not "
                f"{money(request.payment.amount)}; confirm the new price to book.",
                price={
                    "loyalty_amount": money(price.loyalty),
                    "loyalty_currency": tenant.currency.code,
                    "usd_equivalent": money(price.usd),
                    "amount": money(price.fare_amount),
                    "currency": price.fare_currency,
                },
            )
        status = Status.CHARGING
        approval = None
        if needs_approval(price.loyalty, tenant.rules.approval_threshold):
            try:
                approval = self.upstreams.loyalty(tenant).check_approval(
                    member.member_id, price.loyalty, booking_id
                )
            except NotSupported:
                approval = None
            except UpstreamError as exc:
                raise from_upstream(exc, "checking whether the booking needs approval") from exc
            if approval is not None and approval.approval_required:
                status = Status.PENDING_APPROVAL
        flight = flight_view(
            offer,
            loyalty_amount=price.loyalty,
            loyalty_currency=tenant.currency.code,
            usd=price.usd,
        )
        first = offer.slices[0]
        driver = self._driver()
        row = BookingRow(
            id=booking_id,
            tenant_id=tenant.id,
            member_id=member.member_id,
            status=status.value,
            offer_id=offer.id,
            cabin_class=cabin,
            flight=flight,
            passengers=passengers,
            contact=request.contact.model_dump(mode="json") if request.contact else None,
            departure_date=first.segments[0].departing_at.date().isoformat(),
            flight_number=flight["flight_number"],
            route=f"{first.origin.iata_code}-{first.destination.iata_code}",
            offer_expires_at=offer.expires_at,
            approval_id=approval.approval_id if approval else None,
            approval_reason=approval.reason if approval else None,
            estimated_approval_time=approval.estimated_time if approval else None,
            cancel_requested=False,
            refund_requested=True,
            # The creating request drives the saga: nobody else may until this lapses.
            lease_owner=driver if status is Status.CHARGING else None,
            lease_until=now + self._lease() if status is Status.CHARGING else None,
            created_at=now,
            updated_at=now,
            **_price_columns(tenant, price),
        )
        with self.store.uow() as uow:
            uow.bookings.add(row, detail="approval required" if approval else None)
            self._keep_reply(uow, row)
            uow.commit()
        if status is Status.CHARGING:
            self.drive(booking_id, driver)

    # --- the saga driver -----------------------------------------------------------------

    def _driver(self) -> str:
        """A lease holder's name: one per drive, so two threads of a process never share one."""
        return f"{self.owner}:{uuid.uuid4().hex[:8]}"

    def drive(self, booking_id: str, driver: str | None = None) -> None:
        """Push the saga as far as it can go now, holding the booking's lease.

        ``driver`` is the lease holder when the caller took the lease in its own commit.
        """
        driver = driver or self._driver()
        now = self.clock()
        with self.store.uow() as uow:
            if not uow.bookings.claim(booking_id, driver, now + self._lease(), now):
                return  # another live driver has it
            uow.commit()
        done = threading.Event()
        heartbeat = threading.Thread(
            target=self._keep_lease, args=(booking_id, driver, done), daemon=True
        )
        heartbeat.start()
        try:
            for _ in range(12):  # every step moves forward; this only bounds a surprise
                with self.store.uow() as uow:
                    row = uow.bookings.get(booking_id)
                if row is None or not self._advance(row):
                    return
        finally:
            done.set()
            heartbeat.join()
            with self.store.uow() as uow:
                uow.bookings.release(booking_id, driver)
                uow.commit()

    def _keep_lease(self, booking_id: str, driver: str, done: threading.Event) -> None:
        # A short lease renewed while the driver lives: a crashed driver's saga is picked up
        # within one lease, however long the upstream call it died in could have taken.
        while not done.wait(self.settings.saga_lease_seconds / 3):
            now = self.clock()
            try:
                with self.store.uow() as uow:
                    uow.bookings.claim(booking_id, driver, now + self._lease(), now)
                    uow.commit()
            except Exception:  # a missed renewal only risks a second driver later; logged
                log.exception("renewing the lease of %s failed", booking_id)

    def _advance(self, row: BookingRow) -> bool:
        """One step from the booking's state; False when nothing more can happen now."""
        status = Status(row.status)
        tenant = self.registry[row.tenant_id]
        if status is Status.CHARGING:
            return self._charge(row, tenant)
        if status is Status.ORDERING:
            return self._order(row, tenant)
        if status is Status.NEEDS_RECONCILIATION:
            return self._reconcile(row, tenant)
        if status is Status.REFUND_PENDING:
            return self._refund(row, tenant)
        if status is Status.CANCELLING:
            return self._cancel_step(row, tenant)
        return False

    def _step(self, booking_id: str, target: Status, detail: str | None = None, **changes: Any):
        """One phase's commit: the state change and its event, together."""
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id, for_update=True)
            uow.bookings.transition(row, target, detail, **changes)
            self._keep_reply(uow, row)
            uow.commit()

    def _mark(self, booking_id: str, **changes: Any) -> None:
        """A recovery point without a state change (e.g. "a charge is being attempted")."""
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id, for_update=True)
            for name, value in changes.items():
                setattr(row, name, value)
            row.updated_at = self.clock()
            uow.commit()

    def _unknown(self, row: BookingRow, phase: str, why: str) -> bool:
        """Hold the booking for reconciliation of ``phase``; False: this call cannot go on."""
        deadline = self.clock() + dt.timedelta(seconds=self.settings.reconcile_deadline_seconds)
        self._step(
            row.id,
            Status.NEEDS_RECONCILIATION,
            why,
            reconcile_phase=phase,
            reconcile_deadline=deadline,
        )
        return False

    def _charge(self, row: BookingRow, tenant: TenantConfig) -> bool:
        if row.reconcile_phase == "charge":
            # A previous driver may have reached the tenant before it stopped: reconcile next.
            self._unknown(row, "charge", "a charge attempt was interrupted")
            return True
        self._mark(row.id, reconcile_phase="charge")
        amount = loyalty_amount(row)
        try:
            deduction = self.upstreams.loyalty(tenant).deduct(
                row.member_id,
                amount,
                reference_id=row.id,
                description=f"Flight booking {row.route} {row.flight_number or ''}".strip(),
                travel_class=row.cabin_class,
            )
        except InsufficientFunds as exc:
            current = next(
                (
                    exc.details[k]
                    for k in ("current_balance", "current_points", "current_coins")
                    if k in exc.details
                ),
                None,
            )
            self._step(
                row.id,
                Status.FAILED,
                "insufficient balance",
                reconcile_phase=None,
                failure_code="insufficient_balance",
                failure_reason=exc.message,
                failure_details={
                    "current": None if current is None else str(current),
                    "required": money(amount),
                    "currency": row.loyalty_currency,
                },
            )
            return False
        except UpstreamError as exc:
            if outcome_unknown(exc):
                return self._unknown(row, "charge", f"charge outcome unknown: {exc.message}")
            code = "charge_refused" if isinstance(exc, BusinessRuleError) else "upstream_error"
            self._step(
                row.id,
                Status.FAILED,
                f"charge not made: {exc.message}",
                reconcile_phase=None,
                failure_code=code,
                failure_reason=exc.message,
                failure_details={"upstream_status": exc.status, "upstream_code": exc.code},
            )
            return False
        cashback = deduction.cashback_earned or Decimal(0)
        self._step(
            row.id,
            Status.ORDERING,
            "charged",
            reconcile_phase=None,
            loyalty_transaction_id=deduction.transaction_id,
            cashback_minor=to_minor(cashback, CASHBACK_DECIMALS) if cashback else None,
        )
        return True

    def _order(self, row: BookingRow, tenant: TenantConfig) -> bool:
        if row.reconcile_phase == "order":
            self._unknown(row, "order", "an order attempt was interrupted")
            return True
        self._mark(row.id, reconcile_phase="order")
        passengers = [
            {
                "id": p["duffel_passenger_id"],
                "title": (p.get("title") or "").lower() or None,
                "given_name": p["first_name"],
                "family_name": p["last_name"],
                "born_on": p.get("date_of_birth"),
                "email": p.get("email") or (row.contact or {}).get("email"),
                "phone_number": p.get("phone") or (row.contact or {}).get("phone"),
            }
            for p in row.passengers
        ]
        try:
            order = self.upstreams.duffel(tenant).create_order(
                row.offer_id,
                passengers,
                payments=[
                    {
                        "type": "balance",
                        "amount": Decimal(row.fare_amount),
                        "currency": row.fare_currency,
                    }
                ],
                metadata={
                    "booking_id": row.id,
                    "tenant_id": row.tenant_id,
                    "member_id": row.member_id,
                    "loyalty_transaction_id": row.loyalty_transaction_id or "",
                },
            )
        except UpstreamError as exc:
            if outcome_unknown(exc):
                return self._unknown(row, "order", f"order outcome unknown: {exc.message}")
            expired = exc.code in ("offer_no_longer_available", "offer_expired")
            self._step(
                row.id,
                Status.REFUND_PENDING,
                f"order not made: {exc.message}",
                reconcile_phase=None,
                failure_code="offer_expired" if expired else "order_failed",
                failure_reason=exc.message,
                failure_details={"upstream_status": exc.status, "upstream_code": exc.code},
            )
            return True
        self._confirm(row, order, "ordered")
        return True

    def _confirm(self, row: BookingRow, order: DuffelOrder, detail: str) -> None:
        tickets = []
        ids = [p.get("duffel_passenger_id") for p in row.passengers]
        for document in order.documents:
            for pid in document.passenger_ids:
                if pid in ids:
                    tickets.append(
                        {
                            "passenger_index": ids.index(pid),
                            "ticket_number": document.unique_identifier,
                        }
                    )
        self._step(
            row.id,
            Status.CONFIRMED,
            detail,
            reconcile_phase=None,
            reconcile_deadline=None,
            duffel_order_id=order.id,
            booking_reference=order.booking_reference,
            tickets=tickets,
        )

    def _find_order(self, row: BookingRow, tenant: TenantConfig) -> DuffelOrder | None:
        """The Duffel order made for this booking, matched by ``metadata.booking_id``."""
        found = self.upstreams.duffel(tenant).find_orders(
            row.created_at - LOOKBACK, {"booking_id": row.id}
        )
        return found[0] if found else None

    def _find_charge(self, row: BookingRow, tenant: TenantConfig) -> str | None:
        """The tenant's deduction for this booking (reference = booking id), from its ledger."""
        client = self.upstreams.loyalty(tenant)
        for page in client.iter_ledger(updated_since=row.created_at - LOOKBACK):
            for entry in page:
                if entry.reference_id == row.id and entry.type == "deduction":
                    return entry.transaction_id
        return None

    def _reconcile(self, row: BookingRow, tenant: TenantConfig) -> bool:
        past_deadline = (
            row.reconcile_deadline is not None and self.clock() >= row.reconcile_deadline
        )
        try:
            if row.reconcile_phase == "charge":
                if tenant.capabilities.ledger_feed is None:
                    return False  # only an operator can tell: the tenant offers no ledger
                transaction_id = self._find_charge(row, tenant)
                if transaction_id is not None:
                    self._step(
                        row.id,
                        Status.ORDERING,
                        "charge found in the tenant's ledger",
                        reconcile_phase=None,
                        reconcile_deadline=None,
                        loyalty_transaction_id=transaction_id,
                    )
                    return True
                if past_deadline:
                    self._step(
                        row.id,
                        Status.FAILED,
                        "no charge in the tenant's ledger by the deadline",
                        reconcile_phase=None,
                        failure_code="charge_not_made",
                        failure_reason="the charge never reached the tenant",
                    )
                return False
            order = self._find_order(row, tenant)
        except UpstreamError as exc:
            log.warning("reconciling %s: %s", row.id, exc)
            return False
        if order is not None:
            self._confirm(row, order, "order found at Duffel")
            return True
        if past_deadline:
            self._step(
                row.id,
                Status.REFUND_PENDING,
                "no Duffel order by the deadline",
                reconcile_phase=None,
                failure_code="order_failed",
                failure_reason="Duffel did not create the order",
            )
            return True
        return False

    def _refund(self, row: BookingRow, tenant: TenantConfig) -> bool:
        """Give the charge back where the tenant can; otherwise it waits for an operator."""
        if row.reconcile_phase == "refund":
            return self._settle_refund(row, tenant)
        outcome = self._call_refund(row, tenant)
        if outcome is None:
            return False
        if outcome.unknown:
            self._note(row.id, "booking.refund_outcome_unknown", outcome.detail, **outcome.changes)
            return False
        self._step(row.id, after_refund(row.cancel_requested), outcome.detail, **outcome.changes)
        return True

    def _call_refund(self, row: BookingRow, tenant: TenantConfig) -> RefundOutcome | None:
        """Send the refund once: paid, or unknown (never sent again blindly); None while it
        is simply still owed (refused, not offered, or surely not sent: retried later)."""
        if row.loyalty_transaction_id is None:
            return None
        now = self.clock()
        # The recovery point: a driver that dies in the call leaves "refund" for the
        # reconciler to look up, not to repeat.
        self._mark(row.id, reconcile_phase="refund", refund_attempted_at=now)
        still_owed = {"reconcile_phase": None}
        reason = (
            f"Booking {row.id} cancelled" if row.cancel_requested else f"Booking {row.id} failed"
        )
        try:
            refund = self.upstreams.loyalty(tenant).refund(
                row.member_id, row.loyalty_transaction_id, reason
            )
        except NotSupported as exc:
            # Not declared, or the tenant's API has no refund path: an operator settles it.
            # The reason is kept unless the booking already carries its own (a failed order).
            if row.failure_code is None:
                log.warning("refund of %s not offered: %s", row.id, exc)
                still_owed.update(failure_code="refund_not_offered", failure_reason=exc.message)
            self._mark(row.id, **still_owed)
            return None
        except BusinessRuleError as exc:
            if exc.code != "already_refunded":
                log.warning("refund of %s refused: %s", row.id, exc)
                self._mark(row.id, **still_owed)
                return None
            # An earlier attempt's answer was lost; the tenant says it was paid.
            return RefundOutcome(
                "refund already made at the tenant",
                {
                    "refund_minor": row.loyalty_minor,
                    "refunded_at": now,
                    **_refund_settled(row),
                },
            )
        except UpstreamError as exc:
            if outcome_unknown(exc):
                # The tenant may have paid: asking again could pay the member twice.
                log.warning("refund of %s has an unknown outcome: %s", row.id, exc)
                why = f"refund outcome unknown: {exc.message}"
                return RefundOutcome(why, self._refund_unknown(row, exc.message), unknown=True)
            log.warning("refund of %s not made now: %s", row.id, exc)
            self._mark(row.id, **still_owed)
            return None
        return RefundOutcome(
            "refunded",
            {
                "refund_transaction_id": refund.refund_id,
                "refund_minor": to_minor(refund.amount, row.loyalty_decimals),
                "refunded_at": refund.timestamp or now,
                **_refund_settled(row),
            },
        )

    def _refund_unknown(self, row: BookingRow, why: str) -> dict[str, Any]:
        """The booking's changes that record a refund of unknown outcome, and why."""
        deadline = self.clock() + dt.timedelta(seconds=self.settings.reconcile_deadline_seconds)
        details = row.failure_details if row.failure_code == REFUND_UNKNOWN else None
        previous = (details or {}).get("previous") or {
            "code": row.failure_code,
            "reason": row.failure_reason,
            "details": row.failure_details,
        }
        return {
            "reconcile_phase": "refund",
            "reconcile_deadline": deadline,
            "failure_code": REFUND_UNKNOWN,
            "failure_reason": (
                f"The refund's outcome is unknown ({why}): the tenant may have paid it, so it "
                "is not sent again until the tenant's ledger or an operator settles it."
            ),
            "failure_details": {"why": why, "previous": previous},
        }

    def _note(self, booking_id: str, type_: str, detail: str, **changes: Any) -> None:
        """An event without a state change, committed with the booking's ``changes``."""
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id, for_update=True)
            uow.bookings.note(row, type_, detail, **changes)
            uow.commit()

    def _find_refund(self, row: BookingRow, tenant: TenantConfig) -> LedgerTransaction | None:
        """The tenant's refund of this booking's charge, from its ledger."""
        since = (row.refund_attempted_at or row.created_at) - LOOKBACK
        client = self.upstreams.loyalty(tenant)
        for page in client.iter_ledger(updated_since=since):
            for entry in page:
                if entry.type == "refund" and (
                    entry.related_transaction_id == row.loyalty_transaction_id
                    or (entry.related_transaction_id is None and entry.reference_id == row.id)
                ):
                    return entry
        return None

    def _settle_refund(self, row: BookingRow, tenant: TenantConfig) -> bool:
        """A refund of unknown outcome: the tenant's ledger settles it, else an operator."""
        if row.failure_code != REFUND_UNKNOWN:
            # A driver died in the call: record why, then settle it like any unknown refund.
            why = "a refund attempt was interrupted before its answer was recorded"
            self._note(
                row.id, "booking.refund_outcome_unknown", why, **self._refund_unknown(row, why)
            )
            return True
        if tenant.capabilities.ledger_feed is None:
            return False  # only an operator can tell: the tenant offers no ledger
        try:
            entry = self._find_refund(row, tenant)
        except NotFound as exc:
            if exc.code is None:  # the ledger path is missing (a reference-only tenant)
                log.info("refund of %s waits for an operator: %s", row.id, exc)
            else:
                log.warning("reading the ledger for the refund of %s: %s", row.id, exc)
            return False
        except UpstreamError as exc:
            log.warning("reading the ledger for the refund of %s: %s", row.id, exc)
            return False
        if entry is not None:
            self._step(
                row.id,
                after_refund(row.cancel_requested),
                "refund found in the tenant's ledger",
                refund_transaction_id=entry.transaction_id,
                refund_minor=to_minor(abs(entry.amount), row.loyalty_decimals),
                refunded_at=entry.created_at,
                **_refund_settled(row),
            )
            return True
        if row.reconcile_deadline is not None and self.clock() >= row.reconcile_deadline:
            # Silence past the deadline: the call never reached the tenant; refund again.
            self._note(
                row.id,
                "booking.refund_not_found",
                "no refund in the tenant's ledger by the deadline; it is sent again",
                **_refund_settled(row),
            )
            return True
        return False

    # --- operators settle owed refunds ----------------------------------------------------

    def settle_refund(self, booking_id: str, action: RefundAction) -> dict[str, Any]:
        """An operator sends an owed refund once more, or records it as made (never both)."""
        actor = f"operator:{action.operator}"
        said = f" by {action.operator}" + (f": {action.note}" if action.note else "")
        driver = self._driver()
        now = self.clock()
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id)
            if row is None:
                raise not_found()
            _require_refund_pending(row)
            if not uow.bookings.claim(booking_id, driver, now + self._lease(), now):
                raise Problem(
                    409,
                    "request-in-progress",
                    "The booking's refund is being worked on right now; retry shortly.",
                    retry_after=2,
                )
            uow.commit()
        try:
            with self.store.uow() as uow:
                row = uow.bookings.get(booking_id)
            _require_refund_pending(row)
            tenant = self.registry[row.tenant_id]
            if action.action == "mark_refunded":
                self._step(
                    booking_id,
                    after_refund(row.cancel_requested),
                    f"refund marked as made{said}",
                    actor=actor,
                    refund_transaction_id=action.refund_transaction_id,
                    refund_minor=row.loyalty_minor,
                    refunded_at=now,
                    **_refund_settled(row),
                )
                return self.view(booking_id)
            self._note(
                booking_id,
                "booking.refund_retry_requested",
                f"refund retry requested{said}",
                actor=actor,
                **_refund_settled(row),
            )
            with self.store.uow() as uow:
                row = uow.bookings.get(booking_id)
            outcome = self._call_refund(row, tenant)
            if outcome is not None and outcome.unknown:
                self._note(
                    booking_id,
                    "booking.refund_outcome_unknown",
                    outcome.detail,
                    actor=actor,
                    **outcome.changes,
                )
            elif outcome is not None:
                self._step(
                    booking_id,
                    after_refund(row.cancel_requested),
                    f"{outcome.detail} on retry{said}",
                    actor=actor,
                    **outcome.changes,
                )
            return self.view(booking_id)
        finally:
            with self.store.uow() as uow:
                uow.bookings.release(booking_id, driver)
                uow.commit()

    # --- cancel ----------------------------------------------------------------------------

    def cancel(
        self,
        member: Member,
        booking_id: str,
        request: CancelRequest,
        key: str,
        fingerprint: str,
    ) -> Answer:
        """Cancel at Duffel (quote, confirm), then refund the charge: each step idempotent."""
        path = f"{BOOK_PATH}/{booking_id}/cancel"
        record_id, _, replay = self._open_key(member, key, path, fingerprint)
        if replay is not None:
            return replay
        token = _REPLY.set(_Reply(record_id, booking_id, _settled_cancel_answer))
        try:
            self._cancel(member, booking_id, request)
        except Problem as problem:
            if problem.status >= 500:
                self._release_key(record_id)
                raise
            return self._finish(record_id, booking_id, problem, _cancel_answer)
        except Exception:
            self._release_key(record_id)
            raise
        finally:
            _REPLY.reset(token)
        return self._finish(record_id, booking_id, None, _cancel_answer)

    def _cancel(self, member: Member, booking_id: str, request: CancelRequest) -> None:
        with self.store.uow() as uow:
            row = uow.bookings.get_for_member(member.tenant.id, member.member_id, booking_id)
            if row is None:
                raise not_found()
            status = Status(row.status)
            if status is Status.PENDING_APPROVAL:
                uow.bookings.transition(
                    row,
                    Status.CANCELLED,
                    "withdrawn before approval",
                    cancel_requested=True,
                    cancel_reason=request.reason,
                    refund_requested=request.refund_requested,
                )
                self._keep_reply(uow, row)
                uow.commit()
                return
            driver = self._driver()
            if status is Status.CONFIRMED:
                # The lease is taken with the state change, so no other driver starts first.
                uow.bookings.transition(
                    row,
                    Status.CANCELLING,
                    request.reason,
                    cancel_requested=True,
                    cancel_reason=request.reason,
                    refund_requested=request.refund_requested,
                    failure_code=None,
                    failure_reason=None,
                    lease_owner=driver,
                    lease_until=self.clock() + self._lease(),
                )
                uow.commit()
            elif not (row.cancel_requested and status in UNFINISHED):
                raise Problem(
                    409,
                    "booking-not-cancellable",
                    f"A booking that is {row.status} cannot be cancelled.",
                    booking_status=row.status,
                )
        self.drive(booking_id, driver)

    def _cancel_step(self, row: BookingRow, tenant: TenantConfig) -> bool:
        duffel = self.upstreams.duffel(tenant)
        if row.duffel_cancelled_at is None:
            try:
                if row.duffel_cancellation_id is None:
                    quote = duffel.create_cancellation(row.duffel_order_id)
                    self._mark(row.id, duffel_cancellation_id=quote.id)
                    row.duffel_cancellation_id = quote.id
                confirmed = duffel.confirm_cancellation(row.duffel_cancellation_id)
                self._mark(row.id, duffel_cancelled_at=confirmed.confirmed_at or self.clock())
                return True
            except DuffelError as exc:
                if exc.code == "already_cancelled":
                    self._mark(row.id, duffel_cancelled_at=self.clock())
                    return True
                if exc.code == "order_cancellation_expired":
                    self._mark(row.id, duffel_cancellation_id=None)
                    return True
                if isinstance(exc, BusinessRuleError | DuffelNotFound):
                    self._step(
                        row.id,
                        Status.CONFIRMED,
                        f"Duffel refused the cancellation: {exc.message}",
                        cancel_requested=False,
                        failure_code="cancel_refused",
                        failure_reason=exc.message,
                    )
                    return False
                log.warning("cancelling %s at Duffel: %s", row.id, exc)
                return False
            except UpstreamError as exc:
                log.warning("cancelling %s at Duffel: %s", row.id, exc)
                return False
        if not row.refund_requested or row.loyalty_transaction_id is None:
            self._step(row.id, Status.CANCELLED, "cancelled at Duffel; no refund requested")
            return False
        if row.reconcile_phase == "refund":
            # A driver died in the refund call: owed until its outcome is settled.
            why = "a refund attempt was interrupted before its answer was recorded"
            self._step(
                row.id,
                Status.REFUND_PENDING,
                f"cancelled at Duffel; {why}",
                **self._refund_unknown(row, why),
            )
            return False
        outcome = self._call_refund(row, tenant)
        if outcome is None:
            self._step(row.id, Status.REFUND_PENDING, "cancelled at Duffel; refund owed")
            return False
        target = Status.REFUND_PENDING if outcome.unknown else Status.CANCELLED
        self._step(row.id, target, f"cancelled at Duffel; {outcome.detail}", **outcome.changes)
        return False

    # --- approvals (operators) -----------------------------------------------------------

    def decide(self, booking_id: str, decision: ApprovalDecision) -> dict[str, Any]:
        """An operator's decision on a pending booking: reject, or re-price and proceed."""
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id)
            if row is None:
                raise not_found()
            if row.status != Status.PENDING_APPROVAL.value:
                raise Problem(
                    409,
                    "booking-not-pending",
                    f"The booking is {row.status}, not pending_approval.",
                    booking_status=row.status,
                )
            if decision.decision == "reject":
                uow.bookings.transition(
                    row,
                    Status.REJECTED,
                    decision.note or "rejected",
                    actor=decision.actor,
                    approval_note=decision.note,
                )
                uow.commit()
                return self.view(booking_id)
        tenant = self.registry[row.tenant_id]
        try:
            offer = self._fresh_offer(tenant, row.offer_id)
        except Problem as problem:
            if problem.slug != "offer-expired":
                raise
            self._step(
                booking_id,
                Status.FAILED,
                "approved, but the offer expired meanwhile",
                actor=decision.actor,
                approval_note=decision.note,
                failure_code="offer_expired",
                failure_reason="The offer expired while the booking awaited approval.",
            )
            return self.view(booking_id)
        now = self.clock()
        price = self.price(tenant, offer, now.date())
        driver = self._driver()
        self._step(
            booking_id,
            Status.CHARGING,
            f"approved at {money(price.loyalty)} {tenant.currency.code}",
            actor=decision.actor,
            approval_note=decision.note,
            offer_expires_at=offer.expires_at,
            flight=flight_view(
                offer,
                loyalty_amount=price.loyalty,
                loyalty_currency=tenant.currency.code,
                usd=price.usd,
            ),
            lease_owner=driver,
            lease_until=now + self._lease(),
            **_price_columns(tenant, price),
        )
        self.drive(booking_id, driver)
        return self.view(booking_id)

    # --- reads ---------------------------------------------------------------------------

    def view(self, booking_id: str) -> dict[str, Any]:
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id)
            if row is None:
                raise not_found()
            return booking_view(row, uow.events.for_booking(booking_id))

    def get(self, member: Member, booking_id: str) -> dict[str, Any]:
        with self.store.uow() as uow:
            row = uow.bookings.get_for_member(member.tenant.id, member.member_id, booking_id)
            if row is None:
                raise not_found()
            return booking_view(row, uow.events.for_booking(booking_id))

    def list(
        self,
        member: Member,
        *,
        status: str | None,
        from_date: dt.date | None,
        to_date: dt.date | None,
        limit: int,
        offset: int,
    ) -> dict[str, Any]:
        with self.store.uow() as uow:
            rows, total = uow.bookings.list_for_member(
                member.tenant.id,
                member.member_id,
                status=status,
                from_date=from_date,
                to_date=to_date,
                limit=limit,
                offset=offset,
            )
        return {
            "bookings": [booking_summary(r) for r in rows],
            "pagination": {
                "total": total,
                "limit": limit,
                "offset": offset,
                "has_more": offset + len(rows) < total,
            },
        }

    def events(self, after: int, limit: int, tenant_id: str | None) -> dict[str, Any]:
        """The event feed after a cursor; the cursor is the last event id returned."""
        with self.store.uow() as uow:
            page = uow.events.read(after, limit + 1, tenant_id)
        more = len(page) > limit
        page = page[:limit]
        return {
            "events": [event_view(e) for e in page],
            "next_cursor": str(page[-1].id) if page else str(after),
            "has_more": more,
        }

    def searches(self, after: int, limit: int, tenant_id: str | None) -> dict[str, Any]:
        """The answered searches after a cursor, like the event feed (cursor = last id)."""
        with self.store.uow() as uow:
            page = uow.searches.read(after, limit + 1, tenant_id)
        more = len(page) > limit
        page = page[:limit]
        return {
            "searches": [search_view(s) for s in page],
            "next_cursor": str(page[-1].id) if page else str(after),
            "has_more": more,
        }

    def operator_bookings(self, status: str, limit: int) -> dict[str, Any]:
        with self.store.uow() as uow:
            rows = uow.bookings.list_by_status([status], limit)
            return {"bookings": [booking_view(r) for r in rows]}

    # --- Duffel's webhooks -------------------------------------------------------------------

    def duffel_event(self, tenant: TenantConfig, event: DuffelWebhookEvent) -> dict[str, Any]:
        """Act once on a verified Duffel event; a redelivery is acknowledged and ignored."""
        metadata = event.object.get("metadata") if isinstance(event.object, dict) else None
        booking_id = metadata.get("booking_id") if isinstance(metadata, dict) else None
        with self.store.uow() as uow:
            uow.session.add(
                DuffelEventRow(
                    id=event.id,
                    tenant_id=tenant.id,
                    type=event.type,
                    booking_id=booking_id,
                    received_at=self.clock(),
                )
            )
            try:
                uow.commit()
            except sa.exc.IntegrityError:
                return {"event_id": event.id, "duplicate": True, "booking_id": booking_id}
        try:
            self._on_duffel_event(tenant, event, booking_id)
        except Exception:
            # Not acted on: forget the event so Duffel's retry is handled afresh.
            with self.store.uow() as uow:
                uow.session.execute(sa.delete(DuffelEventRow).where(DuffelEventRow.id == event.id))
                uow.commit()
            raise
        return {"event_id": event.id, "duplicate": False, "booking_id": booking_id}

    def _on_duffel_event(
        self, tenant: TenantConfig, event: DuffelWebhookEvent, booking_id: str | None
    ) -> None:
        if booking_id is None:
            return
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id)
        if row is None or row.tenant_id != tenant.id:
            return
        if event.type == "order.airline_initiated_change_detected":
            with self.store.uow() as uow:
                booking = uow.bookings.get(booking_id, for_update=True)
                uow.bookings.note(
                    booking,
                    "booking.airline_change_detected",
                    "the airline changed the order; check it with the member",
                )
                uow.commit()
            return
        if event.type not in ("order.created", "order.creation_failed"):
            log.info("Duffel %s for booking %s", event.type, booking_id)
            return
        if row.status not in (Status.ORDERING.value, Status.NEEDS_RECONCILIATION.value):
            return  # the saga already knows the order's outcome
        driver = self._driver()
        now = self.clock()
        with self.store.uow() as uow:
            if not uow.bookings.claim(booking_id, driver, now + self._lease(), now):
                # A driver is still waiting on this very order: let Duffel redeliver later,
                # when the saga may need the news (its answer may have been lost).
                raise Problem(
                    503,
                    "request-in-progress",
                    "The booking's order is still being processed; deliver again later.",
                    retry_after=2,
                )
            uow.commit()
        with self.store.uow() as uow:
            row = uow.bookings.get(booking_id)
        unresolved = row.status == Status.NEEDS_RECONCILIATION.value and (
            row.reconcile_phase == "order"
        )
        if unresolved and event.type == "order.created":
            self._confirm(
                row, DuffelOrder.model_validate(event.object), "order.created from Duffel"
            )
        elif unresolved:
            self._step(
                booking_id,
                Status.REFUND_PENDING,
                "order.creation_failed from Duffel",
                reconcile_phase=None,
                reconcile_deadline=None,
                failure_code="order_failed",
                failure_reason="Duffel reports that the order was not created",
            )
        self.drive(booking_id, driver)

    # --- the reconciler ------------------------------------------------------------------

    def reconcile_once(self) -> int:
        """Resume every unfinished saga whose driver's lease lapsed; returns how many it drove."""
        now = self.clock()
        with self.store.uow() as uow:
            due = uow.bookings.due_for_driving([s.value for s in UNFINISHED], now)
        for booking_id in due:
            try:
                self.drive(booking_id)
            except Exception:  # one booking's failure must not stop the others; it is logged
                log.exception("driving %s failed", booking_id)
        return len(due)


# --- pure helpers ----------------------------------------------------------------------------

REFUND_UNKNOWN = "refund_outcome_unknown"


@dataclasses.dataclass(frozen=True)
class RefundOutcome:
    """What one refund call settled: the event's detail and the booking's changes."""

    detail: str
    changes: dict[str, Any]
    unknown: bool = False  # the tenant may or may not have paid


def _refund_settled(row: BookingRow) -> dict[str, Any]:
    """Changes that close a refund's open question, restoring the failure it replaced."""
    changes: dict[str, Any] = {"reconcile_phase": None, "reconcile_deadline": None}
    if row.failure_code == REFUND_UNKNOWN:
        previous = (row.failure_details or {}).get("previous") or {}
        changes.update(
            failure_code=previous.get("code"),
            failure_reason=previous.get("reason"),
            failure_details=previous.get("details"),
        )
    return changes


def _require_refund_pending(row: BookingRow) -> None:
    if row.status != Status.REFUND_PENDING.value:
        raise Problem(
            409,
            "booking-not-refund-pending",
            f"The booking is {row.status}; only a refund_pending booking's refund is settled here.",
            booking_status=row.status,
        )


def _price_columns(tenant: TenantConfig, price: Price) -> dict[str, Any]:
    decimals = tenant.currency.decimals
    return {
        "fare_amount": format(price.fare_amount, "f"),
        "fare_currency": price.fare_currency,
        "fx_rate": format(price.fx_rate, "f"),
        "usd_cents": to_minor(price.usd, 2),
        "usd_per_unit": format(price.usd_per_unit, "f"),
        "loyalty_minor": to_minor(price.loyalty, decimals),
        "loyalty_currency": tenant.currency.code,
        "loyalty_decimals": decimals,
    }


def _cabin_refused(tenant: TenantConfig, cabin: str) -> Problem:
    allowed = ", ".join(tenant.rules.allowed_cabins)
    return Problem(
        400,
        "invalid-cabin-class",
        f"{tenant.name} members may book {allowed} only, not {cabin}.",
        errors=[{"field": "cabin_class", "message": f"must be one of: {allowed}"}],
        allowed_classes=list(tenant.rules.allowed_cabins),
    )


def _offer_expired(offer_id: str) -> Problem:
    return Problem(
        410,
        "offer-expired",
        f"Offer {offer_id} has expired or is no longer available; search again.",
    )


_DUFFEL_TYPE = {"adult": "adult", "child": "child", "infant": "infant_without_seat"}


def _match_passengers(request: BookingRequest, offer: Offer) -> list[dict[str, Any]]:
    """The request's passengers, each bound to one of the offer's passenger ids by type."""
    if len(request.passengers) != len(offer.passengers):
        raise validation(
            "passengers",
            f"the offer is for {len(offer.passengers)} passenger(s), "
            f"{len(request.passengers)} given",
        )
    free = list(offer.passengers)
    matched = []
    for index, passenger in enumerate(request.passengers):
        wanted = _DUFFEL_TYPE[passenger.type]
        choice = next((p for p in free if p.type == wanted), None)
        if choice is None:
            raise validation(
                f"passengers[{index}].type",
                f"the offer has no {passenger.type} place left for this passenger",
            )
        free.remove(choice)
        matched.append({**passenger.model_dump(mode="json"), "duffel_passenger_id": choice.id})
    return matched


_FAILURES: dict[str, tuple[int, str]] = {
    "insufficient_balance": (402, "insufficient-balance"),
    "offer_expired": (410, "offer-expired"),
    "charge_refused": (422, "upstream-rejected"),
    "order_failed": (502, "booking-failed"),
    "upstream_error": (502, "upstream-unavailable"),
    "charge_not_made": (502, "upstream-unavailable"),
}


def _book_answer(row: BookingRow) -> Answer | Problem:
    """How a booking request is answered given where its saga stands."""
    status = Status(row.status)
    view = booking_view(row)
    if status is Status.CONFIRMED:
        return Answer(201, view)
    if status in (Status.FAILED, Status.REFUND_PENDING, Status.REJECTED):
        http, slug = _FAILURES.get(row.failure_code or "", (502, "booking-failed"))
        extensions: dict[str, Any] = {"booking_id": row.id, "booking_status": row.status}
        if row.failure_code == "insufficient_balance" and row.failure_details:
            extensions["balance"] = row.failure_details
        if row.loyalty_transaction_id is not None:
            extensions["refund"] = refund_view(row)
        detail = row.failure_reason or f"The booking is {row.status}."
        if row.loyalty_transaction_id is not None:
            refunded = row.refunded_at is not None
            detail += (
                " The charge was refunded."
                if refunded
                else " The charge is owed back and will be refunded; it is not refunded yet."
            )
        return Problem(http, slug, detail, **extensions)
    return Answer(202, view)


_IN_PROGRESS = frozenset({Status.CHARGING.value, Status.ORDERING.value, Status.CANCELLING.value})


@dataclasses.dataclass(frozen=True)
class _Reply:
    """The request a saga run answers: its key record and how a settled booking answers it."""

    record_id: int
    booking_id: str
    render: Callable[[BookingRow], Answer | Problem | None]


# Set while a member's request drives its own booking (per thread: contextvars).
_REPLY: contextvars.ContextVar[_Reply | None] = contextvars.ContextVar("reply", default=None)


def _settled_book_answer(row: BookingRow) -> Answer | Problem | None:
    return None if row.status in _IN_PROGRESS else _book_answer(row)


def _cancel_answer(row: BookingRow) -> Answer | Problem:
    if row.status == Status.CONFIRMED.value and row.failure_code == "cancel_refused":
        return Problem(
            409,
            "booking-not-cancellable",
            f"Duffel refused to cancel the order: {row.failure_reason}",
            booking_status=row.status,
        )
    # Still cancelling (an upstream is down): accepted, the reconciler finishes it.
    return Answer(202 if row.status in _IN_PROGRESS else 200, cancel_view(row))


def _settled_cancel_answer(row: BookingRow) -> Answer | Problem | None:
    return None if row.status in _IN_PROGRESS else _cancel_answer(row)


def _encode_answer(answer: Answer | Problem) -> tuple[int, str]:
    """(HTTP status, stored body) of an answer, as the key will replay it."""
    if isinstance(answer, Problem):
        body = {
            "problem": {
                "status": answer.status,
                "slug": answer.slug,
                "detail": answer.detail,
                "extensions": answer.extensions,
            }
        }
        return answer.status, json.dumps(body)
    return answer.status, json.dumps({"data": answer.data})


def _replay(record: IdempotencyRow) -> Answer:
    body = json.loads(record.response_body or "{}")
    if "problem" in body:
        problem = body["problem"]
        raise Problem(
            problem["status"], problem["slug"], problem["detail"], **problem["extensions"]
        )
    return Answer(record.response_status or 200, body["data"])
