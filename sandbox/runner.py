"""Start all four stand-ins in this process over one shared store."""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from sandbox import faults
from sandbox.config import TENANT_SERVICES as ORGANISATIONS
from sandbox.config import SandboxConfig
from sandbox.schema import LEDGER, MEMBERS, ORDERS
from sandbox.seed import reference_members_frame
from sandbox.servers import RunningServers, serve_in_background

if TYPE_CHECKING:
    from sandbox.duffel.webhooks import WebhookHub
    from sandbox.traffic import Traffic

log = logging.getLogger("sandbox")


def load_history(history_dir: Path | None) -> dict[str, pl.DataFrame]:
    """The generated tables, or empty ones when no history is given."""
    if history_dir is None:
        return {
            name: schema.to_frame()
            for name, schema in (("members", MEMBERS), ("ledger", LEDGER), ("orders", ORDERS))
        }
    missing = [
        n for n in ("members", "ledger", "orders") if not (history_dir / f"{n}.parquet").exists()
    ]
    if missing:
        raise FileNotFoundError(
            f"{history_dir} has no {', '.join(missing)}.parquet; run `python -m sandbox generate` first"
        )
    return {
        n: pl.read_parquet(history_dir / f"{n}.parquet") for n in ("members", "ledger", "orders")
    }


def _manifest(history_dir: Path | None) -> dict:
    path = history_dir / "manifest.json" if history_dir else None
    return json.loads(path.read_text()) if path and path.exists() else {}


@dataclass
class Sandbox:
    """A running set of stand-ins: their URLs, their stores, and what keeps them alive."""

    config: SandboxConfig
    urls: dict[str, str]
    loyalty: object
    duffel: object
    servers: RunningServers
    traffic: Traffic | None = None
    duffel_webhooks: WebhookHub | None = None
    _stop: threading.Event = field(default_factory=threading.Event)
    _threads: list[threading.Thread] = field(default_factory=list)

    def reset(self) -> None:
        """What the real services do every hour: forget everything since the seed."""
        self.loyalty.reset()
        self.duffel.reset()
        log.info("sandbox reset to the generated history")

    def inject_fault(
        self,
        service: str,
        route: str,
        fault: str,
        times: int = 1,
        *,
        stall_seconds: float | None = None,
    ) -> dict[str, Any]:
        """Fail the next ``times`` calls of ``service``'s ``route`` as ``X-Mock-Error: fault``
        would (see ``sandbox.faults``); needs ``fault_control`` on."""
        return faults.inject_fault(
            self.urls[service], route, fault, times, stall_seconds=stall_seconds
        )

    def clear_faults(self, service: str | None = None) -> None:
        """Disarm every fault on one service, or on all four."""
        for name in [service] if service else list(self.urls):
            faults.clear_faults(self.urls[name])

    def armed_faults(self, service: str) -> list[dict[str, Any]]:
        """Faults armed on ``service`` that calls have not used up yet."""
        return faults.armed_faults(self.urls[service])

    def client_env(self) -> dict[str, str]:
        """Environment that points the platform's tenant clients at these stand-ins."""
        return client_env(self.config, self.urls)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        if self.traffic is not None:
            self.traffic.close()
        self.servers.stop()
        if self.duffel_webhooks is not None:
            self.duffel_webhooks.stop()

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _every(self, seconds: float, action, name: str) -> None:
        def loop() -> None:
            while not self._stop.wait(seconds):
                try:
                    action()
                except Exception:  # a background tick must not kill the servers; it is logged
                    log.exception("%s failed", name)

        thread = threading.Thread(target=loop, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


def client_env(config: SandboxConfig, urls: dict[str, str]) -> dict[str, str]:
    """The tenant clients' settings for stand-ins at ``urls``: their URLs and fixed credentials."""
    env = {
        "COFFEECHAIN_API_URL": urls["coffeechain"],
        "TELCOCORP_API_URL": urls["telcocorp"],
        "FINTECHAPP_API_URL": urls["fintechapp"],
        "DUFFEL_BASE_URL": urls["duffel"],
        "COFFEECHAIN_API_KEY": "test_cc_api_key_12345",
        "TELCOCORP_CLIENT_ID": "telcocorp_client_id",
        "TELCOCORP_CLIENT_SECRET": "telcocorp_client_secret",
        "FINTECHAPP_PARTNER_ID": config.fintechapp_partner_id,
        "FINTECHAPP_PARTNER_SECRET": config.fintechapp_partner_secret,
    }
    for token, tenant in config.duffel_tokens(ORGANISATIONS).items():
        env[f"{tenant.upper()}_DUFFEL_TOKEN"] = token
    return env


def start_sandbox(config: SandboxConfig | None = None) -> Sandbox:
    """Load the history, build the stores and serve all four apps; returns once they answer."""
    from sandbox.duffel.app import create_app as create_duffel_app
    from sandbox.duffel.store import DuffelStore
    from sandbox.duffel.webhooks import WebhookHub
    from sandbox.loyalty import create_apps as create_loyalty_apps
    from sandbox.loyalty.store import LoyaltyStore

    config = config or SandboxConfig()
    tables = load_history(config.history_dir)
    loyalty = LoyaltyStore(tables["members"], tables["ledger"], config)
    duffel = DuffelStore(tables["orders"], ORGANISATIONS)
    webhooks = WebhookHub(
        max_attempts=config.webhook_max_attempts, backoff_seconds=config.webhook_backoff_seconds
    )
    duffel_app = create_duffel_app(duffel, config, webhooks)
    apps = {**create_loyalty_apps(loyalty, config), "duffel": duffel_app}
    servers = serve_in_background(apps, config.host, config.ports, access_log=False)
    sandbox = Sandbox(
        config=config,
        urls=servers.urls,
        loyalty=loyalty,
        duffel=duffel,
        servers=servers,
        duffel_webhooks=webhooks,
    )
    if config.reset_interval_seconds:
        sandbox._every(config.reset_interval_seconds, sandbox.reset, "sandbox-reset")
    if config.traffic_per_minute > 0:
        try:
            sandbox.traffic = start_traffic(sandbox, tables["members"])
        except Exception:
            sandbox.stop()
            raise
    return sandbox


def start_traffic(sandbox: Sandbox, members: pl.DataFrame) -> Traffic:
    """Members of these stand-ins booking through the booking API, in a background thread.

    The API is found at ``BOOKING_API_URL`` and the operator who decides approvals uses
    ``BOOKING_OPERATOR_TOKEN``; the members' apps use these stand-ins' own credentials.
    Raises ``ValueError`` when no operator token is set.
    """
    from clients.platform import PlatformSettings
    from sandbox.traffic import MemberApps, Traffic, members_from_frame
    from tenants.settings import get_registry

    settings = PlatformSettings()
    if settings.booking_operator_token is None:
        raise ValueError(
            "traffic goes through the booking API: set BOOKING_OPERATOR_TOKEN (and "
            "BOOKING_API_URL unless it is http://127.0.0.1:8000) to the API's operator token"
        )
    config = sandbox.config
    registry = get_registry()
    credentials = sandbox.client_env()
    tenant_urls = {name: url for name, url in sandbox.urls.items() if name in registry}
    manifest = _manifest(config.history_dir)
    traffic = Traffic(
        settings.booking_api_url,
        settings.booking_operator_token,
        members_from_frame(members if members.height else reference_members_frame()),
        registry,
        apps=MemberApps(registry, urls=tenant_urls, lookup=credentials.get),
        seed=manifest.get("seed", 0),
    )
    thread = threading.Thread(
        target=traffic.run,
        args=(config.traffic_per_minute, sandbox._stop),
        name="sandbox-traffic",
        daemon=True,
    )
    thread.start()
    sandbox._threads.append(thread)
    return traffic
