"""Deployment settings and secrets, read from the environment (and ``.env``) on first use."""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

from dotenv import dotenv_values
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from tenants.registry import REGISTRY_DIR, TenantConfig, load_registry


class MissingSecretError(RuntimeError):
    """A tenant's configuration names an environment variable that is not set."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    tenants_dir: Path = REGISTRY_DIR
    data_dir: Path = Path("data")
    duffel_base_url: str = "http://127.0.0.1:8004"


@cache
def get_settings() -> Settings:
    return Settings()


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
