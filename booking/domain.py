"""A booking's states and the transitions allowed between them: plain Python, no I/O.

The saga in ``booking.service`` asks this module whether a step is allowed and what it
means; the store records what happened. Keeping the rules here lets them be tested alone.
"""

from __future__ import annotations

import enum
from decimal import Decimal


class Status(enum.StrEnum):
    """Where a booking stands in its saga."""

    PENDING_APPROVAL = "pending_approval"
    CHARGING = "charging"
    ORDERING = "ordering"
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    FAILED = "failed"
    CANCELLING = "cancelling"
    CANCELLED = "cancelled"
    REFUND_PENDING = "refund_pending"
    NEEDS_RECONCILIATION = "needs_reconciliation"


# The states a booking may be created in: it waits for an operator, or goes straight to charging.
INITIAL: frozenset[Status] = frozenset({Status.PENDING_APPROVAL, Status.CHARGING})

TRANSITIONS: dict[Status, frozenset[Status]] = {
    # Approved (re-priced, then charged), rejected, failed (offer expired meanwhile) or
    # withdrawn by the member before anything was charged.
    Status.PENDING_APPROVAL: frozenset(
        {Status.CHARGING, Status.REJECTED, Status.FAILED, Status.CANCELLED}
    ),
    # Charged (then order), refused by the tenant (nothing charged), or the charge's outcome
    # is unknown (timeout, 5xx): the tenant's ledger decides.
    Status.CHARGING: frozenset({Status.ORDERING, Status.FAILED, Status.NEEDS_RECONCILIATION}),
    # Ordered, order failed definitely (the charge is owed back), or the outcome is unknown.
    Status.ORDERING: frozenset(
        {Status.CONFIRMED, Status.REFUND_PENDING, Status.NEEDS_RECONCILIATION}
    ),
    # Resolved from Duffel (order found: confirmed; never made: refund owed) or from the
    # tenant's ledger (charge found: go on to order; never made: failed).
    Status.NEEDS_RECONCILIATION: frozenset(
        {Status.CONFIRMED, Status.REFUND_PENDING, Status.ORDERING, Status.FAILED}
    ),
    Status.CONFIRMED: frozenset({Status.CANCELLING}),
    # Cancelled and refunded (or no refund asked), cancelled but the refund is still owed,
    # or Duffel refused to cancel (the booking stands).
    Status.CANCELLING: frozenset({Status.CANCELLED, Status.REFUND_PENDING, Status.CONFIRMED}),
    # The refund happened: the booking ends as it was heading (failed order or cancellation).
    Status.REFUND_PENDING: frozenset({Status.FAILED, Status.CANCELLED}),
    Status.REJECTED: frozenset(),
    Status.FAILED: frozenset(),
    Status.CANCELLED: frozenset(),
}

TERMINAL: frozenset[Status] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)

# States a saga driver must push on by itself (after a crash, a timeout or a restart).
UNFINISHED: frozenset[Status] = frozenset(
    {
        Status.CHARGING,
        Status.ORDERING,
        Status.NEEDS_RECONCILIATION,
        Status.CANCELLING,
        Status.REFUND_PENDING,
    }
)

# States from which the member may cancel.
CANCELLABLE: frozenset[Status] = frozenset({Status.PENDING_APPROVAL, Status.CONFIRMED})


class InvalidTransition(ValueError):
    """A step the saga does not allow from the booking's current state."""

    def __init__(self, current: Status | None, target: Status) -> None:
        self.current = current
        self.target = target
        where = current.value if current is not None else "(new)"
        super().__init__(f"a booking cannot go from {where} to {target.value}")


def can_transition(current: Status | None, target: Status) -> bool:
    """Whether ``current`` → ``target`` is a step of the saga (``None``: a new booking)."""
    if current is None:
        return target in INITIAL
    return target in TRANSITIONS[current]


def check_transition(current: Status | None, target: Status) -> None:
    """Raise ``InvalidTransition`` unless the step is allowed."""
    if not can_transition(current, target):
        raise InvalidTransition(current, target)


def event_type(target: Status) -> str:
    """The event a transition appends to the feed (``booking.confirmed`` ...)."""
    return f"booking.{target.value}"


def after_refund(cancel_requested: bool) -> Status:
    """A refund closes a cancellation as ``cancelled`` and a failed order as ``failed``."""
    return Status.CANCELLED if cancel_requested else Status.FAILED


def needs_approval(amount: Decimal, threshold: int | None) -> bool:
    """Whether a charge of ``amount`` loyalty units exceeds the tenant's approval threshold."""
    return threshold is not None and amount > threshold


def cabin_allowed(cabin: str, allowed: tuple[str, ...]) -> bool:
    """Whether the tenant lets its members book ``cabin``."""
    return cabin in allowed
