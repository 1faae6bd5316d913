"""Booking fixtures: a store on each backend, and a throwaway PostgreSQL."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from booking.store.uow import Store


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _as_postgres(args: list[str]) -> list[str]:
    # PostgreSQL refuses to run as root; run its tools as the postgres user then.
    return ["runuser", "-u", "postgres", "--", *args] if os.geteuid() == 0 else args


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port, for this test session."""
    if shutil.which("initdb") is None:
        pytest.fail("PostgreSQL (initdb, pg_ctl) is not installed: apt-get install postgresql")
    folder = Path(tempfile.mkdtemp(prefix="booking-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
    data = folder / "data"
    port = _free_port()
    subprocess.run(
        _as_postgres(["initdb", "-D", str(data), "-U", "booking", "--auth=trust", "-E", "UTF8"]),
        check=True,
        capture_output=True,
    )
    subprocess.run(
        _as_postgres(
            [
                "pg_ctl",
                "-D",
                str(data),
                "-o",
                f"-p {port} -k {folder} -c listen_addresses=127.0.0.1 -c fsync=off",
                "-l",
                str(folder / "log"),
                "-w",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql+psycopg://booking@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            _as_postgres(["pg_ctl", "-D", str(data), "-m", "immediate", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(folder, ignore_errors=True)


_PG_DATABASES = iter(range(1, 10_000))


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty store URL on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'booking.sqlite3'}"
    import sqlalchemy as sa

    base = request.getfixturevalue("postgres_url")
    name = f"booking_test_{next(_PG_DATABASES)}"
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as connection:
        connection.exec_driver_sql(f"CREATE DATABASE {name}")
    engine.dispose()
    return base.rsplit("/", 1)[0] + "/" + name


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
    import dataclasses

    from sandbox.config import SERVICES, Limit, SandboxConfig
    from sandbox.runner import start_sandbox

    config = SandboxConfig(
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        timeout_stall_seconds=0.5,
        limits=dict.fromkeys(SERVICES, Limit(100_000)),
    )
    running = start_sandbox(dataclasses.replace(config))
    with pytest.MonkeyPatch.context() as patch:
        for name, value in running.client_env().items():
            patch.setenv(name, value)
        yield running
    running.stop()
