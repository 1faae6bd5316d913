"""The tenants' secrets and URL overrides, read from the environment (and ``.env``) on first use.

Each tenant's YAML names the variables (``key_env``, ``base_url_env``, ...), so they are read
by name here rather than declared as fields of the settings object (``settings.Settings``).
"""

from __future__ import annotations

import os
from functools import cache

from dotenv import dotenv_values
from pydantic import SecretStr

from settings import get_settings
from tenants.registry import TenantConfig, load_registry


class MissingSecretError(RuntimeError):
    """A tenant's configuration names an environment variable that is not set."""


@cache
def get_registry() -> dict[str, TenantConfig]:
    """The registry of this deployment (from ``TENANTS_DIR``), loaded once per process."""
    return load_registry(get_settings().tenants_dir)


@cache
def _dotenv() -> dict[str, str | None]:
    return dotenv_values(".env")


def env_value(name: str) -> str | None:
    """An environment variable, falling back to ``.env`` like pydantic-settings does."""
    return os.environ.get(name) or _dotenv().get(name)


def secret(name: str, *, tenant: str) -> SecretStr:
    """The secret held in environment variable ``name``; a clear error if it is unset."""
    value = env_value(name)
    if not value:
        raise MissingSecretError(
            f"tenant {tenant!r}: environment variable {name} is not set (see .env.example)"
        )
    return SecretStr(value)


def tenant_base_url(tenant: TenantConfig) -> str:
    """The tenant's API base URL: its override variable if set, else the registry default."""
    return (env_value(tenant.api.base_url_env) or tenant.api.base_url).rstrip("/")
