"""The stand-ins' test configuration, shared by the session fixtures and module-scoped ones."""

from __future__ import annotations

import dataclasses

from sandbox.config import SERVICES, SandboxConfig


def sandbox_config(**overrides: object) -> SandboxConfig:
    """Stand-ins on free ports, quiet, quick stalls and fault control on, unless overridden."""
    base = SandboxConfig(
        ports=dict.fromkeys(SERVICES, 0),
        log_requests=False,
        timeout_stall_seconds=0.5,
        fault_control=True,
    )
    return dataclasses.replace(base, **overrides)
