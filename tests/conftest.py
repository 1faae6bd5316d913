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
# Folders whose tests share session fixtures: the dbt tests a generated history and its build,
# the dashboard's tests their served data and browser.
SHARED_FOLDERS = ("dbt", "dashboard")


def worker_group(nodeid: str) -> str:
    """The worker group of a test (`make test`: pytest -n 2 --dist loadscope): the folder for
    the folders of SHARED_FOLDERS, so their session fixtures start once; else the module, so
    its module fixtures start once."""
    module = nodeid.split("::", 1)[0]  # relative to the repository: tests/<folder>/test_x.py
    parts = Path(module).parts
    if len(parts) > 2 and parts[0] == TESTS.name and parts[1] in SHARED_FOLDERS:
        return parts[1]
    return module


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object | None:
    """Scopes by `worker_group`. (xdist's `loadgroup` marks do not group under pytest 9.2, which
    no longer reads the node id xdist rewrites, so the scheduler itself is told.)"""
    if config.getoption("dist") != "loadscope":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return worker_group(nodeid)

    return GroupScheduling(config, log)


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
