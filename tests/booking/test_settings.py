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


def test_the_default_store_lives_under_the_data_dir(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Beside the workers' shared rate-limit folder, not in whatever folder the process started.
    from settings import get_settings

    monkeypatch.delenv("BOOKING_DATABASE_URL", raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        url = BookingSettings(_env_file=None).url()
    finally:
        get_settings.cache_clear()
    assert url == f"sqlite:///{tmp_path / 'booking' / 'booking.sqlite3'}"
    assert (tmp_path / "booking").is_dir()
