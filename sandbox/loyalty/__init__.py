"""Stand-ins for the three tenants' loyalty APIs, served over one shared store."""

from fastapi import FastAPI

from sandbox.config import SandboxConfig
from sandbox.loyalty import coffeechain, fintechapp, telcocorp
from sandbox.loyalty.store import LoyaltyStore

__all__ = ["LoyaltyStore", "create_apps"]


def create_apps(store: LoyaltyStore, config: SandboxConfig) -> dict[str, FastAPI]:
    """One FastAPI app per tenant, keyed by tenant id, all over ``store``."""
    return {
        "coffeechain": coffeechain.create_app(store, config),
        "telcocorp": telcocorp.create_app(store, config),
        "fintechapp": fintechapp.create_app(store, config),
    }
