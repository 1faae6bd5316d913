"""Per-app objects (snapshot, users, settings) that pages and routes reach through Flask."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import flask

from dashboard.auth import UserStore
from dashboard.bookingapi import BookingAdmin
from dashboard.data import Snapshot
from dashboard.opsstate import OpsState
from tenants.settings import get_registry

EXTENSION = "loyalty_dashboard"


@dataclass(frozen=True)
class Runtime:
    """What one dashboard app serves from: its data folder, users and refresh interval."""

    data_dir: Path
    snapshot: Snapshot
    users: UserStore
    poll_ms: int
    ops: OpsState  # what operators did about issues and quarantined records
    booking: BookingAdmin | None = None  # the booking API's operator routes, when configured


def runtime() -> Runtime:
    """The runtime of the app handling the current request."""
    return flask.current_app.extensions[EXTENSION]


def snapshot() -> Snapshot:
    """The serving snapshot of the app handling the current request."""
    return runtime().snapshot


def tenant_names() -> dict[str, str]:
    """Tenant display names from the registry (names and currencies are all the dashboard takes)."""
    return {tenant_id: config.name for tenant_id, config in get_registry().items()}
