"""Booking fixtures: a fresh store on each backend, and stand-ins with room in their limits."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from booking.store.uow import Store
from sandbox.config import SERVICES, Limit
from sandbox.runner import start_sandbox
from testing.standins import sandbox_config


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'booking.sqlite3'}"
    return request.getfixturevalue("postgres_server").create_database()


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    running = Store(store_url)
    yield running
    running.dispose()


# --- the service layer over real stand-ins --------------------------------------------------

MEMBERS = {"coffeechain": "CC1234567", "telcocorp": "TC-DEF456", "fintechapp": "FA_87654321"}


@pytest.fixture(scope="module")
def stand_ins() -> Iterator[object]:
    """Stand-ins for this module with room in their limits (the tests book a lot)."""
    running = start_sandbox(sandbox_config(limits=dict.fromkeys(SERVICES, Limit(100_000))))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in running.client_env().items():
            patch.setenv(name, value)
        yield running
    running.stop()
