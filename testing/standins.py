"""Stand-ins for tests and benchmarks: their configuration on free ports, and the process
environment pointing the clients at them (``pointed_at``)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from contextlib import AbstractContextManager
from pathlib import Path

from sandbox.config import SERVICES, Limit, SandboxConfig
from settings import environment_overridden


def sandbox_config(**overrides: object) -> SandboxConfig:
    """Stand-ins on free ports, quiet, quick stalls and fault control on, unless overridden."""
    base = SandboxConfig(
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        timeout_stall_seconds=0.5,
        fault_control=True,
    )
    return dataclasses.replace(base, **overrides)


def history_config(history: Path, *, reference: bool = False) -> SandboxConfig:
    """Stand-ins serving a generated history on free ports, quiet, with limits no test reaches
    (``reference``: the tenants' reference behaviour only, no extension)."""
    return dataclasses.replace(
        SandboxConfig(),
        history_dir=history,
        reference=reference,
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        limits=dict.fromkeys(SERVICES, Limit(100_000)),
    )


def pointed_at(*environments: Mapping[str, str]) -> AbstractContextManager[None]:
    """The clients pointed at ``environments`` (e.g. a running sandbox's ``client_env()``,
    the booking API's URL and token) meanwhile; see ``settings.environment_overridden``."""
    return environment_overridden(*environments)
