"""Shared fixtures: real stand-in servers on free loopback ports."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.runner import Sandbox, start_sandbox
from testing.postgres import postgres_server, postgres_url
from testing.standins import sandbox_config
from warehouse.manifest import prepare_manifest

# The Dagster definitions refuse a stale dbt manifest; the test session parses it once, first.
prepare_manifest()

# Fixtures defined in tests/postgres.py, made available to every test.
__all__ = ["postgres_server", "postgres_url"]

TESTS = Path(__file__).parent
# The dbt tests' session fixtures (a generated history and its build): every test using one
# runs in the same worker, so it is built once. The dashboard's tests share their served data
# and browser the same way, by folder.
SHARED_BUILDS = {"history", "manifest", "built", "warehouse"}


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Group the tests for `pytest -n 2 --dist loadgroup` (make test): a module's tests stay
    together (its module fixtures start once), and so do the tests sharing a session build."""
    for item in items:
        if item.get_closest_marker("xdist_group"):
            continue
        module = item.path.relative_to(TESTS)
        if module.parts[0] == "dashboard":
            group = "dashboard"
        elif module.parts[0] == "dbt" and SHARED_BUILDS & set(getattr(item, "fixturenames", ())):
            group = "dbt-history"
        else:
            group = module.as_posix()
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., Sandbox]]:
    """Start stand-ins with a custom configuration; all are stopped after the test."""
    started: list[Sandbox] = []

    def start(**overrides: object) -> Sandbox:
        sandbox = start_sandbox(sandbox_config(**overrides))
        started.append(sandbox)
        return sandbox

    yield start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture(scope="session")
def sandbox() -> Iterator[Sandbox]:
    """Stand-ins with the reference members only and the real rate limits."""
    running = start_sandbox(sandbox_config())
    yield running
    running.stop()


@pytest.fixture
def sandbox_env(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point the platform's clients at the session's stand-ins for one test."""
    env = sandbox.client_env()
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


@pytest.fixture
def sandbox_faults(sandbox: Sandbox) -> Iterator[Sandbox]:
    """The session's stand-ins with no fault armed before or after the test.

    ``sandbox_faults.inject_fault("coffeechain", "deduct", "insufficient-balance")``
    makes the next deduction fail as ``X-Mock-Error: insufficient-balance`` would.
    """
    sandbox.clear_faults()
    yield sandbox
    sandbox.clear_faults()
