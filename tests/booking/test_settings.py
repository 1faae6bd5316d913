"""Deployment settings of the booking API: an empty operator token must not open the admin routes.

Container platforms pass an unset variable on as an empty string (compose's
``${BOOKING_OPERATOR_TOKEN}``); that must mean "no operators", not "the empty token".
"""

from __future__ import annotations

import pytest

from booking.auth import check_operator
from booking.config import BookingSettings
from booking.errors import Problem


@pytest.mark.parametrize("value", ["", "   "])
def test_an_empty_operator_token_refuses_everyone(
    value: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BOOKING_OPERATOR_TOKEN", value)
    settings = BookingSettings(_env_file=None)
    assert settings.operator_token is None
    with pytest.raises(Problem) as refused:
        check_operator("Bearer ", settings.operator_token)
    assert refused.value.status == 401


def test_host_and_port_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BOOKING_HOST", "0.0.0.0")
    monkeypatch.setenv("BOOKING_PORT", "8100")
    settings = BookingSettings(_env_file=None)
    assert (settings.host, settings.port) == ("0.0.0.0", 8100)
    monkeypatch.delenv("BOOKING_HOST")
    monkeypatch.delenv("BOOKING_PORT")
    assert (BookingSettings(_env_file=None).host, BookingSettings(_env_file=None).port) == (
        "127.0.0.1",
        8000,
    )
