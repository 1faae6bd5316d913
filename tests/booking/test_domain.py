"""The saga's states and transitions on their own (no store, no network)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from booking.domain import (
    CANCELLABLE,
    INITIAL,
    TERMINAL,
    TRANSITIONS,
    UNFINISHED,
    InvalidTransition,
    Status,
    after_refund,
    cabin_allowed,
    can_transition,
    check_transition,
    event_type,
    needs_approval,
)

HAPPY_PATH = [Status.CHARGING, Status.ORDERING, Status.CONFIRMED, Status.CANCELLING]


def test_every_state_has_a_rule():
    assert set(TRANSITIONS) == set(Status)


def test_the_happy_path_and_cancellation_are_allowed():
    current: Status | None = None
    for target in [*HAPPY_PATH, Status.CANCELLED]:
        check_transition(current, target)
        current = target


def test_approval_path():
    assert can_transition(None, Status.PENDING_APPROVAL)
    assert can_transition(Status.PENDING_APPROVAL, Status.CHARGING)
    assert can_transition(Status.PENDING_APPROVAL, Status.REJECTED)
    assert can_transition(Status.PENDING_APPROVAL, Status.FAILED)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (None, Status.CONFIRMED),
        (None, Status.ORDERING),
        (Status.CHARGING, Status.CONFIRMED),  # never ordered
        (Status.PENDING_APPROVAL, Status.ORDERING),  # never charged
        (Status.ORDERING, Status.FAILED),  # a charge was made: it must be refunded first
        (Status.CONFIRMED, Status.CANCELLED),  # Duffel must cancel first
        (Status.CANCELLED, Status.CONFIRMED),
        (Status.REJECTED, Status.CHARGING),
        (Status.FAILED, Status.REFUND_PENDING),
        (Status.REFUND_PENDING, Status.CONFIRMED),
    ],
)
def test_forbidden_steps_raise(current, target):
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransition, match=target.value):
        check_transition(current, target)


def test_terminal_states_go_nowhere():
    assert {Status.REJECTED, Status.FAILED, Status.CANCELLED} == TERMINAL
    for state in TERMINAL:
        assert all(not can_transition(state, target) for target in Status)


def test_every_state_is_reachable_and_every_unfinished_state_can_end():
    reachable = set(INITIAL)
    frontier = list(INITIAL)
    while frontier:
        for nxt in TRANSITIONS[frontier.pop()]:
            if nxt not in reachable:
                reachable.add(nxt)
                frontier.append(nxt)
    assert reachable == set(Status)
    for state in UNFINISHED:
        seen, todo = {state}, [state]
        while todo:
            for nxt in TRANSITIONS[todo.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        assert seen & TERMINAL, state


def test_unfinished_and_cancellable_sets():
    assert UNFINISHED.isdisjoint(TERMINAL)
    assert Status.PENDING_APPROVAL not in UNFINISHED  # waits for an operator, not a driver
    assert {Status.PENDING_APPROVAL, Status.CONFIRMED} == CANCELLABLE


def test_refund_ends_as_the_booking_was_heading():
    assert after_refund(cancel_requested=True) is Status.CANCELLED
    assert after_refund(cancel_requested=False) is Status.FAILED


def test_event_types_name_the_target_state():
    assert event_type(Status.CONFIRMED) == "booking.confirmed"


def test_rules():
    assert needs_approval(Decimal(50001), 50000)
    assert not needs_approval(Decimal(50000), 50000)
    assert not needs_approval(Decimal(10**9), None)
    assert cabin_allowed("economy", ("economy",))
    assert not cabin_allowed("business", ("economy",))
