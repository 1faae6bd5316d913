"""Each container role gets only the secrets it reads (compose.yaml against the code's needs)."""

from __future__ import annotations

import re
from pathlib import Path

import yaml
from dotenv import dotenv_values

from tenants.settings import get_registry
from tests.dashboard.conftest import REPO, tenant_secret_names

# What each role's program reads of the tenants' secrets. The stand-ins check fixed sandbox
# credentials of their own; the Dagster UI only queues runs (the daemon launches them, see
# deploy/dagster.yaml); the dashboard reads the serving snapshot and its users file. The booking
# API charges members and orders flights with the tenants' secrets, and reads its own: the
# operator token, its store's URL (it may hold a password) and each tenant's Duffel webhook
# secret (booking/api.py names it after the tenant). The ingestion (pipeline, daemon) reads the
# booking API's feeds with the operator token; the dashboard calls its operator routes (the
# approvals queue, the request figures) with it, on the server.
TENANTS = frozenset(tenant_secret_names())
BOOKING = frozenset(
    {"BOOKING_OPERATOR_TOKEN", "BOOKING_DATABASE_URL"}
    | {f"{tenant.upper()}_DUFFEL_WEBHOOK_SECRET" for tenant in get_registry()}
)
ALL = TENANTS | BOOKING
READS = {
    "sandbox": frozenset(),
    "pipeline": TENANTS | {"BOOKING_OPERATOR_TOKEN"},
    "webserver": frozenset(),
    "daemon": TENANTS | {"BOOKING_OPERATOR_TOKEN"},
    "dashboard": frozenset({"BOOKING_OPERATOR_TOKEN"}),
    "booking-api": TENANTS | BOOKING,
    # Members' apps present the tenant's app credentials (FintechApp members open their own
    # sessions, no partner secret); its operator decides approvals.
    "traffic": frozenset(
        {
            "COFFEECHAIN_API_KEY",
            "TELCOCORP_CLIENT_ID",
            "TELCOCORP_CLIENT_SECRET",
            "BOOKING_OPERATOR_TOKEN",
        }
    ),
}


def _environment(service: dict) -> set[str]:
    """Every variable name a service's container is given: env files and ``environment``."""
    names: set[str] = set()
    env_files = service.get("env_file", [])
    for entry in [env_files] if isinstance(env_files, str | dict) else env_files:
        path = entry["path"] if isinstance(entry, dict) else entry
        # The real .env is local; its names are those of the example it is copied from.
        source = REPO / (".env.example" if path == ".env" else path)
        names |= set(dotenv_values(source))
    environment = service.get("environment", {})
    if isinstance(environment, list):
        names |= {item.split("=", 1)[0] for item in environment}
    else:
        names |= set(environment)
    return names


def test_each_service_gets_only_the_secrets_its_role_reads() -> None:
    compose = yaml.safe_load((REPO / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == set(READS)
    for name, service in services.items():
        given = _environment(service) & ALL
        print(f"{name}: {len(given)} tenant secrets {sorted(given)}")
        assert given == READS[name], (name, sorted(given ^ READS[name]))


def test_secret_names_in_compose_match_the_example_env_file() -> None:
    # A secret compose passes on must be one the example documents: set, or commented out
    # (`# NAME=`) where an empty value would do harm (Dagster loads .env over the environment).
    path = Path(REPO / ".env.example")
    example = set(dotenv_values(path)) | set(
        re.findall(r"^# ([A-Z0-9_]+)=", path.read_text(), flags=re.MULTILINE)
    )
    assert example >= ALL


def test_the_example_env_file_blanks_nothing_the_demo_hands_its_processes() -> None:
    # `make setup` copies it to .env, which `dagster dev` loads over the environment: an empty
    # BOOKING_OPERATOR_TOKEN= there left the demo's live job without the booking API's feeds.
    example = dotenv_values(Path(REPO / ".env.example"))
    assert "BOOKING_OPERATOR_TOKEN" not in example
    assert "BOOKING_API_URL" not in example


def test_no_variable_has_an_empty_default() -> None:
    # podman-compose 1.0 passes "${NAME:-}" on literally: an operator token would be that text.
    # The example env file defines every name, so "${NAME}" is empty where .env leaves it so.
    text = (REPO / "compose.yaml").read_text()
    assert re.findall(r"\$\{[A-Z0-9_]+:-\}", text) == []
